//! The resumable pull: [`pull_update`] is the device core's own
//! (`otter_device::service::Device::begin_pull_firmware`, through
//! [`super::core::core_pull`]); [`pull_with`] is a model of the same steps
//! with a hook, from which the tests make broken variants to prove the
//! table catches them. The slot is the only record of a
//! download in progress, and the image's first sector decides whether what
//! the slot holds is a prefix of this very release. [`pull_update`] is an
//! [`UpdateFn`](super::device::UpdateFn), so the table cuts it at every
//! flash operation and retries it after the cut, which is the resume.
//!
//! | step | flash writes |
//! |---|---|
//! | fetch the image's first sector; compare it with the slot's | none |
//! | **equal**: `resume_point` (the first all-0xFF sector, one back), `UpdateSession::resume` | erase `[at, roundup(size))`, sector `at` first |
//! | **else** (or the prefix does not verify as an image start): `erase_update_slot` (highest sector first), `begin` pre-erased | otadata invalidation (rollback); erase `[0, roundup(size))` |
//! | write the rest, `finish` (SHA-256 over what is in flash), `activate` | the image from `at` (or 0); otadata |
//!
//! Sector 0 is erased last and written first, so sector 0 holding exactly
//! the image's first bytes proves the erase finished before writing began.
//! The engine calls are the core's, in the core's order; the download
//! itself is the image in memory, delivered in TCP-segment-sized pieces.

use embedded_storage::nor_flash::ReadNorFlash;
use otter_format::partition::{PartitionTable, PartitionType, SubType, MAX_TABLE_LEN};
use otter_ota::session::{erase_update_slot, resume_point, UpdateRequest, UpdateSession};
use otter_ota::{DeviceConfig, OtaError, SlotId, SlotMap};
use sha2::{Digest, Sha256};

use crate::{SimFlash, SimFlashError};

use super::device::CHUNK;

/// Flash sector size.
pub const SECTOR: u32 = 4096;

type Res<T> = Result<T, OtaError<SimFlashError>>;

/// Where the NVS partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvsRegion {
    /// Flash offset.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// The device's NVS partition (the first data/nvs in the table), if any.
pub fn nvs_region(flash: &mut SimFlash, cfg: &DeviceConfig) -> Option<NvsRegion> {
    let mut buf = vec![0u8; MAX_TABLE_LEN];
    flash.read(cfg.table_offset, &mut buf).ok()?;
    let table = PartitionTable::from_binary(&buf).ok()?;
    let p = table.find(PartitionType::DATA, SubType::NVS)?;
    Some(NvsRegion {
        offset: p.offset,
        size: p.size,
    })
}

/// Where a resume continues, given where the prefix really ends
/// (`resume_point`'s answer). The core keeps it; a broken variant in the
/// tests trusts the sector before it too.
pub type ResumeAt = fn(at: u32, size: u32) -> u32;

fn fresh(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    req: UpdateRequest,
) -> Res<UpdateSession> {
    erase_update_slot(flash, cfg, running, req.size.unwrap_or(0))?;
    UpdateSession::begin(flash, cfg, running, req.with_pre_erased(true))
}

/// The pull of `image` into the slot after `running` (module docs), with
/// the resume point adjusted by `resume_at`. Returns the slot that boots next.
pub fn pull_with(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    image: &[u8],
    resume_at: ResumeAt,
) -> Res<SlotId> {
    let size = u32::try_from(image.len()).map_err(|_| OtaError::Misuse("image too large"))?;
    let sha: [u8; 32] = Sha256::digest(image).into();
    let req = UpdateRequest::new(Some(size), Some(sha));
    let map = SlotMap::read(flash, cfg.table_offset)?;
    let target = map
        .next_update_slot(Some(running))
        .ok_or(OtaError::NoOtaSlots)?;
    let region = *map.region(target).ok_or(OtaError::NoSuchSlot(target))?;

    // The first sector of the release, as the agent fetches it first.
    let head = image
        .get(..image.len().min(SECTOR as usize))
        .unwrap_or_default();
    let mut in_flash = vec![0u8; head.len()];
    flash
        .read(region.offset, &mut in_flash)
        .map_err(OtaError::Flash)?;
    let same_head = !head.is_empty() && in_flash == head;

    let (session, from) = if same_head {
        let at = resume_point(flash, &region, size)?;
        if at == 0 {
            (fresh(flash, cfg, running, req)?, 0)
        } else {
            let at = resume_at(at, size);
            match UpdateSession::resume(flash, cfg, running, req, at) {
                Ok(s) => (s, at),
                Err(OtaError::Flash(e)) => return Err(OtaError::Flash(e)),
                // The prefix does not verify as an image start: start over.
                Err(_) => (fresh(flash, cfg, running, req)?, 0),
            }
        }
    } else {
        (fresh(flash, cfg, running, req)?, 0)
    };
    let mut s = session;
    for c in image.get(from as usize..).unwrap_or_default().chunks(CHUNK) {
        s.write(flash, c)?;
    }
    s.finish(flash)?.activate(flash)
}

/// The pull the device ships: the device core's own update path for a
/// pulled firmware ([`super::core::core_pull`], otter-device's
/// `Device::begin_pull_firmware`), not this module's model of it.
pub fn pull_update(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    image: &[u8],
) -> Res<SlotId> {
    super::core::core_pull(flash, cfg, running, image)
}
