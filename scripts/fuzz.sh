#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time (seconds per target,
# default 20):             scripts/fuzz.sh [SECONDS]
# or for a number of executions each (the long runs of BENCHMARKS.md, outside
# CI; libFuzzer without a sanitizer, as every fuzzed crate forbids unsafe
# code, debug assertions on; a table of executions, seconds and exec/s goes
# to fuzz/long-runs.txt, not checked in):
#                          scripts/fuzz.sh --runs N [TARGET...]
# Needs a nightly toolchain for libFuzzer's instrumentation;
# installs cargo-fuzz from crates.io when it is missing. Seeds: fuzz/seeds/<target>/
# (checked in, small files only: the layouts' tables, requests of every
# endpoint, an NVS partition written by esp-idf-nvs-partition-gen).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=""
if [ "${1:-}" = "--runs" ]; then
    runs="${2:?--runs needs a number of executions}"
    shift 2
    secs=0
else
    secs="${1:-20}"
    shift $(( $# > 0 ? 1 : 0 ))
fi
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "FAILED: fuzzing needs a nightly toolchain and none is installed" >&2
    exit 1
fi
if ! cargo fuzz --help >/dev/null 2>&1; then
    cargo install --quiet --locked cargo-fuzz
fi
cd "$root/fuzz"
targets=$(cargo +nightly fuzz list)
[ $# -gt 0 ] && targets="$*"
if [ -n "$runs" ]; then
    out="$root/fuzz/long-runs.txt"
    printf '%-20s %12s %10s %10s\n' target executions seconds exec/s > "$out"
    for t in $targets; do
        mkdir -p "corpus/$t" "regressions/$t"
        seeds=()
        [ -d "seeds/$t" ] && seeds=("seeds/$t")
        echo "fuzzing $t for $runs executions"
        start=$(date +%s.%N)
        log=$(cargo +nightly fuzz run --release -s none "$t" "corpus/$t" "regressions/$t" "${seeds[@]}" -- \
            -runs="$runs" -rss_limit_mb=2048 -print_final_stats=1 2>&1) || {
            echo "$log" | tail -n 40
            echo "FAILED: $t crashed (the input is in fuzz/artifacts/$t)" >&2
            exit 1
        }
        end=$(date +%s.%N)
        done_runs=$(echo "$log" | sed -n 's/^stat::number_of_executed_units: *//p' | tail -n 1)
        secs_t=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
        rate=$(awk -v n="${done_runs:-0}" -v s="$secs_t" 'BEGIN { printf "%d", n / s }')
        printf '%-20s %12s %10.0f %10s\n' "$t" "${done_runs:-?}" "$secs_t" "$rate" | tee -a "$out"
    done
    echo "fuzzing ok: $(echo $targets | wc -w) targets, $runs executions each (fuzz/long-runs.txt)"
    exit 0
fi
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
