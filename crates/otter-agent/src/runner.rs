//! The virtual device's life: power on through the bootloader model, run
//! "as" the booted firmware (its behaviour profile), serve the API, run the
//! self-test of a newly booted image, reboot when asked, and again.
//!
//! Each boot binds the HTTP listener anew and each reboot drops it, so a
//! client sees what it would see with a real device: connection refused
//! while the device reboots, crashes or hangs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otter_format::otadata::OtaState;
use otter_ota::SlotId;
use otter_sim::device::lock::{DeviceLock, LockError};
use otter_sim::device::{DeviceError, VirtualDevice};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::behavior::{Behavior, Profile};
use crate::bootloop::BootLoop;
use crate::mdns::{Advertiser, DeviceAdvert, MdnsOptions};
use crate::net::Core;
use crate::pull::{Pull, PullConfig};
use crate::state::{BootInfo, Reboot, RollbackRecord, Shared};

/// The file a running agent writes into the device directory: its pid, URL
/// and what runs (removed on a clean stop; read only while the device's
/// lock is held, see [`otter_sim::device::lock`]).
pub use otter_sim::device::lock::AGENT_FILE;

/// How a device runs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The device directory.
    pub dir: PathBuf,
    /// Where the API listens (port 0: any free port, kept across reboots).
    pub listen: SocketAddr,
    /// Behaviours by firmware version.
    pub profile: Profile,
    /// How long a newly booted (PENDING_VERIFY) image runs its self-test
    /// before it confirms itself or rolls back.
    pub selftest_window: Duration,
    /// How long a hanging firmware runs before the watchdog resets it.
    pub watchdog: Duration,
    /// How long a crashing firmware runs before it crashes.
    pub crash_after: Duration,
    /// How long a reboot takes (the API is down meanwhile).
    pub reboot_time: Duration,
    /// Consecutive crashes or hangs of the same slot after which the run
    /// stops as a boot loop.
    pub boot_loop_limit: u32,
    /// The API token; `None` uses the device's own (from `device create
    /// --token`).
    pub token: Option<String>,
    /// Advertise the device over mDNS while its firmware serves the API
    /// (`None`: do not).
    pub mdns: Option<MdnsOptions>,
    /// Pull releases from a signed manifest while the firmware runs
    /// (`None`: do not).
    pub pull: Option<PullConfig>,
    /// ESPHome's OTA and espota on the API's port, besides HTTP.
    pub uploaders: crate::net::uploaders::UploaderConfig,
}

impl RunOptions {
    /// Defaults for `dir` on `listen`: a 3 s self-test, a 3 s watchdog,
    /// crashes 0.2 s after boot, 0.3 s reboots, a boot loop after 5.
    pub fn new(dir: &Path, listen: SocketAddr) -> Self {
        Self {
            dir: dir.to_path_buf(),
            listen,
            profile: Profile::new(),
            selftest_window: Duration::from_secs(3),
            watchdog: Duration::from_secs(3),
            crash_after: Duration::from_millis(200),
            reboot_time: Duration::from_millis(300),
            boot_loop_limit: 5,
            token: None,
            mdns: None,
            pull: None,
            uploaders: crate::net::uploaders::UploaderConfig::default(),
        }
    }
}

/// Why a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Stopped on request (Ctrl-C, [`Running::stop`]).
    Stopped,
    /// Nothing bootable: the real device would reset forever.
    Bricked(String),
    /// The same firmware crashed or hung on every boot, with nothing to roll
    /// back to.
    BootLoop(String),
}

/// Everything that stops the agent from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The device could not be opened or its flash failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Another agent runs the device already (or its lock file failed).
    #[error(transparent)]
    Locked(#[from] LockError),
    /// The pull client could not be set up (its TLS configuration).
    #[error("pull: {0}")]
    Pull(#[from] crate::fetch::FetchError),
    /// An uploader setting is unusable.
    #[error(transparent)]
    Uploaders(#[from] crate::net::uploaders::UploaderError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A started agent.
pub struct Running {
    /// Where the API listens.
    pub addr: SocketAddr,
    /// The shared state (status, device).
    pub shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<RunEnd, AgentError>>,
}

impl Running {
    /// The API's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Asks the device to stop (a clean power-off between operations).
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for the run to end (call once).
    pub async fn wait(mut self) -> Result<RunEnd, AgentError> {
        self.finished().await
    }

    /// Waits for the run to end, keeping the handle (so [`Self::stop`] can
    /// still be called from a `select!`). Call at most once to completion.
    pub async fn finished(&mut self) -> Result<RunEnd, AgentError> {
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Ok(RunEnd::Bricked(format!("the agent task failed: {e}"))),
        }
    }
}

/// Opens the device, binds the listener and starts the boot loop.
pub async fn start(opts: RunOptions) -> Result<Running, AgentError> {
    // Opening checks that DIR is a device; the lock makes it ours until the
    // boot loop ends (or the process dies).
    let device = VirtualDevice::open(&opts.dir)?;
    let lock = DeviceLock::acquire(&opts.dir)?;
    let token = opts
        .token
        .clone()
        .or_else(|| device.config_file().token.clone());
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|source| AgentError::Listen {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| AgentError::Listen {
        addr: opts.listen,
        source,
    })?;
    let pull = opts.pull.clone().map(Pull::new).transpose()?;
    let mut core = Core::new(&device, token.as_deref(), opts.selftest_window);
    let (uploaders, notes) = crate::net::uploaders::from_config(&opts.uploaders, token.is_some())?;
    core.uploaders = uploaders;
    let shared = Arc::new(Shared::new(device));
    for n in notes {
        tracing::warn!("{n}");
        shared.event(n);
    }
    let core = Arc::new(std::sync::Mutex::new(core));
    {
        let mut c = crate::net::lock(&core);
        c.dev.options_mut().pull = pull.is_some();
        c.plat.status = Some(host_status(shared.clone(), pull.clone()));
    }
    if let Some(p) = &pull {
        p.set_core(Arc::new(CoreGate {
            core: core.clone(),
            shared: shared.clone(),
        }));
    }
    let auth = token.is_some();
    if token.is_none() {
        tracing::warn!(
            "WARNING: no API token is set: anyone who can reach http://{addr} can flash this device. \
             Create it with `otter device create --token TOKEN` or run it with --token TOKEN."
        );
    }
    let (stop_tx, stop_rx) = oneshot::channel();
    let shared_loop = shared.clone();
    let task = tokio::spawn(async move {
        let device = Booted {
            shared: shared_loop,
            core,
            pull,
            auth,
        };
        let end = boot_loop(device, opts, addr, Some(listener), stop_rx).await;
        drop(lock);
        end
    });
    Ok(Running {
        addr,
        shared,
        stop: Some(stop_tx),
        task,
    })
}

/// How the previous boot ended.
#[derive(Debug, Clone)]
struct Previous {
    slot: SlotId,
    version: String,
    pending: bool,
    end: End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Crashed,
    Hung,
    Reboot(Reboot),
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, AgentError> {
    let mut last = None;
    for _ in 0..50 {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Err(AgentError::Listen {
        addr,
        source: last.unwrap_or_else(|| std::io::Error::other("bind failed")),
    })
}

/// Sleeps for `d`, or returns `true` early when a stop is requested.
async fn sleep_or_stop(d: Duration, stop: &mut oneshot::Receiver<()>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop => true,
    }
}

fn write_agent_file(dir: &Path, addr: SocketAddr, boot: &BootInfo) {
    let doc = json!({
        "pid": std::process::id(),
        "url": format!("http://{addr}"),
        "boot_count": boot.count,
        "running": boot.running.map(|s| s.to_string()),
        "version": boot.version,
    });
    let tmp = dir.join(format!("{AGENT_FILE}.tmp"));
    let ok = std::fs::write(&tmp, doc.to_string()).is_ok()
        && std::fs::rename(&tmp, dir.join(AGENT_FILE)).is_ok();
    if !ok {
        tracing::warn!("could not write {}", dir.join(AGENT_FILE).display());
    }
}

/// The virtual device a boot loop runs: the host's state, the core, the
/// pull client.
struct Booted {
    shared: Arc<Shared>,
    core: Arc<std::sync::Mutex<Core>>,
    pull: Option<Arc<Pull>>,
    auth: bool,
}

async fn boot_loop(
    device: Booted,
    opts: RunOptions,
    addr: SocketAddr,
    mut first_listener: Option<TcpListener>,
    mut stop: oneshot::Receiver<()>,
) -> Result<RunEnd, AgentError> {
    let mut count = 0u64;
    let mut previous: Option<Previous> = None;
    let mut streak: (Option<SlotId>, u32) = (None, 0);
    let mut advertiser: Option<Advertiser> = None;
    let Booted {
        shared,
        core,
        pull,
        auth,
    } = device;
    let end = loop {
        count += 1;
        // The one power-on: the bootloader model and start-up recovery, then
        // the core's boot (self-test window, web-UI mount) as the firmware
        // whose behaviour the profile gives for the booted version.
        let (power, behavior) = crate::net::lock(&core).power_on(&mut shared.device(), |p| {
            opts.profile.of(&crate::net::booted_version(p))
        })?;
        let Some(slot) = power.running else {
            let msg = "no bootable image: the bootloader found no valid app in any slot; the device resets forever (reflash it over serial)".to_string();
            shared.event(msg.clone());
            break RunEnd::Bricked(msg);
        };
        let desc = power.image.as_ref().and_then(|i| i.app_desc.as_ref());
        let text = |f: fn(&otter_format::image::AppDesc) -> otter_format::image::FixedStr<'_>| {
            desc.map(|d| String::from_utf8_lossy(f(d).bytes()).into_owned())
                .unwrap_or_default()
        };
        let (version, project) = (text(|d| d.version()), text(|d| d.project_name()));
        let boot = BootInfo {
            count,
            at: Instant::now(),
            running: Some(slot),
            behavior,
            version: version.clone(),
        };
        shared.set_boot(boot.clone());
        write_agent_file(&opts.dir, addr, &boot);

        if let Some(p) = previous.take() {
            if p.pending && p.slot != slot {
                let why = match p.end {
                    End::Crashed => format!(
                        "{} crashed on boot (behaviour crash-on-boot) before confirming itself",
                        p.version
                    ),
                    End::Hung => format!(
                        "{} hung (behaviour hang) and the watchdog reset it after {:.1} s, before it confirmed itself",
                        p.version,
                        opts.watchdog.as_secs_f64()
                    ),
                    End::Reboot(Reboot::SelftestFailed) => format!(
                        "{} failed its self-test (behaviour fail-selftest) and marked itself invalid",
                        p.version
                    ),
                    End::Reboot(Reboot::Rollback) => format!(
                        "a rollback of {} was requested over the API",
                        p.version
                    ),
                    End::Reboot(_) => format!("{} rebooted before confirming itself", p.version),
                };
                let reason = format!("{why}; the bootloader booted {slot} ({version}) instead");
                shared.set_last_rollback(RollbackRecord {
                    boot: count,
                    from: p.slot.to_string(),
                    to: Some(slot.to_string()),
                    state: match p.end {
                        End::Reboot(Reboot::SelftestFailed | Reboot::Rollback) => "invalid",
                        _ => "aborted",
                    },
                    version: Some(p.version.clone()),
                    reason: reason.clone(),
                });
                shared.event(format!("rolled back from {} to {slot}: {reason}", p.slot));
            }
        }
        let state_name = power.state.map_or("none", |s| s.name());
        let writes: Vec<_> = power
            .boot
            .writes
            .iter()
            .map(|w| format!("{:?}", w.reason))
            .collect();
        shared.event(format!(
            "boot {count}: {slot} runs {version} (state {state_name}, behaviour {behavior}){}{}",
            if power.boot.booted.as_ref().is_some_and(|b| b.fell_back) {
                ", after the bootloader fell back from the selected slot"
            } else {
                ""
            },
            if writes.is_empty() {
                String::new()
            } else {
                format!("; bootloader otadata writes: {}", writes.join(", "))
            }
        ));
        if let Some((a, b)) = power.efuse_raised {
            shared.event(format!(
                "anti-rollback eFuse counter raised from {a} to {b}"
            ));
        }
        let pending = power.state == Some(OtaState::PendingVerify);

        match behavior {
            Behavior::CrashOnBoot | Behavior::Hang => {
                let (wait, end) = if behavior == Behavior::CrashOnBoot {
                    (opts.crash_after, End::Crashed)
                } else {
                    (opts.watchdog, End::Hung)
                };
                withdraw(&mut advertiser).await;
                let looping = (!pending).then(|| {
                    let crashes = if streak.0 == Some(slot) {
                        streak.1 + 1
                    } else {
                        1
                    };
                    let rollback = shared.device().config().rollback;
                    BootLoop::new(
                        &slot.to_string(),
                        &version,
                        &behavior.to_string(),
                        crashes,
                        opts.boot_loop_limit,
                        rollback,
                    )
                });
                // A pending image is rolled back at the next boot: it is
                // just down. One that nothing rolls back says so (bootloop.rs).
                let stopped = match looping {
                    None => {
                        drop(first_listener.take());
                        sleep_or_stop(wait, &mut stop).await
                    }
                    Some(b) => {
                        shared.set_boot_loop(Some(b));
                        let listener = match first_listener.take() {
                            Some(l) => l,
                            None => bind(addr).await?,
                        };
                        let (sd_tx, sd_rx) = oneshot::channel::<()>();
                        let server = crate::bootloop::serve(listener, shared.clone(), sd_rx);
                        let stopped = sleep_or_stop(wait, &mut stop).await;
                        let _ = sd_tx.send(());
                        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
                        stopped
                    }
                };
                if stopped {
                    break RunEnd::Stopped;
                }
                shared.event(if end == End::Crashed {
                    format!(
                        "{version} crashed {:.1} s after boot; rebooting",
                        wait.as_secs_f64()
                    )
                } else {
                    format!(
                        "{version} hung; the watchdog reset the device after {:.1} s",
                        wait.as_secs_f64()
                    )
                });
                streak = if streak.0 == Some(slot) {
                    (Some(slot), streak.1 + 1)
                } else {
                    (Some(slot), 1)
                };
                if streak.1 >= opts.boot_loop_limit {
                    let msg = format!(
                        "boot loop: {slot} ({version}) crashed or hung on {} boots in a row and nothing rolls it back{}",
                        streak.1,
                        if shared.device().config().rollback { "" } else { " (rollback is off: create the device with --rollback)" }
                    );
                    shared.event(msg.clone());
                    break RunEnd::BootLoop(msg);
                }
                previous = Some(Previous {
                    slot,
                    version,
                    pending,
                    end,
                });
            }
            Behavior::Healthy | Behavior::FailSelftest => {
                streak = (None, 0);
                shared.set_boot_loop(None);
                let listener = match first_listener.take() {
                    Some(l) => l,
                    None => bind(addr).await?,
                };
                let (tx, mut rx) = mpsc::unbounded_channel();
                shared.set_reboot_channel(Some(tx.clone()));
                let (sd_tx, sd_rx) = oneshot::channel::<()>();
                let server =
                    core_server(listener, &shared, &core, pull.as_ref(), tx.clone(), sd_rx);
                if let Some(mdns) = &opts.mdns {
                    let up = {
                        let u = crate::net::lock(&core).uploaders;
                        crate::mdns::UploaderAdverts {
                            arduino: u.espota.map(|o| o.auth.required()),
                            esphome: u.esphome.is_some(),
                        }
                    };
                    advertise(
                        &mut advertiser,
                        mdns,
                        &advert(&shared, &opts.dir, addr, &version, &project, auth),
                        up,
                    )
                    .await;
                }
                // The firmware's pull task runs for this boot only.
                let pull_task = pull
                    .as_ref()
                    .map(|p| tokio::spawn(p.clone().run_boot(shared.clone())));
                let why = tokio::select! {
                    r = rx.recv() => r,
                    _ = &mut stop => None,
                };
                if let Some(t) = pull_task {
                    t.abort();
                    let _ = t.await;
                }
                shared.set_reboot_channel(None);
                let _ = sd_tx.send(());
                let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
                withdraw(&mut advertiser).await;
                let Some(why) = why else {
                    break RunEnd::Stopped;
                };
                // Still pending after this boot? (A confirm clears it.)
                let still_pending = {
                    let mut dev = shared.device();
                    let (flash, cfg) = dev.parts();
                    otter_ota::lifecycle::running_state(flash, cfg, slot)
                        .ok()
                        .flatten()
                        == Some(OtaState::PendingVerify)
                };
                previous = Some(Previous {
                    slot,
                    version,
                    pending: still_pending
                        || why == Reboot::SelftestFailed
                        || why == Reboot::Rollback,
                    end: End::Reboot(why),
                });
            }
        }
        if sleep_or_stop(opts.reboot_time, &mut stop).await {
            break RunEnd::Stopped;
        }
    };
    withdraw(&mut advertiser).await;
    let _ = std::fs::remove_file(opts.dir.join(AGENT_FILE));
    Ok(end)
}

/// Serves this boot's API with the `otter-device` core; its reboots go to
/// the boot loop's channel, its release checks to the pull client.
fn core_server(
    listener: TcpListener,
    shared: &Arc<Shared>,
    core: &Arc<std::sync::Mutex<Core>>,
    pull: Option<&Arc<Pull>>,
    reboot: mpsc::UnboundedSender<Reboot>,
    stop: oneshot::Receiver<()>,
) -> JoinHandle<()> {
    use otter_device::service::RebootReason as R;
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            let why = match r {
                R::Update => Reboot::Update,
                R::Www => Reboot::Frontend,
                R::Rollback => Reboot::Rollback,
                R::Requested => Reboot::Requested,
                R::SelfTestFailed => Reboot::SelftestFailed,
            };
            let _ = reboot.send(why);
        }
    });
    let check = pull.cloned().map(|p| {
        let f: crate::net::StartCheck = Arc::new(move || {
            let rx = p.request_check()?;
            let (tx, decided) = oneshot::channel();
            tokio::spawn(async move {
                if let Ok(report) = rx.await {
                    let _ = tx.send(crate::pull::decision(&report));
                }
            });
            Some(decided)
        });
        f
    });
    crate::net::serve(
        listener,
        shared.clone(),
        core.clone(),
        crate::net::Hooks { reboot: tx, check },
        stop,
    )
}

/// The core as the pull client uses it. Locks the core first, then the
/// device, as every caller does.
struct CoreGate {
    core: Arc<std::sync::Mutex<Core>>,
    shared: Arc<Shared>,
}

impl crate::pull::CoreAccess for CoreGate {
    fn with(
        &self,
        f: &mut dyn FnMut(
            &mut otter_device::service::Device,
            &mut otter_sim::SimFlash,
            &mut crate::net::platform::SimPlatform,
            u64,
        ),
    ) {
        let mut c = crate::net::lock(&self.core);
        let ms = c.now();
        let mut vd = self.shared.device();
        let Core { dev, plat, .. } = &mut *c;
        f(dev, vd.www_flash(), plat, ms);
    }
}

/// The status fields the boot loop and the pull client keep, for the core's
/// status document: rollbacks seen across boots (crashes, hangs, reboots
/// before a confirm) and the pull's state. Never locks the device (the core
/// holds it while it writes the status).
fn host_status(shared: Arc<Shared>, pull: Option<Arc<Pull>>) -> crate::net::platform::StatusSource {
    use otter_device::service::StatusField;
    let table_offset = shared.device().config().table_offset;
    crate::net::platform::StatusSource(Arc::new(move |field, flash| match field {
        StatusField::Pull => pull
            .as_ref()
            .and_then(|p| serde_json::to_string(&p.status()).ok()),
        StatusField::BootLoop => serde_json::to_string(&shared.boot_loop()?).ok(),
        StatusField::Www => None,
        StatusField::LastRollback => {
            let r = shared.last_rollback()?;
            let boot = shared.boot();
            let running = boot.running.map(|s| s.to_string());
            let stale = boot.count > r.boot && r.to.is_some() && r.to != running;
            // The image still in the slot rolled back from, as uploaded.
            let sha256 = crate::net::platform::slot_image_sha256(flash, table_offset, &r.from);
            let doc = otter_sim::device::LastRollback {
                from: r.from,
                to: r.to,
                stale,
                version: r.version,
                sha256,
                state: r.state.to_string(),
                reason: r.reason,
            };
            serde_json::to_string(&doc).ok()
        }
    }))
}

/// The device's mDNS record: an instance name derived from its directory
/// (stable across runs), its address, and the running firmware.
fn advert(
    shared: &Shared,
    dir: &Path,
    addr: SocketAddr,
    version: &str,
    project: &str,
    auth: bool,
) -> DeviceAdvert {
    use sha2::{Digest, Sha256};
    let canon = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let h = Sha256::digest(canon.to_string_lossy().as_bytes());
    let name = format!("otter-{:02x}{:02x}{:02x}", h[0], h[1], h[2]);
    let chip = shared.device().config().chip.name().to_string();
    DeviceAdvert {
        instance: name.clone(),
        hostname: format!("{name}.local."),
        addrs: if addr.ip().is_unspecified() {
            Vec::new()
        } else {
            vec![addr.ip()]
        },
        port: addr.port(),
        chip,
        version: version.to_string(),
        project: project.to_string(),
        api_path: crate::api::STATUS_PATH.into(),
        update_path: crate::api::UPDATE_PATH.into(),
        auth,
    }
}

/// Starts advertising for this boot (the record was withdrawn when the
/// previous boot ended). Failures are logged, not fatal: the API works
/// without mDNS.
async fn advertise(
    slot: &mut Option<Advertiser>,
    opts: &MdnsOptions,
    advert: &DeviceAdvert,
    up: crate::mdns::UploaderAdverts,
) {
    let opts = opts.clone();
    let advert = advert.clone();
    let result =
        tokio::task::spawn_blocking(move || Advertiser::start_with(&advert, &up, &opts)).await;
    match result {
        Ok(Ok(a)) => *slot = Some(a),
        Ok(Err(e)) => tracing::warn!("mDNS: cannot advertise the device: {e}"),
        Err(e) => tracing::warn!("mDNS: {e}"),
    }
}

/// Withdraws the mDNS record (the device is down: rebooting, crashed, hung).
async fn withdraw(slot: &mut Option<Advertiser>) {
    if let Some(a) = slot.take() {
        let _ = tokio::task::spawn_blocking(move || a.shutdown()).await;
    }
}
