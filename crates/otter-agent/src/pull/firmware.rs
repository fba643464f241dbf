//! Pulling a firmware image into the inactive slot, resumable across power
//! loss.
//!
//! The slot is the only record of a download in progress: nothing is
//! written to NVS (which otter does not garbage-collect, so a key rewritten
//! on every pull would eventually fill it). The protocol keeps the slot in a
//! shape from which the written prefix can be recognised:
//!
//! - **Fresh start.** Erase the image's whole range, highest sector first,
//!   then write from offset 0 without further erases. Sector 0 is erased
//!   last and written first, so sector 0 holding exactly the image's first
//!   bytes proves the erase finished before the writing began.
//! - **Resume.** At a check, the first sector of the image is fetched and
//!   compared with the slot's. Equal: the slot holds a prefix of this very
//!   image (the first sector carries the image header and the app
//!   descriptor, with the ELF's SHA-256). The prefix ends at the first
//!   all-0xFF sector; the sector before it may have been cut mid-write, so
//!   the engine resumes one sector earlier
//!   ([`otter_ota::session::resume_point`]), erases from there on, re-reads
//!   the kept prefix through the image verifier and continues. Not equal
//!   (another release, or a cut before sector 0 was written): fresh start.
//! - The SHA-256 of the whole image, computed by the engine over what is in
//!   flash, decides at the end. A prefix that only looked right fails there;
//!   the download is then refused and the next attempt starts fresh.

use std::sync::Arc;

use otter_ota::session::{erase_update_slot, resume_point, UpdateRequest, UpdateSession};
use otter_ota::{OtaError, Region, SlotId};
use otter_sim::SimFlashError;

use super::SinkFailure;
use crate::fetch::{Sink, SinkError};
use crate::state::Shared;

/// Flash sector size.
pub const SECTOR: u32 = 4096;

fn failure(e: &OtaError<SimFlashError>) -> SinkFailure {
    SinkFailure::from(&otter_device::DeviceError::from_ota(e))
}

/// Collects the first bytes of a download, then stops it.
#[derive(Default)]
pub struct Collect {
    /// What arrived.
    pub bytes: Vec<u8>,
    /// How many to keep.
    pub want: usize,
}

impl Sink for Collect {
    fn restart(&mut self) -> Result<(), SinkError> {
        self.bytes.clear();
        Ok(())
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Result<(), SinkError> {
        let take = (self.want - self.bytes.len()).min(data.len());
        self.bytes.extend_from_slice(&data[..take]);
        if self.bytes.len() == self.want {
            return Err(SinkError::new(HeadComplete));
        }
        Ok(())
    }
}

/// What [`Collect`] stops a download with once it has its bytes.
#[derive(Debug, thiserror::Error)]
#[error("first sector received")]
pub struct HeadComplete;

/// The firmware being pulled into the inactive slot.
pub struct FirmwareSink {
    shared: Arc<Shared>,
    size: u32,
    sha256: [u8; 32],
    running: SlotId,
    region: Region,
    session: Option<UpdateSession>,
    resumed_from: u32,
    progress: Option<Box<dyn Fn(u64) + Send + Sync>>,
}

/// A firmware written, verified and activated.
pub struct Activated {
    /// The slot that boots next.
    pub slot: SlotId,
}

impl FirmwareSink {
    /// Opens the slot for an image of `size` bytes with SHA-256 `sha256`
    /// whose first sector is `head`: resumes the prefix already in the slot
    /// when it is this image's, else erases and starts fresh.
    pub fn open(
        shared: &Arc<Shared>,
        size: u32,
        sha256: [u8; 32],
        head: &[u8],
    ) -> Result<Self, SinkFailure> {
        let running = shared.boot().running.ok_or_else(|| SinkFailure {
            code: "not_running",
            message: "no image runs".into(),
        })?;
        let region = {
            let mut dev = shared.device();
            let map = dev.slot_map().map_err(|e| SinkFailure {
                code: "flash_error",
                message: e.to_string(),
            })?;
            let slot = map
                .next_update_slot(Some(running))
                .ok_or_else(|| SinkFailure {
                    code: "no_slot",
                    message: "this device has no OTA slot to install into".into(),
                })?;
            *map.region(slot).ok_or_else(|| SinkFailure {
                code: "no_slot",
                message: format!("{slot} is not in the partition table"),
            })?
        };
        let mut sink = Self {
            shared: shared.clone(),
            size,
            sha256,
            running,
            region,
            session: None,
            resumed_from: 0,
            progress: None,
        };
        let same_head = {
            let mut dev = shared.device();
            let start = region.offset as usize;
            let in_flash = dev.flash().contents().get(start..start + head.len());
            !head.is_empty() && in_flash == Some(head)
        };
        if same_head {
            sink.resume()?;
        } else {
            sink.fresh()?;
        }
        Ok(sink)
    }

    fn request(&self) -> UpdateRequest {
        UpdateRequest::new(Some(self.size), Some(self.sha256))
    }

    /// Erases the image's range, highest sector first, and begins at 0.
    fn fresh(&mut self) -> Result<(), SinkFailure> {
        self.session = None;
        let mut dev = self.shared.device();
        let (flash, cfg) = dev.parts();
        erase_update_slot(flash, cfg, self.running, self.size).map_err(|e| failure(&e))?;
        let req = self.request().with_pre_erased(true);
        let session =
            UpdateSession::begin(flash, cfg, self.running, req).map_err(|e| failure(&e))?;
        self.session = Some(session);
        self.resumed_from = 0;
        Ok(())
    }

    /// Keeps the prefix in flash and continues after it.
    fn resume(&mut self) -> Result<(), SinkFailure> {
        let mut dev = self.shared.device();
        let (flash, cfg) = dev.parts();
        let at = resume_point(flash, &self.region, self.size).map_err(|e| failure(&e))?;
        if at == 0 {
            drop(dev);
            return self.fresh();
        }
        match UpdateSession::resume(flash, cfg, self.running, self.request(), at) {
            Ok(session) => {
                self.session = Some(session);
                self.resumed_from = at;
                Ok(())
            }
            // The prefix does not verify as an image start: start over.
            Err(OtaError::Flash(e)) => Err(failure(&OtaError::Flash(e))),
            Err(_) => {
                drop(dev);
                self.fresh()
            }
        }
    }

    /// Where the download continues.
    pub fn resumed_from(&self) -> u64 {
        u64::from(self.resumed_from)
    }

    /// Reports bytes in flash as they are written.
    pub fn on_progress(&mut self, f: Box<dyn Fn(u64) + Send + Sync>) {
        self.progress = Some(f);
    }

    /// Verifies what is in the slot and selects it for the next boot.
    pub fn finish(mut self) -> Result<Activated, SinkFailure> {
        let session = self.session.take().ok_or_else(|| SinkFailure {
            code: "internal",
            message: "the update session was not started".into(),
        })?;
        let mut dev = self.shared.device();
        let (flash, _) = dev.parts();
        let verified = session.finish(flash).map_err(|e| failure(&e))?;
        let slot = verified.activate(flash).map_err(|e| failure(&e))?;
        Ok(Activated { slot })
    }
}

impl Sink for FirmwareSink {
    fn restart(&mut self) -> Result<(), SinkError> {
        self.fresh().map_err(SinkError::new)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        let Some(session) = self.session.as_mut() else {
            return Err(SinkError::new("the update session was not started"));
        };
        let at = u64::from(session.received());
        if offset != at {
            return Err(SinkError::new(SinkFailure {
                code: "internal",
                message: format!("the download delivered offset {offset} but {at} was expected"),
            }));
        }
        let res = {
            let mut dev = self.shared.device();
            let (flash, _) = dev.parts();
            session.write(flash, data)
        };
        match res {
            Ok(()) => {
                if let Some(p) = &self.progress {
                    p(offset + data.len() as u64);
                }
                Ok(())
            }
            Err(e) => Err(SinkError::new(failure(&e))),
        }
    }
}
