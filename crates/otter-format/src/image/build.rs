//! Building app images (`alloc` feature).
//!
//! - [`build_image`] lays raw segments out the way esptool's
//!   `ESP32FirmwareImage.save` does: flash-mapped segments first, sorted by
//!   address (the app-descriptor segment moved to the front), each placed at a
//!   file offset congruent to its load address modulo the MMU page, using a
//!   slice of a RAM segment or a zero padding segment to get there; then the
//!   remaining RAM segments; the checksum block; the SHA-256. For the same
//!   segments and header fields it produces esptool's bytes.
//! - [`AppImageBuilder`] makes a complete, valid app for any chip from a
//!   version, project name and `secure_version`, optionally padded to an exact
//!   size with deterministic pseudo-random data: test images for OTA.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use sha2::{Digest, Sha256};

use crate::chip::{Chip, DEFAULT_MMU_PAGE_SIZE};

use super::desc::{APP_DESC_LEN, APP_DESC_MAGIC};
use super::header::{
    flash_size_code, FlashMode, ImageHeader, SegmentHeader, HEADER_LEN, MAX_SEGMENTS,
    SEGMENT_HEADER_LEN, WP_PIN_DISABLED,
};
use super::segment::{checksum_padding, checksum_update, CHECKSUM_SEED, MAX_SEGMENT_LEN};

/// Why an image could not be built. These are caller errors: the segments or
/// parameters given cannot form a valid image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A segment length is not a multiple of 4 (only possible for load
    /// address 0; other segments are zero-padded, as esptool does).
    #[error("segment at {addr:#010x} has length {len:#x}, not a multiple of 4")]
    LenUnaligned {
        /// Load address.
        addr: u32,
        /// Length.
        len: usize,
    },
    /// A segment is 16 MiB or longer.
    #[error("segment at {addr:#010x} has length {len:#x}, at or above the 16 MiB limit")]
    SegmentTooLong {
        /// Load address.
        addr: u32,
        /// Length.
        len: usize,
    },
    /// Two flash-mapped segments fall in the same MMU page.
    #[error(
        "flash segments at {a:#010x} and {b:#010x} share one {page:#x}-byte MMU page; merge them"
    )]
    SamePage {
        /// First segment's address.
        a: u32,
        /// Second segment's address.
        b: u32,
        /// MMU page size.
        page: u32,
    },
    /// The layout needs more than 16 segments.
    #[error("the image needs {count} segments (padding included); at most 16 are allowed")]
    TooManySegments {
        /// Segments needed.
        count: usize,
    },
    /// The MMU page size is not one the chip supports.
    #[error("{page:#x} is not an MMU page size {chip} supports")]
    BadPageSize {
        /// Chip.
        chip: Chip,
        /// Page size asked for.
        page: u32,
    },
    /// A string does not fit its descriptor field.
    #[error("{field} is {len} bytes; the app descriptor field holds at most {max}")]
    FieldTooLong {
        /// Field name.
        field: &'static str,
        /// Length given.
        len: usize,
        /// Maximum (field size minus the NUL terminator).
        max: usize,
    },
    /// The requested total size is smaller than the smallest image, or too
    /// large for one segment.
    #[error(
        "cannot build an image of {size} bytes (the minimum here is {min}, the maximum {max})"
    )]
    BadSize {
        /// Requested size.
        size: u32,
        /// Smallest possible size.
        min: u32,
        /// Largest possible size.
        max: u32,
    },
}

/// Header fields and layout options for [`build_image`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageParams {
    /// Target chip.
    pub chip: Chip,
    /// Flash mode (header byte 2).
    pub flash_mode: FlashMode,
    /// Header byte 3: size code << 4 | frequency code.
    pub flash_size_freq: u8,
    /// Entry point.
    pub entry: u32,
    /// Legacy minimum chip revision.
    pub min_rev: u8,
    /// Minimum chip revision (major * 100 + minor).
    pub min_rev_full: u16,
    /// Maximum chip revision (esptool's API default is 0, its CLI's 65535).
    pub max_rev_full: u16,
    /// Append the SHA-256 digest.
    pub append_digest: bool,
    /// MMU page size for the mapping rule.
    pub mmu_page_size: u32,
    /// Index (into the segment list) of the app-descriptor segment, which goes
    /// first among the flash segments (esptool's `.flash.appdesc` rule).
    pub app_desc_segment: Option<usize>,
}

impl ImageParams {
    /// esptool's defaults for `chip`: QIO, size/freq byte 0, entry 0, revisions
    /// 0, digest appended, 64 KiB pages.
    pub fn new(chip: Chip) -> ImageParams {
        ImageParams {
            chip,
            flash_mode: FlashMode::Qio,
            flash_size_freq: 0,
            entry: 0,
            min_rev: 0,
            min_rev_full: 0,
            max_rev_full: 0,
            append_digest: true,
            mmu_page_size: DEFAULT_MMU_PAGE_SIZE,
            app_desc_segment: None,
        }
    }
}

struct Seg {
    addr: u32,
    data: Vec<u8>,
}

/// Builds an image from raw `(load_addr, data)` segments, laid out as
/// esptool's `ESP32FirmwareImage.save` lays out the same `ELFSection`s.
pub fn build_image(params: &ImageParams, segments: &[(u32, &[u8])]) -> Result<Vec<u8>, BuildError> {
    let chip = params.chip;
    let page = params.mmu_page_size;
    if page != DEFAULT_MMU_PAGE_SIZE && !chip.supports_mmu_page_size(page) {
        return Err(BuildError::BadPageSize { chip, page });
    }
    // ImageSegment pads every non-zero-address segment to 4 bytes.
    let mut all: Vec<(usize, Seg)> = segments
        .iter()
        .enumerate()
        .map(|(i, (addr, data))| {
            let mut d = data.to_vec();
            if *addr != 0 {
                d.resize(d.len().div_ceil(4) * 4, 0);
            }
            (
                i,
                Seg {
                    addr: *addr,
                    data: d,
                },
            )
        })
        .collect();
    all.sort_by_key(|(_, s)| s.addr);
    let mut flash: Vec<(usize, Seg)> = Vec::new();
    let mut ram: Vec<Seg> = Vec::new();
    for (i, s) in all {
        if chip.is_flash_mapped(s.addr) {
            flash.push((i, s));
        } else {
            ram.push(s);
        }
    }
    if let Some(idx) = params.app_desc_segment {
        if let Some(p) = flash.iter().position(|(i, _)| *i == idx) {
            let s = flash.remove(p);
            flash.insert(0, s);
        }
    }
    for w in flash.windows(2) {
        if let [(_, a), (_, b)] = w {
            if a.addr / page == b.addr / page {
                return Err(BuildError::SamePage {
                    a: a.addr,
                    b: b.addr,
                    page,
                });
            }
        }
    }

    let mut out: Vec<u8> = vec![0; HEADER_LEN];
    let mut checksum = CHECKSUM_SEED;
    let mut count = 0usize;
    let mut ram = ram
        .into_iter()
        .collect::<alloc::collections::VecDeque<Seg>>();
    let mut flash = flash
        .into_iter()
        .map(|(_, s)| s)
        .collect::<alloc::collections::VecDeque<Seg>>();
    while let Some(seg) = flash.front_mut() {
        let pad_len = alignment_needed(out.len(), seg.addr, page);
        if pad_len > 0 {
            let pad = match ram.front_mut() {
                Some(r) if pad_len > SEGMENT_HEADER_LEN => {
                    let take = pad_len.min(r.data.len());
                    let piece = Seg {
                        addr: r.addr,
                        data: r.data.drain(..take).collect(),
                    };
                    r.addr = r.addr.wrapping_add(take as u32);
                    if r.data.is_empty() {
                        ram.pop_front();
                    }
                    piece
                }
                _ => Seg {
                    addr: 0,
                    data: vec![0; pad_len],
                },
            };
            checksum = write_segment(&mut out, &pad, checksum)?;
        } else {
            if chip == Chip::Esp32 {
                // esptool's workaround for old ESP32 bootloaders that did not
                // map a last page holding < 0x24 bytes of a flash segment.
                let end = out.len() + seg.data.len() + SEGMENT_HEADER_LEN;
                let rem = end % page as usize;
                if rem < 0x24 {
                    let n = seg.data.len() + (0x24 - rem);
                    seg.data.resize(n, 0);
                }
            }
            checksum = write_segment(&mut out, seg, checksum)?;
            flash.pop_front();
        }
        count += 1;
    }
    for seg in &ram {
        checksum = write_segment(&mut out, seg, checksum)?;
        count += 1;
    }
    if count > MAX_SEGMENTS {
        return Err(BuildError::TooManySegments { count });
    }
    let pad = checksum_padding(out.len() as u32) as usize;
    out.resize(out.len() + pad, 0);
    out.push(checksum);

    let (size_code, freq) = (params.flash_size_freq >> 4, params.flash_size_freq & 0xF);
    let header = ImageHeader {
        segment_count: count as u8,
        spi_mode: params.flash_mode.code(),
        spi_size_speed: (size_code << 4) | freq,
        entry_addr: params.entry,
        wp_pin: WP_PIN_DISABLED,
        spi_pin_drv: [0; 3],
        chip_id: chip.image_chip_id(),
        min_chip_rev: params.min_rev,
        min_chip_rev_full: params.min_rev_full,
        max_chip_rev_full: params.max_rev_full,
        reserved: [0; 4],
        hash_appended: u8::from(params.append_digest),
    };
    if let Some(h) = out.get_mut(..HEADER_LEN) {
        h.copy_from_slice(&header.encode());
    }
    if params.append_digest {
        let d = Sha256::digest(&out);
        out.extend_from_slice(d.as_slice());
    }
    Ok(out)
}

/// Data bytes of padding needed before a segment header written at `pos` so
/// that the segment's data lands congruent to `addr` (esptool's
/// `get_alignment_data_needed`).
fn alignment_needed(pos: usize, addr: u32, page: u32) -> usize {
    let page = page as i64;
    let hdr = SEGMENT_HEADER_LEN as i64;
    let align_past = i64::from(addr) % page - hdr;
    let mut pad = (page - (pos as i64 % page)) + align_past;
    if pad == 0 || pad == page {
        return 0;
    }
    pad -= hdr;
    if pad < 0 {
        pad += page;
    }
    usize::try_from(pad).unwrap_or(0)
}

fn write_segment(out: &mut Vec<u8>, seg: &Seg, checksum: u8) -> Result<u8, BuildError> {
    let len = seg.data.len();
    if !len.is_multiple_of(4) {
        return Err(BuildError::LenUnaligned {
            addr: seg.addr,
            len,
        });
    }
    if len >= MAX_SEGMENT_LEN as usize {
        return Err(BuildError::SegmentTooLong {
            addr: seg.addr,
            len,
        });
    }
    let sh = SegmentHeader {
        load_addr: seg.addr,
        data_len: len as u32,
    };
    out.extend_from_slice(&sh.encode());
    out.extend_from_slice(&seg.data);
    Ok(checksum_update(checksum, &seg.data))
}

/// Builds a complete, valid app image for tests and `otter image build`.
///
/// The image has three segments before layout: the app descriptor plus some
/// read-only data in a DROM segment, a small IRAM segment holding the entry
/// point, and an IROM "text" segment of deterministic pseudo-random bytes
/// (seeded from project, version and `secure_version`) whose length sets the
/// total size. Nothing in it is executable code.
#[derive(Debug, Clone)]
pub struct AppImageBuilder {
    chip: Chip,
    version: String,
    project_name: String,
    secure_version: u32,
    size: Option<u32>,
    idf_ver: String,
    date: String,
    time: String,
    flash_mode: FlashMode,
    flash_size: u32,
    flash_freq: u8,
    min_rev_full: u16,
    max_rev_full: u16,
}

impl AppImageBuilder {
    /// A builder for `chip` with version "1.0.0", project "otter-test",
    /// secure_version 0, DIO 4 MB flash at the chip's default frequency.
    pub fn new(chip: Chip) -> AppImageBuilder {
        AppImageBuilder {
            chip,
            version: String::from("1.0.0"),
            project_name: String::from("otter-test"),
            secure_version: 0,
            size: None,
            idf_ver: String::from("v5.5-otter"),
            date: String::from("Jan  1 2025"),
            time: String::from("00:00:00"),
            flash_mode: FlashMode::Dio,
            flash_size: 4 * 1024 * 1024,
            flash_freq: 0,
            min_rev_full: 0,
            max_rev_full: 0xFFFF,
        }
    }

    /// App version (`esp_app_desc_t.version`, at most 31 bytes).
    pub fn version(mut self, v: &str) -> Self {
        self.version = String::from(v);
        self
    }

    /// Project name (at most 31 bytes).
    pub fn project_name(mut self, v: &str) -> Self {
        self.project_name = String::from(v);
        self
    }

    /// Anti-rollback `secure_version`.
    pub fn secure_version(mut self, v: u32) -> Self {
        self.secure_version = v;
        self
    }

    /// Exact total file size; rounded down to a multiple of 16.
    pub fn size(mut self, bytes: u32) -> Self {
        self.size = Some(bytes);
        self
    }

    /// ESP-IDF version string (at most 31 bytes).
    pub fn idf_ver(mut self, v: &str) -> Self {
        self.idf_ver = String::from(v);
        self
    }

    /// Compile date and time (`"Jan  1 2025"`, `"00:00:00"`; at most 15 bytes).
    pub fn date_time(mut self, date: &str, time: &str) -> Self {
        self.date = String::from(date);
        self.time = String::from(time);
        self
    }

    /// Flash mode, size in bytes (1 MiB..=128 MiB, a power of two) and
    /// frequency code (see [`Chip::flash_freq_code`]).
    pub fn flash(mut self, mode: FlashMode, size: u32, freq_code: u8) -> Self {
        self.flash_mode = mode;
        self.flash_size = size;
        self.flash_freq = freq_code & 0xF;
        self
    }

    /// Minimum and maximum chip revision (major * 100 + minor).
    pub fn chip_revs(mut self, min: u16, max: u16) -> Self {
        self.min_rev_full = min;
        self.max_rev_full = max;
        self
    }

    /// The 256-byte app descriptor this builder writes.
    pub fn app_desc(&self) -> Result<[u8; APP_DESC_LEN], BuildError> {
        let mut d = [0u8; APP_DESC_LEN];
        d[0..4].copy_from_slice(&APP_DESC_MAGIC.to_le_bytes());
        d[4..8].copy_from_slice(&self.secure_version.to_le_bytes());
        put(&mut d, 0x10, 32, "version", &self.version)?;
        put(&mut d, 0x30, 32, "project_name", &self.project_name)?;
        put(&mut d, 0x50, 16, "time", &self.time)?;
        put(&mut d, 0x60, 16, "date", &self.date)?;
        put(&mut d, 0x70, 32, "idf_ver", &self.idf_ver)?;
        let elf = Sha256::new()
            .chain_update(self.project_name.as_bytes())
            .chain_update([0])
            .chain_update(self.version.as_bytes())
            .finalize();
        d[0x90..0xB0].copy_from_slice(elf.as_slice());
        d[0xB0..0xB2].copy_from_slice(&0u16.to_le_bytes());
        d[0xB2..0xB4].copy_from_slice(&0xFFFFu16.to_le_bytes());
        d[0xB4] = DEFAULT_MMU_PAGE_SIZE.trailing_zeros() as u8;
        d[0xB5] = self.flash_mode.code();
        Ok(d)
    }

    /// Builds the image.
    pub fn build(&self) -> Result<Vec<u8>, BuildError> {
        let desc = self.app_desc()?;
        let mut rng = Rng::new(self.seed());
        let mut drom = desc.to_vec();
        drom.extend((0..256).map(|_| rng.byte()));
        let iram: Vec<u8> = (0..1024).map(|_| rng.byte()).collect();
        let mut text_len: usize = 4096;
        let params = self.params();
        let min = self
            .build_with(&params, &drom, &iram, &mut rng.clone(), text_len)?
            .len() as u32;
        let target = match self.size {
            None => return self.build_with(&params, &drom, &iram, &mut rng, text_len),
            Some(s) => s / 16 * 16,
        };
        let max = MAX_SEGMENT_LEN - 0x1000;
        if target < min || target - min > max - text_len as u32 {
            return Err(BuildError::BadSize {
                size: target,
                min,
                max: min + max - text_len as u32,
            });
        }
        let mut img = Vec::new();
        let mut cur = min;
        for _ in 0..4 {
            let diff = i64::from(target) - i64::from(cur);
            text_len = usize::try_from(text_len as i64 + diff / 16 * 16).unwrap_or(text_len);
            img = self.build_with(&params, &drom, &iram, &mut rng.clone(), text_len)?;
            cur = img.len() as u32;
            if cur == target {
                break;
            }
        }
        Ok(img)
    }

    fn params(&self) -> ImageParams {
        let size_code = flash_size_code(self.flash_size).unwrap_or(2);
        ImageParams {
            chip: self.chip,
            flash_mode: self.flash_mode,
            flash_size_freq: (size_code << 4) | self.flash_freq,
            entry: self.chip.facts().iram_load_addr,
            min_rev: (self.min_rev_full / 100) as u8,
            min_rev_full: self.min_rev_full,
            max_rev_full: self.max_rev_full,
            append_digest: true,
            mmu_page_size: DEFAULT_MMU_PAGE_SIZE,
            app_desc_segment: Some(0),
        }
    }

    fn build_with(
        &self,
        params: &ImageParams,
        drom: &[u8],
        iram: &[u8],
        rng: &mut Rng,
        text_len: usize,
    ) -> Result<Vec<u8>, BuildError> {
        let f = self.chip.facts();
        let shared = f.irom.contains(f.drom.start) || f.drom.contains(f.irom.start);
        let irom_addr = f.irom.start + 0x20;
        let drom_addr = if shared {
            f.irom.start + 0x80_0020
        } else {
            f.drom.start + 0x20
        };
        let text: Vec<u8> = (0..text_len).map(|_| rng.byte()).collect();
        build_image(
            params,
            &[
                (drom_addr, drom),
                (f.iram_load_addr, iram),
                (irom_addr, &text),
            ],
        )
    }

    fn seed(&self) -> u64 {
        // FNV-1a over the identity of the build.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self
            .project_name
            .bytes()
            .chain([0])
            .chain(self.version.bytes())
            .chain(self.secure_version.to_le_bytes())
            .chain([self.chip.image_chip_id() as u8])
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}

fn put(
    d: &mut [u8; APP_DESC_LEN],
    off: usize,
    len: usize,
    field: &'static str,
    s: &str,
) -> Result<(), BuildError> {
    let b = s.as_bytes();
    if b.len() >= len {
        return Err(BuildError::FieldTooLong {
            field,
            len: b.len(),
            max: len - 1,
        });
    }
    d[off..off + b.len()].copy_from_slice(b);
    Ok(())
}

/// xorshift64*: deterministic filler bytes.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn byte(&mut self) -> u8 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{verify, ImageKind, VerifyOptions};

    #[test]
    fn builder_makes_valid_apps_for_every_chip() {
        for chip in Chip::all() {
            let img = AppImageBuilder::new(chip)
                .version("2.0")
                .secure_version(3)
                .build()
                .expect("build");
            let info = verify(&img, &VerifyOptions::new().chip(chip)).expect("valid");
            assert_eq!(info.kind, ImageKind::App);
            let d = info.app_desc.expect("descriptor");
            assert_eq!(d.version().as_str(), Some("2.0"));
            assert_eq!(d.secure_version(), 3);
        }
    }

    #[test]
    fn builder_hits_exact_size() {
        for chip in [Chip::Esp32, Chip::Esp32c6, Chip::Esp32p4] {
            let img = AppImageBuilder::new(chip)
                .size(300_000)
                .build()
                .expect("build");
            assert_eq!(img.len(), 300_000 / 16 * 16, "{chip}");
            verify(&img, &VerifyOptions::new()).expect("valid");
        }
    }
}
