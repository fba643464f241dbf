//! The pull client: the device checks a signed release manifest and installs
//! what it names (RFC 0003, docs/pull.md).
//!
//! One check, in order:
//!
//! 1. Fetch `manifest.json` and `manifest.json.sig` (bounded:
//!    [`otter_release::MAX_MANIFEST_LEN`], [`otter_release::MAX_SIGNATURE_FILE_LEN`]).
//! 2. The device core's pull machine ([`otter_device::pull::Pull`]) decides:
//!    the signature, format and expiry, then product, chip, secure_version
//!    against the eFuse counter, newer version (and not one this device
//!    rolled back), size against the slot, and the web UI of a bundle.
//! 3. Firmware: the machine picks the smallest artifact the device can
//!    apply (a delta from the running image, gzip, the full image; the
//!    virtual device lends decoder RAM as for uploads). For the full image
//!    the first sector is fetched and the machine opens the slot, resuming
//!    from what is already in flash after a power cut; an encoded artifact
//!    starts at byte 0. The body goes through the core's update path (its
//!    decoder stage and the same session as an upload), verified and
//!    activated by the machine; reboot. A gzip or delta download that fails
//!    falls back to the full image in the same check. The self-test
//!    confirms it.
//! 4. Web UI (a bundle): once the new firmware has confirmed itself, the next
//!    check streams the LittleFS image through the core's web-UI writer.
//!
//! This module is the adapter: it fetches (hyper, rustls, the overall
//! deadlines of [`crate::fetch`]), holds no lock while the network is waited
//! on (the core is locked only for each call into the machine), feeds the
//! machine and performs what it decides (a reboot).
//!
//! Checks run at boot, every `poll` and on `POST /api/ota/check`. A check
//! runs only while the firmware runs (the task is per boot, so a reboot or a
//! power cut stops it); the download takes the same lock as uploads, so a
//! pull and a push never overlap.

pub mod server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use otter_device::pull::{Artifact, ArtifactEncoding, Decision, Now, PullError};
use otter_device::service::{Device, RebootReason};
use otter_release::{resolve_url, PublicKey};
use otter_sim::SimFlash;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use url::Url;

use crate::fetch::{FetchConfig, FetchError, Fetcher, Sink, SinkError};
use crate::net::platform::SimPlatform;
use crate::state::{lock, now_secs, ErrorBody, Reboot, Shared};

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
    /// How the firmware decided on travels: `identity`, `gzip` or `delta`
    /// (`null` when no firmware download is decided).
    pub encoding: Option<&'static str>,
    /// A gzip or delta download of this check that failed and was replaced
    /// by the full image.
    pub fallback: Option<FallbackSummary>,
    /// The release of the last verified manifest.
    pub release: Option<ReleaseSummary>,
    /// Bytes of the artifact in flash and its size, while downloading.
    pub progress: Option<Progress>,
    /// Checks since the agent started.
    pub checks: u64,
    /// When the last check started (Unix seconds).
    pub last_check: Option<u64>,
    /// The last check's error, until a check succeeds.
    pub last_error: Option<LastPullError>,
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
pub struct LastPullError {
    /// Machine-readable code.
    pub error: &'static str,
    /// What happened and what to do.
    pub message: String,
    /// When (Unix seconds).
    pub at: u64,
    /// Boot number.
    pub boot: u64,
}

/// A gzip or delta download replaced by the full image.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FallbackSummary {
    /// What was tried: `gzip` or `delta`.
    pub from: &'static str,
    /// Why it failed (`artifact_sha256_mismatch`, `wrong_base`, ...).
    pub error: &'static str,
}

/// A finished download's figures.
#[derive(Debug, Clone, Serialize)]
pub struct DownloadSummary {
    /// `firmware` or `www`.
    pub artifact: &'static str,
    /// How it travelled: `identity`, `gzip` or `delta`.
    pub encoding: &'static str,
    /// The artifact's size (what was to travel).
    pub artifact_size: u64,
    /// The gzip or delta download this one replaced, when it fell back.
    pub fallback: Option<FallbackSummary>,
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

/// The device core as the pull client uses it: the core's device state,
/// the flash and the platform, locked for one call into the pull machine
/// (never while the network is waited on).
pub trait CoreAccess: Send + Sync {
    /// Runs `f` with the core locked; `ms` is the core's clock.
    fn with(&self, f: &mut dyn FnMut(&mut Device, &mut SimFlash, &mut SimPlatform, u64));
}

/// The pull client: the core's machine, and what only the host knows (the
/// URLs, the poll, the transport figures).
pub struct Pull {
    cfg: PullConfig,
    fetcher: Fetcher,
    machine: Arc<Mutex<otter_device::pull::Pull>>,
    last_download: Arc<Mutex<Option<DownloadSummary>>>,
    requests: mpsc::Sender<oneshot::Sender<CheckReport>>,
    inbox: tokio::sync::Mutex<mpsc::Receiver<oneshot::Sender<CheckReport>>>,
    /// The device core, once the runner installed it.
    core: std::sync::OnceLock<Arc<dyn CoreAccess>>,
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
    fn failed(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            result: "failed",
            code,
            message: message.into(),
        }
    }
}

/// A transport failure with its causes, as one message.
fn fetch_message(e: &FetchError) -> String {
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    message
}

fn now() -> impl Fn(u64) -> Now {
    |ms| Now {
        ms,
        unix: now_secs(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Pull {
    /// A pull client for `cfg`.
    pub fn new(cfg: PullConfig) -> Result<Arc<Self>, FetchError> {
        let fetcher = Fetcher::new(cfg.fetch.clone())?;
        let (requests, inbox) = mpsc::channel(8);
        Ok(Arc::new(Self {
            fetcher,
            machine: Arc::new(Mutex::new(otter_device::pull::Pull::new())),
            last_download: Arc::new(Mutex::new(None)),
            requests,
            inbox: tokio::sync::Mutex::new(inbox),
            core: std::sync::OnceLock::new(),
            current: Mutex::new(cfg.manifest_url.clone()),
            cfg,
        }))
    }

    /// Installs the device core (once, before the first boot).
    pub fn set_core(&self, core: Arc<dyn CoreAccess>) {
        let _ = self.core.set(core);
    }

    /// The status, from the core's machine and the host's figures. Locks
    /// only the machine (the core may be locked by the caller).
    pub fn status(&self) -> PullStatus {
        let m = lock(&self.machine);
        PullStatus {
            manifest_url: self.cfg.manifest_url.to_string(),
            poll_s: self.cfg.poll.map(|d| d.as_secs()),
            step: m.step().name(),
            artifact: m.artifact().map(Artifact::name),
            encoding: match m.step() {
                otter_device::pull::Step::Downloading
                | otter_device::pull::Step::Verifying
                | otter_device::pull::Step::Rebooting
                    if m.artifact() == Some(Artifact::Firmware) =>
                {
                    Some(m.encoding().name())
                }
                _ => None,
            },
            fallback: m.fallback().map(|f| FallbackSummary {
                from: f.from.name(),
                error: f.error,
            }),
            release: m.release().map(summary),
            progress: m.progress().map(|p| Progress {
                written: p.written,
                total: p.total,
                resumed_from: p.resumed_from,
            }),
            checks: m.checks(),
            last_check: m.last_check(),
            last_error: m.last_error().map(|e| LastPullError {
                error: e.error.code(),
                message: e.message.as_str().to_string(),
                at: e.at,
                boot: u64::from(e.boot),
            }),
            last_download: lock(&self.last_download).clone(),
        }
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

    /// One call into the machine with the core locked.
    fn core_call<T>(
        &self,
        f: impl FnOnce(
            &mut otter_device::pull::Pull,
            &mut Device,
            &mut SimFlash,
            &mut SimPlatform,
            Now,
        ) -> T,
    ) -> Result<T, Stop> {
        let core = self.core.get().ok_or_else(|| {
            Stop::failed("internal", "the pull client runs without the device core")
        })?;
        let mut f = Some(f);
        let mut out = None;
        core.with(&mut |dev, flash, plat, ms| {
            if let Some(f) = f.take() {
                let mut m = lock(&self.machine);
                out = Some(f(&mut m, dev, flash, plat, now()(ms)));
            }
        });
        out.ok_or_else(|| Stop::failed("internal", "the device core did not run the pull"))
    }

    /// The machine's record of the error it just refused or failed with.
    fn stop(&self, e: &PullError) -> Stop {
        if *e == PullError::Busy {
            return Stop {
                result: "busy",
                code: "busy",
                message: "an update is in progress; the pull checks again later".into(),
            };
        }
        let m = lock(&self.machine);
        let message = m
            .last_error()
            .map(|l| l.message.as_str().to_string())
            .unwrap_or_else(|| "an update is in progress; the pull checks again later".into());
        Stop {
            result: e.result().name(),
            code: e.code(),
            message,
        }
    }

    /// Records a failure outside the machine's steps (transport, server).
    fn record(&self, error: PullError, message: &str) -> Stop {
        let code = error.code();
        let result = error.result().name();
        let _ = self.core_call(|m, dev, _, _, now| {
            m.abort(dev, error, format_args!("{message}"), now);
        });
        Stop {
            result,
            code,
            message: message.to_string(),
        }
    }

    /// One check. `reply` is answered as soon as the decision is made.
    async fn check(
        &self,
        shared: &Arc<Shared>,
        reply: &mut Option<oneshot::Sender<CheckReport>>,
    ) -> CheckReport {
        lock(&self.machine).start(Now {
            ms: 0,
            unix: now_secs(),
        });
        let outcome = self.check_inner(shared, reply).await;
        let release = lock(&self.machine).release().map(summary);
        let report = match outcome {
            Ok((result, artifact)) => CheckReport {
                result,
                artifact,
                release,
                error: None,
            },
            Err(stop) => {
                if stop.result != "busy" {
                    shared.event(format!("pull: {}: {}", stop.code, stop.message));
                }
                CheckReport {
                    result: stop.result,
                    artifact: None,
                    release,
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

    async fn check_inner(
        &self,
        shared: &Arc<Shared>,
        reply: &mut Option<oneshot::Sender<CheckReport>>,
    ) -> Result<(&'static str, Option<&'static str>), Stop> {
        let url = &match &self.cfg.server {
            Some(s) => match server::check_in(s, shared).await {
                Ok(Some(u)) => u,
                Ok(None) => {
                    lock(&self.machine).up_to_date();
                    return Ok(("up_to_date", None));
                }
                Err(stop) => {
                    let error = match stop.code {
                        "not_running" => PullError::Device(otter_device::DeviceError::NotRunning),
                        code => PullError::Server(server::fault(code)),
                    };
                    return Err(self.record(error, &stop.message));
                }
            },
            None => self.cfg.manifest_url.clone(),
        };
        *lock(&self.current) = url.clone();
        let mut sig_url = url.clone();
        sig_url.set_path(&format!("{}.sig", url.path()));
        // Both fetched without any lock, each under the fetch deadlines.
        let fetched = async {
            let manifest = self
                .fetcher
                .get_small(url, otter_device::pull::MAX_MANIFEST_LEN)
                .await?;
            let sig = self
                .fetcher
                .get_small(&sig_url, otter_device::pull::MAX_SIGNATURE_FILE_LEN)
                .await?;
            Ok::<_, FetchError>((manifest, sig))
        };
        let (manifest, sig) = match fetched.await {
            Ok(b) => b,
            Err(e) => return Err(self.record(PullError::Download, &fetch_message(&e))),
        };
        let (trusted, product) = (&self.cfg.trusted, self.cfg.product.as_deref());
        let decision = self.core_call(|m, dev, flash, plat, now| {
            m.check(dev, flash, plat, &manifest, &sig, trusted, product, now)
        })?;
        match decision {
            Ok(Decision::UpToDate) => Ok(("up_to_date", None)),
            Ok(Decision::WaitingForConfirm) => Ok(("waiting_for_confirm", None)),
            Ok(Decision::Download(a)) => {
                self.install(shared, a, reply).await?;
                Ok(("updating", Some(a.name())))
            }
            Err(e) => Err(self.stop(&e)),
        }
    }

    fn artifact_url(&self, url: &str) -> Result<Url, Stop> {
        let base = lock(&self.current).clone();
        let s = resolve_url(base.as_str(), url).map_err(|e| Stop {
            result: "refused",
            code: e.code(),
            message: e.to_string(),
        })?;
        Url::parse(&s).map_err(|e| Stop {
            result: "refused",
            code: "bad_manifest",
            message: format!("the artifact URL {s:?} is not a URL: {e}"),
        })
    }

    /// Downloads the decided artifact through the machine and reboots into
    /// it; a gzip or delta download that fails is followed, in the same
    /// check, by the full image (nothing was switched in between).
    async fn install(
        &self,
        shared: &Arc<Shared>,
        artifact: Artifact,
        reply: &mut Option<oneshot::Sender<CheckReport>>,
    ) -> Result<(), Stop> {
        loop {
            let encoding = lock(&self.machine).encoding();
            let stop = match self.install_once(shared, artifact, reply).await {
                Ok(()) => return Ok(()),
                Err(stop) => stop,
            };
            if encoding == ArtifactEncoding::Identity || stop.result == "busy" {
                return Err(stop);
            }
            let fell = self.core_call(|m, dev, _, _, now| m.fall_back(dev, now))?;
            if !fell {
                return Err(stop);
            }
            shared.event(format!(
                "pull: the {} artifact failed ({}: {}); falling back to the full image, nothing was switched",
                encoding.name(),
                stop.code,
                stop.message
            ));
        }
    }

    /// One download of the decided artifact (see [`Pull::install`]).
    async fn install_once(
        &self,
        shared: &Arc<Shared>,
        artifact: Artifact,
        reply: &mut Option<oneshot::Sender<CheckReport>>,
    ) -> Result<(), Stop> {
        // The first sector decides whether the slot already holds a prefix
        // of this very image (a download cut by a power loss); fetched
        // before the lock is taken.
        let (head_range, raw_url, size, encoding) = {
            let m = lock(&self.machine);
            (
                m.head_range(),
                m.url().to_string(),
                m.release().map_or(0, |r| r.firmware.size),
                m.encoding(),
            )
        };
        let url = self.artifact_url(&raw_url)?;
        let mut head = Vec::new();
        if let Some((from, to)) = head_range {
            let mut collect = Collect {
                bytes: Vec::new(),
                want: (to - from) as usize,
            };
            match self.fetcher.download(&url, 0, size, &mut collect).await {
                Ok(_) => {}
                Err(FetchError::Sink { source, .. })
                    if source.downcast_ref::<HeadComplete>().is_some() => {}
                Err(e) => return Err(self.record(PullError::Download, &fetch_message(&e))),
            }
            head = collect.bytes;
        }
        let begun = self.core_call(|m, dev, flash, plat, now| {
            m.begin(dev, flash, plat, &head, now)
                .map(|f| (f.from, f.to))
        })?;
        let (from, to) = match begun {
            Ok(r) => r,
            Err(e) => return Err(self.stop(&e)),
        };
        if let Some(tx) = reply.take() {
            let _ = tx.send(CheckReport {
                result: "updating",
                artifact: Some(artifact.name()),
                release: lock(&self.machine).release().map(summary),
                error: None,
            });
        }
        let version = lock(&self.machine)
            .release()
            .map(|r| r.version.as_str().to_string())
            .unwrap_or_default();
        match artifact {
            Artifact::Firmware if from > 0 => shared.event(format!(
                "pull: resuming firmware {version} at {from:#x} of {to:#x}: the slot holds the first {from} bytes from before the power loss (re-hashed)"
            )),
            Artifact::Firmware if encoding != ArtifactEncoding::Identity => shared.event(format!(
                "pull: downloading firmware {version} as its {} artifact ({to} bytes, the image is {size}) from {url}",
                encoding.name()
            )),
            Artifact::Firmware => shared.event(format!(
                "pull: downloading firmware {version} ({to} bytes) from {url}"
            )),
            Artifact::Www => {}
        }
        let mut sink = MachineSink {
            pull: self,
            artifact,
            version: version.clone(),
            total: to.max(1),
            next_pct: (from * 100 / to.max(1) / 10 + 1) * 10,
        };
        let stats = match self.fetcher.download(&url, from, to, &mut sink).await {
            Ok(s) => s,
            Err(e) => {
                // The sink's own failure (the core refused the bytes) is
                // already recorded by the machine.
                if let FetchError::Sink { source, .. } = &e {
                    if let Some(f) = source.downcast_ref::<SinkFailure>() {
                        return Err(self.stop(&f.0));
                    }
                }
                return Err(self.record(PullError::Download, &fetch_message(&e)));
            }
        };
        *lock(&self.last_download) = Some(DownloadSummary {
            artifact: artifact.name(),
            encoding: encoding.name(),
            artifact_size: to,
            fallback: lock(&self.machine).fallback().map(|f| FallbackSummary {
                from: f.from.name(),
                error: f.error,
            }),
            body_bytes: stats.body_bytes,
            connections: stats.connections,
            resumes: stats.resumes,
            restarts: stats.restarts,
            resumed_from: from,
            buffer_size: stats.buffer_size,
        });
        let done = self.core_call(|m, dev, flash, plat, now| m.finish(dev, flash, plat, now))?;
        match done {
            Ok(reason) => {
                let sha = lock(&self.machine)
                    .release()
                    .map(|r| match artifact {
                        Artifact::Firmware => hex(&r.firmware.sha256),
                        Artifact::Www => r.www.map(|w| hex(&w.sha256)).unwrap_or_default(),
                    })
                    .unwrap_or_default();
                let why = match reason {
                    RebootReason::Www => {
                        shared.event(format!(
                            "pull: web UI written and verified (SHA-256 {sha}); rebooting to mount it"
                        ));
                        Reboot::Frontend
                    }
                    _ => {
                        shared.event(format!(
                            "pull: firmware {version} written and verified (SHA-256 {sha}); {} bytes off the wire ({}) in {} connection(s), {} resume(s); rebooting",
                            stats.body_bytes, encoding.name(), stats.connections, stats.resumes
                        ));
                        Reboot::Update
                    }
                };
                shared.request_reboot(why);
                Ok(())
            }
            Err(e) => Err(self.stop(&e)),
        }
    }
}

/// The release a manifest describes, for the status.
fn summary(r: &otter_device::pull::Release) -> ReleaseSummary {
    ReleaseSummary {
        product: r.product.as_str().to_string(),
        version: r.version.as_str().to_string(),
        secure_version: r.secure_version,
        sha256: hex(&r.firmware.sha256),
        www: r.www.is_some(),
        expires: otter_release::Timestamp::from_unix_saturating(r.expires).to_string(),
    }
}

/// A pull's error, as the machine refused the bytes.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.code())]
struct SinkFailure(PullError);

/// The download's bytes into the core's pull machine, one locked call per
/// piece (a buffer of [`crate::fetch::BUFFER_SIZE`] at most).
struct MachineSink<'p> {
    pull: &'p Pull,
    artifact: Artifact,
    version: String,
    total: u64,
    next_pct: u64,
}

impl Sink for MachineSink<'_> {
    fn restart(&mut self) -> Result<(), SinkError> {
        let r = self
            .pull
            .core_call(|m, dev, flash, plat, _| m.restart(dev, flash, plat))
            .map_err(|s| SinkError::new(s.message))?;
        r.map_err(|e| SinkError::new(SinkFailure(e)))
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        let r = self
            .pull
            .core_call(|m, dev, flash, plat, now| {
                let r = m.write(dev, flash, plat, offset, data);
                if let Err(e) = &r {
                    // Recorded (and the update abandoned) by the machine.
                    let msg = match e {
                        PullError::Device(d) => d.to_string(),
                        other => other.code().to_string(),
                    };
                    m.abort(dev, e.clone(), format_args!("{msg}"), now);
                }
                r
            })
            .map_err(|s| SinkError::new(s.message))?;
        r.map_err(|e| SinkError::new(SinkFailure(e)))?;
        if self.artifact == Artifact::Firmware {
            // A log line at every 10% of the image, as POST /update logs its own.
            let written = offset + data.len() as u64;
            let pct = written * 100 / self.total;
            if pct >= self.next_pct {
                self.next_pct = (pct / 10 + 1) * 10;
                tracing::info!(
                    "pull: firmware {}: {pct}% ({written} of {} bytes)",
                    self.version,
                    self.total
                );
            }
        }
        Ok(())
    }
}

/// Collects the first bytes of a download, then stops it.
struct Collect {
    bytes: Vec<u8>,
    want: usize,
}

impl Sink for Collect {
    fn restart(&mut self) -> Result<(), SinkError> {
        self.bytes.clear();
        Ok(())
    }

    fn write(&mut self, _offset: u64, data: &[u8]) -> Result<(), SinkError> {
        let take = (self.want - self.bytes.len()).min(data.len());
        self.bytes.extend_from_slice(&data[..take]);
        if self.bytes.len() == self.want {
            return Err(SinkError::new(HeadComplete));
        }
        Ok(())
    }
}

/// What [`Collect`] stops a download with once it has its bytes.
#[derive(Debug, thiserror::Error)]
#[error("first sector received")]
struct HeadComplete;
