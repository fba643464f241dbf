//! LittleFS images of a web-UI folder, as ESP-IDF's `esp_littlefs` mounts them.
//!
//! The device keeps its web UI in a LittleFS data partition and takes updates
//! as whole images (seed 002): this crate builds such an image from a folder,
//! lists it and reads files back, using the C littlefs through the `littlefs2`
//! crate.
//!
//! # Geometry
//!
//! Block size is 4096 (one flash sector); the block count is the image length
//! divided by 4096, as `esp_littlefs` computes it from the partition size.
//! Read and program size (128), cache size (512), lookahead (128 bytes) and
//! block cycles (512) are `esp_littlefs`'s Kconfig defaults. Only the block
//! size and count (and the 255-byte name limit, littlefs's default) are
//! recorded on flash; the rest only tune RAM and I/O.
//!
//! # Block count at run time
//!
//! `littlefs2` fixes the block count at compile time, so images are formatted
//! with two blocks and then grown (`lfs_fs_grow`) to the image's length, and
//! mounted with littlefs's "disable block count check" flag and a block
//! count large enough for any partition; reads past the image fail cleanly.
//!
//! # On-disk version
//!
//! `littlefs2` writes and accepts on-disk version 2.0 only. Images in version
//! 2.1 (littlefs-python's default, and newer littlefs's) do not mount here:
//! [`list`] reports them as [`WwwError::NotMountable`]. Version 2.0 images
//! mount on every littlefs 2.x, so what otter builds is safe for devices.

use std::path::Path;

use littlefs2::consts::{U16, U512};
use littlefs2::driver::Storage;
use littlefs2::fs::{Config, FileType, Filesystem, MountFlags};
use littlefs2::io;
use littlefs2::path::PathBuf as LfsPath;

/// Erase block size, in bytes: one ESP32 flash sector.
pub const BLOCK_SIZE: u32 = 4096;

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
    /// A name in the folder cannot be stored (too long, or not UTF-8).
    #[error("cannot store {0:?} in LittleFS (names must be UTF-8, paths at most 255 bytes)")]
    BadName(String),
    /// Reading the source folder failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or folder being read.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The image does not mount as LittleFS with this geometry.
    #[error("not a mountable LittleFS image (block size 4096, {blocks} blocks)")]
    NotMountable {
        /// The block count tried.
        blocks: u32,
    },
    /// No such file in the image.
    #[error("no file {0:?} in the image")]
    NotFound(String),
    /// littlefs reported an error while building or reading.
    #[error("littlefs error {code} while {during}")]
    Littlefs {
        /// littlefs's (negative errno-style) error code.
        code: i32,
        /// What was being done.
        during: String,
    },
}

fn lfs_err(during: impl Into<String>) -> impl FnOnce(io::Error) -> WwwError {
    let during = during.into();
    move |e| WwwError::Littlefs {
        code: e.code(),
        during,
    }
}

/// The largest block count mounted for reading: 64 MiB / 4096, beyond any
/// ESP32 flash. Blocks past the image's end read as errors.
const MOUNT_BLOCKS: usize = 16 * 1024;

/// An image in memory. `N` is the block count littlefs is configured with;
/// the real extent is `data.len()`.
struct Image<'a, const N: usize> {
    data: &'a mut [u8],
}

impl<const N: usize> Image<'_, N> {
    fn range(&self, off: usize, len: usize) -> io::Result<std::ops::Range<usize>> {
        match off.checked_add(len) {
            Some(end) if end <= self.data.len() => Ok(off..end),
            _ => Err(io::Error::IO),
        }
    }
}

impl<const N: usize> Storage for Image<'_, N> {
    const READ_SIZE: usize = 128;
    const WRITE_SIZE: usize = 128;
    const BLOCK_SIZE: usize = BLOCK_SIZE as usize;
    const BLOCK_COUNT: usize = N;
    const BLOCK_CYCLES: isize = 512;
    type CACHE_SIZE = U512;
    // In 8-byte words: 128 bytes.
    type LOOKAHEAD_SIZE = U16;

    fn read(&mut self, off: usize, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.range(off, buf.len())?;
        buf.copy_from_slice(&self.data[r]);
        Ok(buf.len())
    }

    fn write(&mut self, off: usize, data: &[u8]) -> io::Result<usize> {
        let r = self.range(off, data.len())?;
        // NOR rule: programming only clears bits.
        for (d, s) in self.data[r].iter_mut().zip(data) {
            *d &= *s;
        }
        Ok(data.len())
    }

    fn erase(&mut self, off: usize, len: usize) -> io::Result<usize> {
        let r = self.range(off, len)?;
        self.data[r].fill(0xff);
        Ok(len)
    }
}

fn unchecked_config() -> Config {
    let mut c = Config::default();
    c.mount_flags = MountFlags::DISABLE_BLOCK_COUNT_CHECK;
    c
}

/// Block count of an image of `len` bytes, or why it is not a valid size.
fn blocks_of(len: u64) -> Result<u32, WwwError> {
    if len < 2 * u64::from(BLOCK_SIZE)
        || len % u64::from(BLOCK_SIZE) != 0
        || len / u64::from(BLOCK_SIZE) > MOUNT_BLOCKS as u64
    {
        return Err(WwwError::BadSize(len));
    }
    u32::try_from(len / u64::from(BLOCK_SIZE)).map_err(|_| WwwError::BadSize(len))
}

/// Builds a LittleFS image of `size` bytes holding the files under `dir`
/// (recursively; symlinks followed, other special files skipped).
///
/// Unused space is erased flash (`0xff`), so the image can be written over a
/// partition as is.
pub fn build_image(dir: &Path, size: u32) -> Result<Vec<u8>, WwwError> {
    let blocks = blocks_of(u64::from(size))?;
    let mut files = Vec::new();
    collect(dir, "", &mut files)?;
    let mut data = vec![0xffu8; size as usize];
    let mut img = Image::<2> { data: &mut data };
    Filesystem::format(&mut img).map_err(lfs_err("formatting"))?;
    let too_large = WwwError::TooLarge { size, blocks };
    let res = Filesystem::mount_and_then_with_config(&mut img, unchecked_config(), |fs| {
        fs.grow(blocks as usize)?;
        for f in &files {
            let path = LfsPath::try_from(f.lfs.as_str()).map_err(|_| io::Error::INVALID)?;
            match &f.contents {
                None => fs.create_dir(&path)?,
                Some(bytes) => fs.write(&path, bytes)?,
            }
        }
        Ok(())
    });
    match res {
        Ok(()) => Ok(data),
        Err(e) if e == io::Error::NO_SPACE => Err(too_large),
        Err(e) => Err(lfs_err("writing the image")(e)),
    }
}

/// A file or directory to store, in creation order (parents first).
struct Source {
    lfs: String,
    contents: Option<Vec<u8>>,
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<Source>) -> Result<(), WwwError> {
    let io_err = |p: &Path| {
        let path = p.display().to_string();
        move |source| WwwError::Io { path, source }
    };
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        names.push(e.file_name());
    }
    names.sort();
    for name in names {
        let p = dir.join(&name);
        let name = name
            .into_string()
            .map_err(|n| WwwError::BadName(n.to_string_lossy().into_owned()))?;
        let lfs = format!("{prefix}/{name}");
        if lfs.len() > littlefs2::consts::PATH_MAX || name.len() > 255 {
            return Err(WwwError::BadName(lfs));
        }
        let meta = std::fs::metadata(&p).map_err(io_err(&p))?;
        if meta.is_dir() {
            out.push(Source {
                lfs: lfs.clone(),
                contents: None,
            });
            collect(&p, &lfs, out)?;
        } else if meta.is_file() {
            let contents = std::fs::read(&p).map_err(io_err(&p))?;
            out.push(Source {
                lfs,
                contents: Some(contents),
            });
        }
    }
    Ok(())
}

/// Mounts a copy of `image` read-only in spirit and runs `f`.
fn with_mounted<R>(
    image: &[u8],
    f: impl FnOnce(&Filesystem<'_, Image<'_, MOUNT_BLOCKS>>) -> io::Result<R>,
) -> Result<R, WwwError> {
    let blocks = blocks_of(image.len() as u64)?;
    let mut data = image.to_vec();
    let mut img = Image::<MOUNT_BLOCKS> { data: &mut data };
    let mut mounted = false;
    let res = Filesystem::mount_and_then_with_config(&mut img, unchecked_config(), |fs| {
        mounted = true;
        f(fs)
    });
    match res {
        Ok(r) => Ok(r),
        Err(_) if !mounted => Err(WwwError::NotMountable { blocks }),
        Err(e) => Err(e).map_err(|e| match e {
            e if e == io::Error::NO_SUCH_ENTRY => WwwError::NotFound(String::new()),
            e => lfs_err("reading the image")(e),
        }),
    }
}

/// Whether `image` mounts as LittleFS with block size 4096 and a block count
/// of its length / 4096, and its root directory can be listed.
pub fn mounts(image: &[u8]) -> bool {
    list(image).is_ok()
}

/// Every file and directory in `image`, depth first, sorted by path.
pub fn list(image: &[u8]) -> Result<Vec<Entry>, WwwError> {
    with_mounted(image, |fs| {
        let mut out = Vec::new();
        let mut pending = vec![String::from("/")];
        while let Some(dir) = pending.pop() {
            let path = LfsPath::try_from(dir.as_str()).map_err(|_| io::Error::INVALID)?;
            let entries = fs.read_dir_and_then(&path, |rd| {
                let mut v = Vec::new();
                for e in rd {
                    let e = e?;
                    let name = e.file_name().as_ref().to_owned();
                    if name == "." || name == ".." {
                        continue;
                    }
                    v.push((name, e.file_type(), e.metadata().len()));
                }
                Ok(v)
            })?;
            for (name, ty, len) in entries {
                let full = if dir == "/" {
                    format!("/{name}")
                } else {
                    format!("{dir}/{name}")
                };
                let is_dir = ty == FileType::Dir;
                if is_dir {
                    // Guard against a corrupt image whose directories loop.
                    if out.len() > 100_000 {
                        return Err(io::Error::CORRUPTION);
                    }
                    pending.push(full.clone());
                }
                out.push(Entry {
                    path: full,
                    size: if is_dir { 0 } else { len as u64 },
                    is_dir,
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    })
}

/// The contents of the file at `path` (absolute, `/`-separated) in `image`.
pub fn read_file(image: &[u8], path: &str) -> Result<Vec<u8>, WwwError> {
    let norm = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let lfs = LfsPath::try_from(norm.as_str()).map_err(|_| WwwError::BadName(norm.clone()))?;
    let res = with_mounted(image, |fs| {
        fs.open_file_with_options_and_then(
            |o| o.read(true),
            &lfs,
            |file| {
                let mut out = vec![0u8; file.len()?];
                let mut done = 0;
                while done < out.len() {
                    let n = file.read(&mut out[done..])?;
                    if n == 0 {
                        return Err(io::Error::CORRUPTION);
                    }
                    done += n;
                }
                Ok(out)
            },
        )
    });
    match res {
        Err(WwwError::NotFound(_)) => Err(WwwError::NotFound(norm)),
        Err(WwwError::Littlefs { code, .. }) if code == io::Error::PATH_IS_DIR.code() => {
            Err(WwwError::NotFound(norm))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests;
