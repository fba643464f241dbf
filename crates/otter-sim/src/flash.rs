//! [`SimFlash`]: an ESP32 SPI NOR flash in memory or in a file.
//!
//! # Geometry
//!
//! | property | value | embedded-storage constant |
//! |---|---|---|
//! | read unit | 4 bytes, 4-byte-aligned offset and length in [`ProgramMode::Strict`]; 1 byte in [`ProgramMode::Relaxed`] | [`STRICT_READ_SIZE`], `READ_SIZE` |
//! | program unit | 4 bytes, 4-byte-aligned offset and length | `WRITE_SIZE` |
//! | erase unit | 4 KiB sector | `ERASE_SIZE` |
//! | block erase | 64 KiB, 64 KiB aligned | [`SimFlash::erase_block64`] |
//! | capacity | a multiple of 64 KiB, 1 MiB to 16 MiB | `capacity()` |
//!
//! # NOR rules
//!
//! Erased cells read `0xFF`; a program ANDs the data into the cells
//! (`cell &= data`), so it can only clear bits. In [`ProgramMode::Strict`]
//! (the default) a program that touches any byte that is not `0xFF` is
//! rejected with [`SimFlashError::ProgramNotErased`] and changes nothing; on
//! real hardware it would silently AND, which is almost always a missing
//! erase. [`ProgramMode::Relaxed`] allows it (clearing more bits of written
//! data, as NVS-style bitmaps do).
//!
//! # Erase: sectors or blocks, the caller chooses
//!
//! * [`SimFlash::erase_sector`] and [`SimFlash::erase_block64`] issue exactly
//!   one command each.
//! * `NorFlash::erase(from, to)` splits the range as the configured
//!   [`EraseStrategy`] says. The default, [`EraseStrategy::Auto`], does what
//!   ESP-IDF's `esp_flash_erase_region` does: a 64 KiB block erase wherever the
//!   cursor is 64 KiB aligned and at least 64 KiB remain, sector erases
//!   elsewhere. So an aligned 64 KiB range costs one block erase (150 ms), not
//!   sixteen sector erases (720 ms). [`EraseStrategy::SectorsOnly`] always uses
//!   sectors.
//!
//! Each command is one mutating operation for the log, the counters, the
//! timing model and fault injection.
//!
//! # Why not `MultiwriteNorFlash`
//!
//! ESP32 NOR can physically be programmed again over written data (clearing
//! more bits), which is what `MultiwriteNorFlash` promises. `SimFlash` does
//! **not** implement it: the marker is a compile-time promise, while the
//! simulator's default strict mode forbids re-programming at run time, and
//! otter-ota's otadata and image writes never need it (ESP-IDF erases, then
//! programs once). Code that needs multi-write can run on a relaxed flash; if
//! a type-level marker is ever needed, a newtype around a relaxed `SimFlash`
//! can implement it.

use core::fmt;
use core::time::Duration;
use std::path::Path;

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};

use crate::error::SimFlashError;
use crate::faults::{self, ArmedFault, Fault, FaultKind, FaultStatus, WriteErrors};
use crate::log::{Counters, LogPolicy, OpKind, OpLog, OpOutcome, OpRecord};
use crate::storage::Storage;
use crate::timing::TimingModel;

/// Value of an erased byte.
pub const ERASED: u8 = 0xFF;
/// Read granularity in bytes that `ReadNorFlash::READ_SIZE` advertises: the
/// relaxed mode's. In [`ProgramMode::Strict`] reads follow
/// [`STRICT_READ_SIZE`].
pub const READ_SIZE: usize = 1;
/// Read granularity in [`ProgramMode::Strict`]: offset and length must be
/// multiples of 4, as esp-storage's `FlashStorage` requires (its
/// `READ_SIZE = 4` without the `bytewise-read` feature). A caller that reads
/// single bytes works here only in relaxed mode, and would fail on a chip.
pub const STRICT_READ_SIZE: usize = 4;
/// Program granularity in bytes (offset and length).
pub const WRITE_SIZE: usize = 4;
/// Size of a sector, the smallest erase unit.
pub const SECTOR_SIZE: u32 = 4096;
/// Size of a block for [`SimFlash::erase_block64`].
pub const BLOCK64_SIZE: u32 = 64 * 1024;
/// Smallest supported capacity (1 MiB).
pub const MIN_CAPACITY: usize = 1024 * 1024;
/// Largest supported capacity (16 MiB, the ESP32's addressable maximum).
pub const MAX_CAPACITY: usize = 16 * 1024 * 1024;

/// What a program may do to cells that are already written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgramMode {
    /// Programming any byte that is not `0xFF` is a caller bug:
    /// [`SimFlashError::ProgramNotErased`], nothing written. Reads must be
    /// 4-byte units at 4-byte offsets ([`STRICT_READ_SIZE`], the real
    /// driver's rule), else [`SimFlashError::NotAligned`].
    #[default]
    Strict,
    /// Programming ANDs into whatever is there (real NOR behaviour); reads
    /// of any length at any offset.
    Relaxed,
}

/// How `NorFlash::erase(from, to)` is split into erase commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EraseStrategy {
    /// 64 KiB block erases where the cursor is 64 KiB aligned and at least
    /// 64 KiB remain, 4 KiB sector erases elsewhere (ESP-IDF's
    /// `esp_flash_erase_region`).
    #[default]
    Auto,
    /// 4 KiB sector erases only.
    SectorsOnly,
}

/// Checks that `capacity` is a multiple of 64 KiB from 1 MiB to 16 MiB.
pub fn validate_capacity(capacity: usize) -> Result<(), SimFlashError> {
    if (MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity)
        && capacity.is_multiple_of(BLOCK64_SIZE as usize)
    {
        Ok(())
    } else {
        Err(SimFlashError::InvalidCapacity {
            capacity: capacity as u64,
        })
    }
}

/// A simulated ESP32 SPI NOR flash. See the [module docs](self).
pub struct SimFlash {
    storage: Storage,
    mode: ProgramMode,
    timing: TimingModel,
    erase_strategy: EraseStrategy,
    log: OpLog,
    counters: Counters,
    elapsed: Duration,
    /// Mutating operations issued since the flash was made (never reset).
    mutating_ops: u64,
    powered: bool,
    fault: Option<ArmedFault>,
    write_errors: Option<WriteErrors>,
    wear: Option<Wear>,
}

/// Erase counts per 4 KiB sector, optionally written through to a file of
/// little-endian u32s (one per sector) so they outlive the process.
struct Wear {
    counts: Vec<u32>,
    file: Option<std::fs::File>,
}

impl fmt::Debug for SimFlash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFlash")
            .field("capacity", &self.storage.cells().len())
            .field("path", &self.storage.path())
            .field("mode", &self.mode)
            .field("erase_strategy", &self.erase_strategy)
            .field("mutating_ops", &self.mutating_ops)
            .field("powered", &self.powered)
            .field("fault", &self.fault)
            .field("counters", &self.counters)
            .field("elapsed", &self.elapsed)
            .finish_non_exhaustive()
    }
}

/// Construction and configuration.
impl SimFlash {
    fn with_storage(storage: Storage) -> Self {
        Self {
            storage,
            mode: ProgramMode::default(),
            timing: TimingModel::default(),
            erase_strategy: EraseStrategy::default(),
            log: OpLog::new(LogPolicy::default()),
            counters: Counters::default(),
            elapsed: Duration::ZERO,
            mutating_ops: 0,
            powered: true,
            fault: None,
            write_errors: None,
            wear: None,
        }
    }

    /// An erased in-memory flash of `capacity` bytes.
    pub fn new(capacity: usize) -> Result<Self, SimFlashError> {
        validate_capacity(capacity)?;
        Ok(Self::with_storage(Storage::memory(vec![ERASED; capacity])))
    }

    /// An in-memory flash holding `image`; its length is the capacity.
    pub fn from_bytes(image: Vec<u8>) -> Result<Self, SimFlashError> {
        validate_capacity(image.len())?;
        Ok(Self::with_storage(Storage::memory(image)))
    }

    /// Creates (or truncates) `path` as an erased flash image of `capacity`
    /// bytes, and returns a flash backed by it.
    pub fn create_file(path: impl AsRef<Path>, capacity: usize) -> Result<Self, SimFlashError> {
        validate_capacity(capacity)?;
        Ok(Self::with_storage(Storage::create_file(
            path.as_ref(),
            capacity,
        )?))
    }

    /// Opens an existing flash image; the file's length is the capacity.
    pub fn open_file(path: impl AsRef<Path>) -> Result<Self, SimFlashError> {
        let storage = Storage::open_file(path.as_ref())?;
        validate_capacity(storage.cells().len())?;
        Ok(Self::with_storage(storage))
    }

    /// Opens `path` if it exists (its length must be `capacity`), otherwise
    /// creates it erased.
    pub fn open_or_create_file(
        path: impl AsRef<Path>,
        capacity: usize,
    ) -> Result<Self, SimFlashError> {
        let path = path.as_ref();
        if !path.exists() {
            return Self::create_file(path, capacity);
        }
        let flash = Self::open_file(path)?;
        if flash.capacity() != capacity {
            return Err(SimFlashError::ImageSize {
                expected: capacity as u64,
                got: flash.capacity() as u64,
            });
        }
        Ok(flash)
    }

    /// Sets the program mode (builder form of [`Self::set_mode`]).
    #[must_use]
    pub fn with_mode(mut self, mode: ProgramMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the timing model.
    #[must_use]
    pub fn with_timing(mut self, timing: TimingModel) -> Self {
        self.timing = timing;
        self
    }

    /// Sets how `erase(from, to)` is split.
    #[must_use]
    pub fn with_erase_strategy(mut self, strategy: EraseStrategy) -> Self {
        self.erase_strategy = strategy;
        self
    }

    /// Sets how much of the operation log is kept.
    #[must_use]
    pub fn with_log_policy(mut self, policy: LogPolicy) -> Self {
        self.log.set_policy(policy);
        self
    }

    /// Arms `fault` (builder form of [`Self::arm_fault`]).
    #[must_use]
    pub fn with_fault(mut self, fault: Fault) -> Self {
        self.arm_fault(fault);
        self
    }

    /// For a file-backed flash, `fsync` after every mutating operation (slow;
    /// only needed to survive an OS crash, not a killed process). No effect in
    /// memory.
    #[must_use]
    pub fn with_sync_each_op(mut self, on: bool) -> Self {
        self.storage.set_sync_each_op(on);
        self
    }

    /// Sets the program mode.
    pub fn set_mode(&mut self, mode: ProgramMode) {
        self.mode = mode;
    }

    /// Sets the timing model (time already elapsed is kept).
    pub fn set_timing(&mut self, timing: TimingModel) {
        self.timing = timing;
    }

    /// Sets how `erase(from, to)` is split.
    pub fn set_erase_strategy(&mut self, strategy: EraseStrategy) {
        self.erase_strategy = strategy;
    }

    /// Sets how much of the operation log is kept.
    pub fn set_log_policy(&mut self, policy: LogPolicy) {
        self.log.set_policy(policy);
    }

    /// The program mode.
    pub fn mode(&self) -> ProgramMode {
        self.mode
    }

    /// The timing model.
    pub fn timing(&self) -> &TimingModel {
        &self.timing
    }

    /// How `erase(from, to)` is split.
    pub fn erase_strategy(&self) -> EraseStrategy {
        self.erase_strategy
    }

    /// The backing file, if file-backed.
    pub fn path(&self) -> Option<&Path> {
        self.storage.path()
    }
}

/// Faults and power.
impl SimFlash {
    /// Arms `fault`, replacing any armed one. Its
    /// [`op_index`](Fault::op_index) counts mutating operations from now.
    pub fn arm_fault(&mut self, fault: Fault) {
        self.fault = Some(ArmedFault {
            fault,
            fires_at: self.mutating_ops.saturating_add(fault.op_index),
            status: FaultStatus::Armed,
        });
    }

    /// Removes the armed (or fired) fault. Does not restore power.
    pub fn disarm_fault(&mut self) {
        self.fault = None;
    }

    /// The armed fault, if any (also after it fired).
    pub fn fault(&self) -> Option<Fault> {
        self.fault.map(|a| a.fault)
    }

    /// Where the armed fault stands; `None` if none was armed.
    pub fn fault_status(&self) -> Option<FaultStatus> {
        self.fault.map(|a| a.status)
    }

    /// Whether the armed fault has fired (power was cut by it).
    pub fn fault_fired(&self) -> bool {
        self.fault_status() == Some(FaultStatus::Fired)
    }

    /// Whether the flash has power. `false` after a fault fired, until
    /// [`Self::power_cycle`].
    pub fn is_powered(&self) -> bool {
        self.powered
    }

    /// Restores power after a cut. Contents persist; a fault that has not
    /// fired yet stays armed (so a scenario may include reboots), and one
    /// that has fired never fires again.
    pub fn power_cycle(&mut self) {
        self.powered = true;
    }

    /// After `after` more successful mutating operations, the next `count`
    /// mutating operations fail with [`SimFlashError::Injected`] without
    /// changing anything or cutting power. Replaces earlier injected errors.
    pub fn inject_write_errors(&mut self, after: u64, count: u64) {
        self.write_errors = Some(WriteErrors {
            from: self.mutating_ops.saturating_add(after),
            remaining: count,
        });
    }

    /// Cancels [`Self::inject_write_errors`].
    pub fn clear_write_errors(&mut self) {
        self.write_errors = None;
    }
}

/// Statistics: log, counters, time.
impl SimFlash {
    /// Mutating operations (program calls, sector and block erase commands)
    /// issued since the flash was made, including ones a fault cut or an
    /// injected error failed. Never reset; a [`Self::fork`] starts at 0.
    pub fn mutating_ops(&self) -> u64 {
        self.mutating_ops
    }

    /// Operation totals since the flash was made or the last reset.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Modelled device time since the flash was made or the last reset.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Zeroes the counters and the modelled time. The log, the mutating
    /// operation index and any armed fault are not touched.
    pub fn reset_counters(&mut self) {
        self.counters = Counters::default();
        self.elapsed = Duration::ZERO;
    }

    /// The operation log.
    pub fn log(&self) -> &OpLog {
        &self.log
    }

    /// Empties the operation log.
    pub fn clear_log(&mut self) {
        self.log.clear();
    }
}

/// Contents, outside the device's operations (not logged, counted, timed or
/// fault-injected; allowed while power is off).
impl SimFlash {
    /// Size in bytes.
    pub fn capacity(&self) -> usize {
        self.storage.cells().len()
    }

    /// The current contents.
    pub fn contents(&self) -> &[u8] {
        self.storage.cells()
    }

    /// A copy of the current contents, for [`Self::from_bytes`] or
    /// [`Self::restore`].
    pub fn snapshot(&self) -> Vec<u8> {
        self.storage.cells().to_vec()
    }

    /// Replaces the whole contents with `image` (same length as the flash),
    /// writing through to the file if file-backed.
    pub fn restore(&mut self, image: &[u8]) -> Result<(), SimFlashError> {
        if image.len() != self.capacity() {
            return Err(SimFlashError::ImageSize {
                expected: self.capacity() as u64,
                got: image.len() as u64,
            });
        }
        self.storage.replace(image)?;
        Ok(())
    }

    /// Writes `data` at `offset` as a factory programmer would: the bytes are
    /// set exactly, whatever was there, with no alignment rule. For placing a
    /// bootloader, partition table or merged image before a test.
    pub fn load(&mut self, offset: u32, data: &[u8]) -> Result<(), SimFlashError> {
        let room = (self.capacity() as u64).saturating_sub(u64::from(offset));
        let len = u32::try_from(data.len())
            .ok()
            .filter(|&l| u64::from(l) <= room)
            .ok_or(SimFlashError::ImageSize {
                expected: room,
                got: data.len() as u64,
            })?;
        self.storage.range_mut(offset, len).copy_from_slice(data);
        self.storage.flush(offset, len)?;
        Ok(())
    }

    /// `fsync`s the backing file (no-op in memory).
    pub fn sync(&self) -> Result<(), SimFlashError> {
        Ok(self.storage.sync()?)
    }

    /// An in-memory copy of this flash for a scenario run: same contents,
    /// mode, timing and erase strategy; an unbounded log, zero counters and
    /// time, mutating operation index 0, power on, no fault.
    pub fn fork(&self) -> SimFlash {
        Self::with_storage(Storage::memory(self.snapshot()))
            .with_mode(self.mode)
            .with_timing(self.timing)
            .with_erase_strategy(self.erase_strategy)
    }
}

/// Flash wear.
impl SimFlash {
    /// Counts erases per 4 KiB sector from now on; with `path`, the counts
    /// are read from that file when it exists (a device's earlier runs) and
    /// written through to it after every erase (little-endian u32 per
    /// sector, `capacity / 4096` of them).
    pub fn track_wear(&mut self, path: Option<&std::path::Path>) -> Result<(), SimFlashError> {
        let sectors = self.storage.cells().len() / SECTOR_SIZE as usize;
        let mut counts = vec![0u32; sectors];
        let file = match path {
            None => None,
            Some(p) => {
                if let Ok(bytes) = std::fs::read(p) {
                    for (c, b) in counts.iter_mut().zip(bytes.chunks_exact(4)) {
                        *c = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    }
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .read(true)
                    .write(true)
                    .open(p)
                    .map_err(SimFlashError::from)?;
                let all: Vec<u8> = counts.iter().flat_map(|c| c.to_le_bytes()).collect();
                write_at(&f, &all, 0).map_err(SimFlashError::from)?;
                Some(f)
            }
        };
        self.wear = Some(Wear { counts, file });
        Ok(())
    }

    /// Erases per 4 KiB sector since [`Self::track_wear`], if tracking.
    pub fn erase_counts(&self) -> Option<&[u32]> {
        self.wear.as_ref().map(|w| w.counts.as_slice())
    }

    fn count_erase(&mut self, offset: u32, len: u32) -> Result<(), SimFlashError> {
        let Some(w) = self.wear.as_mut() else {
            return Ok(());
        };
        let first = (offset / SECTOR_SIZE) as usize;
        let n = (len / SECTOR_SIZE) as usize;
        let Some(range) = w.counts.get_mut(first..first + n) else {
            return Ok(());
        };
        for c in range.iter_mut() {
            *c = c.saturating_add(1);
        }
        if let Some(f) = &w.file {
            let bytes: Vec<u8> = range.iter().flat_map(|c| c.to_le_bytes()).collect();
            write_at(f, &bytes, first as u64 * 4).map_err(SimFlashError::from)?;
        }
        Ok(())
    }
}

#[cfg(unix)]
fn write_at(file: &std::fs::File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(buf, offset)
}

#[cfg(not(unix))]
fn write_at(mut file: &std::fs::File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(buf)
}

/// Device operations.
impl SimFlash {
    /// Erases the 4 KiB sector at `offset` (sector aligned): one command.
    pub fn erase_sector(&mut self, offset: u32) -> Result<(), SimFlashError> {
        self.check_powered()?;
        self.check_range(offset, SECTOR_SIZE, SECTOR_SIZE)?;
        self.mutate(OpKind::EraseSector, offset, SECTOR_SIZE, None)
    }

    /// Erases the 64 KiB block at `offset` (64 KiB aligned): one command,
    /// costed as one block erase.
    pub fn erase_block64(&mut self, offset: u32) -> Result<(), SimFlashError> {
        self.check_powered()?;
        self.check_range(offset, BLOCK64_SIZE, BLOCK64_SIZE)?;
        self.mutate(OpKind::EraseBlock64, offset, BLOCK64_SIZE, None)
    }

    fn check_powered(&self) -> Result<(), SimFlashError> {
        if self.powered {
            Ok(())
        } else {
            Err(SimFlashError::PowerLoss)
        }
    }

    /// Bounds first, then alignment (the order embedded-storage's
    /// `check_write` uses).
    fn check_range(&self, offset: u32, len: u32, align: u32) -> Result<(), SimFlashError> {
        let capacity = self.capacity() as u64;
        if u64::from(offset) + u64::from(len) > capacity {
            return Err(SimFlashError::OutOfBounds {
                offset,
                len,
                capacity: capacity as u32,
            });
        }
        if !offset.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(SimFlashError::NotAligned { offset, len, align });
        }
        Ok(())
    }

    /// Carries out one mutating command, already validated: injected
    /// errors, then faults, then the NOR change, write-through, counters,
    /// time and log.
    fn mutate(
        &mut self,
        kind: OpKind,
        offset: u32,
        len: u32,
        data: Option<&[u8]>,
    ) -> Result<(), SimFlashError> {
        let op_index = self.mutating_ops;
        self.mutating_ops += 1;
        let record = |outcome| OpRecord {
            kind,
            offset,
            len,
            op_index: Some(op_index),
            outcome,
        };

        let mut fault_kind = None;
        if let Some(armed) = &mut self.fault {
            if armed.status == FaultStatus::Armed && armed.fires_at == op_index {
                if armed.fault.kind.applies_to(kind) {
                    armed.status = FaultStatus::Fired;
                    fault_kind = Some((armed.fault.kind, armed.fault.seed));
                } else {
                    armed.status = FaultStatus::Skipped;
                }
            }
        }

        if fault_kind.is_none() {
            if let Some(errors) = &mut self.write_errors {
                if op_index >= errors.from && errors.remaining > 0 {
                    errors.remaining -= 1;
                    self.log.push(record(OpOutcome::Failed));
                    return Err(SimFlashError::Injected { op_index });
                }
            }
        }

        let outcome = match fault_kind {
            None => OpOutcome::Completed,
            Some((FaultKind::CutBefore, _)) => {
                self.powered = false;
                self.log.push(record(OpOutcome::CutBefore));
                return Err(SimFlashError::PowerLoss);
            }
            Some((FaultKind::CutAfter, _)) => OpOutcome::CompletedThenCut,
            Some((FaultKind::TornProgram | FaultKind::TornErase { .. }, _)) => OpOutcome::Torn,
        };

        let cells = self.storage.range_mut(offset, len);
        match (fault_kind, data) {
            (Some((FaultKind::TornProgram, seed)), Some(data)) => {
                faults::tear_program(seed, cells, data);
            }
            (Some((FaultKind::TornErase { scramble }, seed)), None) => {
                faults::tear_erase(seed, cells, scramble);
            }
            (_, Some(data)) => {
                for (cell, &d) in cells.iter_mut().zip(data) {
                    *cell &= d;
                }
            }
            (_, None) => cells.fill(ERASED),
        }
        // Account before writing through, so a host I/O error still leaves
        // the in-memory statistics matching the in-memory cells.
        self.counters.add(kind, len);
        self.elapsed += match kind {
            OpKind::Program => self.timing.program_cost(offset, len),
            OpKind::EraseSector => self.timing.sector_erase,
            OpKind::EraseBlock64 => self.timing.block_erase,
            OpKind::Read => self.timing.read_cost(len),
        };
        self.log.push(record(outcome));
        if outcome != OpOutcome::Completed {
            self.powered = false;
        }
        self.storage.flush(offset, len)?;
        if data.is_none() {
            self.count_erase(offset, len)?;
        }
        if outcome == OpOutcome::Completed {
            Ok(())
        } else {
            Err(SimFlashError::PowerLoss)
        }
    }
}

impl ErrorType for SimFlash {
    type Error = SimFlashError;
}

impl ReadNorFlash for SimFlash {
    const READ_SIZE: usize = READ_SIZE;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.check_powered()?;
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let align = match self.mode {
            ProgramMode::Strict => STRICT_READ_SIZE as u32,
            ProgramMode::Relaxed => READ_SIZE as u32,
        };
        self.check_range(offset, len, align)?;
        let start = offset as usize;
        bytes.copy_from_slice(&self.storage.cells()[start..start + bytes.len()]);
        self.counters.add(OpKind::Read, len);
        self.elapsed += self.timing.read_cost(len);
        self.log.push(OpRecord {
            kind: OpKind::Read,
            offset,
            len,
            op_index: None,
            outcome: OpOutcome::Completed,
        });
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.storage.cells().len()
    }
}

impl NorFlash for SimFlash {
    const WRITE_SIZE: usize = WRITE_SIZE;
    const ERASE_SIZE: usize = SECTOR_SIZE as usize;

    /// Erases `from..to` (both sector aligned) as a sequence of sector and
    /// block erase commands chosen by the [`EraseStrategy`]. If a fault cuts
    /// power part-way, the commands before it have taken effect.
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.check_powered()?;
        if from > to {
            return Err(SimFlashError::OutOfBounds {
                offset: from,
                len: 0,
                capacity: self.capacity() as u32,
            });
        }
        self.check_range(from, to - from, SECTOR_SIZE)?;
        let mut cursor = from;
        while cursor < to {
            let block = self.erase_strategy == EraseStrategy::Auto
                && cursor.is_multiple_of(BLOCK64_SIZE)
                && to - cursor >= BLOCK64_SIZE;
            if block {
                self.mutate(OpKind::EraseBlock64, cursor, BLOCK64_SIZE, None)?;
                cursor += BLOCK64_SIZE;
            } else {
                self.mutate(OpKind::EraseSector, cursor, SECTOR_SIZE, None)?;
                cursor += SECTOR_SIZE;
            }
        }
        Ok(())
    }

    /// Programs `bytes` at `offset` (both 4-byte aligned): one command, one
    /// log record, costed per 256-byte page touched. In strict mode any
    /// target byte that is not `0xFF` fails the whole call unchanged.
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.check_powered()?;
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.check_range(offset, len, WRITE_SIZE as u32)?;
        if len == 0 {
            return Ok(());
        }
        if self.mode == ProgramMode::Strict {
            let start = offset as usize;
            let target = &self.storage.cells()[start..start + bytes.len()];
            if let Some(i) = target.iter().position(|&b| b != ERASED) {
                return Err(SimFlashError::ProgramNotErased {
                    // i < len, which fits in u32.
                    offset: offset + i as u32,
                });
            }
        }
        self.mutate(OpKind::Program, offset, len, Some(bytes))
    }
}
