#!/usr/bin/env bash
# se-agent end to end (issue 10, agent side of the first acceptance point):
# a real tsmd with mno:orange, a device enrolled with two CINs, and three
# cards: a vse through pcscd + vpcd as SIM1, a vse on its socket as eSE1, and
# a vse whose CIN the platform does not know as SD1.
#
# - --help and bad usage (exit 2), verify without the platform refused;
# - verify: SIM1 and eSE1 added, SD1 refused (exit 1); `list` and the
#   backstage query (GET P/devices/ID/secure-elements) show exactly the two
#   verified SEs with their data; remove eSE1 updates both sides;
# - the list survives a restart; a corrupt list is refused and left as is;
# - a card swapped in SIM1 is verified again (replaced; an unknown card
#   drops the entry);
# - `run`: a card inserted while it runs is verified and listed; SIGTERM
#   ends it with exit 0.
#
# usage: cli_test.sh TSMD SE_AGENT VSE PROFILES_DIR
set -euo pipefail

TSMD=$1
AGENT=$2
VSE=$3
PROFILES=$4
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# shellcheck source=../vse/pcscd_env.sh
. "$HERE/../vse/pcscd_env.sh"

need_tools curl jq

SIM_PID=
ESE_PID=
SD_PID=
RUN_PID=
agent_cleanup() {
    local p
    for p in "$RUN_PID" "$SIM_PID" "$ESE_PID" "$SD_PID"; do
        if [ -n "$p" ]; then
            kill "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    pcscd_env_stop
    if [ -f "$TSMD_WORK/run.log" ]; then
        echo "--- se-agent run log" >&2
        tail -20 "$TSMD_WORK/run.log" >&2
    fi
}
TSMD_CLEANUP_HOOK=agent_cleanup
tsmd_work_init agent-cli
W=$TSMD_WORK

CIN_SIM=4F54534D44455601 # profiles/dev.json
CIN_ESE=4F54534D55494301 # profiles/uicc-central.json
CIN_SD=4F54534D45534501  # profiles/ese-central.json: not enrolled
"$VSE" create --profile "$PROFILES/dev.json" --out "$W/sim.img" >/dev/null
"$VSE" create --profile "$PROFILES/uicc-central.json" --out "$W/ese.img" >/dev/null
"$VSE" create --profile "$PROFILES/ese-central.json" --out "$W/sd.img" >/dev/null

pcscd_env_start || fail "pcscd could not start"
start_sim() { # IMAGE: the card in vpcd's slot 0 (SIM1)
    "$VSE" run "$1" --vpcd "127.0.0.1:$VPCD_PORT" >>"$W/vse-sim.log" 2>&1 &
    SIM_PID=$!
    pcscd_env_wait_card 0 || fail "no card in reader 0"
}
# The card leaves reader 0; waits until pcscd has seen it go (a card put
# back before that is taken for the old one, whose vpcd link is dead).
stop_sim() {
    kill "$SIM_PID"
    wait "$SIM_PID" || true
    SIM_PID=
    for _ in $(seq 1 300); do
        opensc-tool -r 0 -a >/dev/null 2>&1 || return 0
        sleep 0.1
    done
    fail "pcscd still sees a card in reader 0"
}
# The socket file appears at bind, a moment before listen: waits until a
# connection is taken (the reader is present).
wait_sock() {
    for _ in $(seq 1 100); do
        [ -S "$1" ] && "$AGENT" --state "$W/probe" --reader "P=socket:unix:$1" status --json |
            jq -e '.readers[0].present' >/dev/null && return 0
        sleep 0.1
    done
    fail "no socket $1"
}
start_sim "$W/sim.img"
"$VSE" run "$W/ese.img" --listen "unix:$W/ese.sock" >>"$W/vse-ese.log" 2>&1 &
ESE_PID=$!
"$VSE" run "$W/sd.img" --listen "unix:$W/sd.sock" >>"$W/vse-sd.log" 2>&1 &
SD_PID=$!
wait_sock "$W/ese.sock"
wait_sock "$W/sd.sock"

tsmd_config "sqlite:$W/var/tsmd.db" "log.level=warn" "services.enabled=tsm, mno:orange"
tsmd_bootstrap ops
tsmd_start
P=/mno/orange/v1
agent_phone "$CIN_SIM" "$CIN_ESE"

A=("$AGENT" --state "$W/agent" --reader "SIM1=pcsc:Virtual PCD 00 00"
    --reader "eSE1=socket:unix:$W/ese.sock" --reader "SD1=socket:unix:$W/sd.sock")
M=(--mno "$TSMD_URL$P" --token-file "$W/device.token")

# ---- usage ------------------------------------------------------------------
"$AGENT" --help | grep -q "verify \[READER...\]" || fail "--help does not list verify"
for c in run list verify remove status --json --state --reader --mno --token-file; do
    "$AGENT" --help | grep -q -- "$c" || fail "--help does not mention $c"
done
set +e
"$AGENT" frobnicate >/dev/null 2>&1
[ $? -eq 2 ] || fail "an unknown command is not exit 2"
"$AGENT" --reader "SIM 1=pcsc:x" list >/dev/null 2>"$W/err"
[ $? -eq 2 ] || fail "a bad reader name is not exit 2"
grep -q "reader name" "$W/err" || fail "no reason for the bad reader: $(cat "$W/err")"
"${A[@]}" verify >/dev/null 2>"$W/err"
[ $? -eq 2 ] || fail "verify without --mno is not exit 2"
grep -q -- "--mno" "$W/err" || fail "verify without --mno: $(cat "$W/err")"
"${A[@]}" "${M[@]}" verify NOPE >/dev/null 2>&1
[ $? -eq 2 ] || fail "verify of an unknown reader is not exit 2"
set -e

# ---- verify: two known SEs added, the unknown one refused -------------------
set +e
"${A[@]}" "${M[@]}" verify --json >"$W/verify.json" 2>"$W/err"
rc=$?
set -e
[ $rc -eq 1 ] || fail "verify with a refused SE: exit $rc, want 1 ($(cat "$W/err"))"
cat "$W/verify.json"
[ "$(jq -r '[.results[] | .reader + "=" + .outcome] | join(",")' "$W/verify.json")" = \
    "SIM1=added,eSE1=added,SD1=refused" ] || fail "verify outcomes"
jq -r '.results[2].error' "$W/verify.json" | grep -q "$CIN_SD is not known" ||
    fail "the refusal does not name the CIN"

"${A[@]}" list --json >"$W/list.json"
[ "$(jq -r '[.items[] | .reader + "=" + .cin] | join(",")' "$W/list.json")" = \
    "SIM1=$CIN_SIM,eSE1=$CIN_ESE" ] || fail "list: $(cat "$W/list.json")"
[ "$(jq -r '.items[0].cplc | startswith("9F7F2A")' "$W/list.json")" = true ] || fail "CPLC kept"
[ "$(jq -r '.items[1].card_data | startswith("66")' "$W/list.json")" = true ] || fail "card data kept"
[ "$(jq -r '.items[0].iin' "$W/list.json")" = 4F54534D ] || fail "IIN kept"
"${A[@]}" list | tee "$W/list.txt"
grep -q "^SIM1 *$CIN_SIM" "$W/list.txt" || fail "table: SIM1"
grep -q "^2 SEs" "$W/list.txt" || fail "table: count"
# The backstage sees the same two.
api GET $P/devices/$DEV/secure-elements "$OP_TOKEN"
expect_status 200 "backstage query"
[ "$(jq -r '[.items[] | .reader + "=" + .cin] | sort | join(",")' "$W/resp")" = \
    "SIM1=$CIN_SIM,eSE1=$CIN_ESE" ] || fail "backstage: $(cat "$W/resp")"
echo "verified: SIM1 and eSE1 listed on both sides, SD1 refused"

"${A[@]}" status --json >"$W/status.json"
[ "$(jq -r '[.readers[] | .name + "=" + (.present|tostring) + "=" + (.cin // "-")] | join(",")' \
    "$W/status.json")" = "SIM1=true=$CIN_SIM,eSE1=true=$CIN_ESE,SD1=true=-" ] ||
    fail "status: $(cat "$W/status.json")"

# ---- remove (logout) updates both sides --------------------------------------
set +e
"${A[@]}" "${M[@]}" remove SD1 >/dev/null 2>"$W/err"
[ $? -eq 1 ] || fail "removing an SE that is not listed is not exit 1"
set -e
"${A[@]}" "${M[@]}" remove eSE1 | grep -qx "eSE1: removed" || fail "remove eSE1"
"${A[@]}" list --json | jq -e '.items | length == 1 and .[0].reader == "SIM1"' >/dev/null ||
    fail "list after remove"
api GET $P/devices/$DEV/secure-elements "$OP_TOKEN"
[ "$(jq -r '[.items[].reader] | join(",")' "$W/resp")" = SIM1 ] || fail "backstage after remove"
echo "removed eSE1 on both sides"

# ---- state: survives a restart; a corrupt list is refused, kept -------------
cp "$W/agent/selist.json" "$W/selist.good"
"${A[@]}" list --json | jq -e '.items[0].cin == "'$CIN_SIM'"' >/dev/null || fail "restart"
printf '{"version":1,"items":[{"reader":"SIM1"}]}' >"$W/agent/selist.json"
cp "$W/agent/selist.json" "$W/selist.bad"
set +e
"${A[@]}" list >/dev/null 2>"$W/err"
rc=$?
set -e
[ $rc -eq 1 ] || fail "a corrupt list: exit $rc"
grep -q "items\[0\].cin" "$W/err" || fail "corrupt list reason: $(cat "$W/err")"
cmp -s "$W/agent/selist.json" "$W/selist.bad" || fail "the corrupt list was changed"
cp "$W/selist.good" "$W/agent/selist.json"

# ---- a swapped card is verified again ---------------------------------------
stop_sim
kill "$ESE_PID"
wait "$ESE_PID" || true
ESE_PID=
start_sim "$W/ese.img"
"${A[@]}" "${M[@]}" verify SIM1 | grep -qx "SIM1: replaced" || fail "swapped card not replaced"
"${A[@]}" list --json | jq -e '.items | length == 1 and .[0].cin == "'$CIN_ESE'"' >/dev/null ||
    fail "list after the swap"
stop_sim
kill "$SD_PID"
wait "$SD_PID" || true
SD_PID=
start_sim "$W/sd.img"
set +e
"${A[@]}" "${M[@]}" verify SIM1 >"$W/out" 2>&1
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "SIM1: refused" "$W/out" || fail "unknown card in SIM1: $(cat "$W/out")"
"${A[@]}" list --json | jq -e '.items | length == 0' >/dev/null || fail "refused card still listed"
api GET $P/devices/$DEV/secure-elements "$OP_TOKEN"
[ "$(jq -r '.items | length' "$W/resp")" = 0 ] || fail "backstage after the refusal"
echo "card swaps: replaced, then an unknown card dropped"

# ---- run: a card inserted while running is verified -------------------------
stop_sim
"${A[@]}" "${M[@]}" --reader "X1=socket:unix:$W/none.sock" --poll-ms 100 --log-level info run \
    SIM1 >"$W/run.log" 2>&1 &
RUN_PID=$!
for _ in $(seq 1 100); do
    grep -q "event=started" "$W/run.log" && break
    sleep 0.1
done
start_sim "$W/sim.img"
for _ in $(seq 1 300); do
    "${A[@]}" list --json 2>/dev/null | jq -e '.items | length == 1' >/dev/null && break
    sleep 0.1
done
"${A[@]}" list --json | jq -e '.items[0].reader == "SIM1" and .items[0].cin == "'$CIN_SIM'"' \
    >/dev/null || fail "run did not verify the inserted card"
grep -q "event=card_inserted reader=SIM1" "$W/run.log" || fail "run did not log the insertion"
kill -TERM "$RUN_PID"
wait "$RUN_PID" || fail "run did not exit 0 on SIGTERM"
RUN_PID=
rm -f "$W/run.log"
echo "agent.cli ok"
