#!/usr/bin/env bash
# Hardware in the loop: otter-firmware on a real ESP32-C3 or ESP32-C6.
#
#   scripts/hil.sh PORT [CHIP] [HOST]   # e.g. /dev/ttyACM0 esp32c3 192.168.1.50
#   scripts/hil.sh --check              # CI: every command this script calls exists
#
# 1. builds the firmware (OTTER_WIFI_SSID / OTTER_WIFI_PASSWORD must be set),
#    turns the ELF into an app image (otter image from-elf) and a factory
#    image (otter merge: ESP-IDF bootloader, firmware/partitions.csv);
# 2. flashes the factory image over USB (esptool write-flash 0x0);
# 3. waits for the device on the network (HOST, or the IP the serial log prints);
# 4. pushes a good image (otter push) and checks it runs;
# 5. pushes an image whose self-test fails (built with OTTER_FIRMWARE_HEALTHY=0)
#    and watches the device roll back to the good one;
# 6. pushes a web UI (otter www build + otter push --www) and fetches /;
# 7. asks for a release pull (POST /api/ota/check): this firmware has no pull
#    client yet, so the device must answer that it does not pull.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# The host tools build where cargo puts them; the firmware into target/firmware.
host_target="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/firmware}"
otter="${OTTER:-$host_target/debug/otter}"
esptool="${ESPTOOL:-$root/.venv/bin/esptool}"

need() {
    local missing=0
    for c in "$otter" "$esptool" curl python3 cargo timeout; do
        command -v "$c" >/dev/null 2>&1 || { echo "missing: $c" >&2; missing=1; }
    done
    for sub in "image from-elf" "merge" "push" "www build" "device status"; do
        # shellcheck disable=SC2086
        "$otter" $sub --help >/dev/null 2>&1 || { echo "missing: otter $sub" >&2; missing=1; }
    done
    "$esptool" write-flash --help >/dev/null 2>&1 || { echo "missing: esptool write-flash" >&2; missing=1; }
    [ -x "$root/scripts/build-firmware.sh" ] || { echo "missing: scripts/build-firmware.sh" >&2; missing=1; }
    return $missing
}

if [ "${1:-}" = "--check" ]; then
    [ -x "$otter" ] || (cd "$root" && CARGO_TARGET_DIR="$host_target" cargo build -q -p otter)
    need && echo "hil.sh: every command it calls exists"
    exit
fi

port="${1:?usage: scripts/hil.sh PORT [CHIP] [HOST]}"
chip="${2:-esp32c3}"
host="${3:-}"
case "$chip" in
    esp32c3) triple=riscv32imc-unknown-none-elf ;;
    esp32c6) triple=riscv32imac-unknown-none-elf ;;
    *) echo "chip must be esp32c3 or esp32c6" >&2; exit 2 ;;
esac
: "${OTTER_WIFI_SSID:?set OTTER_WIFI_SSID (and OTTER_WIFI_PASSWORD)}"
need
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
elf="$CARGO_TARGET_DIR/$triple/release/otter-firmware"

echo "== build (good image)"
OTTER_FIRMWARE_HEALTHY=1 "$root/scripts/build-firmware.sh" "$chip"
"$otter" image from-elf "$elf" --chip "$chip" -o "$work/good.bin"
"$otter" merge --chip "$chip" --partitions "$root/firmware/partitions.csv" \
    --bootloader "${OTTER_BOOTLOADER:-$root/../shared/corpus/bootloaders/esp-serial-flasher/bootloader-$chip.bin}" \
    --app "$work/good.bin" --flash-size 4MB -o "$work/factory.bin"

echo "== flash over USB ($port)"
"$esptool" --chip "$chip" --port "$port" write-flash 0x0 "$work/factory.bin"

if [ -z "$host" ]; then
    echo "== reading the device's address from the serial log"
    host="$(timeout 60 python3 - "$port" <<'PY'
import re, sys
with open(sys.argv[1], "rb", buffering=0) as f:
    for line in iter(f.readline, b""):
        m = re.search(rb"listening on (\d+\.\d+\.\d+\.\d+):3232", line)
        if m:
            print(m.group(1).decode()); break
PY
)"
fi
[ -n "$host" ] || { echo "no address: pass HOST" >&2; exit 1; }
echo "device at $host"
timeout 60 bash -c "until curl -fsS http://$host:3232/api/ota/status >/dev/null; do sleep 2; done"

echo "== push a good image"
"$otter" push --to "$host" --force "$work/good.bin"

echo "== push an image whose self-test fails: it must roll back"
OTTER_FIRMWARE_HEALTHY=0 "$root/scripts/build-firmware.sh" "$chip"
"$otter" image from-elf "$elf" --chip "$chip" -o "$work/bad.bin"
if "$otter" push --to "$host" --force --timeout 90 "$work/bad.bin"; then
    echo "the failing image was kept" >&2; exit 1
fi
curl -fsS "http://$host:3232/api/ota/status" | python3 -c \
    'import json,sys; d=json.load(sys.stdin); assert d.get("last_rollback"), d; print("rolled back:", d["last_rollback"])'
OTTER_FIRMWARE_HEALTHY=1 "$root/scripts/build-firmware.sh" "$chip"

echo "== push a web UI"
mkdir -p "$work/ui"
echo "<!doctype html><title>otter hil</title><p>hil $(date -u +%s)" > "$work/ui/index.html"
"$otter" www build "$work/ui" --size 0x10000 -o "$work/www.bin"
"$otter" push --to "$host" --www "$work/www.bin"
curl -fsS "http://$host/" | grep -q "otter hil"

echo "== pull a release"
code="$(curl -s -o "$work/check.json" -w '%{http_code}' -X POST "http://$host:3232/api/ota/check")"
echo "POST /api/ota/check: $code $(cat "$work/check.json")"
echo "(this firmware has no pull client yet: docs/firmware.md)"
echo "hil: PASS"
