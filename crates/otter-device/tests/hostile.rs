//! Issue 19, defect 9: status codes and messages a hostile client saw,
//! socket-free against the core. Each test names the sub-item.

mod common;

use common::*;
use otter_ota::SlotId;

fn last_update(r: &mut Rig) -> serde_json::Value {
    r.one(&get("/api/ota/status", &[])).json()["last_update"].clone()
}

/// A form whose boundary is not the one Content-Type names: 400
/// `bad_request` saying so, recorded as `rejected` (not `aborted`: the
/// client stayed and sent the whole body).
#[test]
fn a_form_with_the_wrong_boundary_is_bad_request_and_recorded_as_rejected() {
    let mut r = Rig::new();
    let body = multipart_body("zz", "file", Some("f.bin"), &c3("2.0.0"), false);
    let a = r.one(&post_multipart("/update", "bb", &body, &[]));
    assert_eq!(a.status, 400);
    assert_eq!(a.code(), "bad_request");
    let msg = a.json()["message"].as_str().unwrap_or("").to_string();
    assert!(
        msg.contains("boundary named in Content-Type never appears"),
        "{msg}"
    );
    let u = last_update(&mut r);
    assert_eq!(u["result"], "rejected", "{u}");
    assert_eq!(u["error"]["error"], "bad_request");
    assert_eq!(r.boot_choice(), Some(SlotId::Ota(0)));
    assert!(!r.dev.update_in_progress());
}

/// A form announced as 70 MB (over the 64 MiB a refused body is drained
/// for) carrying a file larger than the slot: 413 `too_large`, and
/// `last_update` says so.
#[test]
fn a_form_over_the_slot_and_the_drain_limit_is_too_large_and_recorded() {
    let mut r = Rig::new();
    let big = vec![0xE9u8; 1_200_000];
    let body = multipart_body("bb", "file", Some("f.bin"), &big, false);
    let mut req = format!(
        "POST /update HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=bb\r\nContent-Length: {}\r\n\r\n",
        70_000_000
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let answers = r.exchange(&req, 0);
    let a = answers.first().expect("an answer");
    assert_eq!(a.status, 413);
    assert_eq!(a.code(), "too_large");
    let u = last_update(&mut r);
    assert_eq!(u["result"], "rejected", "{u}");
    assert_eq!(u["error"]["error"], "too_large");
}

/// A 3 MB chunked web UI for a 256 KiB slot: 413 naming the slot's size,
/// not the byte count at which the slot filled up as if it were the
/// file's size.
#[test]
fn a_chunked_web_ui_over_the_slot_names_the_slot_size() {
    let mut r = Rig::new();
    let req = post_chunked("/api/ota/frontend", &vec![0u8; 3_000_000], 65_536);
    let a = r.one(&req);
    assert_eq!(a.status, 413);
    assert_eq!(a.code(), "too_large");
    let msg = a.json()["message"].as_str().unwrap_or("").to_string();
    assert!(
        msg.contains(&format!("larger than the target slot's {WWW_SIZE} bytes"))
            && msg.contains("not announced"),
        "{msg}"
    );
    assert!(!msg.contains("needs"), "{msg}");
    let u = last_update(&mut r);
    assert_eq!(
        (u["result"].clone(), u["kind"].clone()),
        ("rejected".into(), "www".into())
    );
}

/// The web UI's files are served without the token (decided: a browser
/// loads them before it can send one, and they hold nothing secret); every
/// `/api/` endpoint and every upload still needs it.
#[test]
fn web_ui_files_are_public_and_the_api_is_not() {
    let mut r = Rig::with(CSV, &c3("1.0.0"), opts(false, None, true));
    r.plat.files = vec![("/index.html".into(), b"<h1>ui</h1>".to_vec())];
    let a = r.one(&get("/", &[]));
    assert_eq!((a.status, a.body.as_slice()), (200, &b"<h1>ui</h1>"[..]));
    assert_eq!(r.one(&get("/index.html", &[])).status, 200);
    assert_eq!(r.one(&get("/update", &[])).status, 200);
    for (req, what) in [
        (get("/api/ota/status", &[]), "status"),
        (post("/api/ota/check", &[], b""), "check"),
        (post("/api/ota/confirm", &[], b""), "confirm"),
        (post("/api/ota/rollback", &[], b""), "rollback"),
        (post("/api/ota/reboot", &[], b""), "reboot"),
        (post("/update", &[], &c3("2.0.0")), "upload"),
        (post("/api/ota/frontend", &[], &ui_image()), "web-UI upload"),
    ] {
        let a = r.one(&req);
        assert_eq!((a.status, a.code()), (401, "unauthorized".into()), "{what}");
    }
}
