//! The fleet check-in (docs/fleet.md) as sans-IO pieces: the document the
//! device sends ([`Report::write`], into a caller-lent buffer) and the
//! server's answer ([`parse_answer`]: the acknowledged event ids and the
//! offer, if any). The caller owns the HTTP exchange, the token and the
//! outbox it keeps across power cuts; the manifest an offer names then
//! goes through [`super::Pull::check`] like any other.

use crate::json::JsonOut;

use super::{ServerFault, Text};

/// One app slot as the check-in reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotReport<'a> {
    /// `ota_0`, `factory`, ...
    pub name: &'a str,
    /// Its otadata state name (`valid`, `pending_verify`, ...), if any.
    pub state: Option<&'a str>,
    /// The version in it, if an image is there.
    pub version: Option<&'a str>,
}

/// One event waiting for the server's acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventReport<'a> {
    /// The device's id for it (the server records each once).
    pub id: &'a str,
    /// `update_started`, `verified`, `confirmed`, `self_test_failed`,
    /// `rolled_back`, `refused`, `download_failed`.
    pub kind: &'a str,
    /// The server's release id.
    pub release: Option<&'a str>,
    /// The firmware version.
    pub version: Option<&'a str>,
    /// Why (a code and message).
    pub reason: Option<&'a str>,
    /// When (Unix seconds).
    pub at: u64,
}

/// The check-in document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report<'a> {
    /// The device's id on the server.
    pub device_id: &'a str,
    /// The running firmware's product (project name).
    pub product: &'a str,
    /// The chip.
    pub chip: &'a str,
    /// The running firmware's version.
    pub version: &'a str,
    /// The running image's SHA-256, hex.
    pub sha256: Option<&'a str>,
    /// The anti-rollback counter, when on.
    pub secure_counter: Option<u32>,
    /// The running slot's name.
    pub running_slot: &'a str,
    /// The running slot's otadata state name.
    pub state: Option<&'a str>,
    /// The app slots (at most 16 are sent).
    pub slots: &'a [SlotReport<'a>],
    /// The events since the last acknowledged check-in (at most 64 are
    /// sent: the server's limit).
    pub events: &'a [EventReport<'a>],
}

/// Events one check-in carries at most (the server's limit).
pub const MAX_EVENTS: usize = 64;
/// The longest answer accepted.
pub const MAX_ANSWER: usize = 64 * 1024;

impl Report<'_> {
    /// Writes the document; `false` when `out` was too small.
    pub fn write(&self, out: &mut JsonOut<'_>) -> bool {
        out.raw("{").key("device_id").string(self.device_id);
        out.raw(",").key("product").string(self.product);
        out.raw(",").key("chip").string(self.chip);
        out.raw(",").key("version").string(self.version);
        out.raw(",").key("sha256").opt_string(self.sha256);
        out.raw(",")
            .key("secure_counter")
            .opt_num(self.secure_counter.map(u64::from));
        out.raw(",").key("boot").raw("{");
        out.key("running_slot").string(self.running_slot);
        out.raw(",").key("state").opt_string(self.state);
        out.raw(",").key("slots").raw("[");
        for (i, s) in self.slots.iter().take(16).enumerate() {
            if i > 0 {
                out.raw(",");
            }
            out.raw("{").key("name").string(s.name);
            out.raw(",").key("state").opt_string(s.state);
            out.raw(",").key("version").opt_string(s.version);
            out.raw("}");
        }
        out.raw("]}");
        out.raw(",").key("events").raw("[");
        for (i, e) in self.events.iter().take(MAX_EVENTS).enumerate() {
            if i > 0 {
                out.raw(",");
            }
            out.raw("{").key("id").string(e.id);
            out.raw(",").key("kind").string(e.kind);
            for (k, v) in [
                ("release", e.release),
                ("version", e.version),
                ("reason", e.reason),
            ] {
                if let Some(v) = v {
                    out.raw(",").key(k).string(v);
                }
            }
            out.raw(",").key("at").num(e.at);
            out.raw("}");
        }
        out.raw("]}");
        !out.overflowed()
    }
}

/// What a check-in's answer offers: a release to install now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The server's release id.
    pub release: Text<128>,
    /// Its firmware version.
    pub version: Text<128>,
    /// Its firmware SHA-256, hex.
    pub sha256: Text<64>,
    /// The manifest's URL, relative to the server's or absolute.
    pub manifest_url: Text<{ otter_release::MAX_URL_LEN }>,
}

/// Parses the answer to a check-in (`200`): calls `acked` with every
/// acknowledged event id and returns the offer, `None` when the server
/// offers nothing. A body that is not such a JSON object, or an offer
/// missing a field, is `server_answer`.
pub fn parse_answer(
    body: &[u8],
    acked: &mut dyn FnMut(&str),
) -> Result<Option<Offer>, ServerFault> {
    if body.len() > MAX_ANSWER {
        return Err(ServerFault::Answer);
    }
    let mut p = Parser { b: body, at: 0 };
    let mut offer = None;
    p.object(0, &mut |p, key| match key {
        k if k == "acknowledged" => {
            if p.null()? {
                return Ok(());
            }
            p.array(&mut |p| {
                let mut id = Text::<128>::new();
                p.string(&mut id)?;
                acked(id.as_str());
                Ok(())
            })
        }
        k if k == "offer" => {
            if p.null()? {
                return Ok(());
            }
            let mut o = Offer {
                release: Text::new(),
                version: Text::new(),
                sha256: Text::new(),
                manifest_url: Text::new(),
            };
            let mut seen = [false; 4];
            p.object(1, &mut |p, key| {
                let (i, r) = match key.as_str() {
                    "release" => (0, p.string(&mut o.release)),
                    "version" => (1, p.string(&mut o.version)),
                    "sha256" => (2, p.string(&mut o.sha256)),
                    "manifest_url" => (3, p.string(&mut o.manifest_url)),
                    _ => return p.skip(2),
                };
                r?;
                if let Some(s) = seen.get_mut(i) {
                    *s = true;
                }
                Ok(())
            })?;
            if seen.iter().all(|s| *s) {
                offer = Some(o);
                Ok(())
            } else {
                Err(ServerFault::Answer)
            }
        }
        _ => p.skip(1),
    })?;
    p.ws();
    if p.at != body.len() {
        return Err(ServerFault::Answer);
    }
    Ok(offer)
}

/// An object key (longer keys are skipped unread).
type Key = Text<32>;

/// A bounded JSON reader: strings into fixed buffers (too long is an
/// error), other values skipped, nesting at most [`MAX_DEPTH`].
struct Parser<'a> {
    b: &'a [u8],
    at: usize,
}

const MAX_DEPTH: usize = 16;

type R = Result<(), ServerFault>;

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8) -> R {
        self.ws();
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(ServerFault::Answer)
        }
    }

    fn lit(&mut self, s: &[u8]) -> bool {
        if self.b.get(self.at..self.at + s.len()) == Some(s) {
            self.at += s.len();
            true
        } else {
            false
        }
    }

    fn null(&mut self) -> Result<bool, ServerFault> {
        self.ws();
        Ok(self.lit(b"null"))
    }

    fn object(&mut self, depth: usize, f: &mut dyn FnMut(&mut Self, Key) -> R) -> R {
        if depth > MAX_DEPTH {
            return Err(ServerFault::Answer);
        }
        self.eat(b'{')?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            let mut k = Text::<32>::new();
            // A key longer than any we read is one we skip.
            let long = self.string_cut(&mut k)?;
            self.eat(b':')?;
            if long {
                self.skip(depth + 1)?;
            } else {
                f(self, k)?;
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(ServerFault::Answer),
            }
        }
    }

    fn array(&mut self, f: &mut dyn FnMut(&mut Self) -> R) -> R {
        self.eat(b'[')?;
        self.ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        loop {
            f(self)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(ServerFault::Answer),
            }
        }
    }

    /// A string into `out`; longer than `out` is an error.
    fn string<const N: usize>(&mut self, out: &mut Text<N>) -> R {
        if self.string_cut(out)? {
            Err(ServerFault::Answer)
        } else {
            Ok(())
        }
    }

    /// A string into `out`; returns whether it was cut.
    fn string_cut<const N: usize>(&mut self, out: &mut Text<N>) -> Result<bool, ServerFault> {
        self.eat(b'"')?;
        let mut cut = false;
        loop {
            let start = self.at;
            while matches!(self.peek(), Some(c) if c != b'"' && c != b'\\' && c >= 0x20) {
                self.at += 1;
            }
            let run = self.b.get(start..self.at).unwrap_or_default();
            let s = core::str::from_utf8(run).map_err(|_| ServerFault::Answer)?;
            cut |= !out.push(s);
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(cut);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let c = self.peek().ok_or(ServerFault::Answer)?;
                    self.at += 1;
                    let ch = match c {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hex = self
                                .b
                                .get(self.at..self.at + 4)
                                .ok_or(ServerFault::Answer)?;
                            self.at += 4;
                            let hex = core::str::from_utf8(hex).map_err(|_| ServerFault::Answer)?;
                            let n =
                                u32::from_str_radix(hex, 16).map_err(|_| ServerFault::Answer)?;
                            // Surrogates (non-BMP characters) are not in
                            // any field read here: a replacement character.
                            char::from_u32(n).unwrap_or('\u{fffd}')
                        }
                        _ => return Err(ServerFault::Answer),
                    };
                    let mut b = [0u8; 4];
                    cut |= !out.push(ch.encode_utf8(&mut b));
                }
                _ => return Err(ServerFault::Answer),
            }
        }
    }

    fn skip(&mut self, depth: usize) -> R {
        if depth > MAX_DEPTH {
            return Err(ServerFault::Answer);
        }
        self.ws();
        match self.peek() {
            Some(b'{') => self.object(depth, &mut |p, _| p.skip(depth + 1)),
            Some(b'[') => self.array(&mut |p| p.skip(depth + 1)),
            Some(b'"') => {
                let mut sink = Text::<0>::new();
                self.string_cut(&mut sink).map(|_| ())
            }
            Some(b't') if self.lit(b"true") => Ok(()),
            Some(b'f') if self.lit(b"false") => Ok(()),
            Some(b'n') if self.lit(b"null") => Ok(()),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.at;
                while matches!(
                    self.peek(),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.at += 1;
                }
                if self.at == start {
                    Err(ServerFault::Answer)
                } else {
                    Ok(())
                }
            }
            _ => Err(ServerFault::Answer),
        }
    }
}
