//! ArduinoOTA's espota protocol, socket-free: invitations and challenges
//! as datagrams, then the transfer in 1024-byte chunks with a reply read
//! after each, as arduino-esp32's `tools/espota.py` does.

mod common;

use common::*;
use md5::{Digest, Md5};
use otter_device::espota::{Espota, EspotaAuth, EspotaOptions, Transfer};
use otter_device::service::{Action, Protocol, RebootReason, UpdateResult};
use otter_format::chip::Chip;
use otter_ota::SlotId;
use proptest::prelude::*;
use sha2::Sha256;

const OTADATA: std::ops::Range<usize> = 0xe000..0x10000;
const PEER: u64 = 7;

fn otadata(rig: &Rig) -> Vec<u8> {
    rig.flash.contents()[OTADATA].to_vec()
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn send(rig: &mut Rig, udp: &mut Espota, peer: u64, msg: &[u8]) -> (String, Option<Transfer>) {
    let mut tx = [0u8; 256];
    let r = udp.datagram(
        &mut rig.dev,
        &mut rig.flash,
        &mut rig.plat,
        peer,
        msg,
        &[0xa5; 32],
        rig.now,
        &mut tx,
    );
    (
        String::from_utf8(tx[..r.written].to_vec()).unwrap(),
        r.transfer,
    )
}

fn invitation(cmd: u32, image: &[u8]) -> Vec<u8> {
    format!(
        "{cmd} 40000 {} {}\n",
        image.len(),
        hexs(&Md5::digest(image))
    )
    .into_bytes()
}

/// The legacy answer: md5hex(md5hex(pw) ":" nonce ":" cnonce).
fn md5_answer(pw: &str, nonce: &str, cnonce: &str) -> String {
    let p = hexs(&Md5::digest(pw.as_bytes()));
    hexs(&Md5::digest(format!("{p}:{nonce}:{cnonce}").as_bytes()))
}

/// arduino-esp32 3.3.1's answer, with `p` the stored password hash.
fn sha_answer(p: &str, nonce: &str, cnonce: &str) -> String {
    let mut k = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        p.as_bytes(),
        format!("{nonce}:{cnonce}").as_bytes(),
        10_000,
        &mut k,
    );
    hexs(&Sha256::digest(
        format!("{}:{nonce}:{cnonce}", hexs(&k)).as_bytes(),
    ))
}

/// Streams `image` as espota.py does; returns every reply and the last
/// action.
fn stream(rig: &mut Rig, t: &mut Transfer, image: &[u8]) -> (Vec<String>, Action) {
    let mut replies = Vec::new();
    let mut tx = [0u8; 256];
    for chunk in image.chunks(1024) {
        let out = t.handle(
            &mut rig.dev,
            &mut rig.flash,
            &mut rig.plat,
            chunk,
            rig.now,
            &mut tx,
        );
        assert_eq!(out.consumed, chunk.len());
        replies.push(String::from_utf8(tx[..out.written].to_vec()).unwrap());
        if out.action != Action::Read {
            return (replies, out.action);
        }
    }
    (replies, Action::Read)
}

fn fresh() -> Rig {
    Rig::with(CSV, &c3("1.0.0"), opts(false, None, false))
}

#[test]
fn without_a_password_the_invitation_is_ok_and_every_read_gets_its_count() {
    let mut rig = fresh();
    let mut udp = Espota::new(&EspotaOptions::new());
    let image = c3("2.0.0");
    let (reply, t) = send(&mut rig, &mut udp, PEER, &invitation(0, &image));
    assert_eq!(reply, "OK");
    let mut t = t.expect("the device connects back");
    assert_eq!(t.port(), 40000);
    assert!(rig.dev.update_in_progress(), "begun before connecting");
    let (replies, action) = stream(&mut rig, &mut t, &image);
    assert_eq!(action, Action::Reboot(RebootReason::Update));
    let last = image.len() % 1024;
    let last = if last == 0 { 1024 } else { last };
    assert!(replies[..replies.len() - 1].iter().all(|r| r == "1024"));
    assert_eq!(replies.last().unwrap(), &format!("{last}OK"));
    let u = rig.dev.last_update().unwrap();
    assert_eq!((u.result, u.protocol), (UpdateResult::Ok, Protocol::Espota));
    rig.boot();
    assert_eq!(rig.running(), Some(SlotId::Ota(1)));
}

#[test]
fn the_legacy_md5_challenge_uses_a_32_hex_nonce() {
    let mut rig = fresh();
    let mut udp = Espota::new(&EspotaOptions {
        auth: EspotaAuth::md5_of(b"pw"),
        ..EspotaOptions::new()
    });
    let image = c3("2.0.0");
    let (reply, t) = send(&mut rig, &mut udp, PEER, &invitation(0, &image));
    assert!(t.is_none());
    let nonce = reply
        .strip_prefix("AUTH ")
        .expect("a challenge")
        .to_string();
    assert_eq!(nonce.len(), 32);
    assert!(
        !rig.dev.update_in_progress(),
        "nothing begins before the answer"
    );
    let cnonce = hexs(&Md5::digest(b"fw.bin"));
    let answer = format!("200 {cnonce} {}\n", md5_answer("pw", &nonce, &cnonce));
    let (reply, t) = send(&mut rig, &mut udp, PEER, answer.as_bytes());
    assert_eq!(reply, "OK");
    let (_, action) = stream(&mut rig, &mut t.unwrap(), &image);
    assert_eq!(action, Action::Reboot(RebootReason::Update));
}

#[test]
fn the_sha256_challenge_uses_pbkdf2_over_the_stored_hash() {
    let mut rig = fresh();
    let mut udp = Espota::new(&EspotaOptions {
        auth: EspotaAuth::sha256_of(b"pw"),
        ..EspotaOptions::new()
    });
    let image = c3("2.0.0");
    let (reply, _) = send(&mut rig, &mut udp, PEER, &invitation(0, &image));
    let nonce = reply.strip_prefix("AUTH ").unwrap().to_string();
    assert_eq!(nonce.len(), 64);
    let cnonce = hexs(&Sha256::digest(b"fw.bin"));
    let p = hexs(&Sha256::digest(b"pw"));
    let answer = format!("200 {cnonce} {}\n", sha_answer(&p, &nonce, &cnonce));
    let (reply, t) = send(&mut rig, &mut udp, PEER, answer.as_bytes());
    assert_eq!(reply, "OK");
    assert!(t.is_some());
}

#[test]
fn a_wrong_password_fails_and_a_fresh_invitation_starts_over() {
    for auth in [EspotaAuth::md5_of(b"pw"), EspotaAuth::sha256_of(b"pw")] {
        let mut rig = fresh();
        let before = otadata(&rig);
        let mut udp = Espota::new(&EspotaOptions {
            auth,
            ..EspotaOptions::new()
        });
        let image = c3("2.0.0");
        let (reply, _) = send(&mut rig, &mut udp, PEER, &invitation(0, &image));
        let nonce = reply.strip_prefix("AUTH ").unwrap().to_string();
        let cnonce = "0".repeat(nonce.len());
        let wrong = if nonce.len() == 32 {
            md5_answer("nope", &nonce, &cnonce)
        } else {
            sha_answer(&hexs(&Sha256::digest(b"nope")), &nonce, &cnonce)
        };
        let (reply, t) = send(
            &mut rig,
            &mut udp,
            PEER,
            format!("200 {cnonce} {wrong}\n").as_bytes(),
        );
        assert_eq!(reply, "Authentication Failed");
        assert!(t.is_none());
        assert!(rig.dev.last_update().is_none());
        assert_eq!(otadata(&rig), before);
        // The same answer again is not taken: the challenge is spent.
        let (reply, _) = send(
            &mut rig,
            &mut udp,
            PEER,
            format!("200 {cnonce} {wrong}\n").as_bytes(),
        );
        assert_eq!(reply, "");
        let (reply, _) = send(&mut rig, &mut udp, PEER, &invitation(0, &image));
        assert!(reply.starts_with("AUTH "));
    }
}

#[test]
fn an_answer_from_another_sender_or_too_late_is_ignored() {
    let mut rig = fresh();
    let mut udp = Espota::new(&EspotaOptions {
        auth: EspotaAuth::md5_of(b"pw"),
        ..EspotaOptions::new()
    });
    let image = c3("2.0.0");
    let (reply, _) = send(&mut rig, &mut udp, PEER, &invitation(0, &image));
    let nonce = reply.strip_prefix("AUTH ").unwrap().to_string();
    let cnonce = "1".repeat(32);
    let answer = format!("200 {cnonce} {}\n", md5_answer("pw", &nonce, &cnonce));
    assert_eq!(send(&mut rig, &mut udp, PEER + 1, answer.as_bytes()).0, "");
    rig.now += 10_001;
    assert_eq!(send(&mut rig, &mut udp, PEER, answer.as_bytes()).0, "");
    assert!(!rig.dev.update_in_progress());
}

#[test]
fn refusals_are_error_texts_and_leave_the_boot_selection() {
    let big = app(Chip::Esp32c3, "2.0.0", 0, 0x100000 + 4096);
    let esp32 = app(Chip::Esp32, "2.0.0", 0, 72_000);
    let mut corrupted = c3("2.0.0");
    let mid = corrupted.len() / 2;
    corrupted[mid] ^= 0xff;
    // (what, image, invitation's image, where refused, code)
    let cases: Vec<(&str, Vec<u8>, Vec<u8>, &str)> = vec![
        ("too large", big.clone(), big, "too_large"),
        ("wrong chip", esp32.clone(), esp32, "wrong_chip"),
        ("corrupted", corrupted.clone(), corrupted, "integrity"),
        ("md5 mismatch", c3("2.0.0"), c3("2.0.1"), "md5_mismatch"),
    ];
    for (what, image, announced, code) in cases {
        let mut rig = fresh();
        let before = otadata(&rig);
        let mut udp = Espota::new(&EspotaOptions::new());
        let mut inv = invitation(0, &announced);
        if what == "md5 mismatch" {
            inv = format!(
                "0 40000 {} {}\n",
                image.len(),
                hexs(&Md5::digest(&announced))
            )
            .into_bytes();
        }
        let (reply, t) = send(&mut rig, &mut udp, PEER, &inv);
        let text = match t {
            None => reply,
            Some(mut t) => {
                assert_eq!(reply, "OK", "{what}");
                let (replies, action) = stream(&mut rig, &mut t, &image);
                assert_eq!(action, Action::Close, "{what}");
                assert_eq!(t.error().unwrap().code(), code, "{what}");
                replies.last().unwrap().clone()
            }
        };
        assert!(text.starts_with(&format!("ERR {code}: ")), "{what}: {text}");
        assert!(
            !text.contains("OK"),
            "{what}: a refusal never reads as success: {text}"
        );
        let rec = rig.dev.last_update().unwrap();
        assert_eq!(rec.protocol, Protocol::Espota, "{what}");
        assert_eq!(rec.error.as_ref().unwrap().code(), code, "{what}");
        assert!(!rig.dev.update_in_progress(), "{what}");
        assert_eq!(otadata(&rig), before, "{what}");
    }
}

#[test]
fn wrong_chip_is_refused_in_the_first_chunk() {
    let mut rig = fresh();
    let mut udp = Espota::new(&EspotaOptions::new());
    let esp32 = app(Chip::Esp32, "2.0.0", 0, 300_000);
    let (_, t) = send(&mut rig, &mut udp, PEER, &invitation(0, &esp32));
    let (replies, action) = stream(&mut rig, &mut t.unwrap(), &esp32);
    assert_eq!(action, Action::Close);
    assert_eq!(replies.len(), 1, "refused at the first read: {replies:?}");
}

#[test]
fn an_invitation_while_an_update_runs_is_refused_busy() {
    let mut rig = fresh();
    let mut udp = Espota::new(&EspotaOptions::new());
    let image = c3("2.0.0");
    let (_, t) = send(&mut rig, &mut udp, PEER, &invitation(0, &image));
    assert!(t.is_some());
    let (reply, t2) = send(&mut rig, &mut udp, PEER + 1, &invitation(0, &image));
    assert!(t2.is_none());
    assert!(reply.starts_with("ERR busy: "), "{reply}");
}

#[test]
fn the_filesystem_command_writes_the_inactive_www_slot() {
    let mut rig = fresh();
    let mut udp = Espota::new(&EspotaOptions::new());
    let ui = ui_image();
    let (reply, t) = send(&mut rig, &mut udp, PEER, &invitation(100, &ui));
    assert_eq!(reply, "OK");
    let (replies, action) = stream(&mut rig, &mut t.unwrap(), &ui);
    assert_eq!(
        action,
        Action::Reboot(RebootReason::Www),
        "{:?}",
        replies.last()
    );
    assert_eq!(rig.www_slot_bytes(WWW1), &ui[..]);
    let u = rig.dev.last_update().unwrap();
    assert_eq!(u.www_slot, Some(1));

    let mut rig = fresh();
    let mut udp = Espota::new(&EspotaOptions::new());
    let (reply, t) = send(&mut rig, &mut udp, PEER, &invitation(100, &ui[..4096]));
    assert!(t.is_none());
    assert!(reply.starts_with("ERR wrong_size: "), "{reply}");
}

#[test]
fn a_stalled_transfer_resends_its_count_then_aborts() {
    let mut rig = fresh();
    let mut udp = Espota::new(&EspotaOptions::new());
    let image = c3("2.0.0");
    let (_, t) = send(&mut rig, &mut udp, PEER, &invitation(0, &image));
    let mut t = t.unwrap();
    let mut tx = [0u8; 256];
    t.handle(
        &mut rig.dev,
        &mut rig.flash,
        &mut rig.plat,
        &image[..1024],
        rig.now,
        &mut tx,
    );
    let mut now = rig.now;
    for _ in 0..3 {
        now += 1000;
        let out = t.poll(&mut rig.dev, now, &mut tx);
        assert_eq!(
            (&tx[..out.written], out.action),
            (&b"1024"[..], Action::Read)
        );
    }
    let out = t.poll(&mut rig.dev, now + 1000, &mut tx);
    assert_eq!(out.action, Action::Close);
    assert!(std::str::from_utf8(&tx[..out.written])
        .unwrap()
        .starts_with("ERR timeout: "));
    assert_eq!(rig.dev.last_update().unwrap().result, UpdateResult::Aborted);
    assert!(!rig.dev.update_in_progress());
}

#[test]
fn a_broken_connection_aborts_and_the_next_invitation_works() {
    let mut rig = fresh();
    let before = otadata(&rig);
    let mut udp = Espota::new(&EspotaOptions::new());
    let image = c3("2.0.0");
    let (_, t) = send(&mut rig, &mut udp, PEER, &invitation(0, &image));
    let mut t = t.unwrap();
    t.peer_closed(&mut rig.dev, rig.now);
    assert_eq!(rig.dev.last_update().unwrap().result, UpdateResult::Aborted);
    assert_eq!(otadata(&rig), before);
    let (reply, t) = send(&mut rig, &mut udp, PEER, &invitation(0, &image));
    assert_eq!(reply, "OK");
    let (_, action) = stream(&mut rig, &mut t.unwrap(), &image);
    assert_eq!(action, Action::Reboot(RebootReason::Update));
}

#[test]
fn malformed_datagrams_get_no_answer() {
    let mut rig = fresh();
    let mut udp = Espota::new(&EspotaOptions::new());
    let md5 = "0".repeat(32);
    for msg in [
        "".to_string(),
        "hello".to_string(),
        format!("1 40000 100 {md5}\n"),
        format!("0 0 100 {md5}\n"),
        format!("0 70000 100 {md5}\n"),
        "0 40000 100 abc\n".to_string(),
        format!("0 40000 99999999999 {md5}\n"),
        format!("0 40000 100 {md5} extra\n"),
        format!("200 {md5} {md5}\n"),
    ] {
        let (reply, t) = send(&mut rig, &mut udp, PEER, msg.as_bytes());
        assert_eq!((reply.as_str(), t.is_none()), ("", true), "{msg:?}");
    }
    assert!(rig.dev.last_update().is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random datagrams, then random transfer bytes: never a panic, and
    /// the boot selection never changes.
    #[test]
    fn random_input_never_panics_or_switches(
        datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..6),
        valid in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..6000),
        auth in 0u8..3,
    ) {
        let mut rig = fresh();
        let before = otadata(&rig);
        let auth = match auth {
            0 => EspotaAuth::None,
            1 => EspotaAuth::md5_of(b"pw"),
            _ => EspotaAuth::sha256_of(b"pw"),
        };
        let mut udp = Espota::new(&EspotaOptions { auth, ..EspotaOptions::new() });
        let mut transfer = None;
        for d in &datagrams {
            let (_, t) = send(&mut rig, &mut udp, PEER, d);
            transfer = transfer.or(t);
        }
        if valid {
            let inv = format!("0 40000 {} {}\n", body.len().max(1), hexs(&Md5::digest(&body)));
            let (_, t) = send(&mut rig, &mut udp, PEER, inv.as_bytes());
            transfer = transfer.or(t);
        }
        if let Some(mut t) = transfer {
            let mut tx = [0u8; 256];
            for c in body.chunks(1024) {
                let out = t.handle(&mut rig.dev, &mut rig.flash, &mut rig.plat, c, rig.now, &mut tx);
                prop_assert!(!matches!(out.action, Action::Reboot(_)));
                if out.action != Action::Read { break; }
            }
            t.peer_closed(&mut rig.dev, rig.now);
        }
        prop_assert!(!rig.dev.update_in_progress());
        prop_assert_eq!(otadata(&rig), before);
    }
}
