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
