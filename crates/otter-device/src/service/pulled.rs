//! The update path of a pulled release ([`crate::pull`]): the same
//! [`Upload`] lock, [`UpdateSession`] (with its signature policy), web-UI
//! writer and [`LastUpdate`] record as `POST /update`, with
//! [`Protocol::Pull`], plus the one thing only a pull does: resume a
//! download cut by a power loss from what is already in the slot.
//!
//! # Resuming from the slot
//!
//! The slot is the only record of a download in progress (nothing is
//! written to NVS, which a key rewritten on every pull would eventually
//! fill). A fresh start erases the image's whole range first and then
//! writes from offset 0 without further erases, so the first sector holding
//! exactly the image's first bytes proves the erase finished before the
//! writing began. At the next attempt the caller fetches the image's first
//! sector (the image header and app descriptor, with the ELF's SHA-256) and
//! [`Device::begin_pull_firmware`] compares it with the slot, in 4-byte
//! aligned chunks: equal, the slot holds a prefix of this very image and the
//! engine resumes one sector before the first erased one
//! ([`otter_ota::session::resume_point`]), re-reading the kept prefix
//! through the image verifier; not equal, a fresh start. The SHA-256 of the
//! whole image, over what is in flash, decides at the end.
//!
//! # Encoded artifacts
//!
//! A gzip or delta artifact ([`Device::begin_pull_encoded`]) goes through
//! the same decoder stage as `POST /update` with `Content-Encoding`
//! ([`crate::decode`], with the platform's [`Platform::decoder_ram`]) into
//! the same session. A decoder's state lives only in RAM, so an encoded
//! download cannot continue from what the slot holds: it always starts at
//! byte 0 with the same fresh start as a full image (the image's range
//! erased, sector 0 last). What it leaves in the slot after a cut is
//! therefore a prefix of the very same decoded image followed by erased
//! sectors, which is exactly what the first-sector rule expects, should
//! the next attempt be a full-image download.

use embedded_storage::nor_flash::NorFlash;
use otter_ota::session::{erase_update_slot, resume_point, UpdateRequest, UpdateSession};
use otter_ota::{OtaError, Region, SlotMap};

use super::conn::upload::{begin_www, Sink};
use super::{Device, LastUpdate, Platform, Protocol, UpdateKind, UpdateResult, Upload};
use crate::decode::{Decoder, Encoding};
use crate::error::DeviceError;

/// Flash sector: the unit of the resume rule.
pub const SECTOR: u32 = 4096;

impl Device {
    /// Takes the update lock for a pulled firmware of `size` bytes with
    /// SHA-256 `sha256` and opens the slot: resumes the prefix already
    /// there when `head` (the image's first `min(size, SECTOR)` bytes, as
    /// the server sends them) equals the slot's first bytes, else erases
    /// the image's range and starts at 0. Returns where the download
    /// continues. The same refusals as an upload (`not_running`,
    /// `pending_verify`, `busy`, too large).
    pub fn begin_pull_firmware<F: NorFlash>(
        &mut self,
        flash: &mut F,
        size: u32,
        sha256: [u8; 32],
        head: &[u8],
        now: u64,
    ) -> Result<u32, DeviceError> {
        let running = self.pull_preamble(flash, size, now)?;
        let opened = self
            .open_pull_slot(flash, running, size, sha256, head)
            .map(|(session, from)| (session, Decoder::identity(), from));
        self.start_pulled_firmware(opened, Some(u64::from(size)), Encoding::Identity, now)
    }

    /// Takes the update lock for a pulled firmware of `size` bytes with
    /// SHA-256 `sha256` that arrives as `encoding` (`Gzip` or `EspDelta`,
    /// against the running image) in an artifact of `artifact_size` bytes,
    /// and opens the slot from byte 0 (module docs: an encoded download
    /// does not resume). The decoder is limited to `size` bytes of output.
    /// The same refusals as [`Device::begin_pull_firmware`], plus 415
    /// `decoder_unavailable` when the platform lends no RAM for it (before
    /// anything is erased).
    #[allow(clippy::too_many_arguments)]
    pub fn begin_pull_encoded<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        size: u32,
        sha256: [u8; 32],
        encoding: Encoding,
        artifact_size: u64,
        now: u64,
    ) -> Result<(), DeviceError> {
        let running = self.pull_preamble(flash, size, now)?;
        let opened = self
            .open_encoded(flash, platform, running, size, sha256, encoding)
            .map(|(session, decoder)| (session, decoder, 0));
        self.start_pulled_firmware(opened, Some(artifact_size), encoding, now)
            .map(|_| ())
    }

    /// The refusals every pulled firmware starts with (`not_running`,
    /// `pending_verify`, `busy`, `empty`); the running slot.
    fn pull_preamble<F: NorFlash>(
        &mut self,
        flash: &mut F,
        size: u32,
        now: u64,
    ) -> Result<otter_ota::SlotId, DeviceError> {
        self.last_now = now;
        let running = self.ready_for_update(flash)?;
        if self.update_in_progress() {
            return Err(DeviceError::Busy);
        }
        if size == 0 {
            return Err(DeviceError::Empty);
        }
        Ok(running)
    }

    /// Takes the lock with the session and decoder `opened` (or records its
    /// failure) and records the pulled firmware as in progress from the
    /// offset it returns, travelling as `encoding` in `total` bytes.
    fn start_pulled_firmware(
        &mut self,
        opened: Result<(UpdateSession, Decoder, u32), DeviceError>,
        total: Option<u64>,
        encoding: Encoding,
        now: u64,
    ) -> Result<u32, DeviceError> {
        let (session, decoder, from) = match opened {
            Ok(s) => s,
            Err(e) => {
                super::conn::upload::dev_fail(
                    self,
                    Sink::Firmware,
                    Protocol::Pull,
                    &e,
                    0,
                    total,
                    now,
                );
                if encoding != Encoding::Identity {
                    if let Some(r) = self.last_update.as_mut() {
                        r.encoding = Some(encoding);
                    }
                }
                return Err(e);
            }
        };
        let slot = session.target();
        self.upload = Upload::Firmware { session, decoder };
        self.record(LastUpdate {
            result: UpdateResult::InProgress,
            error: None,
            kind: UpdateKind::Firmware,
            protocol: Protocol::Pull,
            slot: Some(slot),
            www_slot: None,
            version: None,
            received: u64::from(from),
            total,
            encoding: Some(encoding),
            boot: self.boot_count,
            at: now,
        });
        Ok(from)
    }

    /// Starts an encoded pull over from byte 0 (the server ignored a
    /// `Range`): erases the range again, a fresh session and decoder.
    pub fn restart_pull_encoded<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        size: u32,
        sha256: [u8; 32],
        encoding: Encoding,
    ) -> Result<(), DeviceError> {
        let Upload::Firmware { .. } = self.upload else {
            return Err(DeviceError::Busy);
        };
        let running = self.running.ok_or(DeviceError::NotRunning)?;
        self.upload = Upload::External {
            kind: UpdateKind::Firmware,
        };
        match self.open_encoded(flash, platform, running, size, sha256, encoding) {
            Ok((session, decoder)) => {
                self.upload = Upload::Firmware { session, decoder };
                Ok(())
            }
            Err(e) => {
                let now = self.last_now;
                let total = self.last_update.as_ref().and_then(|r| r.total);
                super::conn::upload::dev_fail(
                    self,
                    Sink::Firmware,
                    Protocol::Pull,
                    &e,
                    0,
                    total,
                    now,
                );
                Err(e)
            }
        }
    }

    fn open_encoded<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        running: otter_ota::SlotId,
        size: u32,
        sha256: [u8; 32],
        encoding: Encoding,
    ) -> Result<(UpdateSession, Decoder), DeviceError> {
        let map = SlotMap::read(flash, self.opts.cfg.table_offset)
            .map_err(|e| DeviceError::from_ota(&e))?;
        let slot = map
            .next_update_slot(Some(running))
            .ok_or(DeviceError::NoOtaSlot)?;
        let region = *map.region(slot).ok_or(DeviceError::NoOtaSlot)?;
        if u64::from(size) > u64::from(region.size) {
            return Err(DeviceError::TooLarge {
                needed: u64::from(size),
                capacity: region.size,
            });
        }
        // The decoder RAM is checked before anything is erased.
        let base = map.region(running).copied();
        let chip = self.opts.cfg.chip;
        let decoder = Decoder::begin(
            encoding,
            &mut platform.decoder_ram(),
            base,
            chip,
            u64::from(size),
        )?
        .with_image_size();
        let session = fresh(flash, self, running, size, sha256)?;
        Ok((session, decoder))
    }

    /// Starts the pulled firmware over from byte 0 (the server ignored a
    /// `Range`): erases the range again and begins a fresh session.
    pub fn restart_pull_firmware<F: NorFlash>(
        &mut self,
        flash: &mut F,
        size: u32,
        sha256: [u8; 32],
    ) -> Result<(), DeviceError> {
        let Upload::Firmware { .. } = self.upload else {
            return Err(DeviceError::Busy);
        };
        let running = self.running.ok_or(DeviceError::NotRunning)?;
        self.upload = Upload::External {
            kind: UpdateKind::Firmware,
        };
        match fresh(flash, self, running, size, sha256) {
            Ok(session) => {
                self.upload = Upload::Firmware {
                    session,
                    decoder: crate::decode::Decoder::identity(),
                };
                Ok(())
            }
            Err(e) => {
                let now = self.last_now;
                let total = Some(u64::from(size));
                super::conn::upload::dev_fail(
                    self,
                    Sink::Firmware,
                    Protocol::Pull,
                    &e,
                    0,
                    total,
                    now,
                );
                Err(e)
            }
        }
    }

    /// Takes the update lock for a pulled web UI of `size` bytes with
    /// SHA-256 `sha256`, written into the slot not mounted by the same
    /// writer as `POST /api/ota/frontend`.
    pub fn begin_pull_www<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        size: u64,
        sha256: [u8; 32],
        now: u64,
    ) -> Result<(), DeviceError> {
        self.last_now = now;
        self.ready_for_update(flash)?;
        if self.update_in_progress() {
            return Err(DeviceError::Busy);
        }
        let total = Some(size);
        let upload = match begin_www(self, flash, platform, total, total, Some(sha256)) {
            Ok(u) => u,
            Err(e) => {
                super::conn::upload::dev_fail(self, Sink::Www, Protocol::Pull, &e, 0, total, now);
                return Err(e);
            }
        };
        let www_slot = match &upload {
            Upload::Www { upload } => Some(upload.target),
            _ => None,
        };
        self.upload = upload;
        self.record(LastUpdate {
            result: UpdateResult::InProgress,
            error: None,
            kind: UpdateKind::Www,
            protocol: Protocol::Pull,
            slot: None,
            www_slot,
            version: None,
            received: 0,
            total,
            encoding: None,
            boot: self.boot_count,
            at: now,
        });
        Ok(())
    }

    /// Starts the pulled web UI over from byte 0 (the server ignored a
    /// `Range`).
    pub fn restart_pull_www<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        size: u64,
        sha256: [u8; 32],
    ) -> Result<(), DeviceError> {
        let Upload::Www { .. } = self.upload else {
            return Err(DeviceError::Busy);
        };
        let total = Some(size);
        match begin_www(self, flash, platform, total, total, Some(sha256)) {
            Ok(u) => {
                self.upload = u;
                Ok(())
            }
            Err(e) => {
                let now = self.last_now;
                super::conn::upload::dev_fail(self, Sink::Www, Protocol::Pull, &e, 0, total, now);
                Err(e)
            }
        }
    }

    /// Bytes of the pulled update in flash (kept prefix included).
    pub fn pull_received(&self) -> Option<u64> {
        match &self.upload {
            Upload::Firmware { session, .. } => Some(u64::from(session.received())),
            Upload::Www { upload } => Some(u64::from(upload.received())),
            Upload::Idle | Upload::External { .. } => None,
        }
    }

    /// Writes the next bytes of the pulled update (the upload path's one
    /// write: the decoder stage with the platform's RAM, then the session,
    /// which refuses a bad header, trailing data, ...).
    pub fn write_pull<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        data: &[u8],
    ) -> Result<(), DeviceError> {
        super::conn::upload::write_upload(
            &mut self.upload,
            flash,
            &mut platform.decoder_ram(),
            data,
        )
    }

    /// Verifies and selects the pulled update; recorded as the last update.
    pub fn finish_pull<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        now: u64,
    ) -> Result<super::Finished, DeviceError> {
        self.finish_update(flash, platform, Protocol::Pull, now)
    }

    /// Abandons the pulled update because of `e`, recorded; nothing is
    /// selected.
    pub fn abort_pull(&mut self, e: &DeviceError, now: u64) {
        self.abort_update(Protocol::Pull, e, now);
    }

    fn open_pull_slot<F: NorFlash>(
        &mut self,
        flash: &mut F,
        running: otter_ota::SlotId,
        size: u32,
        sha256: [u8; 32],
        head: &[u8],
    ) -> Result<(UpdateSession, u32), DeviceError> {
        let map = SlotMap::read(flash, self.opts.cfg.table_offset)
            .map_err(|e| DeviceError::from_ota(&e))?;
        let slot = map
            .next_update_slot(Some(running))
            .ok_or(DeviceError::NoOtaSlot)?;
        let region = *map.region(slot).ok_or(DeviceError::NoOtaSlot)?;
        if u64::from(size) > u64::from(region.size) {
            return Err(DeviceError::TooLarge {
                needed: u64::from(size),
                capacity: region.size,
            });
        }
        let want = size.min(SECTOR) as usize;
        if head.len() == want && same_prefix(flash, &region, head)? {
            let at = resume_point(flash, &region, size).map_err(|e| DeviceError::from_ota(&e))?;
            if at > 0 {
                let req = UpdateRequest::new(Some(size), Some(sha256));
                match UpdateSession::resume(flash, &self.opts.cfg, running, req, at) {
                    Ok(session) => return Ok((session, at)),
                    Err(OtaError::Flash(e)) => {
                        return Err(DeviceError::from_ota(&OtaError::<F::Error>::Flash(e)))
                    }
                    // The prefix does not verify as an image start: start over.
                    Err(_) => {}
                }
            }
        }
        fresh(flash, self, running, size, sha256).map(|s| (s, 0))
    }
}

/// Erases the image's range (otter-ota's resumable fresh start) and begins
/// a session on the erased slot.
fn fresh<F: NorFlash>(
    flash: &mut F,
    dev: &Device,
    running: otter_ota::SlotId,
    size: u32,
    sha256: [u8; 32],
) -> Result<UpdateSession, DeviceError> {
    let cfg = dev.opts.cfg;
    erase_update_slot(flash, &cfg, running, size).map_err(|e| DeviceError::from_ota(&e))?;
    let req = UpdateRequest::new(Some(size), Some(sha256)).with_pre_erased(true);
    UpdateSession::begin(flash, &cfg, running, req).map_err(|e| DeviceError::from_ota(&e))
}

/// Whether the slot starts with `head`, read in 4-byte aligned chunks.
fn same_prefix<F: NorFlash>(
    flash: &mut F,
    region: &Region,
    head: &[u8],
) -> Result<bool, DeviceError> {
    let mut buf = [0u8; 256];
    let mut at = 0usize;
    while at < head.len() {
        let n = (head.len() - at).min(buf.len());
        let read = n.div_ceil(4) * 4;
        let chunk = buf.get_mut(..read).unwrap_or_default();
        flash
            .read(region.offset + at as u32, chunk)
            .map_err(DeviceError::flash)?;
        if chunk.get(..n) != head.get(at..at + n) {
            return Ok(false);
        }
        at += n;
    }
    Ok(!head.is_empty())
}
