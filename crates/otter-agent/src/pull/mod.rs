//! The pull client: the device checks a signed release manifest and installs
//! what it names (RFC 0003, docs/pull.md).
//!
//! One check, in order:
//!
//! 1. Fetch `manifest.json` and `manifest.json.sig` (bounded:
//!    [`otter_release::MAX_MANIFEST_LEN`], [`otter_release::MAX_SIGNATURE_FILE_LEN`]).
//! 2. [`otter_release::verify_manifest`]: a trusted Ed25519 signature over the
//!    exact bytes, the format, the expiry.
//! 3. [`plan::plan`]: product, chip, secure_version against the eFuse counter,
//!    newer version (and not one this device rolled back), size against the
//!    slot.
//! 4. Firmware: stream it into the inactive slot through the engine's update
//!    session, resuming from what is already in flash after a power cut
//!    ([`firmware`]), SHA-256 checked as it arrives and again at the end;
//!    activate only on a match; reboot. The self-test confirms it.
//! 5. Web UI (a bundle): once the new firmware has confirmed itself, the next
//!    check streams the LittleFS image into the inactive `www` slot, checks
//!    it, flips the NVS pointer and reboots.
//!
//! Checks run at boot, every `poll` and on `POST /api/ota/check`. A check
//! runs only while the firmware runs (the task is per boot, so a reboot or a
//! power cut stops it); it takes the same lock as uploads, so a pull and a
//! push never overlap.

pub mod firmware;
pub mod plan;
pub mod server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use otter_device::www::{WwwDone, WwwUpload};
use otter_device::DeviceError;
use otter_format::otadata::OtaState;
use otter_release::{resolve_url, verify_manifest, Manifest, PublicKey, ReleaseError};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use url::Url;

use crate::fetch::{DownloadStats, FetchConfig, FetchError, Fetcher, Sink, SinkError};
use crate::state::{lock, now_secs, ErrorBody, Reboot, Shared};
use plan::{DeviceFacts, Plan, WwwFacts};

/// How a device pulls.
#[derive(Debug, Clone)]
pub struct PullConfig {
    /// Where `manifest.json` is; the signature is at the same URL plus `.sig`.
    pub manifest_url: Url,
    /// Keys whose signature the device accepts.
    pub trusted: Vec<PublicKey>,
    /// TLS trust, plain-HTTP opt-in, timeouts and retries.
    pub fetch: FetchConfig,
    /// Check this often (besides at boot and on request); `None`: only then.
    pub poll: Option<Duration>,
    /// The product this device installs; `None`: the running firmware's
    /// project name.
    pub product: Option<String>,
    /// Check in with a fleet server first, which names the manifest
    /// ([`server`]); `None`: `manifest_url` is checked.
    pub server: Option<server::ServerConfig>,
}

/// What `GET /api/ota/status` says about pulling.
#[derive(Debug, Clone, Serialize)]
pub struct PullStatus {
    /// The manifest's URL.
    pub manifest_url: String,
    /// Seconds between checks, `null` when only at boot and on request.
    pub poll_s: Option<u64>,
    /// `idle`, `checking`, `downloading`, `verifying`, `rebooting`,
    /// `waiting_for_confirm`, `up_to_date`, `refused` or `failed`.
    pub step: &'static str,
    /// Which artifact the step is about: `firmware`, `www` or `null`.
    pub artifact: Option<&'static str>,
    /// The release of the last verified manifest.
    pub release: Option<ReleaseSummary>,
    /// Bytes of the artifact in flash and its size, while downloading.
    pub progress: Option<Progress>,
    /// Checks since the agent started.
    pub checks: u64,
    /// When the last check started (Unix seconds).
    pub last_check: Option<u64>,
    /// The last check's error, until a check succeeds.
    pub last_error: Option<PullError>,
    /// The last download's transport figures.
    pub last_download: Option<DownloadSummary>,
}

/// The release a manifest describes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReleaseSummary {
    /// Product.
    pub product: String,
    /// Firmware version.
    pub version: String,
    /// Firmware secure_version.
    pub secure_version: u32,
    /// Firmware SHA-256, hex.
    pub sha256: String,
    /// Whether it carries a web UI.
    pub www: bool,
    /// Manifest expiry.
    pub expires: String,
}

/// Download progress.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Bytes in flash.
    pub written: u64,
    /// Artifact size.
    pub total: u64,
    /// Where this download started: 0, or the prefix kept from before a
    /// power cut.
    pub resumed_from: u64,
}

/// A failed or refused check.
#[derive(Debug, Clone, Serialize)]
pub struct PullError {
    /// Machine-readable code.
    pub error: &'static str,
    /// What happened and what to do.
    pub message: String,
    /// When (Unix seconds).
    pub at: u64,
    /// Boot number.
    pub boot: u64,
}

/// A finished download's figures.
#[derive(Debug, Clone, Serialize)]
pub struct DownloadSummary {
    /// `firmware` or `www`.
    pub artifact: &'static str,
    /// Body bytes received off the wire.
    pub body_bytes: u64,
    /// Connections made.
    pub connections: u32,
    /// Range resumes after a dropped connection.
    pub resumes: u32,
    /// Starts over because the server ignored Range.
    pub restarts: u32,
    /// Where the download started (a resumed prefix after a power cut).
    pub resumed_from: u64,
    /// The fixed download buffer, in bytes.
    pub buffer_size: usize,
}

/// The answer to `POST /api/ota/check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// `up_to_date`, `updating`, `waiting_for_confirm`, `refused`,
    /// `failed`, or `busy`.
    pub result: &'static str,
    /// What the step was about, when downloading.
    pub artifact: Option<&'static str>,
    /// The release, when the manifest verified.
    pub release: Option<ReleaseSummary>,
    /// Why, when refused or failed.
    pub error: Option<ErrorBody>,
}

/// A check's report as the device core answers `POST /api/ota/check`: its
/// result and the JSON document.
pub fn decision(report: &CheckReport) -> (otter_device::service::CheckResult, String) {
    use otter_device::service::CheckResult as R;
    let result = match report.result {
        "updating" => R::Updating,
        "refused" => R::Refused,
        "failed" => R::Failed,
        "busy" => R::Busy,
        "waiting_for_confirm" => R::WaitingForConfirm,
        _ => R::UpToDate,
    };
    let body = serde_json::to_string(report).unwrap_or_else(|_| "{}".into());
    (result, body)
}

/// The device core as the pull client uses it: its one-update-at-a-time
/// lock, taken for a download only (never while the manifest server is
/// waited on), and its web-UI writer, so a pulled UI is written and checked
/// by the same code as an uploaded one.
pub trait UpdateGate: Send + Sync {
    /// Takes the lock for a download of `kind`; `false` when an update runs.
    fn begin(&self, kind: otter_device::service::UpdateKind) -> bool;
    /// Releases it.
    fn end(&self);
    /// Starts writing a web-UI image of `size` bytes with SHA-256 `sha256`
    /// into the slot not mounted (under the lock for `Www`).
    fn www_begin(&self, size: u64, sha256: [u8; 32]) -> Result<WwwUpload, DeviceError>;
    /// Writes the next bytes.
    fn www_write(&self, upload: &mut WwwUpload, data: &[u8]) -> Result<(), DeviceError>;
    /// Verifies the slot and switches the pointer.
    fn www_finish(&self, upload: WwwUpload) -> Result<WwwDone, DeviceError>;
}

/// Releases the gate when the download ends, however it ends.
struct Held<'a>(&'a dyn UpdateGate);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The pull client's state, shared by the per-boot task and the API.
pub struct Pull {
    cfg: PullConfig,
    fetcher: Fetcher,
    status: Arc<Mutex<PullStatus>>,
    requests: mpsc::Sender<oneshot::Sender<CheckReport>>,
    inbox: tokio::sync::Mutex<mpsc::Receiver<oneshot::Sender<CheckReport>>>,
    /// A release whose download failed its final SHA-256 since power-on: not
    /// fetched again until the manifest names another.
    bad: Mutex<Option<[u8; 32]>>,
    /// The device's update lock (the core's), once the runner installed it.
    gate: std::sync::OnceLock<Arc<dyn UpdateGate>>,
    /// The manifest URL of the check in progress (the server's offer, or
    /// `manifest_url`): artifacts resolve against it.
    current: Mutex<Url>,
}

/// Why a check ended without installing.
struct Stop {
    result: &'static str,
    code: &'static str,
    message: String,
}

impl Stop {
    fn refused(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            result: "refused",
            code,
            message: message.into(),
        }
    }
    fn failed(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            result: "failed",
            code,
            message: message.into(),
        }
    }
}

impl From<FetchError> for Stop {
    fn from(e: FetchError) -> Self {
        let mut message = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        Stop::failed("download_failed", message)
    }
}

impl From<ReleaseError> for Stop {
    fn from(e: ReleaseError) -> Self {
        Stop::refused(e.code(), e.to_string())
    }
}

impl Pull {
    /// A pull client for `cfg`.
    pub fn new(cfg: PullConfig) -> Result<Arc<Self>, FetchError> {
        let fetcher = Fetcher::new(cfg.fetch.clone())?;
        let (requests, inbox) = mpsc::channel(8);
        let status = PullStatus {
            manifest_url: cfg.manifest_url.to_string(),
            poll_s: cfg.poll.map(|d| d.as_secs()),
            step: "idle",
            artifact: None,
            release: None,
            progress: None,
            checks: 0,
            last_check: None,
            last_error: None,
            last_download: None,
        };
        Ok(Arc::new(Self {
            fetcher,
            status: Arc::new(Mutex::new(status)),
            requests,
            inbox: tokio::sync::Mutex::new(inbox),
            bad: Mutex::new(None),
            gate: std::sync::OnceLock::new(),
            current: Mutex::new(cfg.manifest_url.clone()),
            cfg,
        }))
    }

    /// Installs the device's update lock (once, before the first boot).
    pub fn set_gate(&self, gate: Arc<dyn UpdateGate>) {
        let _ = self.gate.set(gate);
    }

    /// Takes the update lock for a download of `kind`.
    fn hold(&self, kind: otter_device::service::UpdateKind) -> Result<Held<'_>, Stop> {
        let g = self.gate()?;
        if g.begin(kind) {
            Ok(Held(g))
        } else {
            Err(Stop {
                result: "busy",
                code: "busy",
                message: "an update is in progress; the pull checks again later".into(),
            })
        }
    }

    fn gate(&self) -> Result<&dyn UpdateGate, Stop> {
        self.gate
            .get()
            .map(|g| g.as_ref())
            .ok_or_else(|| Stop::failed("internal", "the pull client runs without the device core"))
    }

    /// The status.
    pub fn status(&self) -> PullStatus {
        lock(&self.status).clone()
    }

    fn set(&self, f: impl FnOnce(&mut PullStatus)) {
        f(&mut lock(&self.status));
    }

    /// Asks the running firmware to check now, and waits for the decision
    /// (not for the download). `None` when no firmware runs the pull task
    /// (the device is rebooting).
    pub async fn check_now(&self, wait: Duration) -> Option<CheckReport> {
        let (tx, rx) = oneshot::channel();
        self.requests.try_send(tx).ok()?;
        tokio::time::timeout(wait, rx).await.ok()?.ok()
    }

    /// Asks the running firmware to check now; the receiver gets the
    /// decision (not the download). `None` when no firmware runs the pull
    /// task (the device is rebooting) or checks are already queued.
    pub fn request_check(&self) -> Option<oneshot::Receiver<CheckReport>> {
        let (tx, rx) = oneshot::channel();
        self.requests.try_send(tx).ok()?;
        Some(rx)
    }

    /// The pull task of one boot: a check now, then on every poll and
    /// request, until the boot ends (the task is aborted).
    pub async fn run_boot(self: Arc<Self>, shared: Arc<Shared>) {
        let mut inbox = self.inbox.lock().await;
        let mut reply: Option<oneshot::Sender<CheckReport>> = None;
        loop {
            let report = self.check(&shared, &mut reply).await;
            if let Some(tx) = reply.take() {
                let _ = tx.send(report.clone());
            }
            // A newer firmware waits for the running one's self-test; look
            // again soon rather than at the next poll.
            let next = if report.result == "waiting_for_confirm" {
                Some(Duration::from_millis(500))
            } else {
                self.cfg.poll
            };
            reply = match next {
                Some(d) => tokio::select! {
                    r = inbox.recv() => match r { Some(r) => Some(r), None => return },
                    () = tokio::time::sleep(d) => None,
                },
                None => match inbox.recv().await {
                    Some(r) => Some(r),
                    None => return,
                },
            };
        }
    }

    /// One check. `reply` is answered as soon as the decision is made.
    async fn check(
        &self,
        shared: &Arc<Shared>,
        reply: &mut Option<oneshot::Sender<CheckReport>>,
    ) -> CheckReport {
        let boot = shared.boot().count;
        self.set(|s| {
            s.step = "checking";
            s.artifact = None;
            s.progress = None;
            s.checks += 1;
            s.last_check = Some(now_secs());
        });
        // The core's update lock is taken only for a download (`hold`).
        let mut release = None;
        let outcome = self.check_locked(shared, reply, &mut release).await;
        let report = match outcome {
            Ok((result, artifact)) => {
                self.set(|s| {
                    s.last_error = None;
                    if result == "up_to_date" || result == "waiting_for_confirm" {
                        s.step = result;
                        s.artifact = None;
                    }
                });
                CheckReport {
                    result,
                    artifact,
                    release: release.clone(),
                    error: None,
                }
            }
            Err(stop) if stop.result == "busy" => {
                self.set(|s| s.step = "idle");
                CheckReport {
                    result: stop.result,
                    artifact: None,
                    release: release.clone(),
                    error: Some(ErrorBody {
                        error: stop.code,
                        message: stop.message,
                    }),
                }
            }
            Err(stop) => {
                shared.event(format!("pull: {}: {}", stop.code, stop.message));
                self.set(|s| {
                    s.step = stop.result;
                    s.progress = None;
                    s.last_error = Some(PullError {
                        error: stop.code,
                        message: stop.message.clone(),
                        at: now_secs(),
                        boot,
                    });
                });
                CheckReport {
                    result: stop.result,
                    artifact: None,
                    release: release.clone(),
                    error: Some(ErrorBody {
                        error: stop.code,
                        message: stop.message,
                    }),
                }
            }
        };
        if let Some(s) = &self.cfg.server {
            server::after_check(s, &report);
        }
        report
    }

    async fn check_locked(
        &self,
        shared: &Arc<Shared>,
        reply: &mut Option<oneshot::Sender<CheckReport>>,
        release: &mut Option<ReleaseSummary>,
    ) -> Result<(&'static str, Option<&'static str>), Stop> {
        let url = &match &self.cfg.server {
            Some(s) => match server::check_in(s, shared).await? {
                Some(u) => u,
                None => return Ok(("up_to_date", None)),
            },
            None => self.cfg.manifest_url.clone(),
        };
        *lock(&self.current) = url.clone();
        let mut sig_url = url.clone();
        sig_url.set_path(&format!("{}.sig", url.path()));
        let manifest = self
            .fetcher
            .get_small(url, otter_release::MAX_MANIFEST_LEN)
            .await?;
        let sig = self
            .fetcher
            .get_small(&sig_url, otter_release::MAX_SIGNATURE_FILE_LEN)
            .await?;
        let m = verify_manifest(&manifest, &sig, &self.cfg.trusted, now_secs())?;
        let summary = ReleaseSummary {
            product: m.product.clone(),
            version: m.firmware.version.clone(),
            secure_version: m.firmware.secure_version,
            sha256: m.firmware.sha256.to_string(),
            www: m.www.is_some(),
            expires: m.expires.to_string(),
        };
        *release = Some(summary.clone());
        self.set(|s| s.release = Some(summary));
        let facts = facts(shared, self.cfg.product.as_deref())?;
        let what = plan::plan(&m, &facts).map_err(|r| Stop::refused(r.code, r.message))?;
        match what {
            Plan::UpToDate => Ok(("up_to_date", None)),
            Plan::WaitForConfirm => Ok(("waiting_for_confirm", None)),
            Plan::Firmware => {
                if *lock(&self.bad) == Some(m.firmware.sha256.0) {
                    return Err(Stop::failed(
                        "sha256_mismatch",
                        format!(
                            "firmware {} did not match its manifest's SHA-256 when downloaded; not fetched again until the manifest changes (or the device restarts)",
                            m.firmware.version
                        ),
                    ));
                }
                let _held = self.hold(otter_device::service::UpdateKind::Firmware)?;
                self.answer(reply, release, "firmware");
                self.install_firmware(shared, &m).await?;
                Ok(("updating", Some("firmware")))
            }
            Plan::Www => {
                let _held = self.hold(otter_device::service::UpdateKind::Www)?;
                self.answer(reply, release, "www");
                self.install_www(shared, &m).await?;
                Ok(("updating", Some("www")))
            }
        }
    }

    fn answer(
        &self,
        reply: &mut Option<oneshot::Sender<CheckReport>>,
        release: &Option<ReleaseSummary>,
        artifact: &'static str,
    ) {
        if let Some(tx) = reply.take() {
            let _ = tx.send(CheckReport {
                result: "updating",
                artifact: Some(artifact),
                release: release.clone(),
                error: None,
            });
        }
    }

    fn artifact_url(&self, url: &str) -> Result<Url, Stop> {
        let base = lock(&self.current).clone();
        let s = resolve_url(base.as_str(), url)?;
        Url::parse(&s).map_err(|e| {
            Stop::refused(
                "bad_manifest",
                format!("the artifact URL {s:?} is not a URL: {e}"),
            )
        })
    }

    fn downloading(&self, artifact: &'static str, total: u64, resumed_from: u64) {
        self.set(|s| {
            s.step = "downloading";
            s.artifact = Some(artifact);
            s.progress = Some(Progress {
                written: resumed_from,
                total,
                resumed_from,
            });
        });
    }

    fn downloaded(&self, artifact: &'static str, stats: &DownloadStats, resumed_from: u64) {
        self.set(|s| {
            s.step = "verifying";
            s.last_download = Some(DownloadSummary {
                artifact,
                body_bytes: stats.body_bytes,
                connections: stats.connections,
                resumes: stats.resumes,
                restarts: stats.restarts,
                resumed_from,
                buffer_size: stats.buffer_size,
            });
        });
    }

    async fn install_firmware(&self, shared: &Arc<Shared>, m: &Manifest) -> Result<(), Stop> {
        let url = self.artifact_url(&m.firmware.url)?;
        let fw = &m.firmware;
        let size = u32::try_from(fw.size)
            .map_err(|_| Stop::refused("too_large", format!("{} bytes fit no slot", fw.size)))?;
        // The first sector decides whether the slot already holds a prefix of
        // this very image (a download cut by a power loss).
        let mut head = firmware::Collect {
            bytes: Vec::new(),
            want: size.min(firmware::SECTOR) as usize,
        };
        match self.fetcher.download(&url, 0, fw.size, &mut head).await {
            Ok(_) => {}
            Err(FetchError::Sink { source, .. })
                if source.downcast_ref::<firmware::HeadComplete>().is_some() => {}
            Err(e) => return Err(download_stop(e)),
        }
        let mut sink = firmware::FirmwareSink::open(shared, size, fw.sha256.0, &head.bytes)?;
        let from = sink.resumed_from();
        if from > 0 {
            shared.event(format!(
                "pull: resuming firmware {} at {from:#x} of {size:#x}: the slot holds the first {from} bytes from before the power loss (re-hashed)",
                fw.version
            ));
        } else {
            shared.event(format!(
                "pull: downloading firmware {} ({size} bytes) from {url}",
                fw.version
            ));
        }
        self.downloading("firmware", fw.size, from);
        let status = self.status.clone();
        // A log line at every 10% of the image, as POST /update logs its own.
        let (total, version) = (fw.size.max(1), fw.version.clone());
        let next_pct = std::sync::atomic::AtomicU64::new((from * 100 / total / 10 + 1) * 10);
        sink.on_progress(Box::new(move |written: u64| {
            if let Some(p) = lock(&status).progress.as_mut() {
                p.written = written;
            }
            let pct = written * 100 / total;
            if pct >= next_pct.load(std::sync::atomic::Ordering::Relaxed) {
                next_pct.store((pct / 10 + 1) * 10, std::sync::atomic::Ordering::Relaxed);
                tracing::info!("pull: firmware {version}: {pct}% ({written} of {total} bytes)");
            }
        }));
        let stats = self
            .fetcher
            .download(&url, from, fw.size, &mut sink)
            .await
            .map_err(download_stop)?;
        self.downloaded("firmware", &stats, from);
        match sink.finish() {
            Ok(done) => {
                shared.event(format!(
                    "pull: firmware {} written to {} and verified (SHA-256 {}); {} bytes off the wire in {} connection(s), {} resume(s); rebooting",
                    fw.version, done.slot, fw.sha256, stats.body_bytes, stats.connections, stats.resumes
                ));
                self.set(|s| s.step = "rebooting");
                shared.request_reboot(Reboot::Update);
                Ok(())
            }
            Err(e) => {
                if e.code == "sha256_mismatch" {
                    *lock(&self.bad) = Some(fw.sha256.0);
                }
                Err(Stop::failed(e.code, e.message))
            }
        }
    }

    async fn install_www(&self, shared: &Arc<Shared>, m: &Manifest) -> Result<(), Stop> {
        let Some(art) = &m.www else { return Ok(()) };
        let url = self.artifact_url(&art.url)?;
        let mut sink = WwwSink {
            gate: self.gate()?,
            size: art.size,
            sha256: art.sha256.0,
            update: None,
        };
        sink.restart_update()?;
        self.downloading("www", art.size, 0);
        let stats = self
            .fetcher
            .download(&url, 0, art.size, &mut sink)
            .await
            .map_err(download_stop)?;
        self.downloaded("www", &stats, 0);
        let update = sink
            .update
            .take()
            .ok_or_else(|| Stop::failed("internal", "the web-UI update was not started"))?;
        match sink.gate.www_finish(update) {
            Ok(done) => {
                let sha: String = done.sha256.iter().map(|b| format!("{b:02x}")).collect();
                shared.event(format!(
                    "pull: web UI written to www_{} and verified (SHA-256 {sha}{}); rebooting to mount it",
                    done.target,
                    done.files.map(|n| format!(", {n} files")).unwrap_or_default()
                ));
                self.set(|s| s.step = "rebooting");
                shared.request_reboot(Reboot::Frontend);
                Ok(())
            }
            Err(e) => Err(SinkFailure::from(&e).into()),
        }
    }
}

/// A sink failure, with the code status reports.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SinkFailure {
    /// Machine-readable code.
    pub code: &'static str,
    /// What happened.
    pub message: String,
}

impl From<&DeviceError> for SinkFailure {
    fn from(e: &DeviceError) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<SinkFailure> for Stop {
    fn from(e: SinkFailure) -> Self {
        Stop::failed(e.code, e.message)
    }
}

/// A failed download as a check's outcome: the sink's own failure when the
/// sink stopped it, else the transport's (with its causes).
fn download_stop(e: FetchError) -> Stop {
    if let FetchError::Sink { source, .. } = &e {
        if let Some(f) = source.downcast_ref::<SinkFailure>() {
            return Stop::from(f.clone());
        }
    }
    Stop::from(e)
}

/// Streams the web-UI image into the inactive `www` slot, through the core.
struct WwwSink<'g> {
    gate: &'g dyn UpdateGate,
    size: u64,
    sha256: [u8; 32],
    update: Option<WwwUpload>,
}

impl WwwSink<'_> {
    fn restart_update(&mut self) -> Result<(), SinkFailure> {
        self.update = None;
        let u = self
            .gate
            .www_begin(self.size, self.sha256)
            .map_err(|e| SinkFailure::from(&e))?;
        self.update = Some(u);
        Ok(())
    }
}

impl Sink for WwwSink<'_> {
    fn restart(&mut self) -> Result<(), SinkError> {
        self.restart_update().map_err(SinkError::new)
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Result<(), SinkError> {
        let Some(update) = self.update.as_mut() else {
            return Err(SinkError::new("the web-UI update was not started"));
        };
        self.gate
            .www_write(update, data)
            .map_err(|e| SinkError::new(SinkFailure::from(&e)))
    }
}

/// What the device knows about itself, from flash and the agent's state.
fn facts(shared: &Shared, product: Option<&str>) -> Result<DeviceFacts, Stop> {
    let boot = shared.boot();
    let mut dev = shared.device();
    let status = dev
        .status(boot.running)
        .map_err(|e| Stop::failed("flash_error", e.to_string()))?;
    let running = status
        .running
        .as_ref()
        .ok_or_else(|| Stop::failed("not_running", "no image runs"))?;
    let next_slot_size = status.next.as_ref().map(|n| n.size);
    let rolled_back = status
        .slots
        .iter()
        .filter(|s| {
            matches!(
                s.state.as_deref(),
                Some(n) if n == OtaState::Invalid.name() || n == OtaState::Aborted.name()
            )
        })
        .filter_map(|s| s.version.clone())
        .collect();
    // The inactive slot takes the update; the active one's SHA-256 (of the
    // whole slot, which is the uploaded file's: images are slot-sized) says
    // whether the bundle's UI is already there.
    let www = status.www.as_ref().map(|w| {
        let active = w.active.as_deref();
        let target = w.slots.iter().find(|s| Some(s.name.as_str()) != active);
        WwwFacts {
            target_size: target.map_or(0, |s| s.size),
            active_sha256: w
                .slots
                .iter()
                .find(|s| Some(s.name.as_str()) == active)
                .and_then(|s| s.sha256.as_deref())
                .and_then(|h| h.parse::<otter_release::Sha256Digest>().ok())
                .map(|d| d.0),
        }
    });
    Ok(DeviceFacts {
        product: product.map_or_else(|| running.project_name.clone(), str::to_string),
        chip: status.chip.clone(),
        running_version: running.version.clone(),
        pending_verify: running.state.as_deref() == Some(OtaState::PendingVerify.name()),
        secure_counter: status.anti_rollback,
        next_slot_size,
        rolled_back,
        www,
    })
}
