//! The engine end to end on the NOR-flash simulator: update, first boot,
//! confirm, rollback, refusal, with otadata bytes checked against ESP-IDF's
//! documented sequence.

use otter_format::chip::Chip;
use otter_format::image::{AppImageBuilder, ImageError};
use otter_format::otadata::{seq_crc, OtaState, Otadata};
use otter_ota::boot::{boot, BootWriteReason};
use otter_ota::lifecycle::{confirm, mark_invalid_and_rollback, recover, running_state, Recovery};
use otter_ota::session::{UpdateRequest, UpdateSession};
use otter_ota::{DeviceConfig, OtaError, SlotId};
use otter_sim::SimFlash;

mod common;

use common::{device, FACTORY_TWO_OTA};

const OTADATA: u32 = 0xd000;

fn image(version: &str, size: u32) -> Vec<u8> {
    AppImageBuilder::new(Chip::Esp32s3)
        .version(version)
        .project_name("otter-test")
        .size(size)
        .build()
        .expect("builder makes a valid image")
}

fn otadata(flash: &SimFlash) -> Otadata {
    let c = flash.contents();
    Otadata::from_partition(&c[OTADATA as usize..OTADATA as usize + 0x2000]).unwrap()
}

fn update(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    img: &[u8],
    chunk: usize,
) -> Result<SlotId, OtaError<otter_sim::SimFlashError>> {
    let req = UpdateRequest {
        size: Some(img.len() as u32),
        expected_sha256: None,
        ..UpdateRequest::default()
    };
    let mut s = UpdateSession::begin(flash, cfg, running, req)?;
    for c in img.chunks(chunk) {
        s.write(flash, c)?;
    }
    s.finish(flash)?.activate(flash)
}

fn version_of(flash: &mut SimFlash, cfg: &DeviceConfig) -> (SlotId, String) {
    let out = boot(flash, cfg).unwrap();
    let b = out.booted.expect("something boots");
    let v = b
        .image
        .app_desc
        .as_ref()
        .unwrap()
        .version()
        .as_str()
        .unwrap()
        .to_string();
    (b.slot, v)
}

#[test]
fn factory_boots_then_updates_alternate_slots_with_esp_idf_sequence_numbers() {
    let cfg = DeviceConfig::new(Chip::Esp32s3);
    let mut flash = device(FACTORY_TWO_OTA, 0x10000, &image("1.0.0", 200_000));
    assert_eq!(
        version_of(&mut flash, &cfg),
        (SlotId::Factory, "1.0.0".into())
    );

    // ota_0 -> sector 0 seq 1, ota_1 -> sector 1 seq 2, ota_0 -> sector 0 seq 3
    // (esp-idf-formats.md 4.4), state UNDEFINED without rollback.
    let mut running = SlotId::Factory;
    for (i, (slot, sector, seq)) in [(0u8, 0usize, 1u32), (1, 1, 2), (0, 0, 3)]
        .into_iter()
        .enumerate()
    {
        let v = format!("2.0.{i}");
        assert_eq!(
            update(
                &mut flash,
                &cfg,
                running,
                &image(&v, 150_000 + i as u32 * 1000),
                1000
            )
            .unwrap(),
            SlotId::Ota(slot)
        );
        let od = otadata(&flash);
        assert_eq!(od.entries[sector].seq, seq);
        assert_eq!(od.entries[sector].crc, seq_crc(seq));
        assert_eq!(od.entries[sector].ota_state(), OtaState::Undefined);
        let (booted, version) = version_of(&mut flash, &cfg);
        assert_eq!((booted, version.as_str()), (SlotId::Ota(slot), v.as_str()));
        running = booted;
    }
}

#[test]
fn rollback_lifecycle_new_pending_valid_and_abort() {
    let cfg = DeviceConfig::new(Chip::Esp32s3).with_rollback(true);
    let mut flash = device(FACTORY_TWO_OTA, 0x10000, &image("1.0.0", 100_000));
    update(
        &mut flash,
        &cfg,
        SlotId::Factory,
        &image("2.0.0", 120_000),
        4096,
    )
    .unwrap();
    assert_eq!(otadata(&flash).entries[0].ota_state(), OtaState::New);

    // First boot: NEW -> PENDING_VERIFY, written by the bootloader.
    let out = boot(&mut flash, &cfg).unwrap();
    assert_eq!(out.booted.as_ref().unwrap().slot, SlotId::Ota(0));
    let w: Vec<_> = out.writes.iter().collect();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].reason, BootWriteReason::FirstBoot);
    assert_eq!(
        running_state(&mut flash, &cfg, SlotId::Ota(0)).unwrap(),
        Some(OtaState::PendingVerify)
    );

    // Another update is refused while pending.
    let err = update(
        &mut flash,
        &cfg,
        SlotId::Ota(0),
        &image("3.0.0", 80_000),
        512,
    )
    .unwrap_err();
    assert!(matches!(err, OtaError::RunningImagePending), "{err:?}");

    // Reboot without confirming: ABORTED, back to factory.
    let out = boot(&mut flash, &cfg).unwrap();
    assert_eq!(
        out.writes.iter().next().unwrap().reason,
        BootWriteReason::Abort
    );
    assert_eq!(out.booted.unwrap().slot, SlotId::Factory);
    assert_eq!(otadata(&flash).entries[0].ota_state(), OtaState::Aborted);

    // Update again (into ota_0), boot, confirm.
    update(
        &mut flash,
        &cfg,
        SlotId::Factory,
        &image("2.0.1", 120_000),
        777,
    )
    .unwrap();
    assert_eq!(
        boot(&mut flash, &cfg).unwrap().booted.unwrap().slot,
        SlotId::Ota(0)
    );
    assert!(confirm(&mut flash, &cfg, SlotId::Ota(0)).unwrap());
    assert_eq!(
        running_state(&mut flash, &cfg, SlotId::Ota(0)).unwrap(),
        Some(OtaState::Valid)
    );
    assert_eq!(recover(&mut flash, &cfg).unwrap(), Recovery::Clean);
    assert_eq!(
        version_of(&mut flash, &cfg),
        (SlotId::Ota(0), "2.0.1".into())
    );

    // Next update to ota_1, self-test fails: mark invalid, boots ota_0 again.
    update(
        &mut flash,
        &cfg,
        SlotId::Ota(0),
        &image("3.0.0", 90_000),
        3000,
    )
    .unwrap();
    assert_eq!(
        boot(&mut flash, &cfg).unwrap().booted.unwrap().slot,
        SlotId::Ota(1)
    );
    mark_invalid_and_rollback(&mut flash, &cfg).unwrap();
    assert_eq!(
        version_of(&mut flash, &cfg),
        (SlotId::Ota(0), "2.0.1".into())
    );
}

#[test]
fn bad_images_are_refused_and_change_nothing() {
    let cfg = DeviceConfig::new(Chip::Esp32s3);
    let mut flash = device(FACTORY_TWO_OTA, 0x10000, &image("1.0.0", 100_000));
    let before = flash.snapshot();

    // Wrong chip: refused from the first bytes, before any erase.
    let c3 = AppImageBuilder::new(Chip::Esp32c3)
        .version("x")
        .build()
        .unwrap();
    let err = update(&mut flash, &cfg, SlotId::Factory, &c3, 100).unwrap_err();
    assert!(err.is_bad_image(), "{err:?}");
    assert_eq!(flash.counters().erase_ops(), 0);

    // Corrupt payload: written, caught at finish, boot selection unchanged.
    let mut bad = image("2.0.0", 100_000);
    bad[50_000] ^= 0x40;
    assert!(update(&mut flash, &cfg, SlotId::Factory, &bad, 4096).is_err());
    let after = flash.snapshot();
    assert_eq!(
        &before[OTADATA as usize..OTADATA as usize + 0x2000],
        &after[OTADATA as usize..OTADATA as usize + 0x2000]
    );
    assert_eq!(
        version_of(&mut flash, &cfg),
        (SlotId::Factory, "1.0.0".into())
    );

    // Too big for the slot: refused at begin.
    let req = UpdateRequest {
        size: Some(2 * 1024 * 1024),
        expected_sha256: None,
        ..UpdateRequest::default()
    };
    assert!(matches!(
        UpdateSession::begin(&mut flash, &cfg, SlotId::Factory, req),
        Err(OtaError::TooLarge { .. })
    ));

    // Expected SHA-256 mismatch.
    let img = image("2.0.0", 80_000);
    let req = UpdateRequest {
        size: None,
        expected_sha256: Some([0u8; 32]),
        ..UpdateRequest::default()
    };
    let mut s = UpdateSession::begin(&mut flash, &cfg, SlotId::Factory, req).unwrap();
    s.write(&mut flash, &img).unwrap();
    assert!(s.finish(&mut flash).is_err());
    assert_eq!(
        version_of(&mut flash, &cfg),
        (SlotId::Factory, "1.0.0".into())
    );
}

#[test]
fn erase_is_just_enough_with_block_erases() {
    let cfg = DeviceConfig::new(Chip::Esp32s3);
    let mut flash = device(FACTORY_TWO_OTA, 0x10000, &image("1.0.0", 100_000));
    let img = image("2.0.0", 700_000);
    flash.reset_counters();
    update(&mut flash, &cfg, SlotId::Factory, &img, 1460).unwrap();
    let c = flash.counters();
    let rounded = (img.len() as u64).div_ceil(4096) * 4096;
    // Slot erases plus the one otadata sector of activate.
    assert_eq!(c.bytes_erased, rounded + 4096, "{c:?}");
    assert_eq!(c.block_erases, img.len() as u64 / 65536);
}

const TWO_OTA_1M: &str = "\
nvs,      data, nvs,     0x9000,  0x4000,
otadata,  data, ota,     0xd000,  0x2000,
phy_init, data, phy,     0xf000,  0x1000,
ota_0,    app,  ota_0,   0x10000, 1M,
ota_1,    app,  ota_1,   ,        1M,
";

fn secure_image(version: &str, secure_version: u32) -> Vec<u8> {
    AppImageBuilder::new(Chip::Esp32s3)
        .version(version)
        .secure_version(secure_version)
        .size(80_000)
        .build()
        .unwrap()
}

#[test]
fn anti_rollback_refuses_early_and_the_bootloader_raises_the_counter() {
    // A device whose eFuse counter is 2 (anti-rollback needs no factory).
    let mut flash = device(TWO_OTA_1M, 0x10000, &secure_image("1.0.0", 2));
    let mut cfg = DeviceConfig::new(Chip::Esp32s3)
        .with_rollback(true)
        .with_anti_rollback(Some(2));
    let out = boot(&mut flash, &cfg).unwrap();
    assert_eq!(out.booted.as_ref().unwrap().slot, SlotId::Ota(0));
    // Initial otadata: the bootloader records the booted slot as VALID.
    assert_eq!(otadata(&flash).entries[0].ota_state(), OtaState::Valid);
    assert_eq!(out.anti_rollback, Some(2));

    // secure_version 1 < 2: refused from the first bytes, nothing erased.
    flash.reset_counters();
    let err = update(
        &mut flash,
        &cfg,
        SlotId::Ota(0),
        &secure_image("0.9.0", 1),
        64,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            OtaError::Image(ImageError::SecureVersionTooLow { got: 1, min: 2 })
        ),
        "{err:?}"
    );
    assert!(err.is_bad_image());
    assert_eq!(flash.counters().erase_ops(), 0);

    // secure_version 3: accepted, boots pending, confirmed; the next boot of
    // the VALID entry raises the counter to 3.
    update(
        &mut flash,
        &cfg,
        SlotId::Ota(0),
        &secure_image("2.0.0", 3),
        4096,
    )
    .unwrap();
    let out = boot(&mut flash, &cfg).unwrap();
    assert_eq!(out.booted.unwrap().slot, SlotId::Ota(1));
    assert_eq!(out.anti_rollback, Some(2), "not raised while pending");
    assert!(confirm(&mut flash, &cfg, SlotId::Ota(1)).unwrap());
    let out = boot(&mut flash, &cfg).unwrap();
    assert_eq!(out.anti_rollback, Some(3));
    cfg = cfg.with_anti_rollback(out.anti_rollback);

    // The old image (secure_version 2) can no longer boot, even if selected.
    let mut od = otadata(&flash);
    od.entries[1] = otter_format::otadata::SelectEntry::ERASED;
    flash.load(OTADATA, &od.to_partition()).unwrap_or(());
    let out = boot(&mut flash, &cfg).unwrap();
    assert_ne!(
        out.booted.as_ref().map(|b| b.slot),
        Some(SlotId::Ota(0)),
        "an image below the counter must not boot"
    );
}
