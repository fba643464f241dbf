//! A streaming gzip / zlib / raw-deflate inflater in fixed RAM.
//!
//! Compressed bytes go in through [`Inflater::feed`] in pieces of any size;
//! decompressed bytes come out through a [`Sink`]. The deflate core is
//! `miniz_oxide`'s (the Rust port of the `tinfl` that the ESP32-C3 mask ROM
//! also carries), run over a 32 KiB wrapping window owned by the
//! [`Inflater`], so the whole state is one fixed-size value
//! ([`INFLATER_RAM`] bytes) and nothing is allocated.
//!
//! Every byte of output is counted against a limit (the slot size): the
//! moment a stream would pass it, [`InflateError::TooLarge`] is returned and
//! the excess never reaches the sink, so a compression bomb costs at most
//! one window of work beyond the limit. gzip's header is parsed here (RFC
//! 1952: magic, method 8, reserved flags zero, optional extra / name /
//! comment / header CRC) and its trailer (CRC-32 and ISIZE) is checked;
//! zlib's header and Adler-32 are checked by the core.

use miniz_oxide::inflate::core::inflate_flags::{
    TINFL_FLAG_COMPUTE_ADLER32, TINFL_FLAG_HAS_MORE_INPUT, TINFL_FLAG_PARSE_ZLIB_HEADER,
};
use miniz_oxide::inflate::core::{decompress, DecompressorOxide, TINFL_LZ_DICT_SIZE};
use miniz_oxide::inflate::TINFLStatus;

use crate::Sink;

/// The framing around the deflate stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// RFC 1952 gzip (what `gzip -9`, Python's `gzip` and HTTP
    /// `Content-Encoding: gzip` produce).
    Gzip,
    /// RFC 1950 zlib (Python's `zlib.compress`).
    Zlib,
    /// Bare RFC 1951 deflate.
    Raw,
}

/// Why a compressed stream was refused. `E` is the sink's error.
///
/// All variants but [`InflateError::Sink`] are bad input: the stream is not
/// what it claims, and whatever was written so far must be discarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InflateError<E> {
    /// The gzip header is malformed (wrong magic, reserved flag bits set).
    #[error("gzip header: {0}")]
    GzipHeader(GzipHeaderFault),
    /// The gzip header names a compression method other than deflate (8).
    #[error("gzip compression method {0} is not deflate (8)")]
    UnsupportedMethod(u8),
    /// The deflate (or zlib header) data is corrupt.
    #[error("corrupt deflate stream after {consumed} compressed bytes")]
    Corrupt {
        /// Compressed bytes consumed before the fault.
        consumed: u64,
    },
    /// The zlib Adler-32 does not match the decompressed data.
    #[error("zlib Adler-32 mismatch")]
    Adler32Mismatch,
    /// The gzip CRC-32 does not match the decompressed data.
    #[error("gzip CRC-32 mismatch: trailer says {expected:#010x}, data gives {actual:#010x}")]
    Crc32Mismatch {
        /// CRC-32 in the trailer.
        expected: u32,
        /// CRC-32 of the output.
        actual: u32,
    },
    /// The gzip ISIZE does not match the decompressed length (mod 2^32).
    #[error("gzip ISIZE mismatch: trailer says {expected}, data is {actual} bytes (mod 2^32)")]
    SizeMismatch {
        /// ISIZE in the trailer.
        expected: u32,
        /// Output length mod 2^32.
        actual: u32,
    },
    /// The output would pass the limit (a compression bomb, or an image
    /// larger than the slot).
    #[error("decompressed output passes the {limit}-byte limit")]
    TooLarge {
        /// The limit given to [`Inflater::new`].
        limit: u64,
    },
    /// The stream ended before its end marker (and trailer).
    #[error("compressed stream truncated after {produced} output bytes")]
    Truncated {
        /// Output bytes produced before the end.
        produced: u64,
    },
    /// Bytes follow the end of the stream.
    #[error("{0} bytes follow the end of the compressed stream")]
    TrailingData(u64),
    /// The sink refused the output.
    #[error("output sink failed: {0:?}")]
    Sink(E),
}

/// What is wrong with a gzip header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GzipHeaderFault {
    /// The first two bytes are not `1f 8b`.
    #[error("bad magic (not 1f 8b)")]
    BadMagic,
    /// FLG has reserved bits (0xe0) set.
    #[error("reserved flag bits {0:#04x} set")]
    ReservedFlags(u8),
}

impl<E> InflateError<E> {
    /// The stable code (`docs/device-api.md`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::GzipHeader(_) => "bad_gzip_header",
            Self::UnsupportedMethod(_) => "unsupported_compression",
            Self::Corrupt { .. } => "corrupt_deflate",
            Self::Adler32Mismatch | Self::Crc32Mismatch { .. } => "checksum_mismatch",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::TooLarge { .. } => "too_large",
            Self::Truncated { .. } => "truncated",
            Self::TrailingData(_) => "trailing_data",
            Self::Sink(_) => "sink_error",
        }
    }

    /// The same error with the sink's error mapped by `f`.
    pub fn map_sink<F>(self, f: impl FnOnce(E) -> F) -> InflateError<F> {
        match self {
            Self::GzipHeader(x) => InflateError::GzipHeader(x),
            Self::UnsupportedMethod(x) => InflateError::UnsupportedMethod(x),
            Self::Corrupt { consumed } => InflateError::Corrupt { consumed },
            Self::Adler32Mismatch => InflateError::Adler32Mismatch,
            Self::Crc32Mismatch { expected, actual } => {
                InflateError::Crc32Mismatch { expected, actual }
            }
            Self::SizeMismatch { expected, actual } => {
                InflateError::SizeMismatch { expected, actual }
            }
            Self::TooLarge { limit } => InflateError::TooLarge { limit },
            Self::Truncated { produced } => InflateError::Truncated { produced },
            Self::TrailingData(n) => InflateError::TrailingData(n),
            Self::Sink(e) => InflateError::Sink(f(e)),
        }
    }
}

/// gzip header parsing, one byte at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    /// Fixed 10-byte part; `n` bytes seen.
    Fixed { n: u8 },
    /// FEXTRA length, `n` of 2 bytes seen.
    ExtraLen { n: u8, len: u16 },
    /// FEXTRA payload, `left` bytes to skip.
    Extra { left: u16 },
    /// FNAME, zero-terminated.
    Name,
    /// FCOMMENT, zero-terminated.
    Comment,
    /// FHCRC, `left` bytes to skip.
    Hcrc { left: u8 },
}

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header(Header),
    Deflate,
    /// gzip trailer, `n` of 8 bytes seen.
    Trailer {
        n: u8,
    },
    Done,
}

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Bytes of RAM one [`Inflater`] takes: the deflate core's tables and the
/// 32 KiB window. Asserted at compile time to stay within 48 KiB.
pub const INFLATER_RAM: usize = core::mem::size_of::<Inflater>();
const _: () = assert!(INFLATER_RAM <= 48 * 1024);

/// A streaming inflater. See the module docs.
pub struct Inflater {
    core: DecompressorOxide,
    window: [u8; TINFL_LZ_DICT_SIZE],
    window_pos: usize,
    container: Container,
    phase: Phase,
    flg: u8,
    trailer: [u8; 8],
    crc: crc::Digest<'static, u32>,
    consumed: u64,
    produced: u64,
    limit: u64,
}

impl core::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inflater")
            .field("container", &self.container)
            .field("phase", &self.phase)
            .field("consumed", &self.consumed)
            .field("produced", &self.produced)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// A new inflater for `container` that refuses output beyond `limit`
    /// bytes. The value is [`INFLATER_RAM`] bytes: on a device, keep one in
    /// a `static` and call [`Inflater::reset`] per update.
    pub fn new(container: Container, limit: u64) -> Self {
        Inflater {
            core: DecompressorOxide::new(),
            window: [0; TINFL_LZ_DICT_SIZE],
            window_pos: 0,
            container,
            phase: Self::start(container),
            flg: 0,
            trailer: [0; 8],
            crc: CRC32.digest(),
            consumed: 0,
            produced: 0,
            limit,
        }
    }

    /// Start over, in place, for a new stream.
    pub fn reset(&mut self, container: Container, limit: u64) {
        self.core.init();
        self.window_pos = 0;
        self.container = container;
        self.phase = Self::start(container);
        self.flg = 0;
        self.trailer = [0; 8];
        self.crc = CRC32.digest();
        self.consumed = 0;
        self.produced = 0;
        self.limit = limit;
    }

    fn start(container: Container) -> Phase {
        match container {
            Container::Gzip => Phase::Header(Header::Fixed { n: 0 }),
            Container::Zlib | Container::Raw => Phase::Deflate,
        }
    }

    /// Decompressed bytes written to the sink so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Whether the end of the stream (and its trailer) has been seen.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Feed the next piece of compressed input; output goes to `sink`.
    pub fn feed<S: Sink>(
        &mut self,
        mut input: &[u8],
        sink: &mut S,
    ) -> Result<(), InflateError<S::Error>> {
        while !input.is_empty() {
            match self.phase {
                Phase::Header(h) => {
                    let b = input[0];
                    input = &input[1..];
                    self.consumed += 1;
                    self.header_byte(h, b)
                        .map_err(|e| e.map_sink(|n| match n {}))?;
                }
                Phase::Deflate => {
                    let used = self.deflate(input, sink)?;
                    input = &input[used..];
                }
                Phase::Trailer { n } => {
                    self.trailer[usize::from(n)] = input[0];
                    input = &input[1..];
                    self.consumed += 1;
                    if n == 7 {
                        self.check_trailer()
                            .map_err(|e| e.map_sink(|n| match n {}))?;
                        self.phase = Phase::Done;
                    } else {
                        self.phase = Phase::Trailer { n: n + 1 };
                    }
                }
                Phase::Done => return Err(InflateError::TrailingData(input.len() as u64)),
            }
        }
        Ok(())
    }

    /// The input has ended: succeed with the decompressed length if the
    /// stream was complete.
    pub fn finish<E>(&self) -> Result<u64, InflateError<E>> {
        if self.phase == Phase::Done {
            Ok(self.produced)
        } else {
            Err(InflateError::Truncated {
                produced: self.produced,
            })
        }
    }

    fn header_byte(&mut self, h: Header, b: u8) -> Result<(), InflateError<Never>> {
        let next = match h {
            Header::Fixed { n } => {
                match n {
                    0 if b != 0x1f => {
                        return Err(InflateError::GzipHeader(GzipHeaderFault::BadMagic))
                    }
                    1 if b != 0x8b => {
                        return Err(InflateError::GzipHeader(GzipHeaderFault::BadMagic))
                    }
                    2 if b != 8 => return Err(InflateError::UnsupportedMethod(b)),
                    3 if b & 0xe0 != 0 => {
                        return Err(InflateError::GzipHeader(GzipHeaderFault::ReservedFlags(b)))
                    }
                    3 => self.flg = b,
                    _ => {}
                }
                if n < 9 {
                    Some(Header::Fixed { n: n + 1 })
                } else {
                    self.after(0)
                }
            }
            Header::ExtraLen { n: 0, .. } => Some(Header::ExtraLen {
                n: 1,
                len: u16::from(b),
            }),
            Header::ExtraLen { len, .. } => {
                let left = len | (u16::from(b) << 8);
                if left == 0 {
                    self.after(FEXTRA)
                } else {
                    Some(Header::Extra { left })
                }
            }
            Header::Extra { left } => {
                if left == 1 {
                    self.after(FEXTRA)
                } else {
                    Some(Header::Extra { left: left - 1 })
                }
            }
            Header::Name => {
                if b == 0 {
                    self.after(FNAME)
                } else {
                    Some(Header::Name)
                }
            }
            Header::Comment => {
                if b == 0 {
                    self.after(FCOMMENT)
                } else {
                    Some(Header::Comment)
                }
            }
            Header::Hcrc { left } => {
                if left == 1 {
                    None
                } else {
                    Some(Header::Hcrc { left: left - 1 })
                }
            }
        };
        self.phase = match next {
            Some(h) => Phase::Header(h),
            None => Phase::Deflate,
        };
        Ok(())
    }

    /// The optional header part after the one flagged `done` (0 = after the
    /// fixed part), or `None` when the deflate data starts.
    fn after(&self, done: u8) -> Option<Header> {
        let order = [FEXTRA, FNAME, FCOMMENT, FHCRC];
        let start = order.iter().position(|&f| f == done).map_or(0, |i| i + 1);
        for &f in &order[start..] {
            if self.flg & f != 0 {
                return Some(match f {
                    FEXTRA => Header::ExtraLen { n: 0, len: 0 },
                    FNAME => Header::Name,
                    FCOMMENT => Header::Comment,
                    _ => Header::Hcrc { left: 2 },
                });
            }
        }
        None
    }

    /// Run the core over `input`; returns the bytes it consumed.
    fn deflate<S: Sink>(
        &mut self,
        input: &[u8],
        sink: &mut S,
    ) -> Result<usize, InflateError<S::Error>> {
        let mut flags = TINFL_FLAG_HAS_MORE_INPUT;
        if self.container == Container::Zlib {
            flags |= TINFL_FLAG_PARSE_ZLIB_HEADER | TINFL_FLAG_COMPUTE_ADLER32;
        }
        let mut used = 0;
        loop {
            let (status, n_in, n_out) = decompress(
                &mut self.core,
                &input[used..],
                &mut self.window,
                self.window_pos,
                flags,
            );
            used += n_in;
            self.consumed += n_in as u64;
            if n_out > 0 {
                self.emit(n_out, sink)?;
            }
            match status {
                TINFLStatus::HasMoreOutput => continue,
                TINFLStatus::NeedsMoreInput => return Ok(used),
                TINFLStatus::Done => {
                    self.phase = match self.container {
                        Container::Gzip => Phase::Trailer { n: 0 },
                        Container::Zlib | Container::Raw => Phase::Done,
                    };
                    return Ok(used);
                }
                TINFLStatus::Adler32Mismatch => return Err(InflateError::Adler32Mismatch),
                _ => {
                    return Err(InflateError::Corrupt {
                        consumed: self.consumed,
                    })
                }
            }
        }
    }

    fn emit<S: Sink>(&mut self, n: usize, sink: &mut S) -> Result<(), InflateError<S::Error>> {
        let new_total = self.produced + n as u64;
        if new_total > self.limit {
            return Err(InflateError::TooLarge { limit: self.limit });
        }
        let out = &self.window[self.window_pos..self.window_pos + n];
        self.crc.update(out);
        sink.write(out).map_err(InflateError::Sink)?;
        self.produced = new_total;
        self.window_pos = (self.window_pos + n) & (TINFL_LZ_DICT_SIZE - 1);
        Ok(())
    }

    fn check_trailer(&mut self) -> Result<(), InflateError<Never>> {
        let t = self.trailer;
        let expected = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let actual = self.crc.clone().finalize();
        if expected != actual {
            return Err(InflateError::Crc32Mismatch { expected, actual });
        }
        let expected = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        let actual = self.produced as u32;
        if expected != actual {
            return Err(InflateError::SizeMismatch { expected, actual });
        }
        Ok(())
    }
}

/// An error that cannot happen.
#[derive(Debug)]
enum Never {}

#[cfg(test)]
mod tests;
