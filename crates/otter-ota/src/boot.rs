//! A model of ESP-IDF's second-stage bootloader: which image it boots.
//!
//! [`boot`] is a function of the flash contents and the bootloader options
//! ([`DeviceConfig`]). It does what `bootloader_utility.c` does, in its order:
//!
//! 1. Read and check the partition table (see [`SlotMap::read`]).
//! 2. No otadata partition: start at factory.
//! 3. Read both otadata entries. With rollback enabled, every entry in
//!    PENDING_VERIFY becomes ABORTED (the app rebooted before confirming):
//!    one sector erase and one 32-byte program per entry.
//! 4. Both entries invalid, or no OTA app: factory if there is one, else
//!    `ota_0` (and, when both entries are empty or fail their CRC, remember
//!    "initial contents").
//! 5. Otherwise the active entry (larger valid sequence number) selects slot
//!    `(seq - 1) % boot_app_count`; with rollback, a NEW entry becomes
//!    PENDING_VERIFY (erase + program) **before** the image is verified.
//!    No active entry: factory, then everything.
//! 6. Try to load: the selected index, then each lower index down to factory,
//!    then each higher OTA index, then the test app. Each candidate must pass
//!    the anti-rollback check and full verification. Falling back never
//!    rewrites otadata, except that with "initial contents" a booted OTA slot
//!    `i` gets sector 0 = { seq i + 1, VALID }.
//!
//! With anti-rollback, step 4/5 differ: initial contents start at factory
//! (which anti-rollback does not support, so effectively ota_0 and up), and the
//! active entry is chosen only among entries whose slot's image has
//! `secure_version >=` the eFuse counter; booting a VALID entry raises the
//! counter to the image's secure_version.
//!
//! What is not modelled: GPIO factory-reset and test pins, chip-revision and
//! eFuse block-revision checks, flash encryption, secure boot signatures, and
//! RAM-segment overlap with the bootloader's own memory.

use embedded_storage::nor_flash::NorFlash;
use otter_format::image::{ImageInfo, VerifyOptions};
use otter_format::otadata::{select, OtaState, Otadata, SelectEntry, SEQ_EMPTY};

use crate::error::OtaError;
use crate::io::{read_otadata, verify_slot, write_otadata_entry};
use crate::slots::{Region, SlotId, SlotMap};
use crate::DeviceConfig;

/// The bootloader's `FACTORY_INDEX`.
const FACTORY_INDEX: i32 = -1;

/// What the bootloader did at power-on.
#[derive(Debug, Clone)]
pub struct BootOutcome {
    /// The slot otadata selected (before any fallback), `None` for "factory
    /// or whatever boots".
    pub selected: Option<SlotId>,
    /// The slot that booted, with its verified image, or `None` when nothing
    /// bootable was found (the device resets forever: bricked).
    pub booted: Option<Booted>,
    /// otadata writes the bootloader made, in order.
    pub writes: BootWrites,
    /// The anti-rollback counter after boot (raised when a VALID image with a
    /// higher secure_version booted).
    pub anti_rollback: Option<u32>,
}

/// The image that booted.
#[derive(Debug, Clone)]
pub struct Booted {
    /// Its slot.
    pub slot: SlotId,
    /// Where the slot is.
    pub region: Region,
    /// Whether it is not the slot otadata selected (the bootloader fell back).
    pub fell_back: bool,
    /// The verified image.
    pub image: ImageInfo,
}

/// Why an otadata sector was written by the bootloader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootWriteReason {
    /// PENDING_VERIFY → ABORTED: the app did not confirm before this reboot.
    Abort,
    /// NEW → PENDING_VERIFY: first boot of a new image.
    FirstBoot,
    /// "Initial contents": otadata was empty and OTA slot N booted.
    SetActualSeq,
}

/// One otadata write made by the bootloader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootWrite {
    /// Sector 0 or 1.
    pub sector: usize,
    /// What was programmed.
    pub entry: SelectEntry,
    /// Why.
    pub reason: BootWriteReason,
}

/// The bootloader's otadata writes: at most two aborts plus one more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BootWrites {
    items: [Option<BootWrite>; 4],
}

impl BootWrites {
    fn push(&mut self, w: BootWrite) {
        if let Some(slot) = self.items.iter_mut().find(|i| i.is_none()) {
            *slot = Some(w);
        }
    }

    /// The writes, in order.
    pub fn iter(&self) -> impl Iterator<Item = &BootWrite> {
        self.items.iter().flatten()
    }
}

/// Powers the device on: runs the bootloader model over `flash`.
///
/// An `Err` means the bootloader could not even start (flash failure or an
/// unreadable partition table: the real one resets in a loop). `booted: None`
/// means it found nothing bootable.
pub fn boot<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
) -> Result<BootOutcome, OtaError<F::Error>> {
    let map = SlotMap::read(flash, cfg.table_offset)?;
    let mut writes = BootWrites::default();
    let mut counter = cfg.anti_rollback;

    // With anti-rollback, booting an entry that is already VALID raises the
    // eFuse counter to the image's secure_version (ESP-IDF's
    // `update_anti_rollback`).
    let mut raise_if_selected_boots = false;
    let (start, initial) = match map.otadata().copied() {
        None => (FACTORY_INDEX, false),
        Some(od) => select_start(
            flash,
            cfg,
            &map,
            &od,
            &mut writes,
            &mut raise_if_selected_boots,
        )?,
    };
    let selected = index_slot(start);

    let found = load_boot_image(flash, cfg, &map, start, counter)?;
    let booted = match found {
        None => None,
        Some((index, slot, region, image)) => {
            if initial && index > FACTORY_INDEX {
                if let Some(od) = map.otadata() {
                    let entry = SelectEntry::new((index as u32) + 1, OtaState::Valid);
                    write_otadata_entry(flash, od, 0, &entry)?;
                    writes.push(BootWrite {
                        sector: 0,
                        entry,
                        reason: BootWriteReason::SetActualSeq,
                    });
                    raise_counter(&mut counter, &image);
                }
            }
            if raise_if_selected_boots && Some(slot) == selected {
                raise_counter(&mut counter, &image);
            }
            Some(Booted {
                slot,
                region,
                fell_back: Some(slot) != selected,
                image,
            })
        }
    };
    Ok(BootOutcome {
        selected,
        booted,
        writes,
        anti_rollback: counter,
    })
}

/// Steps 3–5: the index to start loading from, and "initial contents".
fn select_start<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    map: &SlotMap,
    od: &Region,
    writes: &mut BootWrites,
    raise_if_selected_boots: &mut bool,
) -> Result<(i32, bool), OtaError<F::Error>> {
    let mut otadata = read_otadata(flash, od)?;
    if cfg.rollback {
        for (sector, entry) in otadata.entries.iter_mut().enumerate() {
            if entry.ota_state() == OtaState::PendingVerify {
                entry.state = OtaState::Aborted.raw();
                write_otadata_entry(flash, od, sector, entry)?;
                writes.push(BootWrite {
                    sector,
                    entry: *entry,
                    reason: BootWriteReason::Abort,
                });
            }
        }
    }
    let app_count = u32::from(map.boot_app_count());

    if let Some(efuse) = cfg.anti_rollback {
        if otadata.is_initial() {
            return Ok((FACTORY_INDEX, true));
        }
        let mut ok = [false; 2];
        for (i, e) in otadata.entries.iter().enumerate() {
            if e.is_valid() && app_count > 0 {
                let index = e.seq.wrapping_sub(1) % app_count;
                ok[i] = match map.ota(index as u8) {
                    Some(r) => secure_version_ok(flash, r, efuse)?,
                    None => false,
                };
            }
        }
        return match select(ok, &otadata.entries, true) {
            Some(a) => {
                let index = otadata.entries[a].seq.wrapping_sub(1) % app_count;
                *raise_if_selected_boots = otadata.entries[a].ota_state() == OtaState::Valid;
                first_boot_transition(flash, cfg, od, &mut otadata, a, writes)?;
                Ok((index as i32, false))
            }
            None => Ok((FACTORY_INDEX, false)),
        };
    }

    if (otadata.entries[0].is_invalid() && otadata.entries[1].is_invalid()) || app_count == 0 {
        if map.factory().is_some() {
            return Ok((FACTORY_INDEX, false));
        }
        let empty = |e: &SelectEntry| e.seq == SEQ_EMPTY || !e.crc_ok();
        let initial = otadata.entries.iter().all(empty);
        return Ok((0, initial));
    }
    match otadata.active() {
        Some(a) => {
            let index = otadata.entries[a].seq.wrapping_sub(1) % app_count;
            first_boot_transition(flash, cfg, od, &mut otadata, a, writes)?;
            Ok((index as i32, false))
        }
        None => Ok((FACTORY_INDEX, false)),
    }
}

/// With rollback, the active NEW entry becomes PENDING_VERIFY before the
/// image is even verified.
fn first_boot_transition<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    od: &Region,
    otadata: &mut Otadata,
    active: usize,
    writes: &mut BootWrites,
) -> Result<(), OtaError<F::Error>> {
    if !cfg.rollback {
        return Ok(());
    }
    let Some(entry) = otadata.entries.get_mut(active) else {
        return Ok(());
    };
    if entry.ota_state() == OtaState::New {
        entry.state = OtaState::PendingVerify.raw();
        write_otadata_entry(flash, od, active, entry)?;
        writes.push(BootWrite {
            sector: active,
            entry: *entry,
            reason: BootWriteReason::FirstBoot,
        });
    }
    Ok(())
}

/// Step 6: the load order, with verification and the anti-rollback check.
#[allow(clippy::type_complexity)]
fn load_boot_image<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    map: &SlotMap,
    start: i32,
    counter: Option<u32>,
) -> Result<Option<(i32, SlotId, Region, ImageInfo)>, OtaError<F::Error>> {
    let app_count = i32::from(map.boot_app_count());
    let mut index = start;
    while index >= FACTORY_INDEX {
        if let Some(found) = try_index(flash, cfg, map, index, counter)? {
            return Ok(Some(found));
        }
        index -= 1;
    }
    for index in (start + 1).max(0)..app_count {
        if let Some(found) = try_index(flash, cfg, map, index, counter)? {
            return Ok(Some(found));
        }
    }
    if let Some(test) = map.test().copied() {
        if let Some(image) = try_region(flash, cfg, &test, counter)? {
            return Ok(Some((-2, SlotId::Test, test, image)));
        }
    }
    Ok(None)
}

#[allow(clippy::type_complexity)]
fn try_index<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    map: &SlotMap,
    index: i32,
    counter: Option<u32>,
) -> Result<Option<(i32, SlotId, Region, ImageInfo)>, OtaError<F::Error>> {
    let Some(slot) = index_slot(index) else {
        return Ok(None);
    };
    let Some(region) = map.region(slot).copied() else {
        return Ok(None);
    };
    if region.size == 0 {
        return Ok(None);
    }
    Ok(try_region(flash, cfg, &region, counter)?.map(|image| (index, slot, region, image)))
}

fn try_region<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    region: &Region,
    counter: Option<u32>,
) -> Result<Option<ImageInfo>, OtaError<F::Error>> {
    let mut opts = VerifyOptions::new();
    opts.chip = Some(cfg.chip);
    opts.min_secure_version = counter;
    Ok(verify_slot(flash, region, opts)?.ok())
}

fn secure_version_ok<F: NorFlash>(
    flash: &mut F,
    region: &Region,
    efuse: u32,
) -> Result<bool, OtaError<F::Error>> {
    let mut opts = VerifyOptions::new();
    opts.check_integrity = false;
    opts.require_app = false;
    Ok(match verify_slot(flash, region, opts)? {
        Ok(info) => info.app_desc.is_some_and(|d| d.secure_version() >= efuse),
        Err(_) => false,
    })
}

fn raise_counter(counter: &mut Option<u32>, image: &ImageInfo) {
    if let (Some(c), Some(desc)) = (counter.as_mut(), image.app_desc.as_ref()) {
        *c = (*c).max(desc.secure_version());
    }
}

/// The slot for a bootloader index (`index_to_partition`).
fn index_slot(index: i32) -> Option<SlotId> {
    match index {
        FACTORY_INDEX => Some(SlotId::Factory),
        -2 => Some(SlotId::Test),
        0..=15 => Some(SlotId::Ota(index as u8)),
        _ => None,
    }
}
