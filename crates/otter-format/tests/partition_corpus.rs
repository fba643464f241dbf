//! Partition tables from the shared corpus of real third-party files: every CSV
//! converts to the reference binary `gen_esp32part.py` produced, every binary
//! round-trips, every bin-only table parses, every negative CSV fails with a
//! message that names the problem and the line.

mod common;

use std::path::{Path, PathBuf};

use common::{corpus, corpus_files};

use otter_format::partition::validate::ValidateOptions;
use otter_format::partition::{
    CsvOptions, DecodeOptions, OwnedTable, PartitionTable, SubType, TableEnd,
};

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// CSV -> binary with gen_esp32part's defaults (offset 0x8000, MD5 on), after
/// validation, as the tool does.
fn csv_to_bin(csv: &Path) -> Vec<u8> {
    let t = OwnedTable::from_csv_bytes(&read(csv), &CsvOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", csv.display()));
    t.validate(&ValidateOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", csv.display()));
    t.to_binary(true)
        .unwrap_or_else(|e| panic!("{}: {e}", csv.display()))
        .to_vec()
}

/// (csv, reference bin) pairs; the references were produced by gen_esp32part.py.
fn pairs() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for csv in corpus_files("partition-tables/csv-with-reference-bin", ".csv") {
        let bin = csv.with_extension("ref.bin");
        out.push((csv, bin));
    }
    for csv in corpus_files("partition-tables/pairs", ".csv") {
        let name = csv.file_name().unwrap().to_string_lossy().into_owned();
        let bin = if name.starts_with("idf-test-partitions-utf8") {
            csv.with_file_name("idf-test-partitions-utf8.bin")
        } else {
            csv.with_extension("bin")
        };
        out.push((csv, bin));
    }
    assert!(
        out.len() >= 14,
        "expected the whole corpus, got {}",
        out.len()
    );
    out
}

#[test]
fn every_csv_converts_to_its_reference_binary() {
    for (csv, bin) in pairs() {
        let ours = csv_to_bin(&csv);
        let theirs = read(&bin);
        assert_eq!(theirs.len(), 0xC00, "{}", bin.display());
        assert!(
            ours == theirs,
            "{} does not match {}",
            csv.display(),
            bin.display()
        );
    }
}

fn reference_bins() -> Vec<PathBuf> {
    let mut v = corpus_files("partition-tables/csv-with-reference-bin", ".ref.bin");
    v.extend(corpus_files("partition-tables/pairs", ".bin"));
    v
}

#[test]
fn every_reference_binary_round_trips() {
    for bin in reference_bins() {
        let bytes = read(&bin);
        let (t, info) = PartitionTable::decode(&bytes, &DecodeOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        assert!(info.md5_row.is_some(), "{}", bin.display());
        assert!(matches!(info.end, TableEnd::Marker { .. }));
        assert_eq!(t.to_binary(true).unwrap().as_slice(), bytes.as_slice());

        // binary -> CSV -> binary
        let csv = OwnedTable::from_table(&t).to_csv();
        let back = OwnedTable::from_csv(&csv, &CsvOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}\n{csv}", bin.display()));
        back.validate(&ValidateOptions::default()).unwrap();
        assert_eq!(
            back.to_binary(true).unwrap().as_slice(),
            bytes.as_slice(),
            "{csv}"
        );
    }
}

#[test]
fn bin_only_tables_parse() {
    let dir = corpus().join("partition-tables/bin-only");

    // 96 bytes: three entries, no MD5 row, no end marker, no padding.
    let legacy = read(&dir.join("esptool-partitions_singleapp-legacy.bin"));
    assert_eq!(legacy.len(), 96);
    let (t, info) = PartitionTable::decode(&legacy, &DecodeOptions::default()).unwrap();
    assert_eq!(t.len(), 3);
    assert_eq!(info.end, TableEnd::EndOfInput);
    assert_eq!(info.md5_row, None);
    let labels: Vec<String> = t.iter().map(|p| p.label.to_string()).collect();
    assert_eq!(labels, ["factory", "rfdata", "wifidata"], "corpus README");
    assert!(t.factory().is_some());
    // Re-encoding writes a full, terminated 0xC00-byte table with the same rows.
    let enc = t.to_binary(false).unwrap();
    assert_eq!(&enc[..96], legacy.as_slice());
    assert!(enc[96..].iter().all(|b| *b == 0xFF));

    // ESP8266 RTOS SDK: no MD5 row, factory of 0xF0000 bytes (corpus README;
    // offset 0x10000 as gen_esp32part.py prints it).
    let esp8266 = read(&dir.join("esp-serial-flasher-esp8266-partition-table.bin"));
    let (t, info) = PartitionTable::decode(&esp8266, &DecodeOptions::default()).unwrap();
    assert_eq!(info.md5_row, None);
    assert!(matches!(info.end, TableEnd::Marker { .. }));
    assert_eq!(
        t.factory().map(|p| (p.offset, p.size)),
        Some((0x10000, 0xF0000))
    );
    assert_eq!(t.to_binary(false).unwrap().as_slice(), esp8266.as_slice());

    // Legacy output with the BOM in the first label: kept byte for byte.
    let bom = read(&dir.join("idf-test-partitions-utf8-bom-legacy.bin"));
    let t = PartitionTable::from_binary(&bom).unwrap();
    let first = t.iter().next().unwrap();
    assert_eq!(first.label.as_bytes(), b"\xEF\xBB\xBFnvs");
    assert_eq!(first.label.as_str(), Some("\u{FEFF}nvs"));
    assert_eq!(t.to_binary(true).unwrap().as_slice(), bom.as_slice());
}

#[test]
fn utf8_label_is_preserved_and_bom_stripped() {
    // The corpus README: label phy_инит_ preserved, BOM stripped.
    let bin = read(&corpus().join("partition-tables/pairs/idf-test-partitions-utf8.bin"));
    let t = PartitionTable::from_binary(&bin).unwrap();
    assert!(t.find_by_label("phy_инит_").is_some());
    assert!(t
        .iter()
        .all(|p| !p.label.as_bytes().starts_with(b"\xEF\xBB\xBF")));
}

/// (file, words the message must contain, line). Expected problems are what
/// gen_esp32part.py v5.5.5 reports for these files (run by hand).
const NEGATIVE: &[(&str, &[&str], usize)] = &[
    (
        "err_conflicting_names.csv",
        &["names must be unique", "`ota_0`"],
        5,
    ),
    (
        "err_multiple_otadata.csv",
        &["multiple otadata", "`otadata2`"],
        5,
    ),
    (
        "err_otadata_invalid_size.csv",
        &["size = 0x2000", "`otadata1`"],
        4,
    ),
    (
        "err_overlapping_partitions.csv",
        &["overlap", "0x200000", "0x210000"],
        8,
    ),
];

#[test]
fn negative_csvs_fail_naming_problem_and_line() {
    let dir = corpus().join("negative/partition-csv-errors");
    let found = corpus_files("negative/partition-csv-errors", ".csv");
    assert_eq!(
        found.len(),
        NEGATIVE.len(),
        "a negative CSV has no expectation"
    );
    for (file, words, line) in NEGATIVE {
        let bytes = read(&dir.join(file));
        let msg = match OwnedTable::from_csv_bytes(&bytes, &CsvOptions::default()) {
            Err(e) => {
                assert_eq!(e.line, *line, "{file}");
                e.to_string()
            }
            Ok(t) => match t.validate(&ValidateOptions::default()) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{file} was accepted"),
            },
        };
        assert!(msg.contains(&format!("line {line}")), "{file}: {msg}");
        for w in *words {
            assert!(msg.contains(w), "{file}: {msg:?} lacks {w:?}");
        }
    }
}

#[test]
fn ota_queries_on_real_tables() {
    let bin = read(
        &corpus().join("partition-tables/csv-with-reference-bin/idf-partitions_two_ota.ref.bin"),
    );
    let t = PartitionTable::from_binary(&bin).unwrap();
    // Section 2.7 of the reference doc: otadata 0xd000, ota_0 0x110000, ota_1 0x210000.
    assert_eq!(
        t.otadata().map(|p| (p.offset, p.size)),
        Some((0xd000, 0x2000))
    );
    assert_eq!(t.ota_slot(0).map(|p| p.offset), Some(0x110000));
    assert_eq!(t.ota_slot(1).map(|p| p.offset), Some(0x210000));
    assert_eq!(t.ota_slot(2), None);
    assert_eq!(t.ota_slot_count(), 2);
    assert_eq!(t.factory().map(|p| p.subtype), Some(SubType::FACTORY));
}
