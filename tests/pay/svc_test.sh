#!/usr/bin/env bash
# pay.svc (issue 11 phase 2 point 1, docs/pay.md): the real tsmd with the pay
# service and three real spsim back ends (two banks, one transit operator)
# on loopback, driven by tests/pay/svc_driver.c (a payment client with its
# dongle and two customers' cards, vse cards in process).
#
# Here: SP registration and key deposit (precise errors, keys never in the
# log, versions), then the driver: enrolment, key delivery wrapped for one
# dongle, payments at two banks, replays, malformed and forged requests,
# a wrong PIN, a top-up, rotation, SP and client revocation, ledgers
# balanced at every step. Last: the audit rows of the admin actions.
#
# usage: svc_test.sh TSMD SPSIM SVC_DRIVER
set -euo pipefail

TSMD=$1
SPSIM=$2
DRIVER=$3
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"

need_tools curl jq
tsmd_work_init pay-svc
# db.pool=1: no request may hold a connection while it waits for another
# one or for the network (it would stall until the pool timeout).
tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "log.level=info" "db.pool=1" "services.enabled=tsm, pay"
tsmd_bootstrap ops
tsmd_start

P=/pay/v1
# shellcheck source=lib.sh
. "$HERE/lib.sh"
pay_info
[ "$(jq -r .signer "$TSMD_WORK/resp")" = pay ] || fail "signer: $(cat "$TSMD_WORK/resp")"
pay_backends

# sp_post NAME BODY WANT [FIELD]
sp_post() {
    api POST $P/sps "$OP_TOKEN" "$2" -H "Idempotency-Key: sp-$1-$RANDOM$RANDOM"
    [ "$API_STATUS" = "$3" ] || fail "sps $1: want $3, got $API_STATUS $(cat "$TSMD_WORK/resp")"
    if [ -n "${4:-}" ]; then
        [ "$(jq -r .error.field "$TSMD_WORK/resp")" = "$4" ] ||
            fail "sps $1: field $(cat "$TSMD_WORK/resp")"
    fi
}
sp_post bank-a "$(sp_body bank-a bank "$URL_bank_a" "$PUB_bank_a")" 201
sp_post bank-b "$(sp_body bank-b bank "$URL_bank_b" "$PUB_bank_b")" 201
sp_post metro "$(sp_body metro transit "$URL_metro" "$PUB_metro")" 201
sp_post bank-a "$(sp_body bank-a bank "$URL_bank_a" "$PUB_bank_a")" 409 name
sp_post x "$(sp_body 'a b' bank "$URL_bank_a" "$PUB_bank_a")" 400 name
sp_post x "$(sp_body x shop "$URL_bank_a" "$PUB_bank_a")" 400 kind
sp_post x "$(sp_body x bank "ftp://h" "$PUB_bank_a")" 400 endpoint
sp_post x "$(sp_body x bank "$URL_bank_a" "04${PUB_bank_a:4}00")" 400 pub
sp_post x '{"name":"x","kind":"bank"}' 400 display_name
sp_post x '{"name":"x","nope":1}' 400 nope
api GET $P/sps "$OP_TOKEN"
[ "$(jq -r '.items | length' "$TSMD_WORK/resp")" = 3 ] || fail "sp list: $(cat "$TSMD_WORK/resp")"

# key deposit: versions per (SP, type); bad keys refused; never in the log
deposit() { # SP TYPE KEY WANT [FIELD]
    api POST "$P/sps/$1/keys" "$OP_TOKEN" "{\"key_type\":\"$2\",\"key\":\"$3\"}" \
        -H "Idempotency-Key: key-$1-$2-$RANDOM$RANDOM"
    [ "$API_STATUS" = "$4" ] || fail "deposit $1 $2: want $4, got $API_STATUS $(cat "$TSMD_WORK/resp")"
    if [ -n "${5:-}" ]; then
        [ "$(jq -r .error.field "$TSMD_WORK/resp")" = "$5" ] || fail "deposit field: $(cat "$TSMD_WORK/resp")"
    fi
}
deposit bank-a emv_imk $IMK_A 201
[ "$(jq -r .version "$TSMD_WORK/resp")" = 1 ] || fail "first version: $(cat "$TSMD_WORK/resp")"
deposit bank-a pin $PIN_A 201
deposit bank-b emv_imk $IMK_B 201
deposit bank-b pin $PIN_B 201
deposit metro transit_imk $IMK_T 201
deposit bank-a emv_imk 0011 400 key
deposit bank-a cvk $IMK_A 400 key_type
deposit bank-z pin $PIN_A 404
api GET $P/sps/bank-a/keys "$OP_TOKEN"
[ "$(jq -r '[.items[].key_type] | join(",")' "$TSMD_WORK/resp")" = "emv_imk,pin" ] ||
    fail "key list: $(cat "$TSMD_WORK/resp")"
if grep -q "$IMK_A" "$TSMD_WORK/resp"; then fail "a key in the key list"; fi

# the clients: device principals with tokens
DEV=$(tsmd_principal device term-1)
DEV2=$(tsmd_principal device term-2)
SPP=$(tsmd_principal service_provider bank-a-ops)
DEV_TOKEN=$(tsmd_token "$DEV")
DEV2_TOKEN=$(tsmd_token "$DEV2")
SP_TOKEN=$(tsmd_token "$SPP")
# a service provider that does not own bank-a sees nothing of it
api GET $P/sps/bank-a "$SP_TOKEN"
[ "$API_STATUS" = 404 ] || fail "other SP reads bank-a: $API_STATUS"
api POST $P/sps "$SP_TOKEN" "$(sp_body y bank "$URL_bank_a" "$PUB_bank_a")" -H "Idempotency-Key: sp-y"
[ "$API_STATUS" = 403 ] || fail "SP registers an SP: $API_STATUS"
# a service provider lists its own registrations only (the operator: all)
api POST $P/sps "$OP_TOKEN" "$(sp_body bank-c bank "$URL_bank_a" "$PUB_bank_a" | jq -c ".owner_id = $SPP")" \
    -H "Idempotency-Key: sp-bank-c"
[ "$API_STATUS" = 201 ] || fail "bank-c owned by $SPP: $API_STATUS $(cat "$TSMD_WORK/resp")"
api GET $P/sps "$SP_TOKEN"
[ "$API_STATUS" = 200 ] && [ "$(jq -r '[.items[].name] | join(",")' "$TSMD_WORK/resp")" = bank-c ] ||
    fail "the SP's own list: $API_STATUS $(cat "$TSMD_WORK/resp")"
api GET $P/sps "$OP_TOKEN"
[ "$(jq -r '.items | length' "$TSMD_WORK/resp")" = 4 ] || fail "operator list: $(cat "$TSMD_WORK/resp")"
api GET $P/sps "$DEV_TOKEN"
[ "$API_STATUS" = 403 ] || fail "a device lists SPs: $API_STATUS"
# an operator enrols for a principal that is not a device
api POST $P/clients "$OP_TOKEN" "{\"name\":\"t9\",\"dongle_pub\":\"$PUB_bank_a\",\"principal_id\":$SPP}" \
    -H "Idempotency-Key: enrol-t9"
[ "$API_STATUS" = 400 ] && [ "$(jq -r .error.field "$TSMD_WORK/resp")" = principal_id ] ||
    fail "enrol for an SP principal: $API_STATUS $(cat "$TSMD_WORK/resp")"

"$DRIVER" "$TSMD_URL" "$OP_TOKEN" "$DEV_TOKEN" "$DEV2_TOKEN" "$URL_bank_a" "$URL_bank_b" \
    "$URL_metro" || fail "svc_driver"

# the admin actions are audited; no key is in tsmd's log
api GET "/admin/v1/audit?limit=1000" "$OP_TOKEN"
for a in pay.sp.create pay.sp.key.deposit pay.client.enrol pay.sp.revoke pay.client.revoke; do
    jq -e --arg a "$a" '[.items[] | select(.action == $a)] | length > 0' "$TSMD_WORK/resp" \
        >/dev/null || fail "no audit row $a"
done
for k in $IMK_A $PIN_A $IMK_B $PIN_B $IMK_T; do
    if grep -qi "$k" "$TSMD_WORK/tsmd.log"; then fail "a key in tsmd.log"; fi
done
tsmd_stop
echo "pay.svc: ok"
