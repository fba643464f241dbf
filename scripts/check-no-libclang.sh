#!/usr/bin/env bash
# Proves the host build needs nothing beyond the Rust toolchain: no crate in
# the workspace's build graph runs bindgen or loads libclang (clang-sys), and
# the build (every build script) succeeds with LIBCLANG_PATH pointing nowhere.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
for c in bindgen clang-sys; do
    n=$(cargo tree --workspace -e normal,build --prefix none 2>/dev/null | grep -c "^$c " || true)
    if [ "$n" -ne 0 ]; then
        echo "FAILED: the build graph pulls in $c (needs libclang):" >&2
        cargo tree --workspace -e normal,build -i "$c" >&2 || true
        exit 1
    fi
done
echo "cargo tree: no bindgen or clang-sys in the workspace's build graph"
# Build scripts are where bindgen would look for libclang; a debug build runs
# every one of them and shares its artifacts with the test build that follows.
env -u LLVM_CONFIG_PATH LIBCLANG_PATH=/nonexistent cargo build --workspace --all-targets --quiet
echo "build ok with LIBCLANG_PATH=/nonexistent"
