//! The network side of otter's virtual device.
//!
//! - [`runner`]: the device's life: power on through the bootloader model,
//!   run as the booted firmware (its [`behavior`]), serve the API, self-test
//!   a new image, reboot.
//! - [`net`]: the device API, served by the `otter-device` core through a
//!   tokio adapter, and the simulator's platform for it; [`api`] names its
//!   paths and holds the built-in Update page.
//! - [`state`]: what the boot loop, the pull client and the core's status
//!   hooks share (the flash, the boot, rollbacks seen across boots).
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

pub use behavior::{Behavior, Profile};
pub use runner::{start, AgentError, RunEnd, RunOptions, Running};
