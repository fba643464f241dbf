//! Reads a web-UI slot's LittleFS to the end of every file, through the
//! flash, with fixed buffers: what the upload check and the boot run before
//! a slot is trusted.
//!
//! The superblock check ([`super::check_superblock`]) proves that
//! esp_littlefs would mount the slot, not that its files read: a file's data
//! is a CTZ skip-list of blocks, and littlefs follows its pointers on every
//! read (`lfs_ctz_find`, from the head block, through the skip pointers).
//! An image whose directory is intact but whose file blocks are damaged
//! mounts, lists, and then fails on the first read of that file. This walk
//! does what a reader of every file would:
//!
//! 1. visits every metadata pair from the root `{0, 1}` along the tail
//!    list (littlefs's `lfs_fs_traverse`: hard tails continue a directory,
//!    soft tails lead to the next one), at most one visit per block;
//! 2. in each pair, takes the newer block whose commits' CRCs check, and
//!    replays its tags into a fixed table of [`MAX_PAIR_ENTRIES`] entries
//!    (creates insert, deletes remove, the last name and struct win);
//! 3. for each file stored as a CTZ skip-list, finds every block as
//!    `lfs_ctz_find` does (the head, then skip pointers), checks that the
//!    next block's pointer 0 names it (so seeks and sequential reads agree),
//!    and reads its data to the file's end in [`super::VERIFY_CHUNK`]-byte
//!    pieces;
//! 4. requires `/index.html` in the root.
//!
//! Memory: one [`super::SUPERBLOCK_WINDOW`]-byte window for metadata, one
//! [`super::VERIFY_CHUNK`]-byte buffer for data and the entry table
//! ([`MAX_PAIR_ENTRIES`] × 12 bytes), all on the stack; nothing depends on
//! the slot's size. Every pointer read from flash is checked against the
//! slot's block count before it is followed, and every loop is bounded by
//! the block count, so a hostile image can neither escape the slot nor
//! make the walk run forever.

use embedded_storage::nor_flash::NorFlash;
use otter_ota::Region;

use super::{BlockBytes, FlashBlock, UiProblem, LFS_BLOCK_SIZE, SUPERBLOCK_WINDOW, VERIFY_CHUNK};
use crate::error::DeviceError;

/// The most entries (files, directories, the superblock) one metadata pair
/// may hold. littlefs splits a directory's pair long before a 4 KiB block
/// holds this many names.
pub const MAX_PAIR_ENTRIES: usize = 128;

/// Where a slot's file system is damaged, below what the superblock shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Damage {
    /// A pointer (a tail, a directory's pair, a file's block) names a block
    /// past the slot's end.
    #[error("a pointer names block {block}, past the slot's {blocks} blocks")]
    BlockOutOfRange {
        /// The block named.
        block: u32,
        /// Blocks in the slot.
        blocks: u32,
    },
    /// Neither block of a metadata pair holds a commit whose CRC checks.
    #[error("metadata pair {{{}, {}}} holds no committed log", .0[0], .0[1])]
    NoCommit([u32; 2]),
    /// The metadata list visits more pairs than the slot has blocks.
    #[error("the metadata list does not end (a loop)")]
    Loop,
    /// A file's skip pointers and its chain of previous-block pointers
    /// disagree: a seek would read another block than a sequential read.
    #[error("a file's skip pointers find block {found}, but the next block's pointer 0 names block {chain}")]
    SkipPointer {
        /// The block the skip pointers find for one position.
        found: u32,
        /// The block the next position's pointer 0 names.
        chain: u32,
    },
    /// A file's size needs more blocks than the slot has.
    #[error("a file of {0} bytes cannot fit in the slot")]
    FileTooLarge(u32),
    /// A struct tag is shorter than its type needs.
    #[error("an entry's struct is {0} bytes, too short for its type")]
    ShortStruct(u32),
    /// One metadata pair holds more than [`MAX_PAIR_ENTRIES`] entries.
    #[error("a metadata pair holds more than {MAX_PAIR_ENTRIES} entries")]
    TooManyEntries,
}

/// What a full walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalkSummary {
    /// Regular files.
    pub files: u32,
    /// Directories (the root not counted).
    pub dirs: u32,
    /// Bytes of file data read.
    pub bytes: u64,
}

const NAME_CLASS: u32 = 0x000;
const STRUCT_CLASS: u32 = 0x200;
const SPLICE_CLASS: u32 = 0x400;
const TAIL_CLASS: u32 = 0x600;
const REG: u32 = 0x001;
const DIR: u32 = 0x002;
const DIRSTRUCT: u32 = 0x200;
const INLINESTRUCT: u32 = 0x201;
const CTZSTRUCT: u32 = 0x202;
const CREATE: u32 = 0x401;
const DELETE: u32 = 0x4ff;
const NULL_PAIR: [u32; 2] = [u32::MAX, u32::MAX];

/// One id of a pair's log.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// Name tag type (`REG`, `DIR`, the superblock's), 0 for none.
    name: u16,
    /// The name is `index.html`.
    index: bool,
    /// Struct tag type, 0 for none.
    st: u16,
    a: u32,
    b: u32,
}

struct Table {
    e: [Entry; MAX_PAIR_ENTRIES],
    n: usize,
}

impl Table {
    fn grow(&mut self, id: usize) -> Result<&mut Entry, Damage> {
        if id >= MAX_PAIR_ENTRIES {
            return Err(Damage::TooManyEntries);
        }
        while self.n <= id {
            if let Some(e) = self.e.get_mut(self.n) {
                *e = Entry::default();
            }
            self.n += 1;
        }
        self.e.get_mut(id).ok_or(Damage::TooManyEntries)
    }

    fn create(&mut self, id: usize) -> Result<(), Damage> {
        if id > self.n {
            return self.grow(id).map(|_| ());
        }
        if self.n >= MAX_PAIR_ENTRIES {
            return Err(Damage::TooManyEntries);
        }
        self.e.copy_within(id..self.n, id + 1);
        if let Some(e) = self.e.get_mut(id) {
            *e = Entry::default();
        }
        self.n += 1;
        Ok(())
    }

    fn delete(&mut self, id: usize) {
        if id < self.n {
            self.e.copy_within(id + 1..self.n, id);
            self.n -= 1;
        }
    }
}

/// A block's revision and the offset just past its last valid commit.
type Commits = (u32, u32);
/// A tail: the next pair, and whether it continues this directory (hard).
type Tail = ([u32; 2], bool);

fn dsize(tag: u32) -> u32 {
    4 + if tag & 0x3ff == 0x3ff { 0 } else { tag & 0x3ff }
}

/// Walks one block's tags as `lfs_dir_fetch` does and returns its revision
/// and the offset just past its last valid commit, `None` when no commit
/// checks. With `replay`, every tag before that offset is handed to it.
fn commits<B: BlockBytes>(
    b: &mut B,
    until: Option<u32>,
    mut replay: impl FnMut(&mut B, u32, u32) -> Result<(), Damage>,
) -> Result<Result<Option<Commits>, Damage>, B::Error> {
    let mut word = [0u8; 4];
    if !b.copy(0, &mut word)? {
        return Ok(Ok(None));
    }
    let rev = u32::from_le_bytes(word);
    let mut crc = super::lfs_crc(0xFFFF_FFFF, &word);
    let mut ptag: u32 = 0xFFFF_FFFF;
    let mut off = 0u32;
    let mut end = None;
    while let Some(next) = off.checked_add(dsize(ptag)) {
        off = next;
        if until.is_some_and(|u| off >= u) || !b.copy(off, &mut word)? {
            break;
        }
        crc = super::lfs_crc(crc, &word);
        let tag = u32::from_be_bytes(word) ^ ptag;
        if tag & 0x8000_0000 != 0 {
            break;
        }
        let data_len = dsize(tag) - 4;
        ptag = tag;
        let ty = (tag >> 20) & 0x7ff;
        if ty & 0x780 == 0x500 {
            if until.is_none() {
                if b.crc(0, off + 4, data_len)?.is_none() || !b.copy(off + 4, &mut word)? {
                    break;
                }
                if crc != u32::from_le_bytes(word) {
                    break;
                }
            }
            ptag ^= ((tag >> 20) & 1) << 31;
            end = Some(off + 4 + data_len);
            crc = 0xFFFF_FFFF;
            continue;
        }
        if until.is_some() {
            if let Err(d) = replay(b, tag, off + 4) {
                return Ok(Err(d));
            }
            continue;
        }
        let Some(c) = b.crc(crc, off + 4, data_len)? else {
            break;
        };
        crc = c;
    }
    Ok(Ok(end.map(|e| (rev, e))))
}

fn le32_at<B: BlockBytes>(b: &mut B, off: u32) -> Result<Option<u32>, B::Error> {
    let mut w = [0u8; 4];
    Ok(b.copy(off, &mut w)?.then(|| u32::from_le_bytes(w)))
}

/// Replays the tags before `end` into `t`; returns the last tail.
fn replay<B: BlockBytes>(
    b: &mut B,
    end: u32,
    t: &mut Table,
) -> Result<Result<Option<Tail>, Damage>, B::Error> {
    let mut tail = None;
    let mut io_err = None;
    let r = commits(b, Some(end), |b, tag, data| {
        let ty = (tag >> 20) & 0x7ff;
        let id = ((tag >> 10) & 0x3ff) as usize;
        let len = dsize(tag) - 4;
        let mut word = |b: &mut B, at: u32| match le32_at(b, data + at) {
            Ok(v) => v,
            Err(e) => {
                io_err = Some(e);
                None
            }
        };
        match ty & 0x700 {
            NAME_CLASS => {
                let mut name = [0u8; 10];
                let index = len == 10
                    && match b.copy(data, &mut name) {
                        Ok(ok) => ok && &name == b"index.html",
                        Err(e) => {
                            io_err = Some(e);
                            false
                        }
                    };
                let e = t.grow(id)?;
                e.name = ty as u16;
                e.index = index;
            }
            STRUCT_CLASS => {
                let (a, bb) = if matches!(ty, DIRSTRUCT | CTZSTRUCT) {
                    if len < 8 {
                        return Err(Damage::ShortStruct(len));
                    }
                    (word(b, 0).unwrap_or(0), word(b, 4).unwrap_or(0))
                } else {
                    (len, 0)
                };
                let e = t.grow(id)?;
                e.st = ty as u16;
                e.a = a;
                e.b = bb;
            }
            SPLICE_CLASS if ty == CREATE => t.create(id)?,
            SPLICE_CLASS if ty == DELETE => t.delete(id),
            TAIL_CLASS => {
                if len < 8 {
                    return Err(Damage::ShortStruct(len));
                }
                if let (Some(p0), Some(p1)) = (word(b, 0), word(b, 4)) {
                    tail = Some(([p0, p1], ty & 1 == 1));
                }
            }
            _ => {}
        }
        Ok(())
    });
    if let Some(e) = io_err {
        return Err(e);
    }
    Ok(r?.map(|_| tail))
}

fn block_of(slot: &Region, block: u32) -> Result<u32, Damage> {
    let blocks = slot.size / LFS_BLOCK_SIZE;
    if block >= blocks {
        return Err(Damage::BlockOutOfRange { block, blocks });
    }
    Ok(slot.offset + block * LFS_BLOCK_SIZE)
}

fn flash_block<F>(flash: &mut F, base: u32) -> FlashBlock<'_, F> {
    FlashBlock {
        flash,
        base,
        len: LFS_BLOCK_SIZE,
        at: None,
        buf: [0u8; SUPERBLOCK_WINDOW],
    }
}

/// Fetches the pair and replays its newer committed block into `t`.
fn fetch<F: NorFlash>(
    flash: &mut F,
    slot: &Region,
    pair: [u32; 2],
    t: &mut Table,
) -> Result<Result<Option<Tail>, Damage>, DeviceError> {
    let mut found: [Option<(u32, u32)>; 2] = [None, None];
    for (i, &blk) in pair.iter().enumerate() {
        let base = match block_of(slot, blk) {
            Ok(b) => b,
            Err(d) => return Ok(Err(d)),
        };
        let mut b = flash_block(flash, base);
        let r = commits(&mut b, None, |_, _, _| Ok(())).map_err(DeviceError::flash)?;
        if let Some(slot) = found.get_mut(i) {
            *slot = r.ok().flatten();
        }
    }
    let pick = match found {
        [Some((r0, e0)), Some((r1, e1))] => {
            if (r1.wrapping_sub(r0) as i32) > 0 {
                (pair[1], e1)
            } else {
                (pair[0], e0)
            }
        }
        [Some((_, e0)), None] => (pair[0], e0),
        [None, Some((_, e1))] => (pair[1], e1),
        [None, None] => return Ok(Err(Damage::NoCommit(pair))),
    };
    let base = match block_of(slot, pick.0) {
        Ok(b) => b,
        Err(d) => return Ok(Err(d)),
    };
    t.n = 0;
    let mut b = flash_block(flash, base);
    replay(&mut b, pick.1, t).map_err(DeviceError::flash)
}

/// Bytes of pointers at the start of CTZ block `index`.
fn pointers(index: u32) -> u32 {
    if index == 0 {
        0
    } else {
        4 * (index.trailing_zeros() + 1)
    }
}

/// Reads a CTZ file of `size` bytes whose last block is `head` to its end:
/// every block found as `lfs_ctz_find` finds it, its data read.
fn read_ctz<F: NorFlash>(
    flash: &mut F,
    slot: &Region,
    head: u32,
    size: u32,
) -> Result<Result<u64, Damage>, DeviceError> {
    let blocks = slot.size / LFS_BLOCK_SIZE;
    if size == 0 {
        return Ok(Ok(0));
    }
    // How many blocks hold `size` bytes.
    let mut n: u32 = 0;
    let mut held: u64 = 0;
    while held < u64::from(size) {
        if n >= blocks {
            return Ok(Err(Damage::FileTooLarge(size)));
        }
        held += u64::from(LFS_BLOCK_SIZE - pointers(n));
        n += 1;
    }
    let mut buf = [0u8; VERIFY_CHUNK];
    let mut pos: u64 = 0;
    // The block found for the previous index, which the next block's
    // pointer 0 must name.
    let mut prev: Option<u32> = None;
    for index in 0..n {
        // lfs_ctz_find: from the head (index n - 1) down to `index`.
        let mut cur = head;
        let mut current = n - 1;
        while current > index {
            let dist = current - index + 1;
            let npw2 = 32 - (dist - 1).leading_zeros();
            let skip = (npw2 - 1).min(current.trailing_zeros());
            let base = match block_of(slot, cur) {
                Ok(b) => b,
                Err(d) => return Ok(Err(d)),
            };
            let mut w = [0u8; 4];
            flash
                .read(base + 4 * skip, &mut w)
                .map_err(DeviceError::flash)?;
            cur = u32::from_le_bytes(w);
            current -= 1 << skip;
        }
        let base = match block_of(slot, cur) {
            Ok(b) => b,
            Err(d) => return Ok(Err(d)),
        };
        if let Some(p) = prev {
            let mut w = [0u8; 4];
            flash.read(base, &mut w).map_err(DeviceError::flash)?;
            let chain = u32::from_le_bytes(w);
            if chain != p {
                return Ok(Err(Damage::SkipPointer { found: p, chain }));
            }
        }
        prev = Some(cur);
        let start = pointers(index);
        let want = (u64::from(size) - pos).min(u64::from(LFS_BLOCK_SIZE - start)) as u32;
        let mut at = 0u32;
        while at < want {
            let k = (want - at).min(VERIFY_CHUNK as u32);
            let chunk = buf
                .get_mut(..(k.div_ceil(4) * 4) as usize)
                .unwrap_or_default();
            flash
                .read(base + start + at, chunk)
                .map_err(DeviceError::flash)?;
            at += k;
        }
        pos += u64::from(want);
    }
    Ok(Ok(pos))
}

/// Walks the LittleFS in `slot` and reads every file to its end (see the
/// module docs). `Ok(Err(_))` names what would fail on the device: a
/// damaged pair or file, or no `/index.html` in the root. Run it after
/// [`super::check_superblock`] accepted the slot.
pub fn check_files<F: NorFlash>(
    flash: &mut F,
    slot: &Region,
) -> Result<Result<WalkSummary, UiProblem>, DeviceError> {
    let blocks = slot.size / LFS_BLOCK_SIZE;
    let mut t = Table {
        e: [Entry::default(); MAX_PAIR_ENTRIES],
        n: 0,
    };
    let mut sum = WalkSummary::default();
    let mut pair = [0u32, 1];
    let mut root = true;
    let mut index = false;
    for _ in 0..blocks.max(1) {
        let tail = match fetch(flash, slot, pair, &mut t)? {
            Ok(tail) => tail,
            Err(d) => return Ok(Err(UiProblem::Damaged(d))),
        };
        for i in 0..t.n {
            let Some(e) = t.e.get(i).copied() else { break };
            match (u32::from(e.name), u32::from(e.st)) {
                (REG, st) => {
                    sum.files += 1;
                    index |= root && e.index;
                    if st == CTZSTRUCT {
                        match read_ctz(flash, slot, e.a, e.b)? {
                            Ok(n) => sum.bytes += n,
                            Err(d) => return Ok(Err(UiProblem::Damaged(d))),
                        }
                    } else if st == INLINESTRUCT {
                        sum.bytes += u64::from(e.a);
                    }
                }
                (DIR, st) => {
                    sum.dirs += 1;
                    if st == DIRSTRUCT {
                        if let Some(&block) = [e.a, e.b].iter().find(|&&b| b >= blocks) {
                            return Ok(Err(UiProblem::Damaged(Damage::BlockOutOfRange {
                                block,
                                blocks,
                            })));
                        }
                    }
                }
                _ => {}
            }
        }
        match tail {
            Some((next, hard)) if next != NULL_PAIR => {
                root &= hard;
                pair = next;
            }
            _ => {
                return Ok(if index {
                    Ok(sum)
                } else {
                    Err(UiProblem::NoIndexHtml)
                });
            }
        }
    }
    Ok(Err(UiProblem::Damaged(Damage::Loop)))
}
