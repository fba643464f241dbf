//! Response heads: status line, headers, `Content-Length`.

use core::fmt::Write;

/// The reason phrase of the statuses the device answers with.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// What goes into a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'a str,
    /// `Content-Length`.
    pub content_length: u64,
    /// Add `Connection: close`.
    pub close: bool,
    /// Further header lines, each `Name: value` without CRLF.
    pub extra: &'a [&'a str],
}

struct Cursor<'b> {
    buf: &'b mut [u8],
    len: usize,
    overflow: bool,
}

impl Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len.saturating_add(s.len());
        match self.buf.get_mut(self.len..end) {
            Some(d) => {
                d.copy_from_slice(s.as_bytes());
                self.len = end;
                Ok(())
            }
            None => {
                self.overflow = true;
                Err(core::fmt::Error)
            }
        }
    }
}

/// Writes the head into `out`; returns its length, or `None` when it does
/// not fit.
pub fn write_head(out: &mut [u8], h: &ResponseHead<'_>) -> Option<usize> {
    let mut c = Cursor {
        buf: out,
        len: 0,
        overflow: false,
    };
    let _ = write!(
        c,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        h.status,
        reason(h.status),
        h.content_type,
        h.content_length
    );
    for line in h.extra {
        let _ = write!(c, "{line}\r\n");
    }
    if h.close {
        let _ = c.write_str("Connection: close\r\n");
    }
    let _ = c.write_str("\r\n");
    (!c.overflow).then_some(c.len)
}
