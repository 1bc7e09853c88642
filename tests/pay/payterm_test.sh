#!/usr/bin/env bash
# pay.payterm (issue 11 phase 2 point 2): payterm with its dongle (a vse with
# the sam applet on one reader) and customers' cards (vse cards on the RF
# reader), against the real tsmd with pay and three spsim back ends.
#
# enrol, keys (wrapped for this dongle, loaded into it), payments with two
# banks' cards cleared at the right bank, a wrong PIN declined (exit 3), a
# transit top-up, and top-ups cut after the authorisation and after the
# card's credit finished by `payterm journal --recover`: at each step every
# back end balances (initial = balance + pending + cleared) and the card's
# purse, the journal and the operator agree. A device that is not enrolled
# gets no keys.
#
# MODE socket: the readers are vse sockets (the converter's socket back
# end). MODE pcsc: the dongle and the RF reader are two PC/SC readers of a
# private pcscd with vsmartcard's vpcd (tests/vse/pcscd_env.sh), the dongle
# a vse in slot 0, the customer's card a vse in slot 1, taken off and put
# back when the other card is presented.
#
# usage: payterm_test.sh TSMD SPSIM PAYTERM VSE DRIVER [socket|pcsc]
set -euo pipefail

TSMD=$1
SPSIM=$2
PAYTERM=$3
VSE=$4
DRIVER=$5
MODE=${6:-socket}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

need_tools curl jq
if [ "$MODE" = pcsc ]; then
    # shellcheck source=../vse/pcscd_env.sh
    . "$HERE/../vse/pcscd_env.sh"
    DONGLE_PID=
    CARD_PID=
    pcsc_cleanup() {
        local p
        for p in "$CARD_PID" "$DONGLE_PID"; do
            [ -n "$p" ] && { kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; }
        done
        pcscd_env_stop
    }
    TSMD_CLEANUP_HOOK=pcsc_cleanup
fi
tsmd_work_init pay-term
# db.pool=1: no request may hold a connection while it waits for another
# one or for the network (it would stall until the pool timeout).
tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "log.level=warn" "db.pool=1" "services.enabled=tsm, pay"
tsmd_bootstrap ops
tsmd_start
pay_world
DEV=$(tsmd_principal device term-1)
DEV2=$(tsmd_principal device term-2)
DEV_TOKEN=$(tsmd_token "$DEV")
DEV2_TOKEN=$(tsmd_token "$DEV2")

CUR=
if [ "$MODE" = pcsc ]; then
    pay_card_images "$VSE" "$DRIVER"
    # a loaded machine can refuse vpcd its ports a few times in a row: the
    # start (five ports each) is tried up to three times
    started=0
    for _ in 1 2 3; do
        if pcscd_env_start; then
            started=1
            break
        fi
        pcscd_env_stop
        sleep 1
    done
    [ "$started" = 1 ] || fail "pcscd could not start"
    "$VSE" run "$TSMD_WORK/dongle.img" --vpcd "127.0.0.1:$VPCD_PORT" >>"$TSMD_WORK/vse.log" 2>&1 &
    DONGLE_PID=$!
    pcscd_env_wait_card 0 || fail "no dongle in reader 0"
    SAM_SPEC="pcsc:Virtual PCD 00 00"
else
    pay_cards "$VSE" "$DRIVER"
    SAM_SPEC="socket:unix:$TSMD_WORK/sam.sock"
fi
# card a|b: that customer's card is on the RF reader
card() {
    [ "$MODE" = pcsc ] || { CUR=$1; return 0; }
    [ "$CUR" = "$1" ] && return 0
    if [ -n "$CARD_PID" ]; then
        kill "$CARD_PID"
        wait "$CARD_PID" || true
        CARD_PID=
        for _ in $(seq 1 300); do
            opensc-tool -r 1 -a >/dev/null 2>&1 || break
            sleep 0.1
        done
    fi
    "$VSE" run "$TSMD_WORK/card_$1.img" --vpcd "127.0.0.1:$((VPCD_PORT + 1))" \
        >>"$TSMD_WORK/vse.log" 2>&1 &
    CARD_PID=$!
    pcscd_env_wait_card 1 || fail "no card in reader 1"
    CUR=$1
}
mkdir -p "$TSMD_WORK/journal"

pt() { # RF TOKEN ARGS...: payterm with the dongle and card RF (see card) on the reader
    local rf=$1 tok=$2 spec
    shift 2
    [ "$rf" = "$CUR" ] || fail "card $rf is not on the reader"
    spec="socket:unix:$TSMD_WORK/rf_$rf.sock"
    [ "$MODE" = pcsc ] && spec="pcsc:Virtual PCD 00 01"
    OPENTSM_TOKEN=$tok "$PAYTERM" --url "$TSMD_URL" --client term-1 --sam "$SAM_SPEC" \
        --rf "$spec" --journal "$TSMD_WORK/journal" --json "$@"
}
expect() { # WANT-RC OUTFILE CMD...
    local want=$1 out=$2 rc=0
    shift 2
    "$@" >"$out" 2>"$out.err" || rc=$?
    [ "$rc" = "$want" ] || fail "$*: exit $rc, want $want: $(cat "$out" "$out.err")"
}
O=$TSMD_WORK/out

# not enrolled: no keys
card a
expect 1 "$O" pt a "$DEV_TOKEN" keys
jq -e '.result == "keys_failed" and .status == 404' "$O" >/dev/null || fail "keys before enrol: $(cat "$O")"
expect 0 "$O" pt a "$DEV_TOKEN" enrol
jq -e '.result == "enrolled" and .client == "term-1"' "$O" >/dev/null || fail "enrol: $(cat "$O")"
expect 1 "$O" pt a "$DEV2_TOKEN" keys
expect 0 "$O" pt a "$DEV_TOKEN" keys
jq -e '.loaded == 5 and .revoked == 0' "$O" >/dev/null || fail "keys: $(cat "$O")"

# two banks' cards on one dongle
echo 1234 | expect 0 "$O" pt a "$DEV_TOKEN" pay --sp bank-a --amount 1250 --pin-stdin
jq -e '.status == "approved" and .sp == "bank-a" and .reason == "ok"' "$O" >/dev/null ||
    fail "pay a: $(cat "$O")"
card b
echo 4321 | expect 0 "$O" pt b "$DEV_TOKEN" pay --sp bank-b --amount 700 --pin-stdin
jq -e '.status == "approved" and .sp == "bank-b"' "$O" >/dev/null || fail "pay b: $(cat "$O")"
[ "$(settled "$URL_bank_a")" = 1250 ] || fail "bank-a cleared"
[ "$(settled "$URL_bank_b")" = 700 ] || fail "bank-b cleared"
# a wrong PIN: declined by the bank, a try counted, nothing cleared
echo 0000 | expect 3 "$O" pt b "$DEV_TOKEN" pay --sp bank-b --amount 100 --pin-stdin
jq -e '.status == "declined" and .reason == "wrong_pin" and .pin_tries == 2' "$O" >/dev/null ||
    fail "wrong pin: $(cat "$O")"
[ "$(settled "$URL_bank_b")" = 700 ] || fail "bank-b cleared after a wrong PIN"
# card B is not a card of bank-a: the dongle refuses it, nothing leaves
echo 4321 | expect 1 "$O" pt b "$DEV_TOKEN" pay --sp bank-a --amount 100 --pin-stdin
[ "$(settled "$URL_bank_a")" = 1250 ] || fail "bank-a cleared a foreign card"
# a malformed PIN never reaches the dongle
card a
echo 12 | expect 1 "$O" pt a "$DEV_TOKEN" pay --sp bank-a --amount 100 --pin-stdin

# transit top-up, figure 4
expect 0 "$O" pt a "$DEV_TOKEN" topup --sp metro --amount 2000
jq -e '.status == "approved" and .reason == "ok"' "$O" >/dev/null || fail "topup: $(cat "$O")"
[ "$(settled "$URL_metro")" = 2000 ] || fail "metro cleared"

# a top-up cut after the authorisation, then after the card's credit
for cut in authorised credited; do
    rm -f "$TSMD_WORK"/journal/*.json
    expect 0 "$O" pt a "$DEV_TOKEN" topup --sp metro --amount 500 --stop-after $cut
    jq -e --arg c $cut '.result == "topup_open" and .state == $c' "$O" >/dev/null ||
        fail "cut $cut: $(cat "$O")"
    curl -sf "$URL_metro/spsim/v1/settlement" | jq -e '.pending == 500' >/dev/null ||
        fail "cut $cut: not pending at the operator"
    settled "$URL_metro" >/dev/null
    expect 0 "$O" pt a "$DEV_TOKEN" journal
    jq -se --arg c $cut '.[0].state == $c' "$O" >/dev/null || fail "journal after $cut: $(cat "$O")"
    expect 0 "$O" pt a "$DEV_TOKEN" journal --recover
    jq -se '.[-1].state == "confirmed"' "$O" >/dev/null || fail "recover after $cut: $(cat "$O")"
    curl -sf "$URL_metro/spsim/v1/settlement" | jq -e '.pending == 0' >/dev/null ||
        fail "recover after $cut: still pending"
done
[ "$(settled "$URL_metro")" = 3000 ] || fail "metro cleared after the recoveries"
# the card holds what the operator cleared: 10.00 + 20.00 + 5.00 + 5.00
curl -sf "$URL_metro/spsim/v1/purses/$PURSE" | jq -e '.counter == 3' >/dev/null ||
    fail "purse counter: $(curl -s "$URL_metro/spsim/v1/purses/$PURSE")"

# writing the transit application onto card B (bank-b's card, no purse yet):
# pay runs the ISD's secure channel with the keys bank-b deposited, payterm
# relays; the ISD keys are never delivered to a dongle
PURSE2=1112131415161718
K40=404142434445464748494A4B4C4D4E4F
card b
expect 1 "$O" pt b "$DEV_TOKEN" topup --sp metro --amount 100
for kt in isd_enc isd_mac isd_dek; do
    api POST /pay/v1/sps/bank-b/keys "$OP_TOKEN" "{\"key_type\":\"$kt\",\"key\":\"$K40\"}" \
        -H "Idempotency-Key: key-bank-b-$kt"
    [ "$API_STATUS" = 201 ] || fail "deposit bank-b $kt: $API_STATUS $(cat "$TSMD_WORK/resp")"
done
expect 0 "$O" pt b "$DEV_TOKEN" keys
jq -e '.loaded == 5' "$O" >/dev/null || fail "ISD keys delivered to a dongle: $(cat "$O")"
curl -sf -o /dev/null "$URL_metro/spsim/v1/purses" -H 'Content-Type: application/json' \
    --data-binary '{"purse_id":"'$PURSE2'","funds":3000}' || fail "purse 2 at metro"
inst() { # RC TOKEN [ARGS...]
    local rc=$1 tok=$2
    shift 2
    expect "$rc" "$O" pt b "$tok" install --sp bank-b --app transit --operator metro \
        --purse "$PURSE2" "$@"
}
# not an enrolled client: refused before anything reaches the card
inst 1 "$DEV2_TOKEN"
jq -e '.code == "not_enrolled"' "$O" >/dev/null || fail "install by a stranger: $(cat "$O")"
# a relay that alters the INSTALL: the card's C-MAC check refuses it
inst 1 "$DEV_TOKEN" --test-flip-install
jq -e '.result == "install" and .status == "refused" and .sw == "6982"' "$O" >/dev/null ||
    fail "tampered install: $(cat "$O")"
expect 1 "$O" pt b "$DEV_TOKEN" topup --sp metro --amount 100
inst 0 "$DEV_TOKEN"
jq -e '.result == "install" and .status == "installed" and .sw == "9000"
       and (.applications | split(",") | index("F04F54534D0301AA") != null)' "$O" >/dev/null ||
    fail "install: $(cat "$O")"
# the new purse: topped up through the operator, then a fare debited
expect 0 "$O" pt b "$DEV_TOKEN" topup --sp metro --amount 700
jq -e '.status == "approved"' "$O" >/dev/null || fail "topup new purse: $(cat "$O")"
expect 0 "$O" pt b "$DEV_TOKEN" debit --amount 250
jq -e '.status == "approved" and .balance == 450' "$O" >/dev/null || fail "debit: $(cat "$O")"
expect 3 "$O" pt b "$DEV_TOKEN" debit --amount 1000
jq -e '.status == "declined" and .sw == "6985"' "$O" >/dev/null || fail "overdraft: $(cat "$O")"
curl -sf "$URL_metro/spsim/v1/purses/$PURSE2" | jq -e '.counter == 1' >/dev/null ||
    fail "purse 2: $(curl -s "$URL_metro/spsim/v1/purses/$PURSE2")"
[ "$(settled "$URL_metro")" = 3700 ] || fail "metro cleared after the new purse's top-up"
# the relays are audited (opened, installed, refused); no ISD key in tsmd's log
api GET "/admin/v1/audit?limit=1000" "$OP_TOKEN"
jq -e '([.items[] | select(.action == "pay.install.open")] | length == 2)
       and ([.items[] | select(.action == "pay.install.end") | .outcome] | sort) == ["installed", "refused"]' \
    "$TSMD_WORK/resp" >/dev/null || fail "install audit: $(jq -c '[.items[] | select(.action | startswith("pay.install"))]' "$TSMD_WORK/resp")"
if grep -qi "$K40" "$TSMD_WORK/tsmd.log"; then fail "an ISD key in tsmd.log"; fi
# a relay's steps are numbered: the current one goes on, the previous one posted
# again with the same answer gets the same command, any other is refused (409)
api POST /pay/v1/installs "$DEV_TOKEN" \
    "{\"client\":\"term-1\",\"sp\":\"bank-b\",\"app\":\"transit\",\"operator\":\"metro\",\"purse_id\":\"$PURSE2\"}"
[ "$API_STATUS" = 201 ] || fail "open a relay: $API_STATUS $(cat "$TSMD_WORK/resp")"
jq -e '.step == 1 and (.capdu | startswith("00A40400"))' "$TSMD_WORK/resp" >/dev/null ||
    fail "relay step 1: $(cat "$TSMD_WORK/resp")"
RELAY=$(jq -r .relay "$TSMD_WORK/resp")
step() { api POST "/pay/v1/installs/$RELAY" "$DEV_TOKEN" "{\"step\":$1,\"rapdu\":\"$2\"}"; }
step 2 9000
[ "$API_STATUS" = 409 ] && jq -e '.error.code == "step" and .error.field == "step"' "$TSMD_WORK/resp" >/dev/null ||
    fail "a step ahead: $API_STATUS $(cat "$TSMD_WORK/resp")"
step 1 9000
[ "$API_STATUS" = 200 ] && jq -e '.step == 2 and (.capdu | startswith("8050"))' "$TSMD_WORK/resp" >/dev/null ||
    fail "step 1 (SELECT answered): $API_STATUS $(cat "$TSMD_WORK/resp")"
IU=$(jq -r .capdu "$TSMD_WORK/resp")
step 1 9000 # our answer lost: the same INITIALIZE UPDATE (same host challenge)
[ "$API_STATUS" = 200 ] && jq -e --arg iu "$IU" '.step == 2 and .capdu == $iu' "$TSMD_WORK/resp" >/dev/null ||
    fail "step 1 again: $API_STATUS $(cat "$TSMD_WORK/resp")"
step 1 6A82 # the same step with another answer: refused, nothing changed
[ "$API_STATUS" = 409 ] || fail "step 1 with another answer: $API_STATUS $(cat "$TSMD_WORK/resp")"
step 2 6A88 # the card refuses INITIALIZE UPDATE: the relay ends
[ "$API_STATUS" = 200 ] && jq -e '.result == "refused" and .sw == "6A88" and (has("step") | not)' \
    "$TSMD_WORK/resp" >/dev/null || fail "step 2: $API_STATUS $(cat "$TSMD_WORK/resp")"
step 2 6A88
[ "$API_STATUS" = 404 ] || fail "a step after the end: $API_STATUS $(cat "$TSMD_WORK/resp")"
card a

# a revoked client gets nothing more
api POST /pay/v1/clients/term-1/revoke "$OP_TOKEN" "" -H "Idempotency-Key: rev-1"
[ "$API_STATUS" = 200 ] || fail "revoke: $API_STATUS"
expect 1 "$O" pt a "$DEV_TOKEN" keys
jq -e '.code == "revoked"' "$O" >/dev/null || fail "keys after revoke: $(cat "$O")"
echo 1234 | expect 1 "$O" pt a "$DEV_TOKEN" pay --sp bank-a --amount 100 --pin-stdin
[ "$(settled "$URL_bank_a")" = 1250 ] || fail "bank-a after revoke"
tsmd_stop
echo "pay.payterm: ok"
