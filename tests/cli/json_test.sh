#!/usr/bin/env bash
# cli.json (issue 9 point 17): with --json a list is one JSON document (an
# array, [] when empty, every page followed), an object answer one object;
# an error is one {"error":{...}} object on stderr with nothing on stdout;
# without --json no table header is printed before a request succeeded.
#
# usage: json_test.sh TSMD TSMCTL
set -euo pipefail

TSMD=$1
TSMCTL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

cli_tsmd_up cli-json log.level=warn

# An empty list: [] (and a table of the header alone).
ctl_run 0 "${OP[@]}" --json se list
[ "$(cat "$OUT")" = "[]" ] || fail "empty se list --json printed '$(cat "$OUT")'"
ctl_run 0 "${OP[@]}" se list
[ "$(wc -l <"$OUT")" = 1 ] && out_has cin || fail "empty se list: $(cat "$OUT")"

# Many rows: one array with all of them.
{
    echo "cin,se_type,mno,msisdn,imsi,profile_id,gp_version,jc_version,cert_level,expiry,free_memory,master_key_index"
    for i in $(seq 1 25); do
        printf 'A00000010000000000%02d,UICC,mno-j,+336000000%02d,,uicc-v1,2.2.1,3.0.4,EAL5+,2030-12-31,65536,1\n' "$i" "$i"
    done
} >"$TSMD_WORK/se.csv"
ctl_run 0 "${OP[@]}" se import "$TSMD_WORK/se.csv"
for opt in "--json se list --limit 25" "--json se list" "se list --json --limit 7"; do
    # shellcheck disable=SC2086
    ctl_run 0 "${OP[@]}" $opt
    want=25
    case $opt in *"--limit 7"*) want=7 ;; esac
    [ "$(jq -s 'length' "$OUT")" = 1 ] || fail "$opt: not one JSON document: $(head -c 300 "$OUT")"
    [ "$(jq 'type' "$OUT")" = '"array"' ] || fail "$opt: not an array"
    [ "$(jq 'length' "$OUT")" = "$want" ] || fail "$opt: $(jq length "$OUT") rows, want $want"
done
# (Following cursors over many pages into one array: tsmd.registry, 104 SDs.)
ctl_run 0 "${OP[@]}" --json token list
jq -e 'type == "array" and length >= 1' "$OUT" >/dev/null || fail "token list --json: $(cat "$OUT")"
ctl_run 0 "${OP[@]}" --json audit list --limit 3
jq -e 'type == "array" and length == 3' "$OUT" >/dev/null || fail "audit list --json: $(cat "$OUT")"
# One object answer: one object.
ctl_run 0 "${OP[@]}" --json se get A0000001000000000001
jq -e 'type == "object" and .cin == "A0000001000000000001"' "$OUT" >/dev/null ||
    fail "se get --json: $(cat "$OUT")"

# Errors: a service provider may not list SEs (403): nothing on stdout
# (no table header either), one JSON error object on stderr.
ctl_run 0 "${OP[@]}" token issue --kind service_provider --name json-sp --token-only
SP=$(cat "$OUT")
ctl_run 3 --url "$TSMD_URL" --token "$SP" se list
[ ! -s "$OUT" ] || fail "a table header was printed before a failed request: $(cat "$OUT")"
err_has 'HTTP 403 forbidden'
ctl_run 3 --url "$TSMD_URL" --token "$SP" --json se list
[ ! -s "$OUT" ] || fail "--json printed on stdout after a failure: $(cat "$OUT")"
jq -e '.error.kind == "server" and .error.status == 403 and .error.code == "forbidden"
       and .error.exit == 3 and (.error.request_id | length > 0)' "$ERR" >/dev/null ||
    fail "--json error: $(cat "$ERR")"
ctl_run 1 "${OP[@]}" --json se get --msisdn 33699999999
[ ! -s "$OUT" ] || fail "--json not-found printed on stdout: $(cat "$OUT")"
jq -e '.error.status == 404 and .error.exit == 1' "$ERR" >/dev/null || fail "404 error: $(cat "$ERR")"
# A bad token: 401 as JSON too.
ctl_run 3 --url "$TSMD_URL" --token ot_nope --json token list
jq -e '.error.status == 401' "$ERR" >/dev/null || fail "401 error: $(cat "$ERR")"
# A local failure as JSON (a file that does not exist).
ctl_run 5 "${OP[@]}" --json se import "$TSMD_WORK/none.csv"
[ ! -s "$OUT" ] || fail "--json printed on stdout after a local failure: $(cat "$OUT")"
jq -e '.error.kind == "local" and .error.exit == 5 and (.error.text | contains("none.csv"))' "$ERR" \
    >/dev/null || fail "local error: $(cat "$ERR")"
# https:// to this plain HTTP port: a transport error with a hint, as JSON.
ctl_run 4 --url "https://127.0.0.1:$TSMD_PORT" --token "$OP_TOKEN" --json token list
[ ! -s "$OUT" ] || fail "stdout after a TLS failure: $(cat "$OUT")"
jq -e '.error.kind == "transport" and (.error.text | contains("127.0.0.1:'"$TSMD_PORT"'")) and (.error.text | contains("a plain HTTP port?"))' "$ERR" \
    >/dev/null || fail "TLS to a plain port: $(cat "$ERR")"
note "https to plain: $(jq -r .error.text "$ERR")"
echo "json: one document per command, errors as JSON on stderr"
