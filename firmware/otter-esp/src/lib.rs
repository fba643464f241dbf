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
//! - [`power_on`]: first thing at startup: completes an interrupted otadata
//!   write ([`otter_ota::lifecycle::recover`]) and, under a bootloader
//!   without app rollback, counts the running image's trial boot
//!   ([`otter_ota::trial`]), rebooting into the previous image when its
//!   attempts are used up.
//! - [`serve`]: a TCP server loop over embassy-net that feeds
//!   `otter_device::service::Connection` (or, told by the first byte,
//!   `otter_device::esphome::EsphomeConnection`), yields to the executor between
//!   small pieces of input (each piece is at most one flash sector of work,
//!   so Wi-Fi and TCP keep running while an update erases and programs),
//!   feeds the watchdog and reboots through esp-hal after the answer is
//!   flushed.
//! - [`espota`]: ArduinoOTA's UDP invitations and the TCP back-connection,
//!   through `otter_device::espota`.
//! - [`stack`]: the main stack painted at boot and its high-water mark.
//! - [`mdns::responder`]: `_otter._tcp`, `_http._tcp`, `_arduino._tcp` and
//!   `_esphomelib._tcp` through `otter_device::mdns`.
//!
//! The device's behaviour (HTTP, the OTA engine, the self-test policy)
//! lives in `otter-device` and `otter-ota`; this crate only connects it to
//! the chip.
#![no_std]

extern crate alloc;

#[cfg(feature = "mdns")]
pub mod mdns;
pub mod net;
mod platform;
pub mod stack;

#[cfg(feature = "uploaders")]
pub use net::espota;
pub use net::{entropy, serve, Shared, Watchdog};
pub use platform::{efuse_secure_version, running_slot, EspPlatform, Health};

/// The flash driver otter runs on.
pub type Flash = esp_storage::FlashStorage<'static>;

/// Startup: [`otter_ota::lifecycle::recover`], then the trial boot of the
/// running image (`attempts` boots to end its trial with
/// [`otter_ota::trial::end_trial`]). Which bootloader runs is read off
/// otadata: a bootloader with app rollback turns the new image's NEW entry
/// into PENDING_VERIFY before the app starts, and then decides itself
/// ([`Trial::BootloaderDecides`]); one without leaves NEW (or UNDEFINED), and
/// the app-level trial counts. Never returns [`Trial::RolledBack`]: it
/// reboots into the previous image instead.
pub fn power_on(
    flash: &mut Flash,
    cfg: &otter_ota::DeviceConfig,
    running: Option<otter_ota::SlotId>,
    attempts: u8,
) -> Trial {
    if let Err(e) = otter_ota::lifecycle::recover(flash, cfg) {
        log::error!("otadata recovery: {e:?}");
    }
    let Some(running) = running else {
        return Trial::NotOnTrial;
    };
    let state = otter_ota::lifecycle::running_state(flash, cfg, running)
        .ok()
        .flatten();
    if state == Some(otter_format::otadata::OtaState::PendingVerify) {
        return Trial::BootloaderDecides;
    }
    let no_rollback = cfg.with_rollback(false);
    match otter_ota::trial::trial_boot(flash, &no_rollback, running, attempts) {
        Ok(Trial::RolledBack { attempts }) => {
            log::warn!("trial boot: {attempts} attempts used up; rolling back");
            reboot()
        }
        Ok(t) => t,
        Err(e) => {
            log::error!("trial boot: {e:?}");
            Trial::NotOnTrial
        }
    }
}

pub use otter_ota::trial::Trial;

/// Reboots the chip (after the caller flushed its answers).
pub fn reboot() -> ! {
    esp_hal::system::software_reset()
}
