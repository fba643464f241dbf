#!/usr/bin/env bash
# Proves the device-side crates build without std and without an allocator.
# On riscv32imc-unknown-none-elf (an ESP32-C3's target) there is no std to fall
# back on, so a build there is the proof. When that target cannot be installed,
# say so loudly and still build for the host with default features off.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=riscv32imc-unknown-none-elf
crates=(otter-format otter-ota otter-device otter-delta)
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    rustup target add "$target" || true
fi
if rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    for c in "${crates[@]}"; do
        echo "building $c for $target (no std, no alloc)"
        cargo build --quiet -p "$c" --no-default-features --target "$target"
    done
    echo "building otter-format's Secure Boot v2 verifiers (ECDSA, RSA-3072) for $target (no std, no alloc)"
    cargo build --quiet -p otter-format --no-default-features --features sbv2-ecdsa,sbv2-rsa --target "$target"
    echo "building otter-device with signature checks on update (sbv2-ecdsa, sbv2-rsa) for $target (no std, no alloc)"
    cargo build --quiet -p otter-device --no-default-features --features sbv2-ecdsa,sbv2-rsa --target "$target"
    echo "building otter-device with the pull client (pull: manifest verification on a bounded heap) for $target (no std)"
    cargo build --quiet -p otter-device --no-default-features --features pull --target "$target"
    # edge-mdns's heapless needs atomic CAS: on riscv32imc a firmware gets
    # it from esp-hal's portable-atomic critical section (the firmware build
    # checks that); alone it is checked on the C6's riscv32imac.
    echo "building otter-device's mDNS answers (mdns, edge-mdns) for riscv32imac-unknown-none-elf (no std, no alloc)"
    rustup target list --installed 2>/dev/null | grep -qx riscv32imac-unknown-none-elf \
        || rustup target add riscv32imac-unknown-none-elf
    cargo build --quiet -p otter-device --no-default-features --features mdns --target riscv32imac-unknown-none-elf
else
    echo "WARNING: the $target target is not available; no_std is checked on the host only" >&2
    for c in "${crates[@]}"; do
        cargo build --quiet -p "$c" --no-default-features
    done
fi
echo "no_std builds ok: ${crates[*]}"
