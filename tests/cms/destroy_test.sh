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
#    fails at the card; the card received exactly one DESTROY. The same
#    request replayed answers the same action and changes nothing; a new
#    one is 409.
# 3. phone2 off: lock c2 -> awaiting_lock in cms, the job queued in mno,
#    like a destroy; phone2 on -> locked, payments fail; unlock -> active.
#    phone2 off: destroy c2 (stolen) -> awaiting_destroy in cms, the job
#    queued in mno; unlock refused; tsmd killed with SIGKILL and restarted;
#    phone2 on -> destroyed, exactly one DESTROY received.
# 4. phone3 is a device that forges its card's answers (curl): cms refuses
#    the result (no proof), raises an alert, the card stays awaiting_destroy.
# 5. phone4 is a device that knows the card's keys (so its INITIALIZE UPDATE
#    answer passes) and answers the DESTROY 9000 without the card's R-MAC:
#    mno reports the job done, cms refuses it all the same (no proof).
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
CIN4=4F54534D45534504
phones_enrol 1 2 3 4
api POST $C/cards "$OP_TOKEN" \
    "{\"cards\":[$(card c1 $CIN1 1),$(card c2 $CIN2 2),$(card c3 $CIN3 3),$(card c4 $CIN4 4)]}" \
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
"$VSE" inspect "$W/c1.img" --json | jq -e '.lcs == "TERMINATED"' >/dev/null || fail "card 1 is not TERMINATED"
note "online destroy ok (the card TERMINATED, payment SELECT answers $S)"
# The request replayed: the same action, nothing sent; a new one: 409.
api GET $C/cards/c1/actions "$TA"
NACT=$(jq '.items | length' "$W/resp")
AID1=$(jq -r '[.items[] | select(.action == "destroy")][0].id' "$W/resp")
act c1 destroy lost d1
[ "$(jq -r .action_id "$W/resp")" = "$AID1" ] || fail "the replay answered another action: $(cat "$W/resp")"
api POST $C/cards/c1/destroy "$TA" '{"reason":"stolen"}' -H "Idempotency-Key: d1-again"
expect_status 409 "a destroy of a destroyed card"
api GET $C/cards/c1/actions "$TA"
[ "$(jq '.items | length' "$W/resp")" = "$NACT" ] || fail "a replayed or refused destroy added an action"
[ "$(card_state c1)" = destroyed ] || fail "c1 moved"
[ "$(destroys 1)" = 1 ] || fail "card 1 received $(destroys 1) DESTROY commands after the replay"
note "replayed destroy: same action, nothing sent; a new one refused"

# --- 3. offline lock, then offline destroy across a SIGKILL ---------------------
submitted_job() { # CARD -> the mno job of its latest action (listed last), once submitted
    for _ in $(seq 1 100); do
        api GET "$C/cards/$1/actions" "$TA"
        [ "$(jq -r '.items[-1].state' "$W/resp")" = submitted ] && break
        sleep 0.1
    done
    jq -r '.items[-1].mno_job' "$W/resp"
}
agent_start 2
[ "$(pay 2)" = 9000 ] || fail "card 2: the payment application does not answer"
agent_stop 2
api GET "$P/status?msisdn=33600000002" "$OP_TOKEN"
[ "$(jq -r .state "$W/resp")" = offline ] || fail "phone2 is not offline"
act c2 lock stolen l2
JL=$(submitted_job c2)
[ "$JL" != null ] || fail "no mno job for the lock of c2: $(cat "$W/resp")"
[ "$(card_state c2)" = awaiting_lock ] || fail "c2 not awaiting_lock"
api GET "$P/jobs/$JL" "$OP_TOKEN"
[ "$(jq -r .state "$W/resp")" = queued ] || fail "the lock job is not queued in mno: $(jq -r .state "$W/resp")"
agent_start 2
wait_card c2 locked
[ "$(pay 2)" != 9000 ] || fail "a payment SELECT works on the card locked while its phone was off"
act c2 unlock found u2a
wait_card c2 active
[ "$(pay 2)" = 9000 ] || fail "the unlock did not restore payments on card 2"
agent_stop 2
note "lock on an offline phone: waited queued, locked when the phone came back"

act c2 destroy stolen d2
J2=$(submitted_job c2)
[ "$J2" != null ] || fail "no mno job for c2: $(cat "$W/resp")"
[ "$(card_state c2)" = awaiting_destroy ] || fail "c2 not awaiting_destroy"
api GET "$P/jobs/$J2" "$OP_TOKEN"
[ "$(jq -r .state "$W/resp")" = queued ] || fail "the destroy job is not queued in mno: $(jq -r .state "$W/resp")"
api POST $C/cards/c2/unlock "$TA" '{"reason":"found"}' -H "Idempotency-Key: u2"
expect_status 409 "unlock of a card awaiting its destroy"
[ "$(card_state c2)" = awaiting_destroy ] || fail "the refused unlock moved c2"
tsmd_kill9
tsmd_start
[ "$(card_state c2)" = awaiting_destroy ] || fail "c2 not awaiting_destroy after the restart"
agent_start 2
wait_card c2 destroyed
[ "$(destroys 2)" = 1 ] || fail "card 2 received $(destroys 2) DESTROY commands"
note "offline destroy ok"

# --- 4. a forged success is refused -------------------------------------------
# shellcheck source=../mno/ram.sh
. "$HERE/../mno/ram.sh" # PROTO, CT_RSP
admin() { # N PATH [curl args...]: phone N's admin POST, done by hand
    local n=$1 path=$2 cin
    shift 2
    cin=$(eval echo "\$CIN$n")
    API_STATUS=$(curl -s -X POST -o "$W/resp" -D "$W/resp.h" -w '%{http_code}' \
        -H "Authorization: Bearer $(cat "$W/dev$n.token")" -H "$PROTO" \
        -H "X-Admin-From: //se-id/cin/$cin;//agent-id/imei/$(imei_of "$n")" "$@" \
        "$TSMD_URL$path") || API_STATUS=000
}
next_uri() {
    grep -i '^X-Admin-Next-URI:' "$W/resp.h" | cut -d' ' -f2- | tr -d '\r'
}
action_state() { # CARD STATE: waits for the latest action to reach STATE
    for _ in $(seq 1 100); do
        api GET "$C/cards/$1/actions" "$TA"
        [ "$(jq -r '.items[-1].state' "$W/resp")" = "$2" ] && return 0
        sleep 0.1
    done
    fail "$1: the action is not $2: $(cat "$W/resp")"
}
api POST $P/device/register "$(cat "$W/dev3.token")" '{"location_area":"208-01-4A23"}'
expect_status 200 "phone3 registers"
act c3 destroy stolen d3
J3=$(submitted_job c3)
admin 3 $P/admin/jobs/"$J3"
expect_status 200 "phone3 opens the session"
NEXT=$(next_uri)
# A well-formed INITIALIZE UPDATE answer the card never gave: key
# diversification data, key information (kvn 30, SCP03, i 70), a card
# challenge and cryptogram of chance, a counter; 32 bytes + 9000.
printf '\xaf\x80\x80\x01\x01\x23\x22' >"$W/forged.bin"
head -c 10 /dev/urandom >>"$W/forged.bin"
printf '\x30\x03\x70' >>"$W/forged.bin"
head -c 16 /dev/urandom >>"$W/forged.bin"
printf '\x00\x00\x05\x90\x00\x00\x00' >>"$W/forged.bin"
admin 3 "$NEXT" -H "X-Admin-Script-Status: ok" -H "$CT_RSP" --data-binary @"$W/forged.bin"
case $API_STATUS in 200 | 202 | 204) ;; *) fail "the forged answer: $API_STATUS $(cat "$W/resp")" ;; esac
action_state c3 stalled
[ "$(card_state c3)" = awaiting_destroy ] || fail "c3 is $(card_state c3) after a forged answer"
api GET $C/alerts "$OP_TOKEN"
jq -e '[.items[] | select(.card_id == "c3" and .kind == "no_proof")] | length == 1' "$W/resp" >/dev/null ||
    fail "no no_proof alert: $(cat "$W/resp")"
note "forged success refused"

# --- 5. mno reports success, the card's R-MAC is missing: refused ---------------
# phone4 knows the SD's keys (as a cloned card would): its INITIALIZE UPDATE
# answer carries a card cryptogram that verifies, so cms sends EXTERNAL
# AUTHENTICATE and DESTROY; phone4 answers both 9000 without running them
# and without an R-MAC. mno, which checks no MAC, ends the job done.
cmac() { # KEY HEXDATA -> AES-CMAC (hex)
    printf '%s' "$2" | xxd -r -p | openssl mac -cipher AES-128-CBC -macopt "hexkey:$1" CMAC
}
K=404142434445464748494A4B4C4D4E4F
api POST $P/device/register "$(cat "$W/dev4.token")" '{"location_area":"208-01-4A24"}'
expect_status 200 "phone4 registers"
act c4 destroy stolen d4
J4=$(submitted_job c4)
admin 4 $P/admin/jobs/"$J4"
expect_status 200 "phone4 opens the session"
NEXT=$(next_uri)
HCHAL=$(xxd -p "$W/resp" | tr -d '\n' | tr a-f A-F | grep -oE '8050300008[0-9A-F]{16}' | cut -c11-)
[ ${#HCHAL} = 16 ] || fail "no INITIALIZE UPDATE in script 1: $(xxd -p "$W/resp")"
CCHAL=$(head -c 8 /dev/urandom | xxd -p)
CTX=$HCHAL$CCHAL
SMAC=$(cmac $K "0000000000000000000000""06""00""0080""01""$CTX")
CRYPT=$(cmac "$SMAC" "0000000000000000000000""00""00""0040""01""$CTX" | cut -c1-16)
printf 'AF80800101 2322 00000000000000000000 300370 %s %s 000005 9000 0000' "$CCHAL" "$CRYPT" |
    tr -d ' ' | xxd -r -p >"$W/iu.bin"
admin 4 "$NEXT" -H "X-Admin-Script-Status: ok" -H "$CT_RSP" --data-binary @"$W/iu.bin"
expect_status 200 "script 2 (EXTERNAL AUTHENTICATE and DESTROY) for phone4"
NEXT=$(next_uri)
xxd -p "$W/resp" | tr -d '\n' | tr a-f A-F | grep -q '84DE0100' || fail "no DESTROY in script 2"
printf 'AF80800102 23029000 23029000 0000' | tr -d ' ' | xxd -r -p >"$W/ok.bin"
admin 4 "$NEXT" -H "X-Admin-Script-Status: ok" -H "$CT_RSP" --data-binary @"$W/ok.bin"
expect_status 204 "phone4's success"
api GET "$P/jobs/$J4" "$OP_TOKEN"
[ "$(jq -r .state "$W/resp")" = done ] || fail "mno did not take the job as done: $(cat "$W/resp")"
action_state c4 stalled
[ "$(card_state c4)" = awaiting_destroy ] || fail "c4 is $(card_state c4) after mno's word"
api GET "$C/cards?state=awaiting_destroy" "$OP_TOKEN"
jq -e '[.items[] | select(.card_id == "c3" or .card_id == "c4")] | length == 2' "$W/resp" >/dev/null ||
    fail "the refused cards are not in the operator's awaiting_destroy list: $(cat "$W/resp")"
api GET $C/alerts "$OP_TOKEN"
jq -e '[.items[] | select(.card_id == "c4" and .kind == "no_proof")] | length == 1' "$W/resp" >/dev/null ||
    fail "no no_proof alert for c4: $(cat "$W/resp")"
api GET $C/cards/c4/history "$TA"
jq -e '[.items[] | select(.event == "result_refused")][0].detail.why | test("R-MAC")' "$W/resp" \
    >/dev/null || fail "c4's refusal does not name the R-MAC: $(cat "$W/resp")"
note "mno's done without the card's R-MAC refused"

# --- 6. the operator's retry of a refused destroy: a new job, reading the card first
api POST $C/cards/c3/retry "$OP_TOKEN" '{}'
expect_status 202 "retry c3"
J3B=$J3
for _ in $(seq 1 100); do
    api GET $C/cards/c3/history "$TA"
    J3B=$(jq -r '[.items[] | select(.event == "submitted")][-1].detail.job' "$W/resp")
    [ "$J3B" != "$J3" ] && break
    sleep 0.1
done
[ "$J3B" != "$J3" ] || fail "the retry found the refused job again: $(cat "$W/resp")"
jq -e '[.items[] | select(.event == "submitted")][-1].detail.purpose == "read the card"' "$W/resp" \
    >/dev/null || fail "the retried destroy does not read the card first: $(cat "$W/resp")"
note "the operator's retry: job $J3B reads the card (the refused one was $J3)"

stop_agents
tsmd_stop
echo "cms destroy: ok"
