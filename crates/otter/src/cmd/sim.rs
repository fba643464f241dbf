//! `otter sim`: the NOR-flash simulator from the command line.
//!
//! `otter sim powercut` runs otter-sim's power-cut scenario table
//! ([`otter_sim::powercut::table`]): every flash operation of every scenario
//! (firmware update through the engine, `POST /update` through the device
//! core and the resumable pull; first boot, confirm, failed self-test, API
//! and crash rollback, anti-rollback, web-UI update, NVS garbage collection,
//! bundle; second cuts during recovery) is cut before, after and in the
//! middle, the device is rebooted through the bootloader model, and the
//! invariants are checked. Exit 0 when nothing broke, 1 when a cut broke an
//! invariant; every failure prints the command that replays it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use otter_sim::powercut::{self, table, PowerCutOptions, Replay, DEFAULT_SEED};
use otter_sim::Fault;

use crate::output;

/// `otter sim` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Prove power-cut safety: cut every flash operation of every scenario in
    /// the table (before, after, torn), reboot through the bootloader model,
    /// check the invariants and retry. Exit 1 if any cut broke one.
    Powercut(PowercutArgs),
}

/// Arguments of `otter sim powercut`.
#[derive(Debug, clap::Args)]
pub struct PowercutArgs {
    /// Run only this scenario of the table (see --list).
    #[arg(long, value_name = "NAME")]
    scenario: Option<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Seed of the torn program/erase faults (decimal or 0x-hex); a failure
    /// names the seed that reproduces it.
    #[arg(long, value_parser = parse_seed, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Run only case N of the scenario (the `#N` of the report).
    #[arg(long, value_name = "N", requires = "scenario")]
    case: Option<usize>,
    /// Replay only this cut, OP:KIND:SEED as a failure prints it.
    #[arg(long, value_name = "OP:KIND:SEED", value_parser = Fault::parse, requires = "case")]
    fault: Option<Fault>,
    /// With --fault: the second cut, in the recovery after it.
    #[arg(long, value_name = "OP:KIND:SEED", value_parser = Fault::parse, requires = "fault")]
    second: Option<Fault>,
    /// The shared corpus folder, for the real ESP-IDF and Tasmota images some
    /// cases update to. Default: $OTTER_CORPUS, else ../shared/corpus.
    #[arg(long, value_name = "DIR")]
    corpus: Option<PathBuf>,
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
/// `../shared/corpus` (from the current directory). It must exist: the table
/// updates to real images from it.
fn corpus(args: &PowercutArgs) -> anyhow::Result<PathBuf> {
    let dir = args
        .corpus
        .clone()
        .or_else(|| std::env::var_os("OTTER_CORPUS").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("../shared/corpus"));
    anyhow::ensure!(
        dir.is_dir(),
        "the corpus folder {} does not exist: the power-cut table updates to real images from it \
         (give it with --corpus DIR or OTTER_CORPUS)",
        dir.display()
    );
    Ok(dir)
}

fn list(json: bool) -> anyhow::Result<ExitCode> {
    if json {
        let rows: Vec<serde_json::Value> = table::TABLE
            .iter()
            .map(|r| serde_json::json!({ "name": r.name, "scenario": r.scenario, "what": r.what }))
            .collect();
        output::print_json(&rows)?;
    } else {
        for r in table::TABLE {
            println!("{:<16} {}", r.name, r.what);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn powercut_cmd(args: PowercutArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        return list(args.json);
    }
    let corpus = corpus(&args).context("locating the corpus")?;
    let mut opts = PowerCutOptions::new(corpus);
    opts.seed = args.seed;
    opts.scenario = args.scenario.clone();
    opts.case = args.case;
    opts.workers = args.jobs;
    opts.replay = args.fault.map(|fault| Replay {
        fault,
        second: args.second,
    });
    if !args.json {
        eprintln!(
            "running the power-cut table ({}, seed {:#x}, corpus {})...",
            opts.scenario.as_deref().unwrap_or("every scenario"),
            opts.seed,
            opts.corpus.display()
        );
    }
    let report = powercut::run(&opts).map_err(anyhow::Error::msg)?;
    if args.json {
        output::print_json(&report)?;
    } else {
        print!("{report}");
        if report.passed() {
            println!(
                "ok: {} cut points over {} cases, every one booted OLD or NEW, mounted the old or the new web UI, and a retry completed",
                report.cut_points, report.scenarios
            );
        } else {
            println!(
                "FAILED: {} of {} cut points broke an invariant; each FAIL line above ends with the command that replays it",
                report.failures.len(),
                report.cut_points,
            );
        }
    }
    Ok(output::check_exit(report.passed()))
}
