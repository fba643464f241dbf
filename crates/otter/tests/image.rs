//! `otter image` end to end: the real binary over the corpus, compared with
//! esptool.

mod util;

use std::path::PathBuf;
use std::process::Command;

use util::*;

fn esptool_describe(files: &[PathBuf]) -> Vec<serde_json::Value> {
    let script = workspace_root().join("tests/oracle/esptool_image.py");
    assert!(script.is_file(), "missing {}", script.display());
    let out = Command::new(python())
        .arg(&script)
        .args(files)
        .output()
        .expect("running the esptool oracle");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oracle JSON")
}

fn info_json(file: &std::path::Path) -> serde_json::Value {
    let o = run_otter([
        "image".as_ref(),
        "info".as_ref(),
        "--json".as_ref(),
        file.as_os_str(),
    ]);
    assert!(o.status.success(), "{}: {}", file.display(), stderr(&o));
    serde_json::from_str(&stdout(&o)).expect("JSON")
}

#[test]
fn info_json_matches_esptool_on_the_corpus() {
    let files: Vec<PathBuf> = [
        "app-images/esp-serial-flasher/hello_world-esp32c3.bin",
        "app-images/esp-serial-flasher/hello_world-esp32c6.bin",
        "app-images/esp-serial-flasher/hello_world-esp32p4.bin",
        "app-images/esptool/hello-world-signed-esp32.bin",
        "app-images/tasmota-sml/tasmota32s3_ottelo_tas-15.5.0.bin",
        "bootloaders/esp-serial-flasher/bootloader-esp32.bin",
        "delta-pairs/obnizos/obniz-2.1.0.bin",
    ]
    .iter()
    .map(|f| corpus_file(f))
    .collect();
    let oracle = esptool_describe(&files);
    for (f, o) in files.iter().zip(&oracle) {
        let j = info_json(f);
        let name = f.display();
        assert_eq!(j["chip"], o["chip"], "{name}");
        assert_eq!(j["chip_id"], o["chip_id"], "{name}");
        assert_eq!(j["entry"], o["entry"], "{name}");
        assert_eq!(j["min_chip_rev_full"], o["min_rev_full"], "{name}");
        assert_eq!(j["max_chip_rev_full"], o["max_rev_full"], "{name}");
        let ours = j["segments"].as_array().expect("segments");
        let theirs = o["segments"].as_array().expect("segments");
        assert_eq!(ours.len(), theirs.len(), "{name}");
        for (a, b) in ours.iter().zip(theirs) {
            assert_eq!(a["load_addr"], b["load_addr"], "{name}");
            assert_eq!(a["len"], b["len"], "{name}");
            assert_eq!(a["header_offset"], b["header_offset"], "{name}");
            assert_eq!(a["kind"] == "flash", b["flash"] == true, "{name}");
        }
        assert_eq!(
            j["checksum_valid"],
            o["checksum_stored"] == o["checksum_computed"]
        );
        assert_eq!(j["sha256_appended"], o["sha256_appended"], "{name}");
        assert_eq!(j["sha256"], o["sha256_stored"], "{name}");
        assert_eq!(
            j["sha256_valid"],
            serde_json::json!(o["sha256_stored"] == o["sha256_computed"])
        );
        assert_eq!(
            j["size"],
            serde_json::json!(std::fs::metadata(f).expect("stat").len())
        );
        match (&j["app_desc"], &o["app_desc"]) {
            (serde_json::Value::Null, serde_json::Value::Null) => {}
            (a, b) => {
                for k in [
                    "version",
                    "project_name",
                    "idf_ver",
                    "secure_version",
                    "date",
                    "time",
                ] {
                    assert_eq!(a[k], b[k], "{name} {k}");
                }
                assert_eq!(a["elf_sha256"], b["app_elf_sha256"], "{name}");
            }
        }
    }
}

#[test]
fn info_names_non_apps_and_fails_on_garbage() {
    let j = info_json(&corpus_file("negative/merged-flash-image-esp32c3.bin"));
    assert_eq!(j["kind"], "merged-flash");
    let j = info_json(&corpus_file("negative/ram-only-app-esp32s3.bin"));
    assert_eq!(j["kind"], "ram-only");
    assert_eq!(j["app_desc"], serde_json::Value::Null);
    let j = info_json(&corpus_file("bootloaders/valuecam/bootloader-esp32p4.bin"));
    assert_eq!(j["kind"], "bootloader");
    let o = run_otter([
        "image".as_ref(),
        "info".as_ref(),
        corpus_file("negative/esp8266_deepsleep.bin").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("ESP8266"), "{}", stderr(&o));
    let o = run_otter(["image", "info", "/nonexistent/x.bin"]);
    assert_eq!(o.status.code(), Some(2));
}

fn verify(args: &[&str], file: &std::path::Path) -> (i32, String) {
    let mut a: Vec<std::ffi::OsString> = vec!["image".into(), "verify".into()];
    a.extend(args.iter().map(|s| s.into()));
    a.push(file.into());
    let o = run_otter(a);
    (
        o.status.code().expect("exit code"),
        stdout(&o) + &stderr(&o),
    )
}

#[test]
fn verify_exit_codes() {
    let c3 = corpus_file("app-images/esp-serial-flasher/hello_world-esp32c3.bin");
    assert_eq!(verify(&[], &c3).0, 0);
    assert_eq!(
        verify(&["--chip", "ESP32-C3", "--slot-size", "0x100000"], &c3).0,
        0
    );
    let (code, msg) = verify(&["--chip", "esp32s3"], &c3);
    assert_eq!(code, 1);
    assert!(
        msg.contains("ESP32-C3") && msg.contains("ESP32-S3"),
        "{msg}"
    );
    let (code, msg) = verify(&["--slot-size", "64K"], &c3);
    assert_eq!(code, 1);
    assert!(msg.contains("slot"), "{msg}");
    let (code, msg) = verify(&["--min-secure-version", "1"], &c3);
    assert_eq!(code, 1);
    assert!(msg.contains("secure_version"), "{msg}");
    let (code, msg) = verify(&["--sha256", &"00".repeat(32)], &c3);
    assert_eq!(code, 1);
    assert!(msg.contains("SHA-256"), "{msg}");
    let (code, msg) = verify(&[], &corpus_file("negative/merged-flash-image-esp32c3.bin"));
    assert_eq!(code, 1);
    assert!(msg.contains("merge-bin"), "{msg}");
    assert_eq!(
        verify(&[], &corpus_file("negative/ram-only-app-esp32s3.bin")).0,
        1
    );
    assert_eq!(
        verify(
            &[],
            &corpus_file("bootloaders/esp-serial-flasher/bootloader-esp32.bin")
        )
        .0,
        1
    );
    assert_eq!(
        verify(&[], &corpus_file("negative/esp8266_deepsleep.bin")).0,
        1
    );
    assert_eq!(verify(&["--chip", "esp33"], &c3).0, 2);
    // A corrupted copy.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = std::fs::read(&c3).expect("read");
    bytes[0x1000] ^= 0x40;
    let bad = dir.path().join("bad.bin");
    std::fs::write(&bad, &bytes).expect("write");
    let (code, msg) = verify(&["--json"], &bad);
    assert_eq!(code, 1);
    let j: serde_json::Value = serde_json::from_str(&msg).expect("json");
    assert_eq!(j["error"], "checksum_mismatch");
}

/// Issue 19: with the hash flag flipped off, a header that esptool warns
/// about, or an entry point in no segment, is not "valid".
#[test]
fn verify_refuses_a_bad_header_when_the_hash_flag_is_off() {
    let c3 = corpus_file("app-images/esp-serial-flasher/hello_world-esp32c3.bin");
    let dir = tempfile::tempdir().expect("tempdir");
    let orig = std::fs::read(&c3).expect("read");
    let cases: [(usize, &[u8], &str); 3] = [
        (4, &0xdead_beefu32.to_le_bytes(), "entry_outside_segments"),
        (3, &[0xF0], "invalid_flash_size"),
        (2, &[9], "invalid_flash_mode"),
    ];
    for (at, bytes, want) in cases {
        let mut b = orig.clone();
        b[23] = 0;
        b[at..at + bytes.len()].copy_from_slice(bytes);
        let f = dir.path().join(format!("{want}.bin"));
        std::fs::write(&f, &b).expect("write");
        let (code, msg) = verify(&["--json"], &f);
        assert_eq!(code, 1, "{want}: {msg}");
        let j: serde_json::Value = serde_json::from_str(&msg).expect("json");
        assert_eq!(j["error"], want, "{j}");
        assert_eq!(j["valid"], false);
    }
}

#[test]
fn build_then_verify_then_esptool_agrees() {
    let dir = tempfile::tempdir().expect("tempdir");
    for chip in ["esp32", "esp32c3", "esp32c6", "esp32s3", "esp32p4"] {
        let out = dir.path().join(format!("{chip}.bin"));
        let o = run_otter([
            "image".as_ref(),
            "build".as_ref(),
            "--chip".as_ref(),
            chip.as_ref(),
            "--version".as_ref(),
            "3.1.4".as_ref(),
            "--project".as_ref(),
            "cli-test".as_ref(),
            "--secure-version".as_ref(),
            "2".as_ref(),
            "--size".as_ref(),
            "0x30000".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(std::fs::metadata(&out).expect("stat").len(), 0x30000);
        let (code, msg) = verify(&["--chip", chip, "--min-secure-version", "2"], &out);
        assert_eq!(code, 0, "{msg}");
        let e = Command::new(python())
            .args(["-m", "esptool", "--chip", chip, "image-info"])
            .arg(&out)
            .output()
            .expect("esptool");
        let text = String::from_utf8_lossy(&e.stdout).into_owned();
        assert!(
            e.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&e.stderr)
        );
        assert!(text.contains("(valid)"), "{text}");
        assert!(!text.contains("invalid"), "{text}");
        assert!(text.contains("App version: 3.1.4"), "{text}");
        assert!(text.contains("Project name: cli-test"), "{text}");
        assert!(text.contains("Secure version: 2"), "{text}");
    }
}
