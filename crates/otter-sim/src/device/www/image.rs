//! LittleFS images as a slot holds them: whether the device's littlefs
//! (esp_littlefs's default configuration for the slot) would mount the
//! superblock, and whether the image mounts and holds `/index.html`.

use otter_www::limits::{check, MountLimits, MountRefusal};
use otter_www::read::ReadError;
pub use otter_www::read::Superblock;

use super::{INDEX_HTML, MAX_UI_FILES};

/// Why a slot's contents cannot be mounted as the web UI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UiProblem {
    /// No committed LittleFS superblock in blocks 0 and 1.
    #[error("it holds no LittleFS superblock (erased, damaged, or not a LittleFS image)")]
    NoSuperblock,
    /// The device's littlefs would refuse the superblock; the refusal names
    /// the field (disk version, block size, block count, name_max).
    #[error("the device's littlefs would not mount it: {0}")]
    Refused(MountRefusal),
    /// The superblock passes but the image does not read (damaged).
    #[error("it does not mount as LittleFS: {0}")]
    NotMountable(ReadError),
    /// It mounts but has no `/index.html`.
    #[error(
        "it mounts but has no /index.html at its root, so there would be nothing to serve at /"
    )]
    NoIndexHtml,
    /// More files than [`MAX_UI_FILES`].
    #[error("it holds {0} files and directories, more than the {MAX_UI_FILES} a UI may have")]
    TooManyFiles(usize),
}

impl UiProblem {
    /// A stable code for the problem.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoSuperblock => "lfs_no_superblock",
            Self::Refused(r) => r.code(),
            Self::NotMountable(_) => "lfs_unreadable",
            Self::NoIndexHtml => "no_index_html",
            Self::TooManyFiles(_) => "too_many_files",
        }
    }
}

/// What a slot holds, when it passes [`inspect_ui`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSummary {
    /// Files (directories not counted).
    pub files: usize,
    /// Size of `/index.html`.
    pub index_html_len: u64,
}

/// Reads the LittleFS superblock from blocks 0 and 1 of `image`, the newer
/// revision first as littlefs does.
pub fn superblock(image: &[u8]) -> Option<Superblock> {
    otter_www::read::superblock(image).ok()
}

/// Checks that `image` (a whole slot's bytes) would mount on a device
/// running esp_littlefs with its default configuration, whose slot has
/// exactly `image.len()` bytes, holds `/index.html`, and that every file
/// reads to its end.
pub fn inspect_ui(image: &[u8]) -> Result<UiSummary, UiProblem> {
    let slot_size = u32::try_from(image.len()).unwrap_or(u32::MAX);
    inspect_ui_with(image, &MountLimits::esp_littlefs(slot_size))
}

/// [`inspect_ui`] against a device whose littlefs is configured as `limits`.
pub fn inspect_ui_with(image: &[u8], limits: &MountLimits) -> Result<UiSummary, UiProblem> {
    let sb = superblock(image).ok_or(UiProblem::NoSuperblock)?;
    check(&sb, limits).map_err(UiProblem::Refused)?;
    if image.len() as u64 != u64::from(limits.block_size) * u64::from(limits.block_count) {
        // A slot that is not a whole number of blocks: its last partial
        // block is outside littlefs.
        return Err(UiProblem::Refused(MountRefusal::BlockCount {
            found: sb.block_count,
            expected: limits.block_count,
            block_size: limits.block_size,
        }));
    }
    let entries = list(image)?;
    if entries.len() > MAX_UI_FILES {
        return Err(UiProblem::TooManyFiles(entries.len()));
    }
    let index = entries
        .iter()
        .find(|e| !e.is_dir && e.path == INDEX_HTML)
        .ok_or(UiProblem::NoIndexHtml)?;
    // A listing is not a mount that serves: every file must read to its
    // end (a damaged CTZ chain lists fine and fails on the first read).
    for e in entries.iter().filter(|e| !e.is_dir) {
        otter_www::read_file(image, &e.path).map_err(unreadable)?;
    }
    Ok(UiSummary {
        files: entries.iter().filter(|e| !e.is_dir).count(),
        index_html_len: index.size,
    })
}

fn unreadable(e: otter_www::WwwError) -> UiProblem {
    match e {
        otter_www::WwwError::NotMountable(ReadError::NoSuperblock) => UiProblem::NoSuperblock,
        otter_www::WwwError::NotMountable(r) => UiProblem::NotMountable(r),
        // The reader reports nothing else for a file list() returned.
        _ => UiProblem::NotMountable(ReadError::NoSuperblock),
    }
}

fn list(image: &[u8]) -> Result<Vec<otter_www::Entry>, UiProblem> {
    otter_www::list(image).map_err(unreadable)
}

/// Every file of a UI image, path and contents (what a mounted UI serves).
pub fn read_ui_files(image: &[u8]) -> Result<Vec<(String, Vec<u8>)>, UiProblem> {
    let entries = list(image)?;
    if entries.len() > MAX_UI_FILES {
        return Err(UiProblem::TooManyFiles(entries.len()));
    }
    entries
        .iter()
        .filter(|e| !e.is_dir)
        .map(|e| {
            otter_www::read_file(image, &e.path)
                .map(|b| (e.path.clone(), b))
                .map_err(unreadable)
        })
        .collect()
}
