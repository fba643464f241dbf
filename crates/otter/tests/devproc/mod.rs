//! A virtual device under test: `otter device create` into a temporary
//! directory and `otter device run` as a child process, plus small HTTP and
//! flash helpers. The device process is killed (a power cut) on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{otter, run_otter, stderr, stdout};

/// The default table's otadata partition.
pub const OTADATA: std::ops::Range<usize> = 0xE000..0x10000;

/// A device directory plus, while running, its process.
pub struct Device {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub url: String,
    pub token: Option<String>,
    pub run_args: Vec<String>,
    log: Option<std::thread::JoinHandle<String>>,
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
        self.start();
        self
    }

    /// (Re)starts the device process with the stored run arguments.
    pub fn start(&mut self) {
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
        self.log = Some(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut s);
            s
        }));
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
        );
    }

    /// `kill -9`: a power cut.
    pub fn kill(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.log
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
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
            std::thread::sleep(Duration::from_millis(100));
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
    let host = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).expect("connect");
    write!(
        s,
        "POST /update HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\nContent-Length: {content_length}\r\n\r\n"
    )
    .expect("head");
    s.write_all(body_part).expect("body part");
    s.flush().expect("flush");
    s
}
