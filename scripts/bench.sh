#!/usr/bin/env bash
# otter's benchmarks, with the reference tools measured in the same run.
#
#   1. criterion benches of otter-format (image verification whole-file and
#      streamed, raw SHA-256 of the same bytes, partition-table conversion);
#   2. the same jobs as whole commands, `otter` (release) against esptool's
#      `image-info` and gen_esp32part-equivalent work, timed over repeated runs;
#   3. Secure Boot v2 signing and verification against espsecure.
#
# Figures go to standard output; BENCHMARKS.md records a run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup-oracles.sh
export OTTER_CORPUS="${OTTER_CORPUS:-$root/../shared/corpus}"

echo "==> criterion (otter-format)"
cargo bench -q -p otter-format --bench image --bench partition -- --warm-up-time 1 --measurement-time 3 2>&1 \
    | grep -E "^[a-z0-9].*|time:|thrpt:" || true

echo "==> whole commands: otter vs esptool, same files, same run"
cargo build -q --release -p otter
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
./target/release/otter image build --chip esp32s3 --version bench --size 4194304 -o "$work/4mb.bin" >/dev/null
.venv/bin/python scripts/bench_compare.py \
    "$root/target/release/otter" "$root/.venv/bin/python" \
    "$work/4mb.bin" "$OTTER_CORPUS/app-images/tasmota-sml/tasmota32_ottelo_tas-15.5.0.bin"

echo "==> Secure Boot v2: otter sign / image verify vs espsecure, same image and keys, same run"
.venv/bin/python scripts/bench_sign.py "$root/target/release/otter" "$root/.venv/bin/python" \
    "$OTTER_CORPUS/app-images/tasmota-sml/tasmota32_ottelo_tas-15.5.0.bin" \
    "$root/crates/otter-format/tests/data/secure-boot" 7

echo "==> device pipeline: HTTP upload into a virtual device vs raw SHA-256, same run"
.venv/bin/python scripts/bench_upload.py "$root/target/release/otter" 1900000 10
