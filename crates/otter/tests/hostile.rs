//! Issue 19's status codes and messages against the virtual device, with
//! curl and raw sockets on 127.0.0.1: what a hostile or careless client
//! sees, and what the status document records afterwards. The core's
//! socket-free tests of the same defects are in
//! crates/otter-device/tests/hostile.rs.

mod devproc;
mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use devproc::{image, Device};
use serde_json::Value;

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// Sends `req` on a fresh connection and reads the answer to its end
/// (the device closes after an error it cannot recover from, or after
/// `Connection: close`). Returns the status, the head and the body.
fn raw(url: &str, req: &[u8]) -> (u16, String, Vec<u8>) {
    let host = url.trim_start_matches("http://");
    let mut sock = TcpStream::connect(host).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    sock.write_all(req).expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                let status = head[9..12].parse().expect("status");
                return (status, head, got[end + 4..end + 4 + len].to_vec());
            }
        }
    }
    panic!("no complete answer: {:?}", String::from_utf8_lossy(&got));
}

fn json_error(body: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(body)));
    (
        v["error"].as_str().unwrap_or("").to_string(),
        v["message"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn http_layer_errors_have_json_bodies() {
    let dev = Device::create(&[]).run(&[]);
    let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(vec![b'a'; 6000]);
    big.extend_from_slice(b"\r\n\r\n");
    for (req, status, code) in [
        (b"GARBAGE\r\n\r\n".to_vec(), 400, "bad_request"),
        (b"GET / HTTP/9.9\r\n\r\n".to_vec(), 400, "bad_request"),
        (
            b"DELETE /update HTTP/1.1\r\nHost: d\r\n\r\n".to_vec(),
            405,
            "method_not_allowed",
        ),
        (big, 431, "headers_too_large"),
    ] {
        let (st, head, body) = raw(&dev.url, &req);
        assert_eq!(st, status, "{head}");
        assert!(
            head.contains("Content-Type: application/json"),
            "{status}: {head}"
        );
        let (error, message) = json_error(&body);
        assert_eq!(error, code);
        assert!(!message.is_empty(), "{status}: no message");
        if status == 405 {
            assert!(head.contains("Allow: GET, HEAD, POST"), "{head}");
        }
    }
}

#[test]
fn a_form_with_another_boundary_than_its_content_type_is_400_and_recorded() {
    let dev = Device::create(&[]).run(&[]);
    let fw = image(dev.path(), "esp32s3", "2.0.0", &[]);
    // curl -F writes its own boundary; the header names another.
    let form = format!("file=@{}", s(&fw));
    let (code, body) = dev.curl(
        "/update",
        &[
            "-F",
            &form,
            "-H",
            "Content-Type: multipart/form-data; boundary=not-the-one",
        ],
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"], "bad_request");
    let msg = body["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("boundary named in Content-Type never appears"),
        "{msg}"
    );
    let st = dev.status();
    assert_eq!(
        st["last_update"]["result"], "rejected",
        "{}",
        st["last_update"]
    );
    assert_eq!(st["last_update"]["error"]["error"], "bad_request");
    assert_eq!(st["update_in_progress"], false);
}

#[test]
fn a_3_mb_chunked_web_ui_is_413_naming_the_slot_size() {
    let dev = Device::create(&[]).run(&[]);
    let big = dev.path().join("big.bin");
    std::fs::write(&big, vec![0u8; 3_000_000]).expect("write");
    let data = format!("@{}", s(&big));
    let (code, body) = dev.curl(
        "/api/ota/frontend",
        &[
            "-X",
            "POST",
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &data,
        ],
    );
    assert_eq!(code, 413, "{body}");
    assert_eq!(body["error"], "too_large");
    let msg = body["message"].as_str().unwrap_or("");
    let slot = dev.status()["www"]["slots"][1]["size"]
        .as_u64()
        .expect("slot size");
    assert!(
        msg.contains(&format!("larger than the target slot's {slot} bytes")),
        "{msg}"
    );
    let st = dev.status();
    assert_eq!(st["last_update"]["error"]["error"], "too_large");
    assert_eq!(st["www"]["active"], "www_0");
}

#[test]
fn a_token_protects_the_api_but_not_the_web_ui_files() {
    let dev = Device::create(&["--token", "hostile-t0ken"]).run(&[]);
    for path in ["/", "/index.html", "/update"] {
        let (st, _, body) = raw(
            &dev.url,
            format!("GET {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(st, 200, "{path}: {:?}", String::from_utf8_lossy(&body));
    }
    for (method, path) in [
        ("GET", "/api/ota/status"),
        ("POST", "/api/ota/confirm"),
        ("POST", "/api/ota/rollback"),
        ("POST", "/api/ota/reboot"),
        ("POST", "/api/ota/frontend"),
        ("POST", "/update"),
    ] {
        let (st, head, body) = raw(
            &dev.url,
            format!(
                "{method} {path} HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(st, 401, "{method} {path}");
        assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");
        assert_eq!(json_error(&body).0, "unauthorized");
    }
}

/// Defect 7: an image with trailing bytes is refused at once, by curl and
/// by `otter push`, which reports the refusal (not a rollback) and exits 1;
/// nothing switches.
#[test]
fn trailing_data_is_refused_by_both_clients_alike() {
    let dev = Device::create(&[]).run(&[]);
    let fw = image(dev.path(), "esp32s3", "2.0.0", &[]);
    let mut bytes = std::fs::read(&fw).expect("read");
    bytes.extend_from_slice(&[0xAA; 64]);
    let tr = dev.path().join("trailing.bin");
    std::fs::write(&tr, &bytes).expect("write");
    let data = format!("@{}", s(&tr));
    let (code, body) = dev.curl(
        "/update",
        &[
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &data,
        ],
    );
    assert_eq!(
        (code, body["error"].as_str()),
        (422, Some("trailing_data")),
        "{body}"
    );
    let o = util::run_otter(["push", &s(&tr), "--to", &dev.url]);
    assert_eq!(o.status.code(), Some(1));
    let err = util::stderr(&o);
    assert!(
        err.contains("422 trailing_data") && err.contains("64 bytes follow"),
        "{err}"
    );
    assert!(!err.contains("rolled back"), "{err}");
    let st = dev.status();
    assert_eq!(st["running"]["version"], "1.0.0");
    assert_eq!(st["last_update"]["error"]["error"], "trailing_data");
}
