//! Where release artifacts live: the data folder (the default), or a bucket
//! on an S3-compatible object store (AWS S3, SeaweedFS, MinIO, Garage, …).
//!
//! A release's files are `RELEASE/firmware.bin` and `RELEASE/www.bin`, under
//! `DATA/artifacts/` or under the bucket's key prefix. Requests to S3 are
//! signed with AWS Signature Version 4 as presigned URLs (`rusty-s3`, which
//! does the signing and nothing else); this module sends them.
//!
//! Downloads go through the server's ticket check either way (a device only
//! gets the artifacts of the release it was offered). Then, with S3, the
//! server either answers `302 Found` with a presigned `GET` URL valid for
//! [`PRESIGN_TTL`] (the bytes never pass through the server; the device's
//! `Range` request for a resumed download goes to the object store), or
//! proxies the object, `Range` included, for devices that cannot reach the
//! object store ([`Downloads`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use tower::ServiceExt as _;
use url::Url;

use crate::error::ApiError;

/// How long a presigned download URL stays valid.
pub const PRESIGN_TTL: Duration = Duration::from_secs(15 * 60);
/// Connect plus response head, per request to the object store.
pub const S3_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an error body from the object store quoted in a message.
const ERROR_BODY_QUOTE: usize = 300;

/// How devices download artifacts kept in S3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Downloads {
    /// `302 Found` to a presigned URL (the default): the object store
    /// serves the bytes.
    #[default]
    Redirect,
    /// The server fetches the object and streams it to the device.
    Proxy,
}

/// An S3-compatible bucket for artifacts.
#[derive(Clone, Debug)]
pub struct S3Options {
    /// The endpoint, `https://s3.eu-central-1.amazonaws.com` or
    /// `http://127.0.0.1:8333`.
    pub endpoint: String,
    /// The bucket; it must exist.
    pub bucket: String,
    /// The region the signatures name (`us-east-1` for most S3-compatible
    /// servers).
    pub region: String,
    /// A key prefix, `otter/` (empty: the bucket's root).
    pub prefix: String,
    /// `https://BUCKET.endpoint/` instead of `endpoint/BUCKET/`.
    pub virtual_host: bool,
    /// The access key id.
    pub access_key: String,
    /// The secret access key.
    pub secret_key: String,
    /// How devices download.
    pub downloads: Downloads,
}

/// Why the artifact store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArtifactError {
    /// A local file.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The S3 endpoint or bucket name cannot make a bucket URL.
    #[error("S3 endpoint {endpoint:?} with bucket {bucket:?}: {reason}")]
    BadEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// What is wrong.
        reason: String,
    },
    /// The object store did not answer.
    #[error("the object store at {url} did not answer: {reason}")]
    Unreachable {
        /// Scheme, host and path (no signature).
        url: String,
        /// What happened.
        reason: String,
    },
    /// The object store refused a request.
    #[error("the object store answered {status} to {op} {key}: {body}")]
    Refused {
        /// `PUT`, `GET`, `HEAD`.
        op: &'static str,
        /// The object key or bucket.
        key: String,
        /// The HTTP status.
        status: u16,
        /// The start of its (XML) error body.
        body: String,
    },
}

impl ArtifactError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::BadEndpoint { .. } => "s3_bad_endpoint",
            Self::Unreachable { .. } => "s3_unreachable",
            Self::Refused { status: 404, .. } => "s3_not_found",
            Self::Refused { status: 403, .. } => "s3_forbidden",
            Self::Refused { .. } => "s3_refused",
        }
    }
}

impl From<ArtifactError> for ApiError {
    fn from(e: ArtifactError) -> Self {
        ApiError::new(StatusCode::BAD_GATEWAY, e.code(), e.to_string())
    }
}

/// The artifact store of a running server.
pub enum Artifacts {
    /// `DATA/artifacts/RELEASE/FILE`.
    Local(PathBuf),
    /// A bucket.
    S3(Box<S3Store>),
}

impl Artifacts {
    /// Where a file of a release is, for messages and logs.
    pub fn describe(&self, release: &str, file: &str) -> String {
        match self {
            Self::Local(dir) => dir.join(release).join(file).display().to_string(),
            Self::S3(s) => format!("s3://{}/{}", s.bucket.name(), s.key(release, file)),
        }
    }

    /// Stores the verified file `staged` as `RELEASE/FILE` (moved, for a
    /// local store; uploaded, then removed, for S3).
    pub async fn put(&self, release: &str, file: &str, staged: &Path) -> Result<(), ArtifactError> {
        let io = |p: &Path, source| ArtifactError::Io {
            path: p.display().to_string(),
            source,
        };
        match self {
            Self::Local(dir) => {
                let d = dir.join(release);
                tokio::fs::create_dir_all(&d).await.map_err(|e| io(&d, e))?;
                let to = d.join(file);
                tokio::fs::rename(staged, &to).await.map_err(|e| io(&to, e))
            }
            Self::S3(s) => {
                // At most MAX_ARTIFACT_LEN (16 MiB), once per publish.
                let bytes = tokio::fs::read(staged).await.map_err(|e| io(staged, e))?;
                s.put(&s.key(release, file), Bytes::from(bytes)).await
            }
        }
    }

    /// Answers a device's (already authorised) download of `RELEASE/FILE`.
    pub async fn serve(
        &self,
        release: &str,
        file: &str,
        req: Request,
    ) -> Result<Response, ApiError> {
        let missing = || {
            ApiError::not_found(
                "no_artifact",
                format!("release {release} has no {file} on this server (its manifest may point elsewhere)"),
            )
        };
        match self {
            Self::Local(dir) => {
                let path = dir.join(release).join(file);
                if !path.exists() {
                    return Err(missing());
                }
                let r = tower_http::services::ServeFile::new(path)
                    .oneshot(req)
                    .await;
                match r {
                    Ok(r) => Ok(r.map(Body::new)),
                    Err(never) => match never {},
                }
            }
            Self::S3(s) => {
                let key = s.key(release, file);
                match s.downloads {
                    Downloads::Redirect => {
                        let url = s.bucket.get_object(Some(&s.creds), &key).sign(PRESIGN_TTL);
                        let loc = HeaderValue::from_str(url.as_str()).map_err(|_| {
                            ApiError::new(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "s3_bad_endpoint",
                                "the presigned URL is not a valid Location header",
                            )
                        })?;
                        Ok((StatusCode::FOUND, [(header::LOCATION, loc)]).into_response())
                    }
                    Downloads::Proxy => {
                        let range = req.headers().get(header::RANGE).cloned();
                        match s.get(&key, range).await {
                            Err(ArtifactError::Refused { status: 404, .. }) => Err(missing()),
                            Err(e) => Err(e.into()),
                            Ok(r) => Ok(r),
                        }
                    }
                }
            }
        }
    }
}

/// A bucket and its credentials.
pub struct S3Store {
    bucket: Bucket,
    creds: Credentials,
    prefix: String,
    downloads: Downloads,
    tls: tokio_rustls::TlsConnector,
}

impl S3Store {
    /// Checks the options and that the bucket answers (`HEAD` bucket), so a
    /// wrong endpoint, bucket or key stops the server at start.
    pub async fn open(o: &S3Options) -> Result<Self, ArtifactError> {
        let bad = |reason: String| ArtifactError::BadEndpoint {
            endpoint: o.endpoint.clone(),
            bucket: o.bucket.clone(),
            reason,
        };
        let endpoint = Url::parse(&o.endpoint).map_err(|e| bad(e.to_string()))?;
        let style = if o.virtual_host {
            UrlStyle::VirtualHost
        } else {
            UrlStyle::Path
        };
        let bucket = Bucket::new(endpoint, style, o.bucket.clone(), o.region.clone())
            .map_err(|e| bad(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let s = S3Store {
            bucket,
            creds: Credentials::new(o.access_key.clone(), o.secret_key.clone()),
            prefix: o.prefix.clone(),
            downloads: o.downloads,
            tls: tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls)),
        };
        let url = s.bucket.head_bucket(Some(&s.creds)).sign(S3_TIMEOUT);
        let r = s
            .send(hyper::Method::HEAD, &url, None, Bytes::new())
            .await?;
        s.check("HEAD", o.bucket.clone(), r).await?;
        Ok(s)
    }

    fn key(&self, release: &str, file: &str) -> String {
        format!("{}{release}/{file}", self.prefix)
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), ArtifactError> {
        let url = self
            .bucket
            .put_object(Some(&self.creds), key)
            .sign(S3_TIMEOUT);
        let r = self.send(hyper::Method::PUT, &url, None, body).await?;
        self.check("PUT", key.to_string(), r).await.map(drop)
    }

    async fn get(&self, key: &str, range: Option<HeaderValue>) -> Result<Response, ArtifactError> {
        let url = self
            .bucket
            .get_object(Some(&self.creds), key)
            .sign(S3_TIMEOUT);
        let r = self
            .send(hyper::Method::GET, &url, range, Bytes::new())
            .await?;
        let r = self.check("GET", key.to_string(), r).await?;
        let (parts, body) = r.into_parts();
        let mut out = Response::new(Body::new(body));
        *out.status_mut() = parts.status;
        for h in [
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
            header::ETAG,
            header::LAST_MODIFIED,
        ] {
            if let Some(v) = parts.headers.get(&h) {
                out.headers_mut().insert(h, v.clone());
            }
        }
        out.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        Ok(out)
    }

    /// A 2xx (or 206) passes; anything else becomes [`ArtifactError::Refused`]
    /// with the start of the object store's error body.
    async fn check(
        &self,
        op: &'static str,
        key: String,
        r: hyper::Response<hyper::body::Incoming>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ArtifactError> {
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status().as_u16();
        let body = tokio::time::timeout(S3_TIMEOUT, r.into_body().collect())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_QUOTE)]).into_owned();
        Err(ArtifactError::Refused {
            op,
            key,
            status,
            body: if text.is_empty() {
                "(no body)".into()
            } else {
                text
            },
        })
    }

    /// One request on a fresh connection (HTTP/1.1, TLS for `https`).
    async fn send(
        &self,
        method: hyper::Method,
        url: &Url,
        range: Option<HeaderValue>,
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ArtifactError> {
        let shown = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.path()
        );
        let unreachable = |reason: String| ArtifactError::Unreachable {
            url: shown.clone(),
            reason,
        };
        let host = url
            .host_str()
            .ok_or_else(|| unreachable("no host".into()))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| unreachable("no port".into()))?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::HOST, authority)
            .header(header::CONTENT_LENGTH, body.len());
        if let Some(r) = range {
            req = req.header(header::RANGE, r);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| unreachable(e.to_string()))?;
        let https = url.scheme() == "https";
        let tls = self.tls.clone();
        let host_owned = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let attempt = async move {
            let tcp = tokio::net::TcpStream::connect((host_owned.as_str(), port))
                .await
                .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            if https {
                let name = rustls_pki_types::ServerName::try_from(host_owned.clone())
                    .map_err(|e| e.to_string())?;
                let io = tls.connect(name, tcp).await.map_err(|e| e.to_string())?;
                request(TokioIo::new(io), req).await
            } else {
                request(TokioIo::new(tcp), req).await
            }
        };
        tokio::time::timeout(S3_TIMEOUT, attempt)
            .await
            .map_err(|_| unreachable(format!("no answer within {} s", S3_TIMEOUT.as_secs())))?
            .map_err(unreachable)
    }
}

async fn request<T>(
    io: TokioIo<T>,
    req: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = http1::handshake(io).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}
