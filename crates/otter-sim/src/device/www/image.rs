//! LittleFS images as a slot holds them: the superblock's geometry, and
//! whether the image mounts and holds `/index.html`.

use super::{INDEX_HTML, LFS_BLOCK_SIZE, MAX_UI_FILES};

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
pub(super) fn lfs_crc(mut crc: u32, data: &[u8]) -> u32 {
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
