//! `otter merge`.

use std::process::ExitCode;

/// Arguments of `otter merge`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `otter merge`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("otter merge is not built yet")
}
