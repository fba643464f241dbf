//! ELF → ESP-IDF app image, as esptool's `elf2image` lays it out for the
//! RISC-V chips otter builds firmware for (ESP32-C3, ESP32-C6).
//!
//! The steps, each as esptool 5.6 does them with its defaults (sections, not
//! program headers; flash mode `qio`, size `1MB`, default frequency; chip
//! revisions 0..=65535; SHA-256 appended):
//!
//! 1. Every ELF section of a program type (`PROGBITS`, `INIT_ARRAY`,
//!    `FINI_ARRAY`, `PREINIT_ARRAY`) with a non-zero address and size, in
//!    section-header order, its data padded with zeros to 4 bytes.
//! 2. Sections that follow each other in that order and in memory, in the
//!    same memory types of the chip's map, are merged.
//! 3. Flash-mapped segments (IROM/DROM windows), sorted by address with
//!    `.flash.appdesc` first, are placed so that each one's file offset
//!    after its 8-byte header is congruent to its address modulo the MMU
//!    page size; the gaps are filled with the start of the RAM segments
//!    (split) or zero padding segments. Two flash segments in one MMU page
//!    are refused.
//! 4. The SHA-256 of the ELF file goes into the app descriptor's
//!    `app_elf_sha256` (image offset 0xB0), the XOR checksum closes the
//!    segments at a 16-byte boundary, and the SHA-256 of the image is
//!    appended.
//!
//! The MMU page size is 64 KiB on the C3; on the C6 it is the descriptor's
//! `mmu_page_size` (log2), else the largest size that the descriptor's
//! address (less the 32 bytes of headers) is aligned to.

use alloc::vec::Vec;

use sha2::{Digest, Sha256};

use crate::chip::Chip;

/// Why an ELF cannot become an app image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// Not a 32-bit little-endian ELF for RISC-V or Xtensa.
    #[error("not an ELF32 little-endian RISC-V/Xtensa file")]
    NotElf,
    /// A header or section points outside the file.
    #[error("the ELF is truncated: {what} at {offset:#x} is outside the file")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Its file offset.
        offset: u64,
    },
    /// The chip has no image layout here.
    #[error("{chip:?} images cannot be made from an ELF here (ESP32-C3 and ESP32-C6 can)")]
    UnsupportedChip {
        /// The chip asked for.
        chip: Chip,
    },
    /// Two flash-mapped segments land in one MMU page.
    #[error(
        "flash segments at {first:#010x} and {second:#010x} share one {page:#x}-byte MMU page"
    )]
    SharedMmuPage {
        /// The earlier segment's address.
        first: u32,
        /// The later segment's address.
        second: u32,
        /// The page size.
        page: u32,
    },
    /// A segment is 16 MiB or more, or not a multiple of 4 bytes long.
    #[error("segment at {addr:#010x} has an invalid length {len:#x}")]
    SegmentLength {
        /// Its load address.
        addr: u32,
        /// Its length.
        len: usize,
    },
    /// The app descriptor's `app_elf_sha256` field is not zero.
    #[error("the app descriptor's ELF SHA-256 field at image offset 0xb0 is not zero")]
    DescriptorNotBlank,
}

impl ElfError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotElf => "not_elf",
            Self::Truncated { .. } => "elf_truncated",
            Self::UnsupportedChip { .. } => "unsupported_chip",
            Self::SharedMmuPage { .. } => "shared_mmu_page",
            Self::SegmentLength { .. } => "segment_length",
            Self::DescriptorNotBlank => "descriptor_not_blank",
        }
    }
}

struct Layout {
    irom: (u32, u32),
    drom: (u32, u32),
    memory_map: &'static [(u32, u32)],
    page_sizes: &'static [u32],
}

// The memory maps esptool merges by (start, end); names do not matter, only
// which ranges an address falls in.
const C3: Layout = Layout {
    irom: (0x4200_0000, 0x4280_0000),
    drom: (0x3C00_0000, 0x3C80_0000),
    memory_map: &[
        (0x0000_0000, 0x0001_0000),
        (0x3C00_0000, 0x3C80_0000),
        (0x3FC8_0000, 0x3FCE_0000),
        (0x3FC8_8000, 0x3FD0_0000),
        (0x3FF0_0000, 0x3FF2_0000),
        (0x4000_0000, 0x4006_0000),
        (0x4200_0000, 0x4280_0000),
        (0x4037_C000, 0x403E_0000),
        (0x5000_0000, 0x5000_2000),
        (0x5000_0000, 0x5000_2000),
        (0x600F_E000, 0x6010_0000),
    ],
    page_sizes: &[],
};
const C6: Layout = Layout {
    irom: (0x4200_0000, 0x4280_0000),
    drom: (0x4280_0000, 0x4300_0000),
    memory_map: &[
        (0x0000_0000, 0x0001_0000),
        (0x4200_0000, 0x4300_0000),
        (0x4080_0000, 0x4088_0000),
        (0x4080_0000, 0x4088_0000),
        (0x4004_AC00, 0x4005_0000),
        (0x4000_0000, 0x4004_AC00),
        (0x4200_0000, 0x4300_0000),
        (0x4080_0000, 0x4088_0000),
        (0x5000_0000, 0x5000_4000),
        (0x5000_0000, 0x5000_4000),
        (0x600F_E000, 0x6010_0000),
    ],
    page_sizes: &[8192, 16384, 32768, 65536],
};

impl Layout {
    fn of(chip: Chip) -> Result<&'static Layout, ElfError> {
        match chip {
            Chip::Esp32c3 => Ok(&C3),
            Chip::Esp32c6 => Ok(&C6),
            chip => Err(ElfError::UnsupportedChip { chip }),
        }
    }
    fn is_flash(&self, a: u32) -> bool {
        (self.irom.0..self.irom.1).contains(&a) || (self.drom.0..self.drom.1).contains(&a)
    }
    /// Which ranges of the map `a` is in, as a bit set.
    fn memory_type(&self, a: u32) -> u32 {
        self.memory_map
            .iter()
            .enumerate()
            .filter(|(_, (s, e))| (*s..*e).contains(&a))
            .fold(0, |m, (i, _)| m | (1 << i))
    }
}

/// One loadable piece: a section, or sections merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfSection {
    /// The (first) section's name.
    pub name: Vec<u8>,
    /// Load address.
    pub addr: u32,
    /// Bytes, padded to 4.
    pub data: Vec<u8>,
}

fn get<const N: usize>(b: &[u8], at: usize, what: &'static str) -> Result<[u8; N], ElfError> {
    b.get(at..at.saturating_add(N))
        .and_then(|s| s.try_into().ok())
        .ok_or(ElfError::Truncated {
            what,
            offset: at as u64,
        })
}
fn u16_at(b: &[u8], at: usize, what: &'static str) -> Result<u16, ElfError> {
    get::<2>(b, at, what).map(u16::from_le_bytes)
}
fn u32_at(b: &[u8], at: usize, what: &'static str) -> Result<u32, ElfError> {
    get::<4>(b, at, what).map(u32::from_le_bytes)
}
fn slice<'a>(b: &'a [u8], at: u32, len: u32, what: &'static str) -> Result<&'a [u8], ElfError> {
    let (at, len) = (at as usize, len as usize);
    b.get(at..at.saturating_add(len))
        .ok_or(ElfError::Truncated {
            what,
            offset: at as u64,
        })
}

/// A parsed ELF: its entry point and loadable sections in header order.
#[derive(Debug, Clone)]
pub struct Elf {
    /// `e_entry`.
    pub entry: u32,
    /// The program sections (see the module docs).
    pub sections: Vec<ElfSection>,
}

impl Elf {
    /// Reads the ELF header and the section headers.
    pub fn parse(b: &[u8]) -> Result<Elf, ElfError> {
        if b.len() < 0x34 || b.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err(ElfError::NotElf);
        }
        if b.get(4) != Some(&1) || b.get(5) != Some(&1) {
            return Err(ElfError::NotElf);
        }
        let machine = u16_at(b, 0x12, "e_machine")?;
        if machine != 0xF3 && machine != 0x5E {
            return Err(ElfError::NotElf);
        }
        let entry = u32_at(b, 0x18, "e_entry")?;
        let shoff = u32_at(b, 0x20, "e_shoff")?;
        let shentsize = u16_at(b, 0x2E, "e_shentsize")?;
        let shnum = u16_at(b, 0x30, "e_shnum")?;
        let shstrndx = u16_at(b, 0x32, "e_shstrndx")?;
        if shentsize != 0x28 || shnum == 0 || shstrndx >= shnum {
            return Err(ElfError::NotElf);
        }
        let sh = |i: u16, field: usize| {
            u32_at(
                b,
                shoff as usize + usize::from(i) * 0x28 + field * 4,
                "section header",
            )
        };
        let strtab = slice(b, sh(shstrndx, 4)?, sh(shstrndx, 5)?, "section names")?;
        let mut sections = Vec::new();
        for i in 0..shnum {
            let (name, ty, addr, off, size) =
                (sh(i, 0)?, sh(i, 1)?, sh(i, 3)?, sh(i, 4)?, sh(i, 5)?);
            if addr == 0 || size == 0 || !matches!(ty, 0x01 | 0x0E | 0x0F | 0x10) {
                continue;
            }
            let n = strtab.get(name as usize..).unwrap_or_default();
            let n = n.split(|c| *c == 0).next().unwrap_or_default();
            let mut data = slice(b, off, size, "section data")?.to_vec();
            data.resize(data.len().next_multiple_of(4), 0);
            sections.push(ElfSection {
                name: n.to_vec(),
                addr,
                data,
            });
        }
        Ok(Elf { entry, sections })
    }
}

/// Merges sections that follow each other in order, in memory and in the
/// same memory types.
fn merge(l: &Layout, sections: Vec<ElfSection>) -> Vec<ElfSection> {
    let mut out: Vec<ElfSection> = Vec::new();
    let mut prev: Option<(u32, usize)> = None;
    for s in sections {
        let joins = prev.is_some_and(|(addr, len)| {
            l.memory_type(addr) == l.memory_type(s.addr)
                && u64::from(s.addr) == u64::from(addr) + len as u64
        });
        prev = Some((s.addr, s.data.len()));
        match out.last_mut() {
            Some(last) if joins => last.data.extend_from_slice(&s.data),
            _ => out.push(s),
        }
    }
    out
}

const SEG_HEADER: usize = 8;
const APPDESC: &[u8] = b".flash.appdesc";

struct Writer {
    out: Vec<u8>,
    checksum: u8,
    segments: u8,
    elf_sha: Option<[u8; 32]>,
}

impl Writer {
    fn segment(&mut self, addr: u32, mut data: Vec<u8>) -> Result<(), ElfError> {
        if !data.len().is_multiple_of(4) || data.len() >= 0x100_0000 {
            return Err(ElfError::SegmentLength {
                addr,
                len: data.len(),
            });
        }
        let pos = self.out.len();
        if let Some(sha) = self.elf_sha {
            if (pos..pos + data.len()).contains(&0xB0) {
                let at = 0xB0 - pos;
                if at < SEG_HEADER || at + 32 > data.len() {
                    return Err(ElfError::DescriptorNotBlank);
                }
                let field = data
                    .get_mut(at - SEG_HEADER..at - SEG_HEADER + 32)
                    .ok_or(ElfError::DescriptorNotBlank)?;
                if field.iter().any(|b| *b != 0) {
                    return Err(ElfError::DescriptorNotBlank);
                }
                field.copy_from_slice(&sha);
            }
        }
        self.out.extend_from_slice(&addr.to_le_bytes());
        self.out
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.checksum = data.iter().fold(self.checksum, |c, b| c ^ b);
        self.out.extend_from_slice(&data);
        self.segments = self.segments.wrapping_add(1);
        Ok(())
    }
}

/// The MMU page size esptool picks (see the module docs).
fn page_size(l: &Layout, sections: &[ElfSection]) -> u32 {
    let Some(desc) = sections
        .iter()
        .find(|s| s.name.windows(APPDESC.len()).any(|w| w == APPDESC))
    else {
        return 65536;
    };
    if l.page_sizes.is_empty() || !l.is_flash(desc.addr) {
        return 65536;
    }
    if desc.data.get(..4) != Some(0xABCD_5432u32.to_le_bytes().as_slice()) {
        return 65536;
    }
    match desc.data.get(180).copied().unwrap_or(0) {
        0 => l
            .page_sizes
            .iter()
            .rev()
            .copied()
            .find(|p| desc.addr.wrapping_sub(32) % p == 0)
            .unwrap_or(65536),
        log2 if log2 < 32 => 1u32 << log2,
        _ => 65536,
    }
}

/// Builds the app image of `elf` for `chip` (esptool `elf2image` with its
/// defaults).
pub fn elf_to_image(elf_bytes: &[u8], chip: Chip) -> Result<Vec<u8>, ElfError> {
    let l = Layout::of(chip)?;
    let elf = Elf::parse(elf_bytes)?;
    let align = page_size(l, &elf.sections) as usize;
    let has_desc = elf
        .sections
        .iter()
        .any(|s| s.name.windows(APPDESC.len()).any(|w| w == APPDESC) && l.is_flash(s.addr));
    let segments = merge(l, elf.sections);

    let mut w = Writer {
        out: Vec::new(),
        checksum: 0xEF,
        segments: 0,
        elf_sha: has_desc.then(|| Sha256::digest(elf_bytes).into()),
    };
    // Common header: magic, segment count (patched), mode qio, 1MB/default freq.
    w.out.extend_from_slice(&[0xE9, 0, 0, 0]);
    w.out.extend_from_slice(&elf.entry.to_le_bytes());
    // Extended header: WP pin disabled, drive strengths 0, chip id,
    // min_rev 0, min_rev_full 0, max_rev_full 65535, reserved, hash appended.
    w.out.extend_from_slice(&[0xEE, 0, 0, 0]);
    w.out.extend_from_slice(&chip.image_chip_id().to_le_bytes());
    w.out.push(0);
    w.out.extend_from_slice(&0u16.to_le_bytes());
    w.out.extend_from_slice(&0xFFFFu16.to_le_bytes());
    w.out.extend_from_slice(&[0, 0, 0, 0, 1]);

    let mut sorted = segments;
    sorted.sort_by_key(|s| s.addr);
    let (mut flash, mut ram): (Vec<_>, Vec<_>) =
        sorted.into_iter().partition(|s| l.is_flash(s.addr));
    if let Some(i) = flash.iter().position(|s| s.name == APPDESC) {
        let d = flash.remove(i);
        flash.insert(0, d);
    }
    for pair in flash.windows(2) {
        if let [a, b] = pair {
            if b.addr as usize / align == a.addr as usize / align {
                return Err(ElfError::SharedMmuPage {
                    first: a.addr,
                    second: b.addr,
                    page: align as u32,
                });
            }
        }
    }
    let mut flash = flash.into_iter().peekable();
    let mut ram_front = 0usize;
    while let Some(seg) = flash.peek() {
        // Data bytes needed so that, after the next header, the file offset
        // is congruent to the segment's address.
        let align_past = (seg.addr as usize % align) as isize - SEG_HEADER as isize;
        let mut pad = (align - w.out.len() % align) as isize + align_past;
        if pad == 0 || pad == align as isize {
            pad = 0;
        } else {
            pad -= SEG_HEADER as isize;
            if pad < 0 {
                pad += align as isize;
            }
        }
        let pad = pad as usize;
        if pad == 0 {
            if let Some(seg) = flash.next() {
                w.segment(seg.addr, seg.data)?;
            }
            continue;
        }
        match ram.get_mut(ram_front) {
            Some(r) if pad > SEG_HEADER => {
                let n = pad.min(r.data.len());
                let head: Vec<u8> = r.data.drain(..n).collect();
                let addr = r.addr;
                r.addr = r.addr.wrapping_add(n as u32);
                if r.data.is_empty() {
                    ram_front += 1;
                }
                w.segment(addr, head)?;
            }
            _ => w.segment(0, alloc::vec![0u8; pad])?,
        }
    }
    for r in ram.into_iter().skip(ram_front) {
        w.segment(r.addr, r.data)?;
    }
    // Checksum in the last byte of a 16-byte block.
    let fill = 15 - w.out.len() % 16;
    w.out.resize(w.out.len() + fill, 0);
    w.out.push(w.checksum);
    if let Some(b) = w.out.get_mut(1) {
        *b = w.segments;
    }
    let digest = Sha256::digest(&w.out);
    w.out.extend_from_slice(&digest);
    Ok(w.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_an_elf() {
        assert_eq!(
            elf_to_image(b"not an elf", Chip::Esp32c3),
            Err(ElfError::NotElf)
        );
        assert_eq!(
            elf_to_image(&[0u8; 64], Chip::Esp32c3).map_err(|e| e.code()),
            Err("not_elf")
        );
    }

    #[test]
    fn refuses_other_chips() {
        assert_eq!(
            elf_to_image(b"\x7fELF", Chip::Esp32).map_err(|e| e.code()),
            Err("unsupported_chip")
        );
    }

    #[test]
    fn truncated_section_headers_are_reported() {
        let mut h = alloc::vec![0u8; 0x34];
        h[..6].copy_from_slice(b"\x7fELF\x01\x01");
        h[0x12] = 0xF3;
        h[0x20..0x24].copy_from_slice(&0x1000u32.to_le_bytes());
        h[0x2E] = 0x28;
        h[0x30] = 2;
        h[0x32] = 1;
        assert_eq!(
            Elf::parse(&h).map(|_| ()),
            Err(ElfError::Truncated {
                what: "section header",
                offset: 0x1000 + 0x28 + 16
            })
        );
    }

    #[test]
    fn merge_joins_only_adjacent_same_memory() {
        let s = |addr, n: usize| ElfSection {
            name: b"s".to_vec(),
            addr,
            data: alloc::vec![1; n],
        };
        let m = merge(
            &C3,
            alloc::vec![
                s(0x3FC8_0000, 8),
                s(0x3FC8_0008, 4),
                s(0x3FC8_0100, 4),
                s(0x4200_0000, 4)
            ],
        );
        assert_eq!(
            m.iter().map(|s| (s.addr, s.data.len())).collect::<Vec<_>>(),
            [(0x3FC8_0000, 12), (0x3FC8_0100, 4), (0x4200_0000, 4)]
        );
    }

    /// A minimal ELF32 RISC-V file with `sections` (name, address, data).
    fn synth(entry: u32, sections: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
        let mut names = alloc::vec![0u8];
        let mut data = alloc::vec![0u8; 0x34];
        let mut headers = alloc::vec![[0u32; 10]];
        for (name, addr, bytes) in sections {
            let n = names.len() as u32;
            names.extend_from_slice(name.as_bytes());
            names.push(0);
            let off = data.len() as u32;
            data.extend_from_slice(bytes);
            headers.push([n, 1, 2, *addr, off, bytes.len() as u32, 0, 0, 4, 0]);
        }
        let strtab = data.len() as u32;
        let shstr_name = names.len() as u32;
        names.extend_from_slice(b".shstrtab\0");
        data.extend_from_slice(&names);
        headers.push([shstr_name, 3, 0, 0, strtab, names.len() as u32, 0, 0, 1, 0]);
        while !data.len().is_multiple_of(4) {
            data.push(0);
        }
        let shoff = data.len() as u32;
        for h in &headers {
            for w in h {
                data.extend_from_slice(&w.to_le_bytes());
            }
        }
        data[..6].copy_from_slice(b"\x7fELF\x01\x01");
        data[0x10] = 2;
        data[0x12] = 0xF3;
        data[0x18..0x1C].copy_from_slice(&entry.to_le_bytes());
        data[0x20..0x24].copy_from_slice(&shoff.to_le_bytes());
        data[0x2E] = 0x28;
        data[0x30..0x32].copy_from_slice(&(headers.len() as u16).to_le_bytes());
        data[0x32..0x34].copy_from_slice(&(headers.len() as u16 - 1).to_le_bytes());
        data
    }

    #[test]
    fn flash_segments_land_on_their_mmu_offsets() {
        let elf = synth(
            0x4200_0010,
            &[
                (".iram", 0x4038_0000, alloc::vec![0x11; 0x3000]),
                (".dram", 0x3FC8_0000, alloc::vec![0x22; 0x800]),
                (".text", 0x4201_0020, alloc::vec![0x33; 0x1234]),
                (".rodata", 0x3C02_0020, alloc::vec![0x44; 0x101]),
            ],
        );
        let img = elf_to_image(&elf, Chip::Esp32c3).expect("converts");
        let info = crate::image::inspect(&img).expect("a valid image");
        assert!(info.checksum_valid());
        for seg in info.segments() {
            if C3.is_flash(seg.load_addr) {
                assert_eq!(
                    seg.data_offset % 0x10000,
                    seg.load_addr % 0x10000,
                    "{seg:?}"
                );
            }
        }
        // Rodata is padded to 4 bytes; every section's bytes are in the image.
        let total: u32 = info
            .segments()
            .iter()
            .filter(|s| s.load_addr != 0)
            .map(|s| s.len)
            .sum();
        assert_eq!(total, 0x3000 + 0x800 + 0x1234 + 0x104);
    }

    #[test]
    fn two_flash_sections_in_one_page_are_refused() {
        let elf = synth(
            0,
            &[
                (".a", 0x4200_0020, alloc::vec![1; 16]),
                (".b", 0x4200_8000, alloc::vec![2; 16]),
            ],
        );
        assert_eq!(
            elf_to_image(&elf, Chip::Esp32c3),
            Err(ElfError::SharedMmuPage {
                first: 0x4200_0020,
                second: 0x4200_8000,
                page: 0x10000
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = elf_to_image(&data, Chip::Esp32c6);
        }

        #[test]
        fn any_ram_sections_make_a_valid_image(
            lens in proptest::collection::vec(1usize..3000, 1..6),
            gaps in proptest::collection::vec(0u32..64, 6),
        ) {
            let mut at = 0x3FC8_0000u32;
            let mut secs = alloc::vec::Vec::new();
            for (i, n) in lens.iter().enumerate() {
                secs.push(("s", at, alloc::vec![i as u8 + 1; *n]));
                at += (*n as u32).next_multiple_of(4) + gaps[i] * 4;
            }
            let elf = synth(0x3FC8_0000, &secs);
            let img = elf_to_image(&elf, Chip::Esp32c3).expect("converts");
            let info = crate::image::inspect(&img).expect("valid");
            proptest::prop_assert!(info.checksum_valid());
            let sum: u32 = info.segments().iter().map(|s| s.len).sum();
            let want: u32 = lens.iter().map(|n| (*n as u32).next_multiple_of(4)).sum();
            proptest::prop_assert_eq!(sum, want);
        }
    }
}
