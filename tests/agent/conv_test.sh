#!/usr/bin/env bash
# The protocol converter against a real vse, through one back end:
#   socket  vse run --listen unix:...   reader SIM1=socket:unix:PATH
#   pcsc    pcscd + vpcd + vse --vpcd   reader SIM1=pcsc:Virtual PCD 00 00
# conv_client's scenario (61xx, 6Cxx, logical channels, refusals), the APDU
# timeout on a stalled card (SIGSTOP), and hot plug: the card goes away
# (vse stopped) and comes back (vse started again on the same image).
#
# usage: conv_test.sh socket|pcsc VSE CONV_CLIENT PROFILE
set -euo pipefail

MODE=$1
VSE=$2
CLIENT=$3
PROFILE=$4
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../vse/pcscd_env.sh
. "$HERE/../vse/pcscd_env.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ot-agent-conv.XXXXXX")
VSE_PID=

stop_vse() {
    if [ -n "$VSE_PID" ]; then
        kill -CONT "$VSE_PID" 2>/dev/null || true
        kill "$VSE_PID" 2>/dev/null || true
        wait "$VSE_PID" 2>/dev/null || true
    fi
    VSE_PID=
}

cleanup() {
    local rc=$?
    stop_vse
    [ "$MODE" = pcsc ] && pcscd_env_stop
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

start_vse() {
    if [ "$MODE" = socket ]; then
        "$VSE" run "$WORK/card.img" --listen "unix:$WORK/card.sock" >>"$WORK/vse.log" 2>&1 &
        VSE_PID=$!
        # The socket file appears at bind, a moment before listen: wait
        # until a connection is taken.
        for _ in $(seq 1 100); do
            [ -S "$WORK/card.sock" ] && [ "$("$CLIENT" "$SPEC" present)" = present ] && return 0
            sleep 0.1
        done
        fail "vse did not listen on $WORK/card.sock"
    else
        "$VSE" run "$WORK/card.img" --vpcd "127.0.0.1:$VPCD_PORT" >>"$WORK/vse.log" 2>&1 &
        VSE_PID=$!
        pcscd_env_wait_card 0 || fail "the card never showed up in reader 0"
    fi
}

"$VSE" create --profile "$PROFILE" --out "$WORK/card.img" >/dev/null
case "$MODE" in
socket) SPEC="SIM1=socket:unix:$WORK/card.sock" ;;
pcsc)
    pcscd_env_start || fail "pcscd could not start"
    SPEC="SIM1=pcsc:Virtual PCD 00 00"
    ;;
*) fail "mode socket or pcsc" ;;
esac

start_vse
"$CLIENT" "$SPEC" | tee "$WORK/out"
grep -qx "conv ok" "$WORK/out" || fail "converter scenario"
# The ATR the converter read is the one the card gave at power on.
want=$(sed -n 's/.* card=0 .* atr=\([0-9A-F]*\).*/\1/p' "$WORK/vse.log" | head -1)
[ -n "$want" ] && grep -qx "ATR $want" "$WORK/out" || fail "ATR: $(grep ATR "$WORK/out"), card's $want"

# A card that stops answering: the APDU timeout, not a hang.
"$CLIENT" "$SPEC" stall "$VSE_PID" | grep -qx "timeout ok" || fail "APDU timeout"
echo "a stalled card ends in the APDU timeout"

# Hot plug: the card goes, the reader says so; it comes back, and works.
stop_vse
for _ in $(seq 1 100); do
    [ "$("$CLIENT" "$SPEC" present)" = absent ] && break
    sleep 0.1
done
[ "$("$CLIENT" "$SPEC" present)" = absent ] || fail "the card is gone but the reader says present"
echo "card removed: absent"
start_vse
[ "$("$CLIENT" "$SPEC" present)" = present ] || fail "the card is back but the reader says absent"
"$CLIENT" "$SPEC" | grep -qx "conv ok" || fail "converter scenario after the card came back"
echo "card back: present, scenario ok"
echo "agent.conv $MODE ok"
