#!/usr/bin/env bash
# Issue 8 acceptance 1: a test that picks a free port recovers when another
# process takes it between the probe and the bind. Here vpcd's port is taken
# right after pcscd_env_free_port probed it (the probe is made to answer a
# port a listener of ours holds): pcscd_env_start must notice that vpcd could
# not bind and start again on another port, with a reader a card can use.
#
# usage: port_race_test.sh VSE PROFILE
set -euo pipefail

VSE=$1
PROFILE=$2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=pcscd_env.sh
. "$HERE/pcscd_env.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ot-vse-race.XXXXXX")
HOLD_PID=
VSE_PID=

cleanup() {
    local rc=$? p
    for p in "$VSE_PID" "$HOLD_PID"; do
        if [ -n "$p" ]; then
            kill "$p" 2>/dev/null || true
            wait "$p" 2>/dev/null || true
        fi
    done
    pcscd_env_stop
    [ $rc -eq 0 ] || cat "$WORK/vse.log" >&2 2>/dev/null || true
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT INT TERM

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# A listener on a port the kernel picks; its number in $WORK/held.
python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("0.0.0.0", 0))
s.listen(1)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(300)
' "$WORK/held" &
HOLD_PID=$!
for _ in $(seq 1 100); do
    [ -s "$WORK/held" ] && break
    sleep 0.05
done
HELD=$(cat "$WORK/held")
[ -n "$HELD" ] || fail "the port holder did not start"

# The first probe answers the held port (as if it was free when probed and
# taken just after); later probes are the real ones.
eval "real_$(declare -f pcscd_env_free_port)"
pcscd_env_free_port() {
    if [ ! -e "$WORK/probed" ]; then
        : >"$WORK/probed"
        echo "$HELD"
        return 0
    fi
    real_pcscd_env_free_port
}

pcscd_env_start 2>"$WORK/start.err" || fail "pcscd_env_start did not recover: $(cat "$WORK/start.err")"
cat "$WORK/start.err" >&2
grep -q "attempt 1: vpcd could not bind port $HELD" "$WORK/start.err" ||
    fail "the taken port $HELD was not noticed: $(cat "$WORK/start.err")"
[ "$VPCD_PORT" != "$HELD" ] || fail "still on the taken port"
echo "vpcd port $HELD was taken; pcscd started on $VPCD_PORT instead"

"$VSE" create --profile "$PROFILE" --out "$WORK/card.img" >/dev/null
"$VSE" run "$WORK/card.img" --vpcd "127.0.0.1:$VPCD_PORT" >"$WORK/vse.log" 2>&1 &
VSE_PID=$!
pcscd_env_wait_card 0 || fail "no card in the reader after the retry"
echo "PASS: vpcd port race recovered"
