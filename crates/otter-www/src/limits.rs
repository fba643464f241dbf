//! Whether a device's littlefs would mount an image: the superblock checked
//! against the device's configuration, the way littlefs's `lfs_mount`
//! checks it, each refusal naming the field.
//!
//! # esp_littlefs's defaults
//!
//! [`MountLimits::esp_littlefs`] is what `esp_littlefs` (joltwallet's
//! component, the one ESP-IDF projects use) configures littlefs with when
//! its Kconfig is left alone:
//!
//! | setting | default | recorded on disk? |
//! |---|---|---|
//! | block size | 4096 (one flash sector) | yes: must equal |
//! | block count | partition size / 4096 | yes: must equal |
//! | `CONFIG_LITTLEFS_OBJ_NAME_LEN` → `LFS_NAME_MAX` | 64 | yes: image's `name_max` must be ≤ |
//! | `CONFIG_LITTLEFS_MULTIVERSION` | off: writes the newest (2.1), mounts 2.0 and 2.1 | yes: ≤ 2.1 |
//! | `CONFIG_LITTLEFS_READ_SIZE` / `WRITE_SIZE` | 128 / 128 | no |
//! | `CONFIG_LITTLEFS_CACHE_SIZE` | 512 | no |
//! | `CONFIG_LITTLEFS_LOOKAHEAD_SIZE` | 128 | no |
//! | `CONFIG_LITTLEFS_BLOCK_CYCLES` | 512 | no |
//!
//! littlefs refuses a superblock whose block size or block count differ from
//! its configuration, whose `name_max` exceeds its `LFS_NAME_MAX`, or whose
//! minor version is newer than its own; those are the checks here.

use crate::read::{ReadError, Superblock, DISK_VERSION_MAX};

/// esp_littlefs's block size.
pub const ESP_BLOCK_SIZE: u32 = 4096;
/// esp_littlefs's default `CONFIG_LITTLEFS_OBJ_NAME_LEN`, littlefs's
/// `LFS_NAME_MAX` in its build.
pub const ESP_NAME_MAX: u32 = 64;

/// What a device's littlefs is configured to mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountLimits {
    /// Block size (must equal the image's).
    pub block_size: u32,
    /// Block count (must equal the image's): the partition size / block size.
    pub block_count: u32,
    /// The longest name the device accepts (the image's must not exceed it).
    pub name_max: u32,
    /// The newest on-disk version the device's littlefs mounts.
    pub disk_version_max: u32,
}

impl MountLimits {
    /// esp_littlefs's default configuration for a partition of `slot_size`
    /// bytes.
    pub fn esp_littlefs(slot_size: u32) -> Self {
        Self {
            block_size: ESP_BLOCK_SIZE,
            block_count: slot_size / ESP_BLOCK_SIZE,
            name_max: ESP_NAME_MAX,
            disk_version_max: DISK_VERSION_MAX,
        }
    }
}

/// Why a device would refuse to mount an image. The image (or whoever built
/// it) is at fault; each variant says what to build instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MountRefusal {
    /// No superblock, or the image is damaged.
    #[error(transparent)]
    Unreadable(#[from] ReadError),
    /// The on-disk version is not one the device mounts.
    #[error("disk version is {}.{}, but the device mounts 2.0 up to {}.{}; build the image with littlefs 2.x at disk version 2.0 or 2.1", .found >> 16, .found & 0xffff, .max >> 16, .max & 0xffff)]
    DiskVersion {
        /// The superblock's version.
        found: u32,
        /// The newest the device mounts.
        max: u32,
    },
    /// The block size differs from the device's.
    #[error("block size is {found} bytes, but the device uses {expected}; build the image with a block size of {expected}")]
    BlockSize {
        /// The superblock's block size.
        found: u32,
        /// The device's.
        expected: u32,
    },
    /// The block count differs from the slot's.
    #[error("block count is {found}, but the slot holds {expected} blocks; build the image for the slot's size ({} bytes)", u64::from(*.expected) * u64::from(*.block_size))]
    BlockCount {
        /// The superblock's block count.
        found: u32,
        /// The slot's.
        expected: u32,
        /// The block size, for the slot size in the message.
        block_size: u32,
    },
    /// The image allows longer names than the device.
    #[error("name_max is {found}, but the device's littlefs allows at most {max} (CONFIG_LITTLEFS_OBJ_NAME_LEN); build the image with a name limit of {max} or less (littlefs-python: --name-max={max}), or configure the device's littlefs for names of {found} bytes")]
    NameMax {
        /// The superblock's `name_max`.
        found: u32,
        /// The device's.
        max: u32,
    },
}

impl MountRefusal {
    /// A stable code for the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreadable(ReadError::NoSuperblock) => "lfs_no_superblock",
            Self::Unreadable(_) => "lfs_unreadable",
            Self::DiskVersion { .. } => "lfs_disk_version",
            Self::BlockSize { .. } => "lfs_block_size",
            Self::BlockCount { .. } => "lfs_block_count",
            Self::NameMax { .. } => "lfs_name_max",
        }
    }
}

/// Checks `sb` as littlefs's mount would with `limits`: disk version first,
/// then block size, block count and `name_max`.
pub fn check(sb: &Superblock, limits: &MountLimits) -> Result<(), MountRefusal> {
    let (major, minor) = sb.version();
    let max = limits.disk_version_max;
    if u32::from(major) != max >> 16 || u32::from(minor) > max & 0xffff {
        return Err(MountRefusal::DiskVersion {
            found: sb.disk_version,
            max,
        });
    }
    if sb.block_size != limits.block_size {
        return Err(MountRefusal::BlockSize {
            found: sb.block_size,
            expected: limits.block_size,
        });
    }
    if sb.block_count != limits.block_count {
        return Err(MountRefusal::BlockCount {
            found: sb.block_count,
            expected: limits.block_count,
            block_size: limits.block_size,
        });
    }
    if sb.name_max > limits.name_max {
        return Err(MountRefusal::NameMax {
            found: sb.name_max,
            max: limits.name_max,
        });
    }
    Ok(())
}
