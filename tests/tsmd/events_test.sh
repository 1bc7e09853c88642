#!/usr/bin/env bash
# tsmd.events (issue 8 point 5): GET /admin/v1/events, the live audit stream
# for an operator's SIEM.
#
# - a stream opened before changes gets each of their audit rows once, in
#   seq order, as SSE events (id = seq, event audit, data = the row);
# - a client that reconnects with Last-Event-ID = the last id it saw misses
#   nothing: it gets exactly the rows after it, those written while it was
#   away included (compared with GET /admin/v1/audit);
# - Last-Event-ID 0 replays the whole log, paced so that a backlog much
#   larger than the per-stream buffer (http.stream_buf_kib) arrives whole;
# - a bad Last-Event-ID is 400; a service provider gets 403;
# - revoking the streaming operator's token ends the stream.
#
# Waiting for an event is a bounded wait loop (no timing is asserted).
#
# usage: events_test.sh TSMD
set -euo pipefail

TSMD=$1
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

for t in curl jq; do
    command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
done
tsmd_work_init tsmd-events
# A small per-stream buffer: resuming from far back must pace itself
# instead of overflowing it (which drops the client as a dead one).
tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "log.level=info" "http.stream_buf_kib=16"
tsmd_bootstrap events-op
tsmd_start

# A second operator whose token streams (revoked at the end).
OP2=$(tsmd_principal operator siem)
api POST /admin/v1/tokens "$OP_TOKEN" "{\"principal_id\":$OP2,\"label\":\"siem\"}"
expect_status 201 "siem token"
SIEM=$(jq -r .token "$TSMD_WORK/resp")
SIEM_ID=$(jq -r .id "$TSMD_WORK/resp")

STREAM_PID=
# stream_open FILE [LAST_EVENT_ID]
stream_open() {
    local args=(-sN --max-time 120 -H "Authorization: Bearer $SIEM")
    [ $# -lt 2 ] || args+=(-H "Last-Event-ID: $2")
    : >"$1"
    curl "${args[@]}" "$TSMD_URL/admin/v1/events" >"$1" 2>/dev/null &
    STREAM_PID=$!
    TSMD_EXTRA_PIDS+=("$STREAM_PID")
}
# ids FILE: the event ids received, one a line
ids() { sed -n 's/^id: //p' "$1"; }
# wait_for FILE COUNT: until COUNT events arrived (at most 20 s)
wait_for() {
    local i
    for i in $(seq 1 400); do
        [ "$(ids "$1" | wc -l)" -ge "$2" ] && return 0
        sleep 0.05
    done
    fail "$(ids "$1" | wc -l) events in $1 after 20 s, want $2: $(cat "$1")"
}
mk() { # mk NAME: one audited change
    api POST /admin/v1/principals "$OP_TOKEN" "{\"kind\":\"device\",\"name\":\"$1\"}" \
        -H "Idempotency-Key: ev-$1"
    expect_status 201 "create $1"
}
# audit_after SEQ: the seqs GET /admin/v1/audit lists after SEQ
audit_after() {
    local cur="" seq=$1
    : >"$TSMD_WORK/audit.ids"
    while :; do
        api GET "/admin/v1/audit?limit=1000${cur:+&cursor=$cur}" "$OP_TOKEN"
        jq -r --argjson s "$seq" '.items[] | select(.seq > $s) | .seq' "$TSMD_WORK/resp" \
            >>"$TSMD_WORK/audit.ids"
        cur=$(jq -r .next_cursor "$TSMD_WORK/resp")
        [ "$cur" != null ] || break
    done
    cat "$TSMD_WORK/audit.ids"
}

# ---- refusals ----
api GET /admin/v1/events "$SIEM" - -H "Last-Event-ID: 12x"
expect_status 400 "a bad Last-Event-ID"
SP=$(tsmd_principal service_provider sp-ev)
TSP=$(tsmd_token "$SP")
api GET /admin/v1/events "$TSP"
expect_status 403 "a service provider"

# ---- live: each row once, in order ----
api GET "/admin/v1/audit?limit=1000" "$OP_TOKEN"
START=$(jq -r '[.items[].seq] | max' "$TSMD_WORK/resp")
stream_open "$TSMD_WORK/s1" "$START"
mk ev-a
mk ev-b
mk ev-c
# Every row GET /admin/v1/audit lists after START, and nothing else, in order.
audit_after "$START" >"$TSMD_WORK/want1"
W=$(wc -l <"$TSMD_WORK/want1")
[ "$W" -ge 3 ] || fail "three changes made $W audit rows"
wait_for "$TSMD_WORK/s1" "$W"
grep -q '^event: audit$' "$TSMD_WORK/s1" || fail "no event: audit line"
[ "$(sed -n 's/^data: //p' "$TSMD_WORK/s1" | jq -s '[.[] | select(.action == "principal.create")] | length')" = 3 ] ||
    fail "the stream lacks the three principal.create rows: $(cat "$TSMD_WORK/s1")"
ids "$TSMD_WORK/s1" >"$TSMD_WORK/s1.ids"
sort -n -u "$TSMD_WORK/s1.ids" | cmp -s - "$TSMD_WORK/s1.ids" ||
    fail "ids repeat or go back: $(tr '\n' ' ' <"$TSMD_WORK/s1.ids")"
# A request's own log row is written by the node's sealer shortly after the
# answer (audit_enqueue), so the list taken right after the changes may not
# hold it yet while the stream already does: until both agree (bounded), read
# the list again and wait for the stream to have as many rows.
for _ in $(seq 1 40); do
    cmp -s "$TSMD_WORK/want1" "$TSMD_WORK/s1.ids" && break
    sleep 0.1
    audit_after "$START" >"$TSMD_WORK/want1"
    wait_for "$TSMD_WORK/s1" "$(wc -l <"$TSMD_WORK/want1")"
    ids "$TSMD_WORK/s1" >"$TSMD_WORK/s1.ids"
done
cmp -s "$TSMD_WORK/want1" "$TSMD_WORK/s1.ids" ||
    fail "stream $(tr '\n' ' ' <"$TSMD_WORK/s1.ids") != audit $(tr '\n' ' ' <"$TSMD_WORK/want1")"
LAST=$(tail -n 1 "$TSMD_WORK/s1.ids")
kill "$STREAM_PID" 2>/dev/null || true
wait "$STREAM_PID" 2>/dev/null || true

# ---- away, then resume with Last-Event-ID ----
mk ev-d
mk ev-e
audit_after "$LAST" >"$TSMD_WORK/want2"
W=$(wc -l <"$TSMD_WORK/want2")
[ "$W" -ge 2 ] || fail "expected the rows written while away"
stream_open "$TSMD_WORK/s2" "$LAST"
wait_for "$TSMD_WORK/s2" "$W"
ids "$TSMD_WORK/s2" | head -n "$W" >"$TSMD_WORK/s2.ids"
cmp -s "$TSMD_WORK/want2" "$TSMD_WORK/s2.ids" ||
    fail "resume got $(tr '\n' ' ' <"$TSMD_WORK/s2.ids"), want $(tr '\n' ' ' <"$TSMD_WORK/want2")"

# ---- resuming from the start: a backlog far larger than the buffer ----
for i in $(seq 1 100); do mk "bulk-$i"; done
audit_after 0 >"$TSMD_WORK/want3"
W=$(wc -l <"$TSMD_WORK/want3")
[ "$W" -ge 80 ] || fail "only $W audit rows for the backlog"
kill "$STREAM_PID" 2>/dev/null || true
wait "$STREAM_PID" 2>/dev/null || true
stream_open "$TSMD_WORK/s3" 0
wait_for "$TSMD_WORK/s3" "$W"
ids "$TSMD_WORK/s3" | head -n "$W" >"$TSMD_WORK/s3.ids"
cmp -s "$TSMD_WORK/want3" "$TSMD_WORK/s3.ids" || fail "the backlog stream differs from the audit list"
[ "$(wc -c <"$TSMD_WORK/s3")" -gt 32768 ] || fail "the backlog was not larger than the stream buffer"

# ---- revoking the token ends the stream ----
api DELETE "/admin/v1/tokens/$SIEM_ID" "$OP_TOKEN"
expect_status 200 "revoke the siem token"
for i in $(seq 1 400); do
    kill -0 "$STREAM_PID" 2>/dev/null || break
    sleep 0.05
done
kill -0 "$STREAM_PID" 2>/dev/null && fail "the stream is still open 20 s after its token was revoked"
api GET /admin/v1/events "$SIEM"
expect_status 401 "the revoked token"
tsmd_stop
echo "tsmd.events: ok"
