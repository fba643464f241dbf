//! `otter demo`: the whole update flow on a virtual device, in a few seconds.
//!
//! 1. creates a virtual ESP32-S3 (rollback on, an API token) with firmware
//!    1.0.0 in the factory slot, and powers it on;
//! 2. builds 2.0.0 and a broken 3.0.0 (it crashes on boot);
//! 3. pushes 2.0.0 over HTTP, which boots, passes its self-test and confirms;
//! 4. pushes 3.0.0, which crashes before it can confirm itself, so the
//!    bootloader rolls the device back to 2.0.0 on the next boot;
//! 5. prints what happened and what it cost in flash operations.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use otter_agent::{Behavior, Profile, RunOptions};
use otter_format::chip::Chip;
use otter_format::image::{verify, VerifyOptions};
use otter_sim::device::{self, build_firmware, CreateOptions};
use serde_json::Value;

use crate::cmd::push::{push, Client};
use crate::output::{self, human_size};

/// Arguments of `otter demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the device in this directory (default: a temporary directory, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Chip of the virtual device.
    #[arg(long, default_value = "esp32s3")]
    chip: String,
    /// Print a JSON summary instead of the narrative.
    #[arg(long)]
    json: bool,
}

const TOKEN: &str = "otter-demo-token";

fn say(json: bool, s: impl AsRef<str>) {
    if !json {
        println!("{}", s.as_ref());
    }
}

/// The events of `st` not printed yet. The device keeps only its last few
/// (`otter_device::service::EVENTS`), so the ring may have moved on: an
/// event is new when it comes after the last one printed, by (boot, uptime).
fn events_since(st: &Value, seen: &mut Option<(u64, u64, String)>) -> Vec<String> {
    let all = st
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let events: Vec<(u64, u64, String)> = all
        .iter()
        .filter_map(|e| {
            Some((
                e.get("boot")?.as_u64()?,
                e.get("uptime_ms")?.as_u64()?,
                e.get("message")?.as_str()?.to_string(),
            ))
        })
        .collect();
    // After the last one printed if it is still there, else after its time.
    let start = match seen.as_ref() {
        None => 0,
        Some(last) => match events.iter().rposition(|e| e == last) {
            Some(i) => i + 1,
            None => events
                .iter()
                .position(|e| (e.0, e.1) > (last.0, last.1))
                .unwrap_or(events.len()),
        },
    };
    let new = events.get(start..).unwrap_or_default();
    if let Some(last) = new.last() {
        *seen = Some(last.clone());
    }
    new.iter()
        .map(|(boot, up, msg)| format!("boot {boot} +{:.1}s  {msg}", *up as f64 / 1000.0))
        .collect()
}

/// Runs `otter demo`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let chip = crate::cmd::device::parse_chip(&args.chip)?;
    let tmp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("otter-demo-")
                .tempdir()
                .context("creating a temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    let json = args.json;

    // 1. The device.
    let v1 = build_firmware(chip, "otter-demo", "1.0.0", 0)?;
    let mut opts = CreateOptions::new();
    opts.chip = chip;
    opts.firmware = Some(v1);
    opts.rollback = true;
    opts.token = Some(TOKEN.into());
    opts.force = args.dir.is_some();
    device::create(&dir, &opts)
        .with_context(|| format!("creating the demo device in {}", dir.display()))?;
    say(json, format!(
        "1. created a virtual {} in {}: default partition table (factory + ota_0 + ota_1), firmware 1.0.0 in factory, rollback on, API token set",
        chip.display_name(),
        dir.display()
    ));

    // 2. The images.
    // Sized like a small real application, so the upload has something to show.
    let v2 = sized_firmware(chip, "2.0.0", 1_100_000)?;
    let v3 = sized_firmware(chip, "3.0.0", 1_150_000)?;
    say(
        json,
        format!(
            "2. built firmware 2.0.0 ({}) and 3.0.0 ({}); 3.0.0 is broken: it crashes on boot",
            human_size(v2.len() as u64),
            human_size(v3.len() as u64)
        ),
    );

    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let mut run = RunOptions::new(&dir, "127.0.0.1:0".parse()?);
    let mut profile = Profile::new();
    profile.set("3.0.0", Behavior::CrashOnBoot);
    run.profile = profile;
    run.selftest_window = Duration::from_millis(1500);
    run.reboot_time = Duration::from_millis(300);
    let mut running = rt.block_on(otter_agent::start(run))?;
    let url = running.url();
    let client = Client::new(&url, Some(TOKEN.into()));
    let mut seen = None;
    let first = wait_status(&client)?;
    say(
        json,
        format!(
            "   powered on: the bootloader booted {} {} ; the API is at {url}",
            first
                .pointer("/running/label")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            first
                .pointer("/running/version")
                .and_then(Value::as_str)
                .unwrap_or("?")
        ),
    );
    for e in events_since(&first, &mut seen) {
        say(json, format!("     | {e}"));
    }

    let verify_opts = {
        let mut o = VerifyOptions::new();
        o.require_app = true;
        o
    };
    let info2 = verify(&v2, &verify_opts)?;
    let info3 = verify(&v3, &verify_opts)?;

    // 3. Push 2.0.0.
    say(json, "3. otter push 2.0.0 --to the device");
    let r2 = push(
        &client,
        &v2,
        &info2,
        Duration::from_secs(30),
        false,
        json,
        false,
    )?;
    let st = client.status()?;
    for e in events_since(&st, &mut seen) {
        say(json, format!("     | {e}"));
    }
    say(
        json,
        format!("   => {}", r2.message.clone().unwrap_or_default()),
    );
    if r2.result != "running" {
        bail!(
            "the demo expected 2.0.0 to run and confirm, but: {}",
            r2.message.unwrap_or_default()
        );
    }

    // 4. Push the broken 3.0.0.
    say(json, "4. otter push 3.0.0 (broken) --to the device");
    let r3 = push(
        &client,
        &v3,
        &info3,
        Duration::from_secs(30),
        false,
        json,
        false,
    )?;
    let st = client.status()?;
    for e in events_since(&st, &mut seen) {
        say(json, format!("     | {e}"));
    }
    say(
        json,
        format!("   => {}", r3.message.clone().unwrap_or_default()),
    );
    let running_version = st
        .pointer("/running/version")
        .and_then(Value::as_str)
        .unwrap_or("");
    if r3.result != "rolled_back" || running_version != "2.0.0" {
        bail!(
            "the demo expected an automatic rollback to 2.0.0, but the push ended {} and {running_version} runs",
            r3.result
        );
    }

    // 5. What it took.
    let (counters, modelled) = {
        let mut dev = running.shared.device();
        let f = dev.flash();
        (*f.counters(), f.elapsed())
    };
    running.stop();
    let _ = rt.block_on(running.wait());
    let elapsed = started.elapsed();
    if json {
        output::print_json(&serde_json::json!({
            "dir": dir.display().to_string(),
            "push_2": r2,
            "push_3": r3,
            "final_status": st,
            "flash": {
                "sector_erases": counters.sector_erases,
                "block_erases": counters.block_erases,
                "bytes_erased": counters.bytes_erased,
                "program_ops": counters.program_ops,
                "bytes_programmed": counters.bytes_programmed,
                "modelled_flash_secs": modelled.as_secs_f64(),
            },
            "elapsed_secs": elapsed.as_secs_f64(),
        }))?;
    } else {
        println!("5. summary");
        println!("   2.0.0 was written to {}, booted, passed its self-test and confirmed itself (VALID).",
            r2.slot.as_deref().unwrap_or("?"));
        println!("   3.0.0 was written to {} and verified, booted once as PENDING_VERIFY, crashed before confirming;",
            r3.slot.as_deref().unwrap_or("?"));
        println!("   at the next boot the bootloader marked it ABORTED and booted 2.0.0 again. The device never stopped having a bootable image.");
        println!(
            "   flash operations (both updates, all boots): {} 64 KiB block erases + {} 4 KiB sector erases ({}), {} programs ({}); modelled flash time {:.2} s",
            counters.block_erases,
            counters.sector_erases,
            human_size(counters.bytes_erased),
            counters.program_ops,
            human_size(counters.bytes_programmed),
            modelled.as_secs_f64()
        );
        println!("   demo finished in {:.1} s", elapsed.as_secs_f64());
        if args.dir.is_some() {
            println!("   the device is kept in {}: `otter device status {0}` reads it, `otter device run {0}` powers it on again", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sized_firmware(chip: Chip, version: &str, size: u32) -> anyhow::Result<Vec<u8>> {
    otter_format::image::AppImageBuilder::new(chip)
        .project_name("otter-demo")
        .version(version)
        .size(size)
        .build()
        .with_context(|| format!("building the demo firmware {version}"))
}

/// Polls status until the device answers (it binds at once; this covers
/// the first boot).
fn wait_status(client: &Client) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.status() {
            Ok(v) if v.get("running").is_some_and(|r| !r.is_null()) => return Ok(v),
            Ok(_) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Ok(_) => bail!("the demo device did not boot"),
            Err(e) => return Err(e),
        }
    }
}
