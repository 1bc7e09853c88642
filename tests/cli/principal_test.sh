#!/usr/bin/env bash
# cli.principal: tsmctl principal create sends each kind's attributes
# (--display-name; --msisdn, repeatable; --imei, --imsi, --mno) to
# POST /admin/v1/principals, principal get/list show them, and the server's
# refusal of a wrong attribute comes back naming the field.
#
# usage: principal_test.sh TSMD TSMCTL
set -euo pipefail

TSMD=$1
TSMCTL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

cli_tsmd_up cli-principal log.level=warn

ctl_run 0 "${OP[@]}" --json principal create service_provider bank-a --display-name "Bank A"
jq -e '.kind == "service_provider" and .display_name == "Bank A"' "$OUT" >/dev/null ||
    fail "sp: $(cat "$OUT")"
ctl_run 0 "${OP[@]}" --json principal create subscriber alice --msisdn 33600000001 \
    --msisdn 33600000002
jq -e '.msisdns == ["33600000001","33600000002"]' "$OUT" >/dev/null || fail "subscriber: $(cat "$OUT")"
sub=$(jq -r .id "$OUT")
# 490154203237518: a valid IMEI (Luhn).
ctl_run 0 "${OP[@]}" --json principal create device phone-1 --imei 490154203237518 \
    --imsi 208010000000001 --mno orange
jq -e '.imei == "490154203237518" and .imsi == "208010000000001" and .mno == "orange"' "$OUT" \
    >/dev/null || fail "device: $(cat "$OUT")"

# get and list show them; the table prints the list.
ctl_run 0 "${OP[@]}" principal get "$sub"
out_has 'msisdns'
out_has '["33600000001","33600000002"]'
ctl_run 0 "${OP[@]}" --json principal list
jq -e 'map(.name) | index("alice") != null and index("phone-1") != null' "$OUT" >/dev/null ||
    fail "principal list: $(cat "$OUT")"
ctl_run 0 "${OP[@]}" principal list --limit 2
[ "$(wc -l <"$OUT")" = 3 ] || fail "principal list --limit 2: $(cat "$OUT")"

# Refusals name the field; nothing on stdout.
ctl_run 3 "${OP[@]}" principal create subscriber bob --imei 490154203237518
err_has 'field=imei'
ctl_run 3 "${OP[@]}" principal create device phone-2 --imei 490154203237519
err_has 'field=imei'
ctl_run 3 "${OP[@]}" --json principal create subscriber carol --msisdn 33600000001
[ ! -s "$OUT" ] || fail "stdout after a refusal: $(cat "$OUT")"
jq -e '.error.status == 409 and .error.field == "msisdns"' "$ERR" >/dev/null ||
    fail "duplicate MSISDN: $(cat "$ERR")"
# Command line: a non-canonical id, a repeated non-repeatable option.
ctl_run 2 "${OP[@]}" principal get +1
ctl_run 2 "${OP[@]}" principal create device d --imei 1 --imei 2
err_has 'option --imei given twice'
ctl_run 1 "${OP[@]}" principal get 999999

# A rate-limited answer says when to retry (Retry-After), in text and JSON.
tsmd_stop
TSMD_SETS+=(--set ratelimit.per_s=1 --set ratelimit.burst=1)
tsmd_start
got=
for _ in $(seq 1 50); do
    rc=0
    "$TSMCTL" "${OP[@]}" --json principal get "$sub" >/dev/null 2>"$TSMD_WORK/rl.err" || rc=$?
    if [ "$rc" = 3 ]; then
        got=1
        break
    fi
done
[ -n "$got" ] || fail "no 429 in 50 requests at 1 per second"
jq -e '.error.status == 429 and .error.code == "rate_limited" and .error.retry_after >= 0
       and (.error.text | contains("retry after"))' "$TSMD_WORK/rl.err" >/dev/null ||
    fail "429: $(cat "$TSMD_WORK/rl.err")"
echo "principal: kind attributes sent, shown and refused precisely"
