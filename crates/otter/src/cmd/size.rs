//! `otter size`.

use std::process::ExitCode;

/// Arguments of `otter size`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `otter size`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("otter size is not built yet")
}
