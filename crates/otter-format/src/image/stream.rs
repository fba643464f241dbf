//! The streaming verifier: the one implementation of image verification.
//!
//! [`StreamingVerifier`] is fed the file in chunks of any size and decides as
//! early as the bytes allow:
//!
//! | After | Known | Refused here |
//! |---|---|---|
//! | 1 byte | magic | not an ESP image |
//! | 24 bytes | header: chip, segment count, hash flag, flash fields | ESP8266, unknown or wrong chip, no SHA-256 when required, > 16 segments, invalid flash mode/size/frequency or revision range |
//! | each segment header | load address, length | bad length, load range out of its region, unmappable flash segment |
//! | last segment header | every load range | entry point in no loaded segment |
//! | 0x120 bytes (or end of segment 0) | app descriptor, `secure_version` | anti-rollback |
//! | last segment header | total image length | does not fit the slot |
//! | checksum byte, SHA-256 | integrity | corrupt image |
//! | [`StreamingVerifier::finish`] | kind, signature, file SHA-256 | truncated, not an app, wrong file |
//!
//! Every check depends only on the bytes before the point where it is made,
//! so the verdict does not depend on how the input is chunked, and
//! [`super::verify`] (which feeds the whole file at once) agrees with it.
//!
//! It needs no heap: its state has a fixed size, [`STATE_SIZE_LIMIT`] bytes at
//! most (asserted at compile time); the bulk of it is the 256-byte app
//! descriptor, 16 segment headers and two SHA-256 states.

use sha2::{Digest, Sha256};

use crate::chip::{Chip, DEFAULT_MMU_PAGE_SIZE};

use super::classify::{classify, find_signature, Probes};
use super::desc::{AppDesc, BootloaderDesc, APP_DESC_LEN, DESC_OFFSET};
use super::error::{ImageError, ImagePart};
use super::header::{
    ImageHeader, SegmentHeader, HEADER_LEN, IMAGE_MAGIC, MAX_SEGMENTS, SEGMENT_HEADER_LEN,
};
use super::segment::{
    checksum_padding, checksum_update, is_page_congruent, Segment, SegmentKind, CHECKSUM_SEED,
    MAX_SEGMENT_LEN,
};
use super::verify::{ImageInfo, ShaCheck, VerifyOptions};

/// Upper bound of `size_of::<StreamingVerifier>()`, checked at compile time.
pub const STATE_SIZE_LIMIT: usize = 1024;

const _: () = assert!(core::mem::size_of::<StreamingVerifier>() <= STATE_SIZE_LIMIT);

/// Where the verifier is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Collecting the 24-byte header.
    Header,
    /// Collecting segment header `seg_seen` (`have` bytes so far).
    SegHeader {
        have: u8,
        buf: [u8; SEGMENT_HEADER_LEN],
    },
    /// Inside the data of segment `seg_seen - 1`.
    SegData { remaining: u32 },
    /// Zero padding, then the checksum byte.
    Checksum { pad: u32 },
    /// Collecting the appended SHA-256.
    Sha { have: u8 },
    /// After the image.
    Trailer,
}

/// How far verification has got, returned by every
/// [`StreamingVerifier::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes fed so far.
    pub received: u64,
    /// The header, once 24 bytes have arrived and passed the header checks.
    pub header: Option<ImageHeader>,
    /// The chip named by the header.
    pub chip: Option<Chip>,
    /// Whether the app descriptor question is settled (present or absent).
    pub app_desc_resolved: bool,
    /// `secure_version` of the app descriptor, once read (and accepted).
    pub secure_version: Option<u32>,
    /// Total image length, once the last segment header is read.
    pub image_len: Option<u32>,
    /// Whether the whole image (up to and including the SHA-256) has arrived
    /// and passed its integrity checks.
    pub image_complete: bool,
}

/// Verifies an image fed in chunks, with fixed memory (see the module docs).
///
/// ```
/// use otter_format::image::{StreamingVerifier, VerifyOptions};
/// let mut v = StreamingVerifier::new(VerifyOptions::new());
/// assert!(v.feed(&[0x00]).is_err()); // not 0xE9: refused at once
/// assert!(v.finish().is_err());
/// ```
#[derive(Debug, Clone)]
pub struct StreamingVerifier {
    opts: VerifyOptions,
    pos: u64,
    phase: Phase,
    hdr: [u8; HEADER_LEN],
    header: Option<ImageHeader>,
    chip: Option<Chip>,
    segs: [SegmentHeader; MAX_SEGMENTS],
    seg_seen: u8,
    desc: [u8; APP_DESC_LEN],
    desc_len: u16,
    desc_resolved: bool,
    page_size: u32,
    page_fixed: bool,
    checksum: u8,
    checksum_stored: u8,
    checksum_offset: u32,
    image_len: Option<u32>,
    hasher: Sha256,
    sha_computed: [u8; 32],
    sha_stored: [u8; 32],
    file_hasher: Option<Sha256>,
    probes: Probes,
    trailing_erased: bool,
    error: Option<ImageError>,
}

impl StreamingVerifier {
    /// A verifier that applies `opts`.
    pub fn new(opts: VerifyOptions) -> StreamingVerifier {
        StreamingVerifier {
            opts,
            pos: 0,
            phase: Phase::Header,
            hdr: [0; HEADER_LEN],
            header: None,
            chip: None,
            segs: [SegmentHeader::default(); MAX_SEGMENTS],
            seg_seen: 0,
            desc: [0; APP_DESC_LEN],
            desc_len: 0,
            desc_resolved: false,
            page_size: DEFAULT_MMU_PAGE_SIZE,
            page_fixed: false,
            checksum: CHECKSUM_SEED,
            checksum_stored: 0,
            checksum_offset: 0,
            image_len: None,
            hasher: Sha256::new(),
            sha_computed: [0; 32],
            sha_stored: [0; 32],
            file_hasher: opts.expected_sha256.map(|_| Sha256::new()),
            probes: Probes::default(),
            trailing_erased: true,
            error: None,
        }
    }

    /// Feeds the next chunk. After an error every further call returns the
    /// same error, and so does [`finish`](Self::finish).
    pub fn feed(&mut self, data: &[u8]) -> Result<Progress, ImageError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if let Some(h) = &mut self.file_hasher {
            h.update(data);
        }
        let mut rest = data;
        while !rest.is_empty() {
            match self.step(rest) {
                Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                Err(e) => {
                    self.error = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(self.progress())
    }

    /// How far verification has got.
    pub fn progress(&self) -> Progress {
        Progress {
            received: self.pos,
            header: self.header,
            chip: self.chip,
            app_desc_resolved: self.desc_resolved,
            secure_version: self.app_desc().map(|d| d.secure_version()),
            image_len: self.image_len,
            image_complete: self.phase == Phase::Trailer,
        }
    }

    /// The app descriptor, once read.
    pub fn app_desc(&self) -> Option<AppDesc> {
        if self.desc_resolved && usize::from(self.desc_len) == APP_DESC_LEN {
            AppDesc::parse(&self.desc)
        } else {
            None
        }
    }

    /// Ends the input and returns the verdict: the same as [`super::verify`]
    /// on the concatenated chunks.
    pub fn finish(self) -> Result<ImageInfo, ImageError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let (part, needed) = match self.phase {
            Phase::Header => (ImagePart::Header, HEADER_LEN as u64),
            Phase::SegHeader { have, .. } => (
                ImagePart::SegmentHeader,
                self.pos + (SEGMENT_HEADER_LEN as u64 - u64::from(have)),
            ),
            Phase::SegData { remaining } => {
                (ImagePart::SegmentData, self.pos + u64::from(remaining))
            }
            Phase::Checksum { pad } => (ImagePart::Checksum, self.pos + u64::from(pad) + 1),
            Phase::Sha { have } => (ImagePart::Sha256, self.pos + 32 - u64::from(have)),
            Phase::Trailer => (ImagePart::Sha256, 0),
        };
        let (Phase::Trailer, Some(header), Some(chip), Some(image_len)) =
            (self.phase, self.header, self.chip, self.image_len)
        else {
            return Err(ImageError::Truncated {
                received: self.pos,
                part,
                needed,
            });
        };

        let mut segments = [Segment {
            load_addr: 0,
            len: 0,
            data_offset: 0,
            kind: SegmentKind::Padding,
        }; MAX_SEGMENTS];
        let mut off = HEADER_LEN as u32;
        for (out, sh) in segments
            .iter_mut()
            .zip(self.segs.iter())
            .take(usize::from(self.seg_seen))
        {
            let data_offset = off.saturating_add(SEGMENT_HEADER_LEN as u32);
            *out = Segment {
                load_addr: sh.load_addr,
                len: sh.data_len,
                data_offset,
                kind: SegmentKind::classify(chip, sh.load_addr),
            };
            off = data_offset.saturating_add(sh.data_len);
        }
        let seg0_len = self.segs.first().map_or(0, |s| s.data_len);
        let app_desc = self.app_desc();
        let bootloader_desc =
            if self.seg_seen > 0 && seg0_len as usize >= super::desc::BOOTLOADER_DESC_LEN {
                BootloaderDesc::parse(&self.desc)
            } else {
                None
            };
        let has_flash = segments
            .iter()
            .take(usize::from(self.seg_seen))
            .any(|s| s.kind == SegmentKind::Flash);
        let kind = classify(
            has_flash,
            bootloader_desc.is_some(),
            app_desc.is_some(),
            image_len,
            &self.probes,
        );
        let signature = find_signature(chip, image_len, self.pos, &self.probes);
        let sha256 = header.has_hash().then_some(ShaCheck {
            offset: self.checksum_offset.saturating_add(1),
            stored: self.sha_stored,
            computed: self.sha_computed,
        });

        if self.opts.require_app {
            if let Some(e) = kind.not_an_app_error() {
                return Err(e);
            }
        }
        if let (Some(expected), Some(h)) = (self.opts.expected_sha256, self.file_hasher) {
            let computed = digest(h);
            if computed != expected {
                return Err(ImageError::FileShaMismatch { expected, computed });
            }
        }
        Ok(ImageInfo {
            header,
            chip,
            segments,
            segment_count: self.seg_seen,
            checksum_offset: self.checksum_offset,
            checksum_stored: self.checksum_stored,
            checksum_computed: self.checksum,
            sha256,
            image_len,
            file_len: self.pos,
            mmu_page_size: self.page_size,
            app_desc,
            bootloader_desc: if app_desc.is_some() {
                None
            } else {
                bootloader_desc
            },
            signature,
            kind,
            trailing_erased: self.trailing_erased,
        })
    }

    /// Consumes at least one byte of `data` (non-empty), returning how many.
    fn step(&mut self, data: &[u8]) -> Result<usize, ImageError> {
        let mut data = data;
        if let Some(slot) = self.opts.slot_size {
            let room = u64::from(slot).saturating_sub(self.pos);
            if room == 0 {
                return Err(ImageError::FileTooLarge { slot_size: slot });
            }
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            data = data.get(..room.min(data.len())).unwrap_or(data);
        }
        match self.phase {
            Phase::Header => self.step_header(data),
            Phase::SegHeader { have, buf } => self.step_seg_header(data, have, buf),
            Phase::SegData { remaining } => self.step_seg_data(data, remaining),
            Phase::Checksum { pad } => self.step_checksum(data, pad),
            Phase::Sha { have } => self.step_sha(data, have),
            Phase::Trailer => {
                let image_len = self.image_len.unwrap_or(0);
                self.probes.capture(image_len, self.pos, data);
                if self.trailing_erased && !data.iter().all(|b| *b == 0xFF) {
                    self.trailing_erased = false;
                }
                self.advance(data.len());
                Ok(data.len())
            }
        }
    }

    fn advance(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n as u64);
    }

    /// The current file offset inside the image (bounded well below 4 GiB by
    /// the segment limits).
    fn off(&self) -> u32 {
        u32::try_from(self.pos).unwrap_or(u32::MAX)
    }

    fn step_header(&mut self, data: &[u8]) -> Result<usize, ImageError> {
        let start = usize::try_from(self.pos)
            .unwrap_or(HEADER_LEN)
            .min(HEADER_LEN);
        if start == 0 {
            if let Some(&b) = data.first() {
                if b != IMAGE_MAGIC {
                    return Err(ImageError::BadMagic { got: b });
                }
            }
        }
        let n = (HEADER_LEN - start).min(data.len());
        let src = data.get(..n).unwrap_or_default();
        if let Some(dst) = self.hdr.get_mut(start..start + n) {
            dst.copy_from_slice(src);
        }
        self.hash(src);
        self.advance(n);
        if start + n == HEADER_LEN {
            self.parse_header()?;
        }
        Ok(n)
    }

    fn parse_header(&mut self) -> Result<(), ImageError> {
        let h = ImageHeader::decode(&self.hdr);
        if h.hash_appended > 1 {
            return Err(ImageError::Esp8266 {
                hash_appended: h.hash_appended,
                chip_id: h.chip_id,
            });
        }
        let Some(chip) = Chip::from_image_id(h.chip_id) else {
            if h.reserved != [0; 4] {
                return Err(ImageError::Esp8266 {
                    hash_appended: h.hash_appended,
                    chip_id: h.chip_id,
                });
            }
            return Err(ImageError::UnknownChip { id: h.chip_id });
        };
        if let Some(expected) = self.opts.chip {
            if expected != chip {
                return Err(ImageError::WrongChip {
                    expected,
                    got: chip,
                });
            }
        }
        if self.opts.require_sha256 && !h.has_hash() {
            return Err(ImageError::Sha256Required);
        }
        if usize::from(h.segment_count) > MAX_SEGMENTS {
            return Err(ImageError::TooManySegments {
                count: h.segment_count,
            });
        }
        if self.opts.check_integrity {
            check_header_fields(&h, chip)?;
        }
        self.header = Some(h);
        self.chip = Some(chip);
        if h.segment_count == 0 {
            self.check_entry()?;
            self.resolve_desc()?;
            self.end_of_segments()?;
        } else {
            self.phase = Phase::SegHeader {
                have: 0,
                buf: [0; SEGMENT_HEADER_LEN],
            };
        }
        Ok(())
    }

    fn step_seg_header(
        &mut self,
        data: &[u8],
        have: u8,
        mut buf: [u8; SEGMENT_HEADER_LEN],
    ) -> Result<usize, ImageError> {
        let start = usize::from(have).min(SEGMENT_HEADER_LEN);
        let n = (SEGMENT_HEADER_LEN - start).min(data.len());
        let src = data.get(..n).unwrap_or_default();
        if let Some(dst) = buf.get_mut(start..start + n) {
            dst.copy_from_slice(src);
        }
        self.hash(src);
        self.advance(n);
        if start + n < SEGMENT_HEADER_LEN {
            self.phase = Phase::SegHeader {
                have: (start + n) as u8,
                buf,
            };
            return Ok(n);
        }
        let sh = SegmentHeader::decode(&buf);
        let index = self.seg_seen;
        let data_offset = self.off();
        let offset = data_offset.saturating_sub(SEGMENT_HEADER_LEN as u32);
        if sh.data_len >= MAX_SEGMENT_LEN {
            return Err(ImageError::SegmentTooLong {
                index,
                offset,
                len: sh.data_len,
            });
        }
        if self.opts.check_integrity && !sh.data_len.is_multiple_of(4) {
            return Err(ImageError::SegmentLenUnaligned {
                index,
                offset,
                len: sh.data_len,
            });
        }
        if self.opts.check_integrity {
            self.check_load_range(index, sh)?;
        }
        if let Some(slot) = self.segs.get_mut(usize::from(index)) {
            *slot = sh;
        }
        self.seg_seen = index.saturating_add(1);
        if index > 0 {
            self.check_mapping(index, data_offset, sh.load_addr)?;
        }
        let last = self.header.map_or(0, |h| h.segment_count);
        if self.seg_seen == last {
            self.check_entry()?;
            self.set_image_len(data_offset.saturating_add(sh.data_len))?;
        }
        self.phase = Phase::SegData {
            remaining: sh.data_len,
        };
        if sh.data_len == 0 {
            self.end_of_segment()?;
        }
        Ok(n)
    }

    /// Refuses a segment whose load range wraps past the end of the address
    /// space, or runs out of the flash-mapped range (IROM or DROM) it starts
    /// in. Padding segments (below 0x10000) are not loaded and not checked.
    fn check_load_range(&self, index: u8, sh: SegmentHeader) -> Result<(), ImageError> {
        let Some(chip) = self.chip else { return Ok(()) };
        if SegmentKind::classify(chip, sh.load_addr) == SegmentKind::Padding {
            return Ok(());
        }
        let end = u64::from(sh.load_addr) + u64::from(sh.data_len);
        let facts = chip.facts();
        let limit = [facts.irom, facts.drom]
            .iter()
            .find(|r| r.contains(sh.load_addr))
            .map_or(1u64 << 32, |r| u64::from(r.end));
        if end > limit {
            return Err(ImageError::SegmentOutOfRange {
                index,
                chip,
                load_addr: sh.load_addr,
                len: sh.data_len,
            });
        }
        Ok(())
    }

    /// Once every segment header is known: the entry point must lie inside a
    /// loaded (non-padding) segment.
    fn check_entry(&self) -> Result<(), ImageError> {
        let (Some(h), Some(chip)) = (self.header, self.chip) else {
            return Ok(());
        };
        if !self.opts.check_integrity {
            return Ok(());
        }
        let entry = h.entry_addr;
        let inside = self
            .segs
            .iter()
            .take(usize::from(self.seg_seen))
            .filter(|s| SegmentKind::classify(chip, s.load_addr) != SegmentKind::Padding)
            .any(|s| {
                entry >= s.load_addr
                    && u64::from(entry) < u64::from(s.load_addr) + u64::from(s.data_len)
            });
        if inside {
            Ok(())
        } else {
            Err(ImageError::EntryOutsideSegments { entry })
        }
    }

    /// Checks that a flash-mapped segment can be mapped. When the app
    /// descriptor fixes the MMU page size, that size is used. Otherwise (older
    /// images, or no descriptor) the page is the largest the chip supports for
    /// which every flash segment so far is congruent: congruence modulo a
    /// larger power of two implies it modulo every smaller one, so shrinking
    /// never invalidates an earlier segment.
    fn check_mapping(
        &mut self,
        index: u8,
        data_offset: u32,
        load_addr: u32,
    ) -> Result<(), ImageError> {
        let Some(chip) = self.chip else { return Ok(()) };
        if !chip.is_flash_mapped(load_addr) {
            return Ok(());
        }
        if !self.page_fixed {
            for &p in chip.facts().mmu_page_sizes.iter().rev() {
                if p <= self.page_size && is_page_congruent(data_offset, load_addr, p) {
                    self.page_size = p;
                    return Ok(());
                }
            }
        } else if is_page_congruent(data_offset, load_addr, self.page_size) {
            return Ok(());
        }
        if !self.opts.check_integrity {
            return Ok(());
        }
        Err(ImageError::SegmentMisaligned {
            index,
            offset: data_offset,
            load_addr,
            page_size: self.page_size,
        })
    }

    fn step_seg_data(&mut self, data: &[u8], remaining: u32) -> Result<usize, ImageError> {
        let n = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(data.len());
        let src = data.get(..n).unwrap_or_default();
        self.checksum = checksum_update(self.checksum, src);
        self.hash(src);
        if self.seg_seen == 1 && !self.desc_resolved {
            let have = usize::from(self.desc_len);
            let take = (APP_DESC_LEN - have.min(APP_DESC_LEN)).min(n);
            if let (Some(dst), Some(s)) = (self.desc.get_mut(have..have + take), src.get(..take)) {
                dst.copy_from_slice(s);
            }
            self.desc_len = (have + take) as u16;
        }
        self.advance(n);
        let remaining = remaining.saturating_sub(n as u32);
        self.phase = Phase::SegData { remaining };
        if self.seg_seen == 1 && !self.desc_resolved && usize::from(self.desc_len) == APP_DESC_LEN {
            self.resolve_desc()?;
        }
        if remaining == 0 {
            self.end_of_segment()?;
        }
        Ok(n)
    }

    /// Segment `seg_seen - 1` is complete.
    fn end_of_segment(&mut self) -> Result<(), ImageError> {
        if self.seg_seen == 1 && !self.desc_resolved {
            self.resolve_desc()?;
        }
        let count = self.header.map_or(0, |h| h.segment_count);
        if self.seg_seen < count {
            self.phase = Phase::SegHeader {
                have: 0,
                buf: [0; SEGMENT_HEADER_LEN],
            };
            Ok(())
        } else {
            self.end_of_segments()
        }
    }

    /// Records the image length for segment data ending at `end`: padding,
    /// checksum byte and, when appended, the SHA-256; refuses an image that
    /// cannot fit the slot.
    fn set_image_len(&mut self, end: u32) -> Result<(), ImageError> {
        let hash_len = if self.header.is_some_and(|h| h.has_hash()) {
            32
        } else {
            0
        };
        let image_len = end
            .saturating_add(checksum_padding(end))
            .saturating_add(1)
            .saturating_add(hash_len);
        self.image_len = Some(image_len);
        match self.opts.slot_size {
            Some(slot_size) if image_len > slot_size => Err(ImageError::ImageTooLarge {
                image_len,
                slot_size,
            }),
            _ => Ok(()),
        }
    }

    fn end_of_segments(&mut self) -> Result<(), ImageError> {
        let end = self.off();
        let pad = checksum_padding(end);
        if self.image_len.is_none() {
            // No segments: the image is header + checksum block (+ SHA).
            self.set_image_len(end)?;
        }
        self.phase = Phase::Checksum { pad };
        Ok(())
    }

    /// The app descriptor is settled: pick the MMU page, check segment 0's
    /// mapping and anti-rollback.
    fn resolve_desc(&mut self) -> Result<(), ImageError> {
        self.desc_resolved = true;
        let desc = self.app_desc();
        if let Some(d) = desc {
            let log2 = d.mmu_page_size_log2();
            if log2 != 0 {
                match d.mmu_page_size() {
                    Some(p) => {
                        self.page_size = p;
                        self.page_fixed = true;
                    }
                    None if self.opts.check_integrity => {
                        return Err(ImageError::InvalidMmuPageSize { log2 })
                    }
                    None => {}
                }
            }
        }
        if let Some(s0) = self.segs.first().copied() {
            if self.seg_seen > 0 {
                self.check_mapping(0, DESC_OFFSET as u32, s0.load_addr)?;
            }
        }
        if let Some(min) = self.opts.min_secure_version {
            match desc {
                Some(d) if d.secure_version() < min => {
                    return Err(ImageError::SecureVersionTooLow {
                        got: d.secure_version(),
                        min,
                    })
                }
                Some(_) => {}
                None if self.looks_like_bootloader() => return Err(ImageError::IsBootloader),
                None => return Err(ImageError::MissingAppDesc),
            }
        }
        Ok(())
    }

    /// No app descriptor, but the bootloader descriptor's magic where the app
    /// descriptor would be, in a RAM-loaded first segment: a bootloader was
    /// sent where an app belongs. Saying so beats "no app descriptor".
    fn looks_like_bootloader(&self) -> bool {
        let ram_first = match (self.chip, self.segs.first()) {
            (Some(chip), Some(s0)) => !chip.is_flash_mapped(s0.load_addr),
            _ => false,
        };
        ram_first
            && self.desc_len > 0
            && self.desc.first() == Some(&super::desc::BOOTLOADER_DESC_MAGIC)
    }

    fn step_checksum(&mut self, data: &[u8], pad: u32) -> Result<usize, ImageError> {
        if pad > 0 {
            let n = usize::try_from(pad).unwrap_or(usize::MAX).min(data.len());
            let src = data.get(..n).unwrap_or_default();
            self.hash(src);
            self.advance(n);
            self.phase = Phase::Checksum {
                pad: pad.saturating_sub(n as u32),
            };
            return Ok(n);
        }
        let Some(&stored) = data.first() else {
            return Ok(0);
        };
        self.hash(&[stored]);
        self.checksum_offset = self.off();
        self.checksum_stored = stored;
        self.advance(1);
        if self.opts.check_integrity && stored != self.checksum {
            return Err(ImageError::ChecksumMismatch {
                offset: self.checksum_offset,
                stored,
                computed: self.checksum,
            });
        }
        if self.header.is_some_and(|h| h.has_hash()) {
            if self.opts.hash_image {
                self.sha_computed = digest(self.hasher.clone());
            }
            self.phase = Phase::Sha { have: 0 };
        } else {
            self.phase = Phase::Trailer;
        }
        Ok(1)
    }

    fn step_sha(&mut self, data: &[u8], have: u8) -> Result<usize, ImageError> {
        let start = usize::from(have).min(32);
        let n = (32 - start).min(data.len());
        if let (Some(dst), Some(src)) = (self.sha_stored.get_mut(start..start + n), data.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.advance(n);
        if start + n < 32 {
            self.phase = Phase::Sha {
                have: (start + n) as u8,
            };
            return Ok(n);
        }
        self.phase = Phase::Trailer;
        if self.opts.check_integrity && self.opts.hash_image && self.sha_stored != self.sha_computed
        {
            return Err(ImageError::ShaMismatch {
                offset: self.checksum_offset.saturating_add(1),
                stored: self.sha_stored,
                computed: self.sha_computed,
            });
        }
        Ok(n)
    }
}

impl StreamingVerifier {
    /// Feeds image bytes to the SHA-256, unless hashing is off.
    fn hash(&mut self, data: &[u8]) {
        if self.opts.hash_image {
            self.hasher.update(data);
        }
    }
}

/// Every header field the chip gives a meaning to must have a valid value:
/// the checksum does not cover the header, so without an appended SHA-256
/// these checks are all that stands between a flipped bit and a boot loop.
fn check_header_fields(h: &ImageHeader, chip: Chip) -> Result<(), ImageError> {
    if h.flash_mode().is_none() {
        return Err(ImageError::InvalidFlashMode { code: h.spi_mode });
    }
    if h.flash_size().is_none() {
        return Err(ImageError::InvalidFlashSize {
            code: h.flash_size_code(),
        });
    }
    if chip.flash_freq_name(h.flash_freq_code()).is_none() {
        return Err(ImageError::InvalidFlashFreq {
            chip,
            code: h.flash_freq_code(),
        });
    }
    if let Some(max) = h.max_chip_rev() {
        if h.min_chip_rev_full > max {
            return Err(ImageError::ChipRevRange {
                min: h.min_chip_rev_full,
                max,
            });
        }
    }
    Ok(())
}

fn digest(h: Sha256) -> [u8; 32] {
    let out = h.finalize();
    let mut d = [0u8; 32];
    d.copy_from_slice(out.as_slice());
    d
}
