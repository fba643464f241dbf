"""Upload time of the same image over each protocol a virtual device speaks.

Starts a virtual device (the otter-device core server) with OTTER, builds
one app image of IMAGE_SIZE bytes, and uploads it RUNS times round-robin
over:

* HTTP, Python requests `POST /update` (raw body), first byte to answer;
* HTTP, `otter push IMAGE --to URL --force` (the same version again) as a process: upload, then waiting
  until the device runs it (what a user waits for);
* ESPHome protocol version 2, `esphome.espota2.perform_ota` (the current
  release, from .venv/uploaders) on a socket: connect to the device's
  final `45` (its closing fixed 1 s sleep is left out);
* ESPHome protocol version 1 (a second device announcing version 1);
* espota, tests/clients/arduino_ota.py in this process: invitation to
  `OK`.

Each upload is followed by waiting for the device to reboot into it.
Prints one JSON object with the median of each.

usage: bench_uploaders.py OTTER IMAGE_SIZE RUNS
"""
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

root = Path(__file__).resolve().parent.parent
otter, size, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, str(root / ".venv/uploaders/esphome-2026.10.0"))
import esphome.espota2 as espota2  # noqa: E402

sys.path.insert(0, str(root / "tests/clients"))
import arduino_ota  # noqa: E402

# perform_ota ends with a fixed time.sleep(1) ("do not connect logs until
# it is fully on"): not upload time.
espota2.time.sleep = lambda _s: None

work = tempfile.mkdtemp()
img = os.path.join(work, "img.bin")
subprocess.run([otter, "image", "build", "--chip", "esp32s3", "--version", "bench",
                "--size", str(size), "-o", img], check=True, capture_output=True)
data = open(img, "rb").read()
env = dict(os.environ)


def start(name, *args):
    dev = os.path.join(work, name)
    subprocess.run([otter, "device", "create", dev], check=True, capture_output=True)
    proc = subprocess.Popen([otter, "device", "run", dev, "--http", "127.0.0.1:0",
                             "--mdns", "off", "--reboot-time", "0.05", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    return proc, proc.stdout.readline().split()[3]


s = requests.Session()


def boots(url):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            return s.get(url + "/api/ota/status", timeout=5).json()["boot_count"]
        except requests.RequestException:
            time.sleep(0.05)
    raise SystemExit("device did not answer")


def wait_boot(url, after):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if boots(url) > after:
                return
        except SystemExit:
            pass
        time.sleep(0.05)
    raise SystemExit("device did not come back")


def http_post(url):
    t = time.perf_counter()
    r = s.post(url + "/update", data=data)
    dt = time.perf_counter() - t
    assert r.status_code == 200, r.text
    return dt


def otter_push(url):
    t = time.perf_counter()
    subprocess.run([otter, "push", img, "--to", url, "--force"], check=True, capture_output=True)
    return time.perf_counter() - t


def esphome(url):
    host, port = url.removeprefix("http://").rsplit(":", 1)
    t = time.perf_counter()
    sock = socket.create_connection((host, int(port)), timeout=20)
    with open(img, "rb") as f:
        espota2.perform_ota(sock, None, f, Path(img))
    dt = time.perf_counter() - t
    sock.close()
    return dt


def arduino(url):
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sys.argv = ["arduino_ota.py", "-i", host, "-p", port, "-I", "127.0.0.1", "-f", img]
    t = time.perf_counter()
    rc = arduino_ota.main()
    dt = time.perf_counter() - t
    assert rc == 0
    return dt


procs = []
try:
    p2, url2 = start("dev2")
    p1, url1 = start("dev1", "--esphome-version", "1")
    procs = [p2, p1]
    cases = {
        "http_post": (http_post, url2),
        "otter_push": (otter_push, url2),
        "esphome_v2": (esphome, url2),
        "esphome_v1": (esphome, url1),
        "espota": (arduino, url2),
    }
    times = {k: [] for k in cases}
    for _ in range(runs):
        for name, (fn, url) in cases.items():
            before = boots(url)
            times[name].append(fn(url))
            wait_boot(url, before)
finally:
    for p in procs:
        p.terminate()
        p.wait()

med = {k: statistics.median(v) * 1000 for k, v in times.items()}
out = {"image_bytes": size, "runs": runs,
       "median_ms": {k: round(v, 1) for k, v in med.items()},
       "ratio_to_http_post": {k: round(v / med["http_post"], 2) for k, v in med.items()}}
print(json.dumps(out, indent=1))
