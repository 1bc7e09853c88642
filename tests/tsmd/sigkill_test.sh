#!/usr/bin/env bash
# No acknowledged write is lost when tsmd is killed with SIGKILL (issue 4,
# acceptance 4; DESIGN.md 4).
#
# WRITERS client loops (curl, loopback) each stream single-row SE imports with
# unique identifiers and their own Idempotency-Key, and record every CIN whose
# import was acknowledged (HTTP 200 reporting it imported). In the middle of
# the stream tsmd gets SIGKILL; the writers keep trying (and fail) until they
# are stopped; tsmd restarts on the same database; every acknowledged CIN must
# be in the registry. Then every write that was attempted but not
# acknowledged is retried with its original Idempotency-Key, which must
# succeed (a replay or a first execution, never a conflict), and the registry
# must hold exactly the attempted set. Two kill cycles, bounded in time.
#
# usage: sigkill_test.sh TSMD [sqlite|pg]
#   pg: the database is $OPENTSM_TEST_PG_URL (run under tests/pg/with_pg.sh)
set -euo pipefail

TSMD=$1
BACKEND=${2:-sqlite}
WRITERS=${SIGKILL_WRITERS:-4}
MIN_ACKS=${SIGKILL_MIN_ACKS:-150} # acknowledged writes before each kill
CYCLES=2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

for t in curl jq; do
    command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
done
tsmd_work_init "tsmd-sigkill-$BACKEND"
case $BACKEND in
sqlite) DB_URL="sqlite:$TSMD_WORK/var/tsmd.db" ;;
pg)
    [ -n "${OPENTSM_TEST_PG_URL:-}" ] || fail "pg needs OPENTSM_TEST_PG_URL (tests/pg/with_pg.sh)"
    DB_URL=$OPENTSM_TEST_PG_URL
    ;;
*) fail "unknown back end '$BACKEND'" ;;
esac
tsmd_config "$DB_URL" "log.level=warn"
tsmd_bootstrap sigkill-operator
tsmd_start
mkdir -p "$TSMD_WORK/w"

CSV_HDR=cin,se_type,mno,msisdn,imsi,profile_id,gp_version,jc_version,cert_level,expiry,free_memory,master_key_index

# row N: the CSV line of write number N (unique CIN, MSISDN and IMSI).
row() {
    printf '8949%016X,UICC,mno-k,4918%08d,26208%010d,p1,2.3.1,3.0.5,EAL5+,2030-01-31,65536,1\n' \
        "$1" "$1" "$1"
}
cin_of() {
    printf '8949%016X' "$1"
}

# write N: one import of row N with key kill-N. Exit 0 when acknowledged.
write_one() {
    local n=$1 out code
    out=$(printf '%s\n%s' "$CSV_HDR" "$(row "$n")" |
        curl -s -X POST -w '\n%{http_code}' --max-time 10 \
            -H "Authorization: Bearer $OP_TOKEN" -H "Content-Type: text/csv" \
            -H "Idempotency-Key: kill-$n" --data-binary @- \
            "$TSMD_URL/tsm/v1/secure-elements:import" 2>/dev/null) || return 1
    code=${out##*$'\n'}
    [ "$code" = 200 ] || return 1
    # Acknowledged means: the import reports the row as stored.
    case ${out%$'\n'*} in
    *'"imported":1'* | *'"unchanged":1'*) return 0 ;;
    esac
    return 1
}

# writer ID FIRST: writes FIRST, FIRST+WRITERS, ... until the stop file
# appears; logs attempted and acknowledged numbers.
writer() {
    local id=$1 n=$2
    while [ ! -e "$TSMD_WORK/w/stop" ]; do
        echo "$n" >>"$TSMD_WORK/w/attempted.$id"
        if write_one "$n"; then
            echo "$n" >>"$TSMD_WORK/w/acked.$id"
        else
            sleep 0.01
        fi
        n=$((n + WRITERS))
    done
}

acked_count() {
    { cat "$TSMD_WORK"/w/acked.* 2>/dev/null || true; } | wc -l
}

# Every CIN in the registry, through the operator's paged listing.
registry_cins() {
    local cursor="" url
    : >"$TSMD_WORK/registry"
    while :; do
        url="/tsm/v1/secure-elements?limit=1000"
        [ -z "$cursor" ] || url="$url&cursor=$cursor"
        api GET "$url" "$OP_TOKEN"
        expect_status 200 "registry listing"
        jq -r '.items[].cin' "$TSMD_WORK/resp" >>"$TSMD_WORK/registry"
        cursor=$(jq -r '.next_cursor // ""' "$TSMD_WORK/resp")
        [ -n "$cursor" ] || break
    done
    sort -o "$TSMD_WORK/registry" "$TSMD_WORK/registry"
}

BASE=0
for cycle in $(seq 1 $CYCLES); do
    rm -f "$TSMD_WORK/w/stop"
    before=$(acked_count)
    pids=()
    for id in $(seq 1 "$WRITERS"); do
        writer "$id" $((BASE + id)) &
        pids+=($!)
        TSMD_EXTRA_PIDS+=($!)
    done
    # Kill once MIN_ACKS more writes are acknowledged (at most 60 s).
    for _ in $(seq 1 1200); do
        [ $(($(acked_count) - before)) -lt "$MIN_ACKS" ] || break
        sleep 0.05
    done
    [ $(($(acked_count) - before)) -ge "$MIN_ACKS" ] || fail "cycle $cycle: too few acknowledged writes"
    tsmd_kill9
    note "cycle $cycle: SIGKILL after $(($(acked_count) - before)) acknowledged writes"
    sleep 0.3 # the writers run on against the dead port meanwhile
    touch "$TSMD_WORK/w/stop"
    for p in "${pids[@]}"; do
        wait "$p" || true
    done
    TSMD_EXTRA_PIDS=()
    BASE=$(($(cat "$TSMD_WORK"/w/attempted.* | sort -n | tail -n 1) + WRITERS))

    tsmd_start
    registry_cins
    cat "$TSMD_WORK"/w/acked.* | sort -n | while read -r n; do cin_of "$n"; echo; done |
        sort >"$TSMD_WORK/acked.cins"
    lost=$(comm -23 "$TSMD_WORK/acked.cins" "$TSMD_WORK/registry" | wc -l)
    if [ "$lost" -ne 0 ]; then
        { comm -23 "$TSMD_WORK/acked.cins" "$TSMD_WORK/registry" || true; } | head -20 >&2
        fail "cycle $cycle: $lost acknowledged writes lost after SIGKILL"
    fi
    note "cycle $cycle: all $(wc -l <"$TSMD_WORK/acked.cins") acknowledged writes present" \
        "($(wc -l <"$TSMD_WORK/registry") rows in the registry)"
done

# Retry every write that was not acknowledged with its original key.
cat "$TSMD_WORK"/w/attempted.* | sort -n >"$TSMD_WORK/attempted"
cat "$TSMD_WORK"/w/acked.* | sort -n >"$TSMD_WORK/acked"
retried=0
while read -r n; do
    write_one "$n" || fail "retry of unacknowledged write $n (key kill-$n) failed"
    retried=$((retried + 1))
done < <(comm -23 "$TSMD_WORK/attempted" "$TSMD_WORK/acked" | sort -n)
registry_cins
while read -r n; do cin_of "$n"; echo; done <"$TSMD_WORK/attempted" | sort >"$TSMD_WORK/attempted.cins"
cmp -s "$TSMD_WORK/attempted.cins" "$TSMD_WORK/registry" || {
    { diff "$TSMD_WORK/attempted.cins" "$TSMD_WORK/registry" || true; } | head -20 >&2
    fail "the registry differs from the attempted writes after the retries"
}
api GET /admin/v1/audit/verify "$OP_TOKEN"
expect_status 200 "audit verify"
jq -e '.intact == true' "$TSMD_WORK/resp" >/dev/null || fail "audit chain after SIGKILL: $(cat "$TSMD_WORK/resp")"
tsmd_stop
echo "sigkill ($BACKEND): ok ($(wc -l <"$TSMD_WORK/acked") acknowledged, $retried retried, $CYCLES kills)"
