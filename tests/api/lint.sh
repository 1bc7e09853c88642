#!/usr/bin/env bash
# api.lint (issue 8 point 7): every OpenAPI file in docs/api is valid
# OpenAPI 3.1 and clean under the recommended rules of a maintained linter
# (@redocly/cli, pinned in tools/package-lock.json, installed by
# scripts/deps.sh), warnings included (tools/redocly.yaml; a file listed
# there under apis: gets its exceptions, any other file the rules as they
# are). The linter is first shown to catch the
# defect this test exists for: a flow-mapping description with a comma,
# whose tail becomes a stray key.
#
# usage: lint.sh SOURCE_DIR
set -euo pipefail

src=$1
redocly=$src/tools/node_modules/.bin/redocly
cfg=$src/tools/redocly.yaml
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
[ -x "$redocly" ] || fail "$redocly is missing: run scripts/deps.sh (npm ci --prefix tools)"
# No telemetry, no update check: the test runs offline and tells nobody.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The linter catches a stray key (Error.field of the old tsm.yaml).
cp "$src"/docs/api/*.yaml "$work/"
sed -i 's|^            field:$|            field: {type: string, description: The member, query argument or header at fault.}\n            oldfield:|' \
    "$work/common.yaml"
grep -q 'description: The member, query' "$work/common.yaml" || fail "self-check: could not plant the defect"
if "$redocly" lint --config "$cfg" --format=stylish "$work/common.yaml" >"$work/bad.out" 2>&1; then
    cat "$work/bad.out" >&2
    fail "self-check: the linter accepted a stray key"
fi
grep -q 'is not expected here' "$work/bad.out" || {
    cat "$work/bad.out" >&2
    fail "self-check: the linter failed for another reason"
}

# 2. Every file clean.
rc=0
n=0
for f in "$src"/docs/api/*.yaml; do
    name=$(basename "$f")
    n=$((n + 1))
    if ! "$redocly" lint --config "$cfg" --format=stylish "$f" >"$work/out" 2>&1; then
        grep -v '^ *[║╔╚]' "$work/out" >&2
        echo "FAIL: docs/api/$name does not lint clean" >&2
        rc=1
    fi
done
[ "$n" -ge 3 ] || fail "only $n files in docs/api"
[ "$rc" = 0 ] || exit 1
echo "api lint: $n files valid OpenAPI 3.1, recommended rules clean"
