//! The Update page (`GET /update`) in a real headless Chromium: each test
//! creates and runs a virtual device (`otter device run`, the real binary),
//! drives the page through tests/browser/update_page.js (playwright-core,
//! pinned in tests/browser/package-lock.json, with the system Chromium) and
//! then checks the device itself: the running version, the served web UI,
//! the flash bytes.
//!
//! Needs `chromium` (scripts/setup-system.sh), `node` and the driver
//! (scripts/setup-browser.sh); scripts/test.sh runs both. Without them every
//! browser test fails and says how to install; none is skipped.
//!
//! Uploads are throttled in Chromium's network stack (DevTools network
//! conditions) to `UPLOAD_BYTES_PER_SECOND`, so a loopback upload takes
//! about a second and the progress bar is seen moving. Screenshots go to
//! `target/test-artifacts/browser/` (the test output names each file).

mod devproc;
mod util;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use devproc::Device;
use otter_agent::api::{UPDATE_PAGE, UPDATE_PAGE_BUDGET};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use util::{run_otter, stderr, workspace_root};

/// The system Chromium the tests drive (`$OTTER_CHROMIUM` overrides).
const CHROMIUM: &str = "/usr/bin/chromium";
/// Upload speed Chromium is throttled to: a 1 MiB web UI takes about 1.3 s.
const UPLOAD_BYTES_PER_SECOND: u64 = 800_000;
/// Size of the test firmware: about 1.5 s at the throttled speed.
const FIRMWARE_SIZE: &str = "1200000";
/// The most one scenario may take, browser start to close.
const SCENARIO_LIMIT: Duration = Duration::from_secs(90);
/// The default table's NVS partition and web-UI slot 0.
const NVS: std::ops::Range<usize> = 0x9000..0xE000;
const WWW_0: std::ops::Range<usize> = 0x620000..0x720000;

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

fn sha_of(p: &Path) -> String {
    Sha256::digest(std::fs::read(p).expect("reading a test file"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// tests/browser, where the driver script and its node_modules live.
fn browser_dir() -> PathBuf {
    workspace_root().join("tests/browser")
}

/// The screenshot folder, created.
fn shots_dir() -> PathBuf {
    let d = workspace_root().join("target/test-artifacts/browser");
    std::fs::create_dir_all(&d).expect("creating the screenshot folder");
    d
}

/// What the browser tests need, checked up front: fails (never skips) with
/// how to install what is missing.
fn chromium() -> PathBuf {
    let chromium = std::env::var_os("OTTER_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CHROMIUM));
    assert!(
        chromium.is_file(),
        "Chromium is missing at {}: install it with `bash scripts/setup-system.sh` \
         (Debian package `chromium`; scripts/test.sh does this) or set OTTER_CHROMIUM",
        chromium.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node is missing: install Node.js 20 or later (Debian packages `nodejs npm`), \
         then run `bash scripts/setup-browser.sh`"
    );
    let pinned: Value = serde_json::from_str(
        &std::fs::read_to_string(browser_dir().join("package.json")).expect("package.json"),
    )
    .expect("package.json is JSON");
    let want = pinned["dependencies"]["playwright-core"]
        .as_str()
        .expect("playwright-core pinned in tests/browser/package.json");
    let installed =
        std::fs::read_to_string(browser_dir().join("node_modules/playwright-core/package.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let got = installed
        .as_ref()
        .and_then(|v| v["version"].as_str())
        .unwrap_or("none");
    assert_eq!(
        got, want,
        "the browser-test driver is not installed (playwright-core {want} in tests/browser/node_modules, found {got}): \
         run `bash scripts/setup-browser.sh` (npm ci in tests/browser; scripts/test.sh does this)"
    );
    chromium
}

/// Runs one scenario of tests/browser/update_page.js against `dev` with
/// `extra` config; returns what the script observed. Panics with the
/// script's output when the scenario fails or overruns SCENARIO_LIMIT.
fn scenario(dev: &Device, name: &str, extra: Value) -> Value {
    let chromium = chromium();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = json!({
        "scenario": name,
        "url": dev.url,
        "chromium": s(&chromium),
        "userDataDir": s(&tmp.path().join("profile")),
        "shots": s(&shots_dir()),
        "uploadBytesPerSecond": UPLOAD_BYTES_PER_SECOND,
    });
    for (k, v) in extra.as_object().expect("extra config is an object") {
        cfg[k] = v.clone();
    }
    // This scenario's screenshots from an earlier run would mislead.
    for e in std::fs::read_dir(shots_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.file_name()
            .to_string_lossy()
            .starts_with(&format!("{name}-"))
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let cfg_path = tmp.path().join("config.json");
    std::fs::write(&cfg_path, cfg.to_string()).expect("writing the scenario config");

    let started = Instant::now();
    let mut child = Command::new("node")
        .arg("update_page.js")
        .arg(&cfg_path)
        .current_dir(browser_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning node");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut t = String::new();
        let _ = out.read_to_string(&mut t);
        t
    });
    let err = std::thread::spawn(move || {
        let mut t = String::new();
        let _ = err.read_to_string(&mut t);
        t
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("waiting for node") {
            break Some(st);
        }
        if started.elapsed() > SCENARIO_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    let took = started.elapsed();
    let shots: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("screenshot: "))
        .collect();
    println!(
        "browser scenario {name}: {:.1} s; screenshots ({}): {}",
        took.as_secs_f64(),
        shots_dir().display(),
        shots.join(", ")
    );
    let Some(status) = status else {
        panic!(
            "browser scenario {name} overran {SCENARIO_LIMIT:?} and was killed\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
        );
    };
    assert!(
        status.success(),
        "browser scenario {name} failed ({status})\n--- stderr ---\n{err}\n--- stdout ---\n{out}"
    );
    let line = out
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line from scenario {name}:\n{out}\n{err}"));
    let res: Value = serde_json::from_str(line).expect("RESULT is JSON");
    for (kind, samples) in res["samples"].as_object().into_iter().flatten() {
        let values: Vec<String> = samples
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| format!("{}ms:{}/{}", s["t"], s["value"], s["max"]))
            .collect();
        println!("  {kind} progress samples: {}", values.join(" "));
    }
    res
}

/// A test firmware image of FIRMWARE_SIZE bytes.
fn firmware(dir: &Path, version: &str) -> PathBuf {
    devproc::image(
        dir,
        "esp32s3",
        version,
        &["--project", "otter-virtual", "--size", FIRMWARE_SIZE],
    )
}

/// A 1 MiB web-UI image (`otter www build`) whose index.html names `tag`;
/// returns the image and the index.html text.
fn web_ui(dir: &Path, tag: &str) -> (PathBuf, String) {
    let src = dir.join(format!("ui-{tag}"));
    std::fs::create_dir_all(&src).expect("mkdir");
    let index = format!("<!doctype html><title>UI {tag}</title><h1>Web UI {tag}</h1>\n");
    std::fs::write(src.join("index.html"), &index).expect("write index.html");
    std::fs::write(src.join("app.js"), format!("console.log('{tag}');\n")).expect("write");
    let out = dir.join(format!("ui-{tag}.bin"));
    let o = run_otter(["www", "build", &s(&src), "--size", "1M", "-o", &s(&out)]);
    assert!(o.status.success(), "otter www build: {}", stderr(&o));
    (out, index)
}

/// GET `path` from the device with curl: the body bytes.
fn get(dev: &Device, path: &str) -> Vec<u8> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail", "--max-time", "20"])
        .args(dev.auth())
        .arg(format!("{}{path}", dev.url));
    let out = cmd.output().expect("curl");
    assert!(
        out.status.success(),
        "GET {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The progress samples of `kind` ("fw"/"www") moved through several
/// intermediate values: the bar followed the real upload.
fn assert_progress(res: &Value, kind: &str) {
    let samples = res["samples"][kind].as_array().expect("progress samples");
    let mid = samples
        .iter()
        .filter(|s| s["value"].as_f64() > Some(0.0) && s["value"].as_f64() < s["max"].as_f64())
        .count();
    assert!(
        mid >= 3,
        "the {kind} progress bar showed {mid} intermediate values: {samples:?}"
    );
}

#[test]
fn update_page_fits_the_firmware_budget() {
    assert!(
        UPDATE_PAGE.len() < UPDATE_PAGE_BUDGET,
        "the Update page is {} bytes, over its {UPDATE_PAGE_BUDGET}-byte budget",
        UPDATE_PAGE.len()
    );
    // The ids the browser tests (and anyone scripting the page) rely on.
    for id in [
        "status",
        "auth",
        "token",
        "token-save",
        "running-version",
        "running-project",
        "running-state",
        "www-active",
        "confirm",
        "rollback",
        "fw-file",
        "fw-send",
        "fw-progress",
        "fw-msg",
        "www-file",
        "www-send",
        "www-progress",
        "www-msg",
    ] {
        assert!(
            UPDATE_PAGE.contains(&format!("id=\"{id}\"")),
            "the Update page has no #{id}"
        );
    }
    // Every input has a label.
    for id in ["token", "fw-file", "www-file"] {
        assert!(
            UPDATE_PAGE.contains(&format!("<label for=\"{id}\"")),
            "#{id} has no label"
        );
    }
}

/// (a) A firmware through the picker, the bar moves, the device reboots
/// into it (pending verification), the page shows it, and Confirm makes it
/// VALID.
#[test]
fn firmware_upload_then_confirm() {
    let work = tempfile::tempdir().expect("tempdir");
    let fw = firmware(work.path(), "2.0.0");
    let dev = Device::create(&["--rollback"]).run(&["--selftest-window", "60"]);
    let res = scenario(
        &dev,
        "firmware_confirm",
        json!({ "firmware": s(&fw), "newVersion": "2.0.0" }),
    );
    assert_progress(&res, "fw");
    assert_eq!(res["sha256Headers"], json!([sha_of(&fw)]), "{res}");
    let st = dev.status();
    assert_eq!(st["running"]["version"], "2.0.0", "{st:#}");
    assert_eq!(st["running"]["state"], "valid", "{st:#}");
    assert_eq!(st["running"]["sha256"], sha_of(&fw));
}

/// (a) A firmware through the picker, then Roll back: the device goes back
/// to the factory image and the page says so.
#[test]
fn firmware_upload_then_rollback() {
    let work = tempfile::tempdir().expect("tempdir");
    let fw = firmware(work.path(), "2.0.0");
    let dev = Device::create(&["--rollback"]).run(&["--selftest-window", "60"]);
    let res = scenario(
        &dev,
        "firmware_rollback",
        json!({ "firmware": s(&fw), "newVersion": "2.0.0", "oldVersion": "1.0.0" }),
    );
    assert_progress(&res, "fw");
    assert_eq!(res["dialogs"].as_array().map(Vec::len), Some(1), "{res}");
    let st = dev.status();
    assert_eq!(st["running"]["version"], "1.0.0", "{st:#}");
    assert!(!st["last_rollback"].is_null(), "{st:#}");
}

/// (e) A device running Tasmota (its app descriptor's project name and
/// version are empty) is shown as running that image, not as "No image
/// runs.".
#[test]
fn an_image_with_an_empty_version_is_shown_as_running() {
    let fw = util::corpus_file("app-images/tasmota-sml/tasmota32s3_ottelo_tas-15.5.0.bin");
    let dev = Device::create(&["--firmware", &s(&fw)]).run(&[]);
    let st = dev.status();
    assert_eq!(st["running"]["version"], "", "{st:#}");
    let sha = sha_of(&fw);
    assert_eq!(st["running"]["sha256"], sha.as_str());
    let res = scenario(&dev, "empty_version", json!({ "shaPrefix": &sha[..12] }));
    assert_eq!(res["messages"]["version"], "(no version)", "{res}");
    let shown = res["messages"]["status"].as_str().unwrap_or_default();
    assert!(
        shown.starts_with(&format!(
            "(no project name) (no version) (sha256 {})",
            &sha[..12]
        )),
        "{res}"
    );
}

/// (f) A rollback is shown red while it is the device's present state, and
/// no longer once a later update has confirmed.
#[test]
fn a_rollback_stops_being_red_once_a_later_update_confirms() {
    let work = tempfile::tempdir().expect("tempdir");
    let dev = Device::create(&["--rollback"]).run(&["--selftest-window", "0.3"]);
    let push = |version: &str| {
        let fw = firmware(work.path(), version);
        let out = run_otter(["push", &s(&fw), "--to", &dev.url, "--timeout", "30"]);
        assert!(out.status.success(), "push {version}: {}", stderr(&out));
        dev.wait_until(
            |st| st["running"]["version"] == version && st["running"]["state"] == "valid",
            "the pushed image confirmed",
        );
    };
    push("2.0.0");
    let (code, body) = dev.curl("/api/ota/rollback", &["-X", "POST"]);
    assert_eq!(code, 200, "{body}");
    dev.wait_until(|st| st["running"]["label"] == "factory", "the rollback");
    let res = scenario(&dev, "rollback_status", json!({ "rollbackStale": false }));
    assert_eq!(res["messages"]["statusClass"], "msg err", "{res}");

    push("3.0.0");
    assert_eq!(dev.status()["last_rollback"]["stale"], true);
    let res = scenario(&dev, "rollback_status", json!({ "rollbackStale": true }));
    assert_eq!(res["messages"]["statusClass"], "msg ok", "{res}");
}

/// (b) A new web UI through the picker: the bar moves, the device reboots
/// and serves the new index.html from the other slot.
#[test]
fn web_ui_upload_serves_the_new_index() {
    let work = tempfile::tempdir().expect("tempdir");
    let (old, old_index) = web_ui(work.path(), "old");
    let (new, new_index) = web_ui(work.path(), "new");
    let dev = Device::create(&["--www", &s(&old)]).run(&[]);
    assert_eq!(get(&dev, "/"), old_index.as_bytes());
    let res = scenario(
        &dev,
        "www_update",
        json!({ "ui": s(&new), "uiIndex": new_index }),
    );
    assert_progress(&res, "www");
    assert_eq!(res["sha256Headers"], json!([sha_of(&new)]), "{res}");
    assert_eq!(
        String::from_utf8_lossy(&get(&dev, "/")),
        new_index,
        "GET / after the upload"
    );
    let st = dev.status();
    assert_eq!(st["www"]["active"], "www_1", "{st:#}");
    assert_eq!(st["www"]["slots"][1]["sha256"], sha_of(&new), "{st:#}");
}

/// (c) A broken web UI (slot-sized garbage): the page shows the server's
/// error and the old UI is still served, byte for byte, from the same slot.
#[test]
fn broken_web_ui_is_refused_and_the_old_ui_stays() {
    let work = tempfile::tempdir().expect("tempdir");
    let (old, old_index) = web_ui(work.path(), "old");
    let broken = work.path().join("broken.bin");
    let mut x: u32 = 0x2545_f491; // seeded: the same garbage every run
    let garbage: Vec<u8> = (0..0x100000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(&broken, garbage).expect("write");
    let dev = Device::create(&["--www", &s(&old)]).run(&[]);
    let before = (
        get(&dev, "/"),
        dev.flash()[WWW_0].to_vec(),
        dev.flash()[NVS].to_vec(),
    );
    let res = scenario(
        &dev,
        "www_broken",
        json!({ "broken": s(&broken), "oldIndex": old_index }),
    );
    assert_progress(&res, "www");
    let msg = res["messages"]["www"]["text"].as_str().unwrap_or_default();
    assert!(msg.contains("bad_web_ui"), "{msg}");
    let after = (
        get(&dev, "/"),
        dev.flash()[WWW_0].to_vec(),
        dev.flash()[NVS].to_vec(),
    );
    assert!(before == after, "the served UI, www_0 or NVS changed");
    let st = dev.status();
    assert_eq!(st["www"]["active"], "www_0", "{st:#}");
    assert_eq!(st["last_update"]["error"]["error"], "bad_web_ui", "{st:#}");
}

/// (d) A device with a token: the page asks for it, refuses a wrong one,
/// keeps the right one in sessionStorage, and the upload works.
#[test]
fn token_is_asked_for_then_the_upload_works() {
    let work = tempfile::tempdir().expect("tempdir");
    let fw = firmware(work.path(), "2.0.0");
    let dev = Device::create(&["--token", "s3cret-browser"]).run(&[]);
    let res = scenario(
        &dev,
        "token",
        json!({ "firmware": s(&fw), "token": "s3cret-browser",
                "oldVersion": "1.0.0", "newVersion": "2.0.0" }),
    );
    assert_progress(&res, "fw");
    assert_eq!(res["sessionToken"], "s3cret-browser", "{res}");
    assert_eq!(dev.status()["running"]["version"], "2.0.0");
}

/// (d) A device without a token: the page never asks. Run without
/// `crypto.subtle` (as on plain http to an IP address): the page's own
/// SHA-256 still sends a correct `X-Otter-Sha256`, which the device checks.
#[test]
fn no_token_never_asks_and_hashes_without_subtle() {
    let work = tempfile::tempdir().expect("tempdir");
    let fw = firmware(work.path(), "2.0.0");
    let dev = Device::create(&[]).run(&[]);
    let res = scenario(
        &dev,
        "no_token",
        json!({ "firmware": s(&fw), "newVersion": "2.0.0", "noSubtle": true }),
    );
    assert_progress(&res, "fw");
    assert_eq!(res["subtle"], false, "crypto.subtle was not removed: {res}");
    assert_eq!(res["sha256Headers"], json!([sha_of(&fw)]), "{res}");
    assert!(
        res["dialogs"].as_array().is_some_and(Vec::is_empty),
        "{res}"
    );
    assert_eq!(dev.status()["running"]["version"], "2.0.0");
}
