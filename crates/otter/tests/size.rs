//! `otter size`, the build-pipeline size gate, on real apps and tables.

mod util;

use std::ffi::OsString;
use std::path::Path;

use serde_json::Value;
use util::{corpus_file, run_otter, stderr, stdout};

const TASMOTA: &str = "app-images/tasmota-sml/tasmota32_ottelo_tas-15.5.0.bin";
const HELLO: &str = "app-images/esp-serial-flasher/hello_world-esp32.bin";
const TWO_OTA: &str = "partition-tables/csv-with-reference-bin/idf-partitions_two_ota.csv";

/// The seed's table: two 1 MB OTA slots and a SPIFFS partition on 4 MB.
const SEED_CSV: &str = "# Name,   Type, SubType, Offset,   Size,    Flags\n\
nvs,      data, nvs,      0x9000,   0x5000,\n\
otadata,  data, ota,      0xe000,   0x2000,\n\
app0,     app,  ota_0,    0x10000,  0x100000,\n\
app1,     app,  ota_1,    0x110000, 0x100000,\n\
spiffs,   data, spiffs,   0x210000, 0x1F0000,\n";

fn size(image: &Path, table: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<OsString> = vec![
        "size".into(),
        image.into(),
        "--partitions".into(),
        table.into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    run_otter(args)
}

fn size_json(image: &Path, table: &Path, extra: &[&str]) -> (Option<i32>, Value) {
    let mut e = extra.to_vec();
    e.push("--json");
    let o = size(image, table, &e);
    let v = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}\n{}", stdout(&o), stderr(&o)));
    (o.status.code(), v)
}

/// The smallest multiple of 64 KiB that holds `app` with 20% to spare,
/// computed here independently of otter.
fn slot_with_margin(app: u64) -> u64 {
    let need = (app * 120).div_ceil(100);
    need.div_ceil(0x10000) * 0x10000
}

#[test]
fn a_small_app_passes() {
    let (code, v) = size_json(&corpus_file(HELLO), &corpus_file(TWO_OTA), &[]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["app_size"], 124416);
    // The smallest of the OTA slots (both 1 MB); factory is not an OTA slot.
    assert_eq!(v["slot"]["name"], "ota_0");
    assert_eq!(v["slots_checked"].as_array().unwrap().len(), 2);
    let pct = v["percent_used"].as_f64().unwrap();
    assert!((pct - 124416.0 * 100.0 / 1048576.0).abs() < 1e-9, "{pct}");
    let o = size(&corpus_file(HELLO), &corpus_file(TWO_OTA), &[]);
    assert!(stdout(&o).starts_with("ok: "), "{}", stdout(&o));
}

#[test]
fn an_app_too_big_for_the_smallest_slot_fails() {
    let o = size(&corpus_file(TASMOTA), &corpus_file(TWO_OTA), &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("the app is 1293120 bytes but `ota_0` (the smallest of 2 OTA slots) holds 1048576 bytes"),
        "{err}"
    );
    assert!(err.contains("it does not fit"), "{err}");
    assert!(err.contains("hint: run with --explain"), "{err}");
    let (_, v) = size_json(&corpus_file(TASMOTA), &corpus_file(TWO_OTA), &[]);
    assert_eq!(v["fits"], false);
    assert_eq!(v["ok"], false);
}

#[test]
fn the_seeds_98_89_percent_app_fails_the_90_percent_gate() {
    // An app that fills 98.89% of a 1 MB slot, as in seed 000.
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app.bin");
    let bytes = (0x100000u64 * 9889 / 10000) / 16 * 16;
    let o = run_otter([
        OsString::from("image"),
        "build".into(),
        "--chip".into(),
        "esp32s3".into(),
        "--version".into(),
        "1.0".into(),
        "--size".into(),
        bytes.to_string().into(),
        "-o".into(),
        app.clone().into(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = tmp.path().join("partitions.csv");
    std::fs::write(&csv, SEED_CSV).unwrap();
    let o = size(&app, &csv, &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("the app fills 98.9% of `app0`"), "{err}");
    assert!(
        err.contains("more than 90%: the next release may not fit"),
        "{err}"
    );
    // The same app passes a 99% gate.
    assert_eq!(
        size(&app, &csv, &["--max-percent", "99"]).status.code(),
        Some(0)
    );
}

#[test]
fn a_named_slot_is_checked_alone() {
    let (code, v) = size_json(
        &corpus_file(HELLO),
        &corpus_file(TWO_OTA),
        &["--slot", "factory"],
    );
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["slot"]["name"], "factory");
    assert_eq!(v["slots_checked"].as_array().unwrap().len(), 1);
    let o = size(
        &corpus_file(HELLO),
        &corpus_file(TWO_OTA),
        &["--slot", "nvs"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("partition `nvs` is not an app partition"),
        "{}",
        stderr(&o)
    );
    let o = size(
        &corpus_file(HELLO),
        &corpus_file(TWO_OTA),
        &["--slot", "app9"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("the app partitions are: factory, ota_0, ota_1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn explain_gives_a_slot_size_and_a_table_that_passes_the_check() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("partitions.csv");
    std::fs::write(&csv, SEED_CSV).unwrap();
    let app = corpus_file(TASMOTA);
    let (code, v) = size_json(&app, &csv, &["--explain", "--flash-size", "4MB"]);
    assert_eq!(code, Some(1), "{v}");
    let e = &v["explain"];
    let needed = slot_with_margin(1293120);
    assert_eq!(needed, 0x180000);
    assert_eq!(e["needed_slot_size"], needed);
    let changes: Vec<(String, u64, u64)> = e["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["new_offset"].as_u64().unwrap(),
                c["new_size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("app0".to_string(), 0x10000, 0x180000),
            ("app1".to_string(), 0x190000, 0x180000),
            ("spiffs".to_string(), 0x310000, 0xF0000),
        ]
    );
    assert_eq!(e["fits_flash"], true);
    // The resized table passes otter's own table check with this app.
    let fixed = tmp.path().join("fixed.csv");
    std::fs::write(&fixed, e["csv"].as_str().unwrap()).unwrap();
    let o = run_otter([
        OsString::from("partitions"),
        "check".into(),
        fixed.clone().into(),
        "--flash-size".into(),
        "4MB".into(),
        "--app".into(),
        app.clone().into(),
    ]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(size(&app, &fixed, &[]).status.code(), Some(0));

    // The text form says the same, with CSV line numbers.
    let o = size(&app, &csv, &["--explain", "--flash-size", "4MB"]);
    let text = stdout(&o);
    for needle in [
        "a slot of 0x180000 bytes (1.50 MiB) holds this 1.23 MiB app with 20% to spare",
        "rounded up to 64 KiB because app partitions are 0x10000-aligned",
        "app0 (line 4): size 0x100000 -> 0x180000",
        "app1 (line 5): offset 0x110000 -> 0x190000, size 0x100000 -> 0x180000",
        "`spiffs` shrinks by 0x100000 so the table still fits the flash",
        "app1,app,ota_1,0x190000,1536K,",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn a_bootloader_is_not_an_app() {
    let o = size(
        &corpus_file("bootloaders/esp-serial-flasher/bootloader-esp32.bin"),
        &corpus_file(TWO_OTA),
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("second-stage bootloader image, not an app"),
        "{}",
        stderr(&o)
    );
}
