//! Issue 7, item 3, proven by enumeration: a pull cut by a power loss at any
//! flash operation leaves the old firmware booting, and the next pull
//! resumes the same release from what is in flash, rewriting at most one
//! sector that was already complete, and the new firmware boots. A second
//! cut during the resume changes none of that; a changed release starts
//! over; an image with a real all-0xFF sector still ends correct.
//!
//! The pull is `otter_sim::powercut::pull::pull_update` (the NVS tag
//! protocol); the checks at every power-on are the power-cut harness's
//! (`otter_sim::powercut::device`: boots, known-image, selection,
//! app-agrees, rollback-state, then retry to the goal). Every mutating
//! operation of the clean pull is cut before, after, and torn (program or
//! erase, scrambled or not); `CutBefore(k)` for k > 0 equals `CutAfter(k-1)`
//! and is not replayed. `OTTER_POWERCUT_SEED` changes the torn faults' seed.

use std::sync::Arc;

use otter_format::chip::Chip;
use otter_format::image::{build_image, AppImageBuilder, ImageParams};
use otter_format::nvs::NvsWriter;
use otter_format::SECTOR_SIZE;
use otter_ota::Region;
use otter_sim::powercut::device::{drive_to_goal, prepare, startup, Allow, Ctx, Which};
use otter_sim::powercut::layouts::{
    built, Image, Layout, FACTORY_2OTA_4MB, SEED003_2OTA_4MB, SMALL,
};
use otter_sim::powercut::pull::{nvs_region, pull_tag, pull_update, stored_tag};
use otter_sim::powercut::{Scenario, DEFAULT_SEED};
use otter_sim::{Fault, FaultKind, LogPolicy, OpKind, OpRecord, SimFlash};
use sha2::{Digest, Sha256};

fn seed() -> u64 {
    match std::env::var("OTTER_POWERCUT_SEED") {
        Err(_) => DEFAULT_SEED,
        Ok(s) => {
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("OTTER_POWERCUT_SEED={s:?}: {e}"))
        }
    }
}

/// A device running OLD, about to pull NEW, its NVS partition initialised
/// (a page in use, as on any device that has run ESP-IDF's `nvs_flash_init`
/// and stored a key).
fn device(
    layout: &Layout,
    rollback: bool,
    history: u8,
    old: &Image,
    new: &Image,
) -> (Ctx, SimFlash) {
    let p = prepare(
        Scenario::Update,
        layout,
        Chip::Esp32s3,
        rollback,
        history,
        old,
        new,
        pull_update,
    )
    .unwrap_or_else(|e| panic!("setup: {e}"));
    let mut flash = p.flash;
    let nvs = nvs_region(&mut flash, &p.ctx.cfg).expect("the layout has NVS");
    let mut w = NvsWriter::new(nvs.size as usize).expect("NVS size");
    w.namespace("otter").expect("namespace");
    w.set_u8("www_slot", 0).expect("key");
    flash.load(nvs.offset, &w.finish()).expect("NVS image");
    (p.ctx, flash)
}

fn target(ctx: &Ctx) -> Region {
    let slot = ctx.new_slot().expect("new slot");
    *ctx.map.region(slot).expect("region")
}

/// Slot-relative programs into `r`, in order.
fn slot_programs<'a>(log: impl Iterator<Item = &'a OpRecord>, r: &Region) -> Vec<(u64, u32, u32)> {
    log.filter(|o| o.kind == OpKind::Program && o.offset >= r.offset && o.offset < r.end())
        .map(|o| (o.op_index.unwrap_or(0), o.offset - r.offset, o.len))
        .collect()
}

/// End of the last program into the slot that completed before `fault`.
fn completed_end(programs: &[(u64, u32, u32)], fault: &Fault) -> Option<u32> {
    programs
        .iter()
        .filter(|(i, _, _)| {
            *i < fault.op_index || (*i == fault.op_index && fault.kind == FaultKind::CutAfter)
        })
        .map(|(_, at, len)| at + len)
        .next_back()
}

/// The faults to replay from a recording: everything but the `CutBefore`
/// that equal the previous `CutAfter`; `stride` > 1 keeps every stride-th
/// operation (and the first and last).
fn faults(log: &[OpRecord], seed: u64, stride: usize) -> Vec<Fault> {
    let ops: Vec<&OpRecord> = log.iter().filter(|o| o.kind.is_mutating()).collect();
    let n = ops.len();
    let mut out = Vec::new();
    for (pos, o) in ops.iter().enumerate() {
        if stride > 1 && pos % stride != 0 && pos + 1 != n {
            continue;
        }
        let Some(i) = o.op_index else { continue };
        for kind in FaultKind::applicable_to(o.kind) {
            if kind == FaultKind::CutBefore && pos > 0 && stride == 1 {
                continue;
            }
            let s = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ kind_code(kind);
            out.push(Fault::new(i, kind, s));
        }
    }
    out
}

fn kind_code(k: FaultKind) -> u64 {
    match k {
        FaultKind::CutBefore => 1 << 56,
        FaultKind::CutAfter => 2 << 56,
        FaultKind::TornProgram => 3 << 56,
        FaultKind::TornErase { scramble: false } => 4 << 56,
        FaultKind::TornErase { scramble: true } => 5 << 56,
    }
}

/// What one enumeration did.
#[derive(Default, Debug)]
struct Tally {
    cut_points: u64,
    second_cuts: u64,
    resumed: u64,
    /// Most already-complete bytes any resume rewrote.
    worst_rewrite: u32,
    failures: Vec<String>,
}

/// The first mutating operation on otadata after the last program into the
/// slot: activation. Cuts before it must leave OLD running.
fn activation(ctx: &Ctx, log: &[OpRecord]) -> u64 {
    let last = slot_programs(log.iter(), &target(ctx))
        .last()
        .map(|p| p.0)
        .expect("the pull programs the slot");
    log.iter()
        .filter(|o| o.kind.is_mutating() && ctx.in_otadata(o.offset))
        .filter_map(|o| o.op_index)
        .find(|&i| i > last)
        .expect("the pull activates")
}

/// Powers on after a cut (`flash` powered again), checks every startup, and
/// drives the device to NEW confirmed; checks that the pull, if one ran,
/// wrote the slot in one ascending pass (no restart) starting at most one
/// sector before `known_good` (bytes of NEW complete in the slot before).
/// Returns which image ran first and the run's log.
fn recover_and_check(
    ctx: &Ctx,
    flash: &SimFlash,
    allow: Allow,
    known_good: u32,
    check_rewrite: bool,
    what: &str,
    tally: &mut Tally,
) -> Option<(Which, Vec<OpRecord>)> {
    // The rewrite bound holds for a resume, that is, when NVS names NEW; a
    // pull after the tag was cleared (a rollback of an activated NEW) starts
    // over by design.
    let resumable = {
        let mut f = flash.fork();
        let nvs = nvs_region(&mut f, &ctx.cfg).expect("NVS");
        stored_tag(&mut f, &nvs) == Some(pull_tag(&Sha256::digest(&ctx.new.bytes[..]).into()))
    };
    let rec = flash.record(|f| -> Result<Which, String> {
        let s = startup(ctx, f, allow).map_err(|v| format!("{:?}: {}", v.invariant, v.detail))?;
        drive_to_goal(ctx, f, allow).map_err(|v| format!("{:?}: {}", v.invariant, v.detail))?;
        Ok(s.which)
    });
    let which = match rec.value {
        Ok(w) => w,
        Err(e) => {
            tally.failures.push(format!("{what}: {e}"));
            return None;
        }
    };
    let programs = slot_programs(rec.log.iter(), &target(ctx));
    if let Some(&(_, first, _)) = programs.first() {
        if programs.windows(2).any(|w| w[1].1 < w[0].1) {
            tally.failures.push(format!(
                "{what}: the pull started over after resuming at {first}"
            ));
        }
        if first > 0 {
            tally.resumed += 1;
        }
        let rewrite = known_good.saturating_sub(first);
        if resumable {
            tally.worst_rewrite = tally.worst_rewrite.max(rewrite);
        }
        if check_rewrite && resumable && rewrite > SECTOR_SIZE {
            tally.failures.push(format!(
                "{what}: {known_good} bytes were complete, but the pull resumed at {first} \
                 (rewrote {rewrite} > one sector)"
            ));
        }
        if !resumable && first != 0 {
            tally.failures.push(format!(
                "{what}: no tag for NEW, but the pull resumed at {first}"
            ));
        }
    }
    Some((which, rec.log.to_vec()))
}

/// Every cut of one pull of `ctx.new` on `flash`, then the recovery; every
/// `second_stride`-th first cut (0: none) also gets its recovery cut at every
/// `second_ops`-th operation.
fn enumerate(
    name: &str,
    ctx: &Ctx,
    flash: &SimFlash,
    second_stride: usize,
    second_ops: usize,
    check_rewrite: bool,
    tally: &mut Tally,
) {
    let seed = seed();
    let r = target(ctx);
    let rec = flash.record(|f| ctx.steps(f));
    rec.value
        .clone()
        .unwrap_or_else(|e| panic!("{name}: the clean pull failed: {e}"));
    let log = rec.log.to_vec();
    let programs = slot_programs(log.iter(), &r);
    let activate_at = activation(ctx, &log);
    let allow = Allow::default();
    for (n, fault) in faults(&log, seed, 1).into_iter().enumerate() {
        tally.cut_points += 1;
        let what = format!("{name} | {fault}");
        let mut cut = flash.fork().with_fault(fault);
        cut.set_log_policy(LogPolicy::Off);
        let _ = ctx.steps(&mut cut);
        if !cut.fault_fired() {
            tally
                .failures
                .push(format!("{what}: the fault did not fire"));
            continue;
        }
        cut.power_cycle();
        let good = completed_end(&programs, &fault).unwrap_or(0);
        let Some((which, log2)) =
            recover_and_check(ctx, &cut, allow, good, check_rewrite, &what, tally)
        else {
            continue;
        };
        if fault.op_index < activate_at && which != Which::Old {
            tally.failures.push(format!(
                "{what}: cut before activation, but {which:?} booted"
            ));
        }
        if second_stride == 0 || n % second_stride != 0 {
            continue;
        }
        // A second cut during the recovery (the resume, the confirm).
        let run2 = slot_programs(log2.iter(), &r);
        let kept = run2.first().map_or(good, |p| p.1);
        for f2 in faults(&log2, seed ^ fault.op_index.rotate_left(17), second_ops) {
            tally.cut_points += 1;
            tally.second_cuts += 1;
            let what2 = format!("{what}, then during recovery {f2}");
            let mut cut2 = cut.fork().with_fault(f2);
            cut2.set_log_policy(LogPolicy::Off);
            let _ = startup(ctx, &mut cut2, allow)
                .map_err(drop)
                .and_then(|_| drive_to_goal(ctx, &mut cut2, allow).map_err(drop));
            if !cut2.fault_fired() {
                tally
                    .failures
                    .push(format!("{what2}: the fault did not fire"));
                continue;
            }
            cut2.power_cycle();
            let good2 = completed_end(&run2, &f2).unwrap_or(0).max(kept);
            // The recovery may have requested a confirm before the cut.
            let allow2 = Allow {
                confirm_requested: true,
            };
            recover_and_check(ctx, &cut2, allow2, good2, check_rewrite, &what2, tally);
        }
    }
}

fn assert_passed(name: &str, t: &Tally) {
    println!(
        "{name}: {} cut points ({} second cuts), {} resumes, worst rewrite of complete bytes {} B",
        t.cut_points, t.second_cuts, t.resumed, t.worst_rewrite
    );
    assert!(
        t.failures.is_empty(),
        "{name}: {} of {} cut points failed (seed {:#x}); the first ones:\n{}",
        t.failures.len(),
        t.cut_points,
        seed(),
        t.failures
            .iter()
            .take(15)
            .map(|f| format!("  {f}\n"))
            .collect::<String>()
    );
}

fn images() -> (Image, Image) {
    let old = built(Chip::Esp32s3, "1.0.0", SMALL).expect("old");
    let new = built(Chip::Esp32s3, "2.0.0", SMALL).expect("new");
    (old, new)
}

/// Every cut of a pull, on two layouts with rollback on and off: the old
/// firmware boots after it, the next pull resumes (rewriting at most one
/// complete sector) and the new firmware boots. On the first layout every
/// 20th first cut also gets a second cut at every 5th operation of its
/// recovery (the resume, activation, first boot and confirm).
#[test]
fn every_cut_of_a_pull_boots_old_then_resumes_to_new() {
    let (old, new) = images();
    let mut total = Tally::default();
    for (layout, rollback, history, second) in [
        (FACTORY_2OTA_4MB, true, 0, 20),
        (SEED003_2OTA_4MB, false, 1, 0),
    ] {
        let name = format!("pull | {} | rollback {rollback}", layout.name);
        let (ctx, flash) = device(&layout, rollback, history, &old, &new);
        let mut t = Tally::default();
        enumerate(&name, &ctx, &flash, second, 5, true, &mut t);
        assert_passed(&name, &t);
        assert!(
            t.resumed > 100,
            "{name}: only {} cuts led to a resume",
            t.resumed
        );
        total.cut_points += t.cut_points;
        total.second_cuts += t.second_cuts;
    }
    println!(
        "resume power-cut total: {} cut points ({} second cuts)",
        total.cut_points, total.second_cuts
    );
    assert!(
        total.cut_points > 1000,
        "the enumeration lost cases: {}",
        total.cut_points
    );
}

/// A cut pull of release A, then the manifest changes to B: the tag does not
/// match, the pull of B starts over from offset 0 and B boots.
#[test]
fn a_changed_release_starts_over() {
    let (old, a) = images();
    let b = built(Chip::Esp32s3, "2.0.1", SMALL).expect("b");
    let (ctx_a, flash) = device(&FACTORY_2OTA_4MB, true, 0, &old, &a);
    let ctx_b = Ctx {
        new: b.clone(),
        ..ctx_a.clone()
    };
    let r = target(&ctx_a);
    let rec = flash.record(|f| ctx_a.steps(f));
    rec.value.clone().expect("clean pull of A");
    let log = rec.log.to_vec();
    // Cut A anywhere before its activation.
    let activation = activation(&ctx_a, &log);
    let mut t = Tally::default();
    for fault in faults(&log, seed(), 7)
        .into_iter()
        .filter(|f| f.op_index < activation)
    {
        t.cut_points += 1;
        let what = format!("A cut at {fault}, then B");
        let mut cut = flash.fork().with_fault(fault);
        let _ = ctx_a.steps(&mut cut);
        cut.power_cycle();
        let rec = cut.record(|f| drive_to_goal(&ctx_b, f, Allow::default()).map(drop));
        if let Err(v) = rec.value {
            t.failures
                .push(format!("{what}: {:?}: {}", v.invariant, v.detail));
            continue;
        }
        let programs = slot_programs(rec.log.iter(), &r);
        if programs.first().map(|p| p.1) != Some(0) {
            t.failures.push(format!(
                "{what}: B did not start at 0: {:?}",
                programs.first()
            ));
        }
        let mut end = SimFlash::from_bytes(rec.image.clone()).expect("flash");
        let nvs = nvs_region(&mut end, &ctx_b.cfg).expect("nvs");
        if stored_tag(&mut end, &nvs).is_some() {
            t.failures
                .push(format!("{what}: the tag was not cleared after activation"));
        }
    }
    assert_passed("changed release", &t);
    assert!(t.cut_points > 30);
}

/// NEW whose body has a whole all-0xFF sector: the resume point can stop at
/// it, before bytes already written (wasteful, not wrong), and every cut
/// still ends with NEW booting.
#[test]
fn an_image_with_an_erased_sector_still_ends_correct() {
    let (old, _) = images();
    let desc = AppImageBuilder::new(Chip::Esp32s3)
        .version("4.0.0")
        .project_name("otter-powercut")
        .app_desc()
        .expect("desc");
    let mut seg = desc.to_vec();
    seg.extend((0..40_000u32).map(|i| {
        if (10_000..22_000).contains(&i) {
            0xFF
        } else {
            (i.wrapping_mul(13) % 251) as u8
        }
    }));
    let mut params = ImageParams::new(Chip::Esp32s3);
    params.app_desc_segment = Some(0);
    // The entry point must lie in a loaded segment.
    params.entry = 0x3C00_0020;
    let bytes = build_image(&params, &[(0x3C00_0020, &seg)]).expect("image");
    assert!(
        bytes
            .chunks(4096)
            .any(|s| s.len() == 4096 && s.iter().all(|&b| b == 0xFF)),
        "the image must hold an all-0xFF sector"
    );
    let new = Image {
        origin: "built with an erased sector".into(),
        version: "4.0.0".into(),
        bytes: Arc::new(bytes),
    };
    let (ctx, flash) = device(&SEED003_2OTA_4MB, true, 0, &old, &new);
    let mut t = Tally::default();
    enumerate(
        "pull of an image with an 0xFF sector",
        &ctx,
        &flash,
        0,
        1,
        false,
        &mut t,
    );
    assert_passed("erased-sector image", &t);
}
