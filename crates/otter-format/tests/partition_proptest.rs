//! Property tests for partition tables: round trips through the binary and the
//! CSV, never-panics on arbitrary input, and `int(v, 0)` against a reference
//! model written independently from the parser.

use otter_format::partition::int::{py_int, IntError};
use otter_format::partition::validate::ValidateOptions;
use otter_format::partition::{
    CsvOptions, DecodeOptions, Flags, Label, NoEnv, OwnedTable, Partition, PartitionTable,
    PartitionType, SubType,
};
use proptest::prelude::*;

fn any_partition() -> impl Strategy<Value = Partition> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        prop::array::uniform16(any::<u8>()),
        any::<u32>(),
    )
        .prop_map(|(ty, sub, offset, size, label, flags)| Partition {
            ty: PartitionType(ty),
            subtype: SubType(sub),
            offset,
            size,
            label: Label(label),
            flags: Flags(flags),
        })
}

proptest! {
    #[test]
    fn binary_round_trip(parts in prop::collection::vec(any_partition(), 0..=94), md5 in any::<bool>()) {
        // A row that is all FF would end the table; an EB EB row would be read
        // as an MD5 row: neither can be an entry (their magic is not AA 50).
        let t = PartitionTable::from_partitions(&parts).unwrap();
        let bin = t.to_binary(md5).unwrap();
        let (back, info) = PartitionTable::decode(&bin, &DecodeOptions::default()).unwrap();
        prop_assert_eq!(&back, &t);
        prop_assert_eq!(info.md5_row.is_some(), md5);
        prop_assert_eq!(back.to_binary(md5).unwrap(), bin);
    }

    #[test]
    fn from_binary_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..4000)) {
        let _ = PartitionTable::from_binary(&bytes);
        let _ = PartitionTable::decode(&bytes, &DecodeOptions { verify_md5: false });
    }

    #[test]
    fn from_binary_never_panics_on_near_valid_rows(
        rows in prop::collection::vec(
            (prop::sample::select(vec![[0xAAu8, 0x50], [0xEB, 0xEB], [0xFF, 0xFF], [0, 0]]),
             prop::array::uniform30(any::<u8>())),
            0..100),
        tail in 0usize..32,
    ) {
        let mut bytes = Vec::new();
        for (m, r) in rows {
            bytes.extend_from_slice(&m);
            bytes.extend_from_slice(&r);
        }
        bytes.extend(std::iter::repeat_n(0xFF, tail));
        if let Ok(t) = PartitionTable::from_binary(&bytes) {
            let o = OwnedTable::from_table(&t);
            let _ = o.validate(&ValidateOptions::default());
            let _ = o.to_csv();
        }
    }

    #[test]
    fn csv_parser_never_panics(s in "\\PC{0,200}") {
        if let Ok(t) = OwnedTable::from_csv_with_env(&s, &CsvOptions::default(), &NoEnv) {
            let _ = t.validate(&ValidateOptions::default());
            let _ = t.to_binary(true);
        }
    }

    #[test]
    fn csv_like_text_never_panics(
        lines in prop::collection::vec(
            prop::collection::vec("[ a-z0-9_xXkKmM$:#{}\\-+]{0,10}", 0..8).prop_map(|f| f.join(",")),
            0..10),
        off in prop::sample::select(vec![0u32, 0x8000, 0xFFFF_F000]),
    ) {
        let text = lines.join("\n");
        let opts = CsvOptions { table_offset: off, primary_bootloader_offset: Some(0x1000), ..CsvOptions::default() };
        if let Ok(t) = OwnedTable::from_csv_with_env(&text, &opts, &NoEnv) {
            let _ = t.validate(&ValidateOptions { table_offset: off, flash_size: Some(4 << 20), ..ValidateOptions::default() });
            let _ = t.to_binary(false);
            let _ = t.to_csv();
        }
    }

    #[test]
    fn csv_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = OwnedTable::from_csv_bytes_with_env(&bytes, &CsvOptions::default(), &NoEnv);
    }
}

/// A table whose CSV form `gen_esp32part.py` reads back to the same entries:
/// explicit ascending offsets after the table sector, names that are their own
/// labels, only known flag bits, and no bootloader/partition_table types
/// (whose offsets and sizes the grammar forces).
fn csv_safe_table() -> impl Strategy<Value = Vec<Partition>> {
    prop::collection::vec(
        (
            any::<u8>().prop_filter("forced rows", |t| *t != 2 && *t != 3),
            any::<u8>(),
            0u32..0x20_0000,
            0u32..0x20_0000,
            "[a-z_][a-z0-9_]{0,15}",
            0u32..4,
        ),
        0..40,
    )
    .prop_map(|rows| {
        let mut next: u64 = 0x9000;
        let mut out = Vec::new();
        for (ty, sub, gap, size, name, flags) in rows {
            let offset = next + u64::from(gap);
            let end = offset + u64::from(size);
            if end > u64::from(u32::MAX) {
                break;
            }
            next = end;
            let mut p = Partition::new(PartitionType(ty), SubType(sub), offset as u32, size, &name);
            p.flags = Flags(flags);
            out.push(p);
        }
        out
    })
}

proptest! {
    #[test]
    fn binary_to_csv_to_binary_is_identical(parts in csv_safe_table(), md5 in any::<bool>()) {
        let t = PartitionTable::from_partitions(&parts).unwrap();
        let bin = t.to_binary(md5).unwrap();
        let csv = OwnedTable::from_table(&PartitionTable::from_binary(&bin).unwrap()).to_csv();
        let back = OwnedTable::from_csv_with_env(&csv, &CsvOptions::default(), &NoEnv)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{csv}")))?;
        prop_assert_eq!(back.to_binary(md5).unwrap(), bin, "{}", csv);
    }

    #[test]
    fn int_parser_agrees_with_model(s in "[ 0-9a-fxXoObB_+\\-]{0,8}") {
        prop_assert_eq!(py_int(&s).ok(), model_int(&s), "{:?}", s);
    }

    #[test]
    fn int_parser_accepts_python_literals(
        n in any::<u64>(),
        radix in prop::sample::select(vec![2u32, 8, 10, 16]),
        neg in any::<bool>(),
        sep in any::<bool>(),
    ) {
        let digits = match radix { 2 => format!("{n:b}"), 8 => format!("{n:o}"), 16 => format!("{n:x}"), _ => n.to_string() };
        let digits = if sep {
            digits.chars().enumerate().map(|(i, c)| if i > 0 && i % 3 == 0 { format!("_{c}") } else { c.to_string() }).collect()
        } else { digits };
        let prefix = match radix { 2 => "0b", 8 => "0o", 16 => "0x", _ => "" };
        let s = format!("{}{prefix}{digits}", if neg { "-" } else { "" });
        let want = if neg { -i128::from(n) } else { i128::from(n) };
        prop_assert_eq!(py_int(&s), Ok(want), "{}", s);
    }
}

/// Python's `int(v, 0)` as the language reference states it, written without
/// looking at the parser: optional whitespace, a sign, a literal where `_` may
/// appear only between digits (or after a base prefix), and a decimal literal
/// with a leading zero must be all zeros.
fn model_int(s: &str) -> Option<i128> {
    let s = s.trim();
    let (neg, s) = if let Some(r) = s.strip_prefix('-') {
        (true, r)
    } else {
        (false, s.strip_prefix('+').unwrap_or(s))
    };
    let lower = s.to_ascii_lowercase();
    let (radix, body, prefixed) = if let Some(r) = lower.strip_prefix("0x") {
        (16, r.to_string(), true)
    } else if let Some(r) = lower.strip_prefix("0o") {
        (8, r.to_string(), true)
    } else if let Some(r) = lower.strip_prefix("0b") {
        (2, r.to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    let body = if prefixed {
        body.strip_prefix('_').map(str::to_string).unwrap_or(body)
    } else {
        body
    };
    let groups: Vec<&str> = body.split('_').collect();
    if groups.iter().any(|g| g.is_empty()) {
        return None;
    }
    let digits: String = groups.concat();
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    if radix == 10 && digits.starts_with('0') && digits.chars().any(|c| c != '0') {
        return None;
    }
    let v = i128::from_str_radix(&digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

#[test]
fn int_error_kinds() {
    assert_eq!(py_int("0x"), Err(IntError::Invalid));
    assert_eq!(py_int(&"9".repeat(60)), Err(IntError::Overflow));
}
