//! One Secure Boot v2 signature block (1216 bytes) and the 4 KiB signature
//! sector that holds up to three of them.
//!
//! Parsing is pure and needs no heap: a [`SignatureBlock`] borrows the bytes
//! it was parsed from.

use sha2::{Digest, Sha256};

use super::error::SignatureError;
use super::{
    BLOCK_CRC_OFFSET, BLOCK_LEN, BLOCK_MAGIC, CURVE_P192, CURVE_P256, CURVE_P384, ECDSA_SHA256,
    ECDSA_SHA384, MAX_BLOCKS, VERSION_ECDSA, VERSION_RSA,
};

/// Length of an RSA-3072 number (modulus, R⁻¹, signature) in a block.
pub const RSA_LEN: usize = 384;

/// The signature scheme of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// RSA-3072, RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt
    /// (block version 0x02).
    Rsa3072,
    /// ECDSA over NIST P-192 with SHA-256 (block version 0x03, curve 1).
    /// ESP32-C2 only; otter reads it but cannot check it.
    EcdsaP192,
    /// ECDSA over NIST P-256 with SHA-256 (block version 0x03, curve 2).
    EcdsaP256,
    /// ECDSA over NIST P-384 with SHA-384 (block version 0x03, curve 3,
    /// SHA version 1; the image digest is then 48 bytes of SHA-384).
    EcdsaP384,
}

impl Scheme {
    /// The name espsecure uses for `--scheme` (`rsa3072`, `ecdsa192`,
    /// `ecdsa256`, `ecdsa384`).
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Rsa3072 => "rsa3072",
            Scheme::EcdsaP192 => "ecdsa192",
            Scheme::EcdsaP256 => "ecdsa256",
            Scheme::EcdsaP384 => "ecdsa384",
        }
    }

    /// Length of the image digest the block carries (32, or 48 for P-384).
    pub fn digest_len(self) -> usize {
        match self {
            Scheme::EcdsaP384 => 48,
            _ => 32,
        }
    }

    /// Length of one coordinate or signature half for ECDSA schemes, in bytes.
    fn ecdsa_len(self) -> usize {
        match self {
            Scheme::EcdsaP192 => 24,
            Scheme::EcdsaP384 => 48,
            _ => 32,
        }
    }
}

impl core::fmt::Display for Scheme {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The public key carried by a block, as stored (little-endian numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKey<'a> {
    /// RSA-3072: modulus, exponent and the two values precomputed for the
    /// chip's RSA accelerator.
    Rsa {
        /// Modulus n, little-endian.
        n: &'a [u8],
        /// Public exponent e.
        e: u32,
        /// R⁻¹ = 2^6144 mod n, little-endian (`rinv`).
        rinv: &'a [u8],
        /// M' = -n⁻¹ mod 2^32 (`mdash`).
        mdash: u32,
    },
    /// ECDSA: the curve point in micro-ecc's "native little-endian" form.
    Ecdsa {
        /// Curve id byte (1 P-192, 2 P-256, 3 P-384).
        curve: u8,
        /// x coordinate, little-endian.
        x: &'a [u8],
        /// y coordinate, little-endian.
        y: &'a [u8],
    },
}

/// A parsed Secure Boot v2 signature block.
///
/// # Layout (`ets_secure_boot_sig_block_t`, 1216 bytes, little-endian)
///
/// | Off | Len | RSA-3072 (version 2) | ECDSA P-192/P-256 (version 3, SHA 0) | ECDSA P-384 (version 3, SHA 1) |
/// |---|---|---|---|---|
/// | 0 | 1 | magic 0xE7 | magic 0xE7 | magic 0xE7 |
/// | 1 | 1 | version 0x02 | version 0x03 | version 0x03 |
/// | 2 | 1 | 0 | SHA version 0 (SHA-256) | SHA version 1 (SHA-384) |
/// | 3 | 1 | 0 | 0 | 0 |
/// | 4 | 32/48 | SHA-256 of the image | SHA-256 of the image | SHA-384 of the image (48) |
/// | 36 / 52 | | n (384), e (4), rinv (384), mdash (4) | curve id (1), x‖y (2×32, LE) | curve id (1), x‖y (2×48, LE) |
/// | 812 / 101 / 149 | | signature (384, LE) | r‖s (2×32, LE) | r‖s (2×48, LE) |
/// | … | | | zero to 1196 | zero to 1196 |
/// | 1196 | 4 | CRC-32 (zlib) of bytes 0..1196 | same | same |
/// | 1200 | 16 | zero | zero | zero |
///
/// The key digest burnt into eFuse is SHA-256 of the key bytes: RSA bytes
/// 36..812 (n, e, rinv, mdash), ECDSA the curve id and point (37 or 53 bytes
/// after the digest, 65 or 97 bytes), exactly as `espsecure
/// digest-sbv2-public-key` and `signature-info-v2` compute it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureBlock<'a> {
    raw: &'a [u8],
    scheme: Scheme,
}

impl<'a> SignatureBlock<'a> {
    /// Parses block number `index` (0..3, used in errors) from `bytes`,
    /// which must hold at least [`BLOCK_LEN`] bytes starting at file offset
    /// `offset` (used in errors). Checks magic, version, SHA version, curve
    /// and CRC.
    pub fn parse(bytes: &'a [u8], index: u8, offset: u64) -> Result<Self, SignatureError> {
        let raw = bytes.get(..BLOCK_LEN).ok_or(SignatureError::Truncated {
            offset,
            needed: BLOCK_LEN as u32,
            available: bytes.len() as u32,
        })?;
        let byte = |i: usize| raw.get(i).copied().unwrap_or(0);
        if byte(0) != BLOCK_MAGIC {
            return Err(SignatureError::BadMagic {
                block: index,
                offset,
                found: byte(0),
            });
        }
        let scheme = match (byte(1), byte(2)) {
            (VERSION_RSA, _) => Scheme::Rsa3072,
            (VERSION_ECDSA, ECDSA_SHA256) => match byte(36) {
                CURVE_P192 => Scheme::EcdsaP192,
                CURVE_P256 => Scheme::EcdsaP256,
                c => {
                    return Err(SignatureError::BadCurve {
                        block: index,
                        offset: offset + 36,
                        found: c,
                    })
                }
            },
            (VERSION_ECDSA, ECDSA_SHA384) => match byte(52) {
                CURVE_P384 => Scheme::EcdsaP384,
                c => {
                    return Err(SignatureError::BadCurve {
                        block: index,
                        offset: offset + 52,
                        found: c,
                    })
                }
            },
            (VERSION_ECDSA, sha) => {
                return Err(SignatureError::BadShaVersion {
                    block: index,
                    offset: offset + 2,
                    found: sha,
                })
            }
            (v, _) => {
                return Err(SignatureError::BadVersion {
                    block: index,
                    offset: offset + 1,
                    found: v,
                })
            }
        };
        let body = raw.get(..BLOCK_CRC_OFFSET).unwrap_or_default();
        let computed = block_crc(body);
        let stored = le32(raw, BLOCK_CRC_OFFSET);
        if computed != stored {
            return Err(SignatureError::BadCrc {
                block: index,
                offset: offset + BLOCK_CRC_OFFSET as u64,
                stored,
                computed,
            });
        }
        Ok(SignatureBlock { raw, scheme })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The image digest the block claims (32 bytes, or 48 for P-384).
    pub fn image_digest(&self) -> &'a [u8] {
        self.raw
            .get(4..4 + self.scheme.digest_len())
            .unwrap_or_default()
    }

    /// The key bytes the eFuse digest covers (see the type docs).
    pub fn key_bytes(&self) -> &'a [u8] {
        let range = match self.scheme {
            Scheme::Rsa3072 => 36..812,
            Scheme::EcdsaP384 => 52..149,
            _ => 36..(37 + 2 * self.scheme.ecdsa_len()),
        };
        self.raw.get(range).unwrap_or_default()
    }

    /// SHA-256 of [`Self::key_bytes`]: the digest a device keeps in eFuse.
    pub fn key_digest(&self) -> [u8; 32] {
        Sha256::digest(self.key_bytes()).into()
    }

    /// The public key, as stored.
    pub fn key(&self) -> BlockKey<'a> {
        let r = self.raw;
        match self.scheme {
            Scheme::Rsa3072 => BlockKey::Rsa {
                n: r.get(36..420).unwrap_or_default(),
                e: le32(r, 420),
                rinv: r.get(424..808).unwrap_or_default(),
                mdash: le32(r, 808),
            },
            s => {
                let k = s.ecdsa_len();
                let at = 4 + s.digest_len();
                BlockKey::Ecdsa {
                    curve: r.get(at).copied().unwrap_or(0),
                    x: r.get(at + 1..at + 1 + k).unwrap_or_default(),
                    y: r.get(at + 1 + k..at + 1 + 2 * k).unwrap_or_default(),
                }
            }
        }
    }

    /// The signature as stored: RSA 384 bytes little-endian; ECDSA r‖s, each
    /// little-endian.
    pub fn signature(&self) -> &'a [u8] {
        let range = match self.scheme {
            Scheme::Rsa3072 => 812..1196,
            s => {
                let k = s.ecdsa_len();
                let at = 4 + s.digest_len() + 1 + 2 * k;
                at..at + 2 * k
            }
        };
        self.raw.get(range).unwrap_or_default()
    }

    /// The 1216 bytes of the block.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }
}

/// What one of the three slots of a signature sector holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot<'a> {
    /// A block with a valid magic, version and CRC.
    Block(SignatureBlock<'a>),
    /// No block (the first byte is not the magic 0xE7; espsecure fills unused
    /// slots with 0xFF).
    Empty,
}

/// Parses the signature sector (4 KiB, or less when truncated) that starts at
/// file offset `offset`.
///
/// Slots are read in order until the first empty one, as ESP-IDF's bootloader
/// and espsecure do: a block after an empty slot is never looked at. A slot
/// that starts with the magic but does not parse is an error, not skipped, so
/// a damaged block is reported as what it is.
pub fn parse_sector(sector: &[u8], offset: u64) -> Result<[Slot<'_>; MAX_BLOCKS], SignatureError> {
    let mut slots = [Slot::Empty; MAX_BLOCKS];
    for (i, slot) in slots.iter_mut().enumerate() {
        let start = i * BLOCK_LEN;
        let at = offset + start as u64;
        let rest = sector.get(start..).unwrap_or_default();
        match rest.first() {
            Some(&BLOCK_MAGIC) => {}
            Some(_) => break,
            None if i == 0 => {
                return Err(SignatureError::Truncated {
                    offset: at,
                    needed: BLOCK_LEN as u32,
                    available: 0,
                })
            }
            None => break,
        }
        *slot = Slot::Block(SignatureBlock::parse(rest, i as u8, at)?);
    }
    Ok(slots)
}

/// CRC-32 as zlib computes it (reflected, polynomial 0x04C11DB7, init and
/// xorout 0xFFFFFFFF): the block checksum.
pub fn block_crc(bytes: &[u8]) -> u32 {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    CRC.checksum(bytes)
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}
