//! The simulator's error type.
//!
//! [`SimFlashError`] keeps three kinds of failure apart, and every variant says
//! who is at fault:
//!
//! * **caller misuse** — [`NotAligned`](SimFlashError::NotAligned),
//!   [`OutOfBounds`](SimFlashError::OutOfBounds),
//!   [`ProgramNotErased`](SimFlashError::ProgramNotErased),
//!   [`InvalidCapacity`](SimFlashError::InvalidCapacity),
//!   [`ImageSize`](SimFlashError::ImageSize): a bug in the code driving the flash;
//! * **injected faults** — [`PowerLoss`](SimFlashError::PowerLoss),
//!   [`Injected`](SimFlashError::Injected): the test harness asked for them;
//! * **the host** — [`Io`](SimFlashError::Io): the backing file could not be
//!   read or written.

use embedded_storage::nor_flash::{NorFlashError, NorFlashErrorKind};

/// Everything that can go wrong in a [`SimFlash`](crate::SimFlash) operation.
///
/// Through [`NorFlashError::kind`] the variants map onto embedded-storage's
/// kinds: [`NotAligned`](Self::NotAligned) → `NotAligned`,
/// [`OutOfBounds`](Self::OutOfBounds) → `OutOfBounds`, everything else →
/// `Other`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimFlashError {
    /// The offset or length is not a multiple of the operation's unit
    /// (4 bytes for a program, 4 KiB for an erase, 64 KiB for a block erase).
    ///
    /// Caller's fault: align the request.
    #[error("operation at {offset:#x}, length {len:#x} is not aligned to {align:#x}")]
    NotAligned {
        /// Start of the rejected operation.
        offset: u32,
        /// Length of the rejected operation in bytes.
        len: u32,
        /// The alignment the operation needs.
        align: u32,
    },

    /// The operation reaches past the end of the flash, or an erase range
    /// ends before it starts (as embedded-storage's `check_erase` reports it).
    ///
    /// Caller's fault: the address arithmetic or the partition layout is wrong.
    #[error("operation at {offset:#x}, length {len:#x} exceeds the {capacity:#x}-byte flash")]
    OutOfBounds {
        /// Start of the rejected operation.
        offset: u32,
        /// Length of the rejected operation in bytes.
        len: u32,
        /// Size of the flash in bytes.
        capacity: u32,
    },

    /// Strict mode: a program would touch a byte that is not erased (`0xFF`).
    ///
    /// Caller's fault: on real NOR flash this silently ANDs the new data into
    /// the old, which is almost always a missing erase. Nothing was written.
    /// Use [`ProgramMode::Relaxed`](crate::ProgramMode::Relaxed) if re-programming
    /// (clearing more bits of a written word) is intended.
    #[error("program over non-erased byte at {offset:#x} (missing erase?)")]
    ProgramNotErased {
        /// The first byte in the request that was not `0xFF`.
        offset: u32,
    },

    /// Power was cut by an injected [`Fault`](crate::Fault); every operation
    /// fails with this until [`SimFlash::power_cycle`](crate::SimFlash::power_cycle).
    ///
    /// Nobody's fault: this is the event a power-cut test provokes. The flash
    /// keeps whatever state the cut left.
    #[error("power lost (injected fault); power-cycle the flash")]
    PowerLoss,

    /// A transient write/erase failure injected by
    /// [`SimFlash::inject_write_errors`](crate::SimFlash::inject_write_errors).
    /// The operation did not change the flash; power stays on.
    ///
    /// Nobody's fault: this exercises the caller's error paths.
    #[error("injected flash failure at mutating operation {op_index}")]
    Injected {
        /// Index of the failed mutating operation (see
        /// [`SimFlash::mutating_ops`](crate::SimFlash::mutating_ops)).
        op_index: u64,
    },

    /// A flash size that is not a multiple of 64 KiB between
    /// [`MIN_CAPACITY`](crate::MIN_CAPACITY) and [`MAX_CAPACITY`](crate::MAX_CAPACITY).
    ///
    /// Caller's fault (or a backing file of the wrong length).
    #[error("invalid flash size {capacity:#x}: must be a multiple of 64 KiB from 1 MiB to 16 MiB")]
    InvalidCapacity {
        /// The rejected size in bytes.
        capacity: u64,
    },

    /// An image handed to [`SimFlash::restore`](crate::SimFlash::restore) or
    /// [`SimFlash::load`](crate::SimFlash::load) does not fit.
    ///
    /// Caller's fault.
    #[error("image of {got:#x} bytes does not fit: expected {expected:#x}")]
    ImageSize {
        /// The size that was needed (the capacity, or the room left).
        expected: u64,
        /// The size that was given.
        got: u64,
    },

    /// Reading or writing the backing file failed.
    ///
    /// The host's fault (disk full, permissions, file removed). The in-memory
    /// state may now be ahead of the file.
    #[error("flash backing file I/O failed")]
    Io(#[from] std::io::Error),
}

impl NorFlashError for SimFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::NotAligned { .. } => NorFlashErrorKind::NotAligned,
            Self::OutOfBounds { .. } => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_onto_embedded_storage() {
        let e = SimFlashError::NotAligned {
            offset: 1,
            len: 4,
            align: 4,
        };
        assert_eq!(e.kind(), NorFlashErrorKind::NotAligned);
        let e = SimFlashError::OutOfBounds {
            offset: 0,
            len: 4,
            capacity: 0,
        };
        assert_eq!(e.kind(), NorFlashErrorKind::OutOfBounds);
        assert_eq!(SimFlashError::PowerLoss.kind(), NorFlashErrorKind::Other);
        assert_eq!(
            SimFlashError::ProgramNotErased { offset: 0 }.kind(),
            NorFlashErrorKind::Other
        );
        assert_eq!(
            SimFlashError::Injected { op_index: 3 }.kind(),
            NorFlashErrorKind::Other
        );
    }
}
