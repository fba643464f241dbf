//! The engine's one error type.

use otter_format::image::ImageError;
use otter_format::otadata::OtadataError;
use otter_format::secure_boot::SignatureError;

use crate::slots::SlotId;

/// Everything that can go wrong in the OTA engine. `E` is the flash driver's
/// error type.
///
/// Variants say who is at fault: the flash (hardware or driver), the data on
/// flash (a corrupt table or otadata), the update image (bad input from the
/// network), or the caller (API misuse, such as writing after `finish`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OtaError<E> {
    /// The flash driver failed. Hardware or driver fault; the operation can
    /// be retried after a reset.
    #[error("flash operation failed: {0:?}")]
    Flash(E),
    /// The partition table on flash is unreadable, as the bootloader's
    /// `esp_partition_table_verify` judges it. Data fault: reflash the table.
    #[error("partition table at {offset:#x}, row {row}: {fault}")]
    Table {
        /// Flash offset of the table.
        offset: u32,
        /// 0-based row (32-byte entry) where the problem is.
        row: u8,
        /// What is wrong.
        fault: TableFault,
    },
    /// A partition lies outside the flash chip. Data fault.
    #[error("partition at {offset:#x} (size {size:#x}) does not fit a {capacity:#x}-byte flash")]
    PartitionOutOfFlash {
        /// Partition offset.
        offset: u32,
        /// Partition size.
        size: u32,
        /// Flash capacity.
        capacity: u32,
    },
    /// The table has no OTA app slot, so nothing can be updated over the air.
    /// Configuration fault: flash a table with `ota_0` and `ota_1`.
    #[error("the partition table has no OTA app slot (ota_0 ..): flash a table with ota_0 and ota_1 and an otadata partition")]
    NoOtaSlots,
    /// The table has OTA slots but no otadata partition, so the boot slot cannot
    /// be switched. Configuration fault.
    #[error("the partition table has no otadata (data/ota) partition: the boot slot cannot be switched; add `otadata, data, ota, , 0x2000`")]
    NoOtadata,
    /// otadata cannot be planned (slot out of range, sequence exhausted).
    #[error("otadata: {0}")]
    Otadata(OtadataError),
    /// The update image is not acceptable (not an app, wrong chip, bad
    /// checksum or SHA-256, secure_version below the anti-rollback counter,
    /// ...). Bad input: nothing was switched.
    #[error("update image rejected: {0}")]
    Image(ImageError),
    /// The image is larger than the target slot. Bad input.
    #[error("the image needs {needed} bytes but slot {slot} holds {capacity}")]
    TooLarge {
        /// Target slot.
        slot: SlotId,
        /// Bytes needed.
        needed: u64,
        /// Slot size.
        capacity: u32,
    },
    /// The image's SHA-256 is not the one the caller expected. Bad input
    /// (or a corrupted transfer).
    #[error("the image's SHA-256 does not match the expected one")]
    Sha256Mismatch,
    /// Bytes follow the app image that are not its Secure Boot v2 signature
    /// sector (0xFF padding to the next 4 KiB boundary, then one 4 KiB
    /// sector of signature blocks). They would be stored unchecked. Bad input.
    #[error("{extra} bytes follow the end of the {image_len}-byte app image and are not a Secure Boot signature sector (the first wrong byte is at {offset:#x}): send the image alone, or as espsecure/otter sign wrote it")]
    TrailingData {
        /// The image's length.
        image_len: u32,
        /// Bytes received after it so far.
        extra: u64,
        /// File offset of the first byte that cannot be a signature sector's.
        offset: u64,
    },
    /// The image's Secure Boot v2 signature is missing, malformed, from an
    /// untrusted or revoked key, or does not verify over the bytes written.
    /// Bad input: nothing was switched.
    #[error("signature check failed: {0}")]
    Signature(SignatureError),
    /// The update target is the running slot (`ESP_ERR_OTA_PARTITION_CONFLICT`).
    /// Caller misuse.
    #[error("slot {0} is the running slot and cannot be updated while it runs")]
    RunningSlot(SlotId),
    /// The running image is still PENDING_VERIFY with rollback enabled
    /// (`ESP_ERR_OTA_ROLLBACK_INVALID_STATE`): confirm or roll it back first.
    #[error("the running image has not been confirmed yet: confirm it (or roll it back) before starting another update")]
    RunningImagePending,
    /// More data was written than the session announced, or the session was used
    /// in the wrong order. Caller misuse.
    #[error("update session misuse: {0}")]
    Misuse(&'static str),
    /// No rollback target exists (`ESP_ERR_OTA_ROLLBACK_FAILED`).
    #[error("rollback is not possible: no other valid image to boot")]
    RollbackImpossible,
    /// The requested slot does not exist in the table. Caller misuse.
    #[error("slot {0} does not exist in the partition table")]
    NoSuchSlot(SlotId),
}

impl<E> OtaError<E> {
    /// Whether the error is the update image's fault (an HTTP 4xx), as opposed
    /// to the device's or the caller's.
    pub fn is_bad_image(&self) -> bool {
        matches!(
            self,
            Self::Image(_)
                | Self::TooLarge { .. }
                | Self::Sha256Mismatch
                | Self::TrailingData { .. }
                | Self::Signature(_)
        )
    }
}

/// What the bootloader finds wrong with an on-flash partition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableFault {
    /// A row starts with neither `AA 50`, `EB EB` nor the all-FF end marker.
    #[error("not a partition entry (bad magic): no partition table at this offset?")]
    BadMagic,
    /// The MD5 row does not match the entries before it.
    #[error("MD5 row does not match the entries: the table is corrupt")]
    Md5Mismatch,
    /// A second MD5 row.
    #[error("more than one MD5 row")]
    DuplicateMd5,
    /// The first row is the end marker: the table is empty (erased flash).
    #[error("the table is empty (erased flash): flash a partition table")]
    Empty,
}
