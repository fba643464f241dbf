//! Pulls of a release's gzip and delta artifacts end to end (issue 15):
//! `otter release --compress --deltas-from` signs them into an
//! `otter-release/2` manifest, nginx serves the folder over HTTPS, and
//! virtual devices fetch the smallest artifact they can apply, decode it
//! into the update slot and boot it; a corrupted delta falls back to the
//! full image in the same check.

mod util;
mod webserver;

mod devproc;

use std::path::{Path, PathBuf};
use std::process::Command;

use devproc::Device;
use serde_json::Value;
use sha2::{Digest, Sha256};
use util::{corpus_file, python, run_otter, stderr, stdout};
use webserver::{Certs, Nginx, ServeOptions};

/// A real ESP32-S3 app (compressible, as real code is), as the base of the
/// release pair.
const BASE: &str = "app-images/esp-serial-flasher/hello_world-esp32s3.bin";

/// `BASE` with its app descriptor's version set to `version`, re-sealed:
/// the checksum byte and the appended SHA-256 recomputed, as the build
/// would write them. Two versions differ in a few bytes, as consecutive
/// releases of one product differ in few.
fn variant(version: &str) -> Vec<u8> {
    let src = std::fs::read(corpus_file(BASE)).expect("the corpus image");
    let segments = src[1] as usize;
    assert_eq!(src[23], 1, "the base image has its SHA-256 appended");
    let mut img = src.clone();
    let mut at = 24usize;
    let mut first = None;
    for _ in 0..segments {
        let len = u32::from_le_bytes(img[at + 4..at + 8].try_into().unwrap()) as usize;
        first.get_or_insert(at + 8);
        at += 8 + len;
    }
    // esp_app_desc_t at the start of the first segment: magic, then the
    // secure_version and reserved words, then version[32].
    let desc = first.unwrap();
    assert_eq!(&img[desc..desc + 4], &0xABCD_5432u32.to_le_bytes());
    let field = &mut img[desc + 16..desc + 48];
    field.fill(0);
    field[..version.len()].copy_from_slice(version.as_bytes());
    let mut x = 0xEFu8;
    let mut p = 24usize;
    for _ in 0..segments {
        let len = u32::from_le_bytes(img[p + 4..p + 8].try_into().unwrap()) as usize;
        x = img[p + 8..p + 8 + len].iter().fold(x, |a, b| a ^ b);
        p += 8 + len;
    }
    let checksum_at = at + (15 - at % 16);
    img[checksum_at] = x;
    let end = checksum_at + 1;
    let digest = Sha256::digest(&img[..end]);
    img[end..end + 32].copy_from_slice(&digest);
    img.truncate(end + 32);
    img
}

fn keygen(dir: &Path) -> (PathBuf, PathBuf) {
    let base = dir.join("release");
    let out = run_otter(["keygen", "-o", base.to_str().unwrap()]);
    assert!(out.status.success(), "keygen: {}", stderr(&out));
    (base.with_extension("key"), base.with_extension("pub"))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn version(st: &Value) -> &str {
    st["running"]["version"].as_str().unwrap_or("")
}

/// Body bytes nginx sent for each GET of `file` that answered 200 or 206
/// (the access log's combined format: `"GET /f HTTP/1.1" 200 12345`).
fn served(log: &str, file: &str) -> Vec<u64> {
    let needle = format!("\"GET /{file} ");
    log.lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| {
            let rest = l.split('"').nth(2)?.trim();
            let mut it = rest.split_whitespace();
            let code: u16 = it.next()?.parse().ok()?;
            let bytes: u64 = it.next()?.parse().ok()?;
            matches!(code, 200 | 206).then_some(bytes)
        })
        .collect()
}

struct Setup {
    t: tempfile::TempDir,
    certs: Certs,
    public: PathBuf,
    rel: PathBuf,
    v0: PathBuf,
    v1: Vec<u8>,
}

/// Release 1.1.0 with gzip and a delta from 1.0.0, made by `otter release`.
fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let certs = Certs::new("otter encoded pull test ca");
    let (key, public) = keygen(t.path());
    let v0 = write(t.path(), "app-1.0.0.bin", &variant("1.0.0"));
    let v1 = variant("1.1.0");
    let v1p = write(t.path(), "app-1.1.0.bin", &v1);
    let prev = t.path().join("prev");
    std::fs::create_dir(&prev).unwrap();
    std::fs::copy(&v0, prev.join("app-1.0.0.bin")).unwrap();
    let rel = t.path().join("rel");
    let out = run_otter([
        "release",
        "--firmware",
        v1p.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "-o",
        rel.to_str().unwrap(),
        "--compress",
        "--deltas-from",
        prev.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "otter release: {}{}",
        stdout(&out),
        stderr(&out)
    );
    Setup {
        t,
        certs,
        public,
        rel,
        v0,
        v1,
    }
}

fn device(s: &Setup, firmware: &Path, url: &str) -> Device {
    Device::create(&["--firmware", firmware.to_str().unwrap()]).run(&[
        "--manifest-url",
        url,
        "--trust",
        s.public.to_str().unwrap(),
        "--ca",
        s.certs.ca.to_str().unwrap(),
        "--selftest-window",
        "0.5",
    ])
}

fn serve(s: &Setup) -> Nginx {
    Nginx::serve(
        &s.rel,
        &ServeOptions {
            tls: Some(&s.certs),
            ignore_range: false,
        },
    )
}

fn manifest(s: &Setup) -> Value {
    serde_json::from_slice(&std::fs::read(s.rel.join("manifest.json")).unwrap()).unwrap()
}

/// The device on 1.0.0 fetches the delta (its bytes, not the image's),
/// boots 1.1.0 and says so; a device on another base takes gzip. detools
/// applies the same delta to 1.0.0 and gets 1.1.0 byte for byte.
#[test]
fn devices_pull_the_delta_or_the_gzip_artifact_they_can_apply() {
    let s = setup();
    let m = manifest(&s);
    assert_eq!(m["format"], "otter-release/2", "{m:#}");
    let alts = m["firmware"]["alternatives"].as_array().unwrap();
    let size = |enc: &str| {
        alts.iter()
            .find(|a| a["encoding"] == enc)
            .and_then(|a| a["size"].as_u64())
            .unwrap_or_else(|| panic!("no {enc} artifact: {m:#}"))
    };
    let (full, gz, delta) = (s.v1.len() as u64, size("gzip"), size("delta"));
    assert!(delta * 20 < full, "the delta is {delta} of {full} bytes");
    assert!(gz < full * 3 / 4 && gz > delta, "gzip {gz} of {full}");

    // The reference applier agrees with the delta otter made.
    let out = s.t.path().join("detools-1.1.0.bin");
    let o = Command::new(python())
        .arg("-c")
        .arg(
            "import sys, io, detools\n\
             old, patch, out = sys.argv[1:4]\n\
             p = open(patch, 'rb').read()\n\
             with open(old, 'rb') as f, open(out, 'wb') as o:\n\
             \x20   detools.apply_patch(f, io.BytesIO(p[64:]), o)\n",
        )
        .arg(&s.v0)
        .arg(s.rel.join("delta-from-1.0.0.patch"))
        .arg(&out)
        .output()
        .expect("python");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&out).unwrap() == s.v1,
        "detools rebuilds 1.1.0"
    );

    let srv = serve(&s);
    let url = format!("https://localhost:{}/manifest.json", srv.port);
    let a = device(&s, &s.v0, &url);
    let st = a.wait_until(
        |st| version(st) == "1.1.0",
        "the delta-pulled 1.1.0 to boot",
    );
    let d = &st["pull"]["last_download"];
    assert_eq!(
        (d["artifact"].as_str(), d["encoding"].as_str()),
        (Some("firmware"), Some("delta")),
        "{st:#}"
    );
    assert_eq!(d["body_bytes"].as_u64(), Some(delta), "{d:#}");
    assert_eq!(d["artifact_size"].as_u64(), Some(delta), "{d:#}");
    assert_eq!(d["fallback"], Value::Null, "{d:#}");
    let log = srv.access_log();
    assert_eq!(served(&log, "delta-from-1.0.0.patch"), [delta], "{log}");
    assert!(served(&log, "firmware.bin").is_empty(), "{log}");
    assert!(served(&log, "firmware.bin.gz").is_empty(), "{log}");

    // A device running another build (not the delta's base) takes gzip.
    let other = write(s.t.path(), "app-1.0.1.bin", &variant("1.0.1"));
    let b = device(&s, &other, &url);
    let st = b.wait_until(|st| version(st) == "1.1.0", "the gzip-pulled 1.1.0 to boot");
    let d = &st["pull"]["last_download"];
    assert_eq!(d["encoding"], "gzip", "{st:#}");
    assert_eq!(d["body_bytes"].as_u64(), Some(gz), "{d:#}");
    let log = srv.access_log();
    assert_eq!(served(&log, "firmware.bin.gz"), [gz], "{log}");
    assert!(served(&log, "firmware.bin").is_empty(), "{log}");
    eprintln!("bytes transferred: full {full}, gzip {gz}, delta {delta}");
}

/// One byte of the delta flipped on the server, the manifest unchanged: the
/// artifact's SHA-256 (or the decoder) refuses it, nothing is switched, and
/// the same check installs the full image.
#[test]
fn a_corrupted_delta_falls_back_to_the_full_image_and_installs() {
    let s = setup();
    let patch = s.rel.join("delta-from-1.0.0.patch");
    let mut bytes = std::fs::read(&patch).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&patch, &bytes).unwrap();
    let srv = serve(&s);
    let url = format!("https://localhost:{}/manifest.json", srv.port);
    let dev = device(&s, &s.v0, &url);
    let st = dev.wait_until(
        |st| version(st) == "1.1.0",
        "1.1.0 to boot from the full image",
    );
    let d = &st["pull"]["last_download"];
    assert_eq!(d["encoding"], "identity", "{st:#}");
    assert_eq!(d["body_bytes"].as_u64(), Some(s.v1.len() as u64), "{d:#}");
    assert_eq!(d["fallback"]["from"], "delta", "{d:#}");
    let why = d["fallback"]["error"].as_str().unwrap_or("");
    assert!(
        [
            "artifact_sha256_mismatch",
            "sha256_mismatch",
            "integrity",
            "corrupt_patch"
        ]
        .contains(&why)
            || why.starts_with("patch_")
            || why.starts_with("heatshrink"),
        "fallback error {why:?}: {d:#}"
    );
    // The core's record: the delta refused, then the full image installed.
    let events = st["events"].to_string();
    assert!(
        events.contains("firmware update rejected") && events.contains("firmware update ok"),
        "{events}"
    );
    let log = srv.access_log();
    assert_eq!(served(&log, "delta-from-1.0.0.patch").len(), 1, "{log}");
    // The full image once, from 0: after a failed decoder the slot is not
    // resumed from (no first-sector check either).
    assert_eq!(served(&log, "firmware.bin"), [s.v1.len() as u64], "{log}");
    // The slot holds the release byte for byte.
    let flash = dev.flash();
    let ota0 = 0x22_0000; // the default table's ota_0
    assert!(flash[ota0..ota0 + s.v1.len()] == s.v1[..]);
}
