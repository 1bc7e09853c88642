#!/usr/bin/env bash
# cms.concurrent (issue 13, "the flow"; docs/cms.md "The driver"): many
# cards destroyed at once by two tsmd nodes on one PostgreSQL, each node's
# driver with cms.workers actions in flight, and every card destroyed
# exactly once: an action claimed by one node and one worker is never run by
# another.
#
# fleetsim's devices are the phones (docs/fleetsim.md "cms": vse cards with
# R-MAC, real SCP03, each counting the DESTROY commands it receives); half
# are off when their cards are asked for and come back afterwards. fleetsim
# ends 0 only when every card was destroyed, each executed its DESTROY, none
# received two, and no request was refused.
#
# usage: with_pg.sh concurrent_test.sh TSMD FLEETSIM
set -euo pipefail

TSMD=$1
FLEETSIM=$2
CARDS=${CMS_CONCURRENT_CARDS:-200}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"
[ -n "${OPENTSM_TEST_PG_URL:-}" ] || fail "run under tests/pg/with_pg.sh"

tsmd_work_init cms-conc
W=$TSMD_WORK
tsmd_config "$OPENTSM_TEST_PG_URL" "services.enabled=cms, mno:orange" \
    "mno.orange.lease_s=3600" "mno.orange.heartbeat_s=1800" "mno.orange.sweep_ms=50" \
    "cms.tick_ms=20" "cms.workers=8" "cms.backoff_s=1" "db.pool=8"
tsmd_bootstrap ops
export OPENTSM_CMS_MNO_TOKEN=$OP_TOKEN
BASE_SETS=("${TSMD_SETS[@]}")
TSMD_SETS=("${BASE_SETS[@]}" --set "cms.mno_url=$TSMD_URL")
tsmd_start

# The second node, on the same database, its driver reaching mno through itself.
node2() {
    local port code
    for _ in 1 2 3 4 5; do
        port=$(tsmd_free_port)
        (cd "$W" && exec "$TSMD" --config "$W/tsmd.ini" "${BASE_SETS[@]}" \
            --set "http.listen=127.0.0.1:$port" --set "cms.mno_url=http://127.0.0.1:$port" \
            >>"$W/tsmd2.log" 2>&1) &
        TSMD_EXTRA_PIDS+=("$!")
        for _ in $(seq 1 200); do
            code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)
            if [ "$code" = 200 ]; then
                URL2=http://127.0.0.1:$port
                return 0
            fi
            kill -0 "${TSMD_EXTRA_PIDS[-1]}" 2>/dev/null || break
            sleep 0.05
        done
        note "node 2 did not start on port $port; trying another"
    done
    fail "node 2 did not start"
}
node2

tsmd_fleet_tokens fleet-owner
SUB=$FLEET_SUB
rc=0
"$FLEETSIM" --url "$TSMD_URL,$URL2" --instance orange --devices "$CARDS" --inflight 64 \
    --op-token-file "$W/op.token" --sp-token-file "$W/sp.token" \
    --sub-token-file "$W/sub.token" --cms-subscriber "$SUB" --offline-pct 50 \
    --destroy-serial 2 --idle-s 1 --phase-timeout-s 120 --run-tag conc \
    >"$W/fleet.out" 2>"$W/fleetsim.err" || rc=$?
cat "$W/fleet.out"
[ "$rc" = 0 ] || fail "fleetsim exit $rc: $(tail -5 "$W/fleetsim.err")"
line=$(tail -n 1 "$W/fleet.out")
for want in "destroyed=$CARDS" "executed=$CARDS" "duplicates=0"; do
    case " $line " in
    *" $want "*) ;;
    *) fail "expected $want: $line" ;;
    esac
done
# Both nodes carried destroys (the claim spreads the actions over them).
for log in "$W/tsmd.log" "$W/tsmd2.log"; do
    grep -q 'cms.driver action=.* -> done' "$log" || fail "no destroy carried by $(basename "$log")"
done
note "cms.concurrent ok: $CARDS cards, 2 nodes, each destroyed once"
