#!/usr/bin/env bash
# Issue 9 points 2 and 5 through the real tsmd: a damaged SQLite file stops
# tsmd at start with a precise message (PRAGMA quick_check) instead of being
# served; a KEK other than the one the stored keys were sealed under stops
# it too, naming both KEK ids; no KEK configured is an error unless a
# development KEK is asked for.
#
# usage: integrity_test.sh TSMD
set -euo pipefail

TSMD=$(realpath "$1")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../tsmd/lib.sh
. "$ROOT/tests/tsmd/lib.sh"
tsmd_work_init db-integrity

DB=$TSMD_WORK/var/tsmd.db
tsmd_config "sqlite:$DB"

# A working database with a key sealed under this KEK (the bootstrap writes
# the tables; an import would write keys, an SD assignment too: a key row
# written by hand under the KEK's id is enough for the check).
"$TSMD" --config "$TSMD_WORK/tsmd.ini" --bootstrap-operator root >"$TSMD_WORK/tok" 2>"$TSMD_WORK/boot.err" ||
    fail "bootstrap: $(cat "$TSMD_WORK/boot.err")"

# --- a wrong KEK: refused with both ids
sqlite3 "$DB" "INSERT INTO host_keys (owner, name, version, backend, kek_id, sealed, created_at)
               VALUES ('se:1', 'x', 1, 'file', 'file:00112233deadbeef', X'00', 0)"
rc=0
"$TSMD" --config "$TSMD_WORK/tsmd.ini" --check-config >/dev/null 2>&1 || rc=$?
[ $rc -eq 0 ] || fail "--check-config failed ($rc)"
rc=0
timeout 20 "$TSMD" --config "$TSMD_WORK/tsmd.ini" >"$TSMD_WORK/out" 2>"$TSMD_WORK/err" || rc=$?
[ $rc -ne 0 ] || fail "tsmd started with keys of another KEK"
grep -Eq "wrong KEK: the key store holds keys sealed under KEK file:00112233deadbeef, the configured KEK is file:[0-9A-Fa-f]{16}" \
    "$TSMD_WORK/err" || fail "no precise wrong-KEK message: $(cat "$TSMD_WORK/err")"
note "wrong KEK: $(grep -o 'wrong KEK[^(]*' "$TSMD_WORK/err" | head -n 1)"
sqlite3 "$DB" "DELETE FROM host_keys WHERE kek_id = 'file:00112233deadbeef'"

# --- no KEK at all: an error unless keystore.dev_kek=true
rc=0
(cd "$TSMD_WORK" && timeout 20 env -u OPENTSM_KEK "$TSMD" --config "$TSMD_WORK/tsmd.ini" \
    --set keystore.kek_file= >"$TSMD_WORK/out" 2>"$TSMD_WORK/err") || rc=$?
[ $rc -ne 0 ] || fail "tsmd started without a KEK"
grep -q "no KEK: set keystore.kek_file or OPENTSM_KEK" "$TSMD_WORK/err" ||
    fail "no precise no-KEK message: $(cat "$TSMD_WORK/err")"
[ ! -e "$TSMD_WORK/var/tsmd.kek" ] || fail "a development KEK was generated silently"
# a missing KEK file is named
rc=0
timeout 20 "$TSMD" --config "$TSMD_WORK/tsmd.ini" --set "keystore.kek_file=$TSMD_WORK/none.hex" \
    >"$TSMD_WORK/out" 2>"$TSMD_WORK/err" || rc=$?
[ $rc -ne 0 ] || fail "tsmd started with a missing KEK file"
grep -q "cannot open KEK file $TSMD_WORK/none.hex: No such file or directory" "$TSMD_WORK/err" ||
    fail "no precise missing-KEK-file message: $(cat "$TSMD_WORK/err")"

# --- a damaged b-tree page: refused at start, precisely
page=$(sqlite3 "$DB" "PRAGMA page_size")
sqlite3 "$DB" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
pages=$(sqlite3 "$DB" "PRAGMA page_count")
[ "$pages" -gt 3 ] || fail "database too small ($pages pages)"
# page 2 is a b-tree page (the first table's root); its first byte is the page type
printf '\x07' | dd of="$DB" bs=1 seek=$((page * 1)) conv=notrunc status=none
rc=0
timeout 20 "$TSMD" --config "$TSMD_WORK/tsmd.ini" >"$TSMD_WORK/out" 2>"$TSMD_WORK/err" || rc=$?
[ $rc -ne 0 ] || fail "tsmd started on a damaged database"
grep -q "is corrupt (PRAGMA quick_check)" "$TSMD_WORK/err" ||
    fail "no precise corruption message: $(cat "$TSMD_WORK/err")"
note "damaged file: $(grep -m1 'is corrupt' "$TSMD_WORK/err")"
echo "PASS: db integrity through tsmd"
