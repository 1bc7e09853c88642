#!/usr/bin/env bash
# se-agent run runs a new attempt of a job whose session it ended
# `interrupted` (docs/ota.md 4): an interactive, non-destructive job's batch 2
# meets a card connection that is gone (vse --idle-timeout 1 drops the agent
# while it waits for the batch); the agent reports `interrupted`, mno
# re-queues the job and wakes it again (attempt 2), and the same `se-agent run`
# process runs it: a second session re-runs batch 1 from the start and the
# job ends done. A re-wake of the same attempt is still a duplicate.
#
# usage: reattempt_test.sh TSMD SE_AGENT VSE PROFILES_DIR
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
tsmd_work_init agent-reattempt
W=$TSMD_WORK
CIN=4F54534D44455601 # profiles/dev.json

agent_card --idle-timeout 1
# deliver_timeout_s 3: a wake the agent ignores fails the job within seconds
# (max_attempts 2: "not delivered").
tsmd_config "sqlite:$W/var/tsmd.db" "log.level=warn" "services.enabled=mno:orange" \
    "mno.orange.backoff_s=0" "mno.orange.heartbeat_s=30" "mno.orange.sweep_ms=100" \
    "mno.orange.deliver_timeout_s=3"
tsmd_bootstrap ops
tsmd_start
P=/mno/orange/v1
agent_phone "$CIN"

agent_run

job() { api GET "$P/jobs/$1" "$OP_TOKEN"; }
wait_for() { # WHAT COMMAND...: up to 20 s
    local what=$1
    shift
    for _ in $(seq 1 200); do
        "$@" && return 0
        sleep 0.1
    done
    fail "$what: $(cat "$W/resp"); agent: $(tail -8 "$W/run.log")"
}
is_state() { job "$1" && [ "$(jq -r .state "$W/resp")" = "$2" ]; }
rapdus_of() { job "$1" && [ "$(jq -r "[.scripts[] | select(.rapdus != null)] | length" "$W/resp")" = "$2" ]; }

api POST $P/jobs "$OP_TOKEN" \
    '{"msisdn":"33600000001","se":{"cin":"'$CIN'"},"kind":"interactive","max_attempts":2}' \
    -H "Idempotency-Key: r1"
expect_status 201 "submit an interactive job"
J=$(jq -r .id "$W/resp")
wait_for "job $J not opened" is_state "$J" running
api POST "$P/jobs/$J/batches" "$OP_TOKEN" '{"apdus":["80CA9F7F00"]}' -H "Idempotency-Key: r1-b1"
expect_status 201 "batch 1"
wait_for "batch 1 not run" rapdus_of "$J" 1
# The agent waits for batch 2; vse drops its idle connection meanwhile (1 s).
sleep 2
api POST "$P/jobs/$J/batches" "$OP_TOKEN" '{"apdus":["80CA9F7F00"]}' -H "Idempotency-Key: r1-b2"
expect_status 201 "batch 2"
attempt2() { job "$1" && [ "$(jq -r '"\(.attempts) \(.session)"' "$W/resp")" = "2 2" ]; }
wait_for "job $J: no second session (the new attempt was not run)" attempt2 "$J"
grep -q "event=script_interrupted job=$J" "$W/run.log" ||
    fail "session 1 was not interrupted by the card: $(tail -8 "$W/run.log")"
# The new session starts from the start: batch 1 again (batch 2 went with
# the lost session: the submitter sends it again).
wait_for "session 2 did not re-run batch 1" rapdus_of "$J" 1
api POST "$P/jobs/$J/close" "$OP_TOKEN" '{}'
expect_status 200 "close"
wait_for "job $J not done" is_state "$J" done
[ "$(grep -c "job $J: session ended" "$W/run.log")" = 2 ] ||
    fail "want two sessions of job $J: $(grep "job $J" "$W/run.log")"
echo "an interrupted session's new attempt: run by the same agent, the job done"
kill -TERM "$RUN_PID"
wait "$RUN_PID" || fail "run did not exit 0 on SIGTERM"
echo "agent.reattempt: ok"
