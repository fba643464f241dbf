//! [`JsonOut`]: a JSON writer into a caller-lent byte buffer (no heap).

use core::fmt::{self, Write};

/// Writes JSON text into a borrowed buffer. Running out of room is sticky:
/// every later write is dropped and [`JsonOut::overflowed`] says so, so a
/// caller checks once at the end.
#[derive(Debug)]
pub struct JsonOut<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> JsonOut<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            len: 0,
            overflow: false,
        }
    }

    /// Bytes written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether some write did not fit.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// The text written so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Appends raw bytes (already JSON).
    pub fn raw(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes());
        self
    }

    fn bytes(&mut self, b: &[u8]) {
        if self.overflow {
            return;
        }
        let end = self.len.saturating_add(b.len());
        match self.buf.get_mut(self.len..end) {
            Some(dst) => {
                dst.copy_from_slice(b);
                self.len = end;
            }
            None => self.overflow = true,
        }
    }

    /// Appends `"key":`.
    pub fn key(&mut self, k: &str) -> &mut Self {
        self.string(k);
        self.raw(":")
    }

    /// Appends a JSON string, escaped.
    pub fn string(&mut self, s: &str) -> &mut Self {
        self.raw("\"");
        let _ = Escaped(self).write_str(s);
        self.raw("\"")
    }

    /// Appends a JSON string holding `v`'s `Display` text, escaped.
    pub fn display(&mut self, v: &dyn fmt::Display) -> &mut Self {
        self.raw("\"");
        let _ = write!(Escaped(self), "{v}");
        self.raw("\"")
    }

    /// Appends a number.
    pub fn num(&mut self, n: u64) -> &mut Self {
        let _ = write!(Raw(self), "{n}");
        self
    }

    /// Appends `true` or `false`.
    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.raw(if b { "true" } else { "false" })
    }

    /// Appends a string or `null`.
    pub fn opt_string(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            Some(s) => self.string(s),
            None => self.raw("null"),
        }
    }

    /// Appends a number or `null`.
    pub fn opt_num(&mut self, n: Option<u64>) -> &mut Self {
        match n {
            Some(n) => self.num(n),
            None => self.raw("null"),
        }
    }

    /// Appends 32 bytes as a lowercase hex string.
    pub fn hex(&mut self, b: &[u8]) -> &mut Self {
        self.raw("\"");
        for x in b {
            let _ = write!(Raw(self), "{x:02x}");
        }
        self.raw("\"")
    }
}

struct Raw<'w, 'a>(&'w mut JsonOut<'a>);

impl Write for Raw<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.bytes(s.as_bytes());
        Ok(())
    }
}

struct Escaped<'w, 'a>(&'w mut JsonOut<'a>);

impl Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '"' => self.0.bytes(b"\\\""),
                '\\' => self.0.bytes(b"\\\\"),
                '\n' => self.0.bytes(b"\\n"),
                '\r' => self.0.bytes(b"\\r"),
                '\t' => self.0.bytes(b"\\t"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(Raw(self.0), "\\u{:04x}", c as u32);
                }
                c => {
                    let mut b = [0u8; 4];
                    self.0.bytes(c.encode_utf8(&mut b).as_bytes());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_overflows() {
        let mut buf = [0u8; 64];
        let mut j = JsonOut::new(&mut buf);
        j.raw("{").key("m").string("a\"b\\c\n\u{1}").raw("}");
        assert_eq!(j.as_bytes(), br#"{"m":"a\"b\\c\n\u0001"}"#);
        let mut small = [0u8; 4];
        let mut j = JsonOut::new(&mut small);
        j.string("hello");
        assert!(j.overflowed());
        assert_eq!(j.as_bytes(), b"\"hel");
    }
}
