#!/usr/bin/env bash
# make demo, the over-the-air scene (issue 10, docs/ota.md, docs/mno.md,
# docs/se-agent.md): a phone with two SEs and the mno service of tsmd.
#
#   1. tsmd with mno:orange over TLS (a local CA); the phone's SEs are vse
#      cards: eSE1 on its socket and SIM1 through pcscd + vpcd (PC/SC; left
#      out with a note when pcscd cannot run here);
#   2. the operator enrols the device (principal, token) and its SEs' CINs;
#   3. se-agent run verifies the SEs (`se-agent list`) and registers: the
#      phone is online;
#   4. a bank submits a scripted job (SELECT ISD, GET DATA CIN and CPLC, read
#      only): it runs at once, its R-APDUs are shown;
#   5. se-agent stops (SIGTERM: the phone detaches), a job is submitted and
#      waits, queued;
#   6. se-agent starts again: the phone registers and the job runs, done.
#
# usage: scripts/demo_ota.sh [BUILD_DIR]   (needs tsmd, tsmctl, se-agent, vse)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
TSMD=$BUILD/src/bin/tsmd
TSMCTL=$BUILD/src/bin/tsmctl
AGENT=$BUILD/src/bin/se-agent
VSE=$BUILD/src/bin/vse
for b in "$TSMD" "$TSMCTL" "$AGENT" "$VSE"; do
    [ -x "$b" ] || { echo "demo: $b is not built (cmake --build $BUILD)" >&2; exit 1; }
done
for t in curl jq; do
    command -v "$t" >/dev/null || { echo "demo: $t is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done
# shellcheck source=../tests/tsmd/lib.sh
. "$ROOT/tests/tsmd/lib.sh"
# shellcheck source=../tests/vse/pcscd_env.sh
. "$ROOT/tests/vse/pcscd_env.sh"
RUN_PID=
PCSC=0
ota_cleanup() { # before tsmd_cleanup stops tsmd and the cards
    if [ -n "$RUN_PID" ]; then
        kill -TERM "$RUN_PID" 2>/dev/null || true
        wait "$RUN_PID" 2>/dev/null || true
    fi
    [ "$PCSC" = 0 ] || pcscd_env_stop
}
# shellcheck disable=SC2034 # read by tsmd_cleanup (tests/tsmd/lib.sh)
TSMD_CLEANUP_HOOK=ota_cleanup
step() { printf '\n== %s\n' "$*"; }
say() { printf '$ %s\n' "$*"; }

step "1. tsmd with mno:orange over TLS; the phone's SEs (vse cards)"
tsmd_work_init demo-ota
W=$TSMD_WORK
"$ROOT/scripts/certs.sh" "$W/certs" sp-a >/dev/null 2>&1
export CURL_CA_BUNDLE=$W/certs/ca.pem
CIN_ESE=4F54534D44455601 # profiles/dev.json
CIN_SIM=4F54534D55494301 # profiles/uicc-central.json
MSISDN=33600000001
"$VSE" create --profile "$ROOT/profiles/dev.json" --out "$W/ese.img" >/dev/null
"$VSE" run "$W/ese.img" --listen "unix:$W/ese.sock" >>"$W/vse-ese.log" 2>&1 &
TSMD_EXTRA_PIDS+=("$!")
READERS=(--reader "eSE1=socket:unix:$W/ese.sock")
CINS=(--cin "$CIN_ESE")
echo "    eSE1: vse card $CIN_ESE on $W/ese.sock"
if pcscd_env_start 2>"$W/pcscd_env.err"; then
    PCSC=1
    "$VSE" create --profile "$ROOT/profiles/uicc-central.json" --out "$W/sim.img" >/dev/null
    "$VSE" run "$W/sim.img" --vpcd "127.0.0.1:$VPCD_PORT" >>"$W/vse-sim.log" 2>&1 &
    TSMD_EXTRA_PIDS+=("$!")
    pcscd_env_wait_card 0 || fail "no card in the PC/SC reader"
    READERS+=(--reader "SIM1=pcsc:Virtual PCD 00 00")
    CINS+=(--cin "$CIN_SIM")
    echo "    SIM1: vse card $CIN_SIM in PC/SC reader \"Virtual PCD 00 00\" (pcscd + vpcd)"
else
    echo "    (no SIM1 over PC/SC here: $(tail -1 "$W/pcscd_env.err"))"
fi
tsmd_config "sqlite:$W/var/tsmd.db" "log.level=warn" "services.enabled=tsm, mno:orange" \
    "tls.cert=$W/certs/server.pem" "tls.key=$W/certs/server.key" "mno.orange.backoff_s=0"
TSMD_URL=https://localhost:$TSMD_PORT
tsmd_bootstrap demo-operator
tsmd_start
TSMD_URL=https://localhost:$TSMD_PORT
P=/mno/orange/v1
echo "    tsmd: $TSMD_URL (mno orange on $P)"
ctl() { OPENTSM_URL=$TSMD_URL OPENTSM_TOKEN=$OP_TOKEN "$TSMCTL" --ca "$W/certs/ca.pem" "$@"; }
bank() { OPENTSM_URL=$TSMD_URL OPENTSM_TOKEN=$BANK "$TSMCTL" --ca "$W/certs/ca.pem" "$@"; }

step "2. the operator enrols the phone and its SEs"
say "tsmctl principal create device phone1 --imei 356938035643809 --imsi 208011234567890 --mno orange"
ctl principal create device phone1 --imei 356938035643809 --imsi 208011234567890 --mno orange \
    --json >"$W/dev.json"
DPRIN=$(jq -er .id "$W/dev.json")
echo "    device principal $DPRIN"
say "tsmctl token issue --principal-id $DPRIN --token-only   (into the phone's token file)"
(umask 077 && ctl token issue --principal-id "$DPRIN" --token-only >"$W/device.token")
say "tsmctl mno enrol $DPRIN --msisdn $MSISDN ${CINS[*]} --instance orange"
ctl mno enrol "$DPRIN" --msisdn "$MSISDN" "${CINS[@]}" --instance orange
BANK=$(ctl token issue --kind service_provider --name bank-a --token-only)
echo "    bank-a has its token"

step "3. the phone starts: se-agent verifies its SEs and registers"
A=("$AGENT" --state "$W/agent" "${READERS[@]}" --mno "$TSMD_URL$P"
    --token-file "$W/device.token" --ca "$W/certs/ca.pem")
phone_state() {
    ctl mno status --msisdn "$MSISDN" --instance orange --json | jq -r .state
}
wait_phone() { # STATE
    for _ in $(seq 1 200); do
        [ "$(phone_state)" = "$1" ] && return 0
        sleep 0.1
    done
    fail "the phone is not $1: $(tail -5 "$W/run.log")"
}
LOG_SEEN=0
agent_log() { # se-agent's lines since the last call, without the timestamps
    touch "$W/run.log"
    tail -n "+$((LOG_SEEN + 1))" "$W/run.log" | sed -E 's/^[0-9TZ:.-]+ [a-z]+ //; s/^/    | /'
    LOG_SEEN=$(wc -l <"$W/run.log")
}
agent_run() {
    "${A[@]}" --poll-ms 200 --log-level info --location-area 208-01-4A2F run >>"$W/run.log" 2>&1 &
    RUN_PID=$!
    wait_phone online
    for _ in $(seq 1 200); do # the push stream is open
        [ "$(grep -c "event=stream_open" "$W/run.log")" -ge "$1" ] && return 0
        sleep 0.1
    done
    fail "se-agent: no push stream: $(tail -5 "$W/run.log")"
}
say "se-agent ${READERS[*]} --mno $TSMD_URL$P --token-file device.token --ca ca.pem run &"
agent_run 1
agent_log
say "se-agent list"
"$AGENT" --state "$W/agent" list
say "tsmctl mno status --msisdn $MSISDN --instance orange"
ctl mno status --msisdn "$MSISDN" --instance orange

job_state() { bank mno job "$1" --instance orange --json | jq -r .state; }
wait_job() { # ID STATE
    for _ in $(seq 1 200); do
        [ "$(job_state "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    fail "job $1 is not $2: $(bank mno job "$1" --instance orange --json)"
}

step "4. bank-a submits a scripted job: it runs at once"
cat >"$W/job1.json" <<JSON
{"msisdn":"$MSISDN","se":{"reader":"eSE1"},"kind":"scripted",
 "apdus":["00A4040008A000000151000000","80CA004500","80CA9F7F00"]}
JSON
echo "    job1.json: SELECT the ISD, GET DATA CIN (0045), GET DATA CPLC (9F7F)"
say "tsmctl mno submit job1.json --instance orange"
bank mno submit "$W/job1.json" --instance orange --json >"$W/j1.json"
J1=$(jq -er .id "$W/j1.json")
echo "    job $J1 submitted: $(jq -r .state "$W/j1.json")"
wait_job "$J1" "done"
agent_log
say "tsmctl mno job $J1 --instance orange"
bank mno job "$J1" --instance orange
[ "$(bank mno job "$J1" --instance orange --json | jq -r '.scripts[0].rapdus[1]')" = "4508${CIN_ESE}9000" ] ||
    fail "job $J1: the CIN R-APDU is not the card's"

step "5. the phone goes off: the job waits"
say "kill -TERM se-agent   (it detaches the phone)"
kill -TERM "$RUN_PID"
wait "$RUN_PID" || fail "se-agent did not exit 0 on SIGTERM"
RUN_PID=
agent_log
say "tsmctl mno status --msisdn $MSISDN --instance orange"
ctl mno status --msisdn "$MSISDN" --instance orange
[ "$(phone_state)" = offline ] || fail "the phone is not offline after the detach"
sed 's/80CA9F7F00"\]/80CA004200"]/' "$W/job1.json" >"$W/job2.json"
echo "    job2.json: SELECT the ISD, GET DATA CIN (0045), GET DATA IIN (0042)"
say "tsmctl mno submit job2.json --instance orange"
bank mno submit "$W/job2.json" --instance orange --json >"$W/j2.json"
J2=$(jq -er .id "$W/j2.json")
say "tsmctl mno job $J2 --instance orange"
bank mno job "$J2" --instance orange
[ "$(job_state "$J2")" = queued ] || fail "job $J2 is not queued while the phone is off"

step "6. the phone comes back: it registers and the job runs"
say "se-agent ... run &"
agent_run 2
wait_job "$J2" "done"
agent_log
say "tsmctl mno job $J2 --instance orange"
bank mno job "$J2" --instance orange
say "tsmctl mno jobs --instance orange"
bank mno jobs --instance orange
kill -TERM "$RUN_PID"
wait "$RUN_PID" || fail "se-agent did not exit 0 on SIGTERM"
RUN_PID=
tsmd_stop
echo "    se-agent detached, tsmd stopped cleanly"
echo
echo "demo: ota done"
