#!/usr/bin/env bash
# vse command line: exit codes and messages of create / inspect / run, the
# socket protocol served by `vse run --listen` for several cards in one
# process, and a clean exit on SIGTERM / SIGINT.
#
# usage: cli_test.sh VSE SOCK_CLIENT PROFILES_DIR
set -euo pipefail

VSE=$1
SOCK=$2
PROFILES=$3
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ot-vse-cli.XXXXXX")
PIDS=()

cleanup() {
    local rc=$? p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ $rc -ne 0 ] && [ -f "$WORK/run.log" ]; then
        echo "--- vse run log" >&2
        cat "$WORK/run.log" >&2
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT INT TERM

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# expect CODE REGEX CMD...: runs CMD, checks its exit code and that stdout +
# stderr match REGEX (extended).
expect() {
    local want=$1 re=$2 rc=0
    shift 2
    "$@" >"$WORK/out" 2>&1 || rc=$?
    [ "$rc" -eq "$want" ] || fail "'$*' exited $rc, want $want: $(cat "$WORK/out")"
    grep -Eq -- "$re" "$WORK/out" || fail "'$*' output does not match /$re/: $(cat "$WORK/out")"
}

wait_path() {
    local _
    for _ in $(seq 1 100); do
        [ -S "$1" ] && return 0
        sleep 0.05
    done
    fail "$1 never appeared"
}

# --- usage errors: exit 2
expect 2 "usage: vse"                          "$VSE"
expect 2 "unknown command 'frobnicate'"        "$VSE" frobnicate
expect 2 "--profile and --out are required"    "$VSE" create --profile "$PROFILES/dev.json"
expect 2 "unknown option '--bogus'"            "$VSE" create --bogus
expect 2 "option --out needs a value"          "$VSE" create --profile x --out
expect 2 "which image"                         "$VSE" inspect
expect 2 "give --vpcd HOST:PORT and/or --listen" "$VSE" run "$WORK/a.img"
expect 2 "no card image given"                 "$VSE" run --vpcd 127.0.0.1:35963
expect 2 "bad --vpcd '127.0.0.1'"              "$VSE" run "$WORK/a.img" --vpcd 127.0.0.1
expect 2 "bad --log-level 'loud'"              "$VSE" inspect "$WORK/a.img" --log-level loud
expect 2 "2 card\\(s\\) but 1 --listen"        "$VSE" run a.img b.img --listen unix:/tmp/x
expect 2 "bad --idle-timeout 'soon'"           "$VSE" run a.img --listen unix:/tmp/x --idle-timeout soon
expect 2 "bad --idle-timeout '-1'"             "$VSE" run a.img --listen unix:/tmp/x --idle-timeout -1
# --- help and version: exit 0
expect 0 "^vse [0-9]+\\.[0-9]+\\.[0-9]+ \\(OpenTSM\\)" "$VSE" --version
expect 0 "usage: vse create"                   "$VSE" create --help
expect 0 "--vpcd HOST:PORT"                    "$VSE" run --help
expect 0 "--json"                              "$VSE" inspect -h
# --- failures: exit 1 with the reason
expect 1 "profile $WORK/none.json: not found|profile $WORK/none.json: .*" \
    "$VSE" create --profile "$WORK/none.json" --out "$WORK/a.img"
expect 1 "cannot open $WORK/none.img: "        "$VSE" inspect "$WORK/none.img"
printf 'not a card image' >"$WORK/junk.img"
expect 1 "cannot open $WORK/junk.img: "        "$VSE" inspect "$WORK/junk.img"
# issue 9 point 19: an empty image is corrupt; a FIFO is refused without waiting
: >"$WORK/empty.img"
expect 1 "cannot open $WORK/empty.img: .*\\(OT_E_CORRUPT\\)" "$VSE" inspect "$WORK/empty.img"
mkfifo "$WORK/fifo.img"
expect 1 "$WORK/fifo.img is not a regular file" timeout 20 "$VSE" inspect "$WORK/fifo.img"
expect 1 "$WORK/fifo.img is not a regular file" timeout 20 "$VSE" run "$WORK/fifo.img" --listen "unix:$WORK/f.sock"
[ ! -e "$WORK/a.img" ] || fail "a failed create left an image"

# --- create and inspect
expect 0 "created $WORK/a.img"                 "$VSE" create --profile "$PROFILES/dev.json" --out "$WORK/a.img"
expect 1 "exists \\(use --force"               "$VSE" create --profile "$PROFILES/dev.json" --out "$WORK/a.img"
expect 0 "created"                             "$VSE" create --profile "$PROFILES/dev.json" --out "$WORK/a.img" --force
expect 0 "created"                             "$VSE" create --profile "$PROFILES/ese-central.json" --out "$WORK/b.img"
expect 0 "ISD A000000151000000"                "$VSE" inspect "$WORK/a.img"
ln -s a.img "$WORK/a-link.img"
expect 2 "are the same image" "$VSE" run "$WORK/a.img" "$WORK/a-link.img" --vpcd 127.0.0.1:1
"$VSE" inspect "$WORK/a.img" --json >"$WORK/a.json"
python3 -m json.tool "$WORK/a.json" >/dev/null || fail "inspect --json is not JSON"
grep -q '"A000000151000000"' "$WORK/a.json" || fail "inspect --json lacks the ISD"

# --- one process, two cards, unix and tcp sockets
expect 1 "cannot listen on udp:1: " "$VSE" run "$WORK/a.img" --listen udp:1
"$VSE" run "$WORK/a.img" "$WORK/b.img" --listen "unix:$WORK/a.sock" --listen "unix:$WORK/b.sock" \
    >"$WORK/run.log" 2>&1 &
PIDS+=($!)
wait_path "$WORK/a.sock"
wait_path "$WORK/b.sock"
"$SOCK" "unix:$WORK/a.sock" >"$WORK/sa.out" || fail "socket scenario on card a"
"$SOCK" "unix:$WORK/b.sock" >"$WORK/sb.out" || fail "socket scenario on card b"
grep -q "sock ok" "$WORK/sa.out" || fail "socket scenario on card a"
grep -q "sock ok" "$WORK/sb.out" || fail "socket scenario on card b"
# issue 9 point 8: a second vse on a running image is refused, naming the holder.
expect 1 "$WORK/a.img is in use by vse process ${PIDS[0]} \\(stop it first\\)" \
    "$VSE" run "$WORK/a.img" --listen "unix:$WORK/a2.sock"
expect 1 "$WORK/b.img is in use by vse process ${PIDS[0]}" \
    "$VSE" run "$WORK/b.img" --vpcd 127.0.0.1:1
# A second server on a live socket path is refused.
expect 0 "created" "$VSE" create --profile "$PROFILES/dev.json" --out "$WORK/c.img"
expect 1 "in use by another server" "$VSE" run "$WORK/c.img" --listen "unix:$WORK/a.sock"
kill -TERM "${PIDS[0]}"
rc=0
wait "${PIDS[0]}" || rc=$?
PIDS=()
[ $rc -eq 0 ] || fail "vse run exited $rc on SIGTERM"
if [ -e "$WORK/a.sock" ] || [ -e "$WORK/b.sock" ]; then
    fail "socket files left behind"
fi
grep -q "event=stop reason=signal" "$WORK/run.log" || fail "no clean stop logged"

# the image is free again once its vse stopped
expect 1 "cannot listen on udp:2: " "$VSE" run "$WORK/a.img" --listen udp:2

# tcp on a port the kernel picks (no probe-then-bind race), stopped with SIGINT
# wait_listen LOG: the bound port from "event=listening ... port=N"
wait_listen() {
    local _ p
    for _ in $(seq 1 200); do
        p=$(sed -n 's/.*event=listening addr=tcp:[^ ]* port=\([0-9]*\).*/\1/p' "$1" | head -n 1)
        [ -n "$p" ] && { echo "$p"; return 0; }
        sleep 0.05
    done
    fail "no listening port in $1: $(cat "$1")"
}
"$VSE" run "$WORK/a.img" --listen "tcp:127.0.0.1:0" >"$WORK/run.log" 2>&1 &
PIDS+=($!)
port=$(wait_listen "$WORK/run.log")
grep -q "WARNING" "$WORK/run.log" && fail "a loopback listener was warned about: $(cat "$WORK/run.log")"
"$SOCK" "tcp:127.0.0.1:$port" >"$WORK/st.out" || fail "socket scenario over tcp"
kill -INT "${PIDS[0]}"
rc=0
wait "${PIDS[0]}" || rc=$?
PIDS=()
[ $rc -eq 0 ] || fail "vse run exited $rc on SIGINT"

# issue 9 point 22: a non-loopback listener is warned about on stderr
"$VSE" run "$WORK/a.img" --listen "tcp:0.0.0.0:0" --log-level error >"$WORK/run.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do
    grep -q "WARNING" "$WORK/run.log" && break
    sleep 0.05
done
grep -q "vse run: WARNING: tcp:0.0.0.0:0 is not loopback and the card's socket has no authentication" \
    "$WORK/run.log" || fail "no warning for a listener on 0.0.0.0: $(cat "$WORK/run.log")"
kill -TERM "${PIDS[0]}"
wait "${PIDS[0]}" || true
PIDS=()
echo "PASS: vse cli"
