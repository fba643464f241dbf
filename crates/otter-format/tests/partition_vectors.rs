//! Vectors from the reference document (section 2.7) and from ESP-IDF's
//! upstream host suite `components/partition_table/test_gen_esp32part_host/
//! gen_esp32part_tests.py` (v5.5.5), restated as Rust tests. The host suite runs
//! its library-level cases with the module default table offset 0, so these do
//! too (first free offset 0x1000).

use md5::{Digest, Md5};
use otter_format::partition::validate::{SecureBoot, ValidateOptions, Warning};
use otter_format::partition::{
    CsvErrorKind, CsvOptions, NoEnv, OwnedTable, PartitionTable, SubType, ValidationError,
};

fn opts(table_offset: u32) -> CsvOptions {
    CsvOptions {
        table_offset,
        ..CsvOptions::default()
    }
}

fn vopts(table_offset: u32) -> ValidateOptions {
    ValidateOptions {
        table_offset,
        ..ValidateOptions::default()
    }
}

fn parse0(csv: &str) -> OwnedTable {
    OwnedTable::from_csv_with_env(csv, &opts(0), &NoEnv).unwrap_or_else(|e| panic!("{e}\n{csv}"))
}

fn parse_err0(csv: &str) -> otter_format::partition::CsvError {
    match OwnedTable::from_csv_with_env(csv, &opts(0), &NoEnv) {
        Err(e) => e,
        Ok(t) => panic!("accepted: {t:?}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn offsets_sizes(t: &OwnedTable) -> Vec<(u32, u32)> {
    t.entries
        .iter()
        .map(|e| (e.partition.offset, e.partition.size))
        .collect()
}

/// Reference doc 2.7: partitions_two_ota.csv at 0x8000 and its file MD5.
#[test]
fn two_ota_vector() {
    let csv =
        include_str_corpus("partition-tables/csv-with-reference-bin/idf-partitions_two_ota.csv");
    let t = OwnedTable::from_csv(&csv, &opts(0x8000)).unwrap();
    assert_eq!(
        offsets_sizes(&t),
        [
            (0x9000, 0x4000),
            (0xd000, 0x2000),
            (0xf000, 0x1000),
            (0x10000, 0x100000),
            (0x110000, 0x100000),
            (0x210000, 0x100000)
        ]
    );
    let bin = t.to_binary(true).unwrap();
    assert_eq!(bin.len(), 3072);
    // The doc's MD5 is the one in the MD5 row (the digest of the entries).
    assert_eq!(hex(md5_row(&bin, 6)), "bf25822c0fa6d8641bd930251e06b4c4");
    assert_eq!(
        hex(&Md5::digest(&bin[..6 * 32])),
        "bf25822c0fa6d8641bd930251e06b4c4"
    );
}

/// Reference doc 2.7: partitions_singleapp.csv file MD5.
#[test]
fn singleapp_vector() {
    let csv =
        include_str_corpus("partition-tables/csv-with-reference-bin/idf-partitions_singleapp.csv");
    let t = OwnedTable::from_csv(&csv, &opts(0x8000)).unwrap();
    let bin = t.to_binary(true).unwrap();
    assert_eq!(hex(md5_row(&bin, 3)), "f4ad4f4538564b5d7435b62c75b69524");
}

fn md5_row(bin: &[u8], row: usize) -> &[u8] {
    let r = &bin[row * 32..row * 32 + 32];
    assert_eq!(&r[..2], b"\xeb\xeb");
    &r[16..]
}

fn include_str_corpus(rel: &str) -> String {
    let dir = match std::env::var_os("OTTER_CORPUS") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
    };
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("corpus {rel}: {e}"))
}

// ---- host suite: CSVParserTests ----

#[test]
fn simple_partition_decimal() {
    let t = parse0("\n# Name,Type,SubType,Offset,Size,Flags\nfactory,0,2,65536,1048576,\n");
    let p = t.entries[0].partition;
    assert_eq!(
        (p.ty.0, p.subtype.0, p.offset, p.size),
        (0, 2, 65536, 1048576)
    );
    assert_eq!(t.entries[0].name, "factory");
}

#[test]
fn require_type() {
    let e = parse_err0("\n# Name,Type, SubType,Offset,Size\nihavenotype,\n");
    assert_eq!(e.kind, CsvErrorKind::EmptyType);
    assert_eq!(e.line, 3);
    assert!(e.to_string().contains("type"));
}

#[test]
fn keyword_equals_number() {
    let magic = parse0(
        "myapp, 0, 0,,  0x100000\nmyota_0, 0, 0x10,, 0x100000\nmyota_1, 0, 0x11,, 0x100000\n\
         myota_15, 0, 0x1f,, 0x100000\nmytest, 0, 0x20,, 0x100000\nmyota_status, 1, 0,, 0x2000\n",
    );
    let names = parse0(
        "myapp, app, factory,, 0x100000\nmyota_0, app, ota_0,, 0x100000\nmyota_1, app, ota_1,, 0x100000\n\
         myota_15, app, ota_15,, 0x100000\nmytest, app, test,, 0x100000\nmyota_status, data, ota,, 0x2000\n",
    );
    magic.validate(&vopts(0)).unwrap();
    names.validate(&vopts(0)).unwrap();
    let strip = |t: &OwnedTable| t.entries.iter().map(|e| e.partition).collect::<Vec<_>>();
    assert_eq!(strip(&magic), strip(&names));
    assert_eq!(names.entries[1].partition.subtype, SubType::OTA_0);
    assert_eq!(names.entries[3].partition.subtype, SubType::OTA_15);
}

#[test]
fn unit_suffixes() {
    let t = parse0("one_megabyte, app, factory, 64k, 1M\n");
    t.validate(&vopts(0)).unwrap();
    assert_eq!(offsets_sizes(&t), [(64 * 1024, 1024 * 1024)]);
}

#[test]
fn default_offsets() {
    let t = parse0(
        "first, app, factory,, 1M\nsecond, data, 0x15,, 1M\nminidata, data, 0x40,, 32K\n\
         otherapp, app, factory,, 1M\n",
    );
    let offs: Vec<u32> = t.entries.iter().map(|e| e.partition.offset).collect();
    assert_eq!(offs, [0x10000, 0x110000, 0x210000, 0x220000]);
}

#[test]
fn negative_size_is_end_address() {
    let t = parse0("first, app, factory, 0x10000, -2M\nsecond, data, 0x15,         ,  1M\n");
    t.validate(&vopts(0)).unwrap();
    assert_eq!(
        offsets_sizes(&t),
        [(0x10000, 0x200000 - 0x10000), (0x200000, 0x100000)]
    );
}

#[test]
fn overlapping_offsets_fail() {
    let e = parse_err0("\nfirst, app, factory, 0x100000, 2M\nsecond, app, ota_0,  0x200000, 1M\n");
    assert!(matches!(e.kind, CsvErrorKind::Overlap { .. }), "{e}");
    assert!(e.to_string().contains("overlap"));
    assert_eq!(e.line, 3);
}

#[test]
fn unique_names() {
    let t = parse0("first, app, factory, 0x100000, 1M\nfirst, app, ota_0,  0x200000, 1M\n");
    let e = t.validate(&vopts(0)).unwrap_err();
    assert!(matches!(e, ValidationError::DuplicateName { .. }));
    assert!(e.to_string().contains("partition names must be unique"));
}

#[test]
fn bootloader_row_needs_its_offset() {
    let e = parse_err0("bootloader, bootloader, primary, N/A, N/A\n");
    assert_eq!(e.kind, CsvErrorKind::PrimaryBootloaderOffsetMissing);
}

#[test]
fn bootloader_and_partition_table_rows() {
    let csv = "
bootloader,       bootloader,       primary, N/A, N/A
partition_table,  partition_table,  primary, N/A, N/A
FactoryApp,       app,              factory, ,    1M
OtaBTLDR,         bootloader,       ota,     ,    N/A
OtaPrtTable,      partition_table,  ota,     ,    N/A
RecoveryBTLDR,    bootloader,       recovery, N/A, N/A
";
    let o = CsvOptions {
        table_offset: 0x9000,
        primary_bootloader_offset: Some(0x1000),
        recovery_bootloader_offset: Some(0x200000),
        ..CsvOptions::default()
    };
    let t = OwnedTable::from_csv_with_env(csv, &o, &NoEnv).unwrap();
    t.validate(&vopts(0x9000)).unwrap();
    let bl = 0x9000 - 0x1000;
    assert_eq!(
        offsets_sizes(&t),
        [
            (0x1000, bl),
            (0x9000, 0x1000),
            (0x10000, 0x100000),
            (0x110000, bl),
            (0x118000, 0x1000),
            (0x200000, bl)
        ]
    );
}

// ---- BinaryOutputTests ----

#[test]
fn binary_entry_exact_bytes() {
    let t = parse0("\nfirst, 0x30, 0xEE, 0x100400, 0x300000\n");
    let b = t.to_binary(true).unwrap();
    assert_eq!(&b[0..4], b"\xaa\x50\x30\xee");
    assert_eq!(&b[4..12], b"\x00\x04\x10\x00\x00\x00\x30\x00");
    assert_eq!(
        &b[32..48],
        b"\xeb\xeb\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    );
    assert_eq!(
        &b[48..64],
        b"\x43\x03\x3f\x33\x40\x87\x57\x51\x69\x83\x9b\x40\x61\xb1\x27\x26"
    );
    assert!(b[64..].iter().all(|x| *x == 0xFF));
    // The custom type's offset 0x100400 is not sector-aligned: validation fails.
    assert!(matches!(
        t.validate(&vopts(0)),
        Err(ValidationError::OffsetMisaligned { align: 0x1000, .. })
    ));
}

#[test]
fn encrypted_flag_round_trips() {
    let t = parse0("first, app, factory,, 1M, encrypted\n");
    assert!(t.entries[0].partition.flags.encrypted());
    let back = PartitionTable::from_binary(&t.to_binary(true).unwrap()).unwrap();
    assert!(back.entries()[0].flags.encrypted());
}

#[test]
fn only_empty_subtype_is_not_0() {
    let t = parse0(
        "nvs,            data,    nvs,          , 0x4000,
otadata,        data,    ota,          , 0x2000,
phy_init,       data,    phy,          , 0x1000,
factory,        app, factory,          , 1M
ota_0,             0,  ota_0,          , 1M,
ota_1,             0,  ota_1,          , 1M,
storage,        data,       ,          , 512k,
storage2,       data, undefined,       , 12k,
",
    );
    t.validate(&vopts(0)).unwrap();
    assert_eq!(t.entries[1].partition.subtype.0, 0);
    assert_eq!(t.entries[6].partition.subtype.0, 0x06);
    assert_eq!(t.entries[7].partition.subtype.0, 0x06);
}

// ---- BinaryParserTests ----

fn longer_binary_table() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(
        b"\xaa\x50\x00\x00\x00\x00\x01\x00\x00\x00\x10\x00factory\0\0\0\0\0\0\0\0\0\0\0\0\0",
    );
    v.extend_from_slice(
        b"\xaa\x50\x01\x20\x00\x00\x11\x00\x00\x02\x00\x00data\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
    );
    v.extend_from_slice(
        b"\xaa\x50\x10\x00\x00\x00\x15\x00\x00\x10\x00\x00second\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
    );
    v.extend_from_slice(b"\xeb\xeb");
    v.extend_from_slice(&[0xFF; 14]);
    v.extend_from_slice(b"\xf9\xbd\x06\x1b\x45\x68\x6f\x86\x57\x1a\x2c\xd5\x2a\x1d\xa6\x5b");
    v.extend_from_slice(&[0xFF; 32]);
    v
}

#[test]
fn longer_binary_table_round_trips() {
    let bin = longer_binary_table();
    let t = PartitionTable::from_binary(&bin).unwrap();
    let names: Vec<String> = t.iter().map(|p| p.label.to_string()).collect();
    assert_eq!(names, ["factory", "data", "second"]);
    assert_eq!(t.entries()[2].ty.0, 0x10);
    let out = t.to_binary(true).unwrap();
    assert_eq!(&out[..bin.len()], bin.as_slice());
    assert!(out[bin.len()..].iter().all(|b| *b == 0xFF));
    // The CLI test: bin -> CSV -> bin identical, with no warning.
    let owned = OwnedTable::from_table(&t);
    assert_eq!(
        owned.validate(&vopts(0x8000)).unwrap(),
        Vec::<Warning>::new()
    );
    let again = OwnedTable::from_csv_with_env(&owned.to_csv(), &opts(0x8000), &NoEnv).unwrap();
    assert_eq!(
        again.validate(&vopts(0x8000)).unwrap(),
        Vec::<Warning>::new()
    );
    assert_eq!(again.to_binary(true).unwrap(), out);
}

#[test]
fn parse_one_entry() {
    let mut entry =
        b"\xaa\x50\x30\xee\x00\x00\x10\x00\x00\x00\x20\x000123456789abc\0\0\0\0\0\0\0".to_vec();
    entry.extend_from_slice(&[0xFF; 32]);
    let t = PartitionTable::from_binary(&entry).unwrap();
    let p = t.entries()[0];
    assert_eq!(
        (p.ty.0, p.subtype.0, p.offset, p.size),
        (0x30, 0xEE, 0x100000, 0x200000)
    );
    assert_eq!(p.label.as_str(), Some("0123456789abc"));
}

#[test]
fn bad_magic_and_bad_length() {
    let bad = b"OHAI\x00\x00\x10\x00\x00\x00\x20\x000123456789abc\0\0\0\0\0\0\0";
    let e = PartitionTable::from_binary(bad).unwrap_err();
    assert!(e.to_string().contains("invalid magic bytes"), "{e}");
    assert!(e.to_string().contains("entry 0 at byte offset 0x0"), "{e}");
    let short = b"OHAI\x00\x00\x10\x00\x00\x00\x20\x000123456789";
    let e = PartitionTable::from_binary(short).unwrap_err();
    assert!(e.to_string().contains("32-byte"), "{e}");
}

// ---- CSVOutputTests ----

#[test]
fn smart_formatting() {
    let t = parse0("\n# Name,Type,SubType,Offset,Size,Flags\nfactory,0,2,65536,1048576,\n");
    let csv = t.to_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with('#') && lines[1].starts_with('#'));
    assert_eq!(lines[2], "factory,app,2,0x10000,1M,");
    let back = OwnedTable::from_csv_with_env(&csv, &opts(0), &NoEnv).unwrap();
    assert_eq!(back.entries[0].partition, t.entries[0].partition);
}

// ---- VerificationTests ----

#[test]
fn secure_app_size_alignment() {
    let t = parse0("ota_0,  app, ota_0, ,  0x101000\nota_1,  app, ota_1, ,  0x100800\n");
    let run = |secure| {
        let o = ValidateOptions {
            secure,
            ..vopts(0x8000)
        };
        match t.validate(&o) {
            Err(ValidationError::SizeMisaligned { row, size, align }) => (row.name, size, align),
            r => panic!("{r:?}"),
        }
    };
    // "Partition ota_1 invalid: Size 0x100800 is not aligned to 0x1000"
    assert_eq!(
        run(SecureBoot::Off),
        ("ota_1".to_string(), 0x100800, 0x1000)
    );
    // "Partition ota_0 invalid: Size 0x101000 is not aligned to 0x10000"
    assert_eq!(
        run(SecureBoot::V1),
        ("ota_0".to_string(), 0x101000, 0x10000)
    );
    assert_eq!(run(SecureBoot::V2), ("ota_1".to_string(), 0x100800, 0x1000));
}

#[test]
fn bad_alignment() {
    let t = parse0("app,app, factory, 32K, 1M\n");
    assert!(t
        .validate(&vopts(0))
        .unwrap_err()
        .to_string()
        .contains("not aligned"));
    let t = parse0(
        "nvs,      data, nvs,     0x9420,  0x6000,\nphy_init, data, phy,     ,        0x1000,\n\
         factory,  app,  factory, ,        1M,\n\n",
    );
    let e = t.validate(&vopts(0)).unwrap_err();
    assert!(
        matches!(e, ValidationError::OffsetMisaligned { offset: 0x9420, .. }),
        "{e}"
    );
}

#[test]
fn overlap_with_table_names_line_3() {
    let e = parse_err0(
        "\n# Name,Type, SubType,Offset,Size\nnvs,      data, nvs,     0x0000,  0x6000,\n\
         phy_init, data, phy,     ,        0x1000,\nfactory,  app,  factory, ,        1M,\n",
    );
    assert_eq!(e.line, 3);
    assert!(matches!(
        e.kind,
        CsvErrorKind::Overlap {
            offset: 0,
            first: true,
            ..
        }
    ));
    assert!(e.to_string().contains("sets offset 0x0"), "{e}");
}

#[test]
fn otadata_rules() {
    let base = "nvs, data, nvs, , 0x4000,\notadata, data, ota, , 0x2000,\n";
    let t = parse0(&format!(
        "{base}otadata2, data, ota, , 0x2000,\nfactory, app, factory, , 1M\n"
    ));
    assert!(matches!(
        t.validate(&vopts(0)),
        Err(ValidationError::MultipleOtadata { tee: false, .. })
    ));
    let t = parse0("otadata, data, ota, , 0x3000,\n");
    assert!(t
        .validate(&vopts(0))
        .unwrap_err()
        .to_string()
        .contains("otadata partition must have size = 0x2000"));
}

#[test]
fn app_cannot_have_empty_subtype() {
    let e = parse_err0("nvs, data, nvs, , 0x4000,\nfactory, app, , , 1M\n");
    assert_eq!(e.kind, CsvErrorKind::EmptyAppSubtype);
    assert_eq!(e.line, 2);
}

#[test]
fn warnings_are_not_errors() {
    let w = parse0("app, 1, 2, 32K, 1M\n").validate(&vopts(0)).unwrap();
    assert!(matches!(w.as_slice(), [Warning::NameIsTypeKeyword { .. }]));
    let w = parse0("ota_0, app, ota_1, , 1M\n")
        .validate(&vopts(0))
        .unwrap();
    assert!(matches!(
        w.as_slice(),
        [Warning::NameIsSubtypeKeyword { .. }]
    ));
}

#[test]
fn size_error() {
    let t = parse0("factory, app, factory, 0x10000, 20M\n");
    let o = ValidateOptions {
        flash_size: Some(16 << 20),
        ..vopts(0)
    };
    let e = t.validate(&o).unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
}

// ---- reference doc section 2.4 / 11 edge cases ----

#[test]
fn grammar_edge_cases() {
    // 010 is rejected; 0x10K and 1_000 are accepted.
    let e = parse_err0("a, data, nvs, 010, 0x4000\n");
    assert!(matches!(e.kind, CsvErrorKind::InvalidNumber { .. }), "{e}");
    let t = parse0("a, data, nvs, , 0x10K\nb, data, nvs, , 12_288\n");
    assert_eq!(t.entries[0].partition.size, 0x4000);
    assert_eq!(t.entries[1].partition.size, 12288);
    // Type > 255 rejected with the line.
    let e = parse_err0("a, 256, 0, , 0x4000\n");
    assert!(matches!(e.kind, CsvErrorKind::OutOfRange { .. }), "{e}");
    // Long names: full name kept, label truncated.
    let t = parse0("a_very_long_partition_name, data, nvs, , 0x4000\n");
    assert_eq!(t.entries[0].name, "a_very_long_partition_name");
    assert_eq!(t.entries[0].partition.label.as_bytes(), b"a_very_long_part");
    // Inline '#' is not a comment; quoting does not exist.
    let t = parse0("a#b, data, nvs, , 0x4000\n");
    assert_eq!(t.entries[0].name, "a#b");
}

#[test]
fn variables_from_an_injected_environment() {
    let env = |n: &str| match n {
        "SIZE" => Some("0x4000".to_string()),
        "NAME" => Some("nvs".to_string()),
        _ => None,
    };
    let t = OwnedTable::from_csv_with_env("$NAME, data, nvs, , ${SIZE}\n", &opts(0), &env).unwrap();
    assert_eq!(t.entries[0].name, "nvs");
    assert_eq!(t.entries[0].partition.size, 0x4000);
    let e = OwnedTable::from_csv_with_env("$OTHER, data, nvs, , 1K\n", &opts(0), &env).unwrap_err();
    assert!(e.to_string().contains("unknown variable 'OTHER'"), "{e}");
}
