//! `otter delta OLD NEW -o PATCH`: an `esp_delta_ota` patch from one app
//! image to the next.
//!
//! The patch names OLD's validation hash (the SHA-256 appended to the image,
//! as `esptool image-info` prints it), so a device refuses it unless OLD is
//! what it runs. Both images are checked to be readable app images first:
//! a patch to a file that is not an image would only be refused later, on
//! the device.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use otter_delta::encode::{esp_delta_patch, PatchCompression};
use otter_format::image::inspect;
use serde_json::json;

use crate::output::print_json;

/// The compression of the patch body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// heatshrink (what esp_delta_ota ships with).
    Heatshrink,
    /// Stored.
    None,
}

/// Arguments of `otter delta`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image the device runs now.
    old: PathBuf,
    /// The image to update to.
    new: PathBuf,
    /// Where to write the patch.
    #[arg(short, long)]
    output: PathBuf,
    /// Patch body compression.
    #[arg(long, value_enum, default_value_t = Compression::Heatshrink)]
    compression: Compression,
    /// heatshrink window size, log2 (4..=12; the device's RAM grows with it).
    #[arg(long, default_value_t = 8)]
    window_bits: u8,
    /// heatshrink lookahead size, log2 (3..window-bits).
    #[arg(long, default_value_t = 7)]
    lookahead_bits: u8,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `otter delta`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let old =
        std::fs::read(&args.old).with_context(|| format!("reading {}", args.old.display()))?;
    let new =
        std::fs::read(&args.new).with_context(|| format!("reading {}", args.new.display()))?;
    let old_info = inspect(&old)
        .with_context(|| format!("{} is not a readable ESP32 app image", args.old.display()))?;
    let new_info = inspect(&new)
        .with_context(|| format!("{} is not a readable ESP32 app image", args.new.display()))?;
    if old_info.chip != new_info.chip {
        bail!(
            "{} is for {:?} but {} is for {:?}: a delta only makes sense between builds for one chip",
            args.old.display(),
            old_info.chip,
            args.new.display(),
            new_info.chip
        );
    }
    let Some(sha) = old_info.sha256 else {
        bail!(
            "{} has no appended SHA-256 (hash_appended = 0), so a device cannot tell whether it runs it; rebuild it with the hash appended",
            args.old.display()
        );
    };
    let compression = match args.compression {
        Compression::None => PatchCompression::None,
        Compression::Heatshrink => PatchCompression::Heatshrink {
            window_bits: args.window_bits,
            lookahead_bits: args.lookahead_bits,
        },
    };
    let patch = esp_delta_patch(&sha.stored, &old, &new, compression)
        .with_context(|| format!("making the patch ({})", args.new.display()))?;
    std::fs::write(&args.output, &patch)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let percent = 100.0 * patch.len() as f64 / new.len().max(1) as f64;
    if args.json {
        print_json(&json!({
            "patch": args.output.display().to_string(),
            "patch_bytes": patch.len(),
            "new_bytes": new.len(),
            "percent": (percent * 100.0).round() / 100.0,
            "base_sha256": hex(&sha.stored),
        }))?;
    } else {
        println!(
            "wrote {} ({} bytes, {:.2}% of the {}-byte image), base {}",
            args.output.display(),
            patch.len(),
            percent,
            new.len(),
            hex(&sha.stored)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
