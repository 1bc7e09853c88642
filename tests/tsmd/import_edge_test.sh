#!/usr/bin/env bash
# tsmd.import_edge: SE import edge cases (issue 9 points 9 and 16):
#
# - invalid UTF-8 (and control bytes) in a CSV header name answers 400 with
#   a JSON error naming the column in escaped form, not 503 text/plain;
# - a CSV line over 4 KiB of field text, or with more than 32 fields,
#   rejects that row only, with a message saying so; the rows around it are
#   imported;
# - cert_level starting with + or - (a formula on export: "+cmd",
#   "-2+3") is a rejected row;
# - the "rejected" list is in row order, also when conflicts found at
#   batch-write time and validation failures interleave (import_batch=2).
#
# usage: import_edge_test.sh TSMD
set -euo pipefail

TSMD=$1
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

for t in curl jq; do
    command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
done
tsmd_work_init tsmd-import-edge
tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "log.level=warn" "tsm.import_batch=2"
tsmd_bootstrap import-op
tsmd_start
IMP=/tsm/v1/secure-elements:import
HDR=cin,se_type,mno,msisdn,imsi,profile_id,gp_version,jc_version,cert_level,expiry,free_memory,master_key_index
row() { # row N [CERT]: a valid row number N
    printf '894900000000000C%04d,UICC,mno-c,4917300%05d,26207300%07d,p1,2.3.1,3.0.5,%s,2030-01-31,65536,1\n' \
        "$1" "$1" "$1" "${2:-EAL5+}"
}
import() { # import FILE KEY
    api POST $IMP "$OP_TOKEN" - -H "Content-Type: text/csv" -H "Idempotency-Key: $2" \
        --data-binary "@$1"
}

# ---- invalid UTF-8 in the header ----
printf 'cin,se_\xff\xfetype\n894900000000000C0001,UICC\n' >"$TSMD_WORK/utf8.csv"
import "$TSMD_WORK/utf8.csv" u1
expect_status 400 "invalid UTF-8 in a header name"
grep -qi '^content-type: application/json' "$TSMD_WORK/resp.h" || fail "the 400 is not JSON"
jq -e '.error.message | test("unknown CSV column")' "$TSMD_WORK/resp" >/dev/null ||
    fail "message: $(cat "$TSMD_WORK/resp")"
printf 'cin,\x1b[2Jx\n1,2\n' >"$TSMD_WORK/ctl.csv"
import "$TSMD_WORK/ctl.csv" u2
expect_status 400 "a control byte in a header name"
grep -q $'\x1b' "$TSMD_WORK/resp" && fail "the answer carries a raw ESC"

# ---- a long line rejects its row only; formula starts; row order ----
{
    echo "$HDR"
    row 1
    printf '894900000000000C0002,UICC,mno-c,491730000002,262073000000002,%s,2.3.1,3.0.5,EAL5+,2030-01-31,65536,1\n' \
        "$(head -c 5000 /dev/zero | tr '\0' p)"
    row 3
    row 4 '+cmd'
    row 5 '-2+3'
    printf 'a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u,v,w,x,y,z,1,2,3,4,5,6,7\n'
    row 7
} >"$TSMD_WORK/long.csv"
import "$TSMD_WORK/long.csv" l1
expect_status 200 "import with a long line"
jq -e '.rows == 7 and .imported == 3 and .rejected_count == 4
       and ([.rejected[].row] == [2, 4, 5, 6])
       and (.rejected[0].message | test("longer than 4096"))
       and ([.rejected[1, 2].field] == ["cert_level", "cert_level"])
       and (.rejected[3].message | test("more than 32 fields"))' "$TSMD_WORK/resp" >/dev/null ||
    fail "long-line report: $(cat "$TSMD_WORK/resp")"
api GET "/tsm/v1/secure-elements/894900000000000C0007" "$OP_TOKEN"
expect_status 200 "the row after the long ones"

# Conflicts (found when a batch is written) and validation failures
# (found at once) interleave; the report is still in row order.
# With batches of 2, row 1 (a conflict) is reported when its batch is
# written, after row 2 (invalid) was reported at once.
{
    echo "$HDR"
    row 1 EAL6  # conflicts with the stored row 1 (other cert_level)
    row 8 '+x'  # invalid
    row 9
    row 7 EAL6  # conflicts
    row 10 '-y' # invalid
    row 11
} >"$TSMD_WORK/mixed.csv"
import "$TSMD_WORK/mixed.csv" m1
expect_status 200 "mixed import"
jq -e '([.rejected[].row] == [1, 2, 4, 5]) and .rejected_count == 4 and .imported == 2' \
    "$TSMD_WORK/resp" >/dev/null || fail "mixed report not in row order: $(cat "$TSMD_WORK/resp")"
tsmd_stop
echo "tsmd.import_edge: ok"
