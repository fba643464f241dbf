//! The network side of otter's virtual device.
//!
//! - [`runner`]: the device's life: power on through the bootloader model,
//!   run as the booted firmware (its [`behavior`]), serve the API, self-test
//!   a new image, reboot.
//! - [`api`]: the HTTP API (`POST /update`, `GET /api/ota/status`, confirm,
//!   rollback, reboot).
//! - [`state`]: what the handlers and the boot loop share.
//! - [`pull`]: the pull client: signed release manifests, resumable
//!   downloads into the inactive slots ([`fetch`] is its HTTP(S) side).
//! - [`mdns`]: advertising a device as an `_otter._tcp` service and
//!   discovering devices on the local network.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod behavior;
pub mod bootloop;
pub mod fetch;
pub mod mdns;
pub mod net;
pub mod pull;
pub mod runner;
pub mod state;
pub mod www;

pub use behavior::{Behavior, Profile};
pub use runner::{start, AgentError, RunEnd, RunOptions, Running};
