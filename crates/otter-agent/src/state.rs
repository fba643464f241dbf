//! What the boot loop, the pull client and the core's status hooks share
//! about the virtual device beyond the core's own state: the flash (the
//! device), the current boot, the rollbacks seen across boots (a crash or a
//! hang before a confirm, which the core in the crashed boot never sees),
//! the boot loop, and where reboot requests go. Everything a device's
//! firmware keeps (uploads, the self-test, confirm, the status document) is
//! `otter-device`'s, in [`crate::net::Core`].

use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use otter_ota::SlotId;
use otter_sim::device::VirtualDevice;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::behavior::Behavior;

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

/// A JSON error body: `{ "error": CODE, "message": TEXT }`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub error: &'static str,
    /// What happened and what to do, for people.
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

/// State shared by the boot loop, the pull client and the status hooks.
pub struct Shared {
    device: Mutex<VirtualDevice>,
    boot: Mutex<BootInfo>,
    last_rollback: Mutex<Option<RollbackRecord>>,
    boot_loop: Mutex<Option<crate::bootloop::BootLoop>>,
    reboot_tx: Mutex<Option<mpsc::UnboundedSender<Reboot>>>,
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
    /// State for `device`.
    pub fn new(device: VirtualDevice) -> Self {
        Self {
            device: Mutex::new(device),
            boot: Mutex::new(BootInfo {
                count: 0,
                at: Instant::now(),
                running: None,
                behavior: Behavior::Healthy,
                version: String::new(),
            }),
            last_rollback: Mutex::new(None),
            boot_loop: Mutex::new(None),
            reboot_tx: Mutex::new(None),
        }
    }

    /// The device (flash + config), locked. Never hold it across an await,
    /// and never take the core's lock while holding it.
    pub fn device(&self) -> MutexGuard<'_, VirtualDevice> {
        lock(&self.device)
    }

    /// The current boot.
    pub fn boot(&self) -> BootInfo {
        lock(&self.boot).clone()
    }

    /// Records a new boot.
    pub fn set_boot(&self, info: BootInfo) {
        *lock(&self.boot) = info;
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

    /// Logs what the virtual device saw (boots, crashes, rollbacks, pulls).
    /// The status document's `events[]` are the core's.
    pub fn event(&self, message: impl Into<String>) {
        tracing::info!("{}", message.into());
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
