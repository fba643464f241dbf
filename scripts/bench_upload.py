"""The device-side pipeline (receive -> verify -> write) against raw SHA-256.

Starts a virtual device with the release `otter`, uploads the same image
N times over HTTP on loopback (Python requests, raw body), and times each
POST from the first byte sent to the answer (the image is streamed into the
slot, verified in full and activated before the device answers). In the same
run it times SHA-256 of the same bytes (hashlib) and `sha256sum`, the floor
any verifying receiver has to pay.

usage: bench_upload.py OTTER IMAGE_SIZE RUNS
"""
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import requests

otter, size, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
work = tempfile.mkdtemp()
dev = os.path.join(work, "dev")
img = os.path.join(work, "img.bin")
subprocess.run([otter, "device", "create", dev], check=True, capture_output=True)
subprocess.run([otter, "image", "build", "--chip", "esp32s3", "--version", "bench",
                "--size", str(size), "-o", img], check=True, capture_output=True)
data = open(img, "rb").read()
proc = subprocess.Popen([otter, "device", "run", dev, "--http", "127.0.0.1:0",
                         "--mdns", "off", "--reboot-time", "0.05"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
try:
    url = proc.stdout.readline().split()[3]
    s = requests.Session()

    def wait_boot(after):
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                st = s.get(url + "/api/ota/status", timeout=5).json()
                if st["boot_count"] > after:
                    return st["boot_count"]
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise SystemExit("device did not come back")

    boots = wait_boot(0)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        r = s.post(url + "/update", data=data)
        times.append(time.perf_counter() - t)
        assert r.status_code == 200, r.text
        boots = wait_boot(boots)
finally:
    proc.terminate()
    proc.wait()

sha = []
for _ in range(runs):
    t = time.perf_counter()
    hashlib.sha256(data).digest()
    sha.append(time.perf_counter() - t)
t = time.perf_counter()
for _ in range(runs):
    subprocess.run(["sha256sum", img], check=True, capture_output=True)
sha256sum = (time.perf_counter() - t) / runs

mb = size / 1e6
up = statistics.median(times)
h = statistics.median(sha)
print(json.dumps({
    "image_bytes": size,
    "runs": runs,
    "upload_median_s": round(up, 4),
    "upload_MBps": round(mb / up, 1),
    "sha256_hashlib_median_s": round(h, 5),
    "sha256_hashlib_MBps": round(mb / h, 1),
    "sha256sum_process_s": round(sha256sum, 4),
    "upload_vs_sha256_ratio": round(up / h, 1),
}, indent=2))
