//! Writing answers: JSON bodies behind their head, errors, and the
//! web-UI path and content type rules.

use super::*;

/// Room kept for a response head before its body.
const HEAD_ROOM: usize = 320;

/// Writes a JSON error response.
pub(crate) fn write_error(tx: &mut [u8], e: &DeviceError, close: bool) -> usize {
    let mut extra: [&str; 2] = ["", ""];
    let mut n = 0;
    if e.status() == 401 {
        extra[0] = "WWW-Authenticate: Bearer";
        n = 1;
    }
    if let DeviceError::MethodNotAllowed { allow } = e {
        extra[n] = match *allow {
            "GET, HEAD" => "Allow: GET, HEAD",
            "GET, HEAD, POST" => "Allow: GET, HEAD, POST",
            _ => "Allow: POST",
        };
        n += 1;
    }
    let lines = extra.get(..n).unwrap_or_default();
    write_json(tx, e.status(), close, lines, false, |j| {
        j.raw("{")
            .key("error")
            .string(e.code())
            .raw(",")
            .key("message")
            .display(e)
            .raw("}");
    })
    .unwrap_or(0)
}

/// Writes a JSON response (head + body) into `tx`: the body first at
/// [`HEAD_ROOM`], then the head before it, then the body moved up.
pub(crate) fn write_json<W>(
    tx: &mut [u8],
    status: u16,
    close: bool,
    extra: &[&str],
    head_only: bool,
    body: W,
) -> Option<usize>
where
    W: FnOnce(&mut JsonOut<'_>),
{
    let len = {
        let mut j = JsonOut::new(tx.get_mut(HEAD_ROOM..)?);
        body(&mut j);
        if j.overflowed() {
            return None;
        }
        j.len()
    };
    let mut head = [0u8; HEAD_ROOM];
    let h = write_head(
        &mut head,
        &ResponseHead {
            status,
            content_type: "application/json",
            content_length: len as u64,
            close,
            extra,
        },
    )?;
    tx.copy_within(HEAD_ROOM..HEAD_ROOM + len, h);
    tx.get_mut(..h)?.copy_from_slice(head.get(..h)?);
    Some(if head_only { h } else { h + len })
}

/// The web-UI path as a clean absolute path (`/` → `/index.html`,
/// `/dir/` → `/dir/index.html`, %-escapes decoded), or `None` when it leaves
/// the root or is malformed.
pub fn clean_path<'o>(path: &str, out: &'o mut [u8]) -> Option<&'o str> {
    let mut n = 0usize;
    let bytes = path.as_bytes();
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        let c = if b == b'%' {
            let hi = crate::http::hex_val(*bytes.get(i + 1)?)?;
            let lo = crate::http::hex_val(*bytes.get(i + 2)?)?;
            i += 3;
            hi << 4 | lo
        } else {
            i += 1;
            b
        };
        if c == 0 || c == b'\\' {
            return None;
        }
        *out.get_mut(n)? = c;
        n += 1;
    }
    if out.get(..n)?.ends_with(b"/") {
        for &c in b"index.html" {
            *out.get_mut(n)? = c;
            n += 1;
        }
    }
    let s = core::str::from_utf8(out.get(..n)?).ok()?;
    if !s.starts_with('/') {
        return None;
    }
    if s.split('/')
        .skip(1)
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return None;
    }
    Some(s)
}

/// `Content-Type` by extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit('.').next().unwrap_or("");
    match ext {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
