//! Staged rollouts as a pure state machine: waves, soak, the success gate and
//! the automatic halt. No I/O and no clock: the caller passes `now` (Unix
//! seconds) and the wave's counts, and stores what comes back.
//!
//! A rollout's devices are fixed when it is created (the target's devices at
//! that moment) and ranked by `SHA-256(rollout id ‖ 0 ‖ device id)`: the rank
//! decides the wave, so membership is deterministic and reproducible, and no
//! two rollouts pick the same first devices. Wave `k` holds the devices of
//! rank below `cumulative[k]` ([`wave_sizes`]); its *own* devices are those
//! of rank `cumulative[k-1]..cumulative[k]`, and the gates look at them.
//!
//! | from | event | to |
//! |---|---|---|
//! | `Running{k}` | the wave's failure rate passes a threshold | `Halted{k, reason}` |
//! | `Running{k}` | soak elapsed and enough confirmed, `k` not last | `Running{k+1}` |
//! | `Running{last}` | soak elapsed and enough confirmed | `Completed` |
//! | `Running{k}` | pause | `Paused{k}` |
//! | `Paused{k}` / `Halted{k}` | resume | `Running{k}` (the soak starts again) |
//! | any but `Completed`/`Aborted` | abort | `Aborted` |

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Per mille (1000 = 100%).
pub type Permille = u32;

/// How a rollout proceeds. Defaults are documented in docs/fleet.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Cumulative share of the rollout's devices per wave, in per mille,
    /// strictly increasing and ending at 1000. Default 1% → 10% → 50% → 100%.
    pub waves: Vec<Permille>,
    /// Seconds each wave runs at least before the next may start. Default 3600.
    pub min_soak_s: u64,
    /// Share of a wave's own devices that must have confirmed the release
    /// before the next wave starts. Default 900 (90%).
    pub success: Permille,
    /// The rollout halts when more than this share of a wave's own devices
    /// rolled back (crashed or hung before confirming). Default 50 (5%).
    pub max_rollback: Permille,
    /// The rollout halts when more than this share of a wave's own devices
    /// failed their self-test. Default 50 (5%).
    pub max_selftest_failure: Permille,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            waves: vec![10, 100, 500, 1000],
            min_soak_s: 3600,
            success: 900,
            max_rollback: 50,
            max_selftest_failure: 50,
        }
    }
}

/// Why a policy cannot be used. The operator's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// No waves.
    #[error("a rollout needs at least one wave")]
    NoWaves,
    /// Waves must grow.
    #[error("wave {index} ({got}‰) is not larger than the wave before it ({previous}‰): waves are cumulative shares and must grow")]
    NotIncreasing {
        /// Which wave (0-based).
        index: usize,
        /// Its share.
        got: Permille,
        /// The previous wave's share.
        previous: Permille,
    },
    /// The last wave must be everyone.
    #[error("the last wave is {got}‰; it must be 1000‰ (100%) so the rollout reaches every targeted device")]
    LastNotAll {
        /// Its share.
        got: Permille,
    },
    /// A rate over 100%.
    #[error("{field} is {got}‰; at most 1000‰ (100%)")]
    RateTooHigh {
        /// Which rate.
        field: &'static str,
        /// The value.
        got: Permille,
    },
}

impl PolicyError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoWaves => "no_waves",
            Self::NotIncreasing { .. } => "waves_not_increasing",
            Self::LastNotAll { .. } => "last_wave_not_all",
            Self::RateTooHigh { .. } => "rate_too_high",
        }
    }
}

impl Policy {
    /// Checks the policy.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let Some(&last) = self.waves.last() else {
            return Err(PolicyError::NoWaves);
        };
        let mut previous = 0;
        for (index, &got) in self.waves.iter().enumerate() {
            if got <= previous {
                return Err(PolicyError::NotIncreasing {
                    index,
                    got,
                    previous,
                });
            }
            previous = got;
        }
        if last != 1000 {
            return Err(PolicyError::LastNotAll { got: last });
        }
        for (field, got) in [
            ("success", self.success),
            ("max_rollback", self.max_rollback),
            ("max_selftest_failure", self.max_selftest_failure),
        ] {
            if got > 1000 {
                return Err(PolicyError::RateTooHigh { field, got });
            }
        }
        Ok(())
    }
}

/// Cumulative device counts per wave for `total` devices: wave `k` reaches
/// `ceil(total × waves[k] / 1000)` devices, at least one more than the wave
/// before while devices remain (a 1% wave of 20 devices is one device, not
/// none), and never more than `total`.
pub fn wave_sizes(total: usize, waves: &[Permille]) -> Vec<usize> {
    let mut out = Vec::with_capacity(waves.len());
    let mut previous = 0usize;
    for &w in waves {
        let share = (total as u128 * u128::from(w)).div_ceil(1000) as usize;
        let n = share.max(previous.saturating_add(1)).min(total);
        out.push(n);
        previous = n;
    }
    out
}

/// The rank key of a device in a rollout: lower keys join earlier waves.
pub fn rank_key(rollout_id: &str, device_id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(rollout_id.as_bytes());
    h.update([0u8]);
    h.update(device_id.as_bytes());
    h.finalize().into()
}

/// Orders device ids by their rank in `rollout_id` (rank 0 first).
pub fn rank_devices(rollout_id: &str, mut devices: Vec<String>) -> Vec<String> {
    devices.sort_by_cached_key(|d| rank_key(rollout_id, d));
    devices.dedup();
    devices
}

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RolloutState {
    /// Wave `wave` is being offered since `since`.
    Running {
        /// The current wave (0-based).
        wave: usize,
        /// When it started (Unix seconds).
        since: u64,
    },
    /// An operator paused it: nothing new is offered.
    Paused {
        /// The wave it was in.
        wave: usize,
        /// When it was paused.
        since: u64,
    },
    /// It stopped itself: nothing new is offered.
    Halted {
        /// The wave it was in.
        wave: usize,
        /// When.
        since: u64,
        /// Why.
        reason: HaltReason,
    },
    /// Every wave passed its gate.
    Completed {
        /// When.
        since: u64,
    },
    /// An operator aborted it: nothing is offered again.
    Aborted {
        /// When.
        since: u64,
        /// The wave it was in.
        wave: usize,
    },
}

impl RolloutState {
    /// The state's name: `running`, `paused`, `halted`, `completed`, `aborted`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Running { .. } => "running",
            Self::Paused { .. } => "paused",
            Self::Halted { .. } => "halted",
            Self::Completed { .. } => "completed",
            Self::Aborted { .. } => "aborted",
        }
    }

    /// The wave the state is in (the last for `Completed`).
    pub fn wave(&self, waves: usize) -> usize {
        match self {
            Self::Running { wave, .. }
            | Self::Paused { wave, .. }
            | Self::Halted { wave, .. }
            | Self::Aborted { wave, .. } => *wave,
            Self::Completed { .. } => waves.saturating_sub(1),
        }
    }

    /// Whether devices of the current wave are offered the release.
    pub fn offers(&self) -> bool {
        matches!(self, Self::Running { .. })
    }
}

/// Why a rollout halted itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HaltReason {
    /// Too many of the wave's devices rolled back.
    RollbackRate {
        /// The wave.
        wave: usize,
        /// Devices of the wave that rolled back.
        failed: usize,
        /// The wave's own devices.
        devices: usize,
        /// The threshold passed.
        threshold: Permille,
    },
    /// Too many of the wave's devices failed their self-test.
    SelfTestFailureRate {
        /// The wave.
        wave: usize,
        /// Devices of the wave whose self-test failed.
        failed: usize,
        /// The wave's own devices.
        devices: usize,
        /// The threshold passed.
        threshold: Permille,
    },
}

impl std::fmt::Display for HaltReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, wave, failed, devices, threshold) = match self {
            Self::RollbackRate {
                wave,
                failed,
                devices,
                threshold,
            } => ("rolled back", wave, failed, devices, threshold),
            Self::SelfTestFailureRate {
                wave,
                failed,
                devices,
                threshold,
            } => ("failed their self-test", wave, failed, devices, threshold),
        };
        write!(
            f,
            "{failed} of wave {}'s {devices} device(s) {what}, more than the {}.{}% allowed",
            wave + 1,
            threshold / 10,
            threshold % 10
        )
    }
}

/// What a wave's own devices reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveCounts {
    /// The wave's own devices.
    pub devices: usize,
    /// Confirmed the release (self-test passed).
    pub confirmed: usize,
    /// Rolled back (crashed or hung before confirming).
    pub rolled_back: usize,
    /// Failed their self-test.
    pub selftest_failed: usize,
}

/// A change [`step`] made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transition {
    /// The next wave started.
    Advanced {
        /// Its index.
        wave: usize,
    },
    /// The last wave passed.
    Completed,
    /// Halted by itself.
    Halted {
        /// Why.
        reason: HaltReason,
    },
}

/// Whether `part` of `whole` is more than `threshold` per mille.
fn above(part: usize, whole: usize, threshold: Permille) -> bool {
    whole > 0 && (part as u128) * 1000 > (whole as u128) * u128::from(threshold)
}

/// One evaluation of a rollout: consumes the state and returns the next one,
/// with the transition taken if any. Only `Running` moves by itself; the halt
/// is checked before the success gate, so a wave that both confirmed enough
/// and failed too often halts.
pub fn step(
    state: RolloutState,
    policy: &Policy,
    counts: &WaveCounts,
    now: u64,
) -> (RolloutState, Option<Transition>) {
    let RolloutState::Running { wave, since } = state else {
        return (state, None);
    };
    let halt = if above(counts.rolled_back, counts.devices, policy.max_rollback) {
        Some(HaltReason::RollbackRate {
            wave,
            failed: counts.rolled_back,
            devices: counts.devices,
            threshold: policy.max_rollback,
        })
    } else if above(
        counts.selftest_failed,
        counts.devices,
        policy.max_selftest_failure,
    ) {
        Some(HaltReason::SelfTestFailureRate {
            wave,
            failed: counts.selftest_failed,
            devices: counts.devices,
            threshold: policy.max_selftest_failure,
        })
    } else {
        None
    };
    if let Some(reason) = halt {
        return (
            RolloutState::Halted {
                wave,
                since: now,
                reason: reason.clone(),
            },
            Some(Transition::Halted { reason }),
        );
    }
    let soaked = now >= since.saturating_add(policy.min_soak_s);
    let enough =
        (counts.confirmed as u128) * 1000 >= (counts.devices as u128) * u128::from(policy.success);
    if !(soaked && enough) {
        return (RolloutState::Running { wave, since }, None);
    }
    if wave + 1 >= policy.waves.len() {
        (
            RolloutState::Completed { since: now },
            Some(Transition::Completed),
        )
    } else {
        (
            RolloutState::Running {
                wave: wave + 1,
                since: now,
            },
            Some(Transition::Advanced { wave: wave + 1 }),
        )
    }
}

/// An operator's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Stop offering; keep the wave.
    Pause,
    /// Offer again (after a pause or a halt); the wave's soak starts again.
    Resume,
    /// Stop for good.
    Abort,
}

/// A command that does not apply to the rollout's state. The operator's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {command:?} a rollout that is {state}")]
pub struct CommandError {
    /// The command.
    pub command: Command,
    /// The state's name.
    pub state: &'static str,
}

impl CommandError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        "invalid_transition"
    }
}

/// Applies an operator's command.
pub fn command(state: RolloutState, cmd: Command, now: u64) -> Result<RolloutState, CommandError> {
    let err = |state: &RolloutState| CommandError {
        command: cmd,
        state: state.name(),
    };
    match (cmd, &state) {
        (Command::Pause, RolloutState::Running { wave, .. }) => Ok(RolloutState::Paused {
            wave: *wave,
            since: now,
        }),
        (
            Command::Resume,
            RolloutState::Paused { wave, .. } | RolloutState::Halted { wave, .. },
        ) => Ok(RolloutState::Running {
            wave: *wave,
            since: now,
        }),
        (
            Command::Abort,
            RolloutState::Running { wave, .. }
            | RolloutState::Paused { wave, .. }
            | RolloutState::Halted { wave, .. },
        ) => Ok(RolloutState::Aborted {
            wave: *wave,
            since: now,
        }),
        _ => Err(err(&state)),
    }
}

#[cfg(test)]
mod tests;
