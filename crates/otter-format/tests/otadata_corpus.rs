//! otadata files from the corpus: what ESP-IDF, Arduino and web flashers ship.

mod common;

use common::corpus_bytes;

use otter_format::otadata::{OtaState, Otadata, OtadataError, SEQ_EMPTY};

#[test]
fn esp_idf_initial_otadata_selects_nothing() {
    let o =
        Otadata::from_partition(&corpus_bytes("otadata/valuecam-ota_data_initial.bin")).unwrap();
    assert_eq!(o, Otadata::ERASED);
    assert!(o.is_initial());
    assert_eq!(o.active(), None);
}

#[test]
fn arduino_boot_app0_selects_ota_0() {
    let o = Otadata::from_partition(&corpus_bytes("otadata/arduino-boot_app0.bin")).unwrap();
    assert_eq!(o.entries[0].seq, 1);
    assert!(o.entries[0].crc_ok());
    assert_eq!(o.entries[0].ota_state(), OtaState::Undefined);
    // Sector 1 holds seq 0 with CRC 0xFFFFFFFF. That CRC is correct for seq 0,
    // so ESP-IDF's predicate calls the entry valid; it simply loses to seq 1.
    assert_eq!(o.entries[1].seq, 0);
    assert_ne!(o.entries[1].seq, SEQ_EMPTY);
    assert!(o.entries[1].is_valid());
    assert_eq!(o.active(), Some(0));
    for n in 1..=16 {
        assert_eq!(o.active_slot(n), Some(0), "{n} slots");
    }
}

#[test]
fn text_mangled_boot_app0_is_rejected_with_a_reason() {
    let err = Otadata::from_partition(&corpus_bytes(
        "negative/corrupted-boot_app0-utf8-mangled.bin",
    ))
    .unwrap_err();
    assert_eq!(err, OtadataError::WrongSize { len: 6145 });
    let msg = err.to_string();
    assert!(
        msg.contains("8192") && msg.contains("6145") && msg.contains("re-encoded"),
        "{msg}"
    );
}
