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
#   pay_card_images VSE DRIVER    the card images below ($TSMD_WORK/*.img)
#   pay_cards VSE DRIVER          vse cards served on unix sockets in
#                                 $TSMD_WORK: sam.sock a dongle (id term-1),
#                                 rf_a.sock card A (bank-a and a purse),
#                                 rf_b.sock card B (bank-b); DRIVER is
#                                 pay_svc_driver (it derives the card keys)
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

pay_card_images() {
    local vse=$1 driver=$2 tk c
    local k40=404142434445464748494A4B4C4D4E4F
    _profile() {
        cat <<P
{"type":"eSE","card_lcs":"SECURED","isd":{"aid":"A000000151000000","privileges":"9EFE80",
 "scp":3,"i":"10","keys":[{"kvn":48,"type":"aes","enc":"$k40","mac":"$k40","dek":"$k40"}]},
 "packages":[{"module":"emv-payment"},{"module":"transit"},{"module":"sam"}],
 "applications":[$1]}
P
    }
    _emv_app() { # PAN IMK
        echo "{\"aid\":\"A0000000041010\",\"package\":\"F04F54534D02\",\"params\":\"5A08$1DF0110$("$driver" derive "$2" 50 "$1")DF020431323334\"}"
    }
    tk=$("$driver" derive $IMK_T 51 $PURSE)
    _profile '{"aid":"F04F54534D0601AA","package":"F04F54534D06","params":"DF10067465726D2D31"}' \
        >"$TSMD_WORK/dongle.json"
    _profile "$(_emv_app $PAN_A $IMK_A),{\"aid\":\"F04F54534D0301AA\",\"package\":\"F04F54534D03\",\"params\":\"DF0110${tk}DF0408${PURSE}DF0504000003E8\"}" \
        >"$TSMD_WORK/card_a.json"
    _profile "$(_emv_app $PAN_B $IMK_B)" >"$TSMD_WORK/card_b.json"
    for c in dongle card_a card_b; do
        "$vse" create --profile "$TSMD_WORK/$c.json" --out "$TSMD_WORK/$c.img" >/dev/null ||
            fail "vse create $c"
    done
}

pay_cards() {
    local vse=$1
    pay_card_images "$@"
    "$vse" run "$TSMD_WORK/dongle.img" "$TSMD_WORK/card_a.img" "$TSMD_WORK/card_b.img" \
        --listen "unix:$TSMD_WORK/sam.sock" --listen "unix:$TSMD_WORK/rf_a.sock" \
        --listen "unix:$TSMD_WORK/rf_b.sock" --log-level warn 2>"$TSMD_WORK/vse.err" &
    TSMD_EXTRA_PIDS+=($!)
    for _ in $(seq 100); do
        [ -S "$TSMD_WORK/rf_b.sock" ] && return 0
        sleep 0.1
    done
    fail "vse did not listen: $(cat "$TSMD_WORK/vse.err")"
}
