#!/usr/bin/env bash
# Runs otter-device on the real instruction set: builds the bare riscv32imc
# scenario in crates/otter-device/qemu (an HTTP upload of the corpus
# ESP32-C3 hello_world image through the device core into a RAM flash with
# esp-storage's 4-byte rules, then the boot model boots the new slot) and
# runs it on qemu-system-riscv32 -machine virt with exact instruction
# counting. Fails loudly when QEMU or the target is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v qemu-system-riscv32 >/dev/null; then
    echo "FAILED: qemu-system-riscv32 is missing (scripts/setup-system.sh installs qemu-system-misc)" >&2
    exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx riscv32imc-unknown-none-elf; then
    echo "FAILED: the riscv32imc-unknown-none-elf target is missing (rustup target add riscv32imc-unknown-none-elf)" >&2
    exit 1
fi
# Built into the repository's target directory, so CI's cache of it holds this too.
out="$root/target/qemu"
cd "$root/crates/otter-device/qemu"
cargo build --quiet --release --target-dir "$out"
timeout 120 qemu-system-riscv32 -machine virt -bios none -nographic -icount shift=0 \
    -kernel "$out/riscv32imc-unknown-none-elf/release/otter-device-qemu"
