//! Resumable updates: `resume_point`, `erase_update_slot`, a pre-erased
//! `begin`, and `UpdateSession::resume` with good and bad prefixes. The
//! power-cut proof of the whole protocol is otter-sim's
//! `tests/resume_powercut.rs`.

use otter_format::chip::Chip;
use otter_format::image::{build_image, AppImageBuilder, ImageParams};
use otter_format::SECTOR_SIZE;
use otter_ota::boot::boot;
use otter_ota::session::{erase_update_slot, resume_point, UpdateRequest, UpdateSession};
use otter_ota::{DeviceConfig, OtaError, Region, SlotId, SlotMap};
use otter_sim::embedded_storage::nor_flash::NorFlash;
use otter_sim::{SimFlash, SimFlashError};
use sha2::{Digest, Sha256};

mod common;

use common::FACTORY_TWO_OTA;

/// ota_0 of the factory + 2 OTA layout: where an update from factory goes.
fn ota0() -> Region {
    let mut flash = device();
    *SlotMap::read(&mut flash, 0x8000)
        .expect("slot map")
        .region(SlotId::Ota(0))
        .expect("ota_0")
}

type R<T> = Result<T, OtaError<SimFlashError>>;

/// The resume tests include an image without an appended SHA-256, so the
/// device here accepts one (the policy has its own tests).
fn cfg() -> DeviceConfig {
    DeviceConfig::new(Chip::Esp32s3).with_require_sha256(false)
}

fn old_image() -> Vec<u8> {
    AppImageBuilder::new(Chip::Esp32s3)
        .version("1.0.0")
        .build()
        .expect("builder")
}

/// ~100 KB: more than one 64 KiB block, not a whole number of sectors.
fn new_image() -> Vec<u8> {
    AppImageBuilder::new(Chip::Esp32s3)
        .version("2.0.0")
        .size(100_000)
        .build()
        .expect("builder")
}

fn device() -> SimFlash {
    common::device(FACTORY_TWO_OTA, 0x10000, &old_image())
}

fn sha(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn request(img: &[u8]) -> UpdateRequest {
    UpdateRequest::new(Some(img.len() as u32), Some(sha(img))).with_pre_erased(true)
}

/// A fresh start that writes the first `n` bytes of `img` and then loses
/// power (the session is dropped with up to 511 bytes still staged).
fn interrupted(flash: &mut SimFlash, img: &[u8], n: usize) -> R<()> {
    let slot = erase_update_slot(flash, &cfg(), SlotId::Factory, img.len() as u32)?;
    assert_eq!(slot, SlotId::Ota(0));
    let mut s = UpdateSession::begin(flash, &cfg(), SlotId::Factory, request(img))?;
    for c in img[..n].chunks(1460) {
        s.write(flash, c)?;
    }
    Ok(())
}

/// Resumes at `resume_point`, writes the rest of `rest_of` and activates.
fn resume_and_finish(flash: &mut SimFlash, img: &[u8], rest_of: &[u8]) -> R<u32> {
    let at = resume_point(flash, &ota0(), img.len() as u32)?;
    let mut s = UpdateSession::resume(flash, &cfg(), SlotId::Factory, request(img), at)?;
    assert_eq!(s.received(), at);
    for c in rest_of[at as usize..].chunks(1460) {
        s.write(flash, c)?;
    }
    s.finish(flash)?.activate(flash)?;
    Ok(at)
}

fn booted_version(flash: &mut SimFlash) -> String {
    let out = boot(flash, &cfg()).expect("boot");
    let b = out.booted.expect("something boots");
    b.image
        .app_desc
        .and_then(|d| d.version().as_str().map(str::to_owned))
        .expect("version")
}

#[test]
fn resume_point_is_one_sector_before_the_first_erased_one() {
    let mut flash = device();
    let size = 20_000; // 5 sectors
    let at = |f: &mut SimFlash| resume_point(f, &ota0(), size).expect("resume point");
    assert_eq!(at(&mut flash), 0, "all erased");
    flash.write(ota0().offset, &[0; 4]).expect("program");
    assert_eq!(at(&mut flash), 0, "sector 0 started");
    flash
        .write(ota0().offset + 0x1000, &[0; 0x2000])
        .expect("program");
    flash
        .write(ota0().offset + 0x3ffc, &[0x7F; 4])
        .expect("program");
    assert_eq!(at(&mut flash), 0x3000, "sectors 0-3 written, 3 maybe torn");
    // Bytes after the image's range do not count.
    flash
        .write(ota0().offset + 0x5000, &[0; 4])
        .expect("program");
    assert_eq!(at(&mut flash), 0x3000);
    flash
        .write(ota0().offset + 0x4000, &[0; 4])
        .expect("program");
    assert_eq!(at(&mut flash), 0x4000, "no erased sector: the last one");
    // An erased sector earlier in the range wins.
    flash
        .erase(ota0().offset + 0x1000, ota0().offset + 0x2000)
        .expect("erase");
    assert_eq!(at(&mut flash), 0);
    // Misuse.
    assert!(matches!(
        resume_point(&mut flash, &ota0(), 0),
        Err(OtaError::Misuse(_))
    ));
    assert!(matches!(
        resume_point(&mut flash, &ota0(), ota0().size + 1),
        Err(OtaError::Misuse(_))
    ));
}

#[test]
fn erase_update_slot_erases_the_range_and_no_more() {
    let mut flash = device();
    flash
        .load(ota0().offset, &vec![0u8; 0x30000])
        .expect("dirty slot");
    let img = new_image();
    erase_update_slot(&mut flash, &cfg(), SlotId::Factory, img.len() as u32).expect("erase");
    let end = (img.len() as u32).div_ceil(SECTOR_SIZE) * SECTOR_SIZE;
    let c = flash.contents();
    let slot = &c[ota0().offset as usize..];
    assert!(slot[..end as usize].iter().all(|&b| b == 0xFF));
    assert!(slot[end as usize..0x30000].iter().all(|&b| b == 0));
    assert!(matches!(
        erase_update_slot(&mut flash, &cfg(), SlotId::Factory, ota0().size + 1),
        Err(OtaError::TooLarge { .. })
    ));
}

#[test]
fn pre_erased_begin_never_erases() {
    let mut flash = device();
    let img = new_image();
    erase_update_slot(&mut flash, &cfg(), SlotId::Factory, img.len() as u32).expect("erase");
    let erases = *flash.counters();
    let mut s =
        UpdateSession::begin(&mut flash, &cfg(), SlotId::Factory, request(&img)).expect("begin");
    for c in img.chunks(1460) {
        s.write(&mut flash, c).expect("write");
    }
    s.finish(&mut flash)
        .expect("finish")
        .activate(&mut flash)
        .expect("activate");
    let after = flash.counters();
    // Only activate's otadata sector erase.
    assert_eq!(
        after.sector_erases + after.block_erases,
        erases.sector_erases + erases.block_erases + 1
    );
    assert_eq!(booted_version(&mut flash), "2.0.0");
    // Without a size there is no range to have erased.
    let req = UpdateRequest::new(None, None).with_pre_erased(true);
    assert!(matches!(
        UpdateSession::begin(&mut flash, &cfg(), SlotId::Ota(0), req),
        Err(OtaError::Misuse(_))
    ));
}

#[test]
fn resume_continues_after_the_written_prefix() {
    let img = new_image();
    // Cut points: before anything, inside the head, at and around sector
    // and block boundaries, at the very end (not yet finished).
    for n in [
        0,
        100,
        5000,
        8192,
        8193,
        0x10000,
        0x10000 + 700,
        img.len() - 1,
        img.len(),
    ] {
        let mut flash = device();
        interrupted(&mut flash, &img, n).expect("interrupted pull");
        // What reached flash: whole 512-byte stages.
        let programmed = if n < 0x120 { 0 } else { n / 512 * 512 } as u32;
        let at = resume_and_finish(&mut flash, &img, &img)
            .unwrap_or_else(|e| panic!("resume after {n} bytes: {e}"));
        assert!(
            at + SECTOR_SIZE >= programmed && at <= programmed,
            "after {n} bytes ({programmed} programmed) resumed at {at}"
        );
        assert_eq!(booted_version(&mut flash), "2.0.0", "after {n} bytes");
    }
}

#[test]
fn resume_of_an_image_without_appended_digest() {
    // Only the checksum guards it: the session hashes the stream, and the
    // prefix re-read from flash must go into that hash too.
    let desc = AppImageBuilder::new(Chip::Esp32s3)
        .version("3.0.0")
        .app_desc()
        .expect("desc");
    let mut seg = desc.to_vec();
    seg.extend((0..40_000u32).map(|i| (i * 7 % 251) as u8));
    let mut params = ImageParams::new(Chip::Esp32s3);
    params.append_digest = false;
    params.app_desc_segment = Some(0);
    params.entry = 0x3C00_0020;
    let img = build_image(&params, &[(0x3C00_0020, &seg)]).expect("image");
    let mut flash = device();
    interrupted(&mut flash, &img, 20_000).expect("interrupted");
    let at = resume_and_finish(&mut flash, &img, &img).expect("resume");
    assert_eq!(at, 0x4000);
    assert_eq!(booted_version(&mut flash), "3.0.0");
}

#[test]
fn resume_with_a_bad_prefix_fails_at_finish_and_selects_nothing() {
    let img = new_image();
    let mut flash = device();
    interrupted(&mut flash, &img, 50_000).expect("interrupted");
    // One bit of the kept prefix flips.
    let at = ota0().offset + 30_000;
    let byte = flash.contents()[at as usize];
    flash.load(at, &[byte ^ 0x10]).expect("flip");
    assert_ne!(flash.contents()[at as usize], byte);
    let otadata_before = flash.contents()[0xd000..0xf000].to_vec();
    let err = resume_and_finish(&mut flash, &img, &img).expect_err("a bad prefix must fail");
    assert!(err.is_bad_image(), "{err}");
    assert_eq!(&flash.contents()[0xd000..0xf000], &otadata_before[..]);
    assert_eq!(booted_version(&mut flash), "1.0.0");
    // Starting over succeeds.
    interrupted(&mut flash, &img, 0).expect("fresh start");
    let at = resume_and_finish(&mut flash, &img, &img).expect("fresh pull");
    assert_eq!(at, 0);
    assert_eq!(booted_version(&mut flash), "2.0.0");
}

#[test]
fn resume_with_another_releases_prefix_fails_at_finish() {
    let a = new_image();
    let b = AppImageBuilder::new(Chip::Esp32s3)
        .version("2.0.1")
        .size(100_000)
        .build()
        .expect("builder");
    let mut flash = device();
    interrupted(&mut flash, &a, 60_000).expect("interrupted");
    // The caller's tag check was skipped: B resumes on A's prefix.
    let err = resume_and_finish(&mut flash, &b, &b).expect_err("wrong prefix");
    assert!(err.is_bad_image(), "{err}");
    assert_eq!(booted_version(&mut flash), "1.0.0");
}

#[test]
fn resume_refuses_a_prefix_that_is_not_an_image_before_erasing() {
    let img = new_image();
    let mut flash = device();
    interrupted(&mut flash, &img, 30_000).expect("interrupted");
    flash
        .load(ota0().offset, &[0u8; 64])
        .expect("garbage header");
    let before = flash.contents().to_vec();
    let at = resume_point(&mut flash, &ota0(), img.len() as u32).expect("resume point");
    assert_eq!(at, 0x7000);
    let err = UpdateSession::resume(&mut flash, &cfg(), SlotId::Factory, request(&img), at)
        .expect_err("not an image");
    assert!(matches!(err, OtaError::Image(_)), "{err}");
    assert!(flash.contents() == &before[..], "nothing may change");
}

#[test]
fn resume_checks_its_arguments() {
    let img = new_image();
    let mut flash = device();
    interrupted(&mut flash, &img, 30_000).expect("interrupted");
    let req = request(&img);
    for at in [100, img.len() as u32 / 4096 * 4096 + 4096] {
        assert!(matches!(
            UpdateSession::resume(&mut flash, &cfg(), SlotId::Factory, req, at),
            Err(OtaError::Misuse(_))
        ));
    }
    let no_size = UpdateRequest::new(None, None);
    assert!(matches!(
        UpdateSession::resume(&mut flash, &cfg(), SlotId::Factory, no_size, 0),
        Err(OtaError::Misuse(_))
    ));
}

#[test]
fn a_real_all_erased_sector_in_the_image_still_ends_correct() {
    // An image whose body has a whole 0xFF sector: the resume point stops
    // there, before data that was already written; rewriting it is wasteful
    // but correct.
    let desc = AppImageBuilder::new(Chip::Esp32s3)
        .version("4.0.0")
        .app_desc()
        .expect("desc");
    let mut seg = desc.to_vec();
    seg.extend((0..60_000u32).map(|i| {
        if (12_000..24_000).contains(&i) {
            0xFF
        } else {
            (i * 13 % 251) as u8
        }
    }));
    let params = ImageParams::new(Chip::Esp32s3);
    let mut params = params;
    params.app_desc_segment = Some(0);
    params.entry = 0x3C00_0020;
    let img = build_image(&params, &[(0x3C00_0020, &seg)]).expect("image");
    let ff_sector = (0..img.len() / 4096)
        .find(|s| img[s * 4096..(s + 1) * 4096].iter().all(|&b| b == 0xFF))
        .expect("the image has an all-0xFF sector");
    let mut flash = device();
    interrupted(&mut flash, &img, 50_000).expect("interrupted");
    let at = resume_and_finish(&mut flash, &img, &img).expect("resume");
    assert_eq!(at as usize, (ff_sector - 1) * 4096);
    assert_eq!(booted_version(&mut flash), "4.0.0");
}
