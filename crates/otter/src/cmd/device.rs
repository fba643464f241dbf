//! `otter device`: create, run and inspect virtual devices.

use std::process::ExitCode;

/// `otter device` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {}

/// Runs an `otter device` subcommand.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {}
}
