#!/usr/bin/env bash
# Bad input changes nothing (issue 4, acceptance 3): malformed JSON, wrong
# types, unknown fields, oversized bodies, bad Idempotency-Key use and other
# malformed requests each get their precise 4xx status and error body, and the
# database is the same before and after each of them: every table is dumped
# with sqlite3 and compared, except the audit log (refusals are audited on
# purpose; its chain is verified at the end) and host_tokens.last_used_at
# (a successful authentication may refresh it).
#
# usage: malformed_test.sh TSMD
set -euo pipefail

TSMD=$1
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

for t in curl jq sqlite3 head od; do
    command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
done
MAX_BODY=65536
tsmd_work_init tsmd-malformed
DB=$TSMD_WORK/var/tsmd.db
tsmd_config "sqlite:$DB" "http.max_body=$MAX_BODY"
tsmd_bootstrap bad-input-operator
tsmd_start

SPA=$(tsmd_principal service_provider sp-a)
TA=$(tsmd_token "$SPA")
CSV_HDR=cin,se_type,mno,msisdn,imsi,profile_id,gp_version,jc_version,cert_level,expiry,free_memory,master_key_index
CIN=89490000000000000B01
printf '%s\n%s\n' "$CSV_HDR" \
    "$CIN,UICC,mno-b,491710000001,262071000000001,p1,2.3.1,3.0.5,EAL5+,2030-01-31,65536,1" \
    >"$TSMD_WORK/one.csv"
api POST /tsm/v1/secure-elements:import "$OP_TOKEN" - -H "Content-Type: text/csv" \
    -H "Idempotency-Key: bad-setup-import" --data-binary "@$TSMD_WORK/one.csv"
expect_status 200 "setup import"
api POST "/tsm/v1/secure-elements/$CIN/security-domains" "$OP_TOKEN" \
    '{"aid":"A000000151AA0001","sp":"sp-a"}' -H "Idempotency-Key: bad-setup-sd"
expect_status 201 "setup sd"

sq() {
    sqlite3 -cmd ".timeout 10000" "$DB" "$@"
}

# The whole database as sorted text: the schema, then every row of every
# table but the audit log, in SQL quote form.
db_dump() {
    local t cols
    sq "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
    for t in $(sq "SELECT name FROM sqlite_master WHERE type = 'table'
                   AND name NOT IN ('host_audit_log', 'host_audit_head', 'host_audit_pending') ORDER BY name"); do
        cols=$(sq "SELECT group_concat(name, ', ') FROM pragma_table_info('$t')
                   WHERE NOT ('$t' = 'host_tokens' AND name = 'last_used_at')")
        sq ".mode quote" "SELECT '$t', $cols FROM \"$t\"" | sort
    done
}

db_dump >"$TSMD_WORK/dump.before"
grep -q "$CIN" "$TSMD_WORK/dump.before" || fail "the dump does not show the imported SE"
grep -q "sp-a" "$TSMD_WORK/dump.before" || fail "the dump does not show the principals"

NCASE=0
# case WANT_STATUS WANT_CODE DESCRIPTION METHOD PATH TOKEN [curl args...]:
# one bad request; status, error body and an unchanged database.
bad() {
    local want=$1 code=$2 what=$3 method=$4 path=$5 token=$6 got
    shift 6
    NCASE=$((NCASE + 1))
    api "$method" "$path" "$token" - -H "X-Request-Id: bad-$NCASE" "$@"
    [ "$API_STATUS" = "$want" ] ||
        fail "case $NCASE ($what): HTTP $API_STATUS, want $want: $(head -c 300 "$TSMD_WORK/resp")"
    if [ "$code" != - ]; then
        got=$(api_err_code)
        [ "$got" = "$code" ] ||
            fail "case $NCASE ($what): error code '$got', want '$code': $(head -c 300 "$TSMD_WORK/resp")"
        jq -e '.error.message | type == "string" and length > 0' "$TSMD_WORK/resp" >/dev/null ||
            fail "case $NCASE ($what): no error message: $(head -c 300 "$TSMD_WORK/resp")"
    fi
    db_dump >"$TSMD_WORK/dump.after"
    if ! cmp -s "$TSMD_WORK/dump.before" "$TSMD_WORK/dump.after"; then
        echo "case $NCASE ($what) changed the database:" >&2
        { diff -u "$TSMD_WORK/dump.before" "$TSMD_WORK/dump.after" || true; } | head -40 >&2
        fail "case $NCASE ($what) changed the database"
    fi
}

# json WANT CODE WHAT METHOD PATH TOKEN BODY [curl args]: a JSON body.
json() {
    local want=$1 code=$2 what=$3 method=$4 path=$5 token=$6 body=$7
    shift 7
    bad "$want" "$code" "$what" "$method" "$path" "$token" \
        -H "Content-Type: application/json" --data-binary "$body" "$@"
}

K() {
    echo "-H" "Idempotency-Key:bad-key-$NCASE-$RANDOM"
}
P=/admin/v1/principals
T=/admin/v1/tokens
SD=/tsm/v1/secure-elements/$CIN/security-domains
IMP=/tsm/v1/secure-elements:import

# --- malformed JSON
# shellcheck disable=SC2046 # K prints two words on purpose
{
json 400 invalid_field "truncated object" POST $P "$OP_TOKEN" '{"kind":"service_provider","name":"x"' $(K)
json 400 invalid_field "trailing comma" POST $P "$OP_TOKEN" '{"kind":"service_provider","name":"x",}' $(K)
json 400 invalid_field "empty body" POST $P "$OP_TOKEN" '' $(K)
json 400 invalid_field "bare word" POST $P "$OP_TOKEN" 'nul' $(K)
json 400 invalid_field "trailing garbage" POST $P "$OP_TOKEN" '{"kind":"service_provider","name":"x"} x' $(K)
json 400 invalid_field "two documents" POST $P "$OP_TOKEN" '{"kind":"service_provider","name":"x"}{}' $(K)
json 400 invalid_field "duplicate member" POST $P "$OP_TOKEN" '{"kind":"service_provider","name":"x","name":"y"}' $(K)
json 400 invalid_field "single quotes" POST $P "$OP_TOKEN" "{'kind':'service_provider','name':'x'}" $(K)
json 400 invalid_field "invalid UTF-8" POST $P "$OP_TOKEN" $'{"kind":"service_provider","name":"\xff\xfe"}' $(K)
json 400 invalid_field "NUL escape" POST $P "$OP_TOKEN" '{"kind":"service_provider","name":"a\u0000b"}' $(K)
json 400 invalid_field "lone surrogate" POST $P "$OP_TOKEN" '{"kind":"service_provider","name":"\ud800"}' $(K)
json 400 invalid_field "deep nesting" POST $P "$OP_TOKEN" "$(printf '%.0s[' $(seq 1 5000))" $(K)
json 400 invalid_field "array, not object" POST $P "$OP_TOKEN" '[{"kind":"service_provider","name":"x"}]' $(K)
json 400 invalid_field "string, not object" POST $T "$OP_TOKEN" '"principal_id"'
json 400 invalid_field "import: truncated JSON array" POST $IMP "$OP_TOKEN" '[{"cin":"89490000000000000B02"' $(K)
json 400 invalid_field "import: object, not array" POST $IMP "$OP_TOKEN" '{"cin":"89490000000000000B02"}' $(K)

# --- wrong types and values
json 400 invalid_field "kind is a number" POST $P "$OP_TOKEN" '{"kind":1,"name":"x"}' $(K)
json 400 invalid_field "name is a number" POST $P "$OP_TOKEN" '{"kind":"service_provider","name":12}' $(K)
json 400 invalid_field "name is null" POST $P "$OP_TOKEN" '{"kind":"service_provider","name":null}' $(K)
json 400 invalid_field "name is an object" POST $P "$OP_TOKEN" '{"kind":"service_provider","name":{}}' $(K)
json 400 invalid_field "name is empty" POST $P "$OP_TOKEN" '{"kind":"service_provider","name":""}' $(K)
json 400 invalid_field "name too long" POST $P "$OP_TOKEN" "{\"kind\":\"service_provider\",\"name\":\"$(head -c 300 /dev/zero | tr '\0' n)\"}" $(K)
json 400 invalid_field "unknown kind" POST $P "$OP_TOKEN" '{"kind":"root","name":"x"}' $(K)
json 400 invalid_field "kind missing" POST $P "$OP_TOKEN" '{"name":"x"}' $(K)
json 400 invalid_field "principal_id is a string" POST $T "$OP_TOKEN" "{\"principal_id\":\"$SPA\"}"
json 400 invalid_field "principal_id is a fraction" POST $T "$OP_TOKEN" '{"principal_id":1.5}'
json 400 invalid_field "principal_id is negative" POST $T "$OP_TOKEN" '{"principal_id":-1}'
json 400 invalid_field "principal_id overflows" POST $T "$OP_TOKEN" '{"principal_id":99999999999999999999999}'
json 400 invalid_field "principal_id is true" POST $T "$OP_TOKEN" '{"principal_id":true}'
json 400 invalid_field "ttl_s is negative" POST $T "$OP_TOKEN" "{\"principal_id\":$SPA,\"ttl_s\":-5}"
json 400 invalid_field "label is a list" POST $T "$OP_TOKEN" "{\"principal_id\":$SPA,\"label\":[\"x\"]}"
json 400 invalid_field "aid not hex" POST $SD "$OP_TOKEN" '{"aid":"XYZXYZXYZXYZ","sp":"sp-a"}' $(K)
json 400 invalid_field "aid too short" POST $SD "$OP_TOKEN" '{"aid":"A0000001","sp":"sp-a"}' $(K)
json 400 invalid_field "aid odd length" POST $SD "$OP_TOKEN" '{"aid":"A000000151AA00012","sp":"sp-a"}' $(K)
json 400 invalid_field "sp is a list" POST $SD "$OP_TOKEN" '{"aid":"A000000151AA0002","sp":["sp-a"]}' $(K)
json 400 invalid_field "lcs not in the enum" POST $SD "$OP_TOKEN" '{"aid":"A000000151AA0002","sp":"sp-a","lcs":"BOGUS"}' $(K)
json 400 invalid_field "privileges of 1 byte" POST $SD "$OP_TOKEN" '{"aid":"A000000151AA0002","sp":"sp-a","privileges":"80"}' $(K)
json 400 invalid_field "certificate subject is a number" POST "$P/$SPA/certificates" "$OP_TOKEN" '{"subject":5}' $(K)
json 404 not_found "sd for a missing service provider" POST $SD "$OP_TOKEN" '{"aid":"A000000151AA0002","sp":"sp-nobody"}' $(K)
json 404 not_found "token for a missing principal" POST $T "$OP_TOKEN" '{"principal_id":424242}'

# --- unknown fields and arguments
json 400 invalid_field "unknown member" POST $P "$OP_TOKEN" '{"kind":"service_provider","name":"x","admin":true}' $(K)
json 400 invalid_field "unknown member (token)" POST $T "$OP_TOKEN" "{\"principal_id\":$SPA,\"scope\":\"all\"}"
json 400 invalid_field "unknown member (sd)" POST $SD "$OP_TOKEN" '{"aid":"A000000151AA0002","sp":"sp-a","owner":"sp-b"}' $(K)
json 400 invalid_field "unknown member (cert)" POST "$P/$SPA/certificates" "$OP_TOKEN" '{"subject":"CN=x","ca":"y"}' $(K)
json 400 invalid_field "unknown query argument" POST "$P?force=1" "$OP_TOKEN" '{"kind":"service_provider","name":"x"}' $(K)
json 400 invalid_field "unknown query argument (token)" POST "$T?ttl=0" "$OP_TOKEN" "{\"principal_id\":$SPA}"
json 400 invalid_field "unknown query argument (cert)" POST "$P/$SPA/certificates?x=1" "$OP_TOKEN" '{"subject":"CN=q"}' $(K)
json 400 invalid_field "unknown query argument (sd)" POST "$SD?force=1" "$OP_TOKEN" '{"aid":"A000000151AA0002","sp":"sp-a"}' $(K)
bad 400 invalid_field "unknown query argument (lookup)" GET "/tsm/v1/secure-elements?msisdn=491710000001&debug=1" "$TA"
bad 400 invalid_field "malformed msisdn" GET "/tsm/v1/secure-elements?msisdn=49x" "$TA"
bad 400 invalid_field "malformed cin in the path" GET "/tsm/v1/secure-elements/not-hex" "$TA"
bad 400 invalid_field "malformed aid in the path" GET "$SD/zz" "$TA"
}

# --- imports: the CSV file is checked whole before anything is written
printf '%s\n%s\n%s\n' "$CSV_HDR" \
    "89490000000000000B02,UICC,mno-b,491710000002,262071000000002,p1,2.3.1,3.0.5,EAL5+,2030-01-31,65536,1" \
    '89490000000000000B03,"UICC,mno-b,491710000003,262071000000003,p1,2.3.1,3.0.5,EAL5+,2030-01-31,65536,1' \
    >"$TSMD_WORK/broken.csv"
bad 400 invalid_field "CSV with an unterminated quote after a good row" POST $IMP "$OP_TOKEN" \
    -H "Content-Type: text/csv" -H "Idempotency-Key: bad-csv-1" --data-binary "@$TSMD_WORK/broken.csv"
printf 'cin,se_type,secret\n89490000000000000B02,UICC,x\n' >"$TSMD_WORK/unknown-col.csv"
bad 400 invalid_field "CSV with an unknown column" POST $IMP "$OP_TOKEN" \
    -H "Content-Type: text/csv" -H "Idempotency-Key: bad-csv-2" --data-binary "@$TSMD_WORK/unknown-col.csv"
printf 'cin,se_type\n89490000000000000B02,UICC\n' >"$TSMD_WORK/short-hdr.csv"
bad 400 invalid_field "CSV without the required columns" POST $IMP "$OP_TOKEN" \
    -H "Content-Type: text/csv" -H "Idempotency-Key: bad-csv-3" --data-binary "@$TSMD_WORK/short-hdr.csv"
bad 400 invalid_field "import as application/xml" POST $IMP "$OP_TOKEN" \
    -H "Content-Type: application/xml" -H "Idempotency-Key: bad-csv-4" --data-binary "<se/>"
# Row-level problems are a report, not a refusal: 200, every row rejected
# (wrong type, unknown member, bad date), nothing written to the registry.
cat >"$TSMD_WORK/badrows.json" <<'EOF'
[{"cin":"89490000000000000B04","se_type":"UICC","mno":"mno-b","profile_id":"p1","gp_version":"2.3.1","jc_version":"3.0.5","cert_level":"EAL5+","expiry":"2030-01-31","free_memory":"65536","master_key_index":1},
 {"cin":"89490000000000000B05","se_type":"UICC","mno":"mno-b","profile_id":"p1","gp_version":"2.3.1","jc_version":"3.0.5","cert_level":"EAL5+","expiry":"2030-01-31","free_memory":65536,"master_key_index":1,"isd_key":"00"},
 {"cin":"89490000000000000B06","se_type":"UICC","mno":"mno-b","profile_id":"p1","gp_version":"2.3.1","jc_version":"3.0.5","cert_level":"EAL5+","expiry":"2030-02-30","free_memory":65536,"master_key_index":1},
 {"cin":"89490000000000000B07","se_type":"iPhone","mno":"mno-b","profile_id":"p1","gp_version":"2.3.1","jc_version":"3.0.5","cert_level":"EAL5+","expiry":"2030-01-31","free_memory":65536,"master_key_index":1}]
EOF
api POST $IMP "$OP_TOKEN" - -H "Content-Type: application/json" -H "Idempotency-Key: bad-rows" \
    --data-binary "@$TSMD_WORK/badrows.json"
expect_status 200 "import of bad rows"
jq -e '.rows == 4 and .imported == 0 and .rejected_count == 4
       and ([.rejected[].row] == [1, 2, 3, 4])
       and ([.rejected[0, 2, 3].field] == ["free_memory", "expiry", "se_type"])
       and (.rejected[1].field == "isd_key" or (.rejected[1].message | contains("isd_key")))' \
    "$TSMD_WORK/resp" >/dev/null || fail "bad rows report: $(cat "$TSMD_WORK/resp")"
[ "$(sq "SELECT count(*) FROM tsm_secure_elements")" = 1 ] || fail "rejected rows reached the registry"
grep -v "^'host_idem_records'" "$TSMD_WORK/dump.before" >"$TSMD_WORK/dump.a"
db_dump >"$TSMD_WORK/dump.before"
grep -v "^'host_idem_records'" "$TSMD_WORK/dump.before" >"$TSMD_WORK/dump.b"
# The report is a 200 answer, kept for replays of its key; nothing else changed.
cmp -s "$TSMD_WORK/dump.a" "$TSMD_WORK/dump.b" || fail "an import of rejected rows changed the database"

# --- oversized bodies: 413 with or without a Content-Length
head -c $((MAX_BODY + 1)) /dev/zero | tr '\0' ' ' >"$TSMD_WORK/big.json"
bad 413 payload_too_large "body one byte over the cap" POST $P "$OP_TOKEN" \
    -H "Content-Type: application/json" -H "Idempotency-Key: bad-big-1" --data-binary "@$TSMD_WORK/big.json"
bad 413 payload_too_large "chunked body over the cap" POST $P "$OP_TOKEN" \
    -H "Content-Type: application/json" -H "Idempotency-Key: bad-big-2" -H "Transfer-Encoding: chunked" \
    --data-binary "@$TSMD_WORK/big.json"
{
    echo "$CSV_HDR"
    for i in $(seq 1 800); do
        printf '8949000000000001%04X,UICC,mno-b,4917200%05d,26207200%07d,p1,2.3.1,3.0.5,EAL5+,2030-01-31,65536,1\n' \
            "$i" "$i" "$i"
    done
} >"$TSMD_WORK/big.csv"
[ "$(stat -c %s "$TSMD_WORK/big.csv")" -gt "$MAX_BODY" ] || fail "big.csv is not over the cap"
bad 413 payload_too_large "import over the cap" POST $IMP "$OP_TOKEN" \
    -H "Content-Type: text/csv" -H "Idempotency-Key: bad-big-3" --data-binary "@$TSMD_WORK/big.csv"
bad 413 payload_too_large "oversized body before authentication" POST $P - \
    -H "Content-Type: application/json" --data-binary "@$TSMD_WORK/big.json"

# --- Idempotency-Key misuse
BODY1='{"kind":"service_provider","name":"sp-idem"}'
json 400 - "POST without Idempotency-Key" POST $P "$OP_TOKEN" "$BODY1"
json 400 - "empty Idempotency-Key" POST $P "$OP_TOKEN" "$BODY1" -H "Idempotency-Key;"
json 400 - "Idempotency-Key with a space" POST $P "$OP_TOKEN" "$BODY1" -H "Idempotency-Key: a b"
json 400 - "Idempotency-Key of 129 characters" POST $P "$OP_TOKEN" "$BODY1" \
    -H "Idempotency-Key: $(head -c 129 /dev/zero | tr '\0' k)"
json 400 - "Idempotency-Key with a control character" POST $P "$OP_TOKEN" "$BODY1" -H $'Idempotency-Key: a\x01b'
# The first use of a key changes the database (that is the point of it).
api POST $P "$OP_TOKEN" "$BODY1" -H "Idempotency-Key: bad-idem-1"
expect_status 201 "first request with a key"
cp "$TSMD_WORK/resp" "$TSMD_WORK/first.json"
db_dump >"$TSMD_WORK/dump.before"
grep -q sp-idem "$TSMD_WORK/dump.before" || fail "the first request did not create sp-idem"
json 201 - "replay with the same body" POST $P "$OP_TOKEN" "$BODY1" -H "Idempotency-Key: bad-idem-1"
cmp -s "$TSMD_WORK/resp" "$TSMD_WORK/first.json" ||
    fail "the replay's body differs: $(cat "$TSMD_WORK/resp" "$TSMD_WORK/first.json")"
json 422 idempotency_mismatch "replay with another body" POST $P "$OP_TOKEN" \
    '{"kind":"service_provider","name":"sp-other"}' -H "Idempotency-Key: bad-idem-1"
json 422 idempotency_mismatch "replay with a reordered body" POST $P "$OP_TOKEN" \
    '{"name":"sp-idem","kind":"service_provider"}' -H "Idempotency-Key: bad-idem-1"
json 422 idempotency_mismatch "the key reused on another route" POST $SD "$OP_TOKEN" \
    '{"aid":"A000000151AA0003","sp":"sp-a"}' -H "Idempotency-Key: bad-idem-1"

# --- protocol-level
bad 405 method_not_allowed "PUT on a POST route" PUT $P "$OP_TOKEN" \
    -H "Content-Type: application/json" --data-binary "$BODY1"
bad 404 not_found "unknown path" POST /tsm/v1/principalz "$OP_TOKEN" \
    -H "Content-Type: application/json" -H "Idempotency-Key: bad-404" --data-binary "$BODY1"
NCASE=$((NCASE + 1))
{
    printf 'X-Big: '
    head -c 200000 /dev/zero | tr '\0' h
    echo
} >"$TSMD_WORK/bighdr"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 -H "Authorization: Bearer $OP_TOKEN" \
    -H "@$TSMD_WORK/bighdr" "$TSMD_URL$P") || code=000
case $code in
4??) ;;
*) fail "a 200 kB header: HTTP $code, want 4xx" ;;
esac
db_dump >"$TSMD_WORK/dump.after"
cmp -s "$TSMD_WORK/dump.before" "$TSMD_WORK/dump.after" || fail "a huge header changed the database"

# tsmd is still healthy and the audit chain (which recorded the refusals) is intact.
api GET /healthz -
expect_status 200 "healthz after the bad input"
api GET /admin/v1/audit/verify "$OP_TOKEN"
expect_status 200 "audit verify"
jq -e '.intact == true' "$TSMD_WORK/resp" >/dev/null || fail "audit chain: $(cat "$TSMD_WORK/resp")"
tsmd_stop
echo "malformed input: ok ($NCASE cases, database unchanged by each)"
