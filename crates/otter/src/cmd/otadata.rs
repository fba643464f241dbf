//! `otter otadata`: read the boot-slot selection the way ESP-IDF's bootloader does.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use otter_format::otadata::{Otadata, SelectEntry, OTADATA_SIZE};
use serde::Serialize;

use crate::output;

/// `otter otadata` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show both otadata entries, their validity, the active one and the slot it selects.
    Info(InfoArgs),
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

/// Runs an `otter otadata` subcommand.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Info(args) => info(&args),
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

fn entry_report(sector: usize, e: &SelectEntry, slots: u8) -> EntryReport {
    EntryReport {
        sector,
        offset: format!("{:#x}", sector * 0x1000),
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

fn info(args: &InfoArgs) -> anyhow::Result<ExitCode> {
    let data =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let otadata = Otadata::from_partition(&data).with_context(|| {
        format!(
            "{} is not an otadata partition ({OTADATA_SIZE} bytes expected)",
            args.file.display()
        )
    })?;
    let active = otadata.active();
    let selected_slot = otadata.active_slot(args.slots);
    let boots = match selected_slot {
        Some(slot) => format!("ota_{slot}"),
        None if otadata.is_initial() => {
            "factory if present, else ota_0 (otadata is empty)".to_string()
        }
        None => "factory if present, else ota_0 (no valid entry)".to_string(),
    };
    let report = InfoReport {
        file: args.file.display().to_string(),
        slots: args.slots,
        entries: otadata
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| entry_report(i, e, args.slots))
            .collect(),
        active,
        selected_slot,
        boots,
    };
    if args.json {
        output::print_json(&report)?;
    } else {
        print_text(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(r: &InfoReport) {
    println!("otadata {} ({} OTA slots)", r.file, r.slots);
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
    println!("boots: {}", r.boots);
}
