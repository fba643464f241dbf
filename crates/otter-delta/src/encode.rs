//! Host side: writing `esp_delta_ota` patches (feature `encode`).
//!
//! The matching is the `bsdiff` crate's (suffix sort, then bsdiff's
//! approximate-match scan); its control triples are re-encoded as detools'
//! sequential chunks (diff run, extra run, signed adjustment), compressed
//! with the `heatshrink` crate, and framed with `esp_delta_ota`'s 64-byte
//! header. detools' own applier is the oracle for the result (see the
//! interop tests), not a dependency.

use std::vec::Vec;

use crate::patch::{COMPRESSION_HEATSHRINK, COMPRESSION_NONE, ESP_DELTA_MAGIC, HEADER_LEN};

/// How to compress the patch body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchCompression {
    /// Stored.
    None,
    /// heatshrink with these log2 window / lookahead sizes (detools'
    /// defaults: 8 and 7).
    Heatshrink {
        /// Window size, log2 (4..=12 for otter's applier).
        window_bits: u8,
        /// Lookahead size, log2 (3..window_bits).
        lookahead_bits: u8,
    },
}

impl Default for PatchCompression {
    fn default() -> Self {
        PatchCompression::Heatshrink {
            window_bits: 8,
            lookahead_bits: 7,
        }
    }
}

/// Why a patch could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// heatshrink parameters outside what the applier accepts.
    #[error("{0}")]
    Params(crate::heatshrink::BadParams),
    /// The heatshrink encoder failed.
    #[error("heatshrink encoder failed")]
    Heatshrink,
}

impl EncodeError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Params(_) => "bad_params",
            Self::Heatshrink => "encoder_failed",
        }
    }
}

/// Append `value` as a detools varint.
pub fn pack_size(out: &mut Vec<u8>, value: i64) {
    let mut mag = value.unsigned_abs();
    let mut first = (mag & 0x3f) as u8;
    if value < 0 {
        first |= 0x40;
    }
    mag >>= 6;
    if mag > 0 {
        first |= 0x80;
    }
    out.push(first);
    while mag > 0 {
        let mut b = (mag & 0x7f) as u8;
        mag >>= 7;
        if mag > 0 {
            b |= 0x80;
        }
        out.push(b);
    }
}

/// The uncompressed detools sequential body (what the compressor sees).
pub fn sequential_body(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = bsdiff::diff(old, new, &mut raw);
    let mut body = Vec::with_capacity(raw.len() + 16);
    pack_size(&mut body, 0);
    let mut rest = &raw[..];
    let mut pending_seek: Option<i64> = None;
    while rest.len() >= 24 {
        let diff = offtin(&rest[0..8]);
        let extra = offtin(&rest[8..16]);
        let seek = offtin(&rest[16..24]);
        rest = &rest[24..];
        let (d, e) = (diff as usize, extra as usize);
        if d == 0 && e == 0 {
            // An empty chunk adds nothing but its seek.
            if let Some(p) = pending_seek.as_mut() {
                *p += seek;
                rest = &rest[d + e..];
                continue;
            }
        }
        if let Some(p) = pending_seek.take() {
            pack_size(&mut body, p);
        }
        pack_size(&mut body, diff);
        body.extend_from_slice(&rest[..d]);
        pack_size(&mut body, extra);
        body.extend_from_slice(&rest[d..d + e]);
        rest = &rest[d + e..];
        pending_seek = Some(seek);
    }
    pack_size(&mut body, pending_seek.unwrap_or(0));
    body
}

fn offtin(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    let x = u64::from_le_bytes(a);
    let mag = (x & !(1 << 63)) as i64;
    if x & (1 << 63) != 0 {
        -mag
    } else {
        mag
    }
}

/// A bare detools sequential patch from `old` to `new`.
pub fn sequential_patch(
    old: &[u8],
    new: &[u8],
    compression: PatchCompression,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    let c = match compression {
        PatchCompression::None => COMPRESSION_NONE,
        PatchCompression::Heatshrink { .. } => COMPRESSION_HEATSHRINK,
    };
    out.push(c);
    pack_size(&mut out, new.len() as i64);
    if new.is_empty() {
        return Ok(out);
    }
    let body = sequential_body(old, new);
    match compression {
        PatchCompression::None => out.extend_from_slice(&body),
        PatchCompression::Heatshrink {
            window_bits,
            lookahead_bits,
        } => {
            crate::heatshrink::HeatshrinkDecoder::new(window_bits, lookahead_bits)
                .map_err(EncodeError::Params)?;
            out.push(((window_bits - 4) << 4) | (lookahead_bits - 3));
            out.extend_from_slice(&heatshrink_encode(&body, window_bits, lookahead_bits)?);
        }
    }
    Ok(out)
}

/// heatshrink-compress `data` (one stream, as detools writes it).
pub fn heatshrink_encode(
    data: &[u8],
    window_bits: u8,
    lookahead_bits: u8,
) -> Result<Vec<u8>, EncodeError> {
    let cfg = heatshrink::Config::new(window_bits, lookahead_bits)
        .map_err(|_| EncodeError::Heatshrink)?;
    let mut dst = std::vec![0u8; data.len() + data.len() / 8 + 64];
    let n = heatshrink::encode(data, &mut dst, &cfg)
        .map_err(|_| EncodeError::Heatshrink)?
        .len();
    dst.truncate(n);
    Ok(dst)
}

/// An `esp_delta_ota` patch: the 64-byte header naming `base_sha256` (the
/// old image's validation hash), then a detools sequential patch.
pub fn esp_delta_patch(
    base_sha256: &[u8; 32],
    old: &[u8],
    new: &[u8],
    compression: PatchCompression,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(HEADER_LEN + new.len() / 8);
    out.extend_from_slice(&ESP_DELTA_MAGIC.to_le_bytes());
    out.extend_from_slice(base_sha256);
    out.resize(HEADER_LEN, 0);
    out.extend_from_slice(&sequential_patch(old, new, compression)?);
    Ok(out)
}
