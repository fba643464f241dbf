//! The fixed sizes of the machines, asserted at compile time on every
//! target (the bounds hold on 64-bit hosts, so they hold on RV32 too).
//!
//! Measured (rustc 1.95):
//!
//! | type | riscv32imc | x86_64 |
//! |---|---|---|
//! | [`Device`] (with [`crate::service::EVENTS`] = 16 events) | 3,120 B | 3,432 B |
//! | [`Connection`] | 760 B | 792 B |
//! | of which `UpdateSession` (inside `Device`) | 2,160 B | 2,160 B |
//! | of which `WwwUpload` (inside `Device`, instead of the session) | 440 B | 440 B |
//! | of which [`crate::decode::Decoder`] (beside the session) | | 56 B |
//! | [`crate::esphome::EsphomeConnection`] | | 496 B |
//! | [`crate::espota::Espota`] (UDP) | | 192 B |
//! | [`crate::espota::Transfer`] (TCP) | | 216 B |
//!
//! Lent by the platform for compressed and delta updates, only if it wants
//! them ([`crate::decode`]): the inflater ([`crate::decode::INFLATER_RAM`],
//! 43,336 B on x86_64) and the patch applier
//! ([`crate::decode::APPLIER_RAM`], 4,824 B).
//!
//! Lent by the caller on top: the head buffer (2 KiB by default), the
//! response buffer (at least [`crate::service::MIN_TX_BUF`] = 4 KiB), and
//! per call on the stack the `httparse` header slots (32 × 16 B on RV32)
//! and, for the status document, otter-ota's `Diagnostics`
//! (≤ 4,352 B).
//!
//! On the real instruction set (`scripts/qemu-device.sh`: riscv32imc under
//! `qemu-system-riscv32 -icount shift=0`, release, `opt-level = "s"`),
//! streaming the 124,192-byte corpus `hello_world-esp32c3.bin` through a
//! connection in 1,460-byte pieces, verifying it in flash and activating it
//! takes 19.2 M instructions (about 0.12 s of CPU at 160 MHz), and the whole
//! scenario (with its 2 KiB head buffer, 4 KiB response buffer and the boot
//! model) uses 13.8 KB of stack.

use crate::service::{Connection, Device};

/// Upper bound of `size_of::<Device>()`: the update session (≤
/// [`otter_ota::session::SESSION_STATE_SIZE`]) or a web-UI upload, plus
/// the records.
pub const DEVICE_SIZE: usize = 3584;
/// Upper bound of `size_of::<Connection>()`: the head reader, the body
/// framing and the multipart decoder (its 512-byte part-head buffer).
pub const CONNECTION_SIZE: usize = 800;

const _: () = assert!(core::mem::size_of::<Device>() <= DEVICE_SIZE);
const _: () = assert!(core::mem::size_of::<Connection<'static>>() <= CONNECTION_SIZE);

/// Upper bound of `size_of::<EsphomeConnection>()`: its collected field,
/// the nonces and the MD5 state of the stream.
pub const ESPHOME_CONNECTION_SIZE: usize = 512;
/// Upper bound of `size_of::<Espota>()` (the UDP listener: the pending
/// invitation and the nonce) and of `size_of::<Transfer>()` (the TCP
/// transfer: the MD5 state of the stream).
pub const ESPOTA_SIZE: usize = 256;

const _: () =
    assert!(core::mem::size_of::<crate::esphome::EsphomeConnection>() <= ESPHOME_CONNECTION_SIZE);
const _: () = assert!(core::mem::size_of::<crate::espota::Espota>() <= ESPOTA_SIZE);
const _: () = assert!(core::mem::size_of::<crate::espota::Transfer>() <= ESPOTA_SIZE);

/// Upper bound of `size_of::<Pull>()` (6,136 B on x86_64): the release's
/// three names (128 B each), the URL of the artifact being fetched and the
/// full image's URL for a fallback (2,048 B each), the firmware's up to 8
/// alternatives (80 B each), the SHA-256 state of an encoded download, the
/// last error's message (512 B).
#[cfg(feature = "pull")]
pub const PULL_SIZE: usize = 6400;

#[cfg(feature = "pull")]
const _: () = assert!(core::mem::size_of::<crate::pull::Pull>() <= PULL_SIZE);
