#!/usr/bin/env bash
# cli.transport (issue 9 point 10): tsmctl says what failed when no HTTP
# answer comes -- libcurl's text, the host, the file -- with the exit code
# `tsmctl --help` documents: 4 server down, wrong CA, hostname mismatch,
# plain HTTP to the TLS port; 5 a missing or garbage --ca file; 2 a
# malformed --url. --json gives the same as one JSON error object.
#
# tsmd runs over TLS with a certificate for DNS:localhost only (signed by a
# local CA), so https://localhost works and https://127.0.0.1 does not match.
#
# usage: transport_test.sh TSMD TSMCTL CERTS_SH
set -euo pipefail

TSMD=$1
TSMCTL=$2
CERTS=$3
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

tsmd_work_init cli-transport
export HOME=$TSMD_WORK/home
unset XDG_CONFIG_HOME OPENTSM_URL OPENTSM_TOKEN OPENTSM_PROFILE
W=$TSMD_WORK
"$CERTS" "$W/ca1" >/dev/null 2>&1 || fail "certs.sh failed"
"$CERTS" "$W/ca2" >/dev/null 2>&1 || fail "certs.sh failed"
# Server certificate for DNS:localhost only, from CA 1.
(
    cd "$W/ca1"
    umask 077
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out dns.key 2>/dev/null
    openssl req -new -key dns.key -subj "/CN=localhost" -out dns.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >dns.ext
    openssl x509 -req -in dns.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 \
        -extfile dns.ext -out dns.pem 2>/dev/null
) || fail "server certificate"

tsmd_config "sqlite:$W/var/tsmd.db" "log.level=warn" "tls.cert=$W/ca1/dns.pem" \
    "tls.key=$W/ca1/dns.key"
tsmd_bootstrap transport-operator
TSMD_URL="https://localhost:$TSMD_PORT"
: >>"$W/tsmd.log"
(cd "$W" && exec "$TSMD" --config "$W/tsmd.ini" "${TSMD_SETS[@]}" >>"$W/tsmd.log" 2>&1) &
TSMD_PID=$!
for _ in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$W/ca1/ca.pem" "$TSMD_URL/readyz" || true)" = 200 ] && break
    kill -0 "$TSMD_PID" 2>/dev/null || fail "tsmd exited at start"
    sleep 0.05
done

# The documented codes first: help and behaviour must agree.
"$TSMCTL" --help >"$W/help"
for line in '2 bad usage, profile file or --url' '4 cannot reach the server' '5 local failure'; do
    grep -qF -- "$line" "$W/help" || fail "--help does not document '$line'"
done

# Control: the right CA and host work.
ctl_run 0 --url "$TSMD_URL" --ca "$W/ca1/ca.pem" --token "$OP_TOKEN" audit verify
out_has 'audit chain intact'

# check RC TEXT... -- ARGS: tsmctl ARGS exits RC, stderr has each TEXT, and
# --json gives one JSON error object on stderr with that exit and nothing
# on stdout.
check() {
    local rc=$1 t texts=()
    shift
    while [ "$1" != -- ]; do
        texts+=("$1")
        shift
    done
    shift
    ctl_run "$rc" "$@" audit verify
    [ ! -s "$OUT" ] || fail "tsmctl $* printed on stdout: $(cat "$OUT")"
    for t in "${texts[@]}"; do err_has "$t"; done
    err_hasnt 'input/output error'
    note "exit $rc: $(cat "$ERR")"
    ctl_run "$rc" --json "$@" audit verify
    [ ! -s "$OUT" ] || fail "tsmctl --json $* printed on stdout: $(cat "$OUT")"
    jq -e --argjson rc "$rc" '.error.exit == $rc and (.error.text | length > 0)' "$ERR" >/dev/null ||
        fail "--json error is not one error object: $(cat "$ERR")"
}

down=$(tsmd_free_port)
check 4 "127.0.0.1:$down" "Couldn't connect" -- --url "https://127.0.0.1:$down" --ca "$W/ca1/ca.pem"
check 4 "localhost:$TSMD_PORT" "certificate" "(CA file $W/ca2/ca.pem)" -- --url "$TSMD_URL" \
    --ca "$W/ca2/ca.pem"
check 4 "127.0.0.1:$TSMD_PORT" "127.0.0.1" "name" -- --url "https://127.0.0.1:$TSMD_PORT" \
    --ca "$W/ca1/ca.pem"
check 4 "localhost:$TSMD_PORT" "a TLS port?" -- --url "http://localhost:$TSMD_PORT" \
    --ca "$W/ca1/ca.pem" --token "$OP_TOKEN"
jq -e '.error.kind == "transport" and (.error.transport | length > 0)' "$ERR" >/dev/null ||
    fail "no libcurl text in the JSON error: $(cat "$ERR")"
check 5 "cannot open CA file $W/nope.pem" "No such file" -- --url "$TSMD_URL" --ca "$W/nope.pem"
printf 'garbage\n' >"$W/garbage.pem"
check 5 "CA file $W/garbage.pem holds no PEM certificate" -- --url "$TSMD_URL" --ca "$W/garbage.pem"
check 2 'malformed URL' -- --url "localhost:$TSMD_PORT:x"
check 2 'malformed URL "https://localhost:99999"' -- --url "https://localhost:99999"
check 2 'the scheme must be https or http' -- --url "ftp://localhost"
check 2 'only scheme://host[:port]' -- --url "$TSMD_URL/tsm/v1"
check 5 "cannot open client certificate $W/nocert.pem" -- --url "$TSMD_URL" --ca "$W/ca1/ca.pem" \
    --cert "$W/nocert.pem" --key "$W/ca1/dns.key"
echo "transport: every failure named, exit codes as documented"
