//! The virtual device a scenario runs on: preparing its flash, the scenario's
//! steps, "firmware startup" after a power cut, the invariants checked at
//! every startup, and the retry loop that drives the device to the
//! scenario's goal.
//!
//! # What is checked at every startup (after a cut and after every retry step)
//!
//! | invariant | what must hold |
//! |---|---|
//! | `boots` | the bootloader model starts (the table reads) and boots an image |
//! | `known-image` | the booted slot holds, byte for byte, the OLD or the NEW image (so it verifies), and the app descriptor's version is that image's |
//! | `selection` | the bootloader did not have to skip an existing slot: the slot otadata selects is the one that booted (invariant 1: the boot selection only ever points at a verified image) |
//! | `app-agrees` | `esp_ota_get_boot_partition`, computed the app's way (contiguous OTA count, default factory/ota_0) from the otadata the bootloader left, names the booted slot |
//! | `rollback-state` | OLD runs: its `running_state` is what it was before the scenario. NEW runs with rollback: PENDING_VERIFY, or VALID only once a confirm was requested (never NEW, never an undefined value, never VALID by accident). NEW runs without rollback: UNDEFINED, as `esp_ota_set_boot_partition` wrote it |
//! | `web-ui` | (devices with web-UI slots) the slot the NVS pointer selects mounts, without a fallback, and holds byte for byte the OLD or the NEW UI |
//! | `nvs` | (devices with web-UI slots) NVS loads, the pointer reads as the old or the new slot, and every other key keeps its value |
//!
//! After the cut the device is driven to the scenario's goal by retrying the
//! interrupted step ([`drive_to_goal`]): the update when OLD runs and the
//! goal is NEW, the confirm when NEW runs pending, the rollback when NEW runs
//! and the goal is OLD. `retry` fails if a retried step errors or the loop
//! does not settle; `goal` checks the settled state (NEW confirmed, or OLD
//! with the NEW entry no longer selectable) and that one more power-on
//! changes nothing (no bootloader write, no recovery, same slot).

use std::sync::Arc;

use crate::device::www::{initial_nvs, mount, WwwLayout, NVS_KEY, NVS_NAMESPACE, SLOT_LABELS};
use crate::{LogPolicy, SimFlash, SimFlashError};
use embedded_storage::nor_flash::ReadNorFlash;
use otter_format::nvs::{plan_set_u32, plan_set_u8, FlashOp, Nvs};
use otter_format::otadata::{OtaState, Otadata, SelectEntry, ENTRY_SIZE, SECTOR1_OFFSET};
use otter_ota::boot::{boot, BootOutcome};
use otter_ota::lifecycle::{confirm, mark_invalid_and_rollback, recover, running_state, Recovery};
use otter_ota::session::{UpdateRequest, UpdateSession};
use otter_ota::{DeviceConfig, OtaError, Region, SlotId, SlotMap};

use super::core::{self as core_api, PointerWrite};
use super::layouts::{built, Image, SMALL, TABLE_OFFSET};
use super::{Case, Invariant, Scenario, Violation, WwwSpec};

/// NVS namespace and key of the value every web-UI case keeps beside the
/// pointer: it must survive every cut (a garbage collection that erased a
/// page before copying it would lose it).
pub const SENTINEL_KEY: (&str, &str) = ("app", "boots");
/// Its value.
pub const SENTINEL: u32 = 0x0770_0001;

/// An update procedure: streams `image` into the next slot after `running`
/// and selects it for the next boot. [`otter_update`] is the real one; tests
/// plug in broken ones to prove the harness catches them.
pub type UpdateFn =
    fn(&mut SimFlash, &DeviceConfig, SlotId, &[u8]) -> Result<SlotId, OtaError<SimFlashError>>;

/// Upload chunk size: one TCP segment's payload, deliberately not a multiple
/// of the flash page or the session's staging buffer.
pub const CHUNK: usize = 1460;

/// otter's update: `UpdateSession` begin / write* / finish / activate.
pub fn otter_update(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    image: &[u8],
) -> Result<SlotId, OtaError<SimFlashError>> {
    let req = UpdateRequest {
        size: Some(image.len() as u32),
        expected_sha256: None,
        ..UpdateRequest::default()
    };
    let mut s = UpdateSession::begin(flash, cfg, running, req)?;
    for c in image.chunks(CHUNK) {
        s.write(flash, c)?;
    }
    s.finish(flash)?.activate(flash)
}

/// Which of the two images runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The image that ran before the scenario.
    Old,
    /// The image the scenario installs.
    New,
}

/// Where a scenario must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// NEW runs, confirmed (VALID with rollback, UNDEFINED without).
    NewConfirmed,
    /// OLD runs again; NEW's entry can no longer be selected.
    OldRolledBack,
    /// OLD runs as before (the scenario changes only the web UI).
    Unchanged,
}

/// The web UI of a device with `www_0`/`www_1`.
#[derive(Clone)]
pub struct WwwCtx {
    /// Where the slots and NVS are.
    pub layout: WwwLayout,
    /// The UI mounted before the scenario.
    pub old_ui: Arc<Vec<u8>>,
    /// The UI the scenario (or the retry) installs.
    pub new_ui: Arc<Vec<u8>>,
    /// The slot OLD's UI is in.
    pub old_slot: usize,
    /// Whether the scenario's goal is the new UI.
    pub goal_new: bool,
    /// How the platform writes the pointer.
    pub pointer: PointerWrite,
    /// Keys `app/k0` .. `app/k{n-1}` (u32 `i + 1`) spread over the NVS
    /// pages, that must survive every cut.
    pub live_keys: u32,
}

/// Everything a replay needs: the device, its images, and the scenario.
#[derive(Clone)]
pub struct Ctx {
    /// The scenario whose steps are cut.
    pub scenario: Scenario,
    /// The device's bootloader and `esp_ota_ops` configuration.
    pub cfg: DeviceConfig,
    /// The device's slots.
    pub map: SlotMap,
    /// The image that runs before the scenario.
    pub old: Image,
    /// The image the scenario installs.
    pub new: Image,
    /// Where OLD runs.
    pub old_slot: SlotId,
    /// OLD's rollback state before the scenario.
    pub old_state: Option<OtaState>,
    /// The update procedure under test.
    pub update: UpdateFn,
    /// Where the scenario must end.
    pub goal: Goal,
    /// Confirm, rollback and self-test go through the device core
    /// (`otter-device`'s service) rather than the engine's calls.
    pub via_core: bool,
    /// The web UI, when the device has web-UI slots.
    pub www: Option<WwwCtx>,
    /// With anti-rollback: the counter the confirmed NEW must leave.
    pub efuse_goal: Option<u32>,
}

/// A device ready for a scenario: the flash just before its first step.
pub struct Prepared {
    /// The scenario and its device.
    pub ctx: Ctx,
    /// The flash just before the first step.
    pub flash: SimFlash,
}

fn flash_err(what: &str) -> impl Fn(OtaError<SimFlashError>) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Builds the device: the table, a first image in factory (or ota_0), the
/// first power-on, `history` earlier updates (each booted and confirmed), the
/// last of which is OLD, the web UI (when the case has one), then whatever
/// the scenario starts from.
pub fn prepare(case: &Case) -> Result<Prepared, String> {
    let (scenario, layout, chip) = (case.scenario, &case.layout, case.chip);
    let (rollback, history, old, new, update) = (
        case.rollback,
        case.history,
        &case.old,
        &case.new,
        case.update,
    );
    let cfg = DeviceConfig::new(chip)
        .with_rollback(rollback)
        .with_anti_rollback(case.anti_rollback);
    let mut flash = SimFlash::new(layout.flash_size)
        .map_err(|e| format!("flash: {e}"))?
        .with_log_policy(LogPolicy::Off);
    flash
        .load(TABLE_OFFSET, &layout.table_bin()?)
        .map_err(|e| format!("table: {e}"))?;
    let map = SlotMap::read(&mut flash, TABLE_OFFSET).map_err(flash_err("slot map"))?;
    let first = map
        .factory()
        .or_else(|| map.ota(0))
        .copied()
        .ok_or("the layout has neither factory nor ota_0")?;
    let base = if history == 0 {
        old.clone()
    } else {
        built(chip, "0.9.0", SMALL)?
    };
    flash
        .load(first.offset, &base.bytes)
        .map_err(|e| format!("first image: {e}"))?;
    let mut running = booted_slot(&mut flash, &cfg)?;
    for h in 1..=history {
        let img = if h == history {
            old.clone()
        } else {
            built(chip, &format!("0.9.{h}"), SMALL)?
        };
        // The history always uses the real procedure: only the scenario's
        // own update is under test.
        otter_update(&mut flash, &cfg, running, &img.bytes).map_err(flash_err("history"))?;
        running = booted_slot(&mut flash, &cfg)?;
        if rollback {
            confirm(&mut flash, &cfg, running).map_err(flash_err("history confirm"))?;
        }
    }
    let old_slot = running;
    let old_state = running_state(&mut flash, &cfg, old_slot).map_err(flash_err("state"))?;
    let www = match &case.www {
        Some(spec) => Some(prepare_www(&mut flash, spec, case.pointer)?),
        None => None,
    };
    match scenario {
        Scenario::Update | Scenario::WwwUpdate | Scenario::NvsGc | Scenario::Bundle => {}
        Scenario::FirstBoot => {
            update(&mut flash, &cfg, old_slot, &new.bytes).map_err(flash_err("update"))?;
        }
        Scenario::Confirm
        | Scenario::SelfTestFail
        | Scenario::CrashRollback
        | Scenario::ApiRollback
        | Scenario::AntiRollback => {
            let slot =
                update(&mut flash, &cfg, old_slot, &new.bytes).map_err(flash_err("update"))?;
            let now = booted_slot(&mut flash, &cfg)?;
            if now != slot {
                return Err(format!(
                    "setup: the new image in {slot} did not boot ({now} did)"
                ));
            }
            if scenario == Scenario::ApiRollback && rollback {
                // A rollback of an image that confirmed itself.
                confirm(&mut flash, &cfg, slot).map_err(flash_err("confirm"))?;
            }
        }
    }
    let goal = match scenario {
        Scenario::Update
        | Scenario::FirstBoot
        | Scenario::Confirm
        | Scenario::AntiRollback
        | Scenario::Bundle => Goal::NewConfirmed,
        Scenario::SelfTestFail | Scenario::CrashRollback | Scenario::ApiRollback => {
            Goal::OldRolledBack
        }
        Scenario::WwwUpdate | Scenario::NvsGc => Goal::Unchanged,
    };
    let efuse_goal = match case.anti_rollback {
        Some(_) => new_secure_version(new)?,
        None => None,
    };
    Ok(Prepared {
        ctx: Ctx {
            scenario,
            cfg,
            map,
            old: old.clone(),
            new: new.clone(),
            old_slot,
            old_state,
            update,
            goal,
            via_core: case.via_core,
            www,
            efuse_goal,
        },
        flash,
    })
}

fn new_secure_version(img: &Image) -> Result<Option<u32>, String> {
    let mut v =
        otter_format::image::StreamingVerifier::new(otter_format::image::VerifyOptions::new());
    let info = v
        .feed(&img.bytes)
        .map_err(|e| e.to_string())
        .and_then(|_| v.finish().map_err(|e| e.to_string()))
        .map_err(|e| format!("NEW does not verify: {e}"))?;
    Ok(info.app_desc.map(|d| d.secure_version()))
}

fn nvs_part(flash: &mut SimFlash, layout: &WwwLayout) -> Result<(u32, Vec<u8>), String> {
    let nvs = layout
        .nvs
        .as_ref()
        .ok_or("the layout has web-UI slots but no NVS partition")?;
    let mut buf = vec![0u8; nvs.size as usize];
    flash
        .read(nvs.offset, &mut buf)
        .map_err(|e| format!("reading NVS: {e}"))?;
    Ok((nvs.offset, buf))
}

fn nvs_apply(flash: &mut SimFlash, at: u32, ops: &[FlashOp]) -> Result<(), String> {
    crate::nvs::apply(flash, at, ops).map_err(|e| format!("writing NVS: {e}"))
}

/// The web UI before the scenario: OLD's UI in `spec.from` (the other slot
/// erased, or an older UI when OLD's is in `www_1`), NVS holding the pointer
/// and [`SENTINEL_KEY`]; for a garbage-collection case, the pointer flipped
/// until switching it once more needs a page collected.
fn prepare_www(
    flash: &mut SimFlash,
    spec: &WwwSpec,
    pointer: PointerWrite,
) -> Result<WwwCtx, String> {
    let layout = WwwLayout::read(flash, TABLE_OFFSET).ok_or("the layout has no web-UI slots")?;
    let from = spec.from.min(1);
    let load = |flash: &mut SimFlash, slot: usize, ui: &[u8]| {
        flash
            .load(layout.slots[slot].offset, ui)
            .map_err(|e| format!("loading the UI into {}: {e}", SLOT_LABELS[slot]))
    };
    load(flash, from, &spec.old_ui)?;
    if from == 1 {
        load(flash, 0, &spec.older_ui)?;
    }
    let (at, part) = nvs_part(flash, &layout)?;
    let nvs = initial_nvs(part.len() as u32, from as u8).map_err(|e| format!("NVS: {e}"))?;
    flash.load(at, &nvs).map_err(|e| format!("NVS: {e}"))?;
    let (ns, key) = SENTINEL_KEY;
    let (_, part) = nvs_part(flash, &layout)?;
    let ops = plan_set_u32(&part, ns, key, SENTINEL).map_err(|e| format!("NVS: {e}"))?;
    nvs_apply(flash, at, &ops)?;
    let mut live_keys = 0u32;
    if spec.gc {
        let target = 1 - from as u8;
        let has_erase = |ops: &[FlashOp]| ops.iter().any(|o| matches!(o, FlashOp::Erase { .. }));
        let mut pad = 0u32;
        let mut ready = false;
        for i in 0..10_000u32 {
            // A live key every 16 switches, so every page holds some and a
            // collection has live entries to move.
            if i % 16 == 0 {
                let (_, part) = nvs_part(flash, &layout)?;
                let k = live_key(live_keys);
                let ops = plan_set_u32(&part, "app", &k, live_keys + 1)
                    .map_err(|e| format!("NVS: {e}"))?;
                nvs_apply(flash, at, &ops)?;
                live_keys += 1;
            }
            let (_, part) = nvs_part(flash, &layout)?;
            let to_target = plan_set_u8(&part, NVS_NAMESPACE, NVS_KEY, target)
                .map_err(|e| format!("NVS: {e}"))?;
            if has_erase(&to_target) {
                ready = true;
                break;
            }
            nvs_apply(flash, at, &to_target)?;
            let (_, part) = nvs_part(flash, &layout)?;
            let back = plan_set_u8(&part, NVS_NAMESPACE, NVS_KEY, from as u8)
                .map_err(|e| format!("NVS: {e}"))?;
            if has_erase(&back) {
                // Shift by one entry so the collection falls on the
                // scenario's own switch, not on this one.
                pad += 1;
                let ops =
                    plan_set_u32(&part, "app", "pad", pad).map_err(|e| format!("NVS: {e}"))?;
                nvs_apply(flash, at, &ops)?;
                let (_, part) = nvs_part(flash, &layout)?;
                let back = plan_set_u8(&part, NVS_NAMESPACE, NVS_KEY, from as u8)
                    .map_err(|e| format!("NVS: {e}"))?;
                nvs_apply(flash, at, &back)?;
            } else {
                nvs_apply(flash, at, &back)?;
            }
        }
        if !ready {
            return Err("NVS never reached a collection in 10,000 switches".into());
        }
    }
    Ok(WwwCtx {
        layout,
        old_ui: spec.old_ui.clone(),
        new_ui: spec.new_ui.clone(),
        old_slot: from,
        goal_new: true,
        pointer,
        live_keys,
    })
}

fn live_key(i: u32) -> String {
    format!("k{i}")
}

fn booted_slot(flash: &mut SimFlash, cfg: &DeviceConfig) -> Result<SlotId, String> {
    let out = boot(flash, cfg).map_err(flash_err("setup boot"))?;
    recover(flash, cfg).map_err(flash_err("setup recover"))?;
    out.booted
        .map(|b| b.slot)
        .ok_or_else(|| "setup: nothing boots".to_string())
}

impl Ctx {
    /// The scenario's steps: what is recorded and then cut.
    pub fn steps(&self, flash: &mut SimFlash) -> Result<(), String> {
        let cfg = &self.cfg;
        match self.scenario {
            Scenario::Update => (self.update)(flash, cfg, self.old_slot, &self.new.bytes)
                .map(drop)
                .map_err(flash_err("update")),
            // Power-on: the bootloader's own otadata write (NEW → PENDING_VERIFY
            // on first boot, PENDING_VERIFY → ABORTED on the reboot after),
            // then the app's startup recovery.
            Scenario::FirstBoot | Scenario::CrashRollback => {
                boot(flash, cfg).map_err(flash_err("boot"))?;
                recover(flash, cfg).map(drop).map_err(flash_err("recover"))
            }
            Scenario::Confirm | Scenario::AntiRollback => {
                let slot = self.new_slot()?;
                if self.via_core {
                    return core_api::http_confirm(flash, cfg, slot)
                        .map(drop)
                        .map_err(flash_err("POST /api/ota/confirm"));
                }
                match confirm(flash, cfg, slot) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err("confirm found nothing to confirm".into()),
                    Err(e) => Err(format!("confirm: {e}")),
                }
            }
            Scenario::SelfTestFail if self.via_core => {
                core_api::core_selftest_fail(flash, cfg, self.new_slot()?)
                    .map_err(flash_err("self-test"))
            }
            Scenario::SelfTestFail => {
                mark_invalid_and_rollback(flash, cfg).map_err(flash_err("mark invalid"))
            }
            Scenario::ApiRollback => core_api::http_rollback(flash, cfg, self.new_slot()?)
                .map_err(flash_err("POST /api/ota/rollback")),
            Scenario::WwwUpdate | Scenario::NvsGc => self.www_update(flash, self.old_slot),
            Scenario::Bundle => {
                (self.update)(flash, cfg, self.old_slot, &self.new.bytes)
                    .map_err(flash_err("update"))?;
                self.www_update(flash, self.old_slot)
            }
        }
    }

    /// `POST /api/ota/frontend` with the new UI, on `running`.
    fn www_update(&self, flash: &mut SimFlash, running: SlotId) -> Result<(), String> {
        let w = self.www.as_ref().ok_or("the case has no web UI")?;
        core_api::http_www_update(flash, &self.cfg, running, &w.new_ui, w.pointer)
            .map(drop)
            .map_err(flash_err("POST /api/ota/frontend"))
    }

    /// The slot the new image goes to.
    pub fn new_slot(&self) -> Result<SlotId, String> {
        self.map
            .next_update_slot(Some(self.old_slot))
            .ok_or_else(|| "no update slot".to_string())
    }

    fn otadata_region(&self) -> Option<Region> {
        self.map.otadata().copied()
    }

    /// Whether `offset` is inside the web UI's NVS partition.
    pub fn in_nvs(&self, offset: u32) -> bool {
        self.www
            .as_ref()
            .and_then(|w| w.layout.nvs.as_ref())
            .is_some_and(|n| (n.offset..n.offset + n.size).contains(&offset))
    }

    /// Whether `offset` is inside otadata.
    pub fn in_otadata(&self, offset: u32) -> bool {
        self.otadata_region()
            .is_some_and(|r| (r.offset..r.end()).contains(&offset))
    }
}

/// One power-on as the firmware sees it.
#[derive(Debug, Clone)]
pub struct Startup {
    /// The slot that runs.
    pub slot: SlotId,
    /// Which image it holds.
    pub which: Which,
    /// Its rollback state.
    pub state: Option<OtaState>,
    /// What startup recovery did.
    pub recovery: Recovery,
    /// otadata writes the bootloader made.
    pub bootloader_writes: usize,
    /// Mutating flash operations the startup made (bootloader and recovery).
    pub flash_ops: u64,
    /// Which web UI mounted (devices with web-UI slots).
    pub ui: Option<Which>,
    /// The anti-rollback counter after the last bootloader run.
    pub efuse: Option<u32>,
}

/// The checks' view of what may be true at this startup.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allow {
    /// A confirm of NEW has been requested, so NEW may be VALID.
    pub confirm_requested: bool,
}

/// "Firmware startup": the bootloader model, then `lifecycle::recover`; if
/// recovery completed a confirm of another slot, reboot into it. Every boot
/// is checked.
pub fn startup(ctx: &Ctx, flash: &mut SimFlash, allow: Allow) -> Result<Startup, Violation> {
    let ops_before = flash.mutating_ops();
    let out = boot(flash, &ctx.cfg).map_err(|e| v(Invariant::Boots, format!("{e}")))?;
    let (mut slot, mut which) = check_boot(ctx, flash, &out)?;
    let mut writes = out.writes.iter().count();
    let mut efuse = out.anti_rollback;
    let recovery = recover(flash, &ctx.cfg)
        .map_err(|e| v(Invariant::Retry, format!("lifecycle::recover failed: {e}")))?;
    if let Recovery::ConfirmCompleted { slot: done } = recovery {
        if done != slot {
            let out = boot(flash, &ctx.cfg).map_err(|e| v(Invariant::Boots, format!("{e}")))?;
            (slot, which) = check_boot(ctx, flash, &out)?;
            writes += out.writes.iter().count();
            efuse = out.anti_rollback;
            if slot != done {
                return Err(v(
                    Invariant::Selection,
                    format!("recovery confirmed {done} but the reboot ran {slot}"),
                ));
            }
        }
    }
    let state = running_state(flash, &ctx.cfg, slot)
        .map_err(|e| v(Invariant::RollbackState, format!("running_state: {e}")))?;
    let ui = check_www(ctx, flash)?;
    let s = Startup {
        slot,
        which,
        state,
        recovery,
        bootloader_writes: writes,
        flash_ops: flash.mutating_ops() - ops_before,
        ui,
        efuse,
    };
    check_state(ctx, &s, allow)?;
    Ok(s)
}

fn v(invariant: Invariant, detail: String) -> Violation {
    Violation { invariant, detail }
}

/// `web-ui` and `nvs`: what the power-on mounts, as the firmware mounts it.
fn check_www(ctx: &Ctx, flash: &mut SimFlash) -> Result<Option<Which>, Violation> {
    let Some(w) = ctx.www.as_ref() else {
        return Ok(None);
    };
    let boot = mount(flash, &w.layout);
    if let Some(n) = &boot.pointer.note {
        return Err(v(
            Invariant::Nvs,
            format!("the web-UI pointer does not read: {n}"),
        ));
    }
    let new_slot = 1 - w.old_slot;
    match boot.pointer.value.map(usize::from) {
        Some(p) if p == w.old_slot || p == new_slot => {}
        other => {
            return Err(v(
                Invariant::Nvs,
                format!(
                    "the web-UI pointer reads {other:?}, neither the old slot {} nor the new {}",
                    w.old_slot, new_slot
                ),
            ))
        }
    }
    if let Some(f) = &boot.fallback {
        return Err(v(
            Invariant::WebUi,
            format!("the power-on fell back: {}", f.reason),
        ));
    }
    let Some(a) = boot.active else {
        return Err(v(Invariant::WebUi, "no web UI mounts".into()));
    };
    let r = &w.layout.slots[a];
    let start = r.offset as usize;
    let holds = |ui: &[u8]| flash.contents().get(start..start + ui.len()) == Some(ui);
    let which = if a == w.old_slot && holds(&w.old_ui) {
        Which::Old
    } else if a == new_slot && holds(&w.new_ui) {
        Which::New
    } else {
        return Err(v(
            Invariant::WebUi,
            format!(
                "{} mounts, but holds neither the old nor the new UI byte for byte",
                SLOT_LABELS[a]
            ),
        ));
    };
    let nvs = w
        .layout
        .nvs
        .as_ref()
        .map(|n| (n.offset as usize, n.size as usize));
    let loaded = nvs
        .and_then(|(at, len)| flash.contents().get(at..at + len))
        .map(Nvs::load);
    let (ns, key) = SENTINEL_KEY;
    match loaded {
        Some(Ok(n)) if n.get_u32(ns, key) == Some(SENTINEL) => {
            if let Some(i) =
                (0..w.live_keys).find(|&i| n.get_u32("app", &live_key(i)) != Some(i + 1))
            {
                return Err(v(
                    Invariant::Nvs,
                    format!(
                        "NVS lost app/{}: it reads {:?}, it was {}",
                        live_key(i),
                        n.get_u32("app", &live_key(i)),
                        i + 1
                    ),
                ));
            }
        }
        Some(Ok(n)) => {
            return Err(v(
                Invariant::Nvs,
                format!(
                    "NVS lost {ns}/{key}: it reads {:?}, it was {SENTINEL:#x}",
                    n.get_u32(ns, key)
                ),
            ))
        }
        Some(Err(e)) => return Err(v(Invariant::Nvs, format!("NVS does not load: {e}"))),
        None => return Err(v(Invariant::Nvs, "no NVS partition".into())),
    }
    Ok(Some(which))
}

/// `boots`, `known-image`, `selection`, `app-agrees` for one bootloader run.
fn check_boot(
    ctx: &Ctx,
    flash: &SimFlash,
    out: &BootOutcome,
) -> Result<(SlotId, Which), Violation> {
    let Some(b) = out.booted.as_ref() else {
        return Err(v(
            Invariant::Boots,
            format!(
                "nothing bootable (otadata selected {:?}): the device is bricked",
                out.selected
            ),
        ));
    };
    let start = b.region.offset as usize;
    let len = b.image.image_len as usize;
    let stored = flash.contents().get(start..start + len).unwrap_or_default();
    let matches = |img: &Image| img.bytes.get(..len) == Some(stored);
    let which = if matches(&ctx.old) {
        Which::Old
    } else if matches(&ctx.new) {
        Which::New
    } else {
        return Err(v(
            Invariant::KnownImage,
            format!(
                "{} booted an image ({len} B, version {:?}) that is neither OLD {} nor NEW {}",
                b.slot,
                b.image
                    .app_desc
                    .as_ref()
                    .and_then(|d| d.version().as_str().map(str::to_owned)),
                ctx.old.version,
                ctx.new.version
            ),
        ));
    };
    let expect = match which {
        Which::Old => &ctx.old.version,
        Which::New => &ctx.new.version,
    };
    let version = b
        .image
        .app_desc
        .as_ref()
        .and_then(|d| d.version().as_str().map(str::to_owned));
    if version.as_deref() != Some(expect.as_str()) {
        return Err(v(
            Invariant::KnownImage,
            format!("{} runs app version {version:?}, expected {expect}", b.slot),
        ));
    }
    if let Some(sel) = out.selected {
        if sel != b.slot && ctx.map.region(sel).is_some() {
            return Err(v(
                Invariant::Selection,
                format!(
                    "otadata selects {sel}, whose image does not verify; the bootloader fell back to {} ({which:?})",
                    b.slot
                ),
            ));
        }
    }
    let app_view = app_boot_partition(ctx, flash);
    if app_view != Some(b.slot) {
        return Err(v(
            Invariant::AppAgrees,
            format!(
                "{} booted, but esp_ota_get_boot_partition reads {app_view:?} from otadata {}",
                b.slot,
                otadata_summary(ctx, flash)
            ),
        ));
    }
    Ok((b.slot, which))
}

/// The two otadata entries as the flash holds them.
pub fn read_otadata(ctx: &Ctx, flash: &SimFlash) -> Option<Otadata> {
    let od = ctx.otadata_region()?;
    let c = flash.contents();
    let at = od.offset as usize;
    let e0: &[u8; ENTRY_SIZE] = c.get(at..at + ENTRY_SIZE)?.try_into().ok()?;
    let s1 = at + SECTOR1_OFFSET;
    let e1: &[u8; ENTRY_SIZE] = c.get(s1..s1 + ENTRY_SIZE)?.try_into().ok()?;
    Some(Otadata::from_entries(e0, e1))
}

fn describe_entry(e: &SelectEntry) -> String {
    if e.is_erased() {
        "empty".into()
    } else {
        format!(
            "seq {:#x} {:?} crc {}",
            e.seq,
            e.ota_state(),
            if e.crc_ok() { "ok" } else { "bad" }
        )
    }
}

/// "[sector 0: …, sector 1: …]" for messages.
pub fn otadata_summary(ctx: &Ctx, flash: &SimFlash) -> String {
    match read_otadata(ctx, flash) {
        Some(o) => format!(
            "[sector 0: {}; sector 1: {}]",
            describe_entry(&o.entries[0]),
            describe_entry(&o.entries[1])
        ),
        None => "[no otadata]".into(),
    }
}

/// `esp_ota_get_boot_partition` (esp-idf-formats.md §6): both entries
/// invalid or no OTA slot → factory, else the lowest OTA slot; otherwise
/// the active entry's slot counted the app's way; no active entry → the
/// same default.
fn app_boot_partition(ctx: &Ctx, flash: &SimFlash) -> Option<SlotId> {
    let default = ctx
        .map
        .factory()
        .map(|_| SlotId::Factory)
        .or_else(|| ctx.map.next_update_slot(None));
    let Some(o) = read_otadata(ctx, flash) else {
        return default;
    };
    if ctx.map.ota_count() == 0 || (o.entries[0].is_invalid() && o.entries[1].is_invalid()) {
        return default;
    }
    match o.active() {
        Some(a) => ctx.map.slot_for_seq(o.entries[a].seq),
        None => default,
    }
}

/// `rollback-state`.
fn check_state(ctx: &Ctx, s: &Startup, allow: Allow) -> Result<(), Violation> {
    let bad = |what: String| Err(v(Invariant::RollbackState, what));
    match s.which {
        Which::Old => {
            if s.state != ctx.old_state {
                return bad(format!(
                    "OLD runs in {} with state {:?}, but it was {:?} before the scenario",
                    s.slot, s.state, ctx.old_state
                ));
            }
        }
        Which::New if ctx.cfg.rollback => match s.state {
            Some(OtaState::PendingVerify) => {}
            Some(OtaState::Valid) if allow.confirm_requested => {}
            Some(OtaState::Valid) => {
                return bad(format!(
                    "NEW runs in {} already VALID, but no confirm was requested",
                    s.slot
                ))
            }
            other => {
                return bad(format!(
                    "NEW runs in {} with rollback on in state {other:?} \
                     (must be PENDING_VERIFY, or VALID after a confirm)",
                    s.slot
                ))
            }
        },
        Which::New => {
            if s.state != Some(OtaState::Undefined) {
                return bad(format!(
                    "NEW runs in {} without rollback in state {:?} (activate writes UNDEFINED)",
                    s.slot, s.state
                ));
            }
        }
    }
    Ok(())
}

/// What the retry loop did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drive {
    /// The flash's mutating-op count when the loop first called `confirm`.
    pub confirm_at: Option<u64>,
    /// Startups it took.
    pub startups: u8,
}

/// Most startups the retry loop may take: cut → retry update → boot →
/// confirm → boot → the stability boot, plus a recovery reboot.
const MAX_STARTUPS: u8 = 10;

/// After a power cut (power already restored): start the firmware, check,
/// and retry the interrupted step until the scenario's goal holds; then
/// check the goal and that one more power-on changes nothing.
///
/// `allow` says what the steps before the cut already requested.
pub fn drive_to_goal(
    ctx: &Ctx,
    flash: &mut SimFlash,
    mut allow: Allow,
) -> Result<Drive, Violation> {
    let mut drive = Drive::default();
    let retry = |what: &str, e: OtaError<SimFlashError>| {
        v(Invariant::Retry, format!("retrying {what} failed: {e}"))
    };
    loop {
        if drive.startups >= MAX_STARTUPS {
            return Err(v(
                Invariant::Retry,
                format!(
                    "no stable state after {MAX_STARTUPS} startups; otadata {}",
                    otadata_summary(ctx, flash)
                ),
            ));
        }
        drive.startups += 1;
        let s = startup(ctx, flash, allow)?;
        match (ctx.goal, s.which) {
            (Goal::NewConfirmed, Which::Old) => {
                (ctx.update)(flash, &ctx.cfg, s.slot, &ctx.new.bytes)
                    .map_err(|e| retry("the update", e))?;
            }
            (Goal::NewConfirmed, Which::New)
                if ctx.cfg.rollback && s.state == Some(OtaState::PendingVerify) =>
            {
                drive.confirm_at.get_or_insert(flash.mutating_ops());
                allow.confirm_requested = true;
                if ctx.via_core {
                    core_api::http_confirm(flash, &ctx.cfg, s.slot)
                        .map_err(|e| retry("POST /api/ota/confirm", e))?;
                    continue;
                }
                match confirm(flash, &ctx.cfg, s.slot) {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(v(
                            Invariant::Retry,
                            format!("confirm of pending {} did nothing", s.slot),
                        ))
                    }
                    Err(e) => return Err(retry("the confirm", e)),
                }
            }
            (Goal::OldRolledBack, Which::New) if ctx.via_core => {
                core_api::http_rollback(flash, &ctx.cfg, s.slot)
                    .map_err(|e| retry("POST /api/ota/rollback", e))?;
            }
            (Goal::OldRolledBack, Which::New) => {
                mark_invalid_and_rollback(flash, &ctx.cfg).map_err(|e| retry("the rollback", e))?;
            }
            (Goal::Unchanged, Which::New) => {
                return Err(v(
                    Invariant::KnownImage,
                    format!(
                        "NEW runs in {}, but the scenario installs no firmware",
                        s.slot
                    ),
                ))
            }
            (Goal::NewConfirmed, Which::New)
            | (Goal::OldRolledBack, Which::Old)
            | (Goal::Unchanged, Which::Old) => {
                if let (Some(w), Some(Which::Old)) = (ctx.www.as_ref(), s.ui) {
                    if w.goal_new {
                        core_api::http_www_update(flash, &ctx.cfg, s.slot, &w.new_ui, w.pointer)
                            .map_err(|e| retry("POST /api/ota/frontend", e))?;
                        continue;
                    }
                }
                check_goal(ctx, flash, &s, allow)?;
                return Ok(drive);
            }
        }
    }
}

/// `goal`: the settled state is the expected one and stable.
fn check_goal(ctx: &Ctx, flash: &mut SimFlash, s: &Startup, allow: Allow) -> Result<(), Violation> {
    let bad = |what: String| Err(v(Invariant::Goal, what));
    match ctx.goal {
        Goal::NewConfirmed => {
            let want = if ctx.cfg.rollback {
                OtaState::Valid
            } else {
                OtaState::Undefined
            };
            if s.state != Some(want) {
                return bad(format!(
                    "NEW settled in state {:?}, expected {want:?}",
                    s.state
                ));
            }
        }
        Goal::Unchanged => {
            if s.state != ctx.old_state {
                return bad(format!(
                    "OLD settled in state {:?}, it was {:?}",
                    s.state, ctx.old_state
                ));
            }
        }
        Goal::OldRolledBack => {
            let new_slot = ctx.new_slot().map_err(|e| v(Invariant::Goal, e))?;
            if let Some(o) = read_otadata(ctx, flash) {
                if o.entries
                    .iter()
                    .any(|e| e.is_valid() && ctx.map.slot_for_seq(e.seq) == Some(new_slot))
                {
                    return bad(format!(
                        "rolled back, but otadata still selects NEW's slot {new_slot}: {}",
                        otadata_summary(ctx, flash)
                    ));
                }
            }
        }
    }
    if let Some(w) = ctx.www.as_ref() {
        if w.goal_new && s.ui != Some(Which::New) {
            return bad(format!("the web UI settled on {:?}, not the new one", s.ui));
        }
    }
    if let Some(want) = ctx.efuse_goal {
        if s.efuse.unwrap_or(0) < want {
            return bad(format!(
                "NEW is confirmed, but the anti-rollback counter is {:?}, not raised to {want}",
                s.efuse
            ));
        }
    }
    // A power-on that wrote nothing left the flash as it found it, and the
    // bootloader model and recovery are functions of the flash: the next
    // power-on would be identical. Otherwise, power on once more.
    if s.flash_ops == 0 {
        return Ok(());
    }
    let again = startup(ctx, flash, allow)?;
    if again.slot != s.slot || again.flash_ops != 0 || again.state != s.state || again.ui != s.ui {
        return bad(format!(
            "not stable: settled on {} {:?}, the next power-on gave {} {:?} \
             ({} flash writes: {} by the bootloader, recovery {:?})",
            s.slot,
            s.state,
            again.slot,
            again.state,
            again.flash_ops,
            again.bootloader_writes,
            again.recovery
        ));
    }
    Ok(())
}
