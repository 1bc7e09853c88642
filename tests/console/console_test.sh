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

need_tools curl jq node openssl xxd
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

# Bank A's service on a phone's eSE through the TSM (so that the provider's
# views have an instance, a communication and a script with a failed
# command): a second vse (ese-central without its SP SDs) behind its own
# se-agent, on mno orange.
CIN2=4F54534D45534501
CENTRAL=F04F54534D534401
jq "del(.domains[1,2]) | .applications |= map(select(.sd == \"$CENTRAL\"))" \
    "$SRC/profiles/ese-central.json" >"$W/bank-card.json"
"$VSE" create --profile "$W/bank-card.json" --out "$W/bank-card.img" >/dev/null
"$VSE" run "$W/bank-card.img" --listen "unix:$W/bank-card.sock" >>"$W/vse2.log" 2>&1 &
TSMD_EXTRA_PIDS+=("$!")
api POST /admin/v1/principals "$OP_TOKEN" \
    '{"kind":"device","name":"bob-phone","imei":"356938035643817","imsi":"208011234567891","mno":"orange"}' \
    -H "Idempotency-Key: dev-bob"
expect_status 201 "bob's phone"
DEV2=$(jq -er .id "$W/resp")
api POST /mno/orange/v1/devices "$OP_TOKEN" \
    "{\"principal_id\":$DEV2,\"msisdn\":\"33622222222\",\"cins\":[\"$CIN2\"]}" -H "Idempotency-Key: enrol-bob"
case $API_STATUS in 200 | 201) ;; *) fail "enrol bob's phone: $API_STATUS $(cat "$W/resp")" ;; esac
(umask 077 && tsmd_token "$DEV2" >"$W/dev2.token")
for _ in $(seq 1 100); do
    [ -S "$W/bank-card.sock" ] && break
    sleep 0.05
done
"$AGENT" --state "$W/agent2" --reader "eSE1=socket:unix:$W/bank-card.sock" --mno "$TSMD_URL/mno/orange/v1" \
    --token-file "$W/dev2.token" --poll-ms 200 --log-level info run >>"$W/agent2.log" 2>&1 &
TSMD_EXTRA_PIDS+=("$!")
api PUT /tsm/v1/mnos/orange "$OP_TOKEN" "{\"url\":\"$TSMD_URL\",\"token\":\"$OP_TOKEN\"}"
expect_status 201 "the TSM's route to mno orange"
K4=404142434445464748494A4B4C4D4E4F
K5=505152535455565758595A5B5C5D5E5F
api POST /tsm/v1/secure-elements:import "$OP_TOKEN" \
    "[{\"cin\":\"$CIN2\",\"se_type\":\"eSE\",\"mno\":\"orange\",\"msisdn\":\"33622222222\",\"imsi\":\"208011234567891\",\"profile_id\":\"ese-central\",\"gp_version\":\"2.3.1\",\"jc_version\":\"3.0.5\",\"cert_level\":\"EAL5+\",\"expiry\":\"2035-12-31\",\"free_memory\":65536,\"master_key_index\":1,\"isd_kvn\":48,\"isd_enc\":\"$K4\",\"isd_mac\":\"$K4\",\"isd_dek\":\"$K4\",\"csd_kvn\":48,\"csd_enc\":\"$K5\",\"csd_mac\":\"$K5\",\"csd_dek\":\"$K5\"}]" \
    -H "Idempotency-Key: import-bank-se"
case $API_STATUS in 200 | 201) ;; *) fail "import bob's SE: $API_STATUS $(cat "$W/resp")" ;; esac
api POST /tsm/v1/services "$OP_TOKEN" \
    "{\"sp_id\":$(cat "$W/id-bank-a"),\"service\":\"payment\",\"version\":\"1.0\",\"flavor\":\"ese\",\"se_type\":\"eSE\",\"executable_load_file_aid\":\"F04F54534D02\",\"executable_module_aid\":\"F04F54534D0201\",\"application_aid\":\"A0000000041010\",\"sd_aid\":\"F04F54534D534410\",\"min_gp_version\":\"2.2\",\"min_jc_version\":\"3.0\",\"min_free_memory\":4096,\"cert_levels\":\"EAL4+,EAL5+\",\"dap_required\":true}" \
    -H "Idempotency-Key: svc-bank-a"
expect_status 201 "bank A's service"
SVC=$(jq -er .id "$W/resp")
for _ in $(seq 1 200); do
    api GET "/mno/orange/v1/status?msisdn=33622222222" "$OP_TOKEN"
    [ "$(jq -r .state "$W/resp")" = online ] && grep -q "event=stream_open" "$W/agent2.log" && break
    sleep 0.1
done
# Bank A's webhook points at a closed port: its deliveries stay pending,
# each failed attempt in the delivery log.
api PUT /tsm/v1/webhook "$SP_A" '{"url":"http://127.0.0.1:9/hook","secret":"bank-a-secret-0123456789"}'
expect_status 200 "bank A's webhook"
api POST /tsm/v1/service-instances "$SP_A" "{\"msisdn\":\"33622222222\",\"service_id\":$SVC,\"qualifier\":\"PAR-A\"}"
expect_status 201 "bank A pre-personalizes"
INST=$(jq -er .instance.id "$W/resp")
api POST /tsm/v1/communications "$SP_A" "{\"instance_id\":$INST,\"bearer\":\"ota\",\"max_scripts\":3}"
expect_status 201 "bank A's communication"
COMM=$(jq -er .id "$W/resp")
# A GET DATA the card answers, then one it refuses (a failed command).
api POST "/tsm/v1/communications/$COMM/scripts" "$SP_A" \
    '{"purpose":"post_personalization","apdus":["80CA006600","80CA00FE00"]}'
expect_status 200 "bank A's script"
jq -e '.results[0].rapdus | length >= 1' "$W/resp" >/dev/null || fail "the script's answer: $(cat "$W/resp")"

mkdir -p "$SHOTS"
OT_INSTANCE=$INST OT_PHONE_ON=$W/phone_on.sh OT_URL=$TSMD_URL OT_OP_TOKEN=$OP1 OT_OP2_TOKEN=$OP2 OT_SP_A=$SP_A OT_SP_B=$SP_B \
    OT_SUB=$SUB OT_SHOTS=$SHOTS OT_CHROMIUM=$CHROMIUM OT_TSMD_LOG=$TSMD_WORK/tsmd.log \
    NODE_PATH="$SRC/tools/node_modules" \
    node "$HERE/browser.mjs" || fail "browser checks failed"
echo "console.browser: ok (screenshots in $SHOTS)"
