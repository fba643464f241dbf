#!/usr/bin/env bash
# Builds otter-firmware in release for the ESP32-C3 and ESP32-C6 on the
# stable toolchain and prints the sizes. The target directory is inside the
# repository's target/ so CI caches it with the host build.
#
#   scripts/build-firmware.sh            # both chips
#   scripts/build-firmware.sh esp32c6    # one chip
#
# Wi-Fi credentials: OTTER_WIFI_SSID, OTTER_WIFI_PASSWORD (build time).
# The ELFs: target/firmware/<triple>/release/otter-firmware
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/firmware}"
chips=("$@")
[ ${#chips[@]} -eq 0 ] && chips=(esp32c3 esp32c6)

triple() {
    case "$1" in
        esp32c3) echo riscv32imc-unknown-none-elf ;;
        esp32c6) echo riscv32imac-unknown-none-elf ;;
        *) echo "unknown chip: $1 (esp32c3 or esp32c6)" >&2; exit 2 ;;
    esac
}

cd "$root/firmware"
for chip in "${chips[@]}"; do
    t="$(triple "$chip")"
    echo "== otter-firmware for $chip ($t)"
    cargo build --release --locked -p otter-firmware --bin otter-firmware --features "$chip" --target "$t"
done
for chip in "${chips[@]}"; do
    t="$(triple "$chip")"
    elf="$CARGO_TARGET_DIR/$t/release/otter-firmware"
    echo "== $chip: $elf"
    if command -v size >/dev/null; then
        size -A "$elf" | awk '$1 ~ /^\.(text|rodata|data|bss|rwtext|flash|iram|dram|noinit)/ || $1=="Total"'
    fi
    ls -l "$elf" | awk '{print "ELF bytes:", $5}'
done
