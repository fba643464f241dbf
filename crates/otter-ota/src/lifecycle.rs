//! The running image's lifecycle: its state, confirm, mark invalid and roll
//! back, and recovery of an interrupted confirm or a torn state word.
//!
//! # Confirm policy
//!
//! ESP-IDF confirms (`esp_ota_mark_app_valid_cancel_rollback`) by rewriting
//! the active otadata sector in place: erase it, then program the entry with
//! state VALID. A power cut between the erase and the program leaves only the
//! other sector, which selects the *previous* image: the device comes back on
//! the old firmware, with no ABORTED or INVALID entry to say why. The app had
//! decided the new image was good, and it is silently gone.
//!
//! otter keeps ESP-IDF's bytes and adds a confirm intent that ESP-IDF never
//! reads (it only reads the first 32 bytes of each otadata sector):
//!
//! 1. Program an intent record at offset [`INTENT_OFFSET`] of the *inactive*
//!    sector (its bytes there are still erased, so no erase is needed and its
//!    entry is untouched): magic, the sequence number being confirmed, the
//!    slot, a CRC.
//! 2. Rewrite the active sector in place with state VALID, exactly as ESP-IDF.
//! 3. Program the intent's done word.
//!
//! A cut before (1) completes is ESP-IDF's reboot-while-pending: the image is
//! aborted and rolled back, with the ABORTED record that says so. A cut after
//! (1) and before (3) is finished at the next boot by [`recover`]: a live
//! intent whose entry is not VALID in the other sector, for a slot whose image
//! verifies, is completed by writing that entry VALID, and the caller reboots
//! into it. Every intermediate state is a state ESP-IDF's bootloader and
//! `esp_ota_ops` read as one of "old image" or "new image".

use embedded_storage::nor_flash::NorFlash;
use otter_format::image::VerifyOptions;
use otter_format::otadata::{esp_crc32, OtaState, Otadata, SelectEntry};
use otter_format::SECTOR_SIZE;

use crate::error::OtaError;
use crate::io::{read_otadata, verify_slot, write_otadata_entry};
use crate::slots::{Region, SlotId, SlotMap};
use crate::DeviceConfig;

pub use crate::diagnostics::{boot_slot, diagnostics, Diagnostics};

/// Offset of the confirm intent inside an otadata sector (ESP-IDF reads only
/// bytes 0..32).
pub const INTENT_OFFSET: u32 = 0x20;
/// Offset of the intent's done word inside an otadata sector.
pub const INTENT_DONE_OFFSET: u32 = 0x40;
/// Magic of the confirm intent, "OTRC".
pub const INTENT_MAGIC: u32 = u32::from_le_bytes(*b"OTRC");

/// A confirm intent: 16 bytes at [`INTENT_OFFSET`].
///
/// | Off | Len | Field |
/// |-----|-----|-------|
/// | 0   | 4   | magic `OTRC` |
/// | 4   | 4   | seq being confirmed |
/// | 8   | 4   | slot index (ota_N) |
/// | 12  | 4   | `esp_crc32` of bytes 0..12 |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmIntent {
    /// Sequence number of the entry being confirmed.
    pub seq: u32,
    /// The OTA slot it selects.
    pub slot: u8,
}

impl ConfirmIntent {
    fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&INTENT_MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..12].copy_from_slice(&u32::from(self.slot).to_le_bytes());
        let crc = esp_crc32(&b[0..12]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8; 16]) -> Option<Self> {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if word(0) != INTENT_MAGIC || word(12) != esp_crc32(&b[0..12]) {
            return None;
        }
        Some(Self {
            seq: word(4),
            slot: u8::try_from(word(8)).ok()?,
        })
    }
}

/// `esp_ota_get_state_partition`: the state of the first entry (sector 0,
/// then 1) with a good CRC whose slot is `slot`.
pub fn state_of(otadata: &Otadata, map: &SlotMap, slot: SlotId) -> Option<OtaState> {
    otadata
        .entries
        .iter()
        .filter(|e| e.crc_ok() && e.seq != otter_format::otadata::SEQ_EMPTY)
        .find(|e| map.slot_for_seq(e.seq) == Some(slot))
        .map(SelectEntry::ota_state)
}

/// The running image's rollback state, as `esp_ota_get_state_partition`
/// reports it (`None`: no entry, e.g. factory or first boot).
pub fn running_state<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    running: SlotId,
) -> Result<Option<OtaState>, OtaError<F::Error>> {
    let map = SlotMap::read(flash, cfg.table_offset)?;
    let Some(od) = map.otadata().copied() else {
        return Ok(None);
    };
    let otadata = read_otadata(flash, &od)?;
    Ok(state_of(&otadata, &map, running))
}

/// `esp_ota_mark_app_valid_cancel_rollback`, with otter's power-safe confirm
/// policy (see the module docs). Does nothing unless the running image's
/// active entry is PENDING_VERIFY.
pub fn confirm<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    running: SlotId,
) -> Result<bool, OtaError<F::Error>> {
    confirm_when(flash, cfg, running, |s| s == OtaState::PendingVerify)
}

/// [`confirm`] for an active entry of `running` whose state `pending` accepts.
pub(crate) fn confirm_when<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    running: SlotId,
    pending: impl Fn(OtaState) -> bool,
) -> Result<bool, OtaError<F::Error>> {
    let map = SlotMap::read(flash, cfg.table_offset)?;
    let od = *map.otadata().ok_or(OtaError::NoOtadata)?;
    let otadata = read_otadata(flash, &od)?;
    let Some(active) = otadata.active() else {
        return Ok(false);
    };
    let entry = otadata.entries[active];
    if !pending(entry.ota_state()) || map.slot_for_seq(entry.seq) != Some(running) {
        return Ok(false);
    }
    let SlotId::Ota(slot) = running else {
        return Ok(false);
    };
    let inactive = 1 - active;
    let intent_at = od.offset + inactive as u32 * SECTOR_SIZE + INTENT_OFFSET;
    let wrote_intent =
        if region_erased(flash, intent_at, 16 + (INTENT_DONE_OFFSET - INTENT_OFFSET))? {
            let intent = ConfirmIntent {
                seq: entry.seq,
                slot,
            };
            flash
                .write(intent_at, &intent.to_bytes())
                .map_err(OtaError::Flash)?;
            true
        } else {
            false
        };
    let mut valid = entry;
    valid.state = OtaState::Valid.raw();
    write_otadata_entry(flash, &od, active, &valid)?;
    if wrote_intent {
        let done_at = od.offset + inactive as u32 * SECTOR_SIZE + INTENT_DONE_OFFSET;
        flash.write(done_at, &[0u8; 4]).map_err(OtaError::Flash)?;
    }
    Ok(true)
}

/// What [`recover`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing was interrupted.
    Clean,
    /// An interrupted confirm of `slot` was completed; if it is not the
    /// running slot, reboot so it runs.
    ConfirmCompleted {
        /// The slot now confirmed.
        slot: SlotId,
    },
    /// The active entry (selecting `slot`) had a state word ESP-IDF never
    /// writes, left by a torn otadata write; it was rewritten as
    /// PENDING_VERIFY (rollback on: the image must prove itself again) or
    /// UNDEFINED (rollback off).
    StateRepaired {
        /// The slot the repaired entry selects.
        slot: SlotId,
    },
}

/// Completes an otadata write that a power cut interrupted. Call once at
/// startup, before anything else touches otadata.
///
/// 1. A live confirm intent is completed (see the module docs).
/// 2. An active entry whose state word is none of ESP-IDF's values is
///    repaired. A torn erase or program of an otadata sector can keep the
///    sequence number and its CRC intact while garbling the state (for
///    example NEW `00000000` half-programmed from `FFFFFFFF`). ESP-IDF's
///    bootloader counts such an entry as valid and, since it is neither NEW
///    nor PENDING_VERIFY, boots its image with no rollback protection, and
///    `esp_ota_mark_app_valid_cancel_rollback` does nothing for it: an
///    unconfirmed image would silently become permanent. The entry is
///    rewritten in place (erase + program, as ESP-IDF writes states) as
///    PENDING_VERIFY with rollback, so the running image must confirm itself
///    before the next reboot or be rolled back; UNDEFINED without. A cut
///    during the rewrite leaves either the same garbled entry (repaired at
///    the next startup) or an erased sector (the other entry boots).
pub fn recover<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
) -> Result<Recovery, OtaError<F::Error>> {
    let map = SlotMap::read(flash, cfg.table_offset)?;
    let Some(od) = map.otadata().copied() else {
        return Ok(Recovery::Clean);
    };
    if let Some(done) = complete_confirm(flash, cfg, &map, &od)? {
        return Ok(done);
    }
    let otadata = read_otadata(flash, &od)?;
    let Some(active) = otadata.active() else {
        return Ok(Recovery::Clean);
    };
    let mut entry = otadata.entries[active];
    let (OtaState::Unknown(_), Some(slot)) = (entry.ota_state(), map.slot_for_seq(entry.seq))
    else {
        return Ok(Recovery::Clean);
    };
    entry.state = if cfg.rollback {
        OtaState::PendingVerify
    } else {
        OtaState::Undefined
    }
    .raw();
    write_otadata_entry(flash, &od, active, &entry)?;
    Ok(Recovery::StateRepaired { slot })
}

/// Step 1 of [`recover`]: completes a live confirm intent, if any.
fn complete_confirm<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    map: &SlotMap,
    od: &Region,
) -> Result<Option<Recovery>, OtaError<F::Error>> {
    for sector in 0..2usize {
        let base = od.offset + sector as u32 * SECTOR_SIZE;
        let mut raw = [0u8; 16];
        flash
            .read(base + INTENT_OFFSET, &mut raw)
            .map_err(OtaError::Flash)?;
        let Some(intent) = ConfirmIntent::from_bytes(&raw) else {
            continue;
        };
        let mut done = [0u8; 4];
        flash
            .read(base + INTENT_DONE_OFFSET, &mut done)
            .map_err(OtaError::Flash)?;
        if done != [0xFF; 4] {
            continue;
        }
        let otadata = read_otadata(flash, od)?;
        let other = 1 - sector;
        let e = otadata.entries[other];
        if e.crc_ok() && e.seq == intent.seq && e.ota_state() == OtaState::Valid {
            // The entry is written; only the done word was lost.
            flash
                .write(base + INTENT_DONE_OFFSET, &[0u8; 4])
                .map_err(OtaError::Flash)?;
            return Ok(Some(Recovery::Clean));
        }
        if e.crc_ok() && e.seq != intent.seq && e.seq != otter_format::otadata::SEQ_EMPTY {
            // Superseded by a later selection.
            continue;
        }
        let slot = SlotId::Ota(intent.slot);
        let Some(region) = map.region(slot).copied() else {
            continue;
        };
        if !slot_verifies(flash, cfg, &region)? {
            continue;
        }
        let entry = SelectEntry::new(intent.seq, OtaState::Valid);
        write_otadata_entry(flash, od, other, &entry)?;
        flash
            .write(base + INTENT_DONE_OFFSET, &[0u8; 4])
            .map_err(OtaError::Flash)?;
        return Ok(Some(Recovery::ConfirmCompleted { slot }));
    }
    Ok(None)
}

/// `esp_ota_check_rollback_is_possible`: whether another image would boot if
/// the running one were marked invalid.
pub fn rollback_possible<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
) -> Result<bool, OtaError<F::Error>> {
    let map = SlotMap::read(flash, cfg.table_offset)?;
    let Some(od) = map.otadata().copied() else {
        return Ok(false);
    };
    let otadata = read_otadata(flash, &od)?;
    Ok(rollback_target(flash, cfg, &map, &otadata)?.is_some())
}

/// The active sector, when another image would boot if its entry were
/// marked invalid: the other entry's slot if that entry is valid, else
/// factory (not with anti-rollback); the target must verify.
fn rollback_target<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    map: &SlotMap,
    otadata: &Otadata,
) -> Result<Option<usize>, OtaError<F::Error>> {
    let Some(active) = otadata.active() else {
        return Ok(None);
    };
    let other = otadata.entries[1 - active];
    let target = if other.is_valid() {
        map.slot_for_seq(other.seq)
            .and_then(|s| map.region(s).copied())
    } else if cfg.anti_rollback.is_some() {
        None
    } else {
        map.factory().copied()
    };
    Ok(match target {
        Some(r) if slot_verifies(flash, cfg, &r)? => Some(active),
        _ => None,
    })
}

/// `esp_ota_mark_app_invalid_rollback`: marks the active entry INVALID so the
/// next boot picks the previous image. Refused when no rollback target exists.
/// The caller reboots afterwards.
pub fn mark_invalid_and_rollback<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
) -> Result<(), OtaError<F::Error>> {
    let map = SlotMap::read(flash, cfg.table_offset)?;
    let od = *map.otadata().ok_or(OtaError::NoOtadata)?;
    let otadata = read_otadata(flash, &od)?;
    let active =
        rollback_target(flash, cfg, &map, &otadata)?.ok_or(OtaError::RollbackImpossible)?;
    // Cancel a live confirm intent for this entry, so recovery cannot undo
    // the rollback.
    let intent_done = od.offset + (1 - active) as u32 * SECTOR_SIZE + INTENT_DONE_OFFSET;
    if region_erased(flash, intent_done, 4)? {
        flash
            .write(intent_done, &[0u8; 4])
            .map_err(OtaError::Flash)?;
    }
    let mut entry = otadata.entries[active];
    entry.state = OtaState::Invalid.raw();
    write_otadata_entry(flash, &od, active, &entry)
}

fn slot_verifies<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    region: &Region,
) -> Result<bool, OtaError<F::Error>> {
    let mut opts = VerifyOptions::new();
    opts.chip = Some(cfg.chip);
    opts.min_secure_version = cfg.anti_rollback;
    Ok(verify_slot(flash, region, opts)?.is_ok())
}

fn region_erased<F: NorFlash>(
    flash: &mut F,
    at: u32,
    len: u32,
) -> Result<bool, OtaError<F::Error>> {
    let mut buf = [0u8; 64];
    let Some(b) = buf.get_mut(..len as usize) else {
        return Ok(false);
    };
    flash.read(at, b).map_err(OtaError::Flash)?;
    Ok(b.iter().all(|&x| x == 0xFF))
}
