//! ESP-IDF `esp_delta_ota` patches, applied as they stream in.
//!
//! # Format
//!
//! An `esp_delta_ota` patch is a 64-byte header followed by a detools
//! *sequential* patch:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `0xfccdde10`, little-endian |
//! | 4..36 | SHA-256 of the base image, as `esptool image-info` prints it ("Validation Hash": the digest appended to the image) |
//! | 36..64 | reserved |
//!
//! The detools part starts with one byte `0ttt cccc` (patch type `t` = 0,
//! sequential; compression `c`: 0 none, 4 heatshrink) and the size of the
//! new image as a detools varint. Then comes the compressed stream (for
//! heatshrink: one byte `(window_bits − 4) << 4 | (lookahead_bits − 3)`,
//! then heatshrink data), which decompresses to:
//!
//! ```text
//! varint 0                      (no data-format section)
//! repeat until the new image is complete:
//!   varint n, n diff bytes      (new = base[from..] + diff, byte-wise mod 256)
//!   varint m, m extra bytes     (new = extra)
//!   varint adjustment (signed)  (from += adjustment)
//! ```
//!
//! A detools varint: the first byte holds 6 value bits, bit 6 the sign and
//! bit 7 "more follows"; later bytes hold 7 value bits and bit 7 "more".
//!
//! # Guarantees
//!
//! The header is checked before any output: a base hash that is not the
//! running image's ([`PatchError::WrongBase`]) or a new image larger than
//! the limit ([`PatchError::TooLarge`]) is refused before
//! [`PatchIo::write`] is ever called, so a device that opens its update
//! session (and erases) on the first write erases nothing. RAM is fixed:
//! [`APPLIER_RAM`] bytes, of which the heatshrink window is
//! 2^[`crate::heatshrink::MAX_WINDOW_BITS`].
//!
//! Compressions: `none` and `heatshrink`. detools' `lzma`, `bz2`, `zstd`
//! and `lz4` need tens to hundreds of KiB of state on the device, and
//! `crle` is not offered by `esp_delta_ota`; they are refused with
//! [`PatchError::UnsupportedCompression`].

use crate::heatshrink::{BadParams, HeatshrinkDecoder};

/// `esp_delta_ota`'s header magic.
pub const ESP_DELTA_MAGIC: u32 = 0xfccd_de10;
/// `esp_delta_ota`'s header length.
pub const HEADER_LEN: usize = 64;
/// detools patch type "sequential".
pub const PATCH_TYPE_SEQUENTIAL: u8 = 0;
/// detools compression "none".
pub const COMPRESSION_NONE: u8 = 0;
/// detools compression "heatshrink".
pub const COMPRESSION_HEATSHRINK: u8 = 4;

const BASE_CHUNK: usize = 256;

/// Bytes of RAM one [`PatchApplier`] takes (heatshrink window included).
pub const APPLIER_RAM: usize = core::mem::size_of::<PatchApplier>();
const _: () = assert!(APPLIER_RAM <= 16 * 1024 + (1 << crate::heatshrink::MAX_WINDOW_BITS));

/// The applier's view of the world: the base image (on a device, the
/// running slot through `ReadNorFlash`) and where the new image goes (the
/// update session).
pub trait PatchIo {
    /// The I/O error.
    type Error;
    /// Length of the base image in bytes; reads beyond it are refused.
    fn base_len(&self) -> u64;
    /// Fill `buf` from the base image at `offset`.
    fn read_base(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// Take the next bytes of the new image, in order.
    fn write(&mut self, data: &[u8]) -> Result<(), Self::Error>;
}

/// The patch's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is.
    None,
    /// heatshrink; parameters come from the first compressed byte.
    Heatshrink,
}

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchInfo {
    /// SHA-256 of the base image, from the `esp_delta_ota` header (`None`
    /// for a bare detools patch).
    pub base_sha256: Option<[u8; 32]>,
    /// The compression.
    pub compression: Compression,
    /// Size of the new image.
    pub to_size: u64,
}

/// Why a patch was refused. `E` is the [`PatchIo`] error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError<E> {
    /// The header magic is not `esp_delta_ota`'s.
    #[error("not an esp_delta_ota patch: magic {found:#010x}, expected 0xfccdde10")]
    BadMagic {
        /// The magic found.
        found: u32,
    },
    /// The patch was made against another base image. Nothing was written.
    #[error("the patch is for base image {patch:02x?}, but the running image is {running:02x?}")]
    WrongBase {
        /// Base SHA-256 named by the patch.
        patch: [u8; 32],
        /// SHA-256 of the running image.
        running: [u8; 32],
    },
    /// A detools patch type other than sequential (in-place, hdiffpatch).
    #[error("detools patch type {0} is not sequential (0)")]
    UnsupportedPatchType(u8),
    /// A detools compression this applier does not carry.
    #[error("detools compression {0} unsupported (none = 0 and heatshrink = 4 are)")]
    UnsupportedCompression(u8),
    /// heatshrink parameters out of range.
    #[error("{0}")]
    Heatshrink(BadParams),
    /// The new image is larger than the limit (the slot). Nothing was written.
    #[error("the patch makes a {to_size}-byte image, the limit is {limit}")]
    TooLarge {
        /// Size the patch declares.
        to_size: u64,
        /// The limit.
        limit: u64,
    },
    /// The patch's content is inconsistent.
    #[error("corrupt patch at new-image offset {to_pos}: {fault}")]
    Corrupt {
        /// Bytes of new image written before the fault.
        to_pos: u64,
        /// What is wrong.
        fault: CorruptFault,
    },
    /// The patch ended before the new image was complete.
    #[error("patch truncated: {to_pos} of {to_size} bytes of the new image made")]
    Truncated {
        /// Bytes made.
        to_pos: u64,
        /// Bytes declared (0 when the header itself was cut).
        to_size: u64,
    },
    /// Data follows the end of the patch.
    #[error("data follows the end of the patch")]
    TrailingData,
    /// Reading the base or writing the output failed.
    #[error("patch I/O failed: {0:?}")]
    Io(E),
}

/// Inconsistencies inside a patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CorruptFault {
    /// A varint longer than 64 bits.
    #[error("size field overflows 64 bits")]
    VarintOverflow,
    /// A size field is negative.
    #[error("negative size")]
    NegativeSize,
    /// The patch carries a detools data-format section (ARM/AArch64/Xtensa
    /// code transforms), which this applier does not implement.
    #[error("data-format sections are not supported")]
    DataFormat,
    /// A diff or extra run goes past the declared new-image size.
    #[error("a run of {len} bytes passes the declared image size")]
    RunTooLong {
        /// Run length.
        len: u64,
    },
    /// A diff run reads outside the base image.
    #[error("diff reads base bytes {offset}..+{len} outside the {base_len}-byte base")]
    BaseOutOfRange {
        /// Base offset.
        offset: i64,
        /// Bytes wanted.
        len: u64,
        /// Base length.
        base_len: u64,
    },
}

impl<E> PatchError<E> {
    /// The stable code (`docs/device-api.md`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadMagic { .. } => "bad_patch_magic",
            Self::WrongBase { .. } => "wrong_base",
            Self::UnsupportedPatchType(_) | Self::UnsupportedCompression(_) => "unsupported_patch",
            Self::Heatshrink(_) => "unsupported_patch",
            Self::TooLarge { .. } => "too_large",
            Self::Corrupt { .. } => "corrupt_patch",
            Self::Truncated { .. } => "truncated",
            Self::TrailingData => "trailing_data",
            Self::Io(_) => "io_error",
        }
    }

    /// The same error with the I/O error mapped by `f` (a caller that
    /// wraps its flash and session errors into its own type).
    pub fn map_io<F>(self, f: impl FnOnce(E) -> F) -> PatchError<F> {
        match self {
            Self::BadMagic { found } => PatchError::BadMagic { found },
            Self::WrongBase { patch, running } => PatchError::WrongBase { patch, running },
            Self::UnsupportedPatchType(t) => PatchError::UnsupportedPatchType(t),
            Self::UnsupportedCompression(c) => PatchError::UnsupportedCompression(c),
            Self::Heatshrink(p) => PatchError::Heatshrink(p),
            Self::TooLarge { to_size, limit } => PatchError::TooLarge { to_size, limit },
            Self::Corrupt { to_pos, fault } => PatchError::Corrupt { to_pos, fault },
            Self::Truncated { to_pos, to_size } => PatchError::Truncated { to_pos, to_size },
            Self::TrailingData => PatchError::TrailingData,
            Self::Io(e) => PatchError::Io(f(e)),
        }
    }
}

/// A detools varint being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Varint {
    value: u64,
    shift: u8,
    negative: bool,
}

impl Varint {
    /// Take one byte; `Some(value)` when complete.
    fn push(&mut self, b: u8) -> Result<Option<i64>, CorruptFault> {
        if self.shift == 0 {
            self.negative = b & 0x40 != 0;
            self.value = u64::from(b & 0x3f);
            self.shift = 6;
        } else {
            if self.shift > 63 || (self.shift > 57 && u64::from(b & 0x7f) >> (64 - self.shift) != 0)
            {
                return Err(CorruptFault::VarintOverflow);
            }
            self.value |= u64::from(b & 0x7f) << self.shift;
            self.shift += 7;
        }
        if b & 0x80 != 0 {
            return Ok(None);
        }
        let v = i64::try_from(self.value).map_err(|_| CorruptFault::VarintOverflow)?;
        let negative = self.negative;
        *self = Varint::default();
        Ok(Some(if negative { -v } else { v }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outer {
    EspHeader { n: u8 },
    Type,
    ToSize,
    HsParams,
    Body,
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    DfSize,
    DiffSize,
    Diff { left: u64 },
    ExtraSize,
    Extra { left: u64 },
    Adjust,
    Done,
}

/// The decompressed-side parser: varints, diff and extra runs.
struct Sequential {
    state: Inner,
    varint: Varint,
    to_size: u64,
    to_pos: u64,
    from_pos: i64,
    base: [u8; BASE_CHUNK],
}

/// Applies one patch. See the module docs.
pub struct PatchApplier {
    running_sha256: Option<[u8; 32]>,
    limit: u64,
    outer: Outer,
    header: [u8; HEADER_LEN],
    varint: Varint,
    compression: Compression,
    heatshrink: HeatshrinkDecoder,
    seq: Sequential,
}

impl core::fmt::Debug for PatchApplier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PatchApplier")
            .field("outer", &self.outer)
            .field("inner", &self.seq.state)
            .field("to_pos", &self.seq.to_pos)
            .field("to_size", &self.seq.to_size)
            .finish_non_exhaustive()
    }
}

impl PatchApplier {
    /// An applier for an `esp_delta_ota` patch that must name
    /// `running_sha256` as its base, making at most `limit` bytes.
    pub fn new(running_sha256: [u8; 32], limit: u64) -> Self {
        Self::with_base(Some(running_sha256), limit)
    }

    /// An applier for a bare detools sequential patch (no 64-byte header,
    /// so no base check): for host tools that know the base already.
    pub fn bare(limit: u64) -> Self {
        Self::with_base(None, limit)
    }

    /// Start over, in place, for a new `esp_delta_ota` patch against
    /// `running_sha256` (a device keeps one applier in a `static` and never
    /// moves its [`APPLIER_RAM`] bytes through the stack).
    pub fn reset(&mut self, running_sha256: [u8; 32], limit: u64) {
        self.reset_with(Some(running_sha256), limit);
    }

    /// Start over, in place, for a bare detools patch (see
    /// [`PatchApplier::bare`]).
    pub fn reset_bare(&mut self, limit: u64) {
        self.reset_with(None, limit);
    }

    fn reset_with(&mut self, running_sha256: Option<[u8; 32]>, limit: u64) {
        self.running_sha256 = running_sha256;
        self.limit = limit;
        self.outer = if running_sha256.is_some() {
            Outer::EspHeader { n: 0 }
        } else {
            Outer::Type
        };
        self.varint = Varint::default();
        self.compression = Compression::None;
        self.seq.state = Inner::DfSize;
        self.seq.varint = Varint::default();
        self.seq.to_size = 0;
        self.seq.to_pos = 0;
        self.seq.from_pos = 0;
        // The heatshrink decoder is reset when the patch names its
        // parameters (`Outer::HsParams`).
    }

    fn with_base(running_sha256: Option<[u8; 32]>, limit: u64) -> Self {
        #[allow(clippy::expect_used)]
        let heatshrink = HeatshrinkDecoder::new(8, 4).expect("8/4 are valid heatshrink parameters");
        PatchApplier {
            running_sha256,
            limit,
            outer: if running_sha256.is_some() {
                Outer::EspHeader { n: 0 }
            } else {
                Outer::Type
            },
            header: [0; HEADER_LEN],
            varint: Varint::default(),
            compression: Compression::None,
            heatshrink,
            seq: Sequential {
                state: Inner::DfSize,
                varint: Varint::default(),
                to_size: 0,
                to_pos: 0,
                from_pos: 0,
                base: [0; BASE_CHUNK],
            },
        }
    }

    /// The header, once it has been read and accepted.
    pub fn info(&self) -> Option<PatchInfo> {
        match self.outer {
            Outer::HsParams | Outer::Body | Outer::Empty => Some(PatchInfo {
                base_sha256: self.running_sha256,
                compression: self.compression,
                to_size: self.seq.to_size,
            }),
            _ => None,
        }
    }

    /// Bytes of the new image written so far.
    pub fn written(&self) -> u64 {
        self.seq.to_pos
    }

    /// Feed the next piece of the patch.
    pub fn feed<I: PatchIo>(
        &mut self,
        mut input: &[u8],
        io: &mut I,
    ) -> Result<(), PatchError<I::Error>> {
        while !input.is_empty() {
            match self.outer {
                Outer::Body => {
                    match self.compression {
                        Compression::None => self.seq.feed(input, io)?,
                        Compression::Heatshrink => {
                            let seq = &mut self.seq;
                            self.heatshrink.feed(input, &mut |d| seq.feed(d, io))?;
                        }
                    }
                    return Ok(());
                }
                Outer::Empty => return Err(PatchError::TrailingData),
                _ => {
                    self.header_byte(input[0])?;
                    input = &input[1..];
                }
            }
        }
        Ok(())
    }

    /// The patch has ended: succeed with the new image's size if it was
    /// complete.
    pub fn finish<E>(&self) -> Result<u64, PatchError<E>> {
        let done = match self.outer {
            Outer::Empty => true,
            Outer::Body => self.seq.state == Inner::Done && self.heatshrink.at_symbol_boundary(),
            _ => false,
        };
        if done {
            Ok(self.seq.to_size)
        } else {
            Err(PatchError::Truncated {
                to_pos: self.seq.to_pos,
                to_size: self.seq.to_size,
            })
        }
    }

    fn header_byte<E>(&mut self, b: u8) -> Result<(), PatchError<E>> {
        match self.outer {
            Outer::EspHeader { n } => {
                self.header[usize::from(n)] = b;
                if usize::from(n) + 1 < HEADER_LEN {
                    self.outer = Outer::EspHeader { n: n + 1 };
                    return Ok(());
                }
                let h = &self.header;
                let found = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                if found != ESP_DELTA_MAGIC {
                    return Err(PatchError::BadMagic { found });
                }
                let mut patch = [0u8; 32];
                patch.copy_from_slice(&h[4..36]);
                if let Some(running) = self.running_sha256 {
                    if patch != running {
                        return Err(PatchError::WrongBase { patch, running });
                    }
                }
                self.outer = Outer::Type;
            }
            Outer::Type => {
                let patch_type = (b >> 4) & 0x7;
                let compression = b & 0xf;
                if b & 0x80 != 0 || patch_type != PATCH_TYPE_SEQUENTIAL {
                    return Err(PatchError::UnsupportedPatchType(
                        patch_type | (b & 0x80) >> 4,
                    ));
                }
                self.compression = match compression {
                    COMPRESSION_NONE => Compression::None,
                    COMPRESSION_HEATSHRINK => Compression::Heatshrink,
                    other => return Err(PatchError::UnsupportedCompression(other)),
                };
                self.outer = Outer::ToSize;
            }
            Outer::ToSize => {
                let corrupt = |fault| PatchError::Corrupt { to_pos: 0, fault };
                if let Some(v) = self.varint.push(b).map_err(corrupt)? {
                    let to_size =
                        u64::try_from(v).map_err(|_| corrupt(CorruptFault::NegativeSize))?;
                    if to_size > self.limit {
                        return Err(PatchError::TooLarge {
                            to_size,
                            limit: self.limit,
                        });
                    }
                    self.seq.to_size = to_size;
                    self.outer = if to_size == 0 {
                        Outer::Empty
                    } else if self.compression == Compression::Heatshrink {
                        Outer::HsParams
                    } else {
                        Outer::Body
                    };
                }
            }
            Outer::HsParams => {
                self.heatshrink
                    .reset((b >> 4) + 4, (b & 0xf) + 3)
                    .map_err(PatchError::Heatshrink)?;
                self.outer = Outer::Body;
            }
            Outer::Body | Outer::Empty => {}
        }
        Ok(())
    }
}

impl Sequential {
    fn corrupt<E>(&self, fault: CorruptFault) -> PatchError<E> {
        PatchError::Corrupt {
            to_pos: self.to_pos,
            fault,
        }
    }

    fn size<E>(&mut self, b: u8) -> Result<Option<u64>, PatchError<E>> {
        match self.varint.push(b) {
            Err(f) => Err(self.corrupt(f)),
            Ok(None) => Ok(None),
            Ok(Some(v)) => u64::try_from(v)
                .map(Some)
                .map_err(|_| self.corrupt(CorruptFault::NegativeSize)),
        }
    }

    fn run<E>(&mut self, b: u8) -> Result<Option<u64>, PatchError<E>> {
        let Some(len) = self.size(b)? else {
            return Ok(None);
        };
        if len > self.to_size - self.to_pos {
            return Err(self.corrupt(CorruptFault::RunTooLong { len }));
        }
        Ok(Some(len))
    }

    fn feed<I: PatchIo>(
        &mut self,
        mut data: &[u8],
        io: &mut I,
    ) -> Result<(), PatchError<I::Error>> {
        while !data.is_empty() {
            match self.state {
                Inner::Diff { left } => {
                    let n = data
                        .len()
                        .min(BASE_CHUNK)
                        .min(usize::try_from(left).unwrap_or(BASE_CHUNK));
                    self.diff(&data[..n], io)?;
                    data = &data[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        Inner::ExtraSize
                    } else {
                        Inner::Diff { left }
                    };
                }
                Inner::Extra { left } => {
                    let n = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    io.write(&data[..n]).map_err(PatchError::Io)?;
                    self.to_pos += n as u64;
                    data = &data[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        Inner::Adjust
                    } else {
                        Inner::Extra { left }
                    };
                }
                Inner::Done => return Err(PatchError::TrailingData),
                state => {
                    let b = data[0];
                    data = &data[1..];
                    self.state = match state {
                        Inner::DfSize => match self.size(b)? {
                            None => Inner::DfSize,
                            Some(0) => Inner::DiffSize,
                            Some(_) => return Err(self.corrupt(CorruptFault::DataFormat)),
                        },
                        Inner::DiffSize => match self.run(b)? {
                            None => Inner::DiffSize,
                            Some(0) => Inner::ExtraSize,
                            Some(left) => Inner::Diff { left },
                        },
                        Inner::ExtraSize => match self.run(b)? {
                            None => Inner::ExtraSize,
                            Some(0) => Inner::Adjust,
                            Some(left) => Inner::Extra { left },
                        },
                        _ => match self.varint.push(b).map_err(|f| self.corrupt(f))? {
                            None => Inner::Adjust,
                            Some(adj) => {
                                self.from_pos = self.from_pos.saturating_add(adj);
                                if self.to_pos < self.to_size {
                                    Inner::DiffSize
                                } else {
                                    Inner::Done
                                }
                            }
                        },
                    };
                }
            }
        }
        Ok(())
    }

    fn diff<I: PatchIo>(&mut self, diff: &[u8], io: &mut I) -> Result<(), PatchError<I::Error>> {
        let len = diff.len() as u64;
        let base_len = io.base_len();
        let in_range = u64::try_from(self.from_pos)
            .ok()
            .and_then(|o| o.checked_add(len).map(|end| (o, end)))
            .filter(|&(_, end)| end <= base_len);
        let Some((offset, _)) = in_range else {
            return Err(self.corrupt(CorruptFault::BaseOutOfRange {
                offset: self.from_pos,
                len,
                base_len,
            }));
        };
        let buf = &mut self.base[..diff.len()];
        io.read_base(offset, buf).map_err(PatchError::Io)?;
        for (o, d) in buf.iter_mut().zip(diff) {
            *o = o.wrapping_add(*d);
        }
        io.write(buf).map_err(PatchError::Io)?;
        self.from_pos += diff.len() as i64;
        self.to_pos += len;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
