#!/usr/bin/env bash
# console.browser (issue 14): the web console in a real headless Chromium
# (Debian's chromium, driven by tests/console/browser.mjs through
# puppeteer-core from tools/, installed by scripts/deps.sh), against a real
# tsmd on loopback with the tsm service, an mno instance and cms. The
# subscriber's phone is a real se-agent with a vse card: it is off when the
# subscriber reports it lost, the page shows the pending state, the browser
# script switches the phone on (phone_on.sh) and the page turns "Destroyed"
# on its own.
#
# usage: console_test.sh TSMD TSMCTL SE_AGENT VSE SOURCE_DIR SHOTS_DIR
set -euo pipefail

TSMD=$1
TSMCTL=$2
AGENT=$3
VSE=$4
SRC=$5
SHOTS=$6
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"

for t in curl jq node openssl xxd; do
    command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
done
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || fail "$CHROMIUM is missing (scripts/deps.sh installs chromium)"
[ -d "$SRC/tools/node_modules/puppeteer-core" ] || fail "puppeteer-core is missing: run scripts/deps.sh"

stop_phone() {
    local pid
    pid=$(cat "$TSMD_WORK/agent.pid" 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2034 # read by tsmd_cleanup (tests/tsmd/lib.sh)
TSMD_CLEANUP_HOOK=stop_phone
tsmd_work_init console
W=$TSMD_WORK
tsmd_config "sqlite:$W/var/tsmd.db" "services.enabled=tsm, mno:orange, cms, pay" \
    "console.dir=$SRC/web" "console.session_ttl_s=600" "log.level=info" \
    "mno.orange.backoff_s=0" "mno.orange.sweep_ms=50" "mno.orange.heartbeat_s=1" \
    "cms.tick_ms=50" "cms.backoff_s=0"
tsmd_bootstrap ops
TSMD_SETS+=(--set "cms.mno_url=$TSMD_URL")
export OPENTSM_CMS_MNO_TOKEN=$OP_TOKEN
tsmd_start

# Alice's phone: a vse card (the ISD with R-MAC, the card's proof) behind an
# se-agent that is not started yet: the phone is off.
CIN=4F54534D434F4E31
jq ".isd.i = \"70\" | .cin = \"$CIN\"" "$SRC/profiles/ese-central.json" >"$W/card.json"
"$VSE" create --profile "$W/card.json" --out "$W/card.img" >/dev/null
"$VSE" run "$W/card.img" --listen "unix:$W/card.sock" --log-level trace >>"$W/vse.log" 2>&1 &
TSMD_EXTRA_PIDS+=("$!")
for _ in $(seq 1 100); do
    [ -S "$W/card.sock" ] && break
    sleep 0.05
done
[ -S "$W/card.sock" ] || fail "the vse did not listen"

# The people of the test: two banks and a subscriber, each with a token.
mk() { # kind name [extra json] -> token on stdout
    local extra=${3:-}
    api POST /admin/v1/principals "$OP_TOKEN" "{\"kind\":\"$1\",\"name\":\"$2\"$extra}" \
        -H "Idempotency-Key: p-$2"
    expect_status 201 "create $1 $2"
    local id
    id=$(jq -r .id "$TSMD_WORK/resp")
    echo "$id" >"$TSMD_WORK/id-$2"
    api POST /admin/v1/tokens "$OP_TOKEN" "{\"principal_id\":$id,\"label\":\"console test\"}"
    expect_status 201 "token for $2"
    jq -r .token "$TSMD_WORK/resp"
}
SP_A=$(mk service_provider bank-a ',"display_name":"Bank A"')
SP_B=$(mk service_provider bank-b ',"display_name":"Bank B"')
# Each bank's registration on the payment platform, owned by its principal,
# and a key bank A deposits itself.
pay_sp() { # NAME OWNER_ID
    local pub
    pub=$(openssl ecparam -name prime256v1 -genkey -noout | openssl ec -pubout -outform DER 2>/dev/null |
        tail -c 65 | xxd -p -c 200)
    api POST /pay/v1/sps "$OP_TOKEN" "{\"name\":\"$1\",\"display_name\":\"$1 cards\",\"kind\":\"bank\",\"endpoint\":\"https://$1.example/spsim/v1\",\"pub\":\"$pub\",\"owner_id\":$2}" \
        -H "Idempotency-Key: pay-$1"
    expect_status 201 "pay registration $1"
}
pay_sp bank-a "$(cat "$TSMD_WORK/id-bank-a")"
pay_sp bank-b "$(cat "$TSMD_WORK/id-bank-b")"
api POST /pay/v1/sps/bank-a/keys "$SP_A" '{"key_type":"emv_imk","key":"00112233445566778899AABBCCDDEEFF"}' \
    -H "Idempotency-Key: key-a"
expect_status 201 "bank A deposits a key"
SUB=$(mk subscriber alice ',"msisdns":["33611111111"]')
# The browser's operator token (revoked during the test) and a second one
# that revokes it; cms keeps OP_TOKEN for its calls to mno.
api POST /admin/v1/tokens "$OP_TOKEN" '{"principal_id":1,"label":"console test"}'
expect_status 201 "operator token"
OP1=$(jq -r .token "$TSMD_WORK/resp")
api POST /admin/v1/tokens "$OP_TOKEN" '{"principal_id":1,"label":"console test 2"}'
expect_status 201 "second operator token"
OP2=$(jq -r .token "$TSMD_WORK/resp")

cat >"$TSMD_WORK/ses.csv" <<CSV
cin,se_type,mno,msisdn,imsi,profile_id,gp_version,jc_version,cert_level,expiry,free_memory,master_key_index
A0000001000000000001,eSE,orange,33612345678,208010000000001,ese-central,2.3.1,3.0.5,EAL5+,2031-12-31,65536,1
CSV
api POST /tsm/v1/secure-elements:import "$OP_TOKEN" - -H "Content-Type: text/csv" \
    -H "Idempotency-Key: ses-1" --data-binary "@$TSMD_WORK/ses.csv"
expect_status 200 "SE import"

api POST /admin/v1/principals "$OP_TOKEN" \
    '{"kind":"device","name":"alice-phone","imei":"356938035643809","imsi":"208011234567890","mno":"orange"}' \
    -H "Idempotency-Key: dev-alice"
expect_status 201 "alice's phone"
DEV=$(jq -er .id "$W/resp")
api POST /mno/orange/v1/devices "$OP_TOKEN" \
    "{\"principal_id\":$DEV,\"msisdn\":\"33611111111\",\"cins\":[\"$CIN\"]}" -H "Idempotency-Key: enrol-alice"
case $API_STATUS in 200 | 201) ;; *) fail "enrol alice's phone: $API_STATUS $(cat "$W/resp")" ;; esac
(umask 077 && tsmd_token "$DEV" >"$W/dev.token")
KEYS='{"enc":"404142434445464748494A4B4C4D4E4F","mac":"404142434445464748494A4B4C4D4E4F","dek":"404142434445464748494A4B4C4D4E4F"}'
api POST /cms/v1/cards "$OP_TOKEN" "{\"cards\":[{\"card_id\":\"alice-visa\",\"subscriber\":$(cat "$W/id-alice"),\"cin\":\"$CIN\",\"mno\":\"orange\",\"msisdn\":\"33611111111\",\"imsi\":\"208011234567890\",\"imei\":\"356938035643809\",\"issuer\":\"bank-a\",\"aids\":[\"A0000000041010\"],\"sd_aid\":\"A000000151000000\",\"kvn\":48,\"keys\":$KEYS}]}" \
    -H "Idempotency-Key: import-cards"
expect_status 201 "card import"
# The browser script switches the phone on with this.
cat >"$W/phone_on.sh" <<SH
#!/usr/bin/env bash
"$AGENT" --state "$W/agent" --reader "eSE1=socket:unix:$W/card.sock" --mno "$TSMD_URL/mno/orange/v1" \\
    --token-file "$W/dev.token" --poll-ms 200 --log-level info --location-area 208-01-4A21 \\
    run >>"$W/agent.log" 2>&1 &
echo \$! >"$W/agent.pid"
SH
chmod +x "$W/phone_on.sh"

mkdir -p "$SHOTS"
OT_PHONE_ON=$W/phone_on.sh OT_URL=$TSMD_URL OT_OP_TOKEN=$OP1 OT_OP2_TOKEN=$OP2 OT_SP_A=$SP_A OT_SP_B=$SP_B \
    OT_SUB=$SUB OT_SHOTS=$SHOTS OT_CHROMIUM=$CHROMIUM OT_TSMD_LOG=$TSMD_WORK/tsmd.log \
    NODE_PATH="$SRC/tools/node_modules" \
    node "$HERE/browser.mjs" || fail "browser checks failed"
echo "console.browser: ok (screenshots in $SHOTS)"
