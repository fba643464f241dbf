//! A virtual device under test: `otter device create` into a temporary
//! directory and `otter device run` as a child process, plus small HTTP and
//! flash helpers. The device process is killed (a power cut) on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{otter, run_otter, stderr, stdout};

/// The default table's otadata partition.
pub const OTADATA: std::ops::Range<usize> = 0xE000..0x10000;

/// How often [`Device::wait_until`] asks for the status. A status answer
/// costs a curl process, a few milliseconds; a wait ends within one period
/// of the state it waits for, which keeps a loop of power cuts short.
const POLL: Duration = Duration::from_millis(20);

/// A device directory plus, while running, its process.
pub struct Device {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub url: String,
    pub token: Option<String>,
    pub run_args: Vec<String>,
    log: Option<(Arc<LiveLog>, std::thread::JoinHandle<()>)>,
}

/// The running process's standard error as it is written, so a test can
/// wait for a line (an event) instead of polling the status.
#[derive(Default)]
struct LiveLog {
    /// The text so far, and whether the process closed it.
    text: Mutex<(String, bool)>,
    grew: Condvar,
}

impl Device {
    /// `otter device create DIR <args>`; panics with otter's output on failure.
    pub fn create(args: &[&str]) -> Device {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut all = vec!["device", "create", dir.path().to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        let out = run_otter(&all);
        assert!(
            out.status.success(),
            "otter device create {args:?} failed:\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        let token = args
            .iter()
            .position(|a| *a == "--token")
            .map(|i| args[i + 1].to_string());
        Device {
            dir,
            child: None,
            url: String::new(),
            token,
            run_args: Vec::new(),
            log: None,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `otter device run` on a free port with `args` and waits for it
    /// to serve.
    pub fn run(mut self, args: &[&str]) -> Device {
        self.run_args = args.iter().map(|s| s.to_string()).collect();
        let _ = self.start();
        self
    }

    /// (Re)starts the device process with the stored run arguments;
    /// returns the first status that shows an image running.
    pub fn start(&mut self) -> Value {
        let mut cmd = otter();
        cmd.args(["device", "run"])
            .arg(self.dir.path())
            .args(["--http", "127.0.0.1:0", "--reboot-time", "0.1"])
            .args(&self.run_args)
            .args(if self.run_args.iter().any(|a| a == "--mdns") {
                &[][..]
            } else {
                &["--mdns", "off"][..]
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning otter device run");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let live = Arc::new(LiveLog::default());
        let writer = live.clone();
        let reader = std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr);
            let mut line = String::new();
            while matches!(lines.read_line(&mut line), Ok(n) if n > 0) {
                lock(&writer.text).0.push_str(&line);
                writer.grew.notify_all();
                line.clear();
            }
            lock(&writer.text).1 = true;
            writer.grew.notify_all();
        });
        self.log = Some((live, reader));
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("otter device run printed no URL within 20 s"));
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        self.url = url;
        self.child = Some(child);
        self.wait_until(
            |st| st.get("running").is_some_and(|r| !r.is_null()),
            "first boot",
        )
    }

    /// `kill -9`: a power cut. Returns what this boot logged.
    pub fn kill(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        match self.log.take() {
            Some((live, reader)) => {
                let _ = reader.join();
                std::mem::take(&mut lock(&live.text).0)
            }
            None => String::new(),
        }
    }

    /// Waits (30 s at most) until the running process logs a line for
    /// which `pred` holds, and returns that line.
    pub fn wait_log(&self, pred: impl Fn(&str) -> bool, what: &str) -> String {
        let (live, _) = self.log.as_ref().expect("the device runs");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut text = lock(&live.text);
        loop {
            if let Some(line) = text.0.lines().find(|l| pred(l)) {
                return line.to_string();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !text.1 && !left.is_zero(),
                "the device never logged {what}; its log:\n{}",
                text.0
            );
            text = live
                .grew
                .wait_timeout(text, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn flash(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("flash.bin")).expect("reading flash.bin")
    }

    pub fn auth(&self) -> Vec<String> {
        match &self.token {
            Some(t) => vec!["-H".into(), format!("Authorization: Bearer {t}")],
            None => vec![],
        }
    }

    /// GET /api/ota/status through curl; panics unless 200 + JSON.
    pub fn status(&self) -> Value {
        let (code, body) = self.try_status().expect("device unreachable");
        assert_eq!(code, 200, "status: {body}");
        body
    }

    pub fn try_status(&self) -> Option<(u16, Value)> {
        curl(&self.url, "/api/ota/status", &self.auth(), &[])
    }

    /// Polls status until `pred` holds (device may be rebooting meanwhile).
    pub fn wait_until(&self, pred: impl Fn(&Value) -> bool, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Some((200, st)) = self.try_status() {
                if pred(&st) {
                    return st;
                }
                last = st;
            }
            std::thread::sleep(POLL);
        }
        panic!("timed out waiting for {what}; last status: {last:#}")
    }

    /// `curl` with `args` against `path`; returns (status, JSON body).
    pub fn curl(&self, path: &str, args: &[&str]) -> (u16, Value) {
        curl(&self.url, path, &self.auth(), args).expect("curl could not reach the device")
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let log = self.kill();
        if std::thread::panicking() && !log.is_empty() {
            eprintln!("--- device log ---\n{log}");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs curl; `None` when it cannot connect.
pub fn curl(base: &str, path: &str, auth: &[String], args: &[&str]) -> Option<(u16, Value)> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}"])
        .args(auth)
        .args(args)
        .arg(format!("{base}{path}"))
        .output()
        .expect("curl must be installed (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    let code: u16 = code.trim().parse().ok()?;
    if code == 0 {
        return None;
    }
    let v = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    Some((code, v))
}

/// Builds a test image with `otter image build` into `dir`.
pub fn image(dir: &Path, chip: &str, version: &str, extra: &[&str]) -> PathBuf {
    let p = dir.join(format!("{chip}-{version}.bin"));
    let mut args = vec!["image", "build", "--chip", chip, "--version", version, "-o"];
    let ps = p.to_str().expect("utf-8").to_string();
    args.push(&ps);
    args.extend_from_slice(extra);
    let out = run_otter(&args);
    assert!(out.status.success(), "image build: {}", stderr(&out));
    p
}

/// Sends raw HTTP over a socket: the request head, then `body_part`, then
/// leaves the socket to the caller (to hold open or drop mid-upload).
pub fn raw_upload_start(url: &str, content_length: usize, body_part: &[u8]) -> TcpStream {
    raw_upload_to(url, "/update", content_length, body_part)
}

/// [`raw_upload_start`] to `path` (`/update`, `/api/ota/frontend`).
pub fn raw_upload_to(url: &str, path: &str, content_length: usize, body_part: &[u8]) -> TcpStream {
    let host = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).expect("connect");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\nContent-Length: {content_length}\r\n\r\n"
    )
    .expect("head");
    s.write_all(body_part).expect("body part");
    s.flush().expect("flush");
    s
}

// ---------------------------------------------------------------------------
// Power cuts (`kill -9`) in a loop, shared by the upload, web-UI upload and
// pull tests.

/// A seeded xorshift64 stream: the same seed gives the same cut points in
/// every run, so a failing round can be replayed.
pub struct Seeded(u64);

impl Seeded {
    pub fn new(seed: u64) -> Seeded {
        Seeded(seed | 1)
    }

    /// The next value in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        let x = &mut self.0;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x % n.max(1)
    }
}

/// The flash sector, and the 64 KiB block the update session erases ahead
/// of its writes in (`otter_ota::session`).
pub const SECTOR: usize = 4096;
pub const ERASE_BLOCK: usize = 64 * 1024;

/// `n` (at least 11) cut points over an upload body of `len` bytes, in
/// ascending order: right after the request head (0), inside the first
/// sector, just past four 64 KiB boundaries (a block erased ahead, barely
/// written), `n - 10` spread over the whole body (one per stretch), a few
/// KiB and one byte before the end (the session's finish and verify not
/// yet reached) and, last, the whole body sent (cut while the device
/// verifies, selects or answers: the one cut that may land after the
/// switch).
pub fn upload_cuts(seed: u64, len: usize, n: usize) -> Vec<usize> {
    assert!(n >= 11 && len > 8 * ERASE_BLOCK, "{n} cuts in {len} bytes");
    let mut r = Seeded::new(seed);
    let mut at = vec![0, 1 + r.below(SECTOR as u64 - 1) as usize];
    let blocks = (len / ERASE_BLOCK - 1) as u64;
    for _ in 0..4 {
        let k = 1 + r.below(blocks) as usize;
        at.push(k * ERASE_BLOCK + 1 + r.below(2 * SECTOR as u64) as usize);
    }
    let spread = n - 10;
    for i in 0..spread {
        let stretch = len / spread;
        at.push(i * stretch + r.below(stretch as u64) as usize);
    }
    at.push(len - SECTOR - r.below(SECTOR as u64) as usize);
    at.push(len - 1 - r.below(64) as usize);
    at.push(len - 1);
    at.push(len);
    at.sort_unstable();
    at
}

/// Power cut during an upload of `body` to `path`: sends the request head
/// and the first `at` bytes, waits until the device has taken them (an
/// update in progress, `last_update.received >= at`), `kill -9`s it and
/// starts it again; returns the restarted device's first status. With
/// `at == body.len()` nothing is waited for: the cut falls wherever the
/// device is after the last byte.
pub fn cut_upload(dev: &mut Device, path: &str, body: &[u8], at: usize) -> Value {
    let sock = raw_upload_to(&dev.url, path, body.len(), &body[..at]);
    if at < body.len() {
        dev.wait_until(
            |st| {
                st["update_in_progress"] == true
                    && st["last_update"]["result"] == "in_progress"
                    && st["last_update"]["received"]
                        .as_u64()
                        .is_some_and(|r| r >= at as u64)
            },
            &format!("the device to take {at} bytes of the upload"),
        );
    }
    dev.kill();
    drop(sock);
    dev.start()
}

/// The count of a power-cut loop. [`CutTally::finish`] prints the summary
/// line the CI log shows and fails a run with fewer cuts than asked.
#[derive(Debug, Default)]
pub struct CutTally {
    /// `kill -9`s made.
    pub cuts: usize,
    /// Cuts after which the device came back with all its checks passing.
    pub recovered: usize,
    /// Cuts after which the update continued from what was in flash.
    pub resumed: usize,
    /// Cuts that fell after the switch: the device came back with the
    /// update complete (possible only once every byte was in).
    pub completed: usize,
}

impl CutTally {
    pub fn summary(&self) -> String {
        let mut s = format!(
            "kill -9: {} cuts, {} recovered, {} resumed",
            self.cuts, self.recovered, self.resumed
        );
        if self.completed > 0 {
            s += &format!(" ({} after the switch, update complete)", self.completed);
        }
        s
    }

    /// Prints `TEST: kill -9: N cuts, N recovered, N resumed` straight to
    /// the test process's standard error (not captured by the test
    /// harness, so it is in every CI log) and asserts at least `min` cuts,
    /// every one recovered.
    pub fn finish(&self, test: &str, min: usize) {
        let _ = writeln!(std::io::stderr(), "{test}: {}", self.summary());
        assert!(
            self.cuts >= min,
            "only {} cuts (at least {min} asked): the loop shrank",
            self.cuts
        );
        assert_eq!(self.recovered, self.cuts, "{}", self.summary());
    }
}
