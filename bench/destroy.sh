#!/usr/bin/env bash
# bench/destroy: cms destroys at fleet scale (issue 13, acceptance
# bench/destroy), fleetsim's devices as the phones (docs/fleetsim.md "cms").
#
# BENCH_NODES tsmd nodes (default 6: a process has 20,000 descriptors here)
# with cms and mno:orange on one PostgreSQL (tests/pg/with_pg.sh), each node's
# cms driver reaching mno through its own node; mno's sweep_ms at its default
# (500: cms's waits and the agents' held POSTs are answered on the job's
# progress, across nodes too, not by the sweep's timer). fleetsim enrols BENCH_CARDS
# devices (default 100,000) and imports their cards into cms (one subscriber;
# cards are vse in memory with R-MAC, real SCP03), brings online all but
# BENCH_OFFLINE_PCT of them (default 50), then
#   1. destroys BENCH_SERIAL cards (default 200) of online phones one at a
#      time: from the subscriber's request to cms's `destroyed` (p50, p99);
#   2. asks for every other card (BENCH_INFLIGHT requests in flight per
#      worker): the online phones' cards are destroyed (online_all_s: first
#      request to the last of them seen destroyed in cms), the others wait
#      (awaiting_destroy in cms, their jobs queued in mno);
#   3. brings the phones that were off online: offline_after_register_s is
#      from their registrations to the last of their cards destroyed.
# Every card counts the DESTROY commands it receives: fleetsim's figures say
# how many were destroyed, executed and received twice.
#
# Last line (fleetsim's):
#   online_p50_ms= online_p99_ms= online_all_s= offline_after_register_s= cards= offline= destroyed= executed= duplicates= nodes=
# Targets: online_p99_ms < 50, online_all_s < 60, offline_after_register_s < 60.
#
# Environment: OT_BUILD (build dir, default build-bench), BENCH_CARDS,
# BENCH_NODES, BENCH_OFFLINE_PCT, BENCH_SERIAL, BENCH_INFLIGHT,
# BENCH_TICK_MS (cms.tick_ms, default 10), BENCH_WORKERS (cms.workers, default 8),
# BENCH_TIMEOUT_S (per phase, 1800), BENCH_LOG_LEVEL (tsmd's, default error;
# with TSMD_KEEP=1 the logs and each node's /metrics (requests by route)
# stay for a look at where a destroy waits), BENCH_PG_OPTS (more PostgreSQL
# server options), BENCH_PG_STATS (a file: the statements by total time and
# by calls; needs BENCH_PG_OPTS="-c shared_preload_libraries=pg_stat_statements").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OT_BUILD=${OT_BUILD:-build-bench}
case $OT_BUILD in
/*) ;;
*) OT_BUILD=$ROOT/$OT_BUILD ;;
esac
export OT_BUILD
TSMD=$OT_BUILD/src/bin/tsmd
FLEETSIM=$OT_BUILD/src/bin/fleetsim
CARDS=${BENCH_CARDS:-100000}
NODES=${BENCH_NODES:-6}
OFFLINE_PCT=${BENCH_OFFLINE_PCT:-50}
SERIAL=${BENCH_SERIAL:-200}
INFLIGHT=${BENCH_INFLIGHT:-64}
TICK_MS=${BENCH_TICK_MS:-10}
WORKERS=${BENCH_WORKERS:-8}
TIMEOUT_S=${BENCH_TIMEOUT_S:-1800}

# shellcheck source=../tests/tsmd/lib.sh
. "$ROOT/tests/tsmd/lib.sh"
if [ ! -x "$TSMD" ] || [ ! -x "$FLEETSIM" ]; then
    fail "build tsmd and fleetsim first ($OT_BUILD)"
fi
command -v jq >/dev/null || fail "jq is missing (scripts/deps.sh installs it)"

if [ "${1:-}" = --inner ]; then
    # Inside with_pg.sh.
    RESULT=$2
    tsmd_work_init destroy
    W=$TSMD_WORK
    tsmd_config "$OPENTSM_TEST_PG_URL" "log.level=${BENCH_LOG_LEVEL:-error}" "services.enabled=cms, mno:orange" \
        "mno.orange.lease_s=3600" "mno.orange.heartbeat_s=1800" "mno.orange.sweep_ms=500" \
        "mno.orange.backoff_s=1" "cms.tick_ms=$TICK_MS" "cms.workers=$WORKERS" "cms.backoff_s=1" "ratelimit.per_s=0" \
        "db.pool=8"
    tsmd_bootstrap ops
    export OPENTSM_CMS_MNO_TOKEN=$OP_TOKEN
    BASE_SETS=("${TSMD_SETS[@]}")
    TSMD_SETS=("${BASE_SETS[@]}" --set "cms.mno_url=$TSMD_URL")
    tsmd_start
    urls=$TSMD_URL
    EXTRA_PIDS=()
    for ((k = 2; k <= NODES; k++)); do
        port=$(tsmd_free_port)
        (cd "$W" && exec "$TSMD" --config "$W/tsmd.ini" "${BASE_SETS[@]}" \
            --set "http.listen=127.0.0.1:$port" --set "cms.mno_url=http://127.0.0.1:$port" \
            >>"$W/tsmd$k.log" 2>&1) &
        EXTRA_PIDS+=("$!")
        for _ in $(seq 1 400); do
            [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)" = 200 ] && break
            sleep 0.05
        done
        urls="$urls,http://127.0.0.1:$port"
    done
    trap 'for p in "${EXTRA_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; tsmd_cleanup' EXIT
    tsmd_fleet_tokens fleet-owner
    SUB=$FLEET_SUB
    rc=0
    "$FLEETSIM" --url "$urls" --instance orange --devices "$CARDS" --inflight "$INFLIGHT" \
        --op-token-file "$W/op.token" --sp-token-file "$W/sp.token" \
        --sub-token-file "$W/sub.token" --cms-subscriber "$SUB" --offline-pct "$OFFLINE_PCT" \
        --destroy-serial "$SERIAL" --idle-s 1 --phase-timeout-s "$TIMEOUT_S" --run-tag destroy \
        2>"$W/fleetsim.err" | tee "$W/fleet.out" || rc=$?
    [ "$rc" = 0 ] || note "fleetsim exit $rc: $(grep -v '^$' "$W/fleetsim.err" | tail -5)"
    if [ -n "${BENCH_PG_STATS:-}" ]; then
        psql -X -q "$OPENTSM_TEST_PG_URL" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" \
            -c "SELECT calls, round(total_exec_time) AS ms, rows,
            left(regexp_replace(query, '\s+', ' ', 'g'), 160) AS query FROM pg_stat_statements
            ORDER BY total_exec_time DESC LIMIT 40" \
            -c "SELECT calls, round(total_exec_time) AS ms,
            left(regexp_replace(query, '\s+', ' ', 'g'), 160) AS query FROM pg_stat_statements
            ORDER BY calls DESC LIMIT 60" >"$BENCH_PG_STATS" 2>&1 || true
    fi
    # Each node's counters (requests by route, ...), kept with TSMD_KEEP=1.
    k=0
    for u in ${urls//,/ }; do
        k=$((k + 1))
        curl -s -H "Authorization: Bearer $OP_TOKEN" "$u/metrics" >"$W/metrics$k.txt" || true
    done
    for p in "${EXTRA_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    tsmd_stop
    tail -n 1 "$W/fleet.out" >"$RESULT"
    exit 0
fi

OUT=$(mktemp -d "${TMPDIR:-/tmp}/ot-bench-destroy-XXXXXX")
trap 'rm -rf "$OUT"' EXIT
LINE="online_p50_ms=0 online_p99_ms=0 online_all_s=0 offline_after_register_s=0 cards=$CARDS offline=0 destroyed=0 executed=0 duplicates=0 nodes=$NODES"
OT_PG_OPTS="-c max_connections=200 ${BENCH_PG_OPTS:-}" "$ROOT/tests/pg/with_pg.sh" bash "$0" --inner "$OUT/line" ||
    note "the run failed"
[ -s "$OUT/line" ] && LINE=$(cat "$OUT/line")
echo "$LINE"
