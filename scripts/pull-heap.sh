#!/usr/bin/env bash
# The heap of the pull client's manifest check (BENCHMARKS.md, "Virtual
# device on the otter-device core"): scripts/pull-heap, release, host.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/scripts/pull-heap"
export CARGO_TARGET_DIR="$root/target/pull-heap"
cargo run -q --release
