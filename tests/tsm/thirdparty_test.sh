#!/usr/bin/env bash
# tsm.thirdparty (issue 12 point 4, docs/tsm.md §7): the layouts of seed 002
# figures 7 and 8 (profiles ese-thirdparty, uicc-thirdparty) with a real
# tsmd (tsm + two mno instances), phones made of se-agent and vse cards.
#
# 1. Delegated Management (eSE, orange): the operator hands SP SD 12 (with
#    Delegated Management) to bank3 and gives the TSM the SE's token and
#    receipt keys. bank3 asks the TSM for a token for an exact DELETE of its
#    payment application, runs it in its own SCP03 session through the SD
#    relay, hands the card's answer back: the TSM verifies the receipt
#    (counter 0) and updates its view. Then the same for INSTALL [for install
#    and make selectable] from the central SD's package (counter 1): the new
#    instance belongs to the central SD, the SD of its load file (GPCS 9.3),
#    as the card's GET STATUS shows.
# 2. Refusals, none of which changes the card image or the database: a token
#    for a command outside bank3's service (403 outside_service), for an SD
#    without Delegated Management (409 not_delegated), for another SP's SD
#    (404); a second receipt for a confirmed token (409 token_used), a forged
#    receipt (409 bad_receipt), an old receipt for a new token of the same
#    operation (409 replay). A token replayed to the card is refused by the
#    card, and its answer by the TSM; the card's tree is unchanged.
# 3. A third-party TSM with Authorized Management (UICC, vodafone): the
#    central TSM creates its SD (privileges 80C000) with temporary keys and
#    the instance extradited to it; the third party rotates the keys, after
#    which the central TSM refuses to wrap for it (409 keys_rotated) and
#    relays the third party's own SCP03 session.
#
# 4. The third party's webhook (docs/tsm.md §6): its completions are POSTed
#    signed (tests/cms/hooksink checks each signature) and its delivery log
#    lists them with their attempts; bank3's log does not.
#
# usage: thirdparty_test.sh TSMD TSMCTL SE_AGENT VSE PROFILES_DIR HOOKSINK
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
tsm_test_init tsm-thirdparty

# --- the cards ----------------------------------------------------------------
CIN1=4F54534D45534502 # ese-thirdparty, figure 7
CIN2=4F54534D55494302 # uicc-thirdparty, figure 8 (its third-party SD made by the TSM)
CENTRAL=F04F54534D534401
TPSD=F04F54534D534403
DMSD=F04F54534D534412
DAPSD=F04F54534D534410
APP3=A0000000031010
APP1=A0000000041010
cp "$PROFILES/ese-thirdparty.json" "$W/p1.json"
jq "del(.domains[] | select(.aid == \"$TPSD\" or .aid == \"F04F54534D534413\"))
    | .packages |= map(select(.sd != \"$TPSD\"))
    | .applications |= map(select(.sd != \"F04F54534D534413\"))" \
    "$PROFILES/uicc-thirdparty.json" >"$W/p2.json"
"$VSE" create --profile "$W/p1.json" --out "$W/c1.img" >/dev/null
"$VSE" create --profile "$W/p2.json" --out "$W/c2.img" >/dev/null
start_vse 1
start_vse 2

# --- tsmd: tsm + two networks -----------------------------------------------
# db.pool=1: no request may hold a connection while it waits for another
# one or for the network (it would stall until the pool timeout).
tsmd_config "sqlite:$W/var/tsmd.db" "log.level=info" "db.pool=1" "services.enabled=tsm, mno:orange, mno:vodafone" \
    "mno.orange.sweep_ms=50" "mno.vodafone.sweep_ms=50" "tsm.wait_ms=30000"
tsmd_bootstrap ops
tsmd_start
T=/tsm/v1
for net in orange vodafone; do
    api PUT "$T/mnos/$net" "$OP_TOKEN" "{\"url\":\"$TSMD_URL\",\"token\":\"$OP_TOKEN\"}"
    expect_status 201 "mno $net"
done
two_phones $CIN1 $CIN2

K4=404142434445464748494A4B4C4D4E4F
K5=505152535455565758595A5B5C5D5E5F
se_row() { # CIN MNO MSISDN IMSI TYPE PROFILE
    printf '{"cin":"%s","se_type":"%s","mno":"%s","msisdn":"%s","imsi":"%s","profile_id":"%s","gp_version":"2.3.1","jc_version":"3.0.5","cert_level":"EAL5+","expiry":"2035-12-31","free_memory":65536,"master_key_index":1,"isd_kvn":48,"isd_enc":"%s","isd_mac":"%s","isd_dek":"%s","csd_kvn":48,"csd_enc":"%s","csd_mac":"%s","csd_dek":"%s"}' \
        "$1" "$5" "$2" "$3" "$4" "$6" $K4 $K4 $K4 $K5 $K5 $K5
}
api POST "$T/secure-elements:import" "$OP_TOKEN" \
    "[$(se_row $CIN1 orange 33600000001 208011234567890 eSE ese-thirdparty),$(se_row $CIN2 vodafone 33600000002 208151234567891 UICC uicc-thirdparty)]" \
    -H "Idempotency-Key: import"
case $API_STATUS in 200 | 201) ;; *) fail "import: $API_STATUS $(cat "$W/resp")" ;; esac
B1=$(tsmd_principal service_provider bank1)
B3=$(tsmd_principal service_provider bank3)
TP=$(tsmd_principal service_provider transit-tsm)
TB1=$(tsmd_token "$B1")
TB3=$(tsmd_token "$B3")
TTP=$(tsmd_token "$TP")
service() { # SP SE_TYPE APP SD SD_PRIVILEGES -> service id
    api POST "$T/services" "$OP_TOKEN" \
        "{\"sp_id\":$1,\"service\":\"payment\",\"version\":\"1.0\",\"flavor\":\"$2\",\"se_type\":\"$2\",\"executable_load_file_aid\":\"F04F54534D02\",\"executable_module_aid\":\"F04F54534D0201\",\"application_aid\":\"$3\",\"sd_aid\":\"$4\",\"sd_privileges\":\"$5\",\"min_gp_version\":\"2.2\",\"min_jc_version\":\"3.0\",\"min_free_memory\":4096,\"cert_levels\":\"EAL4+,EAL5+\",\"dap_required\":false}" \
        -H "Idempotency-Key: svc-$1-$2"
    expect_status 201 "service of $1"
    jq -er .id "$W/resp"
}
service "$B1" eSE $APP1 $DAPSD C08000 >/dev/null
service "$B3" eSE $APP3 $DMSD A08000 >/dev/null
STP=$(service "$TP" UICC A0000000041077 $TPSD 80C000)

# --- 1. Delegated Management ---------------------------------------------------
assign() { # CIN AID SP PRIVILEGES
    api POST "$T/secure-elements/$1/security-domains" "$OP_TOKEN" \
        "{\"aid\":\"$2\",\"sp\":\"$3\",\"privileges\":\"$4\",\"lcs\":\"PERSONALIZED\"}" \
        -H "Idempotency-Key: sd-$1-$2"
    case $API_STATUS in 200 | 201) ;; *) fail "assign $2: $API_STATUS $(cat "$W/resp")" ;; esac
}
assign $CIN1 $DMSD bank3 A08000
assign $CIN1 $DAPSD bank3 C08000
api PUT "$T/secure-elements/$CIN1/dm-keys" "$OP_TOKEN" \
    '{"token_key":"707172737475767778797A7B7C7D7E7F","receipt_key":"7172737475767778797A7B7C7D7E7F80"}'
expect_status 200 "dm keys"
jq -e '.token_key == null and .receipt_key == null' "$W/resp" >/dev/null || fail "keys answered"

ctl() { "$TSMCTL" --url "$TSMD_URL" --token "$1" "${@:2}"; }
DMKEY=C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF
dm_run() { # TOKENED-C-APDU -> the card's plain answer (data || SW)
    # (exit 1 when the card refuses the command: its answer is still wanted)
    ctl "$TB3" sp relay --cin $CIN1 --sd $DMSD --kvn 48 --keys $DMKEY "$1" >"$W/relay.out" 2>&1 || true
    grep -q "r-mac verified" "$W/relay.out" || fail "relay not verified: $(cat "$W/relay.out")"
    awk -F'\t' '$1 == "0" { print $2 }' "$W/relay.out"
}
token() { # C-APDU -> "id command"
    api POST "$T/secure-elements/$CIN1/security-domains/$DMSD/dm-tokens" "$TB3" "{\"command\":\"$1\"}"
    expect_status 201 "token for $1"
    jq -e '.state == "issued"' "$W/resp" >/dev/null || fail "token: $(cat "$W/resp")"
    echo "$(jq -r .id "$W/resp") $(jq -r .command "$W/resp")"
}
DEL3="80E40000094F07${APP3}00"
read -r TK1 CMD1 < <(token "$DEL3")
[ "${CMD1:0:8}" = 80E40000 ] && [ "${#CMD1}" -gt "${#DEL3}" ] || fail "tokened DELETE: $CMD1"
R1=$(dm_run "$CMD1")
[ "${R1: -4}" = 9000 ] || fail "delegated DELETE on the card: $R1"
api POST "$T/dm-tokens/$TK1/receipt" "$TB3" "{\"response\":\"$R1\"}"
expect_status 200 "receipt of the DELETE"
jq -e --arg a $APP3 '.state == "confirmed" and .counter == 0 and .card.aid == $a and .card.present == false' \
    "$W/resp" >/dev/null || fail "receipt 1: $(cat "$W/resp")"
INS3="80E60C001D"06F04F54534D02"07F04F54534D0201"07${APP3}"0100""02C900""00"
read -r TK2 CMD2 < <(token "$INS3")
R2=$(dm_run "$CMD2")
[ "${R2: -4}" = 9000 ] || fail "delegated INSTALL on the card: $R2"
ctl "$TB3" sp dm-receipt "$TK2" "$R2" >"$W/rcpt.out" 2>&1 || fail "dm-receipt: $(cat "$W/rcpt.out")"
grep -q "confirmed, counter 1: $APP3 on the card, under $CENTRAL" "$W/rcpt.out" \
    || fail "receipt 2: $(cat "$W/rcpt.out")"
api POST "$T/secure-elements/$CIN1/audit" "$OP_TOKEN"
expect_status 200 "audit"
jq -e --arg a $APP3 --arg c $CENTRAL '[.card[] | select(.aid == $a and .sd == $c)] | length == 1' \
    "$W/resp" >/dev/null || fail "the card's tree: $(cat "$W/resp")"
jq -c '[.card[] | {aid, sd}] | sort_by(.aid)' "$W/resp" >"$W/tree0.json"
note "delegated DELETE and INSTALL approved by tokens, receipts verified (counters 0, 1); $APP3 under the central SD (GPCS 9.3)"

# --- 2. refusals change nothing -------------------------------------------------
read -r TK3 _ < <(token "$DEL3") # an open token for the same DELETE
sha() { sha256sum "$W/c1.img" | cut -c1-64; }
dump() { sqlite3 "$W/var/tsmd.db" .dump | grep -v -e 'host_audit' -e 'INSERT INTO host_idem'; }
api GET "$T/services" "$TB1" # every token used once: its last use is not a change below
IMG0=$(sha)
dump >"$W/db0.sql"
INS1="80E60C001D"06F04F54534D02"07F04F54534D0201"07${APP1}"0100""02C900""00"
api POST "$T/secure-elements/$CIN1/security-domains/$DMSD/dm-tokens" "$TB3" "{\"command\":\"$INS1\"}"
expect_status 403 "a token outside bank3's service"
[ "$(api_err_code)" = outside_service ] || fail "refusal: $(cat "$W/resp")"
jq -e --arg a $APP1 '.error.message | contains($a)' "$W/resp" >/dev/null || fail "no reason: $(cat "$W/resp")"
api POST "$T/secure-elements/$CIN1/security-domains/$DAPSD/dm-tokens" "$TB3" "{\"command\":\"$DEL3\"}"
expect_status 409 "a token for an SD without Delegated Management"
[ "$(api_err_code)" = not_delegated ] || fail "refusal: $(cat "$W/resp")"
api POST "$T/secure-elements/$CIN1/security-domains/$DMSD/dm-tokens" "$TB1" "{\"command\":\"$DEL3\"}"
expect_status 404 "bank1 asks a token for bank3's SD"
api POST "$T/secure-elements/$CIN1/security-domains/$DMSD/dm-tokens" "$TB3" '{"command":"80E40000"}'
expect_status 400 "a malformed command"
api POST "$T/dm-tokens/$TK1/receipt" "$TB3" "{\"response\":\"$R1\"}"
expect_status 409 "the receipt of a confirmed token again"
[ "$(api_err_code)" = token_used ] || fail "refusal: $(cat "$W/resp")"
api POST "$T/dm-tokens/$TK3/receipt" "$TB1" "{\"response\":\"$R1\"}"
expect_status 404 "bank1 hands a receipt for bank3's token"
FORGED="${R1:0:6}$(printf '%02X' $(((0x${R1:6:2} + 1) % 256)))${R1:8}"
api POST "$T/dm-tokens/$TK3/receipt" "$TB3" "{\"response\":\"$FORGED\"}"
expect_status 409 "a forged receipt"
[ "$(api_err_code)" = bad_receipt ] || fail "refusal: $(cat "$W/resp")"
api POST "$T/dm-tokens/$TK3/receipt" "$TB3" "{\"response\":\"$R1\"}"
expect_status 409 "an old receipt for a new token of the same operation"
[ "$(api_err_code)" = replay ] || fail "refusal: $(cat "$W/resp")"
[ "$(sha)" = "$IMG0" ] || fail "the card changed"
dump >"$W/db1.sql"
diff "$W/db0.sql" "$W/db1.sql" >/dev/null || fail "the database changed: $(diff "$W/db0.sql" "$W/db1.sql" | head -20)"
R3=$(dm_run "$CMD2")
[ "${R3: -4}" != 9000 ] || fail "the card took a replayed INSTALL token: $R3"
api POST "$T/dm-tokens/$TK2/receipt" "$TB3" "{\"response\":\"$R3\"}"
expect_status 409 "the answer to a replayed token"
api POST "$T/secure-elements/$CIN1/audit" "$OP_TOKEN"
jq -c '[.card[] | {aid, sd}] | sort_by(.aid)' "$W/resp" >"$W/tree1.json"
cmp -s "$W/tree0.json" "$W/tree1.json" || fail "the card's tree changed: $(cat "$W/tree1.json")"
dump >"$W/db2.sql"
# (the relay's job, the audit's operation and their OTA jobs record what was done,
# and what the central SD's INITIALIZE UPDATE told the TSM: its counter)
grep -v -e 'INTO tsm_sd_relays' -e 'INTO tsm_ops' -e 'INTO mno_' -e 'INTO tsm_sd_cards' "$W/db0.sql" >"$W/db0f.sql"
grep -v -e 'INTO tsm_sd_relays' -e 'INTO tsm_ops' -e 'INTO mno_' -e 'INTO tsm_sd_cards' "$W/db2.sql" >"$W/db2f.sql"
diff "$W/db0f.sql" "$W/db2f.sql" >/dev/null \
    || fail "the database changed: $(diff "$W/db0f.sql" "$W/db2f.sql" | cut -c1-300 | head -20)"
note "403/409/404/400 and forged, replayed and used receipts refused: card and database unchanged"

# --- 3. a third-party TSM with Authorized Management (figure 8) ---------------
HOOKSECRET=transit-tsm-webhook-secret-0123
mkdir -p "$W/hooks"
"$HOOKSINK" "$W/hooks" "$HOOKSECRET" >>"$W/hooksink.log" 2>&1 &
TSMD_EXTRA_PIDS+=("$!")
for _ in $(seq 1 100); do
    [ -s "$W/hooks/http.port" ] && break
    sleep 0.05
done
(umask 077 && printf '%s\n' "$HOOKSECRET" >"$W/hook.secret")
ctl "$TTP" sp webhook-put --url-of "http://127.0.0.1:$(cat "$W/hooks/http.port")/hook" \
    --secret-file "$W/hook.secret" >"$W/hook.out" 2>&1 || fail "webhook-put: $(cat "$W/hook.out")"
grep -q "$HOOKSECRET" "$W/hook.out" && fail "the secret is answered"
api POST "$T/service-instances" "$TTP" "{\"msisdn\":\"33600000002\",\"service_id\":$STP,\"qualifier\":\"transit\"}"
expect_status 201 "the third party's SD and instance"
jq -e '.state == "done" and .instance.state == "UnderDeployment:Installed"' "$W/resp" >/dev/null \
    || fail "creation: $(cat "$W/resp")"
ITP=$(jq -r .instance.id "$W/resp")
api POST "$T/communications" "$TTP" "{\"instance_id\":$ITP,\"bearer\":\"ota\",\"max_scripts\":4}"
expect_status 201 "communication"
CTP=$(jq -r .id "$W/resp")
NK=33333333333333333333333333333333
sp_script "$TTP" "$CTP" key_rotation "$(put_key $NK)"
expect_status 200 "the third party's key rotation"
jq -e '.state == "done"' "$W/resp" >/dev/null || fail "rotation: $(cat "$W/resp")"
api POST "$T/communications/$CTP/scripts" "$TTP" '{"purpose":"post_personalization","apdus":["80CA00CF00"]}'
expect_status 409 "a wrapped script after the third party's rotation"
[ "$(api_err_code)" = keys_rotated ] || fail "refusal: $(cat "$W/resp")"
ctl "$TTP" sp relay "$CTP" --sd $TPSD --kvn 49 --keys $NK 80F24002024F0000 >"$W/tp.out" 2>&1 \
    || fail "third-party relay: $(cat "$W/tp.out")"
grep -q "r-mac verified" "$W/tp.out" || fail "relay not verified: $(cat "$W/tp.out")"
grep -q "A0000000041077" "$W/tp.out" || fail "the third party does not see its instance: $(cat "$W/tp.out")"
api POST "$T/communications/$CTP/end" "$TTP" '{"status":"success"}'
expect_status 200 "end"
api GET "$T/service-instances/$ITP" "$TTP"
jq -e '.keys == "sp" and .state == "UnderDeployment:Installed"' "$W/resp" >/dev/null \
    || fail "the third party's instance: $(cat "$W/resp")"
# The audit reads the card through the ISD (the central SD does not see an
# SD under the ISD): the third party's SD under the ISD with its privileges,
# its instance under it, nothing of them missing.
api POST "$T/secure-elements/$CIN2/audit" "$OP_TOKEN"
expect_status 200 "audit of the UICC"
jq -e --arg s $TPSD '[.card[] | select(.aid == $s and .sd == "A000000151000000" and .privileges == "80C000")] | length == 1' \
    "$W/resp" >/dev/null || fail "the third party's SD on the card: $(cat "$W/resp")"
jq -e --arg s $TPSD '[.card[] | select(.aid == "A0000000041077" and .sd == $s)] | length == 1' \
    "$W/resp" >/dev/null || fail "the third party's instance on the card: $(cat "$W/resp")"
jq -e --arg s $TPSD '[.differences[] | select(.aid == $s or .aid == "A0000000041077")] == []' \
    "$W/resp" >/dev/null || fail "audit differences: $(cat "$W/resp")"
note "third-party SD with Authorized Management created and handed over; after its rotation 409 keys_rotated and its own session relayed"

# --- 4. the third party's webhook and its delivery log ------------------------
for _ in $(seq 1 100); do
    [ "$(grep -c ' operation.done ok ' "$W/hooks/hooks" 2>/dev/null || true)" -ge 2 ] && break
    sleep 0.1
done
grep -q ' bad ' "$W/hooks/hooks" && fail "a delivery with a bad signature"
[ "$(grep -c ' operation.done ok ' "$W/hooks/hooks" || true)" -ge 2 ] \
    || fail "the third party's webhook: $(cat "$W/hooks/hooks" 2>/dev/null)"
for _ in $(seq 1 100); do
    api GET "$T/webhook/deliveries?limit=10" "$TTP"
    jq -e '[.items[] | select(.state == "delivered")] | length >= 2' "$W/resp" >/dev/null && break
    sleep 0.1
done
expect_status 200 "the delivery log"
jq -e '.items | length >= 2 and all(.[]; .event | startswith("operation."))' "$W/resp" >/dev/null \
    || fail "the delivery log: $(cat "$W/resp")"
jq -e '[.items[] | select(.state == "delivered" and .attempts >= 1
        and (.log[-1].status >= 200 and .log[-1].status < 300))] | length >= 2' "$W/resp" >/dev/null \
    || fail "the delivery log's attempts: $(cat "$W/resp")"
jq -e '[.items[] | has("body") or has("secret")] | any | not' "$W/resp" >/dev/null \
    || fail "the log answers bodies or secrets"
api GET "$T/webhook/deliveries?limit=1" "$TTP"
jq -e '(.items | length == 1) and (.next_cursor | type == "string")' "$W/resp" >/dev/null \
    || fail "the log's paging: $(cat "$W/resp")"
api GET "$T/webhook/deliveries" "$TB3"
expect_status 200 "bank3's log"
jq -e '.items == []' "$W/resp" >/dev/null || fail "bank3 sees deliveries: $(cat "$W/resp")"
ctl "$TTP" sp deliveries --limit 10 >"$W/deliv.out" 2>&1 || fail "sp deliveries: $(cat "$W/deliv.out")"
grep -q 'operation.done *delivered' "$W/deliv.out" || fail "sp deliveries: $(cat "$W/deliv.out")"
note "the third party's completions POSTed signed; its delivery log lists them with their attempts"
echo "tsm.thirdparty: ok"
