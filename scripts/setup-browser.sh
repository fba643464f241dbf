#!/usr/bin/env bash
# Installs the browser-test driver (playwright-core, pinned in
# tests/browser/package-lock.json) into tests/browser/node_modules.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/tests/browser"
if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
