//! otter's streaming update decoders: fixed RAM, no heap, `no_std`.
//!
//! An update that arrives compressed or as a delta is decoded on its way
//! into the inactive slot; nothing here buffers a whole image.
//!
//! - [`inflate`]: gzip, zlib and raw deflate, with an output limit that
//!   stops a compression bomb at the slot size.
//! - [`heatshrink`]: the LZSS decoder detools uses for `esp_delta_ota`
//!   patches, streaming, window up to 2^[`heatshrink::MAX_WINDOW_BITS`].
//! - [`patch`]: ESP-IDF's `esp_delta_ota` patch (64-byte header naming the
//!   base image's SHA-256, then a detools *sequential* patch, compression
//!   `none` or `heatshrink`), applied from a reader over the running slot
//!   into a sink.
//! - `encode` (feature `encode`, host only): writes such patches.
//!
//! What it is not: no I/O. Bytes come in through `feed`, go out through a
//! [`Sink`], and the running slot is read through [`patch::PatchIo`]; the
//! caller owns flash, sockets and the update session.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(feature = "encode")]
pub mod encode;
pub mod heatshrink;
pub mod inflate;
pub mod patch;

/// Where decoded bytes go (on a device: the update session's `write`).
pub trait Sink {
    /// The sink's own error.
    type Error;
    /// Take the next decoded bytes, in order.
    fn write(&mut self, data: &[u8]) -> Result<(), Self::Error>;
}

/// A `Vec` collects output (host and tests).
#[cfg(any(feature = "std", test))]
impl Sink for std::vec::Vec<u8> {
    type Error = core::convert::Infallible;
    fn write(&mut self, data: &[u8]) -> Result<(), Self::Error> {
        self.extend_from_slice(data);
        Ok(())
    }
}
