//! `otter demo`.

use std::process::ExitCode;

/// Arguments of `otter demo`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `otter demo`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("otter demo is not built yet")
}
