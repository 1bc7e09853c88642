# shellcheck shell=bash
# Helpers of the tsmctl tests (tests/cli/*_test.sh), on top of
# tests/tsmd/lib.sh (tsmd in a temp dir on a loopback port).
#
#   cli_tsmd_up PREFIX [K=V...]  tsmd on SQLite in a temp dir (plain HTTP), an
#                             operator token in $OP_TOKEN, OP=(--url .. --token ..),
#                             HOME in the temp dir, no OPENTSM_* variables
#   ctl_run WANT_RC ARGS...   runs tsmctl ARGS; fails unless it exits WANT_RC;
#                             stdout in $OUT, stderr in $ERR (files)
#   out_has / out_hasnt / err_has / err_hasnt TEXT   fixed-string checks
#   no_raw_controls FILE      fails if FILE holds a control byte other than
#                             LF, or a bidi control in UTF-8
#   ascii_only FILE           fails if FILE holds a byte over 0x7F
# shellcheck source=../tsmd/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../tsmd" && pwd)/lib.sh"

ctl_run() {
    local want=$1 got=0
    shift
    OUT=$TSMD_WORK/ctl.out
    ERR=$TSMD_WORK/ctl.err
    "$TSMCTL" "$@" >"$OUT" 2>"$ERR" || got=$?
    if [ "$got" != "$want" ]; then
        echo "--- stdout" >&2
        cat -v "$OUT" >&2
        echo "--- stderr" >&2
        cat -v "$ERR" >&2
        fail "tsmctl $* exited $got, want $want"
    fi
}

out_has() { grep -qF -- "$1" "$OUT" || { cat -v "$OUT" >&2; fail "stdout lacks '$1'"; }; }
out_hasnt() { ! grep -qF -- "$1" "$OUT" || { cat -v "$OUT" >&2; fail "stdout has '$1'"; }; }
err_has() { grep -qF -- "$1" "$ERR" || { cat -v "$ERR" >&2; fail "stderr lacks '$1'"; }; }
err_hasnt() { ! grep -qF -- "$1" "$ERR" || { cat -v "$ERR" >&2; fail "stderr has '$1'"; }; }

no_raw_controls() {
    if LC_ALL=C grep -qP '[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\x8b-\x8f\xaa-\xae]|\xe2\x81[\xa0-\xa9]|\xef\xbb\xbf' "$1"; then
        cat -v "$1" >&2
        fail "$1 holds a raw control or bidi character"
    fi
}

ascii_only() {
    if LC_ALL=C grep -qP '[\x80-\xff]' "$1"; then
        cat -v "$1" >&2
        fail "$1 is not pure ASCII"
    fi
}

cli_tsmd_up() {
    local prefix=$1
    shift
    command -v jq >/dev/null || fail "jq is missing (scripts/deps.sh installs it)"
    tsmd_work_init "$prefix"
    tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "$@"
    tsmd_bootstrap "$prefix-operator"
    tsmd_start
    export HOME=$TSMD_WORK/home
    unset XDG_CONFIG_HOME OPENTSM_URL OPENTSM_TOKEN OPENTSM_PROFILE
    OP=(--url "$TSMD_URL" --token "$OP_TOKEN")
}
