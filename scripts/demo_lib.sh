# shellcheck shell=bash
# The opening the make-demo scenes share. Source it with ROOT set to the
# checkout, then:
#
#   demo_begin BUILD_ARG PROGRAM... [-- TOOL...]
#
# sets BUILD (BUILD_ARG, default $ROOT/build) and TSMD, TSMCTL, AGENT, VSE to
# the programs in it, and stops with a message when a PROGRAM (a path below
# BUILD, e.g. src/bin/tsmd) is not built or a TOOL is not installed.
# tests/tsmd/lib.sh is sourced here (tsmd_*, api, fail, note; the processes
# in TSMD_EXTRA_PIDS are stopped at exit, before tsmd); step and say print a
# scene's headings and the commands it shows.

# shellcheck source=../tests/tsmd/lib.sh
. "$ROOT/tests/tsmd/lib.sh"

step() { printf '\n== %s\n' "$*"; }
say() { printf '$ %s\n' "$*"; }

demo_begin() {
    local p tools=0
    BUILD=$(cd "${1:-$ROOT/build}" && pwd)
    shift
    # shellcheck disable=SC2034 # the scenes use them
    TSMD=$BUILD/src/bin/tsmd
    TSMCTL=$BUILD/src/bin/tsmctl
    AGENT=$BUILD/src/bin/se-agent
    VSE=$BUILD/src/bin/vse
    for p in "$@"; do
        if [ "$p" = -- ]; then
            tools=1
        elif [ "$tools" = 0 ]; then
            [ -x "$BUILD/$p" ] || { echo "demo: $BUILD/$p is not built (cmake --build $BUILD)" >&2; exit 1; }
        else
            command -v "$p" >/dev/null || { echo "demo: $p is missing (scripts/deps.sh installs it)" >&2; exit 1; }
        fi
    done
}
