//! `otter release`.

use std::process::ExitCode;

/// Arguments of `otter release`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `otter release`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("otter release is not built yet")
}
