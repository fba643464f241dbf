//! Factory flashing: everything a blank device needs, checked together, as a
//! list of flash regions; and esptool's `merge-bin`, to lay the regions out as
//! one full-flash image.
//!
//! [`plan`] takes the chip, the partition table (CSV or binary), the
//! bootloader and the app (and optionally a web UI image and an NVS image),
//! checks them against each other, and returns a [`FlashPlan`]: the regions to
//! write, in offset order.
//!
//! | Region | Offset | Contents |
//! |---|---|---|
//! | bootloader | the chip's bootloader offset (0x1000 ESP32/S2, 0x0 C2/C3/C6/H2/S3, 0x2000 C5/P4) | the bootloader, header flash settings replaced when asked |
//! | partition table | `table_offset` (0x8000) | the binary table (generated from a CSV, or the binary as given) |
//! | otadata | the data/ota partition | `ota_data_initial`: all 0xFF; or, when the app goes to a slot empty otadata would not boot, the entry that selects it |
//! | app | factory if present, else ota_0 (or the app partition asked for) | the app image |
//! | www | `www_0`, else the first data/littlefs or data/spiffs partition | the web UI image |
//! | nvs | the data/nvs partition (`nvs` by name first) | the NVS image |
//!
//! What is checked, failing on the first problem ([`PlanError`]):
//!
//! - the table parses, passes `gen_esp32part.py`'s validation at
//!   `table_offset`, and fits the flash: the size given, or else the size in
//!   the bootloader's header (the ESP-IDF bootloader refuses partitions past
//!   it); OTA slots without otadata, or with a gap, are refused;
//! - the bootloader is a valid bootloader image for the chip and ends before
//!   the table's sector;
//! - the app is a valid app image for the chip and fits its slot;
//! - web UI and NVS images fit their partitions; no two regions share a
//!   flash sector.
//!
//! [`FlashPlan::render`] merges the regions exactly as
//! `esptool --chip CHIP merge-bin` does with the same files at the same
//! offsets (see [`merge`]).

mod error;
pub mod merge;

use alloc::borrow::Cow;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::chip::Chip;
use crate::image::header::{flash_size_code, flash_size_from_code};
use crate::image::{inspect, verify, ImageInfo, ImageKind, VerifyOptions};
use crate::otadata::{plan_set_boot, OtaState, Otadata, SameSlotRule};
use crate::partition::lint::{lint_collect, Lint, LintOptions, Severity};
use crate::partition::suggest::{slot_size, SuggestOptions};
use crate::partition::validate::{ValidateOptions, Warning};
use crate::partition::{
    CsvOptions, DecodeOptions, OwnedTable, Partition, PartitionTable, SubType, ValidationError,
    DEFAULT_TABLE_OFFSET, ENTRY_MAGIC, TABLE_SECTOR_SIZE,
};
use crate::SECTOR_SIZE;

pub use error::PlanError;
pub use merge::{merge_bin, patch_header, HeaderPatch, MergeError, MergeOptions};

/// The label of the partition the web UI image goes to by preference.
pub const WWW_LABEL: &str = "www_0";
/// The label of the NVS partition preferred when there are several.
pub const NVS_LABEL: &str = "nvs";
/// The largest flash an image header can name (128 MB): the limit for a
/// table when the bootloader header holds no valid size and none is given.
pub const MAX_FLASH_SIZE: u64 = 128 << 20;
/// Share of a slot above which the plan notes that the app is nearly full.
pub const NEARLY_FULL_PERCENT: u8 = 90;

/// What a region holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegionKind {
    /// The second-stage bootloader.
    Bootloader,
    /// The binary partition table.
    PartitionTable,
    /// The otadata partition (`ota_data_initial`, or a boot selection).
    Otadata,
    /// The app image.
    App,
    /// The web UI file system image.
    Www,
    /// The NVS partition image.
    Nvs,
}

impl RegionKind {
    /// Lowercase name (`bootloader`, `partition-table`, `otadata`, `app`,
    /// `www`, `nvs`).
    pub fn name(self) -> &'static str {
        match self {
            RegionKind::Bootloader => "bootloader",
            RegionKind::PartitionTable => "partition-table",
            RegionKind::Otadata => "otadata",
            RegionKind::App => "app",
            RegionKind::Www => "www",
            RegionKind::Nvs => "nvs",
        }
    }
}

/// One write of the plan: `bytes` at flash `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region<'a> {
    /// Flash offset.
    pub offset: u32,
    /// What it is.
    pub kind: RegionKind,
    /// The label of the partition it fills (none for the bootloader and the
    /// table).
    pub partition: Option<String>,
    /// The bytes to write.
    pub bytes: Cow<'a, [u8]>,
    /// Whether the bytes differ from the input file: made by the plan (a table
    /// from a CSV, otadata) or a bootloader whose header flash settings were
    /// replaced.
    pub generated: bool,
}

impl Region<'_> {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the region is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// First flash byte after the region.
    pub fn end(&self) -> u64 {
        u64::from(self.offset) + self.bytes.len() as u64
    }
}

/// The inputs of a plan. Build with [`PlanInputs::new`] and set the optional
/// fields.
#[derive(Debug, Clone, Copy)]
pub struct PlanInputs<'a> {
    /// The chip being flashed.
    pub chip: Chip,
    /// The partition table: CSV text, or a binary table (starts with `AA 50`).
    pub table: &'a [u8],
    /// Flash offset of the table (default 0x8000).
    pub table_offset: u32,
    /// The flash chip's size. The table must fit it, and the bootloader's
    /// header is set to it (as esptool's `--flash-size`). `None`: the size in
    /// the bootloader's header, unchanged.
    pub flash_size: Option<u64>,
    /// Flash mode and frequency to set in the bootloader header (esptool's
    /// `--flash-mode`, `--flash-freq`); its `flash_size` is ignored (see
    /// `flash_size`).
    pub header: HeaderPatch,
    /// The second-stage bootloader image.
    pub bootloader: &'a [u8],
    /// The app image.
    pub app: &'a [u8],
    /// Flash the app at this offset, which must be the start of an app
    /// partition, instead of the first app slot.
    pub app_offset: Option<u32>,
    /// The web UI file system image.
    pub www: Option<&'a [u8]>,
    /// The NVS partition image.
    pub nvs: Option<&'a [u8]>,
}

impl<'a> PlanInputs<'a> {
    /// The required inputs, everything else at its default.
    pub fn new(chip: Chip, table: &'a [u8], bootloader: &'a [u8], app: &'a [u8]) -> Self {
        Self {
            chip,
            table,
            table_offset: DEFAULT_TABLE_OFFSET,
            flash_size: None,
            header: HeaderPatch::KEEP,
            bootloader,
            app,
            app_offset: None,
            www: None,
            nvs: None,
        }
    }
}

/// How the table was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// `gen_esp32part.py` CSV; the plan writes the binary it generates.
    Csv,
    /// A binary table, written as given.
    Binary,
}

/// Where the flash size the table was checked against comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashSizeSource {
    /// Given by the caller; the bootloader header is set to it.
    Given,
    /// The bootloader's image header.
    BootloaderHeader,
    /// Unknown: the bootloader header holds no valid size and none was given.
    Unknown,
}

/// Something the plan's reader should know; none of these stop the plan.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Note {
    /// The table was checked against the bootloader header's flash size.
    FlashSizeFromHeader {
        /// The size.
        size: u32,
    },
    /// The bootloader header's flash size is replaced.
    HeaderFlashSizeChanged {
        /// The size in the header, when valid.
        from: Option<u32>,
        /// The new size.
        to: u32,
    },
    /// There is no `www_0` partition; the web UI goes to another one.
    WwwFallback {
        /// The partition used.
        label: String,
        /// Its subtype keyword.
        subtype: &'static str,
    },
    /// The app goes to a slot that empty otadata would not boot, so otadata
    /// selects it instead of being left empty.
    OtadataSelects {
        /// The slot's OTA index.
        slot: u8,
        /// Its label.
        label: String,
    },
    /// The app fills more than [`NEARLY_FULL_PERCENT`] of its slot.
    AppNearlyFull {
        /// The slot.
        slot: String,
        /// Share used, in percent.
        percent: f64,
    },
    /// A `gen_esp32part.py` warning about the table.
    TableWarning(Warning),
    /// An OTA-layout warning about the table.
    Lint(Lint),
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::FlashSizeFromHeader { size } => write!(
                f,
                "flash size {} MiB taken from the bootloader's image header",
                size >> 20
            ),
            Note::HeaderFlashSizeChanged { from, to } => match from {
                Some(from) => write!(
                    f,
                    "the bootloader header's flash size is changed from {} MiB to {} MiB (as \
                     esptool --flash-size does)",
                    from >> 20,
                    to >> 20
                ),
                None => write!(
                    f,
                    "the bootloader header's flash size is set to {} MiB (as esptool \
                     --flash-size does)",
                    to >> 20
                ),
            },
            Note::WwwFallback { label, subtype } => write!(
                f,
                "no `{WWW_LABEL}` partition: the web UI goes to `{label}`, the first \
                 data/{subtype} partition"
            ),
            Note::OtadataSelects { slot, label } => write!(
                f,
                "the app goes to ota_{slot} (`{label}`), which empty otadata would not boot: \
                 otadata selects it, as esp_ota_set_boot_partition would"
            ),
            Note::AppNearlyFull { slot, percent } => write!(
                f,
                "the app fills {percent:.1}% of `{slot}`, more than {NEARLY_FULL_PERCENT}%: the \
                 next release may not fit; enlarge the OTA slots while the device is still on \
                 the bench"
            ),
            Note::TableWarning(w) => write!(f, "partition table: {w}"),
            Note::Lint(l) => write!(f, "partition table: {l}"),
        }
    }
}

/// A checked plan: what to write where. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct FlashPlan<'a> {
    /// The chip.
    pub chip: Chip,
    /// The partition table.
    pub table: OwnedTable,
    /// How the table was given.
    pub table_format: TableFormat,
    /// Flash offset of the table.
    pub table_offset: u32,
    /// The flash size the table was checked against, if known.
    pub flash_size: Option<u32>,
    /// Where `flash_size` comes from.
    pub flash_size_source: FlashSizeSource,
    /// The header settings applied to the bootloader (what to pass to
    /// esptool's `--flash-mode`, `--flash-freq`, `--flash-size`).
    pub header: HeaderPatch,
    /// The bootloader, as verified (before any header change).
    pub bootloader: ImageInfo,
    /// The app, as verified.
    pub app: ImageInfo,
    /// The app's partition.
    pub app_partition: Partition,
    /// The OTA slot that otadata selects, when it is not left empty.
    pub otadata_selects: Option<u8>,
    /// The regions, in offset order.
    pub regions: Vec<Region<'a>>,
    /// Things the reader should know.
    pub notes: Vec<Note>,
}

impl FlashPlan<'_> {
    /// The first region of `kind`.
    pub fn region(&self, kind: RegionKind) -> Option<&Region<'_>> {
        self.regions.iter().find(|r| r.kind == kind)
    }

    /// The `(offset, bytes)` pairs to write, in offset order.
    pub fn pairs(&self) -> Vec<(u32, &[u8])> {
        self.regions
            .iter()
            .map(|r| (r.offset, r.bytes.as_ref()))
            .collect()
    }

    /// One full-flash image, byte for byte what `esptool --chip CHIP
    /// merge-bin` makes from the same files and header options.
    pub fn render(&self, opts: &MergeOptions) -> Result<Vec<u8>, MergeError> {
        // The bootloader region already carries the header changes.
        merge_bin(self.chip, &self.pairs(), &HeaderPatch::KEEP, opts)
    }

    /// [`FlashPlan::render`], written to `out`; returns the bytes written.
    #[cfg(feature = "std")]
    pub fn write_merged<W: std::io::Write>(
        &self,
        opts: &MergeOptions,
        out: &mut W,
    ) -> std::io::Result<u64> {
        let image = self
            .render(opts)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        out.write_all(&image)?;
        Ok(image.len() as u64)
    }
}

/// Checks the inputs against each other and returns the regions to write.
pub fn plan<'a>(inputs: &PlanInputs<'a>) -> Result<FlashPlan<'a>, PlanError> {
    let chip = inputs.chip;
    let table_offset = inputs.table_offset;
    let boot_offset = chip.bootloader_offset();
    if !table_offset.is_multiple_of(SECTOR_SIZE) || table_offset <= boot_offset {
        return Err(PlanError::TableOffsetInvalid {
            offset: table_offset,
            chip,
            bootloader: boot_offset,
        });
    }
    let (table, table_format) = read_table(inputs.table, table_offset)?;
    let bootloader = check_bootloader(chip, inputs.bootloader, table_offset)?;

    // The flash size: given (and then written into the bootloader header), or
    // the header's.
    let mut notes = Vec::new();
    let mut header = HeaderPatch {
        flash_size: None,
        ..inputs.header
    };
    let header_size = bootloader.header.flash_size();
    let (flash_size, flash_size_source) = match inputs.flash_size {
        Some(size) => {
            let code = u32::try_from(size)
                .ok()
                .and_then(flash_size_code)
                .ok_or(PlanError::FlashSizeUnsupported { size })?;
            header.flash_size = Some(code);
            let to = flash_size_from_code(code).unwrap_or_default();
            if header_size != Some(to) {
                notes.push(Note::HeaderFlashSizeChanged {
                    from: header_size,
                    to,
                });
            }
            (Some(to), FlashSizeSource::Given)
        }
        None => match header_size {
            Some(size) => {
                notes.push(Note::FlashSizeFromHeader { size });
                (Some(size), FlashSizeSource::BootloaderHeader)
            }
            None => (None, FlashSizeSource::Unknown),
        },
    };

    check_table(
        &table,
        table_offset,
        flash_size,
        flash_size_source,
        &mut notes,
    )?;
    let pt = table.to_table().map_err(PlanError::TableBinary)?;

    let app_partition = app_slot(&pt, inputs.app_offset)?;
    let app = check_app(chip, inputs.app, &app_partition, &table)?;
    let percent = app.file_len as f64 * 100.0 / f64::from(app_partition.size.max(1));
    if percent > f64::from(NEARLY_FULL_PERCENT) {
        notes.push(Note::AppNearlyFull {
            slot: app_partition.label.to_string(),
            percent,
        });
    }

    let mut regions = Vec::new();
    let boot_bytes = merge::patch_header(inputs.bootloader, &header);
    regions.push(Region {
        offset: boot_offset,
        kind: RegionKind::Bootloader,
        partition: None,
        generated: matches!(boot_bytes, Cow::Owned(_)),
        bytes: boot_bytes,
    });
    let table_bytes: Cow<'a, [u8]> = match table_format {
        TableFormat::Csv => Cow::Owned(
            table
                .to_binary(true)
                .map_err(PlanError::TableBinary)?
                .to_vec(),
        ),
        TableFormat::Binary => Cow::Borrowed(inputs.table),
    };
    if table_bytes.len() > TABLE_SECTOR_SIZE as usize {
        return Err(PlanError::TableTooLong {
            len: table_bytes.len(),
        });
    }
    regions.push(Region {
        offset: table_offset,
        kind: RegionKind::PartitionTable,
        partition: None,
        generated: table_format == TableFormat::Csv,
        bytes: table_bytes,
    });

    let otadata_selects = otadata_selection(&pt, &app_partition);
    if let Some(od) = pt.otadata() {
        let bytes = match otadata_selects {
            Some(slot) => {
                notes.push(Note::OtadataSelects {
                    slot,
                    label: app_partition.label.to_string(),
                });
                select_bytes(slot, pt.ota_slot_count(), od.size)
            }
            None => vec![0xFF; od.size as usize],
        };
        regions.push(Region {
            offset: od.offset,
            kind: RegionKind::Otadata,
            partition: Some(od.label.to_string()),
            bytes: Cow::Owned(bytes),
            generated: true,
        });
    }

    regions.push(Region {
        offset: app_partition.offset,
        kind: RegionKind::App,
        partition: Some(app_partition.label.to_string()),
        bytes: Cow::Borrowed(inputs.app),
        generated: false,
    });

    if let Some(www) = inputs.www {
        let p = www_partition(&pt, &mut notes)?;
        regions.push(data_region(RegionKind::Www, "web UI", &p, www)?);
    }
    if let Some(nvs) = inputs.nvs {
        let p = nvs_partition(&pt)?;
        regions.push(data_region(RegionKind::Nvs, "NVS", &p, nvs)?);
    }

    regions.sort_by_key(|r| r.offset);
    let pairs: Vec<(u32, &[u8])> = regions
        .iter()
        .map(|r| (r.offset, r.bytes.as_ref()))
        .collect();
    merge::check_sectors(&pairs).map_err(PlanError::Overlap)?;

    Ok(FlashPlan {
        chip,
        table,
        table_format,
        table_offset,
        flash_size,
        flash_size_source,
        header,
        bootloader,
        app,
        app_partition,
        otadata_selects,
        regions,
        notes,
    })
}

/// Parses a partition table: binary when it starts with the entry magic
/// (`AA 50`), else `gen_esp32part.py` CSV placed at `table_offset`.
pub fn read_table(bytes: &[u8], table_offset: u32) -> Result<(OwnedTable, TableFormat), PlanError> {
    if bytes.starts_with(&ENTRY_MAGIC.to_le_bytes()) {
        let (t, _) = PartitionTable::decode(bytes, &DecodeOptions { verify_md5: true })
            .map_err(PlanError::TableBinary)?;
        Ok((OwnedTable::from_table(&t), TableFormat::Binary))
    } else {
        let opts = CsvOptions {
            table_offset,
            ..CsvOptions::default()
        };
        let t = OwnedTable::from_csv_bytes(bytes, &opts).map_err(PlanError::TableCsv)?;
        Ok((t, TableFormat::Csv))
    }
}

/// Validation at the table offset, the flash-size check, and the OTA lints
/// that make a table unusable.
fn check_table(
    table: &OwnedTable,
    table_offset: u32,
    flash_size: Option<u32>,
    source: FlashSizeSource,
    notes: &mut Vec<Note>,
) -> Result<(), PlanError> {
    let end = table
        .entries
        .iter()
        .map(|e| e.partition.end_u64())
        .max()
        .unwrap_or(0);
    if source == FlashSizeSource::Unknown && end > MAX_FLASH_SIZE {
        return Err(PlanError::TableInvalid(ValidationError::DoesNotFitFlash {
            end,
            flash_size: MAX_FLASH_SIZE,
        }));
    }
    if let (FlashSizeSource::BootloaderHeader, Some(size)) = (source, flash_size) {
        if end > u64::from(size) {
            return Err(PlanError::TableExceedsHeaderFlash {
                end,
                header_size: size,
            });
        }
    }
    let vopts = ValidateOptions {
        table_offset,
        flash_size: match source {
            FlashSizeSource::Given => flash_size.map(u64::from),
            _ => None,
        },
        ..ValidateOptions::default()
    };
    let warnings = table.validate(&vopts).map_err(PlanError::TableInvalid)?;
    notes.extend(warnings.into_iter().map(Note::TableWarning));
    let lints = lint_collect(
        &table.entries,
        &LintOptions {
            expect_ota: false,
            ..LintOptions::default()
        },
    );
    for l in lints {
        if l.severity() == Severity::Error {
            return Err(PlanError::TableLint(l));
        }
        notes.push(Note::Lint(l));
    }
    Ok(())
}

fn check_bootloader(chip: Chip, bytes: &[u8], table_offset: u32) -> Result<ImageInfo, PlanError> {
    let info = inspect(bytes).map_err(PlanError::BootloaderUnreadable)?;
    if info.chip != chip {
        return Err(PlanError::BootloaderWrongChip {
            expected: chip,
            got: info.chip,
        });
    }
    if info.kind != ImageKind::Bootloader {
        return Err(PlanError::BootloaderNotBootloader { kind: info.kind });
    }
    let opts = VerifyOptions::new().chip(chip).require_app(false);
    verify(bytes, &opts).map_err(PlanError::BootloaderCorrupt)?;
    let offset = chip.bootloader_offset();
    let end = u64::from(offset) + bytes.len() as u64;
    let sector = u64::from(SECTOR_SIZE);
    if end.div_ceil(sector) * sector > u64::from(table_offset) {
        return Err(PlanError::BootloaderTooLarge {
            offset,
            len: bytes.len(),
            table_offset,
        });
    }
    Ok(info)
}

/// The app partition: the one at `app_offset`, else factory, else ota_0.
fn app_slot(pt: &PartitionTable, app_offset: Option<u32>) -> Result<Partition, PlanError> {
    let Some(offset) = app_offset else {
        return pt
            .factory()
            .or_else(|| pt.ota_slot(0))
            .copied()
            .ok_or(PlanError::NoAppPartition);
    };
    match pt.iter().find(|p| p.offset == offset) {
        Some(p) if p.is_test() => Err(PlanError::AppOffsetIsTest {
            offset,
            label: p.label.to_string(),
        }),
        Some(p) if p.is_app() => Ok(*p),
        found => Err(PlanError::AppOffsetNotApp {
            offset,
            found: found.map(|p| {
                alloc::format!(
                    "`{}`, a {}/{} partition,",
                    p.label,
                    p.ty,
                    p.subtype
                        .keyword(p.ty)
                        .map_or_else(|| alloc::format!("{:#04x}", p.subtype.0), String::from)
                )
            }),
            apps: pt
                .apps()
                .filter(|p| !p.is_test())
                .map(|p| (p.label.to_string(), p.offset))
                .collect(),
        }),
    }
}

fn check_app(
    chip: Chip,
    bytes: &[u8],
    slot: &Partition,
    table: &OwnedTable,
) -> Result<ImageInfo, PlanError> {
    let info = inspect(bytes).map_err(PlanError::AppUnreadable)?;
    if info.chip != chip {
        return Err(PlanError::AppWrongChip {
            expected: chip,
            got: info.chip,
        });
    }
    if info.kind != ImageKind::App {
        return Err(PlanError::AppNotApp { kind: info.kind });
    }
    let len = bytes.len() as u64;
    if len > u64::from(slot.size) || u64::from(info.image_len) > u64::from(slot.size) {
        let end = table
            .entries
            .iter()
            .map(|e| e.partition.end_u64())
            .max()
            .unwrap_or(0);
        let suggested = slot_size(&SuggestOptions::new(len, end)).unwrap_or(len);
        return Err(PlanError::AppTooBig {
            slot: slot.label.to_string(),
            offset: slot.offset,
            slot_size: slot.size,
            len,
            suggested,
        });
    }
    verify(bytes, &VerifyOptions::new().chip(chip)).map_err(PlanError::AppCorrupt)
}

/// The OTA slot otadata must select so that the bootloader boots the app's
/// partition: none when empty otadata already boots it (factory, or ota_0
/// without a factory app).
fn otadata_selection(pt: &PartitionTable, app: &Partition) -> Option<u8> {
    let index = app.ota_index()?;
    if index == 0 && pt.factory().is_none() {
        None
    } else {
        Some(index)
    }
}

/// The otadata partition with sector 0 selecting `slot`, as
/// `esp_ota_set_boot_partition` writes it on erased otadata (state
/// UNDEFINED: the app need not confirm itself).
fn select_bytes(slot: u8, slot_count: u8, size: u32) -> Vec<u8> {
    let mut bytes = vec![0xFF; size as usize];
    if let Ok(w) = plan_set_boot(
        &Otadata::ERASED,
        slot,
        slot_count,
        OtaState::Undefined,
        SameSlotRule::InPlace,
    ) {
        let image = w.apply(&Otadata::ERASED).to_partition();
        let n = image.len().min(bytes.len());
        bytes[..n].copy_from_slice(&image[..n]);
    }
    bytes
}

fn www_partition(pt: &PartitionTable, notes: &mut Vec<Note>) -> Result<Partition, PlanError> {
    if let Some(p) = pt.find_by_label(WWW_LABEL) {
        return Ok(*p);
    }
    let fs = pt.iter().find(|p| {
        p.ty == crate::partition::PartitionType::DATA
            && (p.subtype == SubType::LITTLEFS || p.subtype == SubType::SPIFFS)
    });
    let p = fs.copied().ok_or(PlanError::NoWwwPartition)?;
    notes.push(Note::WwwFallback {
        label: p.label.to_string(),
        subtype: p.subtype.keyword(p.ty).unwrap_or("?"),
    });
    Ok(p)
}

fn nvs_partition(pt: &PartitionTable) -> Result<Partition, PlanError> {
    let is_nvs =
        |p: &&Partition| p.ty == crate::partition::PartitionType::DATA && p.subtype == SubType::NVS;
    pt.iter()
        .filter(is_nvs)
        .find(|p| p.label.as_bytes() == NVS_LABEL.as_bytes())
        .or_else(|| pt.iter().find(is_nvs))
        .copied()
        .ok_or(PlanError::NoNvsPartition)
}

fn data_region<'a>(
    kind: RegionKind,
    what: &'static str,
    p: &Partition,
    bytes: &'a [u8],
) -> Result<Region<'a>, PlanError> {
    if bytes.len() as u64 > u64::from(p.size) {
        return Err(PlanError::DataTooBig {
            what,
            label: p.label.to_string(),
            offset: p.offset,
            size: p.size,
            len: bytes.len() as u64,
        });
    }
    Ok(Region {
        offset: p.offset,
        kind,
        partition: Some(p.label.to_string()),
        bytes: Cow::Borrowed(bytes),
        generated: false,
    })
}

#[cfg(test)]
mod tests;
