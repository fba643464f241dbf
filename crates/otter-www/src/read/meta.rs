//! littlefs metadata logs: one block's committed tags, a metadata pair's
//! newer block, and the entries a directory's log leaves standing.
//!
//! # A metadata block
//!
//! | offset | size | contents |
//! |---|---|---|
//! | 0 | 4 | revision count, little-endian |
//! | 4 | … | commits: tags (4 bytes, big-endian, each XORed with the previous one, the first with `0xffffffff`) and their data |
//!
//! A tag is `valid:1 | type:11 | id:10 | size:10`; a set valid bit ends the
//! log, size `0x3ff` marks a deleted tag (no data). A commit ends with a CRC
//! tag (type `0x500`, low type bit flipping the next valid bit) whose first
//! four data bytes are the CRC of everything since the previous commit
//! (the revision count included for the first). Tags count only once their
//! commit's CRC matches; the first mismatch ends the log, as in littlefs's
//! `lfs_dir_fetch`. Disk version 2.1 adds an FCRC tag (`0x5ff`, a CRC of
//! the erased space after the commit); a reader takes it as any other tag.

use alloc::vec::Vec;

use super::{crc32, Corruption};

/// Tag types (the 11-bit `type` field) this reader uses.
pub(crate) mod ty {
    /// A regular file's name.
    pub const REG: u16 = 0x001;
    /// A directory's name.
    pub const DIR: u16 = 0x002;
    /// The superblock's name (`littlefs`).
    pub const SUPERBLOCK: u16 = 0x0ff;
    /// A directory's metadata pair.
    pub const DIRSTRUCT: u16 = 0x200;
    /// File contents held in the tag itself; or the superblock's fields.
    pub const INLINESTRUCT: u16 = 0x201;
    /// A file's CTZ skip-list: head block, size.
    pub const CTZSTRUCT: u16 = 0x202;
    /// A new id, inserted before the id it names.
    pub const CREATE: u16 = 0x401;
    /// The id it names is removed.
    pub const DELETE: u16 = 0x4ff;
}

/// The 3-bit class of a tag type.
const CLASS_NAME: u16 = 0x000;
const CLASS_STRUCT: u16 = 0x200;
const CLASS_SPLICE: u16 = 0x400;
const CLASS_CRC: u16 = 0x500;
const CLASS_TAIL: u16 = 0x600;
/// A tag whose size field is this has no data (a deleted tag).
const SIZE_DELETED: u32 = 0x3ff;

/// One tag of a committed log, with its data.
#[derive(Debug, Clone, Copy)]
struct Tag<'a> {
    ty: u16,
    id: u16,
    data: &'a [u8],
}

/// What one id of a directory's log holds: its name and its struct.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Slot<'a> {
    /// Name tag type ([`ty::REG`], [`ty::DIR`], [`ty::SUPERBLOCK`]) and bytes.
    pub name: Option<(u16, &'a [u8])>,
    /// Struct tag type and data.
    pub structure: Option<(u16, &'a [u8])>,
}

/// A metadata pair's state: its entries and the tail pointer, if any.
#[derive(Debug, Clone, Default)]
pub(crate) struct Log<'a> {
    /// Entries by id.
    pub slots: Vec<Slot<'a>>,
    /// The tail pair, and whether it continues this directory (a hard tail,
    /// after a split) rather than pointing at the next directory.
    pub tail: Option<([u32; 2], bool)>,
}

fn dsize(tag: u32) -> usize {
    let size = tag & 0x3ff;
    4 + if size == SIZE_DELETED {
        0
    } else {
        size as usize
    }
}

/// The tags of `block`'s committed log, or `None` when no commit's CRC
/// matches (an erased, torn or foreign block).
fn committed(block: &[u8]) -> Option<Vec<Tag<'_>>> {
    let rev = block.get(0..4)?;
    let mut crc = crc32(0xffff_ffff, rev);
    let mut ptag: u32 = 0xffff_ffff;
    let mut off = 0usize;
    let mut pending = Vec::new();
    let mut done: Option<Vec<Tag<'_>>> = None;
    loop {
        off = off.checked_add(dsize(ptag))?;
        let Some(raw) = off.checked_add(4).and_then(|end| block.get(off..end)) else {
            break;
        };
        crc = crc32(crc, raw);
        let tag = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) ^ ptag;
        if tag & 0x8000_0000 != 0 {
            break;
        }
        let Some(data) = off
            .checked_add(dsize(tag))
            .and_then(|end| block.get(off + 4..end))
        else {
            break;
        };
        ptag = tag;
        let ty = ((tag >> 20) & 0x7ff) as u16;
        let id = ((tag >> 10) & 0x3ff) as u16;
        if ty & 0x780 == CLASS_CRC {
            let Some(stored) = data.get(0..4) else {
                break;
            };
            if crc != u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]) {
                break;
            }
            ptag ^= ((tag >> 20) & 1) << 31;
            done.get_or_insert_with(Vec::new).append(&mut pending);
            crc = 0xffff_ffff;
            continue;
        }
        crc = crc32(crc, data);
        pending.push(Tag { ty, id, data });
    }
    done
}

/// Replays committed tags into the entries they leave: creates insert an
/// id, deletes remove one, names and structs set an id's (the last wins),
/// and a name past the end extends the list (a compacted log has no
/// creates).
fn replay<'a>(tags: &[Tag<'a>]) -> Result<Log<'a>, Corruption> {
    let mut log = Log::default();
    let grow = |slots: &mut Vec<Slot<'a>>, id: usize| {
        if slots.len() <= id {
            slots.resize(id + 1, Slot::default());
        }
    };
    for t in tags {
        let id = usize::from(t.id);
        match t.ty & 0x700 {
            CLASS_NAME => {
                grow(&mut log.slots, id);
                log.slots[id].name = Some((t.ty, t.data));
            }
            CLASS_STRUCT => {
                grow(&mut log.slots, id);
                log.slots[id].structure = Some((t.ty, t.data));
            }
            CLASS_SPLICE if t.ty == ty::CREATE => {
                if id <= log.slots.len() {
                    log.slots.insert(id, Slot::default());
                } else {
                    grow(&mut log.slots, id);
                }
            }
            CLASS_SPLICE if t.ty == ty::DELETE && id < log.slots.len() => {
                log.slots.remove(id);
            }
            CLASS_TAIL => {
                let d = t.data;
                if d.len() < 8 {
                    return Err(Corruption::TailPointer);
                }
                let pair = [
                    u32::from_le_bytes([d[0], d[1], d[2], d[3]]),
                    u32::from_le_bytes([d[4], d[5], d[6], d[7]]),
                ];
                log.tail = Some((pair, t.ty & 1 == 1));
            }
            _ => {}
        }
    }
    Ok(log)
}

/// A block's revision count.
fn revision(block: &[u8]) -> u32 {
    block
        .get(0..4)
        .map_or(0, |r| u32::from_le_bytes([r[0], r[1], r[2], r[3]]))
}

/// The state of the metadata pair in `blocks`, read from its newer block
/// (by sequence comparison of revision counts, as littlefs's `lfs_scmp`),
/// or from the other when the newer holds no committed log.
pub(crate) fn fetch_pair<'a>(
    image: &'a [u8],
    block_size: u32,
    pair: [u32; 2],
) -> Result<Log<'a>, Corruption> {
    let block = |b: u32| -> Result<&'a [u8], Corruption> {
        let start = usize::try_from(u64::from(b) * u64::from(block_size))
            .map_err(|_| Corruption::BlockOutOfRange(b))?;
        start
            .checked_add(block_size as usize)
            .and_then(|end| image.get(start..end))
            .ok_or(Corruption::BlockOutOfRange(b))
    };
    let blocks = [block(pair[0])?, block(pair[1])?];
    let newer_second = (revision(blocks[1]).wrapping_sub(revision(blocks[0])) as i32) > 0;
    let order = if newer_second { [1, 0] } else { [0, 1] };
    for i in order {
        if let Some(tags) = committed(blocks[i]) {
            return replay(&tags);
        }
    }
    Err(Corruption::NoCommit(pair))
}

/// The committed state of one block on its own (no pair), for finding the
/// superblock before the block size is known.
pub(crate) fn fetch_block(block: &[u8]) -> Option<Log<'_>> {
    committed(block).and_then(|tags| replay(&tags).ok())
}
