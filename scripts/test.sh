#!/usr/bin/env bash
# otter's whole test suite, on a fresh machine. CI runs exactly this (.ci/run).
#
#   1. installs the reference tools the tests compare against (esptool from
#      PyPI, into .venv) and cargo-fuzz when missing;
#   2. checks formatting and clippy;
#   3. proves the host build needs no libclang (no bindgen), the device-side
#      crates build without std and without an allocator, runs the device
#      core on riscv32 under QEMU, and checks the host crates for Windows
#      (x86_64-pc-windows-gnu);
#   4. runs every fuzz target for a bounded time;
#   5. builds the firmware for the ESP32-C3 and ESP32-C6 (firmware/) and
#      checks the hardware-in-the-loop script;
#   6. runs the whole power-cut scenario table in release (otter-sim's
#      tests/power_cut.rs: at least 25,000 cut points, no failure; ignored in
#      the debug run below, which runs each row once instead), then the
#      short soak (scripts/soak.sh 20 20) and the short hostile run
#      (scripts/hostile.sh --short: bounded to 85 s, loopback only);
#   7. runs every test of the workspace (unit, integration, property, oracle,
#      end-to-end against the real binary and the shared corpus).
#
# Environment: OTTER_FUZZ_SECONDS (default 20 per target), OTTER_CORPUS
# (default ../shared/corpus).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

export OTTER_CORPUS="${OTTER_CORPUS:-$root/../shared/corpus}"
[ -f "$OTTER_CORPUS/README.md" ] || fail "the shared corpus is missing at $OTTER_CORPUS (set OTTER_CORPUS)"

step "installing test oracles (esptool, requests) into .venv"
bash scripts/setup-oracles.sh

step "system packages: curl, unshare, ip, chromium, nginx, openssl, qemu"
bash scripts/setup-system.sh

step "browser test driver: playwright-core (npm, tests/browser)"
bash scripts/setup-browser.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "host build without libclang: no bindgen, LIBCLANG_PATH=/nonexistent"
bash scripts/check-no-libclang.sh

step "no_std: otter-format without std and without alloc"
bash scripts/check-no-std.sh

step "Windows: cargo check --workspace --target x86_64-pc-windows-gnu"
bash scripts/check-windows.sh

step "otter-device on riscv32imc under qemu-system-riscv32"
bash scripts/qemu-device.sh

step "fuzzing every parser for ${OTTER_FUZZ_SECONDS:-20}s each"
bash scripts/fuzz.sh "${OTTER_FUZZ_SECONDS:-20}"

step "firmware: ESP32-C3 and ESP32-C6 on stable (scripts/build-firmware.sh)"
rustup target add riscv32imc-unknown-none-elf riscv32imac-unknown-none-elf
bash scripts/build-firmware.sh
(cd firmware && cargo fmt --all -- --check)
for pair in esp32c3:riscv32imc esp32c6:riscv32imac; do
    (cd firmware && CARGO_TARGET_DIR="$root/target/firmware" cargo clippy --release --locked \
        -p otter-esp -p otter-firmware \
        --features "otter-firmware/${pair%%:*},otter-esp/${pair%%:*}" \
        --target "${pair##*:}-unknown-none-elf" -- -D warnings)
done
bash -n scripts/hil.sh
bash scripts/hil.sh --check

step "power-cut scenario table, release (cargo test --release -p otter-sim --test power_cut)"
cargo test --release -p otter-sim --test power_cut -- --nocapture

step "soak, short: 20 firmware + 20 web-UI updates on one virtual device (scripts/soak.sh 20 20)"
bash scripts/soak.sh 20 20

step "hostile clients, short: floods, stalls, malformed requests, power cuts (scripts/hostile.sh --short)"
bash scripts/hostile.sh --short

step "cargo test --workspace"
cargo test --workspace --all-features --no-fail-fast
