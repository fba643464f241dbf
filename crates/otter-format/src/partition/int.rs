//! Python's `int(v, 0)`, as `gen_esp32part.py`'s `parse_int` uses it, and the
//! Python notions of whitespace and line breaks the CSV grammar depends on.
//!
//! `int(v, 0)` accepts surrounding whitespace, one sign, a `0x`/`0o`/`0b` prefix
//! (any case) and single underscores between digits (also right after the
//! prefix); a decimal literal may start with `0` only if it is all zeros, so
//! `010` is rejected. Python also accepts non-ASCII decimal digits (`٣`); this
//! parser does not, and reports them as invalid.

/// Why [`py_int`] rejected a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntError {
    /// Not an integer literal Python's `int(v, 0)` accepts.
    Invalid,
    /// A valid literal too large for an `i128`.
    Overflow,
}

/// Python's `str.isspace()` for one character (Rust's `char::is_whitespace`
/// plus the four information separators U+001C..U+001F).
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no arguments.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Whether `c` ends a line for Python's `str.splitlines()` (`\r\n` counts as one
/// break; the caller handles the pair).
pub fn is_py_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\u{0b}'
            | '\u{0c}'
            | '\u{1c}'
            | '\u{1d}'
            | '\u{1e}'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Python's `str.splitlines()`: the lines without their breaks; a final break
/// does not start another line.
pub fn py_splitlines(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    core::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.char_indices().find(|(_, c)| is_py_line_break(*c)) {
            Some((i, c)) => {
                let line = rest.get(..i).unwrap_or("");
                let mut next = i + c.len_utf8();
                if c == '\r' && rest.get(next..).is_some_and(|t| t.starts_with('\n')) {
                    next += 1;
                }
                rest = rest.get(next..).unwrap_or("");
                Some(line)
            }
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
        }
    })
}

/// Python's `int(s, 0)`.
pub fn py_int(s: &str) -> Result<i128, IntError> {
    // int() strips Unicode whitespace but, unlike str.strip(), not U+001C..U+001F.
    let s = s.trim_matches(char::is_whitespace);
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, s.get(1..).unwrap_or("")),
        Some(b'+') => (false, s.get(1..).unwrap_or("")),
        _ => (false, s),
    };
    let bytes = body.as_bytes();
    let (radix, digits, after_prefix) = match bytes {
        [b'0', b'x' | b'X', rest @ ..] => (16, rest, true),
        [b'0', b'o' | b'O', rest @ ..] => (8, rest, true),
        [b'0', b'b' | b'B', rest @ ..] => (2, rest, true),
        _ => (10, bytes, false),
    };
    // One underscore may follow the prefix directly.
    let digits = match (after_prefix, digits) {
        (true, [b'_', rest @ ..]) => rest,
        _ => digits,
    };
    if digits.is_empty() {
        return Err(IntError::Invalid);
    }
    let mut value: i128 = 0;
    let mut prev_underscore = false;
    let mut first = true;
    let mut nonzero_seen = false;
    let leading_zero = radix == 10 && digits.first() == Some(&b'0');
    for &b in digits {
        if b == b'_' {
            if first || prev_underscore {
                return Err(IntError::Invalid);
            }
            prev_underscore = true;
            continue;
        }
        let d = match (b as char).to_digit(radix) {
            Some(d) => d,
            None => return Err(IntError::Invalid),
        };
        if d != 0 {
            nonzero_seen = true;
        }
        prev_underscore = false;
        first = false;
        value = value
            .checked_mul(i128::from(radix))
            .and_then(|v| v.checked_add(i128::from(d)))
            .ok_or(IntError::Overflow)?;
    }
    if prev_underscore {
        return Err(IntError::Invalid);
    }
    if leading_zero && nonzero_seen {
        return Err(IntError::Invalid);
    }
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values from Python 3: `int(v, 0)`.
    #[test]
    fn accepts_what_python_accepts() {
        let ok: &[(&str, i128)] = &[
            ("0", 0),
            ("00", 0),
            ("0_0", 0),
            ("10", 10),
            ("1_000", 1000),
            ("0x10", 16),
            ("0X_1f", 31),
            ("0o17", 15),
            ("0b101", 5),
            ("-0x10", -16),
            ("+7", 7),
            (" \t12\n", 12),
            ("\u{3000}5\u{85}", 5),
        ];
        for (s, v) in ok {
            assert_eq!(py_int(s), Ok(*v), "{s:?}");
        }
    }

    #[test]
    fn rejects_what_python_rejects() {
        for s in [
            "", "010", "0_1", "_1", "1_", "1__0", "0x", "0x_", "0x__1", "0b102", "0o8", "- 1",
            "1.0", "0x1g", "--1", "1e3", "٣", "\u{1c}5",
        ] {
            assert_eq!(py_int(s), Err(IntError::Invalid), "{s:?}");
        }
    }

    #[test]
    fn splitlines_matches_python() {
        // Python: "a\r\nb\rc\x0bd\x1ce\u2028f\n".splitlines()
        let v: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
        assert!(py_splitlines("a\r\nb\rc\u{b}d\u{1c}e\u{2028}f\n").eq(v));
        assert!(py_splitlines("\n\nx").eq(["", "", "x"]));
        assert_eq!(py_splitlines("").count(), 0);
    }
}
