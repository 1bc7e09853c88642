#!/usr/bin/env bash
# mno.credentials (issue 10 point 3 and its acceptance: "a device presenting
# another device's credential, a revoked credential, or none is refused;
# malformed RAM over HTTP messages get precise errors and change nothing").
# A real tsmd (SQLite), two enrolled devices, curl as their agents.
#
# - none: no Authorization, or a malformed / unknown bearer token: 401 on
#   registration, the push stream and the admin session; the job unchanged;
# - another device's credential: phone2's token reaches only phone2: phone1's
#   job session is 404 (with phone1's IMEI and CIN, or its own), phone2's
#   stream carries none of phone1's events, its GET /device is its own;
# - revoked: phone1's open push stream is closed by the server as soon as the
#   operator revokes its token (metric mno_orange_streams_revoked_total); the
#   token then gets 401 everywhere (audited); a new token works;
# - malformed admin-session messages, each with its precise error (status,
#   code, field), leave the job, its attempts and its scripts as they were;
#   the well-formed answer then ends it.
#
# usage: credentials_test.sh TSMD
set -euo pipefail

TSMD=$1
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"

need_tools curl jq xxd
tsmd_work_init mno-cred
tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "log.level=warn" "services.enabled=mno:orange" \
    "mno.orange.lease_s=600" "mno.orange.heartbeat_s=200" "mno.orange.sweep_ms=50"
tsmd_bootstrap ops
tsmd_start

P=/mno/orange/v1
# shellcheck source=ram.sh
. "$HERE/ram.sh" # PROTO, CT_RSP
CIN1=0102030405060708090A
CIN2=0A0B0C0D0E0F10111213
IMEI1=356938035643809
IMEI2=356938035643817
FROM1="X-Admin-From: //se-id/cin/$CIN1;//agent-id/imei/$IMEI1"
BG=()
cleanup_bg() {
    local p
    for p in "${BG[@]}"; do kill "$p" 2>/dev/null || true; done
}
TSMD_CLEANUP_HOOK=cleanup_bg

device() { # NAME IMEI IMSI -> principal id
    api POST /admin/v1/principals "$OP_TOKEN" \
        "{\"kind\":\"device\",\"name\":\"$1\",\"imei\":\"$2\",\"imsi\":\"$3\",\"mno\":\"orange\"}" \
        -H "Idempotency-Key: dev-$1"
    expect_status 201 "device $1"
    jq -er .id "$TSMD_WORK/resp"
}
token() { # PRINCIPAL -> "id token"
    api POST /admin/v1/tokens "$OP_TOKEN" "{\"principal_id\":$1}"
    expect_status 201 "token for $1"
    jq -er '"\(.id) \(.token)"' "$TSMD_WORK/resp"
}
admin() { # TOKEN PATH [curl args...]: TOKEN "-" sends none
    local tok=$1 path=$2 auth=()
    shift 2
    [ "$tok" = - ] || auth=(-H "Authorization: Bearer $tok")
    API_STATUS=$(curl -s -X POST -o "$TSMD_WORK/resp" -D "$TSMD_WORK/resp.h" -w '%{http_code}' \
        "${auth[@]}" "$@" "$TSMD_URL$path") || API_STATUS=000
}
hdr() { grep -i "^$1:" "$TSMD_WORK/resp.h" | head -1 | cut -d' ' -f2- | tr -d '\r'; }
field_is() { # WANT DESCRIPTION
    [ "$(jq -r .error.field "$TSMD_WORK/resp")" = "$1" ] ||
        fail "$2: field $(jq -r .error.field "$TSMD_WORK/resp"), want $1"
}
job_is() { # JOB "STATE ATTEMPTS RAPDUS" DESCRIPTION
    api GET $P/jobs/$1 "$OP_TOKEN"
    local got
    got=$(jq -r '"\(.state) \(.attempts) \(.scripts[0].rapdus // "none")"' "$TSMD_WORK/resp")
    [ "$got" = "$2" ] || fail "$3: job $1 is \"$got\", want \"$2\""
}
stream() { # TOKEN OUT: the device's push stream from the start, in the background
    curl -s -N --max-time 120 -H "Authorization: Bearer $1" -H "Accept: text/event-stream" \
        -H "Last-Event-ID: 0" "$TSMD_URL$P/device/stream" >"$2" 2>/dev/null &
    BG+=($!)
    STREAM_PID=$!
}
wait_for() { # FILE TEXT
    for _ in $(seq 1 400); do
        grep -qF "$2" "$1" && return 0
        sleep 0.05
    done
    fail "no \"$2\" in $1: $(cat "$1")"
}

D1=$(device phone1 $IMEI1 208011234567890)
D2=$(device phone2 $IMEI2 208011234567891)
read -r T1_ID T1 <<<"$(token "$D1")"
read -r _ T2 <<<"$(token "$D2")"
api POST $P/devices "$OP_TOKEN" "{\"principal_id\":$D1,\"msisdn\":\"33600000001\",\"cins\":[\"$CIN1\"]}" \
    -H "Idempotency-Key: e-1"
expect_status 201 "enrol phone1"
api POST $P/devices "$OP_TOKEN" "{\"principal_id\":$D2,\"msisdn\":\"33600000002\",\"cins\":[\"$CIN2\"]}" \
    -H "Idempotency-Key: e-2"
expect_status 201 "enrol phone2"
for t in "$T1" "$T2"; do
    api POST $P/device/register "$t" '{}'
    expect_status 200 "register"
done
api POST $P/jobs "$OP_TOKEN" \
    '{"msisdn":"33600000001","se":{"cin":"'$CIN1'"},"kind":"scripted","apdus":["80CA9F7F00"]}' \
    -H "Idempotency-Key: j-1"
expect_status 201 "a job for phone1"
JOB=$(jq -er .id "$TSMD_WORK/resp")
for _ in $(seq 1 100); do
    api GET $P/jobs/$JOB "$OP_TOKEN"
    [ "$(jq -r .state "$TSMD_WORK/resp")" = delivering ] && break
    sleep 0.05
done
job_is "$JOB" "delivering 1 none" "the job is woken"

# ---- no credential ----------------------------------------------------------
api POST $P/device/register - '{}'
expect_status 401 "register without a credential"
api GET $P/device/stream -
expect_status 401 "a stream without a credential"
admin - $P/admin/jobs/$JOB -H "$PROTO" -H "$FROM1"
expect_status 401 "a session without a credential"
admin "ot_not-a-token" $P/admin/jobs/$JOB -H "$PROTO" -H "$FROM1"
expect_status 401 "a malformed token"
admin "ot_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" $P/admin/jobs/$JOB -H "$PROTO" -H "$FROM1"
expect_status 401 "an unknown token"
job_is "$JOB" "delivering 1 none" "refusals without a credential"
echo "none: no, malformed or unknown credential: 401 (register, stream, session); job $JOB unchanged"

# ---- another device's credential ---------------------------------------------
admin "$T2" $P/admin/jobs/$JOB -H "$PROTO" -H "$FROM1"
expect_status 404 "phone2 opens phone1's job as phone1"
[ "$(api_err_code)" = not_found ] || fail "the same 404 as a missing job"
admin "$T2" $P/admin/jobs/$JOB -H "$PROTO" -H "X-Admin-From: //se-id/cin/$CIN2;//agent-id/imei/$IMEI2"
expect_status 404 "phone2 opens phone1's job as itself"
admin "$T2" $P/admin/jobs/$JOB/scripts/1 -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: ok" \
    -H "$CT_RSP" --data-binary $'\xaf\x80\x80\x01\x01\x23\x02\x90\x00\x00\x00'
expect_status 404 "phone2 answers phone1's script"
api GET $P/jobs/$JOB "$T2"
expect_status 403 "a device reads the submitters' view of a job"
api GET $P/device "$T2"
[ "$(jq -r .imei "$TSMD_WORK/resp")" = $IMEI2 ] || fail "phone2's token is phone2"
stream "$T2" "$TSMD_WORK/s2"
S2=$STREAM_PID
stream "$T1" "$TSMD_WORK/s1"
S1=$STREAM_PID
wait_for "$TSMD_WORK/s1" "\"job\":\"$JOB\""
kill "$S2" 2>/dev/null || true
wait "$S2" 2>/dev/null || true
! grep -qF "\"job\":\"$JOB\"" "$TSMD_WORK/s2" || fail "phone2's stream carried phone1's job"
job_is "$JOB" "delivering 1 none" "phone2's attempts"
echo "another device's: phone2's token on phone1's job: 404 (audited as denials), its stream without phone1's events"

# ---- revoked ---------------------------------------------------------------------
# phone1's stream is open (above); revoking its token closes it at once.
api DELETE /admin/v1/tokens/"$T1_ID" "$OP_TOKEN"
case $API_STATUS in 200 | 204) ;; *) fail "revoke: $API_STATUS $(cat "$TSMD_WORK/resp")" ;; esac
for _ in $(seq 1 200); do
    kill -0 "$S1" 2>/dev/null || break
    sleep 0.05
done
if kill -0 "$S1" 2>/dev/null; then
    fail "phone1's stream is still open after its token was revoked"
fi
wait "$S1" 2>/dev/null || true
curl -s "$TSMD_URL/metrics" -H "Authorization: Bearer $OP_TOKEN" >"$TSMD_WORK/metrics"
grep -q '^mno_orange_streams_revoked_total 1$' "$TSMD_WORK/metrics" ||
    fail "metric: $(grep streams "$TSMD_WORK/metrics")"
grep -q '^mno_orange_device_streams 0$' "$TSMD_WORK/metrics" || fail "no stream left"
api POST $P/device/heartbeat "$T1" '{}'
expect_status 401 "a heartbeat with the revoked token"
api GET $P/device/stream "$T1"
expect_status 401 "a stream with the revoked token"
admin "$T1" $P/admin/jobs/$JOB -H "$PROTO" -H "$FROM1"
expect_status 401 "a session with the revoked token"
job_is "$JOB" "delivering 1 none" "refusals of the revoked token"
# Refusals are audited by the node's sealer (queued, written within 50 ms).
audited() { # OUTCOME-PREFIX JQ-CONDITION -> count
    jq "[.items[] | select((.outcome | startswith(\"$1\")) and $2)] | length" "$TSMD_WORK/resp"
}
for _ in $(seq 1 100); do
    api GET "/admin/v1/audit?limit=200" "$OP_TOKEN"
    [ "$(audited 401 ".resource == \"$P/admin/jobs/$JOB\"")" = 4 ] &&
        [ "$(audited 404 ".principal_id == $D2")" = 3 ] && break
    sleep 0.1
done
[ "$(audited 401 ".resource == \"$P/admin/jobs/$JOB\"")" = 4 ] ||
    fail "refused sessions audited: $(head -c 600 "$TSMD_WORK/resp")"
[ "$(audited 404 ".principal_id == $D2")" = 3 ] || fail "phone2's tries audited as denials"
read -r _ T1 <<<"$(token "$D1")"
api GET $P/device "$T1"
expect_status 200 "a new token works"
echo "revoked: phone1's open stream closed by the server, then 401 (heartbeat, stream, session); a new token works"

# ---- malformed admin-session messages ------------------------------------------
admin "$T1" $P/admin/jobs/$JOB -H "X-Admin-Protocol: globalplatform-remote-admin/1.1" -H "$FROM1"
expect_status 400 "another protocol version"
field_is X-Admin-Protocol "protocol version"
[ -n "$(hdr X-Admin-Protocol)" ] || fail "a refusal carries X-Admin-Protocol"
admin "$T1" $P/admin/jobs/$JOB -H "$PROTO"
expect_status 400 "no X-Admin-From"
field_is X-Admin-From "no X-Admin-From"
admin "$T1" $P/admin/jobs/$JOB -H "$PROTO" -H "X-Admin-From: //se-id/cin/$CIN1"
expect_status 400 "X-Admin-From without the agent"
field_is X-Admin-From "X-Admin-From without the agent"
admin "$T1" $P/admin/jobs/$JOB -H "$PROTO" -H "X-Admin-From: //se-id/cin/$CIN1;//agent-id/imei/${IMEI1}0"
expect_status 400 "a 16-digit IMEI"
admin "$T1" $P/admin/jobs/$JOB -H "$PROTO" -H "X-Admin-From: //se-id/cin/0102030;//agent-id/imei/$IMEI1"
expect_status 400 "an odd CIN"
admin "$T1" $P/admin/jobs/$JOB -H "$PROTO" -H "$FROM1" -H "X-Admin-Resume: yes"
expect_status 400 "X-Admin-Resume other than true"
field_is X-Admin-Resume "X-Admin-Resume"
job_is "$JOB" "delivering 1 none" "refused openings"

admin "$T1" $P/admin/jobs/$JOB -H "$PROTO" -H "$FROM1"
expect_status 200 "the session opens"
NEXT=$(hdr X-Admin-Next-URI)
[ "$(xxd -p "$TSMD_WORK/resp" | tr -d '\n')" = ae80220580ca9f7f000000 ] ||
    fail "command script: $(xxd -p "$TSMD_WORK/resp")"
job_is "$JOB" "running 1 none" "opened"
bad() { # BYTES-printf STATUS-HEADER WANT-HTTP WANT-FIELD DESCRIPTION [CT]
    printf "$1" >"$TSMD_WORK/bad.bin"
    admin "$T1" "$NEXT" -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: $2" \
        -H "${6:-$CT_RSP}" --data-binary @"$TSMD_WORK/bad.bin"
    expect_status "$3" "$5"
    field_is "$4" "$5"
    jq -e '.error.message | length > 0' "$TSMD_WORK/resp" >/dev/null || fail "$5: no message"
    cp "$TSMD_WORK/resp" "$TSMD_WORK/bad.resp"
    job_is "$JOB" "running 1 none" "$5"
}
bad '\xaf\x80\x80\x01\x01\x23\x05\x90\x00' ok 400 body "a truncated response script"
[ "$(jq -r .error.code "$TSMD_WORK/bad.resp")" = bad_script ] || fail "code bad_script"
jq -r .error.message "$TSMD_WORK/bad.resp" | grep -q offset || fail "the message names the offset"
bad '\xaf\x80\x80\x01\x01\x23\x02\x90\x00\x00\x00\xff' ok 400 body "bytes after the end"
bad '\xae\x80\x22\x05\x80\xca\x9f\x7f\x00\x00\x00' ok 400 body "a command script sent back"
bad '\xaf\x80\x80\x01\x00\x00\x00' ok 400 body "a count of 0"
bad '\xaf\x80\x80\x01\x01\x23\x01\x90\x00\x00' ok 400 body "a 1-byte R-APDU"
bad '' ok 400 body "status ok without a body"
bad '\xaf\x80\x00\x00' security-error 400 body "a body with another status"
bad '\xaf\x80\x80\x01\x01\x23\x02\x90\x00\x00\x00' ok 400 Content-Type "another content type" \
    "Content-Type: application/json"
bad '\xaf\x80\x80\x01\x01\x23\x02\x90\x00\x00\x00' OK 400 X-Admin-Script-Status "a status in capitals"

printf '\xaf\x80\x80\x01\x01\x23\x02\x90\x00\x00\x00' >"$TSMD_WORK/rsp.bin"
admin "$T1" "$NEXT" -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: ok" -H "$CT_RSP" \
    --data-binary @"$TSMD_WORK/rsp.bin"
expect_status 204 "the well-formed answer ends the session"
api GET $P/jobs/$JOB "$OP_TOKEN"
[ "$(jq -r '"\(.state) \(.scripts[0].rapdus | length)"' "$TSMD_WORK/resp")" = "done 1" ] ||
    fail "the job is done: $(cat "$TSMD_WORK/resp")"

echo "malformed: 6 openings and 9 response POSTs refused (400, field named), the job unchanged; the good answer: done"
tsmd_stop
echo "mno.credentials: ok"
