//! Fuzz the CSV grammar (bytes in, decoded by BOM): nothing may panic; a table
//! that parses and encodes must decode from its binary to the same entries,
//! and its `to_csv` must parse back to the same binary.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_format::partition::validate::ValidateOptions;
use otter_format::partition::{CsvOptions, NoEnv, OwnedTable, PartitionTable};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let opts = CsvOptions {
        table_offset: if ctl & 1 == 0 { 0x8000 } else { 0 },
        primary_bootloader_offset: (ctl & 2 != 0).then_some(0x1000),
        recovery_bootloader_offset: (ctl & 4 != 0).then_some(0x20_0000),
        ..CsvOptions::default()
    };
    let Ok(table) = OwnedTable::from_csv_bytes_with_env(rest, &opts, &NoEnv) else {
        return;
    };
    let _ = table.validate(&ValidateOptions {
        table_offset: opts.table_offset,
        flash_size: Some(4 << 20),
        ..ValidateOptions::default()
    });
    let Ok(bin) = table.to_binary(ctl & 8 == 0) else {
        return;
    };
    let decoded = PartitionTable::from_binary(&bin).expect("our own encoding decodes");
    assert!(decoded
        .iter()
        .eq(table.entries.iter().map(|e| &e.partition)));
    // to_csv -> from_csv reproduces the binary when names are their labels and
    // survive the CSV (no ',', no surrounding whitespace, no leading '#' or '$').
    let csv_safe = table.entries.iter().all(|e| {
        let n = &e.name;
        n.len() <= 16
            && !n.contains([',', '$'])
            && n.trim() == n.as_str()
            && !n.starts_with('#')
            && !n.chars().any(|c| c.is_control() || c.is_whitespace())
            && e.partition.ty.0 != 2
            && e.partition.ty.0 != 3
            && e.partition.flags.unknown() == 0
    });
    if csv_safe && !table.entries.is_empty() {
        let csv = table.to_csv();
        if let Ok(back) = OwnedTable::from_csv_with_env(&csv, &opts, &NoEnv) {
            assert_eq!(back.to_binary(ctl & 8 == 0).ok(), Some(bin), "{csv}");
        }
    }
});
