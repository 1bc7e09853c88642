-- wrk script for bench/api.sh: one authenticated GET per request with a random
-- MSISDN drawn from the imported set, and a one-line machine-readable summary.
--
-- Environment (read by every wrk thread):
--   BENCH_PATH   path prefix the MSISDN is appended to,
--                e.g. "/tsm/v1/secure-elements?msisdn=" (tsmd) or "/se.json?msisdn=" (nginx)
--   BENCH_TOKEN  bearer token for the Authorization header (sent to nginx too, so
--                both servers parse the same request bytes)
--   BENCH_BASE   first MSISDN of the imported set (decimal digits)
--   BENCH_COUNT  number of consecutive MSISDNs imported from BENCH_BASE
--   BENCH_METHOD "GET" (default: the lookup above) or "POST": then every request
--                is POST BENCH_PATH with the JSON body BENCH_BODY (the write row)
--
-- The same script drives tsmd and nginx, so the client-side cost is the same.

local path = os.getenv("BENCH_PATH") or "/"
local token = os.getenv("BENCH_TOKEN") or ""
local base = tonumber(os.getenv("BENCH_BASE") or "0")
local count = tonumber(os.getenv("BENCH_COUNT") or "1")
local method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY") or ""
local headers = { ["Authorization"] = "Bearer " .. token, ["Accept"] = "application/json" }
if method == "POST" then
   headers["Content-Type"] = "application/json"
end

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("tid", counter)
   table.insert(threads, thread)
end

function init(args)
   math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
end

function request()
   if method == "POST" then
      return wrk.format("POST", path, headers, body)
   end
   local msisdn = string.format("%.0f", base + math.random(0, count - 1))
   return wrk.format("GET", path .. msisdn, headers)
end

-- Non-2xx answers are counted by wrk as errors.status; bench/api.sh refuses a
-- run that has any, so a benchmark of 401s or 404s cannot pass as a result.
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "wrk_result requests=%d duration_us=%d rps=%.0f p50_us=%d p99_us=%d max_us=%d " ..
      "non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, summary.duration,
      summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(99), latency.max,
      e.status, e.connect, e.read, e.write, e.timeout))
end
