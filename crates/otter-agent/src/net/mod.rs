//! The virtual device on `otter-device`: a tokio adapter that reads TCP
//! bytes into the core's [`Connection`] machine with the time, writes out
//! what it answers and acts on its [`Action`]s (reboots and release checks
//! go to the caller's [`Hooks`]), and the [`Platform`](platform::SimPlatform)
//! over the simulator's flash.
//!
//! The core owns every deadline; the adapter only calls
//! [`Connection::poll`] every [`POLL`] while a socket is quiet, and
//! [`Device::tick`] as often for the self-test window. At most
//! [`MAX_CONNECTIONS`] sockets are served: one more evicts the one idle the
//! longest, preferring connections that are not receiving an upload or
//! awaiting a release check.

mod esphome;
mod espota;
pub mod platform;
pub mod uploaders;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use otter_device::http::DEFAULT_MAX_HEAD;
use otter_device::service::{
    Action, CheckResult, Connection, Device, DeviceOptions, Output, RebootReason, MIN_TX_BUF,
};
use otter_sim::device::{DeviceError, PowerOn, VirtualDevice};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::behavior::Behavior;
use platform::SimPlatform;

/// Sockets served at once.
pub const MAX_CONNECTIONS: usize = 8;
/// How often quiet sockets and the self-test are polled.
pub const POLL: Duration = Duration::from_millis(50);
const RX_BUF: usize = 16 * 1024;
const TX_BUF: usize = 2 * MIN_TX_BUF;

/// Where the simulator's device (flash, config) lives: the core locks it
/// for each call, after its own lock (never the other way round).
pub trait Host: Send + Sync + 'static {
    /// The device, locked.
    fn device(&self) -> MutexGuard<'_, VirtualDevice>;
}

impl Host for Mutex<VirtualDevice> {
    fn device(&self) -> MutexGuard<'_, VirtualDevice> {
        self.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Host for crate::state::Shared {
    fn device(&self) -> MutexGuard<'_, VirtualDevice> {
        crate::state::Shared::device(self)
    }
}

/// The core's state and the platform, behind one lock.
pub struct Core {
    /// The core's device state.
    pub dev: Device,
    /// The platform.
    pub plat: SimPlatform,
    /// ESPHome's OTA and espota, besides HTTP ([`uploaders`]).
    pub uploaders: uploaders::Uploaders,
    epoch: Instant,
    /// The last 5% mark of the upload logged.
    progress: u64,
}

impl Core {
    /// The core for `vd`, with the token and self-test window given.
    pub fn new(vd: &VirtualDevice, token: Option<&str>, selftest_window: Duration) -> Self {
        let mut opts = DeviceOptions::new(*vd.config());
        opts.token_sha256 = token.map(|t| Sha256::digest(t.as_bytes()).into());
        opts.selftest_window_ms = u64::try_from(selftest_window.as_millis()).unwrap_or(u64::MAX);
        opts.update_page = crate::api::UPDATE_PAGE.as_bytes();
        Self {
            dev: Device::new(opts),
            plat: SimPlatform::default(),
            uploaders: uploaders::Uploaders::default(),
            epoch: Instant::now(),
            progress: 0,
        }
    }

    /// Milliseconds since the core was made: the `now` of every call.
    pub fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The power-on: the bootloader model and start-up recovery
    /// ([`VirtualDevice::power_on`]), then the core's boot (self-test
    /// window, web-UI mount) running `behavior`, then the UI's files.
    ///
    /// `behavior` picks what the booted firmware does from what booted (the
    /// profile by version, [`booted_version`]). This is the virtual device's
    /// only power-on sequence.
    pub fn power_on(
        &mut self,
        vd: &mut VirtualDevice,
        behavior: impl FnOnce(&PowerOn) -> Behavior,
    ) -> Result<(PowerOn, Behavior), DeviceError> {
        let power = vd.power_on()?;
        let behavior = behavior(&power);
        self.boot(vd, &power, behavior);
        Ok((power, behavior))
    }

    /// The core's part of a power-on that [`VirtualDevice::power_on`] made.
    fn boot(&mut self, vd: &mut VirtualDevice, power: &PowerOn, behavior: Behavior) {
        let now = self.now();
        let opts = self.dev.options_mut();
        opts.cfg = *vd.config();
        opts.behavior = behavior.name();
        self.plat.behavior = behavior;
        self.plat.www = power.www.clone().zip(vd.www_layout());
        if let Some(l) = vd.www_layout() {
            opts.lfs.name_max = l.name_max;
        }
        self.plat.nvs = vd
            .www_layout()
            .and_then(|l| l.nvs)
            .map(|r| (r.offset, r.size));
        let Self { dev, plat, .. } = self;
        if let Err(e) = dev.boot(vd.flash(), plat, power.running, now) {
            tracing::warn!("the device core's boot failed: {e}");
        }
        let slot = dev
            .www()
            .and_then(|w| w.active.and_then(|a| w.slots.get(usize::from(a)).copied()));
        if let Err(e) = plat.mount(vd.flash(), slot.as_ref()) {
            tracing::warn!("web UI: mounting failed: {e}");
        }
    }

    fn handle(
        &mut self,
        vd: &mut VirtualDevice,
        conn: &mut Connection<'_>,
        input: &[u8],
        tx: &mut [u8],
    ) -> Output {
        let now = self.now();
        let Self { dev, plat, .. } = self;
        let out = conn.handle(dev, vd.www_flash(), plat, input, now, tx);
        self.persist_efuse(vd);
        self.log_progress();
        out
    }

    /// Logs each 5% of an upload whose length was announced.
    fn log_progress(&mut self) {
        use otter_device::service::UpdateResult;
        let (received, total) = match self.dev.upload_progress() {
            Some((r, Some(t))) => (r, t),
            Some((_, None)) => return,
            None => match self.dev.last_update() {
                Some(u) if self.progress > 0 && u.result == UpdateResult::Ok => {
                    let t = u.total.unwrap_or(u.received);
                    (t, t)
                }
                _ => {
                    self.progress = 0;
                    return;
                }
            },
        };
        let pct = received
            .saturating_mul(100)
            .checked_div(total)
            .unwrap_or(100);
        while self.progress + 5 <= pct.min(100) {
            self.progress += 5;
            tracing::info!(
                "update progress: {}% ({received} of {total} bytes)",
                self.progress
            );
        }
        if self.progress >= 100 || self.dev.upload_progress().is_none() {
            self.progress = 0;
        }
    }

    /// Runs the core's timers: the self-test verdict.
    pub fn tick(&mut self, vd: &mut VirtualDevice) -> Option<RebootReason> {
        let now = self.now();
        let Self { dev, plat, .. } = self;
        let r = dev.tick(vd.flash(), plat, now);
        self.persist_efuse(vd);
        match r {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("self-test: {e}");
                None
            }
        }
    }

    fn persist_efuse(&mut self, vd: &mut VirtualDevice) {
        if let Some(v) = self.plat.burned.take() {
            if let Err(e) = vd.raise_anti_rollback(v) {
                tracing::warn!("burning the anti-rollback counter to {v}: {e}");
            }
        }
    }
}

/// The version in the booted image's app descriptor ("" when none boots
/// or it has none).
pub fn booted_version(power: &PowerOn) -> String {
    power
        .image
        .as_ref()
        .and_then(|i| i.app_desc.as_ref())
        .map(|d| String::from_utf8_lossy(d.version().bytes()).into_owned())
        .unwrap_or_default()
}

/// Locks the core (a panicked holder does not stop the device).
pub fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

/// A release check's decision: the result and the pull client's JSON
/// report, for [`Connection::check_decided`].
pub type Decision = (CheckResult, String);

/// Starts a release check (`POST /api/ota/check`) and gives the receiver of
/// its decision; `None` when no pull task runs (the device is rebooting).
pub type StartCheck = Arc<dyn Fn() -> Option<oneshot::Receiver<Decision>> + Send + Sync>;

/// What the adapter hands to the rest of the agent.
#[derive(Clone)]
pub struct Hooks {
    /// Where reboot requests go (after the answer was flushed).
    pub reboot: mpsc::UnboundedSender<RebootReason>,
    /// Starts a release check (`POST /api/ota/check`).
    pub check: Option<StartCheck>,
}

struct Slot {
    id: u64,
    last: Arc<AtomicU64>,
    evict: Arc<Notify>,
    /// The connection is receiving an upload or awaiting a check
    /// ([`Connection::authorized_work`]): evicted last.
    working: Arc<AtomicBool>,
}

/// Serves `listener` until `stop` fires (or is dropped) or the core asks
/// for a reboot: then the listener and every connection are dropped at
/// once, as a chip's would be, and the reason goes to [`Hooks::reboot`].
pub fn serve<H: Host>(
    listener: TcpListener,
    host: Arc<H>,
    core: Arc<Mutex<Core>>,
    hooks: Hooks,
    mut stop: oneshot::Receiver<()>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let slots: Arc<Mutex<Vec<Slot>>> = Arc::default();
        let mut next_id = 0u64;
        let mut tick = tokio::time::interval(POLL);
        let mut tasks = tokio::task::JoinSet::new();
        let (down, mut rebooting) = mpsc::unbounded_channel();
        let inner = Hooks {
            reboot: down,
            check: hooks.check.clone(),
        };
        if let Ok(addr) = listener.local_addr() {
            espota::spawn(&mut tasks, addr, host.clone(), core.clone(), inner.clone());
        }
        loop {
            tokio::select! {
                _ = &mut stop => break,
                Some(r) = rebooting.recv() => {
                    let _ = hooks.reboot.send(r);
                    break;
                }
                _ = tick.tick() => {
                    let due = lock(&core).tick(&mut host.device());
                    if let Some(r) = due {
                        let _ = hooks.reboot.send(r);
                        break;
                    }
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = listener.accept() => {
                    let Ok((sock, peer)) = accepted else { continue };
                    next_id += 1;
                    let slot = admit(&slots, next_id, lock(&core).now());
                    let (core, hooks, slots) = (core.clone(), inner.clone(), slots.clone());
                    let host = host.clone();
                    tasks.spawn(async move {
                        let r = if esphome::is_esphome(&sock, &core).await {
                            esphome::connection(&*host, &core, sock, &hooks).await
                        } else {
                            connection(&*host, &core, sock, &hooks, &slot).await
                        };
                        if let Err(e) = r {
                            tracing::debug!("{peer}: {e}");
                        }
                        lock_slots(&slots).retain(|s| s.id != slot.id);
                    });
                }
            }
        }
        tasks.abort_all();
    })
}

fn lock_slots(s: &Mutex<Vec<Slot>>) -> MutexGuard<'_, Vec<Slot>> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers a new socket, evicting the one idle the longest when full:
/// among connections not receiving an upload or awaiting a check first, so
/// a flood of new sockets never takes an update's connection while another
/// could go.
fn admit(slots: &Mutex<Vec<Slot>>, id: u64, now: u64) -> Slot {
    let mut s = lock_slots(slots);
    if s.len() >= MAX_CONNECTIONS {
        if let Some(i) = (0..s.len()).min_by_key(|&i| {
            (
                s[i].working.load(Ordering::Relaxed),
                s[i].last.load(Ordering::Relaxed),
            )
        }) {
            s.remove(i).evict.notify_one();
        }
    }
    let slot = Slot {
        id,
        last: Arc::new(AtomicU64::new(now)),
        evict: Arc::new(Notify::new()),
        working: Arc::new(AtomicBool::new(false)),
    };
    s.push(Slot {
        id,
        last: slot.last.clone(),
        evict: slot.evict.clone(),
        working: slot.working.clone(),
    });
    slot
}

async fn connection<H: Host>(
    host: &H,
    core: &Mutex<Core>,
    mut sock: TcpStream,
    hooks: &Hooks,
    slot: &Slot,
) -> std::io::Result<()> {
    let _ = sock.set_nodelay(true);
    let mut head = vec![0u8; DEFAULT_MAX_HEAD];
    let mut rx = vec![0u8; RX_BUF];
    let mut tx = vec![0u8; TX_BUF];
    let (mut start, mut end) = (0usize, 0usize);
    let mut conn = {
        let c = lock(core);
        Connection::new(&c.dev, &mut head, c.now())
    };
    // The decision a waiting `POST /api/ota/check` expects.
    let mut decision: Option<oneshot::Receiver<Decision>> = None;
    loop {
        // Feed what was read until the core wants more.
        loop {
            let out = lock(core).handle(&mut host.device(), &mut conn, &rx[start..end], &mut tx);
            slot.working
                .store(conn.authorized_work(), Ordering::Relaxed);
            start += out.consumed;
            if let Some(done) = act(&mut sock, &tx, out, hooks, &mut decision).await? {
                return Ok(done);
            }
            if out.action == Action::CheckRelease && decision.is_none() {
                // No pull task takes the check: answer 503 at once.
                let out = {
                    let mut c = lock(core);
                    conn.check_abandoned(&mut c.dev, &mut tx)
                };
                if let Some(done) = act(&mut sock, &tx, out, hooks, &mut decision).await? {
                    return Ok(done);
                }
            }
            let progress = out.consumed > 0 || out.written > 0;
            if out.action != Action::Continue && (start == end || !progress) {
                break;
            }
        }
        rx.copy_within(start..end, 0);
        (start, end) = (0, end - start);
        if end == rx.len() && !conn.awaits_check() {
            return Err(std::io::Error::other("the core consumed nothing"));
        }
        tokio::select! {
            n = sock.read(&mut rx[end..]), if end < rx.len() => {
                let n = n?;
                if n == 0 {
                    let mut c = lock(core);
                    let now = c.now();
                    conn.peer_closed(&mut c.dev, now);
                    return Ok(());
                }
                end += n;
                slot.last.store(lock(core).now(), Ordering::Relaxed);
            }
            d = async { decision.as_mut().expect("guarded by is_some").await }, if decision.is_some() => {
                decision = None;
                let out = {
                    let mut c = lock(core);
                    let now = c.now();
                    match d {
                        Ok((result, body)) => conn.check_decided(result, &body, now, &mut tx),
                        Err(_) => conn.check_abandoned(&mut c.dev, &mut tx),
                    }
                };
                if let Some(done) = act(&mut sock, &tx, out, hooks, &mut decision).await? {
                    return Ok(done);
                }
            }
            _ = tokio::time::sleep(POLL) => {
                let out = {
                    let mut c = lock(core);
                    let now = c.now();
                    conn.poll(&mut c.dev, now, &mut tx)
                };
                if let Some(done) = act(&mut sock, &tx, out, hooks, &mut decision).await? {
                    return Ok(done);
                }
            }
            _ = slot.evict.notified() => {
                let mut c = lock(core);
                let now = c.now();
                conn.peer_closed(&mut c.dev, now);
                return Ok(());
            }
        }
    }
}

/// Sends an output and acts on it; `Some` when the connection is done. A
/// release check started here leaves its receiver in `decision`.
async fn act(
    sock: &mut TcpStream,
    tx: &[u8],
    out: Output,
    hooks: &Hooks,
    decision: &mut Option<oneshot::Receiver<Decision>>,
) -> std::io::Result<Option<()>> {
    if let Some(b) = tx.get(..out.written).filter(|b| !b.is_empty()) {
        sock.write_all(b).await?;
    }
    if !out.tail.is_empty() {
        sock.write_all(out.tail).await?;
    }
    match out.action {
        Action::Read | Action::Continue => Ok(None),
        Action::CheckRelease => {
            *decision = hooks.check.as_ref().and_then(|check| check());
            Ok(None)
        }
        Action::Close => {
            let _ = sock.shutdown().await;
            Ok(Some(()))
        }
        Action::Reboot(r) => {
            let _ = sock.shutdown().await;
            let _ = hooks.reboot.send(r);
            Ok(Some(()))
        }
    }
}

/// Closes `sock` without losing the last answer: sends FIN, then reads
/// and drops what the peer still sends (briefly), so the close is not a
/// reset that would discard the answer before the peer read it.
async fn linger(sock: &mut TcpStream) {
    let _ = sock.shutdown().await;
    let mut sink = [0u8; 4096];
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(n)) = tokio::time::timeout_at(until, sock.read(&mut sink)).await {
        if n == 0 {
            break;
        }
    }
}
