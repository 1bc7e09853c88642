#!/usr/bin/env bash
# api.openapi_coverage (issue 4 point 8): the routes tsmd registers (tsmd
# --print-routes, built-ins included) must be exactly the paths and methods
# of docs/api/*.yaml. Fails on a route missing from the documentation or a
# documented operation the server does not have, naming each difference.
#
# Each file holds its own prefix only: host.yaml /admin/..., SVC.yaml /SVC/...
# (common.yaml: the unprefixed host endpoints; console.yaml: /console and
# its files).
#
# Every service tsmd knows (its "known: ..." list) must have docs/api/SVC.yaml,
# except those in UNDOCUMENTED below; each documented service is enabled for
# --print-routes. A service with named instances is documented with the
# instance as a path parameter (/mno/{instance}/v1/...): it is enabled as
# SVC:doc and /SVC/doc/ is read as /SVC/{instance}/.
#
# The YAML is read with a small line-based reader of the top-level `paths:`
# map: a path key is indented 2 spaces and starts with / (quoted or not), an
# operation is a method name indented 4 spaces under it.
#
# usage: openapi_coverage.sh TSMD DOCS_API_DIR
set -euo pipefail

tsmd=$1
dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Test-only services, and services whose file is being written (remove the
# name in the commit that adds docs/api/SVC.yaml).
UNDOCUMENTED="testsvc"

known=$("$tsmd" --set services.enabled=-none- --print-routes 2>&1 >/dev/null |
    sed -n 's/.*(known: \(.*\)).*/\1/p' | tr -d ,) || true
[ -n "$known" ] || { echo "FAIL: tsmd did not list its known services" >&2; exit 1; }
enabled=
for svc in $known; do
    if [ -f "$dir/$svc.yaml" ]; then
        if grep -q "^  [\"']\?/$svc/{instance}/" "$dir/$svc.yaml"; then
            enabled="$enabled,$svc:doc"
        else
            enabled="$enabled,$svc"
        fi
    elif ! printf ' %s ' "$UNDOCUMENTED" | grep -q " $svc "; then
        echo "FAIL: service $svc has no $dir/$svc.yaml" >&2
        exit 1
    fi
done
"$tsmd" --set "services.enabled=${enabled#,}" --print-routes |
    sed -E 's#^([A-Z]+ /[a-z0-9]+)/doc/#\1/{instance}/#' | sort -u >"$work/server"

for f in "$dir"/*.yaml; do
    base=$(basename "$f" .yaml)
    case $base in
    common) want='^/[a-z]+$' ;;
    host) want='^/admin/' ;;
    console) want='^/console(/|$)' ;;
    *) want="^/$base/" ;;
    esac
    awk -v want="$want" -v file="$(basename "$f")" '
        /^paths:[[:space:]]*$/ { inp = 1; next }
        inp && /^[^[:space:]#]/ { inp = 0 }
        !inp { next }
        /^  ["'"'"']?\// {
            p = $0
            sub(/^  ["'"'"']?/, "", p)
            sub(/["'"'"']?:[[:space:]]*$/, "", p)
            path = p
            if (path !~ want) { print "ERROR " file ": path " path " does not belong in this file" > "/dev/stderr"; exit 1 }
            next
        }
        /^    (get|put|post|delete|patch|head|options):[[:space:]]*$/ {
            m = $1
            sub(/:$/, "", m)
            if (path == "") { print "ERROR method outside a path at line " NR > "/dev/stderr"; exit 1 }
            print toupper(m) " " path
        }
    ' "$f" || echo "ERROR reading $f"
done | sort >"$work/doc.all"
if grep -q '^ERROR' "$work/doc.all"; then
    grep '^ERROR' "$work/doc.all" >&2
    exit 1
fi
sort -u "$work/doc.all" >"$work/doc"
if ! cmp -s "$work/doc.all" "$work/doc"; then
    echo "FAIL: operations documented twice:" >&2
    uniq -d "$work/doc.all" >&2
    exit 1
fi
[ -s "$work/server" ] || { echo "FAIL: tsmd printed no routes" >&2; exit 1; }
[ -s "$work/doc" ] || { echo "FAIL: no operations found in $dir/*.yaml" >&2; exit 1; }

missing=$(comm -23 "$work/server" "$work/doc")
extra=$(comm -13 "$work/server" "$work/doc")
if [ -n "$missing" ] || [ -n "$extra" ]; then
    [ -n "$missing" ] && printf 'FAIL: registered but not documented:\n%s\n' "$missing" >&2
    [ -n "$extra" ] && printf 'FAIL: documented but not registered:\n%s\n' "$extra" >&2
    exit 1
fi
echo "openapi coverage: $(wc -l <"$work/server") operations, documented and registered"
