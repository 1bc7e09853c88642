# shellcheck shell=bash
# Sourced by tests/vse/*.sh and scripts/demo.sh: a private pcscd with a vpcd
# reader, isolated from any pcscd of the system.
#
#   pcscd_env_start      starts pcscd; sets PCSCD_DIR, PCSCD_PID, VPCD_PORT and
#                        exports PCSCLITE_CSOCK_NAME for every client
#   pcscd_env_stop       stops it and removes PCSCD_DIR
#   pcscd_env_kill / pcscd_env_launch  stop / start it again on the same port
#   pcscd_env_wait_card N waits until reader N has a card (opensc-tool)
#
# Isolation: pcscd 1.9.9 always creates /run/pcscd/pcscd.comm (the daemon
# ignores PCSCLITE_CSOCK_NAME; only the client library reads it), so pcscd
# runs in its own mount namespace (unshare -m) where a directory of ours is
# bind-mounted on /run/pcscd. Clients outside the namespace reach the socket
# through PCSCLITE_CSOCK_NAME=$PCSCD_DIR/run/pcscd.comm. Its reader.conf (our
# own directory, pcscd -c) puts vpcd on a free port: slot 0 listens on
# VPCD_PORT, slot 1 on VPCD_PORT + 1. Without unshare (no CAP_SYS_ADMIN) it
# falls back to the system path under a lock file, provided no other pcscd
# runs.

PCSCD_DIR=
PCSCD_PID=
VPCD_PORT=
PCSCD_LOCK_FD=

pcscd_env_log() {
    echo "pcscd_env: $*" >&2
}

# A port p with p and p + 1 free on this host: below the kernel's ephemeral
# range (32768 up by default), where no outgoing connection takes its local
# port (a fleet of connections on the machine filled that range), and used
# by no socket at all.
pcscd_env_free_port() {
    local p _
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 12000))
        if ! ss -Htan "( sport = :$p or sport = :$((p + 1)) )" 2>/dev/null | grep -q .; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# A port is probed free, then vpcd (inside pcscd) binds it: another process
# may take it in between. vpcd then logs "Could not initialize connection to
# virtual ICC" and pcscd runs without the reader, so a card could never come:
# that is seen in pcscd's log (written before "daemon ready") and the start is
# retried on a new port.
pcscd_env_start() {
    local drv=/usr/lib/pcsc/drivers/serial/libifdvpcd.so attempt
    command -v pcscd >/dev/null || { pcscd_env_log "pcscd not installed (Debian package pcscd)"; return 1; }
    [ -f "$drv" ] || { pcscd_env_log "$drv missing (Debian package vsmartcard-vpcd)"; return 1; }
    PCSCD_DIR=$(mktemp -d "${TMPDIR:-/tmp}/ot-pcscd.XXXXXX")
    mkdir -p "$PCSCD_DIR/conf" "$PCSCD_DIR/run"
    for attempt in 1 2 3 4 5; do
        VPCD_PORT=$(pcscd_env_free_port) || { pcscd_env_log "no free port pair"; return 1; }
        printf 'FRIENDLYNAME "Virtual PCD"\nDEVICENAME   /dev/null:0x%X\nLIBPATH      %s\nCHANNELID    0x%X\n' \
            "$VPCD_PORT" "$drv" "$VPCD_PORT" >"$PCSCD_DIR/conf/vpcd"
        pcscd_env_launch || return 1
        if ! grep -Eq "Could not initialize connection to virtual ICC|Virtual PCD init failed" \
            "$PCSCD_DIR/pcscd.log"; then
            return 0
        fi
        pcscd_env_log "attempt $attempt: vpcd could not bind port $VPCD_PORT or $((VPCD_PORT + 1))" \
            "(taken since the probe): retrying on another port"
        pcscd_env_kill
    done
    pcscd_env_log "vpcd could not bind a port in 5 attempts"
    return 1
}

# Starts pcscd on PCSCD_DIR's configuration (also after pcscd_env_kill: same
# port, so connected cards find it again).
pcscd_env_launch() {
    local _
    if unshare -m true 2>/dev/null; then
        mkdir -p /run/pcscd 2>/dev/null || true
        # shellcheck disable=SC2016 # $1 and $2 are for the inner sh
        unshare -m sh -c 'mount --bind "$1" /run/pcscd && exec pcscd -f -i -c "$2"' sh \
            "$PCSCD_DIR/run" "$PCSCD_DIR/conf" >"$PCSCD_DIR/pcscd.log" 2>&1 &
        PCSCD_PID=$!
        export PCSCLITE_CSOCK_NAME="$PCSCD_DIR/run/pcscd.comm"
    else
        if [ -z "$PCSCD_LOCK_FD" ]; then
            exec {PCSCD_LOCK_FD}>"${TMPDIR:-/tmp}/opentsm-pcscd.lock"
            flock -w 120 "$PCSCD_LOCK_FD" || { pcscd_env_log "lock busy"; return 1; }
        fi
        if [ -S /run/pcscd/pcscd.comm ] && pgrep -x pcscd >/dev/null; then
            pcscd_env_log "a system pcscd runs and unshare -m is not permitted: cannot isolate"
            return 1
        fi
        pcscd -f -i -c "$PCSCD_DIR/conf" >"$PCSCD_DIR/pcscd.log" 2>&1 &
        PCSCD_PID=$!
        export PCSCLITE_CSOCK_NAME=/run/pcscd/pcscd.comm
    fi
    for _ in $(seq 1 100); do
        [ -S "$PCSCLITE_CSOCK_NAME" ] && grep -q "daemon ready" "$PCSCD_DIR/pcscd.log" && return 0
        if ! kill -0 "$PCSCD_PID" 2>/dev/null; then
            pcscd_env_log "pcscd exited:"
            cat "$PCSCD_DIR/pcscd.log" >&2
            return 1
        fi
        sleep 0.1
    done
    pcscd_env_log "pcscd not ready after 10 s:"
    cat "$PCSCD_DIR/pcscd.log" >&2
    return 1
}

# Stops pcscd but keeps PCSCD_DIR (for pcscd_env_launch).
pcscd_env_kill() {
    if [ -n "$PCSCD_PID" ] && kill -0 "$PCSCD_PID" 2>/dev/null; then
        kill "$PCSCD_PID" 2>/dev/null || true
        wait "$PCSCD_PID" 2>/dev/null || true
    fi
    PCSCD_PID=
}

# Waits up to 30 s (a loaded 2-core CI machine can take a while between vse's
# connect, vpcd's reader slot and pcscd's next poll); on failure shows why.
pcscd_env_wait_card() {
    local reader=${1:-0} _
    for _ in $(seq 1 300); do
        if opensc-tool -r "$reader" -a >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    pcscd_env_log "no card in reader $reader after 30 s; readers and pcscd log:"
    opensc-tool -l >&2 || true
    tail -20 "$PCSCD_DIR/pcscd.log" >&2 || true
    return 1
}

pcscd_env_stop() {
    pcscd_env_kill
    if [ -n "$PCSCD_LOCK_FD" ]; then
        exec {PCSCD_LOCK_FD}>&-
        PCSCD_LOCK_FD=
    fi
    if [ -n "$PCSCD_DIR" ] && [ -z "${KEEP_PCSCD_DIR:-}" ]; then
        rm -rf "$PCSCD_DIR"
    fi
}
