#!/usr/bin/env bash
# cli.mno (issue 10 point 6): tsmctl mno devices|device|enrol|status|submit|
# jobs|job|cancel|alerts against a real tsmd hosting mno:orange, through
# mno_client: enrolment with the device principal's identities, status of
# an offline device, a job queued for it then cancelled, lists as tables
# and as one JSON array, and precise refusals (unknown instance, bad job).
#
# usage: mno_test.sh TSMD TSMCTL
set -euo pipefail

TSMD=$1
TSMCTL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

cli_tsmd_up cli-mno log.level=warn "services.enabled=tsm, mno:orange"
M=(--instance orange)
CIN=0102030405060708090A

ctl_run 0 "${OP[@]}" --json principal create device phone1 --imei 356938035643809 \
    --imsi 208011234567890 --mno orange
D1=$(jq -r .id "$OUT")
ctl_run 0 "${OP[@]}" --json mno enrol "$D1" --msisdn 33600000001 --cin "$CIN" "${M[@]}"
jq -e '.imei == "356938035643809" and .msisdn == "33600000001" and .known_cins == ["'$CIN'"]' \
    "$OUT" >/dev/null || fail "enrol: $(cat "$OUT")"
DEV=$(jq -r .id "$OUT")

ctl_run 0 "${OP[@]}" mno devices "${M[@]}"
[ "$(wc -l <"$OUT")" = 2 ] || fail "devices table: $(cat "$OUT")"
out_has 33600000001
ctl_run 0 "${OP[@]}" --json mno device "$DEV" "${M[@]}"
jq -e '.state == "offline"' "$OUT" >/dev/null || fail "device: $(cat "$OUT")"
ctl_run 0 "${OP[@]}" mno status --imei 356938035643809 "${M[@]}"
out_has offline
ctl_run 1 "${OP[@]}" mno status --msisdn 33699999999 "${M[@]}"

# A job for the offline device waits queued; cancelled, it says so.
printf '{"msisdn":"33600000001","se":{"cin":"%s"},"kind":"scripted","apdus":["80CA9F7F00"]}\n' \
    "$CIN" >"$TSMD_WORK/job.json"
ctl_run 0 "${OP[@]}" --json mno submit "$TSMD_WORK/job.json" "${M[@]}"
JOB=$(jq -r .id "$OUT")
jq -e '.state == "queued"' "$OUT" >/dev/null || fail "submit: $(cat "$OUT")"
ctl_run 0 "${OP[@]}" --json mno jobs "${M[@]}"
jq -e 'type == "array" and length == 1 and .[0].id == "'"$JOB"'"' "$OUT" >/dev/null ||
    fail "jobs: $(cat "$OUT")"
ctl_run 0 "${OP[@]}" mno job "$JOB" "${M[@]}"
out_has queued
ctl_run 0 "${OP[@]}" --json mno cancel "$JOB" "${M[@]}"
jq -e '.state == "cancelled"' "$OUT" >/dev/null || fail "cancel: $(cat "$OUT")"
ctl_run 0 "${OP[@]}" --json mno alerts "${M[@]}"
[ "$(cat "$OUT")" = "[]" ] || fail "alerts: $(cat "$OUT")"

# Refusals: a bad job names its field; an instance not hosted is 404; a
# malformed instance name never leaves tsmctl.
printf '{"msisdn":"33600000001","se":{"cin":"%s"},"kind":"scripted","apdus":["80"]}\n' \
    "$CIN" >"$TSMD_WORK/bad.json"
ctl_run 3 "${OP[@]}" mno submit "$TSMD_WORK/bad.json" "${M[@]}"
err_has 'field=apdus[0]'
printf '[1]\n' >"$TSMD_WORK/arr.json"
ctl_run 5 "${OP[@]}" mno submit "$TSMD_WORK/arr.json" "${M[@]}"
err_has 'the job must be one JSON object'
ctl_run 1 "${OP[@]}" mno devices --instance vodafone
ctl_run 2 "${OP[@]}" mno devices --instance 'Bad/Name'
echo "mno: devices, status and jobs through tsmctl"
