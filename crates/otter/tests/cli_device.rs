//! The command line against running virtual devices, as a newcomer meets
//! it: `otter push` and `otter device … --to` (issue 12), each test running
//! the real `otter` binary and `otter device run` in temporary directories.

mod devproc;
mod util;

use std::path::Path;

use serde_json::Value;
use util::{run_otter, stderr, stdout};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

// ---- 8: `push --to` takes an address as people type it, and waits out a reboot.

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn push_to_host_port_without_scheme() {
    let dev = devproc::Device::create(&[]).run(&[]);
    let v2 = devproc::image(dev.path(), "esp32s3", "2.0.0", &[]);
    let host_port = dev.url.trim_start_matches("http://").to_string();
    let o = run_otter(["push", s(&v2), "--to", &host_port, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(json_of(&o)["result"], "running");
    assert_eq!(dev.status()["running"]["version"], "2.0.0");
    // A bad address says what it takes, before any network traffic.
    let o = run_otter(["push", s(&v2), "--to", "127.0.0.1:port"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("HOST:PORT"), "{}", stderr(&o));
}

#[test]
fn push_to_an_ipv6_address_in_brackets() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    assert!(run_otter(["device", "create", s(&dev)]).status.success());
    let v2 = devproc::image(dir.path(), "esp32s3", "2.0.0", &[]);
    let mut child = util::otter()
        .args([
            "device",
            "run",
            s(&dev),
            "--http",
            "[::1]:0",
            "--mdns",
            "off",
            "--json",
        ])
        .args(["--reboot-time", "0.1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn device");
    let mut line = String::new();
    let _ = std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    let started: Value = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("device run on [::1] ({e}): {line:?}"));
    // `[::1]:PORT`, as a person types it: no scheme.
    let to = started["url"]
        .as_str()
        .expect("url")
        .trim_start_matches("http://")
        .to_string();
    assert!(to.starts_with("[::1]:"), "{to}");
    let o = run_otter(["push", s(&v2), "--to", &to, "--json"]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(json_of(&o)["result"], "running");
}

#[test]
fn push_retries_while_the_device_reboots_then_explains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    assert!(run_otter(["device", "create", s(&dev)]).status.success());
    let v2 = devproc::image(dir.path(), "esp32s3", "2.0.0", &[]);
    let port = free_port();
    // Nothing listens yet: push starts, is refused, and retries.
    let push = util::otter()
        .args([
            "push",
            s(&v2),
            "--to",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            "20",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn push");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let mut device = util::otter()
        .args([
            "device",
            "run",
            s(&dev),
            "--http",
            &format!("127.0.0.1:{port}"),
            "--mdns",
            "off",
        ])
        .args(["--reboot-time", "0.1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn device");
    let o = push.wait_with_output().expect("push");
    let _ = device.kill();
    let _ = device.wait();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{}{err}", stdout(&o));
    assert!(err.contains("retrying for up to 10 s"), "{err}");

    // Nobody ever answers: after the bounded retry, the URL tried and a question.
    let port = free_port();
    let started = std::time::Instant::now();
    let o = run_otter(["push", s(&v2), "--to", &format!("127.0.0.1:{port}")]);
    let took = started.elapsed().as_secs_f64();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("http://127.0.0.1:{port}")), "{err}");
    assert!(err.contains("is it running"), "{err}");
    assert!((8.0..20.0).contains(&took), "retried for {took} s");
}

// ---- 10: push refuses, before uploading, what the pull client refuses; --force overrides.

#[test]
fn push_refuses_downgrade_same_version_other_project_and_the_rolled_back_image() {
    let dev = devproc::Device::create(&["--rollback"]).run(&["--behavior", "3.0.0=crash-on-boot"]);
    let d = dev.path();
    let v2 = devproc::image(d, "esp32s3", "2.0.0", &[]);
    let push = |img: &Path, extra: &[&str]| {
        let mut a = vec!["push", s(img), "--to", &dev.url, "--json"];
        a.extend_from_slice(extra);
        let o = run_otter(&a);
        (o.status.code(), json_of(&o))
    };
    let (code, v) = push(&v2, &[]);
    assert_eq!(code, Some(0), "{v:#}");
    let boots = dev.status()["boot_count"].clone();

    let v1 = devproc::image(d, "esp32s3", "1.5.0", &[]);
    let other = devproc::image(d, "esp32s3", "9.0.0", &["--project", "thermostat"]);
    let v3 = devproc::image(d, "esp32s3", "3.0.0", &[]);
    for (img, error) in [
        (&v1, "downgrade"),
        (&v2, "same_version"),
        (&other, "other_project"),
    ] {
        let (code, v) = push(img, &[]);
        assert_eq!(code, Some(1), "{v:#}");
        assert_eq!(v["result"], "refused");
        assert_eq!(v["error"], error, "{v:#}");
        assert_eq!(v["bytes"], 0, "nothing may be uploaded: {v:#}");
        assert!(
            v["message"].as_str().unwrap_or("").contains("--force"),
            "{v:#}"
        );
    }
    // Nothing was sent: no reboot, no update recorded.
    let st = dev.status();
    assert_eq!(st["boot_count"], boots);
    assert_eq!(st["running"]["version"], "2.0.0");

    // 3.0.0 crashes and rolls back; pushing the same file again is refused.
    let (code, v) = push(&v3, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(v["result"], "rolled_back", "{v:#}");
    let (code, v) = push(&v3, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(v["error"], "rolled_back", "{v:#}");
    assert_eq!(v["bytes"], 0);

    // --force sends the downgrade, with the reason as a warning.
    let (code, v) = push(&v1, &["--force"]);
    assert_eq!(code, Some(0), "{v:#}");
    assert!(
        v["warnings"][0].as_str().unwrap_or("").contains("older"),
        "{v:#}"
    );
    assert_eq!(dev.status()["running"]["version"], "1.5.0");
}

#[test]
fn push_refuses_the_rolled_back_image_by_its_sha256_not_by_its_version() {
    use sha2::{Digest, Sha256};
    let dev = devproc::Device::create(&["--rollback"]).run(&["--behavior", "3.0.0=crash-on-boot"]);
    let d = dev.path();
    let v3 = devproc::image(d, "esp32s3", "3.0.0", &[]);
    let rebuilt_dir = d.join("rebuilt");
    std::fs::create_dir_all(&rebuilt_dir).expect("mkdir");
    let rebuilt = devproc::image(&rebuilt_dir, "esp32s3", "3.0.0", &["--size", "200000"]);
    let push = |img: &Path| {
        let o = run_otter(["push", s(img), "--to", &dev.url, "--json"]);
        (o.status.code(), json_of(&o))
    };
    let (code, v) = push(&v3);
    assert_eq!(
        (code, v["result"].as_str()),
        (Some(1), Some("rolled_back")),
        "{v:#}"
    );

    // The status names the rolled-back image by the uploaded file's digest.
    let file_sha: String = Sha256::digest(std::fs::read(&v3).expect("read"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let st = dev.status();
    assert_eq!(st["last_rollback"]["sha256"], file_sha.as_str(), "{st:#}");
    assert_eq!(st["last_rollback"]["version"], "3.0.0", "{st:#}");

    // That exact file is refused before a byte is sent...
    let (code, v) = push(&v3);
    assert_eq!(
        (code, v["error"].as_str()),
        (Some(1), Some("rolled_back")),
        "{v:#}"
    );
    assert_eq!(v["bytes"], 0);
    // ...but a rebuild with the same version is another image: it is sent
    // (and, crashing like its predecessor, rolls back in turn).
    let (code, v) = push(&rebuilt);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["result"], "rolled_back", "sent and rolled back: {v:#}");
    assert!(
        v["bytes"].as_u64().unwrap_or(0) > 0,
        "it was uploaded: {v:#}"
    );
}

#[test]
fn device_create_force_refuses_a_running_device() {
    let dev = devproc::Device::create(&[]).run(&[]);
    let d = dev.path();
    let flash_before = std::fs::read(d.join("flash.bin")).expect("flash.bin");
    let o = run_otter(["device", "create", s(d), "--force", "--rollback"]);
    let err = stderr(&o);
    // 2: the command cannot run while the device does (README's exit codes).
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(
        err.matches("is already running").count(),
        1,
        "said once: {err}"
    );
    assert!(err.contains("is already running"), "{err}");
    assert!(err.contains("stop it first"), "{err}");
    // Its flash and its running agent are untouched.
    assert_eq!(
        std::fs::read(d.join("flash.bin")).expect("flash.bin"),
        flash_before
    );
    assert_eq!(dev.status()["rollback"], false);
}

#[test]
fn device_sizes_are_said_in_mib() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run_otter([
        "device",
        "create",
        s(&dir.path().join("d")),
        "--flash-size",
        "0x123000",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("16 MiB of flash"), "{err}");
    assert!(!err.contains("MB"), "one unit convention, MiB: {err}");
    // A table that does not fit the flash says so in MiB too.
    let o = run_otter([
        "device",
        "create",
        s(&dir.path().join("e")),
        "--flash-size",
        "3MB",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("configured flash size 3 MiB"), "{err}");
    assert!(!err.contains("MB"), "one unit convention, MiB: {err}");
    let o = run_otter(["device", "create", "--help"]);
    let help = stdout(&o);
    assert!(help.contains("16 MiB"), "{help}");
    assert!(!help.contains(" MB"), "{help}");
}

// ---- 11: rollback off: warn before uploading; a crash loop is named, not "unreachable".

#[test]
fn push_warns_when_rollback_is_off_and_names_the_boot_loop() {
    let dev = devproc::Device::create(&[]).run(&["--behavior", "2.0.0=crash-on-boot"]);
    let v2 = devproc::image(dev.path(), "esp32s3", "2.0.0", &[]);
    let o = run_otter(["push", s(&v2), "--to", &dev.url, "--timeout", "6"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let warn = err
        .find("warning: rollback is off")
        .unwrap_or_else(|| panic!("{err}"));
    let upload = err.find("uploading").unwrap_or_else(|| panic!("{err}"));
    assert!(
        warn < upload,
        "the warning must come before the upload: {err}"
    );
    assert!(err.contains("boot loop"), "{err}");
    assert!(!err.contains("last seen: unreachable"), "{err}");
}

// ---- 6: a remote device from the command line: status, confirm, rollback, reboot, check.

#[test]
fn device_commands_drive_a_running_device_over_its_api() {
    let dev = devproc::Device::create(&["--rollback", "--token", "s3cret"])
        .run(&["--selftest-window", "30"]);
    let url = dev.url.clone();
    let remote = |args: &[&str]| {
        let mut a: Vec<&str> = vec!["device"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--to", &url, "--token", "s3cret"]);
        run_otter(&a)
    };
    // Status: the same document curl sees, and a readable view with a header.
    let o = remote(&["status", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(v["running"]["version"], "1.0.0");
    assert_eq!(v["chip"], dev.status()["chip"]);
    let o = remote(&["status"]);
    let text = stdout(&o);
    assert!(text.contains("running: factory"), "{text}");
    assert!(text.contains("SLOT") && text.contains("VERDICT"), "{text}");
    // Without the token: exit 2 and what to do.
    let o = run_otter(["device", "status", "--to", &url]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--token"), "{}", stderr(&o));

    // Nothing to roll back to yet: the device refuses, exit 1.
    let o = remote(&["rollback"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("rollback_impossible"), "{}", stderr(&o));

    // 2.0.0 boots pending its 30 s self-test: confirm it from here.
    let v2 = devproc::image(dev.path(), "esp32s3", "2.0.0", &[]);
    let o = run_otter([
        "push",
        s(&v2),
        "--to",
        &url,
        "--token",
        "s3cret",
        "--no-wait",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    dev.wait_until(
        |st| st["running"]["state"] == "pending_verify",
        "2.0.0 pending",
    );
    let o = remote(&["confirm", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json_of(&o)["answer"]["confirmed"], true);
    assert_eq!(dev.status()["running"]["state"], "valid");

    // Roll back to 1.0.0 on request, then reboot.
    let o = remote(&["rollback"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let st = dev.wait_until(|st| st["running"]["version"] == "1.0.0", "the rollback");
    let boots = st["boot_count"].as_u64().unwrap_or(0);
    let o = remote(&["reboot"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    dev.wait_until(
        |st| st["boot_count"].as_u64().unwrap_or(0) > boots,
        "the reboot",
    );
    // A device that does not pull says so: exit 1, the device's code.
    let o = remote(&["check", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json_of(&o)["answer"]["error"], "pull_not_configured");
    // Offline status of a directory stays.
    let o = run_otter(["device", "status", s(dev.path()), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

// ---- issue 15: `push --compress` and `push --delta-from` use the same endpoint.

#[test]
fn push_compress_and_delta_from_send_fewer_bytes_and_the_image_runs() {
    let old = util::corpus_file("delta-pairs/obnizos/obniz-2.1.0.bin");
    let new = util::corpus_file("delta-pairs/obnizos/obniz-2.1.1.bin");
    let new_len = std::fs::metadata(&new).expect("new image").len();
    let dev = devproc::Device::create(&["--chip", "esp32", "--firmware", s(&old)]).run(&[]);
    // A patch from an image the device does not run is refused before sending.
    let other = devproc::image(dev.path(), "esp32", "0.9.0", &[]);
    let o = run_otter([
        "push",
        s(&new),
        "--to",
        &dev.url,
        "--delta-from",
        s(&other),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let j = json_of(&o);
    assert_eq!(
        (j["result"].as_str(), j["error"].as_str()),
        (Some("refused"), Some("wrong_base"))
    );
    assert_eq!(j["bytes"], 0, "nothing was sent");
    // The patch from the running image: a few percent of the image.
    let o = run_otter([
        "push",
        s(&new),
        "--to",
        &dev.url,
        "--delta-from",
        s(&old),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let j = json_of(&o);
    assert_eq!(j["result"], "running", "{j:#}");
    assert_eq!(j["transfer"], "delta");
    assert_eq!(j["image_bytes"], new_len);
    let sent = j["bytes"].as_u64().expect("bytes");
    assert!(
        sent * 100 < new_len * 8,
        "the patch is {sent} of {new_len} bytes"
    );
    let st = dev.status();
    let want: String = {
        use sha2::{Digest, Sha256};
        Sha256::digest(std::fs::read(&new).expect("new image"))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(st["running"]["sha256"], want.as_str(), "{st:#}");
    assert_eq!(st["last_update"]["received"], sent);

    // --compress: gzip -9 on the wire, the plain image in the slot.
    let dev = devproc::Device::create(&[]).run(&[]);
    let v2 = devproc::image(dev.path(), "esp32s3", "2.0.0", &[]);
    let v2_len = std::fs::metadata(&v2).expect("image").len();
    let o = run_otter(["push", s(&v2), "--to", &dev.url, "--compress", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let j = json_of(&o);
    assert_eq!(
        (j["result"].as_str(), j["transfer"].as_str()),
        (Some("running"), Some("gzip"))
    );
    assert!(j["bytes"].as_u64().expect("bytes") < v2_len, "{j:#}");
    assert_eq!(dev.status()["running"]["version"], "2.0.0");
}
