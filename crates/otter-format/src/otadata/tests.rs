use super::*;
use proptest::prelude::*;
use std::vec;
use std::vec::Vec;

/// An independent bit-by-bit model of `esp_rom_crc32_le(0xFFFFFFFF, data)`
/// (ESP-IDF's reference C version in esp_rom/linux/esp_rom_crc.c inverts the
/// seed on entry and the result on exit).
fn model_crc(seed: u32, data: &[u8]) -> u32 {
    let mut crc = !seed;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn crc_vectors_from_the_rom_algorithm() {
    // Vectors from the reference (section 4.2), checked against the ROM algorithm.
    for (seq, crc) in [
        (1, 0x4743_989A),
        (2, 0x55F6_3774),
        (3, 0xED4A_5011),
        (4, 0x709D_68A8),
        (6, 0xDA94_A023),
        (0, 0xFFFF_FFFF),
        (0xFFFF_FFFF, 0x2144_DF1C),
    ] {
        assert_eq!(seq_crc(seq), crc, "seq {seq:#x}");
    }
}

#[test]
fn erased_entry_never_passes_crc() {
    assert!(!SelectEntry::ERASED.crc_ok());
    assert!(!SelectEntry::ERASED.is_valid());
    assert!(SelectEntry::ERASED.is_erased());
}

proptest! {
    #[test]
    fn crc_matches_independent_model(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        prop_assert_eq!(esp_crc32(&data), model_crc(0xFFFF_FFFF, &data));
    }

    #[test]
    fn entry_bytes_round_trip(bytes in proptest::array::uniform32(any::<u8>())) {
        prop_assert_eq!(SelectEntry::from_bytes(&bytes).to_bytes(), bytes);
    }

    #[test]
    fn any_partition_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..9000)) {
        let parsed = Otadata::from_partition(&bytes);
        prop_assert_eq!(parsed.is_ok(), bytes.len() == OTADATA_SIZE);
        if let Ok(o) = parsed {
            for n in 0..=16u8 {
                let _ = o.active_slot(n);
            }
        }
    }

    /// Whatever valid otadata a device has, selecting a slot makes the
    /// bootloader's reading of the result select exactly that slot.
    #[test]
    fn set_boot_selects_the_requested_slot(
        seq0 in prop_oneof![Just(SEQ_EMPTY), 0u32..1000, any::<u32>()],
        seq1 in prop_oneof![Just(SEQ_EMPTY), 0u32..1000, any::<u32>()],
        st0 in 0u32..6, st1 in 0u32..6,
        slot_count in 1u8..=16, slot in 0u8..16,
        in_place in any::<bool>(),
    ) {
        let slot = slot % slot_count;
        let cur = Otadata { entries: [
            SelectEntry::new(seq0, OtaState::from_raw(st0)),
            SelectEntry::new(seq1, OtaState::from_raw(st1)),
        ]};
        let rule = if in_place { SameSlotRule::InPlace } else { SameSlotRule::OtherSector };
        match plan_set_boot(&cur, slot, slot_count, OtaState::New, rule) {
            Ok(w) => {
                let next = w.apply(&cur);
                prop_assert_eq!(next.active_slot(slot_count), Some(slot));
                prop_assert!(w.entry.crc_ok());
            }
            Err(e) => prop_assert_eq!(e, OtadataError::SequenceExhausted),
        }
    }
}

fn run(steps: &[u8], slot_count: u8, rule: SameSlotRule) -> Vec<(usize, u32)> {
    let mut cur = Otadata::ERASED;
    let mut out = Vec::new();
    for &slot in steps {
        let w = plan_set_boot(&cur, slot, slot_count, OtaState::Undefined, rule).unwrap();
        out.push((w.sector, w.entry.seq));
        cur = w.apply(&cur);
    }
    out
}

#[test]
fn documented_two_slot_sequence() {
    // esp-idf-formats.md 4.4: ota_0 -> s0 seq1, ota_1 -> s1 seq2, ota_0 -> s0 seq3, ota_1 -> s1 seq4.
    assert_eq!(
        run(&[0, 1, 0, 1], 2, SameSlotRule::InPlace),
        vec![(0, 1), (1, 2), (0, 3), (1, 4)]
    );
}

#[test]
fn otatool_three_slot_sequence_with_v5_rule() {
    // Verified with ESP-IDF v5.5.5 otatool.py against a flash file (esp-idf-formats.md 10.3).
    assert_eq!(
        run(&[1, 2, 0, 0, 2], 3, SameSlotRule::OtherSector),
        vec![(0, 2), (1, 3), (0, 4), (1, 4), (1, 6)]
    );
}

#[test]
fn v6_reselect_rewrites_the_active_sector_in_place() {
    assert_eq!(
        run(&[0, 1, 1], 2, SameSlotRule::InPlace),
        vec![(0, 1), (1, 2), (1, 2)]
    );
}

#[test]
fn state_and_label_follow_esp_idf() {
    let mut cur = Otadata::ERASED;
    cur.entries[1].seq_label = *b"label-bytes-kept-xx!";
    cur.entries[0] = SelectEntry::new(1, OtaState::Valid);
    let w = plan_set_boot(&cur, 1, 2, OtaState::New, SameSlotRule::InPlace).unwrap();
    assert_eq!(w.sector, 1);
    assert_eq!(w.offset(), 0x1000);
    assert_eq!(w.entry.seq, 2);
    assert_eq!(w.entry.ota_state(), OtaState::New);
    assert_eq!(&w.entry.seq_label, b"label-bytes-kept-xx!");
    let bytes = w.entry.to_bytes();
    assert_eq!(&bytes[0..4], &[2, 0, 0, 0]);
    assert_eq!(&bytes[24..28], &[0, 0, 0, 0]);
    assert_eq!(&bytes[28..32], &0x55F6_3774u32.to_le_bytes());
}

#[test]
fn invalid_and_aborted_entries_are_skipped() {
    let o = Otadata {
        entries: [
            SelectEntry::new(5, OtaState::Aborted),
            SelectEntry::new(2, OtaState::Valid),
        ],
    };
    assert_eq!(o.active(), Some(1));
    assert_eq!(o.active_slot(2), Some(1));
    let o = Otadata {
        entries: [
            SelectEntry::new(5, OtaState::Invalid),
            SelectEntry::new(2, OtaState::Aborted),
        ],
    };
    assert_eq!(o.active(), None);
    assert!(!o.is_initial());
}

#[test]
fn bad_crc_is_not_valid_but_state_is_ignored_for_validity() {
    let mut e = SelectEntry::new(3, OtaState::Unknown(77));
    assert!(e.is_valid());
    e.crc ^= 1;
    assert!(!e.is_valid());
    assert!(!e.is_invalid());
}

#[test]
fn tie_prefers_sector_zero() {
    let o = Otadata {
        entries: [
            SelectEntry::new(4, OtaState::Valid),
            SelectEntry::new(4, OtaState::New),
        ],
    };
    assert_eq!(o.active(), Some(0));
}

#[test]
fn slot_arithmetic_is_u32_wrapping() {
    // seq 0 has CRC 0xFFFFFFFF and counts as valid; (0 - 1) % n in u32.
    let e = SelectEntry::new(0, OtaState::Undefined);
    assert!(e.is_valid());
    assert_eq!(e.slot(2), Some((u32::MAX % 2) as u8));
    assert_eq!(e.slot(3), Some((u32::MAX % 3) as u8));
    assert_eq!(e.slot(0), None);
}

#[test]
fn slot_errors() {
    let cur = Otadata::ERASED;
    assert_eq!(
        plan_set_boot(&cur, 2, 2, OtaState::New, SameSlotRule::InPlace),
        Err(OtadataError::SlotOutOfRange {
            slot: 2,
            slot_count: 2
        })
    );
    assert_eq!(
        plan_set_boot(&cur, 0, 0, OtaState::New, SameSlotRule::InPlace),
        Err(OtadataError::BadSlotCount { slot_count: 0 })
    );
    let near_end = Otadata {
        entries: [
            SelectEntry::new(0xFFFF_FFFE, OtaState::Valid),
            SelectEntry::ERASED,
        ],
    };
    assert_eq!(
        plan_set_boot(&near_end, 0, 2, OtaState::New, SameSlotRule::InPlace),
        Err(OtadataError::SequenceExhausted)
    );
}

#[test]
fn partition_round_trip() {
    let o = Otadata {
        entries: [
            SelectEntry::new(7, OtaState::PendingVerify),
            SelectEntry::ERASED,
        ],
    };
    let img = o.to_partition();
    assert_eq!(Otadata::from_partition(&img).unwrap(), o);
    assert!(img[ENTRY_SIZE..SECTOR1_OFFSET].iter().all(|&b| b == 0xFF));
    assert_eq!(
        Otadata::from_partition(&img[..6145]),
        Err(OtadataError::WrongSize { len: 6145 })
    );
}

/// Found by the otadata fuzz target: with a valid seq-0 entry active (as
/// Arduino's boot_app0.bin has in sector 1), ESP-IDF's formula picks seq 0 for
/// ota_{n-1}, which ties with the active entry and does not switch.
#[test]
fn switching_away_from_a_seq_zero_entry_selects_the_slot() {
    let cur = Otadata {
        entries: [
            SelectEntry::new(0, OtaState::Undefined),
            SelectEntry::ERASED,
        ],
    };
    for n in 1..=16u8 {
        for slot in 0..n {
            let w = plan_set_boot(&cur, slot, n, OtaState::New, SameSlotRule::OtherSector).unwrap();
            assert_eq!(w.apply(&cur).active_slot(n), Some(slot), "{slot} of {n}");
        }
    }
}
