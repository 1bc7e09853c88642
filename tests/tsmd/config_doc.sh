#!/usr/bin/env bash
# docs.config: docs/CONFIG.md is what `tsmd --print-config-doc` generates from
# tsmd's option table. Regenerate with:
#   tsmd --print-config-doc > docs/CONFIG.md
# usage: config_doc.sh TSMD CONFIG_MD
set -euo pipefail
if ! diff -u "$2" <("$1" --print-config-doc); then
    echo "FAIL: $2 is out of date: run tsmd --print-config-doc > docs/CONFIG.md" >&2
    exit 1
fi
echo "docs/CONFIG.md: up to date"
