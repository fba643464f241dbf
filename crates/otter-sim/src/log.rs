//! The operation log and the counters.
//!
//! Every device operation the flash carries out is appended to an [`OpLog`]
//! as an [`OpRecord`] and summed into [`Counters`]. Requests rejected before
//! reaching the "device" (misaligned, out of bounds, strict-mode violations,
//! anything while power is off) are neither logged nor counted: on hardware
//! they would never have been sent.
//!
//! One `erase(from, to)` call is split into the sector and block erase
//! commands the driver would send, each logged on its own; one program call is
//! one record however many pages it touches.

use std::collections::VecDeque;

/// What a logged operation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// A read (never mutating).
    Read,
    /// A program (write) of 4-byte-aligned data.
    Program,
    /// A 4 KiB sector erase.
    EraseSector,
    /// A 64 KiB block erase.
    EraseBlock64,
}

impl OpKind {
    /// Whether the operation changes flash contents (and so is counted as a
    /// mutating operation for fault injection).
    pub fn is_mutating(self) -> bool {
        !matches!(self, Self::Read)
    }

    /// Whether the operation is an erase of either size.
    pub fn is_erase(self) -> bool {
        matches!(self, Self::EraseSector | Self::EraseBlock64)
    }
}

/// How a logged operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpOutcome {
    /// It completed normally.
    Completed,
    /// It completed, then power was cut ([`FaultKind::CutAfter`](crate::FaultKind::CutAfter)).
    CompletedThenCut,
    /// Power was cut in the middle: only part of it took effect
    /// ([`FaultKind::TornProgram`](crate::FaultKind::TornProgram) /
    /// [`FaultKind::TornErase`](crate::FaultKind::TornErase)).
    Torn,
    /// Power was cut just before it: nothing changed
    /// ([`FaultKind::CutBefore`](crate::FaultKind::CutBefore)).
    CutBefore,
    /// An injected transient error: nothing changed, power stays on.
    Failed,
}

/// One entry of the operation log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpRecord {
    /// What the operation was.
    pub kind: OpKind,
    /// Byte offset in the flash.
    pub offset: u32,
    /// Length in bytes (4096 for a sector erase, 65536 for a block erase).
    pub len: u32,
    /// For a mutating operation, its index in the flash's count of mutating
    /// operations (see [`SimFlash::mutating_ops`](crate::SimFlash::mutating_ops));
    /// `None` for reads.
    pub op_index: Option<u64>,
    /// How it ended.
    pub outcome: OpOutcome,
}

/// How much of the log to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogPolicy {
    /// Keep every record (about 32 bytes each). The default, and what
    /// [`SimFlash::record`](crate::SimFlash::record) uses.
    #[default]
    Unbounded,
    /// Keep only the most recent `n` records; older ones are dropped and
    /// counted in [`OpLog::dropped`].
    Last(usize),
    /// Keep nothing (counters and timing still run): for long soak runs.
    Off,
}

/// The operation log: the most recent records, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpLog {
    records: VecDeque<OpRecord>,
    policy: LogPolicy,
    dropped: u64,
}

impl OpLog {
    /// An empty log keeping records by `policy`.
    pub fn new(policy: LogPolicy) -> Self {
        Self {
            records: VecDeque::new(),
            policy,
            dropped: 0,
        }
    }

    /// Appends a record, dropping the oldest if the policy says so.
    pub(crate) fn push(&mut self, record: OpRecord) {
        match self.policy {
            LogPolicy::Unbounded => self.records.push_back(record),
            LogPolicy::Off => self.dropped += 1,
            LogPolicy::Last(n) => {
                if n == 0 {
                    self.dropped += 1;
                    return;
                }
                while self.records.len() >= n {
                    self.records.pop_front();
                    self.dropped += 1;
                }
                self.records.push_back(record);
            }
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> LogPolicy {
        self.policy
    }

    /// Changes the policy; a smaller `Last(n)` trims at the next push.
    pub fn set_policy(&mut self, policy: LogPolicy) {
        self.policy = policy;
    }

    /// The kept records, oldest first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &OpRecord> + DoubleEndedIterator + '_ {
        self.records.iter()
    }

    /// The kept mutating records (erases and programs), oldest first.
    pub fn mutating(&self) -> impl Iterator<Item = &OpRecord> + '_ {
        self.records.iter().filter(|r| r.kind.is_mutating())
    }

    /// The number of kept records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The most recent record, if kept.
    pub fn last(&self) -> Option<&OpRecord> {
        self.records.back()
    }

    /// How many records the policy has dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Forgets every record and the dropped count; keeps the policy.
    pub fn clear(&mut self) {
        self.records.clear();
        self.dropped = 0;
    }

    /// The kept records as a vector, oldest first.
    pub fn to_vec(&self) -> Vec<OpRecord> {
        self.records.iter().copied().collect()
    }
}

/// Totals of the device operations carried out since the flash was made or
/// [`SimFlash::reset_counters`](crate::SimFlash::reset_counters) was called.
///
/// Torn operations are counted in full (the device started them); operations
/// cut before they started, and injected failures, are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// 4 KiB sector erases.
    pub sector_erases: u64,
    /// 64 KiB block erases.
    pub block_erases: u64,
    /// Bytes erased by both kinds of erase.
    pub bytes_erased: u64,
    /// Program operations.
    pub program_ops: u64,
    /// Bytes programmed.
    pub bytes_programmed: u64,
    /// Read operations.
    pub read_ops: u64,
    /// Bytes read.
    pub bytes_read: u64,
}

impl Counters {
    /// Erase operations of both sizes.
    pub fn erase_ops(&self) -> u64 {
        self.sector_erases + self.block_erases
    }

    pub(crate) fn add(&mut self, kind: OpKind, len: u32) {
        let len = u64::from(len);
        match kind {
            OpKind::Read => {
                self.read_ops += 1;
                self.bytes_read += len;
            }
            OpKind::Program => {
                self.program_ops += 1;
                self.bytes_programmed += len;
            }
            OpKind::EraseSector => {
                self.sector_erases += 1;
                self.bytes_erased += len;
            }
            OpKind::EraseBlock64 => {
                self.block_erases += 1;
                self.bytes_erased += len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: u32) -> OpRecord {
        OpRecord {
            kind: OpKind::Program,
            offset,
            len: 4,
            op_index: Some(u64::from(offset)),
            outcome: OpOutcome::Completed,
        }
    }

    #[test]
    fn last_n_keeps_the_newest() {
        let mut log = OpLog::new(LogPolicy::Last(2));
        for i in 0..5 {
            log.push(rec(i));
        }
        let offsets: Vec<u32> = log.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [3, 4]);
        assert_eq!(log.dropped(), 3);
    }

    #[test]
    fn off_keeps_nothing() {
        let mut log = OpLog::new(LogPolicy::Off);
        log.push(rec(0));
        assert!(log.is_empty());
        assert_eq!(log.dropped(), 1);
        log.clear();
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn counters_sum_by_kind() {
        let mut c = Counters::default();
        c.add(OpKind::EraseSector, 4096);
        c.add(OpKind::EraseBlock64, 65536);
        c.add(OpKind::Program, 8);
        c.add(OpKind::Read, 3);
        assert_eq!(c.erase_ops(), 2);
        assert_eq!(c.bytes_erased, 69632);
        assert_eq!((c.program_ops, c.bytes_programmed), (1, 8));
        assert_eq!((c.read_ops, c.bytes_read), (1, 3));
    }
}
