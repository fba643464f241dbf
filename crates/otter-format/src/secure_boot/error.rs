//! Why a Secure Boot signature could not be read or did not verify.

use super::block::Scheme;

/// A Secure Boot signature that is missing, malformed or does not verify.
///
/// Blocks are numbered 0..3 in the order of the signature sector; offsets
/// are file offsets. Every variant is the image's fault (or the signer's)
/// except [`SignatureError::NoTrustedKeys`], which is the caller's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// There is no signature block where one must be: the image is unsigned.
    #[error("the image is not signed: no signature block at {expected_offset:#x}")]
    Unsigned {
        /// Where the first block was expected (image length rounded up to
        /// 4 KiB for Secure Boot v2, the image end for v1).
        expected_offset: u64,
    },
    /// The file ends inside the signature block or sector.
    #[error(
        "the signature is truncated at {offset:#x}: {needed} bytes needed, {available} present"
    )]
    Truncated {
        /// Where the missing part starts.
        offset: u64,
        /// Bytes needed from there.
        needed: u32,
        /// Bytes present from there.
        available: u32,
    },
    /// A signature block exists, but not where the bootloader looks for it
    /// (the image length rounded up to 4 KiB): the image was padded
    /// differently from the signed length, or the block was moved.
    #[error("signature block at {found:#x}, but the bootloader reads it at {expected:#x}")]
    MisplacedBlock {
        /// Where it must be.
        expected: u64,
        /// Where one was found.
        found: u64,
    },
    /// A block does not start with the magic byte 0xE7.
    #[error("signature block {block} at {offset:#x}: magic is {found:#04x}, expected 0xe7")]
    BadMagic {
        /// Block number.
        block: u8,
        /// File offset of the block.
        offset: u64,
        /// The byte found.
        found: u8,
    },
    /// The block version is neither 0x02 (RSA) nor 0x03 (ECDSA).
    #[error("signature block {block}: version byte at {offset:#x} is {found:#04x}, expected 0x02 (RSA) or 0x03 (ECDSA)")]
    BadVersion {
        /// Block number.
        block: u8,
        /// File offset of the version byte.
        offset: u64,
        /// The byte found.
        found: u8,
    },
    /// An ECDSA block names a SHA version other than 0 (SHA-256) or 1 (SHA-384).
    #[error(
        "signature block {block}: SHA version byte at {offset:#x} is {found}, expected 0 or 1"
    )]
    BadShaVersion {
        /// Block number.
        block: u8,
        /// File offset of the byte.
        offset: u64,
        /// The byte found.
        found: u8,
    },
    /// An ECDSA block names a curve that does not fit its SHA version.
    #[error("signature block {block}: curve id at {offset:#x} is {found}, expected 1 (P-192), 2 (P-256) or 3 (P-384 with SHA-384)")]
    BadCurve {
        /// Block number.
        block: u8,
        /// File offset of the curve byte.
        offset: u64,
        /// The byte found.
        found: u8,
    },
    /// The block's CRC-32 does not match its first 1196 bytes: the block
    /// was damaged after signing.
    #[error(
        "signature block {block}: CRC at {offset:#x} is {stored:#010x}, computed {computed:#010x}"
    )]
    BadCrc {
        /// Block number.
        block: u8,
        /// File offset of the stored CRC.
        offset: u64,
        /// CRC stored in the block.
        stored: u32,
        /// CRC of the block's bytes.
        computed: u32,
    },
    /// The digest in the block is not the digest of the image bytes before
    /// the signature: the image was changed after signing, or the block was
    /// made for other data.
    #[error(
        "signature block {block}: its image digest does not match the {signed_len} signed bytes"
    )]
    DigestMismatch {
        /// Block number.
        block: u8,
        /// Number of image bytes hashed.
        signed_len: u64,
    },
    /// No block's key is among the trusted key digests.
    #[error(
        "signature block {block} is signed by a key that is not trusted (key digest {})",
        Hex(key_digest)
    )]
    UntrustedKey {
        /// The first block with an untrusted key.
        block: u8,
        /// SHA-256 of that block's public key.
        key_digest: [u8; 32],
    },
    /// The block's key is trusted but revoked.
    #[error(
        "signature block {block} is signed by a revoked key (key digest {})",
        Hex(key_digest)
    )]
    RevokedKey {
        /// Block number.
        block: u8,
        /// SHA-256 of the block's public key.
        key_digest: [u8; 32],
    },
    /// The key is trusted, the digest matches, but the signature is wrong.
    #[error("signature block {block}: the {scheme} signature does not verify")]
    BadSignature {
        /// Block number.
        block: u8,
        /// The scheme.
        scheme: Scheme,
    },
    /// The public key in a block is not a valid key (a point off the curve,
    /// a modulus of the wrong size).
    #[error("signature block {block}: the {scheme} public key is invalid")]
    BadKey {
        /// Block number.
        block: u8,
        /// The scheme.
        scheme: Scheme,
    },
    /// The block's scheme cannot be checked by this build (P-192, or a
    /// scheme whose crate feature is off).
    #[error("signature block {block}: {scheme} signatures cannot be checked by this build")]
    UnsupportedScheme {
        /// Block number.
        block: u8,
        /// The scheme.
        scheme: Scheme,
    },
    /// The Secure Boot v1 block's version word is not 0.
    #[error("Secure Boot v1 block at {offset:#x}: version word is {found}, expected 0")]
    BadV1Version {
        /// File offset of the block.
        offset: u64,
        /// The word found.
        found: u32,
    },
    /// Caller misuse: the verifier was given no trusted key.
    #[error("no trusted key was given")]
    NoTrustedKeys,
}

impl SignatureError {
    /// A stable machine-readable name for the variant.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Unsigned { .. } => "unsigned",
            SignatureError::Truncated { .. } => "truncated",
            SignatureError::MisplacedBlock { .. } => "misplaced_block",
            SignatureError::BadMagic { .. } => "bad_magic",
            SignatureError::BadVersion { .. } => "bad_version",
            SignatureError::BadShaVersion { .. } => "bad_sha_version",
            SignatureError::BadCurve { .. } => "bad_curve",
            SignatureError::BadCrc { .. } => "bad_crc",
            SignatureError::DigestMismatch { .. } => "digest_mismatch",
            SignatureError::UntrustedKey { .. } => "untrusted_key",
            SignatureError::RevokedKey { .. } => "revoked_key",
            SignatureError::BadSignature { .. } => "bad_signature",
            SignatureError::BadKey { .. } => "bad_key",
            SignatureError::UnsupportedScheme { .. } => "unsupported_scheme",
            SignatureError::BadV1Version { .. } => "bad_v1_version",
            SignatureError::NoTrustedKeys => "no_trusted_keys",
        }
    }
}

/// Lowercase hex for error messages, without a heap.
pub(crate) struct Hex<'a>(pub &'a [u8]);

impl core::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
