#!/usr/bin/env bash
# PC/SC acceptance test of the vse (issue 3): a private pcscd with vpcd, a
# card made from profiles/dev.json served by `vse run --vpcd`, opensc-tool
# reading its ATR, then the C client managing and paying with it.
#
# usage: pcsc_test.sh VSE PCSC_CLIENT PROFILE
set -euo pipefail

VSE=$1
CLIENT=$2
PROFILE=$3
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=pcscd_env.sh
. "$HERE/pcscd_env.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ot-vse-pcsc.XXXXXX")
VSE_PID=

cleanup() {
    local rc=$?
    if [ -n "$VSE_PID" ] && kill -0 "$VSE_PID" 2>/dev/null; then
        kill "$VSE_PID" 2>/dev/null || true
        wait "$VSE_PID" 2>/dev/null || true
    fi
    pcscd_env_stop
    if [ $rc -ne 0 ]; then
        echo "--- vse log" >&2
        cat "$WORK/vse.log" >&2 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT INT TERM

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

"$VSE" create --profile "$PROFILE" --out "$WORK/card.img" >/dev/null
# A second card in the same process, on vpcd's second slot (reader 1).
"$VSE" create --profile "$(dirname "$PROFILE")/uicc-central.json" --out "$WORK/card2.img" >/dev/null
pcscd_env_start || fail "pcscd could not start"
echo "pcscd pid $PCSCD_PID, vpcd port $VPCD_PORT, socket $PCSCLITE_CSOCK_NAME"

"$VSE" run "$WORK/card.img" "$WORK/card2.img" --vpcd "127.0.0.1:$VPCD_PORT" >"$WORK/vse.log" 2>&1 &
VSE_PID=$!
pcscd_env_wait_card 0 || fail "the card never showed up in reader 0"
pcscd_env_wait_card 1 || fail "the second card never showed up in reader 1"

# The ATR opensc-tool reads must be the one the card gives at power on.
for k in 0 1; do
    want=$(sed -n "s/.* card=$k .* atr=\([0-9A-F]*\).*/\1/p" "$WORK/vse.log" | head -1)
    [ -n "$want" ] || fail "vse did not log the ATR of card $k"
    got=$(opensc-tool -r "$k" -a | tr -d ':[:space:]' | tr 'a-f' 'A-F')
    echo "reader $k: ATR via opensc-tool $got"
    [ "$got" = "$want" ] || fail "opensc-tool ATR $got in reader $k, the card's $want"
done
opensc-tool -l | grep -q "Virtual PCD" || fail "opensc-tool -l does not list the vpcd reader"

"$CLIENT" || fail "PC/SC client scenario"
# Rejected commands: the specified status words, and the image unchanged.
"$CLIENT" --negative "$WORK/card.img" || fail "PC/SC negative scenario"

# vpcd goes away and comes back (pcscd restarted on the same port): the card
# reconnects by itself and keeps what the client did.
pcscd_env_kill
sleep 0.5
pcscd_env_launch || fail "pcscd could not restart"
pcscd_env_wait_card 0 || fail "the card did not come back after pcscd restarted"
opensc-tool -r 0 -s 00A4040007A000000004101000 | grep -q "SW1=0x90, SW2=0x00" \
    || fail "the payment instance is not selectable after the reconnect"
grep -q "event=disconnected" "$WORK/vse.log" || fail "vse did not notice vpcd going away"
echo "reconnected after a pcscd restart"

# The card image keeps what the client did: the extradited, personalized
# payment instance survives a restart of vse.
kill "$VSE_PID"
wait "$VSE_PID" || fail "vse run did not exit 0 on SIGTERM"
VSE_PID=
"$VSE" inspect "$WORK/card.img" --json >"$WORK/inspect.json"
grep -q "A0000000041010" "$WORK/inspect.json" || fail "the payment instance is not in the image"
grep -q "A00000015153534401" "$WORK/inspect.json" || fail "the SSD is not in the image"
echo "PASS: vse seen through pcscd + vpcd, managed and paid with over PC/SC"
