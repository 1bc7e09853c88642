#!/usr/bin/env bash
# cms.modes (issue 13 point 4; docs/cms.md "Destroy modes"): each destroy
# mode of an issuer's policy, carried by cms through mno and se-agent to a
# real vse card inside SCP03, accepted on the card's R-MAC, and checked on
# the card image (vse inspect) and by a payment SELECT afterwards:
#
# 1. a policy whose scope cannot go with its mode is refused (400 scope);
# 2. hardware (bank_hw): the card answers the DESTROY once, then is mute for
#    good: no payment, no answer at all;
# 3. puk (bank_puk): the telecom application's PUK is exhausted, which
#    blocks the card (TERMINATED); the payment application is still there
#    but does not answer;
# 4. software, scope app (bank_app): the payment application is deleted
#    (DELETE, its data with it), the card stays SECURED with its other
#    applications (the PPSE answers).
# 5. puk on a card without a telecom application: the card refuses the
#    DESTROY (6A88) and stays as it was; the action fails its attempts and
#    stalls for the operator (alert retries_exhausted), the card
#    awaiting_destroy.
# Each card destroyed received exactly one destroy command.
#
# usage: modes_test.sh TSMD SE_AGENT VSE PROFILES_DIR
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=phones.sh
. "$HERE/phones.sh"
phones_begin cms-modes "$@"

# --- the cards: the ISD with R-MAC (i 70), and a telecom application -------
CIN1=4F54534D45534501
CIN2=4F54534D45534502
CIN3=4F54534D45534503
CIN4=4F54534D45534504
jq '.isd.i = "70" | .applications += [{"aid":"A0000000871002","package":"F04F54534D04","sd":"F04F54534D534401"}]' \
    "$PROFILES/ese-central.json" >"$W/p.json"
for n in 1 2 3; do
    jq ".cin = \"$(eval echo "\$CIN$n")\"" "$W/p.json" >"$W/p$n.json"
    "$VSE" create --profile "$W/p$n.json" --out "$W/c$n.img" >/dev/null
    vse_start $n
done
jq ".isd.i = \"70\" | .cin = \"$CIN4\"" "$PROFILES/ese-central.json" >"$W/p4.json" # no telecom
"$VSE" create --profile "$W/p4.json" --out "$W/c4.img" >/dev/null
vse_start 4
inspect() { # N -> the card image as JSON
    "$VSE" inspect "$W/c$1.img" --json
}
has_app() { # N AID
    inspect "$1" | jq -e --arg a "$2" '[.. | objects | select(.aid? == $a)] | length > 0' >/dev/null
}
has_app 2 A0000000871002 || fail "the telecom application is not on card 2"

# --- tsmd ----------------------------------------------------------------------
cms_tsmd_start
phones_enrol 1 2 3 4

# --- 1. policies -------------------------------------------------------------------
policy() { # ISSUER BODY
    api PUT "$C/policies/$1" "$OP_TOKEN" "$2"
}
policy bank_x '{"mode":"puk","scope":"app"}'
expect_status 400 "puk with scope app"
[ "$(jq -r .error.field "$W/resp")" = scope ] || fail "not refused on scope: $(cat "$W/resp")"
policy bank_x '{"mode":"hardware","scope":"app"}'
expect_status 400 "hardware with scope app"
api GET "$C/policies" "$OP_TOKEN"
jq -e '[.items[] | select(.issuer == "bank_x")] | length == 0' "$W/resp" >/dev/null ||
    fail "a refused policy was stored: $(cat "$W/resp")"
policy bank_hw '{"mode":"hardware"}'
expect_status 200 "policy bank_hw"
policy bank_puk '{"mode":"puk","scope":"card"}'
expect_status 200 "policy bank_puk"
policy bank_app '{"mode":"software","scope":"app"}'
expect_status 200 "policy bank_app"

api POST $C/cards "$OP_TOKEN" \
    "{\"cards\":[$(card c1 $CIN1 1 bank_hw),$(card c2 $CIN2 2 bank_puk),$(card c3 $CIN3 3 bank_app),$(card c4 $CIN4 4 bank_puk)]}" \
    -H "Idempotency-Key: import"
expect_status 201 "import"
for n in 1 2 3; do
    agent_start $n
    [ "$(pay $n)" = 9000 ] || fail "card $n: the payment application does not answer before"
done

destroyed_with_proof() { # ID MODE SCOPE
    wait_card "$1" destroyed
    api GET "$C/cards/$1/history" "$TA"
    jq -e '[.items[] | select(.event == "destroyed")][0].detail.proof == "r-mac verified"' \
        "$W/resp" >/dev/null || fail "$1: no destroyed row with the proof: $(cat "$W/resp")"
    api GET "$C/cards/$1/actions" "$TA"
    jq -e --arg m "$2" --arg s "$3" '.items[0] | .mode == $m and .scope == $s and .state == "done"' \
        "$W/resp" >/dev/null || fail "$1: the action is not $2/$3 done: $(cat "$W/resp")"
}

# --- 2. hardware ----------------------------------------------------------------
act c1 destroy lost d1
destroyed_with_proof c1 hardware card
[ "$(destroys 1)" = 1 ] || fail "card 1 received $(destroys 1) DESTROY commands"
grep -q 'C-APDU.*84DE0200' "$W/vse1.log" || fail "card 1 did not receive DESTROY P1 02"
inspect 1 | jq -e '.mute == true' >/dev/null || fail "card 1 is not mute"
S=$(pay 1)
[ "$S" = none ] || fail "a mute card answered the payment SELECT: $S"
note "hardware: destroyed, the card mute, the payment SELECT unanswered"

# --- 3. puk -----------------------------------------------------------------------
act c2 destroy stolen d2
destroyed_with_proof c2 puk card
[ "$(destroys 2)" = 1 ] || fail "card 2 received $(destroys 2) DESTROY commands"
grep -q 'C-APDU.*84DE0300' "$W/vse2.log" || fail "card 2 did not receive DESTROY P1 03"
inspect 2 | jq -e '.lcs == "TERMINATED" and .mute == false' >/dev/null ||
    fail "card 2 is not TERMINATED: $(inspect 2 | jq -c '{lcs, mute}')"
has_app 2 A0000000041010 || fail "a PUK destroy deleted the payment application"
S=$(pay 2)
case $S in 9000 | none) fail "card 2 answers the payment SELECT with $S" ;; esac
note "puk: destroyed, the card TERMINATED by the telecom application, payment SELECT $S"

# --- 4. software, one application -------------------------------------------------
act c3 destroy fraudulent d3
destroyed_with_proof c3 software app
[ "$(destroys 3)" = 0 ] || fail "an app-scope destroy sent DESTROY to card 3"
grep -q 'C-APDU.*84E40000' "$W/vse3.log" || fail "card 3 did not receive the DELETE"
inspect 3 | jq -e '.lcs == "SECURED"' >/dev/null || fail "card 3 is not SECURED any more"
if has_app 3 A0000000041010; then fail "the payment application is still on card 3"; fi
has_app 3 325041592E5359532E4444463031 || fail "the PPSE went with the payment application"
S=$(pay 3)
[ "$S" = 6A82 ] || fail "card 3 answers the payment SELECT with $S, not 6A82"
note "software/app: the payment application deleted, the card SECURED, payment SELECT 6A82"

# --- 5. puk without a telecom application -----------------------------------------
agent_start 4
inspect 4 >"$W/c4.before"
act c4 destroy lost d4
for _ in $(seq 1 200); do
    api GET $C/cards/c4/actions "$TA"
    [ "$(jq -r '.items[-1].state' "$W/resp")" = stalled ] && break
    sleep 0.1
done
jq -e '.items[-1] | .state == "stalled" and .mode == "puk" and .attempts == 2' "$W/resp" >/dev/null ||
    fail "c4's action did not stall after its attempts: $(cat "$W/resp")"
[ "$(card_state c4)" = awaiting_destroy ] || fail "c4 is $(card_state c4)"
api GET $C/alerts "$OP_TOKEN"
jq -e '[.items[] | select(.card_id == "c4" and .kind == "retries_exhausted")] | length == 1' \
    "$W/resp" >/dev/null || fail "no retries_exhausted alert for c4: $(cat "$W/resp")"
[ "$(grep -c 'C-APDU.*84DE0300' "$W/vse4.log")" = 2 ] || fail "card 4 did not get one DESTROY per attempt"
grep -q 'R-APDU.*6A88' "$W/vse4.log" || fail "card 4 did not answer 6A88"
inspect 4 | jq -e '.lcs == "SECURED"' >/dev/null || fail "card 4 changed: $(inspect 4 | jq -c .lcs)"
[ "$(pay 4)" = 9000 ] || fail "card 4's payment application does not answer any more"
note "puk without a telecom application: refused by the card (6A88), unchanged, the action stalled"

stop_agents
tsmd_stop
echo "cms modes: ok"
