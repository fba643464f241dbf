//! The device API's HTTP client for `otter push` and `otter device … --to`:
//! the device address as people type it (`192.168.1.50`, `host:3232`,
//! `[::1]:3232`, `http://…`), a bounded retry while the device reboots, and
//! upload progress.

use std::io::{IsTerminal, Read};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::output::hex;

/// The device API's port when an address has none (the virtual device's default).
pub const DEFAULT_PORT: u16 = 3232;

/// How long a request keeps trying a device that refuses connections (it
/// may be rebooting) before giving up.
pub const CONNECT_RETRY: Duration = Duration::from_secs(10);

/// The base URL for a device address: `http://` and port 3232 are added
/// when missing; an IPv6 address needs brackets with a port (`[::1]:3232`).
pub fn device_url(to: &str) -> anyhow::Result<String> {
    let t = to.trim().trim_end_matches('/');
    if t.is_empty() {
        bail!("--to needs the device's address: HOST, HOST:PORT or http://HOST:PORT");
    }
    let (scheme, rest) = match t.split_once("://") {
        Some((s, r)) if s.eq_ignore_ascii_case("http") => ("http", r),
        Some((s, _)) if s.eq_ignore_ascii_case("https") => bail!(
            "--to {to}: the device API is plain http:// (https is not supported by otter push)"
        ),
        Some((s, _)) => bail!("--to {to}: unknown scheme {s}://; use http://HOST:PORT"),
        None => ("http", t),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let bad = || {
        format!(
            "--to {to}: not a device address; use HOST, HOST:PORT, [IPv6]:PORT or http://HOST:PORT"
        )
    };
    let host_port = if let Some(inner) = authority.strip_prefix('[') {
        let (addr, after) = inner.split_once(']').with_context(bad)?;
        addr.parse::<Ipv6Addr>().ok().with_context(bad)?;
        let port = match after {
            "" => DEFAULT_PORT,
            p => p
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .with_context(bad)?,
        };
        format!("[{addr}]:{port}")
    } else if let Ok(IpAddr::V6(v6)) = authority.parse::<IpAddr>() {
        format!("[{v6}]:{DEFAULT_PORT}")
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok().with_context(bad)?),
            None => (authority, DEFAULT_PORT),
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !host_ok {
            bail!(bad());
        }
        format!("{host}:{port}")
    };
    Ok(format!("{scheme}://{host_port}{path}"))
}

/// Whether `err` says no connection could be made (refused, reset before
/// an answer, connect timeout): the device may be rebooting.
fn is_unreachable(err: &ureq::Error) -> bool {
    use std::io::ErrorKind as K;
    match err {
        ureq::Error::Io(e) => matches!(
            e.kind(),
            K::ConnectionRefused | K::ConnectionReset | K::ConnectionAborted | K::NotConnected
        ),
        ureq::Error::ConnectionFailed => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Connect | ureq::Timeout::Resolve),
        _ => false,
    }
}

/// A connection to a device's API.
pub struct Client {
    /// The base URL, `http://host:port`.
    pub base: String,
    token: Option<String>,
    agent: ureq::Agent,
    /// How long [`Client::get`] and uploads retry an unreachable device.
    pub retry: Duration,
    /// Say on standard error when retrying.
    pub quiet: bool,
}

/// An HTTP answer: status and JSON body (or the text, as a JSON string).
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

impl Answer {
    /// The `message` (or `error`) of an error body.
    pub fn message(&self) -> String {
        self.body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| self.body.to_string())
    }
}

impl Client {
    /// A client for the device at `to` (see [`device_url`]).
    pub fn connect(to: &str, token: Option<String>) -> anyhow::Result<Self> {
        Ok(Self::new(&device_url(to)?, token))
    }

    /// A client for the device at `base` (`http://host:port`).
    pub fn new(base: &str, token: Option<String>) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .build()
            .new_agent();
        Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
            retry: CONNECT_RETRY,
            quiet: false,
        }
    }

    /// Runs `call` until it connects, for up to `self.retry` with backoff
    /// (0.2 s doubling to 2 s), saying so once on standard error; then
    /// explains which URL was tried.
    fn with_retry<T>(
        &self,
        what: &str,
        mut call: impl FnMut() -> Result<T, ureq::Error>,
    ) -> anyhow::Result<T> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(200);
        let mut said = false;
        loop {
            match call() {
                Ok(v) => return Ok(v),
                Err(e) if is_unreachable(&e) && started.elapsed() + delay <= self.retry => {
                    if !said && !self.quiet {
                        eprintln!(
                            "the device at {} does not answer ({e}); it may be rebooting: retrying for up to {} s",
                            self.base,
                            self.retry.as_secs()
                        );
                        said = true;
                    }
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) if is_unreachable(&e) => {
                    return Err(anyhow::Error::new(e)).with_context(|| {
                        format!(
                            "{what}: cannot reach the device at {} (tried for {:.0} s): is it running, and is this its address and port?",
                            self.base,
                            started.elapsed().as_secs_f64()
                        )
                    })
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e))
                        .with_context(|| format!("{what}: {}", self.base))
                }
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn answer(resp: ureq::http::Response<ureq::Body>) -> anyhow::Result<Answer> {
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .context("reading the device's answer")?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }

    /// `GET path`, retrying while the device is unreachable.
    pub fn get(&self, path: &str) -> anyhow::Result<Answer> {
        let resp = self.with_retry(&format!("GET {path}"), || self.request_get(path))?;
        Self::answer(resp)
    }

    /// `GET path` once: `None` when the device is unreachable (rebooting).
    pub fn get_once(&self, path: &str) -> Option<Answer> {
        self.request_get(path)
            .ok()
            .and_then(|r| Self::answer(r).ok())
    }

    fn request_get(&self, path: &str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let mut req = self.agent.get(self.url(path));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        req.call()
    }

    /// `POST path` with an empty body (confirm, rollback, reboot, check).
    pub fn post_empty(&self, path: &str) -> anyhow::Result<Answer> {
        let resp = self.with_retry(&format!("POST {path}"), || {
            let mut req = self.agent.post(self.url(path));
            if let Some(t) = &self.token {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            req.send_empty()
        })?;
        Self::answer(resp)
    }

    /// The device's status; a 401/403 is an error that says what to do.
    pub fn status(&self) -> anyhow::Result<Value> {
        Self::status_of(self.get("/api/ota/status")?)
    }

    /// An answer of `GET /api/ota/status` as the status, or why not.
    pub fn status_of(a: Answer) -> anyhow::Result<Value> {
        match a.status {
            200 => Ok(a.body),
            401 => bail!("the device requires a token: pass --token TOKEN (or set OTTER_TOKEN)"),
            403 => bail!("the device refused the token: {}", a.message()),
            s => bail!("the device's status request failed ({s}): {}", a.message()),
        }
    }

    /// `POST path` with `image` as the raw body, reporting progress.
    pub fn upload_to(
        &self,
        path: &str,
        body: &Body<'_>,
        sha256: &[u8; 32],
        progress: &Progress,
    ) -> anyhow::Result<Answer> {
        let resp = self.with_retry(&format!("uploading to {path}"), || {
            let mut reader = ProgressReader {
                data: body.data,
                pos: 0,
                progress,
            };
            let mut req = self
                .agent
                .post(self.url(path))
                .header("Content-Type", body.content_type)
                .header("Content-Length", body.data.len().to_string())
                .header("X-Otter-Sha256", hex(sha256));
            if let Some(e) = body.content_encoding {
                req = req.header("Content-Encoding", e);
            }
            if let Some(t) = &self.token {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            req.send(ureq::SendBody::from_reader(&mut reader))
        })?;
        Self::answer(resp)
    }
}

/// What an upload sends: the bytes and how the device is to decode them
/// (docs/device-api.md). `X-Otter-Sha256` is always the decoded image's.
#[derive(Debug, Clone, Copy)]
pub struct Body<'a> {
    /// The bytes on the wire.
    pub data: &'a [u8],
    /// `Content-Type`: `application/octet-stream`, or
    /// `application/x-esp-delta-ota` for a patch.
    pub content_type: &'static str,
    /// `Content-Encoding` (`gzip`), if any.
    pub content_encoding: Option<&'static str>,
}

impl<'a> Body<'a> {
    /// A plain image.
    pub fn plain(data: &'a [u8]) -> Self {
        Self {
            data,
            content_type: "application/octet-stream",
            content_encoding: None,
        }
    }
}

/// Upload progress: a bar on a terminal, a line every 10% otherwise, or nothing.
pub enum Progress {
    /// A bar.
    Bar(ProgressBar),
    /// Lines on standard error.
    Lines {
        /// Total bytes.
        total: u64,
        /// Next 10% mark to print.
        next: std::cell::Cell<u64>,
    },
    /// Silent.
    Quiet,
}

impl Progress {
    /// The progress display for `total` bytes: a bar when standard error is
    /// a terminal, lines otherwise, nothing when `quiet`.
    pub fn new(total: u64, quiet: bool) -> Self {
        if quiet {
            return Progress::Quiet;
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "uploading [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                total,
                next: std::cell::Cell::new(10),
            }
        }
    }

    fn set(&self, pos: u64) {
        match self {
            Progress::Bar(b) => b.set_position(pos),
            Progress::Lines { total, next } => {
                if *total > 0 && next.get() <= 100 && pos * 100 >= total * next.get() {
                    let pct = pos * 100 / total;
                    eprintln!("uploading: {pct:>3}% ({pos} of {total} bytes)");
                    next.set((pct / 10 + 1) * 10);
                }
            }
            Progress::Quiet => {}
        }
    }

    pub(super) fn finish(&self) {
        if let Progress::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

struct ProgressReader<'a> {
    data: &'a [u8],
    pos: usize,
    progress: &'a Progress,
}

impl Read for ProgressReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(buf.len()).min(16 * 1024);
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n;
        self.progress.set(self.pos as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_people_type_them() {
        for (to, url) in [
            ("127.0.0.1:3232", "http://127.0.0.1:3232"),
            ("127.0.0.1", "http://127.0.0.1:3232"),
            ("otter.local", "http://otter.local:3232"),
            ("otter.local:80", "http://otter.local:80"),
            ("http://192.168.1.50:3232/", "http://192.168.1.50:3232"),
            ("http://192.168.1.50", "http://192.168.1.50:3232"),
            ("[::1]:3232", "http://[::1]:3232"),
            ("[::1]", "http://[::1]:3232"),
            ("::1", "http://[::1]:3232"),
            ("http://[fe80::1]:8080", "http://[fe80::1]:8080"),
        ] {
            assert_eq!(device_url(to).unwrap(), url, "{to}");
        }
        for bad in [
            "",
            "host:port",
            "host:99999",
            "[::1",
            "[nonsense]:1",
            "ftp://x",
            "a b",
        ] {
            assert!(device_url(bad).is_err(), "{bad}");
        }
    }
}
