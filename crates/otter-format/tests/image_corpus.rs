//! Every real image in the corpus, parsed by otter and by esptool: the fields
//! must agree. Negative files must be refused for what they are.

mod common;

use common::*;
use otter_format::chip::Chip;
use otter_format::image::{
    inspect, verify, ImageError, ImageKind, SegmentKind, SignatureScheme, StreamingVerifier,
    VerifyOptions,
};

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn s(v: &serde_json::Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

#[test]
fn corpus_images_match_esptool() {
    let mut files = corpus_bins("app-images");
    files.extend(corpus_bins("bootloaders"));
    files.extend(corpus_bins("delta-pairs"));
    let oracle = esptool_describe(&files);
    assert_eq!(oracle.len(), files.len());
    for (path, o) in files.iter().zip(&oracle) {
        let name = path.display();
        assert!(o.get("error").is_none(), "esptool failed on {name}: {o}");
        let bytes = std::fs::read(path).expect("read");
        let info = inspect(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(u64::from(info.header.chip_id), u(&o["chip_id"]), "{name}");
        assert_eq!(info.chip.name(), s(&o["chip"]), "{name}");
        assert_eq!(u64::from(info.header.entry_addr), u(&o["entry"]), "{name}");
        assert_eq!(
            u64::from(info.header.spi_mode),
            u(&o["flash_mode"]),
            "{name}"
        );
        assert_eq!(
            u64::from(info.header.spi_size_speed),
            u(&o["flash_size_freq"]),
            "{name}"
        );
        assert_eq!(u64::from(info.header.min_chip_rev), u(&o["min_rev"]));
        assert_eq!(
            u64::from(info.header.min_chip_rev_full),
            u(&o["min_rev_full"])
        );
        assert_eq!(
            u64::from(info.header.max_chip_rev_full),
            u(&o["max_rev_full"])
        );
        let segs = o["segments"].as_array().expect("segments");
        assert_eq!(info.segments().len(), segs.len(), "{name}");
        for (i, (ours, theirs)) in info.segments().iter().zip(segs).enumerate() {
            assert_eq!(
                u64::from(ours.load_addr),
                u(&theirs["load_addr"]),
                "{name} seg {i}"
            );
            assert_eq!(u64::from(ours.len), u(&theirs["len"]), "{name} seg {i}");
            assert_eq!(
                u64::from(ours.header_offset()),
                u(&theirs["header_offset"]),
                "{name} seg {i}"
            );
            assert_eq!(
                ours.kind == SegmentKind::Flash,
                theirs["flash"].as_bool().expect("flash"),
                "{name} seg {i}"
            );
        }
        assert_eq!(
            u64::from(info.checksum_stored),
            u(&o["checksum_stored"]),
            "{name}"
        );
        assert_eq!(
            u64::from(info.checksum_computed),
            u(&o["checksum_computed"]),
            "{name}"
        );
        assert!(info.checksum_valid(), "{name}");
        assert_eq!(
            info.sha256.is_some(),
            o["sha256_appended"].as_bool().expect("bool")
        );
        if let Some(sha) = &info.sha256 {
            assert_eq!(hex(&sha.stored), s(&o["sha256_stored"]), "{name}");
            assert_eq!(hex(&sha.computed), s(&o["sha256_computed"]), "{name}");
            assert_eq!(u64::from(sha.offset), u(&o["data_length"]), "{name}");
            assert!(sha.is_valid(), "{name}");
        }
        match (&info.app_desc, &o["app_desc"]) {
            (None, serde_json::Value::Null) => {}
            (Some(d), od) if od.is_object() => {
                assert_eq!(
                    u64::from(d.secure_version()),
                    u(&od["secure_version"]),
                    "{name}"
                );
                assert_eq!(d.version().as_str(), Some(s(&od["version"])), "{name}");
                assert_eq!(
                    d.project_name().as_str(),
                    Some(s(&od["project_name"])),
                    "{name}"
                );
                assert_eq!(d.time().as_str(), Some(s(&od["time"])), "{name}");
                assert_eq!(d.date().as_str(), Some(s(&od["date"])), "{name}");
                assert_eq!(d.idf_ver().as_str(), Some(s(&od["idf_ver"])), "{name}");
                assert_eq!(hex(&d.app_elf_sha256()), s(&od["app_elf_sha256"]), "{name}");
            }
            (ours, theirs) => panic!("{name}: app desc differs: ours {ours:?}, esptool {theirs}"),
        }
        match (&info.bootloader_desc, &o["bootloader_desc"]) {
            (None, serde_json::Value::Null) => {}
            (Some(d), od) if od.is_object() => {
                assert_eq!(u64::from(d.version()), u(&od["version"]), "{name}");
                assert_eq!(d.idf_ver().as_str(), Some(s(&od["idf_ver"])), "{name}");
                assert_eq!(d.date_time().as_str(), Some(s(&od["date_time"])), "{name}");
            }
            // esptool looks for the descriptor in the last DRAM segment of at
            // least 80 bytes and misses it where its memory map does not call
            // segment 0 DRAM (ESP32-C6); ESP-IDF puts it at file offset 0x20.
            (Some(_), serde_json::Value::Null) => {
                assert_eq!(bytes[0x20], 0x50, "{name}");
                assert!(info.segments()[0].len >= 80, "{name}");
            }
            (ours, theirs) => panic!("{name}: bootloader desc differs: {ours:?} vs {theirs}"),
        }

        let is_bootloader = path.to_string_lossy().contains("/bootloaders/");
        let expected_kind = if is_bootloader {
            ImageKind::Bootloader
        } else {
            ImageKind::App
        };
        assert_eq!(info.kind, expected_kind, "{name}");
        let verdict = verify(&bytes, &VerifyOptions::new().chip(info.chip));
        if is_bootloader {
            assert_eq!(verdict, Err(ImageError::IsBootloader), "{name}");
        } else {
            assert_eq!(verdict.as_ref(), Ok(&info), "{name}");
        }
    }
}

#[test]
fn signed_esp32_image_carries_a_secure_boot_v1_signature() {
    let bytes = std::fs::read(corpus().join("app-images/esptool/hello-world-signed-esp32.bin"))
        .expect("read");
    let info = verify(&bytes, &VerifyOptions::new()).expect("valid");
    let sig = info.signature.expect("signature found");
    assert_eq!(sig.scheme, SignatureScheme::SecureBootV1);
    assert_eq!(sig.offset, info.image_len);
    assert_eq!(sig.len, 68);
    assert_eq!(info.image_len, 0x2ffb0);
    assert_eq!(info.file_len, 196_608);
    // esptool secure_pad "1": 68-byte block + 12 bytes of 0xFF to the 64 KiB boundary.
    assert!(!info.trailing_erased);
}

#[test]
fn unsigned_images_have_no_signature() {
    for p in corpus_bins("app-images/esp-serial-flasher") {
        let info = inspect(&std::fs::read(&p).expect("read")).expect("parse");
        assert_eq!(info.signature, None, "{}", p.display());
    }
}

#[test]
fn esp8266_image_is_refused_as_esp8266() {
    let bytes = std::fs::read(corpus().join("negative/esp8266_deepsleep.bin")).expect("read");
    let err = inspect(&bytes).expect_err("ESP8266");
    assert!(
        matches!(
            err,
            ImageError::Esp8266 {
                hash_appended: 64,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("ESP8266"));
    assert_eq!(
        verify(&bytes, &VerifyOptions::new()).expect_err("ESP8266"),
        err
    );
}

#[test]
fn merged_flash_image_is_named() {
    let bytes =
        std::fs::read(corpus().join("negative/merged-flash-image-esp32c3.bin")).expect("read");
    let info = inspect(&bytes).expect("the bootloader at offset 0 parses");
    assert_eq!(info.kind, ImageKind::MergedFlash);
    assert_eq!(info.chip, Chip::Esp32c3);
    assert!(info.checksum_valid());
    let err = verify(&bytes, &VerifyOptions::new()).expect_err("merged");
    assert_eq!(err, ImageError::IsMergedFlash);
    let msg = err.to_string();
    assert!(
        msg.contains("merge-bin") && msg.contains("0x10000"),
        "{msg}"
    );
    // The app inside, at 0x10000, is a valid app.
    let app = verify(&bytes[0x10000..], &VerifyOptions::new().chip(Chip::Esp32c3));
    assert_eq!(app.map(|i| i.kind), Ok(ImageKind::App));
}

#[test]
fn ram_only_image_is_named() {
    let bytes = std::fs::read(corpus().join("negative/ram-only-app-esp32s3.bin")).expect("read");
    let info = inspect(&bytes).expect("valid image");
    assert_eq!(info.kind, ImageKind::RamOnly);
    assert!(info.checksum_valid() && info.sha256_valid() == Some(true));
    assert_eq!(
        verify(&bytes, &VerifyOptions::new()),
        Err(ImageError::IsRamOnly)
    );
}

#[test]
fn mangled_otadata_is_not_an_image() {
    let bytes = std::fs::read(corpus().join("negative/corrupted-boot_app0-utf8-mangled.bin"))
        .expect("read");
    assert_eq!(inspect(&bytes), Err(ImageError::BadMagic { got: 0xEF }));
}

#[test]
fn streaming_agrees_on_every_corpus_file() {
    let mut files = corpus_bins("app-images");
    files.extend(corpus_bins("bootloaders"));
    files.extend(corpus_bins("negative"));
    for p in files {
        let bytes = std::fs::read(&p).expect("read");
        for opts in [VerifyOptions::new(), VerifyOptions::inspect()] {
            let whole = verify(&bytes, &opts);
            for chunk in [1usize, 7, 24, 0x120, 4096] {
                let mut v = StreamingVerifier::new(opts);
                for c in bytes.chunks(chunk) {
                    if v.feed(c).is_err() {
                        break;
                    }
                }
                assert_eq!(v.finish(), whole, "{} chunk {chunk}", p.display());
            }
        }
    }
}

#[test]
fn early_verdicts_arrive_early() {
    let bytes =
        std::fs::read(corpus().join("app-images/esp-serial-flasher/hello_world-esp32c3.bin"))
            .expect("read");
    // Wrong chip: refused after the 24-byte header.
    let mut v = StreamingVerifier::new(VerifyOptions::new().chip(Chip::Esp32));
    assert!(v.feed(&bytes[..23]).is_ok());
    assert!(matches!(
        v.feed(&bytes[23..24]),
        Err(ImageError::WrongChip { .. })
    ));
    // Anti-rollback: refused once the descriptor (0x120 bytes) is in.
    let mut v = StreamingVerifier::new(VerifyOptions::new().min_secure_version(1));
    let p = v.feed(&bytes[..0x11F]).expect("not yet");
    assert!(!p.app_desc_resolved);
    assert_eq!(
        v.feed(&bytes[0x11F..0x120]),
        Err(ImageError::SecureVersionTooLow { got: 0, min: 1 })
    );
    // Slot size: refused when the last segment header arrives.
    let info = inspect(&bytes).expect("parse");
    let last = info.segments().last().expect("segments");
    let end = last.data_offset as usize;
    let slot = end as u32 + 0x100;
    let mut v = StreamingVerifier::new(VerifyOptions::new().slot_size(slot));
    assert!(v.feed(&bytes[..end - 1]).is_ok());
    assert_eq!(
        v.feed(&bytes[end - 1..end]),
        Err(ImageError::ImageTooLarge {
            image_len: info.image_len,
            slot_size: slot
        })
    );
    // Progress reports the length then.
    let mut v = StreamingVerifier::new(VerifyOptions::new());
    let p = v.feed(&bytes[..end]).expect("ok");
    assert_eq!(p.image_len, Some(info.image_len));
    assert_eq!(p.secure_version, Some(0));
    assert!(!p.image_complete);
}
