//! Unit tests: writer round trips, `set_u8` power cuts, never-panic checks.

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
    assert_eq!(ops[0].bytes.len(), ENTRY_SIZE);
    assert_eq!(ops[1].offset, BITMAP_OFFSET);
    assert_eq!(ops[2].offset, BITMAP_OFFSET);
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
    // Page 1 is full after 126 more; the last free page is kept for GC.
    let mut full = None;
    for round in 0..200 {
        match plan_set_u8(&img, "otter", "www_slot", v.wrapping_add(1)) {
            Ok(_) => {
                img = check_cuts(&img, "otter", "www_slot", Some(v), v.wrapping_add(1));
                v = v.wrapping_add(1);
            }
            Err(e) => {
                full = Some((round, e));
                break;
            }
        }
    }
    // The sample took 7 entries: 207 written, 81 of them in page 1.
    assert_eq!(full, Some((126 - 81, NvsError::Full)));
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
    assert_eq!(again[0].offset, ops[0].offset + ENTRY_SIZE);
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
fn dirty_uninitialized_page_is_not_used() {
    // Fuzz regression: a page whose state word is erased but whose bitmap is
    // not must not take new entries (they would read as erased).
    let mut img = alloc::vec![0xFF; 0x3000];
    img[BITMAP_OFFSET] = 0;
    let ops = plan_set_u8(&img, "otter", "www_slot", 7).expect("plan");
    assert!(ops.iter().all(|op| op.offset >= PAGE_SIZE));
    apply(&mut img, &ops);
    let nvs = Nvs::parse(&img).expect("parse");
    assert_eq!(nvs.get_u8("otter", "www_slot"), Some(7));
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
