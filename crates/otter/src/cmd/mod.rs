//! One module per top-level command.

pub mod image;
pub mod otadata;
pub mod partitions;
pub mod sim;
