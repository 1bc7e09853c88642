#!/usr/bin/env bash
# bench/supervision: cms's supervision (issue 13 point 5) on loopback: tsmd
# with cms (SQLite), 1,000 cards, the rules of the acceptance test, then
#
# 1. batched intake: BENCH_EVENTS events (tests/cms/superv_events.awk, no
#    fraud) posted as NDJSON batches of BENCH_BATCH lines by BENCH_POSTERS
#    clients at once; events_per_s = events / wall time of the posting;
# 2. decisions: one event at a blocklisted merchant on each card, posted
#    one by one on a kept-alive connection: each is a decision (the lock with
#    its history, decision row and notification committed).
#    decision_p50_ms / decision_p99_ms: tsmd's own measure, from the event
#    read to its decision committed (/metrics cms_superv_decision_p*_ms);
#    request_p50_ms / request_p99_ms: the whole HTTP request as curl saw it
#    (time_total), which adds the loopback round trip and the scheduling of
#    two processes.
#
# Last line:
#
#   events_per_s=<n> decision_p50_ms=<x.xx> decision_p99_ms=<x.xx> request_p50_ms=<x.xx> request_p99_ms=<x.xx>
#
# Targets: at least 50,000 events/s, decision p99 under 5 ms (the exit
# status is 0 either way: this is a measurement).
#
# Environment: OT_BUILD (build dir, default build-bench), BENCH_EVENTS
# (200000), BENCH_BATCH (5000), BENCH_POSTERS (2), BENCH_TSMD_THREADS (4).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${OT_BUILD:-build-bench}
case $B in /*) ;; *) B=$ROOT/$B ;; esac
TSMD=$B/src/bin/tsmd
EVENTS=${BENCH_EVENTS:-200000}
BATCH=${BENCH_BATCH:-5000}
POSTERS=${BENCH_POSTERS:-2}
[ -x "$TSMD" ] || { echo "bench/supervision: $TSMD is missing (make bench-build)" >&2; exit 1; }
# shellcheck source=../tests/tsmd/lib.sh
. "$ROOT/tests/tsmd/lib.sh"
for t in curl jq awk split sort; do
    command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
done

tsmd_work_init bench-superv
W=$TSMD_WORK
tsmd_config "sqlite:$W/var/tsmd.db" "log.level=warn" "services.enabled=cms" \
    "http.threads=${BENCH_TSMD_THREADS:-4}" "http.max_body=16777216" "cms.superv_batch_max=100000" \
    "cms.superv_sources=paysys"
tsmd_bootstrap ops
tsmd_start
C=/cms/v1
SUB=$(tsmd_principal subscriber alice)
PAYSYS=$(tsmd_principal service_provider paysys)
TP=$(tsmd_token "$PAYSYS")
KEYS='{"enc":"404142434445464748494A4B4C4D4E4F","mac":"404142434445464748494A4B4C4D4E4F","dek":"404142434445464748494A4B4C4D4E4F"}'
{
    printf '{"cards":['
    for k in $(seq 0 999); do
        [ "$k" = 0 ] || printf ','
        printf '{"card_id":"%s","subscriber":%s,"cin":"4F54534D4600%04d","mno":"orange","msisdn":"3370000%04d","imsi":"2080199999%04d","imei":"3569380399%04d","issuer":"bank1","aids":["A0000000041010"],"sd_aid":"A000000151000000","kvn":48,"keys":%s}' \
            "$([ "$k" = 0 ] && echo c0 || printf 'f%04d' "$k")" "$SUB" "$k" "$k" "$k" "$k" "$KEYS"
    done
    printf ']}'
} >"$W/cards.json"
api POST $C/cards "$OP_TOKEN" "@$W/cards.json" -H "Idempotency-Key: import"
expect_status 201 "import"
for r in 'velocity {"kind":"velocity","action":"lock","max":20,"window_s":60}' \
    'pins {"kind":"wrong_pin","action":"destroy","max":4,"window_s":300}' \
    'travel {"kind":"travel","action":"destroy","min_s":600}' \
    'blocked {"kind":"blocklist","action":"lock","merchants":["m-evil","m-fence"]}' \
    'lost {"kind":"lost_stolen","action":"destroy"}'; do
    api PUT "$C/rules/${r%% *}" "$OP_TOKEN" "${r#* }"
    expect_status 200 "rule ${r%% *}"
done

# --- 1. batched intake ----------------------------------------------------------
T0=$((($(date +%s) - 200000) * 1000))
awk -v n="$EVENTS" -v cards=1000 -v t0="$T0" -v card0=c0 -v fraud=-1 \
    -f "$ROOT/tests/cms/superv_events.awk" >"$W/events.ndjson"
split -l "$BATCH" -d -a 4 "$W/events.ndjson" "$W/batch."
ls "$W"/batch.* >"$W/batches"
poster() { # I: posts every POSTERS-th batch from the I-th
    local i=0 f
    while read -r f; do
        if [ $((i % POSTERS)) = "$1" ]; then
            curl -s -o "$f.out" -w '%{http_code}\n' -H "Authorization: Bearer $TP" \
                -H "Content-Type: application/x-ndjson" --data-binary "@$f" \
                "$TSMD_URL$C/events/batch" >>"$W/codes.$1"
        fi
        i=$((i + 1))
    done <"$W/batches"
}
start=$(date +%s%N)
pids=()
for p in $(seq 0 $((POSTERS - 1))); do
    poster "$p" &
    pids+=("$!")
done
for p in "${pids[@]}"; do wait "$p"; done
end=$(date +%s%N)
bad=$(cat "$W"/codes.* | grep -vc '^200$' || true)
[ "$bad" = 0 ] || fail "$bad batches not taken: $(head -c 300 "$(ls "$W"/batch.*.out | head -1)")"
taken=$(cat "$W"/batch.*.out | jq -s 'map(.events) | add')
[ "$taken" = "$EVENTS" ] || fail "events taken: $taken of $EVENTS"
eps=$(awk -v n="$EVENTS" -v ns=$((end - start)) 'BEGIN { printf "%d", n / (ns / 1e9) }')
echo "intake: $EVENTS events in batches of $BATCH by $POSTERS clients: $(((end - start) / 1000000)) ms, $eps events/s" >&2

# --- 2. decision latency -----------------------------------------------------------
AT=$((($(date +%s)) * 1000))
for k in $(seq 0 999); do
    card=$([ "$k" = 0 ] && echo c0 || printf 'f%04d' "$k")
    printf 'url = "%s%s/events"\nheader = "Authorization: Bearer %s"\nheader = "Content-Type: application/json"\ndata-binary = "{\\"id\\":\\"bad-%d\\",\\"card_id\\":\\"%s\\",\\"at\\":%d,\\"merchant\\":\\"m-evil\\"}"\nwrite-out = "%%{http_code} %%{time_total}\\n"\noutput = "/dev/null"\n' \
        "$TSMD_URL" "$C" "$TP" "$k" "$card" "$AT"
    [ "$k" = 999 ] || printf 'next\n'
done >"$W/decide.curl"
curl -s -K "$W/decide.curl" >"$W/decide.times"
[ "$(grep -c '^200 ' "$W/decide.times")" = 1000 ] || fail "decision requests: $(sort "$W/decide.times" | uniq -c | head)"
api GET "$C/decisions?limit=1000" "$OP_TOKEN"
nd=$(jq '[.items[] | select(.rule == "blocked")] | length' "$W/resp")
[ "$nd" = 1000 ] || fail "decisions: $nd of 1000"
read -r p50 p99 < <(awk '{ print $2 * 1000 }' "$W/decide.times" | sort -n |
    awk '{ v[NR] = $1 } END { i50 = int(NR * 0.50); i99 = int(NR * 0.99); if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1; printf "%.2f %.2f\n", v[i50], v[i99] }')
api GET /metrics "$OP_TOKEN"
expect_status 200 "metrics"
sp50=$(awk '$1 == "cms_superv_decision_p50_ms" { printf "%.2f", $2 }' "$W/resp")
sp99=$(awk '$1 == "cms_superv_decision_p99_ms" { printf "%.2f", $2 }' "$W/resp")
tsmd_stop
echo "events=$EVENTS batch=$BATCH posters=$POSTERS decisions=$nd"
echo "events_per_s=$eps decision_p50_ms=$sp50 decision_p99_ms=$sp99 request_p50_ms=$p50 request_p99_ms=$p99"
