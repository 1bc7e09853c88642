#!/usr/bin/env bash
# fleetsim smoke test (issue 10 point 5): a small fleet (50 devices, two
# worker processes) against a real tsmd with mno on SQLite: every device is
# enrolled, registers, holds its push stream, and runs one SCP03 job pushed
# to it (guarded one-job handshake), whose answers the submitter verifies.
# The heavy run is bench/fleet.sh.
#
# usage: fleet_test.sh TSMD FLEETSIM
set -euo pipefail

TSMD=$1
FLEETSIM=$2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"

tsmd_work_init fleet
tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "log.level=warn" "services.enabled=mno:orange"
tsmd_bootstrap ops
tsmd_start

SP=$(tsmd_principal service_provider bank)
umask 077
printf '%s\n' "$OP_TOKEN" >"$TSMD_WORK/op.token"
tsmd_token "$SP" >"$TSMD_WORK/sp.token"

OUT=$TSMD_WORK/fleet.out
"$FLEETSIM" --url "$TSMD_URL" --instance orange --devices 50 --procs 2 --inflight 8 \
    --op-token-file "$TSMD_WORK/op.token" --sp-token-file "$TSMD_WORK/sp.token" \
    --tsmd-pid "$TSMD_PID" --idle-s 0 --phase-timeout-s 60 >"$OUT" 2>"$TSMD_WORK/fleet.err" ||
    fail "fleetsim failed: $(cat "$OUT" "$TSMD_WORK/fleet.err" | tail -20)"
cat "$OUT"
grep -q '^phase=enrol devices=50 enrolled=50 failed=0 ' "$OUT" || fail "enrolment"
grep -q '^phase=online online=50 failed=0 ' "$OUT" || fail "online"
grep -q '^phase=push submitted=50 done=50 verified=50 failed=0 .* online_after=50$' "$OUT" ||
    fail "push"
LAST=$(tail -n 1 "$OUT")
[[ $LAST =~ ^devices=50\ nodes=1\ tsmd_rss_per_device_kib=-?[0-9.]+\ push_jobs_per_s=[0-9]+$ ]] ||
    fail "last line: $LAST"

# mno saw it the same way: every job done, every device online.
P=/mno/orange/v1
api GET "$P/jobs?limit=100" "$OP_TOKEN"
expect_status 200 "job list"
N=$(jq '[.items[] | select(.state == "done")] | length' "$TSMD_WORK/resp")
[ "$N" = 50 ] || fail "mno lists $N done jobs, want 50"
api GET "$P/status?msisdn=3360000000049" "$OP_TOKEN"
expect_status 200 "status of the last device"
# fleetsim has ended: its devices dropped their streams, the lease keeps them online.
[ "$(jq -r .state "$TSMD_WORK/resp")" = online ] || fail "device state $(cat "$TSMD_WORK/resp")"
note "ok"
