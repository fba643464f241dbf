//! `otter partitions` (placeholder).

use std::process::ExitCode;

/// `otter partitions` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Placeholder.
    Todo,
}

/// Runs an `otter partitions` subcommand.
pub fn run(_cmd: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
