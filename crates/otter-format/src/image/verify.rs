//! Whole-file verification: [`verify`] and [`inspect`], their options
//! ([`VerifyOptions`]) and result ([`ImageInfo`]).
//!
//! Both are thin wrappers over [`StreamingVerifier`]: the whole file is fed in
//! one chunk, so whole-file and streaming verification are one algorithm and
//! give the same verdict for every input and every chunking.
//!
//! # What is checked
//!
//! In file order, failing on the first problem:
//!
//! 1. magic 0xE9; an ESP32 extended header (else [`ImageError::Esp8266`]); a
//!    known chip id; the expected chip; an appended SHA-256 when
//!    [`VerifyOptions::require_sha256`]; at most 16 segments; every header
//!    field valid for the chip: flash mode, flash size and frequency nibbles,
//!    minimum revision not above the maximum;
//! 2. per segment: length a multiple of 4 and below 16 MiB; a load range that
//!    stays in the memory region it starts in; for flash-mapped segments,
//!    data file offset ≡ load address (mod MMU page; 64 KiB unless the app
//!    descriptor names another size); once the last segment header is read,
//!    the entry point lies in a loaded (non-padding) segment;
//! 3. the app descriptor at 0x20: anti-rollback `secure_version`;
//! 4. once the last segment header is read: the image fits the slot;
//! 5. the XOR checksum, then the appended SHA-256 (when `hash_appended`);
//! 6. trailing data (0xFF padding, a Secure Boot signature) must fit the slot;
//! 7. at the end: the file is complete, it is an app (see
//!    [`super::classify`]), and its SHA-256 is the expected one.
//!
//! The header checks matter most when `hash_appended` is 0: the XOR checksum
//! covers only segment data, so nothing else protects the header.
//!
//! [`inspect`] skips the integrity checks (checksum, SHA-256, lengths,
//! alignment, header fields, entry point) and the app requirement, and reports them in [`ImageInfo`]
//! instead, so a damaged or non-app image can still be described.

use crate::chip::{Chip, DEFAULT_MMU_PAGE_SIZE};

use super::classify::{ImageKind, SignatureInfo};
use super::desc::{AppDesc, BootloaderDesc};
use super::error::ImageError;
use super::header::{ImageHeader, MAX_SEGMENTS};
use super::segment::{Segment, SegmentKind};
use super::stream::StreamingVerifier;

/// What to require of an image beyond being well-formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// The chip the image must be built for.
    pub chip: Option<Chip>,
    /// Size of the slot (partition) the file goes into.
    pub slot_size: Option<u32>,
    /// Anti-rollback minimum for the app descriptor's `secure_version`.
    pub min_secure_version: Option<u32>,
    /// The SHA-256 the whole file must have.
    pub expected_sha256: Option<[u8; 32]>,
    /// Refuse bootloaders, merged flash images and RAM-only images.
    pub require_app: bool,
    /// Check lengths, alignment, checksum and SHA-256 (off for [`inspect`]).
    pub check_integrity: bool,
    /// Compute the image's SHA-256 and check it against the appended digest.
    /// Off, the digest is read but not checked and [`ShaCheck::computed`] is
    /// all zeros: for callers that verify the stored copy of the image
    /// afterwards, so the bytes are hashed once (the OTA session verifies what
    /// is in flash).
    pub hash_image: bool,
    /// Refuse an image without an appended SHA-256 ([`ImageError::Sha256Required`]):
    /// a device policy, off by default here (a file on disk may be described
    /// and verified without one).
    pub require_sha256: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions::new()
    }
}

impl VerifyOptions {
    /// Full integrity checks, an app required, no other constraint.
    pub const fn new() -> VerifyOptions {
        VerifyOptions {
            chip: None,
            slot_size: None,
            min_secure_version: None,
            expected_sha256: None,
            require_app: true,
            check_integrity: true,
            hash_image: true,
            require_sha256: false,
        }
    }

    /// Options for describing any image: no checks beyond structure.
    pub const fn inspect() -> VerifyOptions {
        VerifyOptions {
            require_app: false,
            check_integrity: false,
            ..VerifyOptions::new()
        }
    }

    /// Requires the image to be built for `chip`.
    pub const fn chip(mut self, chip: Chip) -> Self {
        self.chip = Some(chip);
        self
    }

    /// Requires the file to fit a slot of `size` bytes.
    pub const fn slot_size(mut self, size: u32) -> Self {
        self.slot_size = Some(size);
        self
    }

    /// Requires `secure_version >= min`.
    pub const fn min_secure_version(mut self, min: u32) -> Self {
        self.min_secure_version = Some(min);
        self
    }

    /// Requires the whole file to hash to `digest`.
    pub const fn expected_sha256(mut self, digest: [u8; 32]) -> Self {
        self.expected_sha256 = Some(digest);
        self
    }

    /// Sets whether an image without an appended SHA-256 is refused.
    pub const fn require_sha256(mut self, yes: bool) -> Self {
        self.require_sha256 = yes;
        self
    }

    /// Sets whether non-app images are refused.
    pub const fn require_app(mut self, yes: bool) -> Self {
        self.require_app = yes;
        self
    }
}

/// The appended SHA-256: stored and computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShaCheck {
    /// File offset of the stored digest.
    pub offset: u32,
    /// Digest stored in the image.
    pub stored: [u8; 32],
    /// Digest of `[0, offset)`.
    pub computed: [u8; 32],
}

impl ShaCheck {
    /// Whether stored and computed agree.
    pub fn is_valid(&self) -> bool {
        self.stored == self.computed
    }
}

/// Everything learned about an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image header.
    pub header: ImageHeader,
    /// The chip named by the header.
    pub chip: Chip,
    pub(crate) segments: [Segment; MAX_SEGMENTS],
    pub(crate) segment_count: u8,
    /// File offset of the checksum byte.
    pub checksum_offset: u32,
    /// Checksum stored in the image.
    pub checksum_stored: u8,
    /// Checksum computed over the segment data.
    pub checksum_computed: u8,
    /// The appended SHA-256, when `hash_appended` is 1.
    pub sha256: Option<ShaCheck>,
    /// Image length: header, segments, padding, checksum and SHA-256.
    pub image_len: u32,
    /// Length of the whole file (image plus trailing bytes).
    pub file_len: u64,
    /// MMU page size used for the mapping check: from the app descriptor when
    /// it names one, else the largest size the chip supports that every
    /// flash-mapped segment is congruent with.
    pub mmu_page_size: u32,
    /// The app descriptor, when segment 0 starts with one.
    pub app_desc: Option<AppDesc>,
    /// The bootloader descriptor, when segment 0 starts with one.
    pub bootloader_desc: Option<BootloaderDesc>,
    /// A Secure Boot signature after the image, when found.
    pub signature: Option<SignatureInfo>,
    /// What the image is.
    pub kind: ImageKind,
    /// Whether every trailing byte (after the image and any signature) is 0xFF.
    pub trailing_erased: bool,
}

impl ImageInfo {
    /// The segments, in file order.
    pub fn segments(&self) -> &[Segment] {
        self.segments
            .get(..usize::from(self.segment_count))
            .unwrap_or_default()
    }

    /// Whether the stored checksum matches.
    pub fn checksum_valid(&self) -> bool {
        self.checksum_stored == self.checksum_computed
    }

    /// Whether the appended SHA-256 matches; `None` when none is appended.
    pub fn sha256_valid(&self) -> Option<bool> {
        self.sha256.as_ref().map(ShaCheck::is_valid)
    }

    /// Whether any segment is flash-mapped.
    pub fn has_flash_segment(&self) -> bool {
        self.segments().iter().any(|s| s.kind == SegmentKind::Flash)
    }

    /// Whether the image is the default 64 KiB-page layout.
    pub fn uses_default_page(&self) -> bool {
        self.mmu_page_size == DEFAULT_MMU_PAGE_SIZE
    }
}

/// Verifies a whole image file (see the module docs for what is checked).
pub fn verify(bytes: &[u8], opts: &VerifyOptions) -> Result<ImageInfo, ImageError> {
    let mut v = StreamingVerifier::new(*opts);
    // An error from `feed` is kept by the verifier and returned by `finish`.
    let _ = v.feed(bytes);
    v.finish()
}

/// Describes any ESP32 image without judging it: checksum and SHA-256 results
/// are reported in [`ImageInfo`], not raised, and non-app images are accepted.
/// Fails only when the file is not a readable ESP32 image.
pub fn inspect(bytes: &[u8]) -> Result<ImageInfo, ImageError> {
    verify(bytes, &VerifyOptions::inspect())
}
