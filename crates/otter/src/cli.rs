//! The command tree. Each subcommand's arguments and behaviour live in `cmd/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Read otadata (the boot-slot selection).
    #[command(subcommand)]
    Otadata(cmd::otadata::Command),
    /// Run the simulator: the exhaustive power-cut proof.
    #[command(subcommand)]
    Sim(cmd::sim::Command),
    /// Check every image against the table and print the factory flash write list.
    FlashPlan(cmd::flash_plan::Args),
    /// Merge bootloader, table, otadata and images into one full-flash image.
    Merge(cmd::merge::Args),
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
    /// Make an Ed25519 signing key pair for releases.
    Keygen(cmd::keygen::Args),
    /// Write a signed release folder, or verify one.
    Release(cmd::release::Args),
    /// Sign an image with a Secure Boot v2 key (as espsecure sign-data --version 2).
    Sign(cmd::sign::Args),
    /// Secure Boot key helpers: the eFuse key digest.
    #[command(subcommand)]
    Keys(cmd::keys::Command),
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
        Command::Size(a) => cmd::size::run(a),
        Command::Device(c) => cmd::device::run(c),
        Command::Push(a) => cmd::push::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Discover(a) => cmd::discover::run(a),
        Command::Www(c) => cmd::www::run(c),
        Command::Keygen(a) => cmd::keygen::run(a),
        Command::Release(a) => cmd::release::run(a),
        Command::Sign(a) => cmd::sign::run(a),
        Command::Keys(c) => cmd::keys::run(c),
    }
}
