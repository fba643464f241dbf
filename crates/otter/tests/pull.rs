//! Pull updates end to end: a signed release folder served by nginx over
//! HTTPS, a virtual device that fetches, verifies, resumes and boots it.

mod util;
mod webserver;

use std::process::Command;

use webserver::{Certs, Nginx, ServeOptions};

/// The test web server itself: nginx serves the folder over HTTPS with the
/// test CA, honours Range, and ignores it when told to (the device's
/// start-over path depends on that being real).
#[test]
fn nginx_serves_ranges_over_https_and_can_ignore_them() {
    let certs = Certs::new("otter test ca");
    let root = tempfile::tempdir().unwrap();
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.path().join("blob.bin"), &blob).unwrap();
    for ignore_range in [false, true] {
        let srv = Nginx::serve(
            root.path(),
            &ServeOptions {
                tls: Some(&certs),
                ignore_range,
            },
        );
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(&certs.ca)
            .args(["-r", "1000-", "-w", "\n%{http_code}"])
            .arg(format!("https://localhost:{}/blob.bin", srv.port))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (body, code) = out.stdout.split_at(out.stdout.len() - 4);
        if ignore_range {
            assert_eq!(code, b"\n200");
            assert_eq!(body, &blob[..]);
        } else {
            assert_eq!(code, b"\n206");
            assert_eq!(body, &blob[1000..]);
        }
    }
}
