//! otter's NOR-flash simulator.
//!
//! # What this crate is
//!
//! [`SimFlash`] is an ESP32 SPI NOR flash that implements embedded-storage's
//! [`ReadNorFlash`](embedded_storage::nor_flash::ReadNorFlash) and
//! [`NorFlash`](embedded_storage::nor_flash::NorFlash), so the device-side
//! engine (otter-ota) runs on it unchanged. It has
//!
//! * the ESP32 **geometry** (read 1 B, program 4 B aligned, erase 4 KiB
//!   sectors, explicit 64 KiB block erase, 1–16 MiB) — see [`flash`];
//! * real **NOR semantics** (erased is `0xFF`, a program only clears bits) and
//!   a strict mode that reports a program over non-erased bytes as a caller bug;
//! * **storage** in memory, or write-through to a raw image file that esptool
//!   and `dd` read at the usual offsets and that survives `kill -9` — see
//!   [`SimFlash::create_file`] and [`SimFlash::sync`];
//! * an **operation log** and **counters** — see [`log`];
//! * a **timing model** with datasheet defaults, accumulated as modelled
//!   device time, never slept — see [`timing`];
//! * seeded, reproducible **fault injection**: power cut before or after the
//!   k-th mutating operation, torn program, torn erase, and transient write
//!   errors — see [`faults`];
//! * **scenario recording** for exhaustive power-cut enumeration — see
//!   [`record`];
//! * the **power-cut harness** that proves otter-ota's invariants over every
//!   cut of every scenario on many layouts — see [`powercut`] (what
//!   `otter sim powercut` runs).
//!
//! # What it is not
//!
//! It does not model the SPI bus, flash encryption, the MMU cache, write
//! protection, status registers, suspend/resume, or wear-out. Timing is a
//! cost model, not a cycle-accurate one, and the simulator never sleeps.
//! The flash itself ([`SimFlash`] and its modules) knows nothing about
//! partitions, otadata or images; only [`powercut`] uses otter-ota on top
//! of it.
//!
//! # Power-cut enumeration
//!
//! Record a clean run, then replay it once per fault on a fresh copy of the
//! same initial image, reboot, and check. A failing case is named by its
//! [`Fault`] (operation index, kind, seed), which replays it exactly.
//!
//! ```
//! use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
//! use otter_sim::{SimFlash, SimFlashError};
//!
//! // The code under test: replace an 8-byte record at 0x9000.
//! fn scenario(flash: &mut SimFlash) -> Result<(), SimFlashError> {
//!     flash.erase(0x9000, 0xA000)?;
//!     flash.write(0x9000, b"NEWVALUE")
//! }
//!
//! let mut initial = SimFlash::new(1024 * 1024)?;
//! initial.write(0x9000, b"OLDVALUE")?;
//!
//! let clean = initial.record(scenario);
//! assert!(clean.value.is_ok());
//! assert_eq!(clean.mutating_ops, 2); // one sector erase, one program
//!
//! let seed = 0x5eed;
//! for fault in clean.faults(seed) {
//!     let mut flash = initial.fork().with_fault(fault);
//!     let result = scenario(&mut flash);
//!     assert!(flash.fault_fired(), "{fault}");
//!     assert!(matches!(result, Err(SimFlashError::PowerLoss)), "{fault}");
//!
//!     flash.power_cycle();
//!     let mut record = [0u8; 8];
//!     flash.read(0x9000, &mut record)?;
//!     // This naive scenario is not power-safe: a real check would assert
//!     // that the old or the new value is intact, and report `fault` if not.
//!     let _intact = &record == b"OLDVALUE" || &record == b"NEWVALUE";
//! }
//! # Ok::<(), SimFlashError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod device;
mod error;
pub mod faults;
pub mod flash;
pub mod log;
pub mod nvs;
pub mod powercut;
pub mod record;
mod storage;
pub mod timing;

pub use embedded_storage;

pub use error::SimFlashError;
pub use faults::{Fault, FaultKind, FaultStatus};
pub use flash::{
    EraseStrategy, ProgramMode, SimFlash, BLOCK64_SIZE, ERASED, MAX_CAPACITY, MIN_CAPACITY,
    SECTOR_SIZE, STRICT_READ_SIZE, WRITE_SIZE,
};
pub use log::{Counters, LogPolicy, OpKind, OpLog, OpOutcome, OpRecord};
pub use record::Recording;
pub use timing::{TimingModel, PAGE_SIZE};
