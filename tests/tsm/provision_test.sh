#!/usr/bin/env bash
# tsm.provision (issue 12 acceptance, docs/tsm.md): a real tsmd with tsm and
# two mno instances (orange, vodafone), phones made of se-agent and vse cards
# (profile ese-central without its SP SDs), two service providers.
#
# 1. bank1 and bank2 pre-personalize their payment services on the same eSE
#    (orange): the TSM creates each SP SD with temporary keys, instantiates
#    the payment application from the central SD's package and extradites
#    it; each SP sees only its own instance, service and communication.
# 2. Each personalizes its application (keys and PIN) in a communication,
#    rotates its SD keys (PUT KEY with its new keys), and activates.
# 3. After the rotation a script the TSM would have to wrap is refused (409
#    keys_rotated) and the SP's own SCP03 session through the relay works
#    (tsmctl sp relay); a payment (GENERATE AC) is verified with bank1's key.
# 4. The card's GET STATUS shows the SP SDs under the central SD and each
#    payment instance under its SP SD; the SE audit lists no difference.
# 5. A UICC (uicc-central) on vodafone gets bank1's UICC flavor through
#    vodafone (the eSE flavor is refused as ineligible); audited, deleted.
# 6. Errors: unknown MSISDN 404, ineligible SE 409 with the reason, script
#    over the communication's limits 413, malformed APDU 400, another SP's
#    instance / communication 404; the card image and the database dump are
#    unchanged by all of them.
#
# 7. bank1's webhook receives its completed operations, signed (HMAC-SHA-256).
#
# usage: provision_test.sh TSMD TSMCTL SE_AGENT VSE PROFILES_DIR HOOKSINK
set -euo pipefail

TSMD=$1
TSMCTL=$2
AGENT=$3
VSE=$4
PROFILES=$5
HOOKSINK=$6
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
tsm_test_init tsm-provision

# --- the cards: ese-central without SP SDs (the TSM creates them) ----------
CIN1=4F54534D45534501
CIN2=4F54534D45534502
CENTRAL=F04F54534D534401
jq "del(.domains[1,2]) | .applications |= map(select(.sd == \"$CENTRAL\"))" \
    "$PROFILES/ese-central.json" >"$W/p1.json"
# The second phone's card: a UICC of profile uicc-central (central SD, MNO SD)
# without its SP SDs.
jq "del(.domains[2,3]) | .applications |= map(select(.sd == \"$CENTRAL\" or .sd == \"F04F54534D534402\")) | .cin = \"$CIN2\"" \
    "$PROFILES/uicc-central.json" >"$W/p2.json"
"$VSE" create --profile "$W/p1.json" --out "$W/c1.img" >/dev/null
"$VSE" create --profile "$W/p2.json" --out "$W/c2.img" >/dev/null
start_vse 1
start_vse 2

# --- tsmd: tsm + two networks ----------------------------------------------
tsmd_config "sqlite:$W/var/tsmd.db" "log.level=info" "services.enabled=tsm, mno:orange, mno:vodafone" \
    "mno.orange.sweep_ms=50" "mno.vodafone.sweep_ms=50" "tsm.wait_ms=30000" "tsm.max_scripts=4" \
    "tsm.max_script_bytes=600"
tsmd_bootstrap ops
tsmd_start
T=/tsm/v1

for net in orange vodafone; do
    api PUT "$T/mnos/$net" "$OP_TOKEN" "{\"url\":\"$TSMD_URL\",\"token\":\"$OP_TOKEN\"}"
    expect_status 201 "mno $net"
done
jq -e '.token == null' "$W/resp" >/dev/null || fail "the mno token is answered"

two_phones $CIN1 $CIN2

# --- the SEs (with the ISD and central SD keys), SPs, services --------------
K4=404142434445464748494A4B4C4D4E4F
K5=505152535455565758595A5B5C5D5E5F
se_row() { # CIN MNO MSISDN IMSI TYPE
    printf '{"cin":"%s","se_type":"%s","mno":"%s","msisdn":"%s","imsi":"%s","profile_id":"ese-central","gp_version":"2.3.1","jc_version":"3.0.5","cert_level":"EAL5+","expiry":"2035-12-31","free_memory":65536,"master_key_index":1,"isd_kvn":48,"isd_enc":"%s","isd_mac":"%s","isd_dek":"%s","csd_kvn":48,"csd_enc":"%s","csd_mac":"%s","csd_dek":"%s"}' \
        "$1" "$5" "$2" "$3" "$4" $K4 $K4 $K4 $K5 $K5 $K5
}
api POST "$T/secure-elements:import" "$OP_TOKEN" \
    "[$(se_row $CIN1 orange 33600000001 208011234567890 eSE),$(se_row $CIN2 vodafone 33600000002 208151234567891 UICC),$(se_row 4F54534D45534599 orange 33600000099 208011234567899 UICC)]" \
    -H "Idempotency-Key: import"
case $API_STATUS in 200 | 201) ;; *) fail "import: $API_STATUS $(cat "$W/resp")" ;; esac
B1=$(tsmd_principal service_provider bank1)
B2=$(tsmd_principal service_provider bank2)
TB1=$(tsmd_token "$B1")
TB2=$(tsmd_token "$B2")
service() { # SP APP SD [FLAVOR TYPE] -> service id
    api POST "$T/services" "$OP_TOKEN" \
        "{\"sp_id\":$1,\"service\":\"payment\",\"version\":\"1.0\",\"flavor\":\"${4:-ese}\",\"se_type\":\"${5:-eSE}\",\"executable_load_file_aid\":\"F04F54534D02\",\"executable_module_aid\":\"F04F54534D0201\",\"application_aid\":\"$2\",\"sd_aid\":\"$3\",\"min_gp_version\":\"2.2\",\"min_jc_version\":\"3.0\",\"min_free_memory\":4096,\"cert_levels\":\"EAL4+,EAL5+\",\"dap_required\":true}" \
        -H "Idempotency-Key: svc-$1-${4:-ese}"
    expect_status 201 "service of $1"
    jq -er .id "$W/resp"
}
APP1=A0000000041010
APP2=A0000000031010
SD1=F04F54534D534410
SD2=F04F54534D534411
S1=$(service "$B1" $APP1 $SD1)
S2=$(service "$B2" $APP2 $SD2)
S1U=$(service "$B1" $APP1 $SD1 uicc UICC)
jq -e '.sd_privileges == "C08000"' "$W/resp" >/dev/null || fail "SP SD privileges: $(cat "$W/resp")"

# bank1's webhook (tests/cms/hooksink checks each delivery's signature).
HOOKSECRET=bank1-webhook-secret-0123456789
mkdir -p "$W/hooks"
"$HOOKSINK" "$W/hooks" "$HOOKSECRET" >>"$W/hooksink.log" 2>&1 &
TSMD_EXTRA_PIDS+=("$!")
for _ in $(seq 1 100); do
    [ -s "$W/hooks/http.port" ] && break
    sleep 0.05
done
api PUT "$T/webhook" "$TB1" "{\"url\":\"http://127.0.0.1:$(cat "$W/hooks/http.port")/hook\",\"secret\":\"$HOOKSECRET\"}"
expect_status 200 "bank1's webhook"
api GET "$T/webhook" "$TB2"
expect_status 404 "bank2 has no webhook"

# --- 1. pre-personalization -------------------------------------------------
preperso() { # TOKEN SERVICE -> instance id
    api POST "$T/service-instances" "$1" "{\"msisdn\":\"33600000001\",\"service_id\":$2,\"qualifier\":\"PAR-$2\"}"
    expect_status 201 "pre-personalization of service $2"
    jq -e '.state == "done" and .instance.state == "UnderDeployment:Installed"' "$W/resp" >/dev/null \
        || fail "pre-personalization: $(cat "$W/resp")"
    jq -er .instance.id "$W/resp"
}
I1=$(preperso "$TB1" "$S1")
I2=$(preperso "$TB2" "$S2")
note "pre-personalized: instances $I1 (bank1) and $I2 (bank2)"
api GET "$T/service-instances" "$TB1"
[ "$(jq -r '[.items[].id] | join(",")' "$W/resp")" = "$I1" ] || fail "bank1 sees: $(cat "$W/resp")"
api GET "$T/service-instances/$I2" "$TB1"
expect_status 404 "bank1 reads bank2's instance"
api GET "$T/secure-elements/$CIN1/security-domains" "$TB2"
[ "$(jq -r '[.items[].aid] | join(",")' "$W/resp")" = "$SD2" ] || fail "bank2's SDs: $(cat "$W/resp")"

# --- 2. personalization, rotation, activation -------------------------------
comm() { # TOKEN INSTANCE -> communication id
    api POST "$T/communications" "$1" "{\"instance_id\":$2,\"bearer\":\"ota\",\"max_scripts\":3}"
    expect_status 201 "communication on $2"
    jq -er .id "$W/resp"
}
script() { # TOKEN COMM PURPOSE APDU... (answer in $W/resp)
    local tok=$1 cm=$2 purpose=$3
    shift 3
    api POST "$T/communications/$cm/scripts" "$tok" \
        "{\"purpose\":\"$purpose\",\"apdus\":$(printf '%s\n' "$@" | jq -R . | jq -sc .)}"
}
kcv() { # KEY -> its AES KCV
    printf '01010101010101010101010101010101' | xxd -r -p \
        | openssl enc -aes-128-ecb -nopad -K "$1" | xxd -p -c 64 | cut -c1-6 | tr a-f A-F
}
put_key() { # NEWKEY -> the plain PUT KEY (kvn 30 -> 31, the same key thrice)
    local k=$1 c
    c=$(kcv "$k")
    echo "80D83081$(printf '%02X' 70)31""8811""10$k""03$c""8811""10$k""03$c""8811""10$k""03$c""00"
}
MK1=00112233445566778899AABBCCDDEEFF
MK2=F0E1D2C3B4A5968778695A4B3C2D1E0F
perso() { # TOKEN INSTANCE APP MK NEWKEY
    local cm aidlen
    cm=$(comm "$1" "$2")
    aidlen=$(printf '%02X' $((${#3} / 2)))
    script "$1" "$cm" personalization \
        "80E62000$(printf '%02X' $((6 + ${#3} / 2)))0000${aidlen}${3}000000" \
        "80E288001A8000"10"$4"80100431323334
    expect_status 200 "personalization on $2"
    jq -e '.state == "done" and (.results[0].failed | length) == 0' "$W/resp" >/dev/null \
        || fail "personalization: $(cat "$W/resp")"
    script "$1" "$cm" key_rotation "$(put_key "$5")"
    expect_status 200 "key rotation on $2"
    jq -e '.state == "done"' "$W/resp" >/dev/null || fail "rotation: $(cat "$W/resp")"
    api POST "$T/communications/$cm/end" "$1" '{"status":"success"}'
    expect_status 200 "end of communication $cm"
    api GET "$T/service-instances/$2" "$1"
    jq -e '.state == "UnderDeployment:Personalized" and .keys == "sp"' "$W/resp" >/dev/null \
        || fail "after personalization: $(cat "$W/resp")"
    api POST "$T/service-instances/$2/activate" "$1"
    expect_status 200 "activation of $2"
    jq -e '.instance.state == "DeployedOperational"' "$W/resp" >/dev/null \
        || fail "activation: $(cat "$W/resp")"
}
NK1=11111111111111111111111111111111
NK2=22222222222222222222222222222222
perso "$TB1" "$I1" $APP1 $MK1 $NK1
perso "$TB2" "$I2" $APP2 $MK2 $NK2
note "personalized, keys rotated and activated: both services DeployedOperational"

# --- 3. after the rotation --------------------------------------------------
C1=$(comm "$TB1" "$I1")
script "$TB1" "$C1" post_personalization "80CA00CF00"
expect_status 409 "a wrapped script after the rotation"
[ "$(api_err_code)" = keys_rotated ] || fail "refusal reason: $(cat "$W/resp")"
jq -e '.error.message | test("rotated")' "$W/resp" >/dev/null || fail "no reason given"
"$TSMCTL" --url "$TSMD_URL" --token "$TB1" sp relay "$C1" --sd $SD1 --kvn 49 \
    --keys $NK1 80F24002024F0000 >"$W/relay.out" 2>&1 || fail "relay: $(cat "$W/relay.out")"
grep -q "9000" "$W/relay.out" || fail "relay output: $(cat "$W/relay.out")"
grep -q "r-mac verified" "$W/relay.out" || fail "relay not verified: $(cat "$W/relay.out")"
note "own SCP03 session through the relay: $(tr '\n' ' ' <"$W/relay.out")"
api POST "$T/communications/$C1/end" "$TB1" '{"status":"success"}'
expect_status 200 "end of the relay communication"

pay_job() { # MNO MSISDN CIN APDU... -> R-APDUs, one per line
    local id s
    api POST "/mno/$1/v1/jobs" "$OP_TOKEN" \
        "{\"msisdn\":\"$2\",\"se\":{\"cin\":\"$3\"},\"kind\":\"scripted\",\"apdus\":$(printf '%s\n' "${@:4}" | jq -R . | jq -sc .)}" \
        -H "Idempotency-Key: pay-$RANDOM$RANDOM"
    expect_status 201 "payment job"
    id=$(jq -r .id "$W/resp")
    for _ in $(seq 1 300); do
        api GET "/mno/$1/v1/jobs/$id?wait=5" "$OP_TOKEN"
        s=$(jq -r .state "$W/resp")
        case $s in done | failed) break ;; esac
    done
    jq -r '.scripts[0].rapdus[]' "$W/resp"
}
CDOL=0000000010000000000000000250000000000009782611210011223344
mapfile -t R < <(pay_job orange 33600000001 $CIN1 "00A4040007${APP1}00" 80A8000002830000 \
    "80AE80001D${CDOL}00")
GENAC=${R[2]}
[ "${GENAC: -4}" = 9000 ] || fail "GENERATE AC: ${R[*]}"
ATC=$(echo "$GENAC" | grep -o '9F3602....' | cut -c7-10)
AC=$(echo "$GENAC" | grep -o '9F2608.\{16\}' | cut -c7-22)
SK=$(printf '%sF000000000000000000000000000' "$ATC" | xxd -r -p \
    | openssl enc -aes-128-ecb -nopad -K $MK1 | xxd -p -c 64)
WANT=$(printf '%s1800%s' "$CDOL" "$ATC" | xxd -r -p \
    | openssl mac -cipher AES-128-CBC -macopt "hexkey:$SK" CMAC | cut -c1-16)
[ "$AC" = "$WANT" ] || fail "the payment cryptogram $AC is not bank1's ($WANT)"
note "payment: ARQC $AC (ATC $ATC) verified with bank1's key"

# bank2 locks its service: the card refuses its application; unlock.
api POST "$T/service-instances/$I2/lock" "$TB2"
expect_status 200 "lock"
jq -e '.state == "done" and .instance.state == "DeployedSuspended"' "$W/resp" >/dev/null \
    || fail "lock: $(cat "$W/resp")"
mapfile -t R < <(pay_job orange 33600000001 $CIN1 "00A4040007${APP2}00")
[ "${R[0]: -4}" != 9000 ] || fail "a locked application answers SELECT"
api POST "$T/service-instances/$I2/lock" "$TB2"
expect_status 409 "lock twice"
api POST "$T/service-instances/$I2/unlock" "$TB2"
expect_status 200 "unlock"
jq -e '.instance.state == "DeployedOperational"' "$W/resp" >/dev/null || fail "unlock: $(cat "$W/resp")"
mapfile -t R < <(pay_job orange 33600000001 $CIN1 "00A4040007${APP2}00")
[ "${R[0]: -4}" = 9000 ] || fail "the unlocked application does not answer: ${R[*]}"
note "lock: SELECT refused by the card (${R[0]: -4} after unlock), unlock: DeployedOperational"

# --- 4. the card's tree and the audit ---------------------------------------
api POST "$T/secure-elements/$CIN1/audit" "$OP_TOKEN"
expect_status 200 "audit"
jq -e '.differences == []' "$W/resp" >/dev/null || fail "audit differences: $(cat "$W/resp")"
jq -e --arg sd1 $SD1 --arg a1 $APP1 --arg sd2 $SD2 --arg a2 $APP2 --arg c $CENTRAL '
    [.card[] | select(.aid == $sd1 and .sd == $c and .privileges == "C08000")] | length == 1' \
    "$W/resp" >/dev/null || fail "card tree: $(cat "$W/resp")"
jq -e --arg sd1 $SD1 --arg a1 $APP1 '[.card[] | select(.aid == $a1 and .sd == $sd1)] | length == 1' \
    "$W/resp" >/dev/null || fail "payment app 1 not under SP SD 1: $(cat "$W/resp")"
jq -e --arg sd2 $SD2 --arg a2 $APP2 '[.card[] | select(.aid == $a2 and .sd == $sd2)] | length == 1' \
    "$W/resp" >/dev/null || fail "payment app 2 not under SP SD 2: $(cat "$W/resp")"
note "GET STATUS tree as expected, audit: no difference"

# --- 5. the second network: a UICC (uicc-central) on vodafone ----------------
api POST "$T/service-instances" "$TB1" "{\"cin\":\"$CIN2\",\"service_id\":$S1}"
expect_status 409 "the eSE flavor on a UICC"
api POST "$T/service-instances" "$TB1" "{\"cin\":\"$CIN2\",\"service_id\":$S1U}"
expect_status 201 "pre-personalization through vodafone"
jq -e '.instance.state == "UnderDeployment:Installed"' "$W/resp" >/dev/null \
    || fail "vodafone: $(cat "$W/resp")"
I3=$(jq -er .instance.id "$W/resp")
api GET "/mno/vodafone/v1/jobs" "$OP_TOKEN"
[ "$(jq '.items | length' "$W/resp")" -ge 2 ] || fail "no job went through vodafone"
api POST "$T/secure-elements/$CIN2/audit" "$OP_TOKEN"
expect_status 200 "audit of the UICC"
jq -e '.differences == []' "$W/resp" >/dev/null || fail "UICC audit: $(cat "$W/resp")"
jq -e --arg sd1 $SD1 --arg a1 $APP1 '[.card[] | select(.aid == $a1 and .sd == $sd1)] | length == 1' \
    "$W/resp" >/dev/null || fail "UICC: payment app not under SP SD 1: $(cat "$W/resp")"
api POST "$T/service-instances/$I3/delete" "$TB1"
expect_status 200 "delete"
jq -e '.state == "done" and .instance.state == "NotDeployed"' "$W/resp" >/dev/null \
    || fail "delete: $(cat "$W/resp")"
note "bank1's UICC flavor on vodafone's UICC: pre-personalized (audit: no difference), deleted"

# --- 6. errors change nothing -----------------------------------------------
C2=$(comm "$TB2" "$I2")
sha() { sha256sum "$W/c1.img" | cut -c1-64; }
dump() { # the TSM's tables and the key store (tokens' last use and the audit move by design)
    local tb
    for tb in $(sqlite3 "$W/var/tsmd.db" "SELECT name FROM sqlite_master WHERE type = 'table' AND (name LIKE 'tsm_%' OR name = 'host_keys') ORDER BY name"); do
        sqlite3 "$W/var/tsmd.db" ".dump $tb"
    done
}
IMG0=$(sha)
dump >"$W/db0.sql"
api POST "$T/service-instances" "$TB1" "{\"msisdn\":\"33699999999\",\"service_id\":$S1}"
expect_status 404 "unknown MSISDN"
api POST "$T/service-instances" "$TB1" "{\"msisdn\":\"33600000099\",\"service_id\":$S1}"
expect_status 409 "ineligible SE"
jq -e '.error.code == "ineligible" and (.error.message | test("UICC"))' "$W/resp" >/dev/null \
    || fail "ineligible reason: $(cat "$W/resp")"
mapfile -t MANY < <(yes 80CA00CF00 | head -n 130)
script "$TB2" "$C2" post_personalization "${MANY[@]}"
expect_status 413 "script over the size limit"
script "$TB2" "$C2" post_personalization "80CA00"
expect_status 400 "malformed APDU"
jq -e '.error.field == "apdus[0]"' "$W/resp" >/dev/null || fail "malformed: $(cat "$W/resp")"
script "$TB1" "$C2" post_personalization "80CA00CF00"
expect_status 404 "bank1 on bank2's communication"
api POST "$T/service-instances/$I2/lock" "$TB1"
expect_status 404 "bank1 locks bank2's instance"
[ "$(sha)" = "$IMG0" ] || fail "the card changed"
dump >"$W/db1.sql"
diff "$W/db0.sql" "$W/db1.sql" >/dev/null || fail "the database changed: $(diff "$W/db0.sql" "$W/db1.sql" | head -20)"
note "404/409/413/400/404: card image and database unchanged"
# --- 7. bank1's webhook --------------------------------------------------------
for _ in $(seq 1 100); do
    [ "$(grep -c ' operation.done ok ' "$W/hooks/hooks" 2>/dev/null || true)" -ge 6 ] && break
    sleep 0.1
done
N=$(grep -c ' operation.done ok ' "$W/hooks/hooks" || true)
[ "$N" -ge 6 ] || fail "bank1's webhook got $N signed completions: $(cat "$W/hooks/hooks" 2>/dev/null)"
grep -q " bad " "$W/hooks/hooks" && fail "a webhook delivery with a bad signature"
grep -q "\"sp_id\":$B2\|instance_id\":$I2," "$W/hooks/hooks" && fail "bank1's webhook told of bank2's operations"
note "bank1's webhook: $N signed completions"
echo "tsm.provision: ok"
