//! The fixed sizes of the machines, asserted at compile time on every
//! target (the bounds hold on 64-bit hosts, so they hold on RV32 too).

use crate::service::{Connection, Device};

/// Upper bound of `size_of::<Device>()`: the update session (≤
/// [`otter_ota::session::SESSION_STATE_SIZE`]) or a web-UI upload, plus
/// the records.
pub const DEVICE_SIZE: usize = 3584;
/// Upper bound of `size_of::<Connection>()`: the head reader, the body
/// framing and the multipart decoder (its 512-byte part-head buffer).
pub const CONNECTION_SIZE: usize = 1024;

const _: () = assert!(core::mem::size_of::<Device>() <= DEVICE_SIZE);
const _: () = assert!(core::mem::size_of::<Connection<'static>>() <= CONNECTION_SIZE);
