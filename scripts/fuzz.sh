#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time (seconds per target,
# default 20). Needs a nightly toolchain for libFuzzer's instrumentation;
# installs cargo-fuzz from crates.io when it is missing. Seeds: fuzz/seeds/<target>/
# (checked in, small files only: the layouts' tables, requests of every
# endpoint, an NVS partition written by esp-idf-nvs-partition-gen).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs="${1:-20}"
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "FAILED: fuzzing needs a nightly toolchain and none is installed" >&2
    exit 1
fi
if ! cargo fuzz --help >/dev/null 2>&1; then
    cargo install --quiet --locked cargo-fuzz
fi
cd "$root/fuzz"
targets=$(cargo +nightly fuzz list)
for t in $targets; do
    echo "fuzzing $t for ${secs}s"
    mkdir -p "corpus/$t" "regressions/$t"
    # regressions/ holds inputs that once crashed a target; seeds/ (checked
    # in, small) the minimal valid inputs a run starts from. libFuzzer adds
    # what it finds to corpus/ (the first directory, not checked in).
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    cargo +nightly fuzz run --release "$t" "corpus/$t" "regressions/$t" "${seeds[@]}" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=0 2>&1 | tail -n 3
    # cargo fuzz exits non-zero on a crash; pipefail makes that fail this script.
done
echo "fuzzing ok: $(echo $targets | wc -w) targets, ${secs}s each"
