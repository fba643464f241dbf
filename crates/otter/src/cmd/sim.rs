//! `otter sim`: the NOR-flash simulator from the command line.
//!
//! `otter sim powercut` runs otter-sim's power-cut harness
//! ([`otter_sim::powercut`]): every flash operation of every scenario (update,
//! first boot, confirm, failed self-test, reboot while pending, and a second
//! cut during recovery) on many layouts is cut before, after and in the
//! middle, the device is rebooted through the bootloader model, and the
//! invariants are checked. Exit 0 when nothing broke, 1 when a cut broke an
//! invariant.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use otter_sim::powercut::{self, Matrix, PowerCutOptions, DEFAULT_SEED};

use crate::output;

/// `otter sim` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Prove power-cut safety: cut every flash operation of every update scenario
    /// (before, after, torn), reboot through the bootloader model, check the
    /// invariants and retry. Exit 1 if any cut broke one.
    Powercut(PowercutArgs),
}

/// Arguments of `otter sim powercut`.
#[derive(Debug, clap::Args)]
pub struct PowercutArgs {
    /// Seed of the torn program/erase faults (decimal or 0x-hex); a failure
    /// names the seed that reproduces it.
    #[arg(long, value_parser = parse_seed, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Run the quick matrix (about 300 cut points, seconds) instead of the
    /// standard one (thousands of cut points).
    #[arg(long)]
    quick: bool,
    /// The shared corpus folder, for the real ESP-IDF image some cases update
    /// to. Default: $OTTER_CORPUS, else ../shared/corpus when it exists;
    /// without one those cases are left out (the report says so).
    #[arg(long, value_name = "DIR")]
    corpus: Option<PathBuf>,
    /// Only run the cases whose name contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Worker threads (default: the machine's parallelism, at most 4).
    #[arg(long, default_value_t = 0)]
    jobs: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_seed(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("not a seed: {e}"))
}

/// Runs an `otter sim` subcommand.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Powercut(args) => powercut_cmd(args),
    }
}

/// The corpus folder: `--corpus`, else `$OTTER_CORPUS`, else
/// `../shared/corpus` (from the current directory) when it exists.
fn corpus(args: &PowercutArgs) -> anyhow::Result<Option<PathBuf>> {
    let explicit = args
        .corpus
        .clone()
        .or_else(|| std::env::var_os("OTTER_CORPUS").map(PathBuf::from));
    if let Some(dir) = explicit {
        anyhow::ensure!(
            dir.is_dir(),
            "the corpus folder {} does not exist",
            dir.display()
        );
        return Ok(Some(dir));
    }
    let default = PathBuf::from("../shared/corpus");
    Ok(default.is_dir().then_some(default))
}

fn powercut_cmd(args: PowercutArgs) -> anyhow::Result<ExitCode> {
    let corpus = corpus(&args).context("locating the corpus")?;
    let opts = PowerCutOptions {
        seed: args.seed,
        matrix: if args.quick {
            Matrix::Quick
        } else {
            Matrix::Standard
        },
        corpus,
        workers: args.jobs,
        filter: args.filter.clone(),
    };
    if !args.json {
        eprintln!(
            "running the {} power-cut matrix (seed {:#x}, real image: {})...",
            if args.quick { "quick" } else { "standard" },
            opts.seed,
            match &opts.corpus {
                Some(dir) => format!("{} from {}", powercut::REAL_IMAGE, dir.display()),
                None => "none, no corpus found".into(),
            }
        );
    }
    let report = powercut::run_all(&opts);
    if args.json {
        output::print_json(&report)?;
    } else {
        print!("{report}");
        if report.passed() {
            println!(
                "ok: {} cut points over {} cases, every one booted OLD or NEW and a retry completed",
                report.cut_points, report.scenarios
            );
        } else {
            println!(
                "FAILED: {} of {} cut points broke an invariant (replay with --seed {:#x} --filter <case>)",
                report.failures.len(),
                report.cut_points,
                report.seed
            );
        }
    }
    Ok(output::check_exit(report.passed()))
}
