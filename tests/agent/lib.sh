# shellcheck shell=bash
# Shared by tests/agent/*.sh (after tests/tsmd/lib.sh; agent_phone after tsmd_start).
#
#   agent_phone CIN...   a device principal phone1 of mno orange, its token in
#                        $DTOK and $TSMD_WORK/device.token, enrolled on
#                        /mno/orange/v1 with MSISDN 33600000001 and these CINs;
#                        the device id in $DEV.
#   agent_card [ARG...]  a vse card of $PROFILES/dev.json (CIN 4F54534D44455601)
#                        in $TSMD_WORK/card.img, run on the socket
#                        $TSMD_WORK/card.sock with vse run's extra ARGs; its
#                        pid in $VSE_PID (needs only tsmd_work_init).
#   agent_run            se-agent ($AGENT) with that card as eSE1 on the phone
#                        of agent_phone ($A: its command line), the card
#                        verified, then `run` in the background: its pid in
#                        $RUN_PID (killed at cleanup), its log
#                        $TSMD_WORK/run.log.

agent_phone() {
    local cins
    api POST /admin/v1/principals "$OP_TOKEN" \
        '{"kind":"device","name":"phone1","imei":"356938035643809","imsi":"208011234567890","mno":"orange"}' \
        -H "Idempotency-Key: dev-phone1"
    case $API_STATUS in 200 | 201) ;; *) fail "device principal: $API_STATUS" ;; esac
    DPRIN=$(jq -er .id "$TSMD_WORK/resp")
    DTOK=$(tsmd_token "$DPRIN")
    echo "$DTOK" >"$TSMD_WORK/device.token"
    cins=$(printf '"%s",' "$@")
    api POST /mno/orange/v1/devices "$OP_TOKEN" \
        "{\"principal_id\":$DPRIN,\"msisdn\":\"33600000001\",\"cins\":[${cins%,}]}" \
        -H "Idempotency-Key: enrol-1"
    expect_status 201 "enrol the phone"
    DEV=$(jq -er .id "$TSMD_WORK/resp")
}

agent_card() {
    "$VSE" create --profile "$PROFILES/dev.json" --out "$TSMD_WORK/card.img" >/dev/null
    "$VSE" run "$TSMD_WORK/card.img" --listen "unix:$TSMD_WORK/card.sock" "$@" \
        >>"$TSMD_WORK/vse.log" 2>&1 &
    VSE_PID=$!
    TSMD_EXTRA_PIDS+=("$VSE_PID")
}

agent_run() {
    local _
    A=("$AGENT" --state "$TSMD_WORK/agent" --reader "eSE1=socket:unix:$TSMD_WORK/card.sock"
        --mno "$TSMD_URL/mno/orange/v1" --token-file "$TSMD_WORK/device.token")
    for _ in $(seq 1 100); do
        "${A[@]}" status --json | jq -e '.readers[0].present' >/dev/null && break
        sleep 0.1
    done
    "${A[@]}" verify | grep -qx "eSE1: added" || fail "verify eSE1"
    "${A[@]}" --poll-ms 100 --log-level info run >"$TSMD_WORK/run.log" 2>&1 &
    RUN_PID=$!
    TSMD_CLEANUP_HOOK=agent_kill_run
}

agent_kill_run() { kill -KILL "$RUN_PID" 2>/dev/null || true; }
