//! The device API, socket-free: a table of requests, each delivered whole,
//! one byte at a time and in 7-byte pieces, each checked for the exact
//! status, the error code, and the flash afterwards (boot selection
//! unchanged on refusal).

mod common;

use common::*;
use otter_device::service::{Action, CheckResult, Connection, RebootReason};
use otter_format::chip::Chip;
use otter_ota::SlotId;

/// What a case expects of flash afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// The bootloader still picks ota_0 and nothing was erased in ota_1's
    /// first sector (early refusal).
    Untouched,
    /// The bootloader still picks ota_0 (the slot may hold a partial image).
    BootUnchanged,
    /// The bootloader now picks ota_1.
    BootsOta1,
    /// The web-UI pointer switched to www_1.
    WwwSwitched,
    /// The web-UI pointer is unchanged.
    WwwUnchanged,
}

struct Case {
    name: &'static str,
    setup: fn() -> Rig,
    req: fn() -> Vec<u8>,
    status: u16,
    code: &'static str,
    after: After,
}

fn rig() -> Rig {
    Rig::new()
}
fn rig_token() -> Rig {
    Rig::with(CSV, &c3("1.0.0"), opts(false, None, true))
}
fn rig_no_ota() -> Rig {
    Rig::with(CSV_NO_OTA, &c3("1.0.0"), opts(false, None, false))
}
fn rig_no_www() -> Rig {
    Rig::with(CSV_NO_WWW, &c3("1.0.0"), opts(false, None, false))
}
fn rig_anti() -> Rig {
    Rig::with(
        CSV,
        &app(Chip::Esp32c3, "1.0.0", 3, 72_000),
        opts(true, Some(3), false),
    )
}
fn rig_nvs_full() -> Rig {
    let mut r = Rig::new();
    r.plat.nvs_full = true;
    r
}
fn rig_ui_bad() -> Rig {
    let mut r = Rig::new();
    r.plat.reject_ui = true;
    r
}
fn rig_files() -> Rig {
    let mut r = Rig::new();
    r.plat.files = vec![
        ("/index.html".into(), b"<h1>hi</h1>".to_vec()),
        ("/app.js".into(), vec![b'x'; 10_000]),
        ("/dir/index.html".into(), b"dir".to_vec()),
    ];
    r
}
fn rig_pull() -> Rig {
    let mut o = opts(false, None, false);
    o.pull = true;
    o.check_wait_ms = 5_000;
    let mut r = Rig::with(CSV, &c3("1.0.0"), o);
    r.check = Some(decision(CheckResult::UpToDate));
    r
}
/// A pull device whose client decides `result`.
fn rig_pull_deciding(result: CheckResult) -> Rig {
    let mut r = rig_pull();
    r.check = Some(decision(result));
    r
}
fn decision(result: CheckResult) -> (CheckResult, String) {
    let error = match result {
        CheckResult::Refused => r#"{"error":"not_newer","message":"1.0.0 is not newer"}"#,
        CheckResult::Failed => r#"{"error":"download_failed","message":"connection refused"}"#,
        CheckResult::Busy => r#"{"error":"busy","message":"an update is in progress"}"#,
        _ => "null",
    };
    let body = format!(
        r#"{{"result":"{}","artifact":null,"release":null,"error":{error}}}"#,
        result.name()
    );
    (result, body)
}

fn fw() -> Vec<u8> {
    c3("2.0.0")
}
fn auth() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    macro_rules! case {
        ($name:expr, $setup:expr, $req:expr, $status:expr, $code:expr, $after:expr) => {
            Case {
                name: $name,
                setup: $setup,
                req: $req,
                status: $status,
                code: $code,
                after: $after,
            }
        };
    }
    vec![
        // ---- firmware uploads
        case!("raw upload", rig, || post("/update", &[], &fw()), 200, "", After::BootsOta1),
        case!("raw upload with sha", rig, || { let f = fw(); post("/update", &[&format!("X-Otter-Sha256: {}", sha_hex(&f))], &f) }, 200, "", After::BootsOta1),
        case!("raw upload uppercase sha", rig, || { let f = fw(); post("/update", &[&format!("x-otter-sha256: {}", sha_hex(&f).to_uppercase())], &f) }, 200, "", After::BootsOta1),
        case!("chunked upload", rig, || post_chunked("/update", &fw(), 1000), 200, "", After::BootsOta1),
        case!("chunked upload, 1-byte chunks", rig, || post_chunked("/update", &fw()[..], 3), 200, "", After::BootsOta1),
        case!("multipart upload (requests files=)", rig, || { let b = multipart_body("abc123", "file", Some("fw.bin"), &fw(), false); post_multipart("/update", "abc123", &b, &[]) }, 200, "", After::BootsOta1),
        case!("multipart upload after a text field", rig, || { let b = multipart_body("------------------------d74496d66958873e", "firmware", Some("fw.bin"), &fw(), true); post_multipart("/update", "------------------------d74496d66958873e", &b, &[]) }, 200, "", After::BootsOta1),
        case!("multipart, field named update without filename", rig, || { let b = multipart_body("XyZ", "update", None, &fw(), false); post_multipart("/update", "XyZ", &b, &[]) }, 200, "", After::BootsOta1),
        case!("multipart quoted boundary", rig, || { let b = multipart_body("q-b", "file", Some("a"), &fw(), false); post("/update", &["Content-Type: multipart/form-data; boundary=\"q-b\""], &b) }, 200, "", After::BootsOta1),
        case!("upload with token", rig_token, || post("/update", &[&auth()], &fw()), 200, "", After::BootsOta1),
        case!("upload, expect 100-continue", rig, || post("/update", &["Expect: 100-continue"], &fw()), 200, "", After::BootsOta1),
        case!("corpus esp32c3 image", rig, || post("/update", &[], &corpus_c3()), 200, "", After::BootsOta1),
        case!("no token", rig_token, || post("/update", &[], &fw()), 401, "unauthorized", After::Untouched),
        case!("basic auth is not bearer", rig_token, || post("/update", &["Authorization: Basic Zm9vOmJhcg=="], &fw()), 401, "unauthorized", After::Untouched),
        case!("wrong token", rig_token, || post("/update", &["Authorization: Bearer nope"], &fw()), 403, "forbidden", After::Untouched),
        case!("token prefix is wrong", rig_token, || post("/update", &["Authorization: Bearer s3cret"], &fw()), 403, "forbidden", After::Untouched),
        case!("wrong chip", rig, || post("/update", &[], &app(Chip::Esp32s3, "2", 0, 72_000)), 422, "wrong_chip", After::Untouched),
        case!("wrong chip, esp32", rig, || post("/update", &[], &app(Chip::Esp32, "2", 0, 72_000)), 422, "wrong_chip", After::Untouched),
        case!("not an app: zeros", rig, || post("/update", &[], &vec![0u8; 4096]), 422, "not_an_app", After::Untouched),
        case!("not an app: text", rig, || post("/update", &[], b"hello world, this is not firmware at all........" ), 422, "not_an_app", After::Untouched),
        case!("secure_version too low", rig_anti, || post("/update", &[], &app(Chip::Esp32c3, "2", 2, 72_000)), 422, "secure_version_too_low", After::Untouched),
        case!("secure_version equal is fine", rig_anti, || post("/update", &[], &app(Chip::Esp32c3, "2", 3, 72_000)), 200, "", After::BootsOta1),
        case!("too large by content-length", rig, || { let mut v = post("/update", &[], b""); let s = String::from_utf8(v.clone()) .unwrap() .replace("Content-Length: 0", "Content-Length: 2000000"); v = s.into_bytes(); v }, 413, "too_large", After::Untouched),
        case!("too large, 100-continue", rig, || { let s = "POST /update HTTP/1.1\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n"; s.as_bytes().to_vec() }, 413, "too_large", After::Untouched),
        case!("content-length beyond u32", rig, || { b"POST /update HTTP/1.1\r\nContent-Length: 99999999999\r\nExpect: 100-continue\r\n\r\n".to_vec() }, 413, "too_large", After::Untouched),
        case!("sha256 mismatch", rig, || post("/update", &[&format!("X-Otter-Sha256: {}", "0".repeat(64))], &fw() ), 422, "sha256_mismatch", After::BootUnchanged),
        case!("sha256 header too short", rig, || post("/update", &["X-Otter-Sha256: abcd"], &fw()), 400, "bad_request", After::Untouched),
        case!("sha256 header not hex", rig, || post("/update", &[&format!("X-Otter-Sha256: {}", "z".repeat(64))], &fw() ), 400, "bad_request", After::Untouched),
        case!("checksum broken", rig, || { let mut f = fw(); let n = f.len(); f[n - 33] ^= 0xFF; post("/update", &[], &f) }, 422, "integrity", After::BootUnchanged),
        case!("sha broken", rig, || { let mut f = fw(); let n = f.len(); f[n - 1] ^= 0x01; post("/update", &[], &f) }, 422, "integrity", After::BootUnchanged),
        case!("payload byte flipped", rig, || { let mut f = fw(); f[5000] ^= 0x10; post("/update", &[], &f) }, 422, "integrity", After::BootUnchanged),
        case!("truncated image", rig, || { let f = fw(); post("/update", &[], &f[..f.len() / 2]) }, 422, "truncated", After::BootUnchanged),
        case!("trailing data", rig, || { let mut f = fw(); f.extend_from_slice(&[0xAA; 64]); post("/update", &[], &f) }, 422, "trailing_data", After::BootUnchanged),
        case!("empty body", rig, || post("/update", &[], b""), 400, "empty", After::Untouched),
        case!("no body at all", rig, || b"POST /update HTTP/1.1\r\nHost: d\r\n\r\n".to_vec(), 400, "empty", After::Untouched),
        case!("multipart without a file", rig, || { let b = b"--b1\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--b1--\r\n".to_vec(); post_multipart("/update", "b1", &b, &[]) }, 400, "empty", After::Untouched),
        case!("multipart with an empty file", rig, || { let b = multipart_body("e1", "file", Some("f.bin"), b"", false); post_multipart("/update", "e1", &b, &[]) }, 400, "empty", After::Untouched),
        case!("multipart missing boundary", rig, || post("/update", &["Content-Type: multipart/form-data"], &fw()), 400, "bad_request", After::Untouched),
        case!("multipart never closed", rig, || { let mut b = multipart_body("zz", "file", Some("f"), &fw(), false); b.truncate(b.len() - 8); post_multipart("/update", "zz", &b, &[]) }, 400, "bad_request", After::BootUnchanged),
        case!("multipart bad delimiter line", rig, || { let b = b"--b1XX\r\n".to_vec(); post_multipart("/update", "b1", &b, &[]) }, 400, "bad_request", After::Untouched),
        case!("no ota slot", rig_no_ota, || post("/update", &[], &fw()), 503, "no_ota_slot", After::WwwUnchanged),
        case!("lying content-length (body longer)", rig, || { let f = fw(); let mut v = format!("POST /update HTTP/1.1\r\nContent-Length: {}\r\n\r\n", f.len() - 1000 ) .into_bytes(); v.extend_from_slice(&f); v }, 422, "truncated", After::BootUnchanged),
        // ---- status, confirm, rollback, reboot, check
        case!("status", rig, || get("/api/ota/status", &[]), 200, "", After::Untouched),
        case!("status needs token", rig_token, || get("/api/ota/status", &[]), 401, "unauthorized", After::Untouched),
        case!("status with token", rig_token, || get("/api/ota/status", &[&auth()]), 200, "", After::Untouched),
        case!("status HEAD", rig, || b"HEAD /api/ota/status HTTP/1.1\r\n\r\n".to_vec(), 200, "", After::Untouched),
        case!("status POST is 405", rig, || post("/api/ota/status", &[], b""), 405, "method_not_allowed", After::Untouched),
        case!("confirm, nothing pending", rig, || post("/api/ota/confirm", &[], b""), 200, "", After::Untouched),
        case!("confirm GET is 405", rig, || get("/api/ota/confirm", &[]), 405, "method_not_allowed", After::Untouched),
        case!("confirm needs token", rig_token, || post("/api/ota/confirm", &[], b""), 401, "unauthorized", After::Untouched),
        case!("rollback impossible", rig, || post("/api/ota/rollback", &[], b""), 409, "rollback_impossible", After::Untouched),
        case!("rollback wrong token", rig_token, || post("/api/ota/rollback", &["Authorization: Bearer x"], b""), 403, "forbidden", After::Untouched),
        case!("reboot", rig, || post("/api/ota/reboot", &[], b""), 200, "", After::Untouched),
        case!("reboot PUT is 405", rig, || b"PUT /api/ota/reboot HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_vec(), 405, "method_not_allowed", After::Untouched),
        case!("check without pull", rig, || post("/api/ota/check", &[], b""), 404, "pull_not_configured", After::Untouched),
        case!("check up to date", rig_pull, || post("/api/ota/check", &[], b""), 200, "", After::Untouched),
        case!("check waiting for confirm", || rig_pull_deciding(CheckResult::WaitingForConfirm), || post("/api/ota/check", &[], b""), 200, "", After::Untouched),
        case!("check updating", || rig_pull_deciding(CheckResult::Updating), || post("/api/ota/check", &[], b""), 202, "", After::Untouched),
        case!("check refused", || rig_pull_deciding(CheckResult::Refused), || post("/api/ota/check", &[], b""), 422, "", After::Untouched),
        case!("check failed", || rig_pull_deciding(CheckResult::Failed), || post("/api/ota/check", &[], b""), 502, "", After::Untouched),
        case!("check busy", || rig_pull_deciding(CheckResult::Busy), || post("/api/ota/check", &[], b""), 409, "", After::Untouched),
        case!("update page", rig, || get("/update", &[]), 200, "", After::Untouched),
        case!("update page needs no token", rig_token, || get("/update", &[]), 200, "", After::Untouched),
        case!("update DELETE is 405", rig, || b"DELETE /update HTTP/1.1\r\n\r\n".to_vec(), 405, "method_not_allowed", After::Untouched),
        // ---- web UI files
        case!("no web ui mounted", rig, || get("/", &[]), 503, "no_web_ui", After::Untouched),
        case!("unknown path", rig, || get("/nope", &[]), 404, "not_found", After::Untouched),
        case!("unknown POST path", rig, || post("/nope", &[], b"x"), 404, "not_found", After::Untouched),
        case!("index", rig_files, || get("/", &[]), 200, "", After::Untouched),
        case!("dir index", rig_files, || get("/dir/", &[]), 200, "", After::Untouched),
        case!("large file streamed", rig_files, || get("/app.js", &[]), 200, "", After::Untouched),
        case!("missing file", rig_files, || get("/missing.css", &[]), 404, "not_found", After::Untouched),
        case!("dotdot", rig_files, || get("/../etc/passwd", &[]), 400, "bad_path", After::Untouched),
        case!("escaped dotdot", rig_files, || get("/%2e%2e/x", &[]), 400, "bad_path", After::Untouched),
        case!("backslash", rig_files, || get("/a%5cb", &[]), 400, "bad_path", After::Untouched),
        case!("nul", rig_files, || get("/a%00b", &[]), 400, "bad_path", After::Untouched),
        case!("bad escape", rig_files, || get("/a%zz", &[]), 400, "bad_path", After::Untouched),
        case!("dot segment", rig_files, || get("/./index.html", &[]), 400, "bad_path", After::Untouched),
        // ---- web UI upload
        case!("www upload", rig, || post("/api/ota/frontend", &[], &ui_image()), 200, "", After::WwwSwitched),
        case!("www upload with sha", rig, || { let u = ui_image(); post("/api/ota/frontend", &[&format!("X-Otter-Sha256: {}", sha_hex(&u))], &u) }, 200, "", After::WwwSwitched),
        case!("www multipart", rig, || { let b = multipart_body("wb", "www", Some("www.bin"), &ui_image(), false); post_multipart("/api/ota/frontend", "wb", &b, &[]) }, 200, "", After::WwwSwitched),
        case!("www chunked", rig, || post_chunked("/api/ota/frontend", &ui_image(), 4000), 200, "", After::WwwSwitched),
        case!("www too large", rig, || { let mut u = ui_image(); u.extend_from_slice(&[0; 4096]); post("/api/ota/frontend", &[], &u) }, 413, "too_large", After::WwwUnchanged),
        case!("www wrong size", rig, || { let u = ui_image(); post("/api/ota/frontend", &[], &u[..u.len() - 4096]) }, 422, "wrong_size", After::WwwUnchanged),
        case!("www not littlefs", rig, || post("/api/ota/frontend", &[], &vec![0x55u8; WWW_SIZE as usize]), 422, "bad_web_ui", After::WwwUnchanged),
        case!("www built for another size", rig, || { let mut u = otter_sim::device::www::default_ui(0x20000).unwrap(); u.resize(WWW_SIZE as usize, 0xFF); post("/api/ota/frontend", &[], &u) }, 422, "bad_web_ui", After::WwwUnchanged),
        case!("www rejected by inspector", rig_ui_bad, || post("/api/ota/frontend", &[], &ui_image()), 422, "bad_web_ui", After::WwwUnchanged),
        case!("www sha mismatch", rig, || post("/api/ota/frontend", &[&format!("X-Otter-Sha256: {}", "1".repeat(64))], &ui_image() ), 422, "sha256_mismatch", After::WwwUnchanged),
        case!("www no slots", rig_no_www, || post("/api/ota/frontend", &[], &ui_image()), 503, "no_www_slot", After::Untouched),
        case!("www nvs full", rig_nvs_full, || post("/api/ota/frontend", &[], &ui_image()), 500, "nvs_error", After::WwwUnchanged),
        case!("www empty", rig, || post("/api/ota/frontend", &[], b""), 400, "empty", After::WwwUnchanged),
        case!("www needs token", rig_token, || post("/api/ota/frontend", &[], &ui_image()), 401, "unauthorized", After::WwwUnchanged),
        case!("www GET is 405", rig, || get("/api/ota/frontend", &[]), 405, "method_not_allowed", After::WwwUnchanged),
        // ---- malformed HTTP
        case!("bad request line", rig, || b"GARBAGE\r\n\r\n".to_vec(), 400, "bad_request", After::Untouched),
        case!("bad version", rig, || b"GET / HTTP/9.9\r\n\r\n".to_vec(), 400, "bad_request", After::Untouched),
        case!("absolute-form target", rig, || b"GET http://x/ HTTP/1.1\r\n\r\n".to_vec(), 400, "bad_request", After::Untouched),
        case!("bad header name", rig, || b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n".to_vec(), 400, "bad_request", After::Untouched),
        case!("oversize header", rig, || { let mut v = b"GET / HTTP/1.1\r\nX-Big: ".to_vec(); v.extend(vec![b'a'; 5000]); v.extend_from_slice(b"\r\n\r\n"); v }, 431, "headers_too_large", After::Untouched),
        case!("too many headers", rig, || { let mut s = String::from("GET / HTTP/1.1\r\n"); for i in 0..40 { s.push_str(&format!("X-{i}: v\r\n")); } s.push_str("\r\n"); s.into_bytes() }, 431, "headers_too_large", After::Untouched),
        case!("non-numeric content-length", rig, || b"POST /update HTTP/1.1\r\nContent-Length: 12a\r\n\r\n".to_vec(), 400, "bad_request", After::Untouched),
        case!("two content-lengths", rig, || b"POST /update HTTP/1.1\r\nContent-Length: 10\r\nContent-Length: 11\r\n\r\n" .to_vec(), 400, "bad_request", After::Untouched),
        case!("length and chunked", rig, || b"POST /update HTTP/1.1\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n" .to_vec(), 400, "bad_request", After::Untouched),
        case!("gzip transfer-encoding", rig, || b"POST /update HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), 400, "bad_request", After::Untouched),
        case!("broken chunk size", rig, || { let mut v = b"POST /update HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(); v.extend(fw()); v }, 400, "bad_request", After::Untouched),
        case!("chunk data without CRLF", rig, || { let f = fw(); let mut v = b"POST /update HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(); v.extend(format!("{:x}\r\n", 400).as_bytes()); v.extend(&f[..400]); v.extend(b"XX"); v }, 400, "bad_request", After::Untouched),
        case!("huge chunk size", rig, || b"POST /update HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n" .to_vec(), 400, "bad_request", After::Untouched),
        case!("more data than announced", rig, || { let mut v = post("/api/ota/confirm", &[], b""); v.extend_from_slice(b"garbage after the body\r\n\r\n"); v }, 200, "", After::Untouched),
    ]
}

fn check_after(r: &mut Rig, after: After, name: &str) {
    let ota1 = 0x110000usize;
    match after {
        After::Untouched => {
            assert_eq!(
                r.boot_choice(),
                Some(SlotId::Ota(0)),
                "{name}: boot selection changed"
            );
            assert!(
                r.flash.contents()[ota1..ota1 + 4096]
                    .iter()
                    .all(|&b| b == 0xFF),
                "{name}: ota_1 was written before refusing"
            );
        }
        After::BootUnchanged => assert_eq!(
            r.boot_choice(),
            Some(SlotId::Ota(0)),
            "{name}: boot selection changed"
        ),
        After::BootsOta1 => assert_eq!(
            r.boot_choice(),
            Some(SlotId::Ota(1)),
            "{name}: the new image is not selected"
        ),
        After::WwwSwitched => {
            assert_eq!(r.plat.pointer, Some(1), "{name}: pointer");
            assert_eq!(
                otter_device::www::WwwPointer::read(&mut r.plat, &mut r.flash).unwrap(),
                Some(1),
                "{name}: NVS otter/www_slot"
            );
            assert_eq!(
                r.www_slot_bytes(WWW1),
                &ui_image()[..],
                "{name}: www_1 holds the image"
            );
        }
        After::WwwUnchanged => {
            assert_eq!(r.plat.pointer, None, "{name}: pointer changed");
            if r.dev.www().is_some() {
                assert_eq!(
                    otter_device::www::WwwPointer::read(&mut r.plat, &mut r.flash).unwrap(),
                    Some(0),
                    "{name}: NVS otter/www_slot changed"
                );
            }
        }
    }
}

#[test]
fn table() {
    let cases = cases();
    assert!(cases.len() >= 100, "the table has {} cases", cases.len());
    let mut runs = 0;
    for c in &cases {
        // Whole, one byte at a time, 7-byte pieces; the 1-byte run is
        // skipped only for requests over 300 KB (it would take minutes).
        for split in [0usize, 1, 7] {
            let req = (c.req)();
            if split == 1 && req.len() > 300_000 {
                continue;
            }
            let mut r = (c.setup)();
            let answers = r.exchange(&req, split);
            let a = answers
                .first()
                .unwrap_or_else(|| panic!("{} (split {split}): no answer", c.name));
            assert_eq!(
                a.status,
                c.status,
                "{} (split {split}): {:?}",
                c.name,
                String::from_utf8_lossy(&a.body)
            );
            if a.status != 100 && !a.body.is_empty() && a.head.contains("application/json") {
                let j = a.json();
                if c.code.is_empty() {
                    // No error code (a check's `error` is the pull's object).
                    assert!(
                        !j.get("error").is_some_and(|e| e.is_string()),
                        "{}: unexpected error {j}",
                        c.name
                    );
                } else {
                    assert_eq!(j["error"], c.code, "{} (split {split})", c.name);
                    assert!(
                        j["message"].as_str().is_some_and(|m| !m.is_empty()),
                        "{}: message",
                        c.name
                    );
                }
            } else {
                assert!(
                    c.code.is_empty(),
                    "{}: error {} without a JSON body",
                    c.name,
                    c.code
                );
            }
            if a.status == 401 {
                assert!(a.head.contains("WWW-Authenticate: Bearer"), "{}", c.name);
            }
            if a.status == 405 {
                assert!(a.head.contains("Allow: "), "{}", c.name);
            }
            check_after(&mut r, c.after, c.name);
            runs += 1;
        }
    }
    assert!(runs >= 250, "{runs} runs");
}

#[test]
fn upload_answer_then_reboot_into_the_new_image() {
    let mut r = Rig::new();
    let f = fw();
    let a = r.one(&post("/update", &[], &f));
    assert_eq!(a.status, 200);
    assert_eq!(a.action, Action::Reboot(RebootReason::Update));
    let j = a.json();
    assert_eq!(j["slot"], "ota_1");
    assert_eq!(j["version"], "2.0.0");
    assert_eq!(j["bytes"], f.len());
    r.boot();
    assert_eq!(r.running(), Some(SlotId::Ota(1)));
    let s = r.one(&get("/api/ota/status", &[])).json();
    assert_eq!(s["running"]["version"], "2.0.0");
    assert_eq!(s["running"]["sha256"], sha_hex(&f));
    assert_eq!(s["last_update"]["result"], "ok");
    assert_eq!(s["last_update"]["boot"], 1);
    assert_eq!(s["boot_count"], 2);
}

#[test]
fn status_document_has_the_fields_the_clients_parse() {
    let mut r = Rig::new();
    let s = r.one(&get("/api/ota/status", &[])).json();
    for k in [
        "chip",
        "flash_size",
        "rollback",
        "anti_rollback",
        "running",
        "boot",
        "next",
        "slots",
        "otadata",
        "last_update",
        "www",
        "pull",
        "last_rollback",
        "selftest",
        "boot_count",
        "uptime_ms",
        "behavior",
        "rollback_mode",
        "auth_required",
        "update_in_progress",
        "events",
        "api",
    ] {
        assert!(s.get(k).is_some(), "missing {k} in {s}");
    }
    assert_eq!(s["chip"], "esp32c3");
    assert_eq!(s["running"]["slot"], "ota_0");
    assert_eq!(s["running"]["sha256"], sha_hex(&c3("1.0.0")));
    assert_eq!(s["next"]["slot"], "ota_1");
    assert_eq!(s["slots"][0]["verdict"], "valid");
    assert_eq!(s["slots"][1]["verdict"], "empty");
    assert_eq!(s["www"]["selected"], "www_0");
    assert_eq!(s["selftest"]["state"], "not_needed");
    let derived = if s["rollback"] == true {
        "bootloader"
    } else {
        "off"
    };
    assert_eq!(s["rollback_mode"], derived);
}

#[test]
fn status_says_who_rolls_back_as_the_platform_found_out() {
    use otter_device::service::RollbackMode;
    for (mode, name) in [
        (RollbackMode::Bootloader, "bootloader"),
        (RollbackMode::AppTrial, "app_trial"),
        (RollbackMode::Undetermined, "undetermined"),
        (RollbackMode::Off, "off"),
    ] {
        let mut r = Rig::new();
        r.dev.options_mut().rollback_mode = Some(mode);
        let s = r.one(&get("/api/ota/status", &[])).json();
        assert_eq!(s["rollback_mode"], name, "{mode:?}");
    }
}

#[test]
fn a_failed_upload_is_recorded_in_last_update() {
    let mut r = Rig::new();
    let a = r.one(&post("/update", &[], &app(Chip::Esp32s3, "9", 0, 72_000)));
    assert_eq!(a.code(), "wrong_chip");
    let s = r.one(&get("/api/ota/status", &[])).json();
    assert_eq!(s["last_update"]["result"], "rejected");
    assert_eq!(s["last_update"]["error"]["error"], "wrong_chip");
    assert_eq!(s["last_update"]["kind"], "firmware");
}

#[test]
fn a_client_that_goes_away_is_recorded_as_aborted() {
    let mut r = Rig::new();
    let f = fw();
    let mut req = post("/update", &[], &f);
    req.truncate(req.len() - 5000);
    assert!(r.exchange(&req, 0).is_empty(), "nobody to answer");
    let s = r.one(&get("/api/ota/status", &[])).json();
    assert_eq!(s["last_update"]["result"], "aborted");
    assert_eq!(s["last_update"]["error"]["error"], "aborted");
    assert_eq!(r.boot_choice(), Some(SlotId::Ota(0)));
    assert!(!r.dev.update_in_progress());
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let mut r = Rig::new();
    let mut req = get("/api/ota/status", &[]);
    req.extend(post("/api/ota/confirm", &[], b""));
    let a = r.exchange(&req, 5);
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].status, 200);
    assert_eq!(a[1].json()["confirmed"], false);
}

#[test]
fn connection_close_closes() {
    let mut r = Rig::new();
    let a = r.one(&get("/api/ota/status", &["Connection: close"]));
    assert_eq!(a.action, Action::Close);
    assert!(a.head.contains("Connection: close"));
}

#[test]
fn expect_continue_is_answered_before_the_body() {
    let mut r = Rig::new();
    let f = fw();
    let a = r.one(&post("/update", &["Expect: 100-continue"], &f));
    assert!(a.continue_sent);
    assert_eq!(a.status, 200);
}

#[test]
fn refused_100_continue_closes_without_reading_the_body() {
    let mut r = Rig::new();
    let a = r.one(&post(
        "/update",
        &["Expect: 100-continue"],
        &app(Chip::Esp32s3, "x", 0, 72_000),
    ));
    // The wrong chip is only visible in the body, so this one is accepted...
    assert!(a.continue_sent);
    assert_eq!(a.code(), "wrong_chip");
    let mut r = rig_token();
    let a = r.one(&post("/update", &["Expect: 100-continue"], &fw()));
    assert!(!a.continue_sent, "a refusal from the head needs no body");
    assert_eq!(a.code(), "unauthorized");
    assert_eq!(a.action, Action::Close);
}

#[test]
fn one_update_at_a_time() {
    let mut r = Rig::new();
    let f = fw();
    let req = post("/update", &[], &f);
    let mut head1 = [0u8; 2048];
    let mut tx = vec![0u8; 8192];
    let mut c1 = otter_device::service::Connection::new(&r.dev, &mut head1, 0);
    let mut input = &req[..2000];
    while !input.is_empty() {
        let o = c1.handle(&mut r.dev, &mut r.flash, &mut r.plat, input, 0, &mut tx);
        assert_eq!(o.written, 0);
        input = &input[o.consumed..];
    }
    assert!(r.dev.update_in_progress());
    // A second upload, a reboot and a rollback are busy meanwhile.
    for (req2, code) in [
        (post("/update", &[], &f), "busy"),
        (post("/api/ota/frontend", &[], &ui_image()), "busy"),
        (post("/api/ota/reboot", &[], b""), "busy"),
        (post("/api/ota/rollback", &[], b""), "busy"),
    ] {
        let a = r.one(&req2);
        assert_eq!((a.status, a.code().as_str()), (409, code));
    }
    let s = r.one(&get("/api/ota/status", &[])).json();
    assert_eq!(s["update_in_progress"], true);
    assert_eq!(s["last_update"]["result"], "in_progress");
    let o = c1.handle(
        &mut r.dev,
        &mut r.flash,
        &mut r.plat,
        &req[2000..],
        0,
        &mut tx,
    );
    assert_eq!(o.action, Action::Reboot(RebootReason::Update));
    assert!(String::from_utf8_lossy(&tx[..o.written]).starts_with("HTTP/1.1 200"));
    assert!(!r.dev.update_in_progress());
}

fn pending_rig() -> Rig {
    // Rollback on: upload 2.0.0, boot it (PENDING_VERIFY).
    let mut r = Rig::with(CSV, &c3("1.0.0"), opts(true, None, false));
    assert_eq!(r.one(&post("/update", &[], &fw())).status, 200);
    r.boot();
    assert_eq!(r.running(), Some(SlotId::Ota(1)));
    r
}

#[test]
fn pending_verify_refuses_updates_before_the_lock() {
    let mut r = pending_rig();
    let a = r.one(&post("/update", &[], &c3("3.0.0")));
    assert_eq!((a.status, a.code().as_str()), (409, "pending_verify"));
    let s = r.one(&get("/api/ota/status", &[])).json();
    assert_eq!(s["running"]["state"], "pending_verify");
    assert_eq!(s["selftest"]["state"], "running");
}

#[test]
fn confirm_makes_the_image_valid() {
    let mut r = pending_rig();
    let a = r.one(&post("/api/ota/confirm", &[], b"")).json();
    assert_eq!(a["confirmed"], true);
    assert_eq!(a["state"], "valid");
    assert_eq!(r.dev.selftest().name(), "passed");
    assert_eq!(r.one(&post("/update", &[], &c3("3.0.0"))).status, 200);
}

#[test]
fn rollback_marks_invalid_and_reboots_into_the_old_image() {
    let mut r = pending_rig();
    let a = r.one(&post("/api/ota/rollback", &[], b""));
    assert_eq!(a.status, 200);
    assert_eq!(a.action, Action::Reboot(RebootReason::Rollback));
    r.boot();
    assert_eq!(r.running(), Some(SlotId::Ota(0)));
}

#[test]
fn selftest_passes_at_the_end_of_the_window() {
    let mut r = pending_rig();
    let t0 = r.now;
    assert_eq!(
        r.dev.tick(&mut r.flash, &mut r.plat, t0 + 100).unwrap(),
        None
    );
    assert_eq!(r.dev.selftest().name(), "running");
    assert_eq!(
        r.dev.tick(&mut r.flash, &mut r.plat, t0 + 3000).unwrap(),
        None
    );
    assert_eq!(r.dev.selftest().name(), "passed");
    let s = r.one(&get("/api/ota/status", &[])).json();
    assert_eq!(s["running"]["state"], "valid");
}

#[test]
fn selftest_failure_rolls_back() {
    let mut r = pending_rig();
    r.plat.verdict = Some(otter_device::service::SelfTestVerdict::Failed);
    let t0 = r.now;
    assert_eq!(
        r.dev.tick(&mut r.flash, &mut r.plat, t0 + 3000).unwrap(),
        Some(RebootReason::SelfTestFailed)
    );
    assert_eq!(r.dev.selftest().name(), "failed");
    assert!(r.dev.last_rollback().is_some());
    r.boot();
    assert_eq!(r.running(), Some(SlotId::Ota(0)));
}

#[test]
fn confirm_raises_the_anti_rollback_counter_and_rollback_below_it_is_refused() {
    // Regression: confirming must burn the image's secure_version as
    // esp_ota_mark_app_valid_cancel_rollback does; then the old image (below
    // the counter) is no rollback target.
    let mut r = Rig::with(
        CSV,
        &app(Chip::Esp32c3, "1.0.0", 1, 72_000),
        opts(true, Some(1), false),
    );
    assert_eq!(
        r.one(&post(
            "/update",
            &[],
            &app(Chip::Esp32c3, "2.0.0", 2, 72_000)
        ))
        .status,
        200
    );
    r.boot();
    assert_eq!(r.running(), Some(SlotId::Ota(1)));
    assert_eq!(
        r.one(&post("/api/ota/confirm", &[], b"")).json()["confirmed"],
        true
    );
    assert_eq!(r.plat.burned, vec![2]);
    assert_eq!(r.dev.config().anti_rollback, Some(2));
    let a = r.one(&post("/api/ota/rollback", &[], b""));
    assert_eq!((a.status, a.code().as_str()), (409, "rollback_impossible"));
    assert_eq!(r.boot_choice(), Some(SlotId::Ota(1)));
}

#[test]
fn slowloris_head_times_out() {
    let mut r = Rig::new();
    let mut head = [0u8; 2048];
    let mut tx = vec![0u8; 8192];
    let mut c = otter_device::service::Connection::new(&r.dev, &mut head, 0);
    for (i, b) in b"GET /api/ota/st".iter().enumerate() {
        let o = c.handle(
            &mut r.dev,
            &mut r.flash,
            &mut r.plat,
            &[*b],
            i as u64 * 500,
            &mut tx,
        );
        assert_eq!(o.written, 0);
    }
    let o = c.poll(&mut r.dev, 72_000, &mut tx);
    assert_eq!(o.action, Action::Close);
    let text = String::from_utf8_lossy(&tx[..o.written]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\":\"timeout\""), "{text}");
}

#[test]
fn a_stalled_upload_times_out_and_is_recorded() {
    let mut r = Rig::new();
    let f = fw();
    let req = post("/update", &[], &f);
    let mut head = [0u8; 2048];
    let mut tx = vec![0u8; 8192];
    let mut c = otter_device::service::Connection::new(&r.dev, &mut head, 0);
    let mut input = &req[..3000];
    while !input.is_empty() {
        let o = c.handle(&mut r.dev, &mut r.flash, &mut r.plat, input, 0, &mut tx);
        input = &input[o.consumed..];
    }
    assert!(r.dev.update_in_progress());
    let o = c.poll(&mut r.dev, 5_000, &mut tx);
    assert_eq!(o.written, 0, "within the window");
    let o = c.poll(&mut r.dev, 10_001, &mut tx);
    assert_eq!(o.written, 0, "the first window had progress");
    let o = c.poll(&mut r.dev, 20_002, &mut tx);
    assert!(String::from_utf8_lossy(&tx[..o.written]).starts_with("HTTP/1.1 408"));
    assert_eq!(o.action, Action::Close);
    assert!(!r.dev.update_in_progress());
    assert_eq!(r.dev.last_update().unwrap().result.name(), "aborted");
    assert_eq!(r.boot_choice(), Some(SlotId::Ota(0)));
}

#[test]
fn a_refused_upload_is_answered_at_once_and_its_body_drained() {
    let mut r = Rig::new();
    let bad = app(Chip::Esp32s3, "9", 0, 72_000);
    let req = post("/update", &[], &bad);
    let mut head = [0u8; 2048];
    let mut tx = vec![0u8; 8192];
    let mut c = otter_device::service::Connection::new(&r.dev, &mut head, 0);
    // The head and the first 2 KB: the chip is known, the answer goes out.
    let head_len = req.len() - bad.len();
    let mut input = &req[..head_len + 2048];
    let mut answered = Vec::new();
    while !input.is_empty() {
        let o = c.handle(&mut r.dev, &mut r.flash, &mut r.plat, input, 0, &mut tx);
        answered.extend_from_slice(&tx[..o.written]);
        input = &input[o.consumed..];
        assert_eq!(o.action, Action::Read, "still draining");
    }
    let text = String::from_utf8_lossy(&answered).to_string();
    assert!(text.starts_with("HTTP/1.1 422"), "{text}");
    assert!(text.contains("\"error\":\"wrong_chip\""), "{text}");
    // The rest of the body is read and discarded; then the connection closes.
    let o = c.handle(
        &mut r.dev,
        &mut r.flash,
        &mut r.plat,
        &req[head_len + 2048..],
        0,
        &mut tx,
    );
    assert_eq!(o.consumed, bad.len() - 2048);
    assert_eq!(o.written, 0);
    assert_eq!(o.action, Action::Close);
    assert!(
        r.flash.contents()[0x110000..0x111000]
            .iter()
            .all(|&b| b == 0xFF),
        "nothing erased"
    );
}

#[test]
fn a_flash_failure_is_500_flash_error_and_nothing_switches() {
    let mut r = Rig::new();
    r.flash.inject_write_errors(0, 1000);
    let a = r.one(&post("/update", &[], &fw()));
    assert_eq!((a.status, a.code().as_str()), (500, "flash_error"));
    r.flash.clear_write_errors();
    assert_eq!(r.boot_choice(), Some(SlotId::Ota(0)));
    assert_eq!(r.dev.last_update().unwrap().result.name(), "failed");
    assert!(!r.dev.update_in_progress());
}

#[test]
fn the_status_document_fits_the_minimum_response_buffer() {
    // The largest status of this layout: a failed web-UI upload recorded
    // (error message included), a rollback record, two slots, both otadata
    // entries, the web UI. (A web UI waits for the confirm.)
    let mut r = pending_rig();
    assert_eq!(r.one(&post("/api/ota/confirm", &[], b"")).status, 200);
    assert_eq!(
        r.one(&post("/api/ota/frontend", &[], &[0u8; 100])).code(),
        "wrong_size"
    );
    let mut head = [0u8; 2048];
    let mut tx = vec![0u8; otter_device::service::MIN_TX_BUF];
    let mut c = otter_device::service::Connection::new(&r.dev, &mut head, 0);
    let req = get("/api/ota/status", &[]);
    let o = c.handle(&mut r.dev, &mut r.flash, &mut r.plat, &req, 0, &mut tx);
    let text = String::from_utf8_lossy(&tx[..o.written]).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let j: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(j["last_update"]["error"]["error"], "wrong_size");
    assert_eq!(j["otadata"]["entries"].as_array().unwrap().len(), 2);
    println!("status document: {} bytes of {}", o.written, tx.len());
}

#[test]
fn a_web_ui_upload_mounts_the_other_slot_after_the_reboot() {
    let mut r = Rig::new();
    assert_eq!(r.dev.www().unwrap().active, Some(0));
    let ui = ui_image();
    let a = r.one(&post(
        "/api/ota/frontend",
        &[&format!("X-Otter-Sha256: {}", sha_hex(&ui))],
        &ui,
    ));
    assert_eq!(a.action, Action::Reboot(RebootReason::Www));
    let j = a.json();
    assert_eq!(
        (j["slot"].as_str(), j["kind"].as_str()),
        (Some("www_1"), Some("www"))
    );
    assert_eq!(j["sha256"], sha_hex(&ui));
    r.boot();
    let s = r.one(&get("/api/ota/status", &[])).json();
    assert_eq!(s["www"]["active"], "www_1");
    assert_eq!(s["www"]["selected"], "www_1");
    assert_eq!(s["www"]["nvs_value"], 1);
    assert_eq!(s["last_update"]["kind"], "www");
    // The next upload goes back to www_0.
    let a = r.one(&post("/api/ota/frontend", &[], &ui));
    assert_eq!(a.json()["slot"], "www_0");
}

#[test]
fn events_say_what_happened_oldest_first() {
    let mut r = Rig::new();
    assert_eq!(
        r.one(&post("/update", &[], &app(Chip::Esp32s3, "x", 0, 72_000)))
            .code(),
        "wrong_chip"
    );
    assert_eq!(r.one(&post("/update", &[], &fw())).status, 200);
    r.boot();
    let s = r.one(&get("/api/ota/status", &[])).json();
    let messages: Vec<&str> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "booted ota_0",
            "firmware update started",
            "firmware update rejected: wrong_chip",
            "firmware update started",
            "firmware update ok",
            "booted ota_1",
        ]
    );
    assert_eq!(s["events"][5]["boot"], 2);
    // The ring keeps the last EVENTS.
    for _ in 0..10 {
        r.one(&post("/api/ota/confirm", &[], b""));
        r.boot();
    }
    let s = r.one(&get("/api/ota/status", &[])).json();
    assert_eq!(
        s["events"].as_array().unwrap().len(),
        otter_device::service::EVENTS
    );
}

#[test]
fn check_answers_the_pull_clients_decision() {
    let mut r = rig_pull();
    let a = r.one(&post("/api/ota/check", &[], b""));
    assert_eq!((a.status, a.action), (200, Action::CheckRelease));
    assert_eq!(a.json()["result"], "up_to_date");
    // The pull client's document is the body, as it wrote it.
    let mut r = rig_pull_deciding(CheckResult::Refused);
    let a = r.one(&post("/api/ota/check", &[], b""));
    assert_eq!(a.status, 422);
    assert_eq!(
        a.json(),
        serde_json::from_str::<serde_json::Value>(&decision(CheckResult::Refused).1).unwrap()
    );
    let mut r = Rig::new();
    let a = r.one(&post("/api/ota/check", &[], b""));
    assert_eq!(
        (a.status, a.code().as_str(), a.action),
        (404, "pull_not_configured", Action::Read)
    );
}

/// The request waits for the decision; the next request on the connection
/// waits behind it; a decision that never comes is 503 `no_decision` at the
/// deadline, and a late one is ignored.
#[test]
fn check_waits_for_the_decision_then_times_out() {
    let mut r = rig_pull();
    let mut head = [0u8; 2048];
    let mut tx = vec![0u8; 8192];
    let mut conn = Connection::new(&r.dev, &mut head, r.now);
    let mut req = post("/api/ota/check", &[], b"");
    req.extend_from_slice(&get("/api/ota/status", &[]));
    let o = conn.handle(&mut r.dev, &mut r.flash, &mut r.plat, &req, r.now, &mut tx);
    assert_eq!((o.written, o.action), (0, Action::CheckRelease));
    assert!(conn.awaits_check());
    let rest = &req[o.consumed..];
    // The pipelined status request is not read while the check waits.
    let o = conn.handle(
        &mut r.dev,
        &mut r.flash,
        &mut r.plat,
        rest,
        r.now + 10,
        &mut tx,
    );
    assert_eq!((o.consumed, o.written, o.action), (0, 0, Action::Read));
    let o = conn.poll(&mut r.dev, r.now + 4_999, &mut tx);
    assert_eq!(
        (o.written, o.action),
        (0, Action::Read),
        "before the deadline"
    );
    let o = conn.poll(&mut r.dev, r.now + 5_000, &mut tx);
    assert_eq!(o.action, Action::Close);
    let text = String::from_utf8_lossy(&tx[..o.written]).to_string();
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.contains(r#""error":"no_decision""#), "{text}");
    assert!(text.contains("5000 ms"), "{text}");
    let (res, body) = decision(CheckResult::Updating);
    let o = conn.check_decided(res, &body, r.now + 6_000, &mut tx);
    assert_eq!(
        (o.written, o.action),
        (0, Action::Read),
        "a late decision is dropped"
    );
}

/// While a check only waits on the pull client (fetching the manifest), no
/// update is in progress: the status says so and an upload on another
/// connection goes through (regression: the status said
/// `update_in_progress: true` and pushes got 409 while a manifest dripped).
#[test]
fn a_check_waiting_on_the_manifest_holds_no_update() {
    let mut r = rig_pull();
    let mut head = [0u8; 2048];
    let mut tx = vec![0u8; 8192];
    let mut conn = Connection::new(&r.dev, &mut head, r.now);
    let o = conn.handle(
        &mut r.dev,
        &mut r.flash,
        &mut r.plat,
        &post("/api/ota/check", &[], b""),
        r.now,
        &mut tx,
    );
    assert_eq!(o.action, Action::CheckRelease);
    assert!(conn.awaits_check());
    let st = r.one(&get("/api/ota/status", &[]));
    assert_eq!(st.status, 200);
    assert_eq!(st.json()["update_in_progress"], false, "{}", st.json());
    let up = r.one(&post("/update", &[], &c3("2.0.0")));
    assert_eq!((up.status, up.code().as_str()), (200, ""), "{}", up.json());
}

/// After the decision the connection goes on with the next request.
#[test]
fn check_decision_then_keep_alive_serves_the_next_request() {
    let mut r = rig_pull();
    let mut req = post("/api/ota/check", &[], b"");
    req.extend_from_slice(&get("/api/ota/status", &[]));
    for split in [0, 1, 7] {
        let a = r.exchange(&req, split);
        assert_eq!(
            a.iter().map(|a| a.status).collect::<Vec<_>>(),
            vec![200, 200],
            "split {split}"
        );
        assert_eq!(a[0].json()["result"], "up_to_date");
        assert!(a[1].json()["running"].is_object());
    }
}

/// `Device::upload_received` follows a firmware upload piece by piece and is
/// `None` before it starts and after it ends; the status document's
/// `last_update.received` is the same live count while it runs.
#[test]
fn upload_received_follows_a_firmware_upload() {
    use otter_device::service::Connection;
    let mut r = rig();
    let img = c3("2.0.0");
    let req = post("/update", &[], &img);
    let head_len = req.len() - img.len();
    assert_eq!(r.dev.upload_received(), None);
    let mut head = [0u8; 2048];
    let mut tx = vec![0u8; 8192];
    let mut conn = Connection::new(&r.dev, &mut head, r.now);
    let mut seen = Vec::new();
    let mut status = Vec::new();
    let mut fed = 0;
    for piece in req.chunks(4096) {
        let mut input = piece;
        while !input.is_empty() {
            let o = conn.handle(&mut r.dev, &mut r.flash, &mut r.plat, input, r.now, &mut tx);
            input = &input[o.consumed..];
            fed += o.consumed;
            if o.consumed == 0 {
                break;
            }
        }
        if fed < req.len() {
            seen.push((fed.saturating_sub(head_len) as u64, r.dev.upload_received()));
            // The status document reports the same live count.
            let st = r.one(&get("/api/ota/status", &[])).json();
            status.push(st["last_update"]["received"].as_u64());
            assert_eq!(st["last_update"]["result"], "in_progress");
        }
    }
    assert!(seen.len() > 5, "{seen:?}");
    for (body, got) in &seen {
        assert_eq!(*got, Some(*body), "{seen:?}");
    }
    let want: Vec<_> = seen.iter().map(|(body, _)| Some(*body)).collect();
    assert_eq!(status, want, "status.last_update.received mid-upload");
    assert_eq!(r.dev.upload_received(), None, "the upload ended");
    assert_eq!(
        r.dev.last_update().map(|u| u.received),
        Some(img.len() as u64)
    );
}

#[test]
fn a_byte_no_method_can_hold_is_refused_at_once() {
    // ESPHome's uploader: five magic bytes, then it waits for an answer.
    let mut r = Rig::new();
    let a = r.one(&[0x6C, 0x26, 0xF7, 0x5C, 0x45]);
    assert_eq!((a.status, a.code().as_str()), (400, "bad_request"));
    assert_eq!(a.action, Action::Close);
}

#[test]
fn a_web_ui_upload_waits_for_the_confirm() {
    let mut r = pending_rig();
    let before = r.www_slot_bytes(WWW1).to_vec();
    let a = r.one(&post("/api/ota/frontend", &[], &ui_image()));
    assert_eq!((a.status, a.code().as_str()), (409, "pending_verify"));
    assert_eq!(r.www_slot_bytes(WWW1), &before[..]);
}

/// A pull's download holds the one-update lock (`begin_external`): uploads
/// get 409 `busy` and leave the flash as it was, the status says an update
/// runs, a second pull is refused; after `end_external` an upload goes
/// through. The pull's web-UI writer needs the lock for `Www`.
#[test]
fn a_pull_download_holds_the_update_lock() {
    use otter_device::service::UpdateKind;
    use otter_device::DeviceError;
    let mut r = rig();
    let before = r.flash.contents().to_vec();
    assert_eq!(r.dev.begin_external(UpdateKind::Firmware), Ok(()));
    assert_eq!(r.dev.external_update(), Some(UpdateKind::Firmware));
    let a = r.one(&post("/update", &[], &fw()));
    assert_eq!((a.status, a.code().as_str()), (409, "busy"));
    let a = r.one(&post("/api/ota/frontend", &[], &ui_image()));
    assert_eq!((a.status, a.code().as_str()), (409, "busy"));
    assert!(r.flash.contents() == &before[..], "nothing was written");
    let st = r.one(&get("/api/ota/status", &[])).json();
    assert_eq!(st["update_in_progress"], true);
    assert_eq!(
        r.dev.begin_external(UpdateKind::Www),
        Err(DeviceError::Busy)
    );
    // The web-UI writer wants the lock for a web UI.
    let ui = ui_image();
    assert_eq!(
        r.dev
            .begin_external_www(&mut r.flash, &mut r.plat, ui.len() as u64, None)
            .map(|_| ()),
        Err(DeviceError::Busy)
    );
    r.dev.end_external();
    assert_eq!(r.dev.external_update(), None);
    let a = r.one(&post("/update", &[], &fw()));
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
}

/// A pulled web UI goes through the core's writer and check: the slot not
/// mounted is written, verified and selected; a damaged image is refused
/// with the upload's code and the pointer stays.
#[test]
fn a_pulled_web_ui_is_written_and_checked_by_the_core() {
    use otter_device::service::UpdateKind;
    let mut r = rig();
    let ui = ui_image();
    r.dev.begin_external(UpdateKind::Www).unwrap();
    let mut bad = ui.clone();
    bad[..8192].fill(0x55);
    let mut u = r
        .dev
        .begin_external_www(&mut r.flash, &mut r.plat, bad.len() as u64, None)
        .unwrap();
    u.write(&mut r.flash, &bad).unwrap();
    let e = r
        .dev
        .finish_external_www(&mut r.flash, &mut r.plat, u)
        .unwrap_err();
    assert_eq!((e.code(), e.status()), ("bad_web_ui", 422));
    assert_eq!(r.plat.pointer, None, "the pointer stays");
    let mut u = r
        .dev
        .begin_external_www(&mut r.flash, &mut r.plat, ui.len() as u64, None)
        .unwrap();
    for piece in ui.chunks(1500) {
        u.write(&mut r.flash, piece).unwrap();
    }
    let done = r
        .dev
        .finish_external_www(&mut r.flash, &mut r.plat, u)
        .unwrap();
    assert_eq!(done.target, 1);
    assert_eq!(r.www_slot_bytes(WWW1), &ui[..]);
    assert_eq!(r.plat.pointer, Some(1));
    r.dev.end_external();
}
