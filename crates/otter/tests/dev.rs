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

use devproc::{image, Device};
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

/// Pushes `version` with `otter push` and waits until it runs confirmed.
fn push_confirmed(dev: &Device, version: &str) {
    let img = image(dev.path(), "esp32s3", version, &[]);
    let out = run_otter(["push", &s(&img), "--to", &dev.url, "--timeout", "30"]);
    assert!(out.status.success(), "push {version}: {}{}", stdout(&out), stderr(&out));
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
        (&Value::from("ota_1"), &Value::from("ota_0"), &Value::from("3.0.0"), &Value::from(false)),
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
        (&Value::from("ota_0"), &Value::from("factory"), &Value::from("2.0.0"), &Value::from(false)),
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
