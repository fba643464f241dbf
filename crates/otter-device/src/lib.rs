//! otter's device behaviour as `no_std` sans-IO state machines.
//!
//! This crate is what a device running otter *does* on the network, written
//! once so that an ESP32 and the virtual device run the same code: the server
//! side of HTTP/1.1 ([`http`]) and, on top of it, the OTA service
//! ([`service`]) with every endpoint of `docs/device-api.md`: firmware
//! uploads streamed into [`otter_ota::session::UpdateSession`], the status
//! document, confirm, rollback, reboot, the self-test window, and web-UI
//! uploads into the inactive `www_0`/`www_1` slot ([`www`]).
//!
//! It is `#![no_std]`, uses no allocator on any update path (only a pull's
//! manifest verification allocates, behind the `pull` feature), forbids `unsafe`, and is
//! generic over [`embedded_storage::nor_flash::NorFlash`].
//!
//! What it is not: there are no sockets, clocks, threads, executors or
//! logging here, no TLS and no mDNS. The pull client's decisions are here
//! ([`pull`], the default `pull` feature): the caller fetches, the machine
//! verifies, decides and writes.
//!
//! # The caller owns the socket
//!
//! Like rustls, the crate never reads or writes a socket. The caller reads
//! bytes from its connection and hands them to
//! [`service::Connection::handle`] together with the current time in
//! milliseconds (`now`, any monotonic clock) and a buffer to write the answer
//! into; it gets back how many input bytes were consumed, how many output
//! bytes to send, an optional `'static` tail to send after them, and an
//! [`service::Action`] (keep reading, close, reboot after the answer is
//! flushed). When the socket is idle the caller calls
//! [`service::Connection::poll`] so timeouts fire; when the peer goes away it
//! calls [`service::Connection::peer_closed`]. A blocking or async adapter is
//! a loop of about a hundred lines.
//!
//! ```text
//!   socket ──bytes──▶ Connection::handle(device, flash, input, now, tx)
//!                          │ consumed, written, tail, action
//!   socket ◀──tx[..written], tail──┘
//! ```
//!
//! # Memory
//!
//! Nothing grows with the input. The sizes below are asserted at compile
//! time (`const` asserts in [`sizes`]) on every target:
//!
//! | what | bytes | who owns it |
//! |---|---|---|
//! | [`service::Connection`] | ≤ [`sizes::CONNECTION_SIZE`] | the caller, one per socket |
//! | [`service::Device`] | ≤ [`sizes::DEVICE_SIZE`] (an [`otter_ota::session::UpdateSession`] included) | the caller, one per device |
//! | head buffer lent to a connection | ≥ [`http::MIN_HEAD_BUF`], default limit [`http::DEFAULT_MAX_HEAD`] | the caller |
//! | response buffer lent to each call | ≥ [`service::MIN_TX_BUF`] | the caller |
//! | header slots (`httparse::Header`) | [`http::MAX_HEADERS`] on the stack while a head is parsed | |
//! | [`pull::Pull`] (feature `pull`) | ≤ [`sizes::PULL_SIZE`] = 6,400 | the caller, one per device |
//! | manifest, signature and first-sector buffers lent to one pull check | ≤ 64 KiB + 16 KiB + 4 KiB | the caller |
//! | heap while a manifest is verified (otter-release's JSON parse; freed before `Pull::check` returns) | ≤ 11,014 B peak (measured, `scripts/pull-heap.sh`: names and URLs at their limits) | the `alloc` of a `pull` build |
//!
//! # Errors
//!
//! Every error a client can see is a [`DeviceError`] with a stable
//! [`DeviceError::code`] (the codes of `docs/device-api.md`) and an HTTP
//! [`DeviceError::status`]; it is answered as JSON `{ "error", "message" }`,
//! including the HTTP layer's own 400, 405, 408 and 431.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(test)]
extern crate std;

mod challenge;
pub mod decode;
mod error;
pub mod esphome;
pub mod espota;
pub mod http;
mod json;
#[cfg(feature = "mdns")]
pub mod mdns;
#[cfg(feature = "pull")]
pub mod pull;
pub mod service;
pub mod settings;
pub mod sizes;
pub mod uploaders;
pub mod www;

pub use challenge::Secret;
pub use error::{BadRequest, DeviceError, FlashFault, Timeout};
pub use json::JsonOut;
