//! `otter www`: LittleFS images of the web UI, flashed whole into a data
//! partition (seed 002's A/B `www_0`/`www_1` slots).
//!
//! - `build DIR --size SIZE -o www.bin`: a LittleFS image of a folder, block
//!   size 4096, block count SIZE / 4096, as `esp_littlefs` mounts it.
//!   Refuses (exit 1) a folder that does not fit, a size that is not a
//!   multiple of 4096, and a folder without `index.html` (the device checks
//!   for it) unless `--allow-no-index`.
//! - `info IMAGE [--json]` (alias `ls`): every file and directory with its size; exit 1
//!   when the image does not mount.
//! - `extract IMAGE -o DIR`: writes the image's files under DIR.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use otter_www::{Entry, WwwError};
use serde_json::json;

use crate::cmd::flash_plan::parse_offset;
use crate::output::{human_size, print_json, refuse};

/// `otter www` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build a LittleFS image of a folder for a data partition of SIZE bytes.
    Build(BuildArgs),
    /// List the files in a LittleFS image; exit 1 when it does not mount.
    #[command(name = "info", visible_alias = "ls")]
    Info(LsArgs),
    /// Extract every file of a LittleFS image into a folder.
    Extract(ExtractArgs),
}

/// Arguments of `otter www build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The folder to pack (its contents become the image's root).
    dir: PathBuf,
    /// Partition size: `1M`, `0x100000`, `1048576`; a multiple of 4096.
    #[arg(long, value_parser = parse_offset)]
    size: u32,
    /// Where to write the image.
    #[arg(short, long)]
    output: PathBuf,
    /// Build even without an `index.html` at the top of the folder.
    #[arg(long)]
    allow_no_index: bool,
    /// Report as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `otter www info` (`ls`).
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// A LittleFS image (its length sets the block count).
    image: PathBuf,
    /// Print JSON: `{ok, blocks, entries: [{path, size, dir}]}`.
    #[arg(long)]
    json: bool,
}

/// Arguments of `otter www extract`.
#[derive(Debug, clap::Args)]
pub struct ExtractArgs {
    /// A LittleFS image (its length sets the block count).
    image: PathBuf,
    /// The folder to write into (created when missing).
    #[arg(short, long)]
    output: PathBuf,
    /// Print JSON: `{ok, output, entries: [{path, size, dir}]}`.
    #[arg(long)]
    json: bool,
}

/// Runs an `otter www` subcommand.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Build(a) => build(a),
        Command::Info(a) => ls(a),
        Command::Extract(a) => extract(a),
    }
}

fn code(e: &WwwError) -> &'static str {
    match e {
        WwwError::BadSize(_) => "bad_size",
        WwwError::TooLarge { .. } => "too_large",
        WwwError::BadName(_) => "bad_name",
        WwwError::NotMountable { .. } => "not_mountable",
        WwwError::NotFound(_) => "not_found",
        _ => "littlefs",
    }
}

fn build(a: BuildArgs) -> anyhow::Result<ExitCode> {
    if !a.dir.is_dir() {
        anyhow::bail!("{} is not a folder", a.dir.display());
    }
    if !a.allow_no_index && !a.dir.join("index.html").is_file() {
        let msg = format!(
            "{} has no index.html at its top; the device checks for it (use --allow-no-index to build anyway)",
            a.dir.display()
        );
        return refuse(a.json, "no_index", &msg);
    }
    let image = match otter_www::build_image(&a.dir, a.size) {
        Ok(i) => i,
        Err(WwwError::Io { path, source }) => {
            return Err(source).with_context(|| format!("reading {path}"))
        }
        Err(e) => return refuse(a.json, code(&e), &format!("{}: {e}", a.dir.display())),
    };
    std::fs::write(&a.output, &image).with_context(|| format!("writing {}", a.output.display()))?;
    let entries = otter_www::list(&image).context("re-reading the built image")?;
    let files = entries.iter().filter(|e| !e.is_dir).count();
    let bytes: u64 = entries.iter().map(|e| e.size).sum();
    if a.json {
        print_json(&json!({
            "ok": true,
            "output": a.output.display().to_string(),
            "size": a.size,
            "block_size": otter_www::BLOCK_SIZE,
            "blocks": a.size / otter_www::BLOCK_SIZE,
            "files": files,
            "file_bytes": bytes,
        }))?;
    } else {
        println!(
            "{}: LittleFS, {} ({} blocks of 4096), {files} files, {} of file data",
            a.output.display(),
            human_size(u64::from(a.size)),
            a.size / otter_www::BLOCK_SIZE,
            human_size(bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn ls(a: LsArgs) -> anyhow::Result<ExitCode> {
    let image =
        std::fs::read(&a.image).with_context(|| format!("reading {}", a.image.display()))?;
    let entries: Vec<Entry> = match otter_www::list(&image) {
        Ok(e) => e,
        Err(e) => return refuse(a.json, code(&e), &format!("{}: {e}", a.image.display())),
    };
    if a.json {
        let list: Vec<_> = entries
            .iter()
            .map(|e| json!({ "path": e.path, "size": e.size, "dir": e.is_dir }))
            .collect();
        print_json(&json!({
            "ok": true,
            "blocks": image.len() / otter_www::BLOCK_SIZE as usize,
            "entries": list,
        }))?;
    } else {
        for e in &entries {
            if e.is_dir {
                println!("{:>10}  {}/", "-", e.path);
            } else {
                println!("{:>10}  {}", e.size, e.path);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn extract(a: ExtractArgs) -> anyhow::Result<ExitCode> {
    let image =
        std::fs::read(&a.image).with_context(|| format!("reading {}", a.image.display()))?;
    let entries = match otter_www::list(&image) {
        Ok(e) => e,
        Err(e) => return refuse(a.json, code(&e), &format!("{}: {e}", a.image.display())),
    };
    std::fs::create_dir_all(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    for e in &entries {
        // list() yields `/`-separated names without `.` or `..`, so the
        // joined path stays under the output folder.
        let rel = e.path.trim_start_matches('/');
        if rel.is_empty()
            || rel
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            anyhow::bail!(
                "refusing to extract {:?}: not a plain relative path",
                e.path
            );
        }
        let dest = a.output.join(rel);
        if e.is_dir {
            std::fs::create_dir_all(&dest)
                .with_context(|| format!("creating {}", dest.display()))?;
        } else {
            let bytes = otter_www::read_file(&image, &e.path)
                .with_context(|| format!("reading {} from the image", e.path))?;
            std::fs::write(&dest, bytes).with_context(|| format!("writing {}", dest.display()))?;
        }
    }
    if a.json {
        let list: Vec<_> = entries
            .iter()
            .map(|e| json!({ "path": e.path, "size": e.size, "dir": e.is_dir }))
            .collect();
        print_json(&json!({
            "ok": true,
            "output": a.output.display().to_string(),
            "entries": list,
        }))?;
    } else {
        println!(
            "{} entries extracted into {}",
            entries.len(),
            a.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
