//! `otter otadata`: read and write the boot-slot selection exactly as ESP-IDF
//! does, on an otadata partition file or on a full flash image.
//!
//! - `info`: both entries of an otadata partition file and what they select.
//! - `show`: the same for a flash image (its partition table says where
//!   otadata is and how many OTA slots there are), plus what ESP-IDF's
//!   bootloader (otter's model of it) boots from that image, and the mistakes
//!   that make a device boot something unexpected: no otadata partition,
//!   otadata that was never initialised, a selected slot without an app.
//! - `init`: erase otadata (all 0xFF), as `otatool.py erase_otadata` and
//!   `ota_data_initial.bin` do: the bootloader then boots factory, else ota_0.
//! - `select SLOT`: what `esp_ota_set_boot_partition` writes (one sector
//!   erased, one 32-byte entry programmed; selecting factory erases otadata).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use otter_format::chip::Chip;
use otter_format::image::{verify, VerifyOptions};
use otter_format::otadata::{
    plan_set_boot, OtaState, Otadata, SameSlotRule, SelectEntry, ENTRY_SIZE, OTADATA_SIZE,
    SECTOR1_OFFSET,
};
use otter_format::partition::lint::Lint;
use otter_format::partition::{DecodeOptions, Partition, PartitionTable, MAX_TABLE_LEN};
use otter_ota::boot::boot;
use otter_ota::DeviceConfig;
use otter_sim::SimFlash;
use serde::Serialize;
use serde_json::json;

use crate::cmd::flash_plan::{parse_chip, parse_offset};
use crate::output::{self, check_exit, print_json, refuse};

/// `otter otadata` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show both otadata entries, their validity, the active one and the slot it selects.
    Info(InfoArgs),
    /// Show the boot selection of a flash image (or an otadata file) and what
    /// the bootloader boots; exit 1 when otadata is missing, not initialised,
    /// or selects a slot without a valid app.
    Show(ShowArgs),
    /// Erase otadata to all 0xFF (otatool erase_otadata): the bootloader then
    /// boots factory, else ota_0.
    Init(InitArgs),
    /// Select the boot slot (ota_0, 1, factory, or a partition name), writing
    /// exactly what esp_ota_set_boot_partition writes.
    Select(SelectArgs),
}

/// Arguments of `otter otadata info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// An otadata partition dump (8192 bytes, e.g. ota_data_initial.bin or boot_app0.bin).
    file: PathBuf,
    /// Number of OTA app slots (ota_0 .. ota_N-1) in the partition table.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=16))]
    slots: u8,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// What otadata to work on: inside a flash image, or a partition file.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Source {
    /// A full flash image (otter merge, esptool merge-bin or read-flash); the
    /// partition table in it says where otadata is.
    #[arg(long)]
    flash: Option<PathBuf>,
    /// An otadata partition file (8192 bytes).
    #[arg(long)]
    otadata: Option<PathBuf>,
}

/// Arguments of `otter otadata show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    source: Source,
    /// Flash offset of the partition table in the flash image.
    #[arg(long, default_value = "0x8000", value_parser = parse_offset)]
    table_offset: u32,
    /// Number of OTA slots, for an otadata file (default 2).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
    slots: Option<u8>,
    /// The chip, for a flash image (default: from the bootloader's or the
    /// app's image header).
    #[arg(long)]
    chip: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `otter otadata init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    source: Source,
    /// Flash offset of the partition table in the flash image.
    #[arg(long, default_value = "0x8000", value_parser = parse_offset)]
    table_offset: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `otter otadata select`.
#[derive(Debug, clap::Args)]
pub struct SelectArgs {
    /// The slot to boot: ota_N, N, factory, or (with --flash) an app
    /// partition's name.
    slot: String,
    #[command(flatten)]
    source: Source,
    /// Flash offset of the partition table in the flash image.
    #[arg(long, default_value = "0x8000", value_parser = parse_offset)]
    table_offset: u32,
    /// Number of contiguous OTA slots (ota_0 .. ota_N-1); needed with --otadata.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=16))]
    slots: Option<u8>,
    /// Write the entry as NEW, as firmware built with
    /// CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE does (the app must then confirm
    /// itself); default UNDEFINED.
    #[arg(long)]
    rollback: bool,
    /// When the slot is already selected, write the other sector as ESP-IDF up
    /// to v5.5 does, instead of rewriting the active sector as v6 does.
    #[arg(long)]
    idf_v5: bool,
    /// Select the slot even when it holds no valid app (with --flash), as
    /// esp_ota_set_boot_partition's skip-validate form does.
    #[arg(long)]
    skip_validate: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs an `otter otadata` subcommand.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Info(args) => info(&args),
        Command::Show(args) => show(&args),
        Command::Init(args) => init(&args),
        Command::Select(args) => select_cmd(&args),
    }
}

#[derive(Serialize)]
struct EntryReport {
    sector: usize,
    offset: String,
    seq: u32,
    empty: bool,
    state: &'static str,
    state_raw: u32,
    crc: String,
    crc_valid: bool,
    valid: bool,
    /// The slot this entry would select, when it is valid.
    slot: Option<u8>,
}

#[derive(Serialize)]
struct InfoReport {
    file: String,
    slots: u8,
    entries: Vec<EntryReport>,
    /// Sector of the active entry, or null when neither entry is valid.
    active: Option<usize>,
    /// The OTA slot the bootloader selects from otadata, or null.
    selected_slot: Option<u8>,
    /// What ESP-IDF's bootloader boots.
    boots: String,
}

fn entry_report(base: u32, sector: usize, e: &SelectEntry, slots: u8) -> EntryReport {
    EntryReport {
        sector,
        offset: format!("{:#x}", base as usize + sector * SECTOR1_OFFSET),
        seq: e.seq,
        empty: e.is_erased(),
        state: e.ota_state().name(),
        state_raw: e.state,
        crc: format!("{:#010x}", e.crc),
        crc_valid: e.crc_ok(),
        valid: e.is_valid(),
        slot: e.is_valid().then(|| e.slot(slots)).flatten(),
    }
}

fn info_report(file: &Path, base: u32, otadata: &Otadata, slots: u8) -> InfoReport {
    let selected_slot = otadata.active_slot(slots);
    let boots = match selected_slot {
        Some(slot) => format!("ota_{slot}"),
        None if otadata.is_initial() => {
            "factory if present, else ota_0 (otadata is empty)".to_string()
        }
        None => "factory if present, else ota_0 (no valid entry)".to_string(),
    };
    InfoReport {
        file: file.display().to_string(),
        slots,
        entries: otadata
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| entry_report(base, i, e, slots))
            .collect(),
        active: otadata.active(),
        selected_slot,
        boots,
    }
}

fn read_otadata_file(path: &Path) -> anyhow::Result<Otadata> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Otadata::from_partition(&data).with_context(|| {
        format!(
            "{} is not an otadata partition ({OTADATA_SIZE} bytes expected)",
            path.display()
        )
    })
}

fn info(args: &InfoArgs) -> anyhow::Result<ExitCode> {
    let otadata = read_otadata_file(&args.file)?;
    let report = info_report(&args.file, 0, &otadata, args.slots);
    if args.json {
        output::print_json(&report)?;
    } else {
        print_text(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(r: &InfoReport) {
    println!("otadata {} ({} OTA slots)", r.file, r.slots);
    print_entries(r);
    println!("boots: {}", r.boots);
}

fn print_entries(r: &InfoReport) {
    for e in &r.entries {
        if e.empty {
            println!("  sector {} @ {}: empty (erased)", e.sector, e.offset);
            continue;
        }
        let verdict = if e.valid { "valid" } else { "invalid" };
        let crc = if e.crc_valid { "ok" } else { "BAD" };
        let slot = e.slot.map(|s| format!(" -> ota_{s}")).unwrap_or_default();
        println!(
            "  sector {} @ {}: seq {} state {} crc {} ({crc}) — {verdict}{slot}",
            e.sector, e.offset, e.seq, e.state, e.crc
        );
    }
    match r.active {
        Some(a) => println!("active entry: sector {a}"),
        None => println!("active entry: none"),
    }
}

/// How otadata stands: erased, selecting a slot, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Initialised {
    /// Every byte 0xFF (`ota_data_initial.bin`).
    Empty,
    /// At least one valid entry.
    Selects,
    /// Not erased and no valid entry: never initialised.
    Garbage,
}

impl Initialised {
    fn of(bytes: &[u8], otadata: &Otadata) -> Self {
        if bytes.iter().all(|&b| b == 0xFF) {
            Initialised::Empty
        } else if otadata.active().is_some() {
            Initialised::Selects
        } else {
            Initialised::Garbage
        }
    }

    fn name(self) -> &'static str {
        match self {
            Initialised::Empty => "empty",
            Initialised::Selects => "selects",
            Initialised::Garbage => "not-initialised",
        }
    }
}

#[derive(Serialize)]
struct Problem {
    code: &'static str,
    message: String,
}

fn not_initialised(where_: &str, fix: &str) -> Problem {
    Problem {
        code: "otadata-not-initialised",
        message: format!(
            "otadata {where_} is neither erased (all 0xFF, as ota_data_initial.bin) nor holds a \
             valid entry: it was never initialised (bytes left from earlier firmware, or the \
             flash was written without ota_data_initial.bin), so the bootloader ignores it and \
             boots factory or the first bootable slot, which may not be the app you flashed; \
             fix: {fix}"
        ),
    }
}

/// A flash image with its partition table.
struct FlashImage {
    path: PathBuf,
    bytes: Vec<u8>,
    table: PartitionTable,
}

impl FlashImage {
    fn read(path: &Path, table_offset: u32) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let start = table_offset as usize;
        let Some(rest) = bytes.get(start..).filter(|r| !r.is_empty()) else {
            bail!(
                "{}: the file is {} bytes, so it holds no partition table at {table_offset:#x}; \
                 pass a full flash image (otter merge, esptool merge-bin or read-flash) or the \
                 right --table-offset",
                path.display(),
                bytes.len()
            );
        };
        let window = &rest[..rest.len().min(MAX_TABLE_LEN)];
        let (table, _) = PartitionTable::decode(window, &DecodeOptions { verify_md5: true })
            .with_context(|| {
                format!(
                    "{}: no valid partition table at {table_offset:#x} (first bytes {:02x} {:02x}); \
                     is this a full flash image? give --table-offset if the table is elsewhere",
                    path.display(),
                    window.first().copied().unwrap_or(0xFF),
                    window.get(1).copied().unwrap_or(0xFF)
                )
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            table,
        })
    }

    /// `len` bytes at `offset`; bytes past the end of the file read as 0xFF
    /// (erased). Also returns whether the file ended early.
    fn read_region(&self, offset: u32, len: usize) -> (Vec<u8>, bool) {
        let mut out = vec![0xFF; len];
        let start = offset as usize;
        let avail = self.bytes.get(start..).unwrap_or(&[]);
        let n = avail.len().min(len);
        out[..n].copy_from_slice(&avail[..n]);
        (out, n < len)
    }

    /// The otadata partition, or an error saying there is none.
    fn otadata(&self) -> anyhow::Result<Partition> {
        match self.table.otadata() {
            Some(p) => Ok(*p),
            None => bail!(
                "{}: the partition table has no otadata (data/ota) partition, so the bootloader \
                 always boots factory, else ota_0; add `otadata, data, ota, , 0x2000` to the \
                 table to switch slots",
                self.path.display()
            ),
        }
    }

    /// Writes `data` at `offset` (growing the file with 0xFF when needed) and
    /// saves the file.
    fn write_region(&mut self, offset: u32, data: &[u8]) -> anyhow::Result<()> {
        let start = offset as usize;
        let end = start + data.len();
        if self.bytes.len() < end {
            self.bytes.resize(end, 0xFF);
        }
        self.bytes[start..end].copy_from_slice(data);
        std::fs::write(&self.path, &self.bytes)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// The chip: from the bootloader at its offset, else from the first app.
    fn detect_chip(&self) -> Option<Chip> {
        let chip_at = |offset: u32| {
            let at = offset as usize;
            let h = self.bytes.get(at..at + 14)?;
            (h[0] == 0xE9)
                .then(|| Chip::from_image_id(u16::from_le_bytes([h[12], h[13]])))
                .flatten()
        };
        Chip::all()
            .find(|c| chip_at(c.bootloader_offset()) == Some(*c))
            .or_else(|| self.table.apps().find_map(|p| chip_at(p.offset)))
    }
}

fn show(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    match (&args.source.flash, &args.source.otadata) {
        (Some(flash), _) => show_flash(args, flash),
        (None, Some(file)) => show_file(args, file),
        (None, None) => bail!("give --flash FILE or --otadata FILE"),
    }
}

fn show_file(args: &ShowArgs, file: &Path) -> anyhow::Result<ExitCode> {
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let otadata = Otadata::from_partition(&data).with_context(|| {
        format!(
            "{} is not an otadata partition ({OTADATA_SIZE} bytes expected)",
            file.display()
        )
    })?;
    let slots = args.slots.unwrap_or(2);
    let report = info_report(file, 0, &otadata, slots);
    let state = Initialised::of(&data, &otadata);
    let mut problems = Vec::new();
    if state == Initialised::Garbage {
        problems.push(not_initialised(
            &format!("in {}", file.display()),
            &format!("otter otadata init --otadata {}", file.display()),
        ));
    }
    if args.json {
        print_json(&json!({
            "file": report.file,
            "slots": slots,
            "state": state.name(),
            "entries": report.entries,
            "active": report.active,
            "selected_slot": report.selected_slot,
            "boots": report.boots,
            "problems": problems,
            "ok": problems.is_empty(),
        }))?;
    } else {
        print_text(&report);
        for p in &problems {
            println!("problem: {}", p.message);
        }
    }
    Ok(check_exit(problems.is_empty()))
}

fn show_flash(args: &ShowArgs, path: &Path) -> anyhow::Result<ExitCode> {
    let image = FlashImage::read(path, args.table_offset)?;
    let chip = match &args.chip {
        Some(c) => Some(parse_chip(c)?),
        None => image.detect_chip(),
    };
    let ota_count = image.table.ota_slots().count();
    let slots = u8::try_from(ota_count).unwrap_or(u8::MAX).max(1);
    let mut problems = Vec::new();
    let mut notes = Vec::new();

    let od = image.table.otadata().copied();
    let mut otadata_json = serde_json::Value::Null;
    let mut report = None;
    match od {
        None if ota_count > 0 => problems.push(Problem {
            code: "missing-otadata",
            message: Lint::MissingOtadata { slots: ota_count }.to_string(),
        }),
        None => {}
        Some(od) => {
            let (bytes, short) = image.read_region(od.offset, od.size as usize);
            if short {
                notes.push(format!(
                    "the image ends at {:#x}, inside otadata ({:#x}..{:#x}): the missing bytes \
                     read as erased here, but a device flashed with this image keeps whatever \
                     otadata it had",
                    image.bytes.len(),
                    od.offset,
                    od.end_u64()
                ));
            }
            let otadata = Otadata::from_partition(&bytes)
                .with_context(|| format!("otadata partition at {:#x}", od.offset))?;
            let state = Initialised::of(&bytes, &otadata);
            if state == Initialised::Garbage {
                problems.push(not_initialised(
                    &format!("at {:#x} in {}", od.offset, path.display()),
                    &format!(
                        "otter otadata init --flash {} (or flash ota_data_initial.bin at {:#x})",
                        path.display(),
                        od.offset
                    ),
                ));
            }
            let r = info_report(path, od.offset, &otadata, slots);
            otadata_json = json!({
                "label": od.label.to_string(),
                "offset": od.offset,
                "size": od.size,
                "state": state.name(),
                "entries": r.entries,
                "active": r.active,
                "selected_slot": r.selected_slot,
            });
            report = Some(r);
        }
    }

    // What the bootloader boots.
    let mut selected = None;
    let mut boots = None;
    let mut booted_app = serde_json::Value::Null;
    match chip {
        None => notes.push(
            "no bootloader or app image header names the chip: give --chip to run the \
             bootloader model"
                .to_string(),
        ),
        Some(chip) => match model_boot(&image, chip, args.table_offset) {
            Err(e) => notes.push(format!("the bootloader model could not run: {e:#}")),
            Ok(outcome) => {
                selected = outcome.selected;
                match &outcome.booted {
                    None => problems.push(Problem {
                        code: "no-bootable-app",
                        message: format!(
                            "no app partition holds a valid {chip} app: the bootloader finds \
                             nothing to boot and resets in a loop; flash the app to the factory \
                             partition or ota_0"
                        ),
                    }),
                    Some(b) => {
                        boots = Some(b.slot);
                        if b.fell_back {
                            let sel = outcome
                                .selected
                                .map_or_else(|| "factory".to_string(), |s| s.to_string());
                            problems.push(Problem {
                                code: "selected-slot-not-bootable",
                                message: format!(
                                    "otadata selects {sel}, but it holds no valid app, so the \
                                     bootloader falls back to {}; flash the app to {sel}, or \
                                     select the slot that holds it (otter otadata select {} \
                                     --flash {})",
                                    b.slot,
                                    b.slot,
                                    path.display()
                                ),
                            });
                        }
                        let desc = b.image.app_desc.as_ref();
                        booted_app = json!({
                            "slot": b.slot.to_string(),
                            "offset": b.region.offset,
                            "fell_back": b.fell_back,
                            "project_name": desc.map(|d| d.project_name().to_string()),
                            "version": desc.map(|d| d.version().to_string()),
                        });
                    }
                }
            }
        },
    }

    if args.json {
        print_json(&json!({
            "file": path,
            "table_offset": args.table_offset,
            "chip": chip.map(Chip::name),
            "slots": ota_count,
            "otadata": otadata_json,
            "selected": selected.map(|s| s.to_string()),
            "boots": boots.map(|s| s.to_string()),
            "booted_app": booted_app,
            "notes": notes,
            "problems": problems,
            "ok": problems.is_empty(),
        }))?;
    } else {
        match (od, &report) {
            (Some(od), Some(r)) => {
                println!(
                    "otadata of {}: partition `{}` at {:#x} ({ota_count} OTA slots)",
                    path.display(),
                    od.label,
                    od.offset
                );
                print_entries(r);
            }
            _ => println!("{}: no otadata partition", path.display()),
        }
        if let Some(b) = boots {
            let what = booted_app["project_name"]
                .as_str()
                .zip(booted_app["version"].as_str())
                .map(|(p, v)| format!(" ({p} {v})"))
                .unwrap_or_default();
            let sel = selected.map_or_else(|| "factory".to_string(), |s| s.to_string());
            println!("bootloader: selects {sel}, boots {b}{what}");
        }
        for n in &notes {
            println!("note: {n}");
        }
        for p in &problems {
            println!("problem: {}", p.message);
        }
    }
    Ok(check_exit(problems.is_empty()))
}

/// Runs otter's model of ESP-IDF's bootloader (no rollback) over the image,
/// with unwritten flash read as erased.
fn model_boot(
    image: &FlashImage,
    chip: Chip,
    table_offset: u32,
) -> anyhow::Result<otter_ota::boot::BootOutcome> {
    const BLOCK: u64 = 0x1_0000;
    const MIN: u64 = 0x10_0000;
    let need = (image.bytes.len() as u64).max(image.table.flash_end());
    let capacity = (need.div_ceil(BLOCK) * BLOCK).max(MIN);
    let capacity = usize::try_from(capacity).context("flash image too large")?;
    let mut bytes = vec![0xFF; capacity];
    bytes[..image.bytes.len()].copy_from_slice(&image.bytes);
    let mut flash = SimFlash::from_bytes(bytes).context("loading the image into the simulator")?;
    let mut cfg = DeviceConfig::new(chip);
    cfg.table_offset = table_offset;
    boot(&mut flash, &cfg).map_err(|e| anyhow::anyhow!("{e}"))
}

fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    let erased = [0xFFu8; OTADATA_SIZE];
    let (file, offset) = match (&args.source.flash, &args.source.otadata) {
        (Some(flash), _) => {
            let mut image = FlashImage::read(flash, args.table_offset)?;
            let od = image.otadata()?;
            image.write_region(od.offset, &vec![0xFF; od.size as usize])?;
            (flash.clone(), od.offset)
        }
        (None, Some(file)) => {
            std::fs::write(file, erased).with_context(|| format!("writing {}", file.display()))?;
            (file.clone(), 0)
        }
        (None, None) => bail!("give --flash FILE or --otadata FILE"),
    };
    if args.json {
        print_json(&json!({
            "file": file,
            "otadata_offset": offset,
            "erased": true,
            "boots": "factory if present, else ota_0",
        }))?;
    } else {
        println!(
            "erased otadata at {offset:#x} in {}: the bootloader now boots factory, else ota_0",
            file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A parsed SLOT argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Factory,
    Ota(u8),
}

fn parse_slot(s: &str, table: Option<&PartitionTable>) -> anyhow::Result<Choice> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("factory") {
        return Ok(Choice::Factory);
    }
    let digits = t
        .strip_prefix("ota_")
        .or_else(|| t.strip_prefix("OTA_"))
        .unwrap_or(t);
    if let Ok(n) = digits.parse::<u8>() {
        if n < otter_format::otadata::MAX_OTA_SLOTS {
            return Ok(Choice::Ota(n));
        }
        bail!("slot {s:?}: ESP-IDF has OTA slots ota_0 .. ota_15");
    }
    if let Some(p) = table.and_then(|t| t.find_by_label(s)) {
        if p.is_factory() {
            return Ok(Choice::Factory);
        }
        if let Some(n) = p.ota_index() {
            return Ok(Choice::Ota(n));
        }
        bail!("partition `{s}` is not a factory or OTA app partition, so it cannot be selected for boot");
    }
    bail!("unknown slot {s:?}: use ota_N, N, factory, or the name of an app partition");
}

fn select_cmd(args: &SelectArgs) -> anyhow::Result<ExitCode> {
    let mut image = match &args.source.flash {
        Some(f) => Some(FlashImage::read(f, args.table_offset)?),
        None => None,
    };
    let choice = parse_slot(&args.slot, image.as_ref().map(|i| &i.table))?;

    // The current otadata and where it lives.
    let (file, base, current_bytes, slot_count) = match (&image, &args.source.otadata) {
        (Some(img), _) => {
            let od = img.otadata()?;
            let (bytes, _) = img.read_region(od.offset, od.size as usize);
            (
                img.path.clone(),
                od.offset,
                bytes,
                img.table.ota_slot_count(),
            )
        }
        (None, Some(file)) => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let count = args.slots.with_context(|| {
                "--slots N is needed with --otadata: the number of OTA slots (ota_0 .. ota_N-1) in the \
                 device's partition table"
            })?;
            (file.clone(), 0, bytes, count)
        }
        (None, None) => bail!("give --flash FILE or --otadata FILE"),
    };
    let current = Otadata::from_partition(&current_bytes).with_context(|| {
        format!(
            "{}: otadata at {base:#x} is not {OTADATA_SIZE} bytes",
            file.display()
        )
    })?;

    let new_bytes: Vec<u8>;
    let report;
    match choice {
        Choice::Factory => {
            if let Some(img) = &image {
                if img.table.factory().is_none() {
                    bail!(
                        "{}: the partition table has no factory partition to select",
                        file.display()
                    );
                }
            }
            // esp_ota_set_boot_partition(factory) erases the whole of otadata.
            new_bytes = vec![0xFF; current_bytes.len()];
            report = json!({
                "slot": "factory",
                "erased": true,
                "sector": null, "seq": null, "state": null, "crc": null,
            });
        }
        Choice::Ota(n) => {
            if n >= slot_count {
                let e = otter_format::otadata::OtadataError::SlotOutOfRange {
                    slot: n,
                    slot_count,
                };
                return refuse(
                    args.json,
                    "slot-out-of-range",
                    &format!("{}: {e}", file.display()),
                );
            }
            if let (Some(img), false) = (&image, args.skip_validate) {
                if let Some(msg) = slot_problem(img, n) {
                    return refuse(args.json, "slot-not-bootable", &msg);
                }
            }
            let state = if args.rollback {
                OtaState::New
            } else {
                OtaState::Undefined
            };
            let rule = if args.idf_v5 {
                SameSlotRule::OtherSector
            } else {
                SameSlotRule::InPlace
            };
            let w = plan_set_boot(&current, n, slot_count, state, rule)
                .with_context(|| format!("{}: selecting ota_{n}", file.display()))?;
            // One sector erase, then one 32-byte program at its start.
            let mut bytes = current_bytes.clone();
            let start = w.offset();
            bytes[start..start + SECTOR1_OFFSET].fill(0xFF);
            bytes[start..start + ENTRY_SIZE].copy_from_slice(&w.entry.to_bytes());
            let after = Otadata::from_partition(&bytes).context("re-reading otadata")?;
            if after.active_slot(slot_count) != Some(n) {
                bail!("internal error: the written otadata does not select ota_{n}");
            }
            new_bytes = bytes;
            report = json!({
                "slot": format!("ota_{n}"),
                "erased": false,
                "sector": w.sector,
                "sector_offset": base as usize + start,
                "seq": w.entry.seq,
                "state": w.entry.ota_state().name(),
                "crc": format!("{:#010x}", w.entry.crc),
            });
        }
    }

    match &mut image {
        Some(img) => img.write_region(base, &new_bytes)?,
        None => std::fs::write(&file, &new_bytes)
            .with_context(|| format!("writing {}", file.display()))?,
    }

    if args.json {
        let mut v = report;
        v["file"] = json!(file);
        v["otadata_offset"] = json!(base);
        v["slots"] = json!(slot_count);
        print_json(&v)?;
    } else if choice == Choice::Factory {
        println!(
            "selected factory in {}: otadata at {base:#x} erased",
            file.display()
        );
    } else {
        println!(
            "selected {} in {}: otadata sector {} at {:#x} = seq {}, state {}, crc {}",
            report["slot"].as_str().unwrap_or("?"),
            file.display(),
            report["sector"],
            report["sector_offset"].as_u64().unwrap_or(0),
            report["seq"],
            report["state"].as_str().unwrap_or("?"),
            report["crc"].as_str().unwrap_or("?"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Why OTA slot `n` of the image cannot be booted, if it cannot
/// (esp_ota_set_boot_partition verifies the image first).
fn slot_problem(img: &FlashImage, n: u8) -> Option<String> {
    let p = img.table.ota_slot(n)?;
    let (bytes, _) = img.read_region(p.offset, p.size as usize);
    let mut opts = VerifyOptions::new().slot_size(p.size);
    if let Some(chip) = img.detect_chip() {
        opts = opts.chip(chip);
    }
    verify(&bytes, &opts).err().map(|e| {
        format!(
            "{}: ota_{n} (`{}` at {:#x}) holds no valid app ({e}); esp_ota_set_boot_partition \
             refuses it and the bootloader would fall back: flash the app there first, or pass \
             --skip-validate",
            img.path.display(),
            p.label,
            p.offset
        )
    })
}

/// The 32-byte entry and the slot it selects, for tests.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names() {
        assert_eq!(parse_slot("ota_1", None).unwrap(), Choice::Ota(1));
        assert_eq!(parse_slot("0", None).unwrap(), Choice::Ota(0));
        assert_eq!(parse_slot("Factory", None).unwrap(), Choice::Factory);
        assert!(parse_slot("ota_16", None).is_err());
        assert!(parse_slot("app1", None).is_err());
        let t = PartitionTable::from_partitions(&[Partition::new(
            otter_format::partition::PartitionType::APP,
            otter_format::partition::SubType::OTA_1,
            0x110000,
            0x100000,
            "app1",
        )])
        .unwrap();
        assert_eq!(parse_slot("app1", Some(&t)).unwrap(), Choice::Ota(1));
    }
}
