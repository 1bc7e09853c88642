#!/usr/bin/env bash
# se-agent admin sessions (issue 10 point 4, docs/ota.md sections 5-6) against
# a real tsmd with mno:orange and a vse on its socket as eSE1:
# - a scripted job runs end to end in 2 device round trips; the R-APDUs mno
#   records are the card's (CIN, CPLC);
# - mode 00: the job stops at the first failing status word;
# - a guard that differs stops the script right after its C-APDU (the
#   precomputed-handshake guard of DESIGN.md);
# - a DELETE sent without the SE's keys is refused by the card (6982), the
#   job fails and the application is still there;
# - a job for an SE the agent does not have ends se-unavailable;
# - a job that does not exist: exit 1, precise reason;
# - an agent SIGKILLed before the card got the script (the card hangs on the
#   SELECT) resumes the session when it starts again: the job is done;
#   one killed once the card ran it (OPENTSM_AGENT_CRASH_AT) reports it
#   interrupted: the destructive job ends outcome_unknown, never re-run;
# - backstage requests: query, delete (the mirror follows), add, a failed add;
# - se-agent run registers (location area), its heartbeats keep the phone
#   online past the lease, a lease lost while the agent was stopped is
#   noticed (409 not_registered) and the phone registers again; SIGTERM
#   detaches it.
#
# usage: session_test.sh TSMD SE_AGENT VSE PROFILES_DIR
set -euo pipefail

TSMD=$1
AGENT=$2
VSE=$3
PROFILES=$4
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
need_tools curl jq
cont_vse() {
    [ -z "${VSE_PID:-}" ] || kill -CONT "$VSE_PID" 2>/dev/null || true
}
TSMD_CLEANUP_HOOK=cont_vse
tsmd_work_init agent-session
W=$TSMD_WORK
CIN=4F54534D44455601   # profiles/dev.json
CIN_B=4F54534D55494301 # enrolled, not on the phone

agent_card

tsmd_config "sqlite:$W/var/tsmd.db" "log.level=warn" "services.enabled=tsm, mno:orange" \
    "mno.orange.backoff_s=0" "mno.orange.lease_s=5" "mno.orange.heartbeat_s=1" \
    "mno.orange.sweep_ms=100"
tsmd_bootstrap ops
tsmd_start
P=/mno/orange/v1
agent_phone "$CIN" "$CIN_B"
SP=$(tsmd_principal service_provider bank)
TSP=$(tsmd_token "$SP")

A=("$AGENT" --state "$W/agent" --reader "eSE1=socket:unix:$W/card.sock"
    --mno "$TSMD_URL$P" --token-file "$W/device.token")
for _ in $(seq 1 100); do
    "${A[@]}" status --json | jq -e '.readers[0].present' >/dev/null && break
    sleep 0.1
done
"${A[@]}" verify | grep -qx "eSE1: added" || fail "verify eSE1"
api POST $P/device/register "$DTOK" '{}'
expect_status 200 "register"
phone_state() {
    api GET "$P/status?msisdn=33600000001" "$OP_TOKEN"
    expect_status 200 "status"
    jq -r .state "$W/resp"
}

submit() { # BODY KEY -> job id
    api POST $P/jobs "$TSP" "$1" -H "Idempotency-Key: $2"
    expect_status 201 "submit $2"
    jq -er .id "$W/resp"
}
job_state() {
    api GET $P/jobs/"$1" "$TSP"
    expect_status 200 "job $1"
    jq -r .state "$W/resp"
}

# ---- a scripted job, end to end ---------------------------------------------
J=$(submit '{"msisdn":"33600000001","se":{"reader":"eSE1"},"kind":"scripted","apdus":["80CA004500","80CA9F7F00"]}' j1)
"${A[@]}" --json session "$J" eSE1 >"$W/s.json"
cat "$W/s.json"
jq -e '.result == "ended" and .status == "ok" and .capdus == 2 and .round_trips == 2' "$W/s.json" \
    >/dev/null || fail "session of job $J"
[ "$(job_state "$J")" = done ] || fail "job $J: $(cat "$W/resp")"
[ "$(jq -r '.scripts[0].rapdus[0]' "$W/resp")" = "4508${CIN}9000" ] || fail "CIN R-APDU: $(cat "$W/resp")"
jq -r '.scripts[0].rapdus[1]' "$W/resp" | grep -q '^9F7F2A.*9000$' || fail "CPLC R-APDU"
echo "scripted job $J done in 2 round trips"

# ---- mode 00 stops at the first failing status word -------------------------
J=$(submit '{"msisdn":"33600000001","se":{"reader":"eSE1"},"kind":"scripted","apdus":["80CADF7D00","80CA004500"]}' j2)
"${A[@]}" --json session "$J" eSE1 >"$W/s.json"
jq -e '.capdus == 1' "$W/s.json" >/dev/null || fail "mode 00 ran more than the failing C-APDU"
[ "$(job_state "$J")" = failed ] || fail "job $J not failed"
[ "$(jq -r '.scripts[0].rapdus | length' "$W/resp")" = 1 ] || fail "rapdus after a failure"

# ---- a guard that differs stops right after its C-APDU ----------------------
J=$(submit '{"msisdn":"33600000001","se":{"reader":"eSE1"},"kind":"scripted","apdus":[{"capdu":"80CA004500","expect":"6A889000"},"80CA006600"]}' j3)
"${A[@]}" --json session "$J" eSE1 >"$W/s.json"
jq -e '.capdus == 1 and .guard_stop == true' "$W/s.json" >/dev/null || fail "guard: $(cat "$W/s.json")"
job_state "$J" >/dev/null
[ "$(jq -r '.scripts[0].rapdus | length' "$W/resp")" = 1 ] || fail "rapdus after a guard stop"
# The right guard lets the script go on.
J=$(submit '{"msisdn":"33600000001","se":{"reader":"eSE1"},"kind":"scripted","apdus":[{"capdu":"80CA004500","expect":"4508'$CIN'9000"},"80CA006600"]}' j4)
"${A[@]}" --json session "$J" eSE1 >"$W/s.json"
jq -e '.capdus == 2 and .guard_stop == false' "$W/s.json" >/dev/null || fail "matching guard"
[ "$(job_state "$J")" = done ] || fail "job $J with a matching guard"
echo "guards: a mismatch stops the script, a match lets it run"

# ---- a command without the SE's keys: the card refuses it, nothing changes ---
PPSE=325041592E5359532E4444463031 # an application of profiles/dev.json
J=$(submit '{"msisdn":"33600000001","se":{"reader":"eSE1"},"kind":"scripted","apdus":["80E40000104F0E'$PPSE'00"]}' j7)
"${A[@]}" session "$J" eSE1 >/dev/null
[ "$(job_state "$J")" = failed ] || fail "DELETE without a secure channel: $(cat "$W/resp")"
[ "$(jq -r '.scripts[0].rapdus[0]' "$W/resp")" = 6982 ] || fail "want 6982: $(cat "$W/resp")"
J=$(submit '{"msisdn":"33600000001","se":{"reader":"eSE1"},"kind":"scripted","apdus":["00A404000E'$PPSE'00"]}' j8)
"${A[@]}" session "$J" eSE1 >/dev/null
[ "$(job_state "$J")" = done ] || fail "the application is gone after a refused DELETE"
echo "a DELETE without the SE's keys: 6982, job failed, the card unchanged"

# ---- an SE the agent does not have -----------------------------------------
J=$(submit '{"msisdn":"33600000001","se":{"cin":"'$CIN_B'"},"kind":"scripted","apdus":["80CA004500"]}' j5)
"${A[@]}" --json session "$J" "$CIN_B" >"$W/s.json"
jq -e '.status == "se-unavailable"' "$W/s.json" >/dev/null || fail "se-unavailable: $(cat "$W/s.json")"
[ "$(job_state "$J")" = failed ] || fail "job $J not failed"
jq -r '.reason // ""' "$W/resp" | grep -q "se-unavailable" || fail "reason: $(cat "$W/resp")"

# ---- no such job -------------------------------------------------------------
set +e
"${A[@]}" session 999999 eSE1 >/dev/null 2>"$W/err"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "404" "$W/err" || fail "unknown job: exit $rc, $(cat "$W/err")"
# ---- backstage requests (ota.md 7): query, delete, add -----------------------
ask() { # BODY KEY -> request id
    api POST $P/devices/$DEV/backstage "$OP_TOKEN" "$1" -H "Idempotency-Key: $2"
    expect_status 201 "backstage request $2"
    jq -er .id "$W/resp"
}
bs_get() { # ID -> the request as mno has it in $W/resp
    api GET $P/backstage/"$1" "$OP_TOKEN"
    expect_status 200 "backstage $1"
}
R=$(ask '{"op":"query"}' b1)
"${A[@]}" backstage "$R" query | grep -qx "backstage $R query: ok" || fail "backstage query"
bs_get "$R"
[ "$(jq -r '[.state, (.secure_elements | map(.reader) | join(","))] | join(" ")' "$W/resp")" != "" ] ||
    fail "backstage query answer"
[ "$(jq -r '.secure_elements | map(.reader + "=" + .cin) | join(",")' "$W/resp")" = "eSE1=$CIN" ] ||
    fail "backstage query: $(cat "$W/resp")"
R=$(ask '{"op":"delete","se":{"reader":"eSE1"}}' b2)
"${A[@]}" backstage "$R" delete eSE1 | grep -qx "backstage $R delete: ok" || fail "backstage delete"
"${A[@]}" list --json | jq -e '.items | length == 0' >/dev/null || fail "delete: still listed"
bs_get "$R"
[ "$(jq -r '.secure_elements | length' "$W/resp")" = 0 ] || fail "delete answer"
api GET $P/devices/$DEV/secure-elements "$OP_TOKEN"
[ "$(jq -r '.items | length' "$W/resp")" = 0 ] || fail "the mirror after a backstage delete"
R=$(ask '{"op":"add","se":{"reader":"eSE1"}}' b3)
"${A[@]}" backstage "$R" add eSE1 | grep -qx "backstage $R add: ok" || fail "backstage add"
api GET $P/devices/$DEV/secure-elements "$OP_TOKEN"
[ "$(jq -r '.items | map(.reader) | join(",")' "$W/resp")" = eSE1 ] || fail "the mirror after add"
R=$(ask '{"op":"add","se":{"reader":"SD9"}}' b4)
set +e
"${A[@]}" --json backstage "$R" add SD9 >"$W/bs.json" 2>"$W/err"
rc=$?
set -e
[ $rc -eq 1 ] && jq -e '.status == "failed" and (.error | test("no reader"))' "$W/bs.json" >/dev/null ||
    fail "backstage add of an absent reader: rc $rc $(cat "$W/bs.json" "$W/err")"
bs_get "$R"
[ "$(jq -r .error "$W/resp")" != null ] || fail "the failure reached mno: $(cat "$W/resp")"
echo "backstage: query, delete, add, a failed add"

# ---- se-agent run: push stream, heartbeats -----------------------------------
# The phone is on: se-agent run verifies eSE1, registers, sends heartbeats.
"${A[@]}" --poll-ms 100 --log-level debug --location-area 208-01-4A2F run >"$W/run.log" 2>&1 &
RUN_PID=$!
TSMD_EXTRA_PIDS+=("$RUN_PID")
# The phone may be online already (the sessions above): wait for the
# registration's location area as well.
phone_registered() {
    [ "$(phone_state)" = online ] && [ "$(jq -r .location_area "$W/resp")" = 208-01-4A2F ]
}
for _ in $(seq 1 100); do
    phone_registered && break
    sleep 0.1
done
phone_registered || fail "run did not register the phone in 208-01-4A2F: $(cat "$W/resp" "$W/run.log")"
grep -q "event=stream_open" "$W/run.log" || sleep 1
for _ in $(seq 1 100); do
    grep -q "event=stream_open" "$W/run.log" && break
    sleep 0.1
done

# A job submitted while the phone is online runs at once (push, session).
J=$(submit '{"msisdn":"33600000001","se":{"reader":"eSE1"},"kind":"scripted","apdus":["80CA004500"]}' p1)
for _ in $(seq 1 200); do
    [ "$(job_state "$J")" = done ] && break
    sleep 0.1
done
[ "$(job_state "$J")" = done ] || fail "pushed job $J: $(cat "$W/resp") $(tail -5 "$W/run.log")"
grep -q "event=push type=job" "$W/run.log" || fail "no job event on the stream"
# A backstage request reaches the agent through the stream as well.
R=$(ask '{"op":"query"}' pb1)
for _ in $(seq 1 200); do
    bs_get "$R"
    [ "$(jq -r .secure_elements "$W/resp")" != null ] && break
    sleep 0.1
done
[ "$(jq -r '.secure_elements | map(.reader) | join(",")' "$W/resp")" = eSE1 ] ||
    fail "pushed backstage query: $(cat "$W/resp")"
echo "push: a job and a backstage request run while the phone is online"


# ---- heartbeats keep the phone online past its lease; a lost lease is
# ---- noticed and the phone registers again; SIGTERM detaches ------------------
for _ in $(seq 1 200); do
    [ "$(grep -c 'event=heartbeat$' "$W/run.log")" -ge 7 ] && break
    sleep 0.1
done
[ "$(grep -c 'event=heartbeat$' "$W/run.log")" -ge 7 ] || fail "fewer than 7 heartbeats"
[ "$(phone_state)" = online ] || fail "offline although heartbeats went out (lease 5 s)"
# The device's own view (GET P/device) counts the lease itself.
own_state() {
    api GET "$P/device" "$DTOK"
    expect_status 200 "GET device"
    jq -r .state "$W/resp"
}
kill -STOP "$RUN_PID"
for _ in $(seq 1 300); do
    [ "$(own_state)" = offline ] && break
    sleep 0.1
done
st=$(own_state)
kill -CONT "$RUN_PID"
[ "$st" = offline ] || fail "the lease did not run out while the agent was stopped"
for _ in $(seq 1 100); do
    grep -q "event=reregister" "$W/run.log" && [ "$(phone_state)" = online ] && break
    sleep 0.1
done
grep -q "event=reregister" "$W/run.log" || fail "the agent did not register again"
[ "$(phone_state)" = online ] || fail "online again after re-registering"
kill -TERM "$RUN_PID"
wait "$RUN_PID" || fail "run did not exit 0 on SIGTERM"
[ "$(phone_state)" = offline ] || fail "SIGTERM did not detach the phone"
echo "heartbeats, re-registration and detach"

# ---- offline: a job waits; the phone comes back and the job runs ------------
J=$(submit '{"msisdn":"33600000001","se":{"reader":"eSE1"},"kind":"scripted","apdus":["80CA9F7F00"]}' off1)
[ "$(job_state "$J")" = queued ] || fail "offline job $J not queued: $(cat "$W/resp")"
"${A[@]}" --poll-ms 100 --log-level info run >"$W/run2.log" 2>&1 &
RUN_PID=$!
TSMD_EXTRA_PIDS+=("$RUN_PID")
for _ in $(seq 1 200); do
    [ "$(job_state "$J")" = done ] && break
    sleep 0.1
done
[ "$(job_state "$J")" = done ] || fail "job $J after the phone came back: $(cat "$W/resp")"
kill -TERM "$RUN_PID"
wait "$RUN_PID" || fail "run did not exit 0 on SIGTERM"
echo "offline: the job waited and ran when the phone registered"

# ---- an agent killed before the card got the script: resumed after the restart
# (run is stopped now: nothing else knocks at the stopped card's socket.)
api POST $P/device/register "$DTOK" '{}'
expect_status 200 "register again"
# The phone stays on from here: its heartbeats, as run would send them (a
# lease of 5 s ran out on a loaded machine before the checks below, and the
# jobs ended outcome_unknown for the lease instead of for the agent's crash).
(while :; do
    curl -s -o /dev/null -X POST -H "Authorization: Bearer $DTOK" -H "Content-Type: application/json" \
        --data-binary '{}' "$TSMD_URL$P/device/heartbeat" || true
    sleep 1
done) &
TSMD_EXTRA_PIDS+=("$!")
J=$(submit '{"msisdn":"33600000001","se":{"reader":"eSE1"},"kind":"scripted","destructive":true,"apdus":["80CA004500"]}' j6)
kill -STOP "$VSE_PID" # the card hangs on the session's first command (the SELECT)
"${A[@]}" --apdu-timeout 600000 session "$J" eSE1 >/dev/null 2>&1 &
SPID=$!
for _ in $(seq 1 100); do
    [ -f "$W/agent/session.json" ] && break
    sleep 0.1
done
[ -f "$W/agent/session.json" ] || fail "no session state on disk once the script arrived"
jq -e '.step == "received" and .script == 1' "$W/agent/session.json" >/dev/null ||
    fail "not received: $(cat "$W/agent/session.json")"
kill -KILL "$SPID"
wait "$SPID" 2>/dev/null || true
kill -CONT "$VSE_PID"
[ "$(job_state "$J")" = running ] || fail "job $J after the agent died: $(cat "$W/resp")"
"${A[@]}" session "$J" eSE1 >"$W/out"
grep -q "a session cut short by a restart was resumed or reported" "$W/out" || fail "no resume: $(cat "$W/out")"
[ ! -f "$W/agent/session.json" ] || fail "the session state was kept after the session"
[ "$(job_state "$J")" = done ] || fail "job $J was not resumed: $(cat "$W/resp")"
echo "agent killed before the card got the script: resumed, job done"

# ---- an agent killed once the card ran the script: reported interrupted ------
J=$(submit '{"msisdn":"33600000001","se":{"reader":"eSE1"},"kind":"scripted","destructive":true,"apdus":["80CA004500"]}' j-crash)
OPENTSM_AGENT_CRASH_AT=executing:1 "${A[@]}" session "$J" eSE1 >/dev/null 2>&1 && fail "the crash point did not fire"
jq -e '.step == "executing"' "$W/agent/session.json" >/dev/null ||
    fail "not executing: $(cat "$W/agent/session.json")"
[ "$(job_state "$J")" = running ] || fail "job $J after the agent died: $(cat "$W/resp")"
"${A[@]}" session "$J" eSE1 >"$W/out"
grep -q "a session cut short by a restart was resumed or reported" "$W/out" || fail "no report: $(cat "$W/out")"
[ ! -f "$W/agent/session.json" ] || fail "the session state was kept after the report"
[ "$(job_state "$J")" = outcome_unknown ] || fail "destructive job $J: $(cat "$W/resp")"
# Never re-run by itself: a new session has nothing to do.
"${A[@]}" --json session "$J" eSE1 | jq -e '.scripts == 0' >/dev/null || fail "job $J ran again"
[ "$(job_state "$J")" = outcome_unknown ] || fail "job $J left outcome_unknown"
echo "agent killed mid-script: interrupted reported, destructive job outcome_unknown"

echo "agent.session ok"
