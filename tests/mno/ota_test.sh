#!/usr/bin/env bash
# mno.ota (issue 10 points 1-3 server side, docs/ota.md, docs/mno.md): a real
# tsmd with two mno instances on SQLite (or PostgreSQL: ota_test.sh TSMD pg
# under tests/pg/with_pg.sh), driven over HTTP the way se-agent drives it.
#
# - enrolment checks the device principal (kind, mno attribute); status by
#   MSISDN, IMSI and IMEI; registration, location update, heartbeat, detach;
#   a heartbeat of an offline device is 409 not_registered; lease expiry
#   (on mno:vodafone, whose lease is 2 s);
#   platform events (registration, detach, lease_expired);
# - the SE list mirror refuses an unknown CIN and changes nothing;
# - a scripted job: persisted before acknowledged (Idempotency-Key replays),
#   waits while the device is offline, is woken at registration (priority
#   first), runs through an admin session byte for byte as docs/ota.md §8
#   (200 with X-Admin-Next-URI, then 204), results by polling;
# - malformed admin messages: each a precise error, nothing changes;
#   another device's job is 404; a repeated POST gets the same answer;
# - a destructive job interrupted mid-run ends outcome_unknown and never
#   runs again by itself; a non-destructive one goes back to the queue;
# - failed EXTERNAL AUTHENTICATEs per SE and key version stop the SE's jobs at
#   the limit with an alert (audit, metric, event); clearing it lets jobs run;
# - an interactive job: batches, 202 while the submitter thinks, close, 204;
#   the submitter's long-poll (GET /jobs/{id}?wait=&seq=) answered by the
#   agent's responses, or by its deadline;
# - backstage: add / verify / query / delete requests to the agent, its
#   answer (first one counts) becomes the mirror, unknown CINs refused;
# - the push stream: 409 before registration, job, cancel and backstage events, a
#   second stream replaces the first, Last-Event-ID resumes;
# - the other instance (mno:vodafone) sees none of mno:orange's devices and jobs.
#
# - signed callbacks: a job that ends is POSTed to its callback URL, signed
#   ES256 over "timestamp.body" with the key of GET /callback-key;
# - mno_client (through client_probe): status, submit (replayed by its
#   Idempotency-Key), job, cancel, list; a malformed id is refused before
#   anything is sent.
#
# usage: ota_test.sh TSMD [sqlite|pg] [CLIENT_PROBE]
set -euo pipefail

TSMD=$1
BACKEND=${2:-sqlite}
PROBE=${3:-}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"

need_tools curl jq xxd
tsmd_work_init mno-ota
if [ "$BACKEND" = pg ]; then
    [ -n "${OPENTSM_TEST_PG_URL:-}" ] || fail "OPENTSM_TEST_PG_URL is not set (run under tests/pg/with_pg.sh)"
    DB=$OPENTSM_TEST_PG_URL
else
    DB="sqlite:$TSMD_WORK/var/tsmd.db"
fi
# db.pool=2: no request may hold a connection while it waits for another
# one or for the network (pool 1 stalled here under a loaded machine's
# background passes; the tsm, pay and cms tests keep db.pool=1).
tsmd_config "$DB" "log.level=warn" "db.pool=2" "services.enabled=tsm, mno:orange, mno:vodafone" \
    "mno.orange.lease_s=600" "mno.orange.heartbeat_s=200" "mno.orange.sweep_ms=50" \
    "mno.orange.auth_fail_limit=2" "mno.orange.backoff_s=0" \
    "mno.vodafone.lease_s=2" "mno.vodafone.heartbeat_s=1" "mno.vodafone.sweep_ms=50"
tsmd_bootstrap ops
tsmd_start

P=/mno/orange/v1
PV=/mno/vodafone/v1
# shellcheck source=ram.sh
. "$HERE/ram.sh" # PROTO, CT_RSP
CIN=0102030405060708090A
CIN2=0A0B0C0D0E0F10111213

# device NAME IMEI IMSI MNO: a device principal; prints its id.
device() {
    api POST /admin/v1/principals "$OP_TOKEN" \
        "{\"kind\":\"device\",\"name\":\"$1\",\"imei\":\"$2\",\"imsi\":\"$3\",\"mno\":\"$4\"}" \
        -H "Idempotency-Key: dev-$1"
    case $API_STATUS in 200 | 201) ;; *) fail "device $1: $API_STATUS $(cat "$TSMD_WORK/resp")" ;; esac
    jq -er .id "$TSMD_WORK/resp"
}

D1=$(device phone1 356938035643809 208011234567890 orange)
D2=$(device phone2 356938035643817 208011234567891 orange)
DV=$(device phone3 356938035643825 208101234567892 vodafone)
SP=$(tsmd_principal service_provider bank)
T1=$(tsmd_token "$D1")
T2=$(tsmd_token "$D2")
TV=$(tsmd_token "$DV")
TSP=$(tsmd_token "$SP")

# ---- enrolment ----------------------------------------------------------
api POST $P/devices "$OP_TOKEN" "{\"principal_id\":$DV,\"msisdn\":\"33600000003\"}" \
    -H "Idempotency-Key: e-bad"
expect_status 400 "a vodafone device enrolled on orange"
[ "$(jq -r .error.field "$TSMD_WORK/resp")" = principal_id ] || fail "field of the refusal"
api POST $P/devices "$OP_TOKEN" "{\"principal_id\":$SP,\"msisdn\":\"33600000003\"}" \
    -H "Idempotency-Key: e-sp"
expect_status 400 "an SP enrolled as a device"
api POST $P/devices "$TSP" "{\"principal_id\":$D1,\"msisdn\":\"33600000001\"}" \
    -H "Idempotency-Key: e-1sp"
expect_status 403 "an SP enrols"
api POST $P/devices "$OP_TOKEN" \
    "{\"principal_id\":$D1,\"msisdn\":\"33600000001\",\"cins\":[\"$CIN\"]}" \
    -H "Idempotency-Key: e-1"
expect_status 201 "enrol phone1"
DEV1=$(jq -er .id "$TSMD_WORK/resp")
[ "$(jq -r .imei "$TSMD_WORK/resp")" = 356938035643809 ] || fail "imei from the principal"
api POST $P/devices "$OP_TOKEN" \
    "{\"principal_id\":$D1,\"msisdn\":\"33600000001\",\"cins\":[\"$CIN\"]}" \
    -H "Idempotency-Key: e-1"
expect_status 201 "enrolment replay"
[ "$(jq -r .id "$TSMD_WORK/resp")" = "$DEV1" ] || fail "replay answers the first device"
api POST $P/devices "$OP_TOKEN" "{\"principal_id\":$D2,\"msisdn\":\"33600000001\"}" \
    -H "Idempotency-Key: e-dup"
expect_status 409 "a second device with the same MSISDN"
api POST $P/devices "$OP_TOKEN" \
    "{\"principal_id\":$D2,\"msisdn\":\"33600000002\",\"cins\":[\"$CIN2\"]}" \
    -H "Idempotency-Key: e-2"
expect_status 201 "enrol phone2"
DEV2=$(jq -er .id "$TSMD_WORK/resp")

# ---- status, registration, lease -------------------------------------------
status_of() { # KEY VALUE -> state
    api GET "$P/status?$1=$2" "$OP_TOKEN"
    expect_status 200 "status by $1"
    jq -r .state "$TSMD_WORK/resp"
}
[ "$(status_of msisdn 33600000001)" = offline ] || fail "a new device is offline"
api GET "$P/status?msisdn=33600000001&imei=356938035643809" "$OP_TOKEN"
expect_status 400 "two keys at once"
api GET "$P/status?msisdn=3360000000x" "$OP_TOKEN"
expect_status 400 "not digits"
api GET "$P/status?msisdn=33699999999" "$OP_TOKEN"
expect_status 404 "unknown MSISDN"
api POST $P/device/heartbeat "$T1" '{}'
expect_status 409 "heartbeat while offline"
[ "$(api_err_code)" = not_registered ] || fail "code not_registered"
api POST $P/device/register "$T1" '{"location_area":"208-01-4A2F"}'
expect_status 200 "register"
[ "$(jq -r .lease_s "$TSMD_WORK/resp")" = 600 ] || fail "lease_s told"
api POST $P/device/register "$T1" '{"location_area":"208-01-4A2F\n"}'
expect_status 400 "a location area with a newline"
[ "$(jq -r .error.field "$TSMD_WORK/resp")" = location_area ] || fail "field location_area"
[ "$(status_of imsi 208011234567890)" = online ] || fail "online after register"
api POST $P/device/location "$T1" '{"location_area":"208-01-4B00"}'
expect_status 200 "location update"
api GET "$P/status?imei=356938035643809" "$OP_TOKEN"
[ "$(jq -r .location_area "$TSMD_WORK/resp")" = 208-01-4B00 ] || fail "location area kept"
[ "$(jq -r .last_seen "$TSMD_WORK/resp")" != null ] || fail "last_seen"
api POST $PV/device/register "$T1" '{}'
expect_status 404 "phone1 on the other instance"
api GET "$PV/status?msisdn=33600000001" "$OP_TOKEN"
expect_status 404 "the other instance knows nothing of phone1"
api POST $P/device/detach "$T1" '{}'
expect_status 200 "detach"
[ "$(status_of msisdn 33600000001)" = offline ] || fail "offline after detach"
api POST $P/device/register "$T1" '{}'
expect_status 200 "register again"
api GET "$P/events" "$OP_TOKEN"
expect_status 200 "events"
EV=$(jq -r '[.items[].event] | join(",")' "$TSMD_WORK/resp")
[ "$EV" = "registration,detach,registration" ] || fail "events: $EV"
# Lease expiry (mno:vodafone, lease_s=2): no heartbeat makes the device offline.
api POST $PV/devices "$OP_TOKEN" "{\"principal_id\":$DV,\"msisdn\":\"33600000003\"}" \
    -H "Idempotency-Key: e-v"
expect_status 201 "enrol phone3 on vodafone"
api POST $PV/device/register "$TV" '{}'
expect_status 200 "phone3 registers"
for _ in $(seq 1 200); do
    api GET "$PV/status?msisdn=33600000003" "$OP_TOKEN"
    [ "$(jq -r .state "$TSMD_WORK/resp")" = offline ] && break
    sleep 0.05
done
[ "$(jq -r .state "$TSMD_WORK/resp")" = offline ] || fail "lease did not expire"
api GET "$PV/events" "$OP_TOKEN"
EV=$(jq -r '[.items[].event] | join(",")' "$TSMD_WORK/resp")
[ "$EV" = "registration,lease_expired" ] || fail "vodafone events: $EV"
api POST $PV/device/heartbeat "$TV" '{}'
expect_status 409 "a heartbeat after the lease ran out"

# ---- the SE list mirror -------------------------------------------------
api PUT $P/device/secure-elements "$T1" \
    "{\"items\":[{\"cin\":\"$CIN2\",\"reader\":\"SIM1\",\"iin\":null,\"cplc\":null,\"card_data\":null,\"verified_at\":1}]}"
expect_status 400 "a CIN not known for this device"
[ "$(jq -r .error.field "$TSMD_WORK/resp")" = "items[0].cin" ] || fail "field items[0].cin"
api PUT $P/device/secure-elements "$T1" \
    "{\"items\":[{\"cin\":\"$CIN\",\"reader\":\"SIM1\",\"iin\":null,\"cplc\":\"4790\",\"card_data\":null,\"verified_at\":1700000000}]}"
expect_status 200 "mirror the SE list"
api GET $P/devices/$DEV1/secure-elements "$OP_TOKEN"
[ "$(jq -r '.items[0].reader + " " + .items[0].cin' "$TSMD_WORK/resp")" = "SIM1 $CIN" ] ||
    fail "mirror: $(cat "$TSMD_WORK/resp")"

# ---- a scripted job to an offline device ------------------------------------
api POST $P/device/detach "$T1" '{}'
expect_status 200 "phone1 off"
submit() { # TOKEN BODY KEY -> job id
    api POST $P/jobs "$1" "$2" -H "Idempotency-Key: $3"
    expect_status 201 "submit $3"
    jq -er .id "$TSMD_WORK/resp"
}
JOB_LOW=$(submit "$TSP" '{"msisdn":"33600000001","se":{"reader":"SIM1"},"kind":"scripted","priority":1,"apdus":["80CA006600"]}' j-low)
JOB=$(submit "$TSP" '{"msisdn":"33600000001","se":{"reader":"SIM1"},"kind":"scripted","priority":7,"apdus":["80CA9F7F00","80CA004200"]}' j-1)
api POST $P/jobs "$TSP" '{"msisdn":"33600000001","se":{"reader":"SIM1"},"kind":"scripted","priority":7,"apdus":["80CA9F7F00","80CA004200"]}' \
    -H "Idempotency-Key: j-1"
expect_status 201 "job replay"
[ "$(jq -r .id "$TSMD_WORK/resp")" = "$JOB" ] || fail "replay answers the same job"
api POST $P/jobs "$TSP" '{"msisdn":"33600000001","se":{"reader":"SIM1"},"kind":"scripted","apdus":["80CA"]}' \
    -H "Idempotency-Key: j-bad"
expect_status 400 "a 2-byte C-APDU"
[ "$(jq -r .error.field "$TSMD_WORK/resp")" = "apdus[0]" ] || fail "field apdus[0]"
api POST $P/jobs "$TSP" '{"msisdn":"33600000001","se":{"reader":"SIM1"},"kind":"scripted","apdus":["80CA9F7F0501"]}' \
    -H "Idempotency-Key: j-bad2"
expect_status 400 "a malformed C-APDU"
api GET $P/jobs/$JOB "$TSP"
[ "$(jq -r .state "$TSMD_WORK/resp")" = queued ] || fail "offline: the job waits"
api GET $P/jobs/$JOB "$T2"
expect_status 403 "a device reads a job"
SP2=$(tsmd_principal service_provider other)
TSP2=$(tsmd_token "$SP2")
api GET $P/jobs/$JOB "$TSP2"
expect_status 404 "another SP's job"

wait_state() { # JOB STATE
    local s=
    for _ in $(seq 1 100); do
        api GET $P/jobs/$1 "$OP_TOKEN"
        s=$(jq -r .state "$TSMD_WORK/resp")
        [ "$s" = "$2" ] && return 0
        sleep 0.05
    done
    fail "job $1: state $s, want $2"
}
api POST $P/device/register "$T1" '{}'
expect_status 200 "phone1 back on"
[ "$(jq -r .pending_jobs "$TSMD_WORK/resp")" = 2 ] || fail "two pending jobs"
wait_state "$JOB" delivering
api GET $P/jobs/$JOB_LOW "$OP_TOKEN"
[ "$(jq -r .state "$TSMD_WORK/resp")" = queued ] || fail "the lower priority waits its turn"
# se-agent registers twice at start (its main loop, then its push client):
# the re-registration re-wakes the job in place (a second job event), it does
# not bounce it through the queue for another attempt (the demo's job showed
# attempts 2 for one run, and a second, empty session).
api POST $P/device/register "$T1" '{}'
expect_status 200 "phone1 registers again (reconnection)"
api GET $P/jobs/$JOB "$OP_TOKEN"
[ "$(jq -r '.state + " " + (.attempts|tostring)' "$TSMD_WORK/resp")" = "delivering 1" ] ||
    fail "a re-registration costs no attempt: $(cat "$TSMD_WORK/resp")"
# ... and the wake-up it may have missed is sent again: two job events.
curl -s -N --max-time 30 -H "Authorization: Bearer $T1" -H "Accept: text/event-stream" \
    -H "Last-Event-ID: 0" "$TSMD_URL$P/device/stream" >"$TSMD_WORK/rewake" 2>/dev/null &
RW=$!
for _ in $(seq 1 200); do
    [ "$(grep -cF "\"job\":\"$JOB\"" "$TSMD_WORK/rewake")" -ge 2 ] && break
    sleep 0.05
done
kill "$RW" 2>/dev/null || true
wait "$RW" 2>/dev/null || true
[ "$(grep -cF "\"job\":\"$JOB\"" "$TSMD_WORK/rewake")" = 2 ] ||
    fail "one re-wake event: $(cat "$TSMD_WORK/rewake")"

FROM1="X-Admin-From: //se-id/cin/$CIN;//agent-id/imei/356938035643809"
admin() { # TOKEN PATH [curl args...] -> status in API_STATUS, headers in resp.h
    local tok=$1 path=$2
    shift 2
    API_STATUS=$(curl -s -X POST -o "$TSMD_WORK/resp" -D "$TSMD_WORK/resp.h" -w '%{http_code}' \
        -H "Authorization: Bearer $tok" "$@" "$TSMD_URL$path") || API_STATUS=000
}
hdr() { grep -i "^$1:" "$TSMD_WORK/resp.h" | head -1 | cut -d' ' -f2- | tr -d '\r'; }

# Malformed openings change nothing.
admin "$T1" $P/admin/jobs/$JOB -H "$FROM1"
expect_status 400 "no X-Admin-Protocol"
[ "$(jq -r .error.field "$TSMD_WORK/resp")" = X-Admin-Protocol ] || fail "field X-Admin-Protocol"
admin "$T1" $P/admin/jobs/$JOB -H "$PROTO" -H "X-Admin-From: //se-id/cin/0102;//agent-id/imei/356938035643809"
expect_status 400 "another SE"
admin "$T1" $P/admin/jobs/$JOB -H "$PROTO" -H "X-Admin-From: //se-id/cin/$CIN;//agent-id/imei/356938035643817"
expect_status 400 "another IMEI"
admin "$T1" $P/admin/jobs/$JOB -H "$PROTO" -H "X-Admin-From: //se-id/cin/0102030405060708090a;//agent-id/imei/356938035643809"
expect_status 400 "lower-case CIN"
admin "$T1" $P/admin/jobs/$JOB -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: ok"
expect_status 400 "a status on the first POST"
admin "$T1" $P/admin/jobs/$JOB -H "$PROTO" -H "$FROM1" --data-binary x
expect_status 400 "a body on the first POST"
admin "$T2" $P/admin/jobs/$JOB -H "$PROTO" -H "X-Admin-From: //se-id/cin/$CIN;//agent-id/imei/356938035643817"
expect_status 404 "phone2 opens phone1's job"
admin "$OP_TOKEN" $P/admin/jobs/$JOB -H "$PROTO" -H "$FROM1"
expect_status 403 "an operator is not a device"
admin - $P/admin/jobs/$JOB -H "$PROTO" -H "$FROM1"
expect_status 401 "no credential"
api GET $P/jobs/$JOB "$OP_TOKEN"
[ "$(jq -r .state "$TSMD_WORK/resp")" = delivering ] || fail "refused openings changed the job"

# The session of docs/ota.md §8.
admin "$T1" $P/admin/jobs/$JOB -H "$PROTO" -H "$FROM1"
expect_status 200 "open"
NEXT=$(hdr X-Admin-Next-URI)
[ "$NEXT" = "$P/admin/jobs/$JOB/scripts/1" ] || fail "Next-URI $NEXT"
[ "$(hdr X-Admin-Targeted-Application)" = "//aid/A000000151/000000" ] || fail "targeted application"
[ "$(hdr Content-Type)" = "application/vnd.globalplatform.card-content-mgt;version=1.0" ] ||
    fail "content type $(hdr Content-Type)"
[ "$(xxd -p "$TSMD_WORK/resp" | tr -d '\n')" = ae80220580ca9f7f00220580ca0042000000 ] ||
    fail "command script: $(xxd -p "$TSMD_WORK/resp")"
admin "$T1" $P/admin/jobs/$JOB -H "$PROTO" -H "$FROM1"
expect_status 409 "a second opening without X-Admin-Resume"
[ "$(api_err_code)" = session_open ] || fail "code session_open"
admin "$T1" $P/admin/jobs/$JOB -H "$PROTO" -H "$FROM1" -H "X-Admin-Resume: true"
expect_status 200 "resume the opening: script 1 again"
[ "$(xxd -p "$TSMD_WORK/resp" | tr -d '\n')" = ae80220580ca9f7f00220580ca0042000000 ] ||
    fail "resumed script"

printf '\xaf\x80\x80\x01\x02\x23\x0b\x9f\x7f\x06\x47\x90\x51\x68\x47\x01\x90\x00\x23\x07\x42\x03\x12\x34\x56\x90\x00\x00\x00' >"$TSMD_WORK/rsp.bin"
printf '\xaf\x80\x80\x01\x03\x23\x02\x90\x00\x00\x00' >"$TSMD_WORK/bad.bin"
admin "$T1" "$NEXT" -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: ok" -H "$CT_RSP" \
    --data-binary @"$TSMD_WORK/bad.bin"
expect_status 400 "count above the C-APDUs sent"
[ "$(api_err_code)" = bad_script ] || fail "code bad_script"
jq -r .error.message "$TSMD_WORK/resp" | grep -q 'offset 2' || fail "message names the offset"
admin "$T1" "$NEXT" -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: ok" \
    -H "Content-Type: application/octet-stream" --data-binary @"$TSMD_WORK/rsp.bin"
expect_status 400 "another content type"
admin "$T1" "$NEXT" -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: maybe" -H "$CT_RSP" \
    --data-binary @"$TSMD_WORK/rsp.bin"
expect_status 400 "an unknown script status"
admin "$T1" $P/admin/jobs/$JOB/scripts/2 -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: ok" \
    -H "$CT_RSP" --data-binary @"$TSMD_WORK/rsp.bin"
expect_status 409 "a script that does not exist"
api GET $P/jobs/$JOB "$OP_TOKEN"
[ "$(jq -r '.state + " " + (.scripts[0].rapdus|tostring)' "$TSMD_WORK/resp")" = "running null" ] ||
    fail "refused responses changed the job: $(cat "$TSMD_WORK/resp")"
admin "$T1" "$NEXT" -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: ok" -H "$CT_RSP" \
    --data-binary @"$TSMD_WORK/rsp.bin"
expect_status 204 "the responses end the session"
[ -z "$(hdr X-Admin-Next-URI)" ] || fail "no Next-URI on 204"
[ -n "$(hdr X-Admin-Protocol)" ] || fail "X-Admin-Protocol on 204"
admin "$T1" "$NEXT" -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: ok" -H "$CT_RSP" \
    -H "X-Admin-Resume: true" --data-binary @"$TSMD_WORK/rsp.bin"
expect_status 204 "a repeated POST gets the same answer"
admin "$T1" "$NEXT" -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: ok" -H "$CT_RSP" \
    -H "X-Admin-Resume: true" --data-binary @"$TSMD_WORK/bad.bin"
expect_status 400 "a repeat with malformed responses"
api GET $P/jobs/$JOB "$TSP"
[ "$(jq -r '.state + " " + (.attempts|tostring)' "$TSMD_WORK/resp")" = "done 1" ] ||
    fail "job done at its first attempt: $(cat "$TSMD_WORK/resp")"
[ "$(jq -r '.scripts[0].rapdus | join(" ")' "$TSMD_WORK/resp")" = "9F7F064790516847019000 42031234569000" ] ||
    fail "R-APDUs: $(jq -c .scripts "$TSMD_WORK/resp")"
# The lower priority job is next.
wait_state "$JOB_LOW" delivering

# ---- interruption -----------------------------------------------------------
# JOB_LOW is not destructive: the agent restarts mid-script -> back to the queue.
admin "$T1" $P/admin/jobs/$JOB_LOW -H "$PROTO" -H "$FROM1"
expect_status 200 "open the low job"
admin "$T1" $P/admin/jobs/$JOB_LOW/scripts/1 -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: interrupted"
expect_status 204 "interrupted"
api GET $P/jobs/$JOB_LOW "$OP_TOKEN"
[ "$(jq -r .state "$TSMD_WORK/resp")" != outcome_unknown ] || fail "a non-destructive job is retried"
JOB_D=$(submit "$TSP" '{"msisdn":"33600000001","se":{"cin":"0102030405060708090A"},"kind":"scripted","priority":9,"destructive":true,"apdus":["80E400800A4F08A000000151000001"]}' j-d)
# Run JOB_LOW to its end first when it comes back (one job at a time per device).
for _ in $(seq 1 100); do
    api GET $P/jobs/$JOB_D "$OP_TOKEN"
    [ "$(jq -r .state "$TSMD_WORK/resp")" = delivering ] && break
    api GET $P/jobs/$JOB_LOW "$OP_TOKEN"
    if [ "$(jq -r .state "$TSMD_WORK/resp")" = delivering ]; then
        admin "$T1" $P/admin/jobs/$JOB_LOW -H "$PROTO" -H "$FROM1"
        printf '\xaf\x80\x80\x01\x01\x23\x02\x90\x00\x00\x00' >"$TSMD_WORK/ok1.bin"
        admin "$T1" $P/admin/jobs/$JOB_LOW/scripts/1 -H "$PROTO" -H "$FROM1" \
            -H "X-Admin-Script-Status: ok" -H "$CT_RSP" --data-binary @"$TSMD_WORK/ok1.bin"
    fi
    sleep 0.05
done
wait_state "$JOB_D" delivering
admin "$T1" $P/admin/jobs/$JOB_D -H "$PROTO" -H "$FROM1"
expect_status 200 "open the destructive job"
# The phone goes off while the job runs.
api POST $P/device/detach "$T1" '{}'
expect_status 200 "detach mid-job"
wait_state "$JOB_D" outcome_unknown
api GET $P/jobs/$JOB_D "$TSP"
[ "$(jq -r .reason "$TSMD_WORK/resp")" = detach ] || fail "reason detach"
api POST $P/device/register "$T1" '{}'
expect_status 200 "phone1 back"
sleep 0.3
api GET $P/jobs/$JOB_D "$OP_TOKEN"
[ "$(jq -r '.state + " " + (.attempts|tostring)' "$TSMD_WORK/resp")" = "outcome_unknown 1" ] ||
    fail "outcome_unknown never runs again by itself: $(cat "$TSMD_WORK/resp")"
api POST $P/jobs/$JOB_D/resolve "$TSP" '{"action":"fail"}'
expect_status 200 "the submitter gives up"
[ "$(jq -r .state "$TSMD_WORK/resp")" = failed ] || fail "resolved to failed"
api POST $P/jobs/$JOB_D/resolve "$TSP" '{"action":"requeue"}'
expect_status 409 "resolve a failed job"

# ---- EXTERNAL AUTHENTICATE failures -------------------------------------------
ea_job() { # KEY -> runs one IU + EA job whose EA fails 6982
    local j
    j=$(submit "$TSP" '{"msisdn":"33600000001","se":{"cin":"0102030405060708090A"},"kind":"scripted","priority":9,"apdus":["8050300008AABBCCDDEEFF001100","848233001011223344556677881122334455667788"]}' "$1")
    wait_state "$j" delivering
    admin "$T1" $P/admin/jobs/$j -H "$PROTO" -H "$FROM1"
    expect_status 200 "open EA job $1"
    # IU answer: 10 bytes diversification data, key info 30 03 00, ... 9000; EA: 6982.
    printf '\xaf\x80\x80\x01\x02\x23\x22\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x30\x03\x00\x11\x11\x11\x11\x11\x11\x11\x11\x22\x22\x22\x22\x22\x22\x22\x22\x00\x00\x01\x90\x00\x23\x02\x69\x82\x00\x00' >"$TSMD_WORK/ea.bin"
    admin "$T1" $P/admin/jobs/$j/scripts/1 -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: ok" \
        -H "$CT_RSP" --data-binary @"$TSMD_WORK/ea.bin"
    expect_status 204 "EA job $1 ends"
    wait_state "$j" failed
    echo "$j"
}
api POST $P/device/heartbeat "$T1" '{}'
EA1=$(ea_job ea-1)
api GET $P/jobs/$EA1 "$OP_TOKEN"
[ "$(jq -r '(.stop.index|tostring) + " " + .stop.sw' "$TSMD_WORK/resp")" = "1 6982" ] ||
    fail "stop at EA: $(cat "$TSMD_WORK/resp")"
api POST $P/device/heartbeat "$T1" '{}'
ea_job ea-2 >/dev/null
api GET $P/alerts "$OP_TOKEN"
[ "$(jq -r '.items[0].cin + " " + (.items[0].kvn|tostring) + " " + (.items[0].failures|tostring)' "$TSMD_WORK/resp")" = "$CIN 48 2" ] ||
    fail "alert: $(cat "$TSMD_WORK/resp")"
ALERT=$(jq -r '.items[0].id' "$TSMD_WORK/resp")
api POST $P/jobs "$TSP" '{"msisdn":"33600000001","se":{"cin":"0102030405060708090A"},"kind":"scripted","apdus":["80CA006600"]}' \
    -H "Idempotency-Key: j-blocked"
expect_status 409 "a job for a blocked SE"
[ "$(api_err_code)" = se_blocked ] || fail "code se_blocked"
curl -s "$TSMD_URL/metrics" -H "Authorization: Bearer $OP_TOKEN" >"$TSMD_WORK/metrics"
grep -q '^mno_orange_auth_alerts_total 1' "$TSMD_WORK/metrics" || fail "alert metric"
api GET "/admin/v1/audit?limit=1000" "$OP_TOKEN"
jq -e '[.items[] | select(.action == "mno.se.auth_blocked")] | length == 1' "$TSMD_WORK/resp" >/dev/null ||
    fail "alert audited"
api GET "$P/events" "$OP_TOKEN"
jq -e '[.items[] | select(.event == "alert")] | length == 1' "$TSMD_WORK/resp" >/dev/null ||
    fail "alert event"
api POST $P/alerts/$ALERT/clear "$OP_TOKEN" '{}'
expect_status 200 "clear the alert"
submit "$TSP" '{"msisdn":"33600000001","se":{"cin":"0102030405060708090A"},"kind":"scripted","apdus":["80CA006600"]}' j-after >/dev/null

# ---- an interactive job -------------------------------------------------------
api POST $P/device/heartbeat "$T1" '{}'
JI=$(submit "$TSP" '{"msisdn":"33600000001","se":{"cin":"0102030405060708090A"},"kind":"interactive","priority":9}' j-i)
api POST $P/jobs/$JI/batches "$TSP" '{"apdus":["80CA9F7F00"]}' -H "Idempotency-Key: b-1"
expect_status 201 "first batch"
api POST $P/jobs/$JI/batches "$TSP" '{"apdus":["80CA9F7F00"]}' -H "Idempotency-Key: b-1x"
expect_status 409 "a batch while the previous one has no responses"
# Drain whatever runs before it.
for _ in $(seq 1 100); do
    api GET $P/jobs/$JI "$OP_TOKEN"
    [ "$(jq -r .state "$TSMD_WORK/resp")" = delivering ] && break
    for j in $(curl -s "$TSMD_URL$P/jobs?limit=1000" -H "Authorization: Bearer $OP_TOKEN" |
        jq -r '.items[] | select(.state == "delivering") | .id'); do
        admin "$T1" $P/admin/jobs/$j -H "$PROTO" -H "$FROM1"
        admin "$T1" $P/admin/jobs/$j/scripts/1 -H "$PROTO" -H "$FROM1" \
            -H "X-Admin-Script-Status: ok" -H "$CT_RSP" --data-binary @"$TSMD_WORK/ok1.bin"
    done
    api POST $P/device/heartbeat "$T1" '{}'
    sleep 0.05
done
wait_state "$JI" delivering
admin "$T1" $P/admin/jobs/$JI -H "$PROTO" -H "$FROM1"
expect_status 200 "open the interactive job"
# The submitter long-polls for batch 1's answers.
api GET "$P/jobs/$JI?wait=61" "$TSP"
expect_status 400 "wait above 60 s"
api GET "$P/jobs/$JI?wait=1&seq=x" "$TSP"
expect_status 400 "a malformed seq"
curl -s --max-time 40 -H "Authorization: Bearer $TSP" "$TSMD_URL$P/jobs/$JI?wait=30&seq=1" \
    >"$TSMD_WORK/lp1" &
LP=$!
sleep 0.3
kill -0 "$LP" 2>/dev/null || fail "the long-poll answered before the responses came: $(cat "$TSMD_WORK/lp1")"
admin "$T1" $P/admin/jobs/$JI/scripts/1 -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: ok" \
    -H "$CT_RSP" --data-binary @"$TSMD_WORK/ok1.bin"
expect_status 202 "the submitter has not sent the next batch"
[ "$(hdr X-Admin-Next-URI)" = "$P/admin/jobs/$JI/scripts/1" ] || fail "202 Next-URI"
wait "$LP" || fail "the long-poll failed"
[ "$(jq -r '.scripts[0].rapdus | join(",")' "$TSMD_WORK/lp1")" = 9000 ] ||
    fail "the long-poll answer: $(cat "$TSMD_WORK/lp1")"
api GET "$P/jobs/$JI?wait=1&seq=2" "$TSP"
expect_status 200 "a long-poll whose wait runs out answers the job as it is"
[ "$(jq -r .state "$TSMD_WORK/resp")" = running ] || fail "still running"
api POST $P/jobs/$JI/batches "$TSP" '{"apdus":["80CA004200","80CA006600"]}' -H "Idempotency-Key: b-2"
expect_status 201 "second batch"
[ "$(jq -r .seq "$TSMD_WORK/resp")" = 2 ] || fail "seq 2"
admin "$T1" $P/admin/jobs/$JI/scripts/1 -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: ok" \
    -H "X-Admin-Resume: true" -H "$CT_RSP" --data-binary @"$TSMD_WORK/ok1.bin"
expect_status 200 "the repeated POST gets batch 2"
[ "$(hdr X-Admin-Next-URI)" = "$P/admin/jobs/$JI/scripts/2" ] || fail "Next-URI 2"
printf '\xaf\x80\x80\x01\x02\x23\x02\x90\x00\x23\x02\x6a\x88\x00\x00' >"$TSMD_WORK/two.bin"
admin "$T1" $P/admin/jobs/$JI/scripts/2 -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: ok" \
    -H "$CT_RSP" --data-binary @"$TSMD_WORK/two.bin"
expect_status 202 "waiting again"
api POST $P/jobs/$JI/close "$TSP" '{}'
expect_status 200 "close"
admin "$T1" $P/admin/jobs/$JI/scripts/2 -H "$PROTO" -H "$FROM1" -H "X-Admin-Script-Status: ok" \
    -H "X-Admin-Resume: true" -H "$CT_RSP" --data-binary @"$TSMD_WORK/two.bin"
expect_status 204 "closed: the session ends"
api GET $P/jobs/$JI "$TSP"
[ "$(jq -r '.state + " " + (.scripts[1].rapdus | join(","))' "$TSMD_WORK/resp")" = "done 9000,6A88" ] ||
    fail "interactive result: $(cat "$TSMD_WORK/resp")"

# ---- cancel --------------------------------------------------------------
JC=$(submit "$TSP" '{"msisdn":"33600000002","se":{"reader":"eSE1"},"kind":"scripted","apdus":["80CA006600"]}' j-c)
api POST $P/jobs/$JC/cancel "$TSP2" '{}'
expect_status 404 "another SP cancels"
api POST $P/jobs/$JC/cancel "$TSP" '{}'
expect_status 200 "cancel"
[ "$(jq -r .state "$TSMD_WORK/resp")" = cancelled ] || fail "cancelled"
api GET $PV/jobs/$JC "$OP_TOKEN"
expect_status 404 "the other instance has no such job"

# ---- backstage (seed 001) ---------------------------------------------------
api POST $P/devices/$DEV1/backstage "$OP_TOKEN" '{"op":"add"}' -H "Idempotency-Key: bs-0"
expect_status 400 "add without a reader"
api POST $P/devices/$DEV1/backstage "$TSP" '{"op":"query"}' -H "Idempotency-Key: bs-sp"
expect_status 403 "an SP asks the agent"
api POST $P/devices/$DEV1/backstage "$OP_TOKEN" '{"op":"query"}' -H "Idempotency-Key: bs-1"
expect_status 201 "query"
BQ=$(jq -r .id "$TSMD_WORK/resp")
[ "$(jq -r .state "$TSMD_WORK/resp")" = pending ] || fail "pending"
api POST $P/device/backstage/$BQ "$T2" '{"status":"ok","error":null,"secure_elements":[]}'
expect_status 404 "phone2 answers phone1's request"
api POST $P/device/backstage/$BQ "$T1" \
    "{\"status\":\"ok\",\"error\":null,\"secure_elements\":[{\"cin\":\"$CIN2\",\"reader\":\"eSE1\",\"iin\":null,\"cplc\":null,\"card_data\":null,\"verified_at\":5}]}"
expect_status 400 "an answer with an SE the device does not have"
[ "$(jq -r .error.field "$TSMD_WORK/resp")" = "secure_elements[0].cin" ] || fail "field secure_elements[0].cin"
api GET $P/backstage/$BQ "$OP_TOKEN"
[ "$(jq -r .state "$TSMD_WORK/resp")" = pending ] || fail "a refused answer changed the request"
api POST $P/device/backstage/$BQ "$T1" \
    "{\"status\":\"ok\",\"error\":null,\"secure_elements\":[{\"cin\":\"$CIN\",\"reader\":\"SIM1\",\"iin\":\"1234\",\"cplc\":null,\"card_data\":null,\"verified_at\":7}]}"
expect_status 200 "the agent answers"
api GET $P/backstage/$BQ "$OP_TOKEN"
[ "$(jq -r '.state + " " + .secure_elements[0].reader' "$TSMD_WORK/resp")" = "ok SIM1" ] ||
    fail "backstage result: $(cat "$TSMD_WORK/resp")"
api POST $P/devices/$DEV1/backstage "$OP_TOKEN" '{"op":"delete","se":{"reader":"SIM1"}}' \
    -H "Idempotency-Key: bs-2"
expect_status 201 "delete"
BD=$(jq -r .id "$TSMD_WORK/resp")
api POST $P/device/backstage/$BD "$T1" '{"status":"ok","error":null,"secure_elements":[]}'
expect_status 200 "deleted on the agent"
api GET $P/devices/$DEV1/secure-elements "$OP_TOKEN"
[ "$(jq -r '.items | length' "$TSMD_WORK/resp")" = 0 ] || fail "the mirror follows the agent"
api POST $P/device/backstage/$BD "$T1" \
    "{\"status\":\"failed\",\"error\":\"late\",\"secure_elements\":[{\"cin\":\"$CIN\",\"reader\":\"SIM1\",\"iin\":null,\"cplc\":null,\"card_data\":null,\"verified_at\":7}]}"
expect_status 200 "a second answer"
[ "$(jq -r .state "$TSMD_WORK/resp")" = ok ] || fail "the first answer counts"
api GET $P/devices/$DEV1/secure-elements "$OP_TOKEN"
[ "$(jq -r '.items | length' "$TSMD_WORK/resp")" = 0 ] || fail "a second answer changed the mirror"

# ---- the push stream -------------------------------------------------------
stream() { # TOKEN OUT [curl args...]: the device's stream into OUT, in the background
    local tok=$1 out=$2
    shift 2
    curl -s -N --max-time 30 -H "Authorization: Bearer $tok" -H "Accept: text/event-stream" \
        "$@" "$TSMD_URL$P/device/stream" >"$out" 2>/dev/null &
    STREAM_PID=$!
}
wait_in() { # FILE TEXT
    for _ in $(seq 1 200); do
        grep -qF -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    fail "no \"$2\" in $1: $(cat "$1")"
}
api GET $P/device/stream "$T2"
expect_status 409 "a stream before registration"
[ "$(api_err_code)" = not_registered ] || fail "code not_registered (stream)"
api POST $P/device/register "$T2" '{}'
expect_status 200 "phone2 registers"
api GET $P/device/stream "$T2" - -H "Last-Event-ID: 1x"
expect_status 400 "a malformed Last-Event-ID"
stream "$T2" "$TSMD_WORK/s1"
S1=$STREAM_PID
sleep 0.2
JS=$(submit "$TSP" '{"msisdn":"33600000002","se":{"reader":"eSE1"},"kind":"scripted","apdus":["80CA006600"]}' j-s)
wait_in "$TSMD_WORK/s1" "\"job\":\"$JS\""
grep -q '^event: job$' "$TSMD_WORK/s1" || fail "event name job"
EVID=$(grep -B2 "\"job\":\"$JS\"" "$TSMD_WORK/s1" | sed -n 's/^id: //p' | head -1)
[ -n "$EVID" ] || fail "the event has an id: $(cat "$TSMD_WORK/s1")"
grep -F "\"uri\":\"$P/admin/jobs/$JS\"" "$TSMD_WORK/s1" >/dev/null || fail "the event names the session URI"
# A second stream of the same device replaces the first.
stream "$T2" "$TSMD_WORK/s2" -H "Last-Event-ID: $((EVID - 1))"
S2=$STREAM_PID
wait_in "$TSMD_WORK/s2" "\"job\":\"$JS\""
for _ in $(seq 1 100); do kill -0 "$S1" 2>/dev/null || break; sleep 0.05; done
kill -0 "$S1" 2>/dev/null && fail "the older stream was not closed"
wait "$S1" 2>/dev/null || true
api POST $P/jobs/$JS/cancel "$TSP" '{}'
expect_status 200 "cancel a delivering job"
wait_in "$TSMD_WORK/s2" "event: cancel"
api POST $P/devices/$DEV2/backstage "$OP_TOKEN" '{"op":"verify","se":{"reader":"eSE1"}}' \
    -H "Idempotency-Key: bs-3"
expect_status 201 "verify on phone2"
wait_in "$TSMD_WORK/s2" "\"op\":\"verify\",\"se\":{\"cin\":null,\"reader\":\"eSE1\"}"
kill "$S2" 2>/dev/null || true
wait "$S2" 2>/dev/null || true

# ---- mno_client ---------------------------------------------------------------
if [ -n "$PROBE" ]; then
    probe() { "$PROBE" "$TSMD_URL" "$@"; }
    [ "$(probe "$OP_TOKEN" orange status msisdn 33600000002)" = online ] || fail "client: status"
    J=$(probe "$TSP" orange submit '{"msisdn":"33600000002","se":{"reader":"eSE1"},"kind":"scripted","apdus":["80CA006600"]}' cl-1)
    [ "$(probe "$TSP" orange submit '{"msisdn":"33600000002","se":{"reader":"eSE1"},"kind":"scripted","apdus":["80CA006600"]}' cl-1)" = "$J" ] ||
        fail "client: the replay answers the same job"
    case $(probe "$TSP" orange job "$J") in queued | delivering) ;; *) fail "client: job state" ;; esac
    probe "$TSP" orange jobs | grep -qx "$J" || fail "client: the job is listed"
    [ "$(probe "$TSP" orange cancel "$J")" = cancelled ] || fail "client: cancel"
    OUT=$(probe "$TSP2" orange job "$J" || true)
    [ "$OUT" = "fail=4 status=404 code=not_found field=" ] || fail "client: another SP's job: $OUT"
    OUT=$(probe "$TSP" orange job "../1" || true)
    [ "$OUT" = "fail=1 status=0 code= field=" ] || fail "client: a malformed id: $OUT"
    OUT=$(probe "$TSP" orange submit '{"msisdn":"33600000002","kind":"scripted"}' cl-2 || true)
    [ "$OUT" = "fail=4 status=400 code=invalid_field field=se" ] || fail "client: a bad job: $OUT"

    # ---- signed callbacks ----------------------------------------------------
    api POST $P/jobs "$TSP" '{"msisdn":"33600000002","se":{"reader":"eSE1"},"kind":"scripted","apdus":["80CA006600"],"callback":"ftp://x/y"}' \
        -H "Idempotency-Key: cb-bad"
    expect_status 400 "a callback that is not http(s)"
    [ "$(jq -r .error.field "$TSMD_WORK/resp")" = callback ] || fail "field callback"
    CBPORT=$(tsmd_free_port)
    mkdir -p "$TSMD_WORK/cb"
    "$PROBE" listen "$CBPORT" "$TSMD_WORK/cb" >"$TSMD_WORK/cb.out" &
    LPID=$!
    wait_in "$TSMD_WORK/cb.out" listening
    JCB=$(submit "$TSP" "{\"msisdn\":\"33600000002\",\"se\":{\"reader\":\"eSE1\"},\"kind\":\"scripted\",\"apdus\":[\"80CA006600\"],\"callback\":\"http://127.0.0.1:$CBPORT/hooks/mno?k=1\"}" cb-1)
    api POST $P/jobs/$JCB/cancel "$TSP" '{}'
    expect_status 200 "cancel the job with a callback"
    for _ in $(seq 1 200); do kill -0 "$LPID" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$LPID" 2>/dev/null && fail "no callback came"
    wait "$LPID" || fail "the callback receiver failed"
    head -1 "$TSMD_WORK/cb/headers" | grep -q '^POST /hooks/mno?k=1 HTTP/1.1' ||
        fail "callback request line: $(head -1 "$TSMD_WORK/cb/headers")"
    [ "$(jq -r '.id + " " + .state' "$TSMD_WORK/cb/body")" = "$JCB cancelled" ] ||
        fail "callback body: $(cat "$TSMD_WORK/cb/body")"
    api GET $P/callback-key "$TSP"
    expect_status 200 "callback key"
    PUB=$(jq -r .public_key "$TSMD_WORK/resp")
    CBTS=$(grep -i '^X-OpenTSM-Timestamp:' "$TSMD_WORK/cb/headers" | cut -d' ' -f2 | tr -d '\r')
    CBSIG=$(grep -i '^X-OpenTSM-Signature:' "$TSMD_WORK/cb/headers" | cut -d' ' -f2 | tr -d '\r')
    [ "$("$PROBE" verify "$PUB" "$CBSIG" "$CBTS" "$TSMD_WORK/cb/body")" = ok ] ||
        fail "the callback's signature does not verify"
    sed 's/cancelled/done/' "$TSMD_WORK/cb/body" >"$TSMD_WORK/cb/forged"
    [ "$("$PROBE" verify "$PUB" "$CBSIG" "$CBTS" "$TSMD_WORK/cb/forged")" = bad ] ||
        fail "a forged body verifies"
    [ "$("$PROBE" verify "$PUB" "$CBSIG" "$((CBTS + 1))" "$TSMD_WORK/cb/body")" = bad ] ||
        fail "another timestamp verifies"
fi

tsmd_stop
echo "mno.ota ($BACKEND): ok"
