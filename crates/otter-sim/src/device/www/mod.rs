//! The web UI slots: `www_0`/`www_1`, the NVS pointer `otter`/`www_slot`,
//! mounting with fallback, and the frontend update (seed 002).
//!
//! # On flash
//!
//! | what | where | contents |
//! |---|---|---|
//! | `www_0`, `www_1` | data/littlefs partitions with these labels | a whole LittleFS image each (block size 4096, block count = partition size / 4096) |
//! | the pointer | NVS partition (the first data/nvs partition, `nvs` preferred), namespace [`NVS_NAMESPACE`], key [`NVS_KEY`], type u8 | 0 selects `www_0`, 1 selects `www_1` |
//!
//! # At power-on ([`mount`])
//!
//! The firmware reads `otter`/`www_slot` (`nvs_get_u8`). A missing key, an
//! unreadable NVS partition or a value other than 0 and 1 selects `www_0`
//! (the last two are reported in [`Pointer::note`]). The selected slot is
//! mounted read-only if its superblock fits the slot and its files read to
//! the end; if not, the other slot is tried, and [`WwwBoot::fallback`] says
//! why. That decision is the device core's ([`otter_device::www::mount`],
//! what the firmware runs); [`mount`] only puts it in words. Nothing is
//! written at power-on: the pointer is only ever changed by a completed
//! update.
//!
//! # Image size: exact, and the superblock is checked
//!
//! `esp_littlefs` mounts a partition with `block_count = partition size /
//! 4096`, and littlefs refuses a superblock whose block count differs
//! (`Invalid block count`). An image built for a smaller partition and
//! padded with 0xFF would therefore be written fine and then not mount on a
//! real device. otter requires **both**: the upload is exactly the slot's
//! size, and the LittleFS superblock (read from the image's metadata log,
//! CRCs checked, the newest commit winning, as littlefs's `lfs_dir_fetch`
//! does) must pass the checks esp_littlefs's littlefs makes with its default
//! configuration (`otter_www::limits`): disk version 2.0 or 2.1, block
//! size 4096, the slot's block count, `name_max` at most 64. A refusal names
//! the field, the value found and the one expected. The mount itself
//! (otter-www's reader) then proves the rest.
//!
//! # The update
//!
//! Writing a new UI into the slot not mounted, checking it and switching the
//! pointer is device behaviour: `otter-device`'s `www` module (the code a
//! chip runs). This module keeps the simulator's side: the layout, the
//! power-on mount, the pointer in NVS, the LittleFS inspection.

mod image;

pub use image::{
    inspect_ui, inspect_ui_with, read_ui_files, superblock, Superblock, UiProblem, UiSummary,
};

use std::path::PathBuf;

use embedded_storage::nor_flash::ReadNorFlash;
use otter_format::nvs::{Nvs, NvsError, NvsWriter};
use otter_format::partition::{
    DecodeOptions, OwnedTable, PartitionTable, PartitionType, SubType, MAX_TABLE_LEN,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{SimFlash, SimFlashError};

/// NVS namespace of the pointer.
pub const NVS_NAMESPACE: &str = "otter";
/// NVS key of the pointer (u8: 0 = `www_0`, 1 = `www_1`).
pub const NVS_KEY: &str = "www_slot";
/// The slots' partition labels, by index.
pub const SLOT_LABELS: [&str; 2] = ["www_0", "www_1"];
/// The file a UI must hold to be mounted.
pub const INDEX_HTML: &str = "/index.html";
/// littlefs's block size on ESP32: one flash sector.
pub const LFS_BLOCK_SIZE: u32 = 4096;
/// The most files a UI may hold (a bound on what a boot reads).
pub const MAX_UI_FILES: usize = 4096;

/// A partition: label, offset, size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Region {
    /// Partition label.
    pub name: String,
    /// Flash offset.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// Where the web UI lives on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WwwLayout {
    /// `www_0` and `www_1`.
    pub slots: [Region; 2],
    /// The NVS partition, when the table has one.
    pub nvs: Option<Region>,
    /// The longest file name the device's littlefs accepts
    /// (`CONFIG_LITTLEFS_OBJ_NAME_LEN`; esp_littlefs's default is
    /// [`otter_www::limits::ESP_NAME_MAX`]).
    pub name_max: u32,
}

fn region(p: &otter_format::partition::Partition) -> Region {
    Region {
        name: p.label.as_str().unwrap_or("").to_string(),
        offset: p.offset,
        size: p.size,
    }
}

impl WwwLayout {
    /// Finds the slots and NVS in a partition table: `None` when the table
    /// lacks a data partition labelled `www_0` or `www_1` (a device without
    /// web-UI slots).
    pub fn from_table(table: &OwnedTable) -> Option<Self> {
        let parts: Vec<_> = table.entries.iter().map(|e| e.partition).collect();
        let slot = |label: &str| {
            parts
                .iter()
                .find(|p| p.ty == PartitionType::DATA && p.label.as_str() == Some(label))
                .map(region)
        };
        let slots = [slot(SLOT_LABELS[0])?, slot(SLOT_LABELS[1])?];
        let nvs_parts: Vec<_> = parts
            .iter()
            .filter(|p| p.ty == PartitionType::DATA && p.subtype == SubType::NVS)
            .collect();
        let nvs = nvs_parts
            .iter()
            .find(|p| p.label.as_str() == Some("nvs"))
            .or_else(|| nvs_parts.first())
            .map(|p| region(p));
        Some(Self {
            slots,
            nvs,
            name_max: otter_www::limits::ESP_NAME_MAX,
        })
    }

    /// The same layout on a device whose littlefs accepts names of up to
    /// `name_max` bytes.
    pub fn with_name_max(mut self, name_max: u32) -> Self {
        self.name_max = name_max;
        self
    }

    /// What the device's littlefs mounts in a slot of `slot_size` bytes:
    /// esp_littlefs's configuration with this device's name limit.
    pub fn limits(&self, slot_size: usize) -> otter_www::limits::MountLimits {
        let size = u32::try_from(slot_size).unwrap_or(u32::MAX);
        otter_www::limits::MountLimits {
            name_max: self.name_max,
            ..otter_www::limits::MountLimits::esp_littlefs(size)
        }
    }

    /// Reads the partition table at `table_offset` and finds the slots;
    /// `None` when the table does not read or has no web-UI slots.
    pub fn read(flash: &mut SimFlash, table_offset: u32) -> Option<Self> {
        let mut buf = vec![0u8; MAX_TABLE_LEN];
        flash.read(table_offset, &mut buf).ok()?;
        let (t, _) = PartitionTable::decode(&buf, &DecodeOptions { verify_md5: true }).ok()?;
        Self::from_table(&OwnedTable::from_table(&t))
    }
}

/// What the pointer in NVS says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pointer {
    /// The slot index it selects (0 or 1).
    pub selected: usize,
    /// The raw value, `None` when the key (or NVS) is missing.
    pub value: Option<u8>,
    /// Why the value was not used as is, when it was not.
    pub note: Option<String>,
}

/// Reads the pointer from NVS (see the module docs for the defaults).
pub fn read_pointer(flash: &mut SimFlash, layout: &WwwLayout) -> Pointer {
    let Some(nvs) = &layout.nvs else {
        return Pointer {
            selected: 0,
            value: None,
            note: Some("the partition table has no NVS partition; www_0 is used".into()),
        };
    };
    let mut buf = vec![0u8; nvs.size as usize];
    if let Err(e) = flash.read(nvs.offset, &mut buf) {
        return Pointer {
            selected: 0,
            value: None,
            note: Some(format!("reading NVS failed ({e}); www_0 is used")),
        };
    }
    match Nvs::load(&buf) {
        Err(e) => Pointer {
            selected: 0,
            value: None,
            note: Some(format!("NVS does not read ({e}); www_0 is used")),
        },
        Ok(n) => match n.get_u8(NVS_NAMESPACE, NVS_KEY) {
            None => Pointer {
                selected: 0,
                value: None,
                note: None,
            },
            Some(v @ (0 | 1)) => Pointer {
                selected: usize::from(v),
                value: Some(v),
                note: None,
            },
            Some(v) => Pointer {
                selected: 0,
                value: Some(v),
                note: Some(format!(
                    "{NVS_NAMESPACE}/{NVS_KEY} is {v}, which names no slot (0 or 1); www_0 is used"
                )),
            },
        },
    }
}

/// A fallback from the selected slot at power-on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fallback {
    /// The slot the pointer selects.
    pub from: String,
    /// The slot mounted instead, `null` when neither mounts.
    pub to: Option<String>,
    /// Why, in words.
    pub reason: String,
}

/// What a power-on mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WwwBoot {
    /// The pointer.
    pub pointer: Pointer,
    /// The mounted slot's index, `None` when neither mounts.
    pub active: Option<usize>,
    /// Set when the selected slot did not mount.
    pub fallback: Option<Fallback>,
}

pub(crate) fn read_slot(flash: &mut SimFlash, r: &Region) -> Result<Vec<u8>, SimFlashError> {
    let mut buf = vec![0u8; r.size as usize];
    flash.read(r.offset, &mut buf)?;
    Ok(buf)
}

/// Reads the pointer for [`otter_device::www::mount`] ([`read_pointer`]).
/// Read-only: selecting is refused.
struct NvsPointer<'a> {
    layout: &'a WwwLayout,
}

impl otter_device::www::WwwPointer<SimFlash> for NvsPointer<'_> {
    fn read(
        &mut self,
        flash: &mut SimFlash,
    ) -> Result<Option<u8>, otter_device::www::PointerError> {
        let p = read_pointer(flash, self.layout);
        match (p.value, p.note) {
            (None, Some(_)) if self.layout.nvs.is_some() => {
                Err(otter_device::www::PointerError::Nvs)
            }
            (value, _) => Ok(value),
        }
    }

    fn can_select(
        &mut self,
        _flash: &mut SimFlash,
        _slot: u8,
    ) -> Result<(), otter_device::www::PointerError> {
        Err(otter_device::www::PointerError::Nvs)
    }

    fn select(
        &mut self,
        _flash: &mut SimFlash,
        _slot: u8,
    ) -> Result<(), otter_device::www::PointerError> {
        Err(otter_device::www::PointerError::Nvs)
    }
}

impl Region {
    /// The engine's region of this partition.
    pub fn to_ota(&self) -> otter_ota::Region {
        otter_ota::Region {
            offset: self.offset,
            size: self.size,
            label: otter_format::partition::Label::new(&self.name),
        }
    }
}

impl WwwLayout {
    /// The device core's mount limits for this layout: esp_littlefs's,
    /// with this device's name limit.
    pub fn core_limits(&self) -> otter_device::www::MountLimits {
        otter_device::www::MountLimits {
            name_max: self.name_max,
            ..otter_device::www::MountLimits::ESP_LITTLEFS
        }
    }
}

/// Mounts the UI as the firmware does at power-on (reads only): the device
/// core's [`otter_device::www::mount`], described in words.
pub fn mount(flash: &mut SimFlash, layout: &WwwLayout) -> WwwBoot {
    let mut nvs = NvsPointer { layout };
    let slots = [layout.slots[0].to_ota(), layout.slots[1].to_ota()];
    let state = otter_device::www::mount(flash, &mut nvs, slots, &layout.core_limits());
    let pointer = read_pointer(flash, layout);
    let sel = pointer.selected;
    let other = 1 - sel;
    let state = match state {
        Ok(s) => s,
        Err(e) => {
            return WwwBoot {
                pointer,
                active: None,
                fallback: Some(Fallback {
                    from: SLOT_LABELS[sel].into(),
                    to: None,
                    reason: format!("reading the web-UI slots failed: {e}"),
                }),
            }
        }
    };
    let active = state.active.map(usize::from);
    let fallback = match (state.fallback, active) {
        (None, Some(_)) => None,
        (Some(why), Some(a)) => Some((
            Some(a),
            format!(
                "{} (selected by NVS) cannot be mounted: {why}; mounted {} instead",
                SLOT_LABELS[sel], SLOT_LABELS[a]
            ),
        )),
        (why, None) => Some((
            None,
            match why {
                Some(why) => format!(
                    "neither slot holds a UI: {}: {why}; {} does not mount either",
                    SLOT_LABELS[sel], SLOT_LABELS[other]
                ),
                None => "neither slot holds a UI".to_string(),
            },
        )),
    };
    WwwBoot {
        pointer,
        active,
        fallback: fallback.map(|(to, reason)| Fallback {
            from: SLOT_LABELS[sel].into(),
            to: to.map(|a| SLOT_LABELS[a].to_string()),
            reason,
        }),
    }
}

/// One slot in the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WwwSlotStatus {
    /// Partition label.
    pub name: String,
    /// Flash offset.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    /// It mounts with the slot's geometry.
    pub mounts: bool,
    /// Files in it (0 when it does not mount).
    pub files: usize,
    /// It holds `/index.html`.
    pub index_html: bool,
    /// SHA-256 of the whole slot, when it mounts: equal to the SHA-256 of
    /// the image file that was uploaded (uploads are exactly slot-sized).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why it cannot be mounted, when it cannot.
    pub error: Option<String>,
}

/// Inspects both slots.
pub fn slot_statuses(
    flash: &mut SimFlash,
    layout: &WwwLayout,
) -> Result<Vec<WwwSlotStatus>, SimFlashError> {
    let mut out = Vec::new();
    for r in &layout.slots {
        let img = read_slot(flash, r)?;
        let mut s = WwwSlotStatus {
            name: r.name.clone(),
            offset: r.offset,
            size: r.size,
            mounts: false,
            files: 0,
            index_html: false,
            sha256: None,
            error: None,
        };
        match inspect_ui_with(&img, &layout.limits(img.len())) {
            Ok(sum) => {
                s.mounts = true;
                s.files = sum.files;
                s.index_html = true;
                s.sha256 = Some(crate::device::status::hex(&Sha256::digest(&img)));
            }
            Err(UiProblem::NoIndexHtml) => {
                s.mounts = true;
                s.files = otter_www::list(&img)
                    .map(|l| l.iter().filter(|e| !e.is_dir).count())
                    .unwrap_or(0);
                s.sha256 = Some(crate::device::status::hex(&Sha256::digest(&img)));
                s.error = Some(UiProblem::NoIndexHtml.to_string());
            }
            Err(e) => {
                s.error = Some(if img.iter().all(|&b| b == 0xFF) {
                    "empty (erased)".into()
                } else {
                    e.to_string()
                })
            }
        }
        out.push(s);
    }
    Ok(out)
}

/// The `www` part of the status document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WwwStatus {
    /// The mounted slot (`www_0`/`www_1`), `null` when neither mounts.
    pub active: Option<String>,
    /// The slot the NVS pointer selects.
    pub selected: String,
    /// The pointer's raw value, `null` when the key is missing.
    pub nvs_value: Option<u8>,
    /// Why the pointer's value was not used as is.
    pub nvs_note: Option<String>,
    /// Set when the selected slot did not mount.
    pub fallback: Option<Fallback>,
    /// Both slots.
    pub slots: Vec<WwwSlotStatus>,
}

impl WwwStatus {
    /// The status from a boot's mount and the slots.
    pub fn new(boot: &WwwBoot, slots: Vec<WwwSlotStatus>) -> Self {
        Self {
            active: boot.active.map(|a| SLOT_LABELS[a].to_string()),
            selected: SLOT_LABELS[boot.pointer.selected].to_string(),
            nvs_value: boot.pointer.value,
            nvs_note: boot.pointer.note.clone(),
            fallback: boot.fallback.clone(),
            slots,
        }
    }
}

/// A fresh NVS partition image of `size` bytes holding `otter/www_slot = slot`,
/// as `esp-idf-nvs-partition-gen` would generate it.
pub fn initial_nvs(size: u32, slot: u8) -> Result<Vec<u8>, NvsError> {
    let mut w = NvsWriter::new(size as usize)?;
    w.namespace(NVS_NAMESPACE)?;
    w.set_u8(NVS_KEY, slot)?;
    Ok(w.finish())
}

/// The built-in UI's `index.html`.
pub const DEFAULT_INDEX_HTML: &str = "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>otter</title></head>\n<body>\n<h1>otter</h1>\n<p>This is the built-in web UI of an otter virtual device.</p>\n<p><a href=\"/update\">Update the firmware or the web UI</a></p>\n</body>\n</html>\n";

/// Builds the built-in default UI (one `index.html`) as an image of `size`
/// bytes.
pub fn default_ui(size: u32) -> Result<Vec<u8>, String> {
    let dir = scratch_dir()?;
    let res = std::fs::write(dir.join("index.html"), DEFAULT_INDEX_HTML)
        .map_err(|e| format!("writing the default UI to {}: {e}", dir.display()))
        .and_then(|()| {
            otter_www::build_image(&dir, size).map_err(|e| format!("building the default UI: {e}"))
        });
    let _ = std::fs::remove_dir_all(&dir);
    res
}

fn scratch_dir() -> Result<PathBuf, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("otter-www-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use otter_www::limits::MountRefusal;

    #[test]
    fn superblock_of_built_images_matches_their_size() {
        for size in [0x2000u32, 0x10000, 0x100000] {
            let img = default_ui(size).expect("builds");
            let sb = superblock(&img).expect("superblock");
            assert_eq!(sb.block_size, 4096);
            assert_eq!(sb.block_count, size / 4096, "size {size:#x}");
            assert_eq!(inspect_ui(&img).expect("ok").files, 1);
        }
    }

    #[test]
    fn padded_smaller_image_is_refused() {
        let mut img = default_ui(0x80000).expect("builds");
        img.resize(0x100000, 0xFF);
        assert!(
            otter_www::mounts(&img),
            "otter-www's lenient mount accepts it"
        );
        match inspect_ui(&img) {
            Err(UiProblem::Refused(MountRefusal::BlockCount {
                found: 128,
                expected: 256,
                block_size: 4096,
            })) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_and_erased_are_refused() {
        assert_eq!(
            inspect_ui(&vec![0xFF; 0x10000]),
            Err(UiProblem::NoSuperblock)
        );
        assert_eq!(
            inspect_ui(&vec![0x00; 0x10000]),
            Err(UiProblem::NoSuperblock)
        );
        let x: Vec<u8> = (0..0x10000u32).map(|i| (i * 7 + 3) as u8).collect();
        assert_eq!(inspect_ui(&x), Err(UiProblem::NoSuperblock));
        assert_eq!(inspect_ui(&[]), Err(UiProblem::NoSuperblock));
    }

    /// Each superblock field the device's littlefs checks is named, with
    /// the value found and the one expected.
    #[test]
    fn refusals_name_the_field() {
        let img = default_ui(0x10000).expect("builds");
        let esp = otter_www::limits::MountLimits::esp_littlefs(0x10000);
        let refused = |limits| match inspect_ui_with(&img, &limits) {
            Err(UiProblem::Refused(r)) => (r.code(), r.to_string()),
            other => panic!("{other:?}"),
        };
        let (code, msg) = refused(otter_www::limits::MountLimits {
            name_max: 32,
            ..esp
        });
        assert_eq!(code, "lfs_name_max");
        assert!(
            msg.starts_with("name_max is 64, but the device's littlefs allows at most 32"),
            "{msg}"
        );
        let (code, msg) = refused(otter_www::limits::MountLimits {
            disk_version_max: 0x0002_0000,
            ..esp
        });
        assert_eq!(code, "lfs_disk_version");
        assert!(
            msg.starts_with("disk version is 2.1, but the device mounts 2.0 up to 2.0"),
            "{msg}"
        );
        let (code, msg) = refused(otter_www::limits::MountLimits {
            block_size: 512,
            block_count: 128,
            ..esp
        });
        assert_eq!(code, "lfs_block_size");
        assert!(
            msg.starts_with("block size is 4096 bytes, but the device uses 512"),
            "{msg}"
        );
        let (code, msg) = refused(otter_www::limits::MountLimits {
            block_count: 32,
            ..esp
        });
        assert_eq!(code, "lfs_block_count");
        assert!(
            msg.starts_with("block count is 16, but the slot holds 32 blocks"),
            "{msg}"
        );
        assert_eq!(inspect_ui_with(&img, &esp).expect("passes").files, 1);
    }

    /// Damaged images (seeded byte flips in the metadata blocks, where a
    /// CRC-valid superblock can survive) are refused or accepted, never a
    /// panic or a hang.
    #[test]
    fn damaged_images_never_panic() {
        let good = default_ui(0x10000).expect("builds");
        let mut seed: u64 = 0x5eed_0002;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut refused = 0;
        for _ in 0..1000 {
            let mut img = good.clone();
            for _ in 0..1 + next() % 8 {
                let at = (next() % (2 * 4096)) as usize;
                img[at] ^= 1 << (next() % 8);
            }
            if inspect_ui(&img).is_err() {
                refused += 1;
            }
        }
        eprintln!("seed 0x5eed0002: {refused} of 1000 damaged images refused");
    }
}
