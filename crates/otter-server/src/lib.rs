//! otter's fleet update server: devices enroll and check in, operators publish
//! signed releases and roll them out in waves that halt themselves when the
//! devices of a wave roll back.
//!
//! - [`store`]: devices, releases, events and rollouts in SQLite (a file) or
//!   PostgreSQL, one SQL code path (sqlx `Any`).
//! - [`rollout`]: the wave/soak/halt state machine, pure.
//! - [`wire`]: the device API's bodies, parsed strictly and bounded.
//! - [`app`]: the HTTP router (device API, artifact downloads, REST API).
//!
//! What it is not: a signer. Releases arrive signed (`otter release`) and are
//! published only when their signature verifies against the configured keys;
//! devices verify them again. The server never holds a signing key, and any
//! static host could serve the same bytes.
//!
//! docs/fleet.md describes the API, the rollout rules and their defaults.

pub mod app;
pub mod artifacts;
pub mod error;
pub mod openapi;
pub mod rollout;
pub mod store;
pub mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use otter_release::PublicKey;

pub use app::{app, system_clock, AppState, Clock, Config};
pub use error::{ApiError, StoreError};
pub use store::Store;

/// How `otter server` runs.
#[derive(Clone)]
pub struct ServerOptions {
    /// The data folder: `fleet.db`, `artifacts/`, `admin.token`, `enroll.key`.
    pub data: PathBuf,
    /// Where to listen.
    pub listen: SocketAddr,
    /// A database URL instead of `sqlite://DATA/fleet.db`
    /// (`postgres://USER@HOST/DB`).
    pub database_url: Option<String>,
    /// Keys releases must be signed by.
    pub trusted: Vec<PublicKey>,
    /// Seconds between check-ins the server suggests.
    pub poll_s: u64,
    /// Average check-ins per second per device.
    pub rate_per_s: f64,
    /// Burst of check-ins per device.
    pub burst: f64,
    /// How often rollouts are evaluated without check-ins.
    pub tick: Duration,
    /// Artifacts in an S3-compatible bucket instead of `DATA/artifacts/`.
    pub s3: Option<artifacts::S3Options>,
}

impl ServerOptions {
    /// Defaults for `data` and `listen`.
    pub fn new(data: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            data: data.into(),
            listen,
            database_url: None,
            trusted: Vec::new(),
            poll_s: 60,
            rate_per_s: 1.0,
            burst: 10.0,
            tick: Duration::from_secs(1),
            s3: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The data folder or a secret file.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The artifact store (the S3 bucket does not answer, …).
    #[error("artifact store: {0}")]
    Artifacts(#[from] artifacts::ArtifactError),
    /// No trusted key.
    #[error(
        "no trusted release key: the server publishes only releases signed by a configured key"
    )]
    NoTrustedKey,
}

impl ServerError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Store(e) => e.code(),
            Self::Artifacts(e) => e.code(),
            Self::NoTrustedKey => "no_trusted_key",
        }
    }
}

/// Reads the secret in `path`, or makes one (mode 0600).
pub fn secret_file(path: &Path) -> Result<String, ServerError> {
    let io = |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let s = store::random_hex(32)?;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    use std::io::Write as _;
    let mut f = o.open(path).map_err(io)?;
    f.write_all(format!("{s}\n").as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(s)
}

/// A running server.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state (store, clock).
    pub state: AppState,
    /// Which database.
    pub backend: store::Backend,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    ticker: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Serves until the server fails.
    pub async fn wait(self) -> std::io::Result<()> {
        let r = self
            .task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        self.ticker.abort();
        r
    }
}

/// Opens the data folder and the store, and starts serving.
pub async fn start(opts: ServerOptions, clock: Clock) -> Result<Running, ServerError> {
    if opts.trusted.is_empty() {
        return Err(ServerError::NoTrustedKey);
    }
    for d in [
        opts.data.clone(),
        opts.data.join("artifacts"),
        opts.data.join("tmp"),
    ] {
        std::fs::create_dir_all(&d).map_err(|source| ServerError::Io {
            path: d.clone(),
            source,
        })?;
    }
    let admin_token = secret_file(&opts.data.join("admin.token"))?;
    let enrollment_key = secret_file(&opts.data.join("enroll.key"))?;
    let url = match &opts.database_url {
        Some(u) => u.clone(),
        None => format!("sqlite://{}", opts.data.join("fleet.db").display()),
    };
    let store = Arc::new(Store::open(&url).await?);
    let backend = store.backend();
    let artifacts = match &opts.s3 {
        None => artifacts::Artifacts::Local(opts.data.join("artifacts")),
        Some(o) => artifacts::Artifacts::S3(Box::new(artifacts::S3Store::open(o).await?)),
    };
    let cfg = Config {
        data: opts.data.clone(),
        artifacts: Arc::new(artifacts),
        trusted: opts.trusted.clone(),
        admin_token,
        enrollment_key,
        poll_s: opts.poll_s,
        rate_per_s: opts.rate_per_s,
        burst: opts.burst,
    };
    let state = AppState::new(store.clone(), cfg, clock.clone());
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServerError::Io {
            path: PathBuf::from(opts.listen.to_string()),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Io {
        path: PathBuf::from(opts.listen.to_string()),
        source,
    })?;
    let router = app(state.clone());
    let task = tokio::spawn(async move { axum::serve(listener, router).await });
    let tick = opts.tick;
    let ticker = tokio::spawn(async move {
        let mut iv = tokio::time::interval(tick);
        loop {
            iv.tick().await;
            if let Err(e) = store.tick(clock()).await {
                tracing::error!("evaluating rollouts: {e}");
            }
        }
    });
    Ok(Running {
        addr,
        state,
        backend,
        task,
        ticker,
    })
}
