//! ESP Secure Boot signatures: the v2 signature sector (RSA-3072-PSS, ECDSA
//! P-256/P-384) and the v1 block (ESP32, ECDSA P-256), read, checked and
//! (with the `sign` feature) made, byte-compatible with espsecure and
//! ESP-IDF's bootloader.
//!
//! # Where the signature lives (Secure Boot v2)
//!
//! | File offset | Len | Content |
//! |---|---|---|
//! | 0 | `image_len` | the ESP image (header, segments, checksum, SHA-256) |
//! | `image_len` | to the 4 KiB boundary | 0xFF padding (covered by the signature) |
//! | `signed_len` = `image_len` rounded up to 4 KiB | 3 × 1216 | up to three [`SignatureBlock`]s, one per key |
//! | `signed_len` + 3648 | 448 | 0xFF |
//!
//! Each block signs the same `signed_len` bytes. A device trusts up to three
//! key digests (eFuse key blocks) and can revoke each; a second or third block
//! lets an image carry a signature by the next key before the current one is
//! revoked ([`TrustedKeys`]). See `docs/secure-boot.md` for key handling.
//!
//! # Features and RAM
//!
//! Parsing ([`SignatureBlock`], [`parse_sector`], [`parse_v1`]) needs no
//! feature and no heap. `sbv2-ecdsa` adds the P-256/P-384 checks (`p256`,
//! `p384`; no heap). `sbv2-rsa` adds the RSA-3072-PSS check on fixed-size
//! integers (crypto-bigint's `U3072`; no heap, no atomics, so it builds for
//! the ESP32-C3's riscv32imc; a few KiB of stack, measured in BENCHMARKS.md,
//! "Secure Boot signatures"). [`StreamVerifier`]
//! itself is a fixed 3.9 KiB. `sign` (std) loads PEM keys and signs.

pub mod block;
mod crypto;
pub mod error;
#[cfg(feature = "sign")]
pub mod sign;
pub mod v1;
pub mod verify;

pub use block::{block_crc, parse_sector, BlockKey, Scheme, SignatureBlock, Slot};
pub use error::SignatureError;
#[cfg(feature = "sbv2-ecdsa")]
pub use v1::verify_v1;
pub use v1::{parse_v1, v1_digest, V1Block, V1_BLOCK_LEN};
pub use verify::{signed_len, verify_v2, StreamVerifier, TrustedKeys, Verified};

/// Magic byte that starts every v2 block.
pub const BLOCK_MAGIC: u8 = 0xE7;
/// Block version of RSA-3072-PSS.
pub const VERSION_RSA: u8 = 0x02;
/// Block version of ECDSA.
pub const VERSION_ECDSA: u8 = 0x03;
/// ECDSA SHA version byte: SHA-256.
pub const ECDSA_SHA256: u8 = 0;
/// ECDSA SHA version byte: SHA-384.
pub const ECDSA_SHA384: u8 = 1;
/// ECDSA curve id: NIST P-192.
pub const CURVE_P192: u8 = 1;
/// ECDSA curve id: NIST P-256.
pub const CURVE_P256: u8 = 2;
/// ECDSA curve id: NIST P-384.
pub const CURVE_P384: u8 = 3;
/// Length of one v2 block.
pub const BLOCK_LEN: usize = 1216;
/// Offset of the CRC in a block (the CRC covers the bytes before it).
pub const BLOCK_CRC_OFFSET: usize = 1196;
/// Blocks per signature sector.
pub const MAX_BLOCKS: usize = 3;
/// Length of the signature sector.
pub const SECTOR_LEN: usize = 4096;

#[cfg(test)]
mod tests;
