//! `otter flash-plan`: check a factory flash set (bootloader, partition table,
//! app, optional web UI and NVS images) against itself and print what goes
//! where: as a table, as JSON, or as a ready `esptool write-flash` command.
//!
//! The inputs and their checks are shared with `otter merge` ([`PlanArgs`],
//! [`make_plan`]); the plan itself is `otter_format::flashplan`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use otter_format::chip::Chip;
use otter_format::flashplan::{
    plan, FlashPlan, FlashSizeSource, HeaderPatch, PlanError, PlanInputs, Region, RegionKind,
    TableFormat,
};
use otter_format::image::FlashMode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::cmd::partitions::parse_size;
use crate::output::{hex, human_size, print_json, EXIT_CHECK_FAILED};

/// File name of a partition table generated from a CSV (ESP-IDF's build name).
pub const TABLE_FILE: &str = "partition-table.bin";
/// File name of empty otadata (ESP-IDF's build name).
pub const OTADATA_INITIAL_FILE: &str = "ota_data_initial.bin";
/// File name of otadata that selects a slot.
pub const OTADATA_FILE: &str = "otadata.bin";

/// SPI flash mode, as esptool's `--flash-mode` spells it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Mode {
    /// Quad I/O.
    Qio,
    /// Quad output.
    Qout,
    /// Dual I/O.
    Dio,
    /// Dual output.
    Dout,
}

impl Mode {
    fn flash_mode(self) -> FlashMode {
        match self {
            Mode::Qio => FlashMode::Qio,
            Mode::Qout => FlashMode::Qout,
            Mode::Dio => FlashMode::Dio,
            Mode::Dout => FlashMode::Dout,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Qio => "qio",
            Mode::Qout => "qout",
            Mode::Dio => "dio",
            Mode::Dout => "dout",
        }
    }
}

/// The inputs of a factory flash, shared by `flash-plan` and `merge`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The chip being flashed (esp32, esp32c3, ESP32-S3, ...).
    #[arg(long)]
    pub chip: String,
    /// The partition table: a gen_esp32part CSV, or a binary table.
    #[arg(long)]
    pub partitions: PathBuf,
    /// The second-stage bootloader (build/bootloader/bootloader.bin).
    #[arg(long)]
    pub bootloader: PathBuf,
    /// The app image (build/<project>.bin). It goes to the factory partition,
    /// else ota_0.
    #[arg(long)]
    pub app: PathBuf,
    /// Flash the app at this offset instead; it must be the start of an app
    /// partition.
    #[arg(long, value_parser = parse_offset)]
    pub app_offset: Option<u32>,
    /// The web UI file system image; it goes to the `www_0` partition, else the
    /// first data/littlefs or data/spiffs partition.
    #[arg(long)]
    pub www: Option<PathBuf>,
    /// An NVS partition image; it goes to the data/nvs partition.
    #[arg(long)]
    pub nvs: Option<PathBuf>,
    /// The flash chip's size (4MB, 16MB, ...). The table must fit it, and the
    /// bootloader header is set to it, as esptool's --flash-size does.
    /// Default: the size in the bootloader's header, unchanged.
    #[arg(long, value_parser = parse_size)]
    pub flash_size: Option<u64>,
    /// Set the flash mode in the bootloader header (esptool --flash-mode).
    #[arg(long, value_enum)]
    pub flash_mode: Option<Mode>,
    /// Set the flash frequency in the bootloader header (esptool
    /// --flash-freq: 80m, 40m, ... as the chip supports).
    #[arg(long)]
    pub flash_freq: Option<String>,
    /// Flash offset of the partition table (CONFIG_PARTITION_TABLE_OFFSET).
    #[arg(long, default_value = "0x8000", value_parser = parse_offset)]
    pub table_offset: u32,
}

/// The files named by [`PlanArgs`], read.
pub struct Inputs {
    chip: Chip,
    table: Vec<u8>,
    bootloader: Vec<u8>,
    app: Vec<u8>,
    www: Option<Vec<u8>>,
    nvs: Option<Vec<u8>>,
    header: HeaderPatch,
}

impl Inputs {
    /// Reads every input file and parses the chip and header options.
    pub fn read(args: &PlanArgs) -> anyhow::Result<Self> {
        let chip = parse_chip(&args.chip)?;
        let flash_freq = match &args.flash_freq {
            None => None,
            Some(f) => Some(chip.flash_freq_code(f).with_context(|| {
                let names: Vec<&str> = chip.facts().flash_freqs.iter().map(|(_, n)| *n).collect();
                format!("--flash-freq {f}: {chip} supports {}", names.join(", "))
            })?),
        };
        Ok(Self {
            chip,
            table: read(&args.partitions)?,
            bootloader: read(&args.bootloader)?,
            app: read(&args.app)?,
            www: args.www.as_deref().map(read).transpose()?,
            nvs: args.nvs.as_deref().map(read).transpose()?,
            header: HeaderPatch {
                flash_mode: args.flash_mode.map(Mode::flash_mode),
                flash_freq,
                flash_size: None,
            },
        })
    }

    fn plan_inputs<'a>(&'a self, args: &PlanArgs) -> PlanInputs<'a> {
        let mut p = PlanInputs::new(self.chip, &self.table, &self.bootloader, &self.app);
        p.table_offset = args.table_offset;
        p.flash_size = args.flash_size;
        p.header = self.header;
        p.app_offset = args.app_offset;
        p.www = self.www.as_deref();
        p.nvs = self.nvs.as_deref();
        p
    }
}

/// Arguments of `otter flash-plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    plan: PlanArgs,
    /// Print the plan as JSON.
    #[arg(long, conflicts_with = "esptool")]
    json: bool,
    /// Print a ready `esptool --chip CHIP write-flash` command line instead
    /// (needs --out-dir when files must be generated).
    #[arg(long)]
    esptool: bool,
    /// Write the generated files (partition-table.bin from a CSV,
    /// ota_data_initial.bin) here.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

/// Runs `otter flash-plan`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let inputs = Inputs::read(&args.plan)?;
    let plan = match make_plan(&args.plan, &inputs, args.json)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let files = region_files(&args.plan, &plan, args.out_dir.as_deref());
    if args.esptool && args.out_dir.is_none() {
        if let Some(r) = plan.regions.iter().find(|r| needs_file(r)) {
            bail!(
                "the esptool command needs the generated {} written to a file: add --out-dir DIR \
                 (otter writes {} and {} there)",
                r.kind.name(),
                TABLE_FILE,
                OTADATA_INITIAL_FILE
            );
        }
    }
    if let Some(dir) = &args.out_dir {
        write_generated(&plan, &files, dir)?;
    }
    if args.esptool {
        // Standard output is the command alone, so it can be run as it is.
        for n in &plan.notes {
            eprintln!("note: {n}");
        }
        println!("{}", esptool_command(&args.plan, &plan, &files));
    } else if args.json {
        let esptool = files
            .iter()
            .all(Option::is_some)
            .then(|| esptool_command(&args.plan, &plan, &files));
        let mut v = plan_json(&plan, &files);
        v["esptool"] = json!(esptool);
        print_json(&v)?;
    } else {
        print_plan(&args.plan, &plan, &files);
    }
    Ok(ExitCode::SUCCESS)
}

/// Plans the flash: `Ok(Ok(plan))`; `Ok(Err(exit code))` when a check failed
/// (the problem is already reported, on stdout as JSON with `json`, else on
/// stderr); `Err` when an input cannot be read or parsed.
pub fn make_plan<'a>(
    args: &PlanArgs,
    inputs: &'a Inputs,
    json: bool,
) -> anyhow::Result<Result<FlashPlan<'a>, ExitCode>> {
    match plan(&inputs.plan_inputs(args)) {
        Ok(p) => Ok(Ok(p)),
        Err(e) => {
            // Option values no image header or table can use: bad arguments.
            if let PlanError::FlashSizeUnsupported { .. } = e {
                bail!("--flash-size: {e}");
            }
            if let PlanError::TableOffsetInvalid { .. } = e {
                bail!("--table-offset: {e}");
            }
            let file = culprit(&e, args);
            if e.is_unreadable() {
                return Err(anyhow::Error::new(e).context(file.display().to_string()));
            }
            let hint = hint(&e, args);
            if json {
                print_json(&json!({
                    "ok": false,
                    "error": error_code(&e),
                    "file": file,
                    "message": e.to_string(),
                    "hint": hint,
                }))?;
            } else {
                eprintln!("error: {}: {e}", file.display());
                if let Some(h) = hint {
                    eprintln!("hint: {h}");
                }
            }
            Ok(Err(ExitCode::from(EXIT_CHECK_FAILED)))
        }
    }
}

/// The input file a plan error is about.
fn culprit<'a>(e: &PlanError, args: &'a PlanArgs) -> &'a Path {
    match e {
        PlanError::BootloaderUnreadable(_)
        | PlanError::BootloaderWrongChip { .. }
        | PlanError::BootloaderNotBootloader { .. }
        | PlanError::BootloaderCorrupt(_)
        | PlanError::BootloaderTooLarge { .. } => &args.bootloader,
        PlanError::AppUnreadable(_)
        | PlanError::AppWrongChip { .. }
        | PlanError::AppNotApp { .. }
        | PlanError::AppCorrupt(_)
        | PlanError::AppTooBig { .. } => &args.app,
        PlanError::DataTooBig { what: "NVS", .. } | PlanError::NoNvsPartition => {
            args.nvs.as_deref().unwrap_or(&args.partitions)
        }
        PlanError::DataTooBig { .. } | PlanError::NoWwwPartition => {
            args.www.as_deref().unwrap_or(&args.partitions)
        }
        _ => &args.partitions,
    }
}

/// What to type next, for refusals whose fix is a command-line option.
fn hint(e: &PlanError, args: &PlanArgs) -> Option<String> {
    match e {
        PlanError::TableExceedsHeaderFlash { end, .. } => {
            let mb = (0..8u32)
                .map(|c| 1u64 << c)
                .find(|mb| mb << 20 >= *end)
                .unwrap_or(128);
            Some(format!(
                "if the flash chip is larger, say so: --flash-size {mb}MB (otter then sets the \
                 bootloader header to it)"
            ))
        }
        PlanError::AppOffsetNotApp { .. } => {
            Some("drop --app-offset to flash the app to the first app slot".to_string())
        }
        PlanError::AppTooBig { .. } => Some(format!(
            "otter size {} --partitions {} --explain shows the slot size that fits and what to \
             change in the table",
            args.app.display(),
            args.partitions.display()
        )),
        _ => None,
    }
}

/// A stable name for each refusal, for JSON output.
pub fn error_code(e: &PlanError) -> &'static str {
    use otter_format::partition::ValidationError;
    match e {
        PlanError::TableCsv(_) => "table-csv",
        PlanError::TableBinary(_) => "table-binary",
        PlanError::TableInvalid(ValidationError::DoesNotFitFlash { .. })
        | PlanError::TableExceedsHeaderFlash { .. } => "table-exceeds-flash",
        PlanError::TableInvalid(_) => "table-invalid",
        PlanError::TableLint(l) => l.code(),
        PlanError::TableOffsetInvalid { .. } => "table-offset-invalid",
        PlanError::TableTooLong { .. } => "table-too-long",
        PlanError::FlashSizeUnsupported { .. } => "flash-size-unsupported",
        PlanError::BootloaderUnreadable(_) => "bootloader-unreadable",
        PlanError::BootloaderWrongChip { .. } => "bootloader-wrong-chip",
        PlanError::BootloaderNotBootloader { .. } => "not-a-bootloader",
        PlanError::BootloaderCorrupt(_) => "bootloader-corrupt",
        PlanError::BootloaderTooLarge { .. } => "bootloader-too-large",
        PlanError::AppUnreadable(_) => "app-unreadable",
        PlanError::AppWrongChip { .. } => "app-wrong-chip",
        PlanError::AppNotApp { .. } => "not-an-app",
        PlanError::AppCorrupt(_) => "app-corrupt",
        PlanError::NoAppPartition => "no-app-partition",
        PlanError::AppOffsetNotApp { .. } => "app-offset-not-app",
        PlanError::AppOffsetIsTest { .. } => "app-offset-is-test",
        PlanError::AppTooBig { .. } => "app-too-big",
        PlanError::NoWwwPartition => "no-www-partition",
        PlanError::NoNvsPartition => "no-nvs-partition",
        PlanError::DataTooBig { .. } => "data-too-big",
        PlanError::Overlap(_) => "overlap",
        _ => "refused",
    }
}

/// Whether a region's bytes exist only in the plan (esptool needs them in a
/// file). The bootloader is exempt: esptool applies the header changes itself.
fn needs_file(r: &Region<'_>) -> bool {
    r.generated && r.kind != RegionKind::Bootloader
}

/// For each region, the file holding its bytes: the input file, or the
/// generated file in `out_dir` (`None` when there is no `out_dir`).
pub fn region_files(
    args: &PlanArgs,
    plan: &FlashPlan<'_>,
    out_dir: Option<&Path>,
) -> Vec<Option<PathBuf>> {
    plan.regions
        .iter()
        .map(|r| {
            if needs_file(r) {
                out_dir.map(|d| d.join(generated_name(r)))
            } else {
                Some(match r.kind {
                    RegionKind::Bootloader => args.bootloader.clone(),
                    RegionKind::PartitionTable => args.partitions.clone(),
                    RegionKind::Www => args.www.clone().unwrap_or_default(),
                    RegionKind::Nvs => args.nvs.clone().unwrap_or_default(),
                    _ => args.app.clone(),
                })
            }
        })
        .collect()
}

fn generated_name(r: &Region<'_>) -> &'static str {
    match r.kind {
        RegionKind::PartitionTable => TABLE_FILE,
        RegionKind::Otadata if r.bytes.iter().all(|&b| b == 0xFF) => OTADATA_INITIAL_FILE,
        RegionKind::Otadata => OTADATA_FILE,
        _ => "region.bin",
    }
}

fn write_generated(
    plan: &FlashPlan<'_>,
    files: &[Option<PathBuf>],
    dir: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (r, f) in plan.regions.iter().zip(files) {
        if let (true, Some(f)) = (needs_file(r), f) {
            std::fs::write(f, &r.bytes).with_context(|| format!("writing {}", f.display()))?;
        }
    }
    Ok(())
}

/// The esptool size name (`4MB`) of a header size code.
fn flash_size_name(code: u8) -> String {
    format!("{}MB", 1u32 << code)
}

/// esptool's options for the bootloader header changes of the plan.
pub fn esptool_header_args(args: &PlanArgs, plan: &FlashPlan<'_>) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(m) = args.flash_mode {
        v.extend(["--flash-mode".to_string(), m.name().to_string()]);
    }
    if let Some(f) = &args.flash_freq {
        v.extend(["--flash-freq".to_string(), f.to_ascii_lowercase()]);
    }
    if let Some(code) = plan.header.flash_size {
        v.extend(["--flash-size".to_string(), flash_size_name(code)]);
    }
    v
}

/// `esptool --chip CHIP write-flash [header options] OFFSET FILE ...`.
fn esptool_command(args: &PlanArgs, plan: &FlashPlan<'_>, files: &[Option<PathBuf>]) -> String {
    let mut words: Vec<String> = vec![
        "esptool".into(),
        "--chip".into(),
        plan.chip.name().into(),
        "write-flash".into(),
    ];
    words.extend(esptool_header_args(args, plan));
    for (r, f) in plan.regions.iter().zip(files) {
        words.push(format!("{:#x}", r.offset));
        words.push(
            f.as_deref()
                .map_or_else(String::new, |p| p.display().to_string()),
        );
    }
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes a word for a POSIX shell when it needs it.
fn shell_quote(w: &str) -> String {
    let plain = !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./+=:,@%".contains(&b));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

fn source_text(
    args: &PlanArgs,
    plan: &FlashPlan<'_>,
    r: &Region<'_>,
    file: Option<&Path>,
) -> String {
    let name = |p: &Path| p.display().to_string();
    match r.kind {
        RegionKind::Bootloader if r.generated => {
            format!("{} (header flash settings changed)", name(&args.bootloader))
        }
        RegionKind::PartitionTable if plan.table_format == TableFormat::Csv => match file {
            Some(f) => format!("{} (from {})", name(f), name(&args.partitions)),
            None => format!("generated from {}", name(&args.partitions)),
        },
        RegionKind::Otadata => {
            let what = match plan.otadata_selects {
                Some(slot) => format!("selects ota_{slot}"),
                None => "ota_data_initial, all 0xFF".to_string(),
            };
            match file {
                Some(f) => format!("{} ({what})", name(f)),
                None => format!("generated: {what}"),
            }
        }
        RegionKind::App => {
            let desc = plan
                .app
                .app_desc
                .as_ref()
                .map(|d| format!("{} {}, ", d.project_name(), d.version()))
                .unwrap_or_default();
            format!(
                "{} ({desc}{:.1}% of the slot)",
                name(&args.app),
                plan.app.file_len as f64 * 100.0 / f64::from(plan.app_partition.size.max(1))
            )
        }
        _ => file.map(name).unwrap_or_default(),
    }
}

fn flash_size_text(plan: &FlashPlan<'_>) -> String {
    match (plan.flash_size, plan.flash_size_source) {
        (Some(s), FlashSizeSource::Given) => format!("{} flash", human_size(s.into())),
        (Some(s), _) => format!("{} flash, from the bootloader header", human_size(s.into())),
        (None, _) => "flash size unknown".to_string(),
    }
}

fn print_plan(args: &PlanArgs, plan: &FlashPlan<'_>, files: &[Option<PathBuf>]) {
    println!(
        "Flash plan for {} ({}; partition table at {:#x})",
        plan.chip,
        flash_size_text(plan),
        plan.table_offset
    );
    println!();
    println!(
        "  {:<10} {:<10} {:<16} {:<10} source",
        "offset", "size", "region", "partition"
    );
    for (r, f) in plan.regions.iter().zip(files) {
        println!(
            "  {:<10} {:<10} {:<16} {:<10} {}",
            format!("{:#x}", r.offset),
            format!("{:#x}", r.len()),
            r.kind.name(),
            r.partition.as_deref().unwrap_or("-"),
            source_text(args, plan, r, f.as_deref())
        );
    }
    if !plan.notes.is_empty() {
        println!();
        for n in &plan.notes {
            println!("note: {n}");
        }
    }
}

/// The plan as JSON (shared with `otter merge`).
pub fn plan_json(plan: &FlashPlan<'_>, files: &[Option<PathBuf>]) -> Value {
    let regions: Vec<Value> = plan
        .regions
        .iter()
        .zip(files)
        .map(|(r, f)| {
            json!({
                "offset": r.offset,
                "offset_hex": format!("{:#x}", r.offset),
                "size": r.len(),
                "end": r.end(),
                "kind": r.kind.name(),
                "partition": r.partition,
                "file": f,
                "generated": r.generated,
                "sha256": hex(&Sha256::digest(&r.bytes)),
            })
        })
        .collect();
    let slot = &plan.app_partition;
    let desc = plan.app.app_desc.as_ref();
    json!({
        "ok": true,
        "chip": plan.chip.name(),
        "flash_size": plan.flash_size,
        "flash_size_source": match plan.flash_size_source {
            FlashSizeSource::Given => "given",
            FlashSizeSource::BootloaderHeader => "bootloader-header",
            _ => "unknown",
        },
        "table_offset": plan.table_offset,
        "table_format": match plan.table_format {
            TableFormat::Csv => "csv",
            TableFormat::Binary => "binary",
        },
        "header": {
            "flash_mode": plan.header.flash_mode.map(FlashMode::name),
            "flash_freq": plan.header.flash_freq.and_then(|c| plan.chip.flash_freq_name(c)),
            "flash_size": plan.header.flash_size.map(flash_size_name),
        },
        "app": {
            "partition": slot.label.to_string(),
            "offset": slot.offset,
            "slot_size": slot.size,
            "size": plan.app.file_len,
            "percent_used": plan.app.file_len as f64 * 100.0 / f64::from(slot.size.max(1)),
            "project_name": desc.map(|d| d.project_name().to_string()),
            "version": desc.map(|d| d.version().to_string()),
        },
        "otadata_selects": plan.otadata_selects,
        "regions": regions,
        "notes": plan.notes.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Parses a chip name, listing the known ones when it is not one.
pub fn parse_chip(s: &str) -> anyhow::Result<Chip> {
    Chip::from_name(s).with_context(|| {
        let names: Vec<&str> = Chip::all().map(Chip::name).collect();
        format!("unknown chip {s:?}; expected one of {}", names.join(", "))
    })
}

/// An offset: `0x8000`, `32768`, `32K`.
pub fn parse_offset(s: &str) -> Result<u32, String> {
    let v = parse_size(s)?;
    u32::try_from(v).map_err(|_| format!("'{s}' does not fit in 32 bits"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("0x1000"), "0x1000");
        assert_eq!(shell_quote("/tmp/a b.bin"), "'/tmp/a b.bin'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
