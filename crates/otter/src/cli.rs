//! The command tree. Each subcommand's arguments and behaviour live in `cmd/`.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use anyhow::Context;

use crate::cmd;

/// otter: over-the-air updates for ESP32-family devices, byte-compatible with ESP-IDF.
#[derive(Debug, Parser)]
#[command(name = "otter", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert, check and plan partition tables (CSV and binary, as gen_esp32part).
    #[command(subcommand)]
    Partitions(cmd::partitions::Command),
    /// Inspect and verify app images.
    #[command(subcommand)]
    Image(cmd::image::Command),
    /// Read and write otadata (the boot-slot selection): show it, erase it, select a slot.
    #[command(subcommand)]
    Otadata(cmd::otadata::Command),
    /// Run the simulator: the exhaustive power-cut proof.
    #[command(subcommand)]
    Sim(cmd::sim::Command),
    /// Check every image against the table and print the factory flash write list.
    FlashPlan(cmd::flash_plan::Args),
    /// Merge bootloader, table, otadata and images into one full-flash image.
    Merge(cmd::merge::Args),
    /// Write the NVS image a firmware reads its settings from (Wi-Fi, token, uploader passwords).
    FirmwareConfig(cmd::firmware_config::Args),
    /// Size gate: does the app fit its slot, with margin?
    Size(cmd::size::Args),
    /// Create, run and inspect virtual devices.
    #[command(subcommand)]
    Device(cmd::device::Command),
    /// Push a firmware update to a device over HTTP and watch it boot.
    Push(cmd::push::Args),
    /// Show the whole update flow on a virtual device, with an automatic rollback.
    Demo(cmd::demo::Args),
    /// List otter devices on the local network (mDNS).
    Discover(cmd::discover::Args),
    /// Build and inspect LittleFS web-UI images.
    #[command(subcommand)]
    Www(cmd::www::Command),
    /// Write an esp_delta_ota patch from one app image to the next.
    Delta(cmd::delta::Args),
    /// Make an Ed25519 signing key pair for releases.
    Keygen(cmd::keygen::Args),
    /// Write a signed release folder, or verify one.
    Release(cmd::release::Args),
    /// Run the fleet update server: device check-ins, signed releases, staged rollouts.
    Server(cmd::server::Args),
    /// Manage the fleet through the server: devices, releases, rollouts.
    Fleet(cmd::fleet::Args),
    /// Sign an image with a Secure Boot v2 key (as espsecure sign-data --version 2).
    Sign(cmd::sign::Args),
    /// Secure Boot key helpers: the eFuse key digest.
    #[command(subcommand)]
    Keys(cmd::keys::Command),
    /// Print a shell completion script: `otter completions bash > /etc/bash_completion.d/otter`.
    Completions(CompletionsArgs),
    /// Print the man page (roff): `otter man > otter.1; man -l otter.1`; or
    /// write every page (otter.1, otter-push.1, ...) into a folder.
    Man(ManArgs),
}

/// Arguments of `otter man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write otter.1 and one page per subcommand into this folder instead.
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
}

/// Arguments of `otter completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

/// Runs the selected command and returns its exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Partitions(c) => cmd::partitions::run(c),
        Command::Image(c) => cmd::image::run(c),
        Command::Otadata(c) => cmd::otadata::run(c),
        Command::Sim(c) => cmd::sim::run(c),
        Command::FlashPlan(a) => cmd::flash_plan::run(a),
        Command::Merge(a) => cmd::merge::run(a),
        Command::FirmwareConfig(a) => cmd::firmware_config::run(a),
        Command::Size(a) => cmd::size::run(a),
        Command::Device(c) => cmd::device::run(c),
        Command::Push(a) => cmd::push::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Discover(a) => cmd::discover::run(a),
        Command::Www(c) => cmd::www::run(c),
        Command::Delta(a) => cmd::delta::run(a),
        Command::Keygen(a) => cmd::keygen::run(a),
        Command::Release(a) => cmd::release::run(a),
        Command::Server(a) => cmd::server::run(a),
        Command::Fleet(a) => cmd::fleet::run(a),
        Command::Sign(a) => cmd::sign::run(a),
        Command::Keys(c) => cmd::keys::run(c),
        Command::Completions(a) => {
            // Generated into memory first: clap_complete panics on a write
            // error, and a closed pipe must stay a quiet success.
            let mut script = Vec::new();
            clap_complete::generate(a.shell, &mut Cli::command(), "otter", &mut script);
            write_stdout(&script)
        }
        Command::Man(ManArgs { dir: Some(dir) }) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man(ManArgs { dir: None }) => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .context("rendering the man page")?;
            write_stdout(&page)
        }
    }
}

/// Writes `bytes` to standard output; a closed pipe comes back as an `io::Error`.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("writing to standard output")?;
    Ok(ExitCode::SUCCESS)
}
