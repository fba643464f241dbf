//! `finish` proves the slot holds exactly the streamed bytes: by comparing
//! the two verifiers' SHA-256 digests when the image has one appended, by
//! reading the slot back when it has not (checksum only).

use otter_format::chip::Chip;
use otter_format::image::{build_image, AppImageBuilder, ImageError, ImageParams};
use otter_ota::session::{UpdateRequest, UpdateSession};
use otter_ota::{DeviceConfig, OtaError, SlotId};
use otter_sim::SimFlash;

mod common;

use common::FACTORY_TWO_OTA;

fn device() -> SimFlash {
    common::device(
        FACTORY_TWO_OTA,
        0x10000,
        &AppImageBuilder::new(Chip::Esp32s3).build().unwrap(),
    )
}

const OTA0: u32 = 0x110000;

/// An app image with no appended SHA-256: only the XOR checksum guards it.
fn image_without_digest() -> Vec<u8> {
    let desc = AppImageBuilder::new(Chip::Esp32s3)
        .version("3.0.0")
        .app_desc()
        .unwrap();
    let mut seg = desc.to_vec();
    seg.extend((0..20_000u32).map(|i| (i * 7 % 251) as u8));
    let mut params = ImageParams::new(Chip::Esp32s3);
    params.append_digest = false;
    params.app_desc_segment = Some(0);
    // The entry point must lie in a loaded segment.
    params.entry = 0x3C00_0020;
    build_image(&params, &[(0x3C00_0020, &seg)]).unwrap()
}

/// Streams `img` into ota_0, lets `tamper` change the flash before
/// `finish`, and returns what `finish` said.
fn update_with(
    img: &[u8],
    tamper: impl FnOnce(&mut SimFlash),
) -> Result<SlotId, OtaError<otter_sim::SimFlashError>> {
    let cfg = DeviceConfig::new(Chip::Esp32s3).with_require_sha256(false);
    let mut flash = device();
    let req = UpdateRequest {
        size: Some(img.len() as u32),
        expected_sha256: None,
        ..UpdateRequest::default()
    };
    let mut s = UpdateSession::begin(&mut flash, &cfg, SlotId::Factory, req)?;
    for c in img.chunks(1000) {
        s.write(&mut flash, c)?;
    }
    tamper(&mut flash);
    Ok(s.finish(&mut flash)?.target())
}

/// Flips the same bits in two bytes of the programmed image: the XOR
/// checksum cannot see it.
fn flip_pair(flash: &mut SimFlash, a: u32, b: u32) {
    for at in [a, b] {
        let old = flash.contents()[(OTA0 + at) as usize];
        flash.load(OTA0 + at, &[old ^ 0x10]).unwrap();
    }
}

#[test]
fn an_image_without_digest_is_read_back() {
    let img = image_without_digest();
    assert_eq!(img[23], 0, "no hash_appended");
    assert_eq!(update_with(&img, |_| {}).unwrap(), SlotId::Ota(0));
    let err = update_with(&img, |f| flip_pair(f, 0x400, 0x404)).unwrap_err();
    assert!(matches!(err, OtaError::Sha256Mismatch), "{err:?}");
}

#[test]
fn an_image_with_digest_is_checked_by_its_digest() {
    let img = AppImageBuilder::new(Chip::Esp32s3)
        .version("2.0.0")
        .size(100_000)
        .build()
        .unwrap();
    assert_eq!(img[23], 1, "hash_appended");
    assert_eq!(update_with(&img, |_| {}).unwrap(), SlotId::Ota(0));
    let err = update_with(&img, |f| flip_pair(f, 0x400, 0x404)).unwrap_err();
    assert!(matches!(err, OtaError::Image(_)), "{err:?}");
}

#[test]
fn a_default_device_refuses_an_image_without_digest_at_its_header() {
    // ESP-IDF's default image settings append the digest; a device requires
    // it unless configured otherwise, and says so as soon as the header
    // arrives, before anything is switched.
    let img = image_without_digest();
    let cfg = DeviceConfig::new(Chip::Esp32s3);
    assert!(cfg.require_sha256, "on by default");
    let mut flash = device();
    let req = UpdateRequest::new(Some(img.len() as u32), None);
    let mut s = UpdateSession::begin(&mut flash, &cfg, SlotId::Factory, req).unwrap();
    let err = s.write(&mut flash, &img[..1000]).unwrap_err();
    assert!(
        matches!(err, OtaError::Image(ImageError::Sha256Required)),
        "{err:?}"
    );
    // A corpus ESP-IDF image with its hash flag flipped to 0 is refused alike.
    let path = common::corpus().join("app-images/esp-serial-flasher/hello_world-esp32s3.bin");
    let mut real = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    real[23] = 0;
    let mut s =
        UpdateSession::begin(&mut flash, &cfg, SlotId::Factory, UpdateRequest::default()).unwrap();
    let err = s.write(&mut flash, &real).unwrap_err();
    assert!(
        matches!(err, OtaError::Image(ImageError::Sha256Required)),
        "{err:?}"
    );
}
