//! `otter server`: the fleet update server (docs/fleet.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use otter_release::PublicKey;
use otter_server::ServerOptions;
use serde_json::json;

/// Arguments of `otter server`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data folder: fleet.db (SQLite), artifacts/, admin.token, enroll.key (created if missing).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8780")]
    listen: SocketAddr,
    /// PostgreSQL instead of SQLite: postgres://USER@HOST:PORT/DB.
    #[arg(long, value_name = "URL", env = "OTTER_DATABASE_URL")]
    database: Option<String>,
    /// A public key (otter keygen's NAME.pub) releases must be signed by (repeatable).
    #[arg(long, value_name = "KEY.pub", required = true)]
    trust: Vec<PathBuf>,
    /// Seconds between check-ins the server suggests to devices.
    #[arg(long, default_value_t = 60)]
    poll: u64,
    /// Check-ins per second a device may make on average.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Check-ins a device may make in a burst.
    #[arg(long, default_value_t = 10.0)]
    burst: f64,
    /// Keep release artifacts in this S3-compatible bucket instead of DIR/artifacts/
    /// (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).
    #[arg(long, value_name = "BUCKET", requires = "s3_endpoint")]
    s3_bucket: Option<String>,
    /// The object store's endpoint: https://s3.REGION.amazonaws.com, http://127.0.0.1:8333, …
    #[arg(long, value_name = "URL", requires = "s3_bucket")]
    s3_endpoint: Option<String>,
    /// The region the S3 signatures name.
    #[arg(long, value_name = "REGION", default_value = "us-east-1")]
    s3_region: String,
    /// A key prefix inside the bucket, for example otter/.
    #[arg(long, value_name = "PREFIX", default_value = "")]
    s3_prefix: String,
    /// Virtual-hosted URLs (https://BUCKET.endpoint/KEY) instead of path-style (endpoint/BUCKET/KEY).
    #[arg(long)]
    s3_virtual_host: bool,
    /// How devices download from S3: redirect (302 to a presigned URL; the default)
    /// or proxy (through this server, for devices that cannot reach the bucket).
    #[arg(long, value_name = "MODE", default_value = "redirect", value_parser = ["redirect", "proxy"])]
    s3_downloads: String,
    /// Print the startup line as JSON: `{url, pid, data, backend, admin_token_file, enroll_key_file}`.
    #[arg(long)]
    json: bool,
}

/// Runs `otter server` until Ctrl-C.
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    crate::cmd::device::init_logging();
    let mut trusted = Vec::new();
    for p in &a.trust {
        let pem = std::fs::read_to_string(p)
            .with_context(|| format!("reading the trusted key {}", p.display()))?;
        trusted.push(
            PublicKey::from_pem(&pem)
                .with_context(|| format!("{}: not an otter public key", p.display()))?,
        );
    }
    if !(a.rate > 0.0 && a.burst >= 1.0) {
        anyhow::bail!("--rate must be > 0 and --burst at least 1");
    }
    let mut opts = ServerOptions::new(&a.data, a.listen);
    opts.trusted = trusted;
    opts.database_url = a.database.clone();
    opts.poll_s = a.poll;
    opts.rate_per_s = a.rate;
    opts.burst = a.burst;
    opts.tick = Duration::from_secs(1);
    if let (Some(bucket), Some(endpoint)) = (&a.s3_bucket, &a.s3_endpoint) {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .with_context(|| format!("an S3 bucket needs credentials: set {name}"))
        };
        opts.s3 = Some(otter_server::artifacts::S3Options {
            endpoint: endpoint.clone(),
            bucket: bucket.clone(),
            region: a.s3_region.clone(),
            prefix: a.s3_prefix.clone(),
            virtual_host: a.s3_virtual_host,
            access_key: var("AWS_ACCESS_KEY_ID")?,
            secret_key: var("AWS_SECRET_ACCESS_KEY")?,
            downloads: if a.s3_downloads == "proxy" {
                otter_server::artifacts::Downloads::Proxy
            } else {
                otter_server::artifacts::Downloads::Redirect
            },
        });
    }
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let running = otter_server::start(opts, otter_server::system_clock())
            .await
            .with_context(|| format!("starting the fleet server with data in {}", a.data.display()))?;
        let url = format!("http://{}", running.addr);
        let backend = format!("{:?}", running.backend).to_lowercase();
        if a.json {
            println!(
                "{}",
                json!({
                    "url": url,
                    "pid": std::process::id(),
                    "data": a.data.display().to_string(),
                    "backend": backend,
                    "artifacts": match (&a.s3_bucket, &a.s3_endpoint) {
                        (Some(b), Some(e)) => format!("s3://{b}/{} at {e}", a.s3_prefix),
                        _ => a.data.join("artifacts").display().to_string(),
                    },
                    "admin_token_file": a.data.join("admin.token").display().to_string(),
                    "enroll_key_file": a.data.join("enroll.key").display().to_string(),
                })
            );
        } else {
            println!(
                "otter server: listening on {url} ({backend}; data in {}; operator token in {}, enrollment key in {})",
                a.data.display(),
                a.data.join("admin.token").display(),
                a.data.join("enroll.key").display()
            );
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        tokio::select! {
            r = running.wait() => r.context("serving")?,
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}
