//! The wave/halt state machine, driven by a fake clock.

use super::*;
use proptest::prelude::*;

/// A clock the test moves by hand.
struct Clock(u64);
impl Clock {
    fn now(&self) -> u64 {
        self.0
    }
    fn advance(&mut self, s: u64) {
        self.0 += s;
    }
}

fn policy() -> Policy {
    Policy {
        min_soak_s: 60,
        ..Policy::default()
    }
}

fn counts(
    devices: usize,
    confirmed: usize,
    rolled_back: usize,
    selftest_failed: usize,
) -> WaveCounts {
    WaveCounts {
        devices,
        confirmed,
        rolled_back,
        selftest_failed,
    }
}

#[test]
fn default_policy_is_one_ten_fifty_hundred_percent() {
    let p = Policy::default();
    assert_eq!(p.waves, vec![10, 100, 500, 1000]);
    assert_eq!(p.min_soak_s, 3600);
    assert_eq!(
        (p.success, p.max_rollback, p.max_selftest_failure),
        (900, 50, 50)
    );
    p.validate().unwrap();
}

#[test]
fn wave_sizes_round_up_and_every_wave_adds_a_device() {
    assert_eq!(wave_sizes(20, &[10, 100, 500, 1000]), vec![1, 2, 10, 20]);
    assert_eq!(
        wave_sizes(1000, &[10, 100, 500, 1000]),
        vec![10, 100, 500, 1000]
    );
    assert_eq!(wave_sizes(3, &[10, 100, 500, 1000]), vec![1, 2, 3, 3]);
    assert_eq!(wave_sizes(0, &[10, 1000]), vec![0, 0]);
    assert_eq!(wave_sizes(10_001, &[10, 1000]), vec![101, 10_001]);
}

#[test]
fn policy_errors_are_typed() {
    let mut p = policy();
    p.waves = vec![];
    assert_eq!(p.validate(), Err(PolicyError::NoWaves));
    p.waves = vec![100, 100, 1000];
    assert_eq!(
        p.validate(),
        Err(PolicyError::NotIncreasing {
            index: 1,
            got: 100,
            previous: 100
        })
    );
    p.waves = vec![100, 500];
    assert_eq!(p.validate(), Err(PolicyError::LastNotAll { got: 500 }));
    assert_eq!(p.validate().unwrap_err().code(), "last_wave_not_all");
    p.waves = vec![1000];
    p.max_rollback = 1001;
    assert_eq!(
        p.validate(),
        Err(PolicyError::RateTooHigh {
            field: "max_rollback",
            got: 1001
        })
    );
}

#[test]
fn a_wave_advances_only_after_its_soak_and_enough_confirmations() {
    let p = policy();
    let mut clock = Clock(1_000);
    let s = RolloutState::Running {
        wave: 0,
        since: clock.now(),
    };
    // Everyone confirmed but the soak has not passed.
    clock.advance(59);
    let (s, t) = step(s, &p, &counts(10, 10, 0, 0), clock.now());
    assert_eq!(t, None);
    assert_eq!(
        s,
        RolloutState::Running {
            wave: 0,
            since: 1_000
        }
    );
    // Soaked, but only 8 of 10 confirmed (90% needed).
    clock.advance(1);
    let (s, t) = step(s, &p, &counts(10, 8, 0, 0), clock.now());
    assert_eq!(t, None);
    // 9 of 10 is exactly 90%: advance, and the next wave's soak starts now.
    let (s, t) = step(s, &p, &counts(10, 9, 0, 0), clock.now());
    assert_eq!(t, Some(Transition::Advanced { wave: 1 }));
    assert_eq!(
        s,
        RolloutState::Running {
            wave: 1,
            since: 1_060
        }
    );
}

#[test]
fn the_last_wave_completes_the_rollout() {
    let mut p = policy();
    p.waves = vec![500, 1000];
    let (s, t) = step(
        RolloutState::Running { wave: 1, since: 0 },
        &p,
        &counts(4, 4, 0, 0),
        60,
    );
    assert_eq!(t, Some(Transition::Completed));
    assert_eq!(s, RolloutState::Completed { since: 60 });
    // A completed rollout stays so.
    let (s2, t) = step(s.clone(), &p, &counts(4, 0, 4, 0), 120);
    assert_eq!((s2, t), (s, None));
}

#[test]
fn one_rollback_in_a_one_device_wave_halts_with_the_reason() {
    let p = policy();
    let (s, t) = step(
        RolloutState::Running { wave: 0, since: 0 },
        &p,
        &counts(1, 0, 1, 0),
        5,
    );
    let reason = HaltReason::RollbackRate {
        wave: 0,
        failed: 1,
        devices: 1,
        threshold: 50,
    };
    assert_eq!(
        t,
        Some(Transition::Halted {
            reason: reason.clone()
        })
    );
    assert_eq!(
        s,
        RolloutState::Halted {
            wave: 0,
            since: 5,
            reason: reason.clone()
        }
    );
    assert_eq!(
        reason.to_string(),
        "1 of wave 1's 1 device(s) rolled back, more than the 5.0% allowed"
    );
    // Halted stays halted whatever comes in.
    let (s2, t) = step(s.clone(), &p, &counts(1, 1, 0, 0), 1_000);
    assert_eq!((s2, t), (s, None));
}

#[test]
fn the_threshold_is_passed_only_when_exceeded() {
    let p = policy(); // 5%
                      // 1 of 20 is exactly 5%: not passed.
    let (_, t) = step(
        RolloutState::Running { wave: 2, since: 0 },
        &p,
        &counts(20, 0, 1, 0),
        1,
    );
    assert_eq!(t, None);
    // 2 of 20 is 10%: halted, self-test failures counted on their own.
    let (s, t) = step(
        RolloutState::Running { wave: 2, since: 0 },
        &p,
        &counts(20, 0, 1, 2),
        1,
    );
    let reason = HaltReason::SelfTestFailureRate {
        wave: 2,
        failed: 2,
        devices: 20,
        threshold: 50,
    };
    assert_eq!(
        t,
        Some(Transition::Halted {
            reason: reason.clone()
        })
    );
    assert_eq!(s.name(), "halted");
}

#[test]
fn a_halt_wins_over_the_success_gate() {
    let p = policy();
    let (s, _) = step(
        RolloutState::Running { wave: 0, since: 0 },
        &p,
        &counts(10, 9, 1, 0),
        100,
    );
    assert_eq!(s.name(), "halted");
}

#[test]
fn pause_resume_abort() {
    let mut clock = Clock(10);
    let s = RolloutState::Running { wave: 1, since: 0 };
    let s = command(s, Command::Pause, clock.now()).unwrap();
    assert_eq!(s, RolloutState::Paused { wave: 1, since: 10 });
    assert!(!s.offers());
    // A paused rollout does not advance.
    let (s, t) = step(s, &policy(), &counts(1, 1, 0, 0), 10_000);
    assert_eq!(t, None);
    assert_eq!(
        command(s.clone(), Command::Pause, 11),
        Err(CommandError {
            command: Command::Pause,
            state: "paused"
        })
    );
    clock.advance(5);
    let s = command(s, Command::Resume, clock.now()).unwrap();
    assert_eq!(s, RolloutState::Running { wave: 1, since: 15 });
    assert!(s.offers());
    let s = command(s, Command::Abort, 20).unwrap();
    assert_eq!(s, RolloutState::Aborted { wave: 1, since: 20 });
    let e = command(s, Command::Resume, 21).unwrap_err();
    assert_eq!((e.state, e.code()), ("aborted", "invalid_transition"));
}

#[test]
fn a_halted_rollout_resumes_with_a_fresh_soak() {
    let halted = RolloutState::Halted {
        wave: 0,
        since: 5,
        reason: HaltReason::RollbackRate {
            wave: 0,
            failed: 1,
            devices: 1,
            threshold: 50,
        },
    };
    let s = command(halted, Command::Resume, 100).unwrap();
    assert_eq!(
        s,
        RolloutState::Running {
            wave: 0,
            since: 100
        }
    );
}

#[test]
fn ranking_is_deterministic_and_depends_on_the_rollout() {
    let devices: Vec<String> = (0..50).map(|i| format!("dev-{i:02}")).collect();
    let a = rank_devices("r1", devices.clone());
    let b = rank_devices("r1", devices.iter().rev().cloned().collect());
    assert_eq!(a, b, "the order of the input does not matter");
    let c = rank_devices("r2", devices.clone());
    assert_ne!(a, c, "another rollout ranks the devices otherwise");
    // The key is SHA-256(rollout ‖ 0 ‖ device): check one by hand.
    let want: [u8; 32] = Sha256::digest(b"r1\0dev-07").into();
    assert_eq!(rank_key("r1", "dev-07"), want);
}

proptest! {
    /// Wave sizes grow, never pass the total, end at the total, and the
    /// first wave is never empty when there are devices.
    #[test]
    fn wave_sizes_are_monotone(total in 0usize..100_000, mut ws in proptest::collection::vec(1u32..1000, 0..6)) {
        ws.sort_unstable();
        ws.dedup();
        ws.push(1000);
        let sizes = wave_sizes(total, &ws);
        prop_assert_eq!(sizes.len(), ws.len());
        prop_assert_eq!(*sizes.last().unwrap(), total);
        if total > 0 { prop_assert!(sizes[0] >= 1); }
        for w in sizes.windows(2) { prop_assert!(w[0] <= w[1]); }
    }

    /// `step` never panics and only `Running` changes.
    #[test]
    fn step_never_panics(wave in 0usize..8, since in 0u64..u64::MAX, now in 0u64..u64::MAX,
                         devices in 0usize..1_000_000, c in 0usize..1_000_000, r in 0usize..1_000_000,
                         f in 0usize..1_000_000, soak in 0u64..u64::MAX) {
        let p = Policy { min_soak_s: soak, ..Policy::default() };
        let (s, t) = step(RolloutState::Running { wave, since }, &p, &counts(devices, c, r, f), now);
        if t.is_none() { prop_assert_eq!(s, RolloutState::Running { wave, since }); }
    }
}
