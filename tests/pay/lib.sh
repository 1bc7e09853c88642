# shellcheck shell=bash
# Shared by the pay tests (svc_test.sh, payterm_test.sh), sourced after
# tests/tsmd/lib.sh with tsmd started and $OP_TOKEN set:
#
#   pay_info                      pay's signing key into $PAY_PUB
#   spsim_start NAME KIND IMK [PIN_KEY]
#                                 a back end; URL_<NAME> and PUB_<NAME> (- as _)
#   sp_body NAME KIND URL PUB     the registration body of a back end
#   pay_backends                  three back ends (bank-a, bank-b, metro) with
#                                 a card each (and a purse)
#   pay_world                     the same, registered with pay and their
#                                 keys deposited
#   settled URL                   prints "cleared" of a back end after
#                                 checking initial = balance + pending + cleared

IMK_A=A0A1A2A3A4A5A6A7A8A9AAABACADAEAF
PIN_A=A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1
IMK_B=B0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF
PIN_B=B1B1B1B1B1B1B1B1B1B1B1B1B1B1B1B1
IMK_T=C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF
PAN_A=5413330089010434
PAN_B=4000123456789010
PURSE=0102030405060708

pay_info() {
    api GET /pay/v1/info "$OP_TOKEN"
    [ "$API_STATUS" = 200 ] || fail "pay info: $API_STATUS"
    PAY_PUB=$(jq -er .pub "$TSMD_WORK/resp")
}

spsim_start() {
    local name=$1 kind=$2 line i var=${1//-/_}
    OPENTSM_SPSIM_IMK=$3 OPENTSM_SPSIM_PIN_KEY=${4:-} "$SPSIM" \
        --set spsim.db="sqlite:$TSMD_WORK/$name.db" --set spsim.pay_pub="$PAY_PUB" \
        --set spsim.name="$name" --set spsim.kind="$kind" --set log.level=warn \
        >"$TSMD_WORK/$name.out" 2>"$TSMD_WORK/$name.err" &
    TSMD_EXTRA_PIDS+=($!)
    for i in $(seq 100); do
        grep -q '^spsim ' "$TSMD_WORK/$name.out" 2>/dev/null && break
        sleep 0.1
    done
    line=$(head -n1 "$TSMD_WORK/$name.out")
    [[ $line =~ ^spsim\ sp=$name\ port=([0-9]+)\ pub=(04[0-9A-F]{128})$ ]] ||
        fail "spsim $name: $line $(cat "$TSMD_WORK/$name.err")"
    printf -v "URL_$var" 'http://127.0.0.1:%s' "${BASH_REMATCH[1]}"
    printf -v "PUB_$var" '%s' "${BASH_REMATCH[2]}"
}

sp_body() {
    echo "{\"name\":\"$1\",\"display_name\":\"$1 back end\",\"kind\":\"$2\",\"endpoint\":\"$3/spsim/v1\",\"pub\":\"$4\"}"
}

pay_backends() {
    pay_info
    spsim_start bank-a bank $IMK_A $PIN_A
    spsim_start bank-b bank $IMK_B $PIN_B
    spsim_start metro transit $IMK_T
    curl -sf -o /dev/null "$URL_bank_a/spsim/v1/cards" -H 'Content-Type: application/json' \
        --data-binary '{"pan":"'$PAN_A'","pin":"1234","balance":10000,"currency":"EUR","pin_try_limit":3}' ||
        fail "card at bank-a"
    curl -sf -o /dev/null "$URL_bank_b/spsim/v1/cards" -H 'Content-Type: application/json' \
        --data-binary '{"pan":"'$PAN_B'","pin":"4321","balance":5000,"currency":"EUR","pin_try_limit":3}' ||
        fail "card at bank-b"
    curl -sf -o /dev/null "$URL_metro/spsim/v1/purses" -H 'Content-Type: application/json' \
        --data-binary '{"purse_id":"'$PURSE'","funds":3000}' || fail "purse at metro"
}

pay_world() {
    local sp kt
    pay_backends
    for sp in "bank-a bank $URL_bank_a $PUB_bank_a" "bank-b bank $URL_bank_b $PUB_bank_b" \
        "metro transit $URL_metro $PUB_metro"; do
        # shellcheck disable=SC2086
        set -- $sp
        api POST /pay/v1/sps "$OP_TOKEN" "$(sp_body "$1" "$2" "$3" "$4")" -H "Idempotency-Key: sp-$1"
        [ "$API_STATUS" = 201 ] || fail "register $1: $API_STATUS $(cat "$TSMD_WORK/resp")"
    done
    for kt in "bank-a emv_imk $IMK_A" "bank-a pin $PIN_A" "bank-b emv_imk $IMK_B" \
        "bank-b pin $PIN_B" "metro transit_imk $IMK_T"; do
        # shellcheck disable=SC2086
        set -- $kt
        api POST "/pay/v1/sps/$1/keys" "$OP_TOKEN" "{\"key_type\":\"$2\",\"key\":\"$3\"}" \
            -H "Idempotency-Key: key-$1-$2"
        [ "$API_STATUS" = 201 ] || fail "deposit $1 $2: $API_STATUS $(cat "$TSMD_WORK/resp")"
    done
}

settled() {
    local f=$TSMD_WORK/settle.json
    curl -sf -o "$f" "$1/spsim/v1/settlement" || fail "settlement of $1"
    jq -e '.initial == .balance + .pending + .cleared' "$f" >/dev/null ||
        fail "not conserved at $1: $(cat "$f")"
    jq -r .cleared "$f"
}
