//! `otter merge`: the factory flash plan as one full-flash image, byte for
//! byte what `esptool --chip CHIP merge-bin` writes for the same files at the
//! same offsets.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use otter_format::flashplan::MergeOptions;
use serde_json::json;

use crate::cmd::flash_plan::{make_plan, parse_offset, plan_json, region_files, Inputs, PlanArgs};
use crate::cmd::partitions::parse_size;
use crate::output::{human_size, print_json, refuse};

/// Arguments of `otter merge`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    plan: PlanArgs,
    /// The merged image to write.
    #[arg(short = 'o', long)]
    output: PathBuf,
    /// Pad the image with 0xFF up to this flash size (esptool merge-bin
    /// --pad-to-size, formerly --fill-flash-size).
    #[arg(long, visible_alias = "pad-to-size", value_parser = parse_size)]
    fill_flash_size: Option<u64>,
    /// Flash offset the image will be written at (esptool merge-bin
    /// --target-offset); the image starts there instead of at 0.
    #[arg(long, default_value = "0", value_parser = parse_offset)]
    target_offset: u32,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
}

/// Runs `otter merge`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let inputs = Inputs::read(&args.plan)?;
    let plan = match make_plan(&args.plan, &inputs, args.json)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let fill_to =
        match args.fill_flash_size {
            None => None,
            Some(f) => Some(u32::try_from(f).with_context(|| {
                format!("--fill-flash-size {f:#x} is larger than any ESP32 flash")
            })?),
        };
    let end = plan.regions.iter().map(|r| r.end()).max().unwrap_or(0);
    if let Some(fill) = fill_to {
        if end > u64::from(fill) {
            let msg = format!(
                "the plan writes up to {end:#x}, past --fill-flash-size {fill:#x}; give the \
                 flash chip's size"
            );
            return refuse(args.json, "fill-too-small", &msg);
        }
    }
    let opts = MergeOptions {
        target_offset: args.target_offset,
        fill_to,
    };
    let image = match plan.render(&opts) {
        Ok(i) => i,
        Err(e) => return refuse(args.json, "merge", &e.to_string()),
    };
    std::fs::write(&args.output, &image)
        .with_context(|| format!("writing {}", args.output.display()))?;

    let files = region_files(&args.plan, &plan, None);
    if args.json {
        let mut v = plan_json(&plan, &files);
        v["output"] = json!(args.output);
        v["output_size"] = json!(image.len());
        v["target_offset"] = json!(args.target_offset);
        v["fill_flash_size"] = json!(fill_to);
        print_json(&v)?;
    } else {
        let parts: Vec<String> = plan
            .regions
            .iter()
            .map(|r| format!("{} {:#x}", r.kind.name(), r.offset))
            .collect();
        println!(
            "wrote {}: {} ({} bytes) for {}: {}",
            args.output.display(),
            human_size(image.len() as u64),
            image.len(),
            plan.chip,
            parts.join(", ")
        );
        for n in &plan.notes {
            println!("note: {n}");
        }
        println!(
            "flash it with: esptool --chip {} write-flash {:#x} {}",
            plan.chip.name(),
            args.target_offset,
            args.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
