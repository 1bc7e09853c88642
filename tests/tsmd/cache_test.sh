#!/usr/bin/env bash
# The SE lookup cache seen from outside (tsm.cache_mb, tsm.cache_warm):
#   - lookups after an import are served from memory (/metrics hit counter);
#   - a restarted tsmd warms the cache from storage before the first lookup;
#   - tsm.cache_mb=0 turns it off (lookups still right, no hits);
#   - PostgreSQL only: a change made by "another node" (straight SQL on the
#     server) reaches this node's cache through LISTEN/NOTIFY: the next
#     lookups answer the new data, a deleted SE answers 404; after the
#     listener's connection is killed tsmd listens again and keeps answering
#     current data.
#
# usage: cache_test.sh TSMD sqlite|pg   (pg: run under tests/pg/with_pg.sh)
set -euo pipefail

TSMD=$1
MODE=$2
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

tsmd_work_init cache
case $MODE in
sqlite) DB="sqlite:$TSMD_WORK/var/tsmd.db" ;;
pg)
    [ -n "${OPENTSM_TEST_PG_URL:-}" ] || fail "pg mode needs OPENTSM_TEST_PG_URL (tests/pg/with_pg.sh)"
    command -v psql >/dev/null || fail "psql is missing (scripts/deps.sh installs postgresql)"
    DB=$OPENTSM_TEST_PG_URL
    ;;
*) fail "usage: cache_test.sh TSMD sqlite|pg" ;;
esac

# metric NAME: its value on /metrics (0 when absent).
metric() {
    curl -s --max-time 5 -H "Authorization: Bearer $OP_TOKEN" "$TSMD_URL/metrics" | awk -v n="$1" '$1 == n { v = $2 } END { print v + 0 }'
}

# lookup MSISDN: GET by MSISDN as the SP; body in $TSMD_WORK/resp.
lookup() {
    api GET "/tsm/v1/secure-elements?msisdn=$1" "$SP_TOKEN"
}

sql() {
    psql -X -q -t -A -v ON_ERROR_STOP=1 "$OPENTSM_TEST_PG_URL" -c "$1"
}

# until_lookup MSISDN STATUS JQ_TEST: polls (5 s) until the lookup answers
# STATUS and, for 200, the body passes the jq test.
until_lookup() {
    local i
    for i in $(seq 1 100); do
        lookup "$1"
        if [ "$API_STATUS" = "$2" ] && { [ "$2" != 200 ] || jq -e "$3" "$TSMD_WORK/resp" >/dev/null; }; then
            return 0
        fi
        sleep 0.05
    done
    fail "lookup of $1: HTTP $API_STATUS $(head -c 300 "$TSMD_WORK/resp"), wanted $2 with $3"
}

tsmd_config "$DB" "log.level=info"
tsmd_start
tsmd_bootstrap cache-operator
cat >"$TSMD_WORK/ses.csv" <<EOF
cin,se_type,mno,msisdn,imsi,profile_id,gp_version,jc_version,cert_level,expiry,free_memory,master_key_index
89490000000000000A01,UICC,mno-1,491700000001,262010000000001,prof-a,2.3.1,3.0.5,EAL5+,2031-12-31,65536,1
89490000000000000A02,eSE,mno-1,491700000002,262010000000002,prof-b,2.3.1,3.0.5,EAL5+,2031-12-31,65536,1
89490000000000000A03,UICC,mno-2,491700000003,262010000000003,prof-c,2.3.1,3.0.5,EAL5+,2031-12-31,65536,1
EOF
api POST /tsm/v1/secure-elements:import "$OP_TOKEN" - -H "Content-Type: text/csv" \
    -H "Idempotency-Key: cache-import" --data-binary "@$TSMD_WORK/ses.csv"
expect_status 200 "import"
[ "$(jq -r .imported "$TSMD_WORK/resp")" = 3 ] || fail "import: $(cat "$TSMD_WORK/resp")"
sp=$(tsmd_principal service_provider cache-sp)
SP_TOKEN=$(tsmd_token "$sp")

# 1. Repeated lookups are answered from memory, with the stored data.
for _ in 1 2 3; do
    lookup 491700000001
    expect_status 200 "lookup"
done
[ "$(jq -r .profile_id "$TSMD_WORK/resp")" = prof-a ] || fail "lookup body: $(cat "$TSMD_WORK/resp")"
hits=$(metric tsm_se_cache_hits_total)
[ "$hits" -ge 2 ] || fail "3 lookups of one SE gave $hits cache hits"
[ "$(metric tsm_se_cache_entries)" -ge 1 ] || fail "no cache entries on /metrics"
note "after 3 lookups: hits=$hits misses=$(metric tsm_se_cache_misses_total)"

# 2. A restart warms the cache from storage: the first lookup is a hit.
tsmd_stop
tsmd_start
for _ in $(seq 1 100); do
    grep -q "SE cache warm: 3 records" "$TSMD_WORK/tsmd.log" && break
    sleep 0.05
done
grep -q "SE cache warm: 3 records" "$TSMD_WORK/tsmd.log" || fail "no warm-up of 3 records in the log"
lookup 491700000003
expect_status 200 "lookup after restart"
[ "$(metric tsm_se_cache_hits_total)" = 1 ] || fail "first lookup after warm-up was not a hit"
[ "$(metric tsm_se_cache_misses_total)" = 0 ] || fail "first lookup after warm-up read storage"

if [ "$MODE" = pg ]; then
    # 3. Another node changes an SE: this node's next lookups see it.
    lookup 491700000002
    expect_status 200 "lookup before the change"
    sql "UPDATE tsm_secure_elements SET profile_id = 'prof-b2' WHERE cin = '89490000000000000A02'"
    until_lookup 491700000002 200 '.profile_id == "prof-b2"'
    # An MSISDN moved from one SE to another, in one statement pair.
    sql "UPDATE tsm_secure_elements SET msisdn = NULL WHERE cin = '89490000000000000A01';
         UPDATE tsm_secure_elements SET msisdn = '491700000001' WHERE cin = '89490000000000000A03'"
    until_lookup 491700000001 200 '.cin == "89490000000000000A03"'
    sql "DELETE FROM tsm_secure_elements WHERE cin = '89490000000000000A02'"
    until_lookup 491700000002 404 .
    # 4. The listener's connection dies: tsmd listens again and the cache
    # keeps following changes.
    killed=$(sql "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE query = 'LISTEN tsm_se') AS k")
    [ "$killed" = 1 ] || fail "expected one listener backend, killed $killed"
    for _ in $(seq 1 100); do
        [ "$(sql "SELECT COUNT(*) FROM pg_stat_activity WHERE query = 'LISTEN tsm_se'")" = 1 ] && break
        sleep 0.05
    done
    until_lookup 491700000001 200 '.cin == "89490000000000000A03"'
    sql "UPDATE tsm_secure_elements SET profile_id = 'prof-c2' WHERE cin = '89490000000000000A03'"
    until_lookup 491700000001 200 '.profile_id == "prof-c2"'
    grep -q "connection lost" "$TSMD_WORK/tsmd.log" || fail "the listener's loss is not in the log"
    # TRUNCATE fires no row trigger: a statement trigger clears every cache.
    sql "TRUNCATE tsm_secure_elements CASCADE"
    until_lookup 491700000001 404 .
    until_lookup 491700000003 404 .
    api POST /tsm/v1/secure-elements:import "$OP_TOKEN" - -H "Content-Type: text/csv" \
        -H "Idempotency-Key: cache-reimport" --data-binary "@$TSMD_WORK/ses.csv"
    expect_status 200 "import after truncate"
fi

# 5. tsm.cache_mb=0: no cache, same answers.
tsmd_stop
TSMD_SETS+=(--set tsm.cache_mb=0)
tsmd_start
last=491700000003
lookup "$last"
expect_status 200 "lookup without cache"
[ "$(jq -r .cin "$TSMD_WORK/resp")" = 89490000000000000A03 ] || fail "lookup without cache: $(cat "$TSMD_WORK/resp")"
lookup "$last"
[ "$(metric tsm_se_cache_hits_total)" = 0 ] || fail "hits without a cache"
tsmd_stop
echo "cache_test ($MODE): ok"
