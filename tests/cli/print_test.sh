#!/usr/bin/env bash
# cli.print (issue 9 points 1 and 15, the printing side): text that reaches
# tsmctl from the server -- audit rows made from a request path, token
# labels -- is printed escaped: no raw control byte (an ESC that would clear
# the screen and print a forged row), no bidi control, in tables and in
# --json (pure ASCII), and a strange row never stops the listing.
#
# usage: print_test.sh TSMD TSMCTL
set -euo pipefail

TSMD=$1
TSMCTL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

cli_tsmd_up cli-print log.level=warn

# 1. An unauthenticated request whose path carries ESC [2J (clear screen),
# ESC [H, a forged row after a CR LF, and U+202E: the denial is audited with
# that path.
evil='/tsm/v1/secure-elements/%1b%5b2J%1b%5bH%0d%0a999%20forged%e2%80%aeabc'
code=$(curl -s -o /dev/null -w '%{http_code}' "$TSMD_URL$evil")
[ "$code" = 401 ] || fail "unauthenticated request answered $code"
# And one whose path is invalid UTF-8 (%ff%fe): its row must not stop the
# listing either (the server stores it escaped; tsmctl would escape it too).
code=$(curl -s -o /dev/null -w '%{http_code}' "$TSMD_URL/tsm/v1/secure-elements/%ff%fe")
[ "$code" = 401 ] || [ "$code" = 400 ] || fail "invalid UTF-8 path answered $code"
# A row from a normal action follows it: the listing must reach it.
ctl_run 0 "${OP[@]}" principal create service_provider after-evil

ctl_run 0 "${OP[@]}" audit list --limit 1000
no_raw_controls "$OUT"
out_has 'principal.create'
# The ESC is shown as text (escaped by tsmctl, or already by the server:
# the same notation); a CR/LF cannot start a row of its own.
out_has '\x1B[2J\x1B[H\x0D\x0A999 forged\u{202E}abc'
if [ "$code" = 401 ]; then
    out_has '\xFF\xFE'
fi
! LC_ALL=C grep -qP '[\xfe\xff]' "$OUT" || fail "raw invalid UTF-8 printed"
! grep -q '^999 forged' "$OUT" || fail "a forged row starts a line"
ctl_run 0 "${OP[@]}" --json audit list --limit 1000
ascii_only "$OUT"
jq -e 'type == "array" and length >= 2' "$OUT" >/dev/null || fail "audit list --json is not one array"
jq -e 'map(select(.action == "principal.create")) | length >= 1' "$OUT" >/dev/null ||
    fail "audit list --json lacks the row after the strange one"

# 2. Token labels (point 15): a label with ESC, CR, LF and U+202E. The
# server may refuse it (400 naming the field); if it keeps it, tsmctl
# token list prints it escaped.
ctl_run 0 "${OP[@]}" --json principal create service_provider label-sp
sp_id=$(jq -er .id "$OUT")
api POST /admin/v1/tokens "$OP_TOKEN" \
    "{\"principal_id\":$sp_id,\"label\":\"a\\u001b[31mred\\r\\nx\\u202eevil\"}"
case $API_STATUS in
201 | 200)
    ctl_run 0 "${OP[@]}" token list --principal-id "$sp_id"
    no_raw_controls "$OUT"
    out_has 'a\x1B[31mred\x0D\x0Ax\u{202E}evil'
    [ "$(wc -l <"$OUT")" = 2 ] || fail "token list: the label split a row: $(cat -v "$OUT")"
    ctl_run 0 "${OP[@]}" --json token list --principal-id "$sp_id"
    ascii_only "$OUT"
    jq -e '.[0].label == "a\u001b[31mred\r\nx\u202eevil"' "$OUT" >/dev/null ||
        fail "token list --json changed the label: $(cat "$OUT")"
    note "label kept by the server, printed escaped"
    ;;
400)
    jq -e '.error.field == "label"' "$TSMD_WORK/resp" >/dev/null ||
        fail "label refused without naming the field: $(cat "$TSMD_WORK/resp")"
    note "label refused by the server (400 field=label)"
    ;;
*) fail "token with a strange label: HTTP $API_STATUS: $(cat "$TSMD_WORK/resp")" ;;
esac

# 3. An error answer about a strange argument is printed escaped too.
ctl_run 3 "${OP[@]}" se get $'A0\x1b[2J'
no_raw_controls "$ERR"
echo "print: every server string printed escaped"
