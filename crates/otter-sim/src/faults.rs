//! Fault injection: power cuts, torn programs and torn erases.
//!
//! A [`Fault`] is plain data — which mutating operation, what happens to it,
//! and a seed — so a harness can enumerate "every operation × every kind",
//! replay any one of them exactly, and print the one that failed.
//!
//! # Which operations count
//!
//! Only **mutating** operations are counted: each program call, and each
//! sector or block erase command (an `erase(from, to)` over several sectors
//! is several operations, split as [`EraseStrategy`](crate::EraseStrategy)
//! says). Reads are not counted: a cut "during" a read is the same as a cut
//! before the next mutating operation, so counting reads would only multiply
//! the cases without adding a state. [`Fault::op_index`] is 0-based and
//! counts the mutating operations issued *after the fault was armed*; on a
//! fresh flash or a [`fork`](crate::SimFlash::fork) that is the same as
//! [`OpRecord::op_index`](crate::OpRecord::op_index).
//!
//! # What each kind does
//!
//! | kind | flash afterwards | the call returns |
//! |---|---|---|
//! | [`CutBefore`](FaultKind::CutBefore) | unchanged by operation k | `PowerLoss` |
//! | [`CutAfter`](FaultKind::CutAfter) | operation k fully applied | `PowerLoss` |
//! | [`TornProgram`](FaultKind::TornProgram) | a random subset of the bits k would clear are cleared | `PowerLoss` |
//! | [`TornErase`](FaultKind::TornErase) | a random subset of the erased range's bytes are `0xFF`; the rest as they were, or random if `scramble` | `PowerLoss` |
//!
//! After any of them the flash is *powered off*: every operation, reads
//! included, returns [`SimFlashError::PowerLoss`](crate::SimFlashError::PowerLoss)
//! until [`SimFlash::power_cycle`](crate::SimFlash::power_cycle). Contents persist.
//!
//! A torn kind that does not match operation k (a `TornProgram` aimed at an
//! erase, a `TornErase` aimed at a program) does not fire: the operation
//! completes normally and [`SimFlash::fault_status`](crate::SimFlash::fault_status)
//! reports [`FaultStatus::Skipped`]. [`Recording::faults`](crate::Recording::faults)
//! only produces matching kinds.
//!
//! # Randomness
//!
//! Torn results come from `rand_xorshift::XorShiftRng` seeded with
//! `SeedableRng::seed_from_u64(fault.seed)`; both are documented as
//! value-stable, so a seed printed by a failing run reproduces the same bytes.
//! Each tear first draws a fraction `p` uniformly, then takes each candidate
//! bit (torn program) or byte (torn erase) with probability `p`. So across
//! seeds a tear ranges from "almost nothing happened" to "almost done",
//! instead of always being about half done.

use rand_core::{Rng, SeedableRng};
use rand_xorshift::XorShiftRng;

use crate::flash::ERASED;
use crate::log::OpKind;

/// What an injected fault does to the operation it hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Power is lost just before the operation: it does not happen.
    CutBefore,
    /// The operation completes, then power is lost.
    CutAfter,
    /// Power is lost while programming: a random subset of the bits the
    /// program would clear are cleared. Applies to program operations only.
    TornProgram,
    /// Power is lost while erasing: a random subset of the erased range's
    /// bytes become `0xFF`. Applies to sector and block erases only.
    TornErase {
        /// `false`: the other bytes keep their old values. `true`: the other
        /// bytes get random values (a partly discharged cell array).
        scramble: bool,
    },
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [Self; 5] = [
        Self::CutBefore,
        Self::CutAfter,
        Self::TornProgram,
        Self::TornErase { scramble: false },
        Self::TornErase { scramble: true },
    ];

    /// A short stable name for reports: `cut-before`, `cut-after`,
    /// `torn-program`, `torn-erase`, `torn-erase-scramble`.
    pub fn name(self) -> &'static str {
        match self {
            Self::CutBefore => "cut-before",
            Self::CutAfter => "cut-after",
            Self::TornProgram => "torn-program",
            Self::TornErase { scramble: false } => "torn-erase",
            Self::TornErase { scramble: true } => "torn-erase-scramble",
        }
    }

    /// The kind [`FaultKind::name`] names.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "cut-before" => Self::CutBefore,
            "cut-after" => Self::CutAfter,
            "torn-program" => Self::TornProgram,
            "torn-erase" => Self::TornErase { scramble: false },
            "torn-erase-scramble" => Self::TornErase { scramble: true },
            _ => return None,
        })
    }

    /// Whether this kind can hit an operation of `op` kind.
    pub fn applies_to(self, op: OpKind) -> bool {
        match self {
            Self::CutBefore | Self::CutAfter => op.is_mutating(),
            Self::TornProgram => op == OpKind::Program,
            Self::TornErase { .. } => op.is_erase(),
        }
    }

    /// The kinds that can hit an operation of `op` kind, in [`Self::ALL`] order.
    pub fn applicable_to(op: OpKind) -> impl Iterator<Item = Self> {
        Self::ALL.into_iter().filter(move |k| k.applies_to(op))
    }
}

/// One injected fault: what happens to which mutating operation, and the
/// seed for any randomness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fault {
    /// 0-based index of the mutating operation to hit, counted from when the
    /// fault is armed (see the [module docs](self)).
    pub op_index: u64,
    /// What happens to it.
    pub kind: FaultKind,
    /// Seed for torn results (ignored by the cut kinds).
    pub seed: u64,
}

impl Fault {
    /// A fault of `kind` at mutating operation `op_index`.
    pub fn new(op_index: u64, kind: FaultKind, seed: u64) -> Self {
        Self {
            op_index,
            kind,
            seed,
        }
    }

    /// Power cut before mutating operation `op_index`.
    pub fn cut_before(op_index: u64) -> Self {
        Self::new(op_index, FaultKind::CutBefore, 0)
    }

    /// Power cut after mutating operation `op_index`.
    pub fn cut_after(op_index: u64) -> Self {
        Self::new(op_index, FaultKind::CutAfter, 0)
    }
}

impl Fault {
    /// The fault as `OP:KIND:SEED` (`1234:torn-program:0x5eed`), the form
    /// [`Fault::parse`] reads and `otter sim powercut --fault` takes.
    pub fn spec(&self) -> String {
        format!("{}:{}:{:#x}", self.op_index, self.kind.name(), self.seed)
    }

    /// Reads [`Fault::spec`]'s form; the seed is decimal or 0x-hex.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let (Some(op), Some(kind), Some(seed), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "{s:?} is not OP:KIND:SEED (for example 12:torn-program:0x5eed)"
            ));
        };
        let op_index = op
            .parse()
            .map_err(|e| format!("{s:?}: operation index {op:?}: {e}"))?;
        let kind = FaultKind::from_name(kind).ok_or_else(|| {
            format!(
                "{s:?}: fault kind {kind:?} is none of cut-before, cut-after, torn-program, torn-erase, torn-erase-scramble"
            )
        })?;
        let seed = match seed.strip_prefix("0x").or_else(|| seed.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => seed.parse(),
        }
        .map_err(|e| format!("{s:?}: seed {seed:?}: {e}"))?;
        Ok(Self::new(op_index, kind, seed))
    }
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:?} at mutating op {} (seed {:#x})",
            self.kind, self.op_index, self.seed
        )
    }
}

/// Where an armed fault stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultStatus {
    /// Waiting for its operation.
    Armed,
    /// Its operation came and the fault took effect: power was cut.
    Fired,
    /// Its operation came but was of a kind the fault cannot hit (a torn
    /// program aimed at an erase, or the reverse); the operation completed
    /// normally.
    Skipped,
}

/// A fault armed on a flash: the fault, the absolute operation index it
/// fires at, and its status.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ArmedFault {
    pub(crate) fault: Fault,
    pub(crate) fires_at: u64,
    pub(crate) status: FaultStatus,
}

/// Transient injected write/erase errors: from absolute mutating operation
/// `from`, the next `remaining` mutating operations fail.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteErrors {
    pub(crate) from: u64,
    pub(crate) remaining: u64,
}

/// A fraction in [0, 2^32) / 2^32, then a Bernoulli trial per candidate.
fn draw_fraction(rng: &mut XorShiftRng) -> u32 {
    rng.next_u32()
}

fn trial(rng: &mut XorShiftRng, p: u32) -> bool {
    rng.next_u32() < p
}

/// Applies a torn program of `data` onto `cells`: each bit the program would
/// clear (`cell & !data`) is cleared with a per-tear probability.
pub(crate) fn tear_program(seed: u64, cells: &mut [u8], data: &[u8]) {
    let mut rng = XorShiftRng::seed_from_u64(seed);
    let p = draw_fraction(&mut rng);
    for (cell, &d) in cells.iter_mut().zip(data) {
        let to_clear = *cell & !d;
        let mut mask = 0u8;
        for bit in 0..8 {
            if to_clear & (1 << bit) != 0 && trial(&mut rng, p) {
                mask |= 1 << bit;
            }
        }
        *cell &= !mask;
    }
}

/// Applies a torn erase to `cells`: each byte becomes `0xFF` with a per-tear
/// probability; the others stay, or get random values if `scramble`.
pub(crate) fn tear_erase(seed: u64, cells: &mut [u8], scramble: bool) {
    let mut rng = XorShiftRng::seed_from_u64(seed);
    let p = draw_fraction(&mut rng);
    for cell in cells.iter_mut() {
        if trial(&mut rng, p) {
            *cell = ERASED;
        } else if scramble {
            // Truncation keeps the low byte: any byte value is equally likely.
            *cell = rng.next_u32() as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applicability() {
        let p: Vec<_> = FaultKind::applicable_to(OpKind::Program).collect();
        assert_eq!(
            p,
            [
                FaultKind::CutBefore,
                FaultKind::CutAfter,
                FaultKind::TornProgram
            ]
        );
        let e: Vec<_> = FaultKind::applicable_to(OpKind::EraseBlock64).collect();
        assert_eq!(e.len(), 4);
        assert!(!e.contains(&FaultKind::TornProgram));
        assert_eq!(FaultKind::applicable_to(OpKind::Read).count(), 0);
    }

    #[test]
    fn torn_program_is_between_old_and_new() {
        for seed in 0..200 {
            let old: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) | 0xC3).collect();
            let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(91)).collect();
            let mut cells = old.clone();
            tear_program(seed, &mut cells, &data);
            for ((&o, &d), &r) in old.iter().zip(&data).zip(&cells) {
                let new = o & d;
                assert_eq!(r & !o, 0, "a bit was set");
                assert_eq!(r & new, new, "a bit outside the change set was cleared");
            }
        }
    }

    #[test]
    fn tears_are_reproducible_and_vary() {
        let data = [0u8; 256];
        let mut a = [0xFFu8; 256];
        let mut b = [0xFFu8; 256];
        tear_program(42, &mut a, &data);
        tear_program(42, &mut b, &data);
        assert_eq!(a, b);
        let distinct: std::collections::HashSet<Vec<u8>> = (0..16)
            .map(|seed| {
                let mut c = [0xFFu8; 256];
                tear_program(seed, &mut c, &data);
                c.to_vec()
            })
            .collect();
        assert!(distinct.len() > 12, "seeds should give different tears");
    }

    #[test]
    fn torn_erase_without_scramble_only_sets_to_ff() {
        let old: Vec<u8> = (0..=255u8).collect();
        let mut cells = old.clone();
        tear_erase(7, &mut cells, false);
        for (&o, &r) in old.iter().zip(&cells) {
            assert!(r == o || r == ERASED);
        }
    }
}
