#!/usr/bin/env bash
# mno.scp03 (issue 10: SCP03 jobs end to end, docs/ota.md §10): a real tsmd
# with mno:orange, se-agent run with a vse on its socket as eSE1, a bank
# running SCP03 through jobs with client/otascp (tests/mno/otascp_run.c) on
# the SD F04F54534D534401 of profiles/ese-central.json (i = 70: pseudo-random
# card challenge, R-MAC, R-ENC; level 33).
#
# - an interactive SCP03 job (the card not known yet): INITIALIZE UPDATE,
#   then EXTERNAL AUTHENTICATE + the commands; the R-MACs are verified by the
#   submitter; 3 device round trips;
# - a scripted SCP03 job (the card learned: the handshake computed ahead,
#   guarded): one script, 2 device round trips, R-MACs verified;
# - a wrong guess (the counter moved): the agent stops at the guard, the job
#   fails with reason guard, no EXTERNAL AUTHENTICATE reached the card (no
#   authentication failure counted), the submitter falls back and the
#   command runs;
# - a job injected without the SD's keys (a plain DELETE, a DELETE with a
#   forged C-MAC): the card answers 6982, the job is failed with stop sw
#   6982, and the card is unchanged (GET STATUS through SCP03 before and after).
#
# usage: scp03_test.sh TSMD SE_AGENT VSE OTASCP_RUN PROFILES_DIR
set -euo pipefail

TSMD=$1
AGENT=$2
VSE=$3
RUN=$4
PROFILES=$5
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"
# shellcheck source=../agent/lib.sh
. "$HERE/../agent/lib.sh"

need_tools curl jq
tsmd_work_init mno-scp03
W=$TSMD_WORK
CIN=4F54534D45534501 # profiles/ese-central.json
SD=F04F54534D534401
KEY=505152535455565758595A5B5C5D5E5F
APP=F04F54534D0501AA # an application of that SD

"$VSE" create --profile "$PROFILES/ese-central.json" --out "$W/card.img" >/dev/null
"$VSE" run "$W/card.img" --listen "unix:$W/card.sock" >>"$W/vse.log" 2>&1 &
TSMD_EXTRA_PIDS+=("$!")

tsmd_config "sqlite:$W/var/tsmd.db" "log.level=warn" "services.enabled=tsm, mno:orange" \
    "mno.orange.backoff_s=0"
tsmd_bootstrap ops
tsmd_start
P=/mno/orange/v1
agent_phone "$CIN"
SP=$(tsmd_principal service_provider bank)
TSP=$(tsmd_token "$SP")

A=("$AGENT" --state "$W/agent" --reader "eSE1=socket:unix:$W/card.sock"
    --mno "$TSMD_URL$P" --token-file "$W/device.token")
for _ in $(seq 1 100); do
    "${A[@]}" status --json | jq -e '.readers[0].present' >/dev/null && break
    sleep 0.1
done
"${A[@]}" --log-level info run >"$W/run.log" 2>&1 &
RUN_PID=$!
TSMD_EXTRA_PIDS+=("$RUN_PID")
for _ in $(seq 1 200); do
    grep -q "event=stream_open" "$W/run.log" && break
    sleep 0.1
done
grep -q "event=stream_open" "$W/run.log" || fail "se-agent: no push stream: $(tail -5 "$W/run.log")"

scp() { # [options] APDU... -> the otascp_run JSON in $W/out.json
    "$RUN" --url "$TSMD_URL" --token "$TSP" --instance orange --msisdn 33600000001 \
        --reader eSE1 --aid "$SD" --key "$KEY" --kvn 48 --level 33 --card "$W/card.known" \
        --json "$@" >"$W/out.json" || fail "otascp_run $*: rc $? $(cat "$W/out.json")"
    cat "$W/out.json"
}
# round_trips JOB: the agent's count for the job's session (its stdout line).
round_trips() {
    for _ in $(seq 1 50); do
        grep -q "^job $1: session ended" "$W/run.log" && break
        sleep 0.1
    done
    sed -n "s/^job $1: session ended (status [a-z-]*, [0-9]* C-APDUs, \([0-9]*\) round trips)$/\1/p" \
        "$W/run.log"
}
get_job() {
    api GET "$P/jobs/$1" "$TSP"
    expect_status 200 "job $1"
}

# ---- interactive: the card is not known yet ----------------------------------
KEYINFO=80CA00E000
STATUS=80F240020A4F08${APP}00 # GET STATUS of the application
scp "$KEYINFO" "$STATUS"
jq -e '.outcome == "ok" and .mode == "interactive" and .jobs == 1 and .authenticated
    and .iu_sw == "9000" and .ea_sw == "9000" and .job_state == "done"
    and (.responses | length == 2) and (.responses | all(.sw == "9000"))
    and (.responses[0].data | startswith("E0")) and (.responses[1].data | startswith("E3"))' \
    "$W/out.json" >/dev/null || fail "interactive SCP03 job"
J=$(jq -r .job "$W/out.json")
[ -s "$W/card.known" ] || fail "the card was not learned"
rt=$(round_trips "$J")
[ "$rt" = 3 ] || fail "interactive job $J: $rt device round trips, want 3"
get_job "$J"
[ "$(jq -r '.kind + " " + (.scripts | length | tostring)' "$W/resp")" = "interactive 2" ] ||
    fail "job $J is not a two-batch interactive job: $(cat "$W/resp")"
STATUS_BEFORE=$(jq -r '.responses[1].data' "$W/out.json")
echo "interactive SCP03 job $J: R-MACs verified, $rt device round trips"

# ---- scripted: the handshake computed ahead, guarded -------------------------
scp "$KEYINFO" "$STATUS"
jq -e '.outcome == "ok" and .mode == "scripted" and .jobs == 1 and .fallbacks == 0
    and .authenticated and .job_state == "done" and (.responses | all(.sw == "9000"))' \
    "$W/out.json" >/dev/null || fail "scripted SCP03 job"
J=$(jq -r .job "$W/out.json")
rt=$(round_trips "$J")
[ "$rt" = 2 ] || fail "scripted job $J: $rt device round trips, want 2"
get_job "$J"
[ "$(jq -r '.kind + " " + (.scripts[0].capdus | tostring)' "$W/resp")" = "scripted 4" ] ||
    fail "job $J: not one script of IU, EA and 2 commands: $(cat "$W/resp")"
echo "scripted SCP03 job $J: one script, R-MACs verified, $rt device round trips"

# ---- a wrong guess: stopped at the guard, fallback -----------------------------
read -r kdd i seq <"$W/card.known"
echo "$kdd $i $((seq - 1))" >"$W/card.known" # the counter moved since
scp "$KEYINFO"
jq -e '.outcome == "ok" and .jobs == 2 and .fallbacks == 1 and .mode == "interactive"' \
    "$W/out.json" >/dev/null || fail "fallback after a guard stop"
api GET "$P/jobs?limit=100" "$TSP"
G=$(jq -r '[.items[] | select(.reason == "guard")] | .[0].id // empty' "$W/resp")
[ -n "$G" ] || fail "no job ended at its guard: $(cat "$W/resp")"
get_job "$G"
jq -e '.state == "failed" and .stop.index == 0 and .stop.sw == "9000"
    and (.scripts[0].rapdus | length == 1)' "$W/resp" >/dev/null ||
    fail "guard job $G: $(cat "$W/resp")"
api GET "$P/alerts" "$OP_TOKEN"
[ "$(jq -r '.items | length' "$W/resp")" = 0 ] || fail "an alert after a guard stop"
echo "guard: job $G stopped before EXTERNAL AUTHENTICATE, the fallback ran"

# ---- injected without the SD's keys: the card refuses, nothing changes --------
inject() { # KEY APDU... -> job id, after it ended
    local apdus
    apdus=$(printf '"%s",' "${@:2}")
    api POST $P/jobs "$TSP" "{\"msisdn\":\"33600000001\",\"se\":{\"reader\":\"eSE1\"},\"kind\":\"scripted\",\"aid\":\"$SD\",\"apdus\":[${apdus%,}]}" \
        -H "Idempotency-Key: $1"
    expect_status 201 "inject $1"
    local id
    id=$(jq -er .id "$W/resp")
    api GET "$P/jobs/$id?wait=20" "$TSP"
    expect_status 200 "job $id"
    echo "$id"
}
DEL_PLAIN="80E400000A4F08${APP}00"
J=$(inject inj-plain "$DEL_PLAIN")
jq -e '.state == "failed" and .stop.sw == "6982" and .scripts[0].rapdus == ["6982"]' \
    "$W/resp" >/dev/null || fail "plain DELETE injected: $(cat "$W/resp")"
# The same with secure messaging and a made-up C-MAC.
J2=$(inject inj-forged "84E4000012"4F08${APP}"0011223344556677"00)
jq -e '.state == "failed" and .stop.sw == "6982"' "$W/resp" >/dev/null ||
    fail "forged DELETE injected: $(cat "$W/resp")"
scp "$STATUS"
jq -e '.outcome == "ok"' "$W/out.json" >/dev/null || fail "GET STATUS after the injections"
[ "$(jq -r '.responses[0].data' "$W/out.json")" = "$STATUS_BEFORE" ] ||
    fail "the card changed: $STATUS_BEFORE -> $(jq -r '.responses[0].data' "$W/out.json")"
case $STATUS_BEFORE in *"$APP"*) ;; *) fail "the application is not listed: $STATUS_BEFORE" ;; esac
echo "injected jobs $J and $J2: 6982 from the card, failed, the card unchanged"

kill -TERM "$RUN_PID"
wait "$RUN_PID" || fail "se-agent did not exit 0"
tsmd_stop
echo "mno.scp03: ok"
