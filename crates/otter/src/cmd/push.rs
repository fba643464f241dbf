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

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use otter_format::image::{verify, ImageInfo, VerifyOptions};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::output::{self, hex, human_size};

/// Arguments of `otter push`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The firmware image (build/<project>.bin, firmware.bin).
    #[arg(required_unless_present = "www")]
    image: Option<PathBuf>,
    /// Push a web-UI image (LittleFS, built with `otter www build`) instead of firmware.
    #[arg(long, value_name = "WWW_BIN", conflicts_with = "image")]
    www: Option<PathBuf>,
    /// The device's base URL (http://192.168.1.50:3232).
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

/// A connection to a device's API.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// An HTTP answer: status and JSON body (or the text, as a JSON string).
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

impl Answer {
    /// The `message` (or `error`) of an error body.
    pub fn message(&self) -> String {
        self.body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| self.body.to_string())
    }
}

impl Client {
    /// A client for the device at `base` (`http://host:port`).
    pub fn new(base: &str, token: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .build()
            .new_agent();
        Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn answer(resp: ureq::http::Response<ureq::Body>) -> anyhow::Result<Answer> {
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .context("reading the device's answer")?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> anyhow::Result<Answer> {
        let mut req = self.agent.get(self.url(path));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = req
            .call()
            .with_context(|| format!("cannot reach the device at {}", self.base))?;
        Self::answer(resp)
    }

    /// The device's status; a 401/403 is an error that says what to do.
    pub fn status(&self) -> anyhow::Result<Value> {
        let a = self.get("/api/ota/status")?;
        match a.status {
            200 => Ok(a.body),
            401 => bail!("the device requires a token: pass --token TOKEN (or set OTTER_TOKEN)"),
            403 => bail!("the device refused the token: {}", a.message()),
            s => bail!("the device's status request failed ({s}): {}", a.message()),
        }
    }

    /// `POST path` with `image` as the raw body, reporting progress.
    pub fn upload_to(
        &self,
        path: &str,
        image: &[u8],
        sha256: &[u8; 32],
        progress: &Progress,
    ) -> anyhow::Result<Answer> {
        let mut reader = ProgressReader {
            data: image,
            pos: 0,
            progress,
        };
        let mut req = self
            .agent
            .post(self.url(path))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", image.len().to_string())
            .header("X-Otter-Sha256", hex(sha256));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = req
            .send(ureq::SendBody::from_reader(&mut reader))
            .with_context(|| format!("uploading to {}", self.base))?;
        Self::answer(resp)
    }
}

/// Upload progress: a bar on a terminal, a line every 10% otherwise, or nothing.
pub enum Progress {
    /// A bar.
    Bar(ProgressBar),
    /// Lines on standard error.
    Lines {
        /// Total bytes.
        total: u64,
        /// Next 10% mark to print.
        next: std::cell::Cell<u64>,
    },
    /// Silent.
    Quiet,
}

impl Progress {
    /// The progress display for `total` bytes: a bar when standard error is
    /// a terminal, lines otherwise, nothing when `quiet`.
    pub fn new(total: u64, quiet: bool) -> Self {
        if quiet {
            return Progress::Quiet;
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "uploading [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                total,
                next: std::cell::Cell::new(10),
            }
        }
    }

    fn set(&self, pos: u64) {
        match self {
            Progress::Bar(b) => b.set_position(pos),
            Progress::Lines { total, next } => {
                if *total > 0 && next.get() <= 100 && pos * 100 >= total * next.get() {
                    let pct = pos * 100 / total;
                    eprintln!("uploading: {pct:>3}% ({pos} of {total} bytes)");
                    next.set((pct / 10 + 1) * 10);
                }
            }
            Progress::Quiet => {}
        }
    }

    fn finish(&self) {
        if let Progress::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

struct ProgressReader<'a> {
    data: &'a [u8],
    pos: usize,
    progress: &'a Progress,
}

impl Read for ProgressReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(buf.len()).min(16 * 1024);
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        self.progress.set(self.pos as u64);
        Ok(n)
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

/// Checks `info` (an image of `len` bytes) against the device's status;
/// `Err` says why the device would refuse it.
pub fn precheck(info: &ImageInfo, len: u64, status: &Value) -> Result<(), String> {
    let chip = status.get("chip").and_then(Value::as_str).unwrap_or("");
    if info.chip.name() != chip {
        let device = otter_format::chip::Chip::from_name(chip)
            .map_or_else(|| chip.to_string(), |c| c.to_string());
        return Err(format!(
            "the image is built for {}, but the device is {device}; build the firmware for {device}",
            info.chip
        ));
    }
    let Some(next) = status.get("next").filter(|n| !n.is_null()) else {
        return Err("the device has no OTA slot to update (its partition table has no ota_0/ota_1 or no otadata); reflash it over serial with an OTA partition table".into());
    };
    let size = next.get("size").and_then(Value::as_u64).unwrap_or(0);
    let label = next.get("label").and_then(Value::as_str).unwrap_or("?");
    if len > size {
        return Err(format!(
            "the image is {} ({len} bytes) but the device's next slot {label} holds {} ({size} bytes); build a smaller image or repartition",
            human_size(len),
            human_size(size)
        ));
    }
    if let Some(counter) = status.get("anti_rollback").and_then(Value::as_u64) {
        let sv = info
            .app_desc
            .as_ref()
            .map_or(0, |d| u64::from(d.secure_version()));
        if sv < counter {
            return Err(format!(
                "the image's secure_version is {sv} but the device's anti-rollback counter is {counter}: the device would refuse to boot it; build with CONFIG_BOOTLOADER_APP_SECURE_VERSION >= {counter}"
            ));
        }
    }
    if status.pointer("/running/state").and_then(Value::as_str) == Some("pending_verify") {
        return Err("the device's running image is still pending verification (its self-test has not finished); wait for it to confirm or roll back, then push again".into());
    }
    if status.get("update_in_progress").and_then(Value::as_bool) == Some(true) {
        return Err("another update is in progress on the device; wait for it to finish".into());
    }
    Ok(())
}

/// Reads and verifies an image file for pushing.
pub fn load_image(path: &std::path::Path) -> anyhow::Result<(Vec<u8>, ImageInfo)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut opts = VerifyOptions::new();
    opts.require_app = true;
    let info = verify(&bytes, &opts)
        .with_context(|| format!("{} is not a valid app image", path.display()))?;
    Ok((bytes, info))
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
pub fn push(
    client: &Client,
    image: &[u8],
    info: &ImageInfo,
    timeout: Duration,
    no_wait: bool,
    quiet: bool,
) -> anyhow::Result<PushReport> {
    let version = desc_str(info, |d| d.version());
    let sha: [u8; 32] = Sha256::digest(image).into();
    let mut report = PushReport {
        result: "refused",
        message: None,
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
        report.status = Some(before);
        return Ok(report);
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
    loop {
        if Instant::now() > deadline {
            report.result = "refused";
            report.message = Some(format!(
                "the device did not settle within {} s (last seen: {})",
                timeout.as_secs(),
                if last_note.is_empty() {
                    "unreachable"
                } else {
                    &last_note
                }
            ));
            return Ok(report);
        }
        std::thread::sleep(Duration::from_millis(200));
        let Ok(st) = client.status() else { continue };
        let boot = st.get("boot_count").and_then(Value::as_u64);
        let uptime = st.get("uptime_ms").and_then(Value::as_u64).unwrap_or(0);
        let rebooted = boot != boot_before || uptime < uptime_before;
        if !rebooted {
            continue;
        }
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
        let Ok(st) = client.status() else { continue };
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
    let client = Client::new(&args.to, args.token.clone());
    let report = if let Some(path) = &args.www {
        let image = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if let Err(e) = otter_sim::device::www::inspect_ui(&image) {
            bail!("{} is not a usable web-UI image: {e}", path.display());
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
        let (image, info) = load_image(path)?;
        push(
            &client,
            &image,
            &info,
            Duration::from_secs(args.timeout),
            args.no_wait,
            args.json,
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
