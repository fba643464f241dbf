//! End to end: the virtual device's rough edges a newcomer hits first, one
//! regression test each (issue 12): two agents on one device folder, a stale
//! or misattributed `last_rollback`, images with an empty version, a boot
//! loop with rollback off, and the default project names of `otter image
//! build` and `otter device create`.

mod devproc;
mod util;
mod webserver;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use devproc::{image, Device};
use serde_json::Value;
use util::{corpus_file, run_otter, stderr, stdout, workspace_root};
use webserver::{Certs, Nginx, ServeOptions};

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

fn device_status(dir: &Path) -> Value {
    let out = run_otter(["device", "status", &s(dir), "--json"]);
    assert!(out.status.success(), "device status: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("device status --json prints JSON")
}

/// Runs `otter` with a deadline (a second agent that wrongly starts must
/// not hang the test).
fn run_otter_bounded(args: &[&str], limit: Duration) -> std::process::Output {
    let mut child = util::otter()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning otter");
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "otter {args:?} still ran after {limit:?}:\n{}{}",
                stdout(&out),
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn a_second_device_run_on_one_folder_is_refused_and_status_tells_the_truth() {
    let mut dev = Device::create(&[]).run(&[]);
    let first = device_status(dev.path());
    let pid = first["agent"]["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("status names the running agent: {first:#}"));
    assert_eq!(first["agent"]["url"], dev.url.as_str(), "{first:#}");

    let dir = s(dev.path());
    let out = run_otter_bounded(
        &[
            "device",
            "run",
            &dir,
            "--http",
            "127.0.0.1:0",
            "--mdns",
            "off",
        ],
        Duration::from_secs(20),
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(err.contains("already running"), "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains(&dev.url), "{err}");
    // The first agent still serves, and status still names it.
    assert!(dev.status()["running"].is_object());
    assert_eq!(device_status(dev.path())["agent"]["pid"], pid);

    // kill -9 leaves agent.json behind but releases the lock: status says
    // nothing runs, and a new agent starts.
    dev.kill();
    assert!(dev.path().join("agent.json").exists());
    let after = device_status(dev.path());
    assert!(after["agent"].is_null(), "{after:#}");
    dev.start();
    assert_eq!(device_status(dev.path())["agent"]["url"], dev.url.as_str());
}

/// Pushes `version` with `otter push` and waits until it runs confirmed.
fn push_confirmed(dev: &Device, version: &str) {
    let img = image(dev.path(), "esp32s3", version, &[]);
    let out = run_otter(["push", &s(&img), "--to", &dev.url, "--timeout", "30"]);
    assert!(
        out.status.success(),
        "push {version}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    dev.wait_until(
        |st| st["running"]["version"] == version && st["running"]["state"] == "valid",
        &format!("{version} confirmed"),
    );
}

fn rollback_to(dev: &Device, from: &str, to: &str) -> Value {
    let (code, body) = dev.curl("/api/ota/rollback", &["-X", "POST"]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["from"], from, "{body}");
    dev.wait_until(
        |st| st["running"]["label"] == to && st["boot_count"].as_u64() > Some(1),
        &format!("the rollback from {from} to {to}"),
    )
}

#[test]
fn two_rollbacks_in_a_row_name_their_slots_and_a_later_update_makes_them_stale() {
    let dev = Device::create(&["--rollback"]).run(&["--selftest-window", "0.3"]);
    push_confirmed(&dev, "2.0.0"); // ota_0
    push_confirmed(&dev, "3.0.0"); // ota_1

    let st = rollback_to(&dev, "ota_1", "ota_0");
    let lr = &st["last_rollback"];
    assert_eq!(
        (&lr["from"], &lr["to"], &lr["version"], &lr["stale"]),
        (
            &Value::from("ota_1"),
            &Value::from("ota_0"),
            &Value::from("3.0.0"),
            &Value::from(false)
        ),
        "{st:#}"
    );
    // The same image again after a plain reboot: still the present state.
    let boots = st["boot_count"].as_u64().unwrap();
    let (code, _) = dev.curl("/api/ota/reboot", &["-X", "POST"]);
    assert_eq!(code, 200);
    let st = dev.wait_until(|st| st["boot_count"].as_u64() > Some(boots), "the reboot");
    assert_eq!(st["last_rollback"]["stale"], false, "{st:#}");

    let st = rollback_to(&dev, "ota_0", "factory");
    let lr = &st["last_rollback"];
    assert_eq!(
        (&lr["from"], &lr["to"], &lr["version"], &lr["stale"]),
        (
            &Value::from("ota_0"),
            &Value::from("factory"),
            &Value::from("2.0.0"),
            &Value::from(false)
        ),
        "{st:#}"
    );

    // A later update that confirms supersedes the rollback.
    push_confirmed(&dev, "4.0.0");
    let st = dev.status();
    let lr = &st["last_rollback"];
    assert_eq!(lr["from"], "ota_0", "{st:#}");
    assert_eq!(lr["stale"], true, "{st:#}");
    // The Update page and `otter device status` on a running device show
    // the same document; the CLI prints a stale rollback as superseded.
    let out = run_otter(["device", "status", &s(dev.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_image_with_an_empty_version_is_shown_truthfully() {
    let fw = corpus_file("app-images/tasmota-sml/tasmota32s3_ottelo_tas-15.5.0.bin");
    let dev = Device::create(&["--firmware", &s(&fw)]).run(&[]);
    let st = dev.status();
    let r = &st["running"];
    assert!(r.is_object(), "an image runs: {st:#}");
    assert_eq!(
        (&r["version"], &r["project_name"]),
        (&Value::from(""), &Value::from(""))
    );
    let sha = r["sha256"].as_str().expect("sha256").to_string();
    let want = format!("(no project name) (no version) (sha256 {})", &sha[..12]);
    assert_eq!(r["summary"], want.as_str(), "{st:#}");

    let out = run_otter(["device", "status", &s(dev.path())]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("running: factory @ 0x20000: {want}")),
        "{text}"
    );
    assert!(!text.contains("NOTHING BOOTS"), "{text}");

    let out = run_otter(["image", "info", &s(&fw)]);
    let text = stdout(&out);
    assert!(text.contains("App version:    (no version)"), "{text}");
    assert!(text.contains("Project name:   (no project name)"), "{text}");
}

/// The shell lines of the first ```sh block after `heading` in a doc,
/// with `\` continuations joined.
fn doc_commands(doc: &str, heading: &str) -> Vec<String> {
    let text = std::fs::read_to_string(workspace_root().join(doc)).expect("reading the doc");
    let after = text
        .split_once(heading)
        .unwrap_or_else(|| panic!("{doc} has no {heading:?}"))
        .1;
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, b)| b.split_once("```"))
        .unwrap_or_else(|| panic!("{doc}: no sh block after {heading:?}"))
        .0;
    let mut lines = Vec::new();
    let mut cur = String::new();
    for l in block.lines() {
        let l = l.split(" # ").next().unwrap_or_default().trim_end();
        if let Some(head) = l.strip_suffix('\\') {
            cur.push_str(head);
            continue;
        }
        cur.push_str(l);
        let line = cur.trim().to_string();
        cur.clear();
        if !line.is_empty() && !line.starts_with('#') {
            lines.push(line);
        }
    }
    lines
}

/// The README's pull flow on a fresh device: an image built with the
/// defaults, a signed release, served over HTTPS with the self-signed
/// certificate docs/pull.md's openssl recipe makes (`CA:TRUE`), given as
/// `--ca`; the device installs it.
#[test]
fn the_readme_pull_flow_installs_on_a_fresh_device_with_an_openssl_certificate() {
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let ok = |args: &[&str]| {
        let out = run_otter(args);
        assert!(
            out.status.success(),
            "otter {args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    };
    // otter image build --chip esp32s3 --version 2.0.0 -o v2.bin (no --project)
    let v2 = w.join("v2.bin");
    ok(&[
        "image",
        "build",
        "--chip",
        "esp32s3",
        "--version",
        "2.0.0",
        "-o",
        &s(&v2),
    ]);
    ok(&["keygen", "-o", &s(&w.join("release"))]);
    let rel = w.join("rel");
    ok(&[
        "release",
        "--firmware",
        &s(&v2),
        "--key",
        &s(&w.join("release.key")),
        "-o",
        &s(&rel),
    ]);

    // The certificate exactly as docs/pull.md makes it.
    let cmds = doc_commands("docs/pull.md", "### A certificate for a test server");
    let openssl = cmds
        .iter()
        .find(|c| c.starts_with("openssl req -x509"))
        .expect("docs/pull.md's recipe starts with openssl req -x509");
    let certs_dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new("sh")
        .arg("-c")
        .arg(openssl)
        .current_dir(certs_dir.path())
        .output()
        .expect("running sh (openssl: scripts/setup-system.sh installs it)");
    assert!(
        out.status.success(),
        "{openssl}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = certs_dir.path().join("server.pem");
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&pem)
        .output()
        .expect("openssl x509");
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "the recipe's certificate is the usual CA:TRUE one"
    );
    let certs = Certs {
        ca: pem.clone(),
        leaf: pem.clone(),
        leaf_key: certs_dir.path().join("server.key"),
        dir: certs_dir,
    };
    let srv = Nginx::serve(
        &rel,
        &ServeOptions {
            tls: Some(&certs),
            ignore_range: false,
        },
    );

    let dev = Device::create(&[]);
    assert_eq!(
        device_status(dev.path())["running"]["project_name"],
        "otter-virtual"
    );
    let manifest = format!("https://localhost:{}/manifest.json", srv.port);
    let dev = dev.run(&[
        "--manifest-url",
        &manifest,
        "--trust",
        &s(&w.join("release.pub")),
        "--ca",
        &s(&pem),
    ]);
    let st = dev.wait_until(
        |st| st["running"]["version"] == "2.0.0",
        "the pulled 2.0.0 running",
    );
    assert_eq!(st["running"]["project_name"], "otter-virtual", "{st:#}");
    assert_eq!(st["running"]["label"], "ota_0", "{st:#}");
}

/// With rollback off, a pushed image that crashes on every boot is reported
/// as a boot loop (503 `boot_loop` with the crash count) while it loops,
/// instead of leaving the client with "unreachable"; the device then stops.
#[test]
fn a_crash_loop_with_rollback_off_is_reported_by_the_status_document() {
    let mut dev = Device::create(&[]).run(&["--behavior", "2.0.0=crash-on-boot"]);
    let st = dev.status();
    assert!(
        st["boot_loop"].is_null(),
        "a healthy boot does not loop: {st:#}"
    );
    let img = image(dev.path(), "esp32s3", "2.0.0", &[]);
    let (code, body) = dev.curl(
        "/update",
        &[
            "--data-binary",
            &format!("@{}", s(&img)),
            "-H",
            "Content-Type: application/octet-stream",
        ],
    );
    assert_eq!(code, 200, "{body}");

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline && seen.len() < 2 {
        if let Some((503, b)) = dev.try_status() {
            if b["error"] == "boot_loop" {
                let n = b["boot_loop"]["crashes"].as_u64().expect("crashes");
                if seen.last() != Some(&n) {
                    seen.push(n);
                    let l = &b["boot_loop"];
                    assert_eq!(
                        (
                            &l["slot"],
                            &l["version"],
                            &l["behavior"],
                            &l["rollback"],
                            &l["limit"]
                        ),
                        (
                            &Value::from("ota_0"),
                            &Value::from("2.0.0"),
                            &Value::from("crash-on-boot"),
                            &Value::from(false),
                            &Value::from(5)
                        ),
                        "{b:#}"
                    );
                    let m = b["message"].as_str().unwrap_or_default();
                    assert!(m.contains("app rollback is off"), "{m}");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        seen.len() >= 2,
        "the boot loop was not reported on two boots: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "the count goes up: {seen:?}"
    );
    // The device stops after the limit, as before.
    let child = dev.child.as_mut().expect("running");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the device did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
}

/// Regression (issue 12): with rollback off, `otter push` of an image that
/// crashes at every boot waited out its whole timeout and ended
/// "unreachable"; it now reports the boot loop the device knows about and
/// exits 1 long before the timeout.
#[test]
fn push_reports_the_boot_loop_of_a_crashing_image_with_rollback_off() {
    let dev = Device::create(&[]).run(&["--behavior", "2.0.0=crash-on-boot"]);
    let img = image(dev.path(), "esp32s3", "2.0.0", &[]);
    let started = std::time::Instant::now();
    let out = run_otter(["push", &s(&img), "--to", &dev.url, "--timeout", "60"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{}{err}", stdout(&out));
    assert!(
        err.contains("rollback is off"),
        "warned before uploading: {err}"
    );
    assert!(
        err.contains("2.0.0 does not stay up: the device reports a boot loop (")
            && err.contains("crashes so far; the device stops after 5)"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "reported before the timeout"
    );
}
