//! Per-chip facts for the ESP32 family.
//!
//! Everything otter needs to know about a chip lives in one table,
//! [`CHIPS`], one [`ChipFacts`] row per [`Chip`]; accessors look the row up
//! instead of matching on the chip. The values come from esptool
//! (`esptool/targets/*.py`: `IMAGE_CHIP_ID`, `BOOTLOADER_FLASH_OFFSET`,
//! `IROM_MAP_START/END`, `DROM_MAP_START/END`, `FLASH_FREQUENCY`;
//! `esptool/bin_image.py`: `MMU_PAGE_SIZE_CONF`) and ESP-IDF
//! (`esp_chip_id_t` in `esp_app_format.h`).

/// An ESP32-family chip (the SoC an image is built for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Chip {
    /// ESP32 (Xtensa LX6).
    Esp32,
    /// ESP32-S2 (Xtensa LX7, single core).
    Esp32s2,
    /// ESP32-S3 (Xtensa LX7, dual core).
    Esp32s3,
    /// ESP32-C2 / ESP8684 (RISC-V).
    Esp32c2,
    /// ESP32-C3 (RISC-V).
    Esp32c3,
    /// ESP32-C5 (RISC-V, dual-band Wi-Fi 6).
    Esp32c5,
    /// ESP32-C6 (RISC-V, Wi-Fi 6).
    Esp32c6,
    /// ESP32-C61 (RISC-V).
    Esp32c61,
    /// ESP32-H2 (RISC-V, 802.15.4).
    Esp32h2,
    /// ESP32-H21 (RISC-V, 802.15.4).
    Esp32h21,
    /// ESP32-H4 (RISC-V, 802.15.4).
    Esp32h4,
    /// ESP32-P4 (RISC-V, high performance).
    Esp32p4,
}

/// A half-open address range `[start, end)` in a chip's memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    /// First address in the range.
    pub start: u32,
    /// First address past the range.
    pub end: u32,
}

impl AddrRange {
    /// Whether `addr` lies in the range.
    pub const fn contains(&self, addr: u32) -> bool {
        self.start <= addr && addr < self.end
    }
}

/// One row of the per-chip table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChipFacts {
    /// The chip this row describes.
    pub chip: Chip,
    /// Canonical lowercase name as esptool's `--chip` spells it (`esp32c3`).
    pub name: &'static str,
    /// Marketing name as esptool's `CHIP_NAME` spells it (`ESP32-C3`).
    pub display_name: &'static str,
    /// `chip_id` in the image's extended header (`esp_chip_id_t`).
    pub image_chip_id: u16,
    /// Flash offset of the second-stage bootloader.
    pub bootloader_offset: u32,
    /// An internal-RAM address where ESP-IDF apps load code (start of the
    /// app's IRAM); the builder puts its RAM segment there.
    pub iram_load_addr: u32,
    /// Flash-mapped instruction range (`IROM_MAP_START..IROM_MAP_END`).
    pub irom: AddrRange,
    /// Flash-mapped data range (`DROM_MAP_START..DROM_MAP_END`).
    pub drom: AddrRange,
    /// MMU page sizes the chip can be configured for, smallest first. Chips
    /// with a fixed page list only 64 KiB.
    pub mmu_page_sizes: &'static [u32],
    /// Flash frequency codes (low nibble of header byte 3) and their names,
    /// in esptool's order (the first name wins for a shared code).
    pub flash_freqs: &'static [(u8, &'static str)],
}

/// The default (and for most chips, only) MMU page size: 64 KiB.
pub const DEFAULT_MMU_PAGE_SIZE: u32 = 0x1_0000;

const PAGES_64K: &[u32] = &[0x1_0000];
const PAGES_C2: &[u32] = &[0x4000, 0x8000, 0x1_0000];
const PAGES_C6: &[u32] = &[0x2000, 0x4000, 0x8000, 0x1_0000];

const FREQ_ESP32: &[(u8, &str)] = &[(0xF, "80m"), (0x0, "40m"), (0x1, "26m"), (0x2, "20m")];
const FREQ_C2: &[(u8, &str)] = &[(0xF, "60m"), (0x0, "30m"), (0x1, "20m"), (0x2, "15m")];
const FREQ_C5: &[(u8, &str)] = &[(0xF, "80m"), (0x0, "40m"), (0x2, "20m")];
// esptool maps both 80m and 40m to 0 on the C6 (a ROM divider workaround).
const FREQ_C6: &[(u8, &str)] = &[(0x0, "80m"), (0x0, "40m"), (0x2, "20m")];
const FREQ_H2: &[(u8, &str)] = &[(0xF, "48m"), (0x0, "24m"), (0x1, "16m"), (0x2, "12m")];
const FREQ_H21: &[(u8, &str)] = &[(0xF, "48m"), (0x0, "24m")];

const fn r(start: u32, end: u32) -> AddrRange {
    AddrRange { start, end }
}

/// The per-chip facts, one row per [`Chip`], in [`Chip`] order.
pub const CHIPS: &[ChipFacts] = &[
    ChipFacts {
        chip: Chip::Esp32,
        name: "esp32",
        display_name: "ESP32",
        image_chip_id: 0x0000,
        bootloader_offset: 0x1000,
        iram_load_addr: 0x4008_0000,
        irom: r(0x400D_0000, 0x4040_0000),
        drom: r(0x3F40_0000, 0x3F80_0000),
        mmu_page_sizes: PAGES_64K,
        flash_freqs: FREQ_ESP32,
    },
    ChipFacts {
        chip: Chip::Esp32s2,
        name: "esp32s2",
        display_name: "ESP32-S2",
        image_chip_id: 0x0002,
        bootloader_offset: 0x1000,
        iram_load_addr: 0x4002_4000,
        irom: r(0x4008_0000, 0x40B8_0000),
        drom: r(0x3F00_0000, 0x3F3F_0000),
        mmu_page_sizes: PAGES_64K,
        flash_freqs: FREQ_ESP32,
    },
    ChipFacts {
        chip: Chip::Esp32s3,
        name: "esp32s3",
        display_name: "ESP32-S3",
        image_chip_id: 0x0009,
        bootloader_offset: 0x0,
        iram_load_addr: 0x4037_4000,
        irom: r(0x4200_0000, 0x4400_0000),
        drom: r(0x3C00_0000, 0x3E00_0000),
        mmu_page_sizes: PAGES_64K,
        flash_freqs: FREQ_ESP32,
    },
    ChipFacts {
        chip: Chip::Esp32c2,
        name: "esp32c2",
        display_name: "ESP32-C2",
        image_chip_id: 0x000C,
        bootloader_offset: 0x0,
        iram_load_addr: 0x4038_0000,
        irom: r(0x4200_0000, 0x4240_0000),
        drom: r(0x3C00_0000, 0x3C40_0000),
        mmu_page_sizes: PAGES_C2,
        flash_freqs: FREQ_C2,
    },
    ChipFacts {
        chip: Chip::Esp32c3,
        name: "esp32c3",
        display_name: "ESP32-C3",
        image_chip_id: 0x0005,
        bootloader_offset: 0x0,
        iram_load_addr: 0x4038_0000,
        irom: r(0x4200_0000, 0x4280_0000),
        drom: r(0x3C00_0000, 0x3C80_0000),
        mmu_page_sizes: PAGES_64K,
        flash_freqs: FREQ_ESP32,
    },
    ChipFacts {
        chip: Chip::Esp32c5,
        name: "esp32c5",
        display_name: "ESP32-C5",
        image_chip_id: 0x0017,
        bootloader_offset: 0x2000,
        iram_load_addr: 0x4080_0000,
        irom: r(0x4200_0000, 0x4400_0000),
        drom: r(0x4200_0000, 0x4400_0000),
        mmu_page_sizes: PAGES_64K,
        flash_freqs: FREQ_C5,
    },
    ChipFacts {
        chip: Chip::Esp32c6,
        name: "esp32c6",
        display_name: "ESP32-C6",
        image_chip_id: 0x000D,
        bootloader_offset: 0x0,
        iram_load_addr: 0x4080_0000,
        irom: r(0x4200_0000, 0x4280_0000),
        drom: r(0x4280_0000, 0x4300_0000),
        mmu_page_sizes: PAGES_C6,
        flash_freqs: FREQ_C6,
    },
    ChipFacts {
        chip: Chip::Esp32c61,
        name: "esp32c61",
        display_name: "ESP32-C61",
        image_chip_id: 0x0014,
        bootloader_offset: 0x0,
        iram_load_addr: 0x4080_0000,
        irom: r(0x4200_0000, 0x4280_0000),
        drom: r(0x4280_0000, 0x4300_0000),
        mmu_page_sizes: PAGES_C6,
        flash_freqs: FREQ_C5,
    },
    ChipFacts {
        chip: Chip::Esp32h2,
        name: "esp32h2",
        display_name: "ESP32-H2",
        image_chip_id: 0x0010,
        bootloader_offset: 0x0,
        iram_load_addr: 0x4080_0000,
        irom: r(0x4200_0000, 0x4280_0000),
        drom: r(0x4280_0000, 0x4300_0000),
        mmu_page_sizes: PAGES_C6,
        flash_freqs: FREQ_H2,
    },
    ChipFacts {
        chip: Chip::Esp32h21,
        name: "esp32h21",
        display_name: "ESP32-H21",
        image_chip_id: 0x0019,
        bootloader_offset: 0x0,
        iram_load_addr: 0x4080_0000,
        irom: r(0x4200_0000, 0x4300_0000),
        drom: r(0x4200_0000, 0x4300_0000),
        mmu_page_sizes: PAGES_C6,
        flash_freqs: FREQ_H21,
    },
    ChipFacts {
        chip: Chip::Esp32h4,
        name: "esp32h4",
        display_name: "ESP32-H4",
        image_chip_id: 0x001C,
        bootloader_offset: 0x2000,
        iram_load_addr: 0x4081_0000,
        irom: r(0x4200_0000, 0x4400_0000),
        drom: r(0x4200_0000, 0x4400_0000),
        mmu_page_sizes: PAGES_C6,
        flash_freqs: FREQ_H21,
    },
    ChipFacts {
        chip: Chip::Esp32p4,
        name: "esp32p4",
        display_name: "ESP32-P4",
        image_chip_id: 0x0012,
        bootloader_offset: 0x2000,
        iram_load_addr: 0x4FF0_0000,
        irom: r(0x4000_0000, 0x4C00_0000),
        drom: r(0x4000_0000, 0x4C00_0000),
        mmu_page_sizes: PAGES_64K,
        flash_freqs: FREQ_ESP32,
    },
];

// The table is indexed by `Chip as usize`; keep it in step with the enum.
const _: () = {
    let mut i = 0;
    while i < CHIPS.len() {
        assert!(CHIPS[i].chip as usize == i);
        i += 1;
    }
    assert!(CHIPS.len() == Chip::Esp32p4 as usize + 1);
};

impl Chip {
    /// Every chip, in table order.
    pub fn all() -> impl Iterator<Item = Chip> {
        CHIPS.iter().map(|f| f.chip)
    }

    /// This chip's row of [`CHIPS`].
    pub fn facts(self) -> &'static ChipFacts {
        // The const block above proves `CHIPS[self as usize].chip == self`.
        match CHIPS.get(self as usize) {
            Some(f) => f,
            None => &CHIPS[0],
        }
    }

    /// The chip whose image `chip_id` is `id`, if any.
    pub fn from_image_id(id: u16) -> Option<Chip> {
        CHIPS.iter().find(|f| f.image_chip_id == id).map(|f| f.chip)
    }

    /// Parses a chip name, case-insensitively and ignoring `-` and `_`:
    /// `esp32c3`, `ESP32-C3` and `esp32_c3` all name the ESP32-C3.
    pub fn from_name(name: &str) -> Option<Chip> {
        CHIPS.iter().find(|f| name_eq(name, f.name)).map(|f| f.chip)
    }

    /// Canonical lowercase name (`esp32c3`).
    pub fn name(self) -> &'static str {
        self.facts().name
    }

    /// Marketing name (`ESP32-C3`).
    pub fn display_name(self) -> &'static str {
        self.facts().display_name
    }

    /// `chip_id` in the image header.
    pub fn image_chip_id(self) -> u16 {
        self.facts().image_chip_id
    }

    /// Flash offset of the second-stage bootloader.
    pub fn bootloader_offset(self) -> u32 {
        self.facts().bootloader_offset
    }

    /// Whether `addr` is in a flash-mapped (IROM or DROM) range.
    pub fn is_flash_mapped(self, addr: u32) -> bool {
        let f = self.facts();
        f.irom.contains(addr) || f.drom.contains(addr)
    }

    /// Whether the chip supports an MMU page of `size` bytes.
    pub fn supports_mmu_page_size(self, size: u32) -> bool {
        self.facts().mmu_page_sizes.contains(&size)
    }

    /// Display name of a flash frequency code (`"80m"`), as esptool prints it.
    pub fn flash_freq_name(self, code: u8) -> Option<&'static str> {
        self.facts()
            .flash_freqs
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, n)| *n)
    }

    /// The code of a flash frequency name (`"80m"`), as esptool's
    /// `--flash-freq` accepts it.
    pub fn flash_freq_code(self, name: &str) -> Option<u8> {
        self.facts()
            .flash_freqs
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(c, _)| *c)
    }
}

impl core::fmt::Display for Chip {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.display_name())
    }
}

/// Compares `input` with a canonical lowercase name, ignoring case, `-` and `_`.
fn name_eq(input: &str, canonical: &str) -> bool {
    let mut a = input
        .bytes()
        .filter(|b| *b != b'-' && *b != b'_')
        .map(|b| b.to_ascii_lowercase());
    let mut b = canonical.bytes();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Chip::all() {
            assert_eq!(Chip::from_name(c.name()), Some(c));
            assert_eq!(Chip::from_name(c.display_name()), Some(c));
            assert_eq!(Chip::from_image_id(c.image_chip_id()), Some(c));
        }
        assert_eq!(Chip::from_name("ESP32-C3"), Some(Chip::Esp32c3));
        assert_eq!(Chip::from_name("esp32c"), None);
        assert_eq!(Chip::from_name("esp32c33"), None);
        assert_eq!(Chip::from_image_id(1), None);
    }

    #[test]
    fn flash_ranges() {
        assert!(Chip::Esp32.is_flash_mapped(0x3F40_0020));
        assert!(Chip::Esp32.is_flash_mapped(0x400D_0020));
        assert!(!Chip::Esp32.is_flash_mapped(0x4008_0000));
        assert!(Chip::Esp32c6.is_flash_mapped(0x4280_0020));
        assert!(!Chip::Esp32p4.is_flash_mapped(0x4FF0_0000));
    }
}
