#!/usr/bin/env bash
# cli.import (issue 9 point 16, client side): a header-only file is sent to
# the server, so a nonsense header is refused (exit 3, the column named) and
# never exits 0 unseen; a valid header-only file reports rows 0 as the
# server says. On a local failure (missing file, malformed CSV, an over-long
# line, a JSON file that is not an array) nothing like "rows 0, imported 0"
# is printed, in text or --json, and the message names the file and line.
# A data line over the CSV reader's cap is the server's to reject (that row
# only); a header over it is refused locally.
#
# usage: import_test.sh TSMD TSMCTL
set -euo pipefail

TSMD=$1
TSMCTL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

cli_tsmd_up cli-import log.level=info
W=$TSMD_WORK
imports() { grep -c 'secure-elements:import' "$W/tsmd.log" || true; }
HDR="cin,se_type,mno,msisdn,imsi,profile_id,gp_version,jc_version,cert_level,expiry,free_memory,master_key_index"

# Header only, nonsense columns: the server sees it and names the column.
printf 'foo,bar,baz\n' >"$W/nonsense.csv"
ctl_run 3 "${OP[@]}" se import "$W/nonsense.csv"
err_has 'field=foo'
out_hasnt 'rows 0'
ctl_run 3 "${OP[@]}" --json se import "$W/nonsense.csv"
[ ! -s "$OUT" ] || fail "--json printed a report after a refusal: $(cat "$OUT")"
jq -e '.error.field == "foo" and .error.status == 400' "$ERR" >/dev/null || fail "error: $(cat "$ERR")"
# Header only, valid: the server's report, exit 0.
printf '%s\n' "$HDR" >"$W/empty.csv"
ctl_run 0 "${OP[@]}" se import "$W/empty.csv"
out_has 'rows 0, imported 0, unchanged 0, rejected 0'
# An empty JSON array is sent too.
printf '[]\n' >"$W/empty.json"
ctl_run 0 "${OP[@]}" --json se import "$W/empty.json"
jq -e '.rows == 0 and .rejected == []' "$OUT" >/dev/null || fail "empty JSON import: $(cat "$OUT")"

# Local failures: no report, the file (and line) named, nothing sent.
before=$(imports)
local_fail() {
    local file=$1 text=$2
    ctl_run 5 "${OP[@]}" se import "$file"
    [ ! -s "$OUT" ] || fail "a report after a local failure on $file: $(cat "$OUT")"
    err_has "$text"
    ctl_run 5 "${OP[@]}" --json se import "$file"
    [ ! -s "$OUT" ] || fail "a --json report after a local failure on $file: $(cat "$OUT")"
    jq -e '.error.kind == "local" and .error.exit == 5' "$ERR" >/dev/null ||
        fail "--json local error for $file: $(cat "$ERR")"
}
local_fail "$W/missing.csv" "cannot open $W/missing.csv: No such file or directory"
printf '%s\n"A0000001,UICC\n' "$HDR" >"$W/quote.csv"
local_fail "$W/quote.csv" "$W/quote.csv: line 2: malformed CSV"
printf '%s,%s\n' "$HDR" "$(head -c 5000 /dev/zero | tr '\0' x)" >"$W/longhdr.csv"
local_fail "$W/longhdr.csv" "$W/longhdr.csv: line 1: header over 4096 bytes"
printf '{"cin":"A0"}\n' >"$W/obj.json"
local_fail "$W/obj.json" "$W/obj.json: the JSON file must be an array of rows"
: >"$W/nothing.csv"
local_fail "$W/nothing.csv" "$W/nothing.csv: the CSV file has no header line"
local_fail "$W" "not a regular file"
[ "$(imports)" = "$before" ] || fail "a local failure reached the server"
[ "$before" -ge 3 ] || fail "tsmd logged $before imports, want the 3 sent above (the check above needs them)"

# A data line over the reader's cap is sent: the server rejects that row
# only, and the rows around it are imported (issue 9 point 16).
{
    printf '%s\n' "$HDR"
    printf 'A000000100000000AA01,UICC,mno-l,33600000101,,uicc-v1,2.2.1,3.0.4,EAL5,2030-12-31,1,1\n'
    printf 'A000000100000000AA02,UICC,mno-l,%s\n' "$(head -c 5000 /dev/zero | tr '\0' x)"
    printf 'A000000100000000AA03,UICC,mno-l,33600000103,,uicc-v1,2.2.1,3.0.4,EAL5,2030-12-31,1,1\n'
} >"$W/long.csv"
ctl_run 1 "${OP[@]}" --json se import "$W/long.csv"
jq -e '.rows == 3 and .imported == 2 and .rejected_count == 1 and .rejected[0].row == 2' "$OUT" \
    >/dev/null || fail "long line: $(cat "$OUT")"
echo "import: header-only files checked by the server, no report after local failures"
