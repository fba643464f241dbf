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
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper::header::{self, HeaderMap};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
pub use url::Url;

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

/// Which servers an `https://` fetch trusts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Servers whose chain leads to one of these CA certificates, and no
    /// other root. Host name and validity period are checked (webpki). A
    /// self-signed server certificate can be its own CA here.
    Ca(Vec<CertificateDer<'static>>),
    /// Exactly this end-entity certificate, byte for byte. The handshake
    /// signature is still checked against its key, so a server must hold the
    /// private key. Host name and validity period are *not* checked: the pin
    /// already names the one certificate trusted, and a device without a
    /// trusted clock must not lock itself out when it expires. Rotate by
    /// shipping a new pin before the server changes its certificate.
    Pinned(CertificateDer<'static>),
}

impl Trust {
    /// Every certificate in a PEM file as the CA set (the seeds' `cert_pem`).
    pub fn ca_from_pem_file(path: &Path) -> Result<Trust, FetchError> {
        let pem = read_trust_file(path)?;
        let certs = certificates_from_pem(path, &pem)?;
        Ok(Trust::Ca(certs))
    }

    /// The first certificate in a PEM file (the server's own; any chain after
    /// it is ignored) as the pin.
    pub fn pinned_from_pem_file(path: &Path) -> Result<Trust, FetchError> {
        let pem = read_trust_file(path)?;
        let mut certs = certificates_from_pem(path, &pem)?;
        // `certificates_from_pem` refuses an empty list.
        Ok(Trust::Pinned(certs.swap_remove(0)))
    }
}

fn read_trust_file(path: &Path) -> Result<Vec<u8>, FetchError> {
    std::fs::read(path).map_err(|source| FetchError::TrustFile {
        path: path.to_owned(),
        source,
    })
}

fn certificates_from_pem(
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, FetchError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| FetchError::TrustPem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(FetchError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

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

/// Why a TLS handshake failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's chain does not lead to a configured CA.
    UnknownCa,
    /// The certificate is not valid for the URL's host.
    NameMismatch,
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet (or the device's clock is wrong).
    NotYetValid,
    /// The server's certificate is not the pinned one.
    PinMismatch,
    /// Another certificate problem.
    Certificate(Box<CertificateError>),
    /// Another TLS protocol failure (alert, version, signature).
    Protocol(Box<rustls::Error>),
    /// The connection broke during the handshake (transient).
    Io(io::Error),
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::UnknownCa => {
                f.write_str("the server's certificate is not signed by a trusted CA")
            }
            TlsFailure::NameMismatch => {
                f.write_str("the server's certificate is not valid for this host name")
            }
            TlsFailure::Expired => f.write_str("the server's certificate has expired"),
            TlsFailure::NotYetValid => f.write_str(
                "the server's certificate is not valid yet (is the device's clock right?)",
            ),
            TlsFailure::PinMismatch => {
                f.write_str("the server's certificate is not the pinned certificate")
            }
            TlsFailure::Certificate(e) => write!(f, "invalid server certificate: {e}"),
            TlsFailure::Protocol(e) => write!(f, "{e}"),
            TlsFailure::Io(e) => write!(f, "connection lost during the handshake: {e}"),
        }
    }
}

/// A failed fetch. Every variant about a request names its URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    // --- configuration (the caller's to fix) ---
    /// A trust file cannot be read.
    #[error("cannot read the trusted certificate file {}", path.display())]
    TrustFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A trust file is not valid PEM.
    #[error("{}: not a valid PEM certificate file", path.display())]
    TrustPem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A trust file holds no certificate.
    #[error("{}: no certificate in the file", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// [`Trust::Ca`] with no certificate.
    #[error("no CA certificate to trust")]
    NoCaCertificates,
    /// A [`Trust::Ca`] certificate cannot be used as a root.
    #[error("CA certificate {index} cannot be used as a trust root")]
    BadCaCertificate {
        /// Its index in the list.
        index: usize,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The TLS client cannot be set up.
    #[error("cannot set up TLS")]
    TlsSetup {
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// `max_attempts` is 0.
    #[error("max_attempts must be at least 1")]
    NoAttempts,
    /// `start` is past `len` in a download call.
    #[error("cannot download from offset {start} of a {len}-byte resource")]
    InvalidRange {
        /// Requested start.
        start: u64,
        /// Resource length.
        len: u64,
    },

    // --- URL policy ---
    /// Not an `http://` or `https://` URL with a host.
    #[error("{url}: unsupported URL (only https:// and http:// with a host)")]
    UnsupportedUrl {
        /// The URL.
        url: Url,
    },
    /// Plain HTTP without [`FetchConfig::allow_http`].
    #[error("{url}: plain HTTP refused; use an https:// URL or explicitly allow plain HTTP")]
    HttpRefused {
        /// The URL.
        url: Url,
    },
    /// `https://` without a [`Trust`].
    #[error("{url}: no TLS trust configured (a CA or a pinned certificate)")]
    NoTrust {
        /// The URL.
        url: Url,
    },

    // --- transport (transient unless said otherwise) ---
    /// TCP connect or name resolution failed.
    #[error("{url}: cannot connect")]
    Connect {
        /// The URL.
        url: Url,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Connect plus TLS handshake took too long.
    #[error("{url}: connecting timed out after {after:?}")]
    ConnectTimeout {
        /// The URL.
        url: Url,
        /// The limit.
        after: Duration,
    },
    /// The TLS handshake failed: the server is not trusted (not transient),
    /// or the connection broke ([`TlsFailure::Io`], transient).
    #[error("{url}: TLS handshake failed: {failure}")]
    Tls {
        /// The URL.
        url: Url,
        /// Why.
        failure: TlsFailure,
    },
    /// No data for [`FetchConfig::read_timeout`].
    #[error("{url}: no data from the server for {after:?}")]
    ReadTimeout {
        /// The URL.
        url: Url,
        /// The limit.
        after: Duration,
    },
    /// The HTTP exchange broke (connection closed or reset, bad framing).
    #[error("{url}: HTTP exchange failed")]
    Http {
        /// The URL.
        url: Url,
        /// Why.
        #[source]
        source: hyper::Error,
    },
    /// The body ended cleanly before `len` bytes (transient: resumed).
    #[error("{url}: the body ended at byte {got} of {expected}")]
    ShortBody {
        /// The URL.
        url: Url,
        /// The expected length.
        expected: u64,
        /// Where it ended.
        got: u64,
    },

    // --- the server's answer (not transient) ---
    /// An unexpected HTTP status (408, 429 and 5xx but 501 are transient).
    #[error("{url}: the server answered HTTP {status}")]
    Status {
        /// The URL.
        url: Url,
        /// The status code.
        status: u16,
    },
    /// More than [`MAX_REDIRECTS`] redirects.
    #[error("{url}: more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects {
        /// The last URL.
        url: Url,
    },
    /// A redirect without a usable `Location`, or to another scheme.
    #[error("{url}: refusing redirect to {location:?}: {reason}")]
    BadRedirect {
        /// The redirecting URL.
        url: Url,
        /// The `Location` header.
        location: Box<str>,
        /// Why.
        reason: &'static str,
    },
    /// A small resource is over its limit.
    #[error("{url}: larger than the {limit}-byte limit{}", size.map(|s| format!(" ({s} bytes)")).unwrap_or_default())]
    TooLarge {
        /// The URL.
        url: Url,
        /// The limit.
        limit: usize,
        /// The announced size, when there was one.
        size: Option<u64>,
    },
    /// The server's length (`Content-Length`, `Content-Range` total, or the
    /// body itself) is not the expected one: wrong file or wrong manifest.
    #[error("{url}: the server has {got} bytes, expected {expected}")]
    LengthMismatch {
        /// The URL.
        url: Url,
        /// The expected length.
        expected: u64,
        /// The server's.
        got: u64,
    },
    /// A `206` whose `Content-Range` does not continue at the requested
    /// offset.
    #[error("{url}: asked for bytes from {requested}, got Content-Range {value:?}")]
    BadContentRange {
        /// The URL.
        url: Url,
        /// The header, lossily decoded.
        value: Box<str>,
        /// The requested start.
        requested: u64,
    },
    /// `416`: the server has fewer bytes than the requested start.
    #[error("{url}: the server cannot serve bytes from {start} (HTTP 416)")]
    RangeNotSatisfiable {
        /// The URL.
        url: Url,
        /// The requested start.
        start: u64,
    },

    // --- the caller's sink ---
    /// The sink refused a write or restart; not retried.
    #[error("{url}: writing at offset {offset} failed")]
    Sink {
        /// The URL.
        url: Url,
        /// Where the write was.
        offset: u64,
        /// The sink's error.
        #[source]
        source: SinkError,
    },

    /// [`FetchConfig::max_attempts`] transient failures in a row without
    /// progress; the last one is kept.
    #[error("{url}: giving up after {attempts} attempts without progress")]
    GaveUp {
        /// The URL.
        url: Url,
        /// Attempts made without progress.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Box<FetchError>,
    },
}

impl FetchError {
    /// Whether retrying the same request later may succeed: connection
    /// failures, timeouts, a body cut short, and 408/429/500/502/503/504.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Connect { .. }
            | FetchError::ConnectTimeout { .. }
            | FetchError::ReadTimeout { .. }
            | FetchError::Http { .. }
            | FetchError::ShortBody { .. } => true,
            FetchError::Tls { failure, .. } => matches!(failure, TlsFailure::Io(_)),
            FetchError::Status { status, .. } => transient_status(*status),
            _ => false,
        }
    }
}

fn transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
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
        let tls = config.trust.map(tls_connector).transpose()?;
        Ok(Fetcher {
            tls,
            allow_http: config.allow_http,
            connect_timeout: config.connect_timeout,
            read_timeout: config.read_timeout,
            max_attempts: config.max_attempts,
            retry_delay: config.retry_delay,
        })
    }

    /// GET a small resource (manifest, signature) whole. A body over `limit`
    /// bytes is refused, from its `Content-Length` before any byte is read
    /// when there is one. Only `200` is accepted; transient failures are
    /// retried as in [`Fetcher::download`].
    pub async fn get_small(&self, url: &Url, limit: usize) -> Result<Vec<u8>, FetchError> {
        self.check_url(url)?;
        self.warn_plain_http(url);
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
        let streamed = loop {
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
                            failure: tls_failure(e),
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

fn tls_failure(error: io::Error) -> TlsFailure {
    let Some(rustls_error) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return TlsFailure::Io(error);
    };
    match rustls_error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => TlsFailure::UnknownCa,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::NameMismatch
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                TlsFailure::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                TlsFailure::NotYetValid
            }
            CertificateError::Other(other) if other.0.downcast_ref::<PinMismatch>().is_some() => {
                TlsFailure::PinMismatch
            }
            other => TlsFailure::Certificate(Box::new(other.clone())),
        },
        other => TlsFailure::Protocol(Box::new(other.clone())),
    }
}

fn tls_connector(trust: Trust) -> Result<TlsConnector, FetchError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| FetchError::TlsSetup { source })?;
    let mut config = match trust {
        Trust::Ca(certs) => {
            if certs.is_empty() {
                return Err(FetchError::NoCaCertificates);
            }
            let mut roots = RootCertStore::empty();
            for (index, cert) in certs.into_iter().enumerate() {
                roots
                    .add(cert)
                    .map_err(|source| FetchError::BadCaCertificate { index, source })?;
            }
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                // Only possible causes: no roots (checked above) or CRLs (none given).
                .map_err(|_| FetchError::NoCaCertificates)?;
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        }
        Trust::Pinned(cert) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier { cert, algorithms }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The marker a [`PinnedVerifier`] rejects with, so the failure can be told
/// apart from other certificate errors.
#[derive(Debug)]
struct PinMismatch;

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the server's certificate is not the pinned certificate")
    }
}

impl std::error::Error for PinMismatch {}

/// Accepts exactly one end-entity certificate; see [`Trust::Pinned`].
#[derive(Debug)]
struct PinnedVerifier {
    cert: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(PinMismatch)),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some(ContentRange {
                first: 100,
                last: 199,
                total: Some(200)
            })
        );
        assert_eq!(
            parse_content_range("bytes 0-0/*"),
            Some(ContentRange {
                first: 0,
                last: 0,
                total: None
            })
        );
        for bad in [
            "",
            "bytes */200",
            "bytes 5-4/200",
            "bytes 0-200/200",
            "items 0-1/2",
            "bytes 0-1",
            "bytes a-1/2",
            "bytes 0-18446744073709551616/1",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().expect("test header"));
        }
        map
    }

    #[test]
    fn partial_answers_must_continue_at_the_request() {
        let url = Url::parse("https://example.invalid/fw.bin").expect("test URL");
        let ok = headers(&[
            ("content-range", "bytes 10-99/100"),
            ("content-length", "90"),
        ]);
        check_partial(&url, &ok, 10, 100).expect("matching range");
        let star = headers(&[("content-range", "bytes 10-99/*")]);
        check_partial(&url, &star, 10, 100).expect("unknown total");
        let elsewhere = headers(&[("content-range", "bytes 0-99/100")]);
        assert!(matches!(
            check_partial(&url, &elsewhere, 10, 100),
            Err(FetchError::BadContentRange { requested: 10, .. })
        ));
        let other_len = headers(&[("content-range", "bytes 10-199/200")]);
        assert!(matches!(
            check_partial(&url, &other_len, 10, 100),
            Err(FetchError::LengthMismatch {
                expected: 100,
                got: 200,
                ..
            })
        ));
        let short = headers(&[("content-range", "bytes 10-49/100")]);
        assert!(check_partial(&url, &short, 10, 100).is_err());
        assert!(check_partial(&url, &HeaderMap::new(), 10, 100).is_err());
    }

    #[test]
    fn requests_name_host_and_range() {
        let url = Url::parse("http://[::1]:8080/a/b.bin?x=1").expect("test URL");
        let request = build_request(&url, 42).expect("request");
        assert_eq!(request.uri(), "/a/b.bin?x=1");
        assert_eq!(request.headers()[header::HOST], "[::1]:8080");
        assert_eq!(request.headers()[header::RANGE], "bytes=42-");
        let url = Url::parse("https://example.invalid:443/m.json").expect("test URL");
        let request = build_request(&url, 0).expect("request");
        assert_eq!(request.headers()[header::HOST], "example.invalid");
        assert!(request.headers().get(header::RANGE).is_none());
    }

    #[test]
    fn urls_are_checked_before_connecting() {
        let fetcher = Fetcher::new(FetchConfig::default()).expect("fetcher");
        let check = |u: &str| fetcher.check_url(&Url::parse(u).expect("test URL"));
        assert!(matches!(
            check("http://example.invalid/"),
            Err(FetchError::HttpRefused { .. })
        ));
        assert!(matches!(
            check("https://example.invalid/"),
            Err(FetchError::NoTrust { .. })
        ));
        assert!(matches!(
            check("ftp://example.invalid/"),
            Err(FetchError::UnsupportedUrl { .. })
        ));
        let message = check("http://example.invalid/").unwrap_err().to_string();
        assert!(message.contains("https://"), "{message}");
    }

    #[test]
    fn zero_attempts_is_refused() {
        let config = FetchConfig {
            max_attempts: 0,
            ..FetchConfig::default()
        };
        assert!(matches!(Fetcher::new(config), Err(FetchError::NoAttempts)));
    }

    #[test]
    fn vec_sink_takes_contiguous_writes() {
        let mut sink = Vec::new();
        sink.write(0, b"ab").expect("first");
        assert!(sink.write(5, b"cd").is_err());
        sink.restart().expect("restart");
        assert!(sink.is_empty());
    }
}
