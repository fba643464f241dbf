//! The 24-byte image header (`esp_image_header_t`) and the 8-byte segment
//! header (`esp_image_segment_header_t`).

/// Image magic, byte 0 of every ESP image.
pub const IMAGE_MAGIC: u8 = 0xE9;
/// Length of the image header, including the extended header.
pub const HEADER_LEN: usize = 24;
/// Length of a segment header.
pub const SEGMENT_HEADER_LEN: usize = 8;
/// Most segments an image may have (`ESP_IMAGE_MAX_SEGMENTS`).
pub const MAX_SEGMENTS: usize = 16;
/// `wp_pin` value meaning "not used" (what esptool writes).
pub const WP_PIN_DISABLED: u8 = 0xEE;

/// SPI flash mode, byte 2 of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlashMode {
    /// Quad I/O.
    Qio,
    /// Quad output.
    Qout,
    /// Dual I/O.
    Dio,
    /// Dual output.
    Dout,
    /// Fast read.
    FastRead,
    /// Slow read.
    SlowRead,
}

impl FlashMode {
    const TABLE: [(FlashMode, u8, &'static str); 6] = [
        (FlashMode::Qio, 0, "QIO"),
        (FlashMode::Qout, 1, "QOUT"),
        (FlashMode::Dio, 2, "DIO"),
        (FlashMode::Dout, 3, "DOUT"),
        (FlashMode::FastRead, 4, "FAST_READ"),
        (FlashMode::SlowRead, 5, "SLOW_READ"),
    ];

    /// The mode for a header code.
    pub fn from_code(code: u8) -> Option<FlashMode> {
        Self::TABLE.iter().find(|t| t.1 == code).map(|t| t.0)
    }

    /// Parses `qio`, `DIO`, ... (case-insensitive).
    pub fn from_name(name: &str) -> Option<FlashMode> {
        Self::TABLE
            .iter()
            .find(|t| t.2.eq_ignore_ascii_case(name))
            .map(|t| t.0)
    }

    /// The header code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Upper-case name, as esptool prints it.
    pub fn name(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|t| t.0 == self)
            .map_or("?", |t| t.2)
    }
}

/// Flash size in bytes for a header size code (high nibble of byte 3):
/// 0 = 1 MiB ... 7 = 128 MiB.
pub fn flash_size_from_code(code: u8) -> Option<u32> {
    if code <= 7 {
        Some(0x10_0000u32 << code)
    } else {
        None
    }
}

/// Header size code for a flash size in bytes (inverse of
/// [`flash_size_from_code`]).
pub fn flash_size_code(bytes: u32) -> Option<u8> {
    (0u8..=7).find(|c| flash_size_from_code(*c) == Some(bytes))
}

/// The image header, `esp_image_header_t` (24 bytes, little-endian, packed).
///
/// | Off | Len | Field | Notes |
/// |---|---|---|---|
/// | 0 | 1 | magic | [`IMAGE_MAGIC`] (0xE9) |
/// | 1 | 1 | `segment_count` | <= 16, padding segments included |
/// | 2 | 1 | `spi_mode` | [`FlashMode`] code |
/// | 3 | 1 | `spi_speed` / `spi_size` | low nibble frequency (chip-specific), high nibble size |
/// | 4 | 4 | `entry_addr` | |
/// | 8 | 1 | `wp_pin` | 0xEE = disabled |
/// | 9 | 3 | `spi_pin_drv` | drive strengths, nibble pairs |
/// | 12 | 2 | `chip_id` | `esp_chip_id_t` |
/// | 14 | 1 | `min_chip_rev` | legacy |
/// | 15 | 2 | `min_chip_rev_full` | major * 100 + minor |
/// | 17 | 2 | `max_chip_rev_full` | 0 or 0xFFFF = not set |
/// | 19 | 4 | reserved | |
/// | 23 | 1 | `hash_appended` | 1 = SHA-256 follows the checksum |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// Number of segments, padding segments included.
    pub segment_count: u8,
    /// SPI flash mode code (see [`FlashMode`]).
    pub spi_mode: u8,
    /// Byte 3: flash size code (high nibble) and frequency code (low nibble).
    pub spi_size_speed: u8,
    /// Entry point address.
    pub entry_addr: u32,
    /// SPI write-protect pin, 0xEE when unused.
    pub wp_pin: u8,
    /// SPI pin drive strengths.
    pub spi_pin_drv: [u8; 3],
    /// `esp_chip_id_t` of the target chip.
    pub chip_id: u16,
    /// Legacy minimum chip revision.
    pub min_chip_rev: u8,
    /// Minimum chip revision, major * 100 + minor.
    pub min_chip_rev_full: u16,
    /// Maximum chip revision, major * 100 + minor; 0 or 0xFFFF = not set.
    pub max_chip_rev_full: u16,
    /// Reserved bytes 19..23 (zero in every ESP32 image).
    pub reserved: [u8; 4],
    /// Byte 23: 1 when a SHA-256 digest is appended.
    pub hash_appended: u8,
}

impl ImageHeader {
    /// Decodes a header. Byte 0 is not checked here (see [`IMAGE_MAGIC`]).
    pub fn decode(b: &[u8; HEADER_LEN]) -> ImageHeader {
        ImageHeader {
            segment_count: b[1],
            spi_mode: b[2],
            spi_size_speed: b[3],
            entry_addr: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            wp_pin: b[8],
            spi_pin_drv: [b[9], b[10], b[11]],
            chip_id: u16::from_le_bytes([b[12], b[13]]),
            min_chip_rev: b[14],
            min_chip_rev_full: u16::from_le_bytes([b[15], b[16]]),
            max_chip_rev_full: u16::from_le_bytes([b[17], b[18]]),
            reserved: [b[19], b[20], b[21], b[22]],
            hash_appended: b[23],
        }
    }

    /// Encodes the header, magic included.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = IMAGE_MAGIC;
        b[1] = self.segment_count;
        b[2] = self.spi_mode;
        b[3] = self.spi_size_speed;
        b[4..8].copy_from_slice(&self.entry_addr.to_le_bytes());
        b[8] = self.wp_pin;
        b[9..12].copy_from_slice(&self.spi_pin_drv);
        b[12..14].copy_from_slice(&self.chip_id.to_le_bytes());
        b[14] = self.min_chip_rev;
        b[15..17].copy_from_slice(&self.min_chip_rev_full.to_le_bytes());
        b[17..19].copy_from_slice(&self.max_chip_rev_full.to_le_bytes());
        b[19..23].copy_from_slice(&self.reserved);
        b[23] = self.hash_appended;
        b
    }

    /// Whether a SHA-256 digest follows the checksum block.
    pub fn has_hash(&self) -> bool {
        self.hash_appended == 1
    }

    /// The flash mode, if the code is known.
    pub fn flash_mode(&self) -> Option<FlashMode> {
        FlashMode::from_code(self.spi_mode)
    }

    /// Flash size code (high nibble of byte 3).
    pub fn flash_size_code(&self) -> u8 {
        self.spi_size_speed >> 4
    }

    /// Flash size in bytes, if the code is known.
    pub fn flash_size(&self) -> Option<u32> {
        flash_size_from_code(self.flash_size_code())
    }

    /// Flash frequency code (low nibble of byte 3); see
    /// [`crate::chip::Chip::flash_freq_name`].
    pub fn flash_freq_code(&self) -> u8 {
        self.spi_size_speed & 0x0F
    }

    /// Maximum chip revision, or `None` when not set (0 or 0xFFFF).
    pub fn max_chip_rev(&self) -> Option<u16> {
        match self.max_chip_rev_full {
            0 | 0xFFFF => None,
            v => Some(v),
        }
    }
}

/// A segment header, `esp_image_segment_header_t` (8 bytes).
///
/// | Off | Len | Field |
/// |---|---|---|
/// | 0 | 4 | `load_addr` |
/// | 4 | 4 | `data_len` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentHeader {
    /// Address the segment is loaded or mapped to.
    pub load_addr: u32,
    /// Length of the data that follows.
    pub data_len: u32,
}

impl SegmentHeader {
    /// Decodes a segment header.
    pub fn decode(b: &[u8; SEGMENT_HEADER_LEN]) -> SegmentHeader {
        SegmentHeader {
            load_addr: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            data_len: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// Encodes a segment header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[..4].copy_from_slice(&self.load_addr.to_le_bytes());
        b[4..].copy_from_slice(&self.data_len.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut raw = [0u8; HEADER_LEN];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = i as u8 * 7 + 1;
        }
        raw[0] = IMAGE_MAGIC;
        assert_eq!(ImageHeader::decode(&raw).encode(), raw);
    }

    #[test]
    fn flash_sizes() {
        assert_eq!(flash_size_from_code(2), Some(4 * 1024 * 1024));
        assert_eq!(flash_size_code(16 * 1024 * 1024), Some(4));
        assert_eq!(flash_size_from_code(8), None);
    }
}
