#!/usr/bin/env bash
# make demo, the last scene: the web console (issue 14, docs/console.md).
# Starts tsmd with the services this build has (tsm, two mno instances, and
# cms and pay when built), creates an operator, a service provider and a
# subscriber, and prints the console's URL with a sign-in token for each
# role. With DEMO_CONSOLE_KEEP=1 tsmd keeps running until Ctrl-C, so the
# console can be opened in a browser; otherwise the scene ends at once.
#
# usage: scripts/demo_console.sh [BUILD_DIR]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
TSMD=$BUILD/src/bin/tsmd
[ -x "$TSMD" ] || { echo "demo: $TSMD is not built (cmake --build $BUILD)" >&2; exit 1; }
for t in curl jq; do
    command -v "$t" >/dev/null || { echo "demo: $t is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done
# shellcheck source=../tests/tsmd/lib.sh
. "$ROOT/tests/tsmd/lib.sh"
step() { printf '\n== %s\n' "$*"; }

known=$("$TSMD" --set services.enabled=-none- --print-routes 2>&1 >/dev/null |
    sed -n 's/.*(known: \(.*\)).*/\1/p' | tr -d ,) || true
services="tsm, mno:orange, mno:vodafone"
for s in cms pay; do
    case " $known " in *" $s "*) services="$services, $s" ;; esac
done

step "The web console: tsmd with $services"
tsmd_work_init demo-console
tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "services.enabled=$services" "log.level=warn" \
    "console.dir=$ROOT/web"
tsmd_bootstrap ops
tsmd_start
person() { # kind name extra-json -> token
    api POST /admin/v1/principals "$OP_TOKEN" "{\"kind\":\"$1\",\"name\":\"$2\"$3}" \
        -H "Idempotency-Key: demo-$2"
    expect_status 201 "create $1 $2"
    api POST /admin/v1/tokens "$OP_TOKEN" \
        "{\"principal_id\":$(jq -r .id "$TSMD_WORK/resp"),\"label\":\"demo console\",\"ttl_s\":86400}"
    expect_status 201 "token of $2"
    jq -r .token "$TSMD_WORK/resp"
}
SP=$(person service_provider demo-bank ',"display_name":"Demo Bank"')
SUB=$(person subscriber demo-alice ',"msisdns":["33600000009"]')
printf 'console: %s/console/\n' "$TSMD_URL"
printf '  sign in as the operator:         %s\n' "$OP_TOKEN"
printf '  sign in as a service provider:   %s\n' "$SP"
printf '  sign in as a subscriber:         %s\n' "$SUB"
if [ "${DEMO_CONSOLE_KEEP:-0}" = 1 ]; then
    echo "tsmd keeps running (Ctrl-C stops it)"
    wait "$TSMD_PID" || true
else
    echo "(DEMO_CONSOLE_KEEP=1 make demo keeps tsmd running to open the console in a browser)"
fi
echo "demo: console done"
