//! The server side of HTTP/1.1 as sans-IO pieces: the request head
//! ([`HeadReader`], httparse into a caller-lent buffer), body framing
//! ([`BodyReader`]: `Content-Length` and chunked), multipart form uploads
//! ([`Multipart`]), and response heads ([`write_head`]).
//!
//! Every piece takes bytes in arbitrary splits (one byte at a time works)
//! and the time as `now` in milliseconds; nothing reads a socket or a clock.
//! [`crate::service::Connection`] composes them into the per-connection
//! state machine.
//!
//! # Limits (defaults)
//!
//! | limit | default | answer |
//! |---|---|---|
//! | head bytes (request line + headers) | [`DEFAULT_MAX_HEAD`] (and at most the lent buffer) | 431 `headers_too_large` |
//! | header lines | [`MAX_HEADERS`] | 431 `headers_too_large` |
//! | whole head arrives within | [`Limits::head_timeout_ms`] = 10 s from its first byte | 408 `timeout` |
//! | body progress | at least [`Limits::min_body_bytes`] = 1 byte per [`Limits::body_window_ms`] = 10 s | 408 `timeout` |
//! | a refused body is read and discarded | up to [`Limits::drain_bytes`] = 64 MiB and [`Limits::drain_ms`] = 30 s | then the connection closes |
//! | multipart part headers | [`multipart::MAX_PART_HEAD`] bytes | 400 `bad_request` |

mod body;
pub mod multipart;
mod response;

pub use body::BodyReader;
pub use multipart::Multipart;
pub use response::{reason, write_head, ResponseHead};

use crate::error::{BadRequest, DeviceError, Timeout};

/// Most header lines parsed (the `httparse::Header` slots live on the stack
/// while a head is parsed: 16 bytes each on a 32-bit target).
pub const MAX_HEADERS: usize = 32;
/// Default limit of the head in bytes.
pub const DEFAULT_MAX_HEAD: usize = 2048;
/// The smallest head buffer a connection accepts (a request line and a few
/// short headers).
pub const MIN_HEAD_BUF: usize = 256;
/// Longest multipart boundary (RFC 2046).
pub const MAX_BOUNDARY: usize = 70;

/// Configurable limits and deadlines; see the module docs for the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Head bytes accepted (capped by the lent buffer).
    pub max_head: usize,
    /// Milliseconds from a head's first byte to its end.
    pub head_timeout_ms: u64,
    /// Length of a body progress window.
    pub body_window_ms: u64,
    /// Body bytes that must arrive in every window.
    pub min_body_bytes: u32,
    /// The most of a refused body that is read and discarded.
    pub drain_bytes: u64,
    /// How long a refused body is read at most.
    pub drain_ms: u64,
    /// How long an idle keep-alive connection waits for the next request.
    pub idle_ms: u64,
}

impl Limits {
    /// The defaults in the module docs.
    pub const DEFAULT: Self = Self {
        max_head: DEFAULT_MAX_HEAD,
        head_timeout_ms: 10_000,
        body_window_ms: 10_000,
        min_body_bytes: 1,
        drain_bytes: 64 << 20,
        drain_ms: 30_000,
        idle_ms: 60_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// Anything else (PUT, DELETE, OPTIONS, ...).
    Other,
}

/// A byte range of the head buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    start: u16,
    len: u16,
}

impl Span {
    fn of(base: &[u8], part: &[u8]) -> Self {
        let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
        Self {
            start: u16::try_from(start).unwrap_or(0),
            len: u16::try_from(part.len()).unwrap_or(0),
        }
    }

    /// The bytes of the span in `buf`.
    pub fn get<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        let s = usize::from(self.start);
        buf.get(s..s + usize::from(self.len)).unwrap_or_default()
    }
}

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (no Content-Length, not chunked).
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What the service needs from a request head. Text fields are spans of the
/// head buffer, valid until the next request starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The path (without the query).
    pub path: Span,
    /// Body framing.
    pub framing: Framing,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// The connection closes after this request (`Connection: close`, or
    /// HTTP/1.0 without keep-alive).
    pub close: bool,
    /// The `Authorization` header's value.
    pub authorization: Option<Span>,
    /// `X-Otter-Sha256`, parsed; `Err` when present but not 64 hex digits.
    pub sha256: Option<Result<[u8; 32], BadRequest>>,
    /// The multipart boundary, when `Content-Type: multipart/form-data`.
    pub boundary: Option<Span>,
    /// `Content-Type` is multipart/form-data but the boundary is missing or
    /// invalid.
    pub bad_multipart: bool,
    /// `Content-Encoding`.
    pub content_coding: ContentCoding,
    /// `Content-Type: application/x-esp-delta-ota` (the body is an
    /// `esp_delta_ota` patch).
    pub delta: bool,
}

/// A request's `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentCoding {
    /// No header.
    None,
    /// `identity`.
    Identity,
    /// `gzip` or `x-gzip`.
    Gzip,
    /// `deflate`.
    Deflate,
    /// Anything else (`br`, `zstd`, a list of codings).
    Unknown,
}

/// The media type of an `esp_delta_ota` patch upload.
pub const DELTA_CONTENT_TYPE: &str = "application/x-esp-delta-ota";

/// Reads a request head into the lent buffer.
#[derive(Debug)]
pub struct HeadReader {
    len: usize,
    started_at: Option<u64>,
}

/// What [`HeadReader::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadStep {
    /// More bytes are needed; all input was consumed.
    Partial,
    /// The head is complete after `consumed` input bytes.
    Complete {
        /// Input bytes that belong to the head.
        consumed: usize,
        /// The parsed head.
        head: RequestHead,
    },
}

impl Default for HeadReader {
    fn default() -> Self {
        Self::new()
    }
}

impl HeadReader {
    /// An empty reader.
    pub const fn new() -> Self {
        Self {
            len: 0,
            started_at: None,
        }
    }

    /// Whether any byte of a head has arrived.
    pub fn started(&self) -> bool {
        self.len > 0
    }

    /// Forgets the head (the next request starts).
    pub fn reset(&mut self) {
        self.len = 0;
        self.started_at = None;
    }

    /// The head timeout, checked at `now`.
    pub fn check_deadline(&self, limits: &Limits, now: u64) -> Result<(), DeviceError> {
        match self.started_at {
            Some(t) if now.saturating_sub(t) > limits.head_timeout_ms => {
                Err(DeviceError::Timeout(Timeout::Head {
                    ms: limits.head_timeout_ms,
                }))
            }
            _ => Ok(()),
        }
    }

    /// Copies head bytes from `input` into `buf` (up to the end of the
    /// head) and parses the head once it is complete.
    pub fn feed(
        &mut self,
        buf: &mut [u8],
        limits: &Limits,
        input: &[u8],
        now: u64,
    ) -> Result<HeadStep, DeviceError> {
        let cap = limits.max_head.min(buf.len());
        let too_large = DeviceError::HeadersTooLarge {
            limit: cap,
            headers: MAX_HEADERS,
        };
        for (i, &b) in input.iter().enumerate() {
            // Blank lines before a request line are ignored (RFC 9112 2.2).
            if self.len == 0 && (b == b'\r' || b == b'\n') {
                continue;
            }
            if self.started_at.is_none() {
                self.started_at = Some(now);
            }
            // A method is a token: a byte that cannot be in one is refused
            // at once, not after the peer's timeout (ESPHome's uploader
            // sends five magic bytes and waits for an answer).
            let in_method = !buf.get(..self.len).unwrap_or_default().contains(&b' ');
            if in_method && b != b' ' && !is_tchar(b) {
                return Err(DeviceError::BadRequest(BadRequest::Syntax(
                    httparse::Error::Token,
                )));
            }
            let Some(slot) = buf.get_mut(self.len) else {
                return Err(too_large);
            };
            if self.len >= cap {
                return Err(too_large);
            }
            *slot = b;
            self.len += 1;
            if b == b'\n' {
                let head = buf.get(..self.len).unwrap_or_default();
                if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
                    let parsed = parse_head(head)?;
                    return Ok(HeadStep::Complete {
                        consumed: i + 1,
                        head: parsed,
                    });
                }
            }
        }
        self.check_deadline(limits, now)?;
        Ok(HeadStep::Partial)
    }

    /// The head bytes read so far.
    pub fn bytes<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(..self.len).unwrap_or_default()
    }
}

fn parse_head(head: &[u8]) -> Result<RequestHead, DeviceError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(DeviceError::BadRequest(BadRequest::Syntax(
                httparse::Error::Token,
            )))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(DeviceError::HeadersTooLarge {
                limit: head.len(),
                headers: MAX_HEADERS,
            })
        }
        Err(e) => return Err(DeviceError::BadRequest(BadRequest::Syntax(e))),
    }
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some("POST") => Method::Post,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or_default();
    if !target.starts_with('/') {
        return Err(DeviceError::BadRequest(BadRequest::Target));
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let http10 = req.version == Some(0);
    let mut out = RequestHead {
        method,
        path: Span::of(head, path.as_bytes()),
        framing: Framing::None,
        expect_continue: false,
        close: http10,
        authorization: None,
        sha256: None,
        boundary: None,
        bad_multipart: false,
        content_coding: ContentCoding::None,
        delta: false,
    };
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in req.headers.iter() {
        let name = h.name;
        let value = trim(h.value);
        if name.eq_ignore_ascii_case("content-length") {
            let n =
                parse_decimal(value).ok_or(DeviceError::BadRequest(BadRequest::ContentLength))?;
            if length.is_some_and(|l| l != n) {
                return Err(DeviceError::BadRequest(BadRequest::ContentLength));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case(b"chunked") || chunked {
                return Err(DeviceError::BadRequest(BadRequest::Framing));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("expect") {
            out.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let t = trim(token);
                if t.eq_ignore_ascii_case(b"close") {
                    out.close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    out.close = false;
                }
            }
        } else if name.eq_ignore_ascii_case("authorization") {
            out.authorization = Some(Span::of(head, value));
        } else if name.eq_ignore_ascii_case("x-otter-sha256") {
            out.sha256 = Some(parse_sha256(value));
        } else if name.eq_ignore_ascii_case("content-encoding") {
            out.content_coding = if out.content_coding != ContentCoding::None {
                ContentCoding::Unknown
            } else if value.eq_ignore_ascii_case(b"gzip") || value.eq_ignore_ascii_case(b"x-gzip") {
                ContentCoding::Gzip
            } else if value.eq_ignore_ascii_case(b"deflate") {
                ContentCoding::Deflate
            } else if value.eq_ignore_ascii_case(b"identity") {
                ContentCoding::Identity
            } else {
                ContentCoding::Unknown
            };
        } else if name.eq_ignore_ascii_case("content-type") {
            let mime = trim(value.split(|&b| b == b';').next().unwrap_or_default());
            if mime.eq_ignore_ascii_case(DELTA_CONTENT_TYPE.as_bytes()) {
                out.delta = true;
            }
            if let Some(b) = multipart_boundary(value) {
                match b {
                    Some(b) => out.boundary = Some(Span::of(head, b)),
                    None => out.bad_multipart = true,
                }
            }
        }
    }
    out.framing = match (length, chunked) {
        (Some(_), true) => return Err(DeviceError::BadRequest(BadRequest::Framing)),
        (Some(n), false) => Framing::Length(n),
        (None, true) => Framing::Chunked,
        (None, false) => Framing::None,
    };
    Ok(out)
}

pub(crate) fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    v.get(start..end).unwrap_or_default()
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d < 10)?;
        acc.checked_mul(10)?.checked_add(u64::from(d))
    })
}

pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn parse_sha256(v: &[u8]) -> Result<[u8; 32], BadRequest> {
    if v.len() != 64 {
        return Err(BadRequest::Sha256Header);
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(v.chunks_exact(2)) {
        let (Some(hi), Some(lo)) = (
            pair.first().copied().and_then(hex_val),
            pair.get(1).copied().and_then(hex_val),
        ) else {
            return Err(BadRequest::Sha256Header);
        };
        *o = hi << 4 | lo;
    }
    Ok(out)
}

/// `Some(Some(boundary))` for multipart/form-data with a valid boundary,
/// `Some(None)` for multipart/form-data without one, `None` otherwise.
fn multipart_boundary(ct: &[u8]) -> Option<Option<&[u8]>> {
    let mut parts = ct.split(|&b| b == b';');
    let mime = trim(parts.next()?);
    if !mime.eq_ignore_ascii_case(b"multipart/form-data") {
        return None;
    }
    for p in parts {
        let p = trim(p);
        let Some(eq) = p.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (k, v) = p.split_at(eq);
        if !trim(k).eq_ignore_ascii_case(b"boundary") {
            continue;
        }
        let mut v = trim(v.get(1..).unwrap_or_default());
        if v.len() >= 2 && v.first() == Some(&b'"') && v.last() == Some(&b'"') {
            v = v.get(1..v.len() - 1).unwrap_or_default();
        }
        let ok = !v.is_empty()
            && v.len() <= MAX_BOUNDARY
            && v.iter().all(|&b| b.is_ascii_graphic() || b == b' ');
        return Some(ok.then_some(v));
    }
    Some(None)
}

#[cfg(test)]
mod tests;

/// A `tchar` of RFC 9110 5.6.2 (what a method is made of).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
