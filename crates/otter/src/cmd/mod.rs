//! One module per top-level command.

pub mod artifacts;
pub mod delta;
pub mod demo;
pub mod device;
pub mod discover;
pub mod firmware_config;
pub mod flash_plan;
pub mod fleet;
pub mod image;
pub mod keygen;
pub mod keys;
pub mod merge;
pub mod otadata;
pub mod partitions;
pub mod push;
pub mod release;
pub mod remote;
pub mod server;
pub mod sign;
pub mod signature;
pub mod sim;
pub mod size;
pub mod www;
