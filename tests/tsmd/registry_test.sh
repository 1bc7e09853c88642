#!/usr/bin/env bash
# tsmd end to end on the SE registry (issue 4 point 9): TLS with a local CA
# (scripts/certs.sh), SQLite in a temp dir, a free loopback port; an operator
# bootstraps, two service providers get tokens, SEs are imported from CSV and
# JSON (bad rows reported), each SP looks SEs up by MSISDN and sees only its
# own security domains, mutual TLS authenticates an SP, the audit chain
# verifies, and SIGTERM stops tsmd with exit status 0.
#
# With OPENTSM_TEST_PG_URL set (tests/pg/with_pg.sh does), the same run goes
# against PostgreSQL instead of SQLite.
#
# usage: registry_test.sh TSMD TSMCTL CERTS_SH
set -euo pipefail

TSMD=$1
TSMCTL=$2
CERTS=$3
work=$(mktemp -d /tmp/tsmd-registry.XXXXXX)
DBURL=${OPENTSM_TEST_PG_URL:-sqlite:$work/var/tsmd.db}
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    echo "--- tsmd log" >&2
    tail -30 "$work/tsmd.log" >&2 || true
    exit 1
}
# expect RC CMD...: runs CMD, checks its exit status.
expect() {
    local want=$1 got=0
    shift
    "$@" >"$work/out" 2>"$work/err" || got=$?
    if [ "$got" != "$want" ]; then
        cat "$work/out" "$work/err" >&2
        fail "'$*' exited $got, expected $want"
    fi
}
has() { grep -q -- "$1" "$work/out" || { cat "$work/out" >&2; fail "output lacks '$1'"; }; }
hasnt() { ! grep -q -- "$1" "$work/out" || { cat "$work/out" >&2; fail "output has '$1'"; }; }

"$CERTS" "$work/certs" sp-a-client 2>/dev/null
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/kek"
chmod 600 "$work/kek"
cat >"$work/tsmd.ini" <<INI
[http]
listen = 127.0.0.1:0
[tls]
cert = $work/certs/server.pem
key = $work/certs/server.key
client_ca = $work/certs/ca.pem
[db]
url = $DBURL
[keystore]
kek_file = $work/kek
[ratelimit]
per_s = 0
[log]
level = info
INI

cd "$work"
expect 0 "$TSMD" --config tsmd.ini --check-config
expect 0 "$TSMD" --config tsmd.ini --print-config
has 'url = \*\*\*\*\*\*\*\*'
hasnt "$DBURL"
expect 2 "$TSMD" --config tsmd.ini --set services.enabled=tsm,nope --check-config
expect 2 "$TSMD" --config tsmd.ini --set tls.key=/nonexistent/key.pem --check-config
expect 2 "$TSMD" --config tsmd.ini --set tls.key= --check-config
# issue 9 point 21: a listen address is checked precisely
expect 2 "$TSMD" --config tsmd.ini --set http.listen=999.1.1.1:1 --check-config
grep -q "'999.1.1.1' is not an IPv4 address" "$work/err" || fail "no precise listen error: $(cat "$work/err")"
OPERATOR=$("$TSMD" --config tsmd.ini --bootstrap-operator root)
[ ${#OPERATOR} -eq 46 ] || fail "bootstrap token has ${#OPERATOR} characters"

"$TSMD" --config tsmd.ini >"$work/tsmd.out" 2>"$work/tsmd.log" &
pid=$!
for _ in $(seq 1 100); do
    port=$(sed -n 's/^tsmd: listening on https port \([0-9]*\)$/\1/p' "$work/tsmd.out")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || fail "tsmd exited at start"
    sleep 0.1
done
[ -n "$port" ] || fail "tsmd did not report its port"
URL=https://localhost:$port

# A profile file for the operator; SPs use --token on the command line.
export XDG_CONFIG_HOME=$work/xdg
mkdir -p "$XDG_CONFIG_HOME/opentsm"
(umask 077 && : >"$XDG_CONFIG_HOME/opentsm/config") # holds a token: owner only
cat >"$XDG_CONFIG_HOME/opentsm/config" <<INI
[profile op]
url = $URL
token = $OPERATOR
ca = $work/certs/ca.pem
INI
op() { "$TSMCTL" --profile op "$@"; }
spa() { "$TSMCTL" --url "$URL" --ca "$work/certs/ca.pem" --token "$SPA" "$@"; }
spb() { "$TSMCTL" --url "$URL" --ca "$work/certs/ca.pem" --token "$SPB" "$@"; }

expect 0 curl -sf --cacert certs/ca.pem "$URL/healthz"
expect 0 curl -sf --cacert certs/ca.pem "$URL/readyz"
expect 0 curl -sf --cacert certs/ca.pem -H "Authorization: Bearer $OPERATOR" "$URL/metrics"
has tsmd_job_queue_depth
has tsmd_device_channels_open

expect 0 op token issue --kind service_provider --name sp-a --token-only
SPA=$(cat "$work/out")
expect 0 op token issue --kind service_provider --name sp-b --token-only
SPB=$(cat "$work/out")

# Import: CSV with two bad rows, then JSON with one.
cat >se.csv <<CSV
cin,se_type,mno,msisdn,imsi,profile_id,gp_version,jc_version,cert_level,expiry,free_memory,master_key_index,isd_kvn,isd_enc,isd_mac,isd_dek
A0000001000000000001,UICC,mno-one,+33600000001,208010000000001,uicc-v1,2.2.1,3.0.4,EAL5+,2030-12-31,65536,1,1,404142434445464748494A4B4C4D4E4F,404142434445464748494A4B4C4D4E4F,404142434445464748494A4B4C4D4E4F
A0000001000000000002,eSE,mno-one,33600000002,,ese-v2,2.3,3.0.5,EAL4+,2031-02-29,4096,2,,,,
A0000001000000000003,microSD,mno-two,33600000003,208010000000003,sd-v1,2.2,3.0.1,EAL4+,2029-01-01,1024,3,,,,
A0000001000000000004,UICC,mno-two,33600000001,,uicc-v1,2.2.1,3.0.4,EAL5+,2030-12-31,65536,1,,,,
CSV
expect 1 op se import se.csv
has 'rows 4, imported 2, unchanged 0, rejected 2'
grep -Eq '^2 +expiry' "$work/out" || fail "row 2 not rejected on expiry"
grep -Eq '^4 +msisdn' "$work/out" || fail "row 4 not rejected on msisdn"
# Importing again replays the first answers (same Idempotency-Keys); in
# other chunks it is a new request that changes nothing.
expect 1 op --json se import se.csv
has '"imported":2,"unchanged":0,"rejected_count":2'
expect 1 op --json se import se.csv --chunk 3
has '"imported":0,"unchanged":2,"rejected_count":2'
has '"row":2,"field":"expiry"'
has '"row":4,"field":"msisdn"' # row numbers count from the file's first row
cat >se.json <<JSON
[{"cin":"B0000001000000000001","se_type":"eSE","mno":"mno-one","msisdn":"33600000011","imsi":null,
  "profile_id":"ese-v2","gp_version":"2.3.1","jc_version":"3.1","cert_level":"EAL6+",
  "expiry":"2032-06-30","free_memory":200000,"master_key_index":7},
 {"cin":"B0000001000000000002","se_type":"eSE","mno":"mno-one","msisdn":"33600000012",
  "profile_id":"ese-v2","gp_version":"2.3.1","jc_version":"3.1","cert_level":"EAL6+",
  "expiry":"2032-06-30","free_memory":"lots","master_key_index":7},
 {"cin":"B0000001000000000003","se_type":"eSE","mno":"mno-one","colour":"red",
  "profile_id":"ese-v2","gp_version":"2.3.1","jc_version":"3.1","cert_level":"EAL6+",
  "expiry":"2032-06-30","free_memory":1,"master_key_index":7}]
JSON
expect 1 op --json se import se.json
has '"imported":1'
has '"row":2,"field":"free_memory"'
has '"row":3'
# Refused as a whole by the server: unknown column, other content type.
printf 'cin,se_type,colour\nA0000009,UICC,red\n' >badcol.csv
expect 3 op se import badcol.csv
grep -q 'field=colour' "$work/err" || fail "unknown column not named"
imp=$URL/tsm/v1/secure-elements:import
[ "$(curl -s -o /dev/null -w '%{http_code}' --cacert certs/ca.pem -H "Authorization: Bearer $OPERATOR" \
    -H 'Idempotency-Key: t-xml' -H 'Content-Type: application/xml' --data-binary '<se/>' "$imp")" \
    = 400 ] || fail "import of application/xml"
# Malformed CSV: refused as a whole (exit 5 locally, the server never sees it).
printf 'cin,se_type\n"A0000001,UICC\n' >bad.csv
expect 5 op se import bad.csv

# Lookups by MSISDN from each SP: full data, never keys; or the CIN alone.
for who in spa spb; do
    expect 0 $who --json se get --msisdn +33600000001
    has '"cin":"A0000001000000000001"'
    has '"master_key_index":1'
    hasnt 'isd_'
    hasnt '4041424344'
    expect 0 $who se get --msisdn 33600000001 --id-only
    [ "$(cat "$work/out")" = A0000001000000000001 ] || fail "--id-only printed $(cat "$work/out")"
    expect 1 $who se get --msisdn 33699999999
    expect 0 $who se get --imsi 208010000000003
    has microSD
    # Listing all SEs is the operator's: 403.
    expect 3 $who se list
done
expect 0 op se list --mno mno-one
has B0000001000000000001
hasnt A0000001000000000003

# Security domains: each SP sees only its own; another's is 404.
expect 0 op se sd assign A0000001000000000001 --aid A0000005591010FFFF01 --sp sp-a
expect 0 op se sd assign A0000001000000000001 --aid A0000005591010FFFF02 --sp sp-b --lcs PERSONALIZED
expect 0 op se sd assign A0000001000000000001 --aid A0000005591010FFFF01 --sp sp-a
expect 3 op se sd assign A0000001000000000001 --aid A0000005591010FFFF01 --sp sp-b
expect 0 spa se sd list A0000001000000000001
has A0000005591010FFFF01
hasnt A0000005591010FFFF02
expect 0 spb se sd list A0000001000000000001
has A0000005591010FFFF02
hasnt A0000005591010FFFF01
expect 0 op se sd list A0000001000000000001
has A0000005591010FFFF01
has A0000005591010FFFF02
sd=$URL/tsm/v1/secure-elements/A0000001000000000001/security-domains
code() { curl -s -o /dev/null -w '%{http_code}' --cacert certs/ca.pem "$@"; }
[ "$(code -H "Authorization: Bearer $SPA" "$sd/A0000005591010FFFF01")" = 200 ] || fail "own SD"
[ "$(code -H "Authorization: Bearer $SPA" "$sd/A0000005591010FFFF02")" = 404 ] || fail "other SD"
[ "$(code -H "Authorization: Bearer $SPA" "$sd/A0000005591010FFFF03")" = 404 ] || fail "no SD"
[ "$(code "$sd")" = 401 ] || fail "no token"
[ "$(code -H "Authorization: Bearer $SPA" -X POST -H 'Idempotency-Key: x1' \
    -H 'Content-Type: application/json' -d '{"aid":"A0000005591010FFFF09","sp":"sp-a"}' "$sd")" \
    = 403 ] || fail "SP assigning an SD"

# SD paging: more SDs than one default page (100). 102 more on the SE,
# sp-a owns the even ones; pages of 7 followed by cursor add up to the full
# set exactly once, sp-a's pages hold its SDs alone, tsmctl follows the
# cursors; bad cursor or limit is 400 naming the field.
for i in $(seq 0 101); do
    owner=sp-b
    [ $((i % 2)) = 0 ] && owner=sp-a
    aid=$(printf 'A00000055920%04X' "$i")
    [ "$(code -H "Authorization: Bearer $OPERATOR" -X POST -H "Idempotency-Key: sdp-$i" \
        -H 'Content-Type: application/json' -d "{\"aid\":\"$aid\",\"sp\":\"$owner\"}" \
        "$sd")" = 201 ] || fail "assigning SD $aid"
done
# sd_pages TOKEN LIMIT: prints every AID of every page, one per line.
sd_pages() {
    local cur= q page n
    while :; do
        q="limit=$2"
        [ -n "$cur" ] && q="$q&cursor=$cur"
        page=$(curl -sf --cacert certs/ca.pem -H "Authorization: Bearer $1" "$sd?$q") \
            || fail "SD page $q"
        n=$(printf '%s' "$page" | grep -o '"aid":"[^"]*"' | wc -l)
        printf '%s' "$page" | grep -o '"aid":"[^"]*"' | cut -d'"' -f4
        cur=$(printf '%s' "$page" | grep -o '"next_cursor":"[^"]*"' | cut -d'"' -f4 || true)
        [ -n "$cur" ] || break
        [ "$n" = "$2" ] || fail "short page ($n of $2) before the last"
    done
}
sd_pages "$OPERATOR" 7 >"$work/op_pages"
[ "$(wc -l <"$work/op_pages")" = 104 ] || fail "operator pages: $(wc -l <"$work/op_pages") SDs"
[ "$(sort -u "$work/op_pages" | wc -l)" = 104 ] || fail "operator pages repeat an SD"
sort -c "$work/op_pages" || fail "operator pages not in AID order"
sd_pages "$SPA" 7 >"$work/spa_pages"
[ "$(wc -l <"$work/spa_pages")" = 52 ] || fail "sp-a pages: $(wc -l <"$work/spa_pages") SDs"
[ "$(sort -u "$work/spa_pages" | wc -l)" = 52 ] || fail "sp-a pages repeat an SD"
! grep -q A0000005591010FFFF02 "$work/spa_pages" || fail "sp-a sees sp-b's SD"
for i in $(seq 1 2 101); do
    ! grep -q "$(printf 'A00000055920%04X' "$i")" "$work/spa_pages" || fail "sp-a sees SD $i"
done
expect 0 op --json se sd list A0000001000000000001
[ "$(jq length "$work/out")" = 104 ] || fail "tsmctl did not follow the cursors"
expect 0 spa --json se sd list A0000001000000000001 --limit 10
[ "$(jq length "$work/out")" = 10 ] || fail "tsmctl se sd list --limit 10"
body() { curl -s --cacert certs/ca.pem -H "Authorization: Bearer $OPERATOR" "$@"; }
for q in limit=0 limit=1001 limit=x cursor=!! cursor=AAAAAA; do
    [ "$(code -H "Authorization: Bearer $OPERATOR" "$sd?$q")" = 400 ] || fail "$q not 400"
    body "$sd?$q" | grep -q "\"field\":\"${q%%=*}\"" || fail "$q: no field"
done

# Mutual TLS: the client certificate bound to sp-a authenticates it.
expect 0 op --json token list
spa_id=$(grep -o '"principal_id":[0-9]*' "$work/out" | sed -n 2p | cut -d: -f2)
subject=$(openssl x509 -in certs/client.pem -noout -subject -nameopt RFC2253 | sed 's/^subject=//')
expect 0 op principal bind-cert "$spa_id" "$subject"
[ "$(code --cert certs/client.pem --key certs/client.key "$sd")" = 200 ] || fail "mTLS lookup"

# Audit: the denial is recorded and the chain verifies.
expect 0 op --json audit list --action sd.get
has '"outcome":"denied"'
expect 0 op audit verify
has intact
expect 0 "$TSMCTL" audit verify --db "$DBURL"

# Graceful stop.
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
[ "$rc" = 0 ] || fail "tsmd exited $rc after SIGTERM"
echo "tsmd registry: ok"
