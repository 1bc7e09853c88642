#!/usr/bin/env bash
# fleetsim as phones for cms (docs/fleetsim.md "cms"): 40 devices on a real
# tsmd with cms and mno on SQLite. Their cards are imported into cms (bulk),
# half the phones stay off; 5 cards are destroyed one at a time, then every
# card is asked for; the online phones' cards are destroyed, the others wait
# (awaiting_destroy in cms) and are destroyed once their phones register.
# Every card received exactly one DESTROY (counted by the card, logged in
# the state directory, whose card images a second run opens again).
# The heavy run is bench/destroy.sh.
#
# usage: fleet_cms_test.sh TSMD FLEETSIM
set -euo pipefail

TSMD=$1
FLEETSIM=$2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"

tsmd_work_init fleet-cms
W=$TSMD_WORK
tsmd_config "sqlite:$W/var/tsmd.db" "log.level=warn" "services.enabled=cms, mno:orange" \
    "cms.tick_ms=20" "cms.backoff_s=0" "mno.orange.sweep_ms=50"
tsmd_bootstrap ops
TSMD_SETS+=(--set "cms.mno_url=$TSMD_URL")
export OPENTSM_CMS_MNO_TOKEN=$OP_TOKEN
tsmd_start

SP=$(tsmd_principal service_provider bank)
SUB=$(tsmd_principal subscriber alice)
umask 077
printf '%s\n' "$OP_TOKEN" >"$W/op.token"
tsmd_token "$SP" >"$W/sp.token"
tsmd_token "$SUB" >"$W/sub.token"
mkdir -p "$W/state"

OUT=$W/fleet.out
"$FLEETSIM" --url "$TSMD_URL" --devices 40 --procs 2 --inflight 8 --run-tag t1 \
    --op-token-file "$W/op.token" --sp-token-file "$W/sp.token" --sub-token-file "$W/sub.token" \
    --cms-subscriber "$SUB" --offline-pct 50 --destroy-serial 5 --state-dir "$W/state" \
    --idle-s 0 --phase-timeout-s 60 >"$OUT" 2>"$W/fleet.err" ||
    fail "fleetsim failed: $(cat "$OUT" "$W/fleet.err" | tail -20)"
cat "$OUT"
grep -q '^phase=enrol devices=40 enrolled=40 failed=0 ' "$OUT" || fail "enrolment"
grep -q '^phase=serial destroys=5 ' "$OUT" || fail "serial destroys"
grep -q '^phase=destroy requested=40 refused=0 ' "$OUT" || fail "destroy requests"
LAST=$(tail -n 1 "$OUT")
[[ $LAST =~ ^online_p50_ms=[0-9.]+\ online_p99_ms=[0-9.]+\ online_all_s=[0-9.]+\ offline_after_register_s=[0-9.]+\ cards=40\ offline=([0-9]+)\ destroyed=40\ executed=40\ duplicates=0\ nodes=1$ ]] ||
    fail "last line: $LAST"
OFF=${BASH_REMATCH[1]}
if [ "$OFF" -le 10 ] || [ "$OFF" -ge 30 ]; then fail "$OFF phones off, want about half"; fi

# cms saw it the same way: 40 cards destroyed, the offline ones after their
# submitted job waited for the phone.
api GET "/cms/v1/cards?state=destroyed&limit=100" "$OP_TOKEN"
expect_status 200 "card list"
[ "$(jq '.items | length' "$W/resp")" = 40 ] || fail "cms lists $(jq '.items | length' "$W/resp") destroyed"
api GET "/cms/v1/cards/fc0/history" "$OP_TOKEN"
jq -e '[.items[] | select(.event == "submitted")][0].detail.device == "offline"' "$W/resp" >/dev/null ||
    fail "fc0 (a phone kept off) was not offline at the request: $(cat "$W/resp")"

# The cards' own count, from the state directory's logs: one DESTROY each.
R=$(cat "$W"/state/destroys.*.log | awk '$1 == "R" {print $2}' | sort | uniq -c | awk '{print $1}' | sort -u)
[ "$R" = 1 ] || fail "DESTROY counts per card: $R"
[ "$(cat "$W"/state/destroys.*.log | awk '$1 == "X" && $3 == "9000"' | wc -l)" = 40 ] ||
    fail "not 40 DESTROYs executed"
[ "$(find "$W/state" -name 'card-*.img' | wc -l)" = 40 ] || fail "card images"

# The cards keep their state: a second run (same tag and slices: enrolment
# and import replay) holding the phones online opens the card images again;
# nothing is destroyed twice.
"$FLEETSIM" --url "$TSMD_URL" --devices 40 --procs 2 --inflight 8 --run-tag t1 \
    --op-token-file "$W/op.token" --sp-token-file "$W/sp.token" --sub-token-file "$W/sub.token" \
    --cms-subscriber "$SUB" --state-dir "$W/state" --hold --idle-s 0 --phase-timeout-s 30 \
    >"$OUT.2" 2>"$W/fleet2.err" &
HOLD=$!
TSMD_EXTRA_PIDS+=("$HOLD")
for _ in $(seq 1 300); do
    grep -q '^phase=hold' "$OUT.2" && break
    kill -0 "$HOLD" 2>/dev/null || break
    sleep 0.1
done
grep -q '^phase=online online=40 failed=0 ' "$OUT.2" || fail "second run: $(cat "$OUT.2" "$W/fleet2.err" | tail)"
kill -TERM "$HOLD"
wait "$HOLD" || fail "fleetsim --hold did not end 0 on SIGTERM"
[ "$(cat "$W"/state/destroys.*.log | awk '$1 == "R"' | wc -l)" = 40 ] ||
    fail "a destroyed card received another DESTROY"
note "ok"
