//! The network side of otter's virtual device.
//!
//! - [`mdns`]: advertising a device as an `_otter._tcp` service and
//!   discovering devices on the local network.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod mdns;
