//! Where the flash cells live: memory only, or memory mirrored to a file.
//!
//! A file-backed flash is a raw image of the whole chip (byte `n` of the file
//! is flash address `n`), so `dd`, `esptool.py image_info`, `otter inspect`
//! and friends read it at the usual offsets. The cells are also kept in
//! memory; reads are served from there, and every change is written through
//! to the file with one positioned write (`pwrite`) of the changed range
//! before the operation returns.
//!
//! **Durability.** Write-through makes the file survive the *process*: after
//! `kill -9` at any moment the file holds the state after the last completed
//! operation (a kill inside the write-through of one operation leaves that
//! operation partly applied — which is itself a torn write, a state real
//! flash can also be left in). It does not make the file survive an *OS
//! crash*: that needs `fsync`, which costs milliseconds per call and would
//! dominate a simulated update. So the default is no fsync;
//! [`SimFlash::sync`](crate::SimFlash::sync) syncs on demand and
//! [`SimFlash::with_sync_each_op`](crate::SimFlash::with_sync_each_op) syncs
//! after every mutating operation.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::flash::ERASED;

/// The cells, plus the file they are mirrored to, if any.
pub(crate) struct Storage {
    cells: Vec<u8>,
    file: Option<FileBacking>,
}

struct FileBacking {
    file: File,
    path: PathBuf,
    sync_each_op: bool,
}

impl Storage {
    /// Cells in memory only.
    pub(crate) fn memory(cells: Vec<u8>) -> Self {
        Self { cells, file: None }
    }

    /// Creates (or truncates) `path` as an erased image of `capacity` bytes.
    pub(crate) fn create_file(path: &Path, capacity: usize) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let cells = vec![ERASED; capacity];
        write_all_at(&file, &cells, 0)?;
        Ok(Self {
            cells,
            file: Some(FileBacking {
                file,
                path: path.to_path_buf(),
                sync_each_op: false,
            }),
        })
    }

    /// Opens an existing image; its length is the capacity (checked by the caller).
    pub(crate) fn open_file(path: &Path) -> io::Result<Self> {
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut cells = Vec::new();
        file.read_to_end(&mut cells)?;
        Ok(Self {
            cells,
            file: Some(FileBacking {
                file,
                path: path.to_path_buf(),
                sync_each_op: false,
            }),
        })
    }

    pub(crate) fn cells(&self) -> &[u8] {
        &self.cells
    }

    /// Mutable access to `offset..offset + len`; call [`Self::flush`] after.
    ///
    /// The caller has bounds-checked the range.
    pub(crate) fn range_mut(&mut self, offset: u32, len: u32) -> &mut [u8] {
        let start = offset as usize;
        &mut self.cells[start..start + len as usize]
    }

    /// Writes `offset..offset + len` through to the file, if any.
    pub(crate) fn flush(&mut self, offset: u32, len: u32) -> io::Result<()> {
        if let Some(backing) = &self.file {
            let start = offset as usize;
            write_all_at(
                &backing.file,
                &self.cells[start..start + len as usize],
                u64::from(offset),
            )?;
            if backing.sync_each_op {
                backing.file.sync_data()?;
            }
        }
        Ok(())
    }

    /// Replaces every cell (same length, checked by the caller) and writes through.
    pub(crate) fn replace(&mut self, image: &[u8]) -> io::Result<()> {
        self.cells.copy_from_slice(image);
        if let Some(backing) = &self.file {
            write_all_at(&backing.file, &self.cells, 0)?;
        }
        Ok(())
    }

    pub(crate) fn sync(&self) -> io::Result<()> {
        match &self.file {
            Some(backing) => backing.file.sync_data(),
            None => Ok(()),
        }
    }

    pub(crate) fn set_sync_each_op(&mut self, on: bool) {
        if let Some(backing) = &mut self.file {
            backing.sync_each_op = on;
        }
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|b| b.path.as_path())
    }
}

/// One positioned write of all of `buf` at `offset`: `pwrite` on Unix (the
/// file position is untouched), a seek and a write elsewhere (Windows).
#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, offset)
}

/// One positioned write of all of `buf` at `offset`: `pwrite` on Unix (the
/// file position is untouched), a seek and a write elsewhere (Windows).
#[cfg(not(unix))]
fn write_all_at(mut file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(buf)
}
