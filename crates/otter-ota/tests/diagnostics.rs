//! The diagnostics snapshot (`lifecycle::diagnostics`, the seeds'
//! `ota_print_info`) on the NOR-flash simulator: slots and addresses, both
//! otadata entries, the boot slot with `esp_ota_get_boot_partition`'s
//! semantics, and every slot's app descriptor and verification verdict.

use otter_format::chip::Chip;
use otter_format::image::{AppImageBuilder, ImageError};
use otter_format::otadata::{seq_crc, OtaState};
use otter_ota::boot::boot;
use otter_ota::diagnostics::{SlotVerdictKind, MAX_APP_SLOTS};
use otter_ota::lifecycle::{confirm, diagnostics};
use otter_ota::session::{UpdateRequest, UpdateSession};
use otter_ota::{DeviceConfig, OtaError, SlotId};
use otter_sim::SimFlash;

mod common;

use common::{device, FACTORY_TWO_OTA, TWO_OTA};

fn image(chip: Chip, version: &str, secure_version: u32) -> Vec<u8> {
    AppImageBuilder::new(chip)
        .version(version)
        .project_name("diag-test")
        .secure_version(secure_version)
        .build()
        .expect("builder makes a valid image")
}

fn update(flash: &mut SimFlash, cfg: &DeviceConfig, running: SlotId, img: &[u8]) -> SlotId {
    let req = UpdateRequest {
        size: Some(img.len() as u32),
        expected_sha256: None,
        ..UpdateRequest::default()
    };
    let mut s = UpdateSession::begin(flash, cfg, running, req).unwrap();
    s.write(flash, img).unwrap();
    s.finish(flash).unwrap().activate(flash).unwrap()
}

fn version(d: &otter_ota::lifecycle::Diagnostics, slot: SlotId) -> Option<String> {
    d.slot(slot)
        .and_then(|r| r.app)
        .and_then(|a| a.version().as_str().map(str::to_owned))
}

#[test]
fn fresh_factory_device_then_update_boot_and_confirm() {
    let chip = Chip::Esp32s3;
    let cfg = DeviceConfig::new(chip).with_rollback(true);
    let mut flash = device(FACTORY_TWO_OTA, 0x10000, &image(chip, "1.0.0", 0));

    // Fresh: otadata empty, factory runs and boots, the update goes to ota_0.
    let d = diagnostics(&mut flash, &cfg, SlotId::Factory).unwrap();
    assert_eq!(d.running.slot, SlotId::Factory);
    assert_eq!(
        (d.running.region.offset, d.running.region.size),
        (0x10000, 0x100000)
    );
    assert_eq!(d.running.region.label.as_str(), Some("factory"));
    assert_eq!(d.boot.map(|b| b.slot), Some(SlotId::Factory));
    assert!(!d.boot_differs());
    let next = d.next.expect("an update slot");
    assert_eq!((next.slot, next.region.offset), (SlotId::Ota(0), 0x110000));
    assert_eq!(d.running_state, None);
    let od = d.otadata.expect("otadata");
    assert_eq!((od.region.offset, od.region.size), (0xd000, 0x2000));
    assert_eq!(od.active, None);
    for (i, e) in od.entries.iter().enumerate() {
        assert_eq!(e.sector as usize, i);
        assert_eq!(e.offset, 0xd000 + 0x1000 * i as u32);
        assert!(
            e.empty && !e.valid && !e.crc_ok && e.slot.is_none(),
            "{e:?}"
        );
    }
    let slots: Vec<_> = d.slots().map(|r| r.slot.slot).collect();
    assert_eq!(slots, [SlotId::Factory, SlotId::Ota(0), SlotId::Ota(1)]);
    let factory = d.slot(SlotId::Factory).unwrap();
    assert_eq!(factory.verdict, SlotVerdictKind::Valid);
    assert!(factory.image_len.is_some());
    let app = factory.app.expect("app descriptor");
    assert_eq!(app.version().as_str(), Some("1.0.0"));
    assert_eq!(app.project_name().as_str(), Some("diag-test"));
    assert_eq!(app.secure_version, 0);
    for ota in [SlotId::Ota(0), SlotId::Ota(1)] {
        let r = d.slot(ota).unwrap();
        assert_eq!(r.verdict, SlotVerdictKind::Empty);
        assert!(r.app.is_none() && r.state.is_none());
    }

    // Activated, not yet rebooted: the boot slot is ota_0 (NEW), factory runs.
    assert_eq!(
        update(&mut flash, &cfg, SlotId::Factory, &image(chip, "2.0.0", 0)),
        SlotId::Ota(0)
    );
    let d = diagnostics(&mut flash, &cfg, SlotId::Factory).unwrap();
    assert_eq!(d.boot.map(|b| b.slot), Some(SlotId::Ota(0)));
    assert_eq!(d.boot.unwrap().region.offset, 0x110000);
    assert!(d.boot_differs());
    let od = d.otadata.unwrap();
    assert_eq!(od.active, Some(0));
    let e0 = od.entries[0];
    assert_eq!((e0.entry.seq, e0.entry.crc), (1, seq_crc(1)));
    assert_eq!(e0.state(), OtaState::New);
    assert!(e0.valid && e0.crc_ok && !e0.empty);
    assert_eq!(e0.slot, Some(SlotId::Ota(0)));
    assert!(od.entries[1].empty);
    assert_eq!(version(&d, SlotId::Ota(0)).as_deref(), Some("2.0.0"));
    assert_eq!(d.slot(SlotId::Ota(0)).unwrap().state, Some(OtaState::New));

    // First boot: PENDING_VERIFY; then confirmed: VALID. Next is ota_1.
    assert_eq!(
        boot(&mut flash, &cfg).unwrap().booted.unwrap().slot,
        SlotId::Ota(0)
    );
    let d = diagnostics(&mut flash, &cfg, SlotId::Ota(0)).unwrap();
    assert_eq!(d.running_state, Some(OtaState::PendingVerify));
    assert_eq!(d.next.map(|n| n.slot), Some(SlotId::Ota(1)));
    assert!(!d.boot_differs());
    assert!(confirm(&mut flash, &cfg, SlotId::Ota(0)).unwrap());
    let d = diagnostics(&mut flash, &cfg, SlotId::Ota(0)).unwrap();
    assert_eq!(d.running_state, Some(OtaState::Valid));
    assert_eq!(d.slot(SlotId::Ota(0)).unwrap().state, Some(OtaState::Valid));
}

#[test]
fn verdicts_for_damaged_foreign_and_rolled_back_images() {
    let chip = Chip::Esp32s3;
    let mut flash = device(TWO_OTA, 0x20000, &image(chip, "1.0.0", 3));

    // ota_1: a truncated image (the descriptor is still readable), then an
    // image for another chip.
    let full = image(chip, "2.0.0", 3);
    flash.load(0x1a0000, &full[..full.len() / 2]).unwrap();
    let cfg = DeviceConfig::new(chip);
    let d = diagnostics(&mut flash, &cfg, SlotId::Ota(0)).unwrap();
    // No factory and empty otadata: esp_ota_get_boot_partition says ota_0.
    assert_eq!(d.boot.map(|b| b.slot), Some(SlotId::Ota(0)));
    assert_eq!(
        d.slot(SlotId::Ota(0)).unwrap().verdict,
        SlotVerdictKind::Valid
    );
    let r = d.slot(SlotId::Ota(1)).unwrap();
    assert!(matches!(r.verdict, SlotVerdictKind::Invalid(_)), "{r:?}");
    assert_eq!(version(&d, SlotId::Ota(1)).as_deref(), Some("2.0.0"));

    let mut other = device(TWO_OTA, 0x20000, &image(chip, "1.0.0", 3));
    other
        .load(0x1a0000, &image(Chip::Esp32c3, "3.0.0", 3))
        .unwrap();
    let d = diagnostics(&mut other, &cfg, SlotId::Ota(0)).unwrap();
    let r = d.slot(SlotId::Ota(1)).unwrap();
    assert!(
        matches!(
            r.verdict,
            SlotVerdictKind::Invalid(ImageError::WrongChip { .. })
        ),
        "{r:?}"
    );
    assert_eq!(version(&d, SlotId::Ota(1)).as_deref(), Some("3.0.0"));

    // Anti-rollback counter 4: the secure_version 3 image no longer verifies.
    let cfg = DeviceConfig::new(chip).with_anti_rollback(Some(4));
    let d = diagnostics(&mut other, &cfg, SlotId::Ota(0)).unwrap();
    let r = d.slot(SlotId::Ota(0)).unwrap();
    assert!(matches!(r.verdict, SlotVerdictKind::Invalid(_)), "{r:?}");
    assert_eq!(r.app.map(|a| a.secure_version), Some(3));
}

#[test]
fn running_slot_missing_from_the_table_is_an_error() {
    let chip = Chip::Esp32s3;
    let cfg = DeviceConfig::new(chip);
    let mut flash = device(TWO_OTA, 0x20000, &image(chip, "1.0.0", 0));
    assert!(matches!(
        diagnostics(&mut flash, &cfg, SlotId::Factory),
        Err(OtaError::NoSuchSlot(SlotId::Factory))
    ));
    const { assert!(MAX_APP_SLOTS >= 18) };
}
