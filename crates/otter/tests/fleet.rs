//! The fleet end to end: `otter server` on 127.0.0.1, 20 virtual devices
//! (`otter device run --server`), a release rolled out in waves, a second
//! release that crashes on boot and halts its own rollout after the first
//! wave, and `kill -9` of the server in the middle of a rollout.

mod devproc;
#[path = "../../otter-server/tests/support/pg.rs"]
mod pg;
#[path = "../../otter-server/tests/support/s3.rs"]
mod s3;
mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use devproc::{image, Device};
use serde_json::Value;
use util::{otter, run_otter, stderr, stdout};

const DEVICES: usize = 20;

/// `otter server` as a child process; killed (`kill -9`) on drop.
struct Server {
    child: Option<Child>,
    url: String,
    port: u16,
    data: PathBuf,
    log: PathBuf,
    trust: PathBuf,
    database: Option<String>,
    /// Artifacts in this bucket: (endpoint, bucket).
    s3: Option<(String, String)>,
}

impl Server {
    fn start(
        data: &Path,
        trust: &Path,
        port: u16,
        log: &Path,
        database: Option<&str>,
        s3: Option<(String, String)>,
    ) -> Server {
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = otter()
            .args(["server", "--data"])
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--trust"])
            .arg(trust)
            .args(["--poll", "1", "--json"])
            .args(database.map(|d| vec!["--database", d]).unwrap_or_default())
            .args(s3.iter().flat_map(|(e, b)| {
                [
                    "--s3-endpoint",
                    e,
                    "--s3-bucket",
                    b,
                    "--s3-prefix",
                    "fleet/",
                ]
            }))
            .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(logf))
            .spawn()
            .expect("spawning otter server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("otter server printed {line:?}: {e}"));
        let url = v["url"].as_str().unwrap().to_string();
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Server {
            child: Some(child),
            url,
            port,
            data: data.to_path_buf(),
            log: log.to_path_buf(),
            trust: trust.to_path_buf(),
            database: database.map(str::to_string),
            s3,
        }
    }

    /// `kill -9`.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn restart(&mut self) {
        self.kill();
        let db = self.database.clone();
        *self = Server::start(
            &self.data.clone(),
            &self.trust.clone(),
            self.port,
            &self.log.clone(),
            db.as_deref(),
            self.s3.clone(),
        );
    }

    fn fleet(&self, args: &[&str]) -> Value {
        let mut all = vec![
            "fleet".to_string(),
            "--server".into(),
            self.url.clone(),
            "--token-file".into(),
            self.data.join("admin.token").display().to_string(),
            "--json".into(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let out = run_otter(&all);
        assert!(
            out.status.success(),
            "otter {all:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        serde_json::from_str(&stdout(&out)).unwrap()
    }

    /// GET through curl (an HTTP client otter did not write).
    fn curl(&self, path: &str) -> Value {
        let token = std::fs::read_to_string(self.data.join("admin.token")).unwrap();
        let out = Command::new("curl")
            .args(["-sS", "--fail-with-body", "--max-time", "30", "-H"])
            .arg(format!("Authorization: Bearer {}", token.trim()))
            .arg(format!("{}{path}", self.url))
            .output()
            .expect("curl must be installed (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "curl {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn rollout(&self, id: &str) -> Value {
        self.curl(&format!("/api/v1/rollouts/{id}"))
    }

    fn wait_rollout(&self, id: &str, state: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.rollout(id);
            if r["rollout"]["state"]["state"] == state {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "rollout {id} did not reach {state} within {secs} s: {:#}\n--- server log (tail) ---\n{}",
                r["rollout"],
                tail(&self.server_log(), 40)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- server log (tail) ---\n{}",
                tail(&self.server_log(), 80)
            );
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let base = dir.join("release");
    let out = run_otter(["keygen", "-o", base.to_str().unwrap()]);
    assert!(out.status.success(), "keygen: {}", stderr(&out));
    (base.with_extension("key"), base.with_extension("pub"))
}

fn release(dir: &Path, version: &str, key: &Path) -> PathBuf {
    let fw = image(dir, "esp32s3", version, &[]);
    let out_dir = dir.join(format!("rel-{version}"));
    let out = run_otter([
        "release",
        "--firmware",
        fw.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "otter release: {}", stderr(&out));
    out_dir
}

/// Firmware downloads of `release` recorded in the server's log, by device.
fn logged_downloads(log: &str, release: &str) -> BTreeSet<String> {
    log.lines()
        .filter(|l| {
            l.contains("download device=")
                && l.contains(&format!("release={release} "))
                && l.contains("file=firmware.bin")
        })
        .filter_map(|l| {
            l.split("device=")
                .nth(1)?
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .collect()
}

/// Event ids the server holds per device.
fn server_events(srv: &Server) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for d in srv.curl("/api/v1/devices")["devices"].as_array().unwrap() {
        let id = d["id"].as_str().unwrap().to_string();
        let show = srv.curl(&format!("/api/v1/devices/{id}"));
        let ids = show["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"]["id"].as_str().unwrap().to_string())
            .collect();
        out.insert(id, ids);
    }
    out
}

/// One fleet at a time: 20 devices each already share two cores.
static ONE_FLEET: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn on_sqlite_a_fleet_rolls_out_in_waves_halts_a_crashing_release_and_survives_kill_9() {
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    fleet_end_to_end(None, None);
}

#[test]
fn on_postgres_a_fleet_rolls_out_in_waves_halts_a_crashing_release_and_survives_kill_9() {
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let pg = pg::Postgres::start();
    let store = s3::SeaweedFs::start("otter-fleet");
    fleet_end_to_end(Some(&pg.url), Some(&store));
}

/// `database`: PostgreSQL instead of SQLite; `store`: artifacts in its
/// bucket (devices download through 302s to presigned URLs).
fn fleet_end_to_end(database: Option<&str>, store: Option<&s3::SeaweedFs>) {
    let work = tempfile::tempdir().unwrap();
    let (key, public) = keygen(work.path());
    let data = work.path().join("server");
    let log = work.path().join("server.log");
    let mut srv = Server::start(
        &data,
        &public,
        0,
        &log,
        database,
        store.map(|s| (s.endpoint.clone(), s.bucket.clone())),
    );
    if database.is_some() {
        assert!(!data.join("fleet.db").exists(), "--database was not used");
    }
    let enroll_key = data.join("enroll.key");

    let mut devices = Vec::new();
    for i in 0..DEVICES {
        let id = format!("dev-{i:02}");
        let d = Device::create(&["--rollback"]).run(&[
            "--server",
            &srv.url,
            "--trust",
            public.to_str().unwrap(),
            "--allow-http",
            "--enroll-key-file",
            enroll_key.to_str().unwrap(),
            "--device-id",
            &id,
            "--poll",
            "1",
            "--selftest-window",
            "1",
            "--behavior",
            "1.2.0=crash-on-boot",
        ]);
        devices.push((id, d));
    }
    // Every device enrolls and checks in.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = srv.curl("/api/v1/devices");
        let seen = list["devices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["version"] == "1.0.0")
            .count();
        if seen == DEVICES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {seen} devices checked in: {list:#}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Release 1.1.0 in the default waves (1% 10% 50% 100% of 20 = 1, 2, 10, 20).
    let good = release(work.path(), "1.1.0", &key);
    let published = srv.fleet(&["releases", "publish", good.to_str().unwrap()]);
    let good_id = published["release"]["id"].as_str().unwrap().to_string();
    let created = srv.fleet(&["rollouts", "create", &good_id, "--soak", "2"]);
    let rid = created["rollout"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        created["rollout"]["wave_sizes"],
        serde_json::json!([1, 2, 10, 20])
    );

    // Mid-rollout (wave 3 or later), kill -9 the server and bring it back.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = srv.rollout(&rid);
        let wave = r["rollout"]["state"]["wave"].as_u64().unwrap_or(0);
        if wave >= 2 || r["rollout"]["state"]["state"] != "running" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout did not reach wave 3: {:#}",
            r["rollout"]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        srv.rollout(&rid)["rollout"]["state"]["state"],
        "running",
        "the kill must fall in the middle of the rollout"
    );
    let before = server_events(&srv);
    srv.kill();
    std::thread::sleep(Duration::from_secs(2)); // devices fail to check in meanwhile
    srv.restart();
    let after = server_events(&srv);
    for (dev, ids) in &before {
        for id in ids {
            assert!(
                after[dev].contains(id),
                "{dev}'s event {id} was lost by kill -9"
            );
        }
    }
    let done = srv.wait_rollout(&rid, "completed", 180);
    // Each wave advanced with at least 90% of its own devices confirmed.
    for w in done["rollout"]["waves"].as_array().unwrap() {
        let (c, n) = (
            w["confirmed"].as_u64().unwrap(),
            w["devices"].as_u64().unwrap(),
        );
        assert!(
            c * 10 >= n * 9,
            "a wave completed with {c} of {n} confirmed"
        );
    }
    let log_kinds: Vec<&str> = done["rollout"]["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        log_kinds,
        ["created", "advanced", "advanced", "advanced", "completed"]
    );
    for (id, d) in &devices {
        let st = d.wait_until(
            |s| s["running"]["version"] == "1.1.0" && s["running"]["state"] == "valid",
            "1.1.0 confirmed",
        );
        assert_eq!(st["running"]["version"], "1.1.0", "{id}");
    }
    // ... and the server learns that all of them confirmed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = srv.rollout(&rid);
        let confirmed: u64 = r["rollout"]["waves"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["confirmed"].as_u64().unwrap())
            .sum();
        if confirmed == DEVICES as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{confirmed} of {DEVICES} confirmed: {:#}",
            r["rollout"]
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Every event each device generated reached the server exactly once:
    // nothing acknowledged was lost, nothing replayed was recorded twice.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let server = server_events(&srv);
        let mut missing = Vec::new();
        for (id, d) in &devices {
            let j: Value =
                serde_json::from_slice(&std::fs::read(d.path().join("fleet.json")).unwrap())
                    .unwrap();
            let n = j["next_event"].as_u64().unwrap();
            let want: Vec<String> = (1..=n).map(|k| format!("e{k}")).collect();
            let mut got = server[id].clone();
            got.sort_by_key(|e| e[1..].parse::<u64>().unwrap());
            if got != want {
                missing.push(format!(
                    "{id}: server {got:?}, device made {want:?}, outbox {}",
                    j["outbox"]
                ));
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events differ:\n{}",
            missing.join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Release 1.2.0 crashes on boot: its first wave rolls back and the
    // rollout halts by itself; no other device ever downloads it.
    let bad = release(work.path(), "1.2.0", &key);
    let published = srv.fleet(&["releases", "publish", bad.to_str().unwrap()]);
    let bad_id = published["release"]["id"].as_str().unwrap().to_string();
    let created = srv.fleet(&["rollouts", "create", &bad_id, "--soak", "2"]);
    let bid = created["rollout"]["id"].as_str().unwrap().to_string();
    let halted = srv.wait_rollout(&bid, "halted", 90);
    let ranked: Vec<String> = serde_json::from_value(halted["devices_by_rank"].clone()).unwrap();
    let first_wave = &ranked[..1];
    let state = &halted["rollout"]["state"];
    assert_eq!(state["wave"], 0);
    assert_eq!(state["reason"]["kind"], "rollback_rate", "{state:#}");
    assert_eq!(state["reason"]["failed"], 1);
    let detail = halted["rollout"]["log"].as_array().unwrap().last().unwrap()["detail"].clone();
    assert_eq!(
        detail,
        "1 of wave 1's 1 device(s) rolled back, more than the 5.0% allowed"
    );
    // The victim reported why, and runs 1.1.0 again.
    let show = srv.curl(&format!("/api/v1/devices/{}", first_wave[0]));
    let rolled: Vec<&Value> = show["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["kind"] == "rolled_back")
        .collect();
    assert_eq!(rolled.len(), 1, "{show:#}");
    assert!(
        rolled[0]["event"]["reason"]
            .as_str()
            .unwrap()
            .contains("1.2.0 crashed on boot"),
        "{show:#}"
    );
    assert_eq!(show["device"]["releases"][&bad_id], "rolled_back");
    // Give every device several more polls to misbehave.
    std::thread::sleep(Duration::from_secs(5));
    let downloads = srv.curl("/api/v1/downloads");
    let via_api: BTreeSet<String> = downloads["downloads"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["release"] == bad_id.as_str() && d["file"] == "firmware.bin")
        .map(|d| d["device_id"].as_str().unwrap().to_string())
        .collect();
    let via_log = logged_downloads(&srv.server_log(), &bad_id);
    let expected: BTreeSet<String> = first_wave.iter().cloned().collect();
    assert_eq!(
        via_log, expected,
        "devices outside the first wave downloaded the crashing release"
    );
    assert_eq!(via_api, expected);
    if let Some(store) = store {
        // Both releases' firmware lives in the bucket (as SeaweedFS's own
        // filer lists it), none in the data folder: every device above got
        // its bytes through a presigned URL.
        let keys: Vec<String> = store
            .objects("fleet/")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut want = vec![
            format!("fleet/{good_id}/firmware.bin"),
            format!("fleet/{bad_id}/firmware.bin"),
        ];
        want.sort();
        assert_eq!(keys, want);
        let local = std::fs::read_dir(data.join("artifacts"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(local, 0, "artifacts were written to the data folder");
    }
    for (id, d) in &devices {
        let st = d.status();
        assert_eq!(st["running"]["version"], "1.1.0", "{id} does not run 1.1.0");
    }

    // The dashboard, rendered by headless Chromium: devices by version and
    // state, both rollouts with their waves, the plot, the halt reason.
    let dom = dashboard(
        &srv,
        if database.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
    );
    assert!(
        dom.contains("data-loaded=\"yes\""),
        "the dashboard did not load:\n{dom}"
    );
    assert!(
        dom.contains("<tr><td>1.1.0</td><td>valid</td><td>20</td></tr>"),
        "devices by version:\n{dom}"
    );
    assert!(dom.contains(&format!("id=\"rollout-{bid}\"")), "{dom}");
    assert!(
        dom.contains(
            "Halted by itself: 1 of wave 1's 1 device(s) rolled back, more than the 5.0% allowed"
        ),
        "no halt reason:\n{dom}"
    );
    assert!(
        dom.contains("data-series=\"confirmed\" data-count=\"20\""),
        "no plot of 20 confirmed:\n{dom}"
    );
    assert!(
        dom.contains("data-series=\"rolled back\" data-count=\"1\""),
        "no plot of the rollback:\n{dom}"
    );
}

/// `GET /dashboard` in headless Chromium: the DOM after its scripts ran,
/// and a screenshot in target/test-artifacts/fleet/.
fn dashboard(srv: &Server, name: &str) -> String {
    let chromium = std::env::var("OTTER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/setup-system.sh installs chromium"
    );
    let token = std::fs::read_to_string(srv.data.join("admin.token")).unwrap();
    let url = format!("{}/dashboard#token={}", srv.url, token.trim());
    let profile = tempfile::tempdir().unwrap();
    let base = |c: &mut Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut c = Command::new(&chromium);
    base(&mut c);
    let out = c
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shots = util::workspace_root().join("target/test-artifacts/fleet");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join(format!("dashboard-{name}.png"));
    let mut c = Command::new(&chromium);
    base(&mut c);
    let shot = c
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1100,1400")
        .arg(&url)
        .output()
        .expect("running chromium");
    assert!(
        shot.status.success() && png.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    eprintln!("dashboard screenshot: {}", png.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}
