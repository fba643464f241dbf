//! Secure Boot v1 (ESP32 only): a 68-byte block right after the image.
//!
//! | Off | Len | Field |
//! |---|---|---|
//! | 0 | 4 | version word, 0 (little-endian) |
//! | 4 | 32 | ECDSA P-256 r, big-endian |
//! | 36 | 32 | ECDSA P-256 s, big-endian |
//!
//! The signature is over SHA-256 of every byte before the block (espsecure
//! `sign-data --version 1`). The block carries no public key: the bootloader
//! has it compiled in. So a v1 image can only be checked with the key
//! itself, never with a key digest.

use sha2::{Digest, Sha256};

use super::error::SignatureError;

/// Length of a Secure Boot v1 block.
pub const V1_BLOCK_LEN: usize = 68;

/// A parsed Secure Boot v1 block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V1Block<'a> {
    /// File offset of the block (the image length).
    pub offset: u64,
    /// r‖s, big-endian (64 bytes).
    pub signature: &'a [u8],
}

/// Reads the v1 block after an image of `image_len` bytes.
pub fn parse_v1(file: &[u8], image_len: u32) -> Result<V1Block<'_>, SignatureError> {
    let offset = u64::from(image_len);
    let at = usize::try_from(image_len).unwrap_or(usize::MAX);
    let rest = file.get(at..).unwrap_or_default();
    if rest.is_empty() {
        return Err(SignatureError::Unsigned {
            expected_offset: offset,
        });
    }
    let raw = rest.get(..V1_BLOCK_LEN).ok_or(SignatureError::Truncated {
        offset,
        needed: V1_BLOCK_LEN as u32,
        available: rest.len() as u32,
    })?;
    let mut w = [0u8; 4];
    w.copy_from_slice(raw.get(..4).unwrap_or(&[0; 4]));
    let version = u32::from_le_bytes(w);
    if version != 0 {
        return Err(SignatureError::BadV1Version {
            offset,
            found: version,
        });
    }
    Ok(V1Block {
        offset,
        signature: raw.get(4..).unwrap_or_default(),
    })
}

/// Verifies the v1 signature after an image of `image_len` bytes with the
/// ECDSA P-256 public key `key` (uncompressed SEC1, 65 bytes, or raw x‖y,
/// 64 bytes). Returns the number of signed bytes.
#[cfg(feature = "sbv2-ecdsa")]
pub fn verify_v1(file: &[u8], image_len: u32, key: &[u8]) -> Result<u64, SignatureError> {
    let block = parse_v1(file, image_len)?;
    let signed = file
        .get(..usize::try_from(image_len).unwrap_or(usize::MAX))
        .unwrap_or_default();
    let digest = Sha256::digest(signed);
    super::crypto::ecdsa_p256_v1(key, block.signature, &digest)?;
    Ok(block.offset)
}

/// SHA-256 of the bytes a v1 signature covers.
pub fn v1_digest(file: &[u8], image_len: u32) -> [u8; 32] {
    let signed = file
        .get(..usize::try_from(image_len).unwrap_or(usize::MAX))
        .unwrap_or(file);
    Sha256::digest(signed).into()
}
