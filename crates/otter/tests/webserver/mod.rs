//! A real static web server for the pull tests: nginx from the system
//! packages, started on 127.0.0.1 with a configuration and a certificate made
//! by the test, serving a release folder. Killed on drop.
//!
//! Certificates come from the `openssl` command: a throw-away CA and a leaf
//! for `localhost` and `127.0.0.1`, so the device can be told to trust the
//! CA (`--ca`) or to pin the leaf (`--pin`).
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where nginx is on Debian.
const NGINX: &str = "/usr/sbin/nginx";

/// A CA and a server certificate signed by it, as PEM files.
pub struct Certs {
    pub dir: tempfile::TempDir,
    /// The CA certificate (what `--ca` trusts).
    pub ca: PathBuf,
    /// The server's certificate (what `--pin` pins).
    pub leaf: PathBuf,
    /// The server's private key.
    pub leaf_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("running openssl ({e}): install it with scripts/setup-system.sh")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Certs {
    /// A new CA named `ca_name` and a leaf for `localhost` / 127.0.0.1.
    pub fn new(ca_name: &str) -> Certs {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let subj = format!("/CN={ca_name}");
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "3",
                "-subj",
                &subj,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        std::fs::write(
            d.join("leaf.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("writing leaf.ext");
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "leaf.pem",
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
            ],
        );
        Certs {
            ca: d.join("ca.pem"),
            leaf: d.join("leaf.pem"),
            leaf_key: d.join("leaf.key"),
            dir,
        }
    }
}

/// How nginx serves.
pub struct ServeOptions<'a> {
    /// TLS with these certificates; plain HTTP when `None`.
    pub tls: Option<&'a Certs>,
    /// `max_ranges 0`: ignore Range requests and always send the whole file.
    pub ignore_range: bool,
}

/// A running nginx.
pub struct Nginx {
    child: Child,
    prefix: tempfile::TempDir,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// `https://127.0.0.1:PORT` or `http://…`.
    pub base: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
}

impl Nginx {
    /// Serves `root` (a release folder) on 127.0.0.1.
    pub fn serve(root: &Path, opts: &ServeOptions<'_>) -> Nginx {
        assert!(
            Path::new(NGINX).exists(),
            "nginx is not installed at {NGINX}: the pull tests need it; run scripts/setup-system.sh"
        );
        let prefix = tempfile::tempdir().expect("tempdir");
        let p = prefix.path();
        for d in ["logs", "tmp"] {
            std::fs::create_dir_all(p.join(d)).expect("mkdir");
        }
        let root = root.canonicalize().expect("release folder");
        let port = free_port();
        let (listen, tls) = match opts.tls {
            Some(c) => (
                format!("listen 127.0.0.1:{port} ssl;"),
                format!(
                    "ssl_certificate {};\n        ssl_certificate_key {};",
                    c.leaf.display(),
                    c.leaf_key.display()
                ),
            ),
            None => (format!("listen 127.0.0.1:{port};"), String::new()),
        };
        let ranges = if opts.ignore_range {
            "max_ranges 0;"
        } else {
            ""
        };
        let t = p.join("tmp");
        let conf = format!(
            "master_process off;\ndaemon off;\nworker_processes 1;\npid {pid};\nerror_log stderr warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n    access_log {log};\n    default_type application/octet-stream;\n    \
             types {{ application/json json; }}\n    \
             client_body_temp_path {t}/body; proxy_temp_path {t}/proxy; fastcgi_temp_path {t}/fcgi;\n    \
             uwsgi_temp_path {t}/uwsgi; scgi_temp_path {t}/scgi;\n    \
             server {{\n        {listen}\n        {tls}\n        root {root};\n        {ranges}\n    }}\n}}\n",
            pid = p.join("nginx.pid").display(),
            log = p.join("logs/access.log").display(),
            t = t.display(),
            root = root.display(),
        );
        std::fs::write(p.join("nginx.conf"), conf).expect("writing nginx.conf");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(p)
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(p.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on 127.0.0.1:{port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        Nginx {
            child,
            prefix,
            port,
            base: format!("{scheme}://127.0.0.1:{port}"),
        }
    }

    /// The access log so far: one line per request.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("logs/access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
