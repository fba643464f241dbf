//! The virtual device served by `otter_agent::net` (the `otter-device` core
//! behind a tokio adapter) on 127.0.0.1, driven by curl: status, auth,
//! uploads and the reboot they ask for, the web UI's files, the self-test
//! verdict, and the connection cap's eviction.
//!
//! Every test is bounded by [`LIMIT`]; a missing curl fails them.

use std::future::Future;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use otter_agent::net::{self, Core, Hooks, Host, MAX_CONNECTIONS};
use otter_agent::Behavior;
use otter_device::service::RebootReason;
use otter_ota::SlotId;
use otter_sim::device::{build_firmware, create, CreateOptions, VirtualDevice};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

const LIMIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "net-test-token";

async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("the test ran past its time limit")
}

struct Served {
    url: String,
    core: Arc<Mutex<Core>>,
    host: Arc<Mutex<VirtualDevice>>,
    reboots: mpsc::UnboundedReceiver<RebootReason>,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

fn device(rollback: bool, anti: Option<u32>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut o = CreateOptions::new();
    o.rollback = rollback;
    o.anti_rollback = anti;
    o.token = Some(TOKEN.into());
    create(dir.path(), &o).expect("the device is created");
    dir
}

async fn serve(dir: tempfile::TempDir, behavior: Behavior, window: Duration) -> Served {
    let mut vd = VirtualDevice::open(dir.path()).expect("the device opens");
    let mut core = Core::new(&vd, Some(TOKEN), window);
    core.power_on(&mut vd, |_| behavior).expect("power-on");
    let core = Arc::new(Mutex::new(core));
    let host = Arc::new(Mutex::new(vd));
    let (tx, reboots) = mpsc::unbounded_channel();
    let (url, stop) = listen(&host, &core, tx).await;
    Served {
        url,
        core,
        host,
        reboots,
        _stop: stop,
        _dir: dir,
    }
}

async fn listen(
    host: &Arc<Mutex<VirtualDevice>>,
    core: &Arc<Mutex<Core>>,
    tx: mpsc::UnboundedSender<RebootReason>,
) -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stop_rx) = oneshot::channel();
    let hooks = Hooks {
        reboot: tx,
        check: None,
    };
    net::serve(listener, host.clone(), core.clone(), hooks, stop_rx);
    (url, stop)
}

impl Served {
    /// Waits for the reboot the core asked for (the API is down by then),
    /// powers on running `behavior` and serves again.
    async fn reboot(
        &mut self,
        want: RebootReason,
        behavior: Behavior,
    ) -> otter_sim::device::PowerOn {
        assert_eq!(self.reboots.recv().await, Some(want));
        assert!(
            std::net::TcpStream::connect(self.url.trim_start_matches("http://")).is_err(),
            "the API is down once a reboot was asked for"
        );
        let (power, _) = net::lock(&self.core)
            .power_on(&mut self.host.device(), |_| behavior)
            .expect("power-on");
        let (tx, reboots) = mpsc::unbounded_channel();
        self.reboots = reboots;
        let (url, stop) = listen(&self.host, &self.core, tx).await;
        self.url = url;
        self._stop = stop;
        power
    }
}

/// Runs curl; returns (HTTP status, body).
async fn curl(args: Vec<String>) -> (u16, Vec<u8>) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"])
            .args(&args)
            .output()
            .expect("curl runs (install curl)");
        assert!(out.status.success(), "curl failed: {out:?}");
        let mut body = out.stdout;
        let nl = body.iter().rposition(|&b| b == b'\n').expect("status line");
        let status = std::str::from_utf8(&body[nl + 1..])
            .expect("status")
            .parse()
            .expect("numeric status");
        body.truncate(nl);
        (status, body)
    })
    .await
    .expect("curl task")
}

fn auth() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
}

fn firmware(dir: &Path, version: &str, secure_version: u32) -> String {
    let img = build_firmware(
        otter_sim::device::DEFAULT_CHIP,
        "otter-virtual",
        version,
        secure_version,
    )
    .expect("firmware builds");
    let p = dir.join(format!("fw-{version}.bin"));
    std::fs::write(&p, img).expect("write firmware");
    p.display().to_string()
}

#[tokio::test]
async fn status_and_auth_over_tcp() {
    bounded(async {
        let s = serve(
            device(false, None),
            Behavior::Healthy,
            Duration::from_secs(3),
        )
        .await;
        let status_url = format!("{}/api/ota/status", s.url);
        let (code, body) = curl(vec!["-H".into(), auth(), status_url.clone()]).await;
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let doc = json(&body);
        assert_eq!(doc["running"]["slot"], "factory", "{doc}");
        assert_eq!(doc["next"]["slot"], "ota_0", "{doc}");
        assert_eq!(doc["running"]["version"], "1.0.0", "{doc}");

        let (code, body) = curl(vec![
            "-X".into(),
            "POST".into(),
            format!("{}/api/ota/reboot", s.url),
        ])
        .await;
        assert_eq!(
            (code, json(&body)["error"].as_str()),
            (401, Some("unauthorized"))
        );
        let (code, body) = curl(vec![
            "-X".into(),
            "POST".into(),
            "-H".into(),
            "Authorization: Bearer wrong".into(),
            format!("{}/api/ota/reboot", s.url),
        ])
        .await;
        assert_eq!(
            (code, json(&body)["error"].as_str()),
            (403, Some("forbidden"))
        );
    })
    .await;
}

#[tokio::test]
async fn upload_selects_the_new_slot_and_asks_for_a_reboot() {
    bounded(async {
        let mut s = serve(
            device(false, None),
            Behavior::Healthy,
            Duration::from_secs(3),
        )
        .await;
        let fw = firmware(s._dir.path(), "2.0.0", 0);
        let (code, body) = curl(vec![
            "-H".into(),
            auth(),
            "--data-binary".into(),
            format!("@{fw}"),
            format!("{}/update", s.url),
        ])
        .await;
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let next = s.host.device().predict_boot().expect("boot model");
        assert_eq!(next, Some(SlotId::Ota(0)));
        let power = s.reboot(RebootReason::Update, Behavior::Healthy).await;
        assert_eq!(power.running, Some(SlotId::Ota(0)));

        // A second upload of a file that is no image is refused early.
        let junk = s._dir.path().join("junk.bin");
        std::fs::write(&junk, vec![0x55u8; 70_000]).expect("write");
        let (code, body) = curl(vec![
            "-H".into(),
            auth(),
            "--data-binary".into(),
            format!("@{}", junk.display()),
            format!("{}/update", s.url),
        ])
        .await;
        assert_eq!(code, 422, "{}", String::from_utf8_lossy(&body));
        assert_eq!(json(&body)["error"], "not_an_app");
        assert_eq!(
            s.host.device().predict_boot().expect("boot"),
            Some(SlotId::Ota(0))
        );
    })
    .await;
}

#[tokio::test]
async fn the_mounted_web_ui_is_served() {
    bounded(async {
        let s = serve(
            device(false, None),
            Behavior::Healthy,
            Duration::from_secs(3),
        )
        .await;
        let (code, body) = curl(vec![format!("{}/", s.url)]).await;
        assert_eq!(code, 200);
        assert_eq!(body, otter_sim::device::www::DEFAULT_INDEX_HTML.as_bytes());
        let (code, body) = curl(vec![format!("{}/update", s.url)]).await;
        assert_eq!(code, 200);
        assert_eq!(body, otter_agent::api::UPDATE_PAGE.as_bytes());
    })
    .await;
}

async fn boot_new_image(behavior: Behavior, anti: Option<u32>) -> (Served, Option<RebootReason>) {
    let mut s = serve(
        device(true, anti),
        Behavior::Healthy,
        Duration::from_millis(300),
    )
    .await;
    let fw = firmware(s._dir.path(), "2.0.0", 3);
    let (code, body) = curl(vec![
        "-H".into(),
        auth(),
        "--data-binary".into(),
        format!("@{fw}"),
        format!("{}/update", s.url),
    ])
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let power = s.reboot(RebootReason::Update, behavior).await;
    assert_eq!(power.running, Some(SlotId::Ota(0)));
    let verdict = tokio::time::timeout(Duration::from_secs(2), s.reboots.recv())
        .await
        .ok()
        .flatten();
    (s, verdict)
}

#[tokio::test]
async fn a_passing_self_test_confirms_and_burns_the_counter() {
    bounded(async {
        let (s, verdict) = boot_new_image(Behavior::Healthy, Some(0)).await;
        assert_eq!(verdict, None);
        let c = net::lock(&s.core);
        assert_eq!(c.dev.selftest().name(), "passed");
        let vd = s.host.device();
        assert_eq!(vd.config().anti_rollback, Some(3));
        // The counter is in device.json: a reopened device has it.
        let again = VirtualDevice::open(s._dir.path()).expect("reopen");
        assert_eq!(again.config().anti_rollback, Some(3));
        assert_eq!(vd.predict_boot().expect("boot"), Some(SlotId::Ota(0)));
    })
    .await;
}

#[tokio::test]
async fn a_failing_self_test_rolls_back() {
    bounded(async {
        let (s, verdict) = boot_new_image(Behavior::FailSelftest, None).await;
        assert_eq!(verdict, Some(RebootReason::SelfTestFailed));
        let c = net::lock(&s.core);
        assert_eq!(c.dev.selftest().name(), "failed");
        assert_eq!(
            s.host.device().predict_boot().expect("boot"),
            Some(SlotId::Factory)
        );
    })
    .await;
}

#[tokio::test]
async fn one_connection_too_many_evicts_the_longest_idle() {
    bounded(async {
        let s = serve(device(false, None), Behavior::Healthy, Duration::from_secs(3)).await;
        let addr = s.url.trim_start_matches("http://").to_string();
        let idle = tokio::task::spawn_blocking(move || {
            let mut socks = Vec::new();
            for _ in 0..MAX_CONNECTIONS {
                let c = std::net::TcpStream::connect(&addr).expect("connect");
                c.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
                socks.push(c);
                std::thread::sleep(Duration::from_millis(20));
            }
            // Every one but the first has sent part of a head since.
            for c in socks.iter_mut().skip(1) {
                c.write_all(b"GET /api/ota/status HTTP/1.1\r\n").expect("write");
            }
            std::thread::sleep(Duration::from_millis(100));
            let mut extra = std::net::TcpStream::connect(&addr).expect("connect");
            extra
                .write_all(b"GET /api/ota/status HTTP/1.1\r\nHost: d\r\nAuthorization: Bearer net-test-token\r\nConnection: close\r\n\r\n")
                .expect("write");
            extra.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let mut answer = Vec::new();
            extra.read_to_end(&mut answer).expect("answer");
            let mut first = [0u8; 64];
            let n = socks[0].read(&mut first).expect("the evicted socket reads EOF");
            socks[1].set_nonblocking(true).expect("nonblocking");
            let second = socks[1].peek(&mut first).map_err(|e| e.kind());
            (answer, n, second)
        })
        .await
        .expect("client thread");
        let (answer, n, second) = idle;
        assert!(answer.starts_with(b"HTTP/1.1 200 "), "{}", String::from_utf8_lossy(&answer));
        assert_eq!(n, 0, "the longest idle connection was closed");
        assert_eq!(
            second,
            Err(std::io::ErrorKind::WouldBlock),
            "the others stay open"
        );
    })
    .await;
}

/// Issue 19: a flood of new sockets never evicts an upload in progress
/// while an idle connection could go, even when the upload is the one idle
/// the longest (a slow link between two chunks).
#[tokio::test]
async fn a_socket_flood_evicts_idle_connections_before_an_upload() {
    bounded(async {
        let s = serve(device(false, None), Behavior::Healthy, Duration::from_secs(3)).await;
        let addr = s.url.trim_start_matches("http://").to_string();
        let dir = tempfile::tempdir().expect("tempdir");
        let fw = std::fs::read(firmware(dir.path(), "2.0.0", 0)).expect("firmware");
        let result = tokio::task::spawn_blocking(move || {
            let mut up = std::net::TcpStream::connect(&addr).expect("connect");
            up.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            write!(
                up,
                "POST /update HTTP/1.1\r\nHost: d\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n",
                fw.len()
            )
            .expect("head");
            up.write_all(&fw[..3000]).expect("first bytes");
            std::thread::sleep(Duration::from_millis(200));
            // Twice the cap of idle sockets, each newer than the upload's
            // last byte.
            let mut flood = Vec::new();
            for _ in 0..2 * MAX_CONNECTIONS {
                flood.push(std::net::TcpStream::connect(&addr).expect("connect"));
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(200));
            up.write_all(&fw[3000..]).expect("the rest of the upload");
            let mut answer = Vec::new();
            let _ = up.read_to_end(&mut answer);
            answer
        })
        .await
        .expect("client thread");
        assert!(
            result.starts_with(b"HTTP/1.1 200 "),
            "the upload was cut off: {}",
            String::from_utf8_lossy(&result)
        );
    })
    .await;
}
