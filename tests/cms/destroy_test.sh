#!/usr/bin/env bash
# cms.destroy (issue 13 acceptance: online destroy, offline destroy across a
# SIGKILL, lock/unlock, refused without the card's proof; docs/cms.md): a
# real tsmd with cms and mno:orange, phones made of se-agent and vse cards
# (profiles/ese-central.json, the payment application A0000000041010), the
# card's commands inside SCP03 with the ISD (otascp), every R-MAC verified.
#
# 1. phone1 on: lock c1 -> locked, a payment SELECT fails at the card;
#    unlock -> active, the SELECT works again.
# 2. phone1 on: destroy c1 (lost) -> destroyed on the card's proof; the
#    card is TERMINATED with its payment application gone, a payment SELECT
#    fails at the card; the card received exactly one DESTROY.
# 3. phone2 off: destroy c2 (stolen) -> awaiting_destroy in cms, the job
#    queued in mno; unlock refused; tsmd killed with SIGKILL and restarted;
#    phone2 on -> destroyed, exactly one DESTROY received.
# 4. phone3 is a device that forges its card's answers (curl): cms refuses
#    the result (no proof), raises an alert, the card stays awaiting_destroy.
#
# usage: destroy_test.sh TSMD SE_AGENT VSE PROFILES_DIR
set -euo pipefail

TSMD=$1
AGENT=$2
VSE=$3
PROFILES=$4
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"
for t in curl jq xxd; do
    command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
done
AGENT_PIDS=()
stop_agents() {
    local p
    for p in "${AGENT_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
# shellcheck disable=SC2034 # read by tsmd_cleanup (tests/tsmd/lib.sh)
TSMD_CLEANUP_HOOK=stop_agents
tsmd_work_init cms-destroy
W=$TSMD_WORK

# --- the cards ---------------------------------------------------------------
CIN1=4F54534D45534501
CIN2=4F54534D45534502
CIN3=4F54534D45534503
# The ISD with R-MAC support (i = 70: pseudo-random challenge, R-MAC, R-ENC):
# without the card's R-MAC there is no proof.
jq '.isd.i = "70"' "$PROFILES/ese-central.json" >"$W/p1.json"
jq ".cin = \"$CIN2\"" "$W/p1.json" >"$W/p2.json"
"$VSE" create --profile "$W/p1.json" --out "$W/c1.img" >/dev/null
"$VSE" create --profile "$W/p2.json" --out "$W/c2.img" >/dev/null
start_vse() { # N
    "$VSE" run "$W/c$1.img" --listen "unix:$W/c$1.sock" --log-level trace >>"$W/vse$1.log" 2>&1 &
    TSMD_EXTRA_PIDS+=("$!")
    for _ in $(seq 1 100); do
        [ -S "$W/c$1.sock" ] && return 0
        sleep 0.05
    done
    fail "vse $1 did not listen"
}
start_vse 1
start_vse 2
destroys() { # N: DESTROY commands (INS DE, secured CLA 84) card N received
    grep -c 'C-APDU.*\b84DE' "$W/vse$1.log" || true
}

# --- tsmd ----------------------------------------------------------------------
tsmd_config "sqlite:$W/var/tsmd.db" "log.level=info" "services.enabled=cms, mno:orange" \
    "mno.orange.backoff_s=0" "mno.orange.sweep_ms=50" "mno.orange.heartbeat_s=1" "cms.tick_ms=50" "cms.backoff_s=0" \
    "cms.max_attempts=2"
tsmd_bootstrap ops
TSMD_SETS+=(--set "cms.mno_url=$TSMD_URL")
export OPENTSM_CMS_MNO_TOKEN=$OP_TOKEN
tsmd_start
P=/mno/orange/v1
C=/cms/v1

device() { # NAME IMEI IMSI -> principal id
    api POST /admin/v1/principals "$OP_TOKEN" \
        "{\"kind\":\"device\",\"name\":\"$1\",\"imei\":\"$2\",\"imsi\":\"$3\",\"mno\":\"orange\"}" \
        -H "Idempotency-Key: dev-$1"
    case $API_STATUS in 200 | 201) ;; *) fail "device $1: $API_STATUS $(cat "$W/resp")" ;; esac
    jq -er .id "$W/resp"
}
enrol() { # PRINCIPAL MSISDN CIN
    api POST $P/devices "$OP_TOKEN" "{\"principal_id\":$1,\"msisdn\":\"$2\",\"cins\":[\"$3\"]}" \
        -H "Idempotency-Key: enrol-$1"
    case $API_STATUS in 200 | 201) ;; *) fail "enrol $1: $API_STATUS $(cat "$W/resp")" ;; esac
}
D1=$(device phone1 356938035643809 208011234567890)
D2=$(device phone2 356938035643817 208011234567891)
D3=$(device phone3 356938035643825 208011234567892)
enrol "$D1" 33600000001 $CIN1
enrol "$D2" 33600000002 $CIN2
enrol "$D3" 33600000003 $CIN3
for d in 1 2 3; do
    id=$(eval echo "\$D$d")
    (umask 077 && tsmd_token "$id" >"$W/dev$d.token")
done
ALICE=$(tsmd_principal subscriber alice)
TA=$(tsmd_token "$ALICE")
KEYS='{"enc":"404142434445464748494A4B4C4D4E4F","mac":"404142434445464748494A4B4C4D4E4F","dek":"404142434445464748494A4B4C4D4E4F"}'
card() { # ID CIN N
    printf '{"card_id":"%s","subscriber":%s,"cin":"%s","mno":"orange","msisdn":"3360000000%s","imsi":"20801123456789%s","imei":"3569380356438%s","issuer":"bank1","aids":["A0000000041010"],"sd_aid":"A000000151000000","kvn":48,"keys":%s}' \
        "$1" "$ALICE" "$2" "$3" "$(($3 - 1))" "$(printf '%02d' $((9 + ($3 - 1) * 8)))" "$KEYS"
}
api POST $C/cards "$OP_TOKEN" "{\"cards\":[$(card c1 $CIN1 1),$(card c2 $CIN2 2),$(card c3 $CIN3 3)]}" \
    -H "Idempotency-Key: import"
expect_status 201 "import"

agent_start() { # N
    "$AGENT" --state "$W/agent$1" --reader "eSE1=socket:unix:$W/c$1.sock" --mno "$TSMD_URL$P" \
        --token-file "$W/dev$1.token" --poll-ms 200 --log-level info --location-area "208-01-4A2$1" \
        run >>"$W/agent$1.log" 2>&1 &
    eval "AGENT$1=$!"
    AGENT_PIDS+=("$!")
    for _ in $(seq 1 200); do
        api GET "$P/status?msisdn=3360000000$1" "$OP_TOKEN"
        [ "$(jq -r .state "$W/resp")" = online ] && grep -q "event=stream_open" "$W/agent$1.log" && return 0
        sleep 0.1
    done
    fail "phone$1 not online: $(tail -5 "$W/agent$1.log")"
}
agent_stop() { # N
    local pid
    pid=$(eval echo "\$AGENT$1")
    kill -TERM "$pid"
    wait "$pid" || fail "se-agent $1 did not exit 0 on SIGTERM"
}
card_state() { # ID
    api GET "$C/cards/$1" "$TA"
    jq -r .state "$W/resp"
}
wait_card() { # ID STATE
    local s
    for _ in $(seq 1 300); do
        s=$(card_state "$1")
        [ "$s" = "$2" ] && return 0
        sleep 0.1
    done
    api GET "$C/cards/$1/history" "$TA"
    fail "card $1 is $s, not $2: $(cat "$W/resp")"
}
pay() { # N -> the SW of a payment SELECT on phone N's card (through an mno job)
    local id s
    api POST $P/jobs "$OP_TOKEN" \
        "{\"msisdn\":\"3360000000$1\",\"se\":{\"cin\":\"$(eval echo "\$CIN$1")\"},\"kind\":\"scripted\",\"apdus\":[\"00A4040007A000000004101000\"]}" \
        -H "Idempotency-Key: pay-$1-$RANDOM$RANDOM"
    expect_status 201 "payment job"
    id=$(jq -r .id "$W/resp")
    for _ in $(seq 1 200); do
        api GET "$P/jobs/$id" "$OP_TOKEN"
        s=$(jq -r .state "$W/resp")
        case $s in done | failed) break ;; esac
        sleep 0.1
    done
    case $s in
    done | failed) ;;
    *) fail "payment job $id: $s" ;;
    esac
    jq -r '.scripts[0].rapdus[0] // "none"' "$W/resp" | tail -c 5
}
act() { # ID ACTION REASON KEY
    api POST "$C/cards/$1/$2" "$TA" "{\"reason\":\"$3\"}" -H "Idempotency-Key: $4"
    expect_status 202 "$2 $1"
}

# --- 1. lock and unlock -------------------------------------------------------
agent_start 1
[ "$(pay 1)" = 9000 ] || fail "the payment application does not answer before the lock"
act c1 lock lost l1
wait_card c1 locked
[ "$(pay 1)" != 9000 ] || fail "a payment SELECT works on a locked card"
act c1 unlock found u1
wait_card c1 active
[ "$(pay 1)" = 9000 ] || fail "the unlock did not restore payments"
note "lock/unlock ok"

# --- 2. online destroy --------------------------------------------------------
act c1 destroy lost d1
wait_card c1 destroyed
api GET $C/cards/c1/history "$TA"
jq -e '[.items[] | select(.event == "destroyed")][0].detail.proof == "r-mac verified"' "$W/resp" >/dev/null ||
    fail "no destroyed row with the proof: $(cat "$W/resp")"
jq -e '[.items[] | select(.event == "submitted")][-1].detail.device == "online"' "$W/resp" >/dev/null ||
    fail "the status lookup did not find the phone online: $(cat "$W/resp")"
jq -e '[.items[] | select(.event == "running" or .event == "interrupted")] | length <= 1' \
    "$W/resp" >/dev/null || fail "the card went back and forth: $(cat "$W/resp")"
S=$(pay 1)
[ "$S" != 9000 ] || fail "a payment SELECT works on a destroyed card"
[ "$(destroys 1)" = 1 ] || fail "card 1 received $(destroys 1) DESTROY commands"
note "online destroy ok (payment SELECT answers $S)"

# --- 3. offline destroy across a SIGKILL --------------------------------------
agent_start 2
agent_stop 2
api GET "$P/status?msisdn=33600000002" "$OP_TOKEN"
[ "$(jq -r .state "$W/resp")" = offline ] || fail "phone2 is not offline"
act c2 destroy stolen d2
for _ in $(seq 1 100); do
    api GET $C/cards/c2/actions "$TA"
    [ "$(jq -r '.items[0].state' "$W/resp")" = submitted ] && break
    sleep 0.1
done
J2=$(jq -r '.items[0].mno_job' "$W/resp")
[ "$J2" != null ] || fail "no mno job for c2: $(cat "$W/resp")"
[ "$(card_state c2)" = awaiting_destroy ] || fail "c2 not awaiting_destroy"
api GET "$P/jobs/$J2" "$OP_TOKEN"
[ "$(jq -r .state "$W/resp")" = queued ] || fail "the destroy job is not queued in mno: $(jq -r .state "$W/resp")"
api POST $C/cards/c2/unlock "$TA" '{"reason":"found"}' -H "Idempotency-Key: u2"
expect_status 409 "unlock of a card awaiting its destroy"
tsmd_kill9
tsmd_start
[ "$(card_state c2)" = awaiting_destroy ] || fail "c2 not awaiting_destroy after the restart"
agent_start 2
wait_card c2 destroyed
[ "$(destroys 2)" = 1 ] || fail "card 2 received $(destroys 2) DESTROY commands"
note "offline destroy ok"

# --- 4. a forged success is refused -------------------------------------------
T3=$(cat "$W/dev3.token")
api POST $P/device/register "$T3" '{"location_area":"208-01-4A23"}'
expect_status 200 "phone3 registers"
act c3 destroy stolen d3
for _ in $(seq 1 100); do
    api GET $C/cards/c3/actions "$TA"
    [ "$(jq -r '.items[0].state' "$W/resp")" = submitted ] && break
    sleep 0.1
done
J3=$(jq -r '.items[0].mno_job' "$W/resp")
PROTO="X-Admin-Protocol: globalplatform-remote-admin/1.0"
FROM3="X-Admin-From: //se-id/cin/$CIN3;//agent-id/imei/356938035643825"
CT_RSP="Content-Type: application/vnd.globalplatform.card-content-mgt-response;version=1.0"
admin() { # PATH [curl args...]
    local path=$1
    shift
    API_STATUS=$(curl -s -X POST -o "$W/resp" -D "$W/resp.h" -w '%{http_code}' \
        -H "Authorization: Bearer $T3" -H "$PROTO" -H "$FROM3" "$@" "$TSMD_URL$path") || API_STATUS=000
}
admin $P/admin/jobs/"$J3"
expect_status 200 "phone3 opens the session"
NEXT=$(grep -i '^X-Admin-Next-URI:' "$W/resp.h" | cut -d' ' -f2- | tr -d '\r')
# A well-formed INITIALIZE UPDATE answer the card never gave: key
# diversification data, key information (kvn 30, SCP03, i 70), a card
# challenge and cryptogram of chance, a counter; 32 bytes + 9000.
printf '\xaf\x80\x80\x01\x01\x23\x22' >"$W/forged.bin"
head -c 10 /dev/urandom >>"$W/forged.bin"
printf '\x30\x03\x70' >>"$W/forged.bin"
head -c 16 /dev/urandom >>"$W/forged.bin"
printf '\x00\x00\x05\x90\x00\x00\x00' >>"$W/forged.bin"
admin "$NEXT" -H "X-Admin-Script-Status: ok" -H "$CT_RSP" --data-binary @"$W/forged.bin"
case $API_STATUS in 200 | 202 | 204) ;; *) fail "the forged answer: $API_STATUS $(cat "$W/resp")" ;; esac
for _ in $(seq 1 100); do
    api GET $C/cards/c3/actions "$TA"
    [ "$(jq -r '.items[0].state' "$W/resp")" = stalled ] && break
    sleep 0.1
done
[ "$(jq -r '.items[0].state' "$W/resp")" = stalled ] || fail "the forged result was not refused: $(cat "$W/resp")"
[ "$(card_state c3)" != destroyed ] || fail "c3 destroyed on a forged answer"
api GET $C/alerts "$OP_TOKEN"
jq -e '[.items[] | select(.card_id == "c3" and .kind == "no_proof")] | length == 1' "$W/resp" >/dev/null ||
    fail "no no_proof alert: $(cat "$W/resp")"
note "forged success refused"

stop_agents
AGENT_PIDS=()
tsmd_stop
echo "cms destroy: ok"
