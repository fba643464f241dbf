//! Secure Boot signatures end to end: `otter sign`, `otter image verify
//! --key/--key-digest`, `otter keys digest` and `otter image info`, checked
//! against espsecure (esptool 5.6) in both directions, over a corpus app,
//! with keys espsecure generates in each test, and every bad input.

mod devproc;
mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use otter_format::secure_boot::{block_crc, verify_v2, TrustedKeys, BLOCK_CRC_OFFSET};
use serde_json::Value;
use util::*;

/// The app every test signs: a real ESP-IDF build (124,192 bytes, so the
/// signature sector goes at 0x1f000).
const APP: &str = "app-images/esp-serial-flasher/hello_world-esp32c3.bin";
const APP_LEN: usize = 124_192;
const SECTOR: usize = 0x1f000;

fn espsecure(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(python());
    c.args(["-m", "espsecure"]);
    for a in args {
        c.arg(a);
    }
    c.output().expect("running espsecure")
}

fn espsecure_ok(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let o = espsecure(args);
    assert!(
        o.status.success(),
        "espsecure {:?} failed: {}{}",
        args.iter()
            .map(|a| a.as_ref().to_owned())
            .collect::<Vec<_>>(),
        stdout(&o),
        stderr(&o)
    );
    o
}

fn otter_ok(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let o = run_otter(args.iter().map(|a| a.as_ref()));
    assert!(
        o.status.success(),
        "otter failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    o
}

/// A key pair made by espsecure: (private PEM, public PEM, digest file).
struct Key {
    private: PathBuf,
    public: PathBuf,
    digest: PathBuf,
}

impl Key {
    fn new(dir: &Path, name: &str, scheme: &str) -> Key {
        let private = dir.join(format!("{name}.pem"));
        let public = dir.join(format!("{name}.pub.pem"));
        let digest = dir.join(format!("{name}.digest"));
        espsecure_ok(&[
            &"generate-signing-key",
            &"--version",
            &"2",
            &"--scheme",
            &scheme,
            &private,
        ]);
        espsecure_ok(&[
            &"extract-public-key",
            &"--version",
            &"2",
            &"--keyfile",
            &private,
            &public,
        ]);
        espsecure_ok(&[
            &"digest-sbv2-public-key",
            &"--keyfile",
            &private,
            &"-o",
            &digest,
        ]);
        Key {
            private,
            public,
            digest,
        }
    }

    fn digest_bytes(&self) -> [u8; 32] {
        std::fs::read(&self.digest)
            .expect("digest file")
            .try_into()
            .expect("espsecure writes 32 bytes")
    }

    fn digest_hex(&self) -> String {
        hex(&self.digest_bytes())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn app() -> PathBuf {
    corpus_file(APP)
}

/// `otter image verify FILE ARGS --json`: (exit code, JSON).
fn verify(file: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, Value) {
    let mut all: Vec<&std::ffi::OsStr> = vec!["image".as_ref(), "verify".as_ref(), file.as_ref()];
    all.extend(args.iter().map(|a| a.as_ref()));
    all.push("--json".as_ref());
    let o = run_otter(all);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("otter printed no JSON ({e}): {}{}", stdout(&o), stderr(&o)));
    (o.status.code().expect("exit code"), v)
}

/// Asserts `otter image verify` refuses `file` with exit 1 and `code`.
fn assert_refused(file: &Path, args: &[&dyn AsRef<std::ffi::OsStr>], code: &str) -> Value {
    let (exit, v) = verify(file, args);
    assert_eq!(exit, 1, "{v}");
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"], code, "{v}");
    v
}

fn sign_with_espsecure(dir: &Path, key: &Key, input: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    espsecure_ok(&[
        &"sign-data",
        &"--version",
        &"2",
        &"--keyfile",
        &key.private,
        &"-o",
        &out,
        &input,
    ]);
    out
}

fn sign_with_otter(key: &Key, input: &Path, out: &Path, append: bool) {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&"sign", &input, &"--key", &key.private, &"-o", &out];
    if append {
        args.push(&"--append");
    }
    otter_ok(&args);
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

fn fix_crc(b: &mut [u8], block_at: usize) {
    let crc = block_crc(&b[block_at..block_at + BLOCK_CRC_OFFSET]);
    b[block_at + BLOCK_CRC_OFFSET..block_at + BLOCK_CRC_OFFSET + 4]
        .copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn app_fixture_is_what_the_offsets_assume() {
    assert_eq!(std::fs::read(app()).expect("app").len(), APP_LEN);
    assert_eq!(APP_LEN.div_ceil(4096) * 4096, SECTOR);
}

#[test]
fn espsecure_signed_images_verify_in_otter() {
    let dir = tempfile::tempdir().expect("tempdir");
    for scheme in ["rsa3072", "ecdsa256", "ecdsa384"] {
        let key = Key::new(dir.path(), scheme, scheme);
        let signed = sign_with_espsecure(dir.path(), &key, &app(), &format!("{scheme}.bin"));
        for trust in [
            vec![&"--key" as &dyn AsRef<std::ffi::OsStr>, &key.public],
            vec![&"--key", &key.private],
            vec![&"--key-digest", &key.digest_hex()],
        ] {
            let (exit, v) = verify(&signed, &trust);
            assert_eq!(exit, 0, "{scheme}: {v}");
            assert_eq!(v["valid"], true);
            let s = &v["signature"];
            assert_eq!(s["verified"], true, "{v}");
            assert_eq!(s["version"], 2);
            assert_eq!(s["block"], 0);
            assert_eq!(s["blocks"], 1);
            assert_eq!(s["scheme"], scheme);
            assert_eq!(s["key_digest"], key.digest_hex());
        }
        // Text mode says the same, exit 0.
        let o = otter_ok(&[&"image", &"verify", &signed, &"--key", &key.public]);
        assert!(
            stdout(&o).contains(&format!(
                "Secure Boot v2 signature verified: block 0 of 1, {scheme}, key digest {}",
                key.digest_hex()
            )),
            "{}",
            stdout(&o)
        );
    }
}

#[test]
fn otter_signed_images_verify_in_espsecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let other = Key::new(dir.path(), "other", "ecdsa256");
    for scheme in ["rsa3072", "ecdsa256", "ecdsa384"] {
        let key = Key::new(dir.path(), scheme, scheme);
        let out = dir.path().join(format!("otter-{scheme}.bin"));
        sign_with_otter(&key, &app(), &out, false);
        let o = espsecure_ok(&[
            &"verify-signature",
            &"--version",
            &"2",
            &"--keyfile",
            &key.public,
            &out,
        ]);
        assert!(
            stdout(&o).contains("Signature block 0 verification successful"),
            "{}",
            stdout(&o)
        );
        // The oracle can say no: another key does not verify it.
        let o = espsecure(&[
            &"verify-signature",
            &"--version",
            &"2",
            &"--keyfile",
            &other.public,
            &out,
        ]);
        assert!(!o.status.success(), "espsecure accepted the wrong key");
        // The layout is espsecure's: same bytes everywhere but the randomised
        // signature and the CRC over it.
        let ours = std::fs::read(&out).expect("ours");
        let theirs =
            std::fs::read(sign_with_espsecure(dir.path(), &key, &app(), "e.bin")).expect("theirs");
        assert_eq!(ours.len(), theirs.len());
        let sig = match scheme {
            "rsa3072" => 812..1196,
            "ecdsa256" => 101..165,
            _ => 149..245,
        };
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            let in_block = i.checked_sub(SECTOR);
            let varies = in_block.is_some_and(|o| {
                sig.contains(&o) || (BLOCK_CRC_OFFSET..BLOCK_CRC_OFFSET + 4).contains(&o)
            });
            if !varies {
                assert_eq!(
                    a, b,
                    "{scheme}: byte {i:#x} differs from espsecure's output"
                );
            }
        }
    }
}

#[test]
fn keys_digest_equals_espsecure_byte_for_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    for scheme in ["rsa3072", "ecdsa256", "ecdsa384"] {
        let key = Key::new(dir.path(), scheme, scheme);
        let want = std::fs::read(&key.digest).expect("espsecure digest");
        for pem in [&key.public, &key.private] {
            let out = dir.path().join(format!("{scheme}.otter.digest"));
            let o = otter_ok(&[&"keys", &"digest", pem, &"-o", &out]);
            assert_eq!(std::fs::read(&out).expect("otter digest"), want, "{scheme}");
            assert_eq!(stdout(&o), format!("{}\n", hex(&want)));
            let o = otter_ok(&[&"keys", &"digest", pem, &"--json"]);
            let v: Value = serde_json::from_slice(&o.stdout).expect("json");
            assert_eq!(v["digest"], hex(&want));
            assert_eq!(v["scheme"], scheme);
        }
    }
}

#[test]
fn keys_digest_refuses_what_is_not_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = write(dir.path(), "junk.pem", b"not a key\n");
    let o = run_otter(["keys".as_ref(), "digest".as_ref(), f.as_os_str()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a PEM key"), "{}", stderr(&o));
    let o = run_otter(["keys", "digest", "/nonexistent/key.pem"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn second_and_third_blocks_interoperate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Key::new(dir.path(), "a", "ecdsa256");
    let b = Key::new(dir.path(), "b", "ecdsa256");
    let c = Key::new(dir.path(), "c", "ecdsa256");
    // otter signs, otter appends, espsecure appends the third.
    let one = dir.path().join("one.bin");
    let two = dir.path().join("two.bin");
    sign_with_otter(&a, &app(), &one, false);
    let o = run_otter([
        "sign".as_ref(),
        one.as_os_str(),
        "--key".as_ref(),
        b.private.as_os_str(),
        "-o".as_ref(),
        two.as_os_str(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "signing a signed image needs --append"
    );
    assert!(
        stderr(&o).contains("already signed (1 block(s))"),
        "{}",
        stderr(&o)
    );
    sign_with_otter(&b, &one, &two, true);
    let three = dir.path().join("three.bin");
    espsecure_ok(&[
        &"sign-data",
        &"--version",
        &"2",
        &"--append-signatures",
        &"--keyfile",
        &c.private,
        &"-o",
        &three,
        &two,
    ]);
    let o = espsecure_ok(&[&"signature-info-v2", &three]);
    let info = stdout(&o);
    for (i, k) in [&a, &b, &c].iter().enumerate() {
        let spaced: Vec<String> = k
            .digest_bytes()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        assert!(
            info.contains(&format!(
                "Public key digest for block {i}: {}",
                spaced.join(" ")
            )),
            "{info}"
        );
        espsecure_ok(&[
            &"verify-signature",
            &"--version",
            &"2",
            &"--keyfile",
            &k.public,
            &three,
        ]);
        let (exit, v) = verify(&three, &[&"--key", &k.public]);
        assert_eq!(exit, 0, "{v}");
        assert_eq!(v["signature"]["block"], i);
        assert_eq!(v["signature"]["blocks"], 3);
    }
    // otter image info lists the three blocks with espsecure's digests.
    let o = otter_ok(&[&"image", &"info", &three, &"--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    let blocks = v["signature"]["blocks"].as_array().expect("blocks");
    let got: Vec<(&str, &str)> = blocks
        .iter()
        .map(|b| {
            (
                b["scheme"].as_str().unwrap_or(""),
                b["key_digest"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let (da, db, dc) = (a.digest_hex(), b.digest_hex(), c.digest_hex());
    assert_eq!(
        got,
        vec![
            ("ecdsa256", da.as_str()),
            ("ecdsa256", db.as_str()),
            ("ecdsa256", dc.as_str())
        ]
    );
    // A fourth block does not fit.
    let o = run_otter([
        "sign".as_ref(),
        three.as_os_str(),
        "--append".as_ref(),
        "--key".as_ref(),
        a.private.as_os_str(),
        "-o".as_ref(),
        dir.path().join("four.bin").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("already holds 3 blocks"),
        "{}",
        stderr(&o)
    );
    // A block of another scheme is refused: a chip checks one scheme.
    let rsa = Key::new(dir.path(), "r", "rsa3072");
    let o = run_otter([
        "sign".as_ref(),
        one.as_os_str(),
        "--append".as_ref(),
        "--key".as_ref(),
        rsa.private.as_os_str(),
        "-o".as_ref(),
        dir.path().join("mixed.bin").as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("all blocks of a sector must use one scheme"),
        "{}",
        stderr(&o)
    );
    // Rotation: with the first key revoked, the second block verifies.
    let (exit, v) = verify(
        &three,
        &[
            &"--key",
            &a.public,
            &"--key",
            &b.public,
            &"--revoked-digest",
            &da,
        ],
    );
    assert_eq!(exit, 0, "{v}");
    assert_eq!(v["signature"]["block"], 1);
    // Only the first key, revoked: refused as revoked.
    let v = assert_refused(
        &three,
        &[&"--key", &a.public, &"--revoked-digest", &da],
        "revoked_key",
    );
    assert_eq!(v["signature"]["error"], "revoked_key");
}

#[test]
fn second_block_from_an_untrusted_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trusted = Key::new(dir.path(), "t", "ecdsa256");
    let stranger = Key::new(dir.path(), "s", "ecdsa256");
    let third = Key::new(dir.path(), "x", "ecdsa256");
    // Block 0 by the trusted key, block 1 by a stranger: the trusted block
    // verifies, as on the device (a block from a key the device does not
    // hold is passed over, never a reason to boot).
    let one = dir.path().join("one.bin");
    let two = dir.path().join("two.bin");
    sign_with_otter(&trusted, &app(), &one, false);
    sign_with_otter(&stranger, &one, &two, true);
    let (exit, v) = verify(&two, &[&"--key", &trusted.public]);
    assert_eq!(
        (exit, &v["signature"]["block"]),
        (0, &Value::from(0)),
        "{v}"
    );
    // Trusting only a third key: refused, naming the first untrusted block
    // and its key digest.
    let v = assert_refused(&two, &[&"--key", &third.public], "untrusted_key");
    let msg = v["message"].as_str().expect("message");
    assert!(
        msg.contains(&format!(
            "block 0 is signed by a key that is not trusted (key digest {})",
            trusted.digest_hex()
        )),
        "{msg}"
    );
    // Block 0 by a stranger and block 1 by the trusted key: block 1 verifies.
    let s1 = dir.path().join("s1.bin");
    let s2 = dir.path().join("s2.bin");
    sign_with_otter(&stranger, &app(), &s1, false);
    sign_with_otter(&trusted, &s1, &s2, true);
    let (exit, v) = verify(&s2, &[&"--key-digest", &trusted.digest_hex()]);
    assert_eq!(
        (exit, &v["signature"]["block"]),
        (0, &Value::from(1)),
        "{v}"
    );
}

#[test]
fn every_bad_input_gets_its_exact_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Key::new(dir.path(), "k", "ecdsa256");
    let wrong = Key::new(dir.path(), "w", "rsa3072");
    let signed_path = sign_with_espsecure(dir.path(), &key, &app(), "signed.bin");
    let signed = std::fs::read(&signed_path).expect("signed");
    let trust: [&dyn AsRef<std::ffi::OsStr>; 2] = [&"--key", &key.public];
    let blk = SECTOR;

    // Unsigned.
    assert_refused(&app(), &trust, "unsigned");
    // Wrong key.
    let v = assert_refused(&signed_path, &[&"--key", &wrong.public], "untrusted_key");
    assert!(v["message"]
        .as_str()
        .expect("msg")
        .contains(&key.digest_hex()));
    // A byte of the image itself: the image's own checksum catches it first.
    let mut f = signed.clone();
    f[0x1000] ^= 1;
    assert_refused(
        &write(dir.path(), "img.bin", &f),
        &trust,
        "checksum_mismatch",
    );
    // A byte of the 0xFF padding the signature covers but the image SHA does not.
    let mut f = signed.clone();
    f[APP_LEN + 10] ^= 1;
    let v = assert_refused(&write(dir.path(), "pad.bin", &f), &trust, "digest_mismatch");
    assert!(
        v["message"]
            .as_str()
            .expect("msg")
            .contains(&format!("{SECTOR} signed bytes")),
        "{v}"
    );
    // The digest in the block: CRC first; with the CRC rewritten, the digest.
    let mut f = signed.clone();
    f[blk + 4] ^= 1;
    assert_refused(&write(dir.path(), "dig.bin", &f), &trust, "bad_crc");
    fix_crc(&mut f, blk);
    assert_refused(
        &write(dir.path(), "dig2.bin", &f),
        &trust,
        "digest_mismatch",
    );
    // The signature: CRC first; with the CRC rewritten, the signature.
    let mut f = signed.clone();
    f[blk + 120] ^= 1;
    assert_refused(&write(dir.path(), "sig.bin", &f), &trust, "bad_crc");
    fix_crc(&mut f, blk);
    let v = assert_refused(&write(dir.path(), "sig2.bin", &f), &trust, "bad_signature");
    assert_eq!(
        v["message"],
        "signature block 0: the ecdsa256 signature does not verify"
    );
    // The CRC itself.
    let mut f = signed.clone();
    f[blk + BLOCK_CRC_OFFSET + 2] ^= 0x80;
    let v = assert_refused(&write(dir.path(), "crc.bin", &f), &trust, "bad_crc");
    assert!(
        v["message"].as_str().expect("msg").starts_with(&format!(
            "signature block 0: CRC at {:#x}",
            blk + BLOCK_CRC_OFFSET
        )),
        "{v}"
    );
    // The block truncated.
    let v = assert_refused(
        &write(dir.path(), "trunc.bin", &signed[..blk + 500]),
        &trust,
        "truncated",
    );
    assert_eq!(
        v["message"],
        format!("the signature is truncated at {blk:#x}: 1216 bytes needed, 500 present")
    );
    // The block in the wrong place: the sector a sector further on.
    let mut f = signed[..blk].to_vec();
    f.resize(blk + 4096, 0xFF);
    f.extend_from_slice(&signed[blk..]);
    let v = assert_refused(
        &write(dir.path(), "moved.bin", &f),
        &trust,
        "misplaced_block",
    );
    assert_eq!(
        v["message"],
        format!(
            "signature block at {:#x}, but the bootloader reads it at {blk:#x}",
            blk + 4096
        )
    );
    // Straight after the image, without the 4 KiB padding (espsecure
    // --skip-padding output).
    let skip = dir.path().join("skip.bin");
    espsecure_ok(&[
        &"sign-data",
        &"--version",
        &"2",
        &"--skip-padding",
        &"--keyfile",
        &key.private,
        &"-o",
        &skip,
        &app(),
    ]);
    let v = assert_refused(&skip, &trust, "misplaced_block");
    assert_eq!(
        v["message"],
        format!("signature block at {APP_LEN:#x}, but the bootloader reads it at {blk:#x}")
    );
    // A signature over a different length: espsecure signed the app plus
    // one more 4 KiB of 0xFF, so its block covers 4 KiB more than the image.
    let longer = write(dir.path(), "longer-in.bin", &{
        let mut b = signed[..blk].to_vec();
        b.resize(blk + 4096, 0xFF);
        b
    });
    let longer_signed = sign_with_espsecure(dir.path(), &key, &longer, "longer.bin");
    assert_refused(&longer_signed, &trust, "misplaced_block");
    // The same block moved to where the bootloader reads: digest over other bytes.
    let lb = std::fs::read(&longer_signed).expect("longer");
    let mut f = signed[..blk].to_vec();
    f.extend_from_slice(&lb[blk + 4096..]);
    assert_refused(&write(dir.path(), "len.bin", &f), &trust, "digest_mismatch");
    // Unreadable input and keys: exit 2.
    let o = run_otter([
        "image",
        "verify",
        "/nonexistent.bin",
        "--key-digest",
        &key.digest_hex(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = run_otter([
        "image".as_ref(),
        "verify".as_ref(),
        signed_path.as_os_str(),
        "--key-digest".as_ref(),
        "abcd".as_ref(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("a key digest is 64 hex digits"),
        "{}",
        stderr(&o)
    );
}

/// No single-byte change of an espsecure-signed RSA image verifies (every
/// 4999th byte of the image and padding, every 13th byte of the block up to
/// its CRC).
#[test]
fn no_single_byte_change_of_an_espsecure_rsa_image_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Key::new(dir.path(), "k", "rsa3072");
    let signed =
        std::fs::read(sign_with_espsecure(dir.path(), &key, &app(), "s.bin")).expect("signed");
    let d = [key.digest_bytes()];
    let t = TrustedKeys::new(&d);
    let len = APP_LEN as u32;
    assert!(verify_v2(&signed, len, &t).is_ok());
    let positions = (0..SECTOR)
        .step_by(4999)
        .chain((SECTOR..SECTOR + BLOCK_CRC_OFFSET + 4).step_by(13));
    for p in positions {
        let mut f = signed.clone();
        f[p] ^= 0x01;
        assert!(
            verify_v2(&f, len, &t).is_err(),
            "flipping byte {p:#x} still verifies"
        );
    }
}

#[test]
fn corpus_v1_signed_image_is_recognised_and_refused_for_its_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = corpus_file("app-images/esptool/hello-world-signed-esp32.bin");
    let o = otter_ok(&[&"image", &"info", &f, &"--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["signature"]["scheme"], "secure-boot-v1");
    assert_eq!(v["signature"]["offset"], 196_528);
    assert_eq!(v["signature"]["len"], 68);
    // espsecure sees no v2 block in it either.
    let o = espsecure_ok(&[&"signature-info-v2", &f]);
    assert!(
        stdout(&o).contains("Signature block 0 absent/invalid"),
        "{}",
        stdout(&o)
    );
    // A digest cannot check a v1 signature: the block has no key.
    let key = Key::new(dir.path(), "k", "ecdsa256");
    let v = assert_refused(&f, &[&"--key-digest", &key.digest_hex()], "v1_needs_key");
    assert!(v["message"]
        .as_str()
        .expect("msg")
        .contains("carries no public key"));
    // With a P-256 key that is not the signer's (ESP-IDF's build key is not
    // published): a bad signature.
    let v = assert_refused(&f, &[&"--key", &key.public], "bad_signature");
    assert_eq!(v["signature"]["verified"], false);
}

#[test]
fn espsecure_v1_signed_esp32_image_verifies_with_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("v1.pem");
    let public = dir.path().join("v1.pub.pem");
    espsecure_ok(&[&"generate-signing-key", &"--version", &"1", &key]);
    espsecure_ok(&[
        &"extract-public-key",
        &"--version",
        &"2",
        &"--keyfile",
        &key,
        &public,
    ]);
    let app = corpus_file("app-images/esp-serial-flasher/hello_world-esp32.bin");
    let signed = dir.path().join("v1.bin");
    espsecure_ok(&[
        &"sign-data",
        &"--version",
        &"1",
        &"--keyfile",
        &key,
        &"-o",
        &signed,
        &app,
    ]);
    for k in [&key, &public] {
        let (exit, v) = verify(&signed, &[&"--key", k]);
        assert_eq!(exit, 0, "{v}");
        assert_eq!(v["signature"]["version"], 1);
    }
    // One flipped signature byte: refused.
    let mut f = std::fs::read(&signed).expect("signed");
    let n = f.len();
    f[n - 10] ^= 1;
    assert_refused(
        &write(dir.path(), "bad.bin", &f),
        &[&"--key", &public],
        "bad_signature",
    );
}

// ---- a device that requires signatures (`otter device create --require-signature`)

/// POSTs `file` to the device's `/update` with curl; (status, JSON).
fn upload(dev: &devproc::Device, file: &Path) -> (u16, Value) {
    let arg = format!("@{}", file.display());
    dev.curl("/update", &["--data-binary", &arg])
}

fn running_version(dev: &devproc::Device) -> String {
    dev.status()["running"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Uploads `file`, expects the refusal `code` and the boot selection and the
/// running image exactly as before.
fn assert_device_refuses(dev: &devproc::Device, file: &Path, code: &str) -> Value {
    let before = dev.flash()[devproc::OTADATA].to_vec();
    let version = running_version(dev);
    let (status, body) = upload(dev, file);
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some(code)),
        "{body}"
    );
    assert_eq!(
        dev.flash()[devproc::OTADATA],
        before[..],
        "otadata changed: {body}"
    );
    assert_eq!(running_version(dev), version);
    body
}

/// espsecure-signed images (RSA-3072 and ECDSA P-256) install on a virtual
/// device that trusts the keys; unsigned, untrusted, revoked and tampered
/// images are refused with the boot selection byte-identical.
#[test]
fn a_device_that_requires_signatures_installs_only_trusted_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let rsa = Key::new(d, "rsa", "rsa3072");
    let ec = Key::new(d, "ec", "ecdsa256");
    let stranger = Key::new(d, "stranger", "ecdsa256");
    let revoked = Key::new(d, "revoked", "ecdsa256");
    let dev = devproc::Device::create(&[
        "--chip",
        "esp32c3",
        "--require-signature",
        "--trust-key",
        rsa.public.to_str().expect("utf-8"),
        "--trust-key",
        ec.private.to_str().expect("utf-8"),
        "--trust-key",
        revoked.public.to_str().expect("utf-8"),
        "--revoke-key",
        revoked.public.to_str().expect("utf-8"),
    ])
    .run(&[]);
    let v2 = devproc::image(d, "esp32c3", "2.0.0", &[]);
    let v3 = devproc::image(d, "esp32c3", "3.0.0", &[]);

    // Refused: who signed it.
    let body = assert_device_refuses(&dev, &v2, "bad_signature");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("not signed") && msg.contains("otter sign"),
        "{msg}"
    );
    let by_stranger = sign_with_espsecure(d, &stranger, &v2, "v2-stranger.bin");
    assert_device_refuses(&dev, &by_stranger, "bad_signature");
    let by_revoked = sign_with_espsecure(d, &revoked, &v2, "v2-revoked.bin");
    assert_device_refuses(&dev, &by_revoked, "bad_signature");

    // Refused: what was signed.
    let good = std::fs::read(sign_with_espsecure(d, &rsa, &v2, "v2-rsa.bin")).expect("read");
    let len = std::fs::metadata(&v2).expect("v2").len() as usize;
    let sector = len.div_ceil(4096) * 4096;
    let mut sig = good.clone();
    sig[sector + 36 + 384 + 4 + 10] ^= 0x01; // inside the RSA signature
    fix_crc(&mut sig, sector);
    assert_device_refuses(&dev, &write(d, "v2-sig.bin", &sig), "bad_signature");
    let mut crc = good.clone();
    crc[sector + BLOCK_CRC_OFFSET] ^= 0x01;
    assert_device_refuses(&dev, &write(d, "v2-crc.bin", &crc), "bad_signature");
    assert_device_refuses(
        &dev,
        &write(d, "v2-cut.bin", &good[..sector + 700]),
        "bad_signature",
    );
    let mut junk = good.clone();
    junk.extend_from_slice(b"junk");
    assert_device_refuses(&dev, &write(d, "v2-junk.bin", &junk), "trailing_data");

    // Accepted: RSA by espsecure, then ECDSA by otter sign.
    let (status, body) = upload(&dev, &write(d, "v2-good.bin", &good));
    assert_eq!(status, 200, "{body}");
    dev.wait_until(|st| st["running"]["version"] == "2.0.0", "2.0.0 to run");
    let v3_signed = d.join("v3-ec.bin");
    sign_with_otter(&ec, &v3, &v3_signed, false);
    espsecure_ok(&[
        &"verify-signature",
        &"--version",
        &"2",
        &"--keyfile",
        &ec.public,
        &v3_signed,
    ]);
    let (status, body) = upload(&dev, &v3_signed);
    assert_eq!(status, 200, "{body}");
    dev.wait_until(|st| st["running"]["version"] == "3.0.0", "3.0.0 to run");
}

/// A signed image still installs on a device that requires nothing: its
/// signature sector is accepted (and checked for shape), not refused as
/// trailing data.
#[test]
fn a_signed_image_installs_on_a_device_that_does_not_require_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let ec = Key::new(d, "ec", "ecdsa256");
    let dev = devproc::Device::create(&["--chip", "esp32c3"]).run(&[]);
    let v2 = devproc::image(d, "esp32c3", "2.0.0", &[]);
    let signed = sign_with_espsecure(d, &ec, &v2, "v2-ec.bin");
    let (status, body) = upload(&dev, &signed);
    assert_eq!(status, 200, "{body}");
    dev.wait_until(|st| st["running"]["version"] == "2.0.0", "2.0.0 to run");
}

#[test]
fn device_create_refuses_bad_trust_options() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let notakey = write(d, "notakey.pem", b"-----BEGIN NOTHING-----\n");
    let dir = d.join("dev");
    let o = run_otter([
        "device".as_ref(),
        "create".as_ref(),
        dir.as_os_str(),
        "--require-signature".as_ref(),
        "--trust-key".as_ref(),
        notakey.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("is not a Secure Boot v2 key"),
        "{}",
        stderr(&o)
    );
    let o = run_otter([
        "device".as_ref(),
        "create".as_ref(),
        dir.as_os_str(),
        "--require-signature".as_ref(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--trust-key"), "{}", stderr(&o));
    let k: Vec<Key> = (0..4)
        .map(|i| Key::new(d, &format!("k{i}"), "ecdsa256"))
        .collect();
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "device".as_ref(),
        "create".as_ref(),
        dir.as_os_str(),
        "--require-signature".as_ref(),
    ];
    for key in &k {
        args.push("--trust-key".as_ref());
        args.push(key.public.as_os_str());
    }
    let o = run_otter(args);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("at most 3"), "{}", stderr(&o));
    assert!(!dir.join("flash.bin").exists(), "nothing was created");
}
