//! The streaming update session: begin, write, finish, activate, abort.
//!
//! ```text
//! UpdateSession::begin ──write*──▶ finish ──▶ VerifiedUpdate::activate
//!         │                          │
//!         └──── abort / drop ◀───────┘   (boot selection untouched)
//! ```
//!
//! Transitions consume the session, so a finished or failed session cannot be
//! written to again. Until [`VerifiedUpdate::activate`], nothing outside the
//! target slot is changed (with rollback enabled, ESP-IDF's invalidation of a
//! stale inactive otadata entry is the one exception, made when the slot is
//! first erased), so an aborted, failed or interrupted update leaves the
//! running image and the boot selection as they were.
//!
//! # Early refusal
//! Nothing is erased until the first 0x120 bytes (image header and app
//! descriptor) have been checked: magic, chip, that it is an app, the
//! `secure_version` against the anti-rollback counter, and the announced size
//! against the slot.
//!
//! # Erasing
//! The slot is erased just ahead of the write cursor: a 64 KiB block erase
//! where the cursor is block-aligned and the whole block is needed, 4 KiB
//! sectors elsewhere. With the size known up front, at most the image size
//! rounded up to 4 KiB is erased; without it, at most one 64 KiB block more.
//!
//! # Pre-erased slots
//! With [`UpdateRequest::pre_erased`] the caller has already erased the
//! image's range `[0, roundup(size, 4 KiB))` of the target slot (with
//! [`erase_update_slot`], which also makes ESP-IDF's stale-otadata
//! invalidation first), and the session writes without erasing. This is what
//! makes a download resumable: see below.
//!
//! # Resuming after a power cut
//! A pull client that wants to survive a power cut mid-download keeps one
//! record outside the slot: which release the slot is receiving (a tag, for
//! example the first four bytes of the release's SHA-256, in NVS). The slot
//! itself then says how far the download got, because every byte of the
//! range was erased before the tag was set and is only ever programmed in
//! order:
//!
//! | step | fresh start | resume (the tag names this release) |
//! |---|---|---|
//! | 1 | clear the tag | `at = `[`resume_point`]`(flash, region, size)` |
//! | 2 | [`erase_update_slot`] | [`UpdateSession::resume`]`(.., at)`: re-reads `[0, at)` from flash through the verifier and SHA-256, erases `[at, roundup(size))` (sector `at` first) |
//! | 3 | set the tag | download from offset `at` |
//! | 4 | [`UpdateSession::begin`] with `pre_erased` | |
//! | 5 | download from 0 | |
//! | end | `write`* → `finish` → `activate`, then clear the tag | same |
//!
//! [`resume_point`] is the start of the first all-0xFF sector of the range,
//! minus one sector: the sector before the first erased one may have been
//! cut mid-program. Everything before it was programmed in full, before any
//! byte after it (a program into sector k + 1 only starts once sector k is
//! done; a cut while resume erases leaves scrambled bytes only in the sector
//! being erased, and sector `at` is erased first, so the sectors between
//! `at` and it are erased). A resume therefore rewrites at most one sector
//! that was already complete, plus what the cut itself destroyed.
//!
//! Nothing here trusts the prefix: [`finish`](UpdateSession::finish) checks
//! the SHA-256 of every byte, prefix included, against the image's appended
//! digest and the expected SHA-256. A prefix that is not this release's (an
//! image that really has an all-0xFF sector, a tag that lied, a slot
//! changed behind the tag's back) fails there, and the caller starts over
//! with a fresh start; a wrong image is never activated. A changed release
//! (the tag does not match) is always a fresh start.
//!
//! # Memory
//! The session is a fixed-size value ([`SESSION_STATE_SIZE`] bytes at most,
//! asserted at compile time): the streaming verifier, a SHA-256 state and a
//! 512-byte staging buffer. It never holds the image. [`UpdateSession::resume`]
//! adds a 256-byte read buffer on the stack while it re-reads the prefix.

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use otter_format::image::{ImageInfo, StreamingVerifier, VerifyOptions};
use otter_format::otadata::{plan_set_boot, OtaState};
use otter_format::secure_boot::{
    signed_len, Scheme, SignatureBlock, SignatureError, StreamVerifier, Verified, BLOCK_LEN,
    BLOCK_MAGIC, MAX_BLOCKS, SECTOR_LEN,
};
use otter_format::SECTOR_SIZE;
use sha2::{Digest, Sha256};

use crate::error::OtaError;
use crate::io::{read_otadata, verify_slot, write_otadata_entry, VERIFY_CHUNK};
use crate::slots::{Region, SlotId, SlotMap};
use crate::{DeviceConfig, SignaturePolicy};

/// Bytes held back before the first erase: header (24) + segment header (8)
/// + app descriptor (256).
const HEAD_LEN: usize = 0x120;
/// Staging buffer: two 256-byte flash pages, so programs are page-aligned.
const STAGE_LEN: usize = 512;
/// 64 KiB block.
const BLOCK_SIZE: u32 = 0x1_0000;

/// Upper bound of `size_of::<UpdateSession>()`, checked at compile time.
pub const SESSION_STATE_SIZE: usize = 2560;
const _: () = assert!(core::mem::size_of::<UpdateSession>() <= SESSION_STATE_SIZE);

/// Bytes read from flash per step while [`UpdateSession::resume`] re-reads
/// the prefix. At least the image header, so the header is decided on the
/// first read.
const RESUME_CHUNK: usize = VERIFY_CHUNK;
const _: () = assert!(RESUME_CHUNK >= 24 && RESUME_CHUNK <= STAGE_LEN);

/// What the caller knows about the update before it starts.
///
/// Build it with [`UpdateRequest::new`] (or `..UpdateRequest::default()`) so
/// that fields added later keep callers compiling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateRequest {
    /// Total bytes that will be written (a Content-Length or a manifest's
    /// size), if known. Used to refuse early and to erase no more than needed.
    pub size: Option<u32>,
    /// The SHA-256 the whole upload must have.
    pub expected_sha256: Option<[u8; 32]>,
    /// The range `[0, roundup(size, 4 KiB))` of the target slot is already
    /// erased (by [`erase_update_slot`]): the session programs without
    /// erasing. Needs `size`. See the module docs, "Resuming after a power
    /// cut". [`UpdateSession::resume`] ignores it (it always erases what it
    /// rewrites).
    pub pre_erased: bool,
}

impl UpdateRequest {
    /// A request for an upload of `size` bytes (if known) that must hash to
    /// `expected_sha256` (if given), into a slot the session erases itself.
    pub const fn new(size: Option<u32>, expected_sha256: Option<[u8; 32]>) -> Self {
        Self {
            size,
            expected_sha256,
            pre_erased: false,
        }
    }

    /// The same request for a slot whose range is already erased.
    pub const fn with_pre_erased(mut self, on: bool) -> Self {
        self.pre_erased = on;
        self
    }
}

/// Where a resumed download continues: the slot-relative start of the first
/// all-0xFF sector within the image's range `[0, roundup(size, 4 KiB))` of
/// `region` (the range's end if there is none), minus one sector (the sector
/// before it may have been cut mid-program), saturating at 0. Always a
/// multiple of 4 KiB and below `size`.
///
/// Only meaningful for a slot filled the resumable way (module docs); for
/// any other slot the resumed update fails its final SHA-256 check.
pub fn resume_point<F: ReadNorFlash>(
    flash: &mut F,
    region: &Region,
    size: u32,
) -> Result<u32, OtaError<F::Error>> {
    let end = erase_end(region, size)?;
    let mut buf = [0u8; VERIFY_CHUNK];
    let mut sector = 0u32;
    'sectors: while sector < end {
        let mut at = 0u32;
        while at < SECTOR_SIZE {
            let n = (SECTOR_SIZE - at).min(VERIFY_CHUNK as u32) as usize;
            let chunk = buf.get_mut(..n).unwrap_or_default();
            flash
                .read(region.offset + sector + at, chunk)
                .map_err(OtaError::Flash)?;
            if chunk.iter().any(|&b| b != 0xFF) {
                sector += SECTOR_SIZE;
                continue 'sectors;
            }
            at += n as u32;
        }
        break;
    }
    Ok(sector.min(end).saturating_sub(SECTOR_SIZE))
}

/// The fresh start of a resumable download (module docs): with rollback,
/// ESP-IDF's invalidation of a stale otadata entry that points at the target
/// slot, then an erase of `[0, roundup(size, 4 KiB))` of the slot
/// [`UpdateSession::begin`] would pick after `running` (64 KiB blocks where
/// aligned, 4 KiB sectors elsewhere). Follow it with `begin` and
/// [`UpdateRequest::pre_erased`]. Returns the target slot.
pub fn erase_update_slot<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    running: SlotId,
    size: u32,
) -> Result<SlotId, OtaError<F::Error>> {
    let s = UpdateSession::open(flash, cfg, running, UpdateRequest::new(Some(size), None))?;
    let end = erase_end(&s.region, size)?;
    invalidate_stale_otadata(flash, cfg, &s.map, s.target)?;
    erase_range(flash, &s.region, 0, end)?;
    Ok(s.target)
}

/// `roundup(size, 4 KiB)`, checked against the slot.
fn erase_end<E>(region: &Region, size: u32) -> Result<u32, OtaError<E>> {
    if size == 0 {
        return Err(OtaError::Misuse("a resumable update needs a non-zero size"));
    }
    let end = u64::from(size).div_ceil(u64::from(SECTOR_SIZE)) * u64::from(SECTOR_SIZE);
    if end > u64::from(region.size) {
        return Err(OtaError::Misuse(
            "the image's range is larger than the slot",
        ));
    }
    Ok(end as u32)
}

/// Erases `[from, to)` of `region` (slot-relative, sector-aligned), with a
/// 64 KiB block erase where one is aligned and fits, 4 KiB sectors elsewhere.
fn erase_range<F: NorFlash>(
    flash: &mut F,
    region: &Region,
    from: u32,
    to: u32,
) -> Result<(), OtaError<F::Error>> {
    let mut at = from;
    while at < to {
        let step = if at.is_multiple_of(BLOCK_SIZE) && at + BLOCK_SIZE <= to {
            BLOCK_SIZE
        } else {
            SECTOR_SIZE
        };
        let abs = region.offset + at;
        flash.erase(abs, abs + step).map_err(OtaError::Flash)?;
        at += step;
    }
    Ok(())
}

/// An update being streamed into the inactive slot.
#[derive(Debug, Clone)]
pub struct UpdateSession {
    cfg: DeviceConfig,
    map: SlotMap,
    target: SlotId,
    region: Region,
    size: Option<u32>,
    verifier: StreamingVerifier,
    /// SHA-256 of the image bytes streamed so far (up to the image length),
    /// kept only for an image without an appended SHA-256: `finish` then
    /// reads the slot back and compares. With one, the digest both verifiers
    /// compute already proves the flash holds the streamed bytes, and this
    /// second hash of every byte is skipped. `None` also until the header
    /// says which.
    image_hash: Option<Sha256>,
    /// Whether the header has been seen and `image_hash` decided.
    hash_decided: bool,
    /// Bytes accepted from the caller.
    received: u32,
    /// Bytes programmed into the slot (always a multiple of the stage size,
    /// except after the final flush).
    programmed: u32,
    /// Slot-relative end of the erased area.
    erased_to: u32,
    /// Image length once the verifier knows it.
    image_len: Option<u32>,
    stage: [u8; STAGE_LEN],
    stage_len: usize,
    /// Whether the head has been checked, so erasing may start.
    head_ok: bool,
    invalidated_stale: bool,
}

impl UpdateSession {
    /// `esp_ota_begin`: picks the next update slot after `running` and checks
    /// that an update may start. Writes nothing to flash.
    ///
    /// With [`UpdateRequest::pre_erased`] (which needs `size`), the image's
    /// range must already be erased ([`erase_update_slot`]) and the session
    /// never erases.
    pub fn begin<F: NorFlash>(
        flash: &mut F,
        cfg: &DeviceConfig,
        running: SlotId,
        req: UpdateRequest,
    ) -> Result<Self, OtaError<F::Error>> {
        let mut s = Self::open(flash, cfg, running, req)?;
        if req.pre_erased {
            let size = req
                .size
                .ok_or(OtaError::Misuse("a pre-erased update needs the image size"))?;
            s.erased_to = erase_end(&s.region, size)?;
        }
        Ok(s)
    }

    /// Resumes an interrupted download of the same image at `at` (from
    /// [`resume_point`]): re-reads the slot's `[0, at)` through the image
    /// verifier (and the SHA-256 of `expected_sha256`), then erases
    /// `[at, roundup(size, 4 KiB))`, sector `at` first, and returns a session
    /// whose next [`write`](Self::write) is the image's byte `at`
    /// ([`received`](Self::received) is `at`).
    ///
    /// `req` must be the one the download began with (`size` is required;
    /// `pre_erased` is ignored). A prefix that is not the start of an
    /// acceptable image fails here with [`OtaError::Image`] before anything
    /// is erased; one that is but is not this image's fails at
    /// [`finish`](Self::finish). Either way, start over. See the module docs.
    pub fn resume<F: NorFlash>(
        flash: &mut F,
        cfg: &DeviceConfig,
        running: SlotId,
        req: UpdateRequest,
        at: u32,
    ) -> Result<Self, OtaError<F::Error>> {
        let mut s = Self::open(flash, cfg, running, req)?;
        let size = req
            .size
            .ok_or(OtaError::Misuse("resuming an update needs the image size"))?;
        let end = erase_end(&s.region, size)?;
        if !at.is_multiple_of(SECTOR_SIZE) || at >= size {
            return Err(OtaError::Misuse(
                "the resume offset must be sector-aligned and inside the image",
            ));
        }
        let mut buf = [0u8; RESUME_CHUNK];
        while s.received < at {
            let n = (at - s.received).min(RESUME_CHUNK as u32) as usize;
            let chunk = buf.get_mut(..n).unwrap_or_default();
            flash
                .read(s.region.offset + s.received, chunk)
                .map_err(OtaError::Flash)?;
            s.accept(chunk)?;
        }
        // The prefix is in flash already: it is "programmed", not staged.
        s.programmed = at;
        invalidate_stale_otadata(flash, cfg, &s.map, s.target)?;
        s.invalidated_stale = true;
        // The sector that may be torn first: a cut in the erases after it
        // then leaves it erased, so the next resume point is at most one
        // sector earlier (module docs).
        erase_range(flash, &s.region, at, at + SECTOR_SIZE)?;
        erase_range(flash, &s.region, at + SECTOR_SIZE, end)?;
        s.erased_to = end;
        Ok(s)
    }

    /// Checks that an update may start and builds the session; touches no
    /// flash but reads.
    fn open<F: NorFlash>(
        flash: &mut F,
        cfg: &DeviceConfig,
        running: SlotId,
        req: UpdateRequest,
    ) -> Result<Self, OtaError<F::Error>> {
        let map = SlotMap::read(flash, cfg.table_offset)?;
        if map.ota_count() == 0 {
            return Err(OtaError::NoOtaSlots);
        }
        let Some(od) = map.otadata().copied() else {
            return Err(OtaError::NoOtadata);
        };
        let target = map
            .next_update_slot(Some(running))
            .ok_or(OtaError::NoOtaSlots)?;
        if target == running {
            return Err(OtaError::RunningSlot(running));
        }
        let region = *map.region(target).ok_or(OtaError::NoSuchSlot(target))?;
        if cfg.rollback {
            let otadata = read_otadata(flash, &od)?;
            if crate::lifecycle::state_of(&otadata, &map, running) == Some(OtaState::PendingVerify)
            {
                return Err(OtaError::RunningImagePending);
            }
        }
        if let Some(size) = req.size {
            if size > region.size {
                return Err(OtaError::TooLarge {
                    slot: target,
                    needed: u64::from(size),
                    capacity: region.size,
                });
            }
        }
        let mut opts = VerifyOptions::new();
        opts.chip = Some(cfg.chip);
        opts.slot_size = Some(region.size);
        opts.min_secure_version = cfg.anti_rollback;
        opts.expected_sha256 = req.expected_sha256;
        opts.require_app = true;
        opts.require_sha256 = cfg.require_sha256;
        // The stream is checked for structure, chip, size and secure_version as
        // it arrives; its SHA-256 is computed once, over what is in flash, in
        // `finish`.
        opts.hash_image = false;
        Ok(Self {
            cfg: *cfg,
            map,
            target,
            region,
            size: req.size,
            verifier: StreamingVerifier::new(opts),
            image_hash: None,
            hash_decided: false,
            received: 0,
            programmed: 0,
            erased_to: 0,
            image_len: None,
            stage: [0xFF; STAGE_LEN],
            stage_len: 0,
            head_ok: false,
            invalidated_stale: false,
        })
    }

    /// The slot being written.
    pub fn target(&self) -> SlotId {
        self.target
    }

    /// Forgets the size given to [`UpdateSession::begin`], before anything
    /// was written: it was the size of an encoded transfer (a compressed
    /// image or a delta patch, decoded on its way in), not of the image.
    /// The session then erases as for an unknown size. Refused as misuse
    /// after the first write and for a pre-erased slot.
    pub fn forget_size<E>(&mut self) -> Result<(), OtaError<E>> {
        if self.received != 0 || self.erased_to != 0 {
            return Err(OtaError::Misuse(
                "the size can only be forgotten before the first write",
            ));
        }
        self.size = None;
        Ok(())
    }

    /// The target slot's region.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Bytes accepted so far: the image offset the next
    /// [`write`](Self::write) starts at. After [`resume`](Self::resume) at
    /// `at`, this counts the prefix re-read from flash, so it starts at `at`.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// The image length, once the header walk has reached the last segment.
    pub fn image_len(&self) -> Option<u32> {
        self.image_len
    }

    /// `esp_ota_write`: accepts the next chunk, of any size. The chunk is
    /// checked before it is written; on error the session is over (call
    /// [`abort`](Self::abort)) and the boot selection is untouched.
    pub fn write<F: NorFlash>(
        &mut self,
        flash: &mut F,
        mut data: &[u8],
    ) -> Result<(), OtaError<F::Error>> {
        self.accept(data)?;
        while !data.is_empty() {
            let room = STAGE_LEN - self.stage_len;
            let n = room.min(data.len());
            let (now, rest) = data.split_at(n);
            if let Some(dst) = self.stage.get_mut(self.stage_len..self.stage_len + n) {
                dst.copy_from_slice(now);
            }
            self.stage_len += n;
            data = rest;
            if self.stage_len == STAGE_LEN && self.head_ok {
                self.flush(flash)?;
            }
        }
        Ok(())
    }

    /// Checks and hashes the next bytes of the image (from the caller, or
    /// from flash while resuming) and counts them as received. Nothing is
    /// staged or written.
    fn accept<E>(&mut self, data: &[u8]) -> Result<(), OtaError<E>> {
        let new_total = u64::from(self.received) + data.len() as u64;
        if new_total > u64::from(self.region.size) {
            return Err(OtaError::TooLarge {
                slot: self.target,
                needed: new_total,
                capacity: self.region.size,
            });
        }
        if let Some(size) = self.size {
            if new_total > u64::from(size) {
                return Err(OtaError::Misuse("more data than the announced size"));
            }
        }
        let progress = self.verifier.feed(data).map_err(OtaError::Image)?;
        if let Some(len) = progress.image_len {
            self.image_len = Some(len);
        }
        self.check_trailer(data)?;
        if !self.hash_decided {
            if let Some(header) = progress.header {
                self.hash_decided = true;
                if !header.has_hash() {
                    // Nothing has been flushed before the header is known
                    // (flushing waits for the app descriptor, after it), so
                    // every byte received so far is still staged. (A resume
                    // reads at least the header first, so it has none.)
                    let mut h = Sha256::new();
                    h.update(self.stage.get(..self.stage_len).unwrap_or_default());
                    self.image_hash = Some(h);
                }
            }
        }
        // Hash the image bytes (not trailing bytes) for the read-back check.
        if let Some(h) = self.image_hash.as_mut() {
            let hash_end = self.image_len.unwrap_or(u32::MAX);
            let hash_n = hash_end
                .saturating_sub(self.received)
                .min(data.len() as u32) as usize;
            if let Some(part) = data.get(..hash_n) {
                h.update(part);
            }
        }
        self.received = new_total as u32;
        if !self.head_ok
            && (progress.app_desc_resolved || u64::from(self.received) >= HEAD_LEN as u64)
        {
            self.head_ok = true;
        }
        Ok(())
    }

    /// Checks the bytes of `data` (file offsets from `received`) that lie
    /// after the image: only a Secure Boot v2 signature sector may follow it,
    /// as espsecure writes one: 0xFF up to the next 4 KiB boundary, then a
    /// 4 KiB sector that starts with a block's magic byte. Its blocks are
    /// checked in [`finish`](Self::finish).
    fn check_trailer<E>(&self, data: &[u8]) -> Result<(), OtaError<E>> {
        let Some(image_len) = self.image_len else {
            return Ok(());
        };
        let start = u64::from(self.received);
        let end = start + data.len() as u64;
        let image_end = u64::from(image_len);
        if end <= image_end {
            return Ok(());
        }
        let sector = signed_len(image_len);
        let limit = sector + SECTOR_LEN as u64;
        let bad = |offset: u64| OtaError::TrailingData {
            image_len,
            extra: end - image_end,
            offset,
        };
        let from = start.max(image_end);
        let checked_to = end.min(sector + 1);
        for offset in from..checked_to {
            let byte = usize::try_from(offset - start)
                .ok()
                .and_then(|i| data.get(i))
                .copied();
            let want = if offset < sector { 0xFF } else { BLOCK_MAGIC };
            if byte != Some(want) {
                return Err(bad(offset));
            }
        }
        if end > limit {
            return Err(bad(limit));
        }
        Ok(())
    }

    /// Programs the staged bytes at the cursor (padded with 0xFF to the
    /// flash's write size), erasing ahead as needed.
    fn flush<F: NorFlash>(&mut self, flash: &mut F) -> Result<(), OtaError<F::Error>> {
        if self.stage_len == 0 {
            return Ok(());
        }
        let write_size = F::WRITE_SIZE.max(1);
        let len = self.stage_len.div_ceil(write_size) * write_size;
        if len > STAGE_LEN {
            return Err(OtaError::Misuse(
                "flash write size larger than the staging buffer",
            ));
        }
        if let Some(pad) = self.stage.get_mut(self.stage_len..len) {
            pad.fill(0xFF);
        }
        let end = self.programmed + len as u32;
        if !self.invalidated_stale {
            invalidate_stale_otadata(flash, &self.cfg, &self.map, self.target)?;
            self.invalidated_stale = true;
        }
        self.erase_ahead(flash, end)?;
        let data = self.stage.get(..len).unwrap_or_default();
        flash
            .write(self.region.offset + self.programmed, data)
            .map_err(OtaError::Flash)?;
        self.programmed = end;
        self.stage_len = 0;
        Ok(())
    }

    /// Erases the slot up to at least `needed` (slot-relative).
    fn erase_ahead<F: NorFlash>(
        &mut self,
        flash: &mut F,
        needed: u32,
    ) -> Result<(), OtaError<F::Error>> {
        if needed <= self.erased_to {
            return Ok(());
        }
        // The most this image may need: its announced size, else its known
        // length, else the whole slot.
        let known = self.size.or(self.image_len);
        let limit = known
            .map(|n| n.div_ceil(SECTOR_SIZE) * SECTOR_SIZE)
            .unwrap_or(self.region.size)
            .min(self.region.size)
            .max(needed.div_ceil(SECTOR_SIZE) * SECTOR_SIZE);
        while self.erased_to < needed {
            let at = self.erased_to;
            let block_ok = at.is_multiple_of(BLOCK_SIZE)
                && at + BLOCK_SIZE <= self.region.size
                && (known.is_none() || at + BLOCK_SIZE <= limit);
            let step = if block_ok { BLOCK_SIZE } else { SECTOR_SIZE };
            let from = self.region.offset + at;
            flash.erase(from, from + step).map_err(OtaError::Flash)?;
            self.erased_to = at + step;
        }
        Ok(())
    }

    /// `esp_ota_end`: writes what is staged, then verifies what is **in
    /// flash**: it must be a valid app for this device, byte-identical to what
    /// was streamed, with the expected SHA-256 when one was given.
    pub fn finish<F: NorFlash>(
        mut self,
        flash: &mut F,
    ) -> Result<VerifiedUpdate, OtaError<F::Error>> {
        if self.received == 0 {
            return Err(OtaError::Misuse("nothing was written"));
        }
        self.head_ok = true;
        self.flush(flash)?;
        let streamed = self.verifier.finish().map_err(OtaError::Image)?;
        let image_len = streamed.image_len;

        let mut opts = VerifyOptions::new();
        opts.chip = Some(self.cfg.chip);
        opts.min_secure_version = self.cfg.anti_rollback;
        opts.require_sha256 = self.cfg.require_sha256;
        let in_flash = verify_slot(flash, &self.region, opts)?.map_err(OtaError::Image)?;
        if in_flash.image_len != image_len {
            return Err(OtaError::Sha256Mismatch);
        }
        // What is in flash is what was streamed: with an appended SHA-256, the
        // flash verification proved that the slot's bytes hash to the digest
        // stored there, and that digest must be the one the upload carried
        // (the stream is not hashed, so the bytes are hashed once); without
        // one, read the slot back and compare with the stream's own hash.
        match (&streamed.sha256, &in_flash.sha256, self.image_hash.take()) {
            (Some(s), Some(f), _) => {
                if s.offset != f.offset || s.stored != f.stored {
                    return Err(OtaError::Sha256Mismatch);
                }
            }
            (None, None, Some(streamed_hash)) => {
                let mut readback = Sha256::new();
                let mut buf = [0u8; 256];
                let mut at = 0u32;
                while at < image_len {
                    let n = (image_len - at).min(buf.len() as u32) as usize;
                    let chunk = buf.get_mut(..n).unwrap_or_default();
                    flash
                        .read(self.region.offset + at, chunk)
                        .map_err(OtaError::Flash)?;
                    readback.update(&*chunk);
                    at += n as u32;
                }
                if readback.finalize() != streamed_hash.finalize() {
                    return Err(OtaError::Sha256Mismatch);
                }
            }
            _ => return Err(OtaError::Sha256Mismatch),
        }
        let signature = check_signature(
            flash,
            self.cfg.signatures,
            &self.region,
            self.received,
            image_len,
        )?;
        Ok(VerifiedUpdate {
            cfg: self.cfg,
            map: self.map,
            target: self.target,
            image: in_flash,
            signature,
        })
    }

    /// `esp_ota_abort`: ends the session. The target slot may hold a partial
    /// image; the boot selection is untouched.
    pub fn abort(self) {}
}

/// Checks the signature sector written after the image (if any) and, when
/// the device requires signatures, the signature itself, reading the slot
/// back: the signature must cover the bytes in flash, not the ones that
/// were sent. Returns the block that verified.
fn check_signature<F: NorFlash>(
    flash: &mut F,
    policy: SignaturePolicy,
    region: &Region,
    written: u32,
    image_len: u32,
) -> Result<Option<Verified>, OtaError<F::Error>> {
    let sector = signed_len(image_len);
    let received = u64::from(written);
    if received <= u64::from(image_len) {
        if policy.required() {
            return Err(OtaError::Signature(SignatureError::Unsigned {
                expected_offset: sector,
            }));
        }
        return Ok(None);
    }
    let full = sector + SECTOR_LEN as u64;
    if received != full {
        return Err(OtaError::Signature(SignatureError::Truncated {
            offset: sector,
            needed: SECTOR_LEN as u32,
            available: received.saturating_sub(sector) as u32,
        }));
    }
    // The blocks' shape: magic, version, CRC, up to the first empty slot.
    let mut block = [0u8; BLOCK_LEN];
    let mut sha384 = false;
    for i in 0..MAX_BLOCKS {
        let at = sector + (i * BLOCK_LEN) as u64;
        flash
            .read(region.offset + at as u32, &mut block)
            .map_err(OtaError::Flash)?;
        if block.first() != Some(&BLOCK_MAGIC) {
            break;
        }
        let b = SignatureBlock::parse(&block, i as u8, at).map_err(OtaError::Signature)?;
        sha384 |= b.scheme() == Scheme::EcdsaP384;
    }
    if !policy.required() {
        return Ok(None);
    }
    let mut v = if sha384 {
        StreamVerifier::new(image_len)
    } else {
        StreamVerifier::sha256_only(image_len)
    };
    let mut buf = [0u8; 256];
    let mut at = 0u32;
    while at < written {
        let n = (written - at).min(buf.len() as u32) as usize;
        let chunk = buf.get_mut(..n).unwrap_or_default();
        flash
            .read(region.offset + at, chunk)
            .map_err(OtaError::Flash)?;
        v.update(chunk);
        at += n as u32;
    }
    v.finish(&policy.trusted_keys())
        .map(Some)
        .map_err(OtaError::Signature)
}

/// An update that is fully written and verified in flash, ready to boot.
#[derive(Debug, Clone)]
pub struct VerifiedUpdate {
    cfg: DeviceConfig,
    map: SlotMap,
    target: SlotId,
    image: ImageInfo,
    signature: Option<Verified>,
}

impl VerifiedUpdate {
    /// The Secure Boot v2 block that verified, when the device requires
    /// signatures.
    pub fn signature(&self) -> Option<&Verified> {
        self.signature.as_ref()
    }

    /// The slot that holds the new image.
    pub fn target(&self) -> SlotId {
        self.target
    }

    /// The verified image.
    pub fn image(&self) -> &ImageInfo {
        &self.image
    }

    /// `esp_ota_set_boot_partition`: selects the new slot for the next boot,
    /// exactly as ESP-IDF writes otadata (which sector, which sequence number,
    /// NEW with rollback else UNDEFINED; one sector erase, one 32-byte program).
    pub fn activate<F: NorFlash>(self, flash: &mut F) -> Result<SlotId, OtaError<F::Error>> {
        set_boot_slot(flash, &self.cfg, &self.map, self.target)?;
        Ok(self.target)
    }
}

/// Writes otadata so that `slot` boots next (the slot's image must already be
/// verified by the caller).
pub(crate) fn set_boot_slot<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    map: &SlotMap,
    slot: SlotId,
) -> Result<(), OtaError<F::Error>> {
    let od = *map.otadata().ok_or(OtaError::NoOtadata)?;
    let SlotId::Ota(index) = slot else {
        return Err(OtaError::Misuse("only OTA slots can be activated"));
    };
    let otadata = read_otadata(flash, &od)?;
    let w = plan_set_boot(
        &otadata,
        index,
        map.ota_count(),
        cfg.new_image_state(),
        cfg.same_slot_rule,
    )
    .map_err(OtaError::Otadata)?;
    write_otadata_entry(flash, &od, w.sector, &w.entry)
}

/// With rollback enabled, ESP-IDF's `esp_ota_begin` erases the inactive
/// otadata sector when it is valid and points at a slot other than the
/// running one (`target`, the slot being overwritten), so it can no longer be
/// chosen as a rollback target. Done before the slot's first erase or
/// program; a no-op once done.
fn invalidate_stale_otadata<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    map: &SlotMap,
    target: SlotId,
) -> Result<(), OtaError<F::Error>> {
    if !cfg.rollback {
        return Ok(());
    }
    let Some(od) = map.otadata().copied() else {
        return Ok(());
    };
    let otadata = read_otadata(flash, &od)?;
    let Some(active) = otadata.active() else {
        return Ok(());
    };
    let inactive = 1 - active;
    let e = otadata.entries[inactive];
    if e.is_valid() && map.slot_for_seq(e.seq) == Some(target) {
        let at = od.offset + inactive as u32 * SECTOR_SIZE;
        flash.erase(at, at + SECTOR_SIZE).map_err(OtaError::Flash)?;
    }
    Ok(())
}
