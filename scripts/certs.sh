#!/usr/bin/env bash
# Generates a local certificate authority, a server certificate for tsmd and a
# client certificate (for mutual TLS) with OpenSSL, into DIR:
#
#   ca.pem ca.key            the local CA (10 years)
#   server.pem server.key    CN=localhost, SAN localhost, 127.0.0.1, ::1 (2 years)
#   client.pem client.key    CN=CLIENT_CN (default sp-client), clientAuth (2 years)
#
# usage: scripts/certs.sh DIR [CLIENT_CN]
# Existing files in DIR are kept unless FORCE=1. Keys are EC P-256, mode 0600.
# For development and tests only: a production deployment uses its own PKI.
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -lt 1 ] && exit 2 || exit 0
fi
dir=$1
client_cn=${2:-sp-client}
mkdir -p "$dir"
cd "$dir"
umask 077

if [ -s server.pem ] && [ -s client.pem ] && [ "${FORCE:-0}" != 1 ]; then
    echo "certs: $dir already has certificates (FORCE=1 to replace)" >&2
    exit 0
fi

newkey() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

newkey ca.key
openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/O=OpenTSM dev/CN=OpenTSM local CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.pem 2>/dev/null

ext=$(mktemp)
trap 'rm -f "$ext" server.csr client.csr ca.srl' EXIT

newkey server.key
openssl req -new -key server.key -subj "/O=OpenTSM dev/CN=localhost" -out server.csr 2>/dev/null
cat >"$ext" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EXT
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 730 -sha256 \
    -extfile "$ext" -out server.pem 2>/dev/null

newkey client.key
openssl req -new -key client.key -subj "/O=OpenTSM dev/CN=$client_cn" -out client.csr 2>/dev/null
cat >"$ext" <<EXT
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EXT
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 730 -sha256 \
    -extfile "$ext" -out client.pem 2>/dev/null

chmod 600 ./*.key
chmod 644 ./*.pem
openssl verify -CAfile ca.pem server.pem client.pem >/dev/null
echo "certs: CA, server (localhost) and client (CN=$client_cn) certificates in $dir" >&2
