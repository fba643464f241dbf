//! End to end: the virtual device's rough edges a newcomer hits first, one
//! regression test each (issue 12): two agents on one device folder, a stale
//! or misattributed `last_rollback`, images with an empty version, a boot
//! loop with rollback off, and the default project names of `otter image
//! build` and `otter device create`.

mod devproc;
mod util;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use devproc::Device;
use serde_json::Value;
use util::{corpus_file, run_otter, stderr, stdout};

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
    assert_eq!(out.status.code(), Some(2), "{}{}", stdout(&out), stderr(&out));
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
    assert_eq!(
        device_status(dev.path())["agent"]["url"],
        dev.url.as_str()
    );
}

#[test]
fn an_image_with_an_empty_version_is_shown_truthfully() {
    let fw = corpus_file("app-images/tasmota-sml/tasmota32s3_ottelo_tas-15.5.0.bin");
    let dev = Device::create(&["--firmware", &s(&fw)]).run(&[]);
    let st = dev.status();
    let r = &st["running"];
    assert!(r.is_object(), "an image runs: {st:#}");
    assert_eq!((&r["version"], &r["project_name"]), (&Value::from(""), &Value::from("")));
    let sha = r["sha256"].as_str().expect("sha256").to_string();
    let want = format!("(no project name) (no version) (sha256 {})", &sha[..12]);
    assert_eq!(r["summary"], want.as_str(), "{st:#}");

    let out = run_otter(["device", "status", &s(dev.path())]);
    let text = stdout(&out);
    assert!(text.contains(&format!("running: factory @ 0x20000: {want}")), "{text}");
    assert!(!text.contains("NOTHING BOOTS"), "{text}");

    let out = run_otter(["image", "info", &s(&fw)]);
    let text = stdout(&out);
    assert!(text.contains("App version:    (no version)"), "{text}");
    assert!(text.contains("Project name:   (no project name)"), "{text}");
}
