//! The one update session as the non-HTTP protocols drive it
//! ([`crate::esphome`], [`crate::espota`]): begin with the same refusals
//! as `POST /update` (no image running, the running image not yet
//! confirmed, another update in progress, too large for the slot), write,
//! finish (verify, then select), or abort. Every ending is recorded in
//! [`Device::last_update`] with the [`Protocol`] that carried it.

use embedded_storage::nor_flash::NorFlash;
use otter_format::otadata::OtaState;
use otter_ota::lifecycle::running_state;
use otter_ota::SlotId;

use super::conn::upload::{
    begin_firmware, begin_www, dev_fail, finish_firmware, kind_of, write_upload, Done, Sink,
};
use super::{Device, LastUpdate, Platform, RebootReason, Text32, UpdateKind, UpdateResult, Upload};
use crate::decode::Encoding;
use crate::error::DeviceError;

/// The protocol an update arrived by (`last_update.protocol` in the status
/// document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// otter's HTTP API (`POST /update`, `POST /api/ota/frontend`).
    Http,
    /// ESPHome's native OTA protocol ([`crate::esphome`]).
    Esphome,
    /// ArduinoOTA's espota protocol ([`crate::espota`]).
    Espota,
    /// A release the device pulled ([`crate::pull`]).
    Pull,
}

impl Protocol {
    /// The status document's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Esphome => "esphome",
            Self::Espota => "espota",
            Self::Pull => "pull",
        }
    }
}

/// A finished update: written, verified and selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Firmware or web UI.
    pub kind: UpdateKind,
    /// The app slot selected (firmware).
    pub slot: Option<SlotId>,
    /// The new image's version (firmware).
    pub version: Option<Text32>,
    /// Why the caller reboots.
    pub reboot: RebootReason,
}

impl Device {
    /// Starts an update of `kind` of `size` bytes carried by `protocol`,
    /// with the same refusals as the HTTP API: no image running, the
    /// running image still pending verification, another update in
    /// progress (one at a time across all protocols), or an image that
    /// cannot fit the slot (firmware) or is not the slot's size (web UI).
    /// A refusal of the image (size) is recorded; `not_running`,
    /// `pending_verify` and `busy` are not, as for HTTP.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn begin_update<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        kind: UpdateKind,
        protocol: Protocol,
        size: u32,
        encoding: Encoding,
        now: u64,
    ) -> Result<(), DeviceError> {
        self.last_now = now;
        let sink = match kind {
            UpdateKind::Firmware => Sink::Firmware,
            UpdateKind::Www => Sink::Www,
        };
        let total = Some(u64::from(size));
        // As for HTTP: a device that must first confirm says so even while
        // another update runs; these refusals and `busy` are not recorded
        // (no update was attempted; the record stays the last one's).
        let running = self.ready_for_update(flash)?;
        if self.update_in_progress() {
            return Err(DeviceError::Busy);
        }
        let begun = self.begin_checked(flash, platform, sink, running, size, encoding);
        let upload = match begun {
            Ok(u) => u,
            Err(e) => {
                dev_fail(self, sink, protocol, &e, 0, total, now);
                return Err(e);
            }
        };
        self.upload = upload;
        let (slot, www_slot) = match &self.upload {
            Upload::Firmware { session, .. } => (Some(session.target()), None),
            Upload::Www { upload } => (None, Some(upload.target)),
            Upload::Idle | Upload::External { .. } => (None, None),
        };
        self.record(LastUpdate {
            result: UpdateResult::InProgress,
            error: None,
            kind: kind_of(sink),
            protocol,
            slot,
            www_slot,
            version: None,
            received: 0,
            total,
            encoding: match kind {
                UpdateKind::Firmware if !matches!(encoding, Encoding::Sniff) => Some(encoding),
                _ => None,
            },
            boot: self.boot_count,
            at: now,
        });
        Ok(())
    }

    /// Whether an update may begin: an image runs and, with rollback on, it
    /// is not waiting for its confirm. Returns the running slot. The one
    /// check of every protocol, HTTP included.
    pub(crate) fn ready_for_update<F: NorFlash>(
        &self,
        flash: &mut F,
    ) -> Result<SlotId, DeviceError> {
        let running = self.running.ok_or(DeviceError::NotRunning)?;
        if self.opts.cfg.rollback {
            let state = running_state(flash, &self.opts.cfg, running)
                .map_err(|e| DeviceError::from_ota(&e))?;
            if state == Some(OtaState::PendingVerify) {
                return Err(DeviceError::PendingVerify);
            }
        }
        Ok(running)
    }

    fn begin_checked<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        sink: Sink,
        running: SlotId,
        size: u32,
        encoding: Encoding,
    ) -> Result<Upload, DeviceError> {
        if size == 0 {
            return Err(DeviceError::Empty);
        }
        let n = Some(u64::from(size));
        match sink {
            Sink::Firmware => begin_firmware(
                self,
                flash,
                running,
                n,
                n,
                None,
                encoding,
                &mut platform.decoder_ram(),
            ),
            Sink::Www if matches!(encoding, Encoding::Identity | Encoding::Sniff) => {
                begin_www(self, flash, platform, n, n, None)
            }
            Sink::Www => Err(DeviceError::UnsupportedEncoding),
        }
    }

    /// Writes the next bytes of the update begun by
    /// [`Device::begin_update`]. The session refuses a wrong chip, an
    /// oversized image, a non-app and a low `secure_version` as soon as the
    /// header and app descriptor have arrived; bytes after the end of the
    /// app image (other than a signature sector) are refused too
    /// (`trailing_data`).
    pub(crate) fn write_update<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        data: &[u8],
    ) -> Result<(), DeviceError> {
        write_upload(&mut self.upload, flash, &mut platform.decoder_ram(), data)
    }

    /// Finishes the update: verifies the written image (checksum, appended
    /// SHA-256, chip, app descriptor, `secure_version`; for a web UI, its
    /// LittleFS superblock) and only then selects it. Records the outcome.
    pub(crate) fn finish_update<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        protocol: Protocol,
        now: u64,
    ) -> Result<Finished, DeviceError> {
        self.last_now = now;
        let upload = core::mem::replace(&mut self.upload, Upload::Idle);
        let (sink, received, done) = match upload {
            Upload::Firmware { session, decoder } => {
                // The transfer's bytes (compressed, or the patch), as `total`.
                let r = u32::try_from(decoder.consumed()).unwrap_or(u32::MAX);
                let ram = platform.decoder_ram();
                (
                    Sink::Firmware,
                    r,
                    finish_firmware(flash, session, &decoder, &ram),
                )
            }
            Upload::Www { upload } => {
                let r = upload.received();
                (
                    Sink::Www,
                    r,
                    upload
                        .finish(flash, platform, &self.opts.lfs)
                        .map(Done::Www),
                )
            }
            other @ (Upload::Idle | Upload::External { .. }) => {
                // Not this caller's update (a pull owns the lock): leave it.
                self.upload = other;
                return Err(DeviceError::Busy);
            }
        };
        let total = self.last_update.as_ref().and_then(|r| r.total);
        match done {
            Ok(done) => {
                let (slot, www_slot, version, reboot, encoding) = match &done {
                    Done::Firmware {
                        slot,
                        version,
                        encoding,
                        ..
                    } => (
                        Some(*slot),
                        None,
                        *version,
                        RebootReason::Update,
                        Some(*encoding),
                    ),
                    Done::Www(w) => (None, Some(w.target), None, RebootReason::Www, None),
                };
                self.record(LastUpdate {
                    result: UpdateResult::Ok,
                    error: None,
                    kind: kind_of(sink),
                    protocol,
                    slot,
                    www_slot,
                    version,
                    received: u64::from(received),
                    total,
                    encoding,
                    boot: self.boot_count,
                    at: now,
                });
                Ok(Finished {
                    kind: kind_of(sink),
                    slot,
                    version,
                    reboot,
                })
            }
            Err(e) => {
                dev_fail(self, sink, protocol, &e, u64::from(received), total, now);
                Err(e)
            }
        }
    }

    /// Abandons the update in progress because of `e` (a refusal, a
    /// protocol checksum mismatch, a dropped connection) and records why.
    /// Nothing is selected: the running image and the boot selection stay
    /// as they were.
    pub(crate) fn abort_update(&mut self, protocol: Protocol, e: &DeviceError, now: u64) {
        let (sink, received) = match &self.upload {
            Upload::Firmware { decoder, .. } => (
                Sink::Firmware,
                u32::try_from(decoder.consumed()).unwrap_or(u32::MAX),
            ),
            Upload::Www { upload } => (Sink::Www, upload.received()),
            Upload::Idle | Upload::External { .. } => return,
        };
        let total = self.last_update.as_ref().and_then(|r| r.total);
        dev_fail(self, sink, protocol, e, u64::from(received), total, now);
    }
}
