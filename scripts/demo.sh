#!/usr/bin/env bash
# make demo: the virtual secure element end to end.
#
#   1. a card is made from profiles/dev.json and its registry printed,
#   2. a private pcscd with vsmartcard's vpcd starts and `vse run` plugs the
#      card into its virtual reader; opensc-tool lists the reader and the ATR,
#   3. a PC/SC program built on OpenTSM's host library opens SCP03, lists the
#      registry, installs a payment application, extradites it to a new
#      supplementary SD, personalizes it through that SD and pays with it; the
#      cryptogram is verified with the issuer key,
#   4. rejected commands get their status words and leave the image as it was,
#   5. the card image, reopened, shows what changed.
#
# usage: scripts/demo.sh [BUILD_DIR]   (default: build; needs targets vse and
#        vse_pcsc_client). DEMO_QUIET=1 hides the APDUs on the wire.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
VSE=$BUILD/src/bin/vse
CLIENT=$BUILD/tests/vse_pcsc_client
for b in "$VSE" "$CLIENT"; do
    [ -x "$b" ] || { echo "demo: $b is not built (cmake --build $BUILD)" >&2; exit 1; }
done
# shellcheck source=../tests/vse/pcscd_env.sh
. "$ROOT/tests/vse/pcscd_env.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ot-demo.XXXXXX")
VSE_PID=
cleanup() {
    local rc=$?
    if [ -n "$VSE_PID" ] && kill -0 "$VSE_PID" 2>/dev/null; then
        kill "$VSE_PID" 2>/dev/null || true
        wait "$VSE_PID" 2>/dev/null || true
    fi
    pcscd_env_stop
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT INT TERM

step() {
    if [ -t 1 ]; then
        printf '\n\033[1m== %s\033[0m\n' "$*"
    else
        printf '\n== %s\n' "$*"
    fi
}

step "1. create a card from profiles/dev.json"
echo "\$ vse create --profile profiles/dev.json --out card.img"
"$VSE" create --profile "$ROOT/profiles/dev.json" --out "$WORK/card.img"
echo "\$ vse inspect card.img"
"$VSE" inspect "$WORK/card.img"

step "2. pcscd + vpcd, and the card in a virtual reader"
pcscd_env_start
echo "private pcscd (pid $PCSCD_PID), vpcd on 127.0.0.1:$VPCD_PORT, PCSCLITE_CSOCK_NAME=$PCSCLITE_CSOCK_NAME"
echo "\$ vse run card.img --vpcd 127.0.0.1:$VPCD_PORT &"
"$VSE" run "$WORK/card.img" --vpcd "127.0.0.1:$VPCD_PORT" >"$WORK/vse.log" 2>&1 &
VSE_PID=$!
pcscd_env_wait_card 0
echo "\$ opensc-tool -l"
opensc-tool -l
echo "\$ opensc-tool -r 0 -a"
opensc-tool -r 0 -a

step "3. manage and pay over PC/SC (SCP03, GET STATUS, INSTALL, extradition, STORE DATA, GENERATE AC)"
if [ -n "${DEMO_QUIET:-}" ]; then
    "$CLIENT"
else
    "$CLIENT" --trace
fi

step "4. rejected commands: the specified status words, the image unchanged"
"$CLIENT" --negative "$WORK/card.img"

step "5. the card image after a restart of vse"
kill "$VSE_PID"
wait "$VSE_PID" || true
VSE_PID=
echo "\$ vse inspect card.img"
"$VSE" inspect "$WORK/card.img"
echo
echo "vse log:"
sed 's/^/  /' "$WORK/vse.log"
echo
echo "demo: done"
