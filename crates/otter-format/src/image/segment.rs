//! Segments: what a segment is for ([`SegmentKind`]), the XOR checksum over
//! segment data, and the position of the checksum byte.
//!
//! After the last segment comes zero padding and one checksum byte, placed so
//! that the checksum block ends at a multiple of 16 bytes; then, when the
//! header's `hash_appended` is 1, the 32-byte SHA-256 of everything before it.
//!
//! | Part | Length |
//! |---|---|
//! | image header | 24 |
//! | segment header + data, per segment | 8 + `data_len` |
//! | zero padding | 0..=15, so that the checksum byte ends at a multiple of 16 |
//! | checksum | 1 (seed 0xEF, XOR of every segment data byte) |
//! | SHA-256 | 32 when `hash_appended` = 1: digest of all bytes above |

use crate::chip::Chip;

/// Seed of the image checksum (`ESP_ROM_CHECKSUM_INITIAL`).
pub const CHECKSUM_SEED: u8 = 0xEF;
/// Segments must be shorter than this (16 MiB).
pub const MAX_SEGMENT_LEN: u32 = 0x100_0000;
/// Load addresses below this are never loaded: padding segments use 0.
pub const PADDING_ADDR_END: u32 = 0x1_0000;

/// What a segment is, judged from its load address and the chip's memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// Mapped from flash through the MMU (IROM or DROM): the data must sit at
    /// a file offset congruent to the load address modulo the MMU page.
    Flash,
    /// Copied into RAM by the bootloader.
    Ram,
    /// Not loaded (load address below 0x10000, normally 0): alignment filler.
    Padding,
}

impl SegmentKind {
    /// Classifies a load address for `chip`.
    pub fn classify(chip: Chip, load_addr: u32) -> SegmentKind {
        if chip.is_flash_mapped(load_addr) {
            SegmentKind::Flash
        } else if load_addr < PADDING_ADDR_END {
            SegmentKind::Padding
        } else {
            SegmentKind::Ram
        }
    }

    /// Lowercase name (`flash`, `ram`, `padding`).
    pub fn name(self) -> &'static str {
        match self {
            SegmentKind::Flash => "flash",
            SegmentKind::Ram => "ram",
            SegmentKind::Padding => "padding",
        }
    }
}

/// One segment of a parsed image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Load (or mapping) address.
    pub load_addr: u32,
    /// Data length.
    pub len: u32,
    /// File offset of the segment's data (its header is 8 bytes before).
    pub data_offset: u32,
    /// Flash-mapped, RAM or padding.
    pub kind: SegmentKind,
}

impl Segment {
    /// File offset of the 8-byte segment header (what esptool prints as
    /// "File offs").
    pub fn header_offset(&self) -> u32 {
        self.data_offset.saturating_sub(8)
    }
}

/// Folds `data` into a running XOR checksum. Start with [`CHECKSUM_SEED`].
pub fn checksum_update(state: u8, data: &[u8]) -> u8 {
    let mut words = data.chunks_exact(8);
    let mut acc = 0u64;
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        acc ^= u64::from_ne_bytes(b);
    }
    let mut x = state;
    for b in acc.to_ne_bytes() {
        x ^= b;
    }
    for b in words.remainder() {
        x ^= *b;
    }
    x
}

/// Zero padding between the end of the last segment (file offset `end`) and
/// the checksum byte: the checksum ends the block at a multiple of 16.
pub fn checksum_padding(end: u32) -> u32 {
    15 - (end % 16)
}

/// Whether a flash-mapped segment whose data starts at file offset
/// `data_offset` can be mapped at `load_addr` with MMU pages of `page` bytes.
pub fn is_page_congruent(data_offset: u32, load_addr: u32, page: u32) -> bool {
    page == 0 || data_offset % page == load_addr % page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_bytewise_xor() {
        let data: [u8; 37] = core::array::from_fn(|i| (i * 31 + 7) as u8);
        for cut in 0..data.len() {
            let fast = checksum_update(checksum_update(CHECKSUM_SEED, &data[..cut]), &data[cut..]);
            let slow = data.iter().fold(CHECKSUM_SEED, |a, b| a ^ b);
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn padding_ends_block_at_16() {
        for end in [24u32, 28, 32, 36, 44] {
            assert_eq!((end + checksum_padding(end) + 1) % 16, 0);
        }
    }
}
