//! The command line as a newcomer meets it: one test per rough edge of
//! issue 12, each running the real `otter` binary in a temporary directory.

mod devproc;
mod util;

use std::path::Path;

use serde_json::Value;
use util::{corpus_file, run_otter, stderr, stdout};

const TASMOTA: &str = "app-images/tasmota-sml/tasmota32_ottelo_tas-15.5.0.bin";
const BOOT_ESP32: &str = "bootloaders/esp-serial-flasher/bootloader-esp32.bin";
const TWO_OTA: &str = "partition-tables/csv-with-reference-bin/idf-partitions_two_ota.csv";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

// ---- 1: `size --explain` covers the factory slot too, so flash-plan accepts its table.

#[test]
fn size_explain_resizes_every_app_slot_the_app_is_planned_into() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = corpus_file(TASMOTA);
    let table = corpus_file(TWO_OTA);
    let o = run_otter([
        "size",
        s(&app),
        "--partitions",
        s(&table),
        "--explain",
        "--flash-size",
        "8MB",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json_of(&o);
    let changed: Vec<&str> = v["explain"]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["old_size"] != c["new_size"])
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(changed, ["factory", "ota_0", "ota_1"], "{v:#}");
    let csv = dir.path().join("resized.csv");
    std::fs::write(&csv, v["explain"]["csv"].as_str().expect("csv")).expect("write");
    // The plan the explanation leads to: no loop back to `size --explain`.
    let o = run_otter([
        "flash-plan",
        "--chip",
        "esp32",
        "--partitions",
        s(&csv),
        "--bootloader",
        s(&corpus_file(BOOT_ESP32)),
        "--app",
        s(&app),
        "--flash-size",
        "8MB",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = run_otter([
        "size",
        s(&app),
        "--partitions",
        s(&csv),
        "--max-percent",
        "90",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

// ---- 3: a reader that closes the pipe (`otter ... | head`) is success, silently.

/// Runs `otter ARGS` with standard output a pipe whose reader is gone
/// before otter writes (the shell waits 0.3 s, then execs otter).
fn run_into_closed_pipe(args: &[&str]) -> std::process::Output {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("sleep 0.3; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_otter"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning sh");
    drop(child.stdout.take());
    child.wait_with_output().expect("waiting for otter")
}

#[test]
fn a_closed_pipe_is_success_for_every_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = corpus_file(TASMOTA);
    let table = corpus_file(TWO_OTA);
    let otadata = corpus_file("otadata/arduino-boot_app0.bin");
    let dev = dir.path().join("dev");
    let o = run_otter(["device", "create", s(&dev)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cases: Vec<Vec<&str>> = vec![
        vec!["image", "info", s(&app)],
        vec!["image", "info", s(&app), "--json"],
        vec!["image", "verify", s(&app), "--json"],
        vec!["partitions", "convert", s(&table), "-"],
        vec!["partitions", "check", s(&table), "--json"],
        vec!["otadata", "info", s(&otadata)],
        vec!["otadata", "info", s(&otadata), "--json"],
        vec!["size", s(&app), "--partitions", s(&table), "--explain"],
        vec!["device", "status", s(&dev)],
        vec!["device", "status", s(&dev), "--json"],
        vec!["--help"],
    ];
    for args in cases {
        let o = run_into_closed_pipe(&args);
        let err = stderr(&o);
        assert!(
            !err.contains("Broken pipe") && !err.contains("panicked"),
            "otter {args:?} complained about the closed pipe: {err}"
        );
        // As in ripgrep, the closed pipe ends the command with success,
        // even `size`, whose check failed before the explanation was cut.
        assert_eq!(o.status.code(), Some(0), "otter {args:?}: {err}");
    }
}

// ---- 9: `image verify --slot-size` states the sizes and the advice that fits.

#[test]
fn verify_slot_size_states_file_image_and_slot_sizes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = devproc::image(dir.path(), "esp32s3", "1.0.0", &["--size", "0x40000"]);
    let o = run_otter(["image", "verify", s(&big), "--slot-size", "0x20000"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    for needle in [
        "the file is 262144 bytes",
        "the image in it 262144 bytes",
        "the slot 131072 bytes",
        "use a bigger slot or build a smaller app",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    assert!(!err.contains("trailing"), "no trailing data here: {err}");
    let o = run_otter(["image", "verify", s(&big), "--slot-size", "0x20000", "--json"]);
    assert_eq!(json_of(&o)["error"], "image_too_large");

    // An image that fits, followed by data that does not.
    let small = devproc::image(dir.path(), "esp32s3", "1.0.1", &["--size", "0x18000"]);
    let mut bytes = std::fs::read(&small).expect("read");
    bytes.extend(std::iter::repeat_n(0xA5, 0x9000));
    std::fs::write(&small, &bytes).expect("write");
    let o = run_otter(["image", "verify", s(&small), "--slot-size", "0x20000"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    for needle in [
        "the file is 135168 bytes",
        "the image in it 98304 bytes",
        "the slot 131072 bytes",
        "36864 bytes of trailing data",
        "strip the trailing data",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    let o = run_otter(["image", "verify", s(&small), "--slot-size", "0x20000", "--json"]);
    assert_eq!(json_of(&o)["error"], "file_too_large");
}
