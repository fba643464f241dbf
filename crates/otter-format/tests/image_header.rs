//! Header-field mutations of real corpus images with the SHA-256 flag off:
//! with `hash_appended` 0 nothing but the verifier's field checks protects the
//! header (the XOR checksum covers segment data only). Each mutation must be
//! refused with its exact variant, by the whole-file and the streaming
//! verifier alike, and esptool's `image-info` is the oracle for the fields it
//! judges (it warns on an invalid flash mode, size or frequency).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use otter_format::chip::Chip;
use otter_format::image::{verify, ImageError, StreamingVerifier, VerifyOptions};

/// A real ESP-IDF app (hash flag on in the file).
const APP: &str = "app-images/esp-serial-flasher/hello_world-esp32.bin";
const APP_C3: &str = "app-images/esp-serial-flasher/hello_world-esp32c3.bin";

fn hash_off(rel: &str) -> Vec<u8> {
    let mut b = corpus_bytes(rel);
    assert_eq!(b[23], 1, "{rel}: the corpus image appends a SHA-256");
    b[23] = 0;
    b
}

/// The whole-file and streaming verdicts (chunks of 1, 7 and 4096 bytes),
/// which must agree; returns the verdict.
fn verdict(bytes: &[u8], opts: VerifyOptions) -> Result<(), ImageError> {
    let whole = verify(bytes, &opts).map(|_| ());
    for chunk in [1usize, 7, 4096] {
        let mut v = StreamingVerifier::new(opts);
        for c in bytes.chunks(chunk) {
            if v.feed(c).is_err() {
                break;
            }
        }
        let streamed = v.finish().map(|_| ());
        assert_eq!(
            streamed, whole,
            "chunk {chunk}: streaming and whole-file disagree"
        );
    }
    whole
}

/// esptool's `image-info` warnings for an image (lines with "WARNING").
fn esptool_warnings(bytes: &[u8], name: &str) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("otter-image-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, bytes).expect("write image");
    let out = Command::new(python())
        .args(["-m", "esptool", "image-info"])
        .arg(&path)
        .output()
        .expect("running esptool");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "esptool image-info failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .filter(|l| l.contains("WARNING"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn hash_flag_off_unmutated_is_valid_to_both() {
    let b = hash_off(APP);
    assert_eq!(verdict(&b, VerifyOptions::new().chip(Chip::Esp32)), Ok(()));
    assert_eq!(esptool_warnings(&b, "plain.bin"), Vec::<String>::new());
}

/// A named header mutation, the error it must give and esptool's warning.
type Mutation = (&'static str, fn(&mut Vec<u8>), ImageError, &'static str);

#[test]
fn flash_nibbles_esptool_warns_on_are_refused() {
    let base = hash_off(APP);
    let cases: [Mutation; 3] = [
        (
            "mode",
            |b| b[2] = 9,
            ImageError::InvalidFlashMode { code: 9 },
            "Invalid flash mode",
        ),
        (
            "size",
            |b| b[3] = (b[3] & 0x0F) | 0xF0,
            ImageError::InvalidFlashSize { code: 0xF },
            "Invalid flash size",
        ),
        (
            "freq",
            |b| b[3] = (b[3] & 0xF0) | 0x9,
            ImageError::InvalidFlashFreq {
                chip: Chip::Esp32,
                code: 0x9,
            },
            "Invalid flash frequency",
        ),
    ];
    for (name, mutate, want, warning) in cases {
        let mut b = base.clone();
        mutate(&mut b);
        let warnings = esptool_warnings(&b, &format!("{name}.bin"));
        assert!(
            warnings.iter().any(|w| w.contains(warning)),
            "{name}: esptool should warn {warning:?}, said {warnings:?}"
        );
        assert_eq!(
            verdict(&b, VerifyOptions::new().chip(Chip::Esp32)),
            Err(want),
            "{name}"
        );
    }
}

#[test]
fn entry_point_outside_every_segment_is_refused() {
    let mut b = hash_off(APP);
    b[4..8].copy_from_slice(&0xdead_beefu32.to_le_bytes());
    assert_eq!(
        verdict(&b, VerifyOptions::new()),
        Err(ImageError::EntryOutsideSegments { entry: 0xdead_beef })
    );
    // Inside the header's padding region (address 0) is no loaded segment.
    let mut b = hash_off(APP_C3);
    b[4..8].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(
        verdict(&b, VerifyOptions::new().chip(Chip::Esp32c3)),
        Err(ImageError::EntryOutsideSegments { entry: 0 })
    );
}

#[test]
fn chip_revision_range_upside_down_is_refused() {
    let mut b = hash_off(APP_C3);
    // min v3.1 above max v1.99
    b[15..17].copy_from_slice(&301u16.to_le_bytes());
    b[17..19].copy_from_slice(&199u16.to_le_bytes());
    assert_eq!(
        verdict(&b, VerifyOptions::new()),
        Err(ImageError::ChipRevRange { min: 301, max: 199 })
    );
}

#[test]
fn segment_count_and_load_address_mutations_are_refused() {
    let base = hash_off(APP);
    let mut b = base.clone();
    b[1] = 17;
    assert_eq!(
        verdict(&b, VerifyOptions::new()),
        Err(ImageError::TooManySegments { count: 17 })
    );
    // Segment 0 (DROM, header at 0x18) moved to the last bytes of the DROM
    // window: its data runs out of the mapped range.
    let mut b = base.clone();
    let len = u32::from_le_bytes([b[0x1c], b[0x1d], b[0x1e], b[0x1f]]);
    let load = 0x3F80_0000 - 0x20;
    b[0x18..0x1c].copy_from_slice(&u32::to_le_bytes(load));
    assert_eq!(
        verdict(&b, VerifyOptions::new()),
        Err(ImageError::SegmentOutOfRange {
            index: 0,
            chip: Chip::Esp32,
            load_addr: load,
            len,
        })
    );
}

#[test]
fn flipping_the_hash_flag_is_refused_when_the_sha256_is_required() {
    let b = hash_off(APP);
    let err = verdict(&b, VerifyOptions::new().require_sha256(true)).unwrap_err();
    assert_eq!(err, ImageError::Sha256Required);
    assert_eq!(err.code(), "sha256_required");
    // The unmodified image passes the same policy.
    let orig = corpus_bytes(APP);
    assert_eq!(
        verdict(&orig, VerifyOptions::new().require_sha256(true)),
        Ok(())
    );
}

#[test]
fn every_corpus_app_keeps_passing_with_the_hash_flag_off() {
    for p in corpus_bins("app-images") {
        let rel = p
            .strip_prefix(corpus())
            .expect("under the corpus")
            .to_string_lossy()
            .into_owned();
        let b = hash_off(&rel);
        assert_eq!(verdict(&b, VerifyOptions::new()), Ok(()), "{rel}");
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Any mutation of the header (hash flag kept off): the streaming and
        /// whole-file verdicts agree (checked in `verdict`), and an accepted
        /// image has every field valid and its entry point in a loaded segment.
        #[test]
        fn an_accepted_mutated_header_is_valid(at in 1usize..23, value in any::<u8>()) {
            let mut b = hash_off(APP);
            b[at] = value;
            if verdict(&b, VerifyOptions::new()).is_ok() {
                let info = verify(&b, &VerifyOptions::new()).expect("accepted");
                let h = info.header;
                prop_assert!(h.flash_mode().is_some());
                prop_assert!(h.flash_size().is_some());
                prop_assert!(info.chip.flash_freq_name(h.flash_freq_code()).is_some());
                let entry = h.entry_addr;
                let inside = info.segments().iter().any(|s| {
                    s.kind != otter_format::image::SegmentKind::Padding
                        && entry >= s.load_addr
                        && u64::from(entry) < u64::from(s.load_addr) + u64::from(s.len)
                });
                prop_assert!(inside, "entry {:#x} in no loaded segment", entry);
            }
        }
    }
}
