//! Building an image from a folder, with the pure-Rust littlefs port
//! (`littlefs-rust`), configured as esp_littlefs configures littlefs.

use std::path::Path;

use littlefs_rust::{Config, Error as LfsError, Filesystem, Storage};

use crate::limits::{ESP_BLOCK_SIZE, ESP_NAME_MAX};
use crate::WwwError;

/// esp_littlefs's Kconfig defaults for what is not recorded on disk.
const READ_SIZE: u32 = 128;
const PROG_SIZE: u32 = 128;
const CACHE_SIZE: u32 = 512;
const LOOKAHEAD_SIZE: u32 = 128;

/// An image in memory, programmed as NOR flash is (only clearing bits).
struct Image {
    data: Vec<u8>,
}

impl Image {
    fn range(&self, block: u32, off: u32, len: usize) -> Result<std::ops::Range<usize>, LfsError> {
        let start = (block as usize)
            .checked_mul(ESP_BLOCK_SIZE as usize)
            .and_then(|b| b.checked_add(off as usize))
            .ok_or(LfsError::Io)?;
        match start.checked_add(len) {
            Some(end) if end <= self.data.len() => Ok(start..end),
            _ => Err(LfsError::Io),
        }
    }
}

impl Storage for Image {
    fn read(&mut self, block: u32, off: u32, buf: &mut [u8]) -> Result<(), LfsError> {
        let r = self.range(block, off, buf.len())?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }

    fn write(&mut self, block: u32, off: u32, data: &[u8]) -> Result<(), LfsError> {
        let r = self.range(block, off, data.len())?;
        for (d, s) in self.data[r].iter_mut().zip(data) {
            *d &= *s;
        }
        Ok(())
    }

    fn erase(&mut self, block: u32) -> Result<(), LfsError> {
        let r = self.range(block, 0, ESP_BLOCK_SIZE as usize)?;
        self.data[r].fill(0xff);
        Ok(())
    }
}

fn config(blocks: u32) -> Config {
    let mut c = Config::new(ESP_BLOCK_SIZE, blocks);
    c.read_size = READ_SIZE;
    c.prog_size = PROG_SIZE;
    c.cache_size = CACHE_SIZE;
    c.lookahead_size = LOOKAHEAD_SIZE;
    c.name_max = ESP_NAME_MAX;
    // Wear levelling only matters over a flash's life, and is not recorded
    // on disk; an image is written once. (littlefs-rust 0.1.0 also overflows
    // a revision count on erased flash when block cycles are set.)
    c.block_cycles = -1;
    c
}

/// A file or directory to store, in creation order (parents first).
struct Source {
    lfs: String,
    contents: Option<Vec<u8>>,
}

/// Builds an image of `blocks` 4096-byte blocks holding the files under
/// `dir`.
pub(crate) fn build(dir: &Path, size: u32, blocks: u32) -> Result<Vec<u8>, WwwError> {
    let mut files = Vec::new();
    collect(dir, "", &mut files)?;
    // littlefs-rust 0.1.0 panics ("loop_limits: MAX_MLIST (64) exceeded")
    // instead of reporting no space when an image is nearly full; contain
    // it as a typed error rather than abort the caller.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(&files, size, blocks)))
        .unwrap_or(Err(WwwError::WriterFault { size, blocks }))
}

fn write(files: &[Source], size: u32, blocks: u32) -> Result<Vec<u8>, WwwError> {
    let mut img = Image {
        data: vec![0xffu8; size as usize],
    };
    let lfs_err = |during: &'static str| move |e: LfsError| WwwError::Littlefs { error: e, during };
    Filesystem::format(&mut img, &config(blocks)).map_err(lfs_err("formatting"))?;
    let fs = Filesystem::mount(img, config(blocks)).map_err(|(e, _)| lfs_err("mounting")(e))?;
    for f in files {
        let res = match &f.contents {
            None => fs.mkdir(&f.lfs),
            Some(bytes) => fs.write_file(&f.lfs, bytes),
        };
        match res {
            Ok(()) => {}
            Err(LfsError::NoSpace) => return Err(WwwError::TooLarge { size, blocks }),
            Err(e) => return Err(lfs_err("writing the image")(e)),
        }
    }
    let img = fs.unmount().map_err(lfs_err("unmounting"))?;
    Ok(img.data)
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
        if name.len() > ESP_NAME_MAX as usize {
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
