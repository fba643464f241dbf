//! Check-in load on the fleet server against nginx serving a static
//! manifest, in the same run, on 127.0.0.1 only, bounded in count and time.
//!
//! `cargo bench -p otter-server --bench fleet_load -- [DEVICES] [SECONDS] [CONNECTIONS]`
//! (defaults 10000, 10, 64). For each of SQLite and PostgreSQL (a cluster
//! started in a temporary folder, tests/support/pg.rs): the server runs in
//! its own process (this binary re-executed), DEVICES light clients enroll,
//! check in once, then CONNECTIONS keep-alive connections check in round
//! robin over all devices for SECONDS. nginx (Debian's, 2 workers) is then
//! loaded the same way with `GET /manifest.json`. Printed: requests per
//! second, p50/p99 latency, errors, and the server's RSS (VmRSS, VmHWM).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

#[path = "../tests/support/pg.rs"]
mod pg;

const ROLE: &str = "OTTER_BENCH_ROLE";

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("server") {
        serve();
        return;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let devices: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let secs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let conns: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    assert!(
        devices <= 100_000 && secs <= 120 && conns <= 512,
        "bounded: at most 100000 devices, 120 s, 512 connections"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("fleet load: {devices} devices, {conns} connections, {secs} s per run, 127.0.0.1");
    let mut rows = Vec::new();
    for backend in ["sqlite", "postgres"] {
        let work = tempfile::tempdir().unwrap();
        let pg = (backend == "postgres").then(pg::Postgres::start);
        let (mut child, addr, data) =
            spawn_server(work.path(), pg.as_ref().map(|p| p.url.as_str()));
        let enroll = std::fs::read_to_string(data.join("enroll.key"))
            .unwrap()
            .trim()
            .to_string();
        let r = rt.block_on(async {
            let t0 = Instant::now();
            let tokens = enroll_all(addr, &enroll, devices, conns).await;
            let enrolled = t0.elapsed();
            let bodies = Arc::new(tokens);
            // One check-in each: the steady state has every device known.
            let first = load(
                addr,
                conns,
                bodies.clone(),
                Duration::from_secs(3600),
                Some(devices),
            )
            .await;
            assert_eq!(first.errors, 0, "first check-ins failed");
            let r = load(addr, conns, bodies, Duration::from_secs(secs), None).await;
            (enrolled, r)
        });
        let rss = rss_kib(child.id());
        println!(
            "{backend:>8}: enrolled {devices} in {:.1} s; check-ins {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} errors; server VmRSS {} MiB, VmHWM {} MiB",
            r.0.as_secs_f64(), r.1.rate(), r.1.pct(50.0), r.1.pct(99.0), r.1.errors, rss.0 / 1024, rss.1 / 1024
        );
        rows.push((backend, r.1, rss));
        let _ = child.kill();
        let _ = child.wait();
        drop(pg);
    }
    let nginx = rt.block_on(async {
        let work = tempfile::tempdir().unwrap();
        let (mut child, addr) = spawn_nginx(work.path());
        let r = load_get(addr, conns, Duration::from_secs(secs)).await;
        let _ = child.kill();
        let _ = child.wait();
        r
    });
    println!(
        "   nginx: GET /manifest.json {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
        nginx.rate(),
        nginx.pct(50.0),
        nginx.pct(99.0),
        nginx.errors
    );
    for (backend, r, _) in &rows {
        println!(
            "{backend}: {:.1}% of nginx's request rate",
            100.0 * r.rate() / nginx.rate()
        );
    }
    let out = json!({
        "devices": devices, "connections": conns, "seconds": secs,
        "nginx": {"rps": nginx.rate(), "p50_ms": nginx.pct(50.0), "p99_ms": nginx.pct(99.0)},
        "server": rows.iter().map(|(b, r, rss)| json!({"backend": b, "rps": r.rate(), "p50_ms": r.pct(50.0), "p99_ms": r.pct(99.0), "errors": r.errors, "rss_kib": rss.0, "hwm_kib": rss.1})).collect::<Vec<_>>(),
    });
    println!("{out}");
}

/// The server process: `OTTER_BENCH_DATA`, `OTTER_BENCH_DB` (optional).
fn serve() {
    let data = PathBuf::from(std::env::var("OTTER_BENCH_DATA").unwrap());
    let key = otter_release::SigningKey::from_seed(&[1; 32]);
    let mut opts = otter_server::ServerOptions::new(&data, "127.0.0.1:0".parse().unwrap());
    opts.trusted = vec![key.public_key()];
    opts.database_url = std::env::var("OTTER_BENCH_DB").ok();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let running = otter_server::start(opts, otter_server::system_clock())
            .await
            .unwrap();
        println!("{}", running.addr);
        running.wait().await.unwrap();
    });
}

fn spawn_server(work: &Path, db: Option<&str>) -> (Child, SocketAddr, PathBuf) {
    let data = work.join("data");
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(ROLE, "server")
        .env("OTTER_BENCH_DATA", &data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(d) = db {
        cmd.env("OTTER_BENCH_DB", d);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    use std::io::BufRead as _;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().parse().unwrap(), data)
}

fn spawn_nginx(work: &Path) -> (Child, SocketAddr) {
    let key = otter_release::SigningKey::from_seed(&[1; 32]);
    let fw = vec![0u8; 1000];
    let spec = otter_release::ReleaseSpec {
        product: "bench",
        chip: "esp32s3",
        version: "1.0.0",
        secure_version: 0,
        project: "bench",
        firmware: &fw,
        www: None,
        alternatives: &[],
        created: otter_release::Timestamp::from_unix_saturating(1_800_000_000),
        expires: otter_release::Timestamp::from_unix_saturating(1_900_000_000),
    };
    std::fs::write(
        work.join("manifest.json"),
        spec.manifest().unwrap().to_json(),
    )
    .unwrap();
    let _ = key;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = work.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 2;\ndaemon off;\npid {0}/nginx.pid;\nerror_log {0}/error.log;\nevents {{ worker_connections 1024; }}\n\
             http {{ access_log off; keepalive_requests 1000000; client_body_temp_path {0}/cb; proxy_temp_path {0}/px; fastcgi_temp_path {0}/fc; uwsgi_temp_path {0}/uw; scgi_temp_path {0}/sc;\n\
             server {{ listen 127.0.0.1:{port}; root {0}; location / {{ }} }} }}\n",
            work.display()
        ),
    )
    .unwrap();
    let nginx = if Path::new("/usr/sbin/nginx").exists() {
        "/usr/sbin/nginx"
    } else {
        "nginx"
    };
    let child = Command::new(nginx)
        .args(["-c", conf.to_str().unwrap(), "-p", work.to_str().unwrap()])
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("nginx is needed as the reference (scripts/setup-system.sh installs it): {e}")
        });
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, addr)
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

struct Run {
    ok: usize,
    errors: usize,
    elapsed: Duration,
    lat_us: Vec<u32>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> f64 {
        if self.lat_us.is_empty() {
            return 0.0;
        }
        let i = ((self.lat_us.len() as f64 - 1.0) * p / 100.0).round() as usize;
        f64::from(self.lat_us[i]) / 1000.0
    }
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

async fn post(
    s: &mut Sender,
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: String,
) -> (u16, Bytes) {
    s.ready().await.unwrap();
    let mut b = Request::post(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let resp = s
        .send_request(b.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

async fn enroll_all(addr: SocketAddr, key: &str, n: usize, conns: usize) -> Vec<(String, String)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let next = next.clone();
        let key = key.to_string();
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr).await;
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return out;
                }
                let id = format!("load-{i:05}");
                let (st, body) = post(
                    &mut s,
                    addr,
                    "/device/v1/enroll",
                    None,
                    json!({"device_id": id, "enrollment_key": key}).to_string(),
                )
                .await;
                assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
                let v: Value = serde_json::from_slice(&body).unwrap();
                out.push((id, v["token"].as_str().unwrap().to_string()));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn check_in_body(id: &str) -> String {
    json!({
        "device_id": id, "product": "bench", "chip": "esp32s3", "version": "1.0.0",
        "sha256": "22ca436fae5dcc41bff84ad723cda1e201d076d2f18b58a97e66b69637648d69", "secure_counter": 0,
        "boot": {"running_slot": "ota_0", "state": "valid", "slots": [
            {"name": "factory", "state": null, "version": "0.9.0"},
            {"name": "ota_0", "state": "valid", "version": "1.0.0"},
            {"name": "ota_1", "state": null, "version": null}]},
        "events": [],
    })
    .to_string()
}

/// Check-ins round robin over `devices` for `dur`, or `count` in total.
async fn load(
    addr: SocketAddr,
    conns: usize,
    devices: Arc<Vec<(String, String)>>,
    dur: Duration,
    count: Option<usize>,
) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (next, stop, devices) = (next.clone(), stop.clone(), devices.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr).await;
            let (mut ok, mut errors, mut lat) = (0usize, 0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if count.is_some_and(|c| i >= c) {
                    break;
                }
                let (id, token) = &devices[i % devices.len()];
                let t = Instant::now();
                let (st, _) = post(
                    &mut s,
                    addr,
                    "/device/v1/checkin",
                    Some(token),
                    check_in_body(id),
                )
                .await;
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if st == 200 {
                    ok += 1
                } else {
                    errors += 1
                }
            }
            (ok, errors, lat)
        }));
    }
    if count.is_none() {
        tokio::time::sleep(dur).await;
        stop.store(true, Ordering::Relaxed);
    }
    collect(tasks, t0).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<(usize, usize, Vec<u32>)>>,
    t0: Instant,
) -> Run {
    let mut run = Run {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        lat_us: Vec::new(),
    };
    for t in tasks {
        let (ok, e, l) = t.await.unwrap();
        run.ok += ok;
        run.errors += e;
        run.lat_us.extend(l);
    }
    run.elapsed = t0.elapsed();
    run.lat_us.sort_unstable();
    run
}

async fn load_get(addr: SocketAddr, conns: usize, dur: Duration) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr).await;
            let (mut ok, mut errors, mut lat) = (0usize, 0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                s.ready().await.unwrap();
                let req = Request::get("/manifest.json")
                    .header("host", addr.to_string())
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let resp = s.send_request(req).await.unwrap();
                let st = resp.status().as_u16();
                let _ = resp.into_body().collect().await.unwrap();
                lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if st == 200 {
                    ok += 1
                } else {
                    errors += 1
                }
            }
            (ok, errors, lat)
        }));
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    collect(tasks, t0).await
}
