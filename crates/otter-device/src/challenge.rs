//! What the challenge protocols ([`crate::esphome`], [`crate::espota`])
//! share: lowercase hex, constant-time comparison, and a bounded secret.

/// A password or password hash kept by the device, at most
/// [`Secret::MAX`] bytes, compared in constant time and never printed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secret {
    bytes: [u8; Secret::MAX],
    len: u8,
}

impl Secret {
    /// The longest secret kept.
    pub const MAX: usize = 64;

    /// `s`, or `None` when it is empty or longer than [`Secret::MAX`].
    pub fn new(s: &[u8]) -> Option<Self> {
        if s.is_empty() || s.len() > Self::MAX {
            return None;
        }
        let mut bytes = [0u8; Self::MAX];
        bytes.get_mut(..s.len())?.copy_from_slice(s);
        Some(Self {
            bytes,
            len: s.len() as u8,
        })
    }

    /// The secret's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Secret({} bytes)", self.len)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex into `out` (which holds at least twice
/// as many bytes); returns the hex written.
pub(crate) fn hex<'o>(bytes: &[u8], out: &'o mut [u8]) -> &'o [u8] {
    let n = (bytes.len() * 2).min(out.len()) / 2;
    for (i, b) in bytes.iter().take(n).enumerate() {
        if let Some(pair) = out.get_mut(2 * i..2 * i + 2) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 15)];
        }
    }
    out.get(..2 * n).unwrap_or_default()
}

/// Parses hex digits (either case) into `out`; `false` unless `s` is
/// exactly `2 * out.len()` hex digits.
pub(crate) fn unhex(s: &[u8], out: &mut [u8]) -> bool {
    if s.len() != out.len() * 2 {
        return false;
    }
    let digit = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => *o = (h << 4) | l,
            _ => return false,
        }
    }
    true
}

/// Whether `a` and `b` are equal, ignoring ASCII case, in time that
/// depends only on their lengths.
pub(crate) fn ct_eq_hex(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| {
        acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
    }) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_compares_without_case() {
        let mut out = [0u8; 8];
        assert_eq!(hex(&[0xde, 0xad, 0x01, 0xf0], &mut out), b"dead01f0");
        let mut back = [0u8; 4];
        assert!(unhex(b"DEAD01f0", &mut back));
        assert_eq!(back, [0xde, 0xad, 0x01, 0xf0]);
        assert!(!unhex(b"dead01f", &mut back));
        assert!(!unhex(b"dead01fg", &mut back));
        assert!(ct_eq_hex(b"abCD", b"ABcd"));
        assert!(!ct_eq_hex(b"abcd", b"abce"));
        assert!(!ct_eq_hex(b"abc", b"abcd"));
        assert!(Secret::new(b"").is_none());
        assert!(Secret::new(&[b'x'; 65]).is_none());
        assert_eq!(Secret::new(b"pw").map(|s| s.as_bytes().len()), Some(2));
    }
}
