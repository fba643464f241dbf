//! `otter push IMAGE --to URL`: check an image against the device, upload it
//! with progress, wait for the reboot, and confirm that the new version runs
//! (or report the rollback and why).
//!
//! `otter push --www www.bin --to URL` does the same for a web-UI image
//! (LittleFS, exactly the slot's size): checked locally, uploaded to
//! `/api/ota/frontend`, and confirmed after the reboot by the device's
//! status (the new slot is mounted and its SHA-256 is the file's).
//!
//! Exit codes: 0 only when the pushed image runs (and, with rollback, has
//! confirmed itself); 1 when the device refused it or rolled it back; 2 when
//! the push could not be made (unreadable image, unreachable device, ...).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use otter_format::image::{verify, ImageInfo, VerifyOptions};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::output::{self, hex, human_size};

mod checks;
mod client;

pub use checks::precheck;
pub use client::{Client, Progress};

/// Arguments of `otter push`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The firmware image (build/<project>.bin, firmware.bin).
    #[arg(required_unless_present = "www")]
    image: Option<PathBuf>,
    /// Push a web-UI image (LittleFS, built with `otter www build`) instead of firmware.
    #[arg(long, value_name = "WWW_BIN", conflicts_with = "image")]
    www: Option<PathBuf>,
    /// The device: HOST, HOST:PORT, [IPv6]:PORT or http://HOST:PORT
    /// (http:// and port 3232 when missing).
    #[arg(long)]
    to: String,
    /// Bearer token for the device's API.
    #[arg(long, env = "OTTER_TOKEN")]
    token: Option<String>,
    /// Seconds to wait for the device to reboot and settle.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Upload only; do not wait for the reboot.
    #[arg(long)]
    no_wait: bool,
    /// Push even a downgrade, the running version, another project's
    /// firmware or the image that just rolled back (refused by default).
    #[arg(long)]
    force: bool,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

/// How a push ended.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// `running` (the new image runs, confirmed or without rollback),
    /// `uploaded` (with --no-wait), `refused` (checked locally or by the
    /// device, nothing sent or nothing switched), `rolled_back`.
    pub result: &'static str,
    /// What went wrong, when it did.
    pub message: Option<String>,
    /// Why push refused before uploading (`downgrade`, `same_version`,
    /// `other_project`, `rolled_back`, `not_an_app`, ...), else null.
    pub error: Option<&'static str>,
    /// Warnings given before uploading (rollback off).
    pub warnings: Vec<String>,
    /// The image's version.
    pub version: String,
    /// The image's SHA-256.
    pub sha256: String,
    /// Bytes sent.
    pub bytes: u64,
    /// Upload time in seconds.
    pub upload_secs: f64,
    /// The slot the device wrote.
    pub slot: Option<String>,
    /// The device's status at the end.
    pub status: Option<Value>,
}

impl PushReport {
    /// Whether the new image runs.
    pub fn ok(&self) -> bool {
        matches!(self.result, "running" | "uploaded")
    }
}

fn desc_str(
    info: &ImageInfo,
    f: fn(&otter_format::image::AppDesc) -> otter_format::image::FixedStr<'_>,
) -> String {
    info.app_desc
        .as_ref()
        .map(|d| String::from_utf8_lossy(f(d).bytes()).into_owned())
        .unwrap_or_default()
}

/// Verifies `bytes` as a flashable app image (a bootloader, a merged flash
/// image or a damaged image is refused).
pub fn check_image(bytes: &[u8]) -> Result<ImageInfo, otter_format::image::ImageError> {
    let mut opts = VerifyOptions::new();
    opts.require_app = true;
    verify(bytes, &opts)
}

/// Uploads `image` to `path` with a progress bar and records the answer in
/// `report`: `false` when the device refused the `what` (the reason and the
/// device's status are in the report).
fn send(
    client: &Client,
    path: &str,
    what: &str,
    image: &[u8],
    sha: &[u8; 32],
    quiet: bool,
    report: &mut PushReport,
) -> anyhow::Result<bool> {
    let progress = Progress::new(image.len() as u64, quiet);
    let started = Instant::now();
    let answer = client.upload_to(path, image, sha, &progress);
    progress.finish();
    let answer = answer?;
    report.upload_secs = started.elapsed().as_secs_f64();
    report.bytes = image.len() as u64;
    if answer.status != 200 {
        report.message = Some(format!(
            "the device refused the {what} ({} {}): {}",
            answer.status,
            answer
                .body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or(""),
            answer.message()
        ));
        report.status = client.status().ok();
        return Ok(false);
    }
    report.slot = answer
        .body
        .get("slot")
        .and_then(Value::as_str)
        .map(str::to_string);
    if !quiet {
        eprintln!(
            "uploaded in {:.1} s: written to {} and verified; the device reboots",
            report.upload_secs,
            report.slot.as_deref().unwrap_or("?")
        );
    }
    Ok(true)
}

/// Pushes `image` to the device behind `client` and waits (unless
/// `no_wait`) until the new image runs or was rolled back.
#[allow(clippy::too_many_arguments)]
pub fn push(
    client: &Client,
    image: &[u8],
    info: &ImageInfo,
    timeout: Duration,
    no_wait: bool,
    quiet: bool,
    force: bool,
) -> anyhow::Result<PushReport> {
    let version = desc_str(info, |d| d.version());
    let sha: [u8; 32] = Sha256::digest(image).into();
    let mut report = PushReport {
        result: "refused",
        message: None,
        error: None,
        warnings: Vec::new(),
        version: version.clone(),
        sha256: hex(&sha),
        bytes: 0,
        upload_secs: 0.0,
        slot: None,
        status: None,
    };
    let before = client.status()?;
    if let Err(m) = precheck(info, image.len() as u64, &before) {
        report.message = Some(format!("not sent: {m}"));
        report.error = Some("device_would_refuse");
        report.status = Some(before);
        return Ok(report);
    }
    let project = desc_str(info, |d| d.project_name());
    match checks::policy(&project, &version, &report.sha256, &before) {
        Err(r) if !force => {
            report.message = Some(format!("not sent: {}", r.message));
            report.error = Some(r.code);
            report.status = Some(before);
            return Ok(report);
        }
        Err(r) => {
            if !quiet {
                eprintln!("warning: {} (--force: pushing anyway)", r.message);
            }
            report.warnings.push(r.message);
        }
        Ok(()) => {}
    }
    for w in checks::warnings(&version, &before) {
        if !quiet {
            eprintln!("warning: {w}");
        }
        report.warnings.push(w);
    }
    let boot_before = before.get("boot_count").and_then(Value::as_u64);
    let uptime_before = before.get("uptime_ms").and_then(Value::as_u64).unwrap_or(0);
    if !quiet {
        eprintln!(
            "pushing {} {version} ({}) to {} (running {} from {})",
            desc_str(info, |d| d.project_name()),
            human_size(image.len() as u64),
            client.base,
            before
                .pointer("/running/version")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            before
                .pointer("/running/label")
                .and_then(Value::as_str)
                .unwrap_or("?"),
        );
    }
    if !send(client, "/update", "image", image, &sha, quiet, &mut report)? {
        return Ok(report);
    }
    if no_wait {
        report.result = "uploaded";
        return Ok(report);
    }
    // Wait for a new boot, then for the new image to settle.
    let deadline = Instant::now() + timeout;
    let mut last_note = String::new();
    let mut seen_after: Option<Value> = None;
    loop {
        if Instant::now() > deadline {
            report.result = "refused";
            report.message = Some(
                match checks::no_return_reason(&version, &before, seen_after.as_ref()) {
                    Some(why) if last_note.is_empty() || seen_after.is_some() => format!(
                        "{version} did not come up within {} s: {why}",
                        timeout.as_secs()
                    ),
                    _ => format!(
                        "the device did not settle within {} s (last seen: {})",
                        timeout.as_secs(),
                        if last_note.is_empty() {
                            "unreachable"
                        } else {
                            &last_note
                        }
                    ),
                },
            );
            report.status = seen_after;
            return Ok(report);
        }
        std::thread::sleep(Duration::from_millis(200));
        let Some(answer) = client.get_once("/api/ota/status") else {
            continue;
        };
        if let Some(why) = checks::boot_loop(&answer) {
            report.result = "boot_loop";
            report.message = Some(format!("{version} does not stay up: {why}"));
            report.status = None;
            return Ok(report);
        }
        let Ok(st) = Client::status_of(answer) else {
            continue;
        };
        let boot = st.get("boot_count").and_then(Value::as_u64);
        let uptime = st.get("uptime_ms").and_then(Value::as_u64).unwrap_or(0);
        let rebooted = boot != boot_before || uptime < uptime_before;
        if !rebooted {
            continue;
        }
        seen_after = Some(st.clone());
        let running_sha = st.pointer("/running/sha256").and_then(Value::as_str);
        let state = st.pointer("/running/state").and_then(Value::as_str);
        let running_version = st
            .pointer("/running/version")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        if running_sha == Some(report.sha256.as_str()) {
            if state == Some("pending_verify") {
                let note = format!("{version} booted, self-test running");
                if !quiet && note != last_note {
                    eprintln!("{note}");
                }
                last_note = note;
                continue;
            }
            report.result = "running";
            report.message = Some(format!(
                "{version} runs from {} ({})",
                st.pointer("/running/label")
                    .and_then(Value::as_str)
                    .unwrap_or("?"),
                match state {
                    Some("valid") => "confirmed",
                    None | Some("undefined") => "no rollback on this device",
                    Some(other) => other,
                }
            ));
            report.status = Some(st);
            return Ok(report);
        }
        // Another image runs after the reboot: rolled back.
        let why = st
            .pointer("/last_rollback/reason")
            .and_then(Value::as_str)
            .unwrap_or("the device did not report why");
        report.result = "rolled_back";
        report.message = Some(format!(
            "{version} did not stay: the device rolled back to {running_version}: {why}"
        ));
        report.status = Some(st);
        return Ok(report);
    }
}

/// Pushes a web-UI image to the device behind `client` and waits (unless
/// `no_wait`) until the device serves it after its reboot.
pub fn push_www(
    client: &Client,
    image: &[u8],
    timeout: Duration,
    no_wait: bool,
    quiet: bool,
) -> anyhow::Result<PushReport> {
    let sha: [u8; 32] = Sha256::digest(image).into();
    let mut report = PushReport {
        result: "refused",
        message: None,
        error: None,
        warnings: Vec::new(),
        version: "www".into(),
        sha256: hex(&sha),
        bytes: 0,
        upload_secs: 0.0,
        slot: None,
        status: None,
    };
    let before = client.status()?;
    let Some(www) = before.get("www").filter(|w| !w.is_null()) else {
        report.message =
            Some("not sent: the device has no web-UI slots (www_0/www_1 partitions)".into());
        report.status = Some(before);
        return Ok(report);
    };
    let active = www.get("active").and_then(Value::as_str);
    let slots = www
        .get("slots")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let target = slots
        .iter()
        .find(|s| s.get("name").and_then(Value::as_str) != active)
        .cloned();
    if let Some(t) = &target {
        let size = t.get("size").and_then(Value::as_u64).unwrap_or(0);
        let name = t.get("name").and_then(Value::as_str).unwrap_or("?");
        if image.len() as u64 != size {
            report.message = Some(format!(
                "not sent: the image is {} bytes but {name} is {size}; rebuild it with `otter www build DIR --size {size:#x}`",
                image.len()
            ));
            report.status = Some(before);
            return Ok(report);
        }
    }
    let boot_before = before.get("boot_count").and_then(Value::as_u64);
    let uptime_before = before.get("uptime_ms").and_then(Value::as_u64).unwrap_or(0);
    if !quiet {
        eprintln!(
            "pushing a web UI ({}) to {} (serving {})",
            human_size(image.len() as u64),
            client.base,
            active.unwrap_or("nothing")
        );
    }
    if !send(
        client,
        "/api/ota/frontend",
        "web UI",
        image,
        &sha,
        quiet,
        &mut report,
    )? {
        return Ok(report);
    }
    if no_wait {
        report.result = "uploaded";
        return Ok(report);
    }
    let deadline = Instant::now() + timeout;
    loop {
        if Instant::now() > deadline {
            report.message = Some(format!(
                "the device did not come back within {} s",
                timeout.as_secs()
            ));
            return Ok(report);
        }
        std::thread::sleep(Duration::from_millis(200));
        let Some(answer) = client.get_once("/api/ota/status") else {
            continue;
        };
        if let Some(why) = checks::boot_loop(&answer) {
            report.result = "boot_loop";
            report.message = Some(format!("the firmware does not stay up: {why}"));
            report.status = None;
            return Ok(report);
        }
        let Ok(st) = Client::status_of(answer) else {
            continue;
        };
        let boot = st.get("boot_count").and_then(Value::as_u64);
        let uptime = st.get("uptime_ms").and_then(Value::as_u64).unwrap_or(0);
        if boot == boot_before && uptime >= uptime_before {
            continue;
        }
        let active = st.pointer("/www/active").and_then(Value::as_str);
        let served_sha = st
            .pointer("/www/slots")
            .and_then(Value::as_array)
            .and_then(|v| {
                v.iter()
                    .find(|s| s.get("name").and_then(Value::as_str) == active)
            })
            .and_then(|s| s.get("sha256"))
            .and_then(Value::as_str);
        if active.is_some()
            && active == report.slot.as_deref()
            && served_sha == Some(report.sha256.as_str())
        {
            report.result = "running";
            report.message = Some(format!(
                "the new web UI is mounted from {} and served at {}/",
                active.unwrap_or("?"),
                client.base
            ));
        } else {
            report.result = "rolled_back";
            let why = st
                .pointer("/www/fallback/reason")
                .and_then(Value::as_str)
                .unwrap_or("the device did not report why");
            report.message = Some(format!(
                "the device came back serving {} instead of the new web UI in {}: {why}",
                active.unwrap_or("no web UI"),
                report.slot.as_deref().unwrap_or("?")
            ));
        }
        report.status = Some(st);
        return Ok(report);
    }
}

/// Runs `otter push`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(&args.to, args.token.clone())?;
    client.quiet = args.json;
    let report = if let Some(path) = &args.www {
        let image = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        // The device judges the name limit (it is configurable); the rest of
        // esp_littlefs's configuration is checked before uploading.
        let limits = otter_www::limits::MountLimits {
            name_max: otter_sim::device::LFS_NAME_MAX_LIMIT,
            ..otter_www::limits::MountLimits::esp_littlefs(
                u32::try_from(image.len()).unwrap_or(u32::MAX),
            )
        };
        if let Err(e) = otter_sim::device::www::inspect_ui_with(&image, &limits) {
            let m = format!("{} is not a usable web-UI image: {e}", path.display());
            return output::refuse(args.json, "bad_web_ui", &m);
        }
        push_www(
            &client,
            &image,
            Duration::from_secs(args.timeout),
            args.no_wait,
            args.json,
        )?
    } else {
        let Some(path) = &args.image else {
            bail!("give a firmware image, or --www WWW_BIN for a web UI");
        };
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let info = match check_image(&bytes) {
            Ok(info) => info,
            Err(e) => {
                let m = format!("{} is not a valid app image: {e}", path.display());
                return output::refuse(args.json, "not_an_app", &m);
            }
        };
        push(
            &client,
            &bytes,
            &info,
            Duration::from_secs(args.timeout),
            args.no_wait,
            args.json,
            args.force,
        )?
    };
    if args.json {
        output::print_json(&report)?;
    } else if let Some(m) = &report.message {
        if report.ok() {
            println!("{m}");
        } else {
            eprintln!("error: {m}");
        }
    }
    Ok(output::check_exit(report.ok()))
}
