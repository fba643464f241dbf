//! A LittleFS reader in safe Rust: superblock, metadata pairs, directories
//! (split ones included), inline files and CTZ skip-lists, for on-disk
//! versions 2.0 and 2.1. Read-only; `no_std` with `alloc`.
//!
//! It reads what littlefs writes, the way littlefs's own mount does: the
//! newer block of each metadata pair, only CRC-checked commits, the last
//! tag for an id winning. Every offset read from the image is bounds-checked
//! and every walk is bounded by the block count, so no input panics or
//! loops.
//!
//! Not read: a rename interrupted by a power cut (littlefs's pending "move"
//! in the global state) may show the file at both names; user attributes
//! are ignored. Images written by `littlefs-python`, `mklittlefs`,
//! `esp_littlefs` and otter itself carry no pending move.

mod ctz;
mod meta;

use alloc::string::String;
use alloc::vec::Vec;

use meta::{fetch_block, fetch_pair, ty, Log};

/// The superblock's magic, the name of id 0 in blocks 0/1.
pub const MAGIC: &[u8; 8] = b"littlefs";
/// The highest on-disk version this reader knows: 2.1.
pub const DISK_VERSION_MAX: u32 = 0x0002_0001;
/// How many bytes of block 0 are searched for the superblock before the
/// block size is known: the largest block size read here.
const PROBE: usize = 64 * 1024;

/// littlefs's CRC: reflected CRC-32 (polynomial 0xEDB88320), no final XOR.
pub fn crc32(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    crc
}

/// The superblock's fields (littlefs's `lfs_superblock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// On-disk version, `major << 16 | minor`.
    pub disk_version: u32,
    /// Block size in bytes.
    pub block_size: u32,
    /// Block count.
    pub block_count: u32,
    /// Longest name a mount must accept, in bytes.
    pub name_max: u32,
    /// Largest file size.
    pub file_max: u32,
    /// Largest user attribute.
    pub attr_max: u32,
}

impl Superblock {
    /// The version as `major.minor`.
    pub fn version(&self) -> (u16, u16) {
        ((self.disk_version >> 16) as u16, self.disk_version as u16)
    }
}

/// How an image is damaged; the image, not the caller, is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// A pointer names a block past the image's end.
    #[error("a pointer names block {0}, past the image's end")]
    BlockOutOfRange(u32),
    /// Neither block of a metadata pair holds a commit whose CRC matches.
    #[error("metadata pair {{{}, {}}} holds no committed log", .0[0], .0[1])]
    NoCommit([u32; 2]),
    /// A tail tag is shorter than a pair.
    #[error("a tail tag is shorter than a block pair")]
    TailPointer,
    /// A directory or file struct is too short for its type.
    #[error("an entry's struct is {0} bytes, too short for its type")]
    ShortStruct(usize),
    /// Walking directories or a file's blocks did not end within the
    /// image's block count (a loop).
    #[error("a walk of directories or file blocks does not end (a loop)")]
    Loop,
    /// A CTZ skip pointer names another block than the chain's (littlefs
    /// would read the wrong data, or none).
    #[error("a file's skip pointer names block {0}, not the one its chain holds there")]
    SkipPointer(u32),
    /// A file's size needs more blocks than the image has.
    #[error("a file of {0} bytes cannot fit in the image")]
    FileTooLarge(u32),
}

/// Why an image cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Neither block 0 nor block 1 holds a committed `littlefs` superblock:
    /// erased flash, a damaged image, or not LittleFS.
    #[error("no LittleFS superblock in blocks 0 and 1")]
    NoSuperblock,
    /// The superblock's version is not 2.0 or 2.1.
    #[error("on-disk version {}.{} is not 2.0 or 2.1", .0 >> 16, .0 & 0xffff)]
    DiskVersion(u32),
    /// The superblock's geometry does not fit the image.
    #[error("the superblock says {block_count} blocks of {block_size} bytes, but the image is {len} bytes")]
    Geometry {
        /// Block size in the superblock.
        block_size: u32,
        /// Block count in the superblock.
        block_count: u32,
        /// The image's length.
        len: usize,
    },
    /// The image is damaged.
    #[error("damaged image: {0}")]
    Corrupt(#[from] Corruption),
    /// No such file or directory.
    #[error("no {0:?} in the image")]
    NotFound(String),
    /// A path names a file where a directory is needed, or the reverse.
    #[error("{0:?} is not a {1}")]
    WrongType(String, &'static str),
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file of this many bytes.
    File(u32),
    /// A directory.
    Dir,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// The name's bytes (littlefs stores no encoding).
    pub name: &'a [u8],
    /// File or directory.
    pub kind: Kind,
    at: Location<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location<'a> {
    Inline(&'a [u8]),
    Ctz { head: u32, size: u32 },
    Pair([u32; 2]),
    Empty,
}

/// The superblock of `image`, found without knowing the block size: block
/// 0's committed log (read within the first 64 KiB), else block 1's at
/// 4096 bytes (esp_littlefs's block size). Not checked against the image.
pub fn superblock(image: &[u8]) -> Result<Superblock, ReadError> {
    let probe = |start: usize| {
        let end = image.len().min(start.saturating_add(PROBE));
        image
            .get(start..end)
            .and_then(fetch_block)
            .and_then(|log| superblock_of(&log))
    };
    // Block 0 read with a 64 KiB bound: the log ends at its first invalid
    // tag or CRC mismatch, whatever the real block size is.
    let first = probe(0)
        .or_else(|| probe(4096))
        .ok_or(ReadError::NoSuperblock)?;
    // Now read the pair with its real block size, so the newer block wins.
    let bs = first.block_size;
    if bs < 128 || bs as usize > PROBE || image.len() < 2 * bs as usize {
        return Ok(first);
    }
    Ok(fetch_pair(&image[..2 * bs as usize], bs, [0, 1])
        .ok()
        .and_then(|log| superblock_of(&log))
        .unwrap_or(first))
}

fn superblock_of(log: &Log<'_>) -> Option<Superblock> {
    let s = log.slots.first()?;
    match s.name {
        Some((ty::SUPERBLOCK, name)) if name == MAGIC => {}
        _ => return None,
    }
    let (t, d) = s.structure?;
    if t != ty::INLINESTRUCT || d.len() < 24 {
        return None;
    }
    let w = |i: usize| u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
    Some(Superblock {
        disk_version: w(0),
        block_size: w(4),
        block_count: w(8),
        name_max: w(12),
        file_max: w(16),
        attr_max: w(20),
    })
}

/// A LittleFS image, mounted read-only.
#[derive(Debug, Clone)]
pub struct Fs<'a> {
    image: &'a [u8],
    sb: Superblock,
}

impl<'a> Fs<'a> {
    /// Mounts `image`: a version 2.0 or 2.1 superblock whose block size
    /// (128 bytes to 64 KiB) and block count fit within the image.
    pub fn mount(image: &'a [u8]) -> Result<Self, ReadError> {
        let sb = superblock(image)?;
        let (major, minor) = sb.version();
        if major != 2 || minor > 1 {
            return Err(ReadError::DiskVersion(sb.disk_version));
        }
        let fits = u64::from(sb.block_size) * u64::from(sb.block_count) <= image.len() as u64;
        if sb.block_size < 128 || sb.block_size as usize > PROBE || sb.block_count < 2 || !fits {
            return Err(ReadError::Geometry {
                block_size: sb.block_size,
                block_count: sb.block_count,
                len: image.len(),
            });
        }
        let fs = Self {
            image: &image[..(sb.block_size * sb.block_count) as usize],
            sb,
        };
        // The root must be readable for the image to count as mounted.
        fs.read_dir_at([0, 1])?;
        Ok(fs)
    }

    /// The superblock.
    pub fn superblock(&self) -> Superblock {
        self.sb
    }

    /// The entries of the directory whose metadata pair is `pair`,
    /// following hard tails (a split directory); in on-disk order (littlefs
    /// keeps them sorted by name).
    fn read_dir_at(&self, mut pair: [u32; 2]) -> Result<Vec<DirEntry<'a>>, ReadError> {
        let mut out = Vec::new();
        for _ in 0..self.sb.block_count {
            let log = fetch_pair(self.image, self.sb.block_size, pair)?;
            for s in &log.slots {
                if let Some(e) = self.entry(s)? {
                    out.push(e);
                }
            }
            match log.tail {
                Some((next, true)) => pair = next,
                _ => return Ok(out),
            }
        }
        Err(Corruption::Loop.into())
    }

    fn entry(&self, s: &meta::Slot<'a>) -> Result<Option<DirEntry<'a>>, ReadError> {
        let Some((nty, name)) = s.name else {
            return Ok(None);
        };
        let le = |d: &[u8], i: usize| u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
        let (kind, at) = match (nty, s.structure) {
            (ty::DIR, Some((ty::DIRSTRUCT, d))) if d.len() >= 8 => {
                (Kind::Dir, Location::Pair([le(d, 0), le(d, 4)]))
            }
            (ty::REG, Some((ty::INLINESTRUCT, d))) => {
                (Kind::File(d.len() as u32), Location::Inline(d))
            }
            (ty::REG, Some((ty::CTZSTRUCT, d))) if d.len() >= 8 => {
                let (head, size) = (le(d, 0), le(d, 4));
                (Kind::File(size), Location::Ctz { head, size })
            }
            (ty::REG, None) => (Kind::File(0), Location::Empty),
            (ty::REG | ty::DIR, Some((_, d))) => {
                return Err(Corruption::ShortStruct(d.len()).into())
            }
            _ => return Ok(None),
        };
        Ok(Some(DirEntry { name, kind, at }))
    }

    /// The entry at `path` (`/`-separated; empty components ignored), or
    /// `None` for the root.
    fn lookup(&self, path: &str) -> Result<Option<DirEntry<'a>>, ReadError> {
        let mut pair = [0, 1];
        let mut found = None;
        let mut parts = path.split('/').filter(|p| !p.is_empty()).peekable();
        while let Some(part) = parts.next() {
            let entry = self
                .read_dir_at(pair)?
                .into_iter()
                .find(|e| e.name == part.as_bytes())
                .ok_or_else(|| ReadError::NotFound(path.into()))?;
            if parts.peek().is_some() {
                match entry.at {
                    Location::Pair(p) => pair = p,
                    _ => return Err(ReadError::WrongType(path.into(), "directory")),
                }
            }
            found = Some(entry);
        }
        Ok(found)
    }

    /// The entries of the directory at `path` (`"/"` for the root).
    pub fn read_dir(&self, path: &str) -> Result<Vec<DirEntry<'a>>, ReadError> {
        match self.lookup(path)? {
            None => self.read_dir_at([0, 1]),
            Some(DirEntry {
                at: Location::Pair(p),
                ..
            }) => self.read_dir_at(p),
            Some(_) => Err(ReadError::WrongType(path.into(), "directory")),
        }
    }

    /// The entries of a directory entry from [`Fs::read_dir`].
    pub fn read_subdir(&self, dir: &DirEntry<'a>) -> Result<Vec<DirEntry<'a>>, ReadError> {
        match dir.at {
            Location::Pair(p) => self.read_dir_at(p),
            _ => Err(ReadError::WrongType(
                String::from_utf8_lossy(dir.name).into_owned(),
                "directory",
            )),
        }
    }

    /// The contents of the file at `path`.
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        match self.lookup(path)? {
            Some(e) if matches!(e.kind, Kind::File(_)) => self.contents(&e),
            _ => Err(ReadError::WrongType(path.into(), "file")),
        }
    }

    /// The contents of a file entry from [`Fs::read_dir`].
    pub fn contents(&self, file: &DirEntry<'a>) -> Result<Vec<u8>, ReadError> {
        match file.at {
            Location::Inline(d) => Ok(d.to_vec()),
            Location::Ctz { head, size } => {
                Ok(ctz::read(self.image, self.sb.block_size, head, size)?)
            }
            Location::Empty => Ok(Vec::new()),
            Location::Pair(_) => Err(ReadError::WrongType(
                String::from_utf8_lossy(file.name).into_owned(),
                "file",
            )),
        }
    }
}

#[cfg(test)]
mod tests;
