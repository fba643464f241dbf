//! The OTA service on top of [`crate::http`]: the device's state
//! ([`Device`]: what runs, the one update at a time, the records of the last
//! update and rollback, the self-test window) and the per-socket state
//! machine ([`Connection`]) that routes every endpoint of
//! `docs/device-api.md`.
//!
//! The platform supplies what differs between a chip and the virtual device
//! through [`Platform`]: the web-UI pointer in NVS, a LittleFS content
//! check, the web UI's files, the anti-rollback eFuse and the self-test
//! verdict. Reboots are [`Action`]s, so the caller flushes the answer first.
//!
//! # Self-test policy
//!
//! [`Device::boot`] notes the running slot; when its otadata state is
//! PENDING_VERIFY (rollback on), the self-test runs for
//! [`DeviceOptions::selftest_window_ms`]. [`Device::tick`] at the end of the
//! window asks [`Platform::self_test`]: passed confirms the image
//! (`esp_ota_mark_app_valid_cancel_rollback`, which also raises the
//! anti-rollback counter to the image's `secure_version`), failed marks it
//! invalid and asks for a reboot into the previous image.
//!
//! # Trailing data
//!
//! A firmware upload with bytes after the end of the app image is refused
//! with 422 `trailing_data` as soon as they arrive: they would be stored
//! unchecked, and the stored image's SHA-256 would no longer be the file's.

mod conn;
mod events;
mod pulled;
mod status;
mod update;

pub use events::{Event, EventKind, Events, EVENTS};

pub use conn::{Action, Connection, Output, RebootReason, MIN_TX_BUF};
pub use pulled::SECTOR;
pub use update::{Finished, Protocol};

use embedded_storage::nor_flash::NorFlash;
use otter_format::image::FixedStr;
use otter_format::otadata::OtaState;
use otter_ota::lifecycle::{confirm, mark_invalid_and_rollback, running_state};
use otter_ota::session::UpdateSession;
use otter_ota::{verify_slot, DeviceConfig, SlotId};
use sha2::{Digest, Sha256};

use crate::error::DeviceError;
use crate::www::{UiInspector, WwwPointer, WwwUpload};

/// A web-UI file the platform serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRef {
    /// The platform's handle.
    pub id: u32,
    /// Length in bytes.
    pub len: u32,
}

/// Where the web UI's files come from (the mounted LittleFS on a chip).
pub trait FileSource {
    /// Whether a web UI is mounted at all.
    fn mounted(&self) -> bool;
    /// The file at `path` (a clean absolute path like `/index.html`).
    fn lookup(&mut self, path: &str) -> Option<FileRef>;
    /// Reads up to `buf.len()` bytes of file `id` from `offset`; returns how
    /// many were read (0 only at the end).
    fn read_file(&mut self, id: u32, offset: u32, buf: &mut [u8]) -> usize;
}

/// What the self-test says at the end of its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfTestVerdict {
    /// The image works: confirm it.
    Passed,
    /// The image is broken: mark it invalid and roll back.
    Failed,
}

/// A status-document field whose value the platform may keep itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusField {
    /// `pull`: the pull client's state (`null` without one).
    Pull,
    /// `last_rollback`: a platform that watches its boots (crashes, hangs,
    /// reboots before a confirm) knows rollbacks the service never saw.
    LastRollback,
    /// `boot_loop`: a platform that counts crashes across boots.
    BootLoop,
    /// `www`: a platform with a LittleFS reader can say more of each slot
    /// (files, `/index.html`, SHA-256, why it does not mount).
    Www,
}

/// The world outside the service.
pub trait Platform<F: NorFlash>: WwwPointer<F> + UiInspector<F> + FileSource {
    /// Writes the JSON value of `field` into `out` and returns `true`, or
    /// returns `false` to let the service write its own (the default).
    fn status_field(
        &mut self,
        flash: &mut F,
        field: StatusField,
        out: &mut crate::JsonOut<'_>,
    ) -> bool {
        let _ = (flash, field, out);
        false
    }

    /// Raises the anti-rollback eFuse counter to `secure_version`
    /// (`esp_efuse_update_secure_version`). `false` when the burn failed.
    fn raise_secure_version(&mut self, secure_version: u32) -> bool;
    /// The self-test's verdict on the running image.
    fn self_test(&mut self) -> SelfTestVerdict;

    /// The decoder RAM this device lends to compressed and delta updates
    /// ([`crate::decode`]): the same buffers on every call while an update
    /// runs. The default lends none, so such uploads are answered 415
    /// `decoder_unavailable` (before anything is erased) and plain images
    /// work as before.
    fn decoder_ram(&mut self) -> crate::decode::DecoderRam<'_> {
        crate::decode::DecoderRam::NONE
    }
}

/// Who brings a broken new image back (status `rollback_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackMode {
    /// The bootloader has app rollback: it boots a new image as
    /// PENDING_VERIFY and rolls back one that is not confirmed.
    Bootloader,
    /// The bootloader has none; the application counts a new image's trial
    /// boots and switches back itself (`otter_ota::trial`).
    AppTrial,
    /// A firmware that checks at boot could not tell this boot (the running
    /// image was confirmed already): the next update tells.
    Undetermined,
    /// Neither: a new image is confirmed as it boots.
    Off,
}

impl RollbackMode {
    /// The status document's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bootloader => "bootloader",
            Self::AppTrial => "app_trial",
            Self::Undetermined => "undetermined",
            Self::Off => "off",
        }
    }
}

/// What the service is configured with.
#[derive(Debug, Clone, Copy)]
pub struct DeviceOptions {
    /// The bootloader and `esp_ota_ops` configuration.
    pub cfg: DeviceConfig,
    /// SHA-256 of the API token, `None` when the device has none (anyone
    /// who reaches it can flash it).
    pub token_sha256: Option<[u8; 32]>,
    /// How long a new image's self-test runs before it is judged.
    pub selftest_window_ms: u64,
    /// The Update page, built into the firmware.
    pub update_page: &'static [u8],
    /// Whether the device pulls releases (`POST /api/ota/check`).
    pub pull: bool,
    /// How long `POST /api/ota/check` waits for the pull client's decision
    /// (the manifest fetched and checked, not the download) before 503
    /// `no_decision`.
    pub check_wait_ms: u64,
    /// The behaviour profile shown in the status (virtual device), or "".
    pub behavior: &'static str,
    /// Who rolls a broken new image back, as the platform found out;
    /// `None`: from `cfg.rollback` (`bootloader` or `off`).
    pub rollback_mode: Option<RollbackMode>,
    /// HTTP limits.
    pub limits: crate::http::Limits,
    /// What the device's littlefs mounts (web-UI uploads and boot).
    pub lfs: crate::www::MountLimits,
}

impl DeviceOptions {
    /// Options for `cfg` with no token, a 3 s self-test window, an empty
    /// Update page and default limits.
    pub const fn new(cfg: DeviceConfig) -> Self {
        Self {
            cfg,
            token_sha256: None,
            selftest_window_ms: 3000,
            update_page: b"",
            pull: false,
            check_wait_ms: 60_000,
            behavior: "",
            rollback_mode: None,
            limits: crate::http::Limits::DEFAULT,
            lfs: crate::www::MountLimits::ESP_LITTLEFS,
        }
    }
}

/// A short text copied out of an app descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Text32 {
    bytes: [u8; 32],
    len: u8,
}

impl Text32 {
    /// Copies a descriptor string.
    pub fn of(s: FixedStr<'_>) -> Self {
        let b = s.bytes();
        let n = b.len().min(32);
        let mut out = Self::default();
        if let (Some(d), Some(src)) = (out.bytes.get_mut(..n), b.get(..n)) {
            d.copy_from_slice(src);
        }
        out.len = n as u8;
        out
    }

    /// The text (lossy: invalid UTF-8 is cut at the first bad byte).
    pub fn as_str(&self) -> &str {
        let b = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        match core::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(b.get(..e.valid_up_to()).unwrap_or_default())
                .unwrap_or_default(),
        }
    }
}

impl core::fmt::Debug for Text32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// The decision of a release check, as `POST /api/ota/check` answers it
/// (docs/pull.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    /// 200: the running firmware (and web UI) are the release's.
    UpToDate,
    /// 200: a newer firmware waits for the running one's confirm.
    WaitingForConfirm,
    /// 202: downloading the release (follow `pull.step` in the status).
    Updating,
    /// 422: the release is not for this device (or not newer, or below the
    /// anti-rollback counter, or its signature does not check).
    Refused,
    /// 502: the server or the network failed.
    Failed,
    /// 409: an update is in progress.
    Busy,
}

impl CheckResult {
    /// The `result` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::UpToDate => "up_to_date",
            Self::WaitingForConfirm => "waiting_for_confirm",
            Self::Updating => "updating",
            Self::Refused => "refused",
            Self::Failed => "failed",
            Self::Busy => "busy",
        }
    }

    /// The HTTP status of the answer.
    pub fn status(self) -> u16 {
        match self {
            Self::UpToDate | Self::WaitingForConfirm => 200,
            Self::Updating => 202,
            Self::Refused => 422,
            Self::Failed => 502,
            Self::Busy => 409,
        }
    }
}

/// How the last update ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateResult {
    /// Written, verified and selected.
    Ok,
    /// Refused (bad image, wrong size, ...).
    Rejected,
    /// The client went away or the body broke off.
    Aborted,
    /// The device failed (flash).
    Failed,
    /// Still being written.
    InProgress,
}

impl UpdateResult {
    /// The status document's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Rejected => "rejected",
            Self::Aborted => "aborted",
            Self::Failed => "failed",
            Self::InProgress => "in_progress",
        }
    }
}

/// What was updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// An app image.
    Firmware,
    /// A web-UI image.
    Www,
}

impl UpdateKind {
    /// The status document's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Firmware => "firmware",
            Self::Www => "www",
        }
    }
}

/// The record of the last update attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastUpdate {
    /// How it ended.
    pub result: UpdateResult,
    /// Why it failed.
    pub error: Option<DeviceError>,
    /// Firmware or web UI.
    pub kind: UpdateKind,
    /// Which protocol carried it.
    pub protocol: Protocol,
    /// The slot written (`ota_1`, or the web-UI slot index as `Ota(n)` is
    /// not used: see `www_slot`).
    pub slot: Option<SlotId>,
    /// The web-UI slot written.
    pub www_slot: Option<u8>,
    /// The new image's version.
    pub version: Option<Text32>,
    /// Bytes received (the transfer's: compressed, or the patch).
    pub received: u64,
    /// Bytes announced.
    pub total: Option<u64>,
    /// How the firmware travelled (plain, gzip, a delta), once known;
    /// `None` for a web UI and before a sniffed upload's first byte.
    pub encoding: Option<crate::decode::Encoding>,
    /// Boot number.
    pub boot: u32,
    /// `now` when it ended (ms).
    pub at: u64,
}

/// Why the last rollback happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackReason {
    /// `POST /api/ota/rollback`.
    Requested,
    /// The self-test failed.
    SelfTestFailed,
}

/// The record of the last rollback made by this service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRollback {
    /// The slot rolled back from.
    pub from: SlotId,
    /// Its version.
    pub version: Option<Text32>,
    /// Why.
    pub reason: RollbackReason,
}

/// The self-test of a newly booted image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfTest {
    /// The running image is not pending verification.
    NotNeeded,
    /// Running until `deadline` (ms).
    Running {
        /// When it is judged.
        deadline: u64,
    },
    /// Passed and confirmed.
    Passed,
    /// Failed (marked invalid, or confirm/rollback failed).
    Failed,
}

impl SelfTest {
    /// The status document's name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::NotNeeded => "not_needed",
            Self::Running { .. } => "running",
            Self::Passed => "passed",
            Self::Failed => "failed",
        }
    }
}

/// The update being written, if any: the one-at-a-time lock.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // fixed size is the point: no heap
pub(crate) enum Upload {
    Idle,
    Firmware {
        session: UpdateSession,
        /// Plain, compressed or a patch (the big state is lent by the
        /// platform, [`Platform::decoder_ram`]).
        decoder: crate::decode::Decoder,
    },
    Www {
        upload: WwwUpload,
    },
    /// An update the platform writes itself (a pull), holding the lock.
    External {
        kind: UpdateKind,
    },
}

pub use crate::www::WwwState;

/// The device's state, shared by all connections.
#[derive(Debug, Clone)]
pub struct Device {
    pub(crate) opts: DeviceOptions,
    pub(crate) running: Option<SlotId>,
    pub(crate) boot_count: u32,
    pub(crate) boot_at: u64,
    pub(crate) selftest: SelfTest,
    pub(crate) last_update: Option<LastUpdate>,
    pub(crate) last_rollback: Option<LastRollback>,
    pub(crate) upload: Upload,
    pub(crate) www: Option<WwwState>,
    /// SHA-256 of the running image, computed once per boot.
    pub(crate) running_sha: Option<(SlotId, u32, [u8; 32])>,
    pub(crate) events: Events,
    /// `now` of the latest call that passed it, for event times.
    pub(crate) last_now: u64,
}

impl Device {
    /// A device that has not booted yet (call [`Device::boot`]).
    pub fn new(opts: DeviceOptions) -> Self {
        Self {
            opts,
            running: None,
            boot_count: 0,
            boot_at: 0,
            selftest: SelfTest::NotNeeded,
            last_update: None,
            last_rollback: None,
            upload: Upload::Idle,
            www: None,
            running_sha: None,
            events: Events::default(),
            last_now: 0,
        }
    }

    /// The configuration (the anti-rollback counter follows confirms).
    pub fn config(&self) -> &DeviceConfig {
        &self.opts.cfg
    }

    /// The options, to change between boots (the eFuse counter the
    /// bootloader raised, the behaviour profile shown in the status).
    pub fn options_mut(&mut self) -> &mut DeviceOptions {
        &mut self.opts
    }

    /// The running slot.
    pub fn running(&self) -> Option<SlotId> {
        self.running
    }

    /// The self-test state.
    pub fn selftest(&self) -> SelfTest {
        self.selftest
    }

    /// The last update's record.
    pub fn last_update(&self) -> Option<&LastUpdate> {
        self.last_update.as_ref()
    }

    /// The last rollback's record.
    pub fn last_rollback(&self) -> Option<&LastRollback> {
        self.last_rollback.as_ref()
    }

    /// Whether an update is being written.
    pub fn update_in_progress(&self) -> bool {
        !matches!(self.upload, Upload::Idle)
    }

    /// Bytes received by the update being written and the length announced,
    /// `None` when none is.
    pub fn upload_progress(&self) -> Option<(u64, Option<u64>)> {
        let received = match &self.upload {
            Upload::Idle | Upload::External { .. } => return None,
            Upload::Firmware { decoder, .. } => decoder.consumed(),
            Upload::Www { upload } => u64::from(upload.received()),
        };
        Some((received, self.last_update.as_ref().and_then(|r| r.total)))
    }

    /// Takes the one-update-at-a-time lock for an update the platform writes
    /// itself (the pull client's download of `kind`): uploads get 409 `busy`
    /// until [`Device::end_external`]. 409 `busy` when an update runs.
    pub fn begin_external(&mut self, kind: UpdateKind) -> Result<(), DeviceError> {
        if self.update_in_progress() {
            return Err(DeviceError::Busy);
        }
        self.upload = Upload::External { kind };
        Ok(())
    }

    /// A web-UI writer into the slot an upload would take (the one not
    /// mounted), for an update the platform streams itself under
    /// [`Device::begin_external`] (a pull); finish it with
    /// [`Device::finish_external_www`].
    pub fn begin_external_www<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        size: u64,
        expected: Option<[u8; 32]>,
    ) -> Result<WwwUpload, DeviceError> {
        if self.external_update() != Some(UpdateKind::Www) {
            return Err(DeviceError::Busy);
        }
        match conn::begin_www(self, flash, platform, Some(size), Some(size), expected)? {
            Upload::Www { upload } => Ok(upload),
            _ => Err(DeviceError::Busy),
        }
    }

    /// Verifies a web-UI image written by [`Device::begin_external_www`]'s
    /// writer (read back in chunks, superblock and mount limits, the
    /// platform's inspector) and switches the pointer; the caller reboots.
    pub fn finish_external_www<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        upload: WwwUpload,
    ) -> Result<crate::www::WwwDone, DeviceError> {
        upload.finish(flash, platform, &self.opts.lfs)
    }

    /// What the platform writes under [`Device::begin_external`], if anything.
    pub fn external_update(&self) -> Option<UpdateKind> {
        match self.upload {
            Upload::External { kind } => Some(kind),
            _ => None,
        }
    }

    /// Releases the lock [`Device::begin_external`] took (nothing otherwise).
    pub fn end_external(&mut self) {
        if matches!(self.upload, Upload::External { .. }) {
            self.upload = Upload::Idle;
        }
    }

    /// Bytes of the update being written received so far (for progress
    /// logs), `None` when no update is in progress.
    pub fn upload_received(&self) -> Option<u64> {
        self.upload_progress().map(|(received, _)| received)
    }

    /// The web UI as found at boot.
    pub fn www(&self) -> Option<&WwwState> {
        self.www.as_ref()
    }

    /// Starts a boot: `running` is the slot the bootloader booted. Reads the
    /// running state (self-test window) and the web-UI pointer, and mounts
    /// the selected UI slot if it passes the upload's checks (superblock,
    /// then every file read to its end: [`crate::www::check_files`]), else
    /// the other one, recording why in [`WwwState::fallback`]. Writes
    /// nothing.
    pub fn boot<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        running: Option<SlotId>,
        now: u64,
    ) -> Result<(), DeviceError> {
        self.running = running;
        self.boot_count += 1;
        self.boot_at = now;
        self.upload = Upload::Idle;
        self.running_sha = None;
        self.selftest = SelfTest::NotNeeded;
        self.last_now = now;
        self.event(EventKind::Boot { slot: running });
        if let Some(slot) = running {
            let state = running_state(flash, &self.opts.cfg, slot)
                .map_err(|e| DeviceError::from_ota(&e))?;
            if self.opts.cfg.rollback && state == Some(OtaState::PendingVerify) {
                self.selftest = SelfTest::Running {
                    deadline: now.saturating_add(self.opts.selftest_window_ms),
                };
            }
        }
        self.www = crate::www::boot(flash, platform, self.opts.cfg.table_offset, &self.opts.lfs)?;
        Ok(())
    }

    /// Runs what is due at `now`: the self-test verdict at the end of its
    /// window. A failed self-test asks for a reboot.
    pub fn tick<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        now: u64,
    ) -> Result<Option<RebootReason>, DeviceError> {
        self.last_now = now;
        let SelfTest::Running { deadline } = self.selftest else {
            return Ok(None);
        };
        // An upload in progress is waited for (its answer and reboot come
        // first); a pull's download never holds up the verdict.
        let uploading = matches!(self.upload, Upload::Firmware { .. } | Upload::Www { .. });
        if now < deadline || uploading {
            return Ok(None);
        }
        let Some(running) = self.running else {
            return Ok(None);
        };
        match platform.self_test() {
            SelfTestVerdict::Passed => match self.confirm(flash, platform, running) {
                Ok(_) => {
                    self.selftest = SelfTest::Passed;
                    Ok(None)
                }
                Err(e) => {
                    self.selftest = SelfTest::Failed;
                    Err(e)
                }
            },
            SelfTestVerdict::Failed => {
                self.selftest = SelfTest::Failed;
                self.rollback(flash, RollbackReason::SelfTestFailed)?;
                Ok(Some(RebootReason::SelfTestFailed))
            }
        }
    }

    /// `esp_ota_mark_app_valid_cancel_rollback`: confirms the running image
    /// and, with anti-rollback, raises the eFuse counter to its
    /// `secure_version`. Returns whether anything was pending.
    pub fn confirm<F: NorFlash, P: Platform<F>>(
        &mut self,
        flash: &mut F,
        platform: &mut P,
        running: SlotId,
    ) -> Result<bool, DeviceError> {
        let cfg = self.opts.cfg;
        let done = confirm(flash, &cfg, running).map_err(|e| DeviceError::from_ota(&e))?;
        if done {
            self.event(EventKind::Confirmed { slot: running });
            if matches!(self.selftest, SelfTest::Running { .. }) {
                self.selftest = SelfTest::Passed;
            }
            if let Some(counter) = cfg.anti_rollback {
                let sv = self.running_secure_version(flash, running)?;
                if sv > counter && platform.raise_secure_version(sv) {
                    self.opts.cfg.anti_rollback = Some(sv);
                }
            }
        }
        Ok(done)
    }

    fn running_secure_version<F: NorFlash>(
        &mut self,
        flash: &mut F,
        running: SlotId,
    ) -> Result<u32, DeviceError> {
        let map = otter_ota::SlotMap::read(flash, self.opts.cfg.table_offset)
            .map_err(|e| DeviceError::from_ota(&e))?;
        let region = *map.region(running).ok_or(DeviceError::NotRunning)?;
        let mut opts = otter_format::image::VerifyOptions::new();
        opts.chip = Some(self.opts.cfg.chip);
        let info = verify_slot(flash, &region, opts)
            .map_err(|e| DeviceError::from_ota(&e))?
            .map_err(DeviceError::Image)?;
        Ok(info.app_desc.map_or(0, |d| d.secure_version()))
    }

    /// `esp_ota_mark_app_invalid_rollback`: marks the running image invalid
    /// (refused when nothing else would boot, or only images below the
    /// anti-rollback counter) and records why. The caller reboots.
    pub fn rollback<F: NorFlash>(
        &mut self,
        flash: &mut F,
        reason: RollbackReason,
    ) -> Result<SlotId, DeviceError> {
        let from = self.running.ok_or(DeviceError::NotRunning)?;
        let version = self.slot_version(flash, from);
        mark_invalid_and_rollback(flash, &self.opts.cfg).map_err(|e| DeviceError::from_ota(&e))?;
        self.event(EventKind::RolledBack { from, reason });
        self.last_rollback = Some(LastRollback {
            from,
            version,
            reason,
        });
        Ok(from)
    }

    fn slot_version<F: NorFlash>(&self, flash: &mut F, slot: SlotId) -> Option<Text32> {
        let map = otter_ota::SlotMap::read(flash, self.opts.cfg.table_offset).ok()?;
        let region = *map.region(slot)?;
        let info = verify_slot(flash, &region, otter_format::image::VerifyOptions::new())
            .ok()?
            .ok()?;
        info.app_desc.map(|d| Text32::of(d.version()))
    }

    /// Whether `presented` (the `Authorization` header's value) grants
    /// access: `Ok` without a token; 401 without `Bearer`, 403 when wrong.
    /// Both sides are compared as SHA-256 digests, in constant time.
    pub fn check_auth(&self, presented: Option<&[u8]>) -> Result<(), DeviceError> {
        let Some(want) = self.opts.token_sha256 else {
            return Ok(());
        };
        let Some(v) = presented else {
            return Err(DeviceError::Unauthorized);
        };
        let token = v
            .strip_prefix(b"Bearer ")
            .or_else(|| v.strip_prefix(b"bearer "))
            .ok_or(DeviceError::Unauthorized)?;
        let got: [u8; 32] = Sha256::digest(crate::http::trim(token)).into();
        let diff = got
            .iter()
            .zip(want.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            Ok(())
        } else {
            Err(DeviceError::Forbidden)
        }
    }

    pub(crate) fn record(&mut self, r: LastUpdate) {
        self.last_now = r.at;
        self.event(EventKind::Update {
            kind: r.kind,
            result: r.result,
            code: r.error.as_ref().map(DeviceError::code),
        });
        self.last_update = Some(r);
    }

    pub(crate) fn event(&mut self, kind: EventKind) {
        self.events.push(Event {
            boot: self.boot_count,
            uptime_ms: self.last_now.saturating_sub(self.boot_at),
            kind,
        });
    }

    /// The recent events, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }
}
