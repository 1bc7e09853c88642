#!/usr/bin/env bash
# tsmd.admin_api: the host administration API under /admin/v1 (issue 8
# point 3; issue 9 points 7, 15, 21):
#
# - principals carry their kind's attributes, validated precisely (400
#   naming the member, 409 for an MSISDN of another subscriber, a member of
#   another kind refused); GET /admin/v1/principals pages, GET .../{id}
#   answers one;
# - GET /admin/v1/tokens pages: limit 1..1000 (400 on limit=0 and
#   limit=abc), cursor + next_cursor; walking the pages reaches the oldest
#   token (the bootstrap operator's) and lists each token once;
# - token labels refuse control, invisible and bidi characters (point 15);
# - principal_id accepts canonical decimal only ("+1", " 1", "01", an
#   overflow: 400); a query argument without "=" ("?msisdn") is 400 for an
#   operator and for a service provider, not 403;
# - the old /tsm/v1/principals|tokens|audit paths are gone (404).
#
# usage: admin_api_test.sh TSMD
set -euo pipefail

TSMD=$1
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

for t in curl jq; do
    command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
done
tsmd_work_init tsmd-admin
tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "log.level=warn"
tsmd_bootstrap admin-op
tsmd_start

create() { # create BODY KEY: POST /admin/v1/principals
    api POST /admin/v1/principals "$OP_TOKEN" "$1" -H "Idempotency-Key: $2"
}
bad() { # bad FIELD BODY
    create "$2" "bad-$RANDOM$RANDOM"
    expect_status 400 "principal $2"
    [ "$(jq -r .error.field "$TSMD_WORK/resp")" = "$1" ] ||
        fail "principal $2: field $(jq -r .error.field "$TSMD_WORK/resp"), want $1"
}

# ---- principals and their attributes ----
create '{"kind":"service_provider","name":"bank-a","display_name":"Bank A (Europe)"}' p1
expect_status 201 "sp with display_name"
SPA=$(jq -r .id "$TSMD_WORK/resp")
[ "$(jq -r .display_name "$TSMD_WORK/resp")" = "Bank A (Europe)" ] || fail "display_name not kept"
create '{"kind":"subscriber","name":"alice","msisdns":["33612345678","33698765432"]}' p2
expect_status 201 "subscriber with msisdns"
SUB=$(jq -r .id "$TSMD_WORK/resp")
create '{"kind":"device","name":"phone-1","imei":"490154203237518","imsi":"208011234567890","mno":"orange"}' p3
expect_status 201 "device with imei, imsi, mno"
DEV=$(jq -r .id "$TSMD_WORK/resp")
api GET "/admin/v1/principals/$SUB" "$OP_TOKEN"
expect_status 200 "get subscriber"
[ "$(jq -c .msisdns "$TSMD_WORK/resp")" = '["33612345678","33698765432"]' ] ||
    fail "msisdns: $(cat "$TSMD_WORK/resp")"
api GET "/admin/v1/principals/$DEV" "$OP_TOKEN"
[ "$(jq -r '.imei + " " + .imsi + " " + .mno' "$TSMD_WORK/resp")" = "490154203237518 208011234567890 orange" ] ||
    fail "device attributes: $(cat "$TSMD_WORK/resp")"
bad imei '{"kind":"device","name":"d2","imei":"490154203237519"}'
bad imei '{"kind":"device","name":"d2","imei":"49015420323751"}'
bad imsi '{"kind":"device","name":"d2","imsi":"20801x"}'
bad mno '{"kind":"device","name":"d2","mno":"Orange"}'
bad msisdns '{"kind":"subscriber","name":"bob","msisdns":["0612345678"]}'
bad msisdns '{"kind":"subscriber","name":"bob","msisdns":["33611111111","33611111111"]}'
bad msisdns '{"kind":"subscriber","name":"bob","msisdns":[]}'
bad display_name '{"kind":"service_provider","name":"sp-x","display_name":"a\u001b[2Jb"}'
bad display_name '{"kind":"service_provider","name":"sp-x","display_name":"evil\u202egpj.exe"}'
bad imei '{"kind":"subscriber","name":"bob","imei":"490154203237518"}'
bad display_name '{"kind":"device","name":"d3","display_name":"x"}'
create '{"kind":"subscriber","name":"bob","msisdns":["33698765432"]}' p4
expect_status 409 "an MSISDN of another subscriber"
[ "$(jq -r .error.field "$TSMD_WORK/resp")" = msisdns ] || fail "409 without field msisdns"
create '{"kind":"subscriber","name":"alice","msisdns":["33600000000"]}' p5
expect_status 409 "alice again with other MSISDNs"
create '{"kind":"subscriber","name":"alice"}' p6
expect_status 200 "alice again without attributes"
api GET "/admin/v1/principals?limit=2" "$OP_TOKEN"
expect_status 200 "principal page 1"
[ "$(jq '.items | length' "$TSMD_WORK/resp")" = 2 ] || fail "principal page of 2: $(cat "$TSMD_WORK/resp")"
CUR=$(jq -r .next_cursor "$TSMD_WORK/resp")
api GET "/admin/v1/principals?limit=1000&cursor=$CUR" "$OP_TOKEN"
[ "$(jq '.items | length' "$TSMD_WORK/resp")" = 2 ] && [ "$(jq -r .next_cursor "$TSMD_WORK/resp")" = null ] ||
    fail "principal page 2: $(cat "$TSMD_WORK/resp")"
api GET "/admin/v1/principals/99999999999999999999" "$OP_TOKEN"
expect_status 404 "an id out of range"

# ---- token labels (issue 9 point 15): no ESC, CR, LF, U+202E ----
for l in 'a\u001b[2Jb' 'a\rb' 'a\nb' 'evil\u202etxt.exe' 'zero\u200bwidth'; do
    api POST /admin/v1/tokens "$OP_TOKEN" "{\"principal_id\":$SPA,\"label\":\"$l\"}"
    expect_status 400 "token label $l"
    [ "$(jq -r .error.field "$TSMD_WORK/resp")" = label ] || fail "label $l: no field label"
done
api POST /admin/v1/tokens "$OP_TOKEN" "{\"principal_id\":$SPA,\"label\":\"ci runner \u00e9t\u00e9\"}"
expect_status 201 "a plain UTF-8 label"
api DELETE "/admin/v1/tokens/$(jq -r .id "$TSMD_WORK/resp")" "$OP_TOKEN"
expect_status 200 "revoke the labelled token"

# ---- token paging ----
TA=$(tsmd_token "$SPA")
for i in $(seq 1 6); do tsmd_token "$SPA" >/dev/null; done
for l in 0 abc -1 1001; do
    api GET "/admin/v1/tokens?limit=$l" "$OP_TOKEN"
    expect_status 400 "tokens limit=$l"
    [ "$(jq -r .error.field "$TSMD_WORK/resp")" = limit ] || fail "limit=$l: no field limit"
done
api GET "/admin/v1/tokens?limit=2" "$OP_TOKEN"
expect_status 200 "tokens limit=2"
[ "$(jq '.items | length' "$TSMD_WORK/resp")" = 2 ] || fail "limit=2 gave $(jq '.items | length' "$TSMD_WORK/resp")"
: >"$TSMD_WORK/ids"
CUR=
pages=0
while :; do
    api GET "/admin/v1/tokens?limit=3${CUR:+&cursor=$CUR}" "$OP_TOKEN"
    expect_status 200 "tokens page"
    jq -r '.items[].id' "$TSMD_WORK/resp" >>"$TSMD_WORK/ids"
    CUR=$(jq -r .next_cursor "$TSMD_WORK/resp")
    pages=$((pages + 1))
    [ "$CUR" != null ] || break
    [ "$pages" -lt 10 ] || fail "token pages do not end"
done
# 1 bootstrap + 1 labelled + 7 for sp-a: every one once, the oldest (the bootstrap's) last.
[ "$(wc -l <"$TSMD_WORK/ids")" = 9 ] || fail "paging listed $(wc -l <"$TSMD_WORK/ids") tokens, want 9"
[ "$(sort -u "$TSMD_WORK/ids" | wc -l)" = 9 ] || fail "paging listed a token twice"
[ "$(tail -n 1 "$TSMD_WORK/ids")" = 1 ] || fail "the oldest token is not reached last: $(tr '\n' ' ' <"$TSMD_WORK/ids")"
# A service provider pages its own tokens.
api GET "/admin/v1/tokens?limit=5" "$TA"
[ "$(jq '.items | length' "$TSMD_WORK/resp")" = 5 ] && [ "$(jq -r .next_cursor "$TSMD_WORK/resp")" != null ] ||
    fail "sp page: $(cat "$TSMD_WORK/resp")"

# ---- canonical principal_id, bare query arguments ----
for v in '%2B1' '%201' '01' '99999999999999999999' '1x' ''; do
    api GET "/admin/v1/tokens?principal_id=$v" "$OP_TOKEN"
    expect_status 400 "tokens principal_id=$v"
    api GET "/admin/v1/audit?principal_id=$v" "$OP_TOKEN"
    expect_status 400 "audit principal_id=$v"
done
api GET "/admin/v1/tokens?principal_id=$SPA" "$OP_TOKEN"
expect_status 200 "tokens principal_id=$SPA"
api GET "/tsm/v1/secure-elements?msisdn" "$OP_TOKEN"
expect_status 400 "?msisdn as operator"
[ "$(jq -r .error.field "$TSMD_WORK/resp")" = msisdn ] || fail "?msisdn: no field msisdn"
api GET "/tsm/v1/secure-elements?msisdn" "$TA"
expect_status 400 "?msisdn as service provider"
api GET "/admin/v1/tokens?limit" "$OP_TOKEN"
expect_status 400 "?limit"

# ---- the old paths are gone ----
for p in /tsm/v1/principals /tsm/v1/tokens /tsm/v1/audit /tsm/v1/audit/verify; do
    api GET "$p" "$OP_TOKEN"
    expect_status 404 "old path $p"
done
tsmd_stop
echo "tsmd.admin_api: ok"
