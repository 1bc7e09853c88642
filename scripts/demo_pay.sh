#!/usr/bin/env bash
# make demo, the payment scene (issue 11, docs/pay.md): one payment client
# with one dongle pays with two banks' cards and tops up a transit card.
#
#   1. tsmd with the pay service over TLS (a local CA), two banks and a
#      transit operator (spsim back ends), registered with `tsmctl pay`, their
#      keys deposited from files;
#   2. the dongle (a vse card with the SAM applet) and two customers' cards
#      (vse cards: card A of bank-a with a transit purse, card B of bank-b);
#   3. payterm enrols with the dongle's public key and loads the banks' and
#      the operator's keys, wrapped by pay for this dongle alone;
#   4. card A pays at bank-a, card B at bank-b, a wrong PIN is declined;
#   5. card A's purse is topped up (authorise, credit on the card, confirm);
#   6. every back end's ledger balances.
#
# usage: scripts/demo_pay.sh [BUILD_DIR]
#   (needs tsmd, tsmctl, spsim, payterm, vse and pay_svc_driver)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
TSMD=$BUILD/src/bin/tsmd
TSMCTL=$BUILD/src/bin/tsmctl
SPSIM=$BUILD/src/bin/spsim
PAYTERM=$BUILD/src/bin/payterm
VSE=$BUILD/src/bin/vse
DRIVER=$BUILD/src/pay/pay_svc_driver
for b in "$TSMD" "$TSMCTL" "$SPSIM" "$PAYTERM" "$VSE" "$DRIVER"; do
    [ -x "$b" ] || { echo "demo: $b is not built (cmake --build $BUILD)" >&2; exit 1; }
done
# shellcheck source=../tests/tsmd/lib.sh
. "$ROOT/tests/tsmd/lib.sh"
# shellcheck source=../tests/pay/lib.sh
. "$ROOT/tests/pay/lib.sh"
step() { printf '\n== %s\n' "$*"; }

step "1. tsmd with pay over TLS; two banks and a transit operator"
tsmd_work_init demo-pay
W=$TSMD_WORK
"$ROOT/scripts/certs.sh" "$W/certs" sp-a >/dev/null 2>&1
export CURL_CA_BUNDLE=$W/certs/ca.pem
tsmd_config "sqlite:$W/var/tsmd.db" "log.level=warn" "services.enabled=tsm, pay" \
    "tls.cert=$W/certs/server.pem" "tls.key=$W/certs/server.key"
TSMD_URL=https://localhost:$TSMD_PORT
tsmd_bootstrap demo-operator
tsmd_start
echo "    tsmd: $TSMD_URL"
pay_backends
for sp in bank-a bank-b metro; do
    v=${sp//-/_}
    u=URL_$v
    echo "    $sp: ${!u}"
done
ctl() { OPENTSM_URL=$TSMD_URL OPENTSM_TOKEN=$OP_TOKEN "$TSMCTL" --ca "$W/certs/ca.pem" "$@"; }
ctl pay sp-register bank-a --kind bank --display-name "Bank A" \
    --endpoint "$URL_bank_a/spsim/v1" --pub "$PUB_bank_a" >/dev/null
ctl pay sp-register bank-b --kind bank --display-name "Bank B" \
    --endpoint "$URL_bank_b/spsim/v1" --pub "$PUB_bank_b" >/dev/null
ctl pay sp-register metro --kind transit --display-name "Metro" \
    --endpoint "$URL_metro/spsim/v1" --pub "$PUB_metro" >/dev/null
(umask 077
 echo $IMK_A >"$W/a.imk"; echo $PIN_A >"$W/a.pin"; echo $IMK_B >"$W/b.imk"
 echo $PIN_B >"$W/b.pin"; echo $IMK_T >"$W/t.imk")
ctl pay key-deposit bank-a --key-type emv_imk --key-file "$W/a.imk" >/dev/null
ctl pay key-deposit bank-a --key-type pin --key-file "$W/a.pin" >/dev/null
ctl pay key-deposit bank-b --key-type emv_imk --key-file "$W/b.imk" >/dev/null
ctl pay key-deposit bank-b --key-type pin --key-file "$W/b.pin" >/dev/null
ctl pay key-deposit metro --key-type transit_imk --key-file "$W/t.imk" >/dev/null
echo '$ tsmctl pay sps'
ctl pay sps

step "2. the dongle and two customers' cards (vse)"
pay_cards "$VSE" "$DRIVER"
echo "    dongle term-1 on $W/sam.sock; card A ($PAN_A) on rf_a; card B ($PAN_B) on rf_b"
mkdir -p "$W/journal"
DEV=$(tsmd_principal device term-1)
DEV_TOKEN=$(tsmd_token "$DEV")
pt() {
    local rf=$1
    shift
    OPENTSM_TOKEN=$DEV_TOKEN "$PAYTERM" --url "$TSMD_URL" --ca "$W/certs/ca.pem" --client term-1 \
        --sam "socket:unix:$W/sam.sock" --rf "socket:unix:$W/rf_$rf.sock" --journal "$W/journal" "$@"
}

step "3. payterm enrols and loads the keys wrapped for its dongle"
echo '$ payterm enrol'
pt a enrol | cut -c1-60
echo '$ payterm keys'
pt a keys

step "4. payments: card A at bank-a, card B at bank-b, a wrong PIN"
echo '$ payterm pay --sp bank-a --amount 1250   (card A, PIN 1234)'
echo 1234 | pt a pay --sp bank-a --amount 1250 --merchant "Kiosk 7" --pin-stdin
echo '$ payterm pay --sp bank-b --amount 700    (card B, PIN 4321)'
echo 4321 | pt b pay --sp bank-b --amount 700 --merchant "Kiosk 7" --pin-stdin
echo '$ payterm pay --sp bank-b --amount 100    (card B, PIN 0000)'
rc=0
echo 0000 | pt b pay --sp bank-b --amount 100 --pin-stdin || rc=$?
echo "    exit status $rc (declined)"

step "5. top-up of card A's transit purse at metro"
echo '$ payterm topup --sp metro --amount 2000'
pt a topup --sp metro --amount 2000
echo '$ payterm journal'
pt a journal

step "6. the back ends' ledgers"
for sp in bank-a bank-b metro; do
    u=URL_${sp//-/_}
    printf '    %-7s cleared=%s ' "$sp" "$(settled "${!u}")"
    curl -sf "${!u}/spsim/v1/settlement" | jq -c '{count, initial, balance, pending}'
done
tsmd_stop
echo "demo: payments done"
