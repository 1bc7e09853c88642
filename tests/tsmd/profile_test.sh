#!/usr/bin/env bash
# tsmctl profiles (~/.config/opentsm/config, or $XDG_CONFIG_HOME/opentsm/
# config) hold API tokens: like ssh with a private key, tsmctl warns on
# stderr when such a file is readable or writable by group or others,
# naming the file and the fix (chmod 600 FILE), and still runs the command.
# A file without a token, or with owner-only permissions, gets no warning.
#
# The file's syntax (issue 9 point 18, documented in tsmctl --help): a
# profile or key given twice, an unknown key or section, a key before any
# section and bad quoting are errors (exit 2) naming FILE:LINE; "# ..." and
# "; ..." after a space are comments; a value in double quotes is taken as
# written; a named profile in a file that does not exist says "cannot open
# FILE: ...".
#
# usage: profile_test.sh TSMD TSMCTL
set -euo pipefail

TSMD=$1
TSMCTL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

for t in curl jq; do
    command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
done
tsmd_work_init tsmd-profile
tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "log.level=warn"
tsmd_bootstrap profile-operator
tsmd_start

export HOME=$TSMD_WORK/home
unset XDG_CONFIG_HOME OPENTSM_URL OPENTSM_TOKEN OPENTSM_PROFILE
CONF=$HOME/.config/opentsm/config
mkdir -p "$(dirname "$CONF")"

# profile WITH_TOKEN: writes $CONF with a default profile (and a second one
# without a token); with_token=0 leaves the token out of the file.
profile() {
    rm -f "$CONF"
    {
        echo "[profile default]"
        echo "url = $TSMD_URL"
        [ "$1" = 1 ] && echo "token = $OP_TOKEN"
        echo "[profile notoken]"
        echo "url = $TSMD_URL"
    } >"$CONF"
}

# run_ctl ARGS...: tsmctl token list; exit status in $CTL_RC, stderr in
# $TSMD_WORK/ctl.err.
run_ctl() {
    CTL_RC=0
    "$TSMCTL" "$@" token list >"$TSMD_WORK/ctl.out" 2>"$TSMD_WORK/ctl.err" || CTL_RC=$?
}

# check MODE TOKEN_IN_FILE WANT [tsmctl global options...]: one case. WANT:
# the words between "is" and "by other users" of the warning, "" for none.
check() {
    local mode=$1 tok=$2 want=$3 line
    shift 3
    profile "$tok"
    chmod "$mode" "$CONF"
    run_ctl "$@"
    [ "$CTL_RC" -eq 0 ] || fail "mode $mode: tsmctl exited $CTL_RC: $(cat "$TSMD_WORK/ctl.err")"
    grep -q "ot_" "$TSMD_WORK/ctl.out" ||
        fail "mode $mode: token list printed no token: $(cat "$TSMD_WORK/ctl.out")"
    if [ -z "$want" ]; then
        [ ! -s "$TSMD_WORK/ctl.err" ] || fail "mode $mode: unexpected stderr: $(cat "$TSMD_WORK/ctl.err")"
        return 0
    fi
    line="tsmctl: warning: $CONF holds an API token and is $want by other users (mode $mode); run: chmod 600 $CONF"
    [ "$(cat "$TSMD_WORK/ctl.err")" = "$line" ] ||
        fail "mode $mode: stderr is '$(cat "$TSMD_WORK/ctl.err")', want '$line'"
    note "mode $mode: $(cat "$TSMD_WORK/ctl.err")"
}

check 0600 1 ""
check 0400 1 ""
check 0700 1 ""
check 0611 1 "" # execute bits only: nothing to read or change
check 0644 1 readable
check 0640 1 readable
check 0604 1 readable
check 0620 1 writable
check 0602 1 writable
check 0660 1 "readable and writable"
check 0666 1 "readable and writable"
# No token in the file: nothing to protect.
check 0644 0 "" --token "$OP_TOKEN"
# A token in another profile of the file than the one used: still a leak.
check 0644 1 readable --profile notoken --token "$OP_TOKEN"

# The XDG location is checked (and named) the same way.
export XDG_CONFIG_HOME=$TSMD_WORK/xdg
CONF=$XDG_CONFIG_HOME/opentsm/config
mkdir -p "$(dirname "$CONF")"
check 0640 1 readable
check 0600 1 ""

# Syntax (point 18). bad LINE WHY: the file (on stdin) is refused, exit 2,
# with "FILE:LINE: WHY" on stderr.
unset XDG_CONFIG_HOME
CONF=$HOME/.config/opentsm/config
bad() {
    local line=$1 why=$2 rc=0
    rm -f "$CONF"
    (umask 077 && cat >"$CONF")
    "$TSMCTL" token list >"$TSMD_WORK/ctl.out" 2>"$TSMD_WORK/ctl.err" || rc=$?
    [ "$rc" -eq 2 ] || fail "file refused with exit $rc, want 2 ($why): $(cat "$TSMD_WORK/ctl.err")"
    [ ! -s "$TSMD_WORK/ctl.out" ] || fail "stdout after a profile error: $(cat "$TSMD_WORK/ctl.out")"
    grep -qF "tsmctl: $CONF:$line: $why" "$TSMD_WORK/ctl.err" ||
        fail "stderr is '$(cat "$TSMD_WORK/ctl.err")', want '$CONF:$line: $why'"
}
bad 3 "profile given twice" <<INI
[profile default]
url = $TSMD_URL
[profile default]
token = $OP_TOKEN
INI
bad 3 "key given twice in this profile" <<INI
[profile default]
url = $TSMD_URL
url = http://127.0.0.1:1
INI
bad 2 "unknown key (url, token, ca, cert, key)" <<INI
[profile default]
tokn = $OP_TOKEN
INI
bad 1 "KEY = VALUE before any [profile NAME]" <<INI
url = $TSMD_URL
INI
bad 2 "unknown section (want [profile NAME])" <<INI
[profile default]
[default]
INI
bad 2 "unterminated quote" <<INI
[profile default]
token = "$OP_TOKEN
INI
bad 2 "text after the closing quote" <<INI
[profile default]
token = "$OP_TOKEN" junk
INI
bad 2 "a quote inside a bare value" <<INI
[profile default]
token = $OP_TOKEN"
INI
bad 2 "expected KEY = VALUE or [profile NAME]" <<INI
[profile default]
url
INI
# Comments and quotes: the values are what is meant, and the command works.
rm -f "$CONF"
(umask 077 && cat >"$CONF") <<INI
# a comment line
; another
[profile default]   # the default profile
url = $TSMD_URL   # the local tsmd
token = "$OP_TOKEN"   ; quoted
[profile other]
url = "http://127.0.0.1:1#not-a-comment"
INI
"$TSMCTL" token list >"$TSMD_WORK/ctl.out" 2>"$TSMD_WORK/ctl.err" ||
    fail "comments and quotes: $(cat "$TSMD_WORK/ctl.err")"
grep -q "ot_" "$TSMD_WORK/ctl.out" || fail "comments and quotes: no token listed"
# A # without a space before it belongs to the value (here a URL that is
# then refused for its fragment, naming it).
rc=0
"$TSMCTL" --profile other token list >/dev/null 2>"$TSMD_WORK/ctl.err" || rc=$?
[ "$rc" = 2 ] && grep -qF 'malformed URL "http://127.0.0.1:1#not-a-comment"' "$TSMD_WORK/ctl.err" ||
    fail "quoted # value: exit $rc: $(cat "$TSMD_WORK/ctl.err")"
# A missing file: named profile -> "cannot open FILE"; none named -> fine.
rm -f "$CONF"
rc=0
"$TSMCTL" --profile op token list >/dev/null 2>"$TSMD_WORK/ctl.err" || rc=$?
[ "$rc" = 2 ] || fail "missing file: exit $rc"
grep -qF "tsmctl: cannot open $CONF: No such file or directory" "$TSMD_WORK/ctl.err" ||
    fail "missing file: $(cat "$TSMD_WORK/ctl.err")"
"$TSMCTL" --url "$TSMD_URL" --token "$OP_TOKEN" token list >/dev/null 2>"$TSMD_WORK/ctl.err" ||
    fail "no file and no profile asked: $(cat "$TSMD_WORK/ctl.err")"
# A named profile the file lacks.
printf '[profile default]\nurl = %s\n' "$TSMD_URL" >"$CONF"
rc=0
"$TSMCTL" --profile op token list >/dev/null 2>"$TSMD_WORK/ctl.err" || rc=$?
[ "$rc" = 2 ] && grep -qF "no [profile op] in $CONF" "$TSMD_WORK/ctl.err" ||
    fail "absent profile: exit $rc: $(cat "$TSMD_WORK/ctl.err")"
echo "profile: warnings as wanted, syntax errors named"
