#!/usr/bin/env bash
# bench/api: the authenticated SE lookup by MSISDN against nginx serving a
# static file of the same size (issue 4, acceptance 5).
#
# For each back end (SQLite, then PostgreSQL through tests/pg/with_pg.sh):
# start tsmd on loopback (plain HTTP), import BENCH_ROWS secure elements
# through the API (CSV, in chunks), issue a service provider's token, and run
# wrk (bench/api_wrk.lua: Authorization header + a random MSISDN of the
# imported set per request) against GET /tsm/v1/secure-elements?msisdn=...
# nginx (Debian, own config in a temp dir, loopback, plain HTTP like tsmd)
# serves a static file of the lookup's body size and gets the same wrk run,
# with the same script and header. The last line is
#
#   tsmd_rps=<n> nginx_rps=<n> ratio=<x.xx> p99_ms=<x.xx> pg_tsmd_rps=<n> pg_ratio=<x.xx> pg_p99_ms=<x.xx>
#
# followed by the write row (issue 8 point 6):
#
#   write_rps=<n> write_noaudit_rps=<n> audit_ratio=<x.xx> pg_write_rps=<n>
#   pg_write_noaudit_rps=<n> pg_audit_ratio=<x.xx>
#
# authenticated state-changing POSTs at BENCH_CONNS connections, each its own
# transaction, on the host's test service (testsvc, enabled for the bench):
# POST /testsvc/v1/events writes one row and its audit row per request;
# POST /testsvc/v1/events-coarse is the same write on a route declared
# audited by its service at a coarser level (one audit row per batch of
# events), i.e. "without audit" per request. The two alternate in
# BENCH_WRITE_ROUNDS rounds of BENCH_WRITE_SECONDS each and their sums are
# compared (audit_ratio = audited / unaudited rate).
#
# Targets: ratio >= 0.5 and p99 < 5 ms on both back ends, audit_ratio >= 0.7
# on both (the exit status is 0 either way: this is a measurement;
# BENCH_STRICT=1 makes a miss exit 1).
#
# Environment: OT_BUILD (build dir, default build-bench), BENCH_ROWS (1000000),
# BENCH_CHUNK (rows per import request, 100000), BENCH_SECONDS (10),
# BENCH_CONNS (32), BENCH_THREADS (2), BENCH_PG (1: also PostgreSQL; 0: skip),
# BENCH_WRITE_SECONDS (5), BENCH_WRITE_ROUNDS (2),
# BENCH_TSMD_THREADS (tsmd workers, default: number of CPUs), BENCH_NOCACHE (1:
# also run the lookup with tsm.cache_mb=0 and log its figures; 0: skip).
#
# tsmd serves lookups from its SE cache (docs/internals/lookup-cache.md),
# filled here by the import (write-through); the log shows the cache's
# counters after the run and, with BENCH_NOCACHE=1, the storage-only rate.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OT_BUILD=${OT_BUILD:-build-bench}
case $OT_BUILD in
/*) ;;
*) OT_BUILD=$ROOT/$OT_BUILD ;;
esac
TSMD=${TSMD:-$OT_BUILD/src/bin/tsmd}
TSMCTL=${TSMCTL:-$OT_BUILD/src/bin/tsmctl}
ROWS=${BENCH_ROWS:-1000000}
CHUNK=${BENCH_CHUNK:-100000}
SECONDS_RUN=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-32}
THREADS=${BENCH_THREADS:-2}
WITH_PG=${BENCH_PG:-1}
TSMD_THREADS=${BENCH_TSMD_THREADS:-$(nproc)}
NOCACHE=${BENCH_NOCACHE:-1}
WRITE_SECONDS=${BENCH_WRITE_SECONDS:-5}
WRITE_ROUNDS=${BENCH_WRITE_ROUNDS:-2}
MSISDN_BASE=491510000000
IMSI_BASE=262010000000000
LUA=$ROOT/bench/api_wrk.lua

# shellcheck source=../tests/tsmd/lib.sh
. "$ROOT/tests/tsmd/lib.sh"

for t in wrk nginx curl jq awk; do
    command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
done
[ -x "$TSMD" ] || fail "no tsmd at $TSMD (build first: make bench-build)"

NGINX_PID=
bench_cleanup_hook() {
    if [ -n "$NGINX_PID" ]; then
        kill -QUIT "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
        NGINX_PID=
    fi
}
TSMD_CLEANUP_HOOK=bench_cleanup_hook # called by tsmd_cleanup (lib.sh)
export TSMD_CLEANUP_HOOK
tsmd_work_init bench-api

# --- the manufacturer's file: ROWS rows, split into CSV chunks with a header
gen_rows() {
    local t0=$SECONDS
    mkdir -p "$TSMD_WORK/chunks"
    awk -v n="$ROWS" -v chunk="$CHUNK" -v dir="$TSMD_WORK/chunks" \
        -v mb="$MSISDN_BASE" -v ib="$IMSI_BASE" 'BEGIN {
        hdr = "cin,se_type,mno,msisdn,imsi,profile_id,gp_version,jc_version,cert_level,expiry,free_memory,master_key_index"
        split("UICC eSE microSD", types, " ")
        for (i = 0; i < n; i++) {
            if (i % chunk == 0) {
                if (f != "") close(f)
                f = sprintf("%s/%04d.csv", dir, i / chunk)
                print hdr > f
            }
            printf "8949%016X,%s,mno-%d,%.0f,%.0f,prof-%d,2.3.1,3.0.5,EAL5+,2031-12-31,%d,%d\n",
                i, types[i % 3 + 1], i % 4, mb + i, ib + i, i % 16, 65536 + i % 1000, i % 8 > f
        }
        close(f)
    }'
    note "generated $ROWS rows in $((SECONDS - t0)) s ($(du -sh "$TSMD_WORK/chunks" | cut -f1))"
}

# --- tsmd phase: sets R_RPS, R_P99 and R_SIZE (the lookup's body in bytes)
run_tsmd() {
    local label=$1 db=$2 f t0 t1 imported=0 n sp_id sp_token out figs
    tsmd_config "$db" "http.threads=$TSMD_THREADS" "http.max_body=67108864" \
        "ratelimit.per_s=0" "log.level=warn" "services.enabled=tsm, testsvc"
    tsmd_start
    tsmd_bootstrap bench-operator
    t0=$(date +%s.%N)
    for f in "$TSMD_WORK"/chunks/*.csv; do
        api POST /tsm/v1/secure-elements:import "$OP_TOKEN" - \
            -H "Content-Type: text/csv" -H "Idempotency-Key: import-$(basename "$f")" \
            --data-binary "@$f" --max-time 600
        expect_status 200 "$label import of $(basename "$f")"
        n=$(jq -r '.imported + .unchanged' "$TSMD_WORK/resp")
        imported=$((imported + n))
        [ "$(jq -r .rejected_count "$TSMD_WORK/resp")" = 0 ] ||
            fail "$label import rejected rows: $(head -c 400 "$TSMD_WORK/resp")"
    done
    t1=$(date +%s.%N)
    [ "$imported" -eq "$ROWS" ] || fail "$label imported $imported rows, want $ROWS"
    note "$label: imported $imported SEs in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s" \
        "($(awk -v a="$t0" -v b="$t1" -v n="$imported" 'BEGIN{printf "%.0f", n/(b-a)}') rows/s)"
    sp_id=$(tsmd_principal service_provider bench-sp)
    sp_token=$(tsmd_token "$sp_id")
    api GET "/tsm/v1/secure-elements?msisdn=$((MSISDN_BASE + ROWS / 2))" "$sp_token"
    expect_status 200 "$label lookup"
    R_SIZE=$(stat -c %s "$TSMD_WORK/resp")
    cp "$TSMD_WORK/resp" "$TSMD_WORK/sample-$label.json"
    out=$(run_wrk "$TSMD_URL" "/tsm/v1/secure-elements?msisdn=" "$sp_token")
    note "$label cache after the run: $(cache_figures)"
    figs=$(wrk_figures "$label tsmd" "$out")
    read -r R_RPS R_P99 <<<"$figs"
    run_writes "$label" "$sp_token"
    if [ "$NOCACHE" = 1 ]; then
        # For the record: the same run with every lookup reading storage.
        tsmd_stop
        TSMD_SETS+=(--set tsm.cache_mb=0)
        tsmd_start
        out=$(run_wrk "$TSMD_URL" "/tsm/v1/secure-elements?msisdn=" "$sp_token")
        figs=$(wrk_figures "$label tsmd without cache" "$out")
        note "$label without cache (tsm.cache_mb=0): rps p99_ms = $figs"
    fi
    tsmd_stop
}

# The lookup cache's counters from /metrics, one line.
cache_figures() {
    curl -s --max-time 5 -H "Authorization: Bearer $OP_TOKEN" "$TSMD_URL/metrics" | awk '
        $1 ~ /^tsm_se_cache_/ { sub(/^tsm_se_cache_/, "", $1); printf "%s=%s ", $1, $2 }
        END { print "" }'
}

# run_writes LABEL TOKEN: the write row on the running tsmd; sets W_RPS (every
# POST audited) and WN_RPS (the same POST on the coarse-audited route), the
# mean of WRITE_ROUNDS alternating runs each.
run_writes() {
    local label=$1 token=$2 r out figs rps p99 sum_a=0 sum_n=0 path
    for path in /testsvc/v1/events /testsvc/v1/events-coarse; do
        api POST "$path" "$token" '{"name":"bench"}'
        expect_status 201 "$label $path"
    done
    for r in $(seq 1 "$WRITE_ROUNDS"); do
        for path in /testsvc/v1/events /testsvc/v1/events-coarse; do
            note "load average before the write run: $(cut -d' ' -f1-3 /proc/loadavg)"
            out=$(BENCH_METHOD=POST BENCH_BODY='{"name":"bench"}' BENCH_PATH=$path \
                BENCH_TOKEN=$token timeout $((WRITE_SECONDS + 30)) wrk -t"$THREADS" -c"$CONNS" \
                -d"${WRITE_SECONDS}s" --timeout 5s -s "$LUA" "$TSMD_URL")
            figs=$(wrk_figures "$label write $path round $r" "$out")
            read -r rps p99 <<<"$figs"
            if [ "$path" = /testsvc/v1/events ]; then
                sum_a=$((sum_a + rps))
            else
                sum_n=$((sum_n + rps))
            fi
        done
    done
    W_RPS=$((sum_a / WRITE_ROUNDS))
    WN_RPS=$((sum_n / WRITE_ROUNDS))
    note "$label writes: audited $W_RPS rps, coarse-audited $WN_RPS rps" \
        "(audit ratio $(ratio "$W_RPS" "$WN_RPS"))"
}

# run_wrk URL PATH_PREFIX TOKEN: a 2 s warm-up, then the measured run. The
# load average goes to the log: other work on the machine skews the figures.
run_wrk() {
    local url=$1 prefix=$2 token=$3
    note "load average before wrk: $(cut -d' ' -f1-3 /proc/loadavg)"
    BENCH_PATH=$prefix BENCH_TOKEN=$token BENCH_BASE=$MSISDN_BASE BENCH_COUNT=$ROWS \
        timeout 30 wrk -t"$THREADS" -c"$CONNS" -d2s -s "$LUA" "$url" >/dev/null
    BENCH_PATH=$prefix BENCH_TOKEN=$token BENCH_BASE=$MSISDN_BASE BENCH_COUNT=$ROWS \
        timeout $((SECONDS_RUN + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${SECONDS_RUN}s" \
        --timeout 5s -s "$LUA" "$url"
}

# wrk_figures LABEL WRK_OUTPUT: prints "rps p99_ms" from the Lua summary line; a run
# with any non-2xx answer or socket error is refused.
wrk_figures() {
    local label=$1 out=$2 line
    line=$(printf '%s\n' "$out" | grep '^wrk_result ' | tail -n 1)
    [ -n "$line" ] || fail "$label: no wrk summary: $out"
    note "$label: $line"
    printf '%s\n' "$line" | awk -v label="$label" '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        bad = v["non2xx"] + v["connect"] + v["read"] + v["write"] + v["timeout"]
        if (bad > 0 || v["requests"] == 0) {
            printf "FAIL: %s: %d non-2xx answers or socket errors in %d requests\n",
                label, bad, v["requests"] > "/dev/stderr"
            exit 1
        }
        printf "%.0f %.2f\n", v["rps"], v["p99_us"] / 1000
    }'
}

# --- nginx phase: a static file of SIZE bytes; sets R_RPS and R_P99
run_nginx() {
    local size=$1 sample=$2 port out figs
    mkdir -p "$TSMD_WORK/nginx/www" "$TSMD_WORK/nginx/tmp"
    chmod 755 "$TSMD_WORK/nginx" "$TSMD_WORK/nginx/www"
    # The lookup's own answer, so the bytes on the wire match too.
    cp "$sample" "$TSMD_WORK/nginx/www/se.json"
    [ "$(stat -c %s "$TSMD_WORK/nginx/www/se.json")" -eq "$size" ] || fail "nginx file size"
    chmod 644 "$TSMD_WORK/nginx/www/se.json"
    port=$(tsmd_free_port)
    cat >"$TSMD_WORK/nginx/nginx.conf" <<EOF
worker_processes $TSMD_THREADS;
daemon off;
master_process on;
pid $TSMD_WORK/nginx/nginx.pid;
error_log $TSMD_WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $TSMD_WORK/nginx/tmp/body;
    proxy_temp_path $TSMD_WORK/nginx/tmp/proxy;
    fastcgi_temp_path $TSMD_WORK/nginx/tmp/fastcgi;
    uwsgi_temp_path $TSMD_WORK/nginx/tmp/uwsgi;
    scgi_temp_path $TSMD_WORK/nginx/tmp/scgi;
    types { }
    default_type application/json;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$port;
        root $TSMD_WORK/nginx/www;
    }
}
EOF
    nginx -p "$TSMD_WORK/nginx" -c "$TSMD_WORK/nginx/nginx.conf" 2>>"$TSMD_WORK/nginx/error.log" &
    NGINX_PID=$!
    for _ in $(seq 1 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/se.json")" = 200 ] && break
        kill -0 "$NGINX_PID" 2>/dev/null || fail "nginx exited: $(cat "$TSMD_WORK/nginx/error.log")"
        sleep 0.05
    done
    out=$(run_wrk "http://127.0.0.1:$port" "/se.json?msisdn=" "not-checked-by-nginx")
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=
    figs=$(wrk_figures nginx "$out")
    read -r R_RPS R_P99 <<<"$figs"
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'
}

# The PostgreSQL phase runs as a child under tests/pg/with_pg.sh (which owns
# the server's life): BENCH_PHASE=pg, the chunks of the parent, and the
# figures on the last line of its stdout.
if [ "${BENCH_PHASE:-}" = pg ]; then
    [ -n "${OPENTSM_TEST_PG_URL:-}" ] || fail "BENCH_PHASE=pg without OPENTSM_TEST_PG_URL"
    ln -s "$BENCH_CHUNKS" "$TSMD_WORK/chunks"
    run_tsmd pg "$OPENTSM_TEST_PG_URL"
    echo "$R_RPS $R_P99 $R_SIZE $W_RPS $WN_RPS"
    exit 0
fi

gen_rows

run_tsmd sqlite "sqlite:$TSMD_WORK/var/tsmd.db"
S_RPS=$R_RPS S_P99=$R_P99 S_SIZE=$R_SIZE S_W=$W_RPS S_WN=$WN_RPS
rm -f "$TSMD_WORK"/var/tsmd.db*
run_nginx "$S_SIZE" "$TSMD_WORK/sample-sqlite.json"
N_RPS=$R_RPS N_P99=$R_P99
note "nginx: $N_RPS rps, p99 $N_P99 ms (file of $S_SIZE bytes)"

PG_PART=
if [ "$WITH_PG" = 1 ]; then
    [ -x "$ROOT/tests/pg/with_pg.sh" ] || fail "tests/pg/with_pg.sh is missing (BENCH_PG=0 skips PostgreSQL)"
    PG_OUT=$(BENCH_PHASE=pg BENCH_CHUNKS="$TSMD_WORK/chunks" TSMD="$TSMD" \
        OT_PG_OPTS="${OT_PG_OPTS:--c shared_buffers=512MB -c synchronous_commit=on}" \
        "$ROOT/tests/pg/with_pg.sh" bash "$ROOT/bench/api.sh") || fail "the PostgreSQL phase failed"
    read -r P_RPS P_P99 P_SIZE P_W P_WN <<<"$(printf '%s\n' "$PG_OUT" | tail -n 1)"
    [ "$P_SIZE" = "$S_SIZE" ] || note "the pg answer is $P_SIZE bytes, sqlite's $S_SIZE"
    PG_PART=" pg_tsmd_rps=$P_RPS pg_ratio=$(ratio "$P_RPS" "$N_RPS") pg_p99_ms=$P_P99"
fi
WRITE_PART=" write_rps=$S_W write_noaudit_rps=$S_WN audit_ratio=$(ratio "$S_W" "$S_WN")"
if [ -n "$PG_PART" ]; then
    WRITE_PART="$WRITE_PART pg_write_rps=$P_W pg_write_noaudit_rps=$P_WN"
    WRITE_PART="$WRITE_PART pg_audit_ratio=$(ratio "$P_W" "$P_WN")"
fi

S_RATIO=$(ratio "$S_RPS" "$N_RPS")
MISSED=$(awk -v r="$S_RATIO" -v p="$S_P99" -v pr="${PG_PART:+$(ratio "$P_RPS" "$N_RPS")}" \
    -v pp="${PG_PART:+$P_P99}" 'BEGIN {
        m = ""
        if (r < 0.5) m = m " sqlite-ratio"
        if (p >= 5) m = m " sqlite-p99"
        if (pr != "" && pr < 0.5) m = m " pg-ratio"
        if (pp != "" && pp >= 5) m = m " pg-p99"
        print m }')
MISSED="$MISSED$(awk -v a="$(ratio "$S_W" "$S_WN")" -v pa="${PG_PART:+$(ratio "$P_W" "$P_WN")}" \
    'BEGIN { m = ""; if (a < 0.7) m = m " audit-ratio"; if (pa != "" && pa < 0.7) m = m " pg-audit-ratio"; print m }')"
[ -z "$MISSED" ] || note "targets missed (ratio >= 0.5, p99 < 5 ms, audit ratio >= 0.7):$MISSED"
echo "tsmd_rps=$S_RPS nginx_rps=$N_RPS ratio=$S_RATIO p99_ms=$S_P99$PG_PART$WRITE_PART"
if [ -n "$MISSED" ] && [ "${BENCH_STRICT:-0}" = 1 ]; then
    exit 1
fi
