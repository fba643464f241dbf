//! LittleFS images of a web-UI folder, as ESP-IDF's `esp_littlefs` mounts them.
//!
//! The device keeps its web UI in a LittleFS data partition and takes updates
//! as whole images (seed 002). This crate:
//!
//! - reads images ([`read`]): a LittleFS reader in safe Rust, `no_std` with
//!   `alloc`, for on-disk versions 2.0 and 2.1; what the firmware needs to
//!   mount the `www` slot read-only;
//! - checks a superblock against a device's littlefs configuration
//!   ([`limits`]), each refusal naming the field;
//! - with the `std` feature (default), builds an image from a folder with
//!   `littlefs-rust`, a pure-Rust port of littlefs (no C compiler, no
//!   bindgen), and lists and reads images on the host.
//!
//! It is not a general filesystem: it never modifies an image.
//!
//! # Geometry
//!
//! Built images have esp_littlefs's default configuration (see
//! [`limits`]): block size 4096, block count = image length / 4096,
//! `name_max` 64, disk version 2.1; read and program size 128, cache 512 and
//! lookahead 128 bytes (which only tune RAM and I/O).

#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod limits;
pub mod read;

#[cfg(feature = "std")]
mod build;
#[cfg(feature = "std")]
mod host;
#[cfg(feature = "std")]
pub use host::*;

/// Erase block size, in bytes: one ESP32 flash sector.
pub const BLOCK_SIZE: u32 = limits::ESP_BLOCK_SIZE;
/// The longest name built images allow (esp_littlefs's default).
pub const NAME_MAX: u32 = limits::ESP_NAME_MAX;

#[cfg(all(test, feature = "std"))]
mod tests;
