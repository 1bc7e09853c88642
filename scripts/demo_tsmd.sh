#!/usr/bin/env bash
# make demo, part 2: tsmd, the service host, with the TSM's secure-element
# registry on its embedded defaults (SQLite), over TLS with a local CA.
#
#   1. scripts/certs.sh makes a local CA, a server certificate and an SP
#      client certificate; tsmd starts on a free loopback port,
#   2. an operator is bootstrapped and issues tokens to two service providers,
#   3. the operator imports SEs from a manufacturer's CSV file (one bad row
#      is reported, the rest imported; the key sets go to the key store),
#   4. each SP looks an SE up by MSISDN: the SE identifier alone, then the
#      full SE data (never keys); SP B cannot see SP A's security domain,
#   5. /metrics, the audit log and its verification; SIGTERM stops tsmd.
#
# usage: scripts/demo_tsmd.sh [BUILD_DIR]   (needs targets tsmd and tsmctl)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd) # absolute: the demo works in a temp dir
TSMD=$BUILD/src/bin/tsmd
TSMCTL=$BUILD/src/bin/tsmctl
for b in "$TSMD" "$TSMCTL"; do
    [ -x "$b" ] || { echo "demo: $b is not built (cmake --build $BUILD)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ot-demo-tsmd.XXXXXX")
PID=
cleanup() {
    local rc=$?
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT INT TERM
step() { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "1. a local CA and certificates, tsmd on SQLite over TLS"
"$ROOT/scripts/certs.sh" "$WORK/certs" sp-a >/dev/null 2>&1
ls "$WORK/certs" | sed 's/^/    /'
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/kek"
chmod 600 "$WORK/kek"
cat >"$WORK/tsmd.ini" <<INI
[http]
listen = 127.0.0.1:0
[tls]
cert = $WORK/certs/server.pem
key = $WORK/certs/server.key
client_ca = $WORK/certs/ca.pem
[db]
url = sqlite:$WORK/var/tsmd.db
[keystore]
kek_file = $WORK/kek
INI
cd "$WORK"
"$TSMD" --config tsmd.ini --check-config
OPERATOR=$("$TSMD" --config tsmd.ini --bootstrap-operator demo-operator)
"$TSMD" --config tsmd.ini >"$WORK/tsmd.out" 2>"$WORK/tsmd.log" &
PID=$!
port=
for _ in $(seq 1 100); do
    port=$(sed -n 's/^tsmd: listening on https port \([0-9]*\)$/\1/p' "$WORK/tsmd.out")
    [ -n "$port" ] && break
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/tsmd.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$port" ] || { echo "demo: tsmd did not start" >&2; exit 1; }
URL=https://localhost:$port
echo "    tsmd listening on $URL (pid $PID)"
export XDG_CONFIG_HOME=$WORK/xdg
mkdir -p "$XDG_CONFIG_HOME/opentsm"
# The profile holds a token: only its owner may read it (tsmctl warns otherwise).
(umask 077 && : >"$XDG_CONFIG_HOME/opentsm/config")
cat >"$XDG_CONFIG_HOME/opentsm/config" <<INI
[profile op]
url = $URL
token = $OPERATOR
ca = $WORK/certs/ca.pem
INI
op() { "$TSMCTL" --profile op "$@"; }

step "2. tokens for two service providers"
SPA=$(op token issue --kind service_provider --name bank-a --token-only)
SPB=$(op token issue --kind service_provider --name transit-b --token-only)
echo "    bank-a and transit-b have their tokens (shown once, stored hashed)"
spa() { "$TSMCTL" --url "$URL" --ca "$WORK/certs/ca.pem" --token "$SPA" "$@"; }
spb() { "$TSMCTL" --url "$URL" --ca "$WORK/certs/ca.pem" --token "$SPB" "$@"; }

step "3. the operator imports SEs from a manufacturer's file"
cat >se.csv <<CSV
cin,se_type,mno,msisdn,imsi,profile_id,gp_version,jc_version,cert_level,expiry,free_memory,master_key_index,isd_kvn,isd_enc,isd_mac,isd_dek
4F54534D000000000001,eSE,mno-one,+33600000001,208010000000001,ese-central,2.3.1,3.0.5,EAL5+,2030-12-31,65536,1,48,404142434445464748494A4B4C4D4E4F,404142434445464748494A4B4C4D4E4F,404142434445464748494A4B4C4D4E4F
4F54534D000000000002,UICC,mno-two,+33600000002,208020000000002,uicc-central,2.2.1,3.0.4,EAL5+,2029-06-30,32768,2,,,,
4F54534D000000000003,microSD,mno-two,+33600000003,,sd-v1,2.2,3.0.1,EAL4+,2031-02-30,1024,3,,,,
CSV
show op se import se.csv || true

step "4. service providers look SEs up by MSISDN"
show spa se get --msisdn +33600000001 --id-only
show spa se get --msisdn +33600000001
show op se sd assign 4F54534D000000000001 --aid A00000015153534401 --sp bank-a --privileges 804000
show spa se sd list 4F54534D000000000001
echo "    transit-b asks for the same SE's security domains:"
show spb se sd list 4F54534D000000000001 || true

step "5. metrics, audit log, shutdown"
curl -sf --cacert "$WORK/certs/ca.pem" -H "Authorization: Bearer $OPERATOR" "$URL/metrics" | grep -E '^http_requests_total' | head -5 | sed 's/^/    /'
show op audit list --limit 5 || true
show op audit verify
kill -TERM "$PID"
wait "$PID" && echo "    tsmd stopped cleanly (exit 0)"
PID=
echo
echo "demo: tsmd done"
