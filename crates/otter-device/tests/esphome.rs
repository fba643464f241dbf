//! ESPHome's native OTA protocol, socket-free: the client side written out
//! byte by byte as `esphome.espota2` sends it, against the device machine.

mod common;

use common::*;
use md5::{Digest, Md5};
use otter_device::esphome::{sniff, EsphomeConnection, EsphomeOptions, Sniff, Version, MAGIC};
use otter_device::service::{Action, Protocol, RebootReason, UpdateResult};
use otter_device::Secret;
use otter_format::chip::Chip;
use otter_ota::SlotId;
use proptest::prelude::*;
use sha2::Sha256;

const OTADATA: std::ops::Range<usize> = 0xe000..0x10000;

fn otadata(rig: &Rig) -> Vec<u8> {
    rig.flash.contents()[OTADATA].to_vec()
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One connection's worth of exchanges.
struct Link {
    conn: EsphomeConnection,
    /// Every byte the device sent.
    rx: Vec<u8>,
    action: Action,
}

impl Link {
    fn new(rig: &Rig, opts: &EsphomeOptions) -> Self {
        Self {
            conn: EsphomeConnection::new(opts, &[0x5a; 32], rig.now),
            rx: Vec::new(),
            action: Action::Read,
        }
    }

    /// Sends `bytes`, feeding what the machine leaves unconsumed again;
    /// returns what the device answered to them.
    fn send(&mut self, rig: &mut Rig, bytes: &[u8]) -> Vec<u8> {
        let mut tx = [0u8; 256];
        let mut at = 0;
        let mut got = Vec::new();
        loop {
            let out = self.conn.handle(
                &mut rig.dev,
                &mut rig.flash,
                &mut rig.plat,
                &bytes[at..],
                rig.now,
                &mut tx,
            );
            got.extend_from_slice(&tx[..out.written]);
            at += out.consumed;
            self.action = out.action;
            if out.action != Action::Read || at == bytes.len() {
                break;
            }
            assert!(
                out.consumed > 0 || out.written > 0,
                "the machine made no progress"
            );
        }
        self.rx.extend_from_slice(&got);
        got
    }
}

/// What the uploader is configured with.
struct Upload<'a> {
    flags: u8,
    password: Option<&'a str>,
    ota_type: Option<u8>,
    md5: Option<[u8; 16]>,
    block: usize,
}

impl Default for Upload<'_> {
    fn default() -> Self {
        Self {
            flags: 0x01,
            password: None,
            ota_type: None,
            md5: None,
            block: 8192,
        }
    }
}

/// Runs a whole upload as espota2 does: stops at the first error byte and
/// returns it, or `None` when the device answered `45`.
fn upload(
    rig: &mut Rig,
    opts: &EsphomeOptions,
    image: &[u8],
    u: &Upload<'_>,
) -> (Link, Option<u8>) {
    let mut l = Link::new(rig, opts);
    let v = l.send(rig, &MAGIC);
    if v.first() != Some(&0x00) {
        return (l, v.first().copied());
    }
    assert_eq!(v, [0x00, opts.version as u8]);
    let a = l.send(rig, &[u.flags]);
    let (ack, rest) = if a[0] == 0x48 {
        (&a[..2], &a[2..])
    } else {
        (&a[..1], &a[1..])
    };
    if u.flags & 0x04 != 0 {
        assert_eq!(ack, [0x48, 0x00], "extended ack, no server features");
    } else {
        assert_eq!(ack, [0x40], "legacy ack: no gzip offered");
    }
    match rest[0] {
        0x41 => assert_eq!(rest.len(), 1),
        kind @ (0x01 | 0x02) => {
            let n = if kind == 0x01 { 32 } else { 64 };
            assert_eq!(rest.len(), 1 + n, "nonce follows the type byte");
            let nonce = std::str::from_utf8(&rest[1..]).unwrap().to_string();
            let cnonce = "c".repeat(n);
            let pw = u.password.expect("the device asks for a password");
            let text = format!("{pw}{nonce}{cnonce}");
            let result = if kind == 0x01 {
                hexs(&Md5::digest(text.as_bytes()))
            } else {
                hexs(&Sha256::digest(text.as_bytes()))
            };
            assert!(l.send(rig, cnonce.as_bytes()).is_empty());
            let r = l.send(rig, result.as_bytes());
            if r != [0x41] {
                return (l, r.first().copied());
            }
        }
        e => return (l, Some(e)),
    }
    if let Some(t) = u.ota_type {
        assert!(l.send(rig, &[t]).is_empty());
    }
    let r = l.send(rig, &(image.len() as u32).to_be_bytes());
    if r != [0x42] {
        return (l, r.first().copied());
    }
    let md5 = u.md5.unwrap_or_else(|| Md5::digest(image).into());
    let r = l.send(rig, hexs(&md5).as_bytes());
    if r != [0x43] {
        return (l, r.first().copied());
    }
    let mut tail = Vec::new();
    for chunk in image.chunks(u.block) {
        let r = l.send(rig, chunk);
        if opts.version == Version::V2 && u.block == 8192 {
            // One ack per 8 KiB block, at once (then 44/45 after the last).
            match r.first() {
                Some(0x47) => {}
                other => return (l, other.copied()),
            }
            tail.extend_from_slice(&r[1..]);
        } else {
            if let Some(&e) = r.iter().find(|&&b| b >= 0x80) {
                return (l, Some(e));
            }
            tail.extend_from_slice(&r);
        }
        if l.action != Action::Read {
            break;
        }
    }
    let tail: Vec<u8> = tail.into_iter().filter(|&b| b != 0x47).collect();
    match tail.as_slice() {
        [0x44, 0x45] => (l, None),
        [0x44, e] => (l, Some(*e)),
        [e, ..] => (l, Some(*e)),
        [] => panic!("no answer after the data"),
    }
}

fn fresh() -> Rig {
    Rig::with(CSV, &c3("1.0.0"), opts(false, None, false))
}

fn with_password(pw: &str) -> EsphomeOptions {
    let mut o = EsphomeOptions::new();
    o.password = Secret::new(pw.as_bytes());
    o
}

#[test]
fn sniff_tells_esphome_from_http_by_the_first_byte() {
    assert_eq!(sniff(&[]), Sniff::NeedMore);
    assert_eq!(sniff(&MAGIC[..1]), Sniff::Esphome);
    assert_eq!(sniff(b"POST /update HTTP/1.1"), Sniff::Http);
    assert_eq!(sniff(b"GET /"), Sniff::Http);
}

#[test]
fn a_good_image_over_version_2_is_written_verified_and_booted() {
    let mut rig = fresh();
    let image = c3("2.0.0");
    let (l, err) = upload(&mut rig, &EsphomeOptions::new(), &image, &Upload::default());
    assert_eq!(err, None, "device said {:02x?}", l.rx);
    assert_eq!(l.action, Action::Reboot(RebootReason::Update));
    let blocks = image.len().div_ceil(8192);
    assert_eq!(l.rx.iter().filter(|&&b| b == 0x47).count(), blocks);
    assert_eq!(&l.rx[..5], &[0x00, 0x02, 0x40, 0x41, 0x42]);
    assert_eq!(&l.rx[l.rx.len() - 2..], &[0x44, 0x45]);
    let u = rig.dev.last_update().unwrap();
    assert_eq!(
        (u.result, u.protocol),
        (UpdateResult::Ok, Protocol::Esphome)
    );
    assert_eq!(u.received, image.len() as u64);
    rig.boot();
    assert_eq!(rig.running(), Some(SlotId::Ota(1)));
}

#[test]
fn version_1_sends_no_block_acks_and_takes_any_split() {
    let mut rig = fresh();
    let mut o = EsphomeOptions::new();
    o.version = Version::V1;
    let image = c3("2.0.0");
    let u = Upload {
        flags: 0x00,
        block: 1000,
        ..Upload::default()
    };
    let (l, err) = upload(&mut rig, &o, &image, &u);
    assert_eq!(err, None);
    assert_eq!(l.rx, [0x00, 0x01, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45]);
    rig.boot();
    assert_eq!(rig.running(), Some(SlotId::Ota(1)));
}

#[test]
fn extended_clients_get_the_feature_flags_and_send_the_ota_type() {
    let mut rig = fresh();
    let u = Upload {
        flags: 0x17,
        ota_type: Some(0x00),
        ..Upload::default()
    };
    let (l, err) = upload(&mut rig, &EsphomeOptions::new(), &c3("2.0.0"), &u);
    assert_eq!(err, None);
    assert_eq!(&l.rx[..6], &[0x00, 0x02, 0x48, 0x00, 0x41, 0x42]);
}

#[test]
fn a_partition_table_or_bootloader_ota_type_is_refused_with_8e_after_the_size() {
    for t in [0x01, 0x02, 0x7f] {
        let mut rig = fresh();
        let before = otadata(&rig);
        let u = Upload {
            flags: 0x07,
            ota_type: Some(t),
            ..Upload::default()
        };
        let (l, err) = upload(&mut rig, &EsphomeOptions::new(), &c3("2.0.0"), &u);
        assert_eq!(err, Some(0x8E));
        assert_eq!(l.action, Action::Close);
        assert_eq!(
            l.conn.error().unwrap().code(),
            "esphome_unsupported_ota_type"
        );
        assert!(!rig.dev.update_in_progress());
        assert_eq!(otadata(&rig), before);
    }
}

#[test]
fn md5_challenge_for_clients_without_the_sha256_flag() {
    let mut rig = fresh();
    let u = Upload {
        flags: 0x01,
        password: Some("pw"),
        ..Upload::default()
    };
    let (l, err) = upload(&mut rig, &with_password("pw"), &c3("2.0.0"), &u);
    assert_eq!(err, None);
    assert_eq!(l.rx[3], 0x01, "MD5 challenge");
    rig.boot();
    assert_eq!(rig.running(), Some(SlotId::Ota(1)));
}

#[test]
fn sha256_challenge_for_clients_with_the_flag() {
    let mut rig = fresh();
    let u = Upload {
        flags: 0x03,
        password: Some("pw"),
        ..Upload::default()
    };
    let (l, err) = upload(&mut rig, &with_password("pw"), &c3("2.0.0"), &u);
    assert_eq!(err, None);
    assert_eq!(l.rx[3], 0x02, "SHA-256 challenge");
    assert_eq!(l.rx.len(), 4 + 64 + 1 + 2 + 9 + 2);
}

#[test]
fn a_wrong_password_is_82_and_nothing_is_begun() {
    for flags in [0x01, 0x03, 0x07] {
        let mut rig = fresh();
        let before = otadata(&rig);
        let u = Upload {
            flags,
            password: Some("wrong"),
            ota_type: Some(0),
            ..Upload::default()
        };
        let (l, err) = upload(&mut rig, &with_password("pw"), &c3("2.0.0"), &u);
        assert_eq!(err, Some(0x82));
        assert_eq!(l.action, Action::Close);
        assert_eq!(l.conn.error().unwrap().code(), "esphome_auth_failed");
        assert!(rig.dev.last_update().is_none());
        assert_eq!(otadata(&rig), before);
    }
}

#[test]
fn a_bad_magic_is_80_at_the_first_wrong_byte() {
    let mut rig = fresh();
    let mut l = Link::new(&rig, &EsphomeOptions::new());
    assert_eq!(l.send(&mut rig, &[0x6C, 0x26, 0x00]), [0x80]);
    assert_eq!(l.action, Action::Close);
    assert_eq!(l.conn.error().unwrap().code(), "esphome_bad_magic");
}

#[test]
fn refusals_map_to_esphome_codes_and_leave_the_boot_selection() {
    let big = app(Chip::Esp32c3, "2.0.0", 0, 0x100000 + 4096);
    let esp32 = app(Chip::Esp32, "2.0.0", 0, 72_000);
    let mut corrupted = c3("2.0.0");
    let mid = corrupted.len() / 2;
    corrupted[mid] ^= 0xff;
    let mut not_app = c3("2.0.0");
    not_app[0] = 0x00;
    let good = c3("2.0.0");
    // (what, image, MD5 sent instead of the image's, byte, device code)
    type Case<'a> = (&'a str, Vec<u8>, Option<[u8; 16]>, u8, &'a str);
    let cases: Vec<Case> = vec![
        ("too large", big, None, 0x89, "too_large"),
        ("wrong chip", esp32, None, 0x84, "wrong_chip"),
        ("corrupted", corrupted, None, 0x84, "integrity"),
        ("not an app", not_app, None, 0x80, "not_an_app"),
        ("md5 mismatch", good, Some([0u8; 16]), 0x8B, "md5_mismatch"),
    ];
    for (what, image, md5, code, dev_code) in cases {
        let mut rig = fresh();
        let before = otadata(&rig);
        let u = Upload {
            md5,
            ..Upload::default()
        };
        let (l, err) = upload(&mut rig, &EsphomeOptions::new(), &image, &u);
        assert_eq!(err, Some(code), "{what}: device said {:02x?}", l.rx);
        assert_eq!(l.action, Action::Close, "{what}");
        let rec = rig.dev.last_update().unwrap();
        assert_eq!(rec.protocol, Protocol::Esphome, "{what}");
        assert_eq!(
            rec.error.as_ref().map(|e| e.code()),
            Some(dev_code),
            "{what}"
        );
        assert!(!rig.dev.update_in_progress(), "{what}");
        assert_eq!(otadata(&rig), before, "{what}: boot selection changed");
        rig.boot();
        assert_eq!(rig.running(), Some(SlotId::Ota(0)), "{what}");
    }
}

#[test]
fn wrong_chip_is_refused_at_the_first_block_not_after_the_whole_image() {
    let mut rig = fresh();
    let esp32 = app(Chip::Esp32, "2.0.0", 0, 200_000);
    let (l, err) = upload(&mut rig, &EsphomeOptions::new(), &esp32, &Upload::default());
    assert_eq!(err, Some(0x84));
    assert!(
        !l.rx.contains(&0x47),
        "refused before the first block's ack"
    );
}

#[test]
fn a_low_secure_version_is_93() {
    let mut rig = Rig::with(
        CSV,
        &app(Chip::Esp32c3, "1.0.0", 3, 72_000),
        opts(false, Some(3), false),
    );
    let before = otadata(&rig);
    let old = app(Chip::Esp32c3, "0.9.0", 2, 72_000);
    let (_, err) = upload(&mut rig, &EsphomeOptions::new(), &old, &Upload::default());
    assert_eq!(err, Some(0x93));
    assert_eq!(otadata(&rig), before);
}

#[test]
fn no_ota_slot_is_8a_and_a_second_upload_while_one_runs_is_81() {
    let mut rig = Rig::with(CSV_NO_OTA, &c3("1.0.0"), opts(false, None, false));
    let (_, err) = upload(
        &mut rig,
        &EsphomeOptions::new(),
        &c3("2.0.0"),
        &Upload::default(),
    );
    assert_eq!(err, Some(0x8A));

    let mut rig = fresh();
    let o = EsphomeOptions::new();
    let image = c3("2.0.0");
    let mut first = Link::new(&rig, &o);
    first.send(&mut rig, &MAGIC);
    first.send(&mut rig, &[0x01]);
    assert_eq!(
        first.send(&mut rig, &(image.len() as u32).to_be_bytes()),
        [0x42]
    );
    let (_, err) = upload(&mut rig, &o, &image, &Upload::default());
    assert_eq!(err, Some(0x81));
    let rec = rig.dev.last_update().unwrap();
    assert_eq!(
        rec.result,
        UpdateResult::InProgress,
        "the running update's record stays"
    );
}

#[test]
fn a_dropped_connection_aborts_cleanly_and_a_retry_succeeds() {
    let mut rig = fresh();
    let before = otadata(&rig);
    let o = EsphomeOptions::new();
    let image = c3("2.0.0");
    let mut l = Link::new(&rig, &o);
    l.send(&mut rig, &MAGIC);
    l.send(&mut rig, &[0x01]);
    l.send(&mut rig, &(image.len() as u32).to_be_bytes());
    l.send(&mut rig, hexs(&Md5::digest(&image)).as_bytes());
    l.send(&mut rig, &image[..20_000]);
    l.conn.peer_closed(&mut rig.dev, rig.now);
    let rec = rig.dev.last_update().unwrap();
    assert_eq!(
        (rec.result, rec.protocol),
        (UpdateResult::Aborted, Protocol::Esphome)
    );
    assert_eq!(rec.error.as_ref().unwrap().code(), "aborted");
    assert!(!rig.dev.update_in_progress());
    assert_eq!(otadata(&rig), before);
    let (_, err) = upload(&mut rig, &o, &image, &Upload::default());
    assert_eq!(err, None);
}

#[test]
fn silence_times_out_in_the_handshake_and_in_the_data_phase() {
    let mut rig = fresh();
    let o = EsphomeOptions::new();
    let mut l = Link::new(&rig, &o);
    l.send(&mut rig, &MAGIC);
    let out = l.conn.poll(&mut rig.dev, rig.now + o.handshake_ms - 1);
    assert_eq!(out.action, Action::Read);
    let out = l.conn.poll(&mut rig.dev, rig.now + o.handshake_ms);
    assert_eq!(out.action, Action::Close);

    let image = c3("2.0.0");
    let mut l = Link::new(&rig, &o);
    l.send(&mut rig, &MAGIC);
    l.send(&mut rig, &[0x01]);
    l.send(&mut rig, &(image.len() as u32).to_be_bytes());
    l.send(&mut rig, hexs(&Md5::digest(&image)).as_bytes());
    l.send(&mut rig, &image[..8192]);
    assert_eq!(
        l.conn.poll(&mut rig.dev, rig.now + o.data_ms).action,
        Action::Close
    );
    let rec = rig.dev.last_update().unwrap();
    assert_eq!(rec.result, UpdateResult::Aborted);
    assert_eq!(rec.error.as_ref().unwrap().code(), "timeout");
    assert!(!rig.dev.update_in_progress());
}

#[test]
fn the_corpus_image_goes_through_with_byte_at_a_time_delivery() {
    let mut rig = Rig::with(CSV, &c3("1.0.0"), opts(false, None, false));
    let image = corpus_c3();
    let u = Upload {
        block: 1,
        ..Upload::default()
    };
    let mut o = EsphomeOptions::new();
    o.version = Version::V1;
    let (_, err) = upload(&mut rig, &o, &image, &u);
    assert_eq!(err, None);
    rig.boot();
    assert_eq!(rig.running(), Some(SlotId::Ota(1)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random bytes, or a valid opening followed by random bytes, in random
    /// pieces: never a panic, and the boot selection never changes.
    #[test]
    fn random_input_never_panics_or_switches(
        valid_prefix in any::<bool>(),
        tail in proptest::collection::vec(any::<u8>(), 0..20_000),
        cuts in proptest::collection::vec(1usize..4096, 1..16),
        password in any::<bool>(),
    ) {
        let mut rig = fresh();
        let before = otadata(&rig);
        let o = if password { with_password("pw") } else { EsphomeOptions::new() };
        let mut input = Vec::new();
        if valid_prefix {
            input.extend_from_slice(&MAGIC);
            input.push(0x07);
            input.push(0x00);
        }
        input.extend_from_slice(&tail);
        let mut l = Link::new(&rig, &o);
        let mut at = 0;
        for c in cuts.iter().cycle() {
            if at >= input.len() || l.action != Action::Read {
                break;
            }
            let end = (at + c).min(input.len());
            l.send(&mut rig, &input[at..end]);
            at = end;
        }
        l.conn.peer_closed(&mut rig.dev, rig.now);
        prop_assert!(!rig.dev.update_in_progress());
        prop_assert_eq!(otadata(&rig), before);
    }
}

#[test]
fn an_unconfirmed_image_refuses_the_next_upload_with_81() {
    let mut rig = Rig::with(CSV, &c3("1.0.0"), opts(true, None, false));
    let (_, err) = upload(
        &mut rig,
        &EsphomeOptions::new(),
        &c3("2.0.0"),
        &Upload::default(),
    );
    assert_eq!(err, None);
    rig.boot();
    assert_eq!(rig.running(), Some(SlotId::Ota(1)));
    let before = otadata(&rig);
    let (_, err) = upload(
        &mut rig,
        &EsphomeOptions::new(),
        &c3("3.0.0"),
        &Upload::default(),
    );
    assert_eq!(err, Some(0x81), "pending_verify, as HTTP's 409");
    assert_eq!(otadata(&rig), before);
}

/// Deflates `data` with miniz_oxide (any correct deflate encoder will do:
/// the uploader-side oracles are in crates/otter/tests/uploaders.rs).
fn gzip_of(data: &[u8]) -> Vec<u8> {
    let raw = raw_deflate_of(data);
    let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 0xff];
    v.extend_from_slice(&raw);
    let crc = crc32(data);
    v.extend_from_slice(&crc.to_le_bytes());
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v
}

fn raw_deflate_of(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(data, 9)
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Runs espota2's sequence with compression offered by `flags`; returns
/// the device's whole answer.
fn compressed_upload(rig: &mut Rig, flags: u8, body: &[u8]) -> (Link, Vec<u8>) {
    let mut l = Link::new(rig, &EsphomeOptions::new());
    let mut all = l.send(rig, &MAGIC);
    all.extend(l.send(rig, &[flags]));
    if flags & 0x04 != 0 {
        all.extend(l.send(rig, &[0x00]));
    }
    all.extend(l.send(rig, &(body.len() as u32).to_be_bytes()));
    let md5: [u8; 16] = Md5::digest(body).into();
    all.extend(l.send(rig, hexs(&md5).as_bytes()));
    for chunk in body.chunks(8192) {
        all.extend(l.send(rig, chunk));
        if l.action != Action::Read {
            break;
        }
    }
    (l, all)
}

fn lending_rig() -> Rig {
    let mut rig = fresh();
    rig.plat.inflate = Some(Box::new(otter_device::decode::new_inflater()));
    rig
}

#[test]
fn with_an_inflater_gzip_is_advertised_and_inflated_as_it_arrives() {
    let image = c3("2.0.0");
    // Legacy client offering gzip (esphome 2024.12): `46`, then gzip.
    let mut rig = lending_rig();
    let gz = gzip_of(&image);
    let (l, rx) = compressed_upload(&mut rig, 0x01, &gz);
    assert_eq!(&rx[..5], &[0x00, 0x02, 0x46, 0x41, 0x42], "{rx:02x?}");
    assert_eq!(&rx[rx.len() - 2..], &[0x44, 0x45], "{rx:02x?}");
    assert_eq!(l.action, Action::Reboot(RebootReason::Update));
    assert_eq!(
        &rig.flash.contents()[0x110000..0x110000 + image.len()],
        &image[..]
    );
    let u = rig.dev.last_update().unwrap();
    assert_eq!((u.result, u.received), (UpdateResult::Ok, gz.len() as u64));
    rig.boot();
    assert_eq!(rig.running(), Some(SlotId::Ota(1)));

    // Extended client offering gzip and deflate (esphome 2026.10): server
    // flag 01 only (gzip), then gzip.
    let mut rig = lending_rig();
    let (_, rx) = compressed_upload(&mut rig, 0x17, &gz);
    assert_eq!(&rx[..6], &[0x00, 0x02, 0x48, 0x01, 0x41, 0x42], "{rx:02x?}");
    assert_eq!(&rx[rx.len() - 2..], &[0x44, 0x45], "{rx:02x?}");
    rig.boot();
    assert_eq!(rig.running(), Some(SlotId::Ota(1)));

    // Extended without the deflate flag: gzip only (01), and the plain
    // image is still taken (sniffed).
    let mut rig = lending_rig();
    let (_, rx) = compressed_upload(&mut rig, 0x07, &image);
    assert_eq!(&rx[..6], &[0x00, 0x02, 0x48, 0x01, 0x41, 0x42], "{rx:02x?}");
    assert_eq!(&rx[rx.len() - 2..], &[0x44, 0x45], "{rx:02x?}");
}

#[test]
fn a_corrupt_or_wrong_chip_gzip_over_esphome_is_refused_with_nothing_switched() {
    let mut rig = lending_rig();
    let before = otadata(&rig);
    let mut gz = gzip_of(&c3("2.0.0"));
    let n = gz.len();
    gz[n - 8] ^= 0xff; // the CRC-32
    let (_, rx) = compressed_upload(&mut rig, 0x01, &gz);
    assert_eq!(rx.last(), Some(&0x84), "{rx:02x?}");
    assert_eq!(
        rig.dev
            .last_update()
            .unwrap()
            .error
            .as_ref()
            .map(|e| e.code()),
        Some("compressed_checksum")
    );
    assert_eq!(otadata(&rig), before);
    let gz = gzip_of(&app(Chip::Esp32s3, "2.0.0", 0, 72_000));
    let (_, rx) = compressed_upload(&mut rig, 0x01, &gz);
    assert!(rx.iter().any(|&b| b >= 0x80), "{rx:02x?}");
    assert_eq!(
        rig.dev
            .last_update()
            .unwrap()
            .error
            .as_ref()
            .map(|e| e.code()),
        Some("wrong_chip")
    );
    assert_eq!(otadata(&rig), before);
    rig.boot();
    assert_eq!(rig.running(), Some(SlotId::Ota(0)));
}

/// A fuzz finding: an MD5 whose last character is not a hex digit, the
/// image after it one byte at a time, then the peer goes away. Whatever the
/// machine answered, the update lock must be released and nothing selected.
#[test]
fn a_malformed_md5_delivered_byte_by_byte_releases_the_lock() {
    let mut rig = Rig::with(CSV, &c3("1.0.0"), opts(true, None, false));
    let image = c3("2.0.0");
    let before = otadata(&rig);
    let mut stream = MAGIC.to_vec();
    stream.push(0x01);
    stream.extend_from_slice(&(image.len() as u32).to_be_bytes());
    let mut md5 = hexs(&Md5::digest(&image)).into_bytes();
    *md5.last_mut().unwrap() = 0x19;
    stream.extend_from_slice(&md5);
    stream.extend_from_slice(&image);
    let opts = EsphomeOptions::new();
    let mut conn = EsphomeConnection::new(&opts, &[7; 32], 0);
    let mut tx = [0u8; 128];
    let mut answered = Vec::new();
    'outer: for b in stream.chunks(1) {
        let mut piece = b;
        rig.now += 3;
        loop {
            let o = conn.handle(
                &mut rig.dev,
                &mut rig.flash,
                &mut rig.plat,
                piece,
                rig.now,
                &mut tx,
            );
            answered.extend_from_slice(&tx[..o.written]);
            piece = &piece[o.consumed..];
            match o.action {
                Action::Close | Action::Reboot(_) => break 'outer,
                _ if piece.is_empty() => break,
                _ => assert!(o.consumed > 0 || o.written > 0, "no progress"),
            }
        }
    }
    let _ = conn.poll(&mut rig.dev, rig.now + 1_000_000);
    conn.peer_closed(&mut rig.dev, rig.now);
    assert!(
        !rig.dev.update_in_progress(),
        "the lock is held after the connection ended; answered {answered:02x?}"
    );
    assert_eq!(otadata(&rig), before, "nothing selected");
    // Refused at the MD5 field (0x8B), after the size began the update.
    assert_eq!(answered, [0x00, 0x02, 0x40, 0x41, 0x42, 0x8B]);
    // And the next upload goes through.
    let (_, err) = upload(&mut rig, &opts, &image, &Upload::default());
    assert_eq!(err, None, "the retry is accepted");
}
