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
#[cfg(feature = "sbv2-rsa")]
fn rsa_pss(
    n_le: &[u8],
    e: u32,
    sig_le: &[u8],
    digest: &[u8],
    block: u8,
) -> Result<(), SignatureError> {
    use rsa::{BoxedUint, PublicKey};
    use sha2::Sha256;
    let scheme = Scheme::Rsa3072;
    let mut n = [0u8; super::block::RSA_LEN];
    let mut s = [0u8; super::block::RSA_LEN];
    let n = BoxedUint::from_be_slice_vartime(reversed(n_le, &mut n));
    if n.bit_width() != 3072 {
        return Err(SignatureError::BadKey { block, scheme });
    }
    let key = PublicKey::new(n, BoxedUint::from(u64::from(e)))
        .map_err(|_| SignatureError::BadKey { block, scheme })?;
    key.pss_verify_prehash::<Sha256>(digest, reversed(sig_le, &mut s))
        .map_err(|_| SignatureError::BadSignature { block, scheme })
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
