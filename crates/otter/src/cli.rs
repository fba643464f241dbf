//! The command tree. Each subcommand's arguments and behaviour live in `cmd/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd;

/// otter: over-the-air updates for ESP32-family devices, byte-compatible with ESP-IDF.
#[derive(Debug, Parser)]
#[command(name = "otter", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert, check and plan partition tables (CSV and binary, as gen_esp32part).
    #[command(subcommand)]
    Partitions(cmd::partitions::Command),
    /// Inspect and verify app images.
    #[command(subcommand)]
    Image(cmd::image::Command),
    /// Read otadata (the boot-slot selection).
    #[command(subcommand)]
    Otadata(cmd::otadata::Command),
    /// Run the simulator: the exhaustive power-cut proof.
    #[command(subcommand)]
    Sim(cmd::sim::Command),
}

/// Runs the selected command and returns its exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Partitions(c) => cmd::partitions::run(c),
        Command::Image(c) => cmd::image::run(c),
        Command::Otadata(c) => cmd::otadata::run(c),
        Command::Sim(c) => cmd::sim::run(c),
    }
}
