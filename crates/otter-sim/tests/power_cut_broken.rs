//! The table catches a broken variant of each scenario class. Each test
//! takes cases from a row of the table, plugs in a deliberately broken
//! procedure (the harness's pluggable update, pointer write and resume
//! point: the code that ships has no such switch), runs them through the
//! same runner, and asserts that cuts, and only cuts, break the invariant
//! that names the mistake:
//!
//! | broken variant | caught as |
//! |---|---|
//! | the firmware update selects the slot before the image is written and verified | `boots` / `selection` |
//! | the web-UI pointer is written before the slot | `web-ui` |
//! | the resume trusts the sector `resume_point` distrusts | `retry` (the SHA-256 refuses it, forever) |
//! | the NVS collection erases the old page before copying its entries | `nvs` (a key is lost) |

use std::path::PathBuf;

use otter_format::nvs::FlashOp;
use otter_format::otadata::{plan_set_boot, Otadata, ENTRY_SIZE, SECTOR1_OFFSET};
use otter_format::SECTOR_SIZE;
use otter_ota::session::{UpdateRequest, UpdateSession};
use otter_ota::{DeviceConfig, OtaError, SlotId, SlotMap};
use otter_sim::embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use otter_sim::powercut::core::{apply_in_order, PointerWrite};
use otter_sim::powercut::pull::{pull_with, SECTOR};
use otter_sim::powercut::table::{self, Env};
use otter_sim::powercut::{self, Case, Invariant, Report, Sampling, DEFAULT_SEED};
use otter_sim::{SimFlash, SimFlashError};

fn env() -> Env {
    let dir = match std::env::var_os("OTTER_CORPUS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
    };
    assert!(
        dir.is_dir(),
        "the test corpus is missing: {}",
        dir.display()
    );
    Env::new(&dir)
}

fn cases(row: &str, pick: &[usize]) -> Vec<Case> {
    let r = table::row(row).unwrap_or_else(|| panic!("no row {row}"));
    let all = (r.cases)(&env()).unwrap_or_else(|e| panic!("{row}: {e}"));
    pick.iter()
        .map(|&i| {
            let mut c = all[i].clone();
            c.row = r.name;
            c.second_cut = None;
            c
        })
        .collect()
}

/// Runs `cases`, prints the report, and checks that every case was caught,
/// by cuts only, with `want` among the invariants broken.
fn assert_caught(cases: Vec<Case>, want: &[Invariant]) -> Report {
    let report = powercut::run_cases(cases, DEFAULT_SEED, powercut::default_workers());
    println!("{report}");
    assert!(
        report
            .failures
            .iter()
            .all(|f| f.fault.is_some() && f.invariant != Invariant::Setup),
        "the clean run must work (only cuts catch the broken variant): {}",
        report
            .failures
            .first()
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    for case in &report.cases {
        let caught = case
            .failures
            .iter()
            .find(|f| want.contains(&f.invariant))
            .unwrap_or_else(|| {
                panic!(
                    "the table did not catch the broken variant on {} ({} failures: {:?})",
                    case.name,
                    case.failures.len(),
                    case.failures.first().map(ToString::to_string)
                )
            });
        // The failure names the cut and the command that replays it.
        let msg = caught.to_string();
        for needle in [
            "mutating op",
            "seed",
            "invariant `",
            "otter sim powercut --scenario",
        ] {
            assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
        }
        assert!(caught
            .replay
            .contains(&format!("--fault {}", caught.fault.unwrap().spec())));
    }
    report
}

/// Broken: plans and writes the otadata entry for the target slot first,
/// then streams the image.
fn switch_then_write(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    image: &[u8],
) -> Result<SlotId, OtaError<SimFlashError>> {
    let map = SlotMap::read(flash, cfg.table_offset)?;
    let od = *map.otadata().ok_or(OtaError::NoOtadata)?;
    let Some(SlotId::Ota(index)) = map.next_update_slot(Some(running)) else {
        return Err(OtaError::NoOtaSlots);
    };
    let mut e0 = [0u8; ENTRY_SIZE];
    let mut e1 = [0u8; ENTRY_SIZE];
    flash.read(od.offset, &mut e0).map_err(OtaError::Flash)?;
    flash
        .read(od.offset + SECTOR1_OFFSET as u32, &mut e1)
        .map_err(OtaError::Flash)?;
    let w = plan_set_boot(
        &Otadata::from_entries(&e0, &e1),
        index,
        map.ota_count(),
        cfg.new_image_state(),
        cfg.same_slot_rule,
    )
    .map_err(OtaError::Otadata)?;
    let at = od.offset + w.sector as u32 * SECTOR_SIZE;
    flash.erase(at, at + SECTOR_SIZE).map_err(OtaError::Flash)?;
    flash
        .write(at, &w.entry.to_bytes())
        .map_err(OtaError::Flash)?;
    let req = UpdateRequest {
        size: Some(image.len() as u32),
        ..UpdateRequest::default()
    };
    let mut s = UpdateSession::begin(flash, cfg, running, req)?;
    for c in image.chunks(powercut::device::CHUNK) {
        s.write(flash, c)?;
    }
    Ok(s.finish(flash)?.target())
}

#[test]
fn a_switch_before_verify_is_caught() {
    // update row: factory+2ota with rollback, seed003 without.
    let cases = cases("update", &[0, 3])
        .into_iter()
        .map(|mut c| {
            c.update = switch_then_write;
            c.update_name = "switch-before-verify (broken)";
            c.sampling = Sampling::strided(8);
            c
        })
        .collect();
    let report = assert_caught(cases, &[Invariant::Boots, Invariant::Selection]);
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
    let first = &json["failures"][0];
    for key in [
        "row",
        "scenario",
        "layout",
        "case",
        "invariant",
        "message",
        "replay",
    ] {
        assert!(first[key].is_string(), "{key} missing from {first}");
    }
    assert_eq!(first["row"], "update");
    assert!(first["fault"]["op_index"].is_u64(), "{first}");
}

#[test]
fn a_pointer_written_before_the_slot_is_caught() {
    let cases = cases("www-update", &[0, 1])
        .into_iter()
        .map(|mut c| {
            c.pointer = PointerWrite {
                apply: apply_in_order,
                at_begin: true,
                name: "pointer-before-slot (broken)",
            };
            c
        })
        .collect();
    assert_caught(cases, &[Invariant::WebUi]);
}

/// Broken: resumes one sector later than `resume_point` says, keeping the
/// sector a cut may have torn.
fn trusting_pull(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    image: &[u8],
) -> Result<SlotId, OtaError<SimFlashError>> {
    pull_with(flash, cfg, running, image, |at, size| {
        (at + SECTOR).min(size / SECTOR * SECTOR)
    })
}

#[test]
fn a_resume_that_trusts_an_unverified_prefix_is_caught() {
    let cases = cases("pull-resume", &[0, 1])
        .into_iter()
        .map(|mut c| {
            c.update = trusting_pull;
            c.update_name = "pull trusting the last sector (broken)";
            c
        })
        .collect();
    assert_caught(cases, &[Invariant::Retry, Invariant::KnownImage]);
}

/// Broken: the collection's erase of the old page moved to right after the
/// full and freeing marks and the new page's header, before the copies.
fn erase_before_copy(
    flash: &mut SimFlash,
    base: u32,
    ops: &[FlashOp],
) -> Result<(), SimFlashError> {
    let mut ops = ops.to_vec();
    if let Some(e) = ops
        .iter()
        .position(|op| matches!(op, FlashOp::Erase { .. }))
    {
        let erase = ops.remove(e);
        ops.insert(3.min(ops.len()), erase);
    }
    apply_in_order(flash, base, &ops)
}

#[test]
fn a_collection_that_erases_before_copying_is_caught() {
    let cases = cases("nvs-gc", &[0, 1])
        .into_iter()
        .map(|mut c| {
            c.pointer = PointerWrite {
                apply: erase_before_copy,
                at_begin: false,
                name: "gc-erases-before-copy (broken)",
            };
            c
        })
        .collect();
    assert_caught(cases, &[Invariant::Nvs]);
}
