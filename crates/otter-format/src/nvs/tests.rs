//! Unit tests: writer round trips, `plan_set` / `plan_erase_key` power cuts,
//! the generator as oracle for in-place writes, never-panic checks.

use alloc::string::String;
use alloc::vec::Vec;
use proptest::prelude::*;

use super::*;

fn sample(size: usize) -> Vec<u8> {
    let mut w = NvsWriter::new(size).expect("size");
    w.namespace("otter").expect("ns");
    w.set_u8("www_slot", 1).expect("u8");
    w.set_u32("boot_count", 0xDEAD_BEEF).expect("u32");
    w.set_str("name", "device-1").expect("str");
    w.namespace("wifi").expect("ns");
    w.set_i32("rssi", -60).expect("i32");
    w.finish()
}

#[test]
fn crc_matches_esp_rom() {
    // zlib.crc32(b"123456789", 0xFFFFFFFF)
    assert_eq!(crc32(b"123456789"), 0xd202_d277);
}

#[test]
fn writer_round_trip() {
    let img = sample(0x6000);
    assert_eq!(img.len(), 0x6000);
    let nvs = Nvs::parse(&img).expect("parse");
    assert_eq!(nvs.get_u8("otter", "www_slot"), Some(1));
    assert_eq!(nvs.get_u32("otter", "boot_count"), Some(0xDEAD_BEEF));
    assert_eq!(nvs.get_str("otter", "name"), Some("device-1"));
    assert_eq!(nvs.get_i32("wifi", "rssi"), Some(-60));
    assert_eq!(nvs.get_u8("wifi", "www_slot"), None);
    assert_eq!(nvs.iter().count(), 4);
}

#[test]
fn writer_spills_to_next_page() {
    let mut w = NvsWriter::new(0x4000).expect("size");
    w.namespace("otter").expect("ns");
    for i in 0..300u32 {
        w.set_u32(&alloc::format!("k{i}"), i).expect("u32");
    }
    let img = w.finish();
    assert_eq!(le32_at(&img, 0), PageState::Full.word());
    assert_eq!(le32_at(&img, PAGE_SIZE), PageState::Full.word());
    assert_eq!(le32_at(&img, 2 * PAGE_SIZE), PageState::Active.word());
    let nvs = Nvs::parse(&img).expect("parse");
    for i in 0..300u32 {
        assert_eq!(nvs.get_u32("otter", &alloc::format!("k{i}")), Some(i));
    }
    let mut w = NvsWriter::new(0x3000).expect("size");
    w.namespace("otter").expect("ns");
    let full = (0..300u32).try_for_each(|i| w.set_u32(&alloc::format!("k{i}"), i));
    assert_eq!(full, Err(NvsError::Full));
}

fn le32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Every prefix of the writes reads as the old or the new value.
fn check_cuts(img: &[u8], ns: &str, key: &str, old: Option<u8>, new: u8) -> Vec<u8> {
    let ops = plan_set_u8(img, ns, key, new).expect("plan");
    for n in 0..=ops.len() {
        let mut cut = img.to_vec();
        apply(&mut cut, &ops[..n]);
        let got = Nvs::parse(&cut)
            .unwrap_or_else(|e| panic!("after {n} of {} writes: {e}", ops.len()))
            .get_u8(ns, key);
        assert!(got == old || got == Some(new), "after {n} writes: {got:?}");
        // The last write finishes the update.
        if n == ops.len() {
            assert_eq!(got, Some(new));
        }
    }
    let mut done = img.to_vec();
    apply(&mut done, &ops);
    done
}

#[test]
fn set_u8_replaces_with_esp_idf_order() {
    let img = sample(0x6000);
    let ops = plan_set_u8(&img, "otter", "www_slot", 0).expect("plan");
    // entry, its bitmap word, the old entry's bitmap word.
    assert_eq!(ops.len(), 3);
    assert_eq!(ops[0].len(), ENTRY_SIZE);
    assert_eq!(ops[1].offset(), BITMAP_OFFSET);
    assert_eq!(ops[2].offset(), BITMAP_OFFSET);
    let after = check_cuts(&img, "otter", "www_slot", Some(1), 0);
    assert_eq!(plan_set_u8(&after, "otter", "www_slot", 0), Ok(Vec::new()));
    // A new namespace on an erased partition.
    let blank = alloc::vec![0xFF; 0x3000];
    let img = check_cuts(&blank, "otter", "www_slot", None, 7);
    let nvs = Nvs::parse(&img).expect("parse");
    assert_eq!(nvs.namespaces().collect::<Vec<_>>(), [(1, "otter")]);
}

#[test]
fn set_u8_moves_to_a_new_page_when_full() {
    let mut img = sample(0x3000);
    let mut v = 1u8;
    // 200 updates fill page 0 (126 entries) and go on in page 1.
    for _ in 0..200 {
        img = check_cuts(&img, "otter", "www_slot", Some(v), v.wrapping_add(1));
        v = v.wrapping_add(1);
    }
    assert_eq!(le32_at(&img, 0), PageState::Full.word());
    assert_eq!(le32_at(&img, PAGE_SIZE), PageState::Active.word());
    assert_eq!(le32_at(&img, PAGE_SIZE + 4), 1, "sequence number");
    let nvs = Nvs::parse(&img).expect("parse");
    assert_eq!(nvs.get_str("otter", "name"), Some("device-1"));
    // The sample took 7 entries: 207 written, 81 of them in page 1. Page 1
    // is full after 45 more; the last free page is the spare, so the next
    // update collects garbage: page 1 (one live entry, more unused than page
    // 0's 120) is marked freeing, page 2 activated, the live item copied,
    // page 1 erased.
    for _ in 0..45 {
        img = check_cuts(&img, "otter", "www_slot", Some(v), v.wrapping_add(1));
        v = v.wrapping_add(1);
    }
    let ops = plan_set_u8(&img, "otter", "www_slot", v.wrapping_add(1)).expect("plan");
    assert_eq!(
        ops[0],
        FlashOp::Program {
            offset: PAGE_SIZE,
            bytes: PageState::Full.word().to_le_bytes().to_vec()
        },
        "page 1 marked full"
    );
    assert_eq!(
        ops[1],
        FlashOp::Program {
            offset: PAGE_SIZE,
            bytes: PageState::Freeing.word().to_le_bytes().to_vec()
        },
        "page 1 marked freeing"
    );
    assert_eq!(ops[2].offset(), 2 * PAGE_SIZE, "page 2 activated");
    let erase = ops
        .iter()
        .position(|op| *op == FlashOp::Erase { offset: PAGE_SIZE })
        .expect("page 1 erased");
    // One live item of one entry: the entry, then its state word.
    assert_eq!(erase, 3 + 2);
    img = check_cuts(&img, "otter", "www_slot", Some(v), v.wrapping_add(1));
    assert_eq!(le32_at(&img, PAGE_SIZE), PageState::Uninitialized.word());
    assert_eq!(le32_at(&img, 0), PageState::Full.word());
    assert_eq!(le32_at(&img, 2 * PAGE_SIZE + 4), 2, "sequence number");
    let nvs = Nvs::parse(&img).expect("parse");
    assert_eq!(nvs.get_str("otter", "name"), Some("device-1"));
}

#[test]
fn torn_entry_is_skipped_and_not_reused() {
    let img = sample(0x3000);
    let ops = plan_set_u8(&img, "otter", "www_slot", 9).expect("plan");
    let mut cut = img.clone();
    apply(&mut cut, &ops[..1]);
    assert_eq!(
        Nvs::parse(&cut).expect("parse").get_u8("otter", "www_slot"),
        Some(1)
    );
    let again = plan_set_u8(&cut, "otter", "www_slot", 9).expect("plan");
    assert_eq!(again[0].offset(), ops[0].offset() + ENTRY_SIZE);
}

#[test]
fn errors_name_page_and_entry() {
    let mut img = sample(0x3000);
    img[FIRST_ENTRY_OFFSET + ENTRY_SIZE + 24] ^= 1;
    assert!(matches!(
        Nvs::parse(&img),
        Err(NvsError::EntryCrc {
            page: 0,
            entry: 1,
            ..
        })
    ));
    let mut img = sample(0x3000);
    img[10] = 0;
    assert!(matches!(
        Nvs::parse(&img),
        Err(NvsError::HeaderCrc { page: 0, .. })
    ));
    assert_eq!(
        Nvs::parse(&[0xFF; 100]),
        Err(NvsError::PartitionSize { len: 100 })
    );
    let mut w = NvsWriter::new(0x3000).expect("size");
    assert!(matches!(
        w.set_u8("k", 1),
        Err(NvsError::NoNamespace { .. })
    ));
    assert!(matches!(
        w.namespace("a_name_that_is_too_long"),
        Err(NvsError::KeyName { .. })
    ));
}

#[test]
fn dirty_uninitialized_page_is_erased_before_use() {
    // Fuzz regression: a page whose state word is erased but whose bitmap is
    // not must not take new entries as it is (they would read as erased).
    let mut img = alloc::vec![0xFF; 0x3000];
    img[BITMAP_OFFSET] = 0;
    // ESP-IDF erases such a page before it activates it.
    let ops = plan_set_u8(&img, "otter", "www_slot", 7).expect("plan");
    assert_eq!(ops[0], FlashOp::Erase { offset: 0 });
    apply(&mut img, &ops);
    let nvs = Nvs::parse(&img).expect("parse");
    assert_eq!(nvs.get_u8("otter", "www_slot"), Some(7));
}

/// Every prefix of `ops` on `img` reads `key` as `old` or `new` (`None`:
/// gone); all of them as `new`. Returns the image after all of them.
fn check_value_cuts(
    img: &[u8],
    ops: &[FlashOp],
    ns: &str,
    key: &str,
    old: Option<&Value>,
    new: Option<&Value>,
) -> Vec<u8> {
    for n in 0..=ops.len() {
        let mut cut = img.to_vec();
        apply(&mut cut, &ops[..n]);
        let nvs =
            Nvs::parse(&cut).unwrap_or_else(|e| panic!("after {n} of {} writes: {e}", ops.len()));
        let got = nvs.value(ns, key);
        assert!(
            got == old || got == new,
            "after {n} of {} writes: {got:?}",
            ops.len()
        );
        if n == ops.len() {
            assert_eq!(got, new);
        }
    }
    let mut done = img.to_vec();
    apply(&mut done, ops);
    done
}

#[test]
fn set_u32_and_erase_key_are_power_cut_safe() {
    let mut img = sample(0x4000);
    let mut old = Some(Value::U32(0xDEAD_BEEF));
    for v in [1u32, 0xFFFF_FFFF, 0, 7, 7] {
        let ops = plan_set_u32(&img, "otter", "boot_count", v).expect("plan");
        if old == Some(Value::U32(v)) {
            assert!(ops.is_empty(), "an unchanged value writes nothing");
        }
        let new = Value::U32(v);
        img = check_value_cuts(&img, &ops, "otter", "boot_count", old.as_ref(), Some(&new));
        old = Some(new);
    }
    // Erasing: one bitmap word, old value or gone.
    let ops = plan_erase_key(&img, "otter", "boot_count").expect("plan");
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].len(), 4);
    img = check_value_cuts(&img, &ops, "otter", "boot_count", old.as_ref(), None);
    // Erasing what is not there writes nothing.
    assert_eq!(plan_erase_key(&img, "otter", "boot_count"), Ok(Vec::new()));
    assert_eq!(plan_erase_key(&img, "nope", "boot_count"), Ok(Vec::new()));
    // The other keys are intact, and the key can come back.
    let ops = plan_set_u32(&img, "otter", "boot_count", 3).expect("plan");
    img = check_value_cuts(
        &img,
        &ops,
        "otter",
        "boot_count",
        None,
        Some(&Value::U32(3)),
    );
    let nvs = Nvs::parse(&img).expect("parse");
    assert_eq!(nvs.get_str("otter", "name"), Some("device-1"));
    assert_eq!(nvs.get_u8("otter", "www_slot"), Some(1));
    assert_eq!(nvs.get_i32("wifi", "rssi"), Some(-60));
}

#[test]
fn set_str_and_erase_string_are_power_cut_safe() {
    let mut img = sample(0x5000);
    let mut old = Some(Value::Str("device-1".into()));
    // Lengths around entry boundaries: whole entries only, a tail only, both.
    for len in [0usize, 31, 32, 33, 64, 100, 700, 3999] {
        let s: String = (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let ops = plan_set_str(&img, "otter", "name", &s).expect("plan");
        let new = Value::Str(s);
        img = check_value_cuts(&img, &ops, "otter", "name", old.as_ref(), Some(&new));
        old = Some(new);
    }
    let ops = plan_erase_key(&img, "otter", "name").expect("plan");
    // 3999 + NUL = 125 data entries + the header: 126 states in 8 words.
    assert_eq!(ops.len(), 8);
    img = check_value_cuts(&img, &ops, "otter", "name", old.as_ref(), None);
    assert_eq!(
        Nvs::parse(&img).expect("parse").get_u8("otter", "www_slot"),
        Some(1)
    );
    assert!(matches!(
        plan_set_str(&img, "otter", "name", &"x".repeat(4000)),
        Err(NvsError::ValueTooLong { .. })
    ));
    assert!(matches!(
        plan_set(&img, "otter", "blob", &Value::Blob(alloc::vec![1, 2])),
        Err(NvsError::BlobInPlace { .. })
    ));
}

#[test]
fn range_states_are_written_last_word_first() {
    let blank = alloc::vec![0xFF; 0x3000];
    // 40 data bytes + NUL: header + 2 data entries, one of them a tail.
    let ops = plan_set_str(&blank, "otter", "k", &"z".repeat(40)).expect("plan");
    // Page header, namespace entry + state, header + state, body + state,
    // tail + state.
    let offsets: Vec<usize> = ops.iter().map(|o| o.offset()).collect();
    assert_eq!(
        offsets,
        [0, 64, 32, 96, 32, 128, 32, 160, 32],
        "{offsets:x?}"
    );
    let img = check_value_cuts(
        &blank,
        &ops,
        "otter",
        "k",
        None,
        Some(&Value::Str("z".repeat(40))),
    );
    // A 17-entry string from entry 2 spans bitmap words 0 and 1: erasing it
    // writes word 1, then word 0.
    let mut img = img;
    let ops = plan_erase_key(&img, "otter", "k").expect("plan");
    assert_eq!(ops.len(), 1);
    apply(&mut img, &ops);
    let ops = plan_set_str(&img, "otter", "k", &"y".repeat(500)).expect("plan");
    apply(&mut img, &ops);
    let ops = plan_erase_key(&img, "otter", "k").expect("plan");
    let offsets: Vec<usize> = ops.iter().map(|o| o.offset()).collect();
    assert_eq!(offsets, [BITMAP_OFFSET + 4, BITMAP_OFFSET], "{offsets:x?}");
}

#[test]
fn a_string_that_does_not_fit_moves_to_a_new_page() {
    let mut img = sample(0x4000);
    // Fill page 0 up to 120 used entries.
    let used = |img: &[u8]| {
        (0..ENTRY_COUNT)
            .filter(|&e| layout::entry_state(img, e) != 0b11)
            .count()
    };
    let mut i = 0;
    while used(&img) < 120 {
        let ops = plan_set_u32(&img, "otter", &alloc::format!("k{i}"), i).expect("plan");
        apply(&mut img, &ops);
        i += 1;
    }
    // 6 entries left: a 200-byte string needs 1 + 7.
    let s = "q".repeat(199);
    let ops = plan_set_str(&img, "otter", "big", &s).expect("plan");
    assert_eq!(ops[0].offset(), 0, "page 0 marked full first");
    assert_eq!(
        ops[0],
        FlashOp::Program {
            offset: 0,
            bytes: PageState::Full.word().to_le_bytes().to_vec()
        }
    );
    assert_eq!(ops[1].offset(), PAGE_SIZE, "page 1 initialised");
    let img = check_value_cuts(&img, &ops, "otter", "big", None, Some(&Value::Str(s)));
    assert_eq!(
        Nvs::parse(&img).expect("parse").get_u32("otter", "k3"),
        Some(3)
    );
}

/// The project's Python with ESP-IDF's generator, or a loud panic.
fn python() -> std::path::PathBuf {
    let py = match std::env::var_os("OTTER_PYTHON") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    };
    assert!(
        py.is_file(),
        "the Python oracles are not installed at {}: run scripts/setup-oracles.sh",
        py.display()
    );
    py
}

/// `esp-idf-nvs-partition-gen generate` of `csv` for a `size`-byte partition.
fn generated(name: &str, csv: &str, size: usize) -> Vec<u8> {
    let dir = std::env::temp_dir().join(alloc::format!(
        "otter-nvs-inplace-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("in.csv");
    let output = dir.join("out.bin");
    std::fs::write(&input, csv).expect("CSV");
    let out = std::process::Command::new(python())
        .args(["-m", "esp_idf_nvs_partition_gen", "generate"])
        .arg(&input)
        .arg(&output)
        .arg(alloc::format!("0x{size:x}"))
        .output()
        .expect("running the generator");
    assert!(
        out.status.success(),
        "generator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = std::fs::read(&output).expect("generator output");
    let _ = std::fs::remove_dir_all(&dir);
    bin
}

/// Keys set one by one in place on an erased partition give the bytes the
/// generator writes for the same rows: the same page header, entries, CRCs
/// and state bitmap, for u8, u32 and strings of every entry shape.
#[test]
fn in_place_writes_match_the_generator() {
    let long = "L".repeat(300);
    let rows: [(&str, Value); 7] = [
        ("pull_tag", Value::U32(0x1234_ABCD)),
        ("www_slot", Value::U8(1)),
        ("empty", Value::Str(String::new())),
        ("exact32", Value::Str("x".repeat(31))),
        ("name", Value::Str("device-1".into())),
        ("long", Value::Str(long.clone())),
        ("zero", Value::U32(0)),
    ];
    let mut csv = String::from("key,type,encoding,value\notter,namespace,,\n");
    for (k, v) in &rows {
        let (enc, val) = match v {
            Value::U8(x) => ("u8", alloc::format!("{x}")),
            Value::U32(x) => ("u32", alloc::format!("{x}")),
            Value::Str(x) => ("string", x.clone()),
            _ => unreachable!(),
        };
        csv.push_str(&alloc::format!("{k},data,{enc},{val}\n"));
    }
    let theirs = generated("set", &csv, 0x3000);
    let mut ours = alloc::vec![0xFF; 0x3000];
    for (k, v) in &rows {
        let ops = plan_set(&ours, "otter", k, v).expect("plan");
        apply(&mut ours, &ops);
    }
    for e in 0..ENTRY_COUNT {
        let at = FIRST_ENTRY_OFFSET + e * ENTRY_SIZE;
        assert_eq!(
            ours[at..at + ENTRY_SIZE],
            theirs[at..at + ENTRY_SIZE],
            "entry {e}"
        );
    }
    assert_eq!(
        ours[..FIRST_ENTRY_OFFSET],
        theirs[..FIRST_ENTRY_OFFSET],
        "header and bitmap"
    );
    assert!(ours == theirs, "whole partition");
    // And a value changed in place reads back as ESP-IDF would read it.
    let ops = plan_set_u32(&theirs, "otter", "pull_tag", 0x5555_0000).expect("plan");
    let mut changed = theirs.clone();
    apply(&mut changed, &ops);
    let nvs = Nvs::parse(&changed).expect("parse");
    assert_eq!(nvs.get_u32("otter", "pull_tag"), Some(0x5555_0000));
    assert_eq!(nvs.get_str("otter", "long"), Some(long.as_str()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_partitions_never_panic(pages in 1usize..4, seed in any::<Vec<u8>>()) {
        let mut img = alloc::vec![0xFF; pages * PAGE_SIZE];
        for (i, b) in seed.iter().enumerate() {
            if let Some(d) = img.get_mut(i * 97 % (pages * PAGE_SIZE)) {
                *d = *b;
            }
        }
        let _ = Nvs::parse(&img);
        let _ = plan_set_u8(&img, "otter", "www_slot", 3);
        let _ = plan_set_str(&img, "otter", "name", "x");
        let _ = plan_erase_key(&img, "otter", "name");
    }

    #[test]
    fn mutated_partitions_never_panic(
        flips in proptest::collection::vec((0usize..0x4000, any::<u8>()), 1..16),
    ) {
        let mut img = sample(0x4000);
        for (at, x) in flips {
            img[at] ^= x;
        }
        if let Ok(nvs) = Nvs::parse(&img) {
            let _ = nvs.iter().count();
        }
        let _ = plan_set_u8(&img, "otter", "www_slot", 3);
        let _ = plan_set_u8(&img, "new", "k", 3);
        let _ = plan_set_str(&img, "otter", "name", &"n".repeat(300));
        let _ = plan_erase_key(&img, "otter", "name");
        let _ = plan_erase_key(&img, "otter", "boot_count");
    }

    #[test]
    fn writer_round_trips_strings(s in "[ -~]{0,600}", n in 0u32..200) {
        let mut w = NvsWriter::new(0x8000).expect("size");
        w.namespace("otter").expect("ns");
        for i in 0..n {
            w.set_u32(&alloc::format!("k{i}"), i).expect("u32");
        }
        w.set_str("s", &s).expect("str");
        let nvs = Nvs::parse(&w.finish()).expect("parse");
        prop_assert_eq!(nvs.get_str("otter", "s"), Some(s.as_str()));
        let _ = String::new();
    }
}

/// Regression (fuzz target `nvs`): a namespace entry with index 0 names no
/// namespace. The planner used to take that index for the namespace and
/// write the value as a namespace entry (namespace 0), which no reader
/// returns; now both skip it, and `set_u8` makes a real namespace.
#[test]
fn a_namespace_entry_with_index_zero_names_no_namespace() {
    for bad in [0u8, 255] {
        let mut img = sample(0x6000);
        let at = FIRST_ENTRY_OFFSET;
        assert_eq!(
            &img[at + 8..at + 13],
            b"otter",
            "the first entry is otter's"
        );
        img[at + 24] = bad;
        let mut e = [0u8; ENTRY_SIZE];
        e.copy_from_slice(&img[at..at + ENTRY_SIZE]);
        let crc = layout::entry_crc(&e);
        img[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        let before = Nvs::load(&img).expect("loads");
        assert_eq!(before.get_u8("otter", "www_slot"), None, "index {bad}");
        assert_eq!(before.get_i32("wifi", "rssi"), Some(-60));
        let ops = plan_set_u8(&img, "otter", "www_slot", 7).expect("plan");
        apply(&mut img, &ops);
        let after = Nvs::load(&img).expect("loads");
        assert_eq!(after.get_u8("otter", "www_slot"), Some(7), "index {bad}");
        assert_eq!(after.get_i32("wifi", "rssi"), Some(-60));
    }
}

/// A fuzz finding: two active pages with the same sequence number (only
/// damage makes them). The writer cannot tell which is newer, and a value
/// written beside one of them did not read back; now nothing is written and
/// the error names the pages.
#[test]
fn pages_sharing_a_sequence_number_are_not_written() {
    let mut w = NvsWriter::new(3 * PAGE_SIZE).unwrap();
    w.namespace("otter").unwrap();
    w.set_u8("a", 1).unwrap();
    let mut img = w.finish();
    let (p0, rest) = img.split_at_mut(PAGE_SIZE);
    rest[..PAGE_SIZE].copy_from_slice(p0);
    assert_eq!(
        plan_set_u8(&img, "otter", "www_slot", 7),
        Err(NvsError::DuplicateSequence {
            first: 0,
            second: 1,
            seq: 0
        })
    );
}
