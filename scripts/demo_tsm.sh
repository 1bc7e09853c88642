#!/usr/bin/env bash
# make demo, the central TSM scene (issue 12, seed 002, docs/tsm.md): a bank
# provisions its payment service on a phone's eSE step by step, through the
# phone's network, then the phone pays with it.
#
#   1. tsmd with tsm and two networks (mno:orange, mno:vodafone); a phone on
#      orange (se-agent + a vse eSE of profile ese-central, no SP SD yet);
#   2. the operator registers both networks, imports the SE (its central SD
#      keys go to the key store), registers bank1 and its payment service;
#   3. bank1 looks the phone up by its number and pre-personalizes: the TSM
#      creates bank1's security domain with temporary keys, instantiates the
#      payment application and extradites it (one OTA job per SCP03 channel);
#   4. bank1 personalizes the application (its key and the holder's PIN) and
#      rotates its SD's keys in a communication; the TSM refuses to wrap for
#      it afterwards and bank1 talks to its SD with its own SCP03 session
#      through the relay; bank1 activates the service;
#   5. the operator's audit finds the card as the registry says;
#   6. the phone pays: the card's cryptogram is verified with bank1's key.
#
# usage: scripts/demo_tsm.sh [BUILD_DIR]   (needs tsmd, tsmctl, se-agent, vse)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=demo_lib.sh
. "$ROOT/scripts/demo_lib.sh"
demo_begin "${1:-}" src/bin/tsmd src/bin/tsmctl src/bin/se-agent src/bin/vse -- curl jq xxd openssl

step "1. tsmd with tsm, mno:orange and mno:vodafone; a phone on orange with an eSE"
tsmd_work_init demo-tsm
W=$TSMD_WORK
CIN=4F54534D45534501
CENTRAL=F04F54534D534401
jq "del(.domains[1,2]) | .applications |= map(select(.sd == \"$CENTRAL\"))" \
    "$ROOT/profiles/ese-central.json" >"$W/p.json"
"$VSE" create --profile "$W/p.json" --out "$W/card.img" >/dev/null
"$VSE" run "$W/card.img" --listen "unix:$W/card.sock" --log-level info >>"$W/vse.log" 2>&1 &
TSMD_EXTRA_PIDS+=("$!")
tsmd_config "sqlite:$W/var/tsmd.db" "log.level=warn" "services.enabled=tsm, mno:orange, mno:vodafone" \
    "mno.orange.sweep_ms=50" "mno.vodafone.sweep_ms=50"
tsmd_bootstrap demo-operator
tsmd_start
echo "    tsmd: $TSMD_URL (tsm on /tsm/v1, mno on /mno/orange/v1 and /mno/vodafone/v1)"
ctl() { # TOKEN args...
    local tok=$1
    shift
    OPENTSM_URL=$TSMD_URL OPENTSM_TOKEN=$tok "$TSMCTL" "$@"
}
DP=$(ctl "$OP_TOKEN" principal create device phone1 --imei 356938035643809 \
    --imsi 208011234567890 --mno orange --json | jq -er .id)
(umask 077 && ctl "$OP_TOKEN" token issue --principal-id "$DP" --token-only >"$W/dev.token")
ctl "$OP_TOKEN" mno enrol "$DP" --msisdn 33600000001 --cin $CIN --instance orange >/dev/null
"$AGENT" --state "$W/agent" --reader "eSE1=socket:unix:$W/card.sock" \
    --mno "$TSMD_URL/mno/orange/v1" --token-file "$W/dev.token" --poll-ms 200 \
    --log-level info run >>"$W/agent.log" 2>&1 &
TSMD_EXTRA_PIDS+=("$!") # the phone: stopped at exit
for _ in $(seq 1 200); do
    [ "$(ctl "$OP_TOKEN" mno status --msisdn 33600000001 --instance orange --json | jq -r .state)" = online ] &&
        grep -q "event=stream_open" "$W/agent.log" && break
    sleep 0.1
done
echo "    phone1 (+33 6 00 00 00 01, eSE $CIN) is on, on orange"

step "2. the operator: networks, the SE, the bank and its service"
(umask 077 && printf '%s' "$OP_TOKEN" >"$W/mno.token")
for net in orange vodafone; do
    say "tsmctl tsm mno-put $net --url-of $TSMD_URL --token-file mno.token"
    ctl "$OP_TOKEN" tsm mno-put $net --url-of "$TSMD_URL" --token-file "$W/mno.token" >/dev/null
done
ctl "$OP_TOKEN" tsm mnos
K5=505152535455565758595A5B5C5D5E5F
cat >"$W/se.csv" <<CSV
cin,se_type,mno,msisdn,imsi,profile_id,gp_version,jc_version,cert_level,expiry,free_memory,master_key_index,csd_kvn,csd_enc,csd_mac,csd_dek
$CIN,eSE,orange,33600000001,208011234567890,ese-central,2.3.1,3.0.5,EAL5+,2035-12-31,65536,1,48,$K5,$K5,$K5
CSV
say "tsmctl se import se.csv   (the central SD's keys go to the key store)"
ctl "$OP_TOKEN" se import "$W/se.csv"
BANK=$(ctl "$OP_TOKEN" principal create service_provider bank1 --json | jq -er .id)
TBK=$(ctl "$OP_TOKEN" token issue --principal-id "$BANK" --token-only)
cat >"$W/service.json" <<JSON
{"sp_id": $BANK, "service": "payment", "version": "1.0", "flavor": "ese",
 "se_type": "eSE", "min_gp_version": "2.2", "min_jc_version": "3.0", "min_free_memory": 4096,
 "cert_levels": "EAL4+,EAL5+", "dap_required": true,
 "executable_load_file_aid": "F04F54534D02", "executable_module_aid": "F04F54534D0201",
 "application_aid": "A0000000041010", "sd_aid": "F04F54534D534410"}
JSON
say "tsmctl tsm service-add service.json"
SID=$(ctl "$OP_TOKEN" tsm service-add "$W/service.json" --json | jq -er .id)
ctl "$TBK" sp services

step "3. bank1 finds the phone and pre-personalizes its payment service"
say "tsmctl se get --msisdn 33600000001   (as bank1)"
ctl "$TBK" se get --msisdn 33600000001
say "tsmctl sp deploy $SID --msisdn 33600000001 --qualifier PAR-0001"
ctl "$TBK" sp deploy "$SID" --msisdn 33600000001 --qualifier PAR-0001 --json >"$W/deploy.json"
jq -r '"    operation \(.id): \(.state); instance \(.instance.id): \(.instance.state), keys held by \(.instance.keys)"' "$W/deploy.json"
jq -r '.results[] | "    SCP03 with \(.sd): \(.outcome), R-APDUs \(.rapdus | join(" "))"' "$W/deploy.json"
INST=$(jq -er .instance.id "$W/deploy.json")
ctl "$TBK" se sd list $CIN

step "4. bank1 personalizes, rotates its keys, activates"
MK=00112233445566778899AABBCCDDEEFF
NK=11111111111111111111111111111111
KCV=$(printf '01010101010101010101010101010101' | xxd -r -p | openssl enc -aes-128-ecb -nopad -K $NK |
    xxd -p -c 64 | cut -c1-6 | tr a-f A-F)
COMM=$(ctl "$TBK" sp comm-start "$INST" --max-scripts 4 --json | jq -er .id)
echo "    communication $COMM open"
say "tsmctl sp script $COMM --purpose personalization INSTALL[for perso] STORE-DATA(MK_AC, PIN)"
ctl "$TBK" sp script "$COMM" --purpose personalization 80E620000D000007A0000000041010000000 \
    "80E288001A800010${MK}80100431323334" --json |
    jq -r '"    \(.state): R-APDUs \(.results[0].rapdus | join(" ")), failed \(.results[0].failed)"'
say "tsmctl sp script $COMM --purpose key_rotation PUT-KEY(new keys in the clear, KCV $KCV)"
ctl "$TBK" sp script "$COMM" --purpose key_rotation \
    "80D8308146318811""10${NK}03${KCV}8811""10${NK}03${KCV}8811""10${NK}03${KCV}00" --json |
    jq -r '"    \(.state): the card answers \(.results[0].rapdus[0]) (new KVN and KCVs)"'
ctl "$TBK" sp instance "$INST" --json | jq -r '"    instance: \(.state), keys held by \(.keys)"'
say "tsmctl sp script $COMM GET-DATA   (the TSM would have to wrap it)"
ctl "$TBK" sp script "$COMM" 80CA00CF00 2>&1 | sed 's/^/    /' || true
say "tsmctl sp relay $COMM --sd F04F54534D534410 --kvn 49 --keys NEWKEY GET-STATUS   (bank1's own SCP03)"
ctl "$TBK" sp relay "$COMM" --sd F04F54534D534410 --kvn 49 --keys $NK 80F24002024F0000 | sed 's/^/    /'
ctl "$TBK" sp comm-end "$COMM" --status success >/dev/null
say "tsmctl sp activate $INST"
ctl "$TBK" sp activate "$INST" --json | jq -r '"    \(.state): instance \(.instance.state)"'

step "5. the operator's audit of the SE"
say "tsmctl tsm audit $CIN"
ctl "$OP_TOKEN" tsm audit $CIN --json >"$W/audit.json"
jq -r '.card[] | "    \(.aid) under \(.sd) privileges \(.privileges)"' "$W/audit.json"
echo "    differences: $(jq -c .differences "$W/audit.json")"

step "6. the phone pays (terminal: SELECT, GET PROCESSING OPTIONS, GENERATE AC)"
CDOL=0000000010000000000000000250000000000009782611210011223344
printf '{"msisdn":"33600000001","se":{"reader":"eSE1"},"kind":"scripted","apdus":["00A4040007A000000004101000","80A8000002830000","80AE80001D%s00"]}' \
    "$CDOL" >"$W/pay.json"
JOB=$(ctl "$OP_TOKEN" mno submit "$W/pay.json" --instance orange --json | jq -er .id)
for _ in $(seq 1 200); do
    ctl "$OP_TOKEN" mno job "$JOB" --instance orange --json >"$W/job.json"
    case $(jq -r .state "$W/job.json") in done | failed) break ;; esac
    sleep 0.1
done
GENAC=$(jq -r '.scripts[0].rapdus[2]' "$W/job.json")
ATC=$(echo "$GENAC" | grep -o '9F3602....' | cut -c7-10)
AC=$(echo "$GENAC" | grep -o '9F2608.\{16\}' | cut -c7-22)
SK=$(printf '%sF000000000000000000000000000' "$ATC" | xxd -r -p |
    openssl enc -aes-128-ecb -nopad -K $MK | xxd -p -c 64)
WANT=$(printf '%s1800%s' "$CDOL" "$ATC" | xxd -r -p |
    openssl mac -cipher AES-128-CBC -macopt "hexkey:$SK" CMAC | cut -c1-16)
echo "    GENERATE AC: ARQC $AC, ATC $ATC"
if [ "$AC" = "$WANT" ]; then
    echo "    bank1 verifies the cryptogram with its key: ok"
else
    fail "the cryptogram $AC is not bank1's ($WANT)"
fi
echo
echo "demo: tsm done"
