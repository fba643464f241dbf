//! The one error type for app images, [`ImageError`].
//!
//! Every variant names what is wrong, where (byte offset, segment index) and
//! what to do. Variants fall in three groups: the file is not an ESP32 image at
//! all (bad magic, ESP8266, unknown chip, truncated), the image is damaged
//! (checksum, SHA-256, segment layout), or the image is valid but not what the
//! caller asked for (wrong chip, too large, secure_version, not an app).

use crate::chip::Chip;

use super::desc::Hex;

/// Which part of an image a truncated file stopped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImagePart {
    /// The 24-byte image header.
    Header,
    /// An 8-byte segment header.
    SegmentHeader,
    /// Segment data.
    SegmentData,
    /// The zero padding and checksum byte after the last segment.
    Checksum,
    /// The appended 32-byte SHA-256.
    Sha256,
}

impl core::fmt::Display for ImagePart {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ImagePart::Header => "image header",
            ImagePart::SegmentHeader => "a segment header",
            ImagePart::SegmentData => "segment data",
            ImagePart::Checksum => "the checksum block",
            ImagePart::Sha256 => "the appended SHA-256",
        })
    }
}

/// Why an image was rejected.
///
/// Offsets are byte offsets into the image file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// Byte 0 is not 0xE9: this is not an ESP image (0xFF means erased flash).
    #[error("not an ESP app image: byte 0 is {got:#04x}, expected the image magic 0xe9{}", if *.got == 0xFF { " (0xff is erased flash: was this read from an empty slot, or is it a merged flash dump for a chip whose bootloader sits at 0x1000?)" } else { "" })]
    BadMagic {
        /// The byte found at offset 0.
        got: u8,
    },
    /// 0xE9 magic but no ESP32-family extended header: an ESP8266 image.
    #[error("this is an ESP8266 image (magic 0xe9 but no ESP32 extended header: hash_appended byte at offset 23 is {hash_appended:#04x}, chip id {chip_id:#06x}); build the firmware for an ESP32-family target")]
    Esp8266 {
        /// Byte 23 (`hash_appended`), which must be 0 or 1 on ESP32 images.
        hash_appended: u8,
        /// The would-be chip id at offset 12.
        chip_id: u16,
    },
    /// The extended header names a chip id otter does not know.
    #[error("unknown chip id {id:#06x} in the image header at offset 12; the image is for a chip otter does not support or the header is corrupt")]
    UnknownChip {
        /// The chip id found.
        id: u16,
    },
    /// The image is for another chip than the caller expects.
    #[error(
        "image is built for {got}, but the device is {expected}; build the firmware for {expected}"
    )]
    WrongChip {
        /// The chip the caller expects.
        expected: Chip,
        /// The chip named in the image header.
        got: Chip,
    },
    /// The header's flash mode byte (offset 2) is no SPI mode.
    #[error("image header at offset 2 has flash mode {code}, which is no SPI flash mode (QIO 0 .. SLOW_READ 5); the header is corrupt")]
    InvalidFlashMode {
        /// The mode byte found.
        code: u8,
    },
    /// The header's flash size nibble (high nibble of offset 3) is no size.
    #[error("image header at offset 3 has flash size code {code:#x}, which is no flash size (0 = 1 MiB .. 7 = 128 MiB); the header is corrupt")]
    InvalidFlashSize {
        /// The size nibble found.
        code: u8,
    },
    /// The header's flash frequency nibble (low nibble of offset 3) is no
    /// frequency of the chip.
    #[error("image header at offset 3 has flash frequency code {code:#x}, which {chip} does not have; the header is corrupt")]
    InvalidFlashFreq {
        /// The chip named by the header.
        chip: Chip,
        /// The frequency nibble found.
        code: u8,
    },
    /// The minimum chip revision is above the maximum.
    #[error("image header names chip revisions v{}.{} to v{}.{}: the minimum (offset 15) is above the maximum (offset 17), so no chip can run it; the header is corrupt", .min / 100, .min % 100, .max / 100, .max % 100)]
    ChipRevRange {
        /// `min_chip_rev_full`.
        min: u16,
        /// `max_chip_rev_full`.
        max: u16,
    },
    /// A segment's load range runs past the end of the address space or out
    /// of the flash-mapped range it starts in.
    #[error("segment {index} loads {len:#x} bytes at {load_addr:#010x}, which runs out of the {chip} memory region it starts in; the image is corrupt")]
    SegmentOutOfRange {
        /// Segment index.
        index: u8,
        /// The chip named by the header.
        chip: Chip,
        /// Load address.
        load_addr: u32,
        /// Data length.
        len: u32,
    },
    /// The entry point lies in no loaded segment: the bootloader would jump
    /// into nothing.
    #[error("the entry point {entry:#010x} (image header offset 4) lies in no loaded segment of the image; the bootloader would jump into nothing; the header is corrupt")]
    EntryOutsideSegments {
        /// The entry address found.
        entry: u32,
    },
    /// The device requires an appended SHA-256 and the image has none
    /// (`hash_appended` is 0), so its header is protected only by a one-byte
    /// checksum that does not cover it.
    #[error("the image has no appended SHA-256 (hash_appended at offset 23 is 0) and this device requires one; build it with ESP-IDF's default image settings (esptool elf2image appends the digest unless told not to)")]
    Sha256Required,
    /// More segments than the bootloader accepts (16).
    #[error("image header at offset 1 declares {count} segments; the bootloader accepts at most 16 (the header is corrupt or the linker script is broken)")]
    TooManySegments {
        /// Declared segment count.
        count: u8,
    },
    /// A segment length is not a multiple of 4.
    #[error("segment {index} (header at offset {offset:#x}) has length {len:#x}, which is not a multiple of 4; the image is corrupt")]
    SegmentLenUnaligned {
        /// Segment index.
        index: u8,
        /// File offset of the segment header.
        offset: u32,
        /// Declared data length.
        len: u32,
    },
    /// A segment is 16 MiB or longer.
    #[error("segment {index} (header at offset {offset:#x}) has length {len:#x}, at or above the 16 MiB limit; the image is corrupt")]
    SegmentTooLong {
        /// Segment index.
        index: u8,
        /// File offset of the segment header.
        offset: u32,
        /// Declared data length.
        len: u32,
    },
    /// A flash-mapped segment's data is not at a file offset congruent to its
    /// load address modulo the MMU page, so the bootloader cannot map it.
    #[error("flash-mapped segment {index} loads at {load_addr:#010x} but its data is at file offset {offset:#x}; these must be equal modulo the {page_size:#x}-byte MMU page; rebuild the image with esptool elf2image")]
    SegmentMisaligned {
        /// Segment index.
        index: u8,
        /// File offset of the segment data.
        offset: u32,
        /// Load address.
        load_addr: u32,
        /// MMU page size used for the check.
        page_size: u32,
    },
    /// The app descriptor names an MMU page size outside 8 KiB..=256 KiB.
    #[error("the app descriptor (offset 0xd4) names MMU page size 2^{log2}, which no chip uses; the image is corrupt")]
    InvalidMmuPageSize {
        /// The stored log2 page size.
        log2: u8,
    },
    /// The file ends inside the image.
    #[error("image is truncated: the file ends at {received} bytes, inside {part} (at least {needed} bytes needed); the upload or download was cut short")]
    Truncated {
        /// Bytes received.
        received: u64,
        /// Where the file ended.
        part: ImagePart,
        /// Minimum file length needed to go on.
        needed: u64,
    },
    /// The XOR checksum does not match the segment data.
    #[error("checksum mismatch at offset {offset:#x}: stored {stored:#04x}, computed {computed:#04x}; the image is corrupt")]
    ChecksumMismatch {
        /// File offset of the checksum byte.
        offset: u32,
        /// Stored checksum.
        stored: u8,
        /// Checksum computed over the segment data.
        computed: u8,
    },
    /// The appended SHA-256 does not match the image.
    #[error("appended SHA-256 at offset {offset:#x} does not match the image: stored {}, computed {}; the image is corrupt or its header was edited without re-hashing", Hex(.stored), Hex(.computed))]
    ShaMismatch {
        /// File offset of the stored digest.
        offset: u32,
        /// Stored digest.
        stored: [u8; 32],
        /// Digest computed over `[0, offset)`.
        computed: [u8; 32],
    },
    /// The image does not fit the slot.
    #[error("image is {image_len} bytes but the slot holds only {slot_size}; use a larger slot or a smaller build")]
    ImageTooLarge {
        /// Image length (segments, checksum, SHA-256).
        image_len: u32,
        /// Slot size.
        slot_size: u32,
    },
    /// The file (image plus trailing data such as a signature) does not fit
    /// the slot.
    #[error("file is larger than the {slot_size}-byte slot (image plus trailing data); use a larger slot or strip the trailing data")]
    FileTooLarge {
        /// Slot size.
        slot_size: u32,
    },
    /// secure_version is below the anti-rollback minimum.
    #[error("app secure_version {got} is below the device's minimum {min} (anti-rollback); the device would refuse to boot it, build with a higher CONFIG_BOOTLOADER_APP_SECURE_VERSION")]
    SecureVersionTooLow {
        /// secure_version in the app descriptor.
        got: u32,
        /// Required minimum.
        min: u32,
    },
    /// An app descriptor was needed (for anti-rollback) but the image has none.
    #[error("image has no app descriptor (esp_app_desc_t magic 0xabcd5432 at offset 0x20), so its secure_version cannot be checked; build with ESP-IDF 3.1 or later")]
    MissingAppDesc,
    /// The file's SHA-256 is not the one the caller expected.
    #[error("file SHA-256 is {}, expected {}; this is not the release you meant to install", Hex(.computed), Hex(.expected))]
    FileShaMismatch {
        /// Expected digest.
        expected: [u8; 32],
        /// Digest of the whole file.
        computed: [u8; 32],
    },
    /// A second-stage bootloader, not an app.
    #[error("this is a second-stage bootloader image, not an app; upload the app image (build/<project>.bin) instead")]
    IsBootloader,
    /// A merged full-flash image (bootloader + partition table + app).
    #[error("this is a merged full-flash image (bootloader + partition table + app) as made by esptool merge-bin; upload the app image (build/<project>.bin) instead, or extract the app at offset 0x10000")]
    IsMergedFlash,
    /// A valid image that loads only into RAM: it cannot run from a flash slot.
    #[error("this is a RAM-only image (no flash-mapped segment, no app descriptor), loadable over serial but not bootable from an OTA slot; upload a normal app image (build/<project>.bin)")]
    IsRamOnly,
}

impl ImageError {
    /// A stable machine-readable code for the error (snake case).
    pub fn code(&self) -> &'static str {
        match self {
            ImageError::BadMagic { .. } => "bad_magic",
            ImageError::Esp8266 { .. } => "esp8266",
            ImageError::UnknownChip { .. } => "unknown_chip",
            ImageError::WrongChip { .. } => "wrong_chip",
            ImageError::InvalidFlashMode { .. } => "invalid_flash_mode",
            ImageError::InvalidFlashSize { .. } => "invalid_flash_size",
            ImageError::InvalidFlashFreq { .. } => "invalid_flash_freq",
            ImageError::ChipRevRange { .. } => "chip_rev_range",
            ImageError::SegmentOutOfRange { .. } => "segment_out_of_range",
            ImageError::EntryOutsideSegments { .. } => "entry_outside_segments",
            ImageError::Sha256Required => "sha256_required",
            ImageError::TooManySegments { .. } => "too_many_segments",
            ImageError::SegmentLenUnaligned { .. } => "segment_len_unaligned",
            ImageError::SegmentTooLong { .. } => "segment_too_long",
            ImageError::SegmentMisaligned { .. } => "segment_misaligned",
            ImageError::InvalidMmuPageSize { .. } => "invalid_mmu_page_size",
            ImageError::Truncated { .. } => "truncated",
            ImageError::ChecksumMismatch { .. } => "checksum_mismatch",
            ImageError::ShaMismatch { .. } => "sha_mismatch",
            ImageError::ImageTooLarge { .. } => "image_too_large",
            ImageError::FileTooLarge { .. } => "file_too_large",
            ImageError::SecureVersionTooLow { .. } => "secure_version_too_low",
            ImageError::MissingAppDesc => "missing_app_desc",
            ImageError::FileShaMismatch { .. } => "file_sha_mismatch",
            ImageError::IsBootloader => "is_bootloader",
            ImageError::IsMergedFlash => "is_merged_flash",
            ImageError::IsRamOnly => "is_ram_only",
        }
    }

    /// Whether the error is a header field that is not valid for the chip
    /// (as opposed to damaged data or an unwanted but valid image).
    pub fn is_bad_header(&self) -> bool {
        matches!(
            self,
            ImageError::InvalidFlashMode { .. }
                | ImageError::InvalidFlashSize { .. }
                | ImageError::InvalidFlashFreq { .. }
                | ImageError::ChipRevRange { .. }
                | ImageError::SegmentOutOfRange { .. }
                | ImageError::EntryOutsideSegments { .. }
                | ImageError::TooManySegments { .. }
        )
    }
}
