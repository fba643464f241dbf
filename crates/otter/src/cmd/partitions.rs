//! `otter partitions`: convert partition tables between CSV and binary exactly as
//! `gen_esp32part.py` does, check them (ESP-IDF validation plus otter's OTA
//! lints and an app-fit report), and suggest a layout for an app.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use otter_format::partition::lint::{fit_report, lint_collect, Lint, LintOptions, Severity};
use otter_format::partition::validate::{SecureBoot, ValidateOptions, Warning};
use otter_format::partition::{
    suggest, CsvOptions, DecodeOptions, ExtraSubtype, OwnedTable, PartitionTable, SuggestOptions,
    TableEnd, DEFAULT_TABLE_OFFSET,
};
use serde_json::{json, Value};

use crate::output::{check_exit, human_size, print_json};

/// `otter partitions` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Convert CSV to binary or binary to CSV (detected from the content), byte
    /// for byte like gen_esp32part.py.
    Convert(ConvertArgs),
    /// Validate a table (CSV or binary) and lint it for OTA; exit 1 on an
    /// error (warnings alone exit 0 unless --strict).
    Check(CheckArgs),
    /// Show a table (CSV or binary) as a readable table: name, type,
    /// subtype, offset, size and flags.
    Show(ShowArgs),
    /// Suggest a partition table for an app image and a flash size.
    Suggest(SuggestArgs),
}

/// Secure boot version, as gen_esp32part's `--secure`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Secure {
    /// Secure boot v1: app sizes must be multiples of 64 KiB.
    V1,
    /// Secure boot v2.
    V2,
}

/// Arguments of `otter partitions convert`.
#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// Input: a CSV, or a binary table (starts with AA 50); `-` for stdin.
    input: PathBuf,
    /// Output file; `-` for stdout.
    output: PathBuf,
    /// Flash offset of the partition table.
    #[arg(long, default_value = "0x8000", value_parser = parse_u32)]
    offset: u32,
    /// Fail if the partitions do not fit this flash size (4MB, 16M, 0x400000).
    #[arg(long, value_parser = parse_size)]
    flash_size: Option<u64>,
    /// Write no MD5 row (and treat EB EB rows in a binary input as invalid).
    #[arg(long)]
    no_md5: bool,
    /// App partitions must suit secure boot v1 or v2.
    #[arg(long, value_enum)]
    secure: Option<Secure>,
    /// Skip validation (the flash-size check still runs).
    #[arg(long)]
    no_verify: bool,
    /// Offset of the primary bootloader (needed by bootloader rows).
    #[arg(long, value_parser = parse_u32)]
    primary_bootloader_offset: Option<u32>,
    /// Offset of the recovery bootloader (needed by bootloader/recovery rows).
    #[arg(long, value_parser = parse_u32)]
    recovery_bootloader_offset: Option<u32>,
    /// Extra subtype keywords, each TYPE,NAME,HEX.
    #[arg(long, num_args = 1..)]
    extra_partition_subtypes: Vec<String>,
    /// Print a JSON summary on stdout (OUTPUT must then be a file).
    #[arg(long)]
    json: bool,
}

/// Arguments of `otter partitions check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The table: CSV or binary.
    file: PathBuf,
    /// Flash offset of the partition table.
    #[arg(long, default_value = "0x8000", value_parser = parse_u32)]
    offset: u32,
    /// Flash size the table must fit (4MB, 16M, 0x400000).
    #[arg(long, value_parser = parse_size)]
    flash_size: Option<u64>,
    /// App image that must fit every app slot (its file size is used).
    #[arg(long)]
    app: Option<PathBuf>,
    /// Largest share of a slot the app may fill, in percent.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    max_percent: u8,
    /// Fail (exit 1) on warnings too: slots of different sizes, a single OTA
    /// slot, validation warnings.
    #[arg(long)]
    strict: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `otter partitions show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The table: CSV or binary (`-` for stdin).
    file: PathBuf,
    /// Flash offset of the partition table (for a CSV with automatic offsets).
    #[arg(long, default_value = "0x8000", value_parser = parse_u32)]
    offset: u32,
    /// Print JSON: `{file, format, partitions: [...]}`.
    #[arg(long)]
    json: bool,
}

/// Arguments of `otter partitions suggest`.
#[derive(Debug, clap::Args)]
pub struct SuggestArgs {
    /// The app image to plan for (its file size is used).
    #[arg(long)]
    app: PathBuf,
    /// Flash size (4MB, 16M, 0x400000).
    #[arg(long, value_parser = parse_size)]
    flash_size: u64,
    /// Also reserve a factory app slot.
    #[arg(long)]
    factory: bool,
    /// Spare room per slot, in percent of the app size.
    #[arg(long, default_value_t = 20)]
    margin: u32,
    /// Write the CSV here instead of stdout.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs an `otter partitions` subcommand.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Convert(a) => convert(a),
        Command::Check(a) => check(a),
        Command::Show(a) => show(a),
        Command::Suggest(a) => suggest_cmd(a),
    }
}

fn show(a: ShowArgs) -> anyhow::Result<ExitCode> {
    let csv_opts = CsvOptions {
        table_offset: a.offset,
        ..CsvOptions::default()
    };
    let bytes = read_input(&a.file)?;
    let loaded = load(&a.file, &bytes, &csv_opts, true)?;
    if a.json {
        print_json(&json!({
            "file": a.file,
            "format": if loaded.binary { "binary" } else { "csv" },
            "partitions": partitions_json(&loaded.table),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<16} {:<5} {:<9} {:>10} {:>10} {:>11}  FLAGS",
        "NAME", "TYPE", "SUBTYPE", "OFFSET", "SIZE", "(BINARY)"
    )?;
    for e in &loaded.table.entries {
        let p = &e.partition;
        let mut flags = Vec::new();
        if p.flags.encrypted() {
            flags.push("encrypted");
        }
        if p.flags.readonly() {
            flags.push("readonly");
        }
        let ty =
            p.ty.keyword()
                .map_or_else(|| format!("{:#04x}", p.ty.0), str::to_string);
        let sub = p
            .subtype
            .keyword(p.ty)
            .map_or_else(|| format!("{:#04x}", p.subtype.0), str::to_string);
        let line = format!(
            "{:<16} {:<5} {:<9} {:>#10x} {:>#10x} {:>11}  {}",
            e.name,
            ty,
            sub,
            p.offset,
            p.size,
            human_size(u64::from(p.size)),
            flags.join(",")
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    let end = loaded
        .table
        .entries
        .iter()
        .map(|e| e.partition.end_u64())
        .max()
        .unwrap_or(0);
    writeln!(
        out,
        "{} partitions ({}), ending at {end:#x} ({})",
        loaded.table.entries.len(),
        if loaded.binary { "binary" } else { "CSV" },
        human_size(end)
    )?;
    Ok(ExitCode::SUCCESS)
}

/// A size: `4MB`, `16M`, `64K`, `0x400000`, `4194304` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (num, mult) = [
        ("mib", 1 << 20),
        ("mb", 1 << 20),
        ("m", 1 << 20),
        ("kib", 1 << 10),
        ("kb", 1 << 10),
        ("k", 1 << 10),
    ]
    .iter()
    .find_map(|(suf, m)| lower.strip_suffix(suf).map(|n| (n.trim().to_string(), *m)))
    .unwrap_or((lower.clone(), 1u64));
    let n = parse_u64(&num)
        .map_err(|_| format!("invalid size '{s}': use 4MB, 16M, 64K, 0x400000 or 4194304"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

fn parse_u64(s: &str) -> Result<u64, std::num::ParseIntError> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
}

pub(crate) fn parse_u32(s: &str) -> Result<u32, String> {
    let v = parse_size(s)?;
    u32::try_from(v).map_err(|_| format!("'{s}' does not fit in 32 bits"))
}

fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .context("reading standard input")?;
        return Ok(v);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn is_binary(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xAA, 0x50])
}

/// A table read from a file, with how it was read.
struct Loaded {
    table: OwnedTable,
    binary: bool,
    md5_row: bool,
    unterminated: bool,
}

fn load(path: &Path, bytes: &[u8], csv_opts: &CsvOptions, md5: bool) -> anyhow::Result<Loaded> {
    if is_binary(bytes) {
        let (t, info) = PartitionTable::decode(bytes, &DecodeOptions { verify_md5: md5 })
            .with_context(|| format!("{}: not a valid binary partition table", path.display()))?;
        Ok(Loaded {
            table: OwnedTable::from_table(&t),
            binary: true,
            md5_row: info.md5_row.is_some(),
            unterminated: info.end == TableEnd::EndOfInput,
        })
    } else {
        let table = OwnedTable::from_csv_bytes(bytes, csv_opts)
            .with_context(|| format!("{}: invalid partition CSV", path.display()))?;
        Ok(Loaded {
            table,
            binary: false,
            md5_row: false,
            unterminated: false,
        })
    }
}

fn partitions_json(t: &OwnedTable) -> Value {
    Value::Array(
        t.entries
            .iter()
            .map(|e| {
                let p = &e.partition;
                json!({
                    "name": e.name,
                    "label": p.label.to_string(),
                    "type": p.ty.0,
                    "type_name": p.ty.keyword(),
                    "subtype": p.subtype.0,
                    "subtype_name": p.subtype.keyword(p.ty),
                    "offset": p.offset,
                    "size": p.size,
                    "encrypted": p.flags.encrypted(),
                    "readonly": p.flags.readonly(),
                    "unknown_flags": p.flags.unknown(),
                    "line": e.line,
                })
            })
            .collect(),
    )
}

fn lint_json(l: &Lint) -> Value {
    json!({ "code": l.code(), "severity": l.severity().to_string(), "message": l.to_string() })
}

fn warning_json(w: &Warning) -> Value {
    json!({ "message": w.to_string() })
}

fn convert(a: ConvertArgs) -> anyhow::Result<ExitCode> {
    let mut csv_opts = CsvOptions {
        table_offset: a.offset,
        primary_bootloader_offset: a.primary_bootloader_offset,
        recovery_bootloader_offset: a.recovery_bootloader_offset,
        ..CsvOptions::default()
    };
    if let Some(pbo) = a.primary_bootloader_offset {
        if pbo >= a.offset {
            bail!(
                "unsupported configuration: the primary bootloader ({pbo:#x}) must be below the \
                 partition table ({:#x})",
                a.offset
            );
        }
    }
    for e in &a.extra_partition_subtypes {
        let extra = ExtraSubtype::parse(e)?;
        csv_opts.add_extra_subtype(extra)?;
    }
    if a.json && a.output == Path::new("-") {
        bail!("--json prints a summary on stdout, so the converted table needs an output file");
    }
    let bytes = read_input(&a.input)?;
    let loaded = load(&a.input, &bytes, &csv_opts, !a.no_md5)?;
    if loaded.unterminated {
        eprintln!(
            "warning: {}: the table has no end marker (a legacy table without padding); \
             gen_esp32part.py rejects such input",
            a.input.display()
        );
    }
    let vopts = ValidateOptions {
        table_offset: a.offset,
        flash_size: a.flash_size,
        secure: match a.secure {
            None => SecureBoot::Off,
            Some(Secure::V1) => SecureBoot::V1,
            Some(Secure::V2) => SecureBoot::V2,
        },
        no_verify: a.no_verify,
    };
    let warnings = loaded
        .table
        .validate(&vopts)
        .with_context(|| format!("{}: invalid partition table", a.input.display()))?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let lints = lint_collect(
        &loaded.table.entries,
        &LintOptions {
            flash_size: a.flash_size,
            ..LintOptions::default()
        },
    );
    for l in &lints {
        eprintln!("warning: {l}");
    }
    let out: Vec<u8> = if loaded.binary {
        loaded.table.to_csv_with(&csv_opts).into_bytes()
    } else {
        loaded
            .table
            .to_binary(!a.no_md5)
            .with_context(|| format!("{}: cannot encode the table", a.input.display()))?
            .to_vec()
    };
    if a.output == Path::new("-") {
        let mut so = std::io::stdout().lock();
        so.write_all(&out).context("writing to standard output")?;
        so.flush().context("writing to standard output")?;
    } else {
        if let Some(dir) = a.output.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&a.output, &out)
            .with_context(|| format!("writing {}", a.output.display()))?;
    }
    if a.json {
        print_json(&json!({
            "input": a.input,
            "output": a.output,
            "input_format": if loaded.binary { "binary" } else { "csv" },
            "output_format": if loaded.binary { "csv" } else { "binary" },
            "md5_row": if loaded.binary { loaded.md5_row } else { !a.no_md5 },
            "bytes": out.len(),
            "partitions": partitions_json(&loaded.table),
            "warnings": warnings.iter().map(warning_json).collect::<Vec<_>>(),
            "lints": lints.iter().map(lint_json).collect::<Vec<_>>(),
        }))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn file_size(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len())
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let csv_opts = CsvOptions {
        table_offset: a.offset,
        ..CsvOptions::default()
    };
    let bytes = read_input(&a.file)?;
    let loaded = load(&a.file, &bytes, &csv_opts, true)?;
    let app_size = a.app.as_deref().map(file_size).transpose()?;
    let vopts = ValidateOptions {
        table_offset: a.offset,
        flash_size: a.flash_size,
        ..ValidateOptions::default()
    };
    let (warnings, error) = match loaded.table.validate(&vopts) {
        Ok(w) => (w, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let lints = lint_collect(
        &loaded.table.entries,
        &LintOptions {
            flash_size: a.flash_size,
            app_size,
            max_percent: a.max_percent,
            expect_ota: true,
        },
    );
    let slots: Vec<_> = app_size
        .map(|s| fit_report(&loaded.table.entries, s, a.max_percent).collect())
        .unwrap_or_default();
    // A lint fails the check when it is an error, or is the app filling
    // more than --max-percent (the threshold this command was given);
    // other warnings fail it only with --strict.
    let fails = |l: &Lint| {
        a.strict || l.severity() == Severity::Error || matches!(l, Lint::AppNearlyFull { .. })
    };
    let ok = error.is_none() && !lints.iter().any(fails) && (warnings.is_empty() || !a.strict);

    if a.json {
        print_json(&json!({
            "file": a.file,
            "format": if loaded.binary { "binary" } else { "csv" },
            "ok": ok,
            "valid": error.is_none(),
            "validation_error": error.as_ref().map(|e| e.to_string()),
            "warnings": warnings.iter().map(warning_json).collect::<Vec<_>>(),
            "lints": lints.iter().map(|l| {
                let mut v = lint_json(l);
                v["fails"] = json!(fails(l));
                v
            }).collect::<Vec<_>>(),
            "strict": a.strict,
            "app_size": app_size,
            "slots": slots.iter().map(|f| json!({
                "label": f.label.to_string(),
                "slot_size": f.slot_size,
                "app_size": f.app_size,
                "percent_used": f.percent_used,
                "fits": f.fits,
                "within_limit": f.within_limit,
            })).collect::<Vec<_>>(),
            "partitions": partitions_json(&loaded.table),
        }))?;
        return Ok(check_exit(ok));
    }

    let mut out = std::io::stdout().lock();
    let name = a.file.display();
    for w in &warnings {
        writeln!(out, "warning: {w}")?;
    }
    if let Some(e) = &error {
        writeln!(out, "error: {name}: {e}")?;
    }
    for l in &lints {
        writeln!(out, "{}: {l}", if fails(l) { "error" } else { "warning" })?;
    }
    for f in &slots {
        let used = format!(
            "{} of {}",
            human_size(f.app_size),
            human_size(u64::from(f.slot_size))
        );
        if !f.fits {
            writeln!(out, "{}: {used} — does not fit", f.label)?;
        } else if !f.within_limit {
            writeln!(
                out,
                "{}: {used} — {:.1}% used (more than {}%)",
                f.label, f.percent_used, a.max_percent
            )?;
        } else {
            writeln!(out, "{}: {used} — {:.1}% used", f.label, f.percent_used)?;
        }
    }
    if ok {
        let n = lints.len() + warnings.len();
        let warned = if n > 0 {
            format!(
                " ({n} warning{}; --strict fails on them)",
                if n == 1 { "" } else { "s" }
            )
        } else {
            String::new()
        };
        writeln!(
            out,
            "ok: {name}: {} partitions{warned}",
            loaded.table.entries.len()
        )?;
    }
    Ok(check_exit(ok))
}

fn suggest_cmd(a: SuggestArgs) -> anyhow::Result<ExitCode> {
    let app_size = file_size(&a.app)?;
    let mut opts = SuggestOptions::new(app_size, a.flash_size);
    opts.factory = a.factory;
    opts.margin_percent = a.margin;
    let csv = suggest(&opts).with_context(|| {
        format!(
            "cannot plan a table for {} on {} of flash",
            a.app.display(),
            human_size(a.flash_size)
        )
    })?;
    // The suggestion must pass everything `check` does.
    let table = OwnedTable::from_csv(&csv, &CsvOptions::default())
        .context("internal error: the suggested table does not parse")?;
    table
        .validate(&ValidateOptions {
            flash_size: Some(a.flash_size),
            ..ValidateOptions::default()
        })
        .context("internal error: the suggested table is invalid")?;
    let slot = otter_format::partition::suggest::slot_size(&opts)?;
    match &a.output {
        Some(p) => std::fs::write(p, &csv).with_context(|| format!("writing {}", p.display()))?,
        None if !a.json => {
            let mut so = std::io::stdout().lock();
            so.write_all(csv.as_bytes())
                .context("writing to standard output")?;
        }
        None => {}
    }
    if a.json {
        print_json(&json!({
            "app": a.app,
            "app_size": app_size,
            "flash_size": a.flash_size,
            "table_offset": DEFAULT_TABLE_OFFSET,
            "slot_size": slot,
            "factory": a.factory,
            "margin_percent": a.margin,
            "output": a.output,
            "csv": csv,
            "partitions": partitions_json(&table),
        }))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4MB"), Ok(4 << 20));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("0x400000"), Ok(0x400000));
        assert_eq!(parse_size("4194304"), Ok(4194304));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert!(parse_size("4 GB").is_err());
        assert!(parse_size("x").is_err());
    }
}
