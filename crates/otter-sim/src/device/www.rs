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
//! (the last two are reported in [`WwwBoot::note`]). The selected slot is
//! mounted read-only if it [passes](inspect_ui); if it does not, the other
//! slot is tried, and [`WwwBoot::fallback`] says why. Nothing is written at
//! power-on: the pointer is only ever changed by a completed update.
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
//! does) records the slot's block count and a 4096-byte block size. The
//! mount itself (otter-www, the C littlefs) then proves the rest.
//!
//! # The update ([`FrontendUpdate`])
//!
//! 1. `begin`: pick the inactive slot (the one not mounted), check the size
//!    and that the NVS pointer can be written (a dry run), before anything is
//!    erased.
//! 2. `write`: stream into the slot raw, erasing one 4 KiB sector just ahead
//!    of the write cursor; the slot is never mounted meanwhile.
//! 3. `finish`: read the slot back; check its length and SHA-256 (against
//!    the expected one when given), that it mounts with the slot's geometry
//!    and holds `/index.html`; then write the NVS pointer with
//!    [`plan_set_u8`]'s flash writes, one program at a time, and read it back.
//!
//! The active slot is never written, and the pointer changes only after the
//! new slot verified, so a power cut at any operation leaves a complete UI:
//! the old one before the pointer's new entry is marked written, the new one
//! after (`tests/www_powercut.rs` proves it for every operation).

use std::path::PathBuf;

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use otter_format::nvs::{plan_set_u8, Nvs, NvsError, NvsWriter};
use otter_format::partition::{
    DecodeOptions, OwnedTable, PartitionTable, PartitionType, SubType, MAX_TABLE_LEN,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{ProgramMode, SimFlash, SimFlashError, SECTOR_SIZE};

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
        Some(Self { slots, nvs })
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

/// Why a slot's contents cannot be mounted as the web UI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UiProblem {
    /// No committed LittleFS superblock in blocks 0 and 1.
    #[error("it holds no LittleFS superblock (erased, damaged, or not a LittleFS image)")]
    NoSuperblock,
    /// The superblock's geometry is not the slot's: esp_littlefs would
    /// refuse to mount it.
    #[error("it is a LittleFS image of {image_blocks} blocks of {block_size} bytes, but the slot is {slot_blocks} blocks of 4096 bytes, which esp_littlefs refuses to mount; build the image with the slot's size ({slot_size} bytes)")]
    Geometry {
        /// Block count in the superblock.
        image_blocks: u32,
        /// Block size in the superblock.
        block_size: u32,
        /// The slot's block count.
        slot_blocks: u32,
        /// The slot's size in bytes.
        slot_size: u32,
    },
    /// littlefs refused it.
    #[error("it does not mount as LittleFS: {0}")]
    NotMountable(String),
    /// It mounts but has no `/index.html`.
    #[error(
        "it mounts but has no /index.html at its root, so there would be nothing to serve at /"
    )]
    NoIndexHtml,
    /// More files than [`MAX_UI_FILES`].
    #[error("it holds {0} files and directories, more than the {MAX_UI_FILES} a UI may have")]
    TooManyFiles(usize),
}

/// What a slot holds, when it passes [`inspect_ui`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSummary {
    /// Files (directories not counted).
    pub files: usize,
    /// Size of `/index.html`.
    pub index_html_len: u64,
}

/// The superblock fields otter checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// On-disk version (major << 16 | minor).
    pub version: u32,
    /// Block size.
    pub block_size: u32,
    /// Block count.
    pub block_count: u32,
}

/// littlefs's CRC: reflected CRC-32 (0xEDB88320), no final XOR.
fn lfs_crc(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    crc
}

const LFS_TYPE_INLINESTRUCT: u32 = 0x201;
const LFS_TYPE_CCRC: u32 = 0x500;

/// The superblock of one metadata block: the last inline-struct tag for
/// id 0 in the last commit whose CRC checks, with the block's revision.
fn superblock_in(block: &[u8]) -> Option<(u32, Superblock)> {
    let rev_bytes = block.get(0..4)?;
    let rev = u32::from_le_bytes(rev_bytes.try_into().ok()?);
    let mut crc = lfs_crc(0xFFFF_FFFF, rev_bytes);
    let mut ptag: u32 = 0xFFFF_FFFF;
    let mut off = 0usize;
    let mut pending: Option<Superblock> = None;
    let mut committed: Option<Superblock> = None;
    let dsize = |tag: u32| {
        let deleted = (tag & 0x3ff) == 0x3ff;
        4 + if deleted { 0 } else { (tag & 0x3ff) as usize }
    };
    loop {
        off = off.checked_add(dsize(ptag))?;
        let Some(raw) = block.get(off..off + 4) else {
            break;
        };
        crc = lfs_crc(crc, raw);
        let tag = u32::from_be_bytes(raw.try_into().ok()?) ^ ptag;
        if tag & 0x8000_0000 != 0 {
            break;
        }
        if off + dsize(tag) > block.len() {
            break;
        }
        ptag = tag;
        let type3 = (tag & 0x7ff0_0000) >> 20;
        let type2 = (tag & 0x7800_0000) >> 20;
        if type2 == LFS_TYPE_CCRC {
            let d = block.get(off + 4..off + 8)?;
            if crc != u32::from_le_bytes(d.try_into().ok()?) {
                break;
            }
            ptag ^= ((tag >> 20) & 1) << 31;
            if pending.is_some() {
                committed = pending;
            }
            crc = 0xFFFF_FFFF;
            continue;
        }
        let data = block.get(off + 4..off + dsize(tag))?;
        crc = lfs_crc(crc, data);
        let id = (tag & 0x000f_fc00) >> 10;
        if type3 == LFS_TYPE_INLINESTRUCT && id == 0 && data.len() >= 12 {
            let w = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
            pending = Some(Superblock {
                version: w(0),
                block_size: w(4),
                block_count: w(8),
            });
        }
    }
    committed.map(|s| (rev, s))
}

/// Reads the LittleFS superblock from blocks 0 and 1 of `image` (4096-byte
/// blocks), the newer revision first as littlefs does.
pub fn superblock(image: &[u8]) -> Option<Superblock> {
    let bs = LFS_BLOCK_SIZE as usize;
    let a = image.get(0..bs).and_then(superblock_in);
    let b = image.get(bs..2 * bs).and_then(superblock_in);
    match (a, b) {
        (Some((ra, sa)), Some((rb, sb))) => {
            // lfs_scmp: sequence comparison of revisions.
            Some(if (rb.wrapping_sub(ra) as i32) > 0 {
                sb
            } else {
                sa
            })
        }
        (Some((_, s)), None) | (None, Some((_, s))) => Some(s),
        (None, None) => None,
    }
}

/// Checks that `image` (a whole slot's bytes) would mount on a device whose
/// slot has exactly `image.len()` bytes, and holds `/index.html`.
pub fn inspect_ui(image: &[u8]) -> Result<UiSummary, UiProblem> {
    let slot_size = u32::try_from(image.len()).unwrap_or(u32::MAX);
    let slot_blocks = slot_size / LFS_BLOCK_SIZE;
    let sb = superblock(image).ok_or(UiProblem::NoSuperblock)?;
    if sb.block_size != LFS_BLOCK_SIZE
        || sb.block_count != slot_blocks
        || slot_size % LFS_BLOCK_SIZE != 0
    {
        return Err(UiProblem::Geometry {
            image_blocks: sb.block_count,
            block_size: sb.block_size,
            slot_blocks,
            slot_size,
        });
    }
    let entries = otter_www::list(image).map_err(|e| UiProblem::NotMountable(e.to_string()))?;
    if entries.len() > MAX_UI_FILES {
        return Err(UiProblem::TooManyFiles(entries.len()));
    }
    let index = entries
        .iter()
        .find(|e| !e.is_dir && e.path == INDEX_HTML)
        .ok_or(UiProblem::NoIndexHtml)?;
    Ok(UiSummary {
        files: entries.iter().filter(|e| !e.is_dir).count(),
        index_html_len: index.size,
    })
}

/// Every file of a UI image, path and contents (what a mounted UI serves).
pub fn read_ui_files(image: &[u8]) -> Result<Vec<(String, Vec<u8>)>, UiProblem> {
    let entries = otter_www::list(image).map_err(|e| UiProblem::NotMountable(e.to_string()))?;
    if entries.len() > MAX_UI_FILES {
        return Err(UiProblem::TooManyFiles(entries.len()));
    }
    entries
        .iter()
        .filter(|e| !e.is_dir)
        .map(|e| {
            otter_www::read_file(image, &e.path)
                .map(|b| (e.path.clone(), b))
                .map_err(|err| UiProblem::NotMountable(err.to_string()))
        })
        .collect()
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
    match Nvs::parse(&buf) {
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

fn read_slot(flash: &mut SimFlash, r: &Region) -> Result<Vec<u8>, SimFlashError> {
    let mut buf = vec![0u8; r.size as usize];
    flash.read(r.offset, &mut buf)?;
    Ok(buf)
}

/// Mounts the UI as the firmware does at power-on (reads only).
pub fn mount(flash: &mut SimFlash, layout: &WwwLayout) -> WwwBoot {
    let pointer = read_pointer(flash, layout);
    let sel = pointer.selected;
    let check = |flash: &mut SimFlash, i: usize| -> Result<(), String> {
        let img =
            read_slot(flash, &layout.slots[i]).map_err(|e| format!("reading it failed: {e}"))?;
        inspect_ui(&img).map(|_| ()).map_err(|e| e.to_string())
    };
    match check(flash, sel) {
        Ok(()) => WwwBoot {
            pointer,
            active: Some(sel),
            fallback: None,
        },
        Err(why) => {
            let other = 1 - sel;
            let (active, reason) = match check(flash, other) {
                Ok(()) => (
                    Some(other),
                    format!(
                        "{} (selected by NVS) cannot be mounted: {why}; mounted {} instead",
                        SLOT_LABELS[sel], SLOT_LABELS[other]
                    ),
                ),
                Err(why2) => (
                    None,
                    format!(
                        "neither slot holds a UI: {}: {why}; {}: {why2}",
                        SLOT_LABELS[sel], SLOT_LABELS[other]
                    ),
                ),
            };
            WwwBoot {
                pointer,
                active,
                fallback: Some(Fallback {
                    from: SLOT_LABELS[sel].into(),
                    to: active.map(|a| SLOT_LABELS[a].to_string()),
                    reason,
                }),
            }
        }
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
        match inspect_ui(&img) {
            Ok(sum) => {
                s.mounts = true;
                s.files = sum.files;
                s.index_html = true;
                s.sha256 = Some(super::status::hex(&Sha256::digest(&img)));
            }
            Err(UiProblem::NoIndexHtml) => {
                s.mounts = true;
                s.files = otter_www::list(&img)
                    .map(|l| l.iter().filter(|e| !e.is_dir).count())
                    .unwrap_or(0);
                s.sha256 = Some(super::status::hex(&Sha256::digest(&img)));
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
        while self.pending.len() % 4 != 0 {
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
                    expected: super::status::hex(&want),
                    got: super::status::hex(&streamed),
                });
            }
        }
        let img = read_slot(flash, &slot)?;
        let stored: [u8; 32] = Sha256::digest(&img).into();
        if stored != streamed {
            return Err(FrontendError::Readback { slot: slot.name });
        }
        let summary = inspect_ui(&img).map_err(|problem| FrontendError::BadUi {
            slot: slot.name.clone(),
            problem,
        })?;
        let want = self.target as u8;
        let part = read_nvs(flash, &self.nvs)?;
        let ops = plan_set_u8(&part, NVS_NAMESPACE, NVS_KEY, want).map_err(FrontendError::Nvs)?;
        // NVS rewrites bitmap words in place (clearing more bits), as NOR
        // allows: program in relaxed mode, one operation at a time.
        let mode = flash.mode();
        flash.set_mode(ProgramMode::Relaxed);
        let res = ops.iter().try_for_each(|op| {
            let at = u32::try_from(op.offset)
                .ok()
                .and_then(|o| self.nvs.offset.checked_add(o))
                .ok_or(SimFlashError::PowerLoss);
            flash.write(at?, &op.bytes)
        });
        flash.set_mode(mode);
        res?;
        let got = Nvs::parse(&read_nvs(flash, &self.nvs)?)
            .ok()
            .and_then(|n| n.get_u8(NVS_NAMESPACE, NVS_KEY));
        if got != Some(want) {
            return Err(FrontendError::NvsReadback { want, got });
        }
        Ok(Switched {
            slot: slot.name,
            index: self.target,
            bytes: self.received,
            sha256: super::status::hex(&streamed),
            files: summary.files,
            nvs_writes: ops.len(),
        })
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
            Err(UiProblem::Geometry {
                image_blocks: 128,
                slot_blocks: 256,
                ..
            }) => {}
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

    #[test]
    fn lfs_crc_matches_reference() {
        // zlib.crc32(b"123456789") ^ 0xffffffff with initial 0xffffffff.
        assert_eq!(lfs_crc(0xFFFF_FFFF, b"123456789"), !0xCBF4_3926u32);
    }
}
