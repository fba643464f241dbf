//! Property tests: the streaming verifier agrees with whole-file verification
//! for any chunking, mutations of valid images are caught (or, when they hit
//! bytes no check covers, give the same verdict), and nothing panics.

use otter_format::chip::Chip;
use otter_format::image::{
    inspect, verify, AppImageBuilder, ImageError, ImageInfo, StreamingVerifier, VerifyOptions,
};
use proptest::prelude::*;

fn chips() -> impl Strategy<Value = Chip> {
    proptest::sample::select(Chip::all().collect::<Vec<_>>())
}

fn image(chip: Chip, extra: u32) -> Vec<u8> {
    AppImageBuilder::new(chip)
        .version("1.2.3")
        .size(80_000 + extra * 16)
        .build()
        .expect("build")
}

fn stream(bytes: &[u8], cuts: &[usize], opts: VerifyOptions) -> Result<ImageInfo, ImageError> {
    let mut v = StreamingVerifier::new(opts);
    let mut at = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    points.push(bytes.len());
    for p in points {
        let _ = v.feed(&bytes[at..p]);
        at = p;
    }
    v.finish()
}

fn options() -> impl Strategy<Value = VerifyOptions> {
    (
        proptest::option::of(chips()),
        proptest::option::of(0x4000u32..0x8000),
        proptest::option::of(0u32..2),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(chip, slot, min_sv, require_app, integrity, hash_image, require_sha256)| {
                VerifyOptions {
                    chip,
                    slot_size: slot,
                    min_secure_version: min_sv,
                    expected_sha256: None,
                    require_app,
                    check_integrity: integrity,
                    hash_image,
                    require_sha256,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn streaming_equals_whole_for_valid_images(
        chip in chips(), extra in 0u32..64, cuts in proptest::collection::vec(any::<usize>(), 0..12),
        opts in options(),
    ) {
        let img = image(chip, extra);
        prop_assert_eq!(stream(&img, &cuts, opts), verify(&img, &opts));
    }

    #[test]
    fn streaming_equals_whole_for_corrupted_images(
        chip in chips(), extra in 0u32..16,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        truncate in proptest::option::of(any::<usize>()),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        opts in options(),
    ) {
        let mut img = image(chip, extra);
        for (at, b) in &edits {
            let n = img.len();
            img[at % n] = *b;
        }
        if let Some(t) = truncate {
            img.truncate(t % (img.len() + 1));
        }
        img.extend_from_slice(&tail);
        prop_assert_eq!(stream(&img, &cuts, opts), verify(&img, &opts));
    }

    #[test]
    fn mutations_of_valid_images_are_rejected(
        chip in chips(), extra in 0u32..16, at in any::<usize>(), flip in 1u8..=255,
    ) {
        let mut img = image(chip, extra);
        let good = verify(&img, &VerifyOptions::new()).expect("valid");
        let i = at % img.len();
        img[i] ^= flip;
        // Every byte of the image is covered by the SHA-256 (or is the
        // stored digest), so any change must be refused.
        let r = verify(&img, &VerifyOptions::new());
        prop_assert!(r.is_err(), "flip at {:#x} accepted", i);
        let _ = good;
    }

    #[test]
    fn trailing_bytes_do_not_change_the_verdict(
        chip in chips(), extra in 0u32..16, pad in 0usize..5000,
    ) {
        let img = image(chip, extra);
        let good = verify(&img, &VerifyOptions::new()).expect("valid");
        let mut padded = img.clone();
        padded.resize(img.len() + pad, 0xFF);
        let p = verify(&padded, &VerifyOptions::new()).expect("still valid");
        prop_assert_eq!(p.image_len, good.image_len);
        prop_assert_eq!(p.app_desc, good.app_desc);
        prop_assert!(p.trailing_erased);
        prop_assert_eq!(p.file_len, img.len() as u64 + pad as u64);
    }

    #[test]
    fn random_bytes_never_panic(
        mut data in proptest::collection::vec(any::<u8>(), 0..2048),
        magic in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        if magic && !data.is_empty() {
            data[0] = 0xE9;
            if data.len() > 23 { data[23] &= 1; }
            if data.len() > 13 { data[12] = 5; data[13] = 0; }
        }
        let whole = inspect(&data);
        prop_assert_eq!(stream(&data, &cuts, VerifyOptions::inspect()), whole);
        let _ = verify(&data, &VerifyOptions::new());
    }
}

#[test]
fn expected_sha256_is_checked_at_the_end() {
    use sha2::Digest;
    let img = image(Chip::Esp32c3, 0);
    let digest: [u8; 32] = sha2::Sha256::digest(&img).into();
    verify(&img, &VerifyOptions::new().expected_sha256(digest)).expect("right digest");
    let mut wrong = digest;
    wrong[0] ^= 1;
    assert!(matches!(
        verify(&img, &VerifyOptions::new().expected_sha256(wrong)),
        Err(ImageError::FileShaMismatch { .. })
    ));
}

#[test]
fn state_size_is_bounded() {
    let size = core::mem::size_of::<StreamingVerifier>();
    println!("StreamingVerifier is {size} bytes");
    assert!(size <= otter_format::image::STATE_SIZE_LIMIT);
}
