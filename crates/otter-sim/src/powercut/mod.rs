//! The power-cut scenario table: the proof of DESIGN.md invariant 2 over the
//! code that ships.
//!
//! "A power cut at any flash operation never leaves a device without a
//! bootable, verified image. After the cut the device boots either the old or
//! the new image, and a retried update completes."
//!
//! [`table::TABLE`] lists every scenario, one line each (what it does, on
//! which layouts and images, through which code); [`run`] runs all of them or
//! one, with one shared runner ([`run_case`]) and one seed helper
//! ([`fault_seed`]), and returns a [`Report`] (text via
//! [`Display`](std::fmt::Display), JSON via serde or [`Report::to_json`]).
//! `otter sim powercut` and otter-sim's `tests/power_cut.rs` call it.
//! [`run_cases`] runs any list of [`Case`]s, for example with a deliberately
//! broken procedure plugged into [`Case::update`] or [`Case::pointer`].
//!
//! # How
//!
//! For every [`Case`] (a [`Scenario`] on a [`Layout`], rollback on or off,
//! an OLD and a NEW image, and a web UI when the layout has one):
//!
//! 1. [`device::prepare`] builds the device's flash just before the
//!    scenario's first step, using otter-ota itself.
//! 2. [`SimFlash::record`] runs the steps once, clean, logging every mutating
//!    flash operation (each program call, each 4 KiB / 64 KiB erase command).
//!    Uploads, confirms and rollbacks go through otter-device's
//!    `service::Connection` ([`core`]), pulls through the shipped
//!    first-sector resume ([`pull`]).
//! 3. [`Recording::faults`] lists, for every operation k, every fault
//!    kind that applies: cut before, cut after, torn program, torn erase
//!    (with and without scramble). For each one the steps are replayed on a
//!    fork of the initial flash with that fault armed; power is restored; the
//!    device starts up ([`device::startup`]: the bootloader model, then
//!    `lifecycle::recover`, rebooting if recovery completed a confirm of
//!    another slot, then the web UI's mount) and is checked; then the
//!    interrupted step is retried until the scenario's goal is reached
//!    ([`device::drive_to_goal`]), with every startup on the way checked
//!    too. The invariants are listed in [`device`]'s docs and named by
//!    [`Invariant`].
//! 4. With [`Case::second_cut`], the recovery itself is recorded from each
//!    post-cut state and cut again at every one of its operations.
//!
//! # What is enumerated, exactly
//!
//! * `CutBefore(k)` for k > 0 leaves the flash byte-for-byte as
//!   `CutAfter(k - 1)` (nothing but reads happens between two mutating
//!   operations), so it is replayed only when `CutAfter(k - 1)` is not; it is
//!   counted in [`CaseReport::equivalent`], not in `cut_points`.
//! * Torn faults get a seed from [`fault_seed`] (the run's seed, the
//!   operation, the kind, the tear's number). Operations on otadata are torn
//!   with [`Sampling::otadata_tears`] different seeds each: they are few,
//!   and the bytes of a torn otadata entry are what decides which image
//!   boots.
//! * [`Sampling::image_stride`] > 1 (big images only) replays every erase,
//!   every otadata operation and every `stride`-th image program (plus the
//!   first and last); stride 1 is fully exhaustive.
//!
//! Every [`Failure`] names the row, the case (scenario, layout, rollback,
//! images), the [`Fault`] (operation index, kind, seed; and the second
//! fault for a cut during recovery), the invariant that broke and what was
//! seen, and carries [`Failure::replay`]: the one-line `otter sim powercut`
//! command that replays exactly that cut.

pub mod core;
pub mod device;
pub mod layouts;
pub mod pull;
pub mod table;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use otter_format::chip::Chip;
use serde::{Serialize, Serializer};

use crate::{Fault, FaultKind, LogPolicy, Recording, SimFlash};

use self::core::PointerWrite;
use device::{drive_to_goal, otter_update, prepare, Allow, Ctx, UpdateFn};
use layouts::{Image, Layout};

/// What a scenario does to the device (its steps are what gets cut).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// A full firmware update into the next slot, selected for boot
    /// ([`Case::update`]: the engine's session, `POST /update` through the
    /// device core, or the resumable pull).
    Update,
    /// The first power-on of the new image: the bootloader's NEW →
    /// PENDING_VERIFY write (rollback only; without it nothing is written).
    FirstBoot,
    /// The confirm of the pending new image.
    Confirm,
    /// The new image's self-test fails: it is marked invalid, the device
    /// rolls back.
    SelfTestFail,
    /// A crash (any reboot) while the new image is PENDING_VERIFY: the
    /// bootloader's PENDING_VERIFY → ABORTED write, the rollback.
    CrashRollback,
    /// `POST /api/ota/rollback` on the new image (confirmed, with rollback on).
    ApiRollback,
    /// The confirm through the device core with anti-rollback on: NEW's
    /// higher `secure_version` is burned into the eFuse counter.
    AntiRollback,
    /// `POST /api/ota/frontend`: the inactive web-UI slot written, checked,
    /// and the NVS pointer flipped.
    WwwUpdate,
    /// A web-UI update whose pointer flip needs an NVS page collected.
    NvsGc,
    /// A firmware update, then a web-UI update, before the reboot.
    Bundle,
}

impl Scenario {
    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Update => "update",
            Self::FirstBoot => "first-boot",
            Self::Confirm => "confirm",
            Self::SelfTestFail => "self-test-fail",
            Self::CrashRollback => "crash-rollback",
            Self::ApiRollback => "api-rollback",
            Self::AntiRollback => "anti-rollback",
            Self::WwwUpdate => "www-update",
            Self::NvsGc => "nvs-gc",
            Self::Bundle => "bundle",
        }
    }
}

/// The invariant a failure broke (see [`device`]'s docs for each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invariant {
    /// The case could not be set up, or its clean run failed.
    Setup,
    /// A replay did not reach the fault (the scenario is not deterministic).
    Replay,
    /// Something boots.
    Boots,
    /// What boots is byte-for-byte OLD or NEW, with its version.
    KnownImage,
    /// The bootloader boots the slot otadata selects (no fallback).
    Selection,
    /// The app's reading of otadata names the booted slot.
    AppAgrees,
    /// The running image's rollback state is one it may have.
    RollbackState,
    /// The selected web-UI slot mounts and holds the old or the new UI.
    WebUi,
    /// NVS loads, the pointer is old or new, no other key is lost.
    Nvs,
    /// Retrying the interrupted step succeeds and settles.
    Retry,
    /// The settled state is the scenario's goal, and stable.
    Goal,
}

impl Invariant {
    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Setup => "setup",
            Self::Replay => "replay",
            Self::Boots => "boots",
            Self::KnownImage => "known-image",
            Self::Selection => "selection",
            Self::AppAgrees => "app-agrees",
            Self::RollbackState => "rollback-state",
            Self::WebUi => "web-ui",
            Self::Nvs => "nvs",
            Self::Retry => "retry",
            Self::Goal => "goal",
        }
    }
}

/// An invariant that did not hold, and what was seen.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The invariant.
    pub invariant: Invariant,
    /// What was seen.
    pub detail: String,
}

/// One failing cut. Serialized as `{row, scenario, layout, case, fault,
/// second, invariant, message, replay}`, with each fault as `{op_index,
/// kind, seed}`.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The table row.
    pub row: &'static str,
    /// The scenario that was cut.
    pub scenario: Scenario,
    /// The layout's name.
    pub layout: &'static str,
    /// The whole case: scenario, layout, rollback, history, images.
    pub case: String,
    /// The fault in the scenario's steps (`None` for setup failures).
    #[serde(serialize_with = "ser_fault")]
    pub fault: Option<Fault>,
    /// The second fault, in the recovery after `fault`.
    #[serde(serialize_with = "ser_fault")]
    pub second: Option<Fault>,
    /// What broke.
    pub invariant: Invariant,
    /// What was seen.
    #[serde(rename = "message")]
    pub detail: String,
    /// The command that replays exactly this cut.
    pub replay: String,
}

#[derive(Serialize)]
struct FaultJson {
    op_index: u64,
    kind: &'static str,
    seed: u64,
}

fn ser_fault<S: Serializer>(f: &Option<Fault>, s: S) -> Result<S::Ok, S::Error> {
    f.map(|f| FaultJson {
        op_index: f.op_index,
        kind: f.kind.name(),
        seed: f.seed,
    })
    .serialize(s)
}

fn ser_millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}: {}] ", self.row, self.case)?;
        match self.fault {
            Some(fault) => write!(f, "fault: {fault}")?,
            None => f.write_str("no fault")?,
        }
        if let Some(second) = self.second {
            write!(f, ", then during recovery: {second}")?;
        }
        write!(
            f,
            " => invariant `{}` broken: {}\n  replay: {}",
            self.invariant.name(),
            self.detail,
            self.replay
        )
    }
}

/// The command that replays one cut of case `index` of `row`.
pub fn replay_command(
    row: &str,
    index: usize,
    seed: u64,
    fault: Option<Fault>,
    second: Option<Fault>,
) -> String {
    let mut c = format!("otter sim powercut --scenario {row} --case {index} --seed {seed:#x}");
    if let Some(f) = fault {
        c.push_str(&format!(" --fault {}", f.spec()));
    }
    if let Some(f) = second {
        c.push_str(&format!(" --second {}", f.spec()));
    }
    c
}

/// Which faults of a recording are replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampling {
    /// 1: every operation outside otadata. n: every n-th such operation
    /// (by position), plus the first and last of each kind (sector erase,
    /// block erase, program). Operations on otadata are always replayed.
    pub image_stride: u64,
    /// Seeds per torn fault on an otadata operation.
    pub otadata_tears: u64,
}

impl Sampling {
    /// Every operation, every kind; otadata tears with 4 seeds.
    pub const EXHAUSTIVE: Self = Self {
        image_stride: 1,
        otadata_tears: 4,
    };

    /// Every otadata operation, every `stride`-th image operation.
    pub const fn strided(stride: u64) -> Self {
        Self {
            image_stride: stride,
            otadata_tears: 4,
        }
    }
}

/// A second cut during the recovery from each first cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondCut {
    /// Which first faults get a second enumeration: every `first_stride`-th.
    pub first_stride: usize,
    /// How the recovery's operations are sampled.
    pub sampling: Sampling,
    /// Only first cuts at an otadata or NVS operation get a second
    /// enumeration (their recoveries are the ones that decide between two
    /// states; a cut in a slot's data is recovered by the same retry as
    /// its neighbours).
    pub metadata_only: bool,
}

/// The web UI of a case: OLD's UI in `www_{from}`, NEW's written by the
/// scenario (or its retry).
#[derive(Clone)]
pub struct WwwSpec {
    /// The slot OLD's UI is in (0 or 1).
    pub from: usize,
    /// The UI mounted before the scenario.
    pub old_ui: Arc<Vec<u8>>,
    /// The UI the update installs.
    pub new_ui: Arc<Vec<u8>>,
    /// An older UI in `www_0` when OLD's is in `www_1`.
    pub older_ui: Arc<Vec<u8>>,
    /// Fill NVS until the pointer flip needs a page collected.
    pub gc: bool,
}

/// One scenario on one device.
#[derive(Clone)]
pub struct Case {
    /// The table row it belongs to.
    pub row: &'static str,
    /// What is cut.
    pub scenario: Scenario,
    /// The partition table and flash size.
    pub layout: Layout,
    /// The device's chip (the images are built for it).
    pub chip: Chip,
    /// `CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE`.
    pub rollback: bool,
    /// The anti-rollback eFuse counter, when anti-rollback is on.
    pub anti_rollback: Option<u32>,
    /// Updates (booted and confirmed) before the OLD image was installed:
    /// varies the otadata sequence numbers and stale entries the scenario
    /// starts from.
    pub history: u8,
    /// The image that runs before the scenario.
    pub old: Image,
    /// The image the scenario installs.
    pub new: Image,
    /// The web UI, when the layout has web-UI slots.
    pub www: Option<WwwSpec>,
    /// Which faults are replayed.
    pub sampling: Sampling,
    /// A second cut during each recovery, if any.
    pub second_cut: Option<SecondCut>,
    /// The firmware update procedure under test.
    pub update: UpdateFn,
    /// Name of the update procedure, for reports.
    pub update_name: &'static str,
    /// Confirm, rollback and self-test through the device core.
    pub via_core: bool,
    /// How the platform writes the web-UI pointer.
    pub pointer: PointerWrite,
}

impl Case {
    /// A case with otter's engine update, exhaustive sampling, no second
    /// cut, no web UI.
    pub fn new(
        scenario: Scenario,
        layout: Layout,
        rollback: bool,
        history: u8,
        old: &Image,
        new: &Image,
    ) -> Self {
        Self {
            row: "custom",
            scenario,
            layout,
            chip: Chip::Esp32s3,
            rollback,
            anti_rollback: None,
            history,
            old: old.clone(),
            new: new.clone(),
            www: None,
            sampling: Sampling::EXHAUSTIVE,
            second_cut: None,
            update: otter_update,
            update_name: "engine",
            via_core: false,
            pointer: PointerWrite::REAL,
        }
    }

    /// "scenario | layout | rollback | history | OLD → NEW | …".
    pub fn name(&self) -> String {
        let mut s = format!(
            "{} | {} | rollback {} | history {} | {} -> {}",
            self.scenario.name(),
            self.layout.name,
            if self.rollback { "on" } else { "off" },
            self.history,
            self.old.describe(),
            self.new.describe()
        );
        s.push_str(&format!(" | via {}", self.update_name));
        if let Some(c) = self.anti_rollback {
            s.push_str(&format!(" | anti-rollback counter {c}"));
        }
        if let Some(w) = &self.www {
            s.push_str(&format!(
                " | web UI www_{} -> www_{}{}",
                w.from,
                1 - w.from.min(1),
                if w.gc { ", NVS collecting" } else { "" }
            ));
            if self.pointer.name != PointerWrite::REAL.name {
                s.push_str(&format!(" | pointer write: {}", self.pointer.name));
            }
        }
        if self.sampling.image_stride > 1 {
            s.push_str(&format!(
                " | image ops sampled 1/{}",
                self.sampling.image_stride
            ));
        }
        if self.second_cut.is_some() {
            s.push_str(" | second cuts");
        }
        s
    }
}

/// What one case did.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// The table row.
    pub row: &'static str,
    /// The case's index in its row (`--case`).
    pub index: usize,
    /// The case's name ([`Case::name`]).
    #[serde(rename = "case")]
    pub name: String,
    /// Mutating operations in the clean run of the steps.
    pub ops: u64,
    /// Faults replayed and checked (first and second cuts).
    pub cut_points: u64,
    /// Of those, second cuts during recovery.
    pub second_cuts: u64,
    /// `CutBefore(k)` faults not replayed because `CutAfter(k-1)` leaves the
    /// same flash.
    pub equivalent: u64,
    /// The cuts that broke an invariant.
    #[serde(skip)]
    pub failures: Vec<Failure>,
    /// Wall-clock time of the case.
    #[serde(rename = "elapsed_ms", serialize_with = "ser_millis")]
    pub elapsed: Duration,
}

/// One row's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RowReport {
    /// The row's name.
    pub row: &'static str,
    /// Cases run.
    pub cases: usize,
    /// Cut points checked.
    pub cut_points: u64,
    /// Of those, second cuts during recovery.
    pub second_cuts: u64,
    /// Failures.
    pub failures: usize,
    /// CPU time of its cases, summed.
    #[serde(rename = "elapsed_ms", serialize_with = "ser_millis")]
    pub elapsed: Duration,
}

/// The result of a run. Serialized (for `--json`) as `{seed, real_images,
/// scenarios, cut_points, elapsed_ms, rows, cases, failures}`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The seed of the torn faults.
    pub seed: u64,
    /// The real (third-party) images used, as paths relative to the corpus.
    pub real_images: Vec<String>,
    /// Cases run (scenario × layout × configuration).
    pub scenarios: usize,
    /// Faults replayed and checked, over all cases.
    pub cut_points: u64,
    /// Wall-clock time of the run.
    #[serde(rename = "elapsed_ms", serialize_with = "ser_millis")]
    pub elapsed: Duration,
    /// Per-row figures, in table order.
    pub rows: Vec<RowReport>,
    /// Per-case figures.
    pub cases: Vec<CaseReport>,
    /// Every cut that broke an invariant, over all cases.
    pub failures: Vec<Failure>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "power-cut table, seed {:#x}: {} cases, {} cut points, {} failures, {:.1?}",
            self.seed,
            self.scenarios,
            self.cut_points,
            self.failures.len(),
            self.elapsed
        )?;
        for img in &self.real_images {
            writeln!(f, "  real image: {img}")?;
        }
        for c in &self.cases {
            writeln!(
                f,
                "  {:>5} ops {:>6} cuts ({:>6} 2nd) {:>3} fail {:>7.1?}  {} #{}: {}",
                c.ops,
                c.cut_points,
                c.second_cuts,
                c.failures.len(),
                c.elapsed,
                c.row,
                c.index,
                c.name
            )?;
        }
        writeln!(f, "per scenario:")?;
        for r in &self.rows {
            writeln!(
                f,
                "  {:<16} {:>3} cases {:>7} cut points ({:>6} second cuts) {:>3} failures {:>7.1?}",
                r.row, r.cases, r.cut_points, r.second_cuts, r.failures, r.elapsed
            )?;
        }
        for fail in &self.failures {
            writeln!(f, "FAIL {fail}")?;
        }
        Ok(())
    }
}

impl Report {
    /// The report as one JSON object (what `--json` prints, compact).
    pub fn to_json(&self) -> String {
        // Serializing plain data to a string cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether no cut broke an invariant.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The figures of `row`, if it ran.
    pub fn row(&self, row: &str) -> Option<&RowReport> {
        self.rows.iter().find(|r| r.row == row)
    }
}

/// SplitMix64: derives independent per-fault seeds from the run's seed.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn kind_code(k: FaultKind) -> u64 {
    match k {
        FaultKind::CutBefore => 1,
        FaultKind::CutAfter => 2,
        FaultKind::TornProgram => 3,
        FaultKind::TornErase { scramble: false } => 4,
        FaultKind::TornErase { scramble: true } => 5,
    }
}

/// The seed helper: the seed of tear number `tear` of a `kind` fault at
/// mutating operation `op` in a run seeded with `seed` (every fault gets its
/// own, so tears differ in depth; the same inputs give the same tear).
pub fn fault_seed(seed: u64, op: u64, kind: FaultKind, tear: u64) -> u64 {
    mix(seed ^ mix(op ^ (kind_code(kind) << 56) ^ (tear << 48)))
}

/// The faults of `rec` to replay (see the module docs), and how many
/// `CutBefore` faults were left out as equivalent.
fn select_faults<T>(
    rec: &Recording<T>,
    seed: u64,
    sampling: Sampling,
    in_otadata: &dyn Fn(u32) -> bool,
) -> (Vec<Fault>, u64) {
    let ops: Vec<_> = rec.log.mutating().copied().collect();
    let stride = sampling.image_stride.max(1);
    // First and last image operation of each kind.
    let mut ends = std::collections::HashMap::new();
    for (i, r) in ops.iter().enumerate() {
        if !in_otadata(r.offset) {
            ends.entry(r.kind).or_insert((i, i)).1 = i;
        }
    }
    let mut included = vec![false; ops.len()];
    let mut ordinal = 0u64;
    for (i, r) in ops.iter().enumerate() {
        if in_otadata(r.offset) {
            included[i] = true;
            continue;
        }
        let end = ends.get(&r.kind).is_some_and(|&(a, b)| i == a || i == b);
        included[i] = ordinal.is_multiple_of(stride) || end;
        ordinal += 1;
    }
    let by_index: std::collections::HashMap<u64, usize> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.op_index.map(|k| (k, i)))
        .collect();
    let mut out = Vec::new();
    let mut equivalent = 0;
    for fault in rec.faults(seed) {
        let Some(&i) = by_index.get(&fault.op_index) else {
            continue;
        };
        if !included[i] {
            continue;
        }
        match fault.kind {
            FaultKind::CutBefore if i > 0 && included[i - 1] => equivalent += 1,
            FaultKind::CutBefore | FaultKind::CutAfter => out.push(fault),
            torn => {
                let tears = if in_otadata(ops[i].offset) {
                    sampling.otadata_tears.max(1)
                } else {
                    1
                };
                for t in 0..tears {
                    out.push(Fault::new(
                        fault.op_index,
                        torn,
                        fault_seed(seed, fault.op_index, torn, t),
                    ));
                }
            }
        }
    }
    (out, equivalent)
}

/// One cut to replay instead of the whole enumeration (`--fault`,
/// `--second`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replay {
    /// The fault in the scenario's steps.
    pub fault: Fault,
    /// The fault in the recovery after it.
    pub second: Option<Fault>,
}

/// Runs one case: every selected cut, or only `replay`. `index` is the
/// case's place in its row (for the replay command).
pub fn run_case(case: &Case, index: usize, seed: u64, replay: Option<Replay>) -> CaseReport {
    let start = Instant::now();
    let name = case.name();
    let mut report = CaseReport {
        row: case.row,
        index,
        name: name.clone(),
        ops: 0,
        cut_points: 0,
        second_cuts: 0,
        equivalent: 0,
        failures: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let fail = |fault, second, v: Violation| Failure {
        row: case.row,
        scenario: case.scenario,
        layout: case.layout.name,
        case: name.clone(),
        fault,
        second,
        invariant: v.invariant,
        detail: v.detail,
        replay: replay_command(case.row, index, seed, fault, second),
    };
    let prepared = match prepare(case) {
        Ok(p) => p,
        Err(detail) => {
            report.failures.push(fail(
                None,
                None,
                Violation {
                    invariant: Invariant::Setup,
                    detail,
                },
            ));
            report.elapsed = start.elapsed();
            return report;
        }
    };
    let ctx = &prepared.ctx;
    let allow = Allow {
        confirm_requested: matches!(
            case.scenario,
            Scenario::Confirm | Scenario::AntiRollback | Scenario::ApiRollback
        ),
    };

    // The clean run must itself reach the goal.
    let rec = prepared.flash.record(|f| ctx.steps(f));
    report.ops = rec.mutating_ops;
    let clean = rec.value.clone().map_err(|detail| Violation {
        invariant: Invariant::Setup,
        detail: format!("the clean run failed: {detail}"),
    });
    let clean = clean.and_then(|()| {
        let mut end = SimFlash::from_bytes(rec.image.clone())
            .map_err(|e| Violation {
                invariant: Invariant::Setup,
                detail: format!("the recording's image: {e}"),
            })?
            .with_log_policy(LogPolicy::Off);
        drive_to_goal(ctx, &mut end, allow)
    });
    if let Err(v) = clean {
        report.failures.push(fail(None, None, v));
        report.elapsed = start.elapsed();
        return report;
    }

    let in_otadata = |o: u32| ctx.in_otadata(o);
    let (mut faults, equivalent) = select_faults(&rec, seed, case.sampling, &in_otadata);
    report.equivalent = equivalent;
    let offsets: std::collections::HashMap<u64, u32> = rec
        .log
        .mutating()
        .filter_map(|r| r.op_index.map(|k| (k, r.offset)))
        .collect();
    let metadata = |f: &Fault| {
        offsets
            .get(&f.op_index)
            .is_some_and(|&o| ctx.in_otadata(o) || ctx.in_nvs(o))
    };
    if let Some(r) = replay {
        faults = vec![r.fault];
    }
    for (n, fault) in faults.into_iter().enumerate() {
        report.cut_points += 1;
        let mut flash = prepared.flash.fork().with_fault(fault);
        flash.set_log_policy(LogPolicy::Off);
        let _ = ctx.steps(&mut flash);
        if !flash.fault_fired() {
            report.failures.push(fail(
                Some(fault),
                None,
                Violation {
                    invariant: Invariant::Replay,
                    detail: format!("the fault did not fire ({:?})", flash.fault_status()),
                },
            ));
            continue;
        }
        flash.power_cycle();
        let second = match replay {
            Some(Replay {
                second: Some(_), ..
            }) => Some(case.second_cut.unwrap_or(SecondCut {
                first_stride: 1,
                sampling: Sampling::EXHAUSTIVE,
                metadata_only: false,
            })),
            Some(Replay { second: None, .. }) => None,
            None => case.second_cut,
        };
        let post_cut = second
            .filter(|s| n % s.first_stride.max(1) == 0)
            .filter(|s| !s.metadata_only || replay.is_some() || metadata(&fault))
            .map(|s| (s, flash.fork()));
        if replay.is_none_or(|r| r.second.is_none()) {
            if let Err(v) = drive_to_goal(ctx, &mut flash, allow) {
                report.failures.push(fail(Some(fault), None, v));
                continue;
            }
        }
        if let Some((second, post)) = post_cut {
            second_cut(
                ctx,
                &post,
                fault,
                seed,
                second,
                allow,
                &mut report,
                &fail,
                replay.and_then(|r| r.second),
            );
        }
    }
    report.elapsed = start.elapsed();
    report
}

/// Records the recovery from `post` (a post-cut flash, powered) and cuts it
/// again at each of its operations.
#[allow(clippy::too_many_arguments)]
fn second_cut(
    ctx: &Ctx,
    post: &SimFlash,
    first: Fault,
    seed: u64,
    second: SecondCut,
    allow: Allow,
    report: &mut CaseReport,
    fail: &dyn Fn(Option<Fault>, Option<Fault>, Violation) -> Failure,
    only: Option<Fault>,
) {
    let rec = post.record(|f| drive_to_goal(ctx, f, allow));
    let Ok(drive) = rec.value else {
        // The first-cut check already reports this path.
        return;
    };
    let in_otadata = |o: u32| ctx.in_otadata(o);
    let seed2 = fault_seed(seed, first.op_index, first.kind, first.seed);
    let (mut faults, equivalent) = select_faults(&rec, seed2, second.sampling, &in_otadata);
    report.equivalent += equivalent;
    if let Some(f) = only {
        faults = vec![f];
    }
    for f2 in faults {
        report.cut_points += 1;
        report.second_cuts += 1;
        let mut flash = post.fork().with_fault(f2);
        flash.set_log_policy(LogPolicy::Off);
        let _ = drive_to_goal(ctx, &mut flash, allow);
        if !flash.fault_fired() {
            report.failures.push(fail(
                Some(first),
                Some(f2),
                Violation {
                    invariant: Invariant::Replay,
                    detail: format!("the fault did not fire ({:?})", flash.fault_status()),
                },
            ));
            continue;
        }
        flash.power_cycle();
        let allow2 = Allow {
            confirm_requested: allow.confirm_requested
                || drive.confirm_at.is_some_and(|at| f2.op_index >= at),
        };
        if let Err(v) = drive_to_goal(ctx, &mut flash, allow2) {
            report.failures.push(fail(Some(first), Some(f2), v));
        }
    }
}

/// Runs `cases` on up to `workers` threads, biggest first. Each case is
/// `(index in its row, case)`.
pub fn run_cases(cases: Vec<Case>, seed: u64, workers: usize) -> Report {
    let indexed = cases.into_iter().enumerate().collect();
    run_indexed(indexed, seed, workers, None)
}

/// [`run_cases`] with each case's index in its row given, and optionally
/// one cut to replay.
pub fn run_indexed(
    cases: Vec<(usize, Case)>,
    seed: u64,
    workers: usize,
    replay: Option<Replay>,
) -> Report {
    let start = Instant::now();
    let n = cases.len();
    let order: Vec<&'static str> = {
        let mut rows: Vec<&'static str> = Vec::new();
        for (_, c) in &cases {
            if !rows.contains(&c.row) {
                rows.push(c.row);
            }
        }
        rows
    };
    let mut queue: Vec<(usize, (usize, Case))> = cases.into_iter().enumerate().collect();
    // Cheapest last: pop() takes from the end.
    queue.sort_by_key(|(_, (_, c))| {
        c.new.bytes.len() / c.sampling.image_stride.max(1) as usize
            * if c.second_cut.is_some() { 64 } else { 1 }
    });
    let queue = Mutex::new(queue);
    let results = Mutex::new(Vec::with_capacity(n));
    // A worker that panicked poisons nothing we cannot read: the queue and
    // the results are plain vectors, and the scope re-raises the panic.
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some((i, (index, case))) = next else {
                    break;
                };
                let r = run_case(&case, index, seed, replay);
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(i, _)| *i);
    let cases: Vec<CaseReport> = results.into_iter().map(|(_, r)| r).collect();
    let rows = order
        .into_iter()
        .map(|row| {
            let of: Vec<&CaseReport> = cases.iter().filter(|c| c.row == row).collect();
            RowReport {
                row,
                cases: of.len(),
                cut_points: of.iter().map(|c| c.cut_points).sum(),
                second_cuts: of.iter().map(|c| c.second_cuts).sum(),
                failures: of.iter().map(|c| c.failures.len()).sum(),
                elapsed: of.iter().map(|c| c.elapsed).sum(),
            }
        })
        .collect();
    Report {
        seed,
        real_images: Vec::new(),
        scenarios: cases.len(),
        cut_points: cases.iter().map(|c| c.cut_points).sum(),
        failures: cases.iter().flat_map(|c| c.failures.clone()).collect(),
        rows,
        cases,
        elapsed: start.elapsed(),
    }
}

/// Worker threads: the machine's parallelism, at most 4.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4)
}

/// The seed the test suite and `otter sim powercut` use unless told otherwise.
pub const DEFAULT_SEED: u64 = 0x0770_7ea5;

/// What [`run`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerCutOptions {
    /// Seed of the torn faults (a failure names it, so it can be replayed).
    pub seed: u64,
    /// Only this row of [`table::TABLE`] (`None`: all of them).
    pub scenario: Option<String>,
    /// Only this case of the row.
    pub case: Option<usize>,
    /// Only this cut (needs `scenario` and `case`).
    pub replay: Option<Replay>,
    /// The shared corpus folder: the rows that update to real ESP-IDF
    /// images read them from it, and its absence is a setup failure, not a
    /// silent skip.
    pub corpus: PathBuf,
    /// Worker threads; 0 means [`default_workers`].
    pub workers: usize,
}

impl PowerCutOptions {
    /// Every row with [`DEFAULT_SEED`], the corpus at `corpus`, default
    /// workers.
    pub fn new(corpus: PathBuf) -> Self {
        Self {
            seed: DEFAULT_SEED,
            scenario: None,
            case: None,
            replay: None,
            corpus,
            workers: 0,
        }
    }
}

/// Runs the table rows `opts` selects and reports every cut that broke an
/// invariant. A row that cannot be built (for example a corpus without its
/// images) is reported as one `setup` failure; an unknown row name or case
/// index is an `Err` naming the rows.
pub fn run(opts: &PowerCutOptions) -> Result<Report, String> {
    let start = Instant::now();
    let workers = match opts.workers {
        0 => default_workers(),
        n => n,
    };
    let rows: Vec<&table::Row> = match opts.scenario.as_deref() {
        None => table::TABLE.iter().collect(),
        Some(name) => vec![table::row(name).ok_or_else(|| {
            format!(
                "no scenario {name:?} in the power-cut table; the scenarios are: {}",
                table::TABLE
                    .iter()
                    .map(|r| r.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?],
    };
    if opts.replay.is_some() && (opts.scenario.is_none() || opts.case.is_none()) {
        return Err("replaying one cut needs the scenario and the case it belongs to".into());
    }
    let env = table::Env::new(&opts.corpus);
    let mut cases = Vec::new();
    let mut setup = Vec::new();
    for row in rows {
        match (row.cases)(&env) {
            Ok(list) => {
                let n = list.len();
                let mut list: Vec<(usize, Case)> = list
                    .into_iter()
                    .map(|mut c| {
                        c.row = row.name;
                        c
                    })
                    .enumerate()
                    .collect();
                if let Some(i) = opts.case {
                    if i >= n {
                        return Err(format!(
                            "scenario {} has {n} cases (0 to {}), not {i}",
                            row.name,
                            n.saturating_sub(1)
                        ));
                    }
                    list.retain(|(k, _)| *k == i);
                }
                cases.extend(list);
            }
            Err(detail) => setup.push(Failure {
                row: row.name,
                scenario: row.scenario,
                layout: "-",
                case: format!("building the cases of {}", row.name),
                fault: None,
                second: None,
                invariant: Invariant::Setup,
                detail,
                replay: format!("otter sim powercut --scenario {}", row.name),
            }),
        }
    }
    let mut report = run_indexed(cases, opts.seed, workers, opts.replay);
    report.real_images = env.used();
    report.failures.extend(setup);
    report.elapsed = start.elapsed();
    Ok(report)
}
