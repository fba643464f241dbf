#!/usr/bin/env python3
"""Compressed and delta update figures for BENCHMARKS.md, measured in one run.

For every app image in the corpus (app-images/): gzip -9, xz -9 and otter's
gzip artifact (`otter release --compress`), as % of the image. For the
release pair (delta-pairs/obnizos): `otter delta` (heatshrink, none) and
`detools create_patch` (sequential; heatshrink, none), and xz -9 of the new
image for comparison. Then decoder RAM (size_of, from the bench example),
host throughput (release build) and the modelled device time on otter-sim's
datasheet timing model.

Run from the repository root:  .venv/bin/python scripts/bench_delta.py
(needs gzip, xz, cargo, and detools==0.53.0 in the venv). Prints Markdown.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("OTTER_CORPUS", ROOT.parent / "shared" / "corpus"))
OLD = CORPUS / "delta-pairs/obnizos/obniz-2.1.0.bin"
NEW = CORPUS / "delta-pairs/obnizos/obniz-2.1.1.bin"


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


def size_of_cmd(cmd, data):
    return len(run(cmd, input=data).stdout)


def pct(n, total):
    return 100.0 * n / total


def main():
    if not CORPUS.is_dir():
        sys.exit(f"corpus not found at {CORPUS} (set OTTER_CORPUS)")
    import detools  # noqa: F401  (fail loudly when the oracle is missing)

    run(["cargo", "build", "--release", "-q", "-p", "otter"], cwd=ROOT)
    run(["cargo", "build", "--release", "-q", "-p", "otter-delta", "--features", "encode",
         "--example", "bench_decode"], cwd=ROOT)
    otter = ROOT / "target/release/otter"
    bench = ROOT / "target/release/examples/bench_decode"

    rows = []
    apps = sorted((CORPUS / "app-images").rglob("*.bin"))
    for app in apps:
        data = app.read_bytes()
        gz = size_of_cmd(["gzip", "-9", "-c"], data)
        xz = size_of_cmd(["xz", "-9", "-c"], data)
        rows.append((app.relative_to(CORPUS / "app-images"), len(data), gz, xz))

    print("| corpus app | bytes | gzip -9 | xz -9 |")
    print("|---|---|---|---|")
    for name, n, gz, xz in rows:
        print(f"| `{name}` | {n:,} | {pct(gz, n):.1f}% | {pct(xz, n):.1f}% |")
    med_gz = statistics.median(pct(gz, n) for _, n, gz, _ in rows)
    med_xz = statistics.median(pct(xz, n) for _, n, _, xz in rows)
    print(f"| **median of {len(rows)}** | | **{med_gz:.1f}%** (goal ≤ 62%) | {med_xz:.1f}% |")
    print()

    new = NEW.read_bytes()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        out = {}
        for comp in ["heatshrink", "none"]:
            p = d / f"otter-{comp}.patch"
            t0 = time.monotonic()
            run([otter, "delta", OLD, NEW, "-o", p, "--compression", comp])
            out[f"otter {comp}"] = (p.stat().st_size, time.monotonic() - t0)
        for comp in ["heatshrink", "none"]:
            p = d / f"detools-{comp}.patch"
            t0 = time.monotonic()
            run([sys.executable, "-m", "detools", "create_patch", "--patch-type", "sequential",
                 "--compression", comp, OLD, NEW, p])
            out[f"detools {comp}"] = (p.stat().st_size + 64, time.monotonic() - t0)
        xz_none = size_of_cmd(["xz", "-9", "-c"], (d / "otter-none.patch").read_bytes())
        gz_new = size_of_cmd(["gzip", "-9", "-c"], new)
        (d / "new.gz").write_bytes(run(["gzip", "-9", "-c"], input=new).stdout)
        b = json.loads(run([bench, d / "new.gz", NEW, OLD, NEW]).stdout)

    print(f"Release pair obnizOS 2.1.0 → 2.1.1 (new image {len(new):,} bytes):")
    print()
    print("| artifact | bytes | % of the image | host time to make |")
    print("|---|---|---|---|")
    print(f"| full image | {len(new):,} | 100% | — |")
    print(f"| gzip -9 of the image | {gz_new:,} | {pct(gz_new, len(new)):.1f}% | — |")
    for k, (n, s) in out.items():
        label = {"otter heatshrink": "`otter delta` (heatshrink 8/7, default)",
                 "otter none": "`otter delta --compression none`",
                 "detools heatshrink": "`detools create_patch` heatshrink (+64-byte header)",
                 "detools none": "`detools create_patch` none (+64-byte header)"}[k]
        print(f"| {label} | {n:,} | {pct(n, len(new)):.2f}% | {s:.1f} s |")
    print(f"| xz -9 of the uncompressed otter patch (not appliable on-device; a floor) | {xz_none:,} | {pct(xz_none, len(new)):.2f}% | — |")
    print()
    print("| decoder | device RAM (state + buffers, `size_of`) | host throughput (release) |")
    print("|---|---|---|")
    print(f"| inflate (gzip), `Inflater` | {b['inflater_ram']:,} bytes ({b['inflater_ram'] / 1024:.1f} KiB; goal ≤ 48 KiB) | {b['inflate_mbps']} MB/s |")
    print(f"| delta, `PatchApplier` incl. 4 KiB heatshrink window | {b['applier_ram']:,} bytes ({b['applier_ram'] / 1024:.1f} KiB; goal ≤ 16 KiB + window) | {b['apply_mbps']} MB/s |")
    print(f"| delta encoder (`otter-delta` `encode`, bsdiff + heatshrink) | host only | {b['create_s']} s for the pair |")
    print()

    # Modelled device time: otter-sim's datasheet model (crates/otter-sim/src/timing.rs):
    # 64 KiB block erase 150 ms, 4 KiB sector erase 45 ms, 0.7 ms per 256-byte page.
    n = len(new)
    blocks, rest = divmod(n, 65536)
    sectors = -(-rest // 4096)
    pages = -(-n // 256)
    flash_s = blocks * 0.150 + sectors * 0.045 + pages * 0.0007
    patch_n = out["otter heatshrink"][0]
    print(f"Modelled device time for the {n:,}-byte image (flash: {blocks} block + {sectors} sector erases, {pages:,} pages = **{flash_s:.2f} s**, the same for every artifact since the full image is written either way):")
    print()
    print("| link | full image | gzip | delta |")
    print("|---|---|---|---|")
    for name, bps in [("1 Mbit/s (weak Wi-Fi)", 1e6), ("100 kbit/s (cellular NB)", 1e5), ("20 Mbit/s (good Wi-Fi)", 2e7)]:
        print(f"| {name} | {n * 8 / bps + flash_s:.1f} s | {gz_new * 8 / bps + flash_s:.1f} s | {patch_n * 8 / bps + flash_s:.1f} s |")
    print()
    print("Transfer and flash are added (no overlap assumed, the conservative case). "
          f"The decoders are not the limit: on the host they run at {b['inflate_mbps']} and "
          f"{b['apply_mbps']} MB/s, while the flash takes {n / flash_s / 1e6:.2f} MB/s: a device core "
          "would have to decode hundreds of times slower than the host for decoding to matter "
          "(not measured on a chip).")


if __name__ == "__main__":
    main()
