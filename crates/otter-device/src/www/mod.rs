//! The web UI's A/B slots (`www_0`, `www_1`): the upload writer, the
//! read-back verification in fixed chunks, the LittleFS superblock check, and
//! the traits the platform implements for the NVS pointer and for a full
//! LittleFS content check.
//!
//! An upload goes to the slot that is not mounted:
//!
//! 1. The announced size must be exactly the slot's ([`WwwUpload::begin`]);
//!    the pointer must be writable ([`WwwPointer::can_select`]) before a byte
//!    is erased.
//! 2. Each 4 KiB sector is erased just before it is programmed.
//! 3. [`WwwUpload::finish`] reads the slot back in [`VERIFY_CHUNK`]-byte
//!    pieces (never the whole slot) and hashes it: it must equal the streamed
//!    SHA-256 (and `X-Otter-Sha256`); the superblock must have the slot's
//!    geometry ([`check_superblock`]); every file must read to its end
//!    ([`check_files`]: metadata pairs, CTZ skip pointers, data, and
//!    `/index.html` in the root); the [`UiInspector`] must accept it.
//! 4. Only then is the pointer switched ([`WwwPointer::select`]).

use embedded_storage::nor_flash::NorFlash;
use otter_format::partition::{PartitionTable, MAX_TABLE_LEN};
use otter_ota::Region;
use sha2::{Digest, Sha256};

use crate::error::DeviceError;

mod walk;

pub use walk::{check_files, Damage, WalkSummary, MAX_PAIR_ENTRIES};

/// LittleFS block size esp_littlefs uses.
pub const LFS_BLOCK_SIZE: u32 = 4096;
/// Bytes read per step while verifying a written slot.
pub const VERIFY_CHUNK: usize = 256;
/// Bytes read per step while the superblock's metadata blocks are walked
/// (each is read to its last commit, up to [`LFS_BLOCK_SIZE`] bytes).
pub const SUPERBLOCK_WINDOW: usize = 64;
/// Flash sector.
const SECTOR: u32 = 4096;
/// Bytes staged before a program (one flash page).
const STAGE: usize = 256;

/// Why a slot's contents cannot be the web UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UiProblem {
    /// No committed LittleFS superblock in blocks 0 and 1.
    #[error("it holds no LittleFS superblock (erased, damaged, or not a LittleFS image)")]
    NoSuperblock,
    /// The superblock's geometry is not the slot's.
    #[error("esp_littlefs would not mount it: block count is {image_blocks}, but the slot holds {slot_blocks} blocks (image block size {block_size}, the slot's 4096)")]
    Geometry {
        /// Block count in the superblock.
        image_blocks: u32,
        /// Block size in the superblock.
        block_size: u32,
        /// The slot's block count.
        slot_blocks: u32,
    },
    /// The on-disk version is not one the device's littlefs mounts.
    #[error("the device's littlefs would not mount it: disk version is {}.{}, but the device mounts 2.0 up to {}.{}; build the image with littlefs 2.x at disk version 2.0 or 2.1", .found >> 16, .found & 0xffff, .max >> 16, .max & 0xffff)]
    DiskVersion {
        /// The superblock's version (major << 16 | minor).
        found: u32,
        /// The newest the device mounts.
        max: u32,
    },
    /// The image allows longer names than the device's littlefs.
    #[error("the device's littlefs would not mount it: name_max is {found}, but the device's littlefs allows at most {max} (CONFIG_LITTLEFS_OBJ_NAME_LEN); build the image with a name limit of {max} or less (littlefs-python: --name-max={max}), or configure the device's littlefs for names of {found} bytes")]
    NameMax {
        /// The superblock's `name_max`.
        found: u32,
        /// The device's.
        max: u32,
    },
    /// The file system does not mount (reported by a [`UiInspector`]).
    #[error("it does not mount as LittleFS")]
    NotMountable,
    /// More files and directories than the device serves (reported by a
    /// [`UiInspector`]).
    #[error("it holds {found} files and directories, more than the {max} a UI may have")]
    TooManyFiles {
        /// Files and directories in the image.
        found: u32,
        /// The most the device serves.
        max: u32,
    },
    /// It mounts but has no `/index.html`.
    #[error("it mounts but has no /index.html at its root")]
    NoIndexHtml,
    /// It mounts, but a metadata pair or a file does not read to its end
    /// ([`check_files`]).
    #[error("it mounts but does not read to the end: {0}")]
    Damaged(Damage),
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
    /// The longest file name the image allows.
    pub name_max: u32,
}

/// What the device's littlefs mounts, besides the slot's geometry (the
/// checks of littlefs's `lfs_mount` that a superblock can fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountLimits {
    /// `LFS_NAME_MAX` of the device's build (esp_littlefs's
    /// `CONFIG_LITTLEFS_OBJ_NAME_LEN`, 64 by default): an image whose
    /// `name_max` is larger does not mount.
    pub name_max: u32,
    /// The newest on-disk version mounted (major << 16 | minor); the major
    /// version must be equal.
    pub disk_version_max: u32,
}

impl MountLimits {
    /// esp_littlefs's defaults: names of up to 64 bytes, disk versions 2.0
    /// and 2.1.
    pub const ESP_LITTLEFS: Self = Self {
        name_max: 64,
        disk_version_max: 0x0002_0001,
    };
}

impl Default for MountLimits {
    fn default() -> Self {
        Self::ESP_LITTLEFS
    }
}

/// What a [`UiInspector`] found in a slot that holds a usable UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UiSummary {
    /// Files in it, when the inspector counts them.
    pub files: Option<u32>,
}

/// A LittleFS content check (mount, `/index.html`), reading the slot through
/// the flash itself. The superblock geometry is checked before it is called.
pub trait UiInspector<F: NorFlash> {
    /// Inspects the UI in `slot`.
    fn inspect(&mut self, flash: &mut F, slot: &Region) -> Result<UiSummary, InspectError>;
}

/// A [`UiInspector`] failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InspectError {
    /// The image is not usable.
    Problem(UiProblem),
    /// The flash failed.
    Flash(embedded_storage::nor_flash::NorFlashErrorKind),
}

/// The superblock check alone: accepts any image whose superblock has the
/// slot's geometry. Until a no_std LittleFS reader plugs in, this is what a
/// chip checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SuperblockOnly;

impl<F: NorFlash> UiInspector<F> for SuperblockOnly {
    fn inspect(&mut self, _flash: &mut F, _slot: &Region) -> Result<UiSummary, InspectError> {
        Ok(UiSummary::default())
    }
}

/// The NVS pointer `otter`/`www_slot` (u8, 0 or 1), kept by the platform.
pub trait WwwPointer<F: NorFlash> {
    /// The pointer's value, `None` when the key is missing. `Err` when NVS
    /// cannot be read.
    fn read(&mut self, flash: &mut F) -> Result<Option<u8>, PointerError>;
    /// Whether `slot` could be selected now (NVS readable and not full):
    /// checked before anything is erased.
    fn can_select(&mut self, flash: &mut F, slot: u8) -> Result<(), PointerError>;
    /// Selects `slot` (as `nvs_set_u8` writes it) and reads it back.
    fn select(&mut self, flash: &mut F, slot: u8) -> Result<(), PointerError>;
}

/// A [`WwwPointer`] failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointerError {
    /// NVS is damaged or full.
    Nvs,
    /// The flash failed.
    Flash(embedded_storage::nor_flash::NorFlashErrorKind),
}

impl From<PointerError> for DeviceError {
    fn from(e: PointerError) -> Self {
        match e {
            PointerError::Nvs => DeviceError::Nvs,
            PointerError::Flash(k) => DeviceError::Flash(crate::FlashFault(k)),
        }
    }
}

/// The web-UI layout and what is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WwwState {
    /// `www_0` and `www_1`.
    pub slots: [Region; 2],
    /// The mounted slot.
    pub active: Option<u8>,
    /// The slot the pointer selects.
    pub selected: u8,
    /// The pointer's raw value.
    pub nvs_value: Option<u8>,
    /// The pointer could not be read.
    pub nvs_unreadable: bool,
    /// Why the selected slot was not mounted (the other one was tried),
    /// `None` when it was.
    pub fallback: Option<UiProblem>,
}

/// The power-on mount: reads `www_0`/`www_1` from the partition table at
/// `table_offset`, then [`mount`]. `Ok(None)` when the table does not read
/// or has no web-UI slots (a device without a web UI).
///
/// The firmware, the virtual device and the power-cut harness all decide
/// what a power-on serves with this one function.
pub fn boot<F: NorFlash, P: WwwPointer<F>>(
    flash: &mut F,
    pointer: &mut P,
    table_offset: u32,
    limits: &MountLimits,
) -> Result<Option<WwwState>, DeviceError> {
    let mut raw = [0u8; MAX_TABLE_LEN];
    flash
        .read(table_offset, &mut raw)
        .map_err(DeviceError::flash)?;
    let Ok(table) = PartitionTable::from_binary(&raw) else {
        return Ok(None);
    };
    let region = |label: &str| {
        table.find_by_label(label).map(|p| Region {
            offset: p.offset,
            size: p.size,
            label: p.label,
        })
    };
    let (Some(a), Some(b)) = (region("www_0"), region("www_1")) else {
        return Ok(None);
    };
    mount(flash, pointer, [a, b], limits).map(Some)
}

/// Which of `slots` a power-on mounts: the one the pointer selects (`www_0`
/// when the key is missing, out of range or NVS does not read) if its
/// superblock fits the slot and its files read to the end, else the other
/// one under the same checks, else none. Reads only.
pub fn mount<F: NorFlash, P: WwwPointer<F>>(
    flash: &mut F,
    pointer: &mut P,
    slots: [Region; 2],
    limits: &MountLimits,
) -> Result<WwwState, DeviceError> {
    let (nvs_value, nvs_unreadable) = match pointer.read(flash) {
        Ok(v) => (v, false),
        Err(_) => (None, true),
    };
    let selected = match nvs_value {
        Some(1) => 1,
        _ => 0,
    };
    let mut active = None;
    let mut fallback = None;
    for cand in [selected, 1 - selected] {
        let Some(r) = slots.get(usize::from(cand)) else {
            continue;
        };
        let checked = match check_superblock(flash, r, limits)? {
            Ok(_) => check_files(flash, r)?.map(|_| ()),
            Err(p) => Err(p),
        };
        match checked {
            Ok(()) => {
                active = Some(cand);
                break;
            }
            Err(p) if cand == selected => fallback = Some(p),
            Err(_) => {}
        }
    }
    Ok(WwwState {
        slots,
        active,
        selected,
        nvs_value,
        nvs_unreadable,
        fallback,
    })
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

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Where a metadata block's bytes come from: a slice in memory, or the flash
/// through a [`SUPERBLOCK_WINDOW`]-byte window of aligned reads.
trait BlockBytes {
    type Error;
    /// Copies `out.len()` bytes at `off`; `false` past the block's end.
    fn copy(&mut self, off: u32, out: &mut [u8]) -> Result<bool, Self::Error>;
    /// Folds `len` bytes at `off` into `crc`; `None` past the block's end.
    fn crc(&mut self, crc: u32, off: u32, len: u32) -> Result<Option<u32>, Self::Error>;
}

impl BlockBytes for &[u8] {
    type Error = core::convert::Infallible;
    fn copy(&mut self, off: u32, out: &mut [u8]) -> Result<bool, Self::Error> {
        let src = (off as usize)
            .checked_add(out.len())
            .and_then(|end| self.get(off as usize..end));
        Ok(src.map(|s| out.copy_from_slice(s)).is_some())
    }
    fn crc(&mut self, crc: u32, off: u32, len: u32) -> Result<Option<u32>, Self::Error> {
        let src = (off as usize)
            .checked_add(len as usize)
            .and_then(|end| self.get(off as usize..end));
        Ok(src.map(|s| lfs_crc(crc, s)))
    }
}

/// Reads one metadata block of `len` bytes at `base` in
/// [`SUPERBLOCK_WINDOW`]-byte pieces at aligned offsets (a chip's flash driver
/// reads whole 4-byte words at 4-byte offsets; tags are not aligned).
struct FlashBlock<'f, F> {
    flash: &'f mut F,
    base: u32,
    len: u32,
    /// Block offset of `buf[0]`, `None` before the first read.
    at: Option<u32>,
    buf: [u8; SUPERBLOCK_WINDOW],
}

impl<F: NorFlash> FlashBlock<'_, F> {
    /// The window holding byte `off`, loaded if needed.
    fn window(&mut self, off: u32) -> Result<(u32, &[u8]), F::Error> {
        let start = off - off % SUPERBLOCK_WINDOW as u32;
        if self.at != Some(start) {
            self.flash.read(self.base + start, &mut self.buf)?;
            self.at = Some(start);
        }
        Ok((start, &self.buf))
    }

    /// Calls `f` with the bytes `off..off + len`, window by window.
    fn each(&mut self, mut off: u32, len: u32, mut f: impl FnMut(&[u8])) -> Result<bool, F::Error> {
        let Some(end) = off.checked_add(len).filter(|&e| e <= self.len) else {
            return Ok(false);
        };
        while off < end {
            let (start, buf) = self.window(off)?;
            let from = (off - start) as usize;
            let to = ((end - start) as usize).min(buf.len());
            f(buf.get(from..to).unwrap_or_default());
            off = start + to as u32;
        }
        Ok(true)
    }
}

impl<F: NorFlash> BlockBytes for FlashBlock<'_, F> {
    type Error = F::Error;
    fn copy(&mut self, off: u32, out: &mut [u8]) -> Result<bool, Self::Error> {
        let mut at = 0usize;
        self.each(off, out.len() as u32, |piece| {
            if let Some(d) = out.get_mut(at..at + piece.len()) {
                d.copy_from_slice(piece);
            }
            at += piece.len();
        })
    }
    fn crc(&mut self, crc: u32, off: u32, len: u32) -> Result<Option<u32>, Self::Error> {
        let mut c = crc;
        let ok = self.each(off, len, |piece| c = lfs_crc(c, piece))?;
        Ok(ok.then_some(c))
    }
}

/// Walks the commits of one metadata block as littlefs's `lfs_dir_fetch`
/// does: tags XOR-chained from 0xFFFFFFFF, each commit closed by a CCRC tag
/// whose CRC covers everything since the previous one (its padding to the
/// program size inside its length), up to the first tag or CRC that does not
/// check. Returns the block's revision and the superblock (the inline struct
/// of id 0) of the last valid commit that carried one.
fn scan_block<B: BlockBytes>(b: &mut B) -> Result<Option<(u32, Superblock)>, B::Error> {
    const INLINESTRUCT: u32 = 0x201;
    const CCRC: u32 = 0x500;
    let dsize = |tag: u32| 4 + if tag & 0x3ff == 0x3ff { 0 } else { tag & 0x3ff };
    let mut word = [0u8; 4];
    if !b.copy(0, &mut word)? {
        return Ok(None);
    }
    let rev = u32::from_le_bytes(word);
    let mut crc = lfs_crc(0xFFFF_FFFF, &word);
    let mut ptag: u32 = 0xFFFF_FFFF;
    let mut off = 0u32;
    let mut pending = None;
    let mut committed = None;
    while let Some(next) = off.checked_add(dsize(ptag)) {
        off = next;
        if !b.copy(off, &mut word)? {
            break;
        }
        crc = lfs_crc(crc, &word);
        let tag = u32::from_be_bytes(word) ^ ptag;
        if tag & 0x8000_0000 != 0 {
            break;
        }
        let data_len = dsize(tag) - 4;
        ptag = tag;
        if (tag & 0x7800_0000) >> 20 == CCRC {
            // The padding must lie inside the block too.
            if b.crc(0, off + 4, data_len)?.is_none() || !b.copy(off + 4, &mut word)? {
                break;
            }
            if crc != u32::from_le_bytes(word) {
                break;
            }
            ptag ^= ((tag >> 20) & 1) << 31;
            if pending.is_some() {
                committed = pending;
            }
            crc = 0xFFFF_FFFF;
            continue;
        }
        let Some(c) = b.crc(crc, off + 4, data_len)? else {
            break;
        };
        crc = c;
        if (tag & 0x7ff0_0000) >> 20 == INLINESTRUCT && (tag & 0x000f_fc00) >> 10 == 0 {
            // version, block_size, block_count, name_max, file_max, attr_max
            let mut s = [0u8; 16];
            if data_len >= 16 && b.copy(off + 4, &mut s)? {
                if let (Some(version), Some(block_size), Some(block_count), Some(name_max)) =
                    (le32(&s, 0), le32(&s, 4), le32(&s, 8), le32(&s, 12))
                {
                    pending = Some(Superblock {
                        version,
                        block_size,
                        block_count,
                        name_max,
                    });
                }
            }
        }
    }
    Ok(committed.map(|s| (rev, s)))
}

/// The superblock in one metadata block held in memory (the last
/// inline-struct tag for id 0 in a commit whose CRC checks), with the
/// block's revision. `block` is the whole block: commits may end anywhere in
/// it.
pub fn superblock_in(block: &[u8]) -> Option<(u32, Superblock)> {
    let mut b = block;
    match scan_block(&mut b) {
        Ok(found) => found,
        Err(never) => match never {},
    }
}

/// Reads the superblock of the LittleFS image in `slot` (metadata blocks 0
/// and 1 of [`LFS_BLOCK_SIZE`] bytes, each walked to its last valid commit
/// through a [`SUPERBLOCK_WINDOW`]-byte buffer; the newer revision wins) and
/// checks it as littlefs's `lfs_mount` would with `limits`: the disk
/// version, then the geometry against the slot, then `name_max`.
///
/// esp_littlefs mounts flash partitions with a 4096-byte block and
/// `block_count = partition size / 4096` whatever the image's other
/// settings (read, program, cache and lookahead sizes only change where
/// commits end, which this walk does not assume). An image made with another
/// block size is refused as esp_littlefs would refuse it, naming the size.
pub fn check_superblock<F: NorFlash>(
    flash: &mut F,
    slot: &Region,
    limits: &MountLimits,
) -> Result<Result<Superblock, UiProblem>, DeviceError> {
    let mut found: Option<(u32, Superblock)> = None;
    for block in 0..2u32 {
        let at = block * LFS_BLOCK_SIZE;
        let len = slot.size.saturating_sub(at).min(LFS_BLOCK_SIZE);
        if len < SUPERBLOCK_WINDOW as u32 {
            break;
        }
        let mut b = FlashBlock {
            flash: &mut *flash,
            base: slot.offset + at,
            len,
            at: None,
            buf: [0u8; SUPERBLOCK_WINDOW],
        };
        if let Some((rev, sb)) = scan_block(&mut b).map_err(DeviceError::flash)? {
            found = match found {
                Some((r, s)) if (rev.wrapping_sub(r) as i32) <= 0 => Some((r, s)),
                _ => Some((rev, sb)),
            };
        }
    }
    let Some((_, sb)) = found else {
        return Ok(Err(UiProblem::NoSuperblock));
    };
    let max = limits.disk_version_max;
    if sb.version >> 16 != max >> 16 || sb.version & 0xffff > max & 0xffff {
        return Ok(Err(UiProblem::DiskVersion {
            found: sb.version,
            max,
        }));
    }
    let slot_blocks = slot.size / LFS_BLOCK_SIZE;
    if sb.block_size != LFS_BLOCK_SIZE || sb.block_count != slot_blocks {
        return Ok(Err(UiProblem::Geometry {
            image_blocks: sb.block_count,
            block_size: sb.block_size,
            slot_blocks,
        }));
    }
    if sb.name_max > limits.name_max {
        return Ok(Err(UiProblem::NameMax {
            found: sb.name_max,
            max: limits.name_max,
        }));
    }
    Ok(Ok(sb))
}

/// Hashes `len` bytes of `slot` from its start, [`VERIFY_CHUNK`] at a time.
pub fn hash_region<F: NorFlash>(
    flash: &mut F,
    slot: &Region,
    len: u32,
) -> Result<[u8; 32], DeviceError> {
    let mut h = Sha256::new();
    let mut buf = [0u8; VERIFY_CHUNK];
    let mut at = 0u32;
    while at < len {
        let n = (len - at).min(VERIFY_CHUNK as u32);
        // Reads stay in 4-byte units: round up and hash only what is asked.
        let read = n.div_ceil(4) * 4;
        let chunk = buf.get_mut(..read as usize).unwrap_or_default();
        flash
            .read(slot.offset + at, chunk)
            .map_err(DeviceError::flash)?;
        h.update(chunk.get(..n as usize).unwrap_or_default());
        at += n;
    }
    Ok(h.finalize().into())
}

/// A web-UI upload in progress; see the module docs.
#[derive(Debug, Clone)]
pub struct WwwUpload {
    /// Index of the target slot (0 or 1).
    pub target: u8,
    /// The target slot.
    pub region: Region,
    expected: Option<[u8; 32]>,
    received: u32,
    programmed: u32,
    erased_to: u32,
    stage: [u8; STAGE],
    stage_len: usize,
    hasher: Sha256,
}

/// A finished web-UI upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WwwDone {
    /// The slot now selected.
    pub target: u8,
    /// Bytes written.
    pub bytes: u32,
    /// SHA-256 of the slot.
    pub sha256: [u8; 32],
    /// Files, when the inspector counts them.
    pub files: Option<u32>,
}

impl WwwUpload {
    /// Starts an upload of `size` bytes (if announced) into `region`
    /// (slot `target`).
    pub fn begin<F: NorFlash, P: WwwPointer<F>>(
        flash: &mut F,
        pointer: &mut P,
        target: u8,
        region: Region,
        size: Option<u64>,
        expected: Option<[u8; 32]>,
    ) -> Result<Self, DeviceError> {
        if let Some(n) = size {
            if n > u64::from(region.size) {
                return Err(DeviceError::TooLarge {
                    needed: n,
                    capacity: region.size,
                });
            }
            if n != u64::from(region.size) {
                return Err(DeviceError::WrongSize {
                    len: n,
                    size: region.size,
                });
            }
        }
        pointer.can_select(flash, target)?;
        Ok(Self {
            target,
            region,
            expected,
            received: 0,
            programmed: 0,
            erased_to: 0,
            stage: [0xFF; STAGE],
            stage_len: 0,
            hasher: Sha256::new(),
        })
    }

    /// Bytes received.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Streams the next bytes into the slot.
    pub fn write<F: NorFlash>(
        &mut self,
        flash: &mut F,
        mut data: &[u8],
    ) -> Result<(), DeviceError> {
        let total = u64::from(self.received) + data.len() as u64;
        if total > u64::from(self.region.size) {
            // An announced size was checked in `begin`: this body's length
            // was not announced, or it runs past what was.
            return Err(DeviceError::TooLargeStream {
                received: total,
                capacity: self.region.size,
            });
        }
        self.hasher.update(data);
        self.received = total as u32;
        while !data.is_empty() {
            let n = (STAGE - self.stage_len).min(data.len());
            let (now, rest) = data.split_at(n);
            if let Some(d) = self.stage.get_mut(self.stage_len..self.stage_len + n) {
                d.copy_from_slice(now);
            }
            self.stage_len += n;
            data = rest;
            if self.stage_len == STAGE {
                self.flush(flash)?;
            }
        }
        Ok(())
    }

    fn flush<F: NorFlash>(&mut self, flash: &mut F) -> Result<(), DeviceError> {
        if self.stage_len == 0 {
            return Ok(());
        }
        let ws = F::WRITE_SIZE.max(1);
        let len = self.stage_len.div_ceil(ws) * ws;
        if let Some(p) = self.stage.get_mut(self.stage_len..len) {
            p.fill(0xFF);
        }
        let end = self.programmed + len as u32;
        while self.erased_to < end {
            let at = self.region.offset + self.erased_to;
            flash.erase(at, at + SECTOR).map_err(DeviceError::flash)?;
            self.erased_to += SECTOR;
        }
        let data = self.stage.get(..len).unwrap_or_default();
        flash
            .write(self.region.offset + self.programmed, data)
            .map_err(DeviceError::flash)?;
        self.programmed = end;
        self.stage_len = 0;
        Ok(())
    }

    /// Verifies the slot as written (read back in chunks), checks the UI and
    /// switches the pointer.
    pub fn finish<F: NorFlash, P: WwwPointer<F> + UiInspector<F>>(
        mut self,
        flash: &mut F,
        platform: &mut P,
        limits: &MountLimits,
    ) -> Result<WwwDone, DeviceError> {
        if self.received != self.region.size {
            return Err(DeviceError::WrongSize {
                len: u64::from(self.received),
                size: self.region.size,
            });
        }
        self.flush(flash)?;
        let streamed: [u8; 32] = self.hasher.clone().finalize().into();
        if self.expected.is_some_and(|e| e != streamed) {
            return Err(DeviceError::Sha256Mismatch);
        }
        let stored = hash_region(flash, &self.region, self.region.size)?;
        if stored != streamed {
            return Err(DeviceError::Flash(crate::FlashFault(
                embedded_storage::nor_flash::NorFlashErrorKind::Other,
            )));
        }
        check_superblock(flash, &self.region, limits)?.map_err(DeviceError::BadWebUi)?;
        let walked = check_files(flash, &self.region)?.map_err(DeviceError::BadWebUi)?;
        let summary = platform.inspect(flash, &self.region).map_err(|e| match e {
            InspectError::Problem(p) => DeviceError::BadWebUi(p),
            InspectError::Flash(k) => DeviceError::Flash(crate::FlashFault(k)),
        })?;
        platform.select(flash, self.target)?;
        Ok(WwwDone {
            target: self.target,
            bytes: self.received,
            sha256: stored,
            files: summary.files.or(Some(walked.files)),
        })
    }
}
