//! ESP-IDF on-flash formats, byte-compatible with ESP-IDF.
//!
//! This crate reads and writes the data structures that ESP-IDF's second-stage
//! bootloader, `esp_ota_ops` and the host tools (`gen_esp32part.py`, esptool,
//! `otatool.py`) agree on:
//!
//! - [`partition`]: partition tables, both the CSV grammar of `gen_esp32part.py`
//!   and the 32-byte binary entries with their MD5 row, plus validation and
//!   otter's own lints for OTA layouts.
//! - [`image`]: app images (`esp_image_header_t`, segments, XOR checksum,
//!   appended SHA-256, `esp_app_desc_t`) with a streaming verifier that needs no
//!   heap.
//! - [`otadata`]: the two 32-byte `esp_ota_select_entry_t` records, their CRC,
//!   and the bootloader's choice of the active entry.
//! - [`secure_boot`]: Secure Boot v2 signature blocks (RSA-3072, ECDSA
//!   P-256/P-384) and v1 blocks: parsing, verification against trusted key
//!   digests, and (feature `sign`) signing.
//! - [`chip`]: per-chip facts (image chip id, bootloader offset, address map).
//!
//! It is pure data in, data out: no flash access, no I/O. It is `#![no_std]`
//! and works without an allocator; the `alloc` feature adds owned tables and
//! the CSV parser, `std` adds `std::error::Error` integration.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod chip;
#[cfg(feature = "alloc")]
pub mod flashplan;
pub mod image;
#[cfg(feature = "alloc")]
pub mod nvs;
pub mod otadata;
pub mod partition;
pub mod secure_boot;

/// Size of one flash sector, the erase unit (`SPI_FLASH_SEC_SIZE`).
pub const SECTOR_SIZE: u32 = 0x1000;
