//! `otter partitions` end to end: the real binary over the shared corpus.

mod util;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

use util::{corpus, corpus_file, stderr, stdout};

const APP_1_2MB: &str = "app-images/tasmota-sml/tasmota32_ottelo_tas-15.5.0.bin";

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn reference_pairs() -> Vec<(PathBuf, PathBuf)> {
    let dir = corpus().join("partition-tables/csv-with-reference-bin");
    let mut v: Vec<(PathBuf, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .map(|csv| {
            let bin = csv.with_extension("ref.bin");
            (csv, bin)
        })
        .collect();
    let pairs = corpus().join("partition-tables/pairs");
    for (c, b) in [
        (
            "esp-idf-part-factory_app_two_ota.csv",
            "esp-idf-part-factory_app_two_ota.bin",
        ),
        (
            "esp-idf-part-single_factory_no_ota.csv",
            "esp-idf-part-single_factory_no_ota.bin",
        ),
        (
            "idf-test-partitions-utf8-bom.csv",
            "idf-test-partitions-utf8.bin",
        ),
        (
            "idf-test-partitions-utf8_without-bom.csv",
            "idf-test-partitions-utf8.bin",
        ),
    ] {
        v.push((pairs.join(c), pairs.join(b)));
    }
    v.sort();
    assert!(v.len() >= 15);
    v
}

/// Runs `otter partitions convert [flags] IN OUT`.
fn convert(flags: &[&str], input: &Path, output: impl AsRef<OsStr>) -> Output {
    util::otter()
        .args(["partitions", "convert"])
        .args(flags)
        .arg(input)
        .arg(output)
        .output()
        .expect("spawning otter")
}

#[test]
fn convert_csv_matches_reference_binaries() {
    let dir = tmp();
    for (csv, bin) in reference_pairs() {
        let out = dir.path().join("out.bin");
        let o = convert(&[], &csv, &out);
        assert!(o.status.success(), "{}: {}", csv.display(), stderr(&o));
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&bin).unwrap(),
            "{}",
            csv.display()
        );
    }
}

#[test]
fn convert_binary_to_csv_and_back_is_identical() {
    let dir = tmp();
    for (_, bin) in reference_pairs() {
        let csv = dir.path().join("t.csv");
        let back = dir.path().join("t.bin");
        let o = convert(&[], &bin, &csv);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = std::fs::read_to_string(&csv).unwrap();
        assert!(text.starts_with("# ESP-IDF Partition Table\n"));
        let o = convert(&[], &csv, &back);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&bin).unwrap());
    }
}

#[test]
fn convert_to_stdout_and_legacy_table() {
    let legacy = corpus_file("partition-tables/bin-only/esptool-partitions_singleapp-legacy.bin");
    let o = convert(&[], &legacy, "-");
    assert!(o.status.success(), "{}", stderr(&o));
    // Labels from the corpus README.
    let out = stdout(&o);
    assert!(out.contains("\nfactory,app,factory,0x10000,1M,\n"), "{out}");
    assert!(out.contains("rfdata,") && out.contains("wifidata,"));
    assert!(stderr(&o).contains("no end marker"));
}

#[test]
fn convert_json_summary() {
    let dir = tmp();
    let csv = corpus_file("partition-tables/csv-with-reference-bin/idf-partitions_two_ota.csv");
    let out = dir.path().join("o.bin");
    let o = convert(&["--json"], &csv, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["input_format"], "csv");
    assert_eq!(v["bytes"], 3072);
    assert_eq!(v["partitions"].as_array().unwrap().len(), 6);
    // Reference doc 2.7: ota_1 at 0x210000.
    assert_eq!(v["partitions"][5]["name"], "ota_1");
    assert_eq!(v["partitions"][5]["offset"], 0x210000);
}

#[test]
fn malformed_input_exits_2_with_the_line() {
    for f in [
        "err_conflicting_names.csv",
        "err_multiple_otadata.csv",
        "err_otadata_invalid_size.csv",
        "err_overlapping_partitions.csv",
    ] {
        let p = corpus_file(&format!("negative/partition-csv-errors/{f}"));
        let dir = tmp();
        let o = convert(&[], &p, dir.path().join("o.bin"));
        assert_eq!(o.status.code(), Some(2), "{f}");
        let err = stderr(&o);
        assert!(err.contains("line "), "{f}: {err}");
        assert!(err.contains(f), "names the file: {err}");
    }
    let o = util::otter()
        .args(["partitions", "check"])
        .arg(corpus_file("negative/esp8266_deepsleep.bin"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn check_good_table_exits_0() {
    let t = corpus_file("partition-tables/csv-with-reference-bin/idf-partitions_two_ota.csv");
    let o = util::otter()
        .args(["partitions", "check"])
        .arg(&t)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn check_app_too_big_exits_1_with_fit_report() {
    let t = corpus_file("partition-tables/csv-with-reference-bin/idf-partitions_two_ota.csv");
    let o = util::otter()
        .args(["partitions", "check"])
        .arg(&t)
        .arg("--app")
        .arg(corpus_file(APP_1_2MB))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    // 1293120 bytes (corpus README) in a 1 MiB slot.
    assert!(
        out.contains("ota_0: 1.23 MiB of 1.00 MiB — does not fit"),
        "{out}"
    );

    let o = util::otter()
        .args(["partitions", "check", "--json"])
        .arg(&t)
        .arg("--app")
        .arg(corpus_file(APP_1_2MB))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["ok"], false);
    assert_eq!(v["valid"], true);
    assert_eq!(v["app_size"], 1293120);
    let slots = v["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 3);
    assert!(slots.iter().all(|s| s["fits"] == false));
    assert!(v["lints"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["code"] == "app-does-not-fit"));
}

#[test]
fn check_factory_only_exits_1() {
    let t = corpus_file("partition-tables/csv-with-reference-bin/idf-partitions_singleapp.csv");
    let o = util::otter()
        .args(["partitions", "check", "--json"])
        .arg(&t)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["lints"][0]["code"], "no-update-slot");
}

#[test]
fn check_flash_size() {
    // partitions_two_ota ends at 0x310000 (reference doc 2.7).
    let t = corpus_file("partition-tables/csv-with-reference-bin/idf-partitions_two_ota.csv");
    let o = util::otter()
        .args(["partitions", "check", "--flash-size", "2MB"])
        .arg(&t)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("does not fit"), "{}", stdout(&o));
    let o = util::otter()
        .args(["partitions", "check", "--flash-size", "0x400000"])
        .arg(&t)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn suggest_output_passes_check() {
    let dir = tmp();
    for (flash, factory) in [("4MB", false), ("8M", true), ("16777216", false)] {
        let csv = dir.path().join("s.csv");
        let mut cmd = util::otter();
        cmd.args(["partitions", "suggest", "--app"])
            .arg(corpus_file(APP_1_2MB))
            .args(["--flash-size", flash, "-o"])
            .arg(&csv);
        if factory {
            cmd.arg("--factory");
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let o = util::otter()
            .args(["partitions", "check", "--flash-size", flash, "--app"])
            .arg(corpus_file(APP_1_2MB))
            .arg(&csv)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        // and it converts
        let o = convert(&[], &csv, dir.path().join("s.bin"));
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

#[test]
fn suggest_json_and_too_small_flash() {
    let o = util::otter()
        .args(["partitions", "suggest", "--json", "--app"])
        .arg(corpus_file(APP_1_2MB))
        .args(["--flash-size", "4MB"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let slot = v["slot_size"].as_u64().unwrap();
    assert_eq!(slot % 0x10000, 0);
    assert!(slot as f64 >= 1293120.0 * 1.2);
    assert!(v["csv"].as_str().unwrap().contains("ota_1"));

    let o = util::otter()
        .args(["partitions", "suggest", "--app"])
        .arg(corpus_file(APP_1_2MB))
        .args(["--flash-size", "2MB"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("flash"), "{}", stderr(&o));
}
