//! The signature arithmetic, one function per scheme, each behind the crate
//! feature that brings its RustCrypto crate (`sbv2-rsa`, `sbv2-ecdsa`).
//!
//! Blocks store numbers little-endian (the layout of the chips' RSA and ECDSA
//! accelerators); the crates want big-endian, so each number is reversed into
//! a stack buffer first.

use super::block::SignatureBlock;
#[cfg(any(feature = "sbv2-rsa", feature = "sbv2-ecdsa"))]
use super::block::{BlockKey, Scheme};
use super::error::SignatureError;

/// Checks `b`'s signature over `digest` (already checked to be the block's
/// image digest) with `b`'s own key (already checked to be trusted).
pub(crate) fn check_signature(
    b: &SignatureBlock<'_>,
    block: u8,
    digest: &[u8],
) -> Result<(), SignatureError> {
    let scheme = b.scheme();
    match (scheme, b.key()) {
        #[cfg(feature = "sbv2-rsa")]
        (Scheme::Rsa3072, BlockKey::Rsa { n, e, .. }) => {
            rsa_pss(n, e, b.signature(), digest, block)
        }
        #[cfg(feature = "sbv2-ecdsa")]
        (Scheme::EcdsaP256, BlockKey::Ecdsa { x, y, .. }) => {
            ecdsa_p256(x, y, b.signature(), digest, block)
        }
        #[cfg(feature = "sbv2-ecdsa")]
        (Scheme::EcdsaP384, BlockKey::Ecdsa { x, y, .. }) => {
            ecdsa_p384(x, y, b.signature(), digest, block)
        }
        _ => {
            let _ = digest;
            Err(SignatureError::UnsupportedScheme { block, scheme })
        }
    }
}

/// Copies `src` reversed into the start of `dst`; returns the filled part.
#[cfg(any(feature = "sbv2-rsa", feature = "sbv2-ecdsa"))]
fn reversed<'a>(src: &[u8], dst: &'a mut [u8]) -> &'a [u8] {
    let n = src.len().min(dst.len());
    for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
        *d = *s;
    }
    dst.get(..n).unwrap_or_default()
}

/// RSASSA-PSS, SHA-256, MGF1-SHA-256, salt length 32 (ESP-IDF's
/// `esp_secure_boot_verify_rsa_signature_block`, espsecure's
/// `padding.PSS(MGF1(SHA256), salt_length=32)`).
///
/// In fixed RAM, with no heap and no atomics, so that an ESP32-C3
/// (riscv32imc, RSA-only Secure Boot v2) can check what it installs: the
/// public operation `s^e mod n` on crypto-bigint's fixed-size `U3072`
/// (Montgomery form), then EMSA-PSS-VERIFY of RFC 8017 §9.1.2 over the
/// 384-byte encoded message. The `rsa` crate (heap-allocated integers,
/// `Arc`) stays on the host for signing; the tests check both agree.
#[cfg(feature = "sbv2-rsa")]
fn rsa_pss(
    n_le: &[u8],
    e: u32,
    sig_le: &[u8],
    digest: &[u8],
    block: u8,
) -> Result<(), SignatureError> {
    use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
    use crypto_bigint::{Odd, U3072, U64};
    let scheme = Scheme::Rsa3072;
    let bad_key = SignatureError::BadKey { block, scheme };
    let bad_sig = SignatureError::BadSignature { block, scheme };
    if n_le.len() != super::block::RSA_LEN || sig_le.len() != super::block::RSA_LEN {
        return Err(bad_key);
    }
    let n = U3072::from_le_slice(n_le);
    // A 3072-bit odd modulus and an odd public exponent above 1 (65537 in
    // every key espsecure makes).
    if n.bit_width() != 3072 || e < 3 || e & 1 == 0 {
        return Err(bad_key);
    }
    let n: Odd<U3072> = Option::from(Odd::new(n)).ok_or(bad_key)?;
    let s = U3072::from_le_slice(sig_le);
    if s >= *n.as_ref() {
        return Err(bad_sig);
    }
    let params = FixedMontyParams::new_vartime(n);
    let m = FixedMontyForm::new(&s, &params)
        .pow_bounded_exp(&U64::from_u32(e), 32)
        .retrieve();
    let em = m.to_be_bytes();
    if emsa_pss_verify_sha256(digest, em.as_ref()) {
        Ok(())
    } else {
        Err(bad_sig)
    }
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2) for a 3072-bit modulus: `emBits` =
/// 3071, so `em` is 384 bytes whose top bit must be clear; SHA-256 for the
/// hash and MGF1, salt length 32.
#[cfg(feature = "sbv2-rsa")]
fn emsa_pss_verify_sha256(m_hash: &[u8], em: &[u8]) -> bool {
    use sha2::{Digest as _, Sha256};
    const H_LEN: usize = 32;
    const S_LEN: usize = 32;
    const EM_LEN: usize = super::block::RSA_LEN;
    const DB_LEN: usize = EM_LEN - H_LEN - 1;
    const PS_LEN: usize = EM_LEN - H_LEN - S_LEN - 2;
    if m_hash.len() != H_LEN || em.len() != EM_LEN || em[EM_LEN - 1] != 0xbc {
        return false;
    }
    let (masked_db, rest) = em.split_at(DB_LEN);
    let h = &rest[..H_LEN];
    // 8 * emLen - emBits = 1 leftmost bit must be zero.
    if masked_db[0] & 0x80 != 0 {
        return false;
    }
    // DB = maskedDB xor MGF1(H, DB_LEN), one SHA-256 block at a time.
    let mut db = [0u8; DB_LEN];
    for (counter, chunk) in db.chunks_mut(H_LEN).enumerate() {
        let mask = Sha256::new()
            .chain_update(h)
            .chain_update((counter as u32).to_be_bytes())
            .finalize();
        let at = counter * H_LEN;
        for (i, d) in chunk.iter_mut().enumerate() {
            *d = masked_db[at + i] ^ mask[i];
        }
    }
    db[0] &= 0x7f;
    if db[..PS_LEN].iter().any(|&b| b != 0) || db[PS_LEN] != 0x01 {
        return false;
    }
    let salt = &db[DB_LEN - S_LEN..];
    let h2 = Sha256::new()
        .chain_update([0u8; 8])
        .chain_update(m_hash)
        .chain_update(salt)
        .finalize();
    h2.as_slice() == h
}

/// One ECDSA verifier per curve: the block's little-endian key coordinates
/// and (r, s) become SEC1 and big-endian `r‖s`, then the prehashed digest is
/// checked. `$n` is the curve's coordinate size in bytes.
macro_rules! ecdsa_verifier {
    ($(#[$doc:meta])* $name:ident, $curve:ident, $scheme:expr, $n:expr) => {
        $(#[$doc])*
        #[cfg(feature = "sbv2-ecdsa")]
        fn $name(
            x: &[u8],
            y: &[u8],
            rs_le: &[u8],
            digest: &[u8],
            block: u8,
        ) -> Result<(), SignatureError> {
            use $curve::ecdsa::signature::hazmat::PrehashVerifier;
            use $curve::ecdsa::{Signature, VerifyingKey};
            let scheme = $scheme;
            let mut sec1 = [0u8; 1 + 2 * $n];
            sec1[0] = 0x04;
            ecdsa_point(x, y, &mut sec1[1..]);
            let key = VerifyingKey::from_sec1_bytes(&sec1)
                .map_err(|_| SignatureError::BadKey { block, scheme })?;
            let mut rs = [0u8; 2 * $n];
            ecdsa_point(
                rs_le.get(..$n).unwrap_or_default(),
                rs_le.get($n..).unwrap_or_default(),
                &mut rs,
            );
            let sig = Signature::from_slice(&rs)
                .map_err(|_| SignatureError::BadSignature { block, scheme })?;
            key.verify_prehash(digest, &sig)
                .map_err(|_| SignatureError::BadSignature { block, scheme })
        }
    };
}

ecdsa_verifier!(
    /// ECDSA P-256 over a SHA-256 digest.
    ecdsa_p256,
    p256,
    Scheme::EcdsaP256,
    32
);
ecdsa_verifier!(
    /// ECDSA P-384 over a SHA-384 digest.
    ecdsa_p384,
    p384,
    Scheme::EcdsaP384,
    48
);

/// Writes two little-endian numbers as big-endian `a‖b` into `out`.
#[cfg(feature = "sbv2-ecdsa")]
fn ecdsa_point(a_le: &[u8], b_le: &[u8], out: &mut [u8]) {
    let (a, b) = out.split_at_mut(out.len() / 2);
    reversed(a_le, a);
    reversed(b_le, b);
}

/// ECDSA P-256 over SHA-256 of the data, for Secure Boot v1. `key_sec1` is
/// an uncompressed SEC1 point (65 bytes) or the raw x‖y (64 bytes,
/// big-endian), as espsecure accepts; `rs_be` is r‖s big-endian.
#[cfg(feature = "sbv2-ecdsa")]
pub(crate) fn ecdsa_p256_v1(
    key_sec1: &[u8],
    rs_be: &[u8],
    digest: &[u8],
) -> Result<(), SignatureError> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::ecdsa::{Signature, VerifyingKey};
    let scheme = Scheme::EcdsaP256;
    let mut point = [0u8; 65];
    let key_bytes: &[u8] = if key_sec1.len() == 64 {
        point[0] = 0x04;
        point[1..].copy_from_slice(key_sec1);
        &point
    } else {
        key_sec1
    };
    let key = VerifyingKey::from_sec1_bytes(key_bytes)
        .map_err(|_| SignatureError::BadKey { block: 0, scheme })?;
    let sig = Signature::from_slice(rs_be)
        .map_err(|_| SignatureError::BadSignature { block: 0, scheme })?;
    key.verify_prehash(digest, &sig)
        .map_err(|_| SignatureError::BadSignature { block: 0, scheme })
}

/// The fixed-size RSA-PSS check against the `rsa` crate's own
/// `pss_verify_prehash` (heap integers, the host's signer): on a real
/// signature and on random changes to the signature, the digest and the
/// modulus, both say the same.
#[cfg(all(test, feature = "sign"))]
mod rsa_differential {
    use super::rsa_pss;
    use crate::chip::Chip;
    use crate::image::AppImageBuilder;
    use crate::secure_boot::block::{parse_sector, BlockKey, Slot};
    use crate::secure_boot::sign::{sign_image, SignMode, SigningKey};
    use proptest::prelude::*;
    use std::vec::Vec;

    const RSA: &str = include_str!("../../tests/data/secure-boot/rsa3072.pem");

    /// (n, e, signature, digest), little-endian as in the block.
    fn signed_block() -> (Vec<u8>, u32, Vec<u8>, Vec<u8>) {
        let img = AppImageBuilder::new(Chip::Esp32c3)
            .version("1.0.0")
            .build()
            .unwrap();
        let len = img.len() as u32;
        let key = SigningKey::from_pem(RSA).unwrap();
        let out = sign_image(&img, len, &key, SignMode::Fresh).unwrap();
        let at = (len as usize).div_ceil(4096) * 4096;
        let Slot::Block(b) = parse_sector(&out[at..], at as u64).unwrap()[0] else {
            panic!("no block");
        };
        let BlockKey::Rsa { n, e, .. } = b.key() else {
            panic!("not an RSA block");
        };
        (
            n.to_vec(),
            e,
            b.signature().to_vec(),
            b.image_digest().to_vec(),
        )
    }

    fn reference(n_le: &[u8], e: u32, sig_le: &[u8], digest: &[u8]) -> bool {
        use rsa::{BoxedUint, PublicKey};
        let be = |v: &[u8]| v.iter().rev().copied().collect::<Vec<u8>>();
        let n = BoxedUint::from_be_slice_vartime(&be(n_le));
        if n.bit_width() != 3072 {
            return false;
        }
        let Ok(key) = PublicKey::new(n, BoxedUint::from(u64::from(e))) else {
            return false;
        };
        key.pss_verify_prehash::<sha2::Sha256>(digest, &be(sig_le))
            .is_ok()
    }

    #[test]
    fn a_real_signature_verifies_in_both() {
        let (n, e, s, d) = signed_block();
        assert!(reference(&n, e, &s, &d));
        assert_eq!(rsa_pss(&n, e, &s, &d, 0), Ok(()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn both_agree_on_changed_inputs(which in 0u8..3, at in 0usize..384, bit in 0u8..8) {
            let (mut n, e, mut s, mut d) = signed_block();
            match which {
                0 => s[at] ^= 1 << bit,
                1 => d[at % 32] ^= 1 << bit,
                _ => n[at] ^= 1 << bit,
            }
            let ours = rsa_pss(&n, e, &s, &d, 0).is_ok();
            prop_assert_eq!(ours, reference(&n, e, &s, &d));
            prop_assert!(!ours, "a changed input verified");
        }
    }
}
