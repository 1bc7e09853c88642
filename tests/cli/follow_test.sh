#!/usr/bin/env bash
# cli.follow: tsmctl audit follow prints the live audit stream
# (GET /admin/v1/events): --from 0 gives the whole log in seq order, each
# row once; rows written while it runs arrive; --limit ends it with exit 0;
# a revoked token ends it with exit 3, saying why; a service provider gets
# 403 (exit 3) and no header.
#
# usage: follow_test.sh TSMD TSMCTL
set -euo pipefail

TSMD=$1
TSMCTL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

cli_tsmd_up cli-follow log.level=warn

# A second operator whose token is revoked at the end.
ctl_run 0 "${OP[@]}" token issue --kind operator --name follower --token-only
FOL=$(cat "$OUT")
ctl_run 0 "${OP[@]}" principal create service_provider f-sp

# The whole log so far, then stop: --limit.
ctl_run 0 "${OP[@]}" audit list --json --limit 1000
n=$(jq length "$OUT")
ctl_run 0 "${OP[@]}" --json audit follow --from 0 --limit "$n"
[ "$(wc -l <"$OUT")" = "$n" ] || fail "follow --from 0 --limit $n printed $(wc -l <"$OUT") lines"
jq -s -e 'map(.seq) == (map(.seq) | sort | unique) and .[0].seq == 1' "$OUT" >/dev/null ||
    fail "rows not once and in order: $(cat "$OUT")"
ascii_only "$OUT"

# Live: follow with the second operator's token in the background; make
# changes; revoke the token: the stream ends with exit 3 and every row
# written meanwhile was printed once, in order.
"$TSMCTL" --url "$TSMD_URL" --token "$FOL" --json audit follow --from "$n" \
    >"$TSMD_WORK/live.out" 2>"$TSMD_WORK/live.err" &
fpid=$!
TSMD_EXTRA_PIDS+=("$fpid")
for i in 1 2 3; do
    ctl_run 0 "${OP[@]}" principal create service_provider "live-$i"
done
# Wait (bounded) until the three creations have been printed.
for _ in $(seq 1 200); do
    [ "$(grep -c 'principal.create' "$TSMD_WORK/live.out" || true)" -ge 3 ] && break
    kill -0 "$fpid" 2>/dev/null || break
    sleep 0.05
done
[ "$(grep -c 'principal.create' "$TSMD_WORK/live.out" || true)" -ge 3 ] ||
    fail "live rows not printed: $(cat "$TSMD_WORK/live.out" "$TSMD_WORK/live.err")"
fid=$("$TSMCTL" "${OP[@]}" --json token list | jq -r '.[] | select(.prefix == "'"${FOL:0:8}"'") | .id')
[ -n "$fid" ] || fail "the follower's token is not listed"
ctl_run 0 "${OP[@]}" token revoke "$fid"
rc=0
for _ in $(seq 1 400); do
    kill -0 "$fpid" 2>/dev/null || break
    sleep 0.05
done
if kill -0 "$fpid" 2>/dev/null; then
    fail "follow still running 20 s after its token was revoked"
fi
wait "$fpid" || rc=$?
[ "$rc" = 3 ] || fail "follow exited $rc after the revocation, want 3: $(cat "$TSMD_WORK/live.err")"
jq -e '.error.status == 401 and (.error.text | contains("stream ended"))' "$TSMD_WORK/live.err" \
    >/dev/null || fail "follow's error: $(cat "$TSMD_WORK/live.err")"
jq -s -e 'map(.seq) == (map(.seq) | sort | unique)
          and (map(select(.action == "principal.create")) | length) == 3
          and .[0].seq == '"$((n + 1))" "$TSMD_WORK/live.out" >/dev/null ||
    fail "live rows: $(cat "$TSMD_WORK/live.out")"

# A service provider: 403, nothing on stdout.
ctl_run 0 "${OP[@]}" token issue --kind service_provider --name f-sp --token-only
SP=$(cat "$OUT")
ctl_run 3 --url "$TSMD_URL" --token "$SP" audit follow --limit 1
[ ! -s "$OUT" ] || fail "a header was printed before a refused stream: $(cat "$OUT")"
err_has '403'
echo "follow: the audit stream printed once and in order, ended by a revocation"
