#!/usr/bin/env bash
# Installs the Debian packages OpenTSM needs, only when something is missing,
# then the npm tooling of tools/ (the OpenAPI linter and puppeteer-core, which
# drives Debian's chromium in the console tests; pinned by
# tools/package-lock.json) with `npm ci --prefix tools` when it is not there.
# Idempotent and silent when everything is already installed.
set -eu

PKGS=(
    build-essential cmake pkg-config git
    clang libclang-rt-14-dev clang-format
    libssl-dev libcmocka-dev libzip-dev zlib1g-dev libjansson-dev
    libpcsclite-dev pcscd vsmartcard-vpcd pcsc-tools opensc
    libcurl4-openssl-dev libsqlite3-dev libpq-dev postgresql libinih-dev
    softhsm2 libp11-kit-dev wrk nginx-light openssl sqlite3 curl
    chromium
)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
# Node.js and npm run the OpenAPI linter (tests/api/lint.sh); any nodejs
# package that provides npm will do (NodeSource's bundles it).
command -v npm >/dev/null || missing+=(nodejs npm)

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
        $SUDO apt-get update -q >/dev/null
        $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

# npm tooling: installed exactly as locked, again when the lock changes.
tools=$(cd "$(dirname "$0")/../tools" && pwd)
if [ ! -x "$tools/node_modules/.bin/redocly" ] || [ ! -d "$tools/node_modules/puppeteer-core" ] ||
    [ "$tools/package-lock.json" -nt "$tools/node_modules/.package-lock.json" ]; then
    echo "deps: npm ci --prefix tools" >&2
    npm ci --prefix "$tools" --no-audit --no-fund --loglevel=error >/dev/null
fi
