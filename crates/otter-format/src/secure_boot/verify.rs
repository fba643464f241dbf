//! Checking a Secure Boot v2 signature against trusted key digests, from a
//! slice or from a stream of chunks.
//!
//! The checks, in the order ESP-IDF's bootloader makes them:
//!
//! 1. the signature sector sits at the image length rounded up to 4 KiB;
//! 2. every block up to the first empty slot has the magic, a known version
//!    and a good CRC;
//! 3. for each block: its image digest equals SHA-256 (SHA-384 for P-384) of
//!    the bytes before the sector; its key digest is trusted and not
//!    revoked; its signature verifies. The first block that passes all three
//!    verifies the image.

use sha2::{Digest, Sha256, Sha384};

use super::block::{parse_sector, Scheme, SignatureBlock, Slot};
use super::error::SignatureError;
use super::{BLOCK_LEN, MAX_BLOCKS, SECTOR_LEN};

/// The key digests a device trusts, as its eFuse key blocks hold them, and
/// the ones it has revoked. Borrowed, so any number fits without a heap.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustedKeys<'a> {
    /// SHA-256 digests of trusted public keys (see
    /// [`SignatureBlock::key_digest`]).
    pub digests: &'a [[u8; 32]],
    /// Digests of revoked keys (`KEY_REVOKE` eFuses). A revoked key is
    /// refused even when it is also listed in `digests`.
    pub revoked: &'a [[u8; 32]],
}

impl<'a> TrustedKeys<'a> {
    /// Trusts `digests`, revokes none.
    pub const fn new(digests: &'a [[u8; 32]]) -> Self {
        TrustedKeys {
            digests,
            revoked: &[],
        }
    }

    /// Also refuses the keys in `revoked`.
    pub const fn revoking(mut self, revoked: &'a [[u8; 32]]) -> Self {
        self.revoked = revoked;
        self
    }
}

/// A verified Secure Boot v2 signature: which block verified, with which key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Number of the block that verified (0..3).
    pub block: u8,
    /// Its scheme.
    pub scheme: Scheme,
    /// SHA-256 of its public key (the trusted digest that matched).
    pub key_digest: [u8; 32],
    /// Number of blocks in the sector.
    pub blocks: u8,
    /// Number of bytes the signature covers (the image rounded up to 4 KiB).
    pub signed_len: u64,
}

/// The image length rounded up to the next 4 KiB boundary: where the
/// signature sector starts and how many bytes the signature covers.
pub fn signed_len(image_len: u32) -> u64 {
    u64::from(image_len).div_ceil(SECTOR_LEN as u64) * SECTOR_LEN as u64
}

/// Verifies a Secure Boot v2 signature while the image streams in.
///
/// Fixed RAM: two hash states and a 3648-byte copy of the blocks (about
/// 3.9 KiB in all); no heap unless an RSA block is checked (see the module
/// docs of [`super`] for that bound). Feed every byte of the file from offset
/// 0 with [`Self::update`]; bytes after the signature sector are ignored.
#[derive(Clone)]
pub struct StreamVerifier {
    signed_len: u64,
    pos: u64,
    sha256: Sha256,
    sha384: Option<Sha384>,
    blocks: [u8; MAX_BLOCKS * BLOCK_LEN],
    fill: usize,
}

impl core::fmt::Debug for StreamVerifier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StreamVerifier")
            .field("signed_len", &self.signed_len)
            .field("pos", &self.pos)
            .field("sha384", &self.sha384.is_some())
            .field("fill", &self.fill)
            .finish()
    }
}

impl StreamVerifier {
    /// A verifier for an image whose ESP image structure ends at `image_len`
    /// (header, segments, checksum and appended SHA-256). Hashes with both
    /// SHA-256 and SHA-384, so any scheme can be checked.
    pub fn new(image_len: u32) -> Self {
        StreamVerifier {
            signed_len: signed_len(image_len),
            pos: 0,
            sha256: Sha256::new(),
            sha384: Some(Sha384::new()),
            blocks: [0; MAX_BLOCKS * BLOCK_LEN],
            fill: 0,
        }
    }

    /// Like [`Self::new`] but hashes with SHA-256 only, for devices whose
    /// keys are all RSA-3072 or P-256 (a P-384 block then fails with
    /// [`SignatureError::UnsupportedScheme`]).
    pub fn sha256_only(image_len: u32) -> Self {
        let mut v = Self::new(image_len);
        v.sha384 = None;
        v
    }

    /// Number of bytes the signature covers.
    pub fn signed_len(&self) -> u64 {
        self.signed_len
    }

    /// Feeds the next chunk of the file.
    pub fn update(&mut self, mut data: &[u8]) {
        if self.pos < self.signed_len {
            let room = self.signed_len - self.pos;
            let n = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
            let (head, tail) = data.split_at(n);
            self.sha256.update(head);
            if let Some(h) = self.sha384.as_mut() {
                h.update(head);
            }
            self.pos += n as u64;
            data = tail;
        }
        if !data.is_empty() {
            let room = self.blocks.len() - self.fill;
            let n = room.min(data.len());
            if let (Some(dst), Some(src)) =
                (self.blocks.get_mut(self.fill..self.fill + n), data.get(..n))
            {
                dst.copy_from_slice(src);
                self.fill += n;
            }
            self.pos = self.pos.saturating_add(data.len() as u64);
        }
    }

    /// Checks the signature against `trust`.
    pub fn finish(self, trust: &TrustedKeys<'_>) -> Result<Verified, SignatureError> {
        if trust.digests.is_empty() {
            return Err(SignatureError::NoTrustedKeys);
        }
        if self.pos < self.signed_len || self.fill == 0 {
            return Err(SignatureError::Unsigned {
                expected_offset: self.signed_len,
            });
        }
        let present = self.blocks.get(..self.fill).unwrap_or_default();
        if present.first() != Some(&super::BLOCK_MAGIC) {
            return Err(SignatureError::Unsigned {
                expected_offset: self.signed_len,
            });
        }
        let slots = parse_sector(present, self.signed_len)?;
        let d256: [u8; 32] = self.sha256.finalize().into();
        let d384: Option<[u8; 48]> = self.sha384.map(|h| h.finalize().into());
        check_blocks(&slots, &d256, d384.as_ref(), trust, self.signed_len)
    }
}

/// Verifies the Secure Boot v2 signature of a whole file whose ESP image
/// ends at `image_len` (see [`crate::image::ImageInfo::image_len`]).
///
/// On top of [`StreamVerifier`], a missing block is looked for elsewhere in
/// the file (directly after the image, or at another 4 KiB boundary), so a
/// block in the wrong place is reported as
/// [`SignatureError::MisplacedBlock`] rather than as unsigned.
pub fn verify_v2(
    file: &[u8],
    image_len: u32,
    trust: &TrustedKeys<'_>,
) -> Result<Verified, SignatureError> {
    // With the whole file at hand, hash with SHA-384 only when a block needs it.
    let needs_sha384 = usize::try_from(signed_len(image_len))
        .ok()
        .and_then(|at| file.get(at..))
        .and_then(|sector| parse_sector(sector, 0).ok())
        .is_none_or(|slots| {
            slots
                .iter()
                .any(|s| matches!(s, Slot::Block(b) if b.scheme() == Scheme::EcdsaP384))
        });
    let mut v = if needs_sha384 {
        StreamVerifier::new(image_len)
    } else {
        StreamVerifier::sha256_only(image_len)
    };
    v.update(file);
    match v.finish(trust) {
        Err(SignatureError::Unsigned { expected_offset }) => {
            match find_misplaced(file, image_len, expected_offset) {
                Some(found) => Err(SignatureError::MisplacedBlock {
                    expected: expected_offset,
                    found,
                }),
                None => Err(SignatureError::Unsigned { expected_offset }),
            }
        }
        other => other,
    }
}

/// Offset of a well-formed block that is not at `expected`: right after the
/// image, or at any 4 KiB boundary after it.
fn find_misplaced(file: &[u8], image_len: u32, expected: u64) -> Option<u64> {
    let sector = SECTOR_LEN as u64;
    let first = u64::from(image_len);
    let aligned = (first / sector + 1) * sector;
    let candidates = core::iter::once(first).chain((0..).map(|k| aligned + k * sector));
    for at in candidates {
        let start = usize::try_from(at).ok()?;
        let rest = file.get(start..)?;
        if rest.len() < BLOCK_LEN {
            return None;
        }
        if at != expected && SignatureBlock::parse(rest, 0, at).is_ok() {
            return Some(at);
        }
    }
    None
}

/// How bad a per-block failure is, to report the most telling one.
fn rank(e: &SignatureError) -> u8 {
    match e {
        SignatureError::UntrustedKey { .. } => 1,
        SignatureError::RevokedKey { .. } => 2,
        SignatureError::DigestMismatch { .. } => 3,
        _ => 4,
    }
}

fn check_blocks(
    slots: &[Slot<'_>; MAX_BLOCKS],
    d256: &[u8; 32],
    d384: Option<&[u8; 48]>,
    trust: &TrustedKeys<'_>,
    signed_len: u64,
) -> Result<Verified, SignatureError> {
    let blocks = slots.iter().filter(|s| matches!(s, Slot::Block(_))).count() as u8;
    let mut worst: Option<SignatureError> = None;
    for (i, slot) in slots.iter().enumerate() {
        let Slot::Block(b) = slot else { break };
        let i = i as u8;
        match check_block(b, i, d256, d384, trust, signed_len) {
            Ok(key_digest) => {
                return Ok(Verified {
                    block: i,
                    scheme: b.scheme(),
                    key_digest,
                    blocks,
                    signed_len,
                })
            }
            Err(e) => {
                if worst.as_ref().is_none_or(|w| rank(&e) > rank(w)) {
                    worst = Some(e);
                }
            }
        }
    }
    Err(worst.unwrap_or(SignatureError::Unsigned {
        expected_offset: signed_len,
    }))
}

fn check_block(
    b: &SignatureBlock<'_>,
    i: u8,
    d256: &[u8; 32],
    d384: Option<&[u8; 48]>,
    trust: &TrustedKeys<'_>,
    signed_len: u64,
) -> Result<[u8; 32], SignatureError> {
    let scheme = b.scheme();
    let digest: &[u8] = match scheme {
        Scheme::EcdsaP384 => match d384 {
            Some(d) => d,
            None => return Err(SignatureError::UnsupportedScheme { block: i, scheme }),
        },
        _ => d256,
    };
    if b.image_digest() != digest {
        return Err(SignatureError::DigestMismatch {
            block: i,
            signed_len,
        });
    }
    let key_digest = b.key_digest();
    if trust.revoked.contains(&key_digest) {
        return Err(SignatureError::RevokedKey {
            block: i,
            key_digest,
        });
    }
    if !trust.digests.contains(&key_digest) {
        return Err(SignatureError::UntrustedKey {
            block: i,
            key_digest,
        });
    }
    super::crypto::check_signature(b, i, digest)?;
    Ok(key_digest)
}
