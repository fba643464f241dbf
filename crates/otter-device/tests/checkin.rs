//! The fleet check-in's sans-IO pieces: the document the device writes
//! (read back by serde_json, an independent parser) and the answers it
//! parses, with every malformed shape refused as `server_answer`.

use otter_device::pull::checkin::{parse_answer, EventReport, Report, SlotReport};
use otter_device::pull::ServerFault;
use otter_device::JsonOut;
use serde_json::{json, Value};

fn report<'a>(slots: &'a [SlotReport<'a>], events: &'a [EventReport<'a>]) -> Report<'a> {
    Report {
        device_id: "dev-\"1\"",
        product: "app",
        chip: "esp32c3",
        version: "1.0.0",
        sha256: Some("ab"),
        secure_counter: Some(2),
        running_slot: "ota_0",
        state: None,
        slots,
        events,
    }
}

#[test]
fn the_document_is_the_json_the_server_reads() {
    let slots = [
        SlotReport {
            name: "ota_0",
            state: Some("valid"),
            version: Some("1.0.0"),
        },
        SlotReport {
            name: "ota_1",
            state: None,
            version: None,
        },
    ];
    let events = [EventReport {
        id: "e1",
        kind: "rolled_back",
        release: Some("r1"),
        version: Some("1.1.0"),
        reason: Some("crashed\non boot ☠"),
        at: 7,
    }];
    let mut buf = [0u8; 1024];
    let mut out = JsonOut::new(&mut buf);
    assert!(report(&slots, &events).write(&mut out));
    let v: Value = serde_json::from_slice(out.as_bytes()).expect("JSON");
    assert_eq!(
        v,
        json!({
            "device_id": "dev-\"1\"", "product": "app", "chip": "esp32c3",
            "version": "1.0.0", "sha256": "ab", "secure_counter": 2,
            "boot": {"running_slot": "ota_0", "state": null, "slots": [
                {"name": "ota_0", "state": "valid", "version": "1.0.0"},
                {"name": "ota_1", "state": null, "version": null}]},
            "events": [{"id": "e1", "kind": "rolled_back", "release": "r1",
                "version": "1.1.0", "reason": "crashed\non boot ☠", "at": 7}],
        })
    );
    // Too small a buffer is said, not written half.
    let mut small = [0u8; 40];
    let mut out = JsonOut::new(&mut small);
    assert!(!report(&slots, &events).write(&mut out));
}

#[test]
fn answers_with_and_without_an_offer() {
    let mut acked = Vec::new();
    let body = br#"{"acknowledged":["e1","e\u0032"],"offer":{"release":"r7","version":"1.2.0","sha256":"00ff","manifest_url":"releases\/r7/manifest.json","extra":{"a":[1,2.5e3,true,null]}},"poll_s":30}"#;
    let o = parse_answer(body, &mut |id| acked.push(id.to_string()))
        .expect("parses")
        .expect("an offer");
    assert_eq!(acked, ["e1", "e2"]);
    assert_eq!(
        (
            o.release.as_str(),
            o.version.as_str(),
            o.sha256.as_str(),
            o.manifest_url.as_str()
        ),
        ("r7", "1.2.0", "00ff", "releases/r7/manifest.json")
    );
    let mut n = 0;
    assert_eq!(
        parse_answer(br#" {"acknowledged":[],"offer":null} "#, &mut |_| n += 1),
        Ok(None)
    );
    assert_eq!(parse_answer(br#"{}"#, &mut |_| n += 1), Ok(None));
    assert_eq!(n, 0);
}

#[test]
fn malformed_answers_are_server_answer() {
    let long = format!(
        r#"{{"offer":{{"release":"{}","version":"1","sha256":"a","manifest_url":"m"}}}}"#,
        "r".repeat(200)
    );
    let deep = format!("{{\"x\":{}{}}}", "[".repeat(40), "]".repeat(40));
    let big = vec![b' '; 64 * 1024 + 1];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", b"".to_vec()),
        ("not JSON", b"<html>".to_vec()),
        ("an array", b"[]".to_vec()),
        ("trailing bytes", br#"{} x"#.to_vec()),
        (
            "offer missing a field",
            br#"{"offer":{"release":"r","version":"1","sha256":"a"}}"#.to_vec(),
        ),
        ("offer of another type", br#"{"offer":"r7"}"#.to_vec()),
        (
            "an id that is a number",
            br#"{"acknowledged":[1]}"#.to_vec(),
        ),
        ("a field longer than its buffer", long.into_bytes()),
        ("nesting too deep", deep.into_bytes()),
        ("unterminated string", br#"{"offer":{"release":"r"#.to_vec()),
        ("bad escape", br#"{"acknowledged":["\q"]}"#.to_vec()),
        (
            "raw control character",
            b"{\"acknowledged\":[\"a\nb\"]}".to_vec(),
        ),
        ("invalid UTF-8", b"{\"acknowledged\":[\"\xff\"]}".to_vec()),
        ("oversized", big),
    ];
    for (what, body) in cases {
        assert_eq!(
            parse_answer(&body, &mut |_| {}),
            Err(ServerFault::Answer),
            "{what}"
        );
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes: an answer or `server_answer`, never a panic; and any
        /// value serde_json writes with the two fields is read back.
        #[test]
        fn any_bytes_parse_or_are_refused(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let r = parse_answer(&b, &mut |_| {});
            prop_assert!(matches!(r, Ok(_) | Err(ServerFault::Answer)));
        }

        #[test]
        fn what_serde_writes_is_read(ids in proptest::collection::vec("\\PC{0,20}", 0..5), url in "\\PC{1,60}") {
            let body = json!({"acknowledged": ids, "offer": {"release": "r", "version": "v", "sha256": "s", "manifest_url": url}}).to_string();
            let mut got = Vec::new();
            let o = parse_answer(body.as_bytes(), &mut |id| got.push(id.to_string())).unwrap().unwrap();
            prop_assert_eq!(got, ids);
            prop_assert_eq!(o.manifest_url.as_str(), url.as_str());
        }
    }
}
