#!/usr/bin/env bash
# bench/pay: the whole payment chain on loopback (issue 11): tsmd with pay
# (SQLite), a bank and a transit operator (spsim), and BENCH_CLIENTS
# payment clients (bench_pay_clients: each its own device principal, dongle
# and customer card, vse cards in process) paying BENCH_PAYMENTS payments in
# all, then BENCH_TOPUPS top-ups from one client. Each payment is the
# card's GENERATE AC, the dongle's VERIFY AC and PIN block, pay's checks,
# signature and forward, the bank's verification and clearing, and back.
# Last line:
#
#   payments_per_s=<n> p99_ms=<x.xx> topups_per_s=<n>
#
# Targets: p99 under 50 ms, at least 500 payments per second (the exit
# status is 0 either way: this is a measurement).
#
# Environment: OT_BUILD (build dir, default build-bench), BENCH_PAYMENTS
# (4000), BENCH_TOPUPS (200), BENCH_CLIENTS (8), BENCH_TSMD_THREADS (8).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${OT_BUILD:-build-bench}
case $B in /*) ;; *) B=$ROOT/$B ;; esac
TSMD=$B/src/bin/tsmd
SPSIM=$B/src/bin/spsim
CLIENTS=$B/bench/bench_pay_clients
PAYMENTS=${BENCH_PAYMENTS:-4000}
TOPUPS=${BENCH_TOPUPS:-200}
NCLIENTS=${BENCH_CLIENTS:-8}
for p in "$TSMD" "$SPSIM" "$CLIENTS"; do
    [ -x "$p" ] || { echo "bench/pay: $p is missing (make bench-build)" >&2; exit 1; }
done
# shellcheck source=../tests/tsmd/lib.sh
. "$ROOT/tests/tsmd/lib.sh"
# shellcheck source=../tests/pay/lib.sh
. "$ROOT/tests/pay/lib.sh"

tsmd_work_init bench-pay
tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "log.level=warn" "services.enabled=pay" \
    "http.threads=${BENCH_TSMD_THREADS:-8}"
tsmd_bootstrap ops
tsmd_start
pay_world
TOKENS=()
for i in $(seq 0 $((NCLIENTS - 1))); do
    pan=$(printf '54133300890100%02d' "$i")
    curl -sf -o /dev/null "$URL_bank_a/spsim/v1/cards" -H 'Content-Type: application/json' \
        --data-binary '{"pan":"'"$pan"'","pin":"1234","balance":1000000000,"currency":"EUR"}' ||
        fail "card $pan"
    id=$(tsmd_principal device "bench-$i")
    TOKENS+=("$(tsmd_token "$id")")
done
"$CLIENTS" "$TSMD_URL" "$PAYMENTS" "$TOPUPS" "${TOKENS[@]}" | tee "$TSMD_WORK/bench.out"
settled "$URL_bank_a" >/dev/null
settled "$URL_metro" >/dev/null
tsmd_stop
tail -n 1 "$TSMD_WORK/bench.out"
