//! Compressed and delta uploads through the device's one update path
//! (`POST /update` here; ESPHome in tests/esphome.rs), against streams
//! nobody here wrote: Python's `gzip` and `zlib`, and patches made by
//! detools' `create_patch` (PyPI 0.53.0) framed with esptool's validation
//! hash, as `esp_delta_ota_patch_gen.py` frames them. Every bad input gets
//! its exact status and code, and leaves the running slot, otadata and the
//! boot choice as they were (and, when refused before the first image
//! byte, the whole flash).

// The bad-input tables are tuples of (what, body, headers, status, code, ...).
#![allow(clippy::type_complexity)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use otter_device::decode::{new_applier, new_inflater, APPLIER_RAM, INFLATER_RAM};
use otter_device::service::{Action, DeviceOptions, RebootReason};
use otter_format::chip::Chip;
use otter_ota::{DeviceConfig, SlotId};
use proptest::prelude::*;

const OTA0: std::ops::Range<usize> = 0x10000..0x110000;
const OTA1: std::ops::Range<usize> = 0x110000..0x210000;
const OTADATA: std::ops::Range<usize> = 0xe000..0x10000;

/// The project's Python with the oracles, or a loud panic.
fn python() -> PathBuf {
    let py = match std::env::var_os("OTTER_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    };
    assert!(
        py.is_file(),
        "the Python oracles are not installed at {}: run scripts/setup-oracles.sh",
        py.display()
    );
    py
}

/// Runs `code` with `input` on stdin; returns its stdout.
fn py(code: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("python ends");
    writer.join().expect("writer").expect("stdin written");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn py_gzip(data: &[u8]) -> Vec<u8> {
    py(
        "import sys, gzip; sys.stdout.buffer.write(gzip.compress(sys.stdin.buffer.read(), 9))",
        &[],
        data,
    )
}

fn py_zlib(data: &[u8]) -> Vec<u8> {
    py(
        "import sys, zlib; sys.stdout.buffer.write(zlib.compress(sys.stdin.buffer.read(), 9))",
        &[],
        data,
    )
}

fn py_raw_deflate(data: &[u8], wbits: i32) -> Vec<u8> {
    py(
        "import sys, zlib\nc = zlib.compressobj(9, zlib.DEFLATED, -int(sys.argv[1]))\nsys.stdout.buffer.write(c.compress(sys.stdin.buffer.read()) + c.flush())",
        &[&wbits.to_string()],
        data,
    )
}

/// detools' `create_patch` (sequential, `compression`), framed as
/// esp_delta_ota's: magic, the base's validation hash as esptool prints
/// it, 28 zero bytes.
fn detools_patch(old: &[u8], new: &[u8], compression: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp dir");
    let (o, n) = (dir.path().join("old.bin"), dir.path().join("new.bin"));
    std::fs::write(&o, old).expect("write old");
    std::fs::write(&n, new).expect("write new");
    let code = "import sys, io, struct, detools, subprocess, re\n\
         old, new, comp = sys.argv[1:4]\n\
         info = subprocess.run([sys.executable, '-m', 'esptool', 'image-info', old], capture_output=True, text=True, check=True).stdout\n\
         h = bytes.fromhex(re.search(r'Validation hash: ([0-9a-f]{64})', info).group(1))\n\
         p = io.BytesIO()\n\
         with open(old, 'rb') as f, open(new, 'rb') as t:\n\
         \x20   detools.create_patch(f, t, p, compression=comp, patch_type='sequential')\n\
         sys.stdout.buffer.write(struct.pack('<I', 0xfccdde10) + h + bytes(28) + p.getvalue())\n";
    py(
        code,
        &[
            o.to_str().expect("utf-8"),
            n.to_str().expect("utf-8"),
            compression,
        ],
        b"",
    )
}

fn corpus(rel: &str) -> Vec<u8> {
    let dir = std::env::var("OTTER_CORPUS").unwrap_or_else(|_| "../../../shared/corpus".into());
    let p = Path::new(&dir).join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("the corpus file {} is needed: {e}", p.display()))
}

const OLD: &str = "delta-pairs/obnizos/obniz-2.1.0.bin";
const NEW: &str = "delta-pairs/obnizos/obniz-2.1.1.bin";

/// A device running `image` (chip `chip`) that lends both decoders.
fn lending(chip: Chip, image: &[u8]) -> Rig {
    let mut o = DeviceOptions::new(DeviceConfig::new(chip));
    o.update_page = PAGE;
    let mut rig = Rig::with(CSV, image, o);
    rig.plat.inflate = Some(Box::new(new_inflater()));
    rig.plat.patch = Some(Box::new(new_applier()));
    rig
}

/// What must not change when an update is refused.
struct Kept {
    ota0: Vec<u8>,
    otadata: Vec<u8>,
    ota1: Vec<u8>,
    choice: Option<SlotId>,
}

fn keep(rig: &mut Rig) -> Kept {
    let f = rig.flash.contents();
    Kept {
        ota0: f[OTA0].to_vec(),
        otadata: f[OTADATA].to_vec(),
        ota1: f[OTA1].to_vec(),
        choice: rig.boot_choice(),
    }
}

/// The running image, otadata and the boot choice are unchanged; with
/// `untouched`, the update slot too (nothing was erased).
fn assert_kept(rig: &mut Rig, k: &Kept, untouched: bool, what: &str) {
    let choice = rig.boot_choice();
    let f = rig.flash.contents();
    assert!(f[OTA0] == k.ota0[..], "{what}: the running slot changed");
    assert!(f[OTADATA] == k.otadata[..], "{what}: otadata changed");
    if untouched {
        assert!(
            f[OTA1] == k.ota1[..],
            "{what}: the update slot was written or erased"
        );
    }
    assert_eq!(choice, k.choice, "{what}: the boot choice changed");
}

/// Uploads `body` with `headers` in 1,460-byte pieces; returns the answer.
fn upload(rig: &mut Rig, headers: &[&str], body: &[u8]) -> Answer {
    let mut a = rig.exchange(&post("/update", headers, body), 1460);
    assert!(!a.is_empty(), "no answer");
    a.remove(0)
}

fn assert_written(rig: &mut Rig, a: &Answer, image: &[u8], what: &str) {
    assert_eq!(
        a.status,
        200,
        "{what}: {}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(
        a.action,
        Action::Reboot(RebootReason::Update),
        "{what}: the answer asks for the reboot"
    );
    assert_eq!(
        a.json()["bytes"],
        image.len() as u64,
        "{what}: decoded bytes"
    );
    let slot = &rig.flash.contents()[OTA1];
    assert!(
        slot[..image.len()] == *image,
        "{what}: the slot does not hold the image byte for byte"
    );
    assert_eq!(rig.boot_choice(), Some(SlotId::Ota(1)), "{what}");
}

#[test]
fn decoder_ram_is_within_its_goals() {
    // The goals of docs/device-api.md: inflate <= 48 KiB, the patch
    // applier <= 16 KiB plus heatshrink's 4 KiB window.
    const { assert!(INFLATER_RAM <= 48 * 1024) };
    const { assert!(APPLIER_RAM <= 16 * 1024 + 4096) };
    // And what a firmware lends is exactly that.
    assert_eq!(
        std::mem::size_of_val(&*Box::new(new_inflater())),
        INFLATER_RAM
    );
    assert_eq!(
        std::mem::size_of_val(&*Box::new(new_applier())),
        APPLIER_RAM
    );
}

#[test]
fn python_gzip_zlib_and_deflate_streams_are_inflated_into_the_slot() {
    let image = corpus_c3();
    let gz = py_gzip(&image);
    let boundary = "----otter-decode";
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("gzip", gz.clone(), vec!["Content-Encoding: gzip"]),
        ("x-gzip", gz.clone(), vec!["Content-Encoding: x-gzip"]),
        ("zlib", py_zlib(&image), vec!["Content-Encoding: deflate"]),
        (
            "raw deflate",
            py_raw_deflate(&image, 15),
            vec!["Content-Encoding: deflate"],
        ),
        ("gzip, sniffed", gz.clone(), vec![]),
        (
            "gzip with X-Otter-Sha256 of the decompressed image",
            gz.clone(),
            vec![],
        ),
    ];
    for (what, body, mut headers) in cases {
        let mut rig = lending(Chip::Esp32c3, &c3("1.0.0"));
        let sha = format!("X-Otter-Sha256: {}", sha_hex(&image));
        if what.contains("X-Otter") {
            headers.push(&sha);
        }
        let a = upload(&mut rig, &headers, &body);
        assert_written(&mut rig, &a, &image, what);
        let u = rig.dev.last_update().expect("recorded");
        assert_eq!(
            u.received,
            body.len() as u64,
            "{what}: received counts the transfer"
        );
    }
    // A form's file is sniffed; chunked framing under it changes nothing.
    let mut rig = lending(Chip::Esp32c3, &c3("1.0.0"));
    let form = multipart_body(boundary, "file", Some("app.bin.gz"), &gz, true);
    let a = rig.exchange(&post_multipart("/update", boundary, &form, &[]), 1000);
    assert_written(&mut rig, &a[0], &image, "gzip in a form");
    let mut rig = lending(Chip::Esp32c3, &c3("1.0.0"));
    let a = rig.exchange(&post_chunked("/update", &gz, 777), 1460);
    assert_written(&mut rig, &a[0], &image, "gzip, chunked");
}

#[test]
fn a_gzip_image_for_another_chip_is_refused_as_the_plain_one_would_be() {
    let mut rig = lending(Chip::Esp32c3, &c3("1.0.0"));
    let k = keep(&mut rig);
    let other = app(Chip::Esp32s3, "2.0.0", 0, 200_000);
    let a = upload(&mut rig, &["Content-Encoding: gzip"], &py_gzip(&other));
    assert_eq!((a.status, a.code().as_str()), (422, "wrong_chip"));
    assert_kept(&mut rig, &k, true, "wrong chip, gzip");
    // secure_version below the counter, decided on the decompressed header.
    let mut o = opts(false, Some(5), false);
    o.update_page = PAGE;
    let mut rig = Rig::with(CSV, &app(Chip::Esp32c3, "1.0.0", 5, 72_000), o);
    rig.plat.inflate = Some(Box::new(new_inflater()));
    let k = keep(&mut rig);
    let low = app(Chip::Esp32c3, "2.0.0", 4, 72_000);
    let a = upload(&mut rig, &[], &py_gzip(&low));
    assert_eq!(
        (a.status, a.code().as_str()),
        (422, "secure_version_too_low")
    );
    assert_kept(&mut rig, &k, true, "low secure_version, gzip");
    // X-Otter-Sha256 is the decompressed image's: the compressed file's is wrong.
    let mut rig = lending(Chip::Esp32c3, &c3("1.0.0"));
    let k = keep(&mut rig);
    let image = c3("2.0.0");
    let gz = py_gzip(&image);
    let sha = format!("X-Otter-Sha256: {}", sha_hex(&gz));
    let a = upload(&mut rig, &["Content-Encoding: gzip", &sha], &gz);
    assert_eq!((a.status, a.code().as_str()), (422, "sha256_mismatch"));
    assert_kept(&mut rig, &k, false, "X-Otter-Sha256 of the compressed file");
}

#[test]
fn detools_patches_are_applied_by_the_device_byte_for_byte() {
    let (old, new) = (corpus(OLD), corpus(NEW));
    for compression in ["heatshrink", "none"] {
        let patch = detools_patch(&old, &new, compression);
        if compression == "heatshrink" {
            assert!(patch.len() < new.len() / 10, "{compression}: a small patch");
        }
        for headers in [vec!["Content-Type: application/x-esp-delta-ota"], vec![]] {
            let what = format!("detools {compression}, headers {headers:?}");
            let mut rig = lending(Chip::Esp32, &old);
            let a = upload(&mut rig, &headers, &patch);
            assert_written(&mut rig, &a, &new, &what);
            assert_eq!(
                rig.dev.last_update().expect("recorded").received,
                patch.len() as u64
            );
            rig.boot();
            assert_eq!(rig.running(), Some(SlotId::Ota(1)), "{what}");
        }
    }
}

/// A hand-made esp_delta_ota patch: `base` hash, compression none,
/// `to_size`, then `body` (the decompressed sequential part).
fn raw_patch(base: &[u8; 32], to_size: u64, body: &[u8]) -> Vec<u8> {
    let mut p = 0xfccd_de10u32.to_le_bytes().to_vec();
    p.extend_from_slice(base);
    p.extend_from_slice(&[0; 28]);
    p.push(0x00);
    // detools varint: 6 bits, then 7 per byte.
    let mut v = to_size;
    let mut first = (v & 0x3f) as u8;
    v >>= 6;
    if v != 0 {
        first |= 0x80;
    }
    p.push(first);
    while v != 0 {
        let mut b = (v & 0x7f) as u8;
        v >>= 7;
        if v != 0 {
            b |= 0x80;
        }
        p.push(b);
    }
    p.extend_from_slice(body);
    p
}

#[test]
fn bad_patches_are_refused_with_their_code_and_nothing_switched() {
    let (old, new) = (corpus(OLD), corpus(NEW));
    let patch = detools_patch(&old, &new, "heatshrink");
    let base: [u8; 32] = patch[4..36].try_into().expect("32 bytes");
    let mut wrong_base = patch.clone();
    wrong_base[10] ^= 0x01;
    let c3_image = corpus_c3();
    let wrong_chip = detools_patch(&old, &c3_image, "heatshrink");
    let delta = ["Content-Type: application/x-esp-delta-ota"];
    // (what, body, status, code, update slot untouched)
    let cases: Vec<(&str, Vec<u8>, u16, &str, bool)> = vec![
        ("wrong base", wrong_base, 422, "wrong_base", true),
        (
            "truncated",
            patch[..patch.len() / 2].to_vec(),
            422,
            "patch_truncated",
            false,
        ),
        (
            "cut inside the header",
            patch[..40].to_vec(),
            422,
            "patch_truncated",
            true,
        ),
        (
            // A diff run longer than the image it declares.
            "corrupt: a run past the end",
            raw_patch(&base, 1000, &[0x00, 0x90, 0x1f]),
            422,
            "corrupt_patch",
            true,
        ),
        (
            "corrupt: a data-format section",
            raw_patch(&base, 1000, &[0x05]),
            422,
            "corrupt_patch",
            true,
        ),
        (
            "produces a 2 MiB image",
            raw_patch(&base, 2 << 20, &[0x00]),
            413,
            "too_large",
            true,
        ),
        (
            "produces an image for another chip",
            wrong_chip,
            422,
            "wrong_chip",
            true,
        ),
        (
            "bad magic",
            {
                let mut p = patch.clone();
                p[3] = 0xfd;
                p
            },
            422,
            "bad_patch_magic",
            true,
        ),
        (
            "lzma compression",
            {
                let mut p = patch.clone();
                p[64] = 0x02;
                p
            },
            422,
            "unsupported_patch",
            true,
        ),
        (
            "bytes after the end",
            {
                let mut p = patch.clone();
                p.extend_from_slice(b"extra");
                p
            },
            422,
            "patch_trailing_data",
            false,
        ),
    ];
    for (what, body, status, code, untouched) in cases {
        let mut rig = lending(Chip::Esp32, &old);
        let k = keep(&mut rig);
        let a = upload(&mut rig, &delta, &body);
        assert_eq!(
            (a.status, a.code().as_str()),
            (status, code),
            "{what}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_kept(&mut rig, &k, untouched, what);
        let u = rig.dev.last_update().expect("recorded");
        assert_eq!(
            u.error.as_ref().map(|e| e.code()),
            Some(code),
            "{what}: recorded"
        );
        // A retry with the good patch then works.
        let a = upload(&mut rig, &delta, &patch);
        assert_written(&mut rig, &a, &new, &format!("{what}, then the good patch"));
    }
}

#[test]
fn a_patch_to_a_device_running_another_image_erases_nothing() {
    // The device runs 2.1.1; the patch is 2.1.0 -> 2.1.1.
    let (old, new) = (corpus(OLD), corpus(NEW));
    let patch = detools_patch(&old, &new, "heatshrink");
    let mut rig = lending(Chip::Esp32, &new);
    let before = rig.flash.contents().to_vec();
    let ops = rig.flash.mutating_ops();
    let a = upload(&mut rig, &[], &patch);
    assert_eq!((a.status, a.code().as_str()), (422, "wrong_base"));
    assert!(rig.flash.contents() == &before[..], "the flash changed");
    assert_eq!(
        rig.flash.mutating_ops(),
        ops,
        "something was erased or programmed"
    );
}

#[test]
fn bad_compressed_streams_are_refused_with_their_code_and_nothing_switched() {
    let image = corpus_c3();
    let gz = py_gzip(&image);
    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    let mut bad_size = gz.clone();
    bad_size[n - 1] ^= 0x01;
    // A slot-sized image and 2 MiB of zeros after it: the bomb's output
    // passes the slot and is refused there.
    let full = app(Chip::Esp32c3, "2.0.0", 0, 0x10_0000);
    assert_eq!(
        full.len(),
        0x10_0000,
        "the builder makes a slot-sized image"
    );
    let mut bomb_src = full.clone();
    bomb_src.resize(full.len() + (2 << 20), 0);
    let bomb = py_gzip(&bomb_src);
    assert!(
        bomb.len() * 3 < bomb_src.len(),
        "a bomb: {} bytes",
        bomb.len()
    );
    let reserved_block = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0x07];
    let gzip = vec!["Content-Encoding: gzip"];
    // (what, body, headers, status, code, update slot untouched)
    let cases: Vec<(&str, Vec<u8>, Vec<&str>, u16, &str, bool)> = vec![
        (
            "corrupt deflate",
            reserved_block.to_vec(),
            gzip.clone(),
            422,
            "corrupt_deflate",
            true,
        ),
        (
            "CRC-32 wrong",
            bad_crc,
            gzip.clone(),
            422,
            "compressed_checksum",
            false,
        ),
        (
            "ISIZE wrong",
            bad_size,
            gzip.clone(),
            422,
            "compressed_size",
            false,
        ),
        (
            "truncated",
            gz[..gz.len() / 2].to_vec(),
            gzip.clone(),
            422,
            "compressed_truncated",
            false,
        ),
        (
            "a plain image declared gzip",
            image.clone(),
            gzip.clone(),
            422,
            "bad_gzip_header",
            true,
        ),
        ("bomb", bomb, gzip.clone(), 413, "too_large", false),
        (
            "zlib with a bad Adler-32",
            {
                let mut z = py_zlib(&image);
                let n = z.len();
                z[n - 1] ^= 0xff;
                z
            },
            vec!["Content-Encoding: deflate"],
            422,
            "compressed_checksum",
            false,
        ),
        (
            "brotli",
            gz.clone(),
            vec!["Content-Encoding: br"],
            415,
            "unsupported_encoding",
            true,
        ),
        (
            "a gzipped patch",
            gz.clone(),
            vec![
                "Content-Encoding: gzip",
                "Content-Type: application/x-esp-delta-ota",
            ],
            415,
            "unsupported_encoding",
            true,
        ),
    ];
    for (what, body, headers, status, code, untouched) in cases {
        let mut rig = lending(Chip::Esp32c3, &c3("1.0.0"));
        let k = keep(&mut rig);
        let a = upload(&mut rig, &headers, &body);
        assert_eq!(
            (a.status, a.code().as_str()),
            (status, code),
            "{what}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_kept(&mut rig, &k, untouched, what);
        if what == "bomb" {
            let u = rig.dev.last_update().expect("recorded");
            assert_eq!(u.error.as_ref().map(|e| e.code()), Some("too_large"));
        }
    }
}

#[test]
fn a_device_that_lends_no_decoder_ram_answers_415_and_erases_nothing() {
    let (old, new) = (corpus(OLD), corpus(NEW));
    let patch = detools_patch(&old, &new, "heatshrink");
    let image = corpus_c3();
    let gz = py_gzip(&image);
    let cases: Vec<(&str, Chip, Vec<u8>, Vec<u8>, Vec<&str>)> = vec![
        (
            "gzip declared",
            Chip::Esp32c3,
            c3("1.0.0"),
            gz.clone(),
            vec!["Content-Encoding: gzip"],
        ),
        (
            "gzip sniffed",
            Chip::Esp32c3,
            c3("1.0.0"),
            gz.clone(),
            vec![],
        ),
        (
            "patch declared",
            Chip::Esp32,
            old.clone(),
            patch.clone(),
            vec!["Content-Type: application/x-esp-delta-ota"],
        ),
        (
            "patch sniffed",
            Chip::Esp32,
            old.clone(),
            patch.clone(),
            vec![],
        ),
    ];
    for (what, chip, running, body, headers) in cases {
        let mut o = DeviceOptions::new(DeviceConfig::new(chip));
        o.update_page = PAGE;
        let mut rig = Rig::with(CSV, &running, o);
        let before = rig.flash.contents().to_vec();
        let a = upload(&mut rig, &headers, &body);
        assert_eq!(
            (a.status, a.code().as_str()),
            (415, "decoder_unavailable"),
            "{what}"
        );
        assert!(
            a.json()["message"]
                .as_str()
                .unwrap_or_default()
                .contains("send the plain image"),
            "{what}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert!(
            rig.flash.contents() == &before[..],
            "{what}: the flash changed"
        );
    }
    // The plain image still goes through.
    let mut rig = Rig::new();
    let a = upload(&mut rig, &[], &image);
    assert_written(&mut rig, &a, &image, "plain, no decoder RAM");
}

#[test]
fn a_compressed_web_ui_upload_is_415() {
    let mut rig = lending(Chip::Esp32c3, &c3("1.0.0"));
    let ui = ui_image();
    let mut a = rig.exchange(
        &post(
            "/api/ota/frontend",
            &["Content-Encoding: gzip"],
            &py_gzip(&ui),
        ),
        0,
    );
    let a = a.remove(0);
    assert_eq!((a.status, a.code().as_str()), (415, "unsupported_encoding"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any body, declared gzip, deflate, a patch or nothing, never panics
    /// and never switches the boot slot or touches the running image.
    #[test]
    fn random_bodies_never_panic_or_switch(
        body in proptest::collection::vec(any::<u8>(), 1..4096),
        first in prop_oneof![Just(None), Just(Some(0x1fu8)), Just(Some(0x10u8)), Just(Some(0x78u8))],
        kind in 0usize..4,
        split in 1usize..700,
    ) {
        let mut body = body;
        if let Some(b) = first {
            body[0] = b;
        }
        let headers: &[&str] = match kind {
            0 => &[],
            1 => &["Content-Encoding: gzip"],
            2 => &["Content-Encoding: deflate"],
            _ => &["Content-Type: application/x-esp-delta-ota"],
        };
        let mut rig = lending(Chip::Esp32c3, &c3("1.0.0"));
        let k = keep(&mut rig);
        let a = rig.exchange(&post("/update", headers, &body), split);
        prop_assert!(!a.is_empty());
        prop_assert!(a[0].status >= 400, "random bytes were accepted: {}", a[0].status);
        assert_kept(&mut rig, &k, false, "random body");
    }

    /// Every prefix of a good gzip stream is refused (never a partial
    /// image switched), with `compressed_truncated` once past the header.
    #[test]
    fn every_truncation_of_a_gzip_stream_is_refused(cut in 1usize..4000) {
        let image = c3("2.0.0");
        let gz = py_gzip_cached(&image);
        let cut = cut.min(gz.len() - 1);
        let mut rig = lending(Chip::Esp32c3, &c3("1.0.0"));
        let k = keep(&mut rig);
        let a = rig.exchange(&post("/update", &["Content-Encoding: gzip"], &gz[..cut]), 1460);
        prop_assert_eq!(a[0].status, 422);
        prop_assert_eq!(a[0].code(), "compressed_truncated");
        assert_kept(&mut rig, &k, false, "truncated gzip");
    }
}

fn py_gzip_cached(image: &[u8]) -> Vec<u8> {
    static CACHE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| py_gzip(image)).clone()
}
