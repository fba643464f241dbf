//! `otter push`.

use std::process::ExitCode;

/// Arguments of `otter push`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `otter push`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("otter push is not built yet")
}
