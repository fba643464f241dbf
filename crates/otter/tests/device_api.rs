//! End to end: `otter device create` + `otter device run` as a real process,
//! driven through real HTTP by curl, the seeds' Python `requests` script and
//! `otter push`. Every refused request is checked for its status code, its
//! JSON error, and that the running image and the boot selection (the
//! otadata bytes in the flash file) did not change.

mod devproc;
mod util;

use std::io::Write;
use std::path::Path;
use std::process::Command;

use devproc::{cut_upload, image, raw_upload_start, upload_cuts, CutTally, Device, OTADATA};
use serde_json::Value;
use util::{python, python_json, run_otter, stderr, stdout, workspace_root};

/// What must not change when an update is refused.
#[derive(Debug, PartialEq)]
struct Unchanged {
    running_label: Value,
    running_sha: Value,
    boot_label: Value,
    otadata: Vec<u8>,
}

fn unchanged(dev: &Device) -> Unchanged {
    unchanged_in(dev, &dev.status())
}

/// [`unchanged`] with the status already read.
fn unchanged_in(dev: &Device, st: &Value) -> Unchanged {
    Unchanged {
        running_label: st["running"]["label"].clone(),
        running_sha: st["running"]["sha256"].clone(),
        boot_label: st["boot"]["label"].clone(),
        otadata: dev.flash()[OTADATA].to_vec(),
    }
}

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

fn data_binary(p: &Path) -> String {
    format!("@{}", s(p))
}

/// Sends `args` to POST /update and checks status code, error code, and
/// that nothing changed.
fn refused(dev: &Device, args: &[&str], code: u16, error: &str) -> Value {
    let before = unchanged(dev);
    let (got, body) = dev.curl("/update", args);
    assert_eq!(got, code, "{args:?}: {body}");
    assert_eq!(body["error"], error, "{args:?}: {body}");
    let msg = body["message"].as_str().unwrap_or("");
    assert!(msg.len() > 20, "the message must say what is wrong: {body}");
    // Refusals never reboot the device: the same boot serves the next call.
    let after = unchanged(dev);
    assert_eq!(
        before, after,
        "{args:?} changed the running image or the boot selection"
    );
    body
}

#[test]
fn curl_raw_upload_installs_and_the_new_image_confirms_itself() {
    let dev = Device::create(&["--rollback"]).run(&["--selftest-window", "0.5"]);
    let img = image(dev.path(), "esp32s3", "2.0.0", &["--size", "900000"]);
    let st = dev.status();
    assert_eq!(st["running"]["label"], "factory");
    assert_eq!(st["running"]["version"], "1.0.0");
    assert_eq!(st["next"]["label"], "ota_0");
    assert!(st["last_update"].is_null());

    let (code, body) = dev.curl(
        "/update",
        &["-X", "POST", "--data-binary", &data_binary(&img)],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["result"], "ok");
    assert_eq!(body["slot"], "ota_0");
    assert_eq!(body["version"], "2.0.0");

    let st = dev.wait_until(|st| st["running"]["state"] == "valid", "2.0.0 confirmed");
    assert_eq!(st["running"]["label"], "ota_0");
    assert_eq!(st["running"]["version"], "2.0.0");
    assert_eq!(st["boot"]["label"], "ota_0");
    assert_eq!(st["next"]["label"], "ota_1");
    assert_eq!(st["last_update"]["result"], "ok");
    assert!(st["last_update"]["error"].is_null());
    assert_eq!(st["selftest"]["state"], "passed");
    let sha = sha256_hex(&std::fs::read(&img).unwrap());
    assert_eq!(st["running"]["sha256"], sha.as_str());

    // The flash file holds exactly the uploaded bytes in ota_0, and otadata
    // selects ota_0 as ESP-IDF writes it: seq 1, VALID after the confirm.
    let flash = dev.flash();
    let bytes = std::fs::read(&img).unwrap();
    assert_eq!(&flash[0x220000..0x220000 + bytes.len()], &bytes[..]);
    let seqs: Vec<_> = st["otadata"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["valid"] == true)
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(seqs, vec![(1, "valid".to_string())]);

    // The device logged progress every 5%.
    let mut dev = dev;
    let log = dev.kill();
    for pct in (5..=100).step_by(5) {
        assert!(
            log.contains(&format!("update progress: {pct}% ")),
            "no {pct}% progress line in:\n{log}"
        );
    }
    assert!(log.contains("WARNING: no API token"), "{log}");
}

#[test]
fn seed_python_requests_script_and_multipart_forms_upload() {
    // The seed's script hard-codes port 3232, as the seed's device does.
    let dev = Device::create(&[]);
    let mut dev = {
        let mut d = dev;
        d.run_args = vec![];
        d
    };
    // Start on the seed's port.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otter"));
    cmd.args(["device", "run"]).arg(dev.path()).args([
        "--http",
        "127.0.0.1:3232",
        "--reboot-time",
        "0.1",
        "--mdns",
        "off",
    ]);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let child = cmd.spawn().expect("spawn");
    dev.child = Some(child);
    dev.url = "http://127.0.0.1:3232".into();
    dev.wait_until(|st| !st["running"].is_null(), "the device on port 3232");

    let img = image(dev.path(), "esp32s3", "2.0.0", &[]);
    let script = workspace_root().join("tests/clients/upload_ota.py");
    let out = Command::new(python())
        .arg(&script)
        .args(["127.0.0.1", &s(&img)])
        .output()
        .expect("running the seed's upload script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Upload successful!"), "{text}");
    let st = dev.wait_until(|st| st["running"]["version"] == "2.0.0", "2.0.0 running");
    assert_eq!(st["running"]["label"], "ota_0");
    // No rollback on this device: the state is UNDEFINED, as
    // esp_ota_set_boot_partition writes it without rollback.
    assert_eq!(st["running"]["state"], "undefined");

    // Python requests, multipart form (files=): 3.0.0 into ota_1.
    let img3 = image(dev.path(), "esp32s3", "3.0.0", &[]);
    let code = "import requests,sys\nr=requests.post(sys.argv[1], files={'firmware': open(sys.argv[2],'rb')})\nprint(r.status_code)\nprint(r.text)\nsys.exit(0 if r.status_code==200 else 1)";
    let out = Command::new(python())
        .args(["-c", code, "http://127.0.0.1:3232/update", &s(&img3)])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let st = dev.wait_until(|st| st["running"]["version"] == "3.0.0", "3.0.0 running");
    assert_eq!(st["running"]["label"], "ota_1");

    // A refusal reaches a client that sends its whole body without
    // `Expect: 100-continue` (requests): the wrong chip, as JSON, not a reset.
    let c3 = image(dev.path(), "esp32c3", "4.0.0", &["--size", "1500000"]);
    let code = "import requests,sys,json\nr=requests.post(sys.argv[1], data=open(sys.argv[2],'rb').read())\nprint(json.dumps({'status': r.status_code, 'body': r.json()}))";
    let before = unchanged(&dev);
    let v = python_json(code, &["http://127.0.0.1:3232/update", &s(&c3)]);
    assert_eq!(v["status"], 422, "{v}");
    assert_eq!(v["body"]["error"], "wrong_chip", "{v}");
    assert_eq!(unchanged(&dev), before);

    // curl -F (multipart) with the file field named `file`.
    let img4 = image(dev.path(), "esp32s3", "4.0.0", &[]);
    let (code, body) = dev.curl("/update", &["-F", &format!("file=@{}", s(&img4))]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["slot"], "ota_0");
    dev.wait_until(|st| st["running"]["version"] == "4.0.0", "4.0.0 running");

    // A raw body with chunked transfer encoding (no Content-Length): the
    // size is learnt from the image's own segment headers.
    let img5 = image(dev.path(), "esp32s3", "5.0.0", &["--size", "400000"]);
    let (code, body) = dev.curl(
        "/update",
        &[
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &data_binary(&img5),
        ],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["slot"], "ota_1");
    let st = dev.wait_until(|st| st["running"]["version"] == "5.0.0", "5.0.0 running");
    assert!(st["last_update"]["total"].is_null(), "{st:#}");
    assert_eq!(st["last_update"]["received"], 400000);
}

#[test]
fn bad_uploads_are_refused_with_json_and_change_nothing() {
    let dev = Device::create(&["--anti-rollback", "2"]).run(&[]);
    let d = dev.path().to_path_buf();
    // A good image for the device, to derive bad ones from.
    let good = image(
        &d,
        "esp32s3",
        "2.0.0",
        &["--secure-version", "2", "--size", "300000"],
    );
    let good_bytes = std::fs::read(&good).unwrap();

    let c3 = image(&d, "esp32c3", "2.0.0", &["--secure-version", "2"]);
    refused(
        &dev,
        &["--data-binary", &data_binary(&c3)],
        422,
        "wrong_chip",
    );

    let low = image(&d, "esp32s3", "1.9.0", &["--secure-version", "1"]);
    let body = refused(
        &dev,
        &["--data-binary", &data_binary(&low)],
        422,
        "secure_version_too_low",
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("secure_version 1"),
        "{body}"
    );

    let text = d.join("notes.txt");
    std::fs::write(&text, "this is not firmware\n".repeat(100)).unwrap();
    refused(
        &dev,
        &["--data-binary", &data_binary(&text)],
        422,
        "not_an_app",
    );

    // The device's own bootloader region: a bootloader, not an app.
    let boot = d.join("bootloader.bin");
    let flash = dev.flash();
    std::fs::write(&boot, &flash[0..240]).unwrap();
    let body = refused(
        &dev,
        &["--data-binary", &data_binary(&boot)],
        422,
        "not_an_app",
    );
    assert!(
        body["message"].as_str().unwrap().contains("bootloader"),
        "{body}"
    );

    // Larger than the 2 MB slot: refused from Content-Length, before any
    // byte is written (curl sends Expect: 100-continue and never the body).
    let big = image(
        &d,
        "esp32s3",
        "9.0.0",
        &["--secure-version", "2", "--size", "2500000"],
    );
    let body = refused(
        &dev,
        &["--data-binary", &data_binary(&big)],
        413,
        "too_large",
    );
    assert!(
        body["message"].as_str().unwrap().contains("2097152"),
        "{body}"
    );
    // ... and when streamed as a form, without a usable size up front.
    refused(
        &dev,
        &["-F", &format!("file=@{}", s(&big))],
        413,
        "too_large",
    );

    // A flipped bit in the middle: the checksum / SHA-256 fail at the end,
    // after the whole image was written to ota_0; nothing switches.
    let corrupt = d.join("corrupt.bin");
    let mut bad = good_bytes.clone();
    bad[150_000] ^= 0x01;
    std::fs::write(&corrupt, &bad).unwrap();
    refused(
        &dev,
        &["--data-binary", &data_binary(&corrupt)],
        422,
        "integrity",
    );

    // The expected SHA-256 header does not match the file.
    let wrong_sha = format!("X-Otter-Sha256: {}", "00".repeat(32));
    refused(
        &dev,
        &["-H", &wrong_sha, "--data-binary", &data_binary(&good)],
        422,
        "sha256_mismatch",
    );
    refused(
        &dev,
        &[
            "-H",
            "X-Otter-Sha256: xyz",
            "--data-binary",
            &data_binary(&good),
        ],
        400,
        "bad_request",
    );

    // Half an image, honestly announced: truncated.
    let half = d.join("half.bin");
    std::fs::write(&half, &good_bytes[..good_bytes.len() / 2]).unwrap();
    refused(
        &dev,
        &["--data-binary", &data_binary(&half)],
        422,
        "truncated",
    );

    // No body at all.
    refused(
        &dev,
        &["-X", "POST", "-H", "Content-Length: 0"],
        400,
        "empty",
    );

    let st = dev.status();
    assert_eq!(st["last_update"]["result"], "rejected");
    assert_eq!(st["running"]["label"], "factory");

    // After all that, the right image with the right SHA-256 installs.
    let sha = format!("X-Otter-Sha256: {}", sha256_hex(&good_bytes));
    let (code, body) = dev.curl(
        "/update",
        &["-H", &sha, "--data-binary", &data_binary(&good)],
    );
    assert_eq!(code, 200, "{body}");
    let st = dev.wait_until(|st| st["running"]["version"] == "2.0.0", "2.0.0 running");
    assert_eq!(st["running"]["label"], "ota_0");
}

#[test]
fn token_auth_401_403_and_unauthenticated_reads_are_refused() {
    let dev = Device::create(&["--token", "s3cret"]).run(&[]);
    let img = image(dev.path(), "esp32s3", "2.0.0", &[]);
    let before = unchanged(&dev);
    let no_auth: Vec<String> = vec![];
    let (code, body) = devproc::curl(
        &dev.url,
        "/update",
        &no_auth,
        &["--data-binary", &data_binary(&img)],
    )
    .unwrap();
    assert_eq!(
        (code, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let wrong = vec!["-H".to_string(), "Authorization: Bearer wrong".to_string()];
    let (code, body) = devproc::curl(
        &dev.url,
        "/update",
        &wrong,
        &["--data-binary", &data_binary(&img)],
    )
    .unwrap();
    assert_eq!(
        (code, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (code, _) = devproc::curl(&dev.url, "/api/ota/status", &no_auth, &[]).unwrap();
    assert_eq!(code, 401);
    let (code, _) = devproc::curl(&dev.url, "/api/ota/reboot", &wrong, &["-X", "POST"]).unwrap();
    assert_eq!(code, 403);
    assert_eq!(unchanged(&dev), before);
    assert_eq!(dev.status()["auth_required"], true);

    // The Update page is served without the token (it asks for it; every
    // API call it makes carries it), as HTML small enough for firmware.
    let page = Command::new("curl")
        .args(["-sS", "-D", "-", &format!("{}/update", dev.url)])
        .output()
        .expect("curl");
    let page = String::from_utf8_lossy(&page.stdout).into_owned();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{page}"
    );
    let html = page.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        html.len() < 20 * 1024,
        "the Update page is {} bytes",
        html.len()
    );
    assert_eq!(
        html.matches("type=\"file\"").count(),
        2,
        "firmware and web-UI pickers"
    );
    assert!(html.contains("/api/ota/frontend") && html.contains("upload.onprogress"));

    // otter push without and with the token.
    let out = run_otter(["push", &s(&img), "--to", &dev.url]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--token"), "{}", stderr(&out));
    let out = run_otter(["push", &s(&img), "--to", &dev.url, "--token", "s3cret"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("2.0.0 runs from ota_0"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn one_update_at_a_time_and_a_dropped_client_aborts_cleanly() {
    let dev = Device::create(&[]).run(&[]);
    let img = image(dev.path(), "esp32s3", "2.0.0", &["--size", "600000"]);
    let bytes = std::fs::read(&img).unwrap();
    let before = unchanged(&dev);

    // A first client sends half its image and keeps the connection open.
    let first = raw_upload_start(&dev.url, bytes.len(), &bytes[..bytes.len() / 2]);
    dev.wait_until(
        |st| st["update_in_progress"] == true,
        "the first upload to start",
    );
    let body = refused(&dev, &["--data-binary", &data_binary(&img)], 409, "busy");
    assert!(body["message"].as_str().unwrap().contains("in progress"));

    // It goes away mid-upload: the session is aborted, nothing switched.
    drop(first);
    let st = dev.wait_until(
        |st| st["last_update"]["result"] == "aborted",
        "the abort to be noticed",
    );
    assert_eq!(st["update_in_progress"], false);
    assert!(
        st["last_update"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cut off"),
        "{st}"
    );
    assert_eq!(unchanged(&dev), before);

    // The next upload works.
    let (code, body) = dev.curl("/update", &["--data-binary", &data_binary(&img)]);
    assert_eq!(code, 200, "{body}");
    dev.wait_until(|st| st["running"]["version"] == "2.0.0", "2.0.0 running");
}

#[test]
fn a_table_without_ota_slots_answers_503() {
    let dev = Device::create(&[]);
    let csv = dev.path().join("factory-only.csv");
    std::fs::write(
        &csv,
        "nvs, data, nvs, 0x9000, 0x6000,\nphy_init, data, phy, 0xf000, 0x1000,\nfactory, app, factory, 0x10000, 1M,\n",
    )
    .unwrap();
    let dev = Device::create(&["--partitions", &s(&csv), "--flash-size", "4MB"]).run(&[]);
    let img = image(dev.path(), "esp32s3", "2.0.0", &[]);
    let flash_before = dev.flash();
    let (code, body) = dev.curl("/update", &["--data-binary", &data_binary(&img)]);
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["error"], "no_ota_slot");
    assert!(
        body["message"].as_str().unwrap().contains("ota_0"),
        "{body}"
    );
    assert_eq!(dev.flash(), flash_before, "a 503 must not touch the flash");
    assert!(dev.status()["next"].is_null());
    let out = run_otter(["push", &s(&img), "--to", &dev.url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no OTA slot"), "{}", stderr(&out));
}

#[test]
fn push_reports_each_kind_of_rollback() {
    // One device per broken behaviour, all with rollback on.
    let cases = [
        ("crash-on-boot", "crashed on boot", "aborted"),
        ("hang", "watchdog", "aborted"),
        ("fail-selftest", "self-test", "invalid"),
    ];
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(behavior, why, state)| {
            std::thread::spawn(move || {
                let dev = Device::create(&["--rollback"]).run(&[
                    "--selftest-window",
                    "0.5",
                    "--watchdog",
                    "0.5",
                    "--behavior",
                    &format!("2.0.0={behavior}"),
                ]);
                let img = image(dev.path(), "esp32s3", "2.0.0", &[]);
                let out = run_otter([
                    "push",
                    &s(&img),
                    "--to",
                    &dev.url,
                    "--json",
                    "--timeout",
                    "30",
                ]);
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "{behavior}: {}{}",
                    stdout(&out),
                    stderr(&out)
                );
                let rep: Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(rep["result"], "rolled_back", "{behavior}: {rep:#}");
                assert!(
                    rep["message"].as_str().unwrap().contains(why),
                    "{behavior}: {rep:#}"
                );
                let st = dev.status();
                assert_eq!(st["running"]["label"], "factory", "{behavior}");
                assert_eq!(st["running"]["version"], "1.0.0");
                assert_eq!(st["last_rollback"]["from"], "ota_0", "{behavior}");
                assert_eq!(st["last_rollback"]["state"], state, "{behavior}: {st:#}");
                assert!(
                    st["last_rollback"]["reason"]
                        .as_str()
                        .unwrap()
                        .contains(why),
                    "{behavior}"
                );
                // The slot's entry is no longer selectable; offline status
                // (flash only) reports the same rollback.
                let out = run_otter(["device", "status", &s(dev.path()), "--json"]);
                let off: Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(off["last_rollback"]["from"], "ota_0", "{behavior}: {off:#}");
                assert_eq!(off["last_rollback"]["state"], state);
                assert_eq!(off["running"]["label"], "factory");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a rollback case failed");
    }
}

#[test]
fn pending_image_blocks_updates_until_confirmed_and_rollback_endpoint_works() {
    let dev = Device::create(&["--rollback"]).run(&["--selftest-window", "600"]);
    let v2 = image(dev.path(), "esp32s3", "2.0.0", &[]);
    let v3 = image(dev.path(), "esp32s3", "3.0.0", &[]);

    // Nothing to roll back to yet: factory runs with empty otadata.
    let (code, body) = dev.curl("/api/ota/rollback", &["-X", "POST"]);
    assert_eq!(
        (code, body["error"].as_str()),
        (409, Some("rollback_impossible")),
        "{body}"
    );

    let out = run_otter(["push", &s(&v2), "--to", &dev.url, "--no-wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let st = dev.wait_until(|st| st["running"]["version"] == "2.0.0", "2.0.0 booted");
    assert_eq!(st["running"]["state"], "pending_verify");
    assert_eq!(st["selftest"]["state"], "running");

    // A pending image must prove itself before the next update.
    let body = refused(
        &dev,
        &["--data-binary", &data_binary(&v3)],
        409,
        "pending_verify",
    );
    assert!(
        body["message"].as_str().unwrap().contains("confirm"),
        "{body}"
    );
    let out = run_otter(["push", &s(&v3), "--to", &dev.url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("pending verification"),
        "{}",
        stderr(&out)
    );

    let (code, body) = dev.curl("/api/ota/confirm", &["-X", "POST"]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["confirmed"], true);
    assert_eq!(body["state"], "valid");
    let (_, body) = dev.curl("/api/ota/confirm", &["-X", "POST"]);
    assert_eq!(
        body["confirmed"], false,
        "a second confirm is a no-op: {body}"
    );

    // Roll back on request: 2.0.0 is marked invalid and factory runs.
    let boots = dev.status()["boot_count"].as_u64().unwrap();
    let (code, body) = dev.curl("/api/ota/rollback", &["-X", "POST"]);
    assert_eq!(code, 200, "{body}");
    let st = dev.wait_until(
        |st| st["boot_count"].as_u64() > Some(boots) && !st["running"].is_null(),
        "the reboot after the rollback",
    );
    assert_eq!(st["running"]["label"], "factory");
    assert_eq!(st["last_rollback"]["from"], "ota_0");
    assert!(
        st["last_rollback"]["reason"]
            .as_str()
            .unwrap()
            .contains("requested"),
        "{st:#}"
    );

    // Reboot on request.
    let boots = st["boot_count"].as_u64().unwrap();
    let (code, _) = dev.curl("/api/ota/reboot", &["-X", "POST"]);
    assert_eq!(code, 200);
    let st = dev.wait_until(
        |st| st["boot_count"].as_u64() == Some(boots + 1),
        "a reboot",
    );
    assert_eq!(st["running"]["label"], "factory");
}

/// `kill -9` of the device at 20 and more points of one upload, seeded and
/// spread over it: right after the request head, in the first sector, just
/// past 64 KiB erase-ahead boundaries, all over the body, just before the
/// end, and after the last byte. After every cut the device restarts on the
/// old image with the boot selection (otadata) byte for byte unchanged and
/// reports no installed update; only the cut after the last byte may find
/// the new image, and then it is the whole of it. Then the retried upload
/// completes and the new image boots and confirms itself.
#[test]
fn kill_9_during_an_upload_is_a_power_cut_the_device_survives() {
    let mut dev = Device::create(&["--rollback"]).run(&["--selftest-window", "0.3"]);
    let img = image(dev.path(), "esp32s3", "2.0.0", &["--size", "1500000"]);
    let bytes = std::fs::read(&img).unwrap();
    let sha = sha256_hex(&bytes);
    let before = unchanged(&dev);
    let mut tally = CutTally::default();
    let mut installed = false;
    for (round, at) in upload_cuts(0x0017_c0de, bytes.len(), 21)
        .into_iter()
        .enumerate()
    {
        let st = cut_upload(&mut dev, "/update", &bytes, at);
        tally.cuts += 1;
        let now = unchanged_in(&dev, &st);
        let what = format!("round {round}, cut after {at} of {} bytes", bytes.len());
        if at == bytes.len() && now != before {
            // The cut fell after the switch: the new image, whole.
            let st = dev.wait_until(|st| st["running"]["state"] == "valid", "2.0.0 confirmed");
            assert_eq!(st["running"]["version"], "2.0.0", "{what}: {st:#}");
            assert_eq!(st["running"]["sha256"], sha.as_str(), "{what}");
            assert_eq!(st["boot"]["label"], "ota_0", "{what}");
            installed = true;
            tally.completed += 1;
        } else {
            assert_eq!(
                now, before,
                "{what}: the old image runs, the boot selection untouched"
            );
            assert_eq!(st["next"]["label"], "ota_0", "{what}");
            assert_eq!(st["update_in_progress"], false, "{what}");
            // A restarted device remembers no update: nothing half done
            // is reported as installed.
            assert_eq!(st["last_update"], Value::Null, "{what}: {st:#}");
        }
        tally.recovered += 1;
    }
    // And the retried update completes.
    if !installed {
        let out = run_otter(["push", &s(&img), "--to", &dev.url]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    }
    let st = dev.status();
    assert_eq!(st["running"]["version"], "2.0.0");
    assert_eq!(st["running"]["state"], "valid");
    assert_eq!(st["running"]["sha256"], sha.as_str());
    assert_eq!(st["boot"]["label"], "ota_0");
    assert_ne!(
        dev.flash()[OTADATA],
        before.otadata[..],
        "otadata selects ota_0"
    );
    tally.finish("kill_9_during_an_upload", 20);
}

#[test]
fn push_refuses_locally_before_sending() {
    let dev = Device::create(&["--anti-rollback", "3"]).run(&[]);
    let d = dev.path().to_path_buf();
    let boot_before = dev.status()["boot_count"].clone();
    let check = |args: &[&str], want: &str| {
        let out = run_otter(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let e = stderr(&out);
        assert!(e.contains("not sent") && e.contains(want), "{args:?}: {e}");
    };
    let c3 = image(&d, "esp32c3", "2.0.0", &["--secure-version", "3"]);
    check(&["push", &s(&c3), "--to", &dev.url], "ESP32-C3");
    let low = image(&d, "esp32s3", "2.0.0", &["--secure-version", "2"]);
    check(
        &["push", &s(&low), "--to", &dev.url],
        "anti-rollback counter is 3",
    );
    let big = image(
        &d,
        "esp32s3",
        "2.0.0",
        &["--secure-version", "3", "--size", "2200000"],
    );
    check(&["push", &s(&big), "--to", &dev.url], "holds 2.00 MiB");
    // Not an image at all: refused before contacting the device (exit 1:
    // the file was read, and failed the check).
    let junk = d.join("junk.bin");
    std::fs::write(&junk, b"\xe9junk").unwrap();
    let out = run_otter(["push", &s(&junk), "--to", &dev.url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not a valid app image"),
        "{}",
        stderr(&out)
    );
    let st = dev.status();
    assert_eq!(st["boot_count"], boot_before);
    assert!(
        st["last_update"].is_null(),
        "nothing reached the device: {st:#}"
    );
}

#[test]
fn demo_shows_the_update_and_the_rollback() {
    let out = run_otter(["demo", "--json"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["push_2"]["result"], "running");
    assert_eq!(v["push_3"]["result"], "rolled_back");
    assert_eq!(v["final_status"]["running"]["version"], "2.0.0");
    assert_eq!(v["final_status"]["running"]["state"], "valid");
    assert_eq!(v["final_status"]["last_rollback"]["from"], "ota_1");
    assert!(v["flash"]["block_erases"].as_u64().unwrap() > 0);
    // How long it takes is a benchmark figure (BENCHMARKS.md), not a test.
    assert!(v["elapsed_secs"].as_f64().is_some_and(|s| s > 0.0), "{v}");
}

#[test]
fn created_flash_is_read_by_esptool_at_the_usual_offsets() {
    let dev = Device::create(&[
        "--chip",
        "esp32c3",
        "--flash-size",
        "4MB",
        "--partitions",
        &s(&write_csv()),
    ]);
    let flash = dev.flash();
    assert_eq!(flash.len(), 4 << 20);
    let d = dev.path();
    // Bootloader at 0x0 for the C3, the app at factory (0x10000).
    for (name, off, len) in [
        ("bootloader", 0usize, 0x8000usize),
        ("app", 0x10000, 0x100000),
    ] {
        let p = d.join(format!("{name}.bin"));
        std::fs::write(&p, &flash[off..off + len]).unwrap();
        let out = Command::new(python())
            .args(["-m", "esptool", "--chip", "esp32c3", "image-info", &s(&p)])
            .output()
            .expect("esptool");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("Checksum") && text.contains("valid"),
            "{name}: {text}"
        );
    }
    // The table at 0x8000 is the CSV's binary, and otadata is erased.
    let out = run_otter([
        "partitions",
        "convert",
        &s(&write_csv()),
        &s(&d.join("t.bin")),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = std::fs::read(d.join("t.bin")).unwrap();
    assert_eq!(&flash[0x8000..0x8000 + table.len()], &table[..]);
    assert!(flash[0xd000..0xf000].iter().all(|&b| b == 0xFF));
    let out = run_otter(["device", "status", &s(d), "--json"]);
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["chip"], "esp32c3");
    assert_eq!(st["predicted"], true);
    assert_eq!(st["running"]["label"], "factory");
    assert_eq!(st["running"]["version"], "1.0.0");
    assert!(st["agent"].is_null());
}

fn write_csv() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("otter-test-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("c3.csv");
    std::fs::write(
        &p,
        "nvs, data, nvs, 0x9000, 0x4000,\notadata, data, ota, 0xd000, 0x2000,\nphy_init, data, phy, 0xf000, 0x1000,\nfactory, app, factory, 0x10000, 1M,\nota_0, app, ota_0, , 1M,\nota_1, app, ota_1, , 1M,\n",
    )
    .unwrap();
    p
}

#[test]
fn create_refuses_bad_inputs_with_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c3 = image(d, "esp32c3", "1.0.0", &[]);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--chip".into(), "esp33".into()], "unknown chip"),
        (vec!["--firmware".into(), s(&c3)], "ESP32-C3"),
        (vec!["--flash-size".into(), "2MB".into()], "flash"),
        (vec!["--flash-size".into(), "32MB".into()], "16 MiB"),
    ];
    for (args, want) in cases {
        let target = d.join("dev");
        let mut all = vec!["device".to_string(), "create".into(), s(&target)];
        all.extend(args.clone());
        let out = run_otter(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
        assert!(
            !target.join("flash.bin").exists() || args[0] == "--flash-size",
            "{args:?}"
        );
    }
    // An existing device is not overwritten without --force.
    let target = d.join("dev2");
    assert!(run_otter(["device", "create", &s(&target)])
        .status
        .success());
    let out = run_otter(["device", "create", &s(&target)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert!(run_otter(["device", "create", &s(&target), "--force"])
        .status
        .success());
    // Not a device.
    let out = run_otter(["device", "status", &s(d)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("otter device create"),
        "{}",
        stderr(&out)
    );
}

fn sha256_hex(b: &[u8]) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b)?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Issue 19: a real ESP-IDF image with its hash flag flipped to 0 is refused
/// by a default device (an appended SHA-256 is required), with 422 and the
/// policy's code; nothing is switched.
#[test]
fn an_image_without_appended_sha256_is_refused_with_422() {
    let dev = Device::create(&[]).run(&[]);
    let before = dev.status();
    let t = tempfile::tempdir().expect("tempdir");
    let mut b = std::fs::read(util::corpus_file(
        "app-images/esp-serial-flasher/hello_world-esp32s3.bin",
    ))
    .expect("corpus");
    b[23] = 0;
    let f = t.path().join("no-hash.bin");
    std::fs::write(&f, &b).expect("write");
    let (code, body) = dev.curl(
        "/update",
        &["-X", "POST", "--data-binary", &format!("@{}", f.display())],
    );
    assert_eq!(
        (code, body["error"].as_str()),
        (422, Some("sha256_required")),
        "{body}"
    );
    let msg = body["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("no appended SHA-256") && msg.contains("requires one"),
        "{msg}"
    );
    let after = dev.status();
    assert_eq!(after["running"], before["running"], "nothing was switched");
    assert_eq!(after["boot_count"], before["boot_count"]);
}
