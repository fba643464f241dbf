//! The diagnostics snapshot: the seeds' `ota_print_info`, as data.
//!
//! [`diagnostics`] reads everything an operator asks first when an update
//! misbehaves, without allocating: the running, boot and next-update slots
//! with their addresses and sizes, both otadata entries (sequence number,
//! state, CRC validity, the slot each selects) and the active sector, the
//! running image's rollback state, and for every app slot a summary of its
//! app descriptor and the verification verdict the bootloader would reach.
//!
//! "Boot slot" is `esp_ota_get_boot_partition`: the slot otadata selects,
//! counted the app's way (OTA slots contiguous from `ota_0`); with no valid
//! entry (or no OTA slot), factory, else the lowest OTA slot, else test. It
//! can differ from the running slot: after `activate` and before the reboot,
//! or when the bootloader fell back because the selected image did not
//! verify.
//!
//! The snapshot is a fixed-size value (at most [`DIAGNOSTICS_SIZE`] bytes,
//! asserted at compile time; about 4.2 KiB, 18 slot reports of ~224 bytes),
//! with no heap. That is more than ESP-IDF's default 3.5 KiB main-task
//! stack: take it in a task with room for it, or into a `static`.
//!
//! Taking it verifies every app slot (one read of each image); for an image
//! that fails, the descriptor is still read from its fixed place, so the
//! report says which version did not verify.

use embedded_storage::nor_flash::NorFlash;
use otter_format::image::desc::APP_DESC_LEN;
use otter_format::image::{AppDesc, FixedStr, ImageError, VerifyOptions};
use otter_format::otadata::{OtaState, Otadata, SelectEntry};
use otter_format::SECTOR_SIZE;

use crate::error::OtaError;
use crate::io::{read_otadata, verify_slot};
use crate::lifecycle::state_of;
use crate::slots::{Region, SlotId, SlotMap};
use crate::DeviceConfig;

/// App slots a table can have: factory, `ota_0`..`ota_15`, test.
pub const MAX_APP_SLOTS: usize = 18;

/// Upper bound of `size_of::<Diagnostics>()`, checked at compile time.
pub const DIAGNOSTICS_SIZE: usize = 4352;
const _: () = assert!(core::mem::size_of::<Diagnostics>() <= DIAGNOSTICS_SIZE);

/// A slot and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRef {
    /// The slot.
    pub slot: SlotId,
    /// Its partition (offset, size, label).
    pub region: Region,
}

/// One otadata entry as ESP-IDF reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryInfo {
    /// Sector 0 or 1.
    pub sector: u8,
    /// Flash offset of the entry.
    pub offset: u32,
    /// The raw entry.
    pub entry: SelectEntry,
    /// The sector is erased (no entry).
    pub empty: bool,
    /// The CRC over the sequence number matches.
    pub crc_ok: bool,
    /// ESP-IDF counts it: not empty, not INVALID or ABORTED, CRC ok.
    pub valid: bool,
    /// The OTA slot its sequence number selects (app count), when valid.
    pub slot: Option<SlotId>,
}

impl EntryInfo {
    /// The entry's state.
    pub fn state(&self) -> OtaState {
        self.entry.ota_state()
    }
}

/// The otadata partition and both entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtadataInfo {
    /// The otadata partition.
    pub region: Region,
    /// Sector 0 and sector 1.
    pub entries: [EntryInfo; 2],
    /// The active sector (the valid entry with the larger sequence number).
    pub active: Option<u8>,
}

/// The fields of an app descriptor an operator looks at.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AppSummary {
    version: [u8; 32],
    project_name: [u8; 32],
    idf_ver: [u8; 32],
    /// `secure_version` (anti-rollback).
    pub secure_version: u32,
}

impl AppSummary {
    fn of(desc: &AppDesc) -> Self {
        let copy = |s: FixedStr<'_>| {
            let mut out = [0u8; 32];
            let b = s.bytes();
            let n = b.len().min(out.len());
            if let (Some(dst), Some(src)) = (out.get_mut(..n), b.get(..n)) {
                dst.copy_from_slice(src);
            }
            out
        };
        Self {
            version: copy(desc.version()),
            project_name: copy(desc.project_name()),
            idf_ver: copy(desc.idf_ver()),
            secure_version: desc.secure_version(),
        }
    }

    /// The app version (`esp_app_desc_t.version`).
    pub fn version(&self) -> FixedStr<'_> {
        FixedStr::new(&self.version)
    }

    /// The project name.
    pub fn project_name(&self) -> FixedStr<'_> {
        FixedStr::new(&self.project_name)
    }

    /// The ESP-IDF version it was built with.
    pub fn idf_ver(&self) -> FixedStr<'_> {
        FixedStr::new(&self.idf_ver)
    }
}

impl core::fmt::Debug for AppSummary {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AppSummary")
            .field("version", &self.version().as_str())
            .field("project_name", &self.project_name().as_str())
            .field("idf_ver", &self.idf_ver().as_str())
            .field("secure_version", &self.secure_version)
            .finish()
    }
}

/// The verification verdict on a slot's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotVerdictKind {
    /// The slot's first word is erased: no image was ever written.
    Empty,
    /// The image verifies for this device (chip, checksum, SHA-256, app
    /// descriptor, anti-rollback counter): the bootloader would boot it.
    Valid,
    /// The image does not verify; the bootloader would skip it.
    Invalid(ImageError),
}

/// One app slot: where it is, what it holds, whether it would boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotReport {
    /// The slot.
    pub slot: SlotRef,
    /// Its app descriptor, when the image has one (even if it fails
    /// verification later).
    pub app: Option<AppSummary>,
    /// Image length when it verifies.
    pub image_len: Option<u32>,
    /// The verdict.
    pub verdict: SlotVerdictKind,
    /// Its otadata state (`esp_ota_get_state_partition`), if an entry
    /// names it.
    pub state: Option<OtaState>,
}

/// The snapshot; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    /// The slot the caller runs from (`esp_ota_get_running_partition`).
    pub running: SlotRef,
    /// `esp_ota_get_boot_partition`: what boots next, as otadata says.
    pub boot: Option<SlotRef>,
    /// `esp_ota_get_next_update_partition`: where an update would go
    /// (`None` when the table has no other OTA slot).
    pub next: Option<SlotRef>,
    /// The running image's rollback state.
    pub running_state: Option<OtaState>,
    /// otadata, when the table has it.
    pub otadata: Option<OtadataInfo>,
    /// Every app slot, in table order (factory, ota_0.., test).
    slots: [Option<SlotReport>; MAX_APP_SLOTS],
}

impl Diagnostics {
    /// Every app slot's report: factory, `ota_0`..`ota_15`, test.
    pub fn slots(&self) -> impl Iterator<Item = &SlotReport> {
        self.slots.iter().flatten()
    }

    /// The report of `slot`.
    pub fn slot(&self, slot: SlotId) -> Option<&SlotReport> {
        self.slots().find(|r| r.slot.slot == slot)
    }

    /// Whether the boot slot is not the running one (an activated update
    /// waiting for a reboot, or a bootloader fallback).
    pub fn boot_differs(&self) -> bool {
        self.boot.is_some_and(|b| b.slot != self.running.slot)
    }
}

/// `esp_ota_get_boot_partition`, from a slot map and otadata (see the
/// [module docs](self)).
pub fn boot_slot(map: &SlotMap, otadata: Option<&Otadata>) -> Option<SlotId> {
    let default = map
        .factory()
        .map(|_| SlotId::Factory)
        .or_else(|| map.next_update_slot(None))
        .or_else(|| map.test().map(|_| SlotId::Test));
    let Some(o) = otadata else {
        return default;
    };
    if map.ota_count() == 0 || (o.entries[0].is_invalid() && o.entries[1].is_invalid()) {
        return default;
    }
    match o.active() {
        Some(a) => map.slot_for_seq(o.entries[a].seq).or(default),
        None => default,
    }
}

/// Offset of the app descriptor in an app image: after the 24-byte image
/// header and the first 8-byte segment header.
const APP_DESC_OFFSET: u32 = 24 + 8;

/// The app descriptor at the start of a slot, read without verifying the
/// rest of the image.
fn read_app_desc<F: NorFlash>(
    flash: &mut F,
    region: &Region,
) -> Result<Option<AppDesc>, OtaError<F::Error>> {
    let mut raw = [0u8; APP_DESC_LEN];
    if region.size < APP_DESC_OFFSET + APP_DESC_LEN as u32 {
        return Ok(None);
    }
    flash
        .read(region.offset + APP_DESC_OFFSET, &mut raw)
        .map_err(OtaError::Flash)?;
    Ok(AppDesc::parse(&raw))
}

/// Takes the snapshot for a device running from `running`.
pub fn diagnostics<F: NorFlash>(
    flash: &mut F,
    cfg: &DeviceConfig,
    running: SlotId,
) -> Result<Diagnostics, OtaError<F::Error>> {
    let map = SlotMap::read(flash, cfg.table_offset)?;
    let slot_ref = |slot: SlotId| {
        map.region(slot)
            .copied()
            .map(|region| SlotRef { slot, region })
    };
    let running_ref = slot_ref(running).ok_or(OtaError::NoSuchSlot(running))?;
    let otadata = match map.otadata().copied() {
        Some(od) => Some((od, read_otadata(flash, &od)?)),
        None => None,
    };
    let boot = boot_slot(&map, otadata.as_ref().map(|(_, o)| o)).and_then(slot_ref);
    let next = map
        .next_update_slot(Some(running))
        .filter(|s| *s != running)
        .and_then(slot_ref);
    let state = |slot| otadata.as_ref().and_then(|(_, o)| state_of(o, &map, slot));
    let otadata_info = otadata.as_ref().map(|(od, o)| OtadataInfo {
        region: *od,
        entries: [0u8, 1].map(|sector| {
            let e = o.entries[usize::from(sector)];
            EntryInfo {
                sector,
                offset: od.offset + u32::from(sector) * SECTOR_SIZE,
                entry: e,
                empty: e.is_erased(),
                crc_ok: e.crc_ok(),
                valid: e.is_valid(),
                slot: if e.is_valid() {
                    map.slot_for_seq(e.seq)
                } else {
                    None
                },
            }
        }),
        active: o.active().and_then(|a| u8::try_from(a).ok()),
    });

    let mut slots: [Option<SlotReport>; MAX_APP_SLOTS] = Default::default();
    for ((slot, region), out) in map.slots().zip(slots.iter_mut()) {
        let region = *region;
        *out = Some(SlotReport {
            slot: SlotRef { slot, region },
            app: None,
            image_len: None,
            verdict: SlotVerdictKind::Empty,
            state: state(slot),
        });
        let mut first = [0u8; 4];
        flash
            .read(region.offset, &mut first)
            .map_err(OtaError::Flash)?;
        if region.size == 0 || first == [0xFF; 4] {
            continue;
        }
        let mut full = VerifyOptions::new();
        full.chip = Some(cfg.chip);
        full.min_secure_version = cfg.anti_rollback;
        let (verdict, image_len, app) = match verify_slot(flash, &region, full)? {
            Ok(info) => (
                SlotVerdictKind::Valid,
                Some(info.image_len),
                info.app_desc.as_ref().map(AppSummary::of),
            ),
            Err(e) => {
                // The descriptor alone, even if the image is damaged (or for
                // another chip) further on.
                let app = read_app_desc(flash, &region)?.as_ref().map(AppSummary::of);
                (SlotVerdictKind::Invalid(e), None, app)
            }
        };
        if let Some(r) = out.as_mut() {
            r.app = app;
            r.verdict = verdict;
            r.image_len = image_len;
        }
    }
    Ok(Diagnostics {
        running: running_ref,
        boot,
        next,
        running_state: state(running),
        otadata: otadata_info,
        slots,
    })
}
