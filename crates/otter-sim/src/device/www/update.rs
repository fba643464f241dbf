//! The frontend update: stream into the inactive slot, verify, switch the
//! NVS pointer (see the [module docs](super)).

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use otter_format::nvs::{plan_set_u8, Nvs, NvsError};
use sha2::{Digest, Sha256};

use super::{
    inspect_ui_with, read_pointer, read_slot, Region, UiProblem, WwwLayout, NVS_KEY, NVS_NAMESPACE,
};
use crate::device::status::hex;
use crate::{SimFlash, SimFlashError, SECTOR_SIZE};

/// Why a frontend update was refused or failed. Nothing is switched in any
/// of these cases: the mounted UI and the NVS pointer are unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrontendError {
    /// The device has no `www_0`/`www_1` partitions.
    #[error("this device has no web-UI slots (data partitions www_0 and www_1)")]
    NoSlots,
    /// The device has no NVS partition to hold the pointer.
    #[error("this device has no NVS partition to record the active web-UI slot in")]
    NoNvs,
    /// The upload is larger than the slot (caller's input).
    #[error("the image is {len} bytes but {slot} holds {size}: build the web-UI image with the slot's size ({size} bytes)")]
    TooLarge {
        /// Bytes announced or received.
        len: u64,
        /// The target slot.
        slot: String,
        /// Its size.
        size: u32,
    },
    /// The upload is not exactly the slot's size (caller's input).
    #[error("the image is {len} bytes but {slot} is {size}: a LittleFS image mounts only on a partition of the size it was built for; build it with the slot's size ({size} bytes)")]
    WrongSize {
        /// Bytes announced or received.
        len: u64,
        /// The target slot.
        slot: String,
        /// Its size.
        size: u32,
    },
    /// The image, as read back from the slot, is not a usable UI.
    #[error("the web-UI image was written to {slot} but is not usable: {problem}; the active UI is unchanged")]
    BadUi {
        /// The target slot.
        slot: String,
        /// What is wrong.
        problem: UiProblem,
    },
    /// The SHA-256 differs from the expected one (caller's input, or damage
    /// on the way).
    #[error("the image's SHA-256 is {got} but {expected} was expected: this is not the file you meant to send, or it was damaged on the way; nothing was switched")]
    Sha256Mismatch {
        /// Expected, hex.
        expected: String,
        /// Received, hex.
        got: String,
    },
    /// What was read back from the slot is not what was written (flash fault).
    #[error(
        "{slot} reads back differently from what was written (flash fault); nothing was switched"
    )]
    Readback {
        /// The target slot.
        slot: String,
    },
    /// The NVS partition cannot take the pointer (damaged, or full).
    #[error("the NVS pointer {NVS_NAMESPACE}/{NVS_KEY} cannot be written: {0}; erase the NVS partition to reinitialise it")]
    Nvs(NvsError),
    /// The pointer did not read back as written (flash fault).
    #[error("the NVS pointer reads back as {got:?} after writing {want} (flash fault)")]
    NvsReadback {
        /// Written.
        want: u8,
        /// Read.
        got: Option<u8>,
    },
    /// The flash failed (or lost power).
    #[error("flash: {0}")]
    Flash(#[from] SimFlashError),
}

fn read_nvs(flash: &mut SimFlash, nvs: &Region) -> Result<Vec<u8>, SimFlashError> {
    let mut buf = vec![0u8; nvs.size as usize];
    flash.read(nvs.offset, &mut buf)?;
    Ok(buf)
}

/// A frontend update in progress; see the module docs.
#[derive(Debug)]
pub struct FrontendUpdate {
    layout: WwwLayout,
    target: usize,
    nvs: Region,
    expected_sha256: Option<[u8; 32]>,
    /// Bytes programmed into the slot (a multiple of the sector size).
    written: u32,
    /// Received bytes not yet programmed (less than a sector).
    pending: Vec<u8>,
    received: u64,
    hasher: Sha256,
}

/// A completed frontend update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    /// The slot now selected.
    pub slot: String,
    /// Its index.
    pub index: usize,
    /// Bytes written.
    pub bytes: u64,
    /// SHA-256 of the image, hex.
    pub sha256: String,
    /// Files in it.
    pub files: usize,
    /// NVS flash writes made to switch.
    pub nvs_writes: usize,
}

impl FrontendUpdate {
    /// Starts an update into the slot that is not `active` (with no active
    /// slot: the one the pointer does not select). `size` is the announced
    /// length, checked now when known.
    pub fn begin(
        flash: &mut SimFlash,
        layout: &WwwLayout,
        active: Option<usize>,
        size: Option<u64>,
        expected_sha256: Option<[u8; 32]>,
    ) -> Result<Self, FrontendError> {
        let nvs = layout.nvs.clone().ok_or(FrontendError::NoNvs)?;
        let target = match active {
            Some(a) => 1 - a.min(1),
            None => 1 - read_pointer(flash, layout).selected,
        };
        let slot = &layout.slots[target];
        if let Some(n) = size {
            if n > u64::from(slot.size) {
                return Err(FrontendError::TooLarge {
                    len: n,
                    slot: slot.name.clone(),
                    size: slot.size,
                });
            }
            if n != u64::from(slot.size) {
                return Err(FrontendError::WrongSize {
                    len: n,
                    slot: slot.name.clone(),
                    size: slot.size,
                });
            }
        }
        // The pointer must be writable before a byte is erased.
        let part = read_nvs(flash, &nvs)?;
        plan_set_u8(&part, NVS_NAMESPACE, NVS_KEY, target as u8).map_err(FrontendError::Nvs)?;
        Ok(Self {
            layout: layout.clone(),
            target,
            nvs,
            expected_sha256,
            written: 0,
            pending: Vec::with_capacity(SECTOR_SIZE as usize),
            received: 0,
            hasher: Sha256::new(),
        })
    }

    /// The slot being written.
    pub fn target(&self) -> &Region {
        &self.layout.slots[self.target]
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Streams `data` into the slot: whole sectors are erased and programmed
    /// as they fill.
    pub fn write(&mut self, flash: &mut SimFlash, mut data: &[u8]) -> Result<(), FrontendError> {
        let slot = self.layout.slots[self.target].clone();
        let new_len = self.received + data.len() as u64;
        if new_len > u64::from(slot.size) {
            return Err(FrontendError::TooLarge {
                len: new_len,
                slot: slot.name,
                size: slot.size,
            });
        }
        self.received = new_len;
        self.hasher.update(data);
        let sector = SECTOR_SIZE as usize;
        while !data.is_empty() {
            let take = (sector - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == sector {
                self.program_pending(flash, &slot)?;
            }
        }
        Ok(())
    }

    fn program_pending(
        &mut self,
        flash: &mut SimFlash,
        slot: &Region,
    ) -> Result<(), SimFlashError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let at = slot.offset + self.written;
        flash.erase(at, at + SECTOR_SIZE)?;
        while !self.pending.len().is_multiple_of(4) {
            self.pending.push(0xFF);
        }
        flash.write(at, &self.pending)?;
        self.written += SECTOR_SIZE;
        self.pending.clear();
        Ok(())
    }

    /// Verifies the slot as written and switches the pointer to it.
    pub fn finish(mut self, flash: &mut SimFlash) -> Result<Switched, FrontendError> {
        let slot = self.layout.slots[self.target].clone();
        if self.received != u64::from(slot.size) {
            return Err(FrontendError::WrongSize {
                len: self.received,
                slot: slot.name,
                size: slot.size,
            });
        }
        self.program_pending(flash, &slot)?;
        let streamed: [u8; 32] = self.hasher.clone().finalize().into();
        if let Some(want) = self.expected_sha256 {
            if want != streamed {
                return Err(FrontendError::Sha256Mismatch {
                    expected: hex(&want),
                    got: hex(&streamed),
                });
            }
        }
        let img = read_slot(flash, &slot)?;
        let stored: [u8; 32] = Sha256::digest(&img).into();
        if stored != streamed {
            return Err(FrontendError::Readback { slot: slot.name });
        }
        let summary = inspect_ui_with(&img, &self.layout.limits(img.len())).map_err(|problem| {
            FrontendError::BadUi {
                slot: slot.name.clone(),
                problem,
            }
        })?;
        let want = self.target as u8;
        let part = read_nvs(flash, &self.nvs)?;
        let ops = plan_set_u8(&part, NVS_NAMESPACE, NVS_KEY, want).map_err(FrontendError::Nvs)?;
        crate::nvs::apply(flash, self.nvs.offset, &ops)?;
        let got = Nvs::load(&read_nvs(flash, &self.nvs)?)
            .ok()
            .and_then(|n| n.get_u8(NVS_NAMESPACE, NVS_KEY));
        if got != Some(want) {
            return Err(FrontendError::NvsReadback { want, got });
        }
        Ok(Switched {
            slot: slot.name,
            index: self.target,
            bytes: self.received,
            sha256: hex(&streamed),
            files: summary.files,
            nvs_writes: ops.len(),
        })
    }
}
