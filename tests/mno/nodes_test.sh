#!/usr/bin/env bash
# mno.nodes_pg (DESIGN.md 5, issue 10): two tsmd nodes on one PostgreSQL.
# The device's push stream is held by node 1; a job submitted to node 2
# reaches it (the event row's notice wakes node 1, which pushes it); the
# session runs on node 2 and the job ends done, seen by both nodes. The
# device's token revoked through node 2 closes the stream node 1 holds. Node 1
# killed with SIGKILL: the device opens its stream on node 2 and gets the
# next job there. (The same behind nginx, with se-agent: nginx_test.sh.)
#
# usage: nodes_test.sh TSMD (under tests/pg/with_pg.sh)
set -euo pipefail

TSMD=$1
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"

need_tools curl jq
[ -n "${OPENTSM_TEST_PG_URL:-}" ] || fail "OPENTSM_TEST_PG_URL is not set (run under tests/pg/with_pg.sh)"
tsmd_work_init mno-nodes
tsmd_config "$OPENTSM_TEST_PG_URL" "log.level=warn" "services.enabled=tsm, mno:orange" \
    "mno.orange.sweep_ms=60000" "mno.orange.backoff_s=0"
tsmd_bootstrap ops
tsmd_start
URL1=$TSMD_URL
PID1=$TSMD_PID
# Node 2: the same configuration on another port. Node 1 sweeps once a
# minute (after its start and at registration), so node 2 is the one that
# wakes the job: the event reaches node 1 through PostgreSQL's notice only.
PORT2=$(tsmd_free_port)
URL2="http://127.0.0.1:$PORT2"
(cd "$TSMD_WORK" && exec "$TSMD" --config "$TSMD_WORK/tsmd.ini" "${TSMD_SETS[@]}" \
    --set "http.listen=127.0.0.1:$PORT2" --set mno.orange.sweep_ms=50 >>"$TSMD_WORK/tsmd2.log" 2>&1) &
PID2=$!
node2_stop() { kill -TERM "$PID2" 2>/dev/null || true; wait "$PID2" 2>/dev/null || true; }
trap 'node2_stop; tsmd_cleanup' EXIT
for _ in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL2/readyz" || true)" = 200 ] && break
    sleep 0.05
done

P=/mno/orange/v1
# shellcheck source=ram.sh
. "$HERE/ram.sh" # PROTO, CT_RSP
CIN=0102030405060708090A
FROM="X-Admin-From: //se-id/cin/$CIN;//agent-id/imei/356938035643809"

api POST /admin/v1/principals "$OP_TOKEN" \
    '{"kind":"device","name":"phone","imei":"356938035643809","imsi":"208011234567890","mno":"orange"}' \
    -H "Idempotency-Key: d1"
expect_status 201 "device principal"
D=$(jq -r .id "$TSMD_WORK/resp")
TD=$(tsmd_token "$D")
SP=$(tsmd_principal service_provider bank)
TSP=$(tsmd_token "$SP")
api POST $P/devices "$OP_TOKEN" "{\"principal_id\":$D,\"msisdn\":\"33600000001\",\"cins\":[\"$CIN\"]}" \
    -H "Idempotency-Key: e1"
expect_status 201 "enrol"
api POST $P/device/register "$TD" '{}'
expect_status 200 "register on node 1"

wait_in() { # FILE TEXT
    for _ in $(seq 1 200); do
        grep -qF -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    fail "no \"$2\" in $1: $(cat "$1")"
}
curl -s -N --max-time 60 -H "Authorization: Bearer $TD" "$URL1$P/device/stream" >"$TSMD_WORK/s1" &
S1=$!
sleep 0.3
# The job goes to node 2.
TSMD_URL=$URL2
api POST $P/jobs "$TSP" '{"msisdn":"33600000001","se":{"cin":"0102030405060708090A"},"kind":"scripted","apdus":["80CA9F7F00"]}' \
    -H "Idempotency-Key: j1"
expect_status 201 "submit on node 2"
J1=$(jq -r .id "$TSMD_WORK/resp")
wait_in "$TSMD_WORK/s1" "\"job\":\"$J1\""
API_STATUS=$(curl -s -X POST -o "$TSMD_WORK/resp" -w '%{http_code}' -H "Authorization: Bearer $TD" \
    -H "$PROTO" -H "$FROM" "$URL2$P/admin/jobs/$J1")
expect_status 200 "open the session on node 2"
printf '\xaf\x80\x80\x01\x01\x23\x02\x90\x00\x00\x00' >"$TSMD_WORK/ok.bin"
API_STATUS=$(curl -s -X POST -o "$TSMD_WORK/resp" -w '%{http_code}' -H "Authorization: Bearer $TD" \
    -H "$PROTO" -H "$FROM" -H "X-Admin-Script-Status: ok" -H "$CT_RSP" \
    --data-binary @"$TSMD_WORK/ok.bin" "$URL2$P/admin/jobs/$J1/scripts/1")
expect_status 204 "responses on node 2"
TSMD_URL=$URL1
api GET $P/jobs/$J1 "$TSP"
[ "$(jq -r .state "$TSMD_WORK/resp")" = done ] || fail "node 1 sees the job done"

# The device's token revoked through node 2: node 1 hears it (the auth
# notice) and closes the stream it holds.
TSMD_URL=$URL2
api GET "/admin/v1/tokens?principal_id=$D" "$OP_TOKEN"
expect_status 200 "the device's tokens"
TD_ID=$(jq -er '.items[0].id' "$TSMD_WORK/resp")
api DELETE "/admin/v1/tokens/$TD_ID" "$OP_TOKEN"
case $API_STATUS in 200 | 204) ;; *) fail "revoke on node 2: $API_STATUS" ;; esac
for _ in $(seq 1 200); do
    kill -0 "$S1" 2>/dev/null || break
    sleep 0.05
done
! kill -0 "$S1" 2>/dev/null || fail "node 1 kept the stream of a token revoked on node 2"
wait "$S1" 2>/dev/null || true
TD=$(tsmd_token "$D")

# Node 1 dies; the device reconnects to node 2 and gets the next job there.
kill -KILL "$PID1"
wait "$PID1" 2>/dev/null || true
TSMD_PID=
TSMD_URL=$URL2
api POST $P/device/register "$TD" '{}'
expect_status 200 "register on node 2"
curl -s -N --max-time 60 -H "Authorization: Bearer $TD" "$URL2$P/device/stream" >"$TSMD_WORK/s2" &
S2=$!
sleep 0.3
api POST $P/jobs "$TSP" '{"msisdn":"33600000001","se":{"cin":"0102030405060708090A"},"kind":"scripted","apdus":["80CA9F7F00"]}' \
    -H "Idempotency-Key: j2"
expect_status 201 "submit after node 1 died"
J2=$(jq -r .id "$TSMD_WORK/resp")
wait_in "$TSMD_WORK/s2" "\"job\":\"$J2\""
kill "$S2" 2>/dev/null || true
wait "$S2" 2>/dev/null || true
node2_stop
echo "mno.nodes_pg: ok"
