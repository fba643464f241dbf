#!/usr/bin/env bash
# The hostile test against a virtual device on 127.0.0.1
# (tests/hostile.py): slowloris, idle floods, stalled uploads, random and
# malformed requests, wrong forms, trailing data, mutated image headers, a
# damaged web UI, an anti-rollback downgrade and power cuts mid-upload.
#
#   scripts/hostile.sh [--short | --long] [--seed N]
#
# --short (default; scripts/test.sh runs it) takes about 30 s and fails past
# 85 s; --long repeats the floods, random requests and power cuts (at most
# 900 s). Uses the debug otter binary and the project's .venv (littlefs-python).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py="$root/.venv/bin/python"
[ -x "$py" ] || { echo "the Python oracles are not installed: run scripts/setup-oracles.sh" >&2; exit 1; }
cargo build --quiet -p otter
exec timeout 1000 "$py" tests/hostile.py --otter "${CARGO_TARGET_DIR:-$root/target}/debug/otter" "$@"
