//! What can go wrong in a fetch, and whose fault it is.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use rustls::CertificateError;
use url::Url;

use super::{SinkError, MAX_REDIRECTS};

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
    /// [`Trust::Ca`](super::Trust::Ca) with no certificate.
    #[error("no CA certificate to trust")]
    NoCaCertificates,
    /// A [`Trust::Ca`](super::Trust::Ca) certificate cannot be used as a root.
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
    /// Plain HTTP without [`FetchConfig::allow_http`](super::FetchConfig::allow_http).
    #[error("{url}: plain HTTP refused; use an https:// URL or explicitly allow plain HTTP")]
    HttpRefused {
        /// The URL.
        url: Url,
    },
    /// `https://` without a [`Trust`](super::Trust).
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
    /// No data for [`FetchConfig::read_timeout`](super::FetchConfig::read_timeout).
    #[error("{url}: no data from the server for {after:?}")]
    ReadTimeout {
        /// The URL.
        url: Url,
        /// The limit.
        after: Duration,
    },
    /// A small fetch did not complete within
    /// [`FetchConfig::small_deadline`](super::FetchConfig::small_deadline),
    /// retries included; not retried.
    #[error("{url}: not complete after {after:?} (the whole fetch's deadline); the server is too slow or drips bytes")]
    Deadline {
        /// The URL.
        url: Url,
        /// The deadline.
        after: Duration,
    },
    /// A download received fewer than
    /// [`FetchConfig::min_progress`](super::FetchConfig::min_progress) bytes in
    /// one window; abandoned, not retried (the next check resumes).
    #[error("{url}: only {got} bytes in {window:?} (at least {min} needed): the server is too slow; the download stops and resumes at the next check")]
    TooSlow {
        /// The URL.
        url: Url,
        /// Bytes received in the window.
        got: u64,
        /// The window.
        window: Duration,
        /// The minimum.
        min: u64,
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

    /// [`FetchConfig::max_attempts`](super::FetchConfig::max_attempts) transient failures in a row without
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
