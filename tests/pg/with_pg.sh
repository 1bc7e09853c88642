#!/bin/sh
# with_pg.sh COMMAND [ARG...]: runs COMMAND against a throwaway PostgreSQL server.
#
# initdb into a fresh temp dir as an unprivileged user (the `postgres` system user of
# Debian's postgresql package when run as root, as ctest does in CI; the caller otherwise),
# starts the server on 127.0.0.1 on an unused port with its unix socket inside the temp dir,
# creates database ot_test, exports
#   OPENTSM_TEST_PG_URL=postgresql://ot:<random password>@127.0.0.1:<port>/ot_test
# (plus OPENTSM_TEST_PG_PORT and OPENTSM_TEST_PG_DIR) and runs COMMAND. The server is stopped
# and the directory removed on any exit, including failure or a signal. COMMAND's exit status
# is returned. Extra server options: OT_PG_OPTS (e.g. "-c max_connections=300").
set -eu

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi

pgbin=${OT_PG_BIN:-}
if [ -z "$pgbin" ]; then
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && pgbin=$d
    done
fi
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
    echo "with_pg: no PostgreSQL server binaries (Debian package postgresql)" >&2
    exit 1
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/ot-pg-XXXXXX")
as_pg() { "$@"; }
if [ "$(id -u)" -eq 0 ]; then
    # initdb refuses to run as root: hand the directory to an unprivileged user.
    pguser=${OT_PG_USER:-postgres}
    if ! id "$pguser" >/dev/null 2>&1; then
        echo "with_pg: running as root but user $pguser does not exist" >&2
        rmdir "$dir"
        exit 1
    fi
    chown "$pguser" "$dir"
    as_pg() { runuser -u "$pguser" -- "$@"; }
fi
chmod 700 "$dir"

started=0
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ "$started" -eq 1 ]; then
        as_pg "$pgbin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

pw=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$pw" >"$dir/pw"
[ "$(id -u)" -eq 0 ] && chown "$pguser" "$dir/pw"
as_pg "$pgbin/initdb" -D "$dir/data" -U ot --pwfile="$dir/pw" -A scram-sha-256 \
    --auth-local=trust -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    exit 1
}
rm -f "$dir/pw"
mkdir "$dir/sock"
[ "$(id -u)" -eq 0 ] && chown "$pguser" "$dir/sock"

# Pick a free port: try a few random ones, a start failure means it was taken meanwhile.
port=0
for _ in 1 2 3 4 5 6 7 8; do
    p=$(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 20000 + 30000 ))
    if command -v ss >/dev/null 2>&1 && ss -Htln "sport = :$p" | grep -q .; then
        continue
    fi
    # shellcheck disable=SC2086 # OT_PG_OPTS is split on purpose
    if as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $p -c unix_socket_directories=$dir/sock ${OT_PG_OPTS:-}" \
        start >/dev/null 2>&1; then
        port=$p
        started=1
        break
    fi
done
if [ "$port" -eq 0 ]; then
    echo "with_pg: server did not start" >&2
    cat "$dir/server.log" >&2 || true
    exit 1
fi

as_pg "$pgbin/createdb" -h "$dir/sock" -p "$port" -U ot ot_test

OPENTSM_TEST_PG_URL="postgresql://ot:$pw@127.0.0.1:$port/ot_test"
OPENTSM_TEST_PG_PORT=$port
OPENTSM_TEST_PG_DIR=$dir
export OPENTSM_TEST_PG_URL OPENTSM_TEST_PG_PORT OPENTSM_TEST_PG_DIR

# Run COMMAND in the background and wait for it, so that a signal to this script interrupts
# the wait at once (traps are deferred while a foreground child runs): it is passed on to
# COMMAND and the EXIT trap removes the server. stdin is handed through explicitly.
exec 3<&0
"$@" <&3 3<&- &
child=$!
exec 3<&-
trap 'kill -TERM "$child" 2>/dev/null; exit 129' HUP
trap 'kill -INT "$child" 2>/dev/null; exit 130' INT
trap 'kill -TERM "$child" 2>/dev/null; exit 143' TERM
rc=0
wait "$child" || rc=$?
exit "$rc"
