#!/usr/bin/env bash
# Proves the host crates (the CLI, the virtual device, the agent) build for
# Windows: `cargo check --workspace --target x86_64-pc-windows-gnu`.
#
# One crate compiles C for the target and needs the MinGW-w64 cross
# toolchain (Debian: gcc-mingw-w64-x86-64): ring (rustls' crypto, built by cc
# with x86_64-w64-mingw32-gcc). Fails loudly when the target or the
# toolchain cannot be installed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=x86_64-pc-windows-gnu
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    rustup target add "$target" || {
        echo "FAILED: cannot install the Rust target $target (rustup target add $target)" >&2
        exit 1
    }
fi
if ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
    echo "installing gcc-mingw-w64-x86-64 (ring compiles C for $target)"
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    { $sudo apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq gcc-mingw-w64-x86-64; } || {
        echo "FAILED: cannot install the MinGW-w64 cross compiler (Debian package gcc-mingw-w64-x86-64)" >&2
        exit 1
    }
fi
cargo check --workspace --target "$target"
