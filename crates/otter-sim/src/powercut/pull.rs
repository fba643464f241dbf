//! The reference resumable pull: how a pull client drives otter-ota's
//! resume protocol (`otter_ota::session` module docs, "Resuming after a power
//! cut") with its tag in NVS. [`pull_update`] is an [`UpdateFn`], so the
//! power-cut harness can cut it at every flash operation and retry it after
//! the cut, which is the resume. otter-sim's `tests/resume_powercut.rs` is
//! the proof.
//!
//! | step | flash writes |
//! |---|---|
//! | read the tag `otter/pull_tag` (u32) from NVS | none |
//! | **tag = this release**: `resume_point`, `UpdateSession::resume` | erase `[at, roundup(size))`, sector `at` first |
//! | **else**: clear the tag; `erase_update_slot`; set the tag; `begin` pre-erased | NVS bitmap word; otadata invalidation (rollback); erase `[0, roundup(size))`; NVS entry + bitmap words |
//! | write the rest, `finish`, `activate` | the image from `at` (or 0); otadata |
//! | clear the tag | one NVS bitmap word |
//!
//! The tag is the first four bytes (little-endian) of the release's
//! SHA-256. When the resumed image fails its final check (the prefix was
//! not this release's), the pull starts over at once; when NVS cannot be
//! read or written (damaged, or full: otter does not garbage-collect NVS),
//! it updates without resume.

use embedded_storage::nor_flash::ReadNorFlash;
use otter_format::nvs::{plan_erase_key, plan_set_u32, FlashOp, Nvs};
use otter_format::partition::{PartitionTable, PartitionType, SubType, MAX_TABLE_LEN};
use otter_ota::session::{
    erase_update_slot, resume_point, UpdateRequest, UpdateSession, VerifiedUpdate,
};
use otter_ota::{DeviceConfig, OtaError, SlotId, SlotMap};
use sha2::{Digest, Sha256};

use crate::{SimFlash, SimFlashError};

use super::device::CHUNK;

/// NVS namespace of the pull's record.
pub const PULL_NAMESPACE: &str = "otter";
/// NVS key (u32) naming the release the inactive slot is receiving.
pub const PULL_TAG_KEY: &str = "pull_tag";

type Res<T> = Result<T, OtaError<SimFlashError>>;

/// The tag of a release: the first four bytes of its SHA-256, little-endian.
pub fn pull_tag(sha256: &[u8; 32]) -> u32 {
    u32::from_le_bytes([sha256[0], sha256[1], sha256[2], sha256[3]])
}

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

fn read_nvs(flash: &mut SimFlash, nvs: &NvsRegion) -> Option<Nvs> {
    let mut buf = vec![0u8; nvs.size as usize];
    flash.read(nvs.offset, &mut buf).ok()?;
    Nvs::load(&buf).ok()
}

/// The tag NVS holds, if NVS reads and has one.
pub fn stored_tag(flash: &mut SimFlash, nvs: &NvsRegion) -> Option<u32> {
    read_nvs(flash, nvs)?.get_u32(PULL_NAMESPACE, PULL_TAG_KEY)
}

/// What an NVS change did.
enum NvsWrite {
    Done,
    /// NVS could not plan it (damaged or full): go on without resume.
    Unusable,
}

/// Plans an NVS change with `plan` and programs it, one write at a time (NVS
/// rewrites bitmap words in place, clearing more bits, as NOR allows).
fn nvs_write(
    flash: &mut SimFlash,
    nvs: &NvsRegion,
    plan: impl FnOnce(&[u8]) -> Option<Vec<FlashOp>>,
) -> Res<NvsWrite> {
    let mut buf = vec![0u8; nvs.size as usize];
    flash.read(nvs.offset, &mut buf).map_err(OtaError::Flash)?;
    let Some(ops) = plan(&buf) else {
        return Ok(NvsWrite::Unusable);
    };
    crate::nvs::apply(flash, nvs.offset, &ops).map_err(OtaError::Flash)?;
    Ok(NvsWrite::Done)
}

fn clear_tag(flash: &mut SimFlash, nvs: Option<&NvsRegion>) -> Res<NvsWrite> {
    match nvs {
        Some(nvs) => nvs_write(flash, nvs, |b| {
            plan_erase_key(b, PULL_NAMESPACE, PULL_TAG_KEY).ok()
        }),
        None => Ok(NvsWrite::Unusable),
    }
}

/// The fresh start: clear the tag, erase the range, set the tag, begin
/// pre-erased. Without usable NVS: a plain `begin` (erase-ahead, no resume).
fn fresh(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    nvs: Option<&NvsRegion>,
    req: UpdateRequest,
    tag: u32,
) -> Res<UpdateSession> {
    let size = req.size.unwrap_or(0);
    if let NvsWrite::Done = clear_tag(flash, nvs)? {
        if let Some(nvs) = nvs {
            erase_update_slot(flash, cfg, running, size)?;
            let set = nvs_write(flash, nvs, |b| {
                plan_set_u32(b, PULL_NAMESPACE, PULL_TAG_KEY, tag).ok()
            })?;
            if let NvsWrite::Done = set {
                return UpdateSession::begin(flash, cfg, running, req.with_pre_erased(true));
            }
        }
    }
    UpdateSession::begin(flash, cfg, running, req.with_pre_erased(false))
}

fn stream(flash: &mut SimFlash, mut s: UpdateSession, rest: &[u8]) -> Res<VerifiedUpdate> {
    for c in rest.chunks(CHUNK) {
        s.write(flash, c)?;
    }
    s.finish(flash)
}

/// A resumable pull of `image` into the slot after `running`, as a pull
/// client runs it (module docs). Returns the slot that boots next.
pub fn pull_update(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    image: &[u8],
) -> Res<SlotId> {
    let size = u32::try_from(image.len()).map_err(|_| OtaError::Misuse("image too large"))?;
    let sha: [u8; 32] = Sha256::digest(image).into();
    let tag = pull_tag(&sha);
    let req = UpdateRequest::new(Some(size), Some(sha));
    let nvs = nvs_region(flash, cfg);
    let map = SlotMap::read(flash, cfg.table_offset)?;
    let target = map
        .next_update_slot(Some(running))
        .ok_or(OtaError::NoOtaSlots)?;
    let region = *map.region(target).ok_or(OtaError::NoSuchSlot(target))?;

    let stored = match nvs.as_ref() {
        Some(n) => stored_tag(flash, n),
        None => None,
    };
    let mut resumed = None;
    if stored == Some(tag) {
        let at = resume_point(flash, &region, size)?;
        match UpdateSession::resume(flash, cfg, running, req, at) {
            Ok(s) => resumed = Some((s, at)),
            Err(OtaError::Flash(e)) => return Err(OtaError::Flash(e)),
            // The prefix is not an image start: start over.
            Err(_) => {}
        }
    }
    let verified = match resumed {
        Some((s, at)) => match stream(flash, s, image.get(at as usize..).unwrap_or_default()) {
            Ok(v) => v,
            // The kept prefix was not this release's: start over.
            Err(e) if e.is_bad_image() => {
                let s = fresh(flash, cfg, running, nvs.as_ref(), req, tag)?;
                stream(flash, s, image)?
            }
            Err(e) => return Err(e),
        },
        None => {
            let s = fresh(flash, cfg, running, nvs.as_ref(), req, tag)?;
            stream(flash, s, image)?
        }
    };
    let slot = verified.activate(flash)?;
    // The slot now holds a finished release; a later pull starts fresh.
    clear_tag(flash, nvs.as_ref())?;
    Ok(slot)
}
