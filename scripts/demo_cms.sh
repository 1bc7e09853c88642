#!/usr/bin/env bash
# make demo, the lost-phone scene (issue 13, seed 000, docs/cms.md): tsmd
# with cms and mno:orange, two phones (se-agent + a vse card each, the
# payment application A0000000041010 under SCP03 keys cms holds).
#
#   1. the operator imports the issued cards (keys into the key store);
#   2. alice's phone is on and lost: she asks for the destroy with tsmctl,
#      the card is destroyed within seconds on its own proof (R-MAC), and a
#      payment attempt afterwards fails at the card;
#   3. bob's phone is off and stolen: his destroy waits (awaiting_destroy in
#      cms, the job queued in mno), the operator sees it; the phone comes back
#      on and the card is destroyed the moment it registers;
#   4. carol's bank destroys by burning the chip (policy hardware): her card
#      answers the DESTROY under its R-MAC, then is mute for good;
#   5. dave's phone loses power just after his card ran the DESTROY: it
#      boots again, cms reads the card (TERMINATED) and records the destroy,
#      which the card received once (docs/se-agent.md, the job's steps).
#
# usage: scripts/demo_cms.sh [BUILD_DIR]   (needs tsmd, tsmctl, se-agent, vse)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=demo_lib.sh
. "$ROOT/scripts/demo_lib.sh"
demo_begin "${1:-}" src/bin/tsmd src/bin/tsmctl src/bin/se-agent src/bin/vse -- curl jq
AGENT_PIDS=()
cms_cleanup() {
    local p
    for p in "${AGENT_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
# shellcheck disable=SC2034 # read by tsmd_cleanup (tests/tsmd/lib.sh)
TSMD_CLEANUP_HOOK=cms_cleanup

step "1. tsmd with cms and mno:orange; four phones with a vse card each"
tsmd_work_init demo-cms
W=$TSMD_WORK
CIN1=4F54534D45534501
CIN2=4F54534D45534502
CIN3=4F54534D45534503
CIN4=4F54534D45534504
# profiles/ese-central.json with an ISD that answers with R-MACs (i = 70)
jq '.isd.i = "70"' "$ROOT/profiles/ese-central.json" >"$W/p1.json"
for n in 2 3 4; do
    jq ".cin = \"$(eval echo "\$CIN$n")\"" "$W/p1.json" >"$W/p$n.json"
done
for n in 1 2 3 4; do
    "$VSE" create --profile "$W/p$n.json" --out "$W/c$n.img" >/dev/null
    "$VSE" run "$W/c$n.img" --listen "unix:$W/c$n.sock" --log-level trace >>"$W/vse$n.log" 2>&1 &
    TSMD_EXTRA_PIDS+=("$!")
done
tsmd_config "sqlite:$W/var/tsmd.db" "log.level=warn" "services.enabled=cms, mno:orange" \
    "mno.orange.backoff_s=0" "mno.orange.heartbeat_s=1" "mno.orange.sweep_ms=50" \
    "cms.tick_ms=50"
tsmd_bootstrap demo-operator
TSMD_SETS+=(--set "cms.mno_url=$TSMD_URL")
export OPENTSM_CMS_MNO_TOKEN=$OP_TOKEN # cms submits its OTA jobs as the operator
tsmd_start
echo "    tsmd: $TSMD_URL (cms on /cms/v1, mno orange on /mno/orange/v1)"
ctl() { # TOKEN args...
    local tok=$1
    shift
    OPENTSM_URL=$TSMD_URL OPENTSM_TOKEN=$tok "$TSMCTL" "$@"
}
# shellcheck disable=SC2034 # read through eval
IMEI1=356938035643809
# shellcheck disable=SC2034
IMEI2=356938035643817
# shellcheck disable=SC2034
IMEI3=356938035643825
# shellcheck disable=SC2034
IMEI4=356938035643833
for n in 1 2 3 4; do
    ctl "$OP_TOKEN" principal create device "phone$n" --imei "$(eval echo "\$IMEI$n")" \
        --imsi "20801123456789$n" --mno orange --json >"$W/dev$n.json"
    DP=$(jq -er .id "$W/dev$n.json")
    (umask 077 && ctl "$OP_TOKEN" token issue --principal-id "$DP" --token-only >"$W/dev$n.token")
    ctl "$OP_TOKEN" mno enrol "$DP" --msisdn "3360000000$n" --cin "$(eval echo "\$CIN$n")" \
        --instance orange >/dev/null
done
ALICE=$(ctl "$OP_TOKEN" principal create subscriber alice --msisdn 33600000001 --json | jq -er .id)
BOB=$(ctl "$OP_TOKEN" principal create subscriber bob --msisdn 33600000002 --json | jq -er .id)
TA=$(ctl "$OP_TOKEN" token issue --principal-id "$ALICE" --token-only)
TB=$(ctl "$OP_TOKEN" token issue --principal-id "$BOB" --token-only)
CAROL=$(ctl "$OP_TOKEN" principal create subscriber carol --msisdn 33600000003 --json | jq -er .id)
DAVE=$(ctl "$OP_TOKEN" principal create subscriber dave --msisdn 33600000004 --json | jq -er .id)
TC=$(ctl "$OP_TOKEN" token issue --principal-id "$CAROL" --token-only)
TD=$(ctl "$OP_TOKEN" token issue --principal-id "$DAVE" --token-only)
echo "    phone1 (alice, eSE $CIN1), phone2 (bob, eSE $CIN2), phone3 (carol, eSE $CIN3),"
echo "    phone4 (dave, eSE $CIN4) enrolled on mno orange"

step "2. the operator imports the issued cards"
K=404142434445464748494A4B4C4D4E4F
card() { # ID SUBSCRIBER N [ISSUER]
    printf '{"card_id":"%s","subscriber":%s,"cin":"%s","mno":"orange","msisdn":"3360000000%s","imsi":"20801123456789%s","imei":"%s","issuer":"%s","aids":["A0000000041010"],"sd_aid":"A000000151000000","kvn":48,"keys":{"enc":"%s","mac":"%s","dek":"%s"}}' \
        "$1" "$2" "$(eval echo "\$CIN$3")" "$3" "$3" "$(eval echo "\$IMEI$3")" "${4:-bank1}" \
        "$K" "$K" "$K"
}
echo "{\"cards\":[$(card alice-card "$ALICE" 1),$(card bob-card "$BOB" 2),$(card carol-card "$CAROL" 3 bank2),$(card dave-card "$DAVE" 4)]}" >"$W/cards.json"
say "tsmctl cms import cards.json"
ctl "$OP_TOKEN" cms import "$W/cards.json"
say "tsmctl cms cards   (as the operator)"
ctl "$OP_TOKEN" cms cards

agent_start() { # N [ENV=V...]
    env "${@:2}" "$AGENT" --state "$W/agent$1" --reader "eSE1=socket:unix:$W/c$1.sock" \
        --mno "$TSMD_URL/mno/orange/v1" --token-file "$W/dev$1.token" --poll-ms 200 \
        --log-level info --location-area "208-01-4A2$1" run >>"$W/agent$1.log" 2>&1 &
    eval "AGENT$1=$!"
    AGENT_PIDS+=("$!")
    for _ in $(seq 1 200); do
        [ "$(ctl "$OP_TOKEN" mno status --msisdn "3360000000$1" --instance orange --json | jq -r .state)" = online ] &&
            grep -q "event=stream_open" "$W/agent$1.log" && return 0
        sleep 0.1
    done
    fail "phone$1 is not online"
}
wait_card() { # TOKEN ID STATE
    for _ in $(seq 1 300); do
        [ "$(ctl "$1" cms card "$2" --json | jq -r .state)" = "$3" ] && return 0
        sleep 0.1
    done
    fail "card $2 is not $3: $(ctl "$1" cms history "$2")"
}
pay() { # N: a payment attempt (SELECT of the payment application) on phone N's card
    printf '{"msisdn":"3360000000%s","se":{"reader":"eSE1"},"kind":"scripted","apdus":["00A4040007A000000004101000"]}' \
        "$1" >"$W/pay.json"
    ctl "$OP_TOKEN" mno submit "$W/pay.json" --instance orange --json | jq -er .id
}
wait_job() { # ID -> the R-APDU's SW
    local s
    for _ in $(seq 1 200); do
        ctl "$OP_TOKEN" mno job "$1" --instance orange --json >"$W/job.json"
        s=$(jq -r .state "$W/job.json")
        case $s in done | failed) break ;; esac
        sleep 0.1
    done
    jq -r '.scripts[0].rapdus[0] // "none"' "$W/job.json" | tail -c 5
}

step "3. alice's phone is on, and lost: she destroys her card"
agent_start 1
agent_start 2
echo "    both phones are on"
say "tsmctl cms destroy alice-card --reason lost --note \"left on the train\"   (as alice)"
ctl "$TA" cms destroy alice-card --reason lost --note "left on the train"
wait_card "$TA" alice-card destroyed
say "tsmctl cms history alice-card   (as alice)"
ctl "$TA" cms history alice-card
ctl "$TA" cms history alice-card --json |
    jq -r '.[] | select(.event == "destroyed") | "    proof: " + .detail.proof'
echo "    the card received $(grep -c 'C-APDU.*84DE' "$W/vse1.log") DESTROY command(s)"
J=$(pay 1)
echo "    a payment attempt on alice's card now: SELECT A0000000041010 answers $(wait_job "$J")"

step "4. bob's phone is off, and stolen: his destroy waits for it"
kill -TERM "${AGENT2:?}"
wait "$AGENT2" || true
say "tsmctl mno status --msisdn 33600000002 --instance orange"
ctl "$OP_TOKEN" mno status --msisdn 33600000002 --instance orange | grep -E '^state'
say "tsmctl cms destroy bob-card --reason stolen   (as bob)"
ctl "$TB" cms destroy bob-card --reason stolen
for _ in $(seq 1 100); do
    [ "$(ctl "$TB" cms actions bob-card --json | jq -r '.[0].state')" = submitted ] && break
    sleep 0.1
done
J2=$(ctl "$TB" cms actions bob-card --json | jq -r '.[0].mno_job')
say "tsmctl cms cards --state awaiting_destroy   (as the operator)"
ctl "$OP_TOKEN" cms cards --state awaiting_destroy
say "tsmctl mno job $J2 --instance orange   (the destroy job, in mno)"
ctl "$OP_TOKEN" mno job "$J2" --instance orange | grep -E '^state'

step "5. bob's phone comes back on: the card is destroyed as it registers"
agent_start 2
wait_card "$TB" bob-card destroyed
say "tsmctl cms history bob-card   (as bob)"
ctl "$TB" cms history bob-card
echo "    the card received $(grep -c 'C-APDU.*84DE' "$W/vse2.log") DESTROY command(s)"
step "6. carol's bank burns the chip: policy hardware (tsmctl cms policy)"
say "tsmctl cms policy bank2 --mode hardware   (as the operator)"
ctl "$OP_TOKEN" cms policy bank2 --mode hardware
agent_start 3
say "tsmctl cms destroy carol-card --reason stolen   (as carol)"
ctl "$TC" cms destroy carol-card --reason stolen
wait_card "$TC" carol-card destroyed
ctl "$TC" cms history carol-card --json |
    jq -r '.[] | select(.event == "destroyed") | "    carol-card destroyed, proof: " + .detail.proof'
echo "    the card received $(grep -c 'C-APDU.*84DE02' "$W/vse3.log") DESTROY command(s) (P1 02: hardware)"
echo "    vse inspect: mute = $("$VSE" inspect "$W/c3.img" --json | jq .mute)"
J=$(pay 3)
echo "    a payment attempt on carol's card now: $(wait_job "$J") (no answer: the phone sees no card)"

step "7. dave's phone loses power right after his card ran the DESTROY"
agent_start 4 OPENTSM_AGENT_CRASH_AT=executing:2 # the test hook: SIGKILL at that step
say "tsmctl cms destroy dave-card --reason lost   (as dave)"
ctl "$TD" cms destroy dave-card --reason lost
{ wait "${AGENT4:?}"; } 2>/dev/null || true
echo "    phone4 died; its agent's state: $(jq -c '{step, script}' "$W/agent4/session.json")"
agent_start 4
echo "    phone4 is on again: the agent reports the script interrupted, cms reads the card's"
echo "    life cycle state under its R-MAC"
wait_card "$TD" dave-card destroyed
say "tsmctl cms history dave-card   (as dave)"
ctl "$TD" cms history dave-card
ctl "$TD" cms history dave-card --json |
    jq -r '.[] | select(.event == "destroyed") | "    dave-card destroyed, proof: " + .detail.proof + " (card read: " + .detail.card + ")"'
echo "    the card received $(grep -c 'C-APDU.*84DE' "$W/vse4.log") DESTROY command(s)"
cms_cleanup
AGENT_PIDS=()
tsmd_stop
echo "    tsmd stopped cleanly"
echo
echo "demo: cms done"
