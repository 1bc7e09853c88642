#!/usr/bin/env bash
# make demo, the third-party scene (issue 12 point 4, seed 002 figure 7,
# docs/tsm.md §7): on an eSE of profile ese-thirdparty, a bank whose SD has
# Delegated Management manages its own application with the central TSM's
# tokens and receipts, and a transit operator's own TSM gets an SD with
# Authorized Management that the central TSM creates and hands over.
#
#   1. tsmd with tsm and mno:orange; a phone on orange (se-agent + a vse eSE
#      of profile ese-thirdparty);
#   2. the operator registers the network, imports the SE (ISD and central SD
#      keys), gives the TSM the SE's token and receipt keys, hands SP SD 12
#      (Delegated Management) to bank3 and registers the services;
#   3. bank3 deletes and reinstalls its payment application itself: for each
#      command a token from the TSM, the command in bank3's own SCP03 session
#      through the relay, the card's receipt back to the TSM;
#   4. what the TSM refuses: a token for another bank's application, the same
#      receipt twice;
#   5. the transit TSM: the ISD creates its SD with Authorized Management, the
#      transit TSM rotates the keys, the central TSM can no longer wrap for it
#      and relays the transit TSM's own session.
#
# usage: scripts/demo_tsm_dm.sh [BUILD_DIR]   (needs tsmd, tsmctl, se-agent, vse)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=demo_lib.sh
. "$ROOT/scripts/demo_lib.sh"
demo_begin "${1:-}" src/bin/tsmd src/bin/tsmctl src/bin/se-agent src/bin/vse -- curl jq xxd openssl

step "1. tsmd with tsm and mno:orange; a phone on orange with an eSE of profile ese-thirdparty"
tsmd_work_init demo-tsm-dm
W=$TSMD_WORK
CIN=4F54534D45534502
DMSD=F04F54534D534412
TPSD=F04F54534D534403
APP=A0000000031010
# The transit TSM's SD is not there yet: the central TSM has the ISD create it.
jq "del(.domains[] | select(.aid == \"$TPSD\" or .aid == \"F04F54534D534413\"))
    | .packages |= map(select(.sd != \"$TPSD\"))
    | .applications |= map(select(.sd != \"F04F54534D534413\"))" \
    "$ROOT/profiles/ese-thirdparty.json" >"$W/p.json"
"$VSE" create --profile "$W/p.json" --out "$W/card.img" >/dev/null
"$VSE" run "$W/card.img" --listen "unix:$W/card.sock" --log-level info >>"$W/vse.log" 2>&1 &
TSMD_EXTRA_PIDS+=("$!")
tsmd_config "sqlite:$W/var/tsmd.db" "log.level=warn" "services.enabled=tsm, mno:orange" \
    "mno.orange.sweep_ms=50"
tsmd_bootstrap demo-operator
tsmd_start
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

step "2. the operator: the network, the SE and its keys, bank3's SD, the services"
(umask 077 && printf '%s' "$OP_TOKEN" >"$W/mno.token")
ctl "$OP_TOKEN" tsm mno-put orange --url-of "$TSMD_URL" --token-file "$W/mno.token" >/dev/null
K4=404142434445464748494A4B4C4D4E4F
K5=505152535455565758595A5B5C5D5E5F
cat >"$W/se.csv" <<CSV
cin,se_type,mno,msisdn,imsi,profile_id,gp_version,jc_version,cert_level,expiry,free_memory,master_key_index,isd_kvn,isd_enc,isd_mac,isd_dek,csd_kvn,csd_enc,csd_mac,csd_dek
$CIN,eSE,orange,33600000001,208011234567890,ese-thirdparty,2.3.1,3.0.5,EAL5+,2035-12-31,65536,1,48,$K4,$K4,$K4,48,$K5,$K5,$K5
CSV
ctl "$OP_TOKEN" se import "$W/se.csv" >/dev/null
(umask 077 && echo 707172737475767778797A7B7C7D7E7F >"$W/token.key" &&
    echo 7172737475767778797A7B7C7D7E7F80 >"$W/receipt.key")
say "tsmctl tsm dm-keys $CIN --token-key-file token.key --receipt-key-file receipt.key"
ctl "$OP_TOKEN" tsm dm-keys $CIN --token-key-file "$W/token.key" --receipt-key-file "$W/receipt.key" \
    --json | jq -r '"    token key v\(.token_key_version), receipt key v\(.receipt_key_version) in the key store"'
BANK=$(ctl "$OP_TOKEN" principal create service_provider bank3 --json | jq -er .id)
TBK=$(ctl "$OP_TOKEN" token issue --principal-id "$BANK" --token-only)
TRANSIT=$(ctl "$OP_TOKEN" principal create service_provider transit-tsm --json | jq -er .id)
TTR=$(ctl "$OP_TOKEN" token issue --principal-id "$TRANSIT" --token-only)
say "tsmctl se sd assign $CIN --aid $DMSD --sp bank3 --privileges A08000   (Delegated Management)"
ctl "$OP_TOKEN" se sd assign $CIN --aid $DMSD --sp bank3 --privileges A08000 >/dev/null
service() { # SP APP SD PRIVILEGES
    printf '{"sp_id": %s, "service": "%s", "version": "1.0", "flavor": "ese", "se_type": "eSE",
 "min_gp_version": "2.2", "min_jc_version": "3.0", "min_free_memory": 4096, "cert_levels": "EAL4+,EAL5+",
 "executable_load_file_aid": "F04F54534D02", "executable_module_aid": "F04F54534D0201",
 "application_aid": "%s", "sd_aid": "%s", "sd_privileges": "%s"}' "$1" "$5" "$2" "$3" "$4" >"$W/svc.json"
    ctl "$OP_TOKEN" tsm service-add "$W/svc.json" --json | jq -er .id
}
service "$BANK" $APP $DMSD A08000 payment >/dev/null
STR=$(service "$TRANSIT" A0000000041077 $TPSD 80C000 transit)
ctl "$OP_TOKEN" tsm services

step "3. bank3 deletes and reinstalls its application under Delegated Management"
DMKEY=C0C1C2C3C4C5C6C7C8C9CACBCCCDCECF
delegated() { # WHAT PLAIN-C-APDU
    local id cmd ans
    say "tsmctl sp dm-token $CIN $DMSD $2   ($1)"
    read -r _ id cmd < <(ctl "$TBK" sp dm-token $CIN $DMSD "$2")
    echo "    token $id: $cmd"
    say "tsmctl sp relay --cin $CIN --sd $DMSD --kvn 48 --keys BANK3KEY $cmd   (bank3's own SCP03)"
    ctl "$TBK" sp relay --cin $CIN --sd $DMSD --kvn 48 --keys $DMKEY "$cmd" >"$W/relay.out" || true
    sed 's/^/    /' "$W/relay.out"
    ans=$(awk -F'\t' '$1 == "0" { print $2 }' "$W/relay.out")
    say "tsmctl sp dm-receipt $id ${ans:0:24}..."
    ctl "$TBK" sp dm-receipt "$id" "$ans" | sed 's/^/    /'
    LAST=$ans
}
delegated "DELETE of $APP" "80E40000094F07${APP}00"
RCPT1=$LAST
delegated "INSTALL and make selectable of $APP from the central SD's package" \
    "80E60C001D06F04F54534D0207F04F54534D020107${APP}010002C90000"
say "tsmctl tsm audit $CIN"
ctl "$OP_TOKEN" tsm audit $CIN --json |
    jq -r --arg a $APP '.card[] | select(.aid == $a) | "    the card: \(.aid) under \(.sd) (the SD of its load file, GPCS 9.3)"'

step "4. what the central TSM refuses"
say "tsmctl sp dm-token $CIN $DMSD INSTALL(A0000000041010, another bank's application)"
ctl "$TBK" sp dm-token $CIN $DMSD 80E60C001D06F04F54534D0207F04F54534D020107A0000000041010010002C90000 \
    2>&1 | sed 's/^/    /' || true
read -r _ ID3 _ < <(ctl "$TBK" sp dm-token $CIN $DMSD "80E40000094F07${APP}00")
say "tsmctl sp dm-receipt $ID3 (the first DELETE's receipt again)"
ctl "$TBK" sp dm-receipt "$ID3" "$RCPT1" 2>&1 | sed 's/^/    /' || true

step "5. the transit TSM's SD with Authorized Management (seed figure 7)"
say "tsmctl sp deploy $STR --msisdn 33600000001   (as transit-tsm)"
ctl "$TTR" sp deploy "$STR" --msisdn 33600000001 --json >"$W/deploy.json"
jq -r '.results[] | "    SCP03 with \(.sd): \(.outcome)"' "$W/deploy.json"
INST=$(jq -er .instance.id "$W/deploy.json")
NK=33333333333333333333333333333333
KCV=$(printf '01010101010101010101010101010101' | xxd -r -p | openssl enc -aes-128-ecb -nopad -K $NK |
    xxd -p -c 64 | cut -c1-6 | tr a-f A-F)
COMM=$(ctl "$TTR" sp comm-start "$INST" --max-scripts 4 --json | jq -er .id)
say "tsmctl sp script $COMM --purpose key_rotation PUT-KEY(transit's keys, KCV $KCV)"
ctl "$TTR" sp script "$COMM" --purpose key_rotation \
    "80D8308146318811""10${NK}03${KCV}8811""10${NK}03${KCV}8811""10${NK}03${KCV}00" --json |
    jq -r '"    \(.state): the card answers \(.results[0].rapdus[0])"'
say "tsmctl sp script $COMM GET-DATA   (the central TSM would have to wrap it)"
ctl "$TTR" sp script "$COMM" 80CA00CF00 2>&1 | sed 's/^/    /' || true
say "tsmctl sp relay $COMM --sd $TPSD --kvn 49 --keys TRANSITKEY GET-STATUS   (transit's own SCP03)"
ctl "$TTR" sp relay "$COMM" --sd $TPSD --kvn 49 --keys $NK 80F24002024F0000 | sed 's/^/    /'
ctl "$TTR" sp comm-end "$COMM" --status success >/dev/null
echo
echo "demo: tsm_dm done"
