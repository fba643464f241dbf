//! Unit tests: block layout, exact errors, sign/verify round trips with keys
//! espsecure generated (`tests/data/secure-boot/`), never-panics proptests.

use std::vec::Vec;

use proptest::prelude::*;

use super::sign::{sign_image, KeyError, PublicKey, SignError, SignMode, SigningKey};
use super::*;
use crate::chip::Chip;
use crate::image::AppImageBuilder;

const RSA: &str = include_str!("../../tests/data/secure-boot/rsa3072.pem");
const P256: &str = include_str!("../../tests/data/secure-boot/ecdsa256.pem");
const P384: &str = include_str!("../../tests/data/secure-boot/ecdsa384.pem");
const RSA_PUB: &str = include_str!("../../tests/data/secure-boot/rsa3072.pub.pem");
const P256_PUB: &str = include_str!("../../tests/data/secure-boot/ecdsa256.pub.pem");
const P384_PUB: &str = include_str!("../../tests/data/secure-boot/ecdsa384.pub.pem");
/// `espsecure digest-sbv2-public-key` output for the keys above.
const RSA_DIGEST: &[u8] = include_bytes!("../../tests/data/secure-boot/rsa3072.digest");
const P256_DIGEST: &[u8] = include_bytes!("../../tests/data/secure-boot/ecdsa256.digest");
const P384_DIGEST: &[u8] = include_bytes!("../../tests/data/secure-boot/ecdsa384.digest");

fn key(pem: &str) -> SigningKey {
    SigningKey::from_pem(pem).expect("test key parses")
}

fn image() -> (Vec<u8>, u32) {
    let img = AppImageBuilder::new(Chip::Esp32c3)
        .version("1.0.0")
        .build()
        .expect("test image builds");
    let len = img.len() as u32;
    (img, len)
}

fn signed(pem: &str) -> (Vec<u8>, u32) {
    let (img, len) = image();
    let out = sign_image(&img, len, &key(pem), SignMode::Fresh).expect("signs");
    (out, len)
}

fn digest(pem: &str) -> [u8; 32] {
    key(pem).public_key().digest()
}

/// Rewrites block `i`'s CRC after an edit, so the edit reaches the later checks.
fn fix_crc(file: &mut [u8], sector: usize, i: usize) {
    let at = sector + i * BLOCK_LEN;
    let crc = block_crc(&file[at..at + BLOCK_CRC_OFFSET]);
    file[at + BLOCK_CRC_OFFSET..at + BLOCK_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn key_digests_equal_espsecure() {
    assert_eq!(digest(RSA).as_slice(), RSA_DIGEST);
    assert_eq!(digest(P256).as_slice(), P256_DIGEST);
    assert_eq!(digest(P384).as_slice(), P384_DIGEST);
    for (pem, d) in [
        (RSA_PUB, RSA_DIGEST),
        (P256_PUB, P256_DIGEST),
        (P384_PUB, P384_DIGEST),
    ] {
        assert_eq!(
            PublicKey::from_pem(pem)
                .expect("pub key")
                .digest()
                .as_slice(),
            d
        );
    }
}

#[test]
fn each_scheme_signs_and_verifies() {
    for (pem, scheme) in [
        (RSA, Scheme::Rsa3072),
        (P256, Scheme::EcdsaP256),
        (P384, Scheme::EcdsaP384),
    ] {
        let (out, len) = signed(pem);
        let sl = signed_len(len);
        assert_eq!(out.len() as u64, sl + SECTOR_LEN as u64);
        assert!(out[len as usize..sl as usize].iter().all(|b| *b == 0xFF));
        assert!(out[sl as usize + BLOCK_LEN..].iter().all(|b| *b == 0xFF));
        let d = [digest(pem)];
        let v = verify_v2(&out, len, &TrustedKeys::new(&d)).expect("verifies");
        assert_eq!(
            v,
            Verified {
                block: 0,
                scheme,
                key_digest: d[0],
                blocks: 1,
                signed_len: sl
            }
        );
        let slots = parse_sector(&out[sl as usize..], sl).expect("sector");
        let Slot::Block(b) = slots[0] else {
            panic!("block 0 present")
        };
        assert_eq!(b.key_digest(), d[0]);
        assert_eq!(slots[1], Slot::Empty);
    }
}

#[test]
fn block_layout_matches_espsecure_struct() {
    let (out, len) = signed(P256);
    let sl = signed_len(len) as usize;
    let b = &out[sl..sl + BLOCK_LEN];
    assert_eq!(&b[..4], &[0xE7, 0x03, 0x00, 0x00]);
    assert_eq!(b[36], CURVE_P256);
    assert!(b[165..BLOCK_CRC_OFFSET].iter().all(|x| *x == 0));
    assert!(b[1200..].iter().all(|x| *x == 0));
    let (out, len) = signed(P384);
    let sl = signed_len(len) as usize;
    let b = &out[sl..sl + BLOCK_LEN];
    assert_eq!(&b[..4], &[0xE7, 0x03, 0x01, 0x00]);
    assert_eq!(b[52], CURVE_P384);
    assert!(b[245..BLOCK_CRC_OFFSET].iter().all(|x| *x == 0));
    let (out, len) = signed(RSA);
    let sl = signed_len(len) as usize;
    assert_eq!(&out[sl..sl + 4], &[0xE7, 0x02, 0x00, 0x00]);
}

#[test]
fn unsigned_image_is_unsigned() {
    let (img, len) = image();
    let d = [digest(P256)];
    assert_eq!(
        verify_v2(&img, len, &TrustedKeys::new(&d)),
        Err(SignatureError::Unsigned {
            expected_offset: signed_len(len)
        })
    );
}

#[test]
fn wrong_key_is_untrusted() {
    let (out, len) = signed(P256);
    let d = [digest(RSA)];
    assert_eq!(
        verify_v2(&out, len, &TrustedKeys::new(&d)),
        Err(SignatureError::UntrustedKey {
            block: 0,
            key_digest: digest(P256)
        })
    );
}

#[test]
fn revoked_key_is_refused_even_if_trusted() {
    let (out, len) = signed(P256);
    let d = [digest(P256)];
    assert_eq!(
        verify_v2(&out, len, &TrustedKeys::new(&d).revoking(&d)),
        Err(SignatureError::RevokedKey {
            block: 0,
            key_digest: d[0]
        })
    );
}

#[test]
fn no_trusted_keys_is_caller_misuse() {
    let (out, len) = signed(P256);
    assert_eq!(
        verify_v2(&out, len, &TrustedKeys::new(&[])),
        Err(SignatureError::NoTrustedKeys)
    );
}

fn second_p256() -> SigningKey {
    // A second P-256 key, made from a fixed scalar (tests only).
    let scalar = [0x42u8; 32];
    SigningKey::P256(p256::ecdsa::SigningKey::from_slice(&scalar).expect("scalar"))
}

fn third_p256() -> SigningKey {
    SigningKey::P256(p256::ecdsa::SigningKey::from_slice(&[0x17u8; 32]).expect("scalar"))
}

#[test]
fn append_adds_blocks_up_to_three() {
    let (out, len) = signed(P256);
    assert_eq!(
        sign_image(&out, len, &second_p256(), SignMode::Fresh),
        Err(SignError::AlreadySigned { blocks: 1 })
    );
    let two = sign_image(&out, len, &second_p256(), SignMode::Append).expect("append");
    let three = sign_image(&two, len, &third_p256(), SignMode::Append).expect("append");
    assert_eq!(
        sign_image(&three, len, &key(P256), SignMode::Append),
        Err(SignError::SectorFull)
    );
    // The old blocks are kept byte for byte.
    let kept = out.len() - SECTOR_LEN + BLOCK_LEN;
    assert_eq!(&two[..kept], &out[..kept]);
    assert_eq!(&three[..kept + BLOCK_LEN], &two[..kept + BLOCK_LEN]);
    let digests = [
        digest(P256),
        second_p256().public_key().digest(),
        third_p256().public_key().digest(),
    ];
    for (block, d) in digests.iter().enumerate() {
        let d = [*d];
        let v = verify_v2(&three, len, &TrustedKeys::new(&d)).expect("verifies");
        assert_eq!((v.block, v.blocks), (block as u8, 3));
    }
    // Revoking the first key leaves the second to verify (rotation).
    let revoked = [digests[0]];
    let v = verify_v2(
        &three,
        len,
        &TrustedKeys::new(&digests[..2]).revoking(&revoked),
    )
    .expect("rotated");
    assert_eq!(v.block, 1);
}

#[test]
fn append_refuses_a_second_scheme() {
    let (out, len) = signed(RSA);
    assert_eq!(
        sign_image(&out, len, &key(P256), SignMode::Append),
        Err(SignError::SchemeMismatch {
            existing: Scheme::Rsa3072,
            new: Scheme::EcdsaP256
        })
    );
}

#[test]
fn flipped_bytes_give_exact_errors() {
    let (out, len) = signed(P256);
    let sl = signed_len(len) as usize;
    let d = [digest(P256)];
    let t = TrustedKeys::new(&d);
    // Image byte: the digest no longer matches.
    let mut f = out.clone();
    f[100] ^= 1;
    assert_eq!(
        verify_v2(&f, len, &t),
        Err(SignatureError::DigestMismatch {
            block: 0,
            signed_len: sl as u64
        })
    );
    // Digest byte in the block: the CRC catches it first...
    let mut f = out.clone();
    f[sl + 4] ^= 1;
    assert!(matches!(
        verify_v2(&f, len, &t),
        Err(SignatureError::BadCrc { block: 0, offset, .. }) if offset == (sl + BLOCK_CRC_OFFSET) as u64
    ));
    // ...and with the CRC rewritten, the digest check.
    fix_crc(&mut f, sl, 0);
    assert_eq!(
        verify_v2(&f, len, &t),
        Err(SignatureError::DigestMismatch {
            block: 0,
            signed_len: sl as u64
        })
    );
    // Signature byte, CRC rewritten.
    let mut f = out.clone();
    f[sl + 101] ^= 1;
    fix_crc(&mut f, sl, 0);
    assert_eq!(
        verify_v2(&f, len, &t),
        Err(SignatureError::BadSignature {
            block: 0,
            scheme: Scheme::EcdsaP256
        })
    );
    // CRC byte.
    let mut f = out.clone();
    f[sl + BLOCK_CRC_OFFSET] ^= 1;
    assert!(matches!(
        verify_v2(&f, len, &t),
        Err(SignatureError::BadCrc { block: 0, .. })
    ));
}

#[test]
fn truncated_and_misplaced_blocks() {
    let (out, len) = signed(P256);
    let sl = signed_len(len) as usize;
    let d = [digest(P256)];
    let t = TrustedKeys::new(&d);
    assert_eq!(
        verify_v2(&out[..sl + 600], len, &t),
        Err(SignatureError::Truncated {
            offset: sl as u64,
            needed: BLOCK_LEN as u32,
            available: 600
        })
    );
    // The sector one 4 KiB further on.
    let mut moved = out[..sl].to_vec();
    moved.resize(sl + SECTOR_LEN, 0xFF);
    moved.extend_from_slice(&out[sl..]);
    assert_eq!(
        verify_v2(&moved, len, &t),
        Err(SignatureError::MisplacedBlock {
            expected: sl as u64,
            found: (sl + SECTOR_LEN) as u64
        })
    );
    // The block straight after the image, unpadded.
    let mut tight = out[..len as usize].to_vec();
    tight.extend_from_slice(&out[sl..]);
    assert_eq!(
        verify_v2(&tight, len, &t),
        Err(SignatureError::MisplacedBlock {
            expected: sl as u64,
            found: u64::from(len)
        })
    );
}

#[test]
fn signature_over_a_different_length_fails() {
    // Signed as a shorter image, then presented with the image grown by a
    // sector: the block is where the verifier looks, but over other bytes.
    let (out, len) = signed(P256);
    let sl = signed_len(len) as usize;
    let mut longer = out[..sl].to_vec();
    longer.resize(sl + SECTOR_LEN, 0xFF);
    longer.extend_from_slice(&out[sl..]);
    let d = [digest(P256)];
    assert_eq!(
        verify_v2(&longer, len + SECTOR_LEN as u32, &TrustedKeys::new(&d)),
        Err(SignatureError::DigestMismatch {
            block: 0,
            signed_len: (sl + SECTOR_LEN) as u64
        })
    );
}

#[test]
fn bad_header_bytes_name_field_and_offset() {
    let (out, len) = signed(P256);
    let sl = signed_len(len) as usize;
    let mut f = out.clone();
    f[sl + 1] = 0x07;
    assert_eq!(
        SignatureBlock::parse(&f[sl..], 0, sl as u64),
        Err(SignatureError::BadVersion {
            block: 0,
            offset: sl as u64 + 1,
            found: 7
        })
    );
    let mut f = out.clone();
    f[sl + 36] = 9;
    assert_eq!(
        SignatureBlock::parse(&f[sl..], 0, sl as u64),
        Err(SignatureError::BadCurve {
            block: 0,
            offset: sl as u64 + 36,
            found: 9
        })
    );
    let mut f = out.clone();
    f[sl + 2] = 5;
    assert_eq!(
        SignatureBlock::parse(&f[sl..], 0, sl as u64),
        Err(SignatureError::BadShaVersion {
            block: 0,
            offset: sl as u64 + 2,
            found: 5
        })
    );
    assert_eq!(
        SignatureBlock::parse(&[0x55; BLOCK_LEN], 2, 7),
        Err(SignatureError::BadMagic {
            block: 2,
            offset: 7,
            found: 0x55
        })
    );
}

#[test]
fn error_codes_are_stable() {
    let e = SignatureError::BadCrc {
        block: 0,
        offset: 0,
        stored: 0,
        computed: 1,
    };
    assert_eq!(e.code(), "bad_crc");
    assert_eq!(
        SignatureError::Unsigned { expected_offset: 0 }.code(),
        "unsigned"
    );
    assert_eq!(SignatureError::NoTrustedKeys.code(), "no_trusted_keys");
    assert_eq!(KeyError::NotPem.code(), "not_pem");
}

#[test]
fn key_files_are_checked() {
    assert_eq!(SigningKey::from_pem("hello").err(), Some(KeyError::NotPem));
    assert_eq!(
        SigningKey::from_pem(P256_PUB).err(),
        Some(KeyError::PublicOnly)
    );
    assert_eq!(
        SigningKey::from_pem(
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"
        )
        .err(),
        Some(KeyError::Undecodable {
            label: "EC PRIVATE KEY"
        })
    );
}

#[test]
fn stream_verifier_rejects_p384_without_sha384() {
    let (out, len) = signed(P384);
    let d = [digest(P384)];
    let mut v = StreamVerifier::sha256_only(len);
    v.update(&out);
    assert_eq!(
        v.finish(&TrustedKeys::new(&d)),
        Err(SignatureError::UnsupportedScheme {
            block: 0,
            scheme: Scheme::EcdsaP384
        })
    );
}

#[test]
fn v1_block_is_read() {
    let mut f = std::vec![0u8; 100];
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&[7; 64]);
    let b = parse_v1(&f, 100).expect("v1 block");
    assert_eq!((b.offset, b.signature), (100, &[7u8; 64][..]));
    f[100] = 1;
    assert_eq!(
        parse_v1(&f, 100),
        Err(SignatureError::BadV1Version {
            offset: 100,
            found: 1
        })
    );
    assert_eq!(
        parse_v1(&f[..120], 100),
        Err(SignatureError::Truncated {
            offset: 100,
            needed: 68,
            available: 20
        })
    );
    assert_eq!(
        parse_v1(&f[..100], 100),
        Err(SignatureError::Unsigned {
            expected_offset: 100
        })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_sector_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4200), off in any::<u32>()) {
        let _ = parse_sector(&bytes, u64::from(off));
        let _ = SignatureBlock::parse(&bytes, 0, 0);
        let _ = parse_v1(&bytes, off % 5000);
    }

    #[test]
    fn verify_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..9000), len in 0u32..9000) {
        let d = [[0u8; 32]];
        let _ = verify_v2(&bytes, len, &TrustedKeys::new(&d));
    }

    #[test]
    fn any_blockish_bytes_never_panic(mut block in proptest::collection::vec(any::<u8>(), BLOCK_LEN), version in 2u8..4, sha in 0u8..2, curve in 1u8..4) {
        // Force a well-formed header and CRC so the key and signature code runs on junk.
        block[0] = BLOCK_MAGIC;
        block[1] = version;
        block[2] = sha;
        block[36] = curve;
        block[52] = curve;
        let crc = block_crc(&block[..BLOCK_CRC_OFFSET]);
        block[BLOCK_CRC_OFFSET..BLOCK_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        let mut file = std::vec![0xFFu8; 4096];
        file.extend_from_slice(&block);
        if let Ok(Slot::Block(b)) = parse_sector(&block, 0).map(|s| s[0]) {
            let d = [b.key_digest()];
            let r = verify_v2(&file, 4096, &TrustedKeys::new(&d));
            prop_assert!(r.is_err());
        }
    }
}

/// Chunked streaming gives the same verdict as the slice, at any split.
#[test]
fn streaming_equals_slice_at_every_split_sample() {
    let (out, len) = signed(P256);
    let d = [digest(P256)];
    let t = TrustedKeys::new(&d);
    let whole = verify_v2(&out, len, &t);
    assert!(whole.is_ok());
    for split in (0..out.len())
        .step_by(997)
        .chain([out.len() - 1, signed_len(len) as usize])
    {
        let mut v = StreamVerifier::new(len);
        v.update(&out[..split]);
        for chunk in out[split..].chunks(300) {
            v.update(chunk);
        }
        assert_eq!(v.finish(&t), whole, "split at {split}");
    }
}

/// No single-byte change of a signed image verifies (bounded sample of
/// positions over image, padding and block).
#[test]
fn no_single_byte_change_verifies() {
    let (out, len) = signed(P256);
    let sl = signed_len(len) as usize;
    let d = [digest(P256)];
    let t = TrustedKeys::new(&d);
    let positions = (0..sl).step_by(211).chain(sl..sl + BLOCK_CRC_OFFSET + 4);
    let mut checked = 0;
    for p in positions {
        let mut f = out.clone();
        f[p] ^= 0x5A;
        assert!(
            verify_v2(&f, len, &t).is_err(),
            "byte {p:#x} changed and still verifies"
        );
        checked += 1;
    }
    assert!(checked > 1200);
}
