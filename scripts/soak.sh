#!/usr/bin/env bash
# Soak: FIRMWARE firmware updates, then WWW web-UI updates, on one virtual
# device (`otter device run`), each through the HTTP API exactly as a client
# sends it (POST /update, POST /api/ota/frontend, raw body), each followed by
# the device's reboot and a status check that the new image / UI runs.
# Reports the agent's RSS and open file descriptors (from /proc) and the
# flash wear (erase counts per 4 KiB sector, from the device's wear.bin) at
# the start, the middle and the end; fails if an update is refused, if the
# agent's RSS grows by more than 25% (and 8 MiB) from the first to the last
# quarter, or if its descriptor count at the end exceeds the most it had in
# the first quarter (the first updates open what the agent keeps open).
#
#   scripts/soak.sh [FIRMWARE [WWW]]     default 1000 1000; CI runs 20 20
#
# Environment: OTTER_SOAK_RELEASE=1 builds and runs the release binary
# (default: the debug one the tests build); OTTER_SOAK_JSON=FILE also writes
# the samples as JSON.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fw="${1:-1000}"
www="${2:-1000}"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
if [ "${OTTER_SOAK_RELEASE:-0}" = 1 ]; then
    cargo build --release --quiet -p otter
    otter="$target/release/otter"
else
    cargo build --quiet -p otter
    otter="$target/debug/otter"
fi
work=$(mktemp -d)
agent_pid=
cleanup() {
    if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$otter" device create "$work/dev" --json >/dev/null
# Two firmware images and two web UIs to alternate between.
for v in 2.0.0 3.0.0; do
    "$otter" image build --chip esp32s3 --version "$v" --size 300000 --output "$work/fw-$v.bin" >/dev/null
done
for t in even odd; do
    mkdir -p "$work/ui-$t"
    printf '<!doctype html><title>%s</title><h1>soak %s</h1>\n' "$t" "$t" >"$work/ui-$t/index.html"
    "$otter" www build "$work/ui-$t" --size 1M --output "$work/ui-$t.bin" >/dev/null
done

"$otter" device run "$work/dev" --http 127.0.0.1:0 --mdns off --reboot-time 0.01 --json \
    >"$work/run.json" 2>"$work/agent.log" &
agent_pid=$!
for _ in $(seq 1 200); do
    [ -s "$work/run.json" ] && break
    kill -0 "$agent_pid" 2>/dev/null || { cat "$work/agent.log" >&2; echo "FAILED: the device did not start" >&2; exit 1; }
    sleep 0.05
done

python3 - "$work" "$fw" "$www" "$agent_pid" "${OTTER_SOAK_JSON:-}" <<'PY'
import json, os, struct, sys, time, urllib.request, urllib.error

work, fw_n, www_n, pid, json_out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
url = json.loads(open(os.path.join(work, "run.json")).readline())["url"].rstrip("/")
fw = [open(os.path.join(work, f"fw-{v}.bin"), "rb").read() for v in ("2.0.0", "3.0.0")]
fw_ver = ["2.0.0", "3.0.0"]
ui = [open(os.path.join(work, f"ui-{t}.bin"), "rb").read() for t in ("even", "odd")]
deadline_s = 30

def status():
    with urllib.request.urlopen(url + "/api/ota/status", timeout=10) as r:
        return json.load(r)

def wait_for(pred, what):
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        try:
            s = status()
            if pred(s):
                return s
            last = s
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # rebooting
        time.sleep(0.01)
    raise SystemExit(f"FAILED: {what} within {deadline_s}s; last status: {json.dumps(last)[:400]}")

def post(path, body):
    req = urllib.request.Request(url + path, data=body, method="POST",
                                 headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

def sample(label, done):
    st = open(f"/proc/{pid}/status").read()
    rss = next(int(l.split()[1]) for l in st.splitlines() if l.startswith("VmRSS:"))
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    raw = open(os.path.join(work, "dev", "wear.bin"), "rb").read()
    counts = struct.unpack(f"<{len(raw)//4}I", raw)
    worn = sorted(((c, i) for i, c in enumerate(counts) if c), reverse=True)
    top = ", ".join(f"{i*4096:#x}:{c}" for c, i in worn[:4])
    s = {"at": label, "updates": done, "rss_kib": rss, "fds": fds,
         "erases": sum(counts), "sectors_erased": len(worn), "max_erases": worn[0][0] if worn else 0,
         "top_sectors": top}
    print(f"{label:>6}: {done:>5} updates  RSS {rss:>7} KiB  fds {fds:>3}  "
          f"erases {s['erases']:>7} over {s['sectors_erased']:>4} sectors, max {s['max_erases']:>5} ({top})",
          flush=True)
    return s

total = fw_n + www_n
samples = [sample("start", 0)]
t0 = time.monotonic()
done = 0
rss_trace = []
fd_trace = []
for i in range(fw_n):
    code, body = post("/update", fw[i % 2])
    if code != 200:
        raise SystemExit(f"FAILED: firmware update {i} refused: {code} {body[:300]!r}")
    want = fw_ver[i % 2]
    wait_for(lambda s: (s.get("running") or {}).get("version") == want
             and not s.get("update_in_progress"), f"firmware {want} running after update {i}")
    done += 1
    rss_trace.append(int(next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))))
    fd_trace.append(len(os.listdir(f"/proc/{pid}/fd")))
    if done == total // 2:
        samples.append(sample("middle", done))
t_fw = time.monotonic() - t0
t1 = time.monotonic()
for i in range(www_n):
    code, body = post("/api/ota/frontend", ui[i % 2])
    if code != 200:
        raise SystemExit(f"FAILED: web-UI update {i} refused: {code} {body[:300]!r}")
    slot = json.loads(body).get("slot")
    wait_for(lambda s: (s.get("www") or {}).get("active") == slot, f"web UI in {slot} after update {i}")
    done += 1
    rss_trace.append(int(next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))))
    fd_trace.append(len(os.listdir(f"/proc/{pid}/fd")))
    if done == total // 2:
        samples.append(sample("middle", done))
t_www = time.monotonic() - t1
samples.append(sample("end", done))
print(f"{fw_n} firmware updates in {t_fw:.1f}s ({t_fw / max(fw_n, 1) * 1000:.0f} ms each), "
      f"{www_n} web-UI updates in {t_www:.1f}s ({t_www / max(www_n, 1) * 1000:.0f} ms each), none refused")
if json_out:
    json.dump({"firmware": fw_n, "www": www_n, "samples": samples,
               "firmware_s": t_fw, "www_s": t_www}, open(json_out, "w"), indent=1)
q = max(len(rss_trace) // 4, 1)
first, last = sorted(rss_trace[:q])[q // 2], sorted(rss_trace[-q:])[q // 2]
if last > first * 1.25 and last - first > 8192:
    raise SystemExit(f"FAILED: RSS grew from {first} KiB (median of the first quarter) to {last} KiB (last quarter)")
fd_first = max(fd_trace[:q])
if samples[-1]["fds"] > fd_first:
    raise SystemExit(f"FAILED: open descriptors grew from {fd_first} (the first quarter's most) to {samples[-1]['fds']}")
print(f"ok: RSS median {first} KiB (first quarter) -> {last} KiB (last quarter), "
      f"fds {samples[0]['fds']} at start, at most {fd_first} in the first quarter, {samples[-1]['fds']} at the end")
PY
