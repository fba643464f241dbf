//! [`BodyReader`]: a request body's framing (`Content-Length` or chunked)
//! and the minimum-progress rule.

use super::{Framing, Limits};
use crate::error::{BadRequest, DeviceError, Timeout};

/// Longest chunk-size line accepted (hex digits and extensions).
const MAX_CHUNK_LINE: u16 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of the size.
    Size { size: u64, digits: u8, line: u16 },
    /// Skipping a chunk extension up to CR.
    Ext { size: u64, line: u16 },
    /// Expecting the LF after the size line.
    SizeLf { size: u64 },
    /// Data bytes left in this chunk.
    Data { left: u64 },
    /// CR after data.
    DataCr,
    /// LF after data.
    DataLf,
    /// At the start of a trailer line (after the last chunk).
    TrailerStart,
    /// Inside a trailer line.
    Trailer { line: u16 },
    /// LF ending the trailer section.
    EndLf,
    /// LF ending a trailer line.
    TrailerLf,
    /// Done.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length { left: u64 },
    Chunked(Chunk),
}

/// Reads one body, delivering the payload bytes (de-chunked) to a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyReader {
    state: State,
    /// Encoded body bytes consumed.
    consumed: u64,
    /// Payload bytes delivered.
    delivered: u64,
    window_start: u64,
    window_bytes: u64,
}

impl BodyReader {
    /// A reader for `framing`, starting at `now`.
    pub fn new(framing: Framing, now: u64) -> Self {
        let state = match framing {
            Framing::None => State::Length { left: 0 },
            Framing::Length(n) => State::Length { left: n },
            Framing::Chunked => State::Chunked(Chunk::Size {
                size: 0,
                digits: 0,
                line: 0,
            }),
        };
        Self {
            state,
            consumed: 0,
            delivered: 0,
            window_start: now,
            window_bytes: 0,
        }
    }

    /// Whether the whole body has been read.
    pub fn done(&self) -> bool {
        matches!(
            self.state,
            State::Length { left: 0 } | State::Chunked(Chunk::Done)
        )
    }

    /// Payload bytes delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The minimum-progress rule at `now`.
    pub fn check_progress(&mut self, limits: &Limits, now: u64) -> Result<(), DeviceError> {
        if self.done() {
            return Ok(());
        }
        if now.saturating_sub(self.window_start) >= limits.body_window_ms {
            if self.window_bytes < u64::from(limits.min_body_bytes) {
                return Err(DeviceError::Timeout(Timeout::Body {
                    bytes: limits.min_body_bytes,
                    ms: limits.body_window_ms,
                }));
            }
            self.window_start = now;
            self.window_bytes = 0;
        }
        Ok(())
    }

    /// Consumes body bytes from `input` (never past the body's end) and
    /// hands the payload to `sink`. Returns the input bytes consumed; on an
    /// error (broken framing, or the sink's own), the bytes consumed up to
    /// and including the failing piece, so the body can still be drained
    /// with this reader.
    pub fn feed<S>(&mut self, input: &[u8], sink: &mut S) -> Result<usize, (usize, DeviceError)>
    where
        S: FnMut(&[u8]) -> Result<(), DeviceError>,
    {
        let mut i = 0usize;
        while i < input.len() && !self.done() {
            let rest = input.get(i..).unwrap_or_default();
            let (used, result) = match &mut self.state {
                State::Length { left } => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(rest.len());
                    let data = rest.get(..n).unwrap_or_default();
                    *left -= n as u64;
                    self.delivered += n as u64;
                    (n, sink(data))
                }
                State::Chunked(c) => {
                    let at = self.consumed;
                    match step_chunk(c, rest, at) {
                        Ok((used, data)) if !data.is_empty() => {
                            self.delivered += data.len() as u64;
                            (used, sink(data))
                        }
                        Ok((used, _)) => (used, Ok(())),
                        Err(e) => return Err((i, e)),
                    }
                }
            };
            i += used;
            self.consumed += used as u64;
            self.window_bytes += used as u64;
            result.map_err(|e| (i, e))?;
        }
        Ok(i)
    }
}

/// One step of the chunked decoder over `rest` (non-empty): returns the
/// bytes consumed and the payload among them.
fn step_chunk<'a>(
    c: &mut Chunk,
    rest: &'a [u8],
    at: u64,
) -> Result<(usize, &'a [u8]), DeviceError> {
    let bad = || DeviceError::BadRequest(BadRequest::Chunked { at });
    let Some(&b) = rest.first() else {
        return Ok((0, &[]));
    };
    if let Chunk::Data { left } = c {
        let n = usize::try_from(*left).unwrap_or(usize::MAX).min(rest.len());
        *left -= n as u64;
        if *left == 0 {
            *c = Chunk::DataCr;
        }
        return Ok((n, rest.get(..n).unwrap_or_default()));
    }
    *c = match *c {
        Chunk::Size { size, digits, line } => {
            if line >= MAX_CHUNK_LINE {
                return Err(bad());
            }
            if let Some(d) = super::hex_val(b) {
                if digits >= 15 {
                    return Err(bad());
                }
                Chunk::Size {
                    size: size << 4 | u64::from(d),
                    digits: digits + 1,
                    line: line + 1,
                }
            } else if digits == 0 {
                return Err(bad());
            } else if b == b'\r' {
                Chunk::SizeLf { size }
            } else if b == b';' || b == b' ' || b == b'\t' {
                Chunk::Ext {
                    size,
                    line: line + 1,
                }
            } else {
                return Err(bad());
            }
        }
        Chunk::Ext { size, line } => {
            if line >= MAX_CHUNK_LINE || b == b'\n' {
                return Err(bad());
            }
            if b == b'\r' {
                Chunk::SizeLf { size }
            } else {
                Chunk::Ext {
                    size,
                    line: line + 1,
                }
            }
        }
        Chunk::SizeLf { size } => {
            if b != b'\n' {
                return Err(bad());
            }
            if size == 0 {
                Chunk::TrailerStart
            } else {
                Chunk::Data { left: size }
            }
        }
        Chunk::DataCr => {
            if b != b'\r' {
                return Err(bad());
            }
            Chunk::DataLf
        }
        Chunk::DataLf => {
            if b != b'\n' {
                return Err(bad());
            }
            Chunk::Size {
                size: 0,
                digits: 0,
                line: 0,
            }
        }
        Chunk::TrailerStart => {
            if b == b'\r' {
                Chunk::EndLf
            } else if b == b'\n' {
                return Err(bad());
            } else {
                Chunk::Trailer { line: 1 }
            }
        }
        Chunk::Trailer { line } => {
            if line >= MAX_CHUNK_LINE {
                return Err(bad());
            }
            if b == b'\r' {
                Chunk::TrailerLf
            } else {
                Chunk::Trailer { line: line + 1 }
            }
        }
        Chunk::TrailerLf => {
            if b != b'\n' {
                return Err(bad());
            }
            Chunk::TrailerStart
        }
        Chunk::EndLf => {
            if b != b'\n' {
                return Err(bad());
            }
            Chunk::Done
        }
        Chunk::Data { .. } | Chunk::Done => *c,
    };
    Ok((1, &[]))
}
