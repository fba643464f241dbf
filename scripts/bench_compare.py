"""Times `otter image verify` against `esptool image-info` on the same files.

Both are run as whole processes, several times each; the median is reported
with the ratio esptool / otter. Usage: bench_compare.py OTTER PYTHON FILE...
"""
import statistics
import subprocess
import sys
import time

RUNS = 7


def median_seconds(cmd):
    times = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# esptool's parser and checks without Python start-up: load the image, then
# compute the checksum and the SHA-256 as `image-info` does.
IN_PROCESS = """
import statistics, sys, time
from esptool.bin_image import LoadFirmwareImage
path = sys.argv[1]
times = []
for _ in range(%d):
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        data = f.read()
    from esptool.targets import CHIP_DEFS
    chip_id = int.from_bytes(data[12:14], "little")
    chip = next(c for c in CHIP_DEFS.values() if getattr(c, "IMAGE_CHIP_ID", None) == chip_id)
    img = LoadFirmwareImage(chip.CHIP_NAME.lower().replace("-", ""), path)
    ok = img.checksum == img.calculate_checksum() and (not img.append_digest or img.stored_digest == img.calc_digest)
    assert ok, "esptool says the image is invalid"
    times.append(time.perf_counter() - t0)
print(statistics.median(times))
""" % RUNS


def main():
    otter, python, files = sys.argv[1], sys.argv[2], sys.argv[3:]
    print(f"{'file':<34} {'otter verify':>13} {'esptool image-info':>19} {'ratio':>7}"
          f" {'esptool in-process':>19} {'ratio':>7}")
    for f in files:
        o = median_seconds([otter, "image", "verify", f])
        e = median_seconds([python, "-m", "esptool", "image-info", f])
        p = float(subprocess.run([python, "-c", IN_PROCESS, f], check=True,
                                 capture_output=True, text=True).stdout)
        name = f.rsplit("/", 1)[-1][:34]
        print(f"{name:<34} {o * 1000:>10.1f} ms {e * 1000:>16.1f} ms {e / o:>6.1f}x"
              f" {p * 1000:>16.1f} ms {p / o:>6.1f}x")


if __name__ == "__main__":
    main()
