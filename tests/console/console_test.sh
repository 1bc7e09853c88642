#!/usr/bin/env bash
# console.browser (issue 14): the web console in a real headless Chromium
# (Debian's chromium, driven by tests/console/browser.mjs through
# puppeteer-core from tools/, installed by scripts/deps.sh), against a real
# tsmd on loopback with the tsm service and an mno instance.
#
# usage: console_test.sh TSMD TSMCTL SOURCE_DIR SHOTS_DIR
set -euo pipefail

TSMD=$1
TSMCTL=$2
SRC=$3
SHOTS=$4
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../tsmd/lib.sh
. "$HERE/../tsmd/lib.sh"

for t in curl jq node; do
    command -v "$t" >/dev/null || fail "$t is missing (scripts/deps.sh installs it)"
done
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || fail "$CHROMIUM is missing (scripts/deps.sh installs chromium)"
[ -d "$SRC/tools/node_modules/puppeteer-core" ] || fail "puppeteer-core is missing: run scripts/deps.sh"

tsmd_work_init console
tsmd_config "sqlite:$TSMD_WORK/var/tsmd.db" "services.enabled=tsm, mno:orange, cms" \
    "console.dir=$SRC/web" "console.session_ttl_s=600"
tsmd_bootstrap ops
tsmd_start

# The people of the test: two banks and a subscriber, each with a token.
mk() { # kind name [extra json] -> token on stdout
    local extra=${3:-}
    api POST /admin/v1/principals "$OP_TOKEN" "{\"kind\":\"$1\",\"name\":\"$2\"$extra}" \
        -H "Idempotency-Key: p-$2"
    expect_status 201 "create $1 $2"
    local id
    id=$(jq -r .id "$TSMD_WORK/resp")
    api POST /admin/v1/tokens "$OP_TOKEN" "{\"principal_id\":$id,\"label\":\"console test\"}"
    expect_status 201 "token for $2"
    jq -r .token "$TSMD_WORK/resp"
}
SP_A=$(mk service_provider bank-a ',"display_name":"Bank A"')
SP_B=$(mk service_provider bank-b ',"display_name":"Bank B"')
SUB=$(mk subscriber alice ',"msisdns":["33611111111"]')
# A second operator token: the first one is revoked during the test.
api POST /admin/v1/tokens "$OP_TOKEN" '{"principal_id":1,"label":"console test 2"}'
expect_status 201 "second operator token"
OP2=$(jq -r .token "$TSMD_WORK/resp")

cat >"$TSMD_WORK/ses.csv" <<CSV
cin,se_type,mno,msisdn,imsi,profile_id,gp_version,jc_version,cert_level,expiry,free_memory,master_key_index
A0000001000000000001,eSE,orange,33612345678,208010000000001,ese-central,2.3.1,3.0.5,EAL5+,2031-12-31,65536,1
CSV
api POST /tsm/v1/secure-elements:import "$OP_TOKEN" - -H "Content-Type: text/csv" \
    -H "Idempotency-Key: ses-1" --data-binary "@$TSMD_WORK/ses.csv"
expect_status 200 "SE import"

mkdir -p "$SHOTS"
OT_URL=$TSMD_URL OT_OP_TOKEN=$OP_TOKEN OT_OP2_TOKEN=$OP2 OT_SP_A=$SP_A OT_SP_B=$SP_B \
    OT_SUB=$SUB OT_SHOTS=$SHOTS OT_CHROMIUM=$CHROMIUM OT_TSMD_LOG=$TSMD_WORK/tsmd.log \
    NODE_PATH="$SRC/tools/node_modules" \
    node "$HERE/browser.mjs" || fail "browser checks failed"
echo "console.browser: ok (screenshots in $SHOTS)"
