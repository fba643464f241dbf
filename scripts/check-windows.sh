#!/usr/bin/env bash
# Proves the host crates (the CLI, the virtual device, the agent) build for
# Windows: `cargo check --workspace --target x86_64-pc-windows-gnu`.
#
# Two crates compile C for the target and need the MinGW-w64 cross toolchain
# (Debian: gcc-mingw-w64-x86-64): ring (rustls' crypto, built by cc with
# x86_64-w64-mingw32-gcc) and littlefs2-sys (the LittleFS C library, whose
# bindgen run needs the MinGW C headers, given to clang through
# BINDGEN_EXTRA_CLANG_ARGS). Fails loudly when the target or the toolchain
# cannot be installed.
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
    echo "installing gcc-mingw-w64-x86-64 (ring and littlefs2-sys compile C for $target)"
    if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
    { $sudo apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq gcc-mingw-w64-x86-64; } || {
        echo "FAILED: cannot install the MinGW-w64 cross compiler (Debian package gcc-mingw-w64-x86-64)" >&2
        exit 1
    }
fi
gcc_include=$(x86_64-w64-mingw32-gcc -print-file-name=include)
sys_include=/usr/x86_64-w64-mingw32/include
[ -f "$sys_include/stdio.h" ] || {
    echo "FAILED: the MinGW-w64 C headers are missing at $sys_include" >&2
    exit 1
}
export BINDGEN_EXTRA_CLANG_ARGS_x86_64_pc_windows_gnu="-I$gcc_include -I$sys_include"
cargo check --workspace --target "$target"
