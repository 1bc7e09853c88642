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

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=phones.sh
. "$HERE/phones.sh"
phones_begin cms-destroy "$@"

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
vse_start 1
vse_start 2

# --- tsmd ----------------------------------------------------------------------
cms_tsmd_start
phones_enrol 1 2 3
api POST $C/cards "$OP_TOKEN" "{\"cards\":[$(card c1 $CIN1 1),$(card c2 $CIN2 2),$(card c3 $CIN3 3)]}" \
    -H "Idempotency-Key: import"
expect_status 201 "import"

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
FROM3="X-Admin-From: //se-id/cin/$CIN3;//agent-id/imei/$(imei_of 3)"
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
tsmd_stop
echo "cms destroy: ok"
