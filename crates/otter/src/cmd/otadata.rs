//! `otter otadata` (placeholder).

use std::process::ExitCode;

/// `otter otadata` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Placeholder.
    Todo,
}

/// Runs an `otter otadata` subcommand.
pub fn run(_cmd: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
