//! The timing model: how long each flash operation takes on the device.
//!
//! The simulator never sleeps. Each operation adds its modelled cost to an
//! accumulated device time ([`SimFlash::elapsed`](crate::SimFlash::elapsed)),
//! so a test can compare erase strategies or check a performance target in
//! microseconds of CPU time.
//!
//! | operation | default cost | source |
//! |---|---|---|
//! | 4 KiB sector erase | 45 ms | typical tSE of ESP32 module flashes (GD25Q32/W25Q32 class) |
//! | 64 KiB block erase | 150 ms | typical tBE2 of the same parts |
//! | program, per 256-byte page touched | 0.7 ms | typical tPP |
//! | read, per byte | 0 | reads are not modelled by default (see below) |
//!
//! **Program rounding.** SPI NOR programs through a page buffer: one Page
//! Program command writes within one 256-byte page, and a write that crosses a
//! page boundary is split by the driver into one command per page. So a
//! program costs [`TimingModel::page_program`] for every page it touches: 4
//! bytes inside one page cost one page, 8 bytes straddling a boundary cost two,
//! 4 KiB aligned cost sixteen. The typical tPP is quoted for a full page; the
//! model charges it for partial pages too, which slightly overstates small
//! writes and is the conservative choice.
//!
//! **Reads** default to zero cost because an update's time is dominated by
//! erases and programs (reading 1 MiB over 40 MHz QIO takes about 50 ms, less
//! than two sector erases). Set [`TimingModel::read_per_byte`] (for example
//! with [`TimingModel::with_read_bandwidth`]) to include them.

use core::time::Duration;

/// Bytes in one program page of SPI NOR flash.
pub const PAGE_SIZE: u32 = 256;

/// Per-operation costs used to turn a run into modelled device time.
///
/// All fields are public and may be set freely; [`Default`] gives the
/// datasheet values in the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimingModel {
    /// Cost of one 4 KiB sector erase.
    pub sector_erase: Duration,
    /// Cost of one 64 KiB block erase.
    pub block_erase: Duration,
    /// Cost of programming one 256-byte page (charged per page touched).
    pub page_program: Duration,
    /// Cost per byte read.
    pub read_per_byte: Duration,
}

impl Default for TimingModel {
    fn default() -> Self {
        Self::DATASHEET
    }
}

impl TimingModel {
    /// Typical datasheet values for ESP32 module flash: 45 ms sector erase,
    /// 150 ms block erase, 0.7 ms page program, free reads.
    pub const DATASHEET: Self = Self {
        sector_erase: Duration::from_millis(45),
        block_erase: Duration::from_millis(150),
        page_program: Duration::from_micros(700),
        read_per_byte: Duration::ZERO,
    };

    /// Every operation is free: for tests that only care about contents.
    pub const ZERO: Self = Self {
        sector_erase: Duration::ZERO,
        block_erase: Duration::ZERO,
        page_program: Duration::ZERO,
        read_per_byte: Duration::ZERO,
    };

    /// Sets the read cost from a bandwidth in bytes per second (rounded to
    /// whole nanoseconds per byte; 0 means free reads).
    #[must_use]
    pub fn with_read_bandwidth(mut self, bytes_per_second: u64) -> Self {
        self.read_per_byte = 1_000_000_000u64
            .checked_div(bytes_per_second)
            .map_or(Duration::ZERO, Duration::from_nanos);
        self
    }

    /// Number of 256-byte pages a program of `len` bytes at `offset` touches.
    pub fn pages_touched(offset: u32, len: u32) -> u32 {
        if len == 0 {
            return 0;
        }
        let first = offset / PAGE_SIZE;
        let last = (u64::from(offset) + u64::from(len) - 1) / u64::from(PAGE_SIZE);
        // `last` < 2^32 / 256 for any in-bounds operation, so this fits.
        (last as u32) - first + 1
    }

    /// Cost of programming `len` bytes at `offset`.
    pub fn program_cost(&self, offset: u32, len: u32) -> Duration {
        self.page_program * Self::pages_touched(offset, len)
    }

    /// Cost of reading `len` bytes.
    pub fn read_cost(&self, len: u32) -> Duration {
        self.read_per_byte * len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_touched_rounds_per_page() {
        assert_eq!(TimingModel::pages_touched(0, 0), 0);
        assert_eq!(TimingModel::pages_touched(0, 4), 1);
        assert_eq!(TimingModel::pages_touched(252, 4), 1);
        assert_eq!(TimingModel::pages_touched(252, 8), 2);
        assert_eq!(TimingModel::pages_touched(0, 256), 1);
        assert_eq!(TimingModel::pages_touched(0, 260), 2);
        assert_eq!(TimingModel::pages_touched(4096, 4096), 16);
        assert_eq!(TimingModel::pages_touched(128, 4096), 17);
    }

    #[test]
    fn program_cost_is_per_page() {
        let t = TimingModel::default();
        assert_eq!(t.program_cost(252, 8), Duration::from_micros(1400));
        assert_eq!(t.program_cost(0, 4096), Duration::from_micros(11_200));
    }

    #[test]
    fn read_bandwidth() {
        let t = TimingModel::default().with_read_bandwidth(20_000_000);
        assert_eq!(t.read_per_byte, Duration::from_nanos(50));
        assert_eq!(t.read_cost(1000), Duration::from_micros(50));
        assert_eq!(
            TimingModel::default().with_read_bandwidth(0).read_per_byte,
            Duration::ZERO
        );
    }
}
