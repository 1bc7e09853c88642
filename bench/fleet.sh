#!/usr/bin/env bash
# bench/fleet: fleetsim against mno at fleet scale (issue 10, acceptance
# bench/fleet).
#
# Run 1 (PostgreSQL, tests/pg/with_pg.sh): BENCH_NODES tsmd nodes (default 6:
# a process has 20,000 descriptors here, a node holds up to about 17,000
# streams) on one database; fleetsim enrols BENCH_DEVICES devices (default
# 100,000; worker processes of at most 9,000 devices, each bound to one node),
# registers them and opens every push stream, reads the nodes' VmRSS before
# (all enrolled, no stream) and after (every stream open and idle), then
# submits one SCP03 job per device (the guarded one-job handshake of
# client/otascp.h) and counts a job completed when the device's admin session
# ended and the submitter verified the card's answers (R-MACs).
# Run 2 (SQLite): one node, BENCH_SQLITE_DEVICES devices (default 19,000).
# Run 3 (SQLite, TLS): the same over HTTPS (a self-signed certificate for
# 127.0.0.1 made here), BENCH_TLS_DEVICES devices (default 19,000).
#
# Each run prints fleetsim's phase lines and its figures line; the last line is
#
#   devices=<n> nodes=<k> tsmd_rss_per_device_kib=<x> push_jobs_per_s=<y>
#   sqlite_devices=<n> sqlite_nodes=1 sqlite_tsmd_rss_per_device_kib=<x> sqlite_push_jobs_per_s=<y>
#   tls_devices=<n> tls_nodes=1 tls_tsmd_rss_per_device_kib=<x> tls_push_jobs_per_s=<y>
#
# (one line; a run skipped or failed shows zeros). Targets:
# tsmd_rss_per_device_kib <= 8 on plain streams and <= 16 on TLS,
# push_jobs_per_s >= 2000.
#
# Environment: OT_BUILD (build dir, default build-bench), BENCH_DEVICES,
# BENCH_NODES, BENCH_SQLITE_DEVICES, BENCH_TLS_DEVICES, BENCH_PG / BENCH_SQLITE /
# BENCH_TLS (0: skip that run), BENCH_INFLIGHT (fleetsim --inflight, default 64),
# BENCH_PG_OPTS (more PostgreSQL server options), BENCH_PG_STATS (a file: the
# PostgreSQL run writes its 40 costliest statements there; needs
# BENCH_PG_OPTS="-c shared_preload_libraries=pg_stat_statements").
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
DEVICES=${BENCH_DEVICES:-100000}
NODES=${BENCH_NODES:-6}
SQLITE_DEVICES=${BENCH_SQLITE_DEVICES:-19000}
TLS_DEVICES=${BENCH_TLS_DEVICES:-19000}
INFLIGHT=${BENCH_INFLIGHT:-64}

# shellcheck source=../tests/tsmd/lib.sh
. "$ROOT/tests/tsmd/lib.sh"
if [ ! -x "$TSMD" ] || [ ! -x "$FLEETSIM" ]; then
    fail "build tsmd and fleetsim first ($OT_BUILD)"
fi
command -v jq >/dev/null || fail "jq is missing (scripts/deps.sh installs it)"

# run DB NODES DEVICES TAG: prints fleetsim's output; the last line is its figures.
# TAG tls: HTTPS.
run() {
    local db=$1 nodes=$2 devices=$3 tag=$4 k port urls scheme=http pids=() tls=() ca=()
    tsmd_work_init "fleet-$tag"
    case $db in
    @PG) db=$OPENTSM_TEST_PG_URL ;;
    sqlite) db="sqlite:$TSMD_WORK/var/tsmd.db" ;;
    esac
    if [ "$tag" = tls ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$TSMD_WORK/key.pem" -out "$TSMD_WORK/cert.pem" -days 2 -subj "/CN=127.0.0.1" \
            -addext "subjectAltName=IP:127.0.0.1" -addext "extendedKeyUsage=serverAuth" \
            2>/dev/null || fail "server certificate"
        tls=("tls.cert=$TSMD_WORK/cert.pem" "tls.key=$TSMD_WORK/key.pem")
        ca=(--ca "$TSMD_WORK/cert.pem")
        scheme=https
        export CURL_CA_BUNDLE=$TSMD_WORK/cert.pem
    fi
    tsmd_config "$db" "log.level=error" "services.enabled=mno:orange" \
        "mno.orange.lease_s=3600" "mno.orange.heartbeat_s=1800" "db.pool=8" "${tls[@]}"
    TSMD_URL="$scheme://127.0.0.1:$TSMD_PORT"
    tsmd_bootstrap ops
    tsmd_start
    urls=$TSMD_URL
    pids+=(--tsmd-pid "$TSMD_PID")
    EXTRA_PIDS=()
    for ((k = 2; k <= nodes; k++)); do
        port=$(tsmd_free_port)
        (cd "$TSMD_WORK" && exec "$TSMD" --config "$TSMD_WORK/tsmd.ini" "${TSMD_SETS[@]}" \
            --set "http.listen=127.0.0.1:$port" >>"$TSMD_WORK/tsmd$k.log" 2>&1) &
        EXTRA_PIDS+=("$!")
        pids+=(--tsmd-pid "$!")
        for _ in $(seq 1 400); do
            [ "$(curl -s -o /dev/null -w '%{http_code}' "$scheme://127.0.0.1:$port/readyz" || true)" = 200 ] && break
            sleep 0.05
        done
        urls="$urls,$scheme://127.0.0.1:$port"
    done
    trap 'for p in "${EXTRA_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; tsmd_cleanup' EXIT
    SP=$(tsmd_principal service_provider bank)
    (
        umask 077
        printf '%s\n' "$OP_TOKEN" >"$TSMD_WORK/op.token"
        tsmd_token "$SP" >"$TSMD_WORK/sp.token"
    )
    local rc=0
    "$FLEETSIM" --url "$urls" "${ca[@]}" --instance orange --devices "$devices" --inflight "$INFLIGHT" \
        --op-token-file "$TSMD_WORK/op.token" --sp-token-file "$TSMD_WORK/sp.token" \
        "${pids[@]}" --idle-s 5 --phase-timeout-s 1800 --run-tag "$tag" \
        2>"$TSMD_WORK/fleetsim.err" | tee "$TSMD_WORK/fleet.out" || rc=$?
    [ "$rc" = 0 ] || note "fleetsim exit $rc: $(tail -5 "$TSMD_WORK/fleetsim.err")"
    if [ -n "${BENCH_PG_STATS:-}" ] && [ "$1" = @PG ]; then
        psql -X -q "$OPENTSM_TEST_PG_URL" -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" \
            -c "SELECT calls, round(total_exec_time) AS ms, rows,
            left(regexp_replace(query, '\s+', ' ', 'g'), 160) AS query FROM pg_stat_statements
            ORDER BY total_exec_time DESC LIMIT 40" >"$BENCH_PG_STATS" 2>&1 || true
    fi
    for p in "${EXTRA_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    tsmd_stop
    tail -n 1 "$TSMD_WORK/fleet.out" >"$RESULT"
}

if [ "${1:-}" = --inner ]; then
    # Run inside with_pg.sh (and in a subshell of its own for SQLite).
    RESULT=$3
    run "$2" "$4" "$5" "$6"
    exit 0
fi

OUT=$(mktemp -d "${TMPDIR:-/tmp}/ot-bench-fleet-XXXXXX")
trap 'rm -rf "$OUT"' EXIT
PG_LINE="devices=0 nodes=0 tsmd_rss_per_device_kib=0 push_jobs_per_s=0"
SQ_LINE=$PG_LINE
TLS_LINE=$PG_LINE
if [ "${BENCH_PG:-1}" != 0 ]; then
    OT_PG_OPTS="-c max_connections=200 ${BENCH_PG_OPTS:-}" "$ROOT/tests/pg/with_pg.sh" bash "$0" --inner \
        @PG "$OUT/pg" "$NODES" "$DEVICES" pg || note "the PostgreSQL run failed"
    [ -s "$OUT/pg" ] && PG_LINE=$(cat "$OUT/pg")
fi
if [ "${BENCH_SQLITE:-1}" != 0 ]; then
    (bash "$0" --inner sqlite "$OUT/sq" 1 "$SQLITE_DEVICES" sqlite) || note "the SQLite run failed"
    [ -s "$OUT/sq" ] && SQ_LINE=$(cat "$OUT/sq")
fi
if [ "${BENCH_TLS:-1}" != 0 ]; then
    (bash "$0" --inner sqlite "$OUT/tls" 1 "$TLS_DEVICES" tls) || note "the TLS run failed"
    [ -s "$OUT/tls" ] && TLS_LINE=$(cat "$OUT/tls")
fi
echo "$PG_LINE sqlite_${SQ_LINE// / sqlite_} tls_${TLS_LINE// / tls_}"
