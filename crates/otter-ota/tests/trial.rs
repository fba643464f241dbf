//! The app-level trial boot on the NOR-flash simulator, with a bootloader
//! that has app rollback off: a crashing new image rolls back after its
//! attempts, a healthy one ends its trial, and a power cut at every flash
//! operation of either story (before, after, torn program, torn erase) boots
//! a verified image, old or new, and ends in a settled device.

use otter_format::chip::Chip;
use otter_format::image::AppImageBuilder;
use otter_format::otadata::{OtaState, Otadata};
use otter_ota::boot::boot;
use otter_ota::lifecycle::{recover, running_state};
use otter_ota::session::{UpdateRequest, UpdateSession};
use otter_ota::trial::{end_trial, trial_boot, Trial};
use otter_ota::{DeviceConfig, OtaError, SlotId};
use otter_sim::{Fault, FaultKind, SimFlash, SimFlashError};

mod common;

use common::{device, FACTORY_TWO_OTA, TWO_OTA};

const ATTEMPTS: u8 = 3;

fn image(version: &str) -> Vec<u8> {
    AppImageBuilder::new(Chip::Esp32s3)
        .version(version)
        .project_name("otter-test")
        .size(80_000)
        .build()
        .expect("builder makes a valid image")
}

fn cfg() -> DeviceConfig {
    DeviceConfig::new(Chip::Esp32s3)
}

type R<T> = Result<T, OtaError<SimFlashError>>;

fn update(flash: &mut SimFlash, running: SlotId, img: &[u8]) -> R<SlotId> {
    let req = UpdateRequest::new(Some(img.len() as u32), None);
    let mut s = UpdateSession::begin(flash, &cfg(), running, req)?;
    s.write(flash, img)?;
    s.finish(flash)?.activate(flash)
}

/// Power-on: the bootloader model picks an image (one must boot), recovery,
/// then the trial. Returns the booted slot, its version and the trial.
fn power_on(flash: &mut SimFlash) -> R<(SlotId, String, Trial)> {
    let out = boot(flash, &cfg())?;
    let b = out.booted.expect("a verified image boots after every cut");
    let version = b
        .image
        .app_desc
        .as_ref()
        .and_then(|d| d.version().as_str().map(str::to_string))
        .unwrap_or_default();
    recover(flash, &cfg())?;
    let t = trial_boot(flash, &cfg(), b.slot, ATTEMPTS)?;
    Ok((b.slot, version, t))
}

/// Boots until the device settles (not on trial), the image crashing on
/// every trial boot unless `healthy` (then it ends its trial). Returns the
/// settled slot and version and how many boots the new image got.
fn settle(flash: &mut SimFlash, healthy: bool) -> R<(SlotId, String, u32)> {
    let mut trial_boots = 0;
    for _ in 0..20 {
        let (slot, version, t) = power_on(flash)?;
        match t {
            Trial::Attempt { .. } => {
                trial_boots += 1;
                if healthy {
                    end_trial(flash, &cfg(), slot)?;
                }
                // Crash: reset without confirming.
            }
            Trial::RolledBack { .. } => {}
            Trial::NotOnTrial | Trial::NoFallback | Trial::BootloaderDecides => {
                return Ok((slot, version, trial_boots))
            }
        }
    }
    panic!("the device did not settle in 20 boots");
}

/// Factory → ota_0 (1.0.0, confirmed), then 2.0.0 written to ota_1 and
/// activated; the next power-on is 2.0.0's first.
fn updated_device() -> SimFlash {
    let mut flash = device(FACTORY_TWO_OTA, 0x10000, &image("0.1.0"));
    let slot = update(&mut flash, SlotId::Factory, &image("1.0.0")).expect("update 1");
    assert_eq!(
        power_on(&mut flash).expect("boot").2,
        Trial::Attempt {
            attempt: 1,
            of: ATTEMPTS
        }
    );
    assert!(end_trial(&mut flash, &cfg(), slot).expect("end trial"));
    update(&mut flash, slot, &image("2.0.0")).expect("update 2");
    flash
}

fn otadata(flash: &SimFlash) -> Otadata {
    let c = flash.contents();
    Otadata::from_partition(&c[0xd000..0xf000]).expect("otadata parses")
}

#[test]
fn a_crashing_image_rolls_back_after_its_attempts() {
    let mut flash = updated_device();
    for n in 1..=ATTEMPTS {
        let (slot, v, t) = power_on(&mut flash).unwrap();
        assert_eq!((slot, v.as_str()), (SlotId::Ota(1), "2.0.0"));
        assert_eq!(
            t,
            Trial::Attempt {
                attempt: n,
                of: ATTEMPTS
            }
        );
    }
    let (slot, _, t) = power_on(&mut flash).unwrap();
    assert_eq!(
        (slot, t),
        (SlotId::Ota(1), Trial::RolledBack { attempts: ATTEMPTS })
    );
    let (slot, v, t) = power_on(&mut flash).unwrap();
    assert_eq!(
        (slot, v.as_str(), t),
        (SlotId::Ota(0), "1.0.0", Trial::NotOnTrial)
    );
    assert_eq!(
        running_state(&mut flash, &cfg(), SlotId::Ota(0)).unwrap(),
        Some(OtaState::Valid)
    );
    let od = otadata(&flash);
    assert!(
        od.entries
            .iter()
            .any(|e| e.ota_state() == OtaState::Invalid),
        "{od:?}"
    );
}

#[test]
fn a_healthy_image_ends_its_trial_and_stays() {
    let mut flash = updated_device();
    let (slot, _, t) = power_on(&mut flash).unwrap();
    assert_eq!(
        t,
        Trial::Attempt {
            attempt: 1,
            of: ATTEMPTS
        }
    );
    assert!(end_trial(&mut flash, &cfg(), slot).unwrap());
    for _ in 0..5 {
        let (slot, v, t) = power_on(&mut flash).unwrap();
        assert_eq!(
            (slot, v.as_str(), t),
            (SlotId::Ota(1), "2.0.0", Trial::NotOnTrial)
        );
    }
    assert!(
        !end_trial(&mut flash, &cfg(), SlotId::Ota(1)).unwrap(),
        "nothing left to confirm"
    );
}

#[test]
fn the_next_update_of_the_same_slot_starts_with_no_attempts_counted() {
    // 2.0.0 crashes and rolls back; its entry's label holds used-up bits.
    let mut flash = updated_device();
    assert_eq!(settle(&mut flash, false).unwrap().1, "1.0.0");
    // 3.0.0 goes to the same slot: writing its entry erased the sector, and
    // the attempts of 2.0.0 with it.
    update(&mut flash, SlotId::Ota(0), &image("3.0.0")).unwrap();
    let (slot, v, t) = power_on(&mut flash).unwrap();
    assert_eq!((slot, v.as_str()), (SlotId::Ota(1), "3.0.0"));
    assert_eq!(
        t,
        Trial::Attempt {
            attempt: 1,
            of: ATTEMPTS
        }
    );
}

#[test]
fn with_bootloader_rollback_the_bootloader_decides() {
    let mut flash = updated_device();
    let rb = cfg().with_rollback(true);
    let t = trial_boot(&mut flash, &rb, SlotId::Ota(1), ATTEMPTS).unwrap();
    assert_eq!(t, Trial::BootloaderDecides);
}

#[test]
fn nothing_to_fall_back_to_counts_nothing() {
    // ota_0 from the factory programmer (no otadata entry), 2.0.0 in ota_1:
    // if ota_1 were marked invalid, ota_0 would boot only as "initial
    // contents" fallback, which is not a rollback target.
    let mut flash = device(TWO_OTA, 0x20000, &image("1.0.0"));
    update(&mut flash, SlotId::Ota(0), &image("2.0.0")).unwrap();
    let before = flash.contents().to_vec();
    let (slot, _, t) = power_on(&mut flash).unwrap();
    assert_eq!((slot, t), (SlotId::Ota(1), Trial::NoFallback));
    assert_eq!(
        flash.contents()[0xf000..0x11000],
        before[0xf000..0x11000],
        "nothing written"
    );
}

#[test]
fn misuse_is_refused() {
    let mut flash = updated_device();
    for n in [0u8, 65] {
        assert!(matches!(
            trial_boot(&mut flash, &cfg(), SlotId::Ota(1), n),
            Err(OtaError::Misuse(_))
        ));
    }
}

/// Every mutating operation of both stories, cut every way: the device
/// always boots a verified image and settles; a crashing image gets at most
/// one attempt more than configured (a cut before a count is programmed
/// loses that count) and always ends on 1.0.0; a healthy one ends on 2.0.0
/// or, when the cut undid the update, 1.0.0.
#[test]
fn a_power_cut_at_every_operation_of_a_trial_boots_old_or_new() {
    let kinds = [
        FaultKind::CutBefore,
        FaultKind::CutAfter,
        FaultKind::TornProgram,
        FaultKind::TornErase { scramble: false },
        FaultKind::TornErase { scramble: true },
    ];
    let start = updated_device();
    let mut points = 0u64;
    for healthy in [false, true] {
        let mut clean = start.fork();
        let before = clean.mutating_ops();
        let (_, want, _) = settle(&mut clean, healthy).unwrap();
        assert_eq!(want, if healthy { "2.0.0" } else { "1.0.0" });
        let ops = clean.mutating_ops() - before;
        assert!(ops >= 3, "the story writes flash ({ops} ops)");
        for k in 0..ops {
            for (i, kind) in kinds.iter().enumerate() {
                let mut f = start.fork();
                f.arm_fault(Fault::new(k, *kind, k * 31 + i as u64));
                let first = settle(&mut f, healthy);
                let fired = f.fault_fired();
                f.disarm_fault();
                f.power_cycle();
                let (slot, v, trial_boots) = match first {
                    Ok(done) => done,
                    Err(OtaError::Flash(SimFlashError::PowerLoss)) => settle(&mut f, healthy)
                        .unwrap_or_else(|e| panic!("{kind:?} at op {k}: after the cut: {e:?}")),
                    Err(e) => panic!("{kind:?} at op {k}: {e:?}"),
                };
                if fired {
                    points += 1;
                }
                let ctx = format!("healthy={healthy} {kind:?} at op {k}");
                if healthy {
                    assert!(v == "2.0.0" || v == "1.0.0", "{ctx}: settled on {v}");
                } else {
                    assert_eq!((slot, v.as_str()), (SlotId::Ota(0), "1.0.0"), "{ctx}");
                    assert!(
                        trial_boots <= u32::from(ATTEMPTS) + 1,
                        "{ctx}: {trial_boots} boots"
                    );
                }
            }
        }
    }
    // 3 counts + the rollback (erase, program) and 1 count + the confirm
    // (intent, erase, program, done): 35 cuts that hit something.
    assert!(points >= 35, "only {points} cuts fired");
    eprintln!("trial boot: {points} cut points, every one settled");
}
