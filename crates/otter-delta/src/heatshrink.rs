//! A streaming heatshrink (LZSS) decoder in fixed RAM.
//!
//! heatshrink's bitstream, most significant bit first: a `1` tag bit is
//! followed by an 8-bit literal; a `0` tag bit by a back-reference of
//! `window_bits` bits (distance − 1) and `lookahead_bits` bits (length − 1).
//! The window starts as zeros, as the reference decoder's buffer does, so a
//! back-reference before the first byte yields zeros. Trailing pad bits (at
//! most 7, all zero) never complete a symbol, since a back-reference needs
//! at least 1 + 4 + 3 bits.
//!
//! The window lives inside the decoder: [`HeatshrinkDecoder`] takes
//! 2^[`MAX_WINDOW_BITS`] bytes plus a few words however small the stream's
//! window is, so the RAM is fixed at build time. Parameters are validated as
//! the reference decoder (`heatshrink_decoder_alloc`) does.

/// Largest window accepted: 2^12 = 4 KiB. detools and `esp_delta_ota` use
/// 2^8 by default; larger windows compress patches a little better but cost
/// device RAM one for one.
pub const MAX_WINDOW_BITS: u8 = 12;
/// Smallest window heatshrink defines.
pub const MIN_WINDOW_BITS: u8 = 4;
/// Smallest lookahead heatshrink defines.
pub const MIN_LOOKAHEAD_BITS: u8 = 3;

const WINDOW: usize = 1 << MAX_WINDOW_BITS;
/// Output staging buffer: decoded bytes are handed on in pieces up to this.
pub const OUT_CHUNK: usize = 256;

/// Bytes of RAM one [`HeatshrinkDecoder`] takes.
pub const HEATSHRINK_RAM: usize = core::mem::size_of::<HeatshrinkDecoder>();
const _: () = assert!(HEATSHRINK_RAM <= WINDOW + OUT_CHUNK + 64);

/// Window / lookahead parameters the decoder cannot use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("heatshrink window 2^{window_bits} / lookahead 2^{lookahead_bits} unsupported (window 2^4..=2^12, lookahead 2^3..window)")]
pub struct BadParams {
    /// Window size, log2.
    pub window_bits: u8,
    /// Lookahead size, log2.
    pub lookahead_bits: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Tag,
    Literal,
    Index,
    Count { distance: u16 },
    Copy { distance: u16, left: u16 },
}

/// The decoder. See the module docs.
pub struct HeatshrinkDecoder {
    window: [u8; WINDOW],
    out: [u8; OUT_CHUNK],
    out_len: usize,
    head: usize,
    window_bits: u8,
    lookahead_bits: u8,
    bits: u32,
    nbits: u8,
    state: State,
}

impl core::fmt::Debug for HeatshrinkDecoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeatshrinkDecoder")
            .field("window_bits", &self.window_bits)
            .field("lookahead_bits", &self.lookahead_bits)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl HeatshrinkDecoder {
    /// A decoder for the given parameters.
    pub fn new(window_bits: u8, lookahead_bits: u8) -> Result<Self, BadParams> {
        let mut d = HeatshrinkDecoder {
            window: [0; WINDOW],
            out: [0; OUT_CHUNK],
            out_len: 0,
            head: 0,
            window_bits: MIN_WINDOW_BITS,
            lookahead_bits: MIN_LOOKAHEAD_BITS,
            bits: 0,
            nbits: 0,
            state: State::Tag,
        };
        d.reset(window_bits, lookahead_bits)?;
        Ok(d)
    }

    /// Start over, in place, with new parameters.
    pub fn reset(&mut self, window_bits: u8, lookahead_bits: u8) -> Result<(), BadParams> {
        if !(MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(&window_bits)
            || lookahead_bits < MIN_LOOKAHEAD_BITS
            || lookahead_bits >= window_bits
        {
            return Err(BadParams {
                window_bits,
                lookahead_bits,
            });
        }
        self.window = [0; WINDOW];
        self.out_len = 0;
        self.head = 0;
        self.window_bits = window_bits;
        self.lookahead_bits = lookahead_bits;
        self.bits = 0;
        self.nbits = 0;
        self.state = State::Tag;
        Ok(())
    }

    /// Whether the decoder is between symbols (a stream may end here).
    pub fn at_symbol_boundary(&self) -> bool {
        !matches!(self.state, State::Copy { .. })
    }

    /// Decode `input`; decoded bytes go to `out` in pieces of at most
    /// [`OUT_CHUNK`]. Stops at the first error `out` returns.
    pub fn feed<E>(
        &mut self,
        input: &[u8],
        out: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        for &byte in input {
            self.bits = (self.bits << 8) | u32::from(byte);
            self.nbits += 8;
            self.drain_bits(out)?;
        }
        self.flush(out)
    }

    fn take(&mut self, n: u8) -> Option<u32> {
        if self.nbits < n {
            return None;
        }
        self.nbits -= n;
        let v = (self.bits >> self.nbits) & ((1u32 << n) - 1);
        self.bits &= (1u32 << self.nbits) - 1;
        Some(v)
    }

    fn drain_bits<E>(&mut self, out: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        loop {
            match self.state {
                State::Tag => match self.take(1) {
                    Some(1) => self.state = State::Literal,
                    Some(_) => self.state = State::Index,
                    None => return Ok(()),
                },
                State::Literal => match self.take(8) {
                    Some(b) => {
                        self.push(b as u8, out)?;
                        self.state = State::Tag;
                    }
                    None => return Ok(()),
                },
                State::Index => match self.take(self.window_bits) {
                    Some(i) => {
                        self.state = State::Count {
                            distance: i as u16 + 1,
                        }
                    }
                    None => return Ok(()),
                },
                State::Count { distance } => match self.take(self.lookahead_bits) {
                    Some(c) => {
                        self.state = State::Copy {
                            distance,
                            left: c as u16 + 1,
                        }
                    }
                    None => return Ok(()),
                },
                State::Copy { distance, left } => {
                    let mask = (1usize << self.window_bits) - 1;
                    for _ in 0..left {
                        let b = self.window[self.head.wrapping_sub(usize::from(distance)) & mask];
                        self.push(b, out)?;
                    }
                    self.state = State::Tag;
                }
            }
        }
    }

    fn push<E>(&mut self, b: u8, out: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        let mask = (1usize << self.window_bits) - 1;
        self.window[self.head & mask] = b;
        self.head = self.head.wrapping_add(1);
        self.out[self.out_len] = b;
        self.out_len += 1;
        if self.out_len == OUT_CHUNK {
            self.flush(out)?;
        }
        Ok(())
    }

    fn flush<E>(&mut self, out: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        if self.out_len > 0 {
            let n = self.out_len;
            self.out_len = 0;
            out(&self.out[..n])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(w: u8, l: u8, input: &[u8]) -> std::vec::Vec<u8> {
        let mut d = HeatshrinkDecoder::new(w, l).unwrap();
        let mut v = std::vec::Vec::new();
        d.feed::<()>(input, &mut |b| {
            v.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        v
    }

    #[test]
    fn literals_and_backref() {
        // w=8, l=4: 1 'a'(0x61) 1 'b'(0x62), 0 index=1 (dist 2) count=3 (len 4)
        // bits: 1 01100001 1 01100010 0 00000001 0011 -> pad
        let bits = "1011000011011000100000000010011";
        let mut bytes = std::vec::Vec::new();
        let padded = format!("{bits:0<32}");
        for i in 0..4 {
            bytes.push(u8::from_str_radix(&padded[i * 8..i * 8 + 8], 2).unwrap());
        }
        assert_eq!(decode(8, 4, &bytes), b"ababab");
    }

    #[test]
    fn params_are_validated_like_the_reference() {
        assert_eq!(
            HeatshrinkDecoder::new(13, 4).unwrap_err(),
            BadParams {
                window_bits: 13,
                lookahead_bits: 4
            }
        );
        assert!(HeatshrinkDecoder::new(8, 8).is_err());
        assert!(HeatshrinkDecoder::new(8, 2).is_err());
        assert!(HeatshrinkDecoder::new(3, 3).is_err());
        assert!(HeatshrinkDecoder::new(4, 3).is_ok());
    }
}
