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
#    vodafone (the eSE flavor is refused as ineligible): the same steps as
#    on the eSE (pre-personalization, personalization, rotation, activation,
#    409 keys_rotated then the relay, a payment verified with the bank's
#    key), every job on vodafone and none on orange; audited, deleted.
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
I1=$(sp_preperso "$TB1" '"msisdn":"33600000001"' "$S1")
I2=$(sp_preperso "$TB2" '"msisdn":"33600000001"' "$S2")
note "pre-personalized: instances $I1 (bank1) and $I2 (bank2)"
api GET "$T/service-instances" "$TB1"
[ "$(jq -r '[.items[].id] | join(",")' "$W/resp")" = "$I1" ] || fail "bank1 sees: $(cat "$W/resp")"
api GET "$T/service-instances/$I2" "$TB1"
expect_status 404 "bank1 reads bank2's instance"
api GET "$T/secure-elements/$CIN1/security-domains" "$TB2"
[ "$(jq -r '[.items[].aid] | join(",")' "$W/resp")" = "$SD2" ] || fail "bank2's SDs: $(cat "$W/resp")"

# --- 2. personalization, rotation, activation -------------------------------
MK1=00112233445566778899AABBCCDDEEFF
MK2=F0E1D2C3B4A5968778695A4B3C2D1E0F
NK1=11111111111111111111111111111111
NK2=22222222222222222222222222222222
sp_perso "$TB1" "$I1" $APP1 $MK1 $NK1
sp_perso "$TB2" "$I2" $APP2 $MK2 $NK2
note "personalized, keys rotated and activated: both services DeployedOperational"

# --- 3. after the rotation --------------------------------------------------
RELAY=$(sp_after_rotation "$TB1" "$I1" $SD1 $NK1)
note "own SCP03 session through the relay: $RELAY"

PAY=$(pay_verify orange 33600000001 $CIN1 $APP1 $MK1)
note "payment: $PAY verified with bank1's key"

# One instance's communications (the console's instance view): bank2's own,
# the operator's view of it the same, none for bank1; a bad id is 400.
api GET "$T/communications?limit=100" "$OP_TOKEN"
ALLC=$(jq '.items | length' "$W/resp")
for tok in "$TB2" "$OP_TOKEN"; do
    api GET "$T/communications?instance=$I2" "$tok"
    expect_status 200 "one instance's communications"
    jq -e --argjson i "$I2" --argjson all "$ALLC" '(.items | length) >= 1 and (.items | length) < $all
        and all(.items[]; .instance_id == $i)' "$W/resp" >/dev/null \
        || fail "the communications of instance $I2 (of $ALLC): $(cat "$W/resp")"
done
api GET "$T/communications?instance=$I2" "$TB1"
expect_status 200 "another SP's instance"
jq -e '.items == []' "$W/resp" >/dev/null || fail "bank1 sees bank2's communications: $(cat "$W/resp")"
api GET "$T/communications?instance=0x1" "$TB2"
expect_status 400 "a bad instance id"
"$TSMCTL" --url "$TSMD_URL" --token "$TB2" sp communications --instance "$I2" --json >"$W/ctl.json" \
    || fail "tsmctl sp communications --instance: $(cat "$W/ctl.json")"
jq -e --argjson i "$I2" 'length >= 1 and all(.[]; .instance_id == $i)' "$W/ctl.json" \
    >/dev/null || fail "tsmctl sp communications --instance: $(cat "$W/ctl.json")"

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
jobs_of() { # MNO CIN -> the number of that network's jobs for the SE
    api GET "/mno/$1/v1/jobs?limit=200" "$OP_TOKEN"
    expect_status 200 "$1's jobs"
    jq --arg c "$2" '[.items[] | select(.se.cin == $c)] | length' "$W/resp"
}
VJ0=$(jobs_of vodafone $CIN2)
I3=$(sp_preperso "$TB1" "\"cin\":\"$CIN2\"" "$S1U")
MK3=0F1E2D3C4B5A69788796A5B4C3D2E1F0
NK3=33333333333333333333333333333333
sp_perso "$TB1" "$I3" $APP1 $MK3 $NK3
RELAY=$(sp_after_rotation "$TB1" "$I3" $SD1 $NK3)
PAY=$(pay_verify vodafone 33600000002 $CIN2 $APP1 $MK3)
VJ1=$(jobs_of vodafone $CIN2)
# pre-personalization (2 channels), personalization, rotation, activation,
# the relay's session (2), the payment: every one a vodafone job.
[ $((VJ1 - VJ0)) -ge 7 ] || fail "$((VJ1 - VJ0)) jobs went through vodafone"
[ "$(jobs_of orange $CIN2)" = 0 ] || fail "a job for the UICC went through orange"
note "UICC through vodafone ($((VJ1 - VJ0)) jobs, none on orange): personalized, keys rotated, activated; relay: $RELAY; payment: $PAY verified with bank1's key"
api POST "$T/secure-elements/$CIN2/audit" "$OP_TOKEN"
expect_status 200 "audit of the UICC"
jq -e '.differences == []' "$W/resp" >/dev/null || fail "UICC audit: $(cat "$W/resp")"
jq -e --arg sd1 $SD1 --arg a1 $APP1 '[.card[] | select(.aid == $a1 and .sd == $sd1)] | length == 1' \
    "$W/resp" >/dev/null || fail "UICC: payment app not under SP SD 1: $(cat "$W/resp")"
api POST "$T/service-instances/$I3/delete" "$TB1"
expect_status 200 "delete"
jq -e '.state == "done" and .instance.state == "NotDeployed"' "$W/resp" >/dev/null \
    || fail "delete: $(cat "$W/resp")"
note "bank1's UICC flavor on vodafone's UICC: audit no difference, deleted"

# --- 6. errors change nothing -----------------------------------------------
C2=$(sp_comm "$TB2" "$I2")
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
sp_script "$TB2" "$C2" post_personalization "${MANY[@]}"
expect_status 413 "script over the size limit"
sp_script "$TB2" "$C2" post_personalization "80CA00"
expect_status 400 "malformed APDU"
jq -e '.error.field == "apdus[0]"' "$W/resp" >/dev/null || fail "malformed: $(cat "$W/resp")"
sp_script "$TB1" "$C2" post_personalization "80CA00CF00"
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
# --- 8. one audit row per change --------------------------------------------
# A call answered once its operation ran committed its audit row with the
# change (tsm.instance.*, tsm.comm.*, tsm.script.send, the request's id): the
# host adds none of its own for its success, only for refusals.
aq() { sqlite3 "$W/var/tsmd.db" "SELECT COUNT(*) FROM (SELECT action, outcome FROM host_audit_log UNION ALL SELECT action, outcome FROM host_audit_pending) WHERE $1"; }
TWICE="(action LIKE 'POST /tsm/v1/service-instances%' OR action LIKE 'POST /tsm/v1/communications%') AND outcome LIKE '2%'"
[ "$(aq "$TWICE")" = 0 ] ||
    fail "second audit rows: $(sqlite3 "$W/var/tsmd.db" "SELECT action, outcome FROM host_audit_log WHERE $TWICE LIMIT 5")"
[ "$(aq "action = 'tsm.instance.prepersonalize'")" -ge 3 ] && [ "$(aq "action = 'tsm.script.send'")" -ge 1 ] ||
    fail "the changes' own audit rows are missing"
note "one audit row per change"
echo "tsm.provision: ok"
