#!/usr/bin/env bash
# Installs the browser-test driver (playwright-core, pinned in
# tests/browser/package-lock.json) into tests/browser/node_modules.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/tests/browser"
if [ ! -f "$dir/package-lock.json" ]; then
    echo "no browser tests in this tree (tests/browser/package-lock.json missing); nothing to install"
    exit 0
fi
cd "$dir"
npm ci --no-audit --no-fund --loglevel=error
