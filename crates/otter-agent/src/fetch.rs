//! Resumable HTTP(S) downloads for the pull client.
//!
//! [`Fetcher`] fetches a release's small files whole ([`Fetcher::get_small`]:
//! the manifest and its signature) and streams the big ones
//! ([`Fetcher::download`]: firmware and web-UI images) into a [`Sink`] — the
//! update session — without ever holding an image in memory.
//!
//! This module is the network adapter only: what the bytes mean (hashing,
//! the update session, the release checks) belongs to the caller's sink.
//!
//! # Memory
//!
//! A download holds, whatever the image size:
//!
//! | buffer | size |
//! | --- | --- |
//! | staging buffer handed to the sink | [`BUFFER_SIZE`] = 4 KiB (ESP-IDF's `esp_https_ota` uses 1–8 KB) |
//! | hyper's read buffer (headers and body) | at most [`HTTP_BUF_MAX`] = 8 KiB |
//! | rustls record buffers | one TLS record (16 KiB plus overhead) each way |
//!
//! The sink is handed at most [`BUFFER_SIZE`] bytes per [`Sink::write`].
//!
//! # Resume
//!
//! A dropped connection, a reset, a stalled read (no data for
//! [`FetchConfig::read_timeout`]), a server error (408, 429, 500, 502, 503,
//! 504) or a body that ends early is *transient*: the fetcher reconnects and
//! asks for `Range: bytes=N-`, where N is the number of bytes the sink has
//! accepted. Bytes already received when a connection breaks are still handed
//! to the sink, so a cut costs no re-download (at most one staging buffer
//! could be lost, and is not). The answer is checked:
//!
//! - `206` whose `Content-Range` is `bytes N-(len-1)/len`: streaming goes on
//!   at N.
//! - `200` (the server ignores `Range`): [`Sink::restart`], then the whole
//!   body from offset 0, so nothing is ever spliced.
//! - `416`, any other status, a `Content-Range` that does not match, or a
//!   length other than the expected one: an error, not retried.
//!
//! After [`FetchConfig::max_attempts`] consecutive transient failures without
//! progress the fetcher gives up ([`FetchError::GaveUp`]). An attempt that
//! moves the sink past its furthest point so far resets the count.
//!
//! # Trust
//!
//! `https://` needs a [`Trust`]: the server is verified against the given CA
//! certificates only ([`Trust::Ca`]: chain, host name and validity period
//! checked by webpki) or must present exactly one pinned certificate
//! ([`Trust::Pinned`]). `http://` is refused unless
//! [`FetchConfig::allow_http`] is set, as ESP-IDF's `CONFIG_OTA_ALLOW_HTTP`;
//! each fetch over plain HTTP then logs a warning.
//!
//! # Redirects
//!
//! Up to [`MAX_REDIRECTS`] redirects (301, 302, 303, 307, 308) are followed,
//! on every request, to a URL with the same scheme: `https` never turns into
//! `http`. The trust settings apply to every host reached.
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper::header::{self, HeaderMap};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
pub use url::Url;

mod error;
pub(crate) mod trust;

pub use error::{FetchError, TlsFailure};
pub use trust::Trust;

/// Bytes staged before they are handed to the sink: the most a single
/// [`Sink::write`] receives. 4 KiB is one flash sector; ESP-IDF's
/// `esp_https_ota` reads in 1–8 KB pieces.
pub const BUFFER_SIZE: usize = 4096;

/// hyper's read buffer limit (`max_buf_size`): response headers must fit, and
/// body reads never buffer more. hyper's minimum.
pub const HTTP_BUF_MAX: usize = 8192;

/// Redirects followed per request.
pub const MAX_REDIRECTS: usize = 3;

const USER_AGENT: &str = concat!("otter-agent/", env!("CARGO_PKG_VERSION"));

/// How a [`Fetcher`] connects, trusts and retries.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Trust for `https://`; `None` refuses `https://` URLs.
    pub trust: Option<Trust>,
    /// Allow plain `http://` (development only; logged as a warning).
    pub allow_http: bool,
    /// Limit for the TCP connect plus the TLS handshake.
    pub connect_timeout: Duration,
    /// Limit for each read: the response head and every body piece. A
    /// stalled server is a transient failure.
    pub read_timeout: Duration,
    /// Consecutive attempts without progress before giving up (at least 1).
    pub max_attempts: u32,
    /// Pause before each retry.
    pub retry_delay: Duration,
    /// The whole of a small fetch (manifest, signature, check-in answer),
    /// every attempt and retry included: a server that drips bytes just
    /// faster than `read_timeout` cannot hold a check for longer.
    pub small_deadline: Duration,
    /// A download must receive at least this many bytes in every
    /// `progress_window` (one connection's worth), or it is abandoned as
    /// too slow (not retried; the next check resumes from the slot).
    pub min_progress: u64,
    /// The window of [`FetchConfig::min_progress`].
    pub progress_window: Duration,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            trust: None,
            allow_http: false,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(10),
            max_attempts: 5,
            retry_delay: Duration::from_secs(1),
            small_deadline: Duration::from_secs(60),
            // 4 KiB a minute: slower than any real link, faster than any
            // drip that would hold the update lock for days.
            min_progress: 4096,
            progress_window: Duration::from_secs(60),
        }
    }
}

/// Where a download's bytes go: the update session, a hasher, a file.
///
/// Calls are synchronous and made from the fetching task; a slow sink slows
/// the download (TCP flow control), it never makes the fetcher buffer more.
pub trait Sink {
    /// Forget everything written: the next write is at offset 0. Called when
    /// a server ignores a `Range` request and sends the whole body again.
    fn restart(&mut self) -> Result<(), SinkError>;
    /// Take `data` (at most [`BUFFER_SIZE`] bytes) at `offset` in the
    /// resource. Offsets are contiguous from the download's `start` (or from
    /// 0 after [`Sink::restart`]). An error aborts the download.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError>;
}

impl<S: Sink + ?Sized> Sink for &mut S {
    fn restart(&mut self) -> Result<(), SinkError> {
        (**self).restart()
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        (**self).write(offset, data)
    }
}

/// Collects a body in memory: for tests and small resources only.
impl Sink for Vec<u8> {
    fn restart(&mut self) -> Result<(), SinkError> {
        self.clear();
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        if offset != self.len() as u64 {
            return Err(SinkError::new(format!(
                "write at offset {offset}, expected {}",
                self.len()
            )));
        }
        self.extend_from_slice(data);
        Ok(())
    }
}

/// A sink's own error, kept whole inside [`FetchError::Sink`].
#[derive(Debug)]
pub struct SinkError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl SinkError {
    /// Wrap any error (or a message).
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        SinkError(error.into())
    }
    /// The wrapped error.
    pub fn get_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
    /// The wrapped error, if it is a `T`.
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.0.downcast_ref()
    }
    /// Unwrap.
    pub fn into_inner(self) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self.0
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// What a download took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DownloadStats {
    /// Body bytes received off the wire, over all connections (bytes of a
    /// restarted body count twice).
    pub body_bytes: u64,
    /// TCP connections opened, redirects included.
    pub connections: u32,
    /// Requests answered `206` that continued a download.
    pub resumes: u32,
    /// Times a server ignored `Range` and the sink was restarted.
    pub restarts: u32,
    /// The staging buffer's size, [`BUFFER_SIZE`].
    pub buffer_size: usize,
}

/// A configured HTTP(S) client; cheap to share by reference.
#[derive(Clone)]
pub struct Fetcher {
    tls: Option<TlsConnector>,
    allow_http: bool,
    connect_timeout: Duration,
    read_timeout: Duration,
    max_attempts: u32,
    retry_delay: Duration,
    small_deadline: Duration,
    min_progress: u64,
    progress_window: Duration,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("tls", &self.tls.is_some())
            .field("allow_http", &self.allow_http)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("retry_delay", &self.retry_delay)
            .finish()
    }
}

impl Fetcher {
    /// Build the TLS client for the configured trust.
    pub fn new(config: FetchConfig) -> Result<Fetcher, FetchError> {
        if config.max_attempts == 0 {
            return Err(FetchError::NoAttempts);
        }
        let tls = config.trust.map(trust::tls_connector).transpose()?;
        Ok(Fetcher {
            tls,
            allow_http: config.allow_http,
            connect_timeout: config.connect_timeout,
            read_timeout: config.read_timeout,
            max_attempts: config.max_attempts,
            retry_delay: config.retry_delay,
            small_deadline: config.small_deadline,
            min_progress: config.min_progress,
            progress_window: config.progress_window,
        })
    }

    /// GET a small resource (manifest, signature) whole. A body over `limit`
    /// bytes is refused, from its `Content-Length` before any byte is read
    /// when there is one. Only `200` is accepted; transient failures are
    /// retried as in [`Fetcher::download`].
    pub async fn get_small(&self, url: &Url, limit: usize) -> Result<Vec<u8>, FetchError> {
        self.check_url(url)?;
        self.warn_plain_http(url);
        timeout(self.small_deadline, self.get_small_attempts(url, limit))
            .await
            .map_err(|_| FetchError::Deadline {
                url: url.clone(),
                after: self.small_deadline,
            })?
    }

    async fn get_small_attempts(&self, url: &Url, limit: usize) -> Result<Vec<u8>, FetchError> {
        let mut failures = 0;
        loop {
            let mut connections = 0;
            match self.small_attempt(url, limit, &mut connections).await {
                Ok(body) => return Ok(body),
                Err(e) if e.is_transient() => {
                    failures += 1;
                    if failures >= self.max_attempts {
                        return Err(self.gave_up(url, failures, e));
                    }
                    tracing::debug!(%url, error = %e, "retrying");
                    tokio::time::sleep(self.retry_delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stream bytes `start..len` of `url` into `sink`, resuming across
    /// broken connections (see the module docs). `len` is the resource's
    /// full length, from the manifest; a server announcing another length is
    /// refused. `start` is how much the sink already holds (0, or the
    /// written prefix after a power cut). `start == len` does nothing.
    pub async fn download<S: Sink + ?Sized>(
        &self,
        url: &Url,
        start: u64,
        len: u64,
        sink: &mut S,
    ) -> Result<DownloadStats, FetchError> {
        if start > len {
            return Err(FetchError::InvalidRange { start, len });
        }
        self.check_url(url)?;
        self.warn_plain_http(url);
        let mut stats = DownloadStats {
            buffer_size: BUFFER_SIZE,
            ..DownloadStats::default()
        };
        let mut buf = [0u8; BUFFER_SIZE];
        let mut pos = start;
        let mut furthest = start;
        let mut failures = 0;
        while pos < len {
            let result = self
                .download_attempt(url, &mut pos, len, sink, &mut buf, &mut stats)
                .await;
            match result {
                Ok(()) => {}
                Err(e) if e.is_transient() => {
                    if pos > furthest {
                        furthest = pos;
                        failures = 0;
                    } else {
                        failures += 1;
                        if failures >= self.max_attempts {
                            return Err(self.gave_up(url, failures, e));
                        }
                    }
                    tracing::debug!(%url, at = pos, error = %e, "connection lost, resuming");
                    tokio::time::sleep(self.retry_delay).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(stats)
    }

    /// One request: check the answer, then stream until the body ends or
    /// breaks. `pos` is always the number of bytes the sink has accepted.
    async fn download_attempt<S: Sink + ?Sized>(
        &self,
        url: &Url,
        pos: &mut u64,
        len: u64,
        sink: &mut S,
        buf: &mut [u8; BUFFER_SIZE],
        stats: &mut DownloadStats,
    ) -> Result<(), FetchError> {
        let from = *pos;
        let (response, _conn, at) = self.open(url, from, &mut stats.connections).await?;
        let status = response.status();
        match status {
            StatusCode::OK => {
                if let Some(got) = content_length(response.headers()) {
                    if got != len {
                        return Err(FetchError::LengthMismatch {
                            url: at,
                            expected: len,
                            got,
                        });
                    }
                }
                if from > 0 {
                    tracing::debug!(url = %at, from, "the server ignored Range: starting over");
                    sink.restart().map_err(|source| FetchError::Sink {
                        url: at.clone(),
                        offset: 0,
                        source,
                    })?;
                    *pos = 0;
                    stats.restarts += 1;
                }
            }
            StatusCode::PARTIAL_CONTENT => {
                check_partial(&at, response.headers(), from, len)?;
                if from > 0 {
                    stats.resumes += 1;
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                return Err(FetchError::RangeNotSatisfiable {
                    url: at,
                    start: from,
                })
            }
            _ => {
                return Err(FetchError::Status {
                    url: at,
                    status: status.as_u16(),
                })
            }
        }

        let mut body = response.into_body();
        let mut staged = 0usize;
        let mut window = (tokio::time::Instant::now(), *pos);
        let streamed = loop {
            let (since, at_start) = window;
            if since.elapsed() >= self.progress_window {
                let got = *pos + staged as u64 - at_start;
                if got < self.min_progress {
                    break Err(FetchError::TooSlow {
                        url: at.clone(),
                        got,
                        window: self.progress_window,
                        min: self.min_progress,
                    });
                }
                window = (tokio::time::Instant::now(), *pos + staged as u64);
            }
            let frame = match timeout(self.read_timeout, body.frame()).await {
                Err(_) => {
                    break Err(FetchError::ReadTimeout {
                        url: at.clone(),
                        after: self.read_timeout,
                    })
                }
                Ok(None) => break Ok(()),
                Ok(Some(Err(source))) => {
                    break Err(FetchError::Http {
                        url: at.clone(),
                        source,
                    })
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            stats.body_bytes += data.len() as u64;
            let received = *pos + staged as u64 + data.len() as u64;
            if received > len {
                break Err(FetchError::LengthMismatch {
                    url: at.clone(),
                    expected: len,
                    got: received,
                });
            }
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = rest.len().min(BUFFER_SIZE - staged);
                let (head, tail) = rest.split_at(n);
                buf[staged..staged + n].copy_from_slice(head);
                staged += n;
                rest = tail;
                if staged == BUFFER_SIZE {
                    write_sink(sink, &at, pos, &buf[..])?;
                    staged = 0;
                }
            }
        };
        // Bytes received before a break are good: keep them, so a cut costs
        // no re-download.
        if staged > 0 {
            write_sink(sink, &at, pos, &buf[..staged])?;
        }
        streamed?;
        if *pos < len {
            return Err(FetchError::ShortBody {
                url: at,
                expected: len,
                got: *pos,
            });
        }
        Ok(())
    }

    async fn small_attempt(
        &self,
        url: &Url,
        limit: usize,
        connections: &mut u32,
    ) -> Result<Vec<u8>, FetchError> {
        let (response, _conn, at) = self.open(url, 0, connections).await?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status {
                url: at,
                status: response.status().as_u16(),
            });
        }
        let announced = content_length(response.headers());
        if let Some(size) = announced {
            if size > limit as u64 {
                return Err(FetchError::TooLarge {
                    url: at,
                    limit,
                    size: Some(size),
                });
            }
        }
        // `announced <= limit` here, so the cast cannot truncate.
        let mut out = Vec::with_capacity(announced.map_or(0, |n| n as usize).min(limit));
        let mut body = response.into_body();
        loop {
            let frame = match timeout(self.read_timeout, body.frame()).await {
                Err(_) => {
                    return Err(FetchError::ReadTimeout {
                        url: at,
                        after: self.read_timeout,
                    })
                }
                Ok(None) => return Ok(out),
                Ok(Some(Err(source))) => return Err(FetchError::Http { url: at, source }),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > limit {
                    return Err(FetchError::TooLarge {
                        url: at,
                        limit,
                        size: None,
                    });
                }
                out.extend_from_slice(&data);
            }
        }
    }

    /// Connect, send a GET (with `Range: bytes=from-` when `from > 0`) and
    /// follow redirects. Returns the response, the connection it arrived on
    /// (keep it while reading the body) and the URL that answered.
    async fn open(
        &self,
        url: &Url,
        from: u64,
        connections: &mut u32,
    ) -> Result<(Response<Incoming>, Connection, Url), FetchError> {
        let mut current = url.clone();
        let mut hops = 0;
        loop {
            let mut conn = self.connect(&current).await?;
            *connections += 1;
            let request = build_request(&current, from)?;
            let response = timeout(self.read_timeout, conn.sender.send_request(request))
                .await
                .map_err(|_| FetchError::ReadTimeout {
                    url: current.clone(),
                    after: self.read_timeout,
                })?
                .map_err(|source| FetchError::Http {
                    url: current.clone(),
                    source,
                })?;
            let Some(location) = redirect_location(&response) else {
                return Ok((response, conn, current));
            };
            if hops == MAX_REDIRECTS {
                return Err(FetchError::TooManyRedirects { url: current });
            }
            hops += 1;
            let bad = |reason| FetchError::BadRedirect {
                url: current.clone(),
                location: location.clone().into(),
                reason,
            };
            let next = current
                .join(&location)
                .map_err(|_| bad("not a valid URL"))?;
            if next.scheme() != current.scheme() {
                return Err(bad("redirects must keep the URL's scheme"));
            }
            if next.host().is_none() {
                return Err(bad("no host"));
            }
            tracing::debug!(from = %current, to = %next, "following redirect");
            current = next;
        }
    }

    async fn connect(&self, url: &Url) -> Result<Connection, FetchError> {
        let port = url
            .port_or_known_default()
            .ok_or_else(|| FetchError::UnsupportedUrl { url: url.clone() })?;
        let attempt = async {
            let tcp = match url.host() {
                Some(url::Host::Domain(domain)) => TcpStream::connect((domain, port)).await,
                Some(url::Host::Ipv4(ip)) => TcpStream::connect((ip, port)).await,
                Some(url::Host::Ipv6(ip)) => TcpStream::connect((ip, port)).await,
                None => return Err(FetchError::UnsupportedUrl { url: url.clone() }),
            }
            .map_err(|source| FetchError::Connect {
                url: url.clone(),
                source,
            })?;
            // Small requests; latency matters more than packet count.
            let _ = tcp.set_nodelay(true);
            if url.scheme() == "https" {
                let tls = self
                    .tls
                    .as_ref()
                    .ok_or_else(|| FetchError::NoTrust { url: url.clone() })?;
                let stream =
                    tls.connect(server_name(url)?, tcp)
                        .await
                        .map_err(|e| FetchError::Tls {
                            url: url.clone(),
                            failure: trust::tls_failure(e),
                        })?;
                handshake(url, stream).await
            } else {
                handshake(url, tcp).await
            }
        };
        timeout(self.connect_timeout, attempt)
            .await
            .map_err(|_| FetchError::ConnectTimeout {
                url: url.clone(),
                after: self.connect_timeout,
            })?
    }

    fn check_url(&self, url: &Url) -> Result<(), FetchError> {
        if url.host().is_none() {
            return Err(FetchError::UnsupportedUrl { url: url.clone() });
        }
        match url.scheme() {
            "https" if self.tls.is_none() => Err(FetchError::NoTrust { url: url.clone() }),
            "https" => Ok(()),
            "http" if !self.allow_http => Err(FetchError::HttpRefused { url: url.clone() }),
            "http" => Ok(()),
            _ => Err(FetchError::UnsupportedUrl { url: url.clone() }),
        }
    }

    fn warn_plain_http(&self, url: &Url) {
        if url.scheme() == "http" {
            tracing::warn!(%url, "fetching over plain HTTP: the transfer is not authenticated or private (allowed by configuration)");
        }
    }

    fn gave_up(&self, url: &Url, attempts: u32, last: FetchError) -> FetchError {
        FetchError::GaveUp {
            url: url.clone(),
            attempts,
            last: Box::new(last),
        }
    }
}

/// An HTTP/1.1 client connection; its driving task ends when this is dropped.
struct Connection {
    sender: http1::SendRequest<Empty<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handshake<IO>(url: &Url, io: IO) -> Result<Connection, FetchError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .max_buf_size(HTTP_BUF_MAX)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|source| FetchError::Http {
            url: url.clone(),
            source,
        })?;
    let task = tokio::spawn(async move {
        // A broken connection also fails the response or its body, which is
        // where it is reported.
        let _ = conn.await;
    });
    Ok(Connection { sender, task })
}

fn build_request(url: &Url, from: u64) -> Result<Request<Empty<Bytes>>, FetchError> {
    let mut target = url.path().to_owned();
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    let host = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => return Err(FetchError::UnsupportedUrl { url: url.clone() }),
    };
    let mut request = Request::get(target)
        .header(header::HOST, host)
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT_ENCODING, "identity")
        .header(header::CONNECTION, "close");
    if from > 0 {
        request = request.header(header::RANGE, format!("bytes={from}-"));
    }
    request
        .body(Empty::new())
        .map_err(|_| FetchError::UnsupportedUrl { url: url.clone() })
}

fn redirect_location(response: &Response<Incoming>) -> Option<String> {
    let redirect = matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308);
    if !redirect {
        return None;
    }
    let location = response.headers().get(header::LOCATION)?;
    Some(String::from_utf8_lossy(location.as_bytes()).into_owned())
}

fn write_sink<S: Sink + ?Sized>(
    sink: &mut S,
    url: &Url,
    pos: &mut u64,
    data: &[u8],
) -> Result<(), FetchError> {
    sink.write(*pos, data).map_err(|source| FetchError::Sink {
        url: url.clone(),
        offset: *pos,
        source,
    })?;
    *pos += data.len() as u64;
    Ok(())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A `Content-Range: bytes FIRST-LAST/TOTAL` header (TOTAL may be `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ContentRange {
    first: u64,
    last: u64,
    total: Option<u64>,
}

fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    if last < first || total.is_some_and(|t| last >= t) {
        return None;
    }
    Some(ContentRange { first, last, total })
}

/// A `206` must continue exactly at `from` and run to the end of a
/// `len`-byte resource.
fn check_partial(url: &Url, headers: &HeaderMap, from: u64, len: u64) -> Result<(), FetchError> {
    let raw = headers.get(header::CONTENT_RANGE);
    let value = raw
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let bad = || FetchError::BadContentRange {
        url: url.clone(),
        value: value.clone().into(),
        requested: from,
    };
    let range = parse_content_range(&value).ok_or_else(bad)?;
    if let Some(total) = range.total {
        if total != len {
            return Err(FetchError::LengthMismatch {
                url: url.clone(),
                expected: len,
                got: total,
            });
        }
    }
    if range.first != from || range.last + 1 != len {
        return Err(bad());
    }
    if let Some(n) = content_length(headers) {
        if n != len - from {
            return Err(bad());
        }
    }
    Ok(())
}

fn server_name(url: &Url) -> Result<ServerName<'static>, FetchError> {
    match url.host() {
        Some(url::Host::Domain(domain)) => ServerName::try_from(domain.to_owned())
            .map_err(|_| FetchError::UnsupportedUrl { url: url.clone() }),
        Some(url::Host::Ipv4(ip)) => Ok(ServerName::from(IpAddr::V4(ip))),
        Some(url::Host::Ipv6(ip)) => Ok(ServerName::from(IpAddr::V6(ip))),
        None => Err(FetchError::UnsupportedUrl { url: url.clone() }),
    }
}

#[cfg(test)]
mod tests;
