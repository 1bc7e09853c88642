#!/usr/bin/env bash
# Installs the Debian packages OpenTSM needs, only when something is missing.
# Idempotent and silent when everything is already installed.
set -eu

PKGS=(
    build-essential cmake pkg-config git
    clang libclang-rt-14-dev clang-format
    libssl-dev libcmocka-dev libzip-dev zlib1g-dev libjansson-dev
    libpcsclite-dev pcscd vsmartcard-vpcd pcsc-tools opensc
    libmicrohttpd-dev libgnutls28-dev libcurl4-openssl-dev libsqlite3-dev libpq-dev postgresql libinih-dev
    softhsm2 libp11-kit-dev wrk nginx-light openssl sqlite3 curl
)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
