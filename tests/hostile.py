#!/usr/bin/env python3
"""The hostile test as a repeatable script.

Runs a virtual device (`otter device run`, on 127.0.0.1 only, mDNS off) and
throws at it what a hostile or broken client does: slowloris heads, idle
connection floods, stalled uploads, random bytes, malformed HTTP, forms with
the wrong boundary, oversized chunked bodies, trailing data, app images with
their header mutated and the SHA-256 flag off, a web UI whose file data is
damaged, an anti-rollback downgrade by push and by rollback, and power cuts
(`kill -9`) in the middle of uploads. After each case it checks that the
device still answers, that nothing it must keep (the running slot, the
mounted web UI) changed, and that the answers carry the documented codes.

Every wait is bounded: each socket has a timeout, each case a count, and the
whole run a deadline (--deadline, default 85 s short / 900 s long); the run
fails when it is exceeded.

    tests/hostile.py [--short | --long] [--otter PATH] [--seed N]

--short (the default, what scripts/test.sh runs) is a few of each;
--long repeats the floods, the random requests and the power cuts many
times. Needs the project's Python (.venv, for littlefs-python) and the
otter binary (default target/debug/otter).
"""

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "hostile-token"
# The virtual device's deadlines (docs/device-api.md, "Deadlines and
# connections"): the whole head within 10 s of its first byte; a body at
# least 1 byte per 10 s window; at most 8 connections.
HEAD_DEADLINE = 10.0
BODY_WINDOW = 10.0
MAX_CONNECTIONS = 8

failures = []
counts = {}


def check(cond, what):
    counts["checks"] = counts.get("checks", 0) + 1
    if not cond:
        failures.append(what)
        print(f"  FAIL: {what}", flush=True)


class Device:
    def __init__(self, otter, work, name, create_args=(), run_args=()):
        self.otter = otter
        self.dir = os.path.join(work, name)
        self.run_args = list(run_args)
        subprocess.run(
            [otter, "device", "create", self.dir, "--token", TOKEN, *create_args],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.proc = None
        self.start()

    def start(self):
        self.log = open(self.dir + ".log", "ab")
        self.proc = subprocess.Popen(
            [self.otter, "device", "run", self.dir, "--http", "127.0.0.1:0",
             "--mdns", "off", "--reboot-time", "0.1", "--json", *self.run_args],
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"otter device run printed nothing; see {self.dir}.log")
        self.url = json.loads(line)["url"].rstrip("/")
        self.host, port = self.url.removeprefix("http://").split(":")
        self.port = int(port)
        assert self.host == "127.0.0.1", self.url
        self.wait(lambda s: s.get("running") is not None, "first boot")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def request(self, method, path, body=None, headers=None, auth=True, timeout=20):
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if auth:
            req.add_header("Authorization", f"Bearer {TOKEN}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, method, path, body=None, headers=None, auth=True):
        st, b = self.request(method, path, body, headers, auth)
        try:
            return st, json.loads(b)
        except ValueError:
            return st, {"_raw": b[:200].decode("latin-1")}

    def status(self):
        st, j = self.json("GET", "/api/ota/status")
        if st != 200:
            raise AssertionError(f"status answered {st}: {j}")
        return j

    def wait(self, pred, what, limit=20.0):
        end = time.monotonic() + limit
        last = None
        while time.monotonic() < end:
            try:
                last = self.status()
                if pred(last):
                    return last
            except (OSError, AssertionError, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; last status {last}")

    def connect(self, timeout=5.0):
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        s.settimeout(timeout)
        return s


def read_answer(s, limit):
    """Reads until the peer closes or `limit` seconds pass; returns (bytes, closed)."""
    s.settimeout(0.5)
    data = b""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def status_of(raw):
    try:
        return int(raw[9:12])
    except ValueError:
        return 0


def body_json(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        return json.loads(body)
    except ValueError:
        return None


def otter_image(otter, work, chip, version, secure_version=0):
    out = os.path.join(work, f"{chip}-{version}-sv{secure_version}.bin")
    if not os.path.exists(out):
        subprocess.run(
            [otter, "image", "build", "--chip", chip, "--version", version,
             "--secure-version", str(secure_version), "-o", out],
            check=True, stdout=subprocess.DEVNULL)
    return open(out, "rb").read()


def chip_of(dev):
    return dev.status()["chip"]


def keep(dev):
    s = dev.status()
    st, index = dev.request("GET", "/", auth=False)
    return (s["running"]["slot"] if s.get("running") else None, s["www"]["active"], st, index)


# ---------------------------------------------------------------- cases


def case_slowloris(dev, n):
    """Heads dripped a byte every 2 s: closed by the head deadline; a
    legitimate client is served meanwhile."""
    socks = []
    for _ in range(n):
        s = dev.connect()
        s.sendall(b"G")
        socks.append(s)
    stop = time.monotonic() + HEAD_DEADLINE + 5
    closed = [False] * n
    served = None
    drip = b"ET / HTTP/1.1\r\nX-Slow: " + b"a" * 100
    i = 0
    while time.monotonic() < stop and not all(closed):
        for k, s in enumerate(socks):
            if closed[k]:
                continue
            try:
                s.sendall(drip[i % len(drip):i % len(drip) + 1])
            except OSError:
                closed[k] = True
        if served is None:
            served = dev.request("GET", "/api/ota/status", timeout=5)[0]
        i += 1
        for k, s in enumerate(socks):
            if not closed[k]:
                s.settimeout(0.01)
                try:
                    if s.recv(4096) == b"":
                        closed[k] = True
                except socket.timeout:
                    pass
                except OSError:
                    closed[k] = True
        time.sleep(2.0 if n <= MAX_CONNECTIONS else 0.5)
    check(served == 200, f"slowloris: a legitimate status request answered {served}")
    check(all(closed), f"slowloris: {closed.count(False)} of {n} dripping heads still open after {HEAD_DEADLINE + 5:.0f} s")
    for s in socks:
        s.close()


def case_idle_flood(dev, n):
    """More idle sockets than the device serves: an authenticated client is
    still answered at once (the one idle longest is evicted)."""
    socks = [dev.connect() for _ in range(n)]
    t = time.monotonic()
    st, _ = dev.request("GET", "/api/ota/status", timeout=5)
    took = time.monotonic() - t
    check(st == 200 and took < 3, f"idle flood of {n}: status {st} after {took:.1f} s")
    open_now = 0
    for s in socks:
        s.settimeout(0.05)
        try:
            if s.recv(1) != b"":
                open_now += 1
        except socket.timeout:
            open_now += 1
        except OSError:
            pass
        s.close()
    check(open_now <= MAX_CONNECTIONS, f"idle flood: {open_now} idle sockets still held (cap {MAX_CONNECTIONS})")


def case_stalled_upload(dev, fw):
    """An authenticated upload that stops sending: 408, the lock released,
    last_update says why."""
    s = dev.connect()
    s.sendall(
        f"POST /update HTTP/1.1\r\nHost: d\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Length: {len(fw)}\r\n\r\n".encode() + fw[:2000])
    # The rule is counted per window: a stall is seen at the end of the
    # first window with no byte, at most two windows after the last one.
    raw, closed = read_answer(s, 2 * BODY_WINDOW + 3)
    s.close()
    check(status_of(raw) == 408, f"stalled upload: answered {raw[:80]!r}")
    check(closed, "stalled upload: the connection stayed open")
    st = dev.status()
    check(st["update_in_progress"] is False, "stalled upload: the update lock is still held")
    lu = st.get("last_update") or {}
    check(lu.get("result") == "aborted" and (lu.get("error") or {}).get("error") == "timeout",
          f"stalled upload: last_update {lu}")


def case_malformed_http(dev):
    """Errors of the HTTP layer are JSON with a code and a message."""
    big = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 6000 + b"\r\n\r\n"
    for req, want, code in [
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/9.9\r\n\r\n", 400, "bad_request"),
        (b"GET http://x/ HTTP/1.1\r\n\r\n", 400, "bad_request"),
        (b"DELETE /update HTTP/1.1\r\n\r\n", 405, "method_not_allowed"),
        (big, 431, "headers_too_large"),
        (b"POST /update HTTP/1.1\r\nContent-Length: 10\r\nContent-Length: 11\r\n\r\n", 400, "bad_request"),
        (b"GET /../etc/passwd HTTP/1.1\r\n\r\n", 400, "bad_path"),
    ]:
        s = dev.connect()
        s.sendall(req)
        raw, _ = read_answer(s, 5)
        s.close()
        j = body_json(raw) or {}
        check(status_of(raw) == want and j.get("error") == code and j.get("message"),
              f"malformed {req[:30]!r}: {raw[:160]!r}")


def case_random_requests(dev, n, rng):
    """Random bytes and mangled requests, each on its own connection: every
    one is answered or closed within the head deadline; the device lives."""
    methods = [b"GET", b"POST", b"PUT", b"HEAD", b"\x00\xff", b"get"]
    paths = [b"/", b"/update", b"/api/ota/status", b"/api/ota/frontend", b"/%zz", b"/a/../b"]
    stuck = 0
    for i in range(n):
        kind = rng.randrange(3)
        if kind == 0:
            req = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))) + b"\r\n\r\n"
        elif kind == 1:
            req = (rng.choice(methods) + b" " + rng.choice(paths) + b" HTTP/1.1\r\n"
                   + b"Content-Length: " + str(rng.randrange(0, 50)).encode() + b"\r\n\r\n"
                   + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 50))))
        else:
            req = (b"POST /update HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + hex(rng.randrange(1 << 20)).encode()[2:] + b"\r\n" + b"x" * rng.randrange(30) + b"\r\n0\r\n\r\n")
        s = dev.connect()
        try:
            s.sendall(req)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        raw, closed = read_answer(s, HEAD_DEADLINE + 3)
        s.close()
        if not closed:
            stuck += 1
    check(stuck == 0, f"random requests: {stuck} of {n} neither answered nor closed")
    check(dev.alive(), "random requests: the device process died")


def case_forms_and_sizes(dev):
    """A form under another boundary; a 3 MB chunked web UI."""
    body = (b"--real\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\n\r\n"
            + b"\xe9" * 1000 + b"\r\n--real--\r\n")
    st, j = dev.json("POST", "/update", body,
                     {"Content-Type": "multipart/form-data; boundary=not-the-one"})
    check(st == 400 and j.get("error") == "bad_request", f"wrong boundary: {st} {j}")
    lu = dev.status().get("last_update") or {}
    check(lu.get("result") == "rejected", f"wrong boundary: last_update {lu}")

    def chunks():
        for _ in range(3000):
            yield b"\0" * 1000
    st, j = dev.json("POST", "/api/ota/frontend", chunks(), {"Content-Type": "application/octet-stream"})
    size = dev.status()["www"]["slots"][1]["size"]
    check(st == 413 and j.get("error") == "too_large" and str(size) in j.get("message", ""),
          f"3 MB chunked web UI: {st} {j}")


def case_public_and_private(dev):
    """Without a token: the web UI and the Update page, nothing else."""
    for path in ["/", "/update"]:
        st, _ = dev.request("GET", path, auth=False)
        check(st == 200, f"GET {path} without a token: {st}")
    for method, path in [("GET", "/api/ota/status"), ("POST", "/api/ota/confirm"),
                         ("POST", "/api/ota/rollback"), ("POST", "/api/ota/reboot"),
                         ("POST", "/api/ota/check"), ("POST", "/api/ota/frontend"),
                         ("POST", "/update")]:
        st, j = dev.json(method, path, b"" if method == "POST" else None, auth=False)
        check(st == 401 and j.get("error") == "unauthorized", f"{method} {path} without a token: {st} {j}")


def case_images(dev, otter, work):
    """Trailing data; the SHA-256 flag off; header mutations."""
    fw = otter_image(otter, work, chip_of(dev), "9.0.0")
    before = keep(dev)
    st, j = dev.json("POST", "/update", fw + b"\xaa" * 64)
    check(st == 422 and j.get("error") == "trailing_data", f"trailing data: {st} {j}")
    no_hash = bytearray(fw[:-32])
    no_hash[23] = 0
    muts = {"hash flag off": bytes(no_hash)}
    bad_entry = bytearray(no_hash)
    bad_entry[4:8] = (0xDEADBEEF).to_bytes(4, "little")
    muts["hash off, entry 0xdeadbeef"] = bytes(bad_entry)
    bad_size = bytearray(no_hash)
    bad_size[3] = (bad_size[3] & 0x0F) | 0xF0
    muts["hash off, flash size nibble 0xf"] = bytes(bad_size)
    bad_entry_hashed = bytearray(fw)
    bad_entry_hashed[4:8] = (0xDEADBEEF).to_bytes(4, "little")
    muts["entry 0xdeadbeef"] = bytes(bad_entry_hashed)
    for name, img in muts.items():
        st, j = dev.json("POST", "/update", img)
        check(st == 422, f"{name}: {st} {j}")
        counts[f"refused: {name}"] = j.get("error")
    check(keep(dev) == before, "image refusals changed the running slot or the web UI")


def damaged_ui(size):
    import littlefs
    fs = littlefs.LittleFS(block_size=4096, block_count=size // 4096, read_size=128,
                           prog_size=128, cache_size=512, lookahead_size=128, name_max=64)
    with fs.open("index.html", "w") as f:
        f.write("<h1>damaged</h1>")
    with fs.open("app.js", "w") as f:
        f.write("Z" * 20000)
    img = bytearray(fs.context.buffer)
    hit = 0
    for b in range(0, len(img), 4096):
        if img[b:b + 4096].count(b"Z") > 3000:
            img[b:b + 4096] = b"\xa5" * 4096
            hit += 1
    assert hit == 5, hit
    return bytes(img)


def case_damaged_ui(dev):
    """A web UI whose directory is intact and one file's blocks damaged."""
    size = dev.status()["www"]["slots"][1]["size"]
    before = keep(dev)
    st, j = dev.json("POST", "/api/ota/frontend", damaged_ui(size),
                     {"Content-Type": "application/octet-stream"})
    check(st == 422 and j.get("error") == "bad_web_ui", f"damaged web UI: {st} {j}")
    check(keep(dev) == before, "the damaged web UI changed what is served")


def case_power_cuts(dev, fw, n, rng):
    """kill -9 in the middle of an upload, n times: the old image keeps
    running, the web UI is served, and an update still goes through."""
    for i in range(n):
        before = keep(dev)
        s = dev.connect()
        s.sendall(
            f"POST /update HTTP/1.1\r\nHost: d\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Length: {len(fw)}\r\n\r\n".encode() + fw[:rng.randrange(1, len(fw) - 1)])
        time.sleep(0.05)
        dev.kill()
        s.close()
        dev.start()
        check(keep(dev) == before, f"power cut {i}: what runs or is served changed")


def case_anti_rollback(otter, work):
    """sv2 confirmed, then sv1 by push and by rollback: both refused."""
    dev = Device(otter, work, "anti", ["--rollback", "--anti-rollback", "0"], ["--selftest-window", "1"])
    try:
        chip = chip_of(dev)
        sv1 = otter_image(otter, work, chip, "2.0.0", 1)
        sv2 = otter_image(otter, work, chip, "3.0.0", 2)
        boots = dev.status()["boot_count"]
        st, j = dev.json("POST", "/update", sv1)
        check(st == 200, f"sv1 push: {st} {j}")
        dev.wait(lambda s: s["boot_count"] > boots and s["selftest"]["state"] == "passed", "sv1 confirmed")
        boots = dev.status()["boot_count"]
        st, j = dev.json("POST", "/update", sv2)
        check(st == 200, f"sv2 push: {st} {j}")
        dev.wait(lambda s: s["boot_count"] > boots and s["selftest"]["state"] == "passed", "sv2 confirmed")
        st, j = dev.json("POST", "/update", sv1)
        check(st == 422 and j.get("error") == "secure_version_too_low", f"sv1 push after sv2: {st} {j}")
        st, j = dev.json("POST", "/api/ota/rollback", b"")
        check(st == 409 and j.get("error") == "rollback_impossible", f"rollback to sv1: {st} {j}")
    finally:
        dev.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    form = ap.add_mutually_exclusive_group()
    form.add_argument("--short", action="store_true", help="a few of each (the default)")
    form.add_argument("--long", action="store_true", help="many of each")
    ap.add_argument("--otter", default=os.path.join(ROOT, "target", "debug", "otter"))
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--deadline", type=float, help="seconds the whole run may take")
    a = ap.parse_args()
    long = a.long
    deadline = a.deadline or (900.0 if long else 85.0)
    if not os.access(a.otter, os.X_OK):
        raise SystemExit(f"no otter binary at {a.otter}: cargo build -p otter")
    rng = random.Random(a.seed)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as work:
        dev = Device(a.otter, work, "dev")
        try:
            fw = otter_image(a.otter, work, chip_of(dev), "2.0.0")
            # The slow cases wait on deadlines: run them side by side.
            slow = [
                threading.Thread(target=case_slowloris, args=(dev, 3 if not long else 6)),
                threading.Thread(target=case_stalled_upload, args=(dev, fw)),
            ]
            for t in slow:
                t.start()
            case_malformed_http(dev)
            case_public_and_private(dev)
            for t in slow:
                t.join(timeout=HEAD_DEADLINE + 2 * BODY_WINDOW + 20)
                check(not t.is_alive(), "a deadline case did not end")
            for _ in range(1 if not long else 20):
                case_idle_flood(dev, 3 * MAX_CONNECTIONS if not long else 84)
            case_random_requests(dev, 40 if not long else 2000, rng)
            case_forms_and_sizes(dev)
            case_images(dev, a.otter, work)
            case_damaged_ui(dev)
            case_power_cuts(dev, fw, 3 if not long else 60, rng)
            # After all of it, an update still installs.
            boots = dev.status()["boot_count"]
            st, j = dev.json("POST", "/update", otter_image(a.otter, work, chip_of(dev), "4.0.0"))
            check(st == 200, f"the final update: {st} {j}")
            s = dev.wait(lambda s: s["boot_count"] > boots, "the final update's reboot")
            check(s["running"]["version"] == "4.0.0", f"the final update runs {s['running']}")
        finally:
            dev.kill()
        case_anti_rollback(a.otter, work)
    took = time.monotonic() - t0
    check(took <= deadline, f"the run took {took:.0f} s, over its {deadline:.0f} s deadline")
    form = "long" if long else "short"
    print(json.dumps({"form": form, "seconds": round(took, 1), "failures": len(failures), **counts}))
    if failures:
        print(f"hostile ({form}): {len(failures)} failures", file=sys.stderr)
        sys.exit(1)
    print(f"hostile ({form}): ok, {counts['checks']} checks in {took:.0f} s")


if __name__ == "__main__":
    main()
