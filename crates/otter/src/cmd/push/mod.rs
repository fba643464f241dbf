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
pub use client::{Body, Client, Progress};

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
    /// Send the image gzip-compressed (level 9, `Content-Encoding: gzip`);
    /// the device inflates it as it writes. A device whose firmware cannot
    /// decode gets the plain image instead.
    #[arg(long, conflicts_with_all = ["www", "delta_from", "patch"])]
    compress: bool,
    /// Send only an esp_delta_ota patch from BASE (the image the device
    /// runs now) to IMAGE; refused before sending when the device runs
    /// something else. A device whose firmware cannot apply patches gets
    /// the plain image instead.
    #[arg(long, value_name = "BASE", conflicts_with_all = ["www", "patch"])]
    delta_from: Option<PathBuf>,
    /// Send this esp_delta_ota patch (from `otter delta`, `otter release
    /// --delta-from` or esp_delta_ota_patch_gen.py) that makes IMAGE.
    #[arg(long, value_name = "PATCH", conflicts_with = "www")]
    patch: Option<PathBuf>,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

/// How the image travels.
#[derive(Debug, Clone)]
pub enum Transfer {
    /// As it is.
    Plain,
    /// gzip level 9, `Content-Encoding: gzip`.
    Gzip(Vec<u8>),
    /// An esp_delta_ota patch (`Content-Type: application/x-esp-delta-ota`),
    /// with the SHA-256 of the base image's bytes when known (checked
    /// against the device's running image before sending).
    Delta {
        /// The patch.
        patch: Vec<u8>,
        /// SHA-256 of the base image (as the status document's
        /// `running.sha256`), if known.
        base_sha256: Option<String>,
    },
}

impl Transfer {
    /// The name in the report.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Gzip(_) => "gzip",
            Self::Delta { .. } => "delta",
        }
    }

    fn body<'a>(&'a self, image: &'a [u8]) -> Body<'a> {
        match self {
            Self::Plain => Body::plain(image),
            Self::Gzip(gz) => Body {
                data: gz,
                content_type: "application/octet-stream",
                content_encoding: Some("gzip"),
            },
            Self::Delta { patch, .. } => Body {
                data: patch,
                content_type: "application/x-esp-delta-ota",
                content_encoding: None,
            },
        }
    }
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
    /// How the image travelled: `plain`, `gzip` or `delta` (after a
    /// fallback to the plain image, `plain`).
    pub transfer: &'static str,
    /// The image's own size (what the device wrote).
    pub image_bytes: u64,
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

/// Uploads `body` to `path` with a progress bar and records the answer in
/// `report`: `Ok(Err(answer))` when the device refused the `what` (the
/// reason and the device's status are in the report).
fn send(
    client: &Client,
    path: &str,
    what: &str,
    body: &Body<'_>,
    sha: &[u8; 32],
    quiet: bool,
    report: &mut PushReport,
) -> anyhow::Result<Result<(), client::Answer>> {
    let progress = Progress::new(body.data.len() as u64, quiet);
    let started = Instant::now();
    let answer = client.upload_to(path, body, sha, &progress);
    progress.finish();
    let answer = answer?;
    report.upload_secs = started.elapsed().as_secs_f64();
    report.bytes = body.data.len() as u64;
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
        return Ok(Err(answer));
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
    Ok(Ok(()))
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
    push_as(
        client,
        image,
        info,
        &Transfer::Plain,
        timeout,
        no_wait,
        quiet,
        force,
    )
}

/// [`push`], with the image sent as `transfer` (compressed or as a patch).
/// A device that answers 415 (its firmware lends no RAM for that decoder)
/// gets the plain image.
#[allow(clippy::too_many_arguments)]
pub fn push_as(
    client: &Client,
    image: &[u8],
    info: &ImageInfo,
    transfer: &Transfer,
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
        transfer: transfer.name(),
        image_bytes: image.len() as u64,
        upload_secs: 0.0,
        slot: None,
        status: None,
    };
    let before = client.status()?;
    if let Transfer::Delta {
        base_sha256: Some(base),
        ..
    } = transfer
    {
        let running = before
            .pointer("/running/sha256")
            .and_then(Value::as_str)
            .unwrap_or("");
        if running != base {
            report.message = Some(format!(
                "not sent: the patch applies to the image {base}, but the device runs {}; push the full image, or a patch from the image it runs",
                if running.is_empty() { "nothing it can name" } else { running }
            ));
            report.error = Some("wrong_base");
            report.status = Some(before);
            return Ok(report);
        }
    }
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
    if transfer.name() != "plain" && !quiet {
        let sent = transfer.body(image).data.len();
        eprintln!(
            "sending it as {} ({}, {:.1}% of the image)",
            transfer.name(),
            human_size(sent as u64),
            100.0 * sent as f64 / image.len().max(1) as f64
        );
    }
    match send(
        client,
        "/update",
        "image",
        &transfer.body(image),
        &sha,
        quiet,
        &mut report,
    )? {
        Ok(()) => {}
        Err(a) if a.status == 415 && transfer.name() != "plain" => {
            let why = report.message.take().unwrap_or_default();
            let w = format!("{why}; sending the plain image instead");
            if !quiet {
                eprintln!("warning: {w}");
            }
            report.warnings.push(w);
            report.transfer = "plain";
            if send(
                client,
                "/update",
                "image",
                &Body::plain(image),
                &sha,
                quiet,
                &mut report,
            )?
            .is_err()
            {
                return Ok(report);
            }
        }
        Err(_) => return Ok(report),
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
        transfer: "plain",
        image_bytes: image.len() as u64,
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
    if send(
        client,
        "/api/ota/frontend",
        "web UI",
        &Body::plain(image),
        &sha,
        quiet,
        &mut report,
    )?
    .is_err()
    {
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
        let transfer = transfer_of(&args, &bytes)?;
        push_as(
            &client,
            &bytes,
            &info,
            &transfer,
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

/// How `args` asks the image to travel: `--compress`, `--delta-from BASE`
/// (the patch is made here) or `--patch PATCH`.
fn transfer_of(args: &Args, image: &[u8]) -> anyhow::Result<Transfer> {
    if args.compress {
        return Ok(Transfer::Gzip(crate::cmd::artifacts::gzip(image)));
    }
    if let Some(base) = &args.delta_from {
        let old = std::fs::read(base).with_context(|| format!("reading {}", base.display()))?;
        let info = otter_format::image::inspect(&old)
            .with_context(|| format!("{} is not a readable ESP32 app image", base.display()))?;
        let Some(validation) = info.sha256 else {
            bail!(
                "{} has no appended SHA-256 (hash_appended = 0), so the device cannot tell whether it runs it; push the full image",
                base.display()
            );
        };
        let patch = otter_delta::encode::esp_delta_patch(
            &validation.stored,
            &old,
            image,
            otter_delta::encode::PatchCompression::default(),
        )
        .with_context(|| format!("making the patch from {}", base.display()))?;
        // The status document names the running image by the SHA-256 of
        // its bytes (header to appended digest).
        let len = (info.image_len as usize).min(old.len());
        let base_sha256 = Some(hex(&Sha256::digest(&old[..len])));
        return Ok(Transfer::Delta { patch, base_sha256 });
    }
    if let Some(p) = &args.patch {
        let patch = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        if patch.get(..4) != Some(&otter_delta::patch::ESP_DELTA_MAGIC.to_le_bytes()[..]) {
            bail!(
                "{} is not an esp_delta_ota patch (its first 4 bytes are not 10 de cd fc)",
                p.display()
            );
        }
        return Ok(Transfer::Delta {
            patch,
            base_sha256: None,
        });
    }
    Ok(Transfer::Plain)
}
