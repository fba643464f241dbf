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

/// What the proxy does to the server-to-client bytes of each connection.
#[derive(Debug, Clone)]
pub struct ProxyPlan {
    /// Byte offsets (into a connection's server-to-client stream) at which
    /// to cut successive connections; a connection that ends before its
    /// offset is not cut and does not use it up.
    pub cuts: Vec<u64>,
    /// Pause after every 4 KiB relayed to the client (slows a download down
    /// enough to act in the middle of it).
    pub delay_per_4k: Duration,
}

/// What the proxy saw.
#[derive(Debug, Default, Clone)]
pub struct ProxyStats {
    pub connections: u64,
    pub cuts: u64,
    /// Server-to-client bytes relayed, all connections.
    pub down_bytes: u64,
}

/// A TCP proxy on 127.0.0.1 in front of `upstream` (TLS passes through
/// untouched) that cuts connections at planned offsets and can hold every
/// download still ([`Proxy::hold`]). Stops on drop.
pub struct Proxy {
    pub port: u16,
    stats: std::sync::Arc<std::sync::Mutex<ProxyStats>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16, plan: ProxyPlan) -> Proxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stats = Arc::new(Mutex::new(ProxyStats::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicBool::new(false));
        let cuts = Arc::new(Mutex::new(std::collections::VecDeque::from(plan.cuts)));
        let (st, sp, hd) = (stats.clone(), stop.clone(), held.clone());
        let delay = plan.delay_per_4k;
        std::thread::spawn(move || {
            while !sp.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                st.lock().unwrap().connections += 1;
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                // Client to server: relayed as is.
                std::thread::spawn(move || {
                    let (mut c2, mut s2) = (c2, s2);
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                let (st, cuts, sp, hd) = (st.clone(), cuts.clone(), sp.clone(), hd.clone());
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let (mut client, mut server) = (client, server);
                    let _ = server.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut sent = 0u64;
                    let mut buf = [0u8; 4096];
                    let cut_at = cuts.lock().unwrap().front().copied();
                    loop {
                        while hd.load(Ordering::Relaxed) && !sp.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        if sp.load(Ordering::Relaxed) {
                            break;
                        }
                        let n = match server.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let n = match cut_at {
                            Some(at) if sent + n as u64 >= at => {
                                let keep = (at - sent) as usize;
                                let _ = client.write_all(&buf[..keep]);
                                st.lock().unwrap().down_bytes += keep as u64;
                                let mut c = cuts.lock().unwrap();
                                if c.front() == Some(&at) {
                                    c.pop_front();
                                }
                                st.lock().unwrap().cuts += 1;
                                break;
                            }
                            _ => n,
                        };
                        if client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        sent += n as u64;
                        st.lock().unwrap().down_bytes += n as u64;
                        if !delay.is_zero() {
                            std::thread::sleep(delay * n as u32 / 4096);
                        }
                    }
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    let _ = server.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Proxy {
            port,
            stats,
            stop,
            held,
        }
    }

    pub fn stats(&self) -> ProxyStats {
        self.stats.lock().unwrap().clone()
    }

    /// Relays no more server-to-client bytes until [`Proxy::release`]:
    /// every download (and TLS handshake) through the proxy stands still,
    /// connections stay open.
    pub fn hold(&self) {
        self.held.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Undoes [`Proxy::hold`].
    pub fn release(&self) {
        self.held.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
