//! [`Text`]: a string of at most `N` bytes kept inline (no heap), for names,
//! URLs and messages the pull machine keeps between calls.

use core::fmt;

/// A UTF-8 string of at most `N` bytes, kept inline. Writing past the end
/// cuts at the last whole character that fits (never panics).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Text<const N: usize> {
    bytes: [u8; N],
    len: u16,
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Text<N> {
    /// The empty text.
    pub const fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    /// `s`, cut to `N` bytes at a character boundary.
    pub fn of(s: &str) -> Self {
        let mut t = Self::new();
        t.push(s);
        t
    }

    /// `s` if it fits whole, else `None`.
    pub fn exact(s: &str) -> Option<Self> {
        (s.len() <= N && N <= usize::from(u16::MAX)).then(|| Self::of(s))
    }

    /// Appends as much of `s` as fits, cut at a character boundary; returns
    /// whether all of it did.
    pub fn push(&mut self, s: &str) -> bool {
        let len = usize::from(self.len);
        let room = N.min(usize::from(u16::MAX)).saturating_sub(len);
        let mut n = s.len().min(room);
        while n > 0 && !s.is_char_boundary(n) {
            n -= 1;
        }
        if let (Some(dst), Some(src)) = (self.bytes.get_mut(len..len + n), s.as_bytes().get(..n)) {
            dst.copy_from_slice(src);
            self.len = (len + n) as u16;
        }
        n == s.len()
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        let b = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        // Only whole characters are ever pushed.
        core::str::from_utf8(b).unwrap_or_default()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties it.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<const N: usize> fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // A message cut short is still a message: never fail the formatter.
        self.push(s);
        Ok(())
    }
}

impl<const N: usize> fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_str().fmt(f)
    }
}

impl<const N: usize> fmt::Display for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> PartialEq<str> for Text<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl<const N: usize> PartialEq<&str> for Text<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
