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
#   4. a bank runs an SCP03 session with its SD on eSE1 through a job
#      (client/otascp: the bank holds the keys and checks the card's R-MACs;
#      mno and se-agent carry protected bytes): it runs at once;
#   5. se-agent stops (SIGTERM: the phone detaches); the bank's next SCP03
#      job (its handshake computed ahead, guarded) waits, queued;
#   6. se-agent starts again: the phone registers and the job runs, done,
#      its R-MACs verified.
#
# usage: scripts/demo_ota.sh [BUILD_DIR]   (needs tsmd, tsmctl, se-agent, vse and
# tests/mno/mno_otascp_run: a build with the tests)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=demo_lib.sh
. "$ROOT/scripts/demo_lib.sh"
demo_begin "${1:-}" src/bin/tsmd src/bin/tsmctl src/bin/se-agent src/bin/vse \
    tests/mno/mno_otascp_run -- curl jq
OTASCP=$BUILD/tests/mno/mno_otascp_run
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

step "1. tsmd with mno:orange over TLS; the phone's SEs (vse cards)"
tsmd_work_init demo-ota
W=$TSMD_WORK
"$ROOT/scripts/certs.sh" "$W/certs" sp-a >/dev/null 2>&1
export CURL_CA_BUNDLE=$W/certs/ca.pem
CIN_ESE=4F54534D45534501 # profiles/ese-central.json
CIN_SIM=4F54534D55494301 # profiles/uicc-central.json
MSISDN=33600000001
"$VSE" create --profile "$ROOT/profiles/ese-central.json" --out "$W/ese.img" >/dev/null
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

step "4. bank-a runs an SCP03 session with its SD on eSE1: it runs at once"
# bank-a's security domain F04F54534D534401 of profiles/ese-central.json
# (pseudo-random card challenge, R-MAC, R-ENC); its keys stay with the bank:
# mno and se-agent carry protected bytes only, the bank checks the R-MACs.
SD=F04F54534D534401
APP=F04F54534D0501AA
scp03() { # the bank's submitter (client/otascp.h, tests/mno/otascp_run.c)
    "$OTASCP" --url "$TSMD_URL" --ca "$W/certs/ca.pem" --token "$BANK" --instance orange \
        --msisdn "$MSISDN" --reader eSE1 --aid "$SD" --key 505152535455565758595A5B5C5D5E5F \
        --kvn 48 --level 33 --card "$W/bank-a.card" "$@"
}
say "otascp_run --msisdn $MSISDN --reader eSE1 --aid $SD --key <bank-a's> --level 33 \\"
say "    80CA00E000 80F240020A4F08${APP}00   (GET DATA key info, GET STATUS of its application)"
scp03 80CA00E000 "80F240020A4F08${APP}00" | tee "$W/j1.out"
grep -q "R-MACs verified" "$W/j1.out" || fail "job 1: the R-MACs were not verified"
J1=$(sed -n '1s/^job \([0-9]*\):.*/\1/p' "$W/j1.out")
agent_log
say "tsmctl mno job $J1 --instance orange   (what mno saw: SCP03-protected bytes only)"
bank mno job "$J1" --instance orange
[ "$(job_state "$J1")" = done ] || fail "job $J1 is not done"

step "5. the phone goes off: the next SCP03 job waits"
say "kill -TERM se-agent   (it detaches the phone)"
kill -TERM "$RUN_PID"
wait "$RUN_PID" || fail "se-agent did not exit 0 on SIGTERM"
RUN_PID=
agent_log
say "tsmctl mno status --msisdn $MSISDN --instance orange"
ctl mno status --msisdn "$MSISDN" --instance orange
[ "$(phone_state)" = offline ] || fail "the phone is not offline after the detach"
echo "    the bank knows the card now: the handshake is computed ahead, one guarded script"
say "otascp_run ... 80F240020A4F08${APP}00 &"
scp03 --timeout-ms 60000 "80F240020A4F08${APP}00" >"$W/j2.out" 2>&1 &
SCP_PID=$!
J2=
for _ in $(seq 1 100); do
    J2=$(bank mno jobs --instance orange --json | jq -r '[.[] | select(.state == "queued")] | .[0].id // empty')
    [ -n "$J2" ] && break
    sleep 0.1
done
[ -n "$J2" ] || fail "no queued job"
say "tsmctl mno job $J2 --instance orange"
bank mno job "$J2" --instance orange
[ "$(job_state "$J2")" = queued ] || fail "job $J2 is not queued while the phone is off"

step "6. the phone comes back: it registers and the job runs"
say "se-agent ... run &"
agent_run 2
wait "$SCP_PID" || fail "job $J2: $(cat "$W/j2.out")"
cat "$W/j2.out"
grep -q "R-MACs verified" "$W/j2.out" || fail "job 2: the R-MACs were not verified"
agent_log
say "tsmctl mno job $J2 --instance orange"
bank mno job "$J2" --instance orange
[ "$(job_state "$J2")" = done ] || fail "job $J2 is not done"
kill -TERM "$RUN_PID"
wait "$RUN_PID" || fail "se-agent did not exit 0 on SIGTERM"
RUN_PID=
tsmd_stop
echo "    se-agent detached, tsmd stopped cleanly"
echo
echo "demo: ota done"
