//! [`Multipart`]: the file field of a `multipart/form-data` body, as Python
//! requests (`files=`) and `curl -F` send it, delivered as it streams.
//!
//! The first part that carries a file (a `filename=` parameter, or a field
//! named `file`, `firmware`, `update`, `image` or `www`) is delivered; every
//! other part, the preamble and the epilogue are discarded. Boundaries may
//! be split across reads at any byte. A body that ends before the closing
//! boundary is broken ([`BadRequest::Multipart`]).

use crate::error::{BadRequest, DeviceError};

use super::MAX_BOUNDARY;

/// Longest part head (its header lines) accepted.
pub const MAX_PART_HEAD: usize = 512;
/// Header lines a part head may have.
const MAX_PART_HEADERS: usize = 8;
/// Field names that carry the file even without `filename=`.
const FILE_FIELDS: [&str; 5] = ["file", "firmware", "update", "image", "www"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Looking for the first delimiter (`matched` bytes of it seen).
    Preamble,
    /// After a delimiter: `-` seen once (`dash`), or expecting CRLF.
    AfterDelim { dash: bool, cr: bool },
    /// Reading a part's header lines.
    PartHead,
    /// Inside a part's content; `deliver` for the file part.
    Content { deliver: bool },
    /// After the closing delimiter.
    Epilogue,
}

/// The multipart decoder; see the module docs.
#[derive(Debug, Clone)]
pub struct Multipart {
    /// `\r\n--` + boundary.
    delim: [u8; MAX_BOUNDARY + 4],
    delim_len: usize,
    matched: usize,
    state: State,
    head: [u8; MAX_PART_HEAD],
    head_len: usize,
    /// The file part has been seen (and delivered in full once its
    /// delimiter arrived).
    file_seen: bool,
    file_done: bool,
}

fn broken(why: &'static str) -> DeviceError {
    DeviceError::BadRequest(BadRequest::Multipart(why))
}

impl Multipart {
    /// A decoder for `boundary` (1 to 70 bytes, no CR or LF).
    pub fn new(boundary: &[u8]) -> Result<Self, DeviceError> {
        if boundary.is_empty()
            || boundary.len() > MAX_BOUNDARY
            || boundary.iter().any(|&b| b == b'\r' || b == b'\n')
        {
            return Err(broken("bad boundary"));
        }
        let mut delim = [0u8; MAX_BOUNDARY + 4];
        let len = boundary.len() + 4;
        if let Some(d) = delim.get_mut(..len) {
            d[..4].copy_from_slice(b"\r\n--");
            d[4..].copy_from_slice(boundary);
        }
        // The body starts right after a virtual CRLF, so a delimiter at its
        // very start matches.
        Ok(Self {
            delim,
            delim_len: len,
            matched: 2,
            state: State::Preamble,
            head: [0; MAX_PART_HEAD],
            head_len: 0,
            file_seen: false,
            file_done: false,
        })
    }

    /// Whether the file part was found and delivered to its end.
    pub fn file_complete(&self) -> bool {
        self.file_done
    }

    /// Whether a file part has started.
    pub fn file_started(&self) -> bool {
        self.file_seen
    }

    /// Checks the decoder at the end of the body.
    pub fn finish(&self) -> Result<(), DeviceError> {
        match self.state {
            State::Epilogue => Ok(()),
            _ if self.file_done => Ok(()),
            State::Preamble => Err(broken(
                "the boundary named in Content-Type never appears in the body",
            )),
            _ => Err(broken("the body ended before the closing boundary")),
        }
    }

    /// Feeds body bytes; the file part's content goes to `sink`.
    pub fn feed<S>(&mut self, input: &[u8], sink: &mut S) -> Result<(), DeviceError>
    where
        S: FnMut(&[u8]) -> Result<(), DeviceError>,
    {
        let mut i = 0usize;
        while let Some(&b) = input.get(i) {
            match self.state {
                State::Preamble | State::Content { .. } => {
                    let deliver = matches!(self.state, State::Content { deliver: true });
                    if self.matched == 0 {
                        // Fast path: everything up to the next CR is content.
                        let rest = input.get(i..).unwrap_or_default();
                        let n = rest.iter().position(|&c| c == b'\r').unwrap_or(rest.len());
                        if n > 0 {
                            if deliver {
                                sink(rest.get(..n).unwrap_or_default())?;
                            }
                            i += n;
                            continue;
                        }
                    }
                    i += 1;
                    if self.delim.get(self.matched) == Some(&b) {
                        self.matched += 1;
                        if self.matched == self.delim_len {
                            self.matched = 0;
                            if deliver {
                                self.file_done = true;
                            }
                            self.state = State::AfterDelim {
                                dash: false,
                                cr: false,
                            };
                        }
                        continue;
                    }
                    // Not a delimiter after all: what matched was content.
                    // (CR occurs in the delimiter only at its start.)
                    let held = self.matched;
                    self.matched = 0;
                    let in_preamble = matches!(self.state, State::Preamble);
                    if deliver && held > 0 && !in_preamble {
                        sink(self.delim.get(..held).unwrap_or_default())?;
                    }
                    if b == b'\r' {
                        self.matched = 1;
                    } else if deliver {
                        sink(&[b])?;
                    }
                }
                State::AfterDelim { dash, cr } => {
                    i += 1;
                    self.state = match (dash, cr, b) {
                        (false, false, b'-') => State::AfterDelim {
                            dash: true,
                            cr: false,
                        },
                        (true, false, b'-') => State::Epilogue,
                        (false, false, b'\r') => State::AfterDelim {
                            dash: false,
                            cr: true,
                        },
                        // Transport padding (RFC 2046: LWSP before CRLF).
                        (false, false, b' ' | b'\t') => State::AfterDelim {
                            dash: false,
                            cr: false,
                        },
                        (false, true, b'\n') => {
                            self.head_len = 0;
                            State::PartHead
                        }
                        _ => return Err(broken("bad delimiter line")),
                    };
                }
                State::PartHead => {
                    i += 1;
                    let Some(slot) = self.head.get_mut(self.head_len) else {
                        return Err(broken("a part head is too large"));
                    };
                    *slot = b;
                    self.head_len += 1;
                    let h = self.head.get(..self.head_len).unwrap_or_default();
                    if h == b"\r\n" {
                        // A part without headers: not a file.
                        self.state = State::Content { deliver: false };
                    } else if h.ends_with(b"\r\n\r\n") {
                        let is_file = part_is_file(h)?;
                        let deliver = is_file && !self.file_seen;
                        if deliver {
                            self.file_seen = true;
                        }
                        self.state = State::Content { deliver };
                    }
                }
                State::Epilogue => return Ok(()),
            }
        }
        Ok(())
    }
}

/// Whether a part head (ending in CRLF CRLF) describes the file field.
fn part_is_file(head: &[u8]) -> Result<bool, DeviceError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_PART_HEADERS];
    match httparse::parse_headers(head, &mut headers) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(broken("a part head does not parse")),
    }
    for h in headers.iter().filter(|h| !h.name.is_empty()) {
        if !h.name.eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        let mut params = h.value.split(|&b| b == b';');
        let _ = params.next();
        for p in params {
            let p = super::trim(p);
            let Some(eq) = p.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (k, v) = p.split_at(eq);
            let k = super::trim(k);
            let mut v = super::trim(v.get(1..).unwrap_or_default());
            if v.len() >= 2 && v.first() == Some(&b'"') && v.last() == Some(&b'"') {
                v = v.get(1..v.len() - 1).unwrap_or_default();
            }
            if k.eq_ignore_ascii_case(b"filename") || k.eq_ignore_ascii_case(b"filename*") {
                return Ok(true);
            }
            if k.eq_ignore_ascii_case(b"name") && FILE_FIELDS.iter().any(|f| f.as_bytes() == v) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
