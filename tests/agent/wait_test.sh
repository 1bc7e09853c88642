#!/usr/bin/env bash
# se-agent acts on a job's news at once (docs/ota.md 6.2, docs/se-agent.md):
# an interactive job opened before its first batch answers 202 with a
# Retry-After of 30 s (heartbeat_s 30); the batch pushed meanwhile ends the
# wait (the session POSTs again, runs it, and the job ends done), and so does
# a cancel (the session ends). Without the push, the agent would sleep the
# whole Retry-After: the test's waits end well before it (15 s). SIGTERM
# ends such a wait too (in a POST mno holds, or after a 202): run exits 0
# and mno ends the session as lost (destructive: outcome_unknown; else
# queued for another attempt).
#
# usage: wait_test.sh TSMD SE_AGENT VSE PROFILES_DIR
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
tsmd_work_init agent-wait
W=$TSMD_WORK
CIN=4F54534D44455601 # profiles/dev.json

agent_card
tsmd_config "sqlite:$W/var/tsmd.db" "log.level=warn" "services.enabled=mno:orange" \
    "mno.orange.backoff_s=0" "mno.orange.heartbeat_s=30" "mno.orange.sweep_ms=100"
tsmd_bootstrap ops
tsmd_start
P=/mno/orange/v1
agent_phone "$CIN"

agent_run

job_state() { api GET "$P/jobs/$1" "$OP_TOKEN" && jq -r .state "$W/resp"; }
wait_for() { # WHAT COMMAND...: up to 15 s (the Retry-After is 30 s)
    local what=$1
    shift
    for _ in $(seq 1 150); do
        "$@" && return 0
        sleep 0.1
    done
    fail "$what: $(tail -5 "$W/run.log")"
}
is_state() { [ "$(job_state "$1")" = "$2" ]; }

# ---- the next batch is pushed: the session goes on at once ----------------------
api POST $P/jobs "$OP_TOKEN" '{"msisdn":"33600000001","se":{"cin":"'$CIN'"},"kind":"interactive"}' \
    -H "Idempotency-Key: w1"
expect_status 201 "submit an interactive job without a batch"
J1=$(jq -r .id "$W/resp")
wait_for "job $J1 not opened" is_state "$J1" running
sleep 0.3 # the agent has its 202 and waits
api POST "$P/jobs/$J1/batches" "$OP_TOKEN" '{"apdus":["80CA9F7F00"]}' -H "Idempotency-Key: w1-b1"
expect_status 201 "batch 1"
api GET "$P/jobs/$J1?wait=15&seq=1" "$OP_TOKEN"
expect_status 200 "long-poll of batch 1"
jq -e '.scripts[0].rapdus | length == 1' "$W/resp" >/dev/null ||
    fail "batch 1 not run within 15 s (the agent slept its Retry-After): $(cat "$W/resp")"
api POST "$P/jobs/$J1/close" "$OP_TOKEN" '{}'
expect_status 200 "close"
wait_for "job $J1 not done" is_state "$J1" done
echo "a batch pushed during the wait: run at once"

# ---- a cancel is pushed: the session ends at once ----------------------------------
api POST $P/jobs "$OP_TOKEN" '{"msisdn":"33600000001","se":{"cin":"'$CIN'"},"kind":"interactive"}' \
    -H "Idempotency-Key: w2"
expect_status 201 "submit a second one"
J2=$(jq -r .id "$W/resp")
wait_for "job $J2 not opened" is_state "$J2" running
sleep 0.3
api POST "$P/jobs/$J2/cancel" "$OP_TOKEN" '{}'
expect_status 200 "cancel"
ended() { grep -q "job $J2: session ended" "$W/run.log"; }
wait_for "the session of job $J2 did not end within 15 s of its cancel" ended
grep -q "event=wait_cut job=$J2" "$W/run.log" || fail "the wait was not cut by the cancel"
[ "$(job_state "$J2")" = cancelled ] || fail "job $J2: $(cat "$W/resp")"
echo "a cancel pushed during the wait: the session ends at once"

# ---- SIGTERM while a session waits for a batch that never comes ---------------------
stopped() { ! kill -0 "$RUN_PID" 2>/dev/null; }
term_agent() { # WHAT: SIGTERM ends run well within the waits (the held POST, Retry-After)
    kill -TERM "$RUN_PID"
    wait_for "$1: run did not stop on SIGTERM" stopped
    wait "$RUN_PID" || fail "$1: run did not exit 0 on SIGTERM"
}
# A destructive job, its agent waiting in the POST of batch 1's responses
# (mno holds it): mno's rules for a lost session, outcome_unknown.
api POST $P/jobs "$OP_TOKEN" \
    '{"msisdn":"33600000001","se":{"cin":"'$CIN'"},"kind":"interactive","destructive":true}' \
    -H "Idempotency-Key: w3"
expect_status 201 "submit a destructive one"
J3=$(jq -r .id "$W/resp")
wait_for "job $J3 not opened" is_state "$J3" running
api POST "$P/jobs/$J3/batches" "$OP_TOKEN" '{"apdus":["80CA9F7F00"]}' -H "Idempotency-Key: w3-b1"
expect_status 201 "batch 1 of $J3"
api GET "$P/jobs/$J3?wait=15&seq=1" "$OP_TOKEN"
jq -e '.scripts[0].rapdus | length == 1' "$W/resp" >/dev/null || fail "batch 1 of $J3 not run"
sleep 0.5 # the POST of its responses is held
term_agent "job $J3 (held POST)"
wait_for "job $J3 not outcome_unknown" is_state "$J3" outcome_unknown
echo "SIGTERM during a held POST: run exits 0 at once, the destructive job outcome_unknown"

# A non-destructive job, its agent waiting after the open's 202: interrupted,
# another attempt later (the device is detached: queued).
"${A[@]}" --poll-ms 100 --log-level info run >>"$W/run.log" 2>&1 &
RUN_PID=$!
api POST $P/jobs "$OP_TOKEN" '{"msisdn":"33600000001","se":{"cin":"'$CIN'"},"kind":"interactive"}' \
    -H "Idempotency-Key: w4"
expect_status 201 "submit a fourth one"
J4=$(jq -r .id "$W/resp")
wait_for "job $J4 not opened" is_state "$J4" running
waiting4() { grep -q "event=session_wait job=$J4" "$W/run.log"; }
wait_for "the agent does not wait after the 202 of $J4" waiting4
term_agent "job $J4 (after a 202)"
grep -q "event=session_stopped job=$J4" "$W/run.log" || fail "the wait of $J4 was not ended"
wait_for "job $J4 not back in the queue" is_state "$J4" queued
[ ! -e "$W/agent/session.json" ] || fail "a session file is left: $(cat "$W/agent/session.json")"
echo "SIGTERM after a 202: run exits 0 at once, the job queued for another attempt"
echo "agent.push_wait: ok"
