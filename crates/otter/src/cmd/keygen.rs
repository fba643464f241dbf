//! `otter keygen`.

use std::process::ExitCode;

/// Arguments of `otter keygen`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `otter keygen`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("otter keygen is not built yet")
}
