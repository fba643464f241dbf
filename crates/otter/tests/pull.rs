//! Pull updates end to end: a signed release folder served by nginx over
//! HTTPS, a virtual device that fetches, verifies, resumes and boots it.

mod util;
mod webserver;

use std::process::Command;

use webserver::{Certs, Nginx, ServeOptions};

/// The test web server itself: nginx serves the folder over HTTPS with the
/// test CA, honours Range, and ignores it when told to (the device's
/// start-over path depends on that being real).
#[test]
fn nginx_serves_ranges_over_https_and_can_ignore_them() {
    let certs = Certs::new("otter test ca");
    let root = tempfile::tempdir().unwrap();
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.path().join("blob.bin"), &blob).unwrap();
    for ignore_range in [false, true] {
        let srv = Nginx::serve(
            root.path(),
            &ServeOptions {
                tls: Some(&certs),
                ignore_range,
            },
        );
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(&certs.ca)
            .args(["-r", "1000-", "-w", "\n%{http_code}"])
            .arg(format!("https://localhost:{}/blob.bin", srv.port))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (body, code) = out.stdout.split_at(out.stdout.len() - 4);
        if ignore_range {
            assert_eq!(code, b"\n200");
            assert_eq!(body, &blob[..]);
        } else {
            assert_eq!(code, b"\n206");
            assert_eq!(body, &blob[1000..]);
        }
    }
}

// ---------------------------------------------------------------------------
// The pull client end to end.

mod devproc;

use std::path::{Path, PathBuf};
use std::time::Duration;

use devproc::{image, CutTally, Device, Seeded, OTADATA};
use serde_json::Value;
use util::{run_otter, stderr, stdout};
use webserver::{Proxy, ProxyPlan};

/// The download buffer the device documents (docs/pull.md).
const BUFFER: u64 = 4096;

/// A signing key pair made by `otter keygen`.
struct Keys {
    key: PathBuf,
    public: PathBuf,
}

fn keygen(dir: &Path, name: &str) -> Keys {
    let base = dir.join(name);
    let out = run_otter(["keygen", "-o", base.to_str().unwrap()]);
    assert!(out.status.success(), "keygen: {}", stderr(&out));
    Keys {
        key: base.with_extension("key"),
        public: base.with_extension("pub"),
    }
}

/// A 1 MiB web-UI image whose index.html says `text`.
fn www(dir: &Path, text: &str) -> PathBuf {
    let src = dir.join(format!("ui-{}", text.len()));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("index.html"), text).unwrap();
    std::fs::write(src.join("app.css"), "body { color: teal }").unwrap();
    let out_path = dir.join(format!("ui-{}.bin", text.len()));
    let out = run_otter([
        "www",
        "build",
        src.to_str().unwrap(),
        "--size",
        "1M",
        "-o",
        out_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "www build: {}", stderr(&out));
    out_path
}

/// `otter release` into `out` (replacing what is there).
fn release(out: &Path, firmware: &Path, www: Option<&Path>, keys: &Keys, extra: &[&str]) {
    let mut args = vec![
        "release".to_string(),
        "--firmware".into(),
        firmware.display().to_string(),
        "--key".into(),
        keys.key.display().to_string(),
        "-o".into(),
        out.display().to_string(),
        "--force".into(),
    ];
    if let Some(w) = www {
        args.extend(["--www".into(), w.display().to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = run_otter(&args);
    assert!(
        out.status.success(),
        "otter release: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// nginx serving `rel` over HTTPS with the test CA's certificate.
fn serve_https(rel: &Path, certs: &Certs, ignore_range: bool) -> Nginx {
    Nginx::serve(
        rel,
        &ServeOptions {
            tls: Some(certs),
            ignore_range,
        },
    )
}

fn manifest_url(port: u16) -> String {
    format!("https://localhost:{port}/manifest.json")
}

fn run_args<'a>(manifest_url: &'a str, keys: &'a Keys, certs: &'a Certs) -> Vec<&'a str> {
    vec![
        "--manifest-url",
        manifest_url,
        "--trust",
        keys.public.to_str().unwrap(),
        "--ca",
        certs.ca.to_str().unwrap(),
        "--selftest-window",
        "0.5",
    ]
}

fn get(base: &str, path: &str) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10"])
        .arg(format!("{base}{path}"))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "GET {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn version(st: &Value) -> &str {
    st["running"]["version"].as_str().unwrap_or("")
}

fn confirmed(st: &Value, v: &str) -> bool {
    version(st) == v
        && st["running"]["state"]
            .as_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("valid"))
}

/// RFC 0003's main path: a signed bundle on nginx over HTTPS with a CA made
/// in the test; the device installs the firmware, confirms it, then the web
/// UI, and serves it.
#[test]
fn pulls_a_signed_bundle_over_https_and_serves_the_new_ui() {
    let t = tempfile::tempdir().unwrap();
    let certs = Certs::new("otter pull test ca");
    let keys = keygen(t.path(), "release");
    let fw0 = image(t.path(), "esp32s3", "1.0.0", &[]);
    let fw1 = image(t.path(), "esp32s3", "1.1.0", &["--size", "600000"]);
    let ui0 = www(t.path(), "<h1>old ui</h1>");
    let ui1 = www(t.path(), "<h1>the new ui, pulled</h1>");
    let rel = t.path().join("rel");
    release(&rel, &fw1, Some(&ui1), &keys, &[]);
    let srv = serve_https(&rel, &certs, false);
    let url = manifest_url(srv.port);
    let dev = Device::create(&[
        "--firmware",
        fw0.to_str().unwrap(),
        "--www",
        ui0.to_str().unwrap(),
        "--rollback",
    ])
    .run(&run_args(&url, &keys, &certs));
    let st = dev.wait_until(
        |s| confirmed(s, "1.1.0") && s["www"]["active"] == "www_1",
        "the pulled firmware confirmed and the pulled web UI mounted",
    );
    assert_eq!(get(&dev.url, "/"), b"<h1>the new ui, pulled</h1>");
    assert_eq!(st["pull"]["last_error"], Value::Null, "{st:#}");
    assert_eq!(st["pull"]["release"]["version"], "1.1.0");
    // And then it stays put: a check now finds nothing to do.
    let (code, body) = dev.curl("/api/ota/check", &["-X", "POST"]);
    assert_eq!(
        (code, body["result"].as_str()),
        (200, Some("up_to_date")),
        "{body:#}"
    );
    let log = srv.access_log();
    for f in [
        "/manifest.json ",
        "/manifest.json.sig ",
        "/firmware.bin ",
        "/www.bin ",
    ] {
        assert!(log.contains(f), "nginx never served {f}: {log}");
    }
}

/// One refusal: the manifest served now, what `POST /api/ota/check` must
/// answer, and that nothing about booting changed.
fn refused(dev: &Device, http: u16, code: &str) {
    let before = dev.flash();
    let (got, body) = dev.curl("/api/ota/check", &["-X", "POST"]);
    assert_eq!(
        (
            got,
            body["result"].is_string(),
            body["error"]["error"].as_str()
        ),
        (http, true, Some(code)),
        "{body:#}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.len() > 20),
        "{body:#}"
    );
    let st = dev.status();
    assert_eq!(st["pull"]["last_error"]["error"], code, "{st:#}");
    assert_eq!(version(&st), "1.0.0");
    let after = dev.flash();
    assert_eq!(
        before[OTADATA], after[OTADATA],
        "{code}: otadata changed: the boot selection must stay as it was"
    );
}

/// The RFC's rejection cases, each with a clear status and no change of the
/// boot slot.
#[test]
fn every_bad_release_is_refused_and_nothing_switches() {
    let t = tempfile::tempdir().unwrap();
    let certs = Certs::new("otter pull test ca");
    let keys = keygen(t.path(), "release");
    let other = keygen(t.path(), "stranger");
    let p = |s: &Path| s.to_str().unwrap().to_string();
    let fw0 = image(t.path(), "esp32s3", "1.0.0", &["--secure-version", "2"]);
    let rel = t.path().join("rel");
    std::fs::create_dir_all(&rel).unwrap();
    let srv = serve_https(&rel, &certs, false);
    let url = manifest_url(srv.port);
    let small_slots = t.path().join("small.csv");
    std::fs::write(
        &small_slots,
        "nvs,data,nvs,0x9000,0x5000,\notadata,data,ota,0xe000,0x2000,\nphy_init,data,phy,0x10000,0x1000,\nota_0,app,ota_0,0x20000,0x100000,\nota_1,app,ota_1,0x120000,0x100000,\n",
    )
    .unwrap();
    let dev = Device::create(&[
        "--firmware",
        &p(&fw0),
        "--anti-rollback",
        "2",
        "--partitions",
        &p(&small_slots),
    ])
    .run(&run_args(&url, &keys, &certs));

    // Not signed by a trusted key.
    let fw1 = image(t.path(), "esp32s3", "1.1.0", &["--secure-version", "2"]);
    release(&rel, &fw1, None, &other, &[]);
    refused(&dev, 422, "no_trusted_signature");
    // Signed, then one byte of the manifest changed.
    release(&rel, &fw1, None, &keys, &[]);
    let m = std::fs::read_to_string(rel.join("manifest.json")).unwrap();
    std::fs::write(rel.join("manifest.json"), m.replace("1.1.0", "1.1.9")).unwrap();
    refused(&dev, 422, "bad_signature");
    // Expired.
    release(&rel, &fw1, None, &keys, &["--expires", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    refused(&dev, 422, "expired");
    // Built for another chip.
    let c3 = image(t.path(), "esp32c3", "1.1.0", &["--secure-version", "2"]);
    release(&rel, &c3, None, &keys, &[]);
    refused(&dev, 422, "wrong_chip");
    // Older than what runs.
    let old = image(t.path(), "esp32s3", "0.9.0", &["--secure-version", "2"]);
    release(&rel, &old, None, &keys, &[]);
    refused(&dev, 422, "older");
    // Below the anti-rollback counter.
    let sv1 = image(t.path(), "esp32s3", "1.2.0", &["--secure-version", "1"]);
    release(&rel, &sv1, None, &keys, &[]);
    refused(&dev, 422, "secure_version");
    // Larger than the slot.
    let big = image(
        t.path(),
        "esp32s3",
        "1.3.0",
        &["--secure-version", "2", "--size", "1200000"],
    );
    release(&rel, &big, None, &keys, &[]);
    refused(&dev, 422, "too_large");
    // The bytes served are not the bytes signed: downloaded, hashed, refused.
    release(&rel, &fw1, None, &keys, &[]);
    let evil = image(t.path(), "esp32s3", "6.6.6", &["--secure-version", "2"]);
    let mut evil = std::fs::read(evil).unwrap();
    evil.resize(std::fs::metadata(&fw1).unwrap().len() as usize, 0);
    std::fs::write(rel.join("firmware.bin"), evil).unwrap();
    let before = dev.flash();
    let (got, body) = dev.curl("/api/ota/check", &["-X", "POST"]);
    assert_eq!(
        (got, body["result"].as_str()),
        (202, Some("updating")),
        "{body:#}"
    );
    let st = dev.wait_until(
        |s| s["pull"]["step"] == "failed",
        "the download to be refused",
    );
    assert_eq!(
        st["pull"]["last_error"]["error"], "sha256_mismatch",
        "{st:#}"
    );
    assert_eq!(version(&st), "1.0.0");
    assert_eq!(before[OTADATA], dev.flash()[OTADATA], "otadata changed");
    // Not fetched again while the manifest names the same bytes.
    refused(&dev, 502, "sha256_mismatch");
}

/// Seeded cut offsets: each connection's server-to-client stream is cut
/// somewhere in 16..64 KiB (past the TLS handshake, inside the body).
fn cut_plan(seed: u64, n: usize) -> Vec<u64> {
    let mut r = Seeded::new(seed);
    (0..n).map(|_| 16 * 1024 + r.below(48 * 1024)).collect()
}

/// A device running 1.0.0 that pulls a signed 1.1.0 of `size` bytes from
/// nginx over HTTPS through a [`Proxy`] with `plan`.
struct Proxied {
    _t: tempfile::TempDir,
    _certs: Certs,
    fw1: PathBuf,
    size: u64,
    srv: Nginx,
    proxy: Proxy,
    dev: Device,
}

fn proxied_pull(size: &str, ignore_range: bool, plan: ProxyPlan, run: &[&str]) -> Proxied {
    let t = tempfile::tempdir().unwrap();
    let certs = Certs::new("otter pull test ca");
    let keys = keygen(t.path(), "release");
    let fw0 = image(t.path(), "esp32s3", "1.0.0", &[]);
    let fw1 = image(t.path(), "esp32s3", "1.1.0", &["--size", size]);
    let rel = t.path().join("rel");
    release(&rel, &fw1, None, &keys, &[]);
    let srv = serve_https(&rel, &certs, ignore_range);
    let proxy = Proxy::start(srv.port, plan);
    let url = manifest_url(proxy.port);
    let mut args = run_args(&url, &keys, &certs);
    args.extend_from_slice(run);
    let dev = Device::create(&["--firmware", fw0.to_str().unwrap()]).run(&args);
    Proxied {
        size: std::fs::metadata(&fw1).unwrap().len(),
        _t: t,
        _certs: certs,
        fw1,
        srv,
        proxy,
        dev,
    }
}

/// RFC 0003: a connection that drops resumes with a Range request from the
/// last written offset. A proxy cuts the TLS connection at random offsets,
/// at least 20 times in one download; the download finishes, the firmware
/// boots, and no byte is fetched twice beyond one buffer per cut.
#[test]
fn a_download_cut_twenty_times_resumes_and_refetches_at_most_a_buffer_per_cut() {
    let plan = ProxyPlan {
        cuts: cut_plan(0x0773_0001, 40),
        delay_per_4k: Duration::ZERO,
    };
    let p = proxied_pull("1500000", false, plan, &["--pull-retry-delay", "0.02"]);
    let (size, srv, proxy, dev) = (p.size, &p.srv, &p.proxy, &p.dev);
    let st = dev.wait_until(|s| version(s) == "1.1.0", "the pulled firmware to boot");
    let cuts = proxy.stats().cuts;
    assert!(cuts >= 20, "only {cuts} cuts: the test proves nothing");
    let d = &st["pull"]["last_download"];
    let (body, resumes) = (
        d["body_bytes"].as_u64().unwrap(),
        d["resumes"].as_u64().unwrap(),
    );
    assert_eq!(d["artifact"], "firmware", "{st:#}");
    assert!(resumes >= 20, "{resumes} resumes for {cuts} cuts: {d:#}");
    assert!(
        body <= size + resumes * BUFFER,
        "{body} body bytes for a {size}-byte image over {resumes} resumes: more than one {BUFFER}-byte buffer refetched per cut"
    );
    assert_eq!(d["buffer_size"], BUFFER);
    let ranges = srv.access_log().matches("firmware.bin").count();
    assert!(
        ranges as u64 > resumes,
        "nginx saw {ranges} firmware requests"
    );
    eprintln!(
        "{cuts} cuts, {resumes} resumes, {body} body bytes for {size} ({} over)",
        body - size
    );
}

/// A server that ignores Range: every drop starts over, and what is
/// installed is still exactly the release.
#[test]
fn a_server_that_ignores_range_makes_the_device_start_over_cleanly() {
    let plan = ProxyPlan {
        cuts: cut_plan(7, 3),
        delay_per_4k: Duration::ZERO,
    };
    let p = proxied_pull("300000", true, plan, &["--pull-retry-delay", "0.02"]);
    let (fw1, proxy, dev) = (&p.fw1, &p.proxy, &p.dev);
    let st = dev.wait_until(|s| version(s) == "1.1.0", "the pulled firmware to boot");
    let d = &st["pull"]["last_download"];
    let cuts = proxy.stats().cuts;
    assert!(cuts >= 2, "only {cuts} cuts");
    assert!(d["restarts"].as_u64().unwrap() >= 2, "{d:#}");
    assert_eq!(
        d["resumes"], 0,
        "nothing can resume against this server: {d:#}"
    );
    // The slot holds the release byte for byte.
    let flash = dev.flash();
    let slot = st["running"]["offset"].as_u64().unwrap() as usize;
    let want = std::fs::read(fw1).unwrap();
    assert!(
        flash[slot..slot + want.len()] == want[..],
        "the slot differs from the release"
    );
}

/// The default table's ota_0, where the first pull of a device running
/// factory goes.
const OTA_0: usize = 0x220000;

/// Where the firmware's download starts in this boot, from the device's log
/// line for it (`pull: resuming firmware V at 0x…` or `pull: downloading
/// firmware V (N bytes)`: from 0).
fn download_start(dev: &Device) -> u64 {
    let line = dev.wait_log(
        |l| l.contains("pull: resuming firmware") || l.contains("pull: downloading firmware"),
        "the firmware download's start",
    );
    match line.split_once(" at 0x") {
        Some((_, rest)) => {
            let hex = rest.split_whitespace().next().unwrap_or("");
            u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("{line}"))
        }
        None => 0,
    }
}

/// Power cut (`kill -9`) at 21 points of one throttled pull, aimed with the
/// proxy's byte count: right after the response head, inside the first
/// sector, 18 seeded points spread over the whole image (one per
/// stretch), and a few sectors before the end (verify and switch not yet
/// reached). After every cut the flash (read while the device is off) still
/// boots the old firmware, the boot selection (otadata) is byte for byte
/// unchanged, and the slot holds a prefix of the release followed by erased
/// sectors; powered on, the device runs the old firmware and reports no
/// installed update (the proxy holds the download still meanwhile). Every
/// next download shows the resume rule at work: it starts at a sector
/// boundary at most two sectors before the first erased sector the cut
/// left, which is 0, a clean start, when less than that was written. At
/// the end the same update completes from the last prefix, fetching only
/// the rest, and the slot holds the release byte for byte.
#[test]
fn a_power_cut_mid_pull_boots_the_old_firmware_then_resumes_from_flash() {
    const SECTOR: u64 = devproc::SECTOR as u64;
    // 400 KB/s: about 3 s for the whole image, a sector every 10 ms, so a
    // cut lands within a few KiB of where it is aimed.
    let plan = ProxyPlan {
        cuts: vec![],
        delay_per_4k: Duration::from_millis(10),
    };
    let mut p = proxied_pull("1200000", false, plan, &[]);
    let (size, dev, proxy) = (p.size, &mut p.dev, &p.proxy);
    let otadata = dev.flash()[OTADATA].to_vec();
    let want = std::fs::read(&p.fw1).unwrap();
    let mut r = Seeded::new(0x0017_9011);
    let (lo, hi) = (2 * SECTOR, size - 16 * SECTOR);
    let stretch = (hi - lo) / 18;
    let mut targets = vec![0, 1 + r.below(SECTOR - 1)];
    targets.extend((0..18).map(|i| lo + i * stretch + r.below(stretch)));
    targets.push(size - 4 * SECTOR - r.below(2 * SECTOR));
    let mut tally = CutTally::default();
    // The first erased sector the last cut left.
    let mut left: Option<u64> = None;
    let check_resume = |round: usize, from: u64, left: Option<u64>| {
        let Some(w) = left else {
            assert_eq!(from, 0, "the first download starts clean");
            return false;
        };
        assert_eq!(from % SECTOR, 0, "round {round}: resumed at {from}");
        assert!(
            from <= w && from + 2 * SECTOR >= w,
            "round {round}: resumed at {from}, but the cut left {w} bytes before the first erased sector"
        );
        from > 0
    };
    for (round, target) in targets.into_iter().enumerate() {
        let from = download_start(dev);
        tally.resumed += usize::from(check_resume(round, from, left));
        // Aim: `target` of the image, counted in bytes the proxy relays.
        let aim = proxy.stats().down_bytes + target.saturating_sub(from);
        while proxy.stats().down_bytes < aim {
            std::thread::sleep(Duration::from_millis(1));
        }
        dev.kill();
        tally.cuts += 1;
        // Off: the flash still boots the old firmware; the slot is the
        // release's prefix, then erased sectors.
        let flash = dev.flash();
        assert_eq!(
            flash[OTADATA],
            otadata[..],
            "round {round}: the boot selection changed"
        );
        let slot = &flash[OTA_0..OTA_0 + want.len()];
        let w = (0..want.len())
            .step_by(SECTOR as usize)
            .find(|&at| {
                slot[at..(at + SECTOR as usize).min(want.len())]
                    .iter()
                    .all(|&b| b == 0xFF)
            })
            .unwrap_or(want.len());
        let kept = w.saturating_sub(SECTOR as usize);
        assert!(
            slot[..kept] == want[..kept],
            "round {round}: the slot is not the release's prefix"
        );
        left = Some(w as u64);
        let out = run_otter(["device", "status", dev.path().to_str().unwrap(), "--json"]);
        let off: Value = serde_json::from_str(&stdout(&out)).expect("status JSON");
        assert_eq!(off["running"]["version"], "1.0.0", "round {round}: {off:#}");
        assert_eq!(off["boot"]["label"], "factory", "round {round}: {off:#}");
        // On: the old firmware runs and nothing is reported installed.
        proxy.hold();
        let st = dev.start();
        proxy.release();
        assert_eq!(
            version(&st),
            "1.0.0",
            "round {round}: it must boot the old firmware"
        );
        assert_eq!(st["running"]["label"], "factory", "round {round}");
        assert_eq!(st["boot"]["label"], "factory", "round {round}");
        assert!(
            st["last_update"].is_null() || st["last_update"]["result"] == "in_progress",
            "round {round}: a cut update is not reported as done: {:#}",
            st["last_update"]
        );
        tally.recovered += 1;
    }
    let from = download_start(dev);
    tally.resumed += usize::from(check_resume(21, from, left));
    let st = dev.wait_until(|s| version(s) == "1.1.0", "the pulled firmware to boot");
    let d = &st["pull"]["last_download"];
    assert_eq!(d["resumed_from"], from, "{d:#}");
    assert!(from > size / 2, "the last resume kept the prefix: {d:#}");
    assert!(
        d["body_bytes"].as_u64().unwrap() < size - from + 4096 * 2,
        "the last download fetched more than the rest: {d:#}"
    );
    let slot = st["running"]["offset"].as_u64().unwrap() as usize;
    assert_eq!(slot, OTA_0);
    assert!(
        dev.flash()[slot..slot + want.len()] == want[..],
        "the slot differs from the release"
    );
    tally.finish("a_power_cut_mid_pull", 20);
    assert!(tally.resumed >= 18, "{}", tally.summary());
}

/// `otter device check --to URL` makes a device look for a release now, and
/// the pull's download logs its progress every 10%.
#[test]
fn device_check_from_the_cli_pulls_and_the_download_logs_progress() {
    let t = tempfile::tempdir().unwrap();
    let certs = Certs::new("otter check test ca");
    let keys = keygen(t.path(), "release");
    let fw0 = image(t.path(), "esp32s3", "1.0.0", &[]);
    let fw1 = image(t.path(), "esp32s3", "1.1.0", &["--size", "600000"]);
    let rel = t.path().join("rel");
    // At boot the release is the running version: nothing to do.
    release(&rel, &fw0, None, &keys, &[]);
    let srv = serve_https(&rel, &certs, false);
    let url = manifest_url(srv.port);
    let mut dev = Device::create(&["--firmware", fw0.to_str().unwrap(), "--rollback"])
        .run(&run_args(&url, &keys, &certs));
    dev.wait_until(|s| s["pull"]["step"] == "up_to_date", "the boot-time check");
    release(&rel, &fw1, None, &keys, &[]);
    let out = run_otter(["device", "check", "--to", &dev.url, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v:#}");
    dev.wait_until(|s| confirmed(s, "1.1.0"), "the pulled 1.1.0 confirmed");
    let log = dev.kill();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pull: firmware 1.1.0: ") && l.contains('%'))
        .collect();
    assert!(lines.len() >= 9, "progress every 10%: {lines:#?}\n{log}");
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("100% (600000 of 600000 bytes)")),
        "{lines:#?}"
    );
}

/// A device that requires Secure Boot signatures (`--require-signature`)
/// pulls a release whose manifest is validly signed but whose firmware is
/// not Secure-Boot-signed: downloaded, checked before the switch, refused
/// with `bad_signature`, nothing switched. The same release made with
/// `otter release --sign-firmware` installs.
#[test]
fn a_device_that_requires_signatures_pulls_only_signed_firmware() {
    let t = tempfile::tempdir().unwrap();
    let certs = Certs::new("otter pull test ca");
    let keys = keygen(t.path(), "release");
    let sb = t.path().join("sb.pem");
    let o = Command::new(util::python())
        .args([
            "-m",
            "espsecure",
            "generate-signing-key",
            "--version",
            "2",
            "--scheme",
            "ecdsa256",
        ])
        .arg(&sb)
        .output()
        .expect("espsecure");
    assert!(
        o.status.success(),
        "espsecure: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let fw0 = image(t.path(), "esp32s3", "1.0.0", &[]);
    let fw1 = image(t.path(), "esp32s3", "1.1.0", &[]);
    let rel = t.path().join("rel");
    release(&rel, &fw1, None, &keys, &[]);
    let srv = serve_https(&rel, &certs, false);
    let url = manifest_url(srv.port);
    let dev = Device::create(&[
        "--firmware",
        fw0.to_str().unwrap(),
        "--require-signature",
        "--trust-key",
        sb.to_str().unwrap(),
    ]);
    let created = dev.flash()[OTADATA].to_vec();
    let dev = dev.run(&run_args(&url, &keys, &certs));
    let st = dev.wait_until(
        |s| s["pull"]["last_error"]["error"] == "bad_signature",
        "the unsigned firmware to be refused",
    );
    assert_eq!(version(&st), "1.0.0", "{st:#}");
    let before = dev.flash();
    assert!(
        st["pull"]["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not signed")),
        "{st:#}"
    );
    assert_eq!(created[..], before[OTADATA], "otadata changed");

    release(
        &rel,
        &fw1,
        None,
        &keys,
        &["--sign-firmware", sb.to_str().unwrap()],
    );
    let _ = dev.curl("/api/ota/check", &["-X", "POST"]);
    dev.wait_until(|s| version(s) == "1.1.0", "the signed firmware to run");
}
