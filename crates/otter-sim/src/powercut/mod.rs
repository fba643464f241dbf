//! The exhaustive power-cut harness: the proof of DESIGN.md invariant 2.
//!
//! "A power cut at any flash operation never leaves a device without a
//! bootable, verified image. After the cut the device boots either the old or
//! the new image, and a retried update completes."
//!
//! [`run_all`] runs the standard matrix and returns a [`Report`] (a table via
//! [`Display`](std::fmt::Display), JSON via serde or [`Report::to_json`]);
//! `otter sim powercut` and otter-sim's `tests/power_cut.rs` call it.
//! [`run_cases`] runs any list of [`Case`]s, for example with a deliberately
//! broken update procedure plugged into [`Case::update`].
//!
//! # How
//!
//! For every [`Case`] (a [`Scenario`] on a [`Layout`], rollback on or off,
//! an OLD and a NEW image):
//!
//! 1. [`device::prepare`] builds the device's flash just before the
//!    scenario's first step, using otter-ota itself.
//! 2. [`SimFlash::record`] runs the steps once, clean, logging every mutating
//!    flash operation (each program call, each 4 KiB / 64 KiB erase command).
//! 3. [`Recording::faults`] lists, for every operation k, every fault
//!    kind that applies: cut before, cut after, torn program, torn erase
//!    (with and without scramble). For each one the steps are replayed on a
//!    fork of the initial flash with that fault armed; power is restored; the
//!    device starts up ([`device::startup`]: the bootloader model, then
//!    `lifecycle::recover`, rebooting if recovery completed a confirm of
//!    another slot) and is checked; then the interrupted step is retried
//!    until the scenario's goal is reached ([`device::drive_to_goal`]), with
//!    every startup on the way checked too. The invariants are listed in
//!    [`device`]'s docs and named by [`Invariant`].
//! 4. Optionally ([`Case::second_cut`]) the recovery itself is recorded from
//!    each post-cut state and cut again at every one of its operations.
//!
//! # What is enumerated, exactly
//!
//! * `CutBefore(k)` for k > 0 leaves the flash byte-for-byte as
//!   `CutAfter(k - 1)` (nothing but reads happens between two mutating
//!   operations), so it is replayed only when `CutAfter(k - 1)` is not; it is
//!   counted in [`CaseReport::equivalent`], not in `cut_points`.
//! * Torn faults get a seed derived from the run's seed, the operation and
//!   the kind (`Recording::faults` gives every fault the same seed, and a
//!   seed fixes how far a tear gets, so one seed would tear every operation
//!   to the same depth). Operations on otadata are torn with
//!   [`Sampling::otadata_tears`] different seeds each: they are few, and the
//!   bytes of a torn otadata entry are what decides which image boots.
//! * [`Sampling::image_stride`] > 1 (big images only) replays every erase,
//!   every otadata operation and every `stride`-th image program (plus the
//!   first and last); small images use stride 1: fully exhaustive.
//!
//! Every [`Failure`] names the case (scenario, layout, rollback, images), the
//! [`Fault`] (operation index, kind, seed; and the second fault for a cut
//! during recovery), the invariant that broke and what was seen, so it can
//! be replayed exactly ([`PowerCutOptions::seed`] and
//! [`PowerCutOptions::filter`]).
//!
//! # The matrices
//!
//! [`Matrix::Standard`] (see [`standard_cases`]): every scenario on eight
//! layouts, rollback on and off, small images exhaustively, a ~1.45 MB image
//! and a real ESP-IDF image sampled, and second cuts during recovery; about
//! 3,800 cut points, a minute of CPU in a debug build.
//! [`Matrix::Quick`] (see [`quick_cases`]): every scenario on two layouts,
//! about 300 cut points in a few seconds.

pub mod device;
pub mod layouts;
pub mod pull;

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use otter_format::chip::Chip;
use serde::{Serialize, Serializer};

use crate::{Fault, FaultKind, LogPolicy, Recording, SimFlash};

use device::{drive_to_goal, otter_update, prepare, Allow, Ctx, UpdateFn};
use layouts::{Image, Layout};

/// What a scenario does to the device (its steps are what gets cut).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// A full update: begin, write (1460-byte chunks), finish, activate.
    Update,
    /// The first power-on of the new image: the bootloader's NEW →
    /// PENDING_VERIFY write (rollback only; without it nothing is written).
    FirstBoot,
    /// `lifecycle::confirm` of the pending new image.
    Confirm,
    /// The new image's self-test fails: `mark_invalid_and_rollback`.
    SelfTestFail,
    /// A reboot while the new image is PENDING_VERIFY: the bootloader's
    /// PENDING_VERIFY → ABORTED write.
    RebootPending,
}

impl Scenario {
    /// Name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Update => "update",
            Self::FirstBoot => "first-boot",
            Self::Confirm => "confirm",
            Self::SelfTestFail => "self-test-fail",
            Self::RebootPending => "reboot-pending",
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

/// One failing cut. Serialized as `{scenario, layout, case, fault, second,
/// invariant, message}`, with each fault as `{op_index, kind, seed}`.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
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
        write!(f, "[{}] ", self.case)?;
        match self.fault {
            Some(fault) => write!(f, "fault: {fault}")?,
            None => f.write_str("no fault")?,
        }
        if let Some(second) = self.second {
            write!(f, ", then during recovery: {second}")?;
        }
        write!(
            f,
            " => invariant `{}` broken: {}",
            self.invariant.name(),
            self.detail
        )
    }
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
}

/// One scenario on one device.
#[derive(Clone)]
pub struct Case {
    /// What is cut.
    pub scenario: Scenario,
    /// The partition table and flash size.
    pub layout: Layout,
    /// The device's chip (the images are built for it).
    pub chip: Chip,
    /// `CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE`.
    pub rollback: bool,
    /// Updates (booted and confirmed) before the OLD image was installed:
    /// varies the otadata sequence numbers and stale entries the scenario
    /// starts from.
    pub history: u8,
    /// The image that runs before the scenario.
    pub old: Image,
    /// The image the scenario installs.
    pub new: Image,
    /// Which faults are replayed.
    pub sampling: Sampling,
    /// A second cut during each recovery, if any.
    pub second_cut: Option<SecondCut>,
    /// The update procedure under test.
    pub update: UpdateFn,
    /// Name of the update procedure, for reports.
    pub update_name: &'static str,
}

impl Case {
    /// A case with otter's update, exhaustive sampling and no second cut.
    pub fn new(
        scenario: Scenario,
        layout: Layout,
        rollback: bool,
        history: u8,
        old: &Image,
        new: &Image,
    ) -> Self {
        Self {
            scenario,
            layout,
            chip: Chip::Esp32s3,
            rollback,
            history,
            old: old.clone(),
            new: new.clone(),
            sampling: Sampling::EXHAUSTIVE,
            second_cut: None,
            update: otter_update,
            update_name: "otter",
        }
    }

    /// "scenario | layout | rollback | history | OLD → NEW".
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
        if self.update_name != "otter" {
            s.push_str(&format!(" | update procedure: {}", self.update_name));
        }
        if self.sampling.image_stride > 1 {
            s.push_str(&format!(
                " | image ops sampled 1/{}",
                self.sampling.image_stride
            ));
        }
        s
    }
}

/// What one case did.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
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

/// The result of a run. Serialized (for `--json`) as `{seed, matrix,
/// real_image, scenarios, cut_points, elapsed_ms, cases, failures}`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The seed of the torn faults.
    pub seed: u64,
    /// The matrix that ran (`None` for a custom list of cases).
    pub matrix: Option<Matrix>,
    /// The real (third-party) image used as NEW in some cases, as a path
    /// relative to the corpus, or `None` when no corpus was given.
    pub real_image: Option<String>,
    /// Cases run (scenario × layout × configuration).
    pub scenarios: usize,
    /// Faults replayed and checked, over all cases.
    pub cut_points: u64,
    /// Wall-clock time of the run.
    #[serde(rename = "elapsed_ms", serialize_with = "ser_millis")]
    pub elapsed: Duration,
    /// Per-case figures.
    pub cases: Vec<CaseReport>,
    /// Every cut that broke an invariant, over all cases.
    pub failures: Vec<Failure>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "power-cut harness, seed {:#x}: {} cases, {} cut points, {} failures, {:.1?}",
            self.seed,
            self.scenarios,
            self.cut_points,
            self.failures.len(),
            self.elapsed
        )?;
        match (&self.real_image, self.matrix) {
            (Some(img), _) => writeln!(f, "  real image: {img}")?,
            (None, Some(_)) => writeln!(f, "  real image: none (no corpus given)")?,
            (None, None) => {}
        }
        for c in &self.cases {
            writeln!(
                f,
                "  {:>5} ops {:>6} cuts ({:>5} 2nd) {:>3} fail {:>7.1?}  {}",
                c.ops,
                c.cut_points,
                c.second_cuts,
                c.failures.len(),
                c.elapsed,
                c.name
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
}

/// SplitMix64: derives independent per-fault seeds from the run's seed.
fn mix(mut z: u64) -> u64 {
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
                    let s = mix(seed ^ mix(fault.op_index ^ (kind_code(torn) << 56) ^ (t << 48)));
                    out.push(Fault::new(fault.op_index, torn, s));
                }
            }
        }
    }
    (out, equivalent)
}

/// Runs one case.
pub fn run_case(case: &Case, seed: u64) -> CaseReport {
    let start = Instant::now();
    let name = case.name();
    let mut report = CaseReport {
        name: name.clone(),
        ops: 0,
        cut_points: 0,
        second_cuts: 0,
        equivalent: 0,
        failures: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let fail = |fault, second, v: Violation| Failure {
        scenario: case.scenario,
        layout: case.layout.name,
        case: name.clone(),
        fault,
        second,
        invariant: v.invariant,
        detail: v.detail,
    };
    let prepared = match prepare(
        case.scenario,
        &case.layout,
        case.chip,
        case.rollback,
        case.history,
        &case.old,
        &case.new,
        case.update,
    ) {
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
        confirm_requested: case.scenario == Scenario::Confirm,
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
    let (faults, equivalent) = select_faults(&rec, seed, case.sampling, &in_otadata);
    report.equivalent = equivalent;
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
        let post_cut = case
            .second_cut
            .filter(|s| n % s.first_stride.max(1) == 0)
            .map(|s| (s, flash.fork()));
        if let Err(v) = drive_to_goal(ctx, &mut flash, allow) {
            report.failures.push(fail(Some(fault), None, v));
            continue;
        }
        if let Some((second, post)) = post_cut {
            second_cut(ctx, &post, fault, seed, second, allow, &mut report, &fail);
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
) {
    let rec = post.record(|f| drive_to_goal(ctx, f, allow));
    let Ok(drive) = rec.value else {
        // The first-cut check already reports this path.
        return;
    };
    let in_otadata = |o: u32| ctx.in_otadata(o);
    let seed2 = mix(seed ^ mix(first.seed ^ first.op_index ^ (kind_code(first.kind) << 60)));
    let (faults, equivalent) = select_faults(&rec, seed2, second.sampling, &in_otadata);
    report.equivalent += equivalent;
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

/// Runs `cases` on up to `workers` threads, biggest first.
pub fn run_cases(cases: Vec<Case>, seed: u64, workers: usize) -> Report {
    let start = Instant::now();
    let n = cases.len();
    let mut queue: Vec<(usize, Case)> = cases.into_iter().enumerate().collect();
    // Cheapest last: pop() takes from the end.
    queue.sort_by_key(|(_, c)| {
        c.new.bytes.len() / c.sampling.image_stride.max(1) as usize
            * if c.second_cut.is_some() { 8 } else { 1 }
    });
    let queue = Mutex::new(queue);
    let results = Mutex::new(Vec::with_capacity(n));
    // A worker that panicked poisons nothing we cannot read: the queue and
    // the results are plain vectors, and the scope re-raises the panic.
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some((i, case)) = next else { break };
                let r = run_case(&case, seed);
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
    Report {
        seed,
        matrix: None,
        real_image: None,
        scenarios: cases.len(),
        cut_points: cases.iter().map(|c| c.cut_points).sum(),
        failures: cases.iter().flat_map(|c| c.failures.clone()).collect(),
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

/// The real ESP-IDF image the matrices update to, relative to the corpus
/// (esp-serial-flasher's hello_world for esp32s3, 135 KB).
pub const REAL_IMAGE: &str = "app-images/esp-serial-flasher/hello_world-esp32s3.bin";

/// Which set of cases [`run_all`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Matrix {
    /// Everything: [`standard_cases`].
    Standard,
    /// A fast subset for a quick check: [`quick_cases`].
    Quick,
}

/// What [`run_all`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerCutOptions {
    /// Seed of the torn faults (a failure names it, so it can be replayed).
    pub seed: u64,
    /// Which matrix.
    pub matrix: Matrix,
    /// The shared corpus folder; when given, cases that update to the real
    /// image [`REAL_IMAGE`] from it are added (and its absence there is a
    /// setup failure, not a silent skip).
    pub corpus: Option<PathBuf>,
    /// Worker threads; 0 means [`default_workers`].
    pub workers: usize,
    /// Only run the cases whose name contains this (to replay a failure).
    pub filter: Option<String>,
}

impl PowerCutOptions {
    /// The standard matrix with [`DEFAULT_SEED`], no corpus, default workers.
    pub fn new() -> Self {
        Self {
            seed: DEFAULT_SEED,
            matrix: Matrix::Standard,
            corpus: None,
            workers: 0,
            filter: None,
        }
    }
}

impl Default for PowerCutOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs the matrix `opts` selects and reports every cut that broke an
/// invariant. A matrix that cannot be built (for example a corpus without
/// [`REAL_IMAGE`]) is reported as one `setup` failure.
pub fn run_all(opts: &PowerCutOptions) -> Report {
    let start = Instant::now();
    let workers = match opts.workers {
        0 => default_workers(),
        n => n,
    };
    let built = matrix_cases(opts.matrix, opts.corpus.as_deref());
    let mut report = match built {
        Ok(cases) => {
            let filter = opts.filter.as_deref().unwrap_or("");
            let cases = cases
                .into_iter()
                .filter(|c| c.name().contains(filter))
                .collect();
            run_cases(cases, opts.seed, workers)
        }
        Err(detail) => Report {
            seed: opts.seed,
            matrix: None,
            real_image: None,
            scenarios: 0,
            cut_points: 0,
            failures: vec![Failure {
                scenario: Scenario::Update,
                layout: "-",
                case: "building the matrix".into(),
                fault: None,
                second: None,
                invariant: Invariant::Setup,
                detail,
            }],
            cases: Vec::new(),
            elapsed: start.elapsed(),
        },
    };
    report.matrix = Some(opts.matrix);
    report.real_image = opts.corpus.as_ref().map(|_| REAL_IMAGE.to_string());
    report
}

fn matrix_cases(matrix: Matrix, corpus: Option<&std::path::Path>) -> Result<Vec<Case>, String> {
    let real = match corpus {
        Some(dir) => Some(layouts::corpus_image(dir, REAL_IMAGE, Chip::Esp32s3)?),
        None => None,
    };
    match matrix {
        Matrix::Standard => standard_cases(real.as_ref()),
        Matrix::Quick => quick_cases(real.as_ref()),
    }
}

/// Every scenario on one layout with the small images: update and failed
/// self-test for each rollback setting in `rollbacks` (the update replays
/// every operation for the setting `exhaustive_update` names, every 16th
/// image operation otherwise), then first boot, confirm and reboot while
/// PENDING_VERIFY with rollback on (without rollback the bootloader writes
/// nothing at first boot or on a reboot, and nothing is pending to confirm).
fn layout_cases(
    layout: &Layout,
    history: u8,
    rollbacks: &[bool],
    exhaustive_update: Option<bool>,
    old: &Image,
    new: &Image,
) -> Vec<Case> {
    use Scenario::*;
    let mut cases = Vec::new();
    for &rollback in rollbacks {
        let mut update = Case::new(Update, layout.clone(), rollback, history, old, new);
        if exhaustive_update != Some(rollback) {
            update.sampling = Sampling::strided(16);
        }
        cases.push(update);
        cases.push(Case::new(
            SelfTestFail,
            layout.clone(),
            rollback,
            history,
            old,
            new,
        ));
    }
    for scenario in [FirstBoot, Confirm, RebootPending] {
        cases.push(Case::new(scenario, layout.clone(), true, history, old, new));
    }
    cases
}

/// The quick matrix, for a check in seconds even in a debug build: every
/// scenario on two layouts (factory + 2 OTA with rollback, the seeds' 2 OTA
/// without factory without rollback where the scenario exists without it),
/// small images; update replays every otadata operation and every 16th image
/// operation, the other scenarios are exhaustive; with `real`, a confirm of
/// it. About 300 cut points (the standard matrix has thousands).
pub fn quick_cases(real: Option<&Image>) -> Result<Vec<Case>, String> {
    use layouts::*;
    use Scenario::*;
    let chip = Chip::Esp32s3;
    let old = built(chip, "1.0.0", SMALL)?;
    let new = built(chip, "2.0.0", SMALL)?;
    let mut cases = Vec::new();
    for (layout, history, rollback) in [(FACTORY_2OTA_4MB, 0, true), (SEED003_2OTA_4MB, 1, false)] {
        cases.extend(layout_cases(
            &layout,
            history,
            &[rollback],
            None,
            &old,
            &new,
        ));
    }
    if let Some(real) = real {
        cases.push(Case::new(Confirm, SEED003_2OTA_4MB, true, 0, &old, real));
    }
    Ok(cases)
}

/// The standard matrix:
///
/// * every scenario (update; first boot of a NEW image; confirm; failed
///   self-test → `mark_invalid_and_rollback`; reboot while PENDING_VERIFY)
///   on eight layouts (factory + 2 OTA, 2 OTA without factory, 4 OTA with
///   and without factory, the seeds' tables; 4, 8 and 16 MiB flash), with
///   rollback on and off where the scenario exists without rollback;
/// * small (~68 KiB, the builder's minimum) images exhaustively: every
///   operation, every fault kind, otadata tears with several seeds. The
///   update of one rollback setting per layout (four layouts) is
///   exhaustive; the other update cases replay every 16th image operation
///   plus every otadata operation, to keep the run under a minute in debug;
/// * with `real` (a real ESP-IDF image) as NEW: update with every 8th image
///   operation (and all of otadata), confirm exhaustively;
/// * a ~1.45 MB image: update with every 700th image operation (plus the
///   first and last block erase, sector erase and program, and all of
///   otadata), confirm exhaustively. A retried 1.45 MB update costs about
///   0.3 s in a debug build (SHA-256 dominates), so these are sampled;
/// * a second cut during recovery: after every first cut of first-boot and
///   of confirm, the recovery (a confirm, or a whole update when the old
///   image came back) is recorded and cut again at every otadata operation
///   and every 4th (first-boot) or 32nd (confirm) image operation.
pub fn standard_cases(real: Option<&Image>) -> Result<Vec<Case>, String> {
    use layouts::*;
    use Scenario::*;
    let chip = Chip::Esp32s3;
    let old = built(chip, "1.0.0", SMALL)?;
    let new = built(chip, "2.0.0", SMALL)?;
    let big_new = built(chip, "2.1.0-big", BIG)?;

    // (layout, history, rollback setting whose update is fully exhaustive):
    // a different starting otadata on each layout.
    let layouts = [
        (FACTORY_2OTA_4MB, 0, Some(true)),
        (SEED003_2OTA_4MB, 1, Some(false)),
        (FOUR_OTA_4MB, 2, Some(true)),
        (SEED000_OTA_SAFE_16MB, 0, Some(false)),
        (SEED000_OTA_SAFE_4MB, 1, None),
        (SEED001_FACTORY_2OTA_8MB, 1, None),
        (SEED003_FACTORY_2OTA_8MB, 0, None),
        (FACTORY_4OTA_16MB, 3, None),
    ];
    let mut cases = Vec::new();
    for (layout, history, exhaustive) in &layouts {
        cases.extend(layout_cases(
            layout,
            *history,
            &[true, false],
            *exhaustive,
            &old,
            &new,
        ));
    }
    // A real ESP-IDF image (esp-serial-flasher's hello_world, 135 KB) as NEW.
    if let Some(real_new) = real {
        let mut c = Case::new(Update, SEED000_OTA_SAFE_16MB, true, 0, &old, real_new);
        c.sampling = Sampling::strided(8);
        cases.push(c);
        cases.push(Case::new(
            Confirm,
            SEED003_2OTA_4MB,
            true,
            0,
            &old,
            real_new,
        ));
    }
    // A ~1.45 MB NEW image in 1.5 MiB slots.
    let mut c = Case::new(Update, SEED000_OTA_SAFE_16MB, true, 1, &old, &big_new);
    c.sampling = Sampling {
        image_stride: 700,
        otadata_tears: 2,
    };
    cases.push(c);
    let mut c = Case::new(Confirm, SEED000_OTA_SAFE_4MB, true, 0, &old, &big_new);
    c.sampling.otadata_tears = 1;
    cases.push(c);
    // A second cut during recovery, after every first cut of first-boot
    // (its recovery is a confirm, or a whole update when the cut erased
    // the entry) and of confirm: at every otadata operation of the
    // recovery, and every 4th (first-boot) or 32nd (confirm) image one.
    let mut c = Case::new(FirstBoot, FACTORY_2OTA_4MB, true, 0, &old, &new);
    c.sampling.otadata_tears = 1;
    c.second_cut = Some(SecondCut {
        first_stride: 1,
        sampling: Sampling {
            image_stride: 4,
            otadata_tears: 2,
        },
    });
    cases.push(c);
    let mut c = Case::new(Confirm, SEED003_2OTA_4MB, true, 1, &old, &new);
    c.sampling.otadata_tears = 2;
    c.second_cut = Some(SecondCut {
        first_stride: 1,
        sampling: Sampling {
            image_stride: 32,
            otadata_tears: 1,
        },
    });
    cases.push(c);
    Ok(cases)
}
