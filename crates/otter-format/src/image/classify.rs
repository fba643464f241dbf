//! Naming what an image is: an app, or something that is not a flashable app
//! (a bootloader, a merged full-flash dump, a RAM-only image), and finding a
//! Secure Boot signature after the image.
//!
//! # Classification rule
//!
//! Checked in this order, on a structurally valid image:
//!
//! 1. **Merged flash** — the image ends at or before 0x8000 and the file goes
//!    on with a partition table (`AA 50` at 0x8000) or another image (`E9` at
//!    0x10000). That is what `esptool merge-bin` writes for chips whose
//!    bootloader sits at offset 0 (the corpus file
//!    `merged-flash-image-esp32c3.bin`).
//! 2. **App** — at least one flash-mapped (IROM/DROM) segment. Apps from
//!    ESP-IDF 3.1 on carry an app descriptor; older ones (obnizOS in the corpus)
//!    do not, and are still apps.
//! 3. **Bootloader** — no flash-mapped segment, and either the bootloader
//!    descriptor magic 0x50 at 0x20 (ESP-IDF 5.x and later; every bootloader in
//!    the corpus has it), or, for older bootloaders without a descriptor, an
//!    image that fits below the partition table (at most 0x8000 bytes).
//! 4. **RAM-only** — everything else: no flash-mapped segment, no descriptor,
//!    larger than any bootloader (`ram-only-app-esp32s3.bin`).
//!
//! ESP8266 images are refused before classification: they have no ESP32
//! extended header (see [`super::ImageError::Esp8266`]).

use crate::chip::Chip;

use super::error::ImageError;

/// Default partition table offset; a bootloader must end before it.
pub const PARTITION_TABLE_OFFSET: u32 = 0x8000;
/// Magic of a partition table entry (`AA 50`).
pub const PARTITION_MAGIC: [u8; 2] = [0xAA, 0x50];
/// Offset of the first app in a default layout (and in merged images).
pub const FIRST_APP_OFFSET: u32 = 0x1_0000;
/// Magic byte of a Secure Boot v2 signature block.
pub const SBV2_BLOCK_MAGIC: u8 = 0xE7;
/// Version byte of a Secure Boot v2 RSA-3072 signature block.
pub const SBV2_BLOCK_VERSION: u8 = 0x02;
/// Version byte of a Secure Boot v2 ECDSA signature block.
pub const SBV2_BLOCK_VERSION_ECDSA: u8 = 0x03;
/// Length of a Secure Boot v1 signature block (version word + ECDSA sig).
pub const SBV1_BLOCK_LEN: u32 = 68;
/// Length of the Secure Boot v2 signature sector.
pub const SBV2_SECTOR_LEN: u32 = 0x1000;

/// What an image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageKind {
    /// A flashable application image.
    App,
    /// A second-stage bootloader.
    Bootloader,
    /// A merged full-flash image (bootloader + partition table + app).
    MergedFlash,
    /// A valid image that loads only into RAM.
    RamOnly,
}

impl ImageKind {
    /// Lowercase name (`app`, `bootloader`, `merged-flash`, `ram-only`).
    pub fn name(self) -> &'static str {
        match self {
            ImageKind::App => "app",
            ImageKind::Bootloader => "bootloader",
            ImageKind::MergedFlash => "merged-flash",
            ImageKind::RamOnly => "ram-only",
        }
    }

    /// The error for a caller that needs an app, `None` for an app.
    pub fn not_an_app_error(self) -> Option<ImageError> {
        match self {
            ImageKind::App => None,
            ImageKind::Bootloader => Some(ImageError::IsBootloader),
            ImageKind::MergedFlash => Some(ImageError::IsMergedFlash),
            ImageKind::RamOnly => Some(ImageError::IsRamOnly),
        }
    }
}

/// Which Secure Boot scheme signed the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureScheme {
    /// Secure Boot v1 (ESP32 only): a 68-byte block (version word 0 and a
    /// 64-byte ECDSA signature) right after the image.
    SecureBootV1,
    /// Secure Boot v2: a 4 KiB sector of up to three 1216-byte blocks, each
    /// starting with 0xE7 and version 0x02 (RSA) or 0x03 (ECDSA), at the
    /// first 4 KiB boundary after the image.
    SecureBootV2,
}

impl SignatureScheme {
    /// Short name (`secure-boot-v1`, `secure-boot-v2`).
    pub fn name(self) -> &'static str {
        match self {
            SignatureScheme::SecureBootV1 => "secure-boot-v1",
            SignatureScheme::SecureBootV2 => "secure-boot-v2",
        }
    }
}

/// A signature found after the image. Detection only: checking it needs the
/// device's key digests (see [`crate::secure_boot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureInfo {
    /// The scheme.
    pub scheme: SignatureScheme,
    /// File offset of the signature block or sector.
    pub offset: u32,
    /// Length of the block (68) or of the sector present in the file.
    pub len: u32,
}

/// Bytes sampled after the image, enough to classify and find signatures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Probes {
    /// First 8 bytes after the image (Secure Boot v1 version + signature start).
    pub after: [u8; 8],
    /// First 2 bytes at the 4 KiB boundary after the image (SBv2 block).
    pub sbv2: [u8; 2],
    /// 2 bytes at 0x8000 (partition table magic).
    pub table: [u8; 2],
    /// 1 byte at 0x10000 (image magic of an app).
    pub app: u8,
    /// Bit i set when probe byte i was seen (order: after, sbv2, table, app).
    pub seen: u16,
}

impl Probes {
    const COUNT: usize = 13;

    /// Absolute file offset of probe byte `i`.
    fn offset(i: usize, image_len: u32) -> u64 {
        let il = u64::from(image_len);
        let sb = il.div_ceil(u64::from(SBV2_SECTOR_LEN)) * u64::from(SBV2_SECTOR_LEN);
        match i {
            0..=7 => il + i as u64,
            8..=9 => sb + (i as u64 - 8),
            10..=11 => u64::from(PARTITION_TABLE_OFFSET) + (i as u64 - 10),
            _ => u64::from(FIRST_APP_OFFSET),
        }
    }

    fn slot(&mut self, i: usize) -> Option<&mut u8> {
        match i {
            0..=7 => self.after.get_mut(i),
            8..=9 => self.sbv2.get_mut(i - 8),
            10..=11 => self.table.get_mut(i - 10),
            12 => Some(&mut self.app),
            _ => None,
        }
    }

    /// Records the probe bytes found in `data`, which starts at file offset
    /// `start` (at or after the image end).
    pub fn capture(&mut self, image_len: u32, start: u64, data: &[u8]) {
        let end = start.saturating_add(data.len() as u64);
        for i in 0..Self::COUNT {
            let o = Self::offset(i, image_len);
            if o >= start && o < end {
                let b = usize::try_from(o - start)
                    .ok()
                    .and_then(|k| data.get(k))
                    .copied();
                if let (Some(b), Some(slot)) = (b, self.slot(i)) {
                    *slot = b;
                    self.seen |= 1 << i;
                }
            }
        }
    }

    fn have(&self, lo: usize, hi: usize) -> bool {
        (lo..=hi).all(|i| self.seen & (1 << i) != 0)
    }
}

/// Classifies a structurally valid image (see the module docs for the rule).
pub(crate) fn classify(
    has_flash_segment: bool,
    has_bootloader_desc: bool,
    has_app_desc: bool,
    image_len: u32,
    probes: &Probes,
) -> ImageKind {
    let table_follows = probes.have(10, 11) && probes.table == PARTITION_MAGIC;
    let app_follows = probes.have(12, 12) && probes.app == super::header::IMAGE_MAGIC;
    if image_len <= PARTITION_TABLE_OFFSET && (table_follows || app_follows) {
        ImageKind::MergedFlash
    } else if has_flash_segment {
        ImageKind::App
    } else if has_bootloader_desc || (!has_app_desc && image_len <= PARTITION_TABLE_OFFSET) {
        ImageKind::Bootloader
    } else {
        ImageKind::RamOnly
    }
}

/// Finds a Secure Boot signature after an image of `image_len` bytes in a
/// file of `file_len` bytes.
pub(crate) fn find_signature(
    chip: Chip,
    image_len: u32,
    file_len: u64,
    probes: &Probes,
) -> Option<SignatureInfo> {
    let sb = image_len
        .div_ceil(SBV2_SECTOR_LEN)
        .checked_mul(SBV2_SECTOR_LEN)?;
    let sbv2 = probes.sbv2 == [SBV2_BLOCK_MAGIC, SBV2_BLOCK_VERSION]
        || probes.sbv2 == [SBV2_BLOCK_MAGIC, SBV2_BLOCK_VERSION_ECDSA];
    if probes.have(8, 9) && sbv2 {
        let present = file_len.saturating_sub(u64::from(sb));
        let len = u32::try_from(present.min(u64::from(SBV2_SECTOR_LEN))).unwrap_or(0);
        return Some(SignatureInfo {
            scheme: SignatureScheme::SecureBootV2,
            offset: sb,
            len,
        });
    }
    let v1_fits = file_len >= u64::from(image_len) + u64::from(SBV1_BLOCK_LEN);
    let version_zero = probes.after.get(..4) == Some(&[0, 0, 0, 0][..]);
    let sig_start = probes.after.get(4..8).unwrap_or_default();
    let sig_plausible = sig_start.iter().any(|b| *b != 0 && *b != 0xFF);
    if chip == Chip::Esp32 && probes.have(0, 7) && v1_fits && version_zero && sig_plausible {
        return Some(SignatureInfo {
            scheme: SignatureScheme::SecureBootV1,
            offset: image_len,
            len: SBV1_BLOCK_LEN,
        });
    }
    None
}
