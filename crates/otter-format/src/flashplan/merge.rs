//! esptool's `merge-bin` (raw format), byte for byte: one full-flash image
//! from `(offset, bytes)` pairs.
//!
//! What esptool 5 does, and so what [`merge_bin`] does:
//!
//! 1. Sort the pairs by offset. Two inputs conflict when they touch the same
//!    4 KiB sector (each input covers `[offset & !0xFFF, align_up(end, 0x1000))`),
//!    even if their bytes do not overlap: "Detected overlap at address".
//! 2. The output starts at `target_offset` (default 0), and the first input
//!    must not lie below it. Gaps, including the one from `target_offset` to
//!    the first input (0x1000 bytes for an ESP32, whose bootloader sits at
//!    0x1000), are filled with 0xFF.
//! 3. The input at the chip's bootloader offset gets its header's flash mode,
//!    frequency and size replaced when asked ([`HeaderPatch`]; all "keep" by
//!    default), and its appended SHA-256 recomputed when it has one. Inputs
//!    anywhere else are never changed.
//! 4. With a fill size, 0xFF follows up to that size (counted from flash
//!    offset 0, so the file is `fill - target_offset` bytes). A fill size
//!    smaller than the content adds nothing.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use sha2::{Digest, Sha256};

use crate::chip::Chip;
use crate::image::{inspect, FlashMode, IMAGE_MAGIC};
use crate::SECTOR_SIZE;

/// Byte 2 of the image header: the SPI flash mode.
const MODE_BYTE: usize = 2;
/// Byte 3 of the image header: flash size (high nibble) and frequency (low).
const SIZE_FREQ_BYTE: usize = 3;
/// Byte 23 of the image header: 1 when a SHA-256 digest is appended.
const HASH_APPENDED_BYTE: usize = 23;
/// Length of the appended digest.
const DIGEST_LEN: usize = 32;
/// The shortest input esptool considers patching.
const MIN_PATCH_LEN: usize = 8;

/// New flash settings for the bootloader's image header, as esptool's
/// `--flash-mode`, `--flash-freq` and `--flash-size` set them. `None` keeps
/// the value in the image ("keep", esptool's default for `merge-bin` and
/// `write-flash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderPatch {
    /// SPI flash mode (esptool offers qio, qout, dio, dout).
    pub flash_mode: Option<FlashMode>,
    /// Flash frequency code for the chip (see
    /// [`Chip::flash_freq_code`](crate::chip::Chip::flash_freq_code)).
    pub flash_freq: Option<u8>,
    /// Flash size code, 0 = 1 MB ... 7 = 128 MB (see
    /// [`flash_size_code`](crate::image::header::flash_size_code)).
    pub flash_size: Option<u8>,
}

impl HeaderPatch {
    /// Keep everything as it is.
    pub const KEEP: HeaderPatch = HeaderPatch {
        flash_mode: None,
        flash_freq: None,
        flash_size: None,
    };

    /// Whether every setting is "keep".
    pub fn is_keep(&self) -> bool {
        *self == Self::KEEP
    }
}

/// Layout options of [`merge_bin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergeOptions {
    /// Flash offset the output will be written at (esptool `--target-offset`).
    pub target_offset: u32,
    /// Pad with 0xFF up to this flash size (esptool `--pad-to-size`, formerly
    /// `--fill-flash-size`).
    pub fill_to: Option<u32>,
}

/// Why inputs cannot be merged. The caller's inputs are at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// Nothing to merge.
    #[error("nothing to merge: no input")]
    NoInput,
    /// Two inputs share a 4 KiB flash sector, so writing one erases part of
    /// the other.
    #[error(
        "the input at {offset:#x} shares a 4 KiB flash sector with the input at {previous:#x} \
         (which ends at {previous_end:#x}); flash writes erase whole sectors, so move it to \
         {free:#x} or later"
    )]
    Overlap {
        /// Offset of the later input.
        offset: u32,
        /// Offset of the earlier input.
        previous: u32,
        /// End of the earlier input.
        previous_end: u64,
        /// The first sector boundary after the earlier input.
        free: u64,
    },
    /// An input lies below the output's target offset.
    #[error(
        "the input at {offset:#x} lies below the target offset {target:#x} of the merged \
         image; lower the target offset to {offset:#x} or less"
    )]
    BelowTarget {
        /// Offset of the input.
        offset: u32,
        /// The target offset.
        target: u32,
    },
}

/// Merges `inputs` into one image exactly as `esptool --chip CHIP merge-bin`
/// does in raw format (see the module docs).
pub fn merge_bin(
    chip: Chip,
    inputs: &[(u32, &[u8])],
    patch: &HeaderPatch,
    opts: &MergeOptions,
) -> Result<Vec<u8>, MergeError> {
    let mut sorted: Vec<(u32, &[u8])> = inputs.to_vec();
    sorted.sort_by_key(|(offset, _)| *offset);
    check_sectors(&sorted)?;
    let Some(&(first, _)) = sorted.first() else {
        return Err(MergeError::NoInput);
    };
    if first < opts.target_offset {
        return Err(MergeError::BelowTarget {
            offset: first,
            target: opts.target_offset,
        });
    }
    let mut out = Vec::new();
    let base = u64::from(opts.target_offset);
    for (offset, data) in sorted {
        pad_to(&mut out, u64::from(offset) - base);
        let data = if offset == chip.bootloader_offset() {
            patch_header(data, patch)
        } else {
            Cow::Borrowed(data)
        };
        out.extend_from_slice(&data);
    }
    if let Some(fill) = opts.fill_to {
        pad_to(&mut out, u64::from(fill).saturating_sub(base));
    }
    Ok(out)
}

/// Appends 0xFF until `out` is `len` bytes long (nothing when it is longer).
fn pad_to(out: &mut Vec<u8>, len: u64) {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if out.len() < len {
        out.resize(len, 0xFF);
    }
}

/// esptool's overlap rule (`AddrFilenamePairType`): each input covers whole
/// sectors, and a later input must start at or after the end of the previous
/// input's last sector. `sorted` is in offset order.
pub(crate) fn check_sectors(sorted: &[(u32, &[u8])]) -> Result<(), MergeError> {
    let sector = u64::from(SECTOR_SIZE);
    let mut previous: Option<(u32, u64, u64)> = None;
    for &(offset, data) in sorted {
        let start = u64::from(offset) & !(sector - 1);
        let end = u64::from(offset) + data.len() as u64;
        if let Some((prev, prev_end, prev_sector_end)) = previous {
            if start < prev_sector_end {
                return Err(MergeError::Overlap {
                    offset,
                    previous: prev,
                    previous_end: prev_end,
                    free: prev_sector_end,
                });
            }
        }
        previous = Some((offset, end, end.div_ceil(sector) * sector));
    }
    Ok(())
}

/// esptool's `_update_image_flash_params` for the input at the bootloader
/// offset: replaces the flash mode, frequency and size in the header and
/// recomputes the appended SHA-256 over the image up to its checksum block.
///
/// Like esptool, an input that is not a readable image is left unchanged, and
/// an image whose `hash_appended` byte is 1 is re-hashed even when no header
/// byte changes.
pub fn patch_header<'a>(image: &'a [u8], patch: &HeaderPatch) -> Cow<'a, [u8]> {
    if image.len() < MIN_PATCH_LEN || patch.is_keep() || image.first() != Some(&IMAGE_MAGIC) {
        return Cow::Borrowed(image);
    }
    let Ok(info) = inspect(image) else {
        return Cow::Borrowed(image);
    };
    let mut out = image.to_vec();
    if let Some(mode) = patch.flash_mode {
        out[MODE_BYTE] = mode.code();
    }
    let old = out[SIZE_FREQ_BYTE];
    let freq = patch.flash_freq.unwrap_or(old & 0x0F) & 0x0F;
    let size = patch.flash_size.map_or(old & 0xF0, |code| code << 4);
    out[SIZE_FREQ_BYTE] = size | freq;
    if out.get(HASH_APPENDED_BYTE) == Some(&1) {
        // `image_len` counts the digest; the hashed part ends before it.
        let hashed = (info.image_len as usize).saturating_sub(DIGEST_LEN);
        let digest: [u8; DIGEST_LEN] = Sha256::digest(out.get(..hashed).unwrap_or(&[])).into();
        let after = out.get(hashed + DIGEST_LEN..).unwrap_or(&[]).to_vec();
        out.truncate(hashed);
        out.extend_from_slice(&digest);
        out.extend_from_slice(&after);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_from_zero_and_between_inputs() {
        let a = [1u8; 0x10];
        let b = [2u8; 0x20];
        let out = merge_bin(
            Chip::Esp32c3,
            &[(0x3000, &b), (0x1000, &a)],
            &HeaderPatch::KEEP,
            &MergeOptions::default(),
        )
        .unwrap();
        assert_eq!(out.len(), 0x3020);
        assert!(out[..0x1000].iter().all(|&x| x == 0xFF));
        assert_eq!(&out[0x1000..0x1010], &a);
        assert!(out[0x1010..0x3000].iter().all(|&x| x == 0xFF));
        assert_eq!(&out[0x3000..], &b);
    }

    #[test]
    fn target_offset_and_fill() {
        let a = [1u8; 4];
        let opts = MergeOptions {
            target_offset: 0x1000,
            fill_to: Some(0x4000),
        };
        let out = merge_bin(Chip::Esp32, &[(0x2000, &a)], &HeaderPatch::KEEP, &opts).unwrap();
        assert_eq!(out.len(), 0x3000);
        assert_eq!(&out[0x1000..0x1004], &a);
        let err = merge_bin(
            Chip::Esp32,
            &[(0x800, &a)],
            &HeaderPatch::KEEP,
            &MergeOptions {
                target_offset: 0x1000,
                fill_to: None,
            },
        );
        assert!(matches!(err, Err(MergeError::BelowTarget { .. })));
    }

    #[test]
    fn inputs_in_one_sector_conflict() {
        let a = [1u8; 0x10];
        let err = merge_bin(
            Chip::Esp32,
            &[(0x1000, &a), (0x1800, &a)],
            &HeaderPatch::KEEP,
            &MergeOptions::default(),
        );
        assert!(matches!(
            err,
            Err(MergeError::Overlap {
                offset: 0x1800,
                free: 0x2000,
                ..
            })
        ));
        // Ending exactly on a sector boundary leaves the next sector free.
        let full = [1u8; 0x1000];
        assert!(merge_bin(
            Chip::Esp32,
            &[(0x1000, &full), (0x2000, &a)],
            &HeaderPatch::KEEP,
            &MergeOptions::default(),
        )
        .is_ok());
    }

    #[test]
    fn non_images_are_never_patched() {
        let data = [0xE9u8, 1, 2, 3, 4, 5, 6, 7, 8];
        let patch = HeaderPatch {
            flash_mode: Some(FlashMode::Dout),
            ..HeaderPatch::KEEP
        };
        assert!(matches!(patch_header(&data, &patch), Cow::Borrowed(_)));
    }
}
