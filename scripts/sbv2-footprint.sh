#!/usr/bin/env bash
# The device-side cost of the Secure Boot v2 verifier (BENCHMARKS.md, "Secure
# Boot signatures"): code size of scripts/sbv2-footprint's bare-metal program
# for riscv32imc (ESP32-C3/C2) and riscv32imac (ESP32-C6/H2), release,
# opt-level "s", LTO; then the peak heap of one verification per scheme.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/scripts/sbv2-footprint"
export CARGO_TARGET_DIR="$root/target/footprint"
size() { llvm-size -A "$CARGO_TARGET_DIR/$1/release/device" | awk '$1 ~ /^\.(text|rodata|bss|data)$/ {printf "%s=%s ", $1, $2} END {print ""}'; }
for t in riscv32imc-unknown-none-elf riscv32imac-unknown-none-elf; do
    cargo build -q --release --bin device --target "$t"
    echo "ECDSA P-256 + P-384, $t: $(size $t)"
done
for t in riscv32imc-unknown-none-elf riscv32imac-unknown-none-elf; do
    cargo build -q --release --bin device --target "$t" --features rsa
    echo "ECDSA + RSA-3072, $t: $(size $t)"
done
cargo run -q --release --bin heap --features host,rsa
