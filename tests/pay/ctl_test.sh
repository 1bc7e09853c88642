#!/usr/bin/env bash
# pay.tsmctl (issue 11 phase 2 point 3): `tsmctl pay ...` against the real
# tsmd with pay: SP registration, key deposit from a file (the key is never
# printed, rotation gives the next version), client enrolment, listings,
# revocation of an SP and of a client; bad input exits 3 naming the field.
#
# usage: ctl_test.sh TSMD TSMCTL SPSIM
set -euo pipefail

TSMD=$1
TSMCTL=$2
SPSIM=$3
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

command -v jq >/dev/null || fail "jq is missing (scripts/deps.sh installs it)"
tsmd_work_init pay-ctl
tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "log.level=warn" "services.enabled=tsm, pay"
tsmd_bootstrap ops
tsmd_start
pay_info
spsim_start bank-a bank $IMK_A $PIN_A
DEV=$(tsmd_principal device term-1)
O=$TSMD_WORK/out

ctl() { # WANT-RC ARGS...
    local want=$1 rc=0
    shift
    OPENTSM_URL=$TSMD_URL OPENTSM_TOKEN=$OP_TOKEN "$TSMCTL" --json "$@" >"$O" 2>"$O.err" || rc=$?
    [ "$rc" = "$want" ] || fail "tsmctl $*: exit $rc, want $want: $(cat "$O" "$O.err")"
}

ctl 0 pay sp-register bank-a --kind bank --display-name "Bank A" \
    --endpoint "$URL_bank_a/spsim/v1" --pub "$PUB_bank_a"
jq -e '.name == "bank-a" and .kind == "bank" and .revoked == false' "$O" >/dev/null ||
    fail "sp-register: $(cat "$O")"
ctl 3 pay sp-register bank-b --kind bank --display-name "Bank B" --endpoint "ftp://x" \
    --pub "$PUB_bank_a"
grep -q '"field":"endpoint"' "$O.err" || fail "bad endpoint: $(cat "$O.err")"
ctl 2 pay sp-register bank-b --kind bank
printf '%s\n' $IMK_A >"$TSMD_WORK/imk.hex"
ctl 0 pay key-deposit bank-a --key-type emv_imk --key-file "$TSMD_WORK/imk.hex"
jq -e '.version == 1 and .key_type == "emv_imk"' "$O" >/dev/null || fail "deposit: $(cat "$O")"
ctl 0 pay key-deposit bank-a --key-type emv_imk --key-file "$TSMD_WORK/imk.hex"
jq -e '.version == 2' "$O" >/dev/null || fail "rotation: $(cat "$O")"
ctl 3 pay key-deposit bank-a --key-type cvk --key-file "$TSMD_WORK/imk.hex"
grep -q '"field":"key_type"' "$O.err" || fail "bad key type: $(cat "$O.err")"
ctl 5 pay key-deposit bank-a --key-type pin --key-file "$TSMD_WORK/nope"
ctl 0 pay keys bank-a
jq -e '[.items[].version] == [1, 2]' "$O" >/dev/null || fail "keys: $(cat "$O")"
if grep -q "$IMK_A" "$O" "$O.err" "$TSMD_WORK/tsmd.log"; then fail "a key was shown"; fi
ctl 0 pay sps
jq -e '.items | length == 1' "$O" >/dev/null || fail "sps: $(cat "$O")"
ctl 0 pay sp bank-a
ctl 1 pay sp bank-z

ctl 0 pay client-enrol term-1 --principal-id "$DEV" --dongle-pub "$PAY_PUB"
jq -e --argjson d "$DEV" '.name == "term-1" and .principal_id == $d' "$O" >/dev/null ||
    fail "client-enrol: $(cat "$O")"
ctl 3 pay client-enrol term-2 --principal-id "$DEV" --dongle-pub "$PAY_PUB"
ctl 0 pay clients
jq -e '.items[0].name == "term-1"' "$O" >/dev/null || fail "clients: $(cat "$O")"
ctl 0 pay client-revoke term-1
jq -e '.revoked == true' "$O" >/dev/null || fail "client-revoke: $(cat "$O")"
ctl 0 pay client term-1
jq -e '.revoked == true' "$O" >/dev/null || fail "client: $(cat "$O")"
ctl 0 pay sp-revoke bank-a
ctl 3 pay key-deposit bank-a --key-type pin --key-file "$TSMD_WORK/imk.hex"
grep -q '"code":"revoked"' "$O.err" || fail "deposit after revoke: $(cat "$O.err")"
tsmd_stop
echo "pay.tsmctl: ok"
