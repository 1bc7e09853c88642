#!/usr/bin/env bash
# spsim as a program (src/bin/spsim.c): configuration errors, the start line,
# the admin and message routes over HTTP, secrets masked, clean stop on
# SIGTERM. Usage: spsim_cli.sh SPSIM
set -euo pipefail

SPSIM=$1
WORK=$(mktemp -d /tmp/spsim_cli_XXXXXX)
PID=
cleanup() {
    if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    [[ -f $WORK/err ]] && sed 's/^/spsim: /' "$WORK/err" >&2
    exit 1
}

# pay's public key: a fresh P-256 key, uncompressed point in hex
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/pay.pem" 2>/dev/null
PAY_PUB=$(openssl ec -in "$WORK/pay.pem" -pubout -conv_form uncompressed -outform DER 2>/dev/null \
    | tail -c 65 | od -An -v -tx1 | tr -d ' \n')
[[ ${#PAY_PUB} -eq 130 ]] || fail "pay key: $PAY_PUB"

export OPENTSM_SPSIM_IMK=000102030405060708090A0B0C0D0E0F
export OPENTSM_SPSIM_PIN_KEY=00112233445566778899AABBCCDDEEFF
SETS=(--set spsim.db="sqlite:$WORK/ledger.db" --set spsim.pay_pub="$PAY_PUB"
      --set spsim.name=bank-x --set log.level=warn)

# bad configuration: exit 2 with the key named
rc=0
"$SPSIM" "${SETS[@]}" --set spsim.kind=shop 2>"$WORK/err" || rc=$?
[[ $rc -eq 2 ]] || fail "kind shop: exit $rc"
grep -q 'spsim.kind' "$WORK/err" || fail "kind shop: no message"
rc=0
OPENTSM_SPSIM_IMK=0011 "$SPSIM" "${SETS[@]}" 2>"$WORK/err" || rc=$?
[[ $rc -eq 2 ]] || fail "short imk: exit $rc"
rc=0
"$SPSIM" "${SETS[@]}" --set spsim.nope=1 2>"$WORK/err" || rc=$?
[[ $rc -eq 2 ]] || fail "unknown key: exit $rc"
rc=0
"$SPSIM" --bogus 2>"$WORK/err" || rc=$?
[[ $rc -eq 2 ]] || fail "unknown option: exit $rc"

# --print-config masks the keys
"$SPSIM" "${SETS[@]}" --print-config >"$WORK/cfg"
grep -q '^imk = \*\*\*\*\*\*\*\*' "$WORK/cfg" || fail "imk not masked: $(cat "$WORK/cfg")"
if grep -q '000102030405' "$WORK/cfg"; then fail "imk printed"; fi

# start: one line on stdout with the port and the signing key
"$SPSIM" "${SETS[@]}" >"$WORK/out" 2>"$WORK/err" &
PID=$!
for _ in $(seq 100); do
    grep -q '^spsim ' "$WORK/out" 2>/dev/null && break
    kill -0 "$PID" 2>/dev/null || fail "spsim exited"
    sleep 0.1
done
LINE=$(head -n1 "$WORK/out")
[[ $LINE =~ ^spsim\ sp=bank-x\ port=([0-9]+)\ pub=(04[0-9A-F]{128})$ ]] || fail "start line: $LINE"
URL="http://127.0.0.1:${BASH_REMATCH[1]}"
PUB=${BASH_REMATCH[2]}

req() { # METHOD PATH [BODY] -> status in ST, body in $WORK/resp
    local args=(-s -o "$WORK/resp" -w '%{http_code}' -X "$1" "$URL$2")
    [[ $# -ge 3 ]] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
    ST=$(curl "${args[@]}")
}

req GET /spsim/v1/info
[[ $ST == 200 ]] || fail "info: $ST"
grep -q "\"sp\":\"bank-x\"" "$WORK/resp" && grep -q "\"kind\":\"bank\"" "$WORK/resp" \
    && grep -q "\"pub\":\"$PUB\"" "$WORK/resp" || fail "info: $(cat "$WORK/resp")"
req POST /spsim/v1/cards '{"pan":"5413330089010434","pin":"1234","balance":1000,"currency":"EUR"}'
[[ $ST == 201 ]] || fail "add card: $ST $(cat "$WORK/resp")"
req POST /spsim/v1/cards '{"pan":"5413330089010434","pin":"12","balance":1000,"currency":"EUR"}'
[[ $ST == 400 ]] && grep -q '"field":"pin"' "$WORK/resp" || fail "short pin: $ST $(cat "$WORK/resp")"
req POST /spsim/v1/purses '{"purse_id":"0102030405060708","funds":1}'
[[ $ST == 409 ]] || fail "purse at a bank: $ST"
# an unsigned payment: refused, nothing cleared
BODY='{"v":1,"type":"payment","id":"p1","client":"t1","sp":"bank-x","nonce":"00000000000000000000000000000001","ts":'"$(date +%s)000"',"seq":1,"amount":100,"currency":"EUR","merchant":"m","pan":"5413330089010434","atc":1,"cdol":"000000000100","ac":"0000000000000000","pin_block":"00000000000000000000000000000000"}'
req POST /spsim/v1/payments "$BODY"
[[ $ST == 401 ]] && grep -q '"code":"unsigned"' "$WORK/resp" || fail "unsigned: $ST $(cat "$WORK/resp")"
req GET /spsim/v1/settlement
[[ $ST == 200 ]] && grep -q '"cleared":0' "$WORK/resp" && grep -q '"initial":1000' "$WORK/resp" \
    && grep -q '"balance":1000' "$WORK/resp" || fail "settlement: $(cat "$WORK/resp")"
req GET /spsim/v1/cards/5413330089010434
[[ $ST == 200 ]] && grep -q '"pin_tries":3' "$WORK/resp" || fail "card: $(cat "$WORK/resp")"
req GET /spsim/v1/cards/5413330089010442
[[ $ST == 404 ]] || fail "unknown card: $ST"
if grep -q '000102030405\|1234' "$WORK/err"; then fail "a secret in the log"; fi

# SIGTERM: exit 0
kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=
[[ $rc -eq 0 ]] || fail "exit after SIGTERM: $rc"
echo "spsim_cli: ok"
