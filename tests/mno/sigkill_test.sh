#!/usr/bin/env bash
# mno.sigkill (issue 10 acceptance, "offline"): a job for a device that is
# off waits; tsmd is killed with SIGKILL and restarted; the device registers;
# the job is woken once and runs exactly once. A destructive job whose
# session was open when tsmd died goes on after the restart (the session is
# state in the database); when the agent reports it lost the session the job
# ends outcome_unknown and is never woken again.
#
# usage: sigkill_test.sh TSMD
set -euo pipefail

TSMD=$1
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"

tsmd_work_init mno-sigkill
tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "log.level=warn" "services.enabled=tsm, mno:orange" \
    "mno.orange.sweep_ms=50" "mno.orange.backoff_s=0"
tsmd_bootstrap ops
tsmd_start

P=/mno/orange/v1
# shellcheck source=ram.sh
. "$HERE/ram.sh" # PROTO, CT_RSP
CIN=0102030405060708090A
FROM="X-Admin-From: //se-id/cin/$CIN;//agent-id/imei/356938035643809"
admin() { # TOKEN PATH [curl args...]
    local tok=$1 path=$2
    shift 2
    API_STATUS=$(curl -s -X POST -o "$TSMD_WORK/resp" -w '%{http_code}' \
        -H "Authorization: Bearer $tok" "$@" "$TSMD_URL$path") || API_STATUS=000
}
state() { api GET $P/jobs/$1 "$OP_TOKEN"; jq -r .state "$TSMD_WORK/resp"; }
wait_state() {
    local s=
    for _ in $(seq 1 200); do
        s=$(state "$1")
        [ "$s" = "$2" ] && return 0
        sleep 0.05
    done
    fail "job $1: $s, want $2"
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

# The device is off: the job waits.
api POST $P/jobs "$OP_TOKEN" '{"msisdn":"33600000001","se":{"cin":"0102030405060708090A"},"kind":"scripted","apdus":["80CA9F7F00"]}' \
    -H "Idempotency-Key: j1"
expect_status 201 "submit"
J1=$(jq -r .id "$TSMD_WORK/resp")
[ "$(state "$J1")" = queued ] || fail "the job waits"
tsmd_kill9
tsmd_start
[ "$(state "$J1")" = queued ] || fail "the job survived SIGKILL"
api POST $P/device/register "$TD" '{}'
expect_status 200 "register after the restart"
wait_state "$J1" delivering
admin "$TD" $P/admin/jobs/$J1 -H "$PROTO" -H "$FROM"
expect_status 200 "open"
printf '\xaf\x80\x80\x01\x01\x23\x02\x90\x00\x00\x00' >"$TSMD_WORK/ok.bin"
admin "$TD" $P/admin/jobs/$J1/scripts/1 -H "$PROTO" -H "$FROM" -H "X-Admin-Script-Status: ok" \
    -H "$CT_RSP" --data-binary @"$TSMD_WORK/ok.bin"
expect_status 204 "done"
api GET $P/jobs/$J1 "$OP_TOKEN"
[ "$(jq -r '.state + " " + (.attempts|tostring) + " " + (.scripts|length|tostring)' "$TSMD_WORK/resp")" = "done 1 1" ] ||
    fail "ran exactly once: $(cat "$TSMD_WORK/resp")"
echo "offline: job $J1 queued, tsmd SIGKILLed and restarted, the device registered: $(jq -c '{state, attempts, scripts: (.scripts | length)}' "$TSMD_WORK/resp")"
admin "$TD" $P/admin/jobs/$J1 -H "$PROTO" -H "$FROM"
expect_status 204 "a done job never opens again"

# A destructive job with its session open when tsmd dies.
api POST $P/jobs "$OP_TOKEN" '{"msisdn":"33600000001","se":{"cin":"0102030405060708090A"},"kind":"scripted","destructive":true,"apdus":["80E400800A4F08A000000151000001"]}' \
    -H "Idempotency-Key: j2"
J2=$(jq -r .id "$TSMD_WORK/resp")
wait_state "$J2" delivering
admin "$TD" $P/admin/jobs/$J2 -H "$PROTO" -H "$FROM"
expect_status 200 "open the destructive job"
tsmd_kill9
tsmd_start
[ "$(state "$J2")" = running ] || fail "the session is still open after the restart"
# The agent lost the session (it cannot know whether the card ran it).
admin "$TD" $P/admin/jobs/$J2/scripts/1 -H "$PROTO" -H "$FROM" -H "X-Admin-Script-Status: interrupted"
expect_status 204 "interrupted"
[ "$(state "$J2")" = outcome_unknown ] || fail "outcome_unknown"
api POST $P/device/register "$TD" '{}'
sleep 0.3
api GET $P/jobs/$J2 "$OP_TOKEN"
[ "$(jq -r '.state + " " + (.attempts|tostring)' "$TSMD_WORK/resp")" = "outcome_unknown 1" ] ||
    fail "never woken again: $(cat "$TSMD_WORK/resp")"
echo "destructive: job $J2 open when tsmd was SIGKILLed, the agent reported it interrupted: $(jq -c '{state, attempts}' "$TSMD_WORK/resp"), not woken again"
tsmd_stop
echo "mno.sigkill: ok"
