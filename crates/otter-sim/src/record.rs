//! Recording a scenario: the clean run a power-cut enumerator starts from.
//!
//! [`SimFlash::record`] runs a closure over a [`fork`](SimFlash::fork) of a
//! flash and returns a [`Recording`]: what the closure returned, how many
//! mutating operations it issued, their log, the counters, the modelled time
//! and the final image. [`Recording::faults`] then lists every fault worth
//! trying — for each mutating operation, each [`FaultKind`] that can hit it —
//! and the enumerator replays the scenario once per fault on a fresh fork
//! with [`SimFlash::with_fault`]. See the crate docs for the whole loop.

use core::time::Duration;

use crate::faults::{Fault, FaultKind};
use crate::flash::SimFlash;
use crate::log::{Counters, OpLog};

/// The result of a clean scenario run; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Recording<T> {
    /// What the scenario closure returned.
    pub value: T,
    /// Mutating operations the scenario issued (program calls, sector and
    /// block erase commands). Faults at indices `0..mutating_ops` hit them.
    pub mutating_ops: u64,
    /// Every operation, reads included, in order (unbounded policy).
    pub log: OpLog,
    /// Operation totals of the run.
    pub counters: Counters,
    /// Modelled device time of the run.
    pub elapsed: Duration,
    /// The flash contents when the scenario returned.
    pub image: Vec<u8>,
}

impl<T> Recording<T> {
    /// Every (operation, kind) fault of this run, with `seed` for the torn
    /// kinds: for mutating operation `k`, each kind in [`FaultKind::ALL`]
    /// order that [applies](FaultKind::applies_to) to it. A program yields
    /// three faults, an erase four.
    pub fn faults(&self, seed: u64) -> Vec<Fault> {
        self.log
            .mutating()
            .filter_map(|r| r.op_index.map(|i| (i, r.kind)))
            .flat_map(|(i, kind)| {
                FaultKind::applicable_to(kind).map(move |k| Fault::new(i, k, seed))
            })
            .collect()
    }
}

impl SimFlash {
    /// Runs `scenario` on a [`fork`](Self::fork) of this flash (this flash is
    /// not touched) and records the run.
    pub fn record<T>(&self, scenario: impl FnOnce(&mut SimFlash) -> T) -> Recording<T> {
        let mut flash = self.fork();
        let value = scenario(&mut flash);
        Recording {
            value,
            mutating_ops: flash.mutating_ops(),
            log: flash.log().clone(),
            counters: *flash.counters(),
            elapsed: flash.elapsed(),
            image: flash.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::OpKind;
    use embedded_storage::nor_flash::NorFlash;

    #[test]
    fn record_counts_and_lists_faults() {
        let flash = SimFlash::new(1 << 20).expect("valid capacity");
        let rec = flash.record(|f| {
            f.erase(0, 8192)?;
            f.write(0, &[0, 1, 2, 3])
        });
        assert!(rec.value.is_ok());
        assert_eq!(rec.mutating_ops, 3);
        assert_eq!(flash.mutating_ops(), 0, "the original is untouched");
        let faults = rec.faults(9);
        assert_eq!(faults.len(), 4 + 4 + 3);
        assert!(faults.iter().all(|f| f.seed == 9));
        let kinds: Vec<OpKind> = rec.log.mutating().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [OpKind::EraseSector, OpKind::EraseSector, OpKind::Program]
        );
        assert_eq!(&rec.image[..4], &[0, 1, 2, 3]);
    }
}
