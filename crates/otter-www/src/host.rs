//! The host API: build an image from a folder, list it, read files back.

use std::collections::HashSet;
use std::path::Path;

use crate::read::{DirEntry, Fs, Kind, ReadError};
use crate::BLOCK_SIZE;

/// One file or directory in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Absolute path inside the image, `/`-separated, starting with `/`.
    pub path: String,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Whether this entry is a directory.
    pub is_dir: bool,
}

/// Why an image could not be built or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WwwError {
    /// The caller asked for an image size that is zero, too small for
    /// littlefs (two blocks), or not a multiple of the block size.
    #[error("image size {0} is not a multiple of 4096 bytes of at least 8192 bytes")]
    BadSize(u64),
    /// The folder's files do not fit in an image of this size.
    #[error("the folder does not fit in {size} bytes ({blocks} blocks of 4096)")]
    TooLarge {
        /// The requested image size.
        size: u32,
        /// Its block count.
        blocks: u32,
    },
    /// A name in the folder cannot be stored (longer than 64 bytes, or not
    /// UTF-8).
    #[error("cannot store {0:?} in LittleFS (names must be UTF-8, at most 64 bytes each, esp_littlefs's default limit)")]
    BadName(String),
    /// Reading the source folder failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or folder being read.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The image does not mount as LittleFS.
    #[error("not a mountable LittleFS image: {0}")]
    NotMountable(ReadError),
    /// No such file in the image.
    #[error("no file {0:?} in the image")]
    NotFound(String),
    /// littlefs-rust gave up on an image that is nearly full (a defect of
    /// littlefs-rust 0.1.0, which panics where littlefs reports no space).
    #[error("littlefs-rust failed to lay out {size} bytes ({blocks} blocks of 4096), which happens when the folder nearly fills the image; build a larger image")]
    WriterFault {
        /// The requested image size.
        size: u32,
        /// Its block count.
        blocks: u32,
    },
    /// littlefs-rust failed while building.
    #[error("littlefs error while {during}: {error}")]
    Littlefs {
        /// littlefs-rust's error.
        error: littlefs_rust::Error,
        /// What was being done.
        during: &'static str,
    },
}

/// Block count of an image of `len` bytes, or why it is not a valid size.
fn blocks_of(len: u64) -> Result<u32, WwwError> {
    if len < 2 * u64::from(BLOCK_SIZE) || !len.is_multiple_of(u64::from(BLOCK_SIZE)) {
        return Err(WwwError::BadSize(len));
    }
    u32::try_from(len / u64::from(BLOCK_SIZE)).map_err(|_| WwwError::BadSize(len))
}

/// Builds a LittleFS image of `size` bytes holding the files under `dir`
/// (recursively; symlinks followed, other special files skipped), in
/// esp_littlefs's default configuration.
///
/// Unused space is erased flash (`0xff`), so the image can be written over a
/// partition as is.
pub fn build_image(dir: &Path, size: u32) -> Result<Vec<u8>, WwwError> {
    let blocks = blocks_of(u64::from(size))?;
    crate::build::build(dir, size, blocks)
}

fn mount(image: &[u8]) -> Result<Fs<'_>, WwwError> {
    Fs::mount(image).map_err(WwwError::NotMountable)
}

/// Whether `image` mounts as LittleFS 2.0 or 2.1 and its root directory can
/// be listed.
pub fn mounts(image: &[u8]) -> bool {
    list(image).is_ok()
}

/// Every file and directory in `image`, sorted by path.
pub fn list(image: &[u8]) -> Result<Vec<Entry>, WwwError> {
    let fs = mount(image)?;
    let root = fs.read_dir("/").map_err(WwwError::NotMountable)?;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut pending: Vec<(String, Vec<DirEntry<'_>>)> = vec![(String::new(), root)];
    while let Some((dir, entries)) = pending.pop() {
        for e in entries {
            let path = format!("{dir}/{}", String::from_utf8_lossy(e.name));
            match e.kind {
                Kind::Dir => {
                    // A damaged image whose directories loop ends here.
                    if !seen.insert(path.clone())
                        || seen.len() > fs.superblock().block_count as usize
                    {
                        return Err(WwwError::NotMountable(crate::read::Corruption::Loop.into()));
                    }
                    let sub = fs.read_subdir(&e).map_err(WwwError::NotMountable)?;
                    out.push(Entry {
                        path: path.clone(),
                        size: 0,
                        is_dir: true,
                    });
                    pending.push((path, sub));
                }
                Kind::File(size) => out.push(Entry {
                    path,
                    size: u64::from(size),
                    is_dir: false,
                }),
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The contents of the file at `path` (absolute or relative to the root,
/// `/`-separated) in `image`.
pub fn read_file(image: &[u8], path: &str) -> Result<Vec<u8>, WwwError> {
    let norm = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let fs = mount(image)?;
    match fs.read_file(&norm) {
        Ok(b) => Ok(b),
        Err(ReadError::NotFound(_) | ReadError::WrongType(..)) => Err(WwwError::NotFound(norm)),
        Err(e) => Err(WwwError::NotMountable(e)),
    }
}
