//! [`PlanError`]: why a factory flash plan was refused.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::chip::Chip;
use crate::image::{ImageError, ImageKind};
use crate::partition::lint::Lint;
use crate::partition::{BinaryError, CsvError, ValidationError};

use super::merge::MergeError;

/// Why a flash plan was refused.
///
/// Two groups: the inputs could not be read at all (a CSV that does not
/// parse, a file that is not an ESP image: see [`PlanError::is_unreadable`]),
/// or they were read and are wrong for each other (a bootloader for another
/// chip, an app too big for its slot, a table that does not fit the flash).
/// Either way the caller's inputs are at fault; every message says what to
/// change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The partition table CSV does not parse.
    #[error("partition table: {0}")]
    TableCsv(CsvError),
    /// The binary partition table does not decode.
    #[error("partition table: {0}")]
    TableBinary(BinaryError),
    /// The table fails `gen_esp32part.py`'s validation (including "does not
    /// fit the flash size").
    #[error("partition table: {0}")]
    TableInvalid(ValidationError),
    /// The table has a layout error otter refuses to flash (missing otadata,
    /// a gap in the OTA slots).
    #[error("partition table: {0}")]
    TableLint(Lint),
    /// The partitions end past the flash size the bootloader was built for.
    #[error(
        "partition table: the partitions end at {end:#x} ({end_mb:.2} MiB), but the bootloader's \
         image header says the flash is {header_mb} MiB, and ESP-IDF's bootloader refuses \
         partitions past the flash size it was built for; give the real flash size (the \
         bootloader header is then set to it, as esptool does) or shrink the table",
        end_mb = *end as f64 / 1048576.0, header_mb = header_size >> 20
    )]
    TableExceedsHeaderFlash {
        /// End of the partition with the highest offset.
        end: u64,
        /// Flash size in the bootloader header.
        header_size: u32,
    },
    /// The table offset is not usable.
    #[error(
        "partition table offset {offset:#x} must be a multiple of 0x1000 and above the \
         {chip} bootloader at {bootloader:#x}"
    )]
    TableOffsetInvalid {
        /// The table offset.
        offset: u32,
        /// The chip.
        chip: Chip,
        /// The chip's bootloader offset.
        bootloader: u32,
    },
    /// A binary table longer than the one sector reserved for it.
    #[error(
        "the binary partition table is {len} bytes, more than the 0x1000-byte sector reserved \
         for it; use the 3072-byte table gen_esp32part.py writes"
    )]
    TableTooLong {
        /// Its length.
        len: usize,
    },
    /// The flash size cannot be written into an image header.
    #[error("flash size {size:#x} is not one ESP32 image headers can hold: use 1, 2, 4, 8, 16, 32, 64 or 128 MiB")]
    FlashSizeUnsupported {
        /// The size asked for.
        size: u64,
    },
    /// The bootloader file is not an ESP image at all.
    #[error("bootloader: not a readable ESP32 image: {0}")]
    BootloaderUnreadable(ImageError),
    /// The bootloader is for another chip.
    #[error(
        "bootloader: this is a bootloader for {got}, but the device is {expected}; flash the \
         bootloader built for {expected} (build/bootloader/bootloader.bin of an {expected} \
         build): a bootloader for another chip does not start"
    )]
    BootloaderWrongChip {
        /// The chip being flashed.
        expected: Chip,
        /// The chip in the bootloader's header.
        got: Chip,
    },
    /// The bootloader file is some other kind of image.
    #[error(
        "bootloader: this is {} image, not a second-stage bootloader; pass \
         build/bootloader/bootloader.bin",
        kind_article(*kind)
    )]
    BootloaderNotBootloader {
        /// What the file is.
        kind: ImageKind,
    },
    /// The bootloader is damaged.
    #[error("bootloader: {0}")]
    BootloaderCorrupt(ImageError),
    /// The bootloader runs into the partition table.
    #[error(
        "bootloader: it is {len} bytes at {offset:#x}, so it reaches the flash sector of the \
         partition table at {table_offset:#x}; move the partition table up \
         (CONFIG_PARTITION_TABLE_OFFSET) or make the bootloader smaller"
    )]
    BootloaderTooLarge {
        /// The bootloader offset.
        offset: u32,
        /// Its length.
        len: usize,
        /// The table offset.
        table_offset: u32,
    },
    /// The app file is not an ESP image at all.
    #[error("app: not a readable ESP32 image: {0}")]
    AppUnreadable(ImageError),
    /// The app is for another chip.
    #[error(
        "app: the image is built for {got}, but the device is {expected}; build the firmware \
         for {expected}"
    )]
    AppWrongChip {
        /// The chip being flashed.
        expected: Chip,
        /// The chip in the app's header.
        got: Chip,
    },
    /// The app file is some other kind of image.
    #[error("app: {}", kind_not_app(*kind))]
    AppNotApp {
        /// What the file is.
        kind: ImageKind,
    },
    /// The app is damaged.
    #[error("app: {0}")]
    AppCorrupt(ImageError),
    /// The table has no partition the app can go to.
    #[error(
        "the table has no factory and no ota_0 partition, so there is no slot to flash the app \
         to; add `factory, app, factory, , 1M` or OTA slots"
    )]
    NoAppPartition,
    /// The offset asked for the app is not the start of an app partition.
    #[error(
        "app offset {offset:#x} is not the start of an app partition{}; the bootloader only \
         boots apps from app partitions (a misplaced app shows as \"invalid magic byte\" at \
         boot): use {}",
        found.as_ref().map(|f| alloc::format!(" ({f} starts there)")).unwrap_or_default(),
        AppList(apps)
    )]
    AppOffsetNotApp {
        /// The offset asked for.
        offset: u32,
        /// The partition that starts there, if any, described.
        found: Option<String>,
        /// The app partitions: label and offset.
        apps: Vec<(String, u32)>,
    },
    /// The offset asked for the app is the test partition.
    #[error(
        "app offset {offset:#x} is the test partition `{label}`, which the bootloader boots \
         only when the test GPIO is held; flash the app to the factory or ota_0 partition"
    )]
    AppOffsetIsTest {
        /// The offset.
        offset: u32,
        /// The test partition's label.
        label: String,
    },
    /// The app does not fit its slot.
    #[error(
        "app: the image is {len} bytes ({len_mb:.2} MiB) but partition `{slot}` at {offset:#x} \
         holds {slot_size} bytes ({slot_mb:.2} MiB, {percent:.1}% full); make `{slot}` (and every \
         OTA slot) at least {suggested:#x} bytes, which leaves 20% to grow (app partitions are \
         0x10000-aligned), or make the app smaller",
        len_mb = *len as f64 / 1048576.0, slot_mb = f64::from(*slot_size) / 1048576.0,
        percent = *len as f64 * 100.0 / f64::from((*slot_size).max(1))
    )]
    AppTooBig {
        /// The slot's name.
        slot: String,
        /// Its offset.
        offset: u32,
        /// Its size.
        slot_size: u32,
        /// The app file's length.
        len: u64,
        /// A slot size that holds the app with 20% to spare, 64 KiB-aligned.
        suggested: u64,
    },
    /// A web UI image was given but the table has nowhere to put it.
    #[error(
        "the table has no `www_0` partition and no data/littlefs or data/spiffs partition for \
         the web UI image; add `www_0, data, littlefs, , 512K` (or the size the image needs)"
    )]
    NoWwwPartition,
    /// An NVS image was given but the table has no NVS partition.
    #[error(
        "the table has no data/nvs partition for the NVS image; add `nvs, data, nvs, , 0x6000`"
    )]
    NoNvsPartition,
    /// A data image does not fit its partition.
    #[error(
        "the {what} image is {len} bytes but partition `{label}` at {offset:#x} holds only \
         {size} bytes; build the image for the partition size or enlarge the partition"
    )]
    DataTooBig {
        /// Which image (web UI, NVS).
        what: &'static str,
        /// The partition.
        label: String,
        /// Its offset.
        offset: u32,
        /// Its size.
        size: u32,
        /// The image's length.
        len: u64,
    },
    /// Two regions would share a flash sector.
    #[error("{0}")]
    Overlap(MergeError),
}

impl PlanError {
    /// Whether an input could not be read at all (it does not parse), as
    /// opposed to inputs that were read and do not fit together.
    pub fn is_unreadable(&self) -> bool {
        matches!(
            self,
            PlanError::TableCsv(_)
                | PlanError::TableBinary(_)
                | PlanError::BootloaderUnreadable(_)
                | PlanError::AppUnreadable(_)
        )
    }
}

fn kind_article(kind: ImageKind) -> &'static str {
    match kind {
        ImageKind::App => "an app",
        ImageKind::Bootloader => "a bootloader",
        ImageKind::MergedFlash => "a merged full-flash",
        _ => "a RAM-only",
    }
}

fn kind_not_app(kind: ImageKind) -> &'static str {
    match kind {
        ImageKind::Bootloader => {
            "this is a second-stage bootloader, not an app; pass the app image \
             (build/<project>.bin) as the app and the bootloader as the bootloader"
        }
        ImageKind::MergedFlash => {
            "this is a merged full-flash image (bootloader + table + app), not an app; pass the \
             app image (build/<project>.bin), or flash the merged image alone at offset 0"
        }
        _ => {
            "this is a RAM-only image (no flash-mapped segment), which cannot boot from flash; \
             pass the app image (build/<project>.bin)"
        }
    }
}

/// `factory at 0x10000, ota_0 at 0x110000`.
struct AppList<'a>(&'a [(String, u32)]);

impl fmt::Display for AppList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("a table with an app partition");
        }
        for (i, (label, offset)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{label} at {offset:#x}")?;
        }
        Ok(())
    }
}
