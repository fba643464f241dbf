//! App-level trial boot, for bootloaders built without app rollback.
//!
//! ESP-IDF's bootloader with `CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE` turns a
//! new image into PENDING_VERIFY on its first boot and rolls it back if it
//! reboots before confirming. Without that option (espflash's bundled
//! bootloader, many Arduino builds) it boots the newest valid entry whatever
//! its state, so a new image that crashes or hangs before it can roll itself
//! back crash-loops forever. [`trial_boot`], called first thing at startup
//! (after [`crate::lifecycle::recover`], with the watchdog armed, before
//! anything that can hang), gives such a device the same promise:
//!
//! 1. The running image is *on trial* when the active otadata entry selects
//!    it, its state is not VALID, and another image would boot if it were
//!    marked invalid ([`crate::lifecycle::rollback_possible`]).
//! 2. Each trial boot counts one attempt by programming one 4-byte word of
//!    the active otadata sector from `FFFFFFFF` to `00000000`, in the area
//!    from [`COUNT_OFFSET`] that ESP-IDF never reads (it reads bytes 0..32 of
//!    each sector; otter's confirm intent uses 0x20..0x44). Every write of
//!    an entry, ESP-IDF's and otter's, erases its sector first, so a newly
//!    selected image always starts with no attempts counted, and nothing is
//!    ever programmed over a programmed byte.
//! 3. When the attempts are used up, the entry is marked INVALID
//!    ([`crate::lifecycle::mark_invalid_and_rollback`]) and the caller
//!    reboots: the previous image boots. A crash, a panic and the watchdog
//!    all end in a reset, so a broken image runs out of attempts.
//! 4. A healthy image ends its trial with [`end_trial`] (state VALID, through
//!    the same power-safe confirm as [`crate::lifecycle::confirm`]).
//!
//! # Power cuts
//!
//! Counting an attempt is one 4-byte program and nothing else: a cut before
//! it loses that count (the image gets one more attempt), a torn one leaves a
//! word that is no longer erased, which counts. Rolling back is
//! [`crate::lifecycle::mark_invalid_and_rollback`]'s erase and program: a
//! cut between the two leaves the sector erased and the other entry boots,
//! which is the rollback. Every state in between boots a verified image, old
//! or new; `crates/otter-ota/tests/trial.rs` cuts at every operation.

use embedded_storage::nor_flash::NorFlash;
use otter_format::otadata::OtaState;
use otter_format::SECTOR_SIZE;

use crate::error::OtaError;
use crate::io::read_otadata;
use crate::lifecycle::{confirm_when, mark_invalid_and_rollback, rollback_possible};
use crate::slots::{SlotId, SlotMap};
use crate::DeviceConfig;

/// Offset in the active otadata sector of the attempt words.
pub const COUNT_OFFSET: u32 = 0x100;
/// Attempts that can be counted: one word each, 256 bytes.
pub const MAX_ATTEMPTS: u8 = 64;

/// What [`trial_boot`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trial {
    /// The bootloader has app rollback: PENDING_VERIFY and the self-test
    /// window decide, as in ESP-IDF. Nothing was written.
    BootloaderDecides,
    /// The running image is not on trial: it is VALID (confirmed), not the
    /// active entry's, or there is no otadata entry for it.
    NotOnTrial,
    /// The running image is unconfirmed, but nothing else would boot: there
    /// is nothing to roll back to, so no attempts are counted.
    NoFallback,
    /// This boot is attempt `attempt` of `of`: run the self-test and call
    /// [`end_trial`] when it passes.
    Attempt {
        /// 1-based.
        attempt: u8,
        /// The configured number of attempts.
        of: u8,
    },
    /// The attempts are used up: the entry is now INVALID. Reboot; the
    /// previous image boots.
    RolledBack {
        /// Attempts that had been counted.
        attempts: u8,
    },
}

/// Counts this boot as an attempt of the running image (see the module
/// docs), or rolls it back when `attempts` (1..=[`MAX_ATTEMPTS`]) are used
/// up. `running` is the slot the bootloader booted.
pub fn trial_boot<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    running: SlotId,
    attempts: u8,
) -> Result<Trial, OtaError<F::Error>> {
    if attempts == 0 || attempts > MAX_ATTEMPTS {
        return Err(OtaError::Misuse("trial attempts must be 1..=64"));
    }
    if cfg.rollback {
        return Ok(Trial::BootloaderDecides);
    }
    let map = SlotMap::read(flash, cfg.table_offset)?;
    let Some(od) = map.otadata().copied() else {
        return Ok(Trial::NotOnTrial);
    };
    let otadata = read_otadata(flash, &od)?;
    let Some(active) = otadata.active() else {
        return Ok(Trial::NotOnTrial);
    };
    let Some(entry) = otadata.entries.get(active).copied() else {
        return Ok(Trial::NotOnTrial);
    };
    if map.slot_for_seq(entry.seq) != Some(running) || entry.ota_state() == OtaState::Valid {
        return Ok(Trial::NotOnTrial);
    }
    if !rollback_possible(flash, cfg)? {
        return Ok(Trial::NoFallback);
    }
    let sector_at = od.offset + active as u32 * SECTOR_SIZE;
    let mut words = [0u8; MAX_ATTEMPTS as usize * 4];
    flash
        .read(sector_at + COUNT_OFFSET, &mut words)
        .map_err(OtaError::Flash)?;
    let used = words
        .chunks_exact(4)
        .take_while(|w| w.iter().any(|&b| b != 0xFF))
        .count();
    let used = u8::try_from(used).unwrap_or(MAX_ATTEMPTS);
    if used >= attempts {
        mark_invalid_and_rollback(flash, cfg)?;
        return Ok(Trial::RolledBack { attempts: used });
    }
    flash
        .write(sector_at + COUNT_OFFSET + 4 * u32::from(used), &[0u8; 4])
        .map_err(OtaError::Flash)?;
    Ok(Trial::Attempt {
        attempt: used + 1,
        of: attempts,
    })
}

/// Ends the running image's trial: its entry becomes VALID (the power-safe
/// confirm of [`crate::lifecycle::confirm`], which with rollback only
/// confirms PENDING_VERIFY; here NEW and UNDEFINED too). `true` when an
/// entry was rewritten.
pub fn end_trial<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    running: SlotId,
) -> Result<bool, OtaError<F::Error>> {
    confirm_when(flash, cfg, running, |s| {
        matches!(
            s,
            OtaState::PendingVerify | OtaState::New | OtaState::Undefined
        )
    })
}
