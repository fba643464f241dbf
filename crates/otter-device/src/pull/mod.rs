//! The pull client's decisions as a sans-IO machine (docs/pull.md): the
//! device checks a signed release manifest and installs what it names.
//!
//! The caller owns the network. One check, as the caller drives it:
//!
//! ```text
//!   Pull::start ─────────────────────────────▶ step Checking
//!   caller GETs manifest.json and .sig (bounded: MAX_MANIFEST_LEN,
//!   MAX_SIGNATURE_FILE_LEN), no lock held
//!   Pull::verify(manifest, sig, keys, now) ──▶ the release (or refused)
//!   Pull::decide(device, flash, product) ────▶ UpToDate | WaitingForConfirm
//!                                              | Download(artifact) | refused
//!   firmware: caller GETs Pull::head_range() (the first sector of a full
//!   image; none for gzip or a delta), no lock
//!   Pull::begin(device, flash, platform, head) ▶ Fetch { url, encoding,
//!       from, to } (takes the device's one-update lock: 409 busy while an
//!       upload runs)
//!   caller GETs url with Range: bytes=from-(to-1), and for every piece
//!   Pull::write(device, flash, platform, offset, bytes)  (or Pull::restart
//!       when the server ignored Range and sends from 0)
//!   Pull::finish(device, flash) ─────────────▶ reboot reason (verified,
//!                                              selected) or failed
//!   on a transport failure: Pull::abort(device, ...)
//!   after any failure of a gzip or delta download: Pull::fall_back(device)
//!       ─▶ true: the same check goes on with the full image (head_range,
//!       begin, ...); nothing was switched in between
//! ```
//!
//! Every byte goes through the same update path as `POST /update` and
//! `POST /api/ota/frontend` ([`crate::service::Device::begin_pull_firmware`]:
//! otter-ota's `UpdateSession` with its signature policy, the web-UI
//! writer that reads the slot back), recorded as the last update with
//! protocol `pull`. A firmware download resumes from what is in the slot
//! after a power cut (the first-sector rule, see
//! [`crate::service::SECTOR`] and `service/pulled.rs`).
//!
//! # Encoded artifacts
//!
//! An `otter-release/2` manifest lists, beside the full image, gzip and
//! delta artifacts of it. [`Pull::check`] picks the smallest one the device
//! can apply ([`choose`]: a delta from the running image, gzip when the
//! platform lends the inflater, else the full image). [`Pull::write`] takes
//! the artifact's bytes as fetched, hashes them (the artifact's own
//! SHA-256, checked in [`Pull::finish`] before anything is selected) and
//! hands them to the device's decoder stage ([`crate::decode`], the same as
//! `POST /update` with `Content-Encoding`), which writes the decoded image
//! into the same session with every check of a full image (chip, size,
//! `secure_version`, the manifest's image SHA-256). The offset it checks
//! counts fetched bytes, separately from what the session has received.
//!
//! When a gzip or delta download fails in any way (the artifact's SHA-256,
//! a decode error, a base that turns out not to match, the transport),
//! [`Pull::fall_back`] turns the same check to the full image; an artifact
//! that failed on the device is not chosen again until power-off. An
//! encoded download always starts at byte 0 (`service/pulled.rs`).
//!
//! # Memory
//!
//! [`Pull`] is fixed-size (≤ [`crate::sizes::PULL_SIZE`]): the release's
//! names, the URL of the artifact being fetched (≤ 2,048 bytes, the
//! manifest's limit), the last error's message. The caller lends the
//! manifest and signature buffers (≤ 64 KiB + 16 KiB) and the first sector
//! (4 KiB). Verifying the manifest is the one use of the heap
//! (otter-release parses the JSON): bounded by those lengths, freed before
//! `verify` returns; nothing on the download path allocates.

pub mod checkin;
pub mod install;
mod plan;
mod text;

pub use plan::{choose, decide, Choice, Decoders, Facts, Plan, Refusal, WwwFacts};
pub use text::Text;

use core::fmt::Write as _;

use sha2::Digest as _;

use embedded_storage::nor_flash::NorFlash;
use otter_format::otadata::OtaState;
use otter_ota::lifecycle::running_state;
use otter_ota::{verify_slot, SlotId, SlotMap};

use crate::error::DeviceError;
use crate::service::{CheckResult, Device, Platform, RebootReason, Text32, SECTOR};

pub use otter_release::{
    PublicKey, MAX_ALTERNATIVES, MAX_MANIFEST_LEN, MAX_SIGNATURE_FILE_LEN, MAX_URL_LEN,
};

/// Longest product, chip or version name kept (the manifest's limit).
pub const NAME_LEN: usize = otter_release::MAX_NAME_LEN;
/// Longest error message kept; longer ones are cut.
pub const MESSAGE_LEN: usize = 512;

/// Where a check is (`pull.step` in the status document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No check has run yet this boot.
    Idle,
    /// Fetching and checking the manifest.
    Checking,
    /// Writing an artifact into its slot.
    Downloading,
    /// Verifying what was written.
    Verifying,
    /// Verified and selected; the device reboots into it.
    Rebooting,
    /// A newer release waits for the running firmware's confirm.
    WaitingForConfirm,
    /// The device runs the release.
    UpToDate,
    /// The release is not for this device; nothing was written.
    Refused,
    /// The server, the network or the download failed.
    Failed,
}

impl Step {
    /// The status document's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Checking => "checking",
            Self::Downloading => "downloading",
            Self::Verifying => "verifying",
            Self::Rebooting => "rebooting",
            Self::WaitingForConfirm => "waiting_for_confirm",
            Self::UpToDate => "up_to_date",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

/// Which artifact of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artifact {
    /// The app image.
    Firmware,
    /// The web-UI LittleFS image.
    Www,
}

impl Artifact {
    /// `firmware` or `www`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Firmware => "firmware",
            Self::Www => "www",
        }
    }
}

/// An artifact's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactInfo {
    /// Its length in bytes.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
}

/// How the firmware travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactEncoding {
    /// The full image as it is.
    Identity,
    /// gzip of the image.
    Gzip,
    /// An `esp_delta_ota` patch from the running image.
    Delta,
}

impl ArtifactEncoding {
    /// `identity`, `gzip` or `delta` (the status document's names).
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Gzip => "gzip",
            Self::Delta => "delta",
        }
    }

    /// The device decoder's encoding.
    pub fn decoder(self) -> crate::decode::Encoding {
        match self {
            Self::Identity => crate::decode::Encoding::Identity,
            Self::Gzip => crate::decode::Encoding::Gzip,
            Self::Delta => crate::decode::Encoding::EspDelta,
        }
    }
}

/// One alternative artifact of the firmware (`firmware.alternatives[i]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlternativeInfo {
    /// gzip or delta.
    pub encoding: ArtifactEncoding,
    /// The artifact's length in bytes.
    pub size: u64,
    /// The artifact's own SHA-256.
    pub sha256: [u8; 32],
    /// A delta's base: the running image's validation hash it needs.
    pub base_sha256: Option<[u8; 32]>,
}

/// A gzip or delta download that failed and was replaced by the full image
/// in the same check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fallback {
    /// What was tried.
    pub from: ArtifactEncoding,
    /// Why it failed (the error's code).
    pub error: &'static str,
}

/// What a verified manifest says, as the machine keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// Product.
    pub product: Text<NAME_LEN>,
    /// Chip, lowercase.
    pub chip: Text<NAME_LEN>,
    /// Firmware version.
    pub version: Text<NAME_LEN>,
    /// Firmware secure_version.
    pub secure_version: u32,
    /// Manifest expiry (Unix seconds).
    pub expires: u64,
    /// The firmware.
    pub firmware: ArtifactInfo,
    /// The web UI of a bundle.
    pub www: Option<ArtifactInfo>,
    /// The firmware's alternatives, in manifest order.
    pub alternatives: [Option<AlternativeInfo>; MAX_ALTERNATIVES],
}

/// The decision of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do.
    UpToDate,
    /// A newer release waits for the running firmware's confirm.
    WaitingForConfirm,
    /// Download this artifact: [`Pull::begin`].
    Download(Artifact),
}

impl Decision {
    /// As `POST /api/ota/check` answers it.
    pub fn result(self) -> CheckResult {
        match self {
            Self::UpToDate => CheckResult::UpToDate,
            Self::WaitingForConfirm => CheckResult::WaitingForConfirm,
            Self::Download(_) => CheckResult::Updating,
        }
    }
}

/// What to fetch: `url` (as the manifest writes it: absolute, or relative to
/// the manifest's URL) bytes `from..to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch<'a> {
    /// Which artifact.
    pub artifact: Artifact,
    /// How it is encoded (a web UI: always identity).
    pub encoding: ArtifactEncoding,
    /// Its URL as written in the manifest.
    pub url: &'a str,
    /// First byte wanted (a resumed prefix is kept in flash).
    pub from: u64,
    /// End (exclusive): the artifact's size.
    pub to: u64,
}

/// A fleet server's failure, as the caller's check-in reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFault {
    /// `server_unreachable`: no answer (connect, TLS, deadline).
    Unreachable,
    /// `server_refused`: an HTTP error status.
    Refused,
    /// `server_answer`: the answer does not parse.
    Answer,
    /// `server_url`: the server's URL or trust settings are unusable.
    Url,
    /// `not_enrolled`: no token and no enrollment key.
    NotEnrolled,
    /// `fleet_state`: the device's fleet journal cannot be read or written.
    State,
}

/// Why a check ended without installing, with a stable [`PullError::code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullError {
    /// The manifest did not verify (otter-release's code: `bad_signature`,
    /// `no_trusted_signature`, `expired`, `manifest_malformed`, ...).
    Release(&'static str),
    /// The release is not for this device.
    Refused(Refusal),
    /// `sha256_mismatch`: this firmware failed its SHA-256 when downloaded
    /// since power-on; not fetched again until the manifest names another.
    KnownBad,
    /// `busy`: an update is in progress.
    Busy,
    /// The device refused or failed while writing or verifying (its code).
    Device(DeviceError),
    /// `download_failed`: the transport failed.
    Download,
    /// The fleet server failed.
    Server(ServerFault),
    /// `internal`: the caller drove the machine out of order.
    Internal,
}

impl PullError {
    /// The stable code (`pull.last_error.error`, the check's `error.error`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Release(c) => c,
            Self::Refused(r) => r.code(),
            Self::KnownBad => "sha256_mismatch",
            Self::Busy => "busy",
            Self::Device(e) => e.code(),
            Self::Download => "download_failed",
            Self::Server(s) => match s {
                ServerFault::Unreachable => "server_unreachable",
                ServerFault::Refused => "server_refused",
                ServerFault::Answer => "server_answer",
                ServerFault::Url => "server_url",
                ServerFault::NotEnrolled => "not_enrolled",
                ServerFault::State => "fleet_state",
            },
            Self::Internal => "internal",
        }
    }

    /// The check's result: refused (422), failed (502) or busy (409).
    pub fn result(&self) -> CheckResult {
        match self {
            Self::Release(_) | Self::Refused(_) => CheckResult::Refused,
            Self::Busy => CheckResult::Busy,
            Self::KnownBad
            | Self::Device(_)
            | Self::Download
            | Self::Server(_)
            | Self::Internal => CheckResult::Failed,
        }
    }
}

/// A failed or refused check, as the status keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// What.
    pub error: PullError,
    /// What happened and what to do.
    pub message: Text<MESSAGE_LEN>,
    /// When (Unix seconds).
    pub at: u64,
    /// Boot number.
    pub boot: u32,
}

/// Download progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes fetched and taken (for a full image: in flash).
    pub written: u64,
    /// Artifact size (of the gzip stream or the patch, when encoded).
    pub total: u64,
    /// Where this download started: 0, or the prefix kept from before a
    /// power cut.
    pub resumed_from: u64,
}

/// The time as the machine needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// The device's monotonic milliseconds (as [`Device`] takes them).
    pub ms: u64,
    /// Unix seconds (manifest expiry, error times).
    pub unix: u64,
}

/// The pull client's state: one per device.
#[derive(Debug, Clone)]
pub struct Pull {
    step: Step,
    artifact: Option<Artifact>,
    release: Option<Release>,
    url: Text<MAX_URL_LEN>,
    full_url: Text<MAX_URL_LEN>,
    choice: Choice,
    fallback: Option<Fallback>,
    /// The SHA-256 of an encoded artifact's fetched bytes.
    hasher: Option<sha2::Sha256>,
    bad_alternative: Option<[u8; 32]>,
    /// The slot may hold what a failed decoder wrote: the next firmware
    /// download starts over instead of resuming.
    no_resume: bool,
    plan: Option<Artifact>,
    progress: Option<Progress>,
    fetched: u64,
    checks: u64,
    last_check: Option<u64>,
    last_error: Option<LastError>,
    bad: Option<[u8; 32]>,
}

impl Default for Pull {
    fn default() -> Self {
        Self::new()
    }
}

impl Pull {
    /// A machine that has not checked yet.
    pub const fn new() -> Self {
        Self {
            step: Step::Idle,
            artifact: None,
            release: None,
            url: Text::new(),
            full_url: Text::new(),
            choice: Choice::Full,
            fallback: None,
            hasher: None,
            bad_alternative: None,
            no_resume: false,
            plan: None,
            progress: None,
            fetched: 0,
            checks: 0,
            last_check: None,
            last_error: None,
            bad: None,
        }
    }

    /// The step.
    pub fn step(&self) -> Step {
        self.step
    }
    /// Which artifact the step is about.
    pub fn artifact(&self) -> Option<Artifact> {
        self.artifact
    }
    /// The release of the last verified manifest.
    pub fn release(&self) -> Option<&Release> {
        self.release.as_ref()
    }
    /// Download progress, while downloading.
    pub fn progress(&self) -> Option<Progress> {
        self.progress
    }
    /// Checks started since power-on.
    pub fn checks(&self) -> u64 {
        self.checks
    }
    /// When the last check started (Unix seconds).
    pub fn last_check(&self) -> Option<u64> {
        self.last_check
    }
    /// The last check's error, until a check succeeds.
    pub fn last_error(&self) -> Option<&LastError> {
        self.last_error.as_ref()
    }
    /// The URL (as the manifest writes it) of the artifact decided on.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }
    /// How the firmware decided on travels (identity for a web UI).
    pub fn encoding(&self) -> ArtifactEncoding {
        self.chosen()
            .map_or(ArtifactEncoding::Identity, |a| a.encoding)
    }
    /// The gzip or delta download this check replaced by the full image.
    pub fn fallback(&self) -> Option<Fallback> {
        self.fallback
    }

    fn chosen(&self) -> Option<AlternativeInfo> {
        match (self.plan, self.choice, &self.release) {
            (Some(Artifact::Firmware), Choice::Alternative(i), Some(r)) => {
                r.alternatives.get(i).copied().flatten()
            }
            _ => None,
        }
    }

    /// A check starts (at boot, every poll, `POST /api/ota/check`).
    pub fn start(&mut self, now: Now) {
        self.step = Step::Checking;
        self.artifact = None;
        self.progress = None;
        self.plan = None;
        self.choice = Choice::Full;
        self.fallback = None;
        self.hasher = None;
        self.checks += 1;
        self.last_check = Some(now.unix);
    }

    /// Records that the check failed before or outside the machine's own
    /// steps (the manifest could not be fetched, the fleet server failed):
    /// `error` with `message`. Busy only returns the step to idle.
    pub fn fail(
        &mut self,
        dev: &Device,
        error: PullError,
        message: core::fmt::Arguments<'_>,
        now: Now,
    ) {
        self.progress = None;
        if error == PullError::Busy {
            self.step = Step::Idle;
            return;
        }
        self.step = match error.result() {
            CheckResult::Refused => Step::Refused,
            _ => Step::Failed,
        };
        let mut m = Text::new();
        let _ = m.write_fmt(message);
        self.last_error = Some(LastError {
            error,
            message: m,
            at: now.unix,
            boot: dev.boot_count,
        });
    }

    fn fail_with(
        &mut self,
        dev: &Device,
        error: PullError,
        explain: &mut dyn FnMut(&mut Text<MESSAGE_LEN>),
        now: Now,
    ) -> PullError {
        let mut m = Text::new();
        explain(&mut m);
        self.fail(dev, error.clone(), format_args!("{m}"), now);
        error
    }

    /// Verifies `manifest` and `sig` (the exact bytes fetched) against the
    /// `trusted` keys at `now` (otter-release's `verify_manifest`: sizes,
    /// signatures, strict format, expiry), then decides what the release
    /// means for this device ([`decide`] over what flash says: the running
    /// image, its state, the anti-rollback counter, the slots, the web UI).
    /// `product` overrides the running firmware's project name.
    ///
    /// Nothing is written and no lock is taken. A download decision keeps
    /// the artifact's URL for [`Pull::begin`]. A firmware that failed its
    /// SHA-256 since power-on is not fetched again (`sha256_mismatch`,
    /// failed) until the manifest names other bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn check<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        manifest: &[u8],
        sig: &[u8],
        trusted: &[PublicKey],
        product: Option<&str>,
        now: Now,
    ) -> Result<Decision, PullError> {
        let m = match otter_release::verify_manifest(manifest, sig, trusted, now.unix) {
            Ok(m) => m,
            Err(e) => {
                return Err(self.fail_with(
                    dev,
                    PullError::Release(e.code()),
                    &mut |t| {
                        let _ = write!(t, "{e}");
                    },
                    now,
                ))
            }
        };
        let release = Release {
            product: Text::of(&m.product),
            chip: Text::of(&m.chip),
            version: Text::of(&m.firmware.version),
            secure_version: m.firmware.secure_version,
            expires: m.expires.unix(),
            firmware: ArtifactInfo {
                size: m.firmware.size,
                sha256: m.firmware.sha256.0,
            },
            www: m.www.as_ref().map(|w| ArtifactInfo {
                size: w.size,
                sha256: w.sha256.0,
            }),
            alternatives: alternatives(&m.firmware.alternatives),
        };
        self.release = Some(release);
        let decision = self.decide(dev, flash, platform, &release, product, now)?;
        self.full_url = Text::of(&m.firmware.url);
        self.url = match (decision, self.choice) {
            (Decision::Download(Artifact::Firmware), Choice::Full) => Text::of(&m.firmware.url),
            (Decision::Download(Artifact::Firmware), Choice::Alternative(i)) => Text::of(
                m.firmware
                    .alternatives
                    .get(i)
                    .map_or(m.firmware.url.as_str(), |a| a.url.as_str()),
            ),
            (Decision::Download(Artifact::Www), _) => {
                Text::of(m.www.as_ref().map_or("", |w| w.url.as_str()))
            }
            _ => Text::new(),
        };
        Ok(decision)
    }

    /// [`Pull::check`] after the verification: decides on `release`, and
    /// for a firmware download which artifact ([`choose`], with the
    /// decoders `platform` lends).
    pub fn decide<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        release: &Release,
        product: Option<&str>,
        now: Now,
    ) -> Result<Decision, PullError> {
        self.release = Some(*release);
        let device_fail = |e: DeviceError| PullError::Device(e);
        let running = match dev.running {
            Some(s) => s,
            None => {
                return Err(self.fail_with(
                    dev,
                    device_fail(DeviceError::NotRunning),
                    &mut |t| {
                        t.push("no image runs");
                    },
                    now,
                ))
            }
        };
        let facts = match gather(dev, flash, running, release) {
            Ok(f) => f,
            Err(e) => {
                let err = device_fail(e.clone());
                return Err(self.fail_with(
                    dev,
                    err,
                    &mut |t| {
                        let _ = write!(t, "{e}");
                    },
                    now,
                ));
            }
        };
        let product_name = product.unwrap_or(facts.project.as_str());
        let decoders = {
            let ram = platform.decoder_ram();
            Decoders {
                inflate: ram.inflate.is_some(),
                patch: ram.patch.is_some(),
            }
        };
        let f = Facts {
            product: product_name,
            chip: dev.opts.cfg.chip.name(),
            running_version: facts.version.as_str(),
            pending_verify: facts.pending_verify,
            secure_counter: dev.opts.cfg.anti_rollback,
            next_slot_size: facts.next_slot_size,
            www: facts.www,
            running_sha256: facts.running_sha256,
            decoders,
        };
        let cfg = dev.opts.cfg;
        let mut rolled_back = |v: &str| rolled_back(flash, &cfg, running, v);
        let plan = match decide(release, &f, &mut rolled_back) {
            Ok(p) => p,
            Err(r) => {
                let mut m = Text::<MESSAGE_LEN>::new();
                r.explain(release, &f, &mut m);
                return Err(self.fail_with(dev, PullError::Refused(r), &mut |t| *t = m, now));
            }
        };
        let decision = match plan {
            Plan::UpToDate => Decision::UpToDate,
            Plan::WaitForConfirm => Decision::WaitingForConfirm,
            Plan::Firmware => {
                if self.bad == Some(release.firmware.sha256) {
                    let v = release.version;
                    return Err(self.fail_with(
                        dev,
                        PullError::KnownBad,
                        &mut |t| {
                            let _ = write!(t, "firmware {v} did not match its manifest's SHA-256 when downloaded; not fetched again until the manifest changes (or the device restarts)");
                        },
                        now,
                    ));
                }
                self.choice = choose(release, &f, self.bad_alternative);
                Decision::Download(Artifact::Firmware)
            }
            Plan::Www => Decision::Download(Artifact::Www),
        };
        self.last_error = None;
        match decision {
            Decision::UpToDate => self.step = Step::UpToDate,
            Decision::WaitingForConfirm => self.step = Step::WaitingForConfirm,
            Decision::Download(a) => self.plan = Some(a),
        }
        Ok(decision)
    }

    /// The bytes to fetch first for a firmware download decision: its
    /// first sector, which decides whether the slot holds a prefix of it
    /// (fetch them without the lock). `None` for a web UI, a gzip or delta
    /// artifact (which starts at 0), and the full image after a fallback
    /// (which starts over: the slot holds what a decoder wrote).
    pub fn head_range(&self) -> Option<(u64, u64)> {
        match (self.plan, &self.release) {
            (Some(Artifact::Firmware), Some(r)) if self.chosen().is_none() && !self.no_resume => {
                Some((0, r.firmware.size.min(u64::from(SECTOR))))
            }
            _ => None,
        }
    }

    /// Takes the device's update lock and opens the decided artifact's
    /// slot; `head` is what [`Pull::head_range`] fetched (ignored for a
    /// web UI). Returns what to fetch.
    pub fn begin<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        head: &[u8],
        now: Now,
    ) -> Result<Fetch<'_>, PullError> {
        let (Some(artifact), Some(release)) = (self.plan, self.release) else {
            return Err(PullError::Internal);
        };
        let chosen = self.chosen();
        let begun = match artifact {
            Artifact::Firmware => {
                let fw = release.firmware;
                match (u32::try_from(fw.size), chosen) {
                    (Ok(size), None) => {
                        // After a failed decoder the slot's prefix may not
                        // be this image's beyond its first sector.
                        let head = if self.no_resume { &[][..] } else { head };
                        self.no_resume = false;
                        dev.begin_pull_firmware(flash, size, fw.sha256, head, now.ms)
                            .map(u64::from)
                    }
                    (Ok(size), Some(alt)) => dev
                        .begin_pull_encoded(
                            flash,
                            platform,
                            size,
                            fw.sha256,
                            alt.encoding.decoder(),
                            alt.size,
                            now.ms,
                        )
                        .map(|()| 0),
                    (Err(_), _) => Err(DeviceError::TooLarge {
                        needed: fw.size,
                        capacity: u32::MAX,
                    }),
                }
            }
            Artifact::Www => match release.www {
                Some(w) => dev
                    .begin_pull_www(flash, platform, w.size, w.sha256, now.ms)
                    .map(|()| 0),
                None => return Err(PullError::Internal),
            },
        };
        let from = match begun {
            Ok(f) => f,
            Err(DeviceError::Busy) => {
                self.fail(
                    dev,
                    PullError::Busy,
                    format_args!("an update is in progress; the pull checks again later"),
                    now,
                );
                return Err(PullError::Busy);
            }
            Err(e) => {
                let msg = e.clone();
                return Err(self.fail_with(
                    dev,
                    PullError::Device(e),
                    &mut |t| {
                        let _ = write!(t, "{msg}");
                    },
                    now,
                ));
            }
        };
        let total = match (artifact, chosen) {
            (Artifact::Firmware, Some(alt)) => alt.size,
            (Artifact::Firmware, None) => release.firmware.size,
            (Artifact::Www, _) => release.www.map_or(0, |w| w.size),
        };
        self.step = Step::Downloading;
        self.artifact = Some(artifact);
        self.fetched = from;
        self.hasher = chosen.map(|_| sha2::Sha256::new());
        self.progress = Some(Progress {
            written: from,
            total,
            resumed_from: from,
        });
        Ok(Fetch {
            artifact,
            encoding: chosen.map_or(ArtifactEncoding::Identity, |a| a.encoding),
            url: self.url.as_str(),
            from,
            to: total,
        })
    }

    /// The next fetched bytes, at `offset` of the artifact. An offset
    /// other than the next expected one is refused (`internal`).
    pub fn write<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        offset: u64,
        data: &[u8],
    ) -> Result<(), PullError> {
        if self.step != Step::Downloading || offset != self.fetched {
            return Err(PullError::Internal);
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(data);
        }
        dev.write_pull(flash, platform, data)
            .map_err(PullError::Device)?;
        self.fetched += data.len() as u64;
        let encoded = self.hasher.is_some();
        if let Some(p) = self.progress.as_mut() {
            p.written = if encoded {
                self.fetched
            } else {
                dev.pull_received().unwrap_or(self.fetched)
            };
        }
        Ok(())
    }

    /// The server ignored `Range` and sends the artifact from byte 0:
    /// start the slot over.
    pub fn restart<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
    ) -> Result<(), PullError> {
        let (Some(artifact), Some(release)) = (self.artifact, self.release) else {
            return Err(PullError::Internal);
        };
        let chosen = self.chosen();
        let r = match artifact {
            Artifact::Firmware => {
                let size = u32::try_from(release.firmware.size).map_err(|_| PullError::Internal)?;
                match chosen {
                    None => dev.restart_pull_firmware(flash, size, release.firmware.sha256),
                    Some(alt) => {
                        self.hasher = Some(sha2::Sha256::new());
                        dev.restart_pull_encoded(
                            flash,
                            platform,
                            size,
                            release.firmware.sha256,
                            alt.encoding.decoder(),
                        )
                    }
                }
            }
            Artifact::Www => {
                let w = release.www.ok_or(PullError::Internal)?;
                dev.restart_pull_www(flash, platform, w.size, w.sha256)
            }
        };
        r.map_err(PullError::Device)?;
        self.fetched = 0;
        if let Some(p) = self.progress.as_mut() {
            p.written = 0;
            p.resumed_from = 0;
        }
        Ok(())
    }

    /// Every byte arrived: verify what is in the slot and select it (the
    /// session's SHA-256 against the manifest's, the image and signature
    /// checks; for a web UI, the read-back). Returns why the caller
    /// reboots. A firmware whose SHA-256 does not match is remembered and
    /// not fetched again until the manifest changes.
    pub fn finish<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        now: Now,
    ) -> Result<RebootReason, PullError> {
        if self.step != Step::Downloading {
            return Err(PullError::Internal);
        }
        self.step = Step::Verifying;
        let chosen = self.chosen();
        if let Some(alt) = chosen {
            // The artifact's own SHA-256 before anything is selected.
            let got: Option<[u8; 32]> = self.hasher.take().map(|h| h.finalize().into());
            if self.fetched != alt.size || got != Some(alt.sha256) {
                let e = DeviceError::ArtifactSha256Mismatch;
                dev.abort_pull(&e, now.ms);
                let msg = e.clone();
                return Err(self.fail_with(
                    dev,
                    PullError::Device(e),
                    &mut |t| {
                        let _ = write!(t, "{msg}");
                    },
                    now,
                ));
            }
        }
        match dev.finish_pull(flash, platform, now.ms) {
            Ok(done) => {
                self.step = Step::Rebooting;
                self.progress = None;
                Ok(done.reboot)
            }
            Err(e) => {
                // The manifest's SHA-256 or the image's appended one (a
                // decoded artifact's failure is the artifact's, not the
                // image's: the full image is still worth fetching).
                if e.code() == "sha256_mismatch"
                    && self.artifact == Some(Artifact::Firmware)
                    && chosen.is_none()
                {
                    self.mark_failed_firmware(true);
                }
                let msg = e.clone();
                Err(self.fail_with(
                    dev,
                    PullError::Device(e),
                    &mut |t| {
                        let _ = write!(t, "{msg}");
                    },
                    now,
                ))
            }
        }
    }

    /// The device refused a full firmware image (its SHA-256 when
    /// `sha256_mismatch`, else its checksum, a segment, the flash...).
    /// Resumed, the bytes kept in the slot may be the culprit (a cut while a
    /// failed decoder wrote it, flash damaged while off): the next download
    /// starts over from byte 0 instead of trusting them again. From byte 0,
    /// an image whose SHA-256 fails is bad: remembered, not fetched again
    /// until the manifest changes.
    fn mark_failed_firmware(&mut self, sha256_mismatch: bool) {
        let resumed = self.progress.as_ref().is_some_and(|p| p.resumed_from > 0);
        if resumed {
            self.no_resume = true;
        } else if sha256_mismatch {
            self.bad = self.release.map(|r| r.firmware.sha256);
        }
    }

    /// The download failed (the transport, or a write the device refused):
    /// abandons the update (recorded; nothing selected, the lock released)
    /// and records `error`.
    pub fn abort(
        &mut self,
        dev: &mut Device,
        error: PullError,
        message: core::fmt::Arguments<'_>,
        now: Now,
    ) {
        if matches!(error, PullError::Device(_))
            && self.artifact == Some(Artifact::Firmware)
            && self.chosen().is_none()
        {
            self.mark_failed_firmware(error.code() == "sha256_mismatch");
        }
        if matches!(self.step, Step::Downloading | Step::Verifying) {
            let e = match &error {
                PullError::Device(e) => e.clone(),
                _ => DeviceError::Aborted {
                    received: self.fetched,
                },
            };
            dev.abort_pull(&e, now.ms);
        }
        self.fail(dev, error, message, now);
    }

    /// After a failed gzip or delta download (the transport, a write the
    /// device refused, [`Pull::finish`]'s checks): turns this check to the
    /// full image, recorded as [`Pull::fallback`]; the caller goes on with
    /// [`Pull::head_range`] and [`Pull::begin`]. Nothing was selected (the
    /// failed update was abandoned; if it was not yet, it is here). An
    /// artifact that failed on the device is not chosen again until the
    /// machine is recreated (power-on). `false` (nothing changes) when the
    /// download was the full image or a web UI.
    pub fn fall_back(&mut self, dev: &mut Device, now: Now) -> bool {
        let Some(alt) = self.chosen() else {
            return false;
        };
        if matches!(self.step, Step::Downloading | Step::Verifying) {
            let e = DeviceError::Aborted {
                received: self.fetched,
            };
            dev.abort_pull(&e, now.ms);
        }
        let error = self
            .last_error
            .as_ref()
            .map_or("aborted", |l| l.error.code());
        if matches!(
            self.last_error.as_ref().map(|l| &l.error),
            Some(PullError::Device(_))
        ) {
            self.bad_alternative = Some(alt.sha256);
        }
        self.fallback = Some(Fallback {
            from: alt.encoding,
            error,
        });
        self.choice = Choice::Full;
        self.url = self.full_url;
        self.no_resume = true;
        self.hasher = None;
        self.progress = None;
        self.artifact = None;
        self.last_error = None;
        self.step = Step::Checking;
        true
    }

    /// Marks the check up to date without a manifest (a fleet server that
    /// offers nothing).
    pub fn up_to_date(&mut self) {
        self.step = Step::UpToDate;
        self.last_error = None;
    }
}

/// What flash says about the running image, the next slot and the web UI.
struct Gathered {
    project: Text32,
    version: Text32,
    running_sha256: Option<[u8; 32]>,
    pending_verify: bool,
    next_slot_size: Option<u32>,
    www: Option<WwwFacts>,
}

fn gather<F: NorFlash>(
    dev: &Device,
    flash: &mut F,
    running: SlotId,
    release: &Release,
) -> Result<Gathered, DeviceError> {
    let cfg = dev.opts.cfg;
    let map = SlotMap::read(flash, cfg.table_offset).map_err(|e| DeviceError::from_ota(&e))?;
    let region = *map.region(running).ok_or(DeviceError::NotRunning)?;
    let info = verify_slot(flash, &region, otter_format::image::VerifyOptions::new())
        .map_err(|e| DeviceError::from_ota(&e))?
        .map_err(DeviceError::Image)?;
    let running_sha256 = info
        .sha256
        .filter(|s| s.stored == s.computed)
        .map(|s| s.stored);
    let (project, version) = info
        .app_desc
        .map_or((Text32::default(), Text32::default()), |d| {
            (Text32::of(d.project_name()), Text32::of(d.version()))
        });
    let state = running_state(flash, &cfg, running).map_err(|e| DeviceError::from_ota(&e))?;
    let next_slot_size = map
        .next_update_slot(Some(running))
        .and_then(|s| map.region(s))
        .map(|r| r.size);
    // The active web UI's SHA-256 (the whole slot, as uploaded) only when a
    // bundle's firmware is current: hashing a slot costs a full read.
    let www = match (dev.www, release.www) {
        (Some(w), Some(_)) => {
            let target = match w.active {
                Some(a) => 1 - a.min(1),
                None => 1 - w.selected.min(1),
            };
            let target_size = w.slots.get(usize::from(target)).map_or(0, |r| r.size);
            let same_version = compare(release.version.as_str(), version.as_str());
            let active_sha256 = match (w.active, same_version) {
                (Some(a), true) => match w.slots.get(usize::from(a)) {
                    Some(r) => Some(crate::www::hash_region(flash, r, r.size)?),
                    None => None,
                },
                _ => None,
            };
            Some(WwwFacts {
                target_size,
                active_sha256,
            })
        }
        (Some(w), None) => {
            let target = match w.active {
                Some(a) => 1 - a.min(1),
                None => 1 - w.selected.min(1),
            };
            Some(WwwFacts {
                target_size: w.slots.get(usize::from(target)).map_or(0, |r| r.size),
                active_sha256: None,
            })
        }
        (None, _) => None,
    };
    Ok(Gathered {
        project,
        version,
        running_sha256,
        pending_verify: cfg.rollback && state == Some(OtaState::PendingVerify),
        next_slot_size,
        www,
    })
}

/// The manifest's alternatives as the machine keeps them (at most
/// [`MAX_ALTERNATIVES`], which the manifest's validation guarantees).
fn alternatives(
    list: &[otter_release::Alternative],
) -> [Option<AlternativeInfo>; MAX_ALTERNATIVES] {
    let mut out = [None; MAX_ALTERNATIVES];
    for (slot, a) in out.iter_mut().zip(list) {
        *slot = Some(AlternativeInfo {
            encoding: match a.encoding {
                otter_release::Encoding::Gzip => ArtifactEncoding::Gzip,
                otter_release::Encoding::Delta => ArtifactEncoding::Delta,
                // A future encoding this device cannot apply.
                _ => ArtifactEncoding::Identity,
            },
            size: a.size,
            sha256: a.sha256.0,
            base_sha256: a.base_sha256.map(|d| d.0),
        });
    }
    out
}

fn compare(a: &str, b: &str) -> bool {
    otter_release::compare_versions(a, b) == core::cmp::Ordering::Equal
}

/// Whether `version` is in an app slot (other than the running one) that
/// the bootloader or the self-test marked INVALID or ABORTED: this device
/// installed it once and rolled it back.
fn rolled_back<F: NorFlash>(
    flash: &mut F,
    cfg: &otter_ota::DeviceConfig,
    running: SlotId,
    version: &str,
) -> bool {
    let Ok(map) = SlotMap::read(flash, cfg.table_offset) else {
        return false;
    };
    let slots: [Option<(SlotId, otter_ota::Region)>; 16] = {
        let mut a = [None; 16];
        for (i, (s, r)) in map.slots().take(16).enumerate() {
            if let Some(e) = a.get_mut(i) {
                *e = Some((s, *r));
            }
        }
        a
    };
    slots.iter().flatten().any(|(slot, region)| {
        *slot != running
            && matches!(
                running_state(flash, cfg, *slot),
                Ok(Some(OtaState::Invalid | OtaState::Aborted))
            )
            && verify_slot(flash, region, otter_format::image::VerifyOptions::new())
                .ok()
                .and_then(Result::ok)
                .and_then(|i| i.app_desc.map(|d| Text32::of(d.version())))
                .is_some_and(|v| v.as_str() == version)
    })
}
