//! Text handling of the CSV grammar: decoding bytes by BOM as
//! `gen_esp32part.py`'s `get_encoding` does, and Python's `os.path.expandvars`
//! with the variables coming from an [`Env`].

use alloc::borrow::Cow;
use alloc::string::String;

use super::int::py_splitlines;
use super::{CsvError, CsvErrorKind};

/// Where `$VAR` values come from.
pub trait Env {
    /// The value of variable `name`, if it is set.
    fn var(&self, name: &str) -> Option<String>;
}

/// No variables: every `$VAR` stays as written.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

/// The process environment.
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy, Default)]
pub struct StdEnv;

#[cfg(feature = "std")]
impl Env for StdEnv {
    fn var(&self, name: &str) -> Option<String> {
        // std::env::var panics on these; Python simply finds nothing.
        if name.is_empty() || name.contains(['=', '\0']) {
            return None;
        }
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Python's `os.path.expandvars` on POSIX: `$name` (ASCII word characters) and
/// `${anything}`; unset variables stay as written.
pub(crate) fn expand_vars<'a>(line: &'a str, env: &dyn Env) -> Cow<'a, str> {
    if !line.contains('$') {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(pos) = rest.find('$') {
        out.push_str(rest.get(..pos).unwrap_or(""));
        let after = rest.get(pos + 1..).unwrap_or("");
        let word_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        let (name, matched_len) = if word_len > 0 {
            (after.get(..word_len).unwrap_or(""), word_len)
        } else if after.starts_with('{') {
            match after.find('}') {
                Some(close) => (after.get(1..close).unwrap_or(""), close + 1),
                None => ("", 0),
            }
        } else {
            ("", 0)
        };
        if matched_len == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        match env.var(name) {
            Some(v) => out.push_str(&v),
            None => {
                out.push('$');
                out.push_str(after.get(..matched_len).unwrap_or(""));
            }
        }
        rest = after.get(matched_len..).unwrap_or("");
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The `NAME` of a `$NAME` at the very start of the line, if any.
pub(crate) fn leading_variable(line: &str) -> Option<&str> {
    let after = line.strip_prefix('$')?;
    let first = after.bytes().next()?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let len = after
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    after.get(..len)
}

/// Decodes CSV bytes the way `gen_esp32part.py`'s `get_encoding` picks the
/// codec.
pub fn decode_text(bytes: &[u8]) -> Result<Cow<'_, str>, CsvError> {
    let enc_err = |offset: usize, encoding: &'static str, decoded: &str| CsvError {
        line: py_splitlines(decoded).count().max(1),
        name: None,
        kind: CsvErrorKind::Encoding { offset, encoding },
    };
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return match core::str::from_utf8(rest) {
            Ok(s) => Ok(Cow::Borrowed(s)),
            Err(e) => {
                let good =
                    core::str::from_utf8(rest.get(..e.valid_up_to()).unwrap_or(&[])).unwrap_or("");
                Err(enc_err(e.valid_up_to() + 3, "UTF-8", good))
            }
        };
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return decode_utf16(rest, false).map_err(|(o, s)| enc_err(o + 2, "UTF-16", &s));
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return decode_utf16(rest, true).map_err(|(o, s)| enc_err(o + 2, "UTF-16", &s));
    }
    if let Some(rest) = bytes.strip_prefix(&[0x00, 0x00, 0xFE, 0xFF]) {
        let mut out = String::new();
        for (i, c) in rest.chunks(4).enumerate() {
            let ch = <[u8; 4]>::try_from(c)
                .ok()
                .and_then(|b| char::from_u32(u32::from_be_bytes(b)));
            match ch {
                Some(ch) => out.push(ch),
                None => return Err(enc_err(i * 4 + 4, "UTF-32", &out)),
            }
        }
        return Ok(Cow::Owned(out));
    }
    match core::str::from_utf8(bytes) {
        Ok(s) => Ok(Cow::Borrowed(s)),
        Err(e) => {
            let good =
                core::str::from_utf8(bytes.get(..e.valid_up_to()).unwrap_or(&[])).unwrap_or("");
            Err(enc_err(e.valid_up_to(), "UTF-8", good))
        }
    }
}

fn decode_utf16(bytes: &[u8], big_endian: bool) -> Result<Cow<'static, str>, (usize, String)> {
    let units = bytes.chunks(2).map(|c| match <[u8; 2]>::try_from(c) {
        Ok(b) if big_endian => Some(u16::from_be_bytes(b)),
        Ok(b) => Some(u16::from_le_bytes(b)),
        Err(_) => None,
    });
    let mut out = String::new();
    let mut pos = 0usize;
    let mut pending: Option<u16> = None;
    for u in units {
        let Some(u) = u else {
            return Err((pos, out));
        };
        match pending.take() {
            Some(hi) => match char::decode_utf16([hi, u]).next() {
                Some(Ok(c)) => out.push(c),
                _ => return Err((pos.saturating_sub(2), out)),
            },
            None if (0xD800..0xDC00).contains(&u) => pending = Some(u),
            None => match char::decode_utf16([u]).next() {
                Some(Ok(c)) => out.push(c),
                _ => return Err((pos, out)),
            },
        }
        pos += 2;
    }
    if pending.is_some() {
        return Err((pos.saturating_sub(2), out));
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn expandvars_like_python() {
        let env = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(expand_vars("$A ${A} $B ${B} $", &env), "x x $B ${B} $");
        assert_eq!(expand_vars("a$A$", &env), "ax$");
        assert_eq!(leading_variable("$B,data"), Some("B"));
        assert_eq!(leading_variable("${B},data"), None);
        assert_eq!(leading_variable("$1"), None);
    }
}
