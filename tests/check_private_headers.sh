#!/usr/bin/env bash
# Fails when a module's private header (src/<mod>/<x>_priv.h) is included from
# outside src/<mod>/ (STYLE.md section 3).
set -euo pipefail
root=${1:-.}
bad=0
while IFS= read -r -d '' f; do
    dir=$(dirname "$f")
    while IFS= read -r inc; do
        mod=${inc%%/*}
        # The module's own directory and its subdirectories (src/se/applets) may.
        if [ "$dir" != "$root/src/$mod" ] && [[ "$dir" != "$root/src/$mod/"* ]]; then
            echo "$f includes private header $inc of module $mod" >&2
            bad=1
        fi
    done < <(grep -oE '#[[:space:]]*include[[:space:]]*"[a-z0-9_]+/[a-z0-9_]+_priv\.h"' "$f" \
                 | grep -oE '[a-z0-9_]+/[a-z0-9_]+_priv\.h' || true)
done < <(find "$root/src" "$root/tests" "$root/fuzz" "$root/bench" -name '*.[ch]' -print0 2>/dev/null)
if [ $bad -ne 0 ]; then
    exit 1
fi
echo "private headers: ok"
