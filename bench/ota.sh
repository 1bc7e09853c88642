#!/usr/bin/env bash
# bench/ota: SCP03 jobs over the air on loopback (issue 10): tsmd with
# mno:orange (SQLite), se-agent run (push stream, admin sessions) with a vse
# on its socket, and a bank submitting with client/otascp (bench_ota_run,
# built from tests/mno/otascp_run.c). Each job is a 10-APDU SCP03 session at
# level 33 (C-MAC, C-DEC, R-MAC, R-ENC) with one SD, its R-MACs verified;
# the time is the whole path: submit -> tsmd -> push -> se-agent -> vse ->
# responses -> the submitter's long-poll answered -> verified.
#
#  - SD F04F54534D534401 (pseudo-random card challenge): one interactive
#    job learns the card, then BENCH_JOBS scripted jobs with the handshake
#    computed ahead (guarded);
#  - SD F04F54534D534410 made a random-challenge SD (i = 60): BENCH_JOBS / 4
#    two-batch interactive jobs.
#
# device_round_trips: the HTTP requests se-agent made for a job (its own
# count, "N round trips" on its stdout, the first empty POST and the closing
# one included), the most over the measured jobs. Last line:
#
#   p50_ms=<x> p99_ms=<x> device_round_trips=<n> random_p50_ms=<x> random_p99_ms=<x> random_device_round_trips=<n>
#
# Targets: p50 under 10 ms, p99 under 50 ms, at most 2 device round trips
# with the pseudo-random challenge, at most 3 otherwise (the exit status is 0
# either way: this is a measurement).
#
# Environment: OT_BUILD (build dir, default build-bench), BENCH_JOBS (200).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=${OT_BUILD:-build-bench}
case $B in /*) ;; *) B=$ROOT/$B ;; esac
TSMD=$B/src/bin/tsmd
AGENT=$B/src/bin/se-agent
VSE=$B/src/bin/vse
RUN=$B/bench/bench_ota_run
JOBS=${BENCH_JOBS:-200}
for p in "$TSMD" "$AGENT" "$VSE" "$RUN"; do
    [ -x "$p" ] || { echo "bench/ota: $p is missing (make bench-build)" >&2; exit 1; }
done
# shellcheck source=../tests/tsmd/lib.sh
. "$ROOT/tests/tsmd/lib.sh"
# shellcheck source=../tests/agent/lib.sh
. "$ROOT/tests/agent/lib.sh"

tsmd_work_init bench-ota
W=$TSMD_WORK
CIN=4F54534D45534501
jq '.domains[1].i = "60"' "$ROOT/profiles/ese-central.json" >"$W/profile.json"
"$VSE" create --profile "$W/profile.json" --out "$W/card.img" >/dev/null
"$VSE" run "$W/card.img" --listen "unix:$W/card.sock" >>"$W/vse.log" 2>&1 &
TSMD_EXTRA_PIDS+=("$!")
tsmd_config "sqlite:$W/var/tsmd.db" "log.level=warn" "services.enabled=mno:orange"
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
"${A[@]}" run >"$W/run.log" 2>"$W/run.err" &
TSMD_EXTRA_PIDS+=("$!")
for _ in $(seq 1 100); do
    api GET "$P/status?msisdn=33600000001" "$OP_TOKEN"
    [ "$(jq -r .state "$W/resp")" = online ] && break
    sleep 0.1
done
sleep 0.5 # the push stream opens after the registration

# Ten plain commands: GET DATA key information, GET STATUS of an
# application of the SD.
scp() { # SD KEY CARDFILE COUNT APP
    local cmds=()
    for _ in 1 2 3 4 5; do
        cmds+=(80CA00E000 "80F24002$(printf '%02X' $((${#5} / 2 + 2)))4F$(printf '%02X' $((${#5} / 2)))${5}00")
    done
    "$RUN" --url "$TSMD_URL" --token "$TSP" --instance orange --msisdn 33600000001 \
        --reader eSE1 --aid "$1" --key "$2" --kvn 48 --level 33 --card "$3" --count "$4" \
        "${cmds[@]}"
}
# most_trips SUMMARY: the most round trips of the sessions of the jobs
# first_job..last_job of a summary line.
most_trips() {
    local first last
    first=$(sed -n 's/.*first_job=\([0-9]*\).*/\1/p' <<<"$1")
    last=$(sed -n 's/.*last_job=\([0-9]*\).*/\1/p' <<<"$1")
    for _ in $(seq 1 50); do # the agent prints after its last POST was answered
        grep -q "^job $last: session ended" "$W/run.log" && break
        sleep 0.1
    done
    sed -n 's/^job \([0-9]*\): session ended (status [a-z-]*, [0-9]* C-APDUs, \([0-9]*\) round trips)$/\1 \2/p' \
        "$W/run.log" | awk -v f="$first" -v l="$last" '$1 >= f && $1 <= l { if ($2 > m) m = $2 } END { print m + 0 }'
}

SD1=(F04F54534D534401 505152535455565758595A5B5C5D5E5F "$W/sd1.card")
SD2=(F04F54534D534410 A0A1A2A3A4A5A6A7A8A9AAABACADAEAF "$W/sd2.card")
scp "${SD1[@]}" 1 F04F54534D0501AA >/dev/null # learn the card
pr=$(scp "${SD1[@]}" "$JOBS" F04F54534D0501AA | tail -1)
trips=$(most_trips "$pr")
rr=$(scp "${SD2[@]}" $((JOBS / 4)) A0000000041010 | tail -1)
rtrips=$(most_trips "$rr")
echo "pseudo-random challenge: $pr"
echo "random challenge:        $rr"
tsmd_stop
# runs= p50_ms= p99_ms= jobs= fallbacks=
p50=$(sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' <<<"$pr")
p99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$pr")
rp50=$(sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' <<<"$rr")
rp99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$rr")
echo "p50_ms=$p50 p99_ms=$p99 device_round_trips=$trips random_p50_ms=$rp50 random_p99_ms=$rp99 random_device_round_trips=$rtrips"
