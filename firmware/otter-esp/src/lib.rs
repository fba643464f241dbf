//! Chip glue for otter on esp-hal: what an ESP32-C3/C6 application needs to
//! run `otter-device` and nothing more.
//!
//! - [`EspPlatform`]: the `otter-device` platform: the web-UI pointer in the
//!   NVS partition (otter-format's `nvs_set_u8` plan applied to flash), the
//!   LittleFS content check (superblock), the anti-rollback eFuse (read only:
//!   esp-hal cannot burn it, so a raise reports failure) and the self-test
//!   verdict from a health hook.
//! - [`running_slot`]: the slot the bootloader booted, from the MMU mapping
//!   as `esp-bootloader-esp-idf` reads it.
//! - [`serve`]: a TCP server loop over embassy-net that feeds
//!   `otter_device::service::Connection`, yields to the executor between
//!   small pieces of input (each piece is at most one flash sector of work,
//!   so Wi-Fi and TCP keep running while an update erases and programs),
//!   feeds the watchdog and reboots through esp-hal after the answer is
//!   flushed.
//!
//! The device's behaviour (HTTP, the OTA engine, the self-test policy)
//! lives in `otter-device` and `otter-ota`; this crate only connects it to
//! the chip.
#![no_std]

extern crate alloc;

pub mod net;
mod platform;

pub use net::{serve, Shared, Watchdog};
pub use platform::{efuse_secure_version, running_slot, EspPlatform, Health};

/// The flash driver otter runs on.
pub type Flash = esp_storage::FlashStorage<'static>;

/// Reboots the chip (after the caller flushed its answers).
pub fn reboot() -> ! {
    esp_hal::system::software_reset()
}
