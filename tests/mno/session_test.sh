#!/usr/bin/env bash
# mno.session (DESIGN.md 3, docs/mno.md "Retries"): a job whose admin session
# is lost reaches a defined state, whichever way it was lost.
#
#  1. The device's lease expires mid-job (interactive, not destructive): the
#     job goes back to the queue and runs again from the start in a new
#     session; the new session's answers are taken (not 409 script_mismatch
#     against the lost session's), and the job ends done.
#  2. The agent gives up the session while the device stays registered
#     (heartbeats go on): after session_timeout_s a destructive job ends
#     outcome_unknown; a job that is not destructive runs again while
#     attempts are left, then ends failed.
#
# curl plays the device (RAM over HTTP by hand, docs/ota.md §5).
# usage: session_test.sh TSMD
set -euo pipefail

TSMD=$1
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"

need_tools curl jq
tsmd_work_init mno-session
tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "log.level=warn" "services.enabled=mno:orange" \
    "mno.orange.sweep_ms=100" "mno.orange.backoff_s=0" "mno.orange.lease_s=2" \
    "mno.orange.heartbeat_s=1" "mno.orange.session_timeout_s=3"
tsmd_bootstrap ops
tsmd_start

P=/mno/orange/v1
# shellcheck source=ram.sh
. "$HERE/ram.sh" # PROTO, CT_RSP
CIN=0102030405060708090A
FROM="X-Admin-From: //se-id/cin/$CIN;//agent-id/imei/356938035643809"
# One R-APDU each (docs/ota.md §5.3): 9000, and 6A82 for the second session.
printf '\xaf\x80\x80\x01\x01\x23\x02\x90\x00\x00\x00' >"$TSMD_WORK/r9000.bin"
printf '\xaf\x80\x80\x01\x01\x23\x02\x6a\x82\x00\x00' >"$TSMD_WORK/r6a82.bin"
admin() { # PATH [curl args...]: a POST of the device
    local path=$1
    shift
    API_STATUS=$(curl -s -X POST -o "$TSMD_WORK/resp" -w '%{http_code}' \
        -H "Authorization: Bearer $TD" -H "$PROTO" -H "$FROM" "$@" "$TSMD_URL$path") ||
        API_STATUS=000
}
# The responses of script N; an interactive job's POST is held for the next
# batch: the device hangs up after a second (what it sent is committed).
answer() { # JOB N FILE
    admin "$P/admin/jobs/$1/scripts/$2" --max-time 1 -H "X-Admin-Script-Status: ok" -H "$CT_RSP" \
        --data-binary @"$3"
}
job() { api GET "$P/jobs/$1" "$OP_TOKEN" && expect_status 200 "job $1" && jq -r "$2" "$TSMD_WORK/resp"; }
wait_state() { # JOB STATE...
    local s=
    for _ in $(seq 1 150); do
        s=$(job "$1" .state)
        for w in "${@:2}"; do
            [ "$s" = "$w" ] && return 0
        done
        sleep 0.1
    done
    fail "job $1: $s, want ${*:2}"
}
submit() { # KEY BODY
    api POST $P/jobs "$OP_TOKEN" "$2" -H "Idempotency-Key: $1"
    expect_status 201 "submit $1"
    jq -r .id "$TSMD_WORK/resp"
}

api POST /admin/v1/principals "$OP_TOKEN" \
    '{"kind":"device","name":"phone","imei":"356938035643809","imsi":"208011234567890","mno":"orange"}' \
    -H "Idempotency-Key: d1"
expect_status 201 "device principal"
D=$(jq -r .id "$TSMD_WORK/resp")
TD=$(tsmd_token "$D")
api POST $P/devices "$OP_TOKEN" "{\"principal_id\":$D,\"msisdn\":\"33600000001\",\"cins\":[\"$CIN\"]}" \
    -H "Idempotency-Key: e1"
expect_status 201 "enrol"

# ---- 1. the lease expires mid-job -------------------------------------------
J1=$(submit j1 '{"msisdn":"33600000001","se":{"cin":"'$CIN'"},"kind":"interactive","apdus":["80CA9F7F00"]}')
api POST $P/device/register "$TD" '{}'
expect_status 200 "register"
admin "$P/admin/jobs/$J1"
expect_status 200 "open the session"
answer "$J1" 1 "$TSMD_WORK/r9000.bin"
[ "$(job "$J1" '.scripts[0].rapdus[0]')" = 9000 ] || fail "session 1's answer is kept"
# No heartbeat: the lease runs out, the session with it.
wait_state "$J1" queued
[ "$(job "$J1" '.scripts[0].rapdus')" = null ] || fail "the lost session's answers are dropped"
[ "$(job "$J1" .session)" = 1 ] || fail "one session so far"
api POST $P/device/register "$TD" '{}'
expect_status 200 "register again"
wait_state "$J1" delivering
admin "$P/admin/jobs/$J1"
expect_status 200 "open the session again"
answer "$J1" 1 "$TSMD_WORK/r6a82.bin"
[ "$API_STATUS" != 409 ] || fail "the new session's answer refused: $(cat "$TSMD_WORK/resp")"
api POST "$P/jobs/$J1/close" "$OP_TOKEN" '{}'
expect_status 200 "close"
wait_state "$J1" done
[ "$(job "$J1" '.scripts[0].rapdus[0]')" = 6A82 ] || fail "session 2's answer is the job's"
[ "$(job "$J1" .session)" = 2 ] || fail "the run from the start is session 2"

# ---- 2. the agent goes quiet, the device stays registered ---------------------
api POST $P/device/register "$TD" '{}'
expect_status 200 "register for part 2"
(
    while :; do
        curl -s -o /dev/null -X POST -H "Authorization: Bearer $TD" -H "Content-Type: application/json" \
            -d '{}' "$TSMD_URL$P/device/heartbeat" || true
        sleep 0.4
    done
) &
HB=$!
trap 'kill "$HB" 2>/dev/null || true; tsmd_cleanup' EXIT
J2=$(submit j2 '{"msisdn":"33600000001","se":{"cin":"'$CIN'"},"kind":"scripted","destructive":true,"apdus":["80CA9F7F00"]}')
wait_state "$J2" delivering running
admin "$P/admin/jobs/$J2"
expect_status 200 "open the destructive job's session"
wait_state "$J2" outcome_unknown
[ "$(job "$J2" .reason)" = "session timed out" ] || fail "J2's reason: $(job "$J2" .reason)"
J3=$(submit j3 '{"msisdn":"33600000001","se":{"cin":"'$CIN'"},"kind":"scripted","max_attempts":2,"apdus":["80CA9F7F00"]}')
for a in 1 2; do
    wait_state "$J3" delivering
    admin "$P/admin/jobs/$J3"
    expect_status 200 "open J3, attempt $a"
    [ "$(job "$J3" .session)" = "$a" ] || fail "J3: session $a"
    wait_state "$J3" queued delivering failed
done
wait_state "$J3" failed
[ "$(job "$J3" .reason)" = "session timed out" ] || fail "J3's reason: $(job "$J3" .reason)"
[ "$(job "$J3" .attempts)" = 2 ] || fail "J3: two attempts"
api GET "$P/status?msisdn=33600000001" "$OP_TOKEN"
[ "$(jq -r .state "$TSMD_WORK/resp")" = online ] || fail "the device stayed online: $(cat "$TSMD_WORK/resp")"
echo "mno.session: ok"
