//! `otter flash-plan`.

use std::process::ExitCode;

/// Arguments of `otter flash-plan`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `otter flash-plan`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("otter flash-plan is not built yet")
}
