//! `otter_agent::fetch` against servers made in the test: TLS trust, the
//! plain-HTTP opt-in, and resume through a proxy that cuts connections at
//! seeded random offsets.
//!
//! Everything listens on 127.0.0.1; every test is bounded by [`LIMIT`].
//! Set `OTTER_FETCH_SEED` to replay a seed; the seed in use is printed.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use otter_agent::fetch::{
    DownloadStats, FetchConfig, FetchError, Fetcher, Sink, SinkError, TlsFailure, Trust, Url,
    BUFFER_SIZE,
};
use rand::{Rng as _, RngExt as _, SeedableRng as _};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Upper bound on any one test.
const LIMIT: Duration = Duration::from_secs(60);
/// Size of the image in the cut tests: about 1.5 MB, not a multiple of the
/// buffer.
const IMAGE_LEN: usize = 1_536_123;
/// Connections the proxy cuts in one download.
const CUTS: usize = 24;

async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("the test ran past its time limit")
}

fn seed() -> u64 {
    let seed = std::env::var("OTTER_FETCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0773_2f57_b8c3);
    eprintln!("OTTER_FETCH_SEED={seed}");
    seed
}

fn image(seed: u64, len: usize) -> Arc<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut body = vec![0u8; len];
    rng.fill_bytes(&mut body);
    Arc::new(body)
}

fn config(trust: Option<Trust>, allow_http: bool) -> FetchConfig {
    FetchConfig {
        trust,
        allow_http,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        max_attempts: 3,
        retry_delay: Duration::from_millis(10),
        ..FetchConfig::default()
    }
}

fn fetcher(trust: Option<Trust>, allow_http: bool) -> Fetcher {
    Fetcher::new(config(trust, allow_http)).expect("fetcher")
}

// --- certificates -----------------------------------------------------------

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca { cert, key }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A server certificate for `names`, signed by this CA.
    fn issue(&self, names: &[&str], expired: bool) -> Identity {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("server params");
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("server certificate");
        Identity::new(vec![cert.der().clone(), self.der()], key, cert.pem())
    }
}

/// A server's certificate chain and key.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: KeyPair,
    leaf_pem: String,
}

impl Identity {
    fn new(chain: Vec<CertificateDer<'static>>, key: KeyPair, leaf_pem: String) -> Identity {
        Identity {
            chain,
            key,
            leaf_pem,
        }
    }

    fn self_signed(names: &[&str]) -> Identity {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("self-signed certificate");
        Identity::new(vec![cert.der().clone()], key, cert.pem())
    }

    fn leaf(&self) -> CertificateDer<'static> {
        self.chain[0].clone()
    }

    fn server_config(&self) -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()));
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)
            .expect("server config");
        Arc::new(config)
    }
}

// --- the server -------------------------------------------------------------

/// What the server does for a path.
#[derive(Clone)]
enum Route {
    /// The body, with `Content-Length`; `Range: bytes=N-` honoured or not.
    File { body: Arc<Vec<u8>>, ranges: bool },
    /// The body chunked, without `Content-Length`.
    Chunked(Arc<Vec<u8>>),
    /// The body with ranges, but the first `stalls` answers stop sending
    /// after `after` body bytes and hang.
    Stall {
        body: Arc<Vec<u8>>,
        after: usize,
        stalls: Arc<AtomicUsize>,
    },
    /// The body with `Content-Length`, one byte every `every`: a server
    /// that never stalls long enough for a read timeout.
    Drip { body: Arc<Vec<u8>>, every: Duration },
    /// A redirect to this `Location`.
    Redirect(String),
    /// This status with an empty body.
    Status(u16),
}

/// A request the server saw.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    range: Option<String>,
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Response-head bytes written, over all connections.
    head_bytes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A route serving `body` with Range support.
fn file(body: &[u8]) -> Route {
    Route::File {
        body: Arc::new(body.to_vec()),
        ranges: true,
    }
}

impl Server {
    async fn start(routes: Vec<(&str, Route)>, tls: Option<Arc<ServerConfig>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let routes: Arc<HashMap<String, Route>> = Arc::new(
            routes
                .into_iter()
                .map(|(p, r)| (p.to_string(), r))
                .collect(),
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let head_bytes = Arc::new(AtomicU64::new(0));
        let (s, h) = (seen.clone(), head_bytes.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (routes, seen, head_bytes) = (routes.clone(), s.clone(), h.clone());
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(config) => {
                            // A client that refuses the certificate ends here.
                            if let Ok(stream) = TlsAcceptor::from(config).accept(tcp).await {
                                answer(stream, &routes, &seen, &head_bytes).await;
                            }
                        }
                        None => answer(tcp, &routes, &seen, &head_bytes).await,
                    }
                });
            }
        });
        Server {
            addr,
            seen,
            head_bytes,
            task,
        }
    }

    fn url(&self, scheme: &str, host: &str, path: &str) -> Url {
        Url::parse(&format!("{scheme}://{host}:{}{path}", self.addr.port())).expect("URL")
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log").clone()
    }
}

/// Serve one request on `stream`, then close it.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    routes: &HashMap<String, Route>,
    seen: &Mutex<Vec<Seen>>,
    head_bytes: &AtomicU64,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) if head.len() < 8192 => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("").to_string();
    let range = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("range")
            .then(|| value.trim().to_string())
    });
    seen.lock().expect("log").push(Seen {
        path: path.clone(),
        range: range.clone(),
    });
    let from: Option<usize> = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok());

    let write_head = |status: &str, headers: String| {
        let text = format!("HTTP/1.1 {status}\r\n{headers}Connection: close\r\n\r\n");
        head_bytes.fetch_add(text.len() as u64, Ordering::SeqCst);
        text.into_bytes()
    };
    if let Some(Route::Drip { body, every }) = routes.get(&path) {
        let head = write_head("200 OK", format!("Content-Length: {}\r\n", body.len()));
        if stream.write_all(&head).await.is_err() {
            return;
        }
        for b in body.iter() {
            if stream.write_all(&[*b]).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(*every).await;
        }
        let _ = stream.shutdown().await;
        return;
    }
    let (head, body, stall_after): (Vec<u8>, &[u8], Option<usize>) = match routes.get(&path) {
        None => (
            write_head("404 Not Found", "Content-Length: 0\r\n".into()),
            &[],
            None,
        ),
        Some(Route::Status(code)) => (
            write_head(&format!("{code} Status"), "Content-Length: 0\r\n".into()),
            &[],
            None,
        ),
        Some(Route::Redirect(location)) => (
            write_head(
                "302 Found",
                format!("Location: {location}\r\nContent-Length: 0\r\n"),
            ),
            &[],
            None,
        ),
        Some(Route::Chunked(body)) => {
            let mut out = write_head("200 OK", "Transfer-Encoding: chunked\r\n".into());
            for chunk in body.chunks(1000) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            (out, &[], None)
        }
        Some(Route::File { body, ranges }) => ranged(write_head, body, from, *ranges, None),
        // Answered above, byte by byte.
        Some(Route::Drip { .. }) => return,
        Some(Route::Stall {
            body,
            after,
            stalls,
        }) => {
            let stall = stalls
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            ranged(write_head, body, from, true, stall.then_some(*after))
        }
    };
    if stream.write_all(&head).await.is_err() {
        return;
    }
    let sent = stall_after.map_or(body.len(), |n| n.min(body.len()));
    for piece in body[..sent].chunks(16 * 1024) {
        if stream.write_all(piece).await.is_err() {
            return;
        }
    }
    let _ = stream.flush().await;
    if stall_after.is_some() {
        tokio::time::sleep(LIMIT).await;
    }
    let _ = stream.shutdown().await;
}

/// The head and body slice for a file, honouring `from` when `ranges`.
fn ranged(
    write_head: impl Fn(&str, String) -> Vec<u8>,
    body: &[u8],
    from: Option<usize>,
    ranges: bool,
    stall: Option<usize>,
) -> (Vec<u8>, &[u8], Option<usize>) {
    let len = body.len();
    match from.filter(|_| ranges) {
        Some(from) if from >= len => (
            write_head(
                "416 Range Not Satisfiable",
                format!("Content-Range: bytes */{len}\r\nContent-Length: 0\r\n"),
            ),
            &[],
            None,
        ),
        Some(from) => (
            write_head(
                "206 Partial Content",
                format!(
                    "Content-Range: bytes {from}-{}/{len}\r\nContent-Length: {}\r\n",
                    len - 1,
                    len - from
                ),
            ),
            &body[from..],
            stall,
        ),
        None => (
            write_head("200 OK", format!("Content-Length: {len}\r\n")),
            body,
            stall,
        ),
    }
}

// --- the cutting proxy --------------------------------------------------------

/// Forwards connections to `upstream`; connection i is cut after
/// `cut_after[i]` bytes from the server (later ones are not cut).
struct Proxy {
    addr: SocketAddr,
    /// Connections actually cut.
    cuts: Arc<AtomicUsize>,
    /// Bytes forwarded from the server to the client, over all connections.
    delivered: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    async fn start(upstream: SocketAddr, cut_after: Vec<u64>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let cuts = Arc::new(AtomicUsize::new(0));
        let delivered = Arc::new(AtomicU64::new(0));
        let (c, d) = (cuts.clone(), delivered.clone());
        let task = tokio::spawn(async move {
            for index in 0.. {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let limit = cut_after.get(index).copied();
                let (cuts, delivered) = (c.clone(), d.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client_rx, mut client_tx) = client.into_split();
                    let (mut server_rx, mut server_tx) = server.into_split();
                    let upward = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_rx, &mut server_tx).await;
                        let _ = server_tx.shutdown().await;
                    });
                    let mut left = limit;
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match server_rx.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let pass = left.map_or(n, |l| n.min(l as usize));
                        if client_tx.write_all(&buf[..pass]).await.is_err() {
                            break;
                        }
                        delivered.fetch_add(pass as u64, Ordering::SeqCst);
                        if let Some(l) = left.as_mut() {
                            *l -= pass as u64;
                            if *l == 0 {
                                // Cut: drop both connections mid-stream.
                                cuts.fetch_add(1, Ordering::SeqCst);
                                upward.abort();
                                return;
                            }
                        }
                    }
                    let _ = client_tx.shutdown().await;
                    let _ = upward.await;
                });
            }
        });
        Proxy {
            addr,
            cuts,
            delivered,
            task,
        }
    }

    fn url(&self, scheme: &str, path: &str) -> Url {
        Url::parse(&format!("{scheme}://127.0.0.1:{}{path}", self.addr.port())).expect("URL")
    }
}

/// `CUTS` cut offsets, each at least `floor` bytes (past the response head,
/// and over TLS past the handshake and one whole record), adding up to three
/// quarters of `len`, so every cut happens before the body ends.
///
/// Over TLS a cut inside a record loses that record: the client can only use
/// complete, authenticated records (up to 16 KiB), so a cut closer to the
/// start could leave a connection without progress.
fn cut_offsets(seed: u64, len: usize, floor: u64) -> Vec<u64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xC075);
    let budget = (len as u64 * 3 / 4) - floor * CUTS as u64;
    let weights: Vec<u64> = (0..CUTS).map(|_| rng.random_range(1..=1000u64)).collect();
    let total: u64 = weights.iter().sum();
    weights.iter().map(|w| floor + budget * w / total).collect()
}

// --- the sink -----------------------------------------------------------------

/// Keeps what it is given, and checks offsets are contiguous.
#[derive(Default)]
struct Recorder {
    data: Vec<u8>,
    writes: usize,
    max_write: usize,
    restarts: usize,
    /// Refuse the write that would cross this offset.
    fail_past: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("flash is full")]
struct FlashFull;

impl Sink for Recorder {
    fn restart(&mut self) -> Result<(), SinkError> {
        self.data.clear();
        self.restarts += 1;
        Ok(())
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), SinkError> {
        if offset != self.data.len() as u64 {
            return Err(SinkError::new(format!(
                "write at {offset}, expected {}",
                self.data.len()
            )));
        }
        if self
            .fail_past
            .is_some_and(|limit| offset + data.len() as u64 > limit)
        {
            return Err(SinkError::new(FlashFull));
        }
        self.data.extend_from_slice(data);
        self.writes += 1;
        self.max_write = self.max_write.max(data.len());
        Ok(())
    }
}

fn assert_same(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "length");
    if let Some(at) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("content differs from byte {at}");
    }
}

/// Collects `tracing` output of the current thread (tests run on a
/// current-thread runtime).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn count(&self, needle: &str) -> usize {
        let text = String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned();
        text.lines().filter(|l| l.contains(needle)).count()
    }
}

// --- TLS trust ------------------------------------------------------------------

#[tokio::test]
async fn https_with_ca_trust_downloads_and_fetches_small_files() {
    bounded(async {
        let ca = Ca::new("otter test CA");
        let id = ca.issue(&["localhost", "127.0.0.1"], false);
        let body = image(1, 100_000);
        let server = Server::start(
            vec![
                (
                    "/fw.bin",
                    Route::File {
                        body: body.clone(),
                        ranges: true,
                    },
                ),
                ("/manifest.json", file(b"{\"format\":\"otter-release/1\"}")),
            ],
            Some(id.server_config()),
        )
        .await;
        let fetcher = fetcher(Some(Trust::Ca(vec![ca.der()])), false);
        for host in ["localhost", "127.0.0.1"] {
            let mut sink = Recorder::default();
            let stats = fetcher
                .download(
                    &server.url("https", host, "/fw.bin"),
                    0,
                    body.len() as u64,
                    &mut sink,
                )
                .await
                .expect("download over https");
            assert_same(&sink.data, &body);
            assert_eq!(
                stats,
                DownloadStats {
                    body_bytes: body.len() as u64,
                    connections: 1,
                    resumes: 0,
                    restarts: 0,
                    buffer_size: BUFFER_SIZE,
                }
            );
            assert!(sink.max_write <= BUFFER_SIZE);
        }
        let manifest = fetcher
            .get_small(&server.url("https", "localhost", "/manifest.json"), 4096)
            .await
            .expect("manifest");
        assert_eq!(manifest, b"{\"format\":\"otter-release/1\"}");
    })
    .await
}

#[tokio::test]
async fn ca_trust_accepts_a_self_signed_server_certificate_as_its_own_ca() {
    bounded(async {
        let id = Identity::self_signed(&["localhost"]);
        let server = Server::start(vec![("/m", file(b"ok"))], Some(id.server_config())).await;
        let fetcher = fetcher(Some(Trust::Ca(vec![id.leaf()])), false);
        let got = fetcher
            .get_small(&server.url("https", "localhost", "/m"), 16)
            .await
            .expect("self-signed certificate as the CA");
        assert_eq!(got, b"ok");
    })
    .await
}

/// A self-signed certificate that says `CA:TRUE`, as `openssl req -x509`
/// makes them; `expired` puts its validity period in the past.
fn self_signed_ca_true(names: &[&str], expired: bool) -> Identity {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    if expired {
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
    }
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed certificate");
    Identity::new(vec![cert.der().clone()], key, cert.pem())
}

#[tokio::test]
async fn ca_trust_accepts_a_ca_true_self_signed_certificate_and_still_checks_name_and_validity() {
    bounded(async {
        let id = self_signed_ca_true(&["localhost"], false);
        let server = Server::start(vec![("/m", file(b"ok"))], Some(id.server_config())).await;
        let got = fetcher(Some(Trust::Ca(vec![id.leaf()])), false)
            .get_small(&server.url("https", "localhost", "/m"), 16)
            .await
            .expect("a CA:TRUE self-signed certificate given as --ca");
        assert_eq!(got, b"ok");

        let err = tls_failure(Trust::Ca(vec![id.leaf()]), &id, "127.0.0.1").await;
        assert!(
            matches!(
                err,
                FetchError::Tls {
                    failure: TlsFailure::NameMismatch,
                    ..
                }
            ),
            "{err:?}"
        );
        let expired = self_signed_ca_true(&["localhost"], true);
        let err = tls_failure(Trust::Ca(vec![expired.leaf()]), &expired, "localhost").await;
        assert!(
            matches!(
                err,
                FetchError::Tls {
                    failure: TlsFailure::Expired,
                    ..
                }
            ),
            "{err:?}"
        );
        // Another CA:TRUE certificate for the same name is not trusted just
        // because it is a CA: only the very certificate given is.
        let other = self_signed_ca_true(&["localhost"], false);
        let err = tls_failure(Trust::Ca(vec![id.leaf()]), &other, "localhost").await;
        assert!(
            matches!(
                &err,
                FetchError::Tls {
                    failure: TlsFailure::Certificate(c),
                    ..
                } if matches!(**c, rustls::CertificateError::Other(_))
                    && format!("{c:?}").contains("CaUsedAsEndEntity")
            ),
            "{err:?}"
        );
    })
    .await
}

async fn tls_failure(trust: Trust, id: &Identity, host: &str) -> FetchError {
    let server = Server::start(vec![("/m", file(b"ok"))], Some(id.server_config())).await;
    let err = fetcher(Some(trust), false)
        .get_small(&server.url("https", host, "/m"), 16)
        .await
        .expect_err("the server must not be trusted");
    assert!(server.seen().is_empty(), "no request may be sent");
    assert!(!err.is_transient(), "{err}: not retried");
    err
}

#[tokio::test]
async fn unknown_ca_name_mismatch_and_expiry_are_refused() {
    bounded(async {
        let ca = Ca::new("otter test CA");
        let other = Ca::new("someone else's CA");

        let id = ca.issue(&["localhost"], false);
        let err = tls_failure(Trust::Ca(vec![other.der()]), &id, "localhost").await;
        assert!(
            matches!(
                err,
                FetchError::Tls {
                    failure: TlsFailure::UnknownCa,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("not signed by a trusted CA"),
            "{err}"
        );

        let err = tls_failure(Trust::Ca(vec![ca.der()]), &id, "127.0.0.1").await;
        assert!(
            matches!(
                err,
                FetchError::Tls {
                    failure: TlsFailure::NameMismatch,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("127.0.0.1"),
            "{err}: names the URL"
        );

        let expired = ca.issue(&["localhost"], true);
        let err = tls_failure(Trust::Ca(vec![ca.der()]), &expired, "localhost").await;
        assert!(
            matches!(
                err,
                FetchError::Tls {
                    failure: TlsFailure::Expired,
                    ..
                }
            ),
            "{err:?}"
        );
    })
    .await
}

#[tokio::test]
async fn a_pinned_certificate_is_accepted_and_another_refused() {
    bounded(async {
        // The pin is the trust: another host name is accepted (documented).
        let id = Identity::self_signed(&["device.otter.invalid"]);
        let server = Server::start(vec![("/m", file(b"pinned"))], Some(id.server_config())).await;
        let got = fetcher(Some(Trust::Pinned(id.leaf())), false)
            .get_small(&server.url("https", "127.0.0.1", "/m"), 16)
            .await
            .expect("the pinned certificate");
        assert_eq!(got, b"pinned");

        let other = Identity::self_signed(&["device.otter.invalid"]);
        let err = tls_failure(Trust::Pinned(other.leaf()), &id, "127.0.0.1").await;
        assert!(
            matches!(
                err,
                FetchError::Tls {
                    failure: TlsFailure::PinMismatch,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("pinned"), "{err}");

        // A CA-signed server pinned by its CA's certificate is a mismatch too:
        // the pin is the end-entity certificate.
        let ca = Ca::new("otter test CA");
        let signed = ca.issue(&["localhost"], false);
        let err = tls_failure(Trust::Pinned(ca.der()), &signed, "localhost").await;
        assert!(
            matches!(
                err,
                FetchError::Tls {
                    failure: TlsFailure::PinMismatch,
                    ..
                }
            ),
            "{err:?}"
        );
    })
    .await
}

#[tokio::test]
async fn trust_loads_from_pem_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("otter test CA");
    let id = ca.issue(&["localhost"], false);
    let chain = dir.path().join("chain.pem");
    std::fs::write(&chain, format!("{}{}", id.leaf_pem, ca.cert.pem())).expect("write PEM");

    match Trust::ca_from_pem_file(&chain).expect("CA file") {
        Trust::Ca(certs) => assert_eq!(certs, vec![id.leaf(), ca.der()]),
        other => panic!("{other:?}"),
    }
    match Trust::pinned_from_pem_file(&chain).expect("pin file") {
        Trust::Pinned(cert) => assert_eq!(cert, id.leaf(), "the first certificate"),
        other => panic!("{other:?}"),
    }
    let missing = dir.path().join("missing.pem");
    assert!(matches!(
        Trust::ca_from_pem_file(&missing),
        Err(FetchError::TrustFile { .. })
    ));
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    let err = Trust::pinned_from_pem_file(&empty).expect_err("no certificate");
    assert!(matches!(err, FetchError::NoCertificate { .. }), "{err:?}");
    assert!(err.to_string().contains("empty.pem"), "{err}");
    assert!(matches!(
        Fetcher::new(config(Some(Trust::Ca(Vec::new())), false)),
        Err(FetchError::NoCaCertificates)
    ));
}

// --- plain HTTP -------------------------------------------------------------------

#[tokio::test]
async fn plain_http_is_refused_unless_allowed() {
    bounded(async {
        let body = image(2, 10_000);
        let server = Server::start(
            vec![(
                "/fw.bin",
                Route::File {
                    body: body.clone(),
                    ranges: true,
                },
            )],
            None,
        )
        .await;
        let url = server.url("http", "127.0.0.1", "/fw.bin");

        let mut sink = Recorder::default();
        let err = fetcher(None, false)
            .download(&url, 0, body.len() as u64, &mut sink)
            .await
            .expect_err("plain HTTP must be refused");
        assert!(matches!(err, FetchError::HttpRefused { .. }), "{err:?}");
        assert!(err.to_string().contains("https://"), "{err}");
        assert!(server.seen().is_empty(), "refused before connecting");

        // https without trust is refused the same way.
        let err = fetcher(None, false)
            .get_small(&server.url("https", "127.0.0.1", "/fw.bin"), 100)
            .await
            .expect_err("no trust");
        assert!(matches!(err, FetchError::NoTrust { .. }), "{err:?}");

        let logs = Logs::default();
        let _guard = logs.capture();
        let stats = fetcher(None, true)
            .download(&url, 0, body.len() as u64, &mut sink)
            .await
            .expect("allowed plain HTTP");
        assert_same(&sink.data, &body);
        assert_eq!(stats.connections, 1);
        assert_eq!(logs.count("plain HTTP"), 1, "one warning per fetch");
    })
    .await
}

// --- resume -------------------------------------------------------------------------

/// Download `IMAGE_LEN` bytes through a proxy cutting `CUTS` connections;
/// returns the sink, the stats and the proxy's counters.
async fn cut_download(tls: bool) -> (Recorder, DownloadStats, Arc<Vec<u8>>, Server, Proxy) {
    let seed = seed();
    let body = image(seed, IMAGE_LEN);
    let ca = Ca::new("otter test CA");
    let id = ca.issue(&["127.0.0.1"], false);
    let server = Server::start(
        vec![(
            "/fw.bin",
            Route::File {
                body: body.clone(),
                ranges: true,
            },
        )],
        tls.then(|| id.server_config()),
    )
    .await;
    let proxy = Proxy::start(
        server.addr,
        cut_offsets(seed, IMAGE_LEN, if tls { 40_000 } else { 8192 }),
    )
    .await;
    let (fetcher, url) = if tls {
        (
            fetcher(Some(Trust::Ca(vec![ca.der()])), false),
            proxy.url("https", "/fw.bin"),
        )
    } else {
        (fetcher(None, true), proxy.url("http", "/fw.bin"))
    };
    let mut sink = Recorder::default();
    let stats = fetcher
        .download(&url, 0, IMAGE_LEN as u64, &mut sink)
        .await
        .expect("the download survives the cuts");
    (sink, stats, body, server, proxy)
}

fn check_resumed(
    sink: &Recorder,
    stats: &DownloadStats,
    body: &[u8],
    server: &Server,
    proxy: &Proxy,
) {
    let cuts = proxy.cuts.load(Ordering::SeqCst);
    assert!(cuts >= 20, "only {cuts} cuts");
    assert_eq!(cuts, CUTS);
    assert_same(&sink.data, body);
    assert!(
        sink.max_write <= BUFFER_SIZE,
        "a write of {} bytes",
        sink.max_write
    );
    assert_eq!(sink.restarts, 0);
    assert_eq!(stats.connections as usize, cuts + 1);
    assert_eq!(stats.resumes as usize, cuts);
    assert_eq!(stats.restarts, 0);
    let len = body.len() as u64;
    assert!(
        stats.body_bytes <= len + (cuts * BUFFER_SIZE) as u64,
        "{} body bytes for {len}",
        stats.body_bytes
    );
    // Every reconnection asked for the rest, from strictly further on.
    let seen = server.seen();
    assert_eq!(seen.len(), cuts + 1);
    assert!(seen.iter().all(|s| s.path == "/fw.bin"), "{seen:?}");
    assert_eq!(seen[0].range, None);
    let mut last = 0;
    for s in &seen[1..] {
        let range = s.range.as_deref().expect("a Range request");
        let from: u64 = range
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("Range {range:?}"));
        assert!(from > last, "Range {range:?} after {last}");
        last = from;
    }
}

#[tokio::test]
async fn cut_connections_resume_over_http_with_at_most_one_buffer_again_per_cut() {
    bounded(async {
        let (sink, stats, body, server, proxy) = cut_download(false).await;
        check_resumed(&sink, &stats, &body, &server, &proxy);
        // Off the wire: everything the proxy delivered minus response heads
        // is body bytes the client received.
        let cuts = proxy.cuts.load(Ordering::SeqCst) as u64;
        let wire_body =
            proxy.delivered.load(Ordering::SeqCst) - server.head_bytes.load(Ordering::SeqCst);
        let len = body.len() as u64;
        let again = wire_body - len;
        eprintln!(
            "http: {cuts} cuts, {len} bytes, {wire_body} body bytes on the wire \
             ({again} again), client counted {}",
            stats.body_bytes
        );
        assert!(stats.body_bytes <= wire_body);
        assert!(
            again <= cuts * BUFFER_SIZE as u64,
            "{again} bytes downloaded twice over {cuts} cuts"
        );
    })
    .await
}

#[tokio::test]
async fn cut_connections_resume_over_https() {
    bounded(async {
        let (sink, stats, body, server, proxy) = cut_download(true).await;
        check_resumed(&sink, &stats, &body, &server, &proxy);
        eprintln!(
            "https: {} cuts, {} bytes, client counted {} body bytes",
            proxy.cuts.load(Ordering::SeqCst),
            body.len(),
            stats.body_bytes
        );
    })
    .await
}

#[tokio::test]
async fn a_server_ignoring_range_restarts_the_sink() {
    bounded(async {
        let body = image(3, 300_000);
        let server = Server::start(
            vec![(
                "/fw.bin",
                Route::File {
                    body: body.clone(),
                    ranges: false,
                },
            )],
            None,
        )
        .await;
        let proxy = Proxy::start(server.addr, vec![100_000]).await;
        let mut sink = Recorder::default();
        let stats = fetcher(None, true)
            .download(
                &proxy.url("http", "/fw.bin"),
                0,
                body.len() as u64,
                &mut sink,
            )
            .await
            .expect("download");
        assert_same(&sink.data, &body);
        assert_eq!(sink.restarts, 1);
        assert_eq!(
            (stats.connections, stats.resumes, stats.restarts),
            (2, 0, 1)
        );
        let seen = server.seen();
        assert!(seen[1].range.is_some(), "asked for a range");

        // Resuming a written prefix from a server that ignores Range.
        let mut sink = Recorder {
            data: body[..50_000].to_vec(),
            ..Recorder::default()
        };
        let stats = fetcher(None, true)
            .download(
                &server.url("http", "127.0.0.1", "/fw.bin"),
                50_000,
                body.len() as u64,
                &mut sink,
            )
            .await
            .expect("download");
        assert_same(&sink.data, &body);
        assert_eq!((sink.restarts, stats.restarts), (1, 1));
    })
    .await
}

#[tokio::test]
async fn a_written_prefix_is_resumed_with_range() {
    bounded(async {
        let body = image(4, 200_000);
        let server = Server::start(
            vec![(
                "/fw.bin",
                Route::File {
                    body: body.clone(),
                    ranges: true,
                },
            )],
            None,
        )
        .await;
        let mut sink = Recorder {
            data: body[..123_457].to_vec(),
            ..Recorder::default()
        };
        let stats = fetcher(None, true)
            .download(
                &server.url("http", "127.0.0.1", "/fw.bin"),
                123_457,
                body.len() as u64,
                &mut sink,
            )
            .await
            .expect("download");
        assert_same(&sink.data, &body);
        assert_eq!(stats.body_bytes, (body.len() - 123_457) as u64);
        assert_eq!(server.seen()[0].range.as_deref(), Some("bytes=123457-"));

        // Nothing left to fetch: no request at all.
        let stats = fetcher(None, true)
            .download(
                &server.url("http", "127.0.0.1", "/fw.bin"),
                200_000,
                200_000,
                &mut sink,
            )
            .await
            .expect("empty range");
        assert_eq!(stats.connections, 0);
        assert!(matches!(
            fetcher(None, true)
                .download(&server.url("http", "127.0.0.1", "/fw.bin"), 5, 4, &mut sink)
                .await,
            Err(FetchError::InvalidRange { start: 5, len: 4 })
        ));
    })
    .await
}

#[tokio::test]
async fn a_stalled_server_times_out_and_the_download_resumes() {
    bounded(async {
        let body = image(5, 200_000);
        let stalls = Arc::new(AtomicUsize::new(1));
        let server = Server::start(
            vec![(
                "/fw.bin",
                Route::Stall {
                    body: body.clone(),
                    after: 70_000,
                    stalls: stalls.clone(),
                },
            )],
            None,
        )
        .await;
        let fetcher = Fetcher::new(FetchConfig {
            read_timeout: Duration::from_millis(300),
            ..config(None, true)
        })
        .expect("fetcher");
        let mut sink = Recorder::default();
        let stats = fetcher
            .download(
                &server.url("http", "127.0.0.1", "/fw.bin"),
                0,
                body.len() as u64,
                &mut sink,
            )
            .await
            .expect("download");
        assert_same(&sink.data, &body);
        assert_eq!((stats.connections, stats.resumes), (2, 1));
        assert_eq!(stats.body_bytes, body.len() as u64, "nothing fetched twice");
        assert_eq!(server.seen()[1].range.as_deref(), Some("bytes=70000-"));
    })
    .await
}

/// A server that sends a byte every 50 ms never trips the read timeout
/// (300 ms); the small fetch's overall deadline ends it, so a manifest
/// server cannot hold a check for longer.
#[tokio::test]
async fn a_dripping_server_cannot_hold_a_small_fetch_past_its_deadline() {
    bounded(async {
        let body = image(8, 5_000);
        let server = Server::start(
            vec![(
                "/manifest.json",
                Route::Drip {
                    body,
                    every: Duration::from_millis(50),
                },
            )],
            None,
        )
        .await;
        let fetcher = Fetcher::new(FetchConfig {
            read_timeout: Duration::from_millis(300),
            small_deadline: Duration::from_secs(1),
            ..config(None, true)
        })
        .expect("fetcher");
        let started = std::time::Instant::now();
        let e = fetcher
            .get_small(
                &server.url("http", "127.0.0.1", "/manifest.json"),
                64 * 1024,
            )
            .await
            .expect_err("a dripped manifest was accepted");
        assert!(
            matches!(e, FetchError::Deadline { after, .. } if after == Duration::from_secs(1)),
            "{e:?}"
        );
        assert!(!e.is_transient());
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "the deadline held for {took:?}"
        );
    })
    .await
}

/// A download dripping at 20 bytes/s is abandoned as too slow once a
/// progress window passes with fewer than `min_progress` bytes; what it
/// received is kept (the next check resumes from it).
#[tokio::test]
async fn a_dripping_download_is_abandoned_as_too_slow() {
    bounded(async {
        let body = image(9, 50_000);
        let server = Server::start(
            vec![(
                "/fw.bin",
                Route::Drip {
                    body: body.clone(),
                    every: Duration::from_millis(50),
                },
            )],
            None,
        )
        .await;
        let fetcher = Fetcher::new(FetchConfig {
            read_timeout: Duration::from_millis(300),
            min_progress: 1_000,
            progress_window: Duration::from_millis(600),
            ..config(None, true)
        })
        .expect("fetcher");
        let mut sink = Recorder::default();
        let started = std::time::Instant::now();
        let e = fetcher
            .download(
                &server.url("http", "127.0.0.1", "/fw.bin"),
                0,
                body.len() as u64,
                &mut sink,
            )
            .await
            .expect_err("a dripping download completed");
        match &e {
            FetchError::TooSlow {
                got, min, window, ..
            } => {
                assert!(*got < 1_000, "{got}");
                assert_eq!((*min, *window), (1_000, Duration::from_millis(600)));
            }
            other => panic!("expected TooSlow, got {other:?}"),
        }
        assert!(
            !e.is_transient(),
            "a too-slow server must not be retried at once"
        );
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "held for {took:?}");
        assert!(!sink.data.is_empty(), "the bytes received were dropped");
        assert_same(&sink.data, &body[..sink.data.len()]);
        assert_eq!(server.seen().len(), 1, "retried a too-slow server");
    })
    .await
}

// --- refusals ----------------------------------------------------------------------

#[tokio::test]
async fn a_length_other_than_the_manifests_is_refused() {
    bounded(async {
        let body = image(6, 50_000);
        let server = Server::start(
            vec![("/fw.bin", Route::File { body: body.clone(), ranges: true })],
            None,
        )
        .await;
        let url = server.url("http", "127.0.0.1", "/fw.bin");
        let fetcher = fetcher(None, true);
        let len = body.len() as u64;

        let err = fetcher
            .download(&url, 0, len + 1, &mut Recorder::default())
            .await
            .expect_err("Content-Length differs");
        assert!(
            matches!(err, FetchError::LengthMismatch { expected, got, .. } if expected == len + 1 && got == len),
            "{err:?}"
        );
        // The same through a 206's Content-Range total.
        let mut sink = Recorder { data: body[..1000].to_vec(), ..Recorder::default() };
        let err = fetcher
            .download(&url, 1000, len - 1, &mut sink)
            .await
            .expect_err("Content-Range total differs");
        assert!(matches!(err, FetchError::LengthMismatch { got, .. } if got == len), "{err:?}");
        // A chunked body longer than expected is stopped at the expected end.
        let chunked = Server::start(vec![("/fw.bin", Route::Chunked(body.clone()))], None).await;
        let mut sink = Recorder::default();
        let err = fetcher
            .download(&chunked.url("http", "127.0.0.1", "/fw.bin"), 0, len - 10, &mut sink)
            .await
            .expect_err("body overruns");
        assert!(matches!(err, FetchError::LengthMismatch { .. }), "{err:?}");
        assert!(sink.data.len() as u64 <= len - 10);
        assert_eq!(server.seen().len(), 2, "not retried");
        assert_eq!(chunked.seen().len(), 1, "not retried");
    })
    .await
}

#[tokio::test]
async fn get_small_refuses_bodies_over_the_limit() {
    bounded(async {
        let body = image(7, 1000);
        let server = Server::start(
            vec![
                (
                    "/sized",
                    Route::File {
                        body: body.clone(),
                        ranges: true,
                    },
                ),
                ("/chunked", Route::Chunked(body.clone())),
            ],
            None,
        )
        .await;
        let fetcher = fetcher(None, true);
        for path in ["/sized", "/chunked"] {
            let url = server.url("http", "127.0.0.1", path);
            let got = fetcher.get_small(&url, 1000).await.expect("at the limit");
            assert_eq!(got, *body);
            let err = fetcher
                .get_small(&url, 999)
                .await
                .expect_err("over the limit");
            let announced = (path == "/sized").then_some(1000);
            assert!(
                matches!(err, FetchError::TooLarge { limit: 999, size, .. } if size == announced),
                "{path}: {err:?}"
            );
        }
    })
    .await
}

#[tokio::test]
async fn statuses_redirects_and_sink_errors() {
    bounded(async {
        let body = image(8, 40_000);
        let server = Server::start(
            vec![
                (
                    "/fw.bin",
                    Route::File {
                        body: body.clone(),
                        ranges: true,
                    },
                ),
                ("/moved", Route::Redirect("/fw.bin".into())),
                ("/r1", Route::Redirect("/r2".into())),
                ("/r2", Route::Redirect("/r3".into())),
                ("/r3", Route::Redirect("/r4".into())),
                ("/r4", Route::Redirect("/fw.bin".into())),
                ("/busy", Route::Status(503)),
            ],
            None,
        )
        .await;
        let url = |p| server.url("http", "127.0.0.1", p);
        let fetcher = fetcher(None, true);
        let len = body.len() as u64;

        let mut sink = Recorder::default();
        let stats = fetcher
            .download(&url("/moved"), 0, len, &mut sink)
            .await
            .expect("redirect");
        assert_same(&sink.data, &body);
        assert_eq!(stats.connections, 2);
        let got = fetcher
            .get_small(&url("/r2"), 50_000)
            .await
            .expect("3 redirects");
        assert_eq!(got, *body);
        let err = fetcher
            .get_small(&url("/r1"), 50_000)
            .await
            .expect_err("4 redirects");
        assert!(
            matches!(err, FetchError::TooManyRedirects { .. }),
            "{err:?}"
        );

        let before = server.seen().len();
        let err = fetcher
            .get_small(&url("/missing"), 10)
            .await
            .expect_err("404");
        assert!(
            matches!(err, FetchError::Status { status: 404, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("/missing"), "{err}");
        assert_eq!(server.seen().len(), before + 1, "404 is not retried");

        let before = server.seen().len();
        let err = fetcher
            .download(&url("/busy"), 0, 10, &mut Recorder::default())
            .await
            .expect_err("503");
        assert!(
            matches!(&err, FetchError::GaveUp { attempts: 3, last, .. }
                if matches!(**last, FetchError::Status { status: 503, .. })),
            "{err:?}"
        );
        assert_eq!(server.seen().len(), before + 3, "503 is retried");

        let mut sink = Recorder {
            data: body[..1].to_vec(),
            ..Recorder::default()
        };
        let err = fetcher
            .download(&url("/fw.bin"), len + 5, len + 10, &mut sink)
            .await
            .expect_err("416");
        assert!(
            matches!(err, FetchError::RangeNotSatisfiable { .. }),
            "{err:?}"
        );

        let mut sink = Recorder {
            fail_past: Some(10_000),
            ..Recorder::default()
        };
        let before = server.seen().len();
        let err = fetcher
            .download(&url("/fw.bin"), 0, len, &mut sink)
            .await
            .expect_err("sink error");
        match &err {
            FetchError::Sink { offset, source, .. } => {
                assert_eq!(*offset, 8192, "the write that crossed the limit");
                assert!(
                    source.downcast_ref::<FlashFull>().is_some(),
                    "the sink's own error"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            server.seen().len(),
            before + 1,
            "sink errors are not retried"
        );
    })
    .await
}

#[tokio::test]
async fn https_redirects_never_downgrade_to_http() {
    bounded(async {
        let ca = Ca::new("otter test CA");
        let id = ca.issue(&["localhost"], false);
        let server = Server::start(
            vec![("/m", Route::Redirect("http://localhost:1/m".into()))],
            Some(id.server_config()),
        )
        .await;
        let err = fetcher(Some(Trust::Ca(vec![ca.der()])), true)
            .get_small(&server.url("https", "localhost", "/m"), 10)
            .await
            .expect_err("downgrade");
        assert!(matches!(err, FetchError::BadRedirect { .. }), "{err:?}");
    })
    .await
}

#[tokio::test]
async fn gives_up_after_max_attempts_without_progress() {
    bounded(async {
        // A server that accepts and hangs up at once.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(tcp);
            }
        });
        let url = Url::parse(&format!("http://127.0.0.1:{}/fw.bin", addr.port())).expect("URL");
        let err = fetcher(None, true)
            .download(&url, 0, 1000, &mut Recorder::default())
            .await
            .expect_err("no server");
        assert!(matches!(err, FetchError::GaveUp { attempts: 3, .. }), "{err:?}");
        assert!(err.to_string().contains("giving up after 3 attempts"), "{err}");
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        task.abort();
        let _ = task.await;

        // Nobody listening at all.
        let err = fetcher(None, true)
            .get_small(&url, 10)
            .await
            .expect_err("connection refused");
        assert!(
            matches!(&err, FetchError::GaveUp { last, .. } if matches!(**last, FetchError::Connect { .. })),
            "{err:?}"
        );
    })
    .await
}
