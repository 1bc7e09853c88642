#!/usr/bin/env bash
# tsmd --bootstrap-operator NAME is one transaction (issue 4; "a crash at any
# point loses no acknowledged data"; "log administrative actions"; "bad
# input gets a precise error and changes nothing"):
#
# - a first bootstrap creates the operator, issues its token and writes the
#   audit rows principal.create and operator.bootstrap, which tsmctl audit
#   list shows through the API and tsmctl audit verify accepts;
# - when the audit row cannot be written (the audit table is renamed away in
#   the SQLite file: a real failure of the database) the bootstrap exits 1
#   with a precise message, prints no token, and leaves no new principal, no
#   new token and no audit row behind, for a new operator and for an
#   existing one; with the table back it succeeds;
# - a bad name exits 2 with a precise message and changes nothing.
#
# usage: bootstrap_test.sh TSMD TSMCTL
set -euo pipefail

TSMD=$1
TSMCTL=$2
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

for t in curl jq sqlite3; do
    command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
done
tsmd_work_init tsmd-bootstrap
DB=$TSMD_WORK/var/tsmd.db
tsmd_config "sqlite:$DB" "log.level=warn"

# boot NAME: runs the bootstrap; exit status in $BOOT_RC, stdout in
# $TSMD_WORK/boot.out, stderr in $TSMD_WORK/boot.err.
boot() {
    BOOT_RC=0
    (cd "$TSMD_WORK" && "$TSMD" --config "$TSMD_WORK/tsmd.ini" "${TSMD_SETS[@]}" \
        --bootstrap-operator "$1" >"$TSMD_WORK/boot.out" 2>"$TSMD_WORK/boot.err") || BOOT_RC=$?
}

sql() {
    sqlite3 -batch "$DB" "$1"
}

# The rows a failed bootstrap must leave as they were; the audit rows are
# read from $AUDIT_T (renamed away in step 2).
AUDIT_T=host_audit_log
state() {
    sql "SELECT 'p', id, kind, name FROM host_principals ORDER BY id;
         SELECT 't', id, principal_id FROM host_tokens ORDER BY id;
         SELECT 'a', seq, action FROM $AUDIT_T ORDER BY seq;
         SELECT 'h', seq, hex(hash) FROM host_audit_head;"
}

# expect_fail RC REGEX WHAT: the last boot failed as wanted, printing no token.
expect_fail() {
    [ "$BOOT_RC" -eq "$1" ] || fail "$3: exit $BOOT_RC, want $1: $(cat "$TSMD_WORK/boot.err")"
    [ ! -s "$TSMD_WORK/boot.out" ] || fail "$3: printed something on stdout: $(cat "$TSMD_WORK/boot.out")"
    grep -Eq "$2" "$TSMD_WORK/boot.err" ||
        fail "$3: stderr does not match /$2/: $(cat "$TSMD_WORK/boot.err")"
    note "$3: $(grep -E "$2" "$TSMD_WORK/boot.err" | head -n 1)"
}

# 1. A first bootstrap: operator, token and both audit rows.
boot root-op
[ "$BOOT_RC" -eq 0 ] || fail "first bootstrap exited $BOOT_RC: $(cat "$TSMD_WORK/boot.err")"
OP_TOKEN=$(cat "$TSMD_WORK/boot.out")
[ ${#OP_TOKEN} -eq 46 ] || fail "bootstrap token has ${#OP_TOKEN} characters"
OP_ID=$(sql "SELECT id FROM host_principals WHERE kind = 1 AND name = 'root-op'")
[ -n "$OP_ID" ] || fail "no operator root-op after the bootstrap"
[ "$(sql "SELECT COUNT(*) FROM host_tokens WHERE principal_id = $OP_ID")" = 1 ] ||
    fail "want one token for root-op"
[ "$(sql "SELECT action || ' ' || resource || ' ' || principal_name FROM host_audit_log
          WHERE request_id = 'cli' ORDER BY seq" | tr '\n' ';')" = \
    "principal.create /admin/v1/principals/$OP_ID root-op;operator.bootstrap /admin/v1/tokens/$(sql "SELECT id FROM host_tokens WHERE principal_id = $OP_ID") root-op;" ] ||
    fail "audit rows of the first bootstrap: $(sql "SELECT seq, action, resource FROM host_audit_log")"

# 2. The audit table is gone: nothing may change, for a new operator and for
#    an existing one.
before=$(state)
# (the change's row goes to host_audit_pending, the sealer's to the log)
sql "ALTER TABLE host_audit_log RENAME TO host_audit_log_off;
     ALTER TABLE host_audit_pending RENAME TO host_audit_pending_off"
AUDIT_T=host_audit_log_off
during=$(state)
[ "$during" = "$before" ] || fail "state() does not follow the renamed table"
boot new-op
expect_fail 1 'bootstrap of operator "new-op" failed: cannot write the audit row: .*; nothing was changed' \
    "new operator, audit table gone"
[ "$(state)" = "$during" ] || fail "a failed bootstrap of new-op changed the database: $(state)"
boot root-op
expect_fail 1 'bootstrap of operator "root-op" failed: cannot write the audit row: .*; nothing was changed' \
    "existing operator, audit table gone"
[ "$(state)" = "$during" ] || fail "a failed bootstrap of root-op changed the database: $(state)"
sql "ALTER TABLE host_audit_log_off RENAME TO host_audit_log;
     ALTER TABLE host_audit_pending_off RENAME TO host_audit_pending"
AUDIT_T=host_audit_log
[ "$(state)" = "$before" ] || fail "the database differs after the failed bootstraps: $(state)"

# 3. Bad input: a precise error (exit 2) and no change.
boot "bad name"
expect_fail 2 'bootstrap of operator "bad name" failed: the name must be 1 to 63 printable ASCII characters without spaces; nothing was changed' \
    "name with a space"
[ "$(state)" = "$before" ] || fail "a bootstrap with a bad name changed the database: $(state)"

# 4. With the table back: the new operator, then a second token for the
#    existing one (audited, no second principal.create).
boot new-op
[ "$BOOT_RC" -eq 0 ] || fail "bootstrap of new-op after repair exited $BOOT_RC: $(cat "$TSMD_WORK/boot.err")"
boot root-op
[ "$BOOT_RC" -eq 0 ] || fail "second bootstrap of root-op exited $BOOT_RC: $(cat "$TSMD_WORK/boot.err")"
SECOND=$(cat "$TSMD_WORK/boot.out")
[ "$SECOND" != "$OP_TOKEN" ] || fail "the second bootstrap printed the first token again"
[ "$(sql "SELECT COUNT(*) FROM host_tokens WHERE principal_id = $OP_ID")" = 2 ] ||
    fail "want two tokens for root-op"
[ "$(sql "SELECT COUNT(*) FROM host_principals WHERE name = 'root-op'")" = 1 ] ||
    fail "root-op created twice"
[ "$(sql "SELECT action FROM host_audit_log WHERE request_id = 'cli' ORDER BY seq" | tr '\n' ' ')" = \
    "principal.create operator.bootstrap principal.create operator.bootstrap operator.bootstrap " ] ||
    fail "audit rows after the bootstraps: $(sql "SELECT seq, action, principal_name FROM host_audit_log")"

# 5. The rows through the API (tsmctl audit list) and the chain intact.
tsmd_start
out=$("$TSMCTL" --url "$TSMD_URL" --token "$SECOND" --json audit list --action operator.bootstrap) ||
    fail "tsmctl audit list failed: $out"
got=$(printf '%s\n' "$out" | jq -r 'map(.principal_name + " " + .outcome + " " + .request_id) | join(";")')
[ "$got" = "root-op ok cli;new-op ok cli;root-op ok cli" ] ||
    fail "tsmctl audit list --action operator.bootstrap: $got (raw: $out)"
"$TSMCTL" --url "$TSMD_URL" --token "$SECOND" audit verify >"$TSMD_WORK/verify.out" 2>&1 ||
    fail "tsmctl audit verify failed: $(cat "$TSMD_WORK/verify.out")"
"$TSMCTL" audit verify --db "sqlite:$DB" >"$TSMD_WORK/verify.out" 2>&1 ||
    fail "tsmctl audit verify --db failed: $(cat "$TSMD_WORK/verify.out")"
tsmd_stop
echo "bootstrap: one transaction, audited; failures change nothing"
