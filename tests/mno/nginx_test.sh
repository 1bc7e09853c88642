#!/usr/bin/env bash
# mno.nginx_pg (issue 10 acceptance: "two tsmd nodes on one PostgreSQL behind
# nginx"): nginx (Debian's, scripts/deps.sh) started on loopback as the
# calling user with a configuration this test writes: one upstream of two
# tsmd nodes, node 2 a backup (so the device's traffic goes to node 1 while
# it lives), SSE-friendly (proxy_buffering off, HTTP/1.1 upstream keep-alive,
# read timeouts of an hour). A real se-agent with a vse card on its socket
# talks to the platform only through nginx; the bank submits to node 2
# directly.
#
# - the device's push stream is held by node 1 (node 1's metric says 1
#   stream, node 2's 0);
# - an interactive job submitted to node 2 reaches it (the event row's notice
#   wakes node 1) and its first batch runs: the agent's POST of responses is
#   held by node 1, waiting for the next batch;
# - node 1 is killed (SIGKILL) mid-job; the agent's held POST gets nginx's
#   502, which the agent takes as a lost answer and repeats (X-Admin-Resume)
#   through nginx to node 2; its push client registers again and opens its
#   stream on node 2 (node 2's metric says 1 stream);
# - the bank sends batch 2 and closes the job on node 2: the job ends done,
#   each batch run once on the card (one answer per C-APDU, attempts 1).
#
# usage: nginx_test.sh TSMD SE_AGENT VSE PROFILES_DIR (under tests/pg/with_pg.sh)
set -euo pipefail

TSMD=$1
AGENT=$2
VSE=$3
PROFILES=$4
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"
# shellcheck source=../agent/lib.sh
. "$HERE/../agent/lib.sh"

NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
[ -x "$NGINX" ] || fail "nginx is missing (scripts/deps.sh installs nginx-light)"
need_tools curl jq
[ -n "${OPENTSM_TEST_PG_URL:-}" ] || fail "OPENTSM_TEST_PG_URL is not set (run under tests/pg/with_pg.sh)"
tsmd_work_init mno-nginx
W=$TSMD_WORK
CIN=4F54534D45534501 # profiles/ese-central.json
P=/mno/orange/v1

"$VSE" create --profile "$PROFILES/ese-central.json" --out "$W/card.img" >/dev/null
"$VSE" run "$W/card.img" --listen "unix:$W/card.sock" >>"$W/vse.log" 2>&1 &
TSMD_EXTRA_PIDS+=("$!")

tsmd_config "$OPENTSM_TEST_PG_URL" "log.level=warn" "services.enabled=tsm, mno:orange" \
    "mno.orange.backoff_s=0" "mno.orange.sweep_ms=100" "http.trusted_proxies=127.0.0.1"
tsmd_bootstrap ops
tsmd_start
URL1=$TSMD_URL
PORT1=$TSMD_PORT
PORT2=$(tsmd_free_port)
URL2="http://127.0.0.1:$PORT2"
(cd "$W" && exec "$TSMD" --config "$W/tsmd.ini" "${TSMD_SETS[@]}" \
    --set "http.listen=127.0.0.1:$PORT2" >>"$W/tsmd2.log" 2>&1) &
TSMD_EXTRA_PIDS+=("$!")
for _ in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL2/readyz" || true)" = 200 ] && break
    sleep 0.05
done

# ---- nginx ------------------------------------------------------------------
NPORT=$(tsmd_free_port)
NURL="http://127.0.0.1:$NPORT"
mkdir -p "$W/nginx/logs" "$W/nginx/tmp"
cat >"$W/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $W/nginx/nginx.pid;
error_log $W/nginx/logs/error.log warn;
events { worker_connections 256; }
http {
    access_log $W/nginx/logs/access.log;
    client_body_temp_path $W/nginx/tmp/body;
    proxy_temp_path $W/nginx/tmp/proxy;
    fastcgi_temp_path $W/nginx/tmp/fastcgi;
    uwsgi_temp_path $W/nginx/tmp/uwsgi;
    scgi_temp_path $W/nginx/tmp/scgi;
    upstream tsmd {
        server 127.0.0.1:$PORT1 max_fails=1 fail_timeout=60s;
        server 127.0.0.1:$PORT2 backup;
        keepalive 16;
    }
    server {
        listen 127.0.0.1:$NPORT;
        location / {
            proxy_pass http://tsmd;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            # Server-sent events: every byte at once, an idle stream kept.
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            # A node that refuses the connection: the next one takes the
            # request (a POST already sent is never sent twice by nginx).
            proxy_next_upstream error timeout http_502 http_503;
        }
    }
}
CONF
"$NGINX" -t -p "$W/nginx" -c "$W/nginx/nginx.conf" -e "$W/nginx/logs/error.log" 2>"$W/nginx/t.log" ||
    fail "nginx -t: $(cat "$W/nginx/t.log")"
"$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" -e "$W/nginx/logs/error.log" &
TSMD_EXTRA_PIDS+=("$!")
for _ in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$NURL/readyz" || true)" = 200 ] && break
    sleep 0.05
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$NURL/readyz" || true)" = 200 ] ||
    fail "nginx does not answer: $(cat "$W/nginx/logs/error.log")"

streams() { # URL -> this node's device streams
    curl -s "$1/metrics" -H "Authorization: Bearer $OP_TOKEN" |
        sed -n 's/^mno_orange_device_streams \([0-9]*\)$/\1/p'
}
wait_streams() { # URL N
    local n=
    for _ in $(seq 1 300); do
        n=$(streams "$1")
        [ "$n" = "$2" ] && return 0
        sleep 0.1
    done
    fail "$1 holds $n device streams, want $2"
}

# ---- the phone, through nginx ---------------------------------------------------
agent_phone "$CIN"
SP=$(tsmd_principal service_provider bank)
TSP=$(tsmd_token "$SP")
A=("$AGENT" --state "$W/agent" --reader "eSE1=socket:unix:$W/card.sock"
    --mno "$NURL$P" --token-file "$W/device.token")
for _ in $(seq 1 100); do
    "${A[@]}" status --json | jq -e '.readers[0].present' >/dev/null && break
    sleep 0.1
done
"${A[@]}" --log-level info run >"$W/run.log" 2>&1 &
TSMD_EXTRA_PIDS+=("$!")
for _ in $(seq 1 200); do
    grep -q "event=stream_open" "$W/run.log" && break
    sleep 0.1
done
grep -q "event=stream_open" "$W/run.log" || fail "se-agent: no push stream: $(tail -5 "$W/run.log")"
wait_streams "$URL1" 1
[ "$(streams "$URL2")" = 0 ] || fail "node 2 holds a stream"
note "the device's stream is held by node 1 (through nginx)"

# ---- an interactive job submitted to node 2 -----------------------------------------
TSMD_URL=$URL2
# Batch 1 comes with the job (an interactive job without one would have the
# agent wait Retry-After for it).
api POST $P/jobs "$TSP" "{\"msisdn\":\"33600000001\",\"se\":{\"cin\":\"$CIN\"},\"kind\":\"interactive\",\"apdus\":[\"80CA9F7F00\"]}" \
    -H "Idempotency-Key: j-1"
expect_status 201 "submit to node 2"
JOB=$(jq -er .id "$TSMD_WORK/resp")
api GET "$P/jobs/$JOB?wait=30&seq=1" "$TSP"
expect_status 200 "batch 1's answers"
[ "$(jq -r '"\(.state) \(.scripts[0].rapdus | length)"' "$TSMD_WORK/resp")" = "running 1" ] ||
    fail "batch 1 ran: $(cat "$TSMD_WORK/resp")"
jq -r '.scripts[0].rapdus[0]' "$TSMD_WORK/resp" | grep -q '9000$' || fail "CPLC read: $(cat "$TSMD_WORK/resp")"
# The agent's POST of batch 1's responses is held by node 1 for up to 10 s
# (then answered 202): on a loaded machine it may be answered already.
HELD=1
grep -q "POST $P/admin/jobs/$JOB/scripts/1 " "$W/nginx/logs/access.log" && HELD=0
note "job $JOB: batch 1 answered through node 1 (its POST held there: $HELD)"

# ---- node 1 dies mid-job ---------------------------------------------------------------
tsmd_kill9
note "node 1 killed"
wait_streams "$URL2" 1
if [ "$HELD" = 1 ]; then
    grep -q "event=admin_post_lost" "$W/run.log" ||
        fail "the agent saw no lost answer: $(tail -20 "$W/run.log")"
fi
note "the device reconnected through nginx to node 2"
api POST $P/jobs/$JOB/batches "$TSP" '{"apdus":["80CA006600"]}' -H "Idempotency-Key: b-2"
expect_status 201 "batch 2 to node 2"
api GET "$P/jobs/$JOB?wait=60&seq=2" "$TSP"
expect_status 200 "batch 2's answers"
[ "$(jq -r '.scripts[1].rapdus | length' "$TSMD_WORK/resp")" = 1 ] ||
    fail "batch 2 ran: $(cat "$TSMD_WORK/resp")"
api POST $P/jobs/$JOB/close "$TSP" '{}'
expect_status 200 "close"
for _ in $(seq 1 100); do
    api GET $P/jobs/$JOB "$TSP"
    [ "$(jq -r .state "$TSMD_WORK/resp")" = done ] && break
    sleep 0.1
done
[ "$(jq -r '"\(.state) \(.attempts) \(.scripts | length) \(.scripts[0].rapdus | length) \(.scripts[1].rapdus | length)"' \
    "$TSMD_WORK/resp")" = "done 1 2 1 1" ] || fail "the job's end: $(cat "$TSMD_WORK/resp")"
grep -q "event=session_end job=$JOB " "$W/run.log" || fail "the agent's session did not end: $(tail -20 "$W/run.log")"
note "job $JOB done on node 2, each batch run once"
echo "mno.nginx_pg: ok"
