//! `otter discover`.

use std::process::ExitCode;

/// Arguments of `otter discover`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `otter discover`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("otter discover is not built yet")
}
