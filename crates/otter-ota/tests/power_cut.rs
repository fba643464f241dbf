//! Power cuts and otadata: regression tests for what the power-cut
//! enumeration found.

use otter_format::chip::Chip;
use otter_format::otadata::{OtaState, ENTRY_SIZE};
use otter_ota::boot::boot;
use otter_ota::lifecycle::{recover, running_state, Recovery};
use otter_ota::session::{UpdateRequest, UpdateSession};
use otter_ota::{DeviceConfig, SlotId};
use otter_sim::embedded_storage::nor_flash::ReadNorFlash;
use otter_sim::SimFlash;

/// Regression: a torn otadata write that keeps the sequence number and its
/// CRC but garbles the state word (here NEW, `00000000`, half-programmed
/// from `FFFFFFFF`) used to boot the new image with no rollback protection,
/// in an undefined state that `confirm` ignores. Found by the harness
/// (first-boot on factory+2ota/4MB: cut after the bootloader's NEW ->
/// PENDING_VERIFY erase, then a torn erase of otadata during the retried
/// update's activate). `recover` now rewrites such an entry as
/// PENDING_VERIFY (UNDEFINED without rollback).
#[test]
fn regression_torn_state_word_is_repaired_at_startup() {
    const OTADATA: u32 = 0xd000;
    let csv = "\
nvs,      data, nvs,     0x9000,  0x4000,
otadata,  data, ota,     0xd000,  0x2000,
phy_init, data, phy,     0xf000,  0x1000,
factory,  app,  factory, 0x10000, 1M,
ota_0,    app,  ota_0,   ,        1M,
ota_1,    app,  ota_1,   ,        1M,
";
    let image = |v: &str| {
        otter_format::image::AppImageBuilder::new(Chip::Esp32s3)
            .version(v)
            .build()
            .expect("builder image")
    };
    let table = otter_format::partition::OwnedTable::from_csv(
        csv,
        &otter_format::partition::CsvOptions::default(),
    )
    .expect("table")
    .to_binary(true)
    .expect("binary");
    for rollback in [true, false] {
        let cfg = DeviceConfig::new(Chip::Esp32s3).with_rollback(rollback);
        let mut flash = SimFlash::new(4 << 20).expect("flash");
        flash.load(0x8000, &table).expect("table");
        flash.load(0x10000, &image("1.0.0")).expect("factory");
        let new = image("2.0.0");
        let mut s =
            UpdateSession::begin(&mut flash, &cfg, SlotId::Factory, UpdateRequest::default())
                .expect("begin");
        s.write(&mut flash, &new).expect("write");
        let slot = s
            .finish(&mut flash)
            .expect("finish")
            .activate(&mut flash)
            .expect("activate");
        assert_eq!(slot, SlotId::Ota(0));

        let torn_state = 0x00FF_0000u32;
        flash
            .load(OTADATA + 24, &torn_state.to_le_bytes())
            .expect("load");
        let mut e0 = [0u8; ENTRY_SIZE];
        flash.read(OTADATA, &mut e0).expect("read");
        let entry = otter_format::otadata::SelectEntry::from_bytes(&e0);
        assert!(entry.is_valid(), "ESP-IDF still counts the entry as valid");

        let out = boot(&mut flash, &cfg).expect("boot");
        let booted = out.booted.expect("boots").slot;
        assert_eq!(booted, SlotId::Ota(0));
        assert_eq!(out.writes.iter().count(), 0, "no NEW -> PENDING write");
        assert_eq!(
            running_state(&mut flash, &cfg, booted).unwrap(),
            Some(OtaState::Unknown(torn_state))
        );
        assert_eq!(
            recover(&mut flash, &cfg).unwrap(),
            Recovery::StateRepaired { slot: booted }
        );
        let want = if rollback {
            OtaState::PendingVerify
        } else {
            OtaState::Undefined
        };
        assert_eq!(running_state(&mut flash, &cfg, booted).unwrap(), Some(want));
        assert_eq!(recover(&mut flash, &cfg).unwrap(), Recovery::Clean);
        // With rollback, a reboot before confirming now rolls back.
        let next = boot(&mut flash, &cfg).unwrap().booted.unwrap().slot;
        let expect = if rollback { SlotId::Factory } else { booted };
        assert_eq!(next, expect, "rollback {rollback}");
    }
}
