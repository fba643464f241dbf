//! What the running agent shares between its HTTP handlers and its boot
//! loop. The flash is the device's state; what is kept here is what a real
//! firmware keeps in RAM (and RTC memory, which survives a soft reboot but
//! not a power cut): the running slot, the last update's outcome, events.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use otter_ota::SlotId;
use otter_sim::device::{LastRollback, RunningStatus, VirtualDevice};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

use crate::behavior::Behavior;

/// How many events status keeps.
pub const EVENT_LOG_LEN: usize = otter_device::service::EVENTS;

/// Why the device reboots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reboot {
    /// A new image was activated.
    Update,
    /// A new web UI was written and the NVS pointer switched to it.
    Frontend,
    /// The API asked for a rollback.
    Rollback,
    /// The API asked for a reboot.
    Requested,
    /// The self-test failed and the image was marked invalid.
    SelftestFailed,
}

/// The outcome of the last update attempt.
#[derive(Debug, Clone, Serialize)]
pub struct LastUpdate {
    /// `ok`, `rejected` (refused before or while writing, nothing switched),
    /// `aborted` (the client went away), `failed` (flash error), or
    /// `in_progress`.
    pub result: &'static str,
    /// The error, when it did not succeed.
    pub error: Option<ErrorBody>,
    /// What was uploaded: `firmware` or `www` (a web-UI image).
    pub kind: &'static str,
    /// The slot written.
    pub slot: Option<String>,
    /// The new image's version, once its descriptor was read.
    pub version: Option<String>,
    /// Bytes received.
    pub received: u64,
    /// Bytes announced (Content-Length), when known.
    pub total: Option<u64>,
    /// Boot number during which it happened.
    pub boot: u64,
    /// Seconds since the Unix epoch when it ended (or started, in progress).
    pub at: u64,
}

/// A JSON error body: `{ "error": CODE, "message": TEXT }`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub error: &'static str,
    /// What happened and what to do, for people.
    pub message: String,
}

/// One thing that happened, for status and logs.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Boot number.
    pub boot: u64,
    /// Milliseconds since that boot.
    pub uptime_ms: u64,
    /// What happened.
    pub message: String,
}

/// The current boot.
#[derive(Debug, Clone)]
pub struct BootInfo {
    /// Boot number since the agent started (1 = first power-on).
    pub count: u64,
    /// When it booted.
    pub at: Instant,
    /// The running slot.
    pub running: Option<SlotId>,
    /// The running firmware's behaviour.
    pub behavior: Behavior,
    /// The running firmware's version.
    pub version: String,
}

/// The self-test of a PENDING_VERIFY image.
#[derive(Debug, Clone, Serialize)]
pub struct SelfTest {
    /// `not_needed` (the image is not pending), `running`, `passed`, `failed`.
    pub state: &'static str,
    /// The window, in milliseconds.
    pub window_ms: u64,
    /// What the self-test concluded.
    pub detail: Option<String>,
}

/// A rollback the agent saw happen, with what it knows of why.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackRecord {
    /// Boot number at which it was detected.
    pub boot: u64,
    /// The slot rolled back from.
    pub from: String,
    /// The slot booted instead (`None` until the device has rebooted).
    pub to: Option<String>,
    /// What became of the slot rolled back from: `aborted` (still pending
    /// at a reboot) or `invalid` (marked so by the firmware).
    pub state: &'static str,
    /// The version rolled back from.
    pub version: Option<String>,
    /// Why.
    pub reason: String,
}

impl RollbackRecord {
    /// The status document's `last_rollback` for this record. Flash (`flash`,
    /// read from otadata) says that a rollback happened and survives power
    /// cuts; this record (RAM, like a firmware's RTC memory) says exactly
    /// which one and why, so it wins while the agent runs: after two
    /// rollbacks in a row both otadata entries are INVALID and flash cannot
    /// tell which came last.
    pub fn shown(
        self,
        flash: Option<&LastRollback>,
        boot: &BootInfo,
        running: Option<&RunningStatus>,
    ) -> LastRollback {
        let stale = self.superseded(boot, running);
        let same = flash.filter(|lr| lr.from == self.from);
        let state = same.map_or_else(|| self.state.to_string(), |lr| lr.state.clone());
        // The slot still holds the image rolled back from; flash's entry
        // carries its digest when it names the same slot.
        let sha256 = same.and_then(|lr| lr.sha256.clone());
        LastRollback {
            from: self.from,
            to: self.to,
            stale,
            version: self.version,
            sha256,
            state,
            reason: self.reason,
        }
    }

    /// Whether the rollback is history: a later boot runs another slot than
    /// the one rolled back to, and that image is confirmed (not pending
    /// verification) — a later update took. A reboot back into the same
    /// image keeps the rollback current. (A slot rolled back from boots
    /// again only once a new image was written to it, so running there is a
    /// later update too.)
    pub fn superseded(&self, boot: &BootInfo, running: Option<&RunningStatus>) -> bool {
        let Some(running) = running else {
            return false;
        };
        boot.count > self.boot
            && self.to.as_deref() != Some(running.slot.slot.as_str())
            && running.state.as_deref() != Some("pending_verify")
    }
}

/// State shared by the handlers and the boot loop.
pub struct Shared {
    device: Mutex<VirtualDevice>,
    token_hash: Option<[u8; 32]>,
    /// Held for the whole of an upload: one update at a time.
    pub update_lock: tokio::sync::Mutex<()>,
    boot: Mutex<BootInfo>,
    last_update: Mutex<Option<LastUpdate>>,
    selftest: Mutex<SelfTest>,
    last_rollback: Mutex<Option<RollbackRecord>>,
    boot_loop: Mutex<Option<crate::bootloop::BootLoop>>,
    events: Mutex<VecDeque<Event>>,
    reboot_tx: Mutex<Option<mpsc::UnboundedSender<Reboot>>>,
    ui: Mutex<Option<Arc<crate::www::MountedUi>>>,
    pull: std::sync::OnceLock<Arc<crate::pull::Pull>>,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (a
/// handler panic must not take the device down with it).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Shared {
    /// State for `device`, with an optional API token.
    pub fn new(device: VirtualDevice, token: Option<&str>) -> Self {
        Self {
            device: Mutex::new(device),
            token_hash: token.map(|t| Sha256::digest(t.as_bytes()).into()),
            update_lock: tokio::sync::Mutex::new(()),
            boot: Mutex::new(BootInfo {
                count: 0,
                at: Instant::now(),
                running: None,
                behavior: Behavior::Healthy,
                version: String::new(),
            }),
            last_update: Mutex::new(None),
            selftest: Mutex::new(SelfTest {
                state: "not_needed",
                window_ms: 0,
                detail: None,
            }),
            last_rollback: Mutex::new(None),
            boot_loop: Mutex::new(None),
            events: Mutex::new(VecDeque::new()),
            reboot_tx: Mutex::new(None),
            ui: Mutex::new(None),
            pull: std::sync::OnceLock::new(),
        }
    }

    /// The device (flash + config), locked. Never hold it across an await.
    pub fn device(&self) -> MutexGuard<'_, VirtualDevice> {
        lock(&self.device)
    }

    /// Whether a token is configured.
    pub fn auth_required(&self) -> bool {
        self.token_hash.is_some()
    }

    /// Checks a presented token in constant time (both sides are hashed
    /// first, so neither the content nor the length leaks through timing).
    pub fn token_ok(&self, presented: &str) -> bool {
        match &self.token_hash {
            None => true,
            Some(want) => {
                let got: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
                bool::from(got.ct_eq(want))
            }
        }
    }

    /// The current boot.
    pub fn boot(&self) -> BootInfo {
        lock(&self.boot).clone()
    }

    /// Records a new boot.
    pub fn set_boot(&self, info: BootInfo) {
        *lock(&self.boot) = info;
    }

    /// Milliseconds since the current boot.
    pub fn uptime_ms(&self) -> u64 {
        lock(&self.boot).at.elapsed().as_millis() as u64
    }

    /// The last update's outcome.
    pub fn last_update(&self) -> Option<LastUpdate> {
        lock(&self.last_update).clone()
    }

    /// Records the last update's outcome.
    pub fn set_last_update(&self, u: LastUpdate) {
        *lock(&self.last_update) = Some(u);
    }

    /// Updates the bytes received of an update in progress.
    pub fn note_progress(&self, received: u64) {
        if let Some(u) = lock(&self.last_update).as_mut() {
            if u.result == "in_progress" {
                u.received = received;
            }
        }
    }

    /// The self-test.
    pub fn selftest(&self) -> SelfTest {
        lock(&self.selftest).clone()
    }

    /// Updates the self-test.
    pub fn set_selftest(&self, s: SelfTest) {
        *lock(&self.selftest) = s;
    }

    /// The web UI this boot mounted, `None` when none is.
    pub fn ui(&self) -> Option<Arc<crate::www::MountedUi>> {
        lock(&self.ui).clone()
    }

    /// Sets the web UI this boot mounted.
    pub fn set_ui(&self, ui: Option<Arc<crate::www::MountedUi>>) {
        *lock(&self.ui) = ui;
    }

    /// The pull client, when the device pulls releases.
    pub fn pull(&self) -> Option<&Arc<crate::pull::Pull>> {
        self.pull.get()
    }

    /// Installs the pull client (once, before the first boot).
    pub fn set_pull(&self, pull: Arc<crate::pull::Pull>) {
        let _ = self.pull.set(pull);
    }

    /// The last rollback the agent saw.
    pub fn last_rollback(&self) -> Option<RollbackRecord> {
        lock(&self.last_rollback).clone()
    }

    /// Records a rollback.
    pub fn set_last_rollback(&self, r: RollbackRecord) {
        *lock(&self.last_rollback) = Some(r);
    }

    /// The running attempt's boot loop, if the running slot keeps crashing
    /// with nothing to roll it back.
    pub fn boot_loop(&self) -> Option<crate::bootloop::BootLoop> {
        lock(&self.boot_loop).clone()
    }

    /// Records (or, with `None`, clears) the boot loop.
    pub fn set_boot_loop(&self, b: Option<crate::bootloop::BootLoop>) {
        *lock(&self.boot_loop) = b;
    }

    /// Logs an event (and keeps the last [`EVENT_LOG_LEN`]).
    pub fn event(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!("{message}");
        let (boot, uptime_ms) = {
            let b = lock(&self.boot);
            (b.count, b.at.elapsed().as_millis() as u64)
        };
        let mut ev = lock(&self.events);
        if ev.len() == EVENT_LOG_LEN {
            ev.pop_front();
        }
        ev.push_back(Event {
            boot,
            uptime_ms,
            message,
        });
    }

    /// The recent events, oldest first.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.events).iter().cloned().collect()
    }

    /// Installs the channel the current boot listens on for reboots.
    pub fn set_reboot_channel(&self, tx: Option<mpsc::UnboundedSender<Reboot>>) {
        *lock(&self.reboot_tx) = tx;
    }

    /// Asks the device to reboot (after the current responses are sent).
    pub fn request_reboot(&self, why: Reboot) {
        if let Some(tx) = lock(&self.reboot_tx).as_ref() {
            let _ = tx.send(why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otter_sim::device::SlotLabel;

    fn record() -> RollbackRecord {
        RollbackRecord {
            boot: 4,
            from: "ota_1".into(),
            to: Some("ota_0".into()),
            state: "invalid",
            version: Some("3.0.0".into()),
            reason: "a rollback was requested".into(),
        }
    }

    fn boot(count: u64) -> BootInfo {
        BootInfo {
            count,
            at: Instant::now(),
            running: None,
            behavior: Behavior::Healthy,
            version: String::new(),
        }
    }

    fn running(slot: &str, state: &str) -> RunningStatus {
        RunningStatus {
            slot: SlotLabel {
                label: slot.into(),
                slot: slot.into(),
                offset: 0,
                size: 0,
            },
            version: "4.0.0".into(),
            project_name: "p".into(),
            idf_ver: String::new(),
            secure_version: 0,
            state: Some(state.into()),
            image_len: None,
            sha256: None,
            summary: String::new(),
        }
    }

    #[test]
    fn a_rollback_goes_stale_only_when_a_later_confirmed_image_runs_elsewhere() {
        let r = record();
        // Where it rolled back to, at that boot and after a plain reboot.
        assert!(!r.superseded(&boot(4), Some(&running("ota_0", "valid"))));
        assert!(!r.superseded(&boot(5), Some(&running("ota_0", "valid"))));
        // A later update, still pending, then confirmed; in either slot.
        assert!(!r.superseded(&boot(5), Some(&running("ota_1", "pending_verify"))));
        assert!(r.superseded(&boot(5), Some(&running("ota_1", "valid"))));
        assert!(r.superseded(&boot(6), Some(&running("factory", "undefined"))));
        // Nothing runs: nothing supersedes it.
        assert!(!r.superseded(&boot(6), None));
    }

    #[test]
    fn the_agents_record_wins_over_flash_and_keeps_flash_state_for_its_slot() {
        let flash = LastRollback {
            from: "ota_1".into(),
            to: Some("factory".into()),
            stale: false,
            version: Some("3.0.0".into()),
            sha256: Some("ab".repeat(32)),
            state: "aborted".into(),
            reason: "flash".into(),
        };
        let shown = record().shown(Some(&flash), &boot(4), Some(&running("ota_0", "valid")));
        assert_eq!(
            (
                shown.from.as_str(),
                shown.to.as_deref(),
                shown.state.as_str(),
                shown.stale
            ),
            ("ota_1", Some("ota_0"), "aborted", false)
        );
        assert_eq!(
            shown.sha256,
            Some("ab".repeat(32)),
            "flash's digest of the slot"
        );
        let other = LastRollback {
            from: "ota_0".into(),
            ..flash
        };
        let shown = record().shown(Some(&other), &boot(4), Some(&running("ota_0", "valid")));
        assert_eq!(
            (shown.from.as_str(), shown.state.as_str(), shown.sha256),
            ("ota_1", "invalid", None)
        );
    }
}
