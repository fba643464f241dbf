//! `otter keygen`, `otter release` and `otter release verify`, run as the real
//! binary in temp dirs, against implementations nobody here wrote: Python
//! `cryptography` checks (and makes) the Ed25519 signatures, OpenSSL reads and
//! writes the key files, and `hashlib` checks the artifacts.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use util::{python_json, run_otter, stderr, stdout};

/// A temp dir with a key pair `rel`, an app image and a web-UI image.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        f.keygen("rel");
        f.firmware("fw.bin", "1.4.0", 2);
        let site = f.path("site");
        std::fs::create_dir_all(site.join("css")).unwrap();
        std::fs::write(site.join("index.html"), "<!doctype html><h1>v1.4</h1>\n").unwrap();
        std::fs::write(site.join("css/app.css"), "body{margin:0}\n").unwrap();
        ok(&run_otter([
            "www".as_ref(),
            "build".as_ref(),
            site.as_os_str(),
            "--size".as_ref(),
            "64K".as_ref(),
            "-o".as_ref(),
            f.path("www.bin").as_os_str(),
        ]));
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn s(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    fn keygen(&self, name: &str) -> Output {
        ok(&run_otter(["keygen", "-o", &self.s(name)]))
    }

    fn firmware(&self, name: &str, version: &str, secure_version: u32) {
        ok(&run_otter([
            "image",
            "build",
            "--chip",
            "esp32s3",
            "--version",
            version,
            "--project",
            "thermostat",
            "--secure-version",
            &secure_version.to_string(),
            "--size",
            "96K",
            "-o",
            &self.s(name),
        ]));
    }

    /// `otter release` with the fixture's images and `extra` arguments.
    fn release(&self, out: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "release".to_owned(),
            "--firmware".into(),
            self.s("fw.bin"),
            "--www".into(),
            self.s("www.bin"),
            "-o".into(),
            self.s(out),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        run_otter(args)
    }

    /// `otter release verify DIR --json` trusting `keys` (`.pub` files).
    fn verify(&self, out: &str, keys: &[&str], extra: &[&str]) -> (Output, Value) {
        let mut args = vec!["release".to_owned(), "verify".into(), self.s(out)];
        for k in keys {
            args.push("--trust".into());
            args.push(self.s(k));
        }
        args.push("--json".into());
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = run_otter(args);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!("verify printed no JSON ({e}): {}{}", stdout(&o), stderr(&o))
        });
        (o, v)
    }

    /// Asserts that verifying `out` trusting `keys` fails with `code`, and
    /// that the message contains `says`.
    fn refused(&self, out: &str, keys: &[&str], code: &str, says: &str) {
        let (o, v) = self.verify(out, keys, &[]);
        assert_eq!(o.status.code(), Some(1), "{v}");
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["error"], code, "{v}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains(says), "{msg:?} should say {says:?}");
    }
}

fn ok(o: &Output) -> Output {
    assert!(
        o.status.success(),
        "otter failed ({:?}):\n{}{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    o.clone()
}

fn exit(o: &Output) -> Option<i32> {
    o.status.code()
}

/// Verifies every signature in `DIR/manifest.json.sig` whose keyid is that
/// of `pub` with Python `cryptography`, and checks each artifact with
/// hashlib. Prints `{keyid, verified: N, artifacts: {url: ok}}`.
const PY_VERIFY: &str = r#"
import sys, json, base64, hashlib, os
from cryptography.hazmat.primitives.serialization import load_pem_public_key, Encoding, PublicFormat
d, pub = sys.argv[1], sys.argv[2]
pk = load_pem_public_key(open(pub, 'rb').read())
raw = pk.public_bytes(Encoding.Raw, PublicFormat.Raw)
keyid = hashlib.sha256(raw).hexdigest()[:16]
manifest = open(os.path.join(d, 'manifest.json'), 'rb').read()
sigs = json.load(open(os.path.join(d, 'manifest.json.sig')))
assert sigs['format'] == 'otter-signature/1'
n = 0
for s in sigs['signatures']:
    if s['keyid'] == keyid:
        assert s['alg'] == 'ed25519'
        pk.verify(base64.b64decode(s['sig'], validate=True), manifest)  # raises if bad
        n += 1
m = json.loads(manifest)
arts = {}
for a in [m['firmware']] + ([m['www']] if 'www' in m else []):
    data = open(os.path.join(d, a['url']), 'rb').read()
    arts[a['url']] = len(data) == a['size'] and hashlib.sha256(data).hexdigest() == a['sha256']
print(json.dumps({'keyid': keyid, 'verified': n, 'artifacts': arts}))
"#;

/// Signs the bytes of file argv[2] with the private key argv[1] (PEM) using
/// Python `cryptography`, and writes an otter-signature/1 file to argv[3].
const PY_SIGN: &str = r#"
import sys, json, base64, hashlib
from cryptography.hazmat.primitives.serialization import load_pem_private_key, Encoding, PublicFormat
k = load_pem_private_key(open(sys.argv[1], 'rb').read(), None)
data = open(sys.argv[2], 'rb').read()
raw = k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
keyid = hashlib.sha256(raw).hexdigest()[:16]
sig = base64.b64encode(k.sign(data)).decode()
doc = {'format': 'otter-signature/1', 'signatures': [{'keyid': keyid, 'alg': 'ed25519', 'sig': sig}]}
open(sys.argv[3], 'w').write(json.dumps(doc))
print(json.dumps({'keyid': keyid}))
"#;

fn openssl(args: &[&str]) -> Output {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("openssl is needed for these tests ({e}): run scripts/setup-system.sh")
        });
    assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
    o
}

fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_openssl_agrees() {
    let f = Fixture::new();
    let key = f.path("rel.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "NAME.key mode {mode:o}");
    }
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    let derived = openssl(&["pkey", "-in", &f.s("rel.key"), "-pubout"]);
    assert_eq!(
        String::from_utf8(derived.stdout).unwrap(),
        std::fs::read_to_string(f.path("rel.pub")).unwrap(),
        "openssl pkey -pubout must print NAME.pub byte for byte"
    );
    let text = openssl(&["pkey", "-in", &f.s("rel.key"), "-text", "-noout"]);
    assert!(stdout(&text).contains("ED25519 Private-Key"));
}

#[test]
fn keygen_prints_the_keyid_python_computes() {
    let f = Fixture::new();
    let o = ok(&run_otter(["keygen", "-o", &f.s("k2"), "--json"]));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let py = python_json(
        r#"
import sys, json, hashlib
from cryptography.hazmat.primitives.serialization import load_pem_public_key, Encoding, PublicFormat
pk = load_pem_public_key(open(sys.argv[1], 'rb').read())
print(json.dumps({'keyid': hashlib.sha256(pk.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]}))
"#,
        &[&f.s("k2.pub")],
    );
    assert_eq!(v["keyid"], py["keyid"]);
    assert_eq!(v["key"], f.s("k2.key"));
}

#[test]
fn keygen_refuses_to_replace_a_key_without_force() {
    let f = Fixture::new();
    let before = std::fs::read(f.path("rel.key")).unwrap();
    let o = run_otter(["keygen", "-o", &f.s("rel")]);
    assert_eq!(exit(&o), Some(2));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read(f.path("rel.key")).unwrap(), before);
    // Only the .pub existing is refused too: the pair must stay a pair.
    std::fs::write(f.path("lone.pub"), "x").unwrap();
    assert_eq!(exit(&run_otter(["keygen", "-o", &f.s("lone")])), Some(2));
    assert!(!f.path("lone.key").exists());
    ok(&run_otter(["keygen", "-o", &f.s("rel"), "--force"]));
    assert_ne!(std::fs::read(f.path("rel.key")).unwrap(), before);
}

#[test]
fn round_trip_verified_by_otter_and_by_python_cryptography() {
    let f = Fixture::new();
    let o = ok(&f.release("out", &["--key", &f.s("rel.key"), "--json"]));
    let w: Value = serde_json::from_slice(&o.stdout).unwrap();
    let m = &w["manifest"];
    assert_eq!(m["format"], "otter-release/1");
    assert_eq!(m["product"], "thermostat");
    assert_eq!(m["chip"], "esp32s3");
    assert_eq!(m["firmware"]["version"], "1.4.0");
    assert_eq!(m["firmware"]["secure_version"], 2);
    assert_eq!(m["firmware"]["project"], "thermostat");
    assert_eq!(m["firmware"]["url"], "firmware.bin");
    assert_eq!(m["www"]["url"], "www.bin");
    assert_eq!(
        std::fs::read(f.path("out/firmware.bin")).unwrap(),
        std::fs::read(f.path("fw.bin")).unwrap()
    );

    let (vo, v) = f.verify("out", &["rel.pub"], &[]);
    assert_eq!(exit(&vo), Some(0), "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["manifest"], *m);
    assert_eq!(v["signed_by"], w["signed_by"]);

    let py = python_json(PY_VERIFY, &[&f.s("out"), &f.s("rel.pub")]);
    assert_eq!(py["verified"], 1, "{py}");
    assert_eq!(py["keyid"], w["signed_by"][0]);
    assert_eq!(py["artifacts"]["firmware.bin"], true, "{py}");
    assert_eq!(py["artifacts"]["www.bin"], true, "{py}");

    // The expiry defaults to 30 days after creation.
    let created: &str = m["created"].as_str().unwrap();
    let expires: &str = m["expires"].as_str().unwrap();
    let days = python_json(
        "import sys, json, datetime as d\nf=lambda s: d.datetime.fromisoformat(s.replace('Z','+00:00'))\nprint(json.dumps((f(sys.argv[2])-f(sys.argv[1])).total_seconds()))",
        &[created, expires],
    );
    assert_eq!(days.as_f64(), Some(30.0 * 86_400.0));

    // Human output names what was released.
    let text = ok(&run_otter([
        "release",
        "verify",
        &f.s("out"),
        "--trust",
        &f.s("rel.pub"),
    ]));
    assert!(stdout(&text)
        .contains("valid release thermostat 1.4.0 (esp32s3, secure_version 2, with web UI)"));
}

#[test]
fn a_release_signed_by_python_cryptography_verifies() {
    let f = Fixture::new();
    ok(&f.release("out", &["--key", &f.s("rel.key")]));
    // Re-sign the same manifest with the Python oracle instead of otter.
    python_json(
        PY_SIGN,
        &[
            &f.s("rel.key"),
            &f.s("out/manifest.json"),
            &f.s("out/manifest.json.sig"),
        ],
    );
    let (o, v) = f.verify("out", &["rel.pub"], &[]);
    assert_eq!(exit(&o), Some(0), "{v}");
}

#[test]
fn a_key_made_by_openssl_signs_and_its_openssl_public_key_verifies() {
    let f = Fixture::new();
    openssl(&["genpkey", "-algorithm", "ed25519", "-out", &f.s("ossl.key")]);
    openssl(&[
        "pkey",
        "-in",
        &f.s("ossl.key"),
        "-pubout",
        "-out",
        &f.s("ossl.pub"),
    ]);
    ok(&f.release("out", &["--key", &f.s("ossl.key")]));
    let (o, v) = f.verify("out", &["ossl.pub"], &[]);
    assert_eq!(exit(&o), Some(0), "{v}");
    let py = python_json(PY_VERIFY, &[&f.s("out"), &f.s("ossl.pub")]);
    assert_eq!(py["verified"], 1, "{py}");
}

#[test]
fn a_tampered_manifest_byte_is_refused() {
    let f = Fixture::new();
    ok(&f.release("out", &["--key", &f.s("rel.key")]));
    let path = f.path("out/manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    // One byte: the version the device would install.
    std::fs::write(&path, text.replacen("\"1.4.0\"", "\"1.4.1\"", 1)).unwrap();
    f.refused(
        "out",
        &["rel.pub"],
        "bad_signature",
        "does not match the manifest",
    );
    // Whitespace is a byte too: the signature covers the exact file.
    std::fs::write(&path, format!("{text} ")).unwrap();
    f.refused(
        "out",
        &["rel.pub"],
        "bad_signature",
        "does not match the manifest",
    );
}

#[test]
fn a_tampered_artifact_is_refused() {
    let f = Fixture::new();
    ok(&f.release("out", &["--key", &f.s("rel.key")]));
    let fw = f.path("out/firmware.bin");
    let mut bytes = std::fs::read(&fw).unwrap();
    bytes[5000] ^= 1;
    std::fs::write(&fw, &bytes).unwrap();
    f.refused(
        "out",
        &["rel.pub"],
        "artifact_sha256_mismatch",
        "firmware.bin has SHA-256",
    );
    bytes[5000] ^= 1;
    std::fs::write(&fw, &bytes).unwrap();
    let www = f.path("out/www.bin");
    let w = std::fs::read(&www).unwrap();
    std::fs::write(&www, &w[..w.len() - 4096]).unwrap();
    f.refused(
        "out",
        &["rel.pub"],
        "artifact_size_mismatch",
        "www.bin is 61440 bytes but the manifest says 65536",
    );
    std::fs::remove_file(&www).unwrap();
    f.refused("out", &["rel.pub"], "read", "www.bin");
}

#[test]
fn an_expired_release_is_refused() {
    let f = Fixture::new();
    ok(&f.release(
        "out",
        &[
            "--key",
            &f.s("rel.key"),
            "--expires",
            "2099-01-01T00:00:00Z",
        ],
    ));
    let (o, v) = f.verify("out", &["rel.pub"], &["--at", "2098-12-31T23:59:59Z"]);
    assert_eq!(exit(&o), Some(0), "{v}");
    let (o, v) = f.verify("out", &["rel.pub"], &["--at", "2099-01-01T00:00:00Z"]);
    assert_eq!(exit(&o), Some(1), "{v}");
    assert_eq!(v["error"], "expired");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("expired at 2099-01-01T00:00:00Z"));
}

#[test]
fn a_release_expires_on_the_real_clock() {
    let f = Fixture::new();
    ok(&f.release("out", &["--key", &f.s("rel.key"), "--expires", "1s"]));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    f.refused(
        "out",
        &["rel.pub"],
        "expired",
        "publish a freshly signed release",
    );
}

#[test]
fn a_release_by_another_key_is_refused() {
    let f = Fixture::new();
    f.keygen("other");
    ok(&f.release("out", &["--key", &f.s("rel.key")]));
    let rel_id = python_json(PY_VERIFY, &[&f.s("out"), &f.s("rel.pub")])["keyid"].clone();
    let other_id = python_json(PY_VERIFY, &[&f.s("out"), &f.s("other.pub")])["keyid"].clone();
    let (o, v) = f.verify("out", &["other.pub"], &[]);
    assert_eq!(exit(&o), Some(1));
    assert_eq!(v["error"], "no_trusted_signature");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("signed by {}", rel_id.as_str().unwrap())),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("trusted keys are {}", other_id.as_str().unwrap())),
        "{msg}"
    );
}

#[test]
fn signatures_by_unknown_keys_only_are_refused() {
    let f = Fixture::new();
    ok(&f.release("out", &["--key", &f.s("rel.key")]));
    // A signature file holding only a key nobody trusts, with garbage in it:
    // it is not checked, and it does not count.
    std::fs::write(
        f.path("out/manifest.json.sig"),
        r#"{"format":"otter-signature/1","signatures":[{"keyid":"0011223344556677","alg":"ed25519","sig":"bm90IGEgc2lnbmF0dXJl"}]}"#,
    )
    .unwrap();
    f.refused(
        "out",
        &["rel.pub"],
        "no_trusted_signature",
        "signed by 0011223344556677",
    );
    std::fs::write(
        f.path("out/manifest.json.sig"),
        r#"{"format":"otter-signature/1","signatures":[]}"#,
    )
    .unwrap();
    f.refused(
        "out",
        &["rel.pub"],
        "no_trusted_signature",
        "signed by none",
    );
}

#[test]
fn key_rotation_two_keys_one_rotated_out() {
    let f = Fixture::new();
    f.keygen("new");
    ok(&f.release("out", &["--key", &f.s("rel.key"), "--key", &f.s("new.key")]));
    // Devices that trust only the old key, only the new one, or both, accept.
    for trust in [&["rel.pub"][..], &["new.pub"], &["rel.pub", "new.pub"]] {
        let (o, v) = f.verify("out", trust, &[]);
        assert_eq!(exit(&o), Some(0), "{trust:?}: {v}");
        assert_eq!(v["signed_by"].as_array().unwrap().len(), trust.len());
    }
    assert_eq!(
        python_json(PY_VERIFY, &[&f.s("out"), &f.s("new.pub")])["verified"],
        1
    );

    // The old key's signature goes bad (say the old signer is compromised
    // and its entry was forged). A device that still trusts the old key
    // refuses, although the new key's signature is good: no falling through.
    let sig = f.path("out/manifest.json.sig");
    let good = std::fs::read(&sig).unwrap();
    edit_json(&sig, |v| {
        let new_sig = v["signatures"][1]["sig"].clone();
        v["signatures"][0]["sig"] = new_sig;
    });
    f.refused(
        "out",
        &["rel.pub", "new.pub"],
        "bad_signature",
        "does not match",
    );
    // A device rotated to the new key alone never looks at the old entry.
    let (o, v) = f.verify("out", &["new.pub"], &[]);
    assert_eq!(exit(&o), Some(0), "{v}");

    // After rotation the release is signed by the new key alone; devices
    // still on the old key refuse it and must be given the new key first.
    std::fs::write(&sig, good).unwrap();
    ok(&f.release("out2", &["--key", &f.s("new.key")]));
    f.refused(
        "out2",
        &["rel.pub"],
        "no_trusted_signature",
        "trusted keys are",
    );
}

#[test]
fn an_unknown_manifest_format_is_refused_even_when_signed() {
    let f = Fixture::new();
    ok(&f.release("out", &["--key", &f.s("rel.key")]));
    let manifest = f.path("out/manifest.json");
    edit_json(&manifest, |v| {
        v["format"] = "otter-release/3".into();
        v["delta"] = serde_json::json!({"from": "1.3.0"});
    });
    python_json(
        PY_SIGN,
        &[
            &f.s("rel.key"),
            &f.s("out/manifest.json"),
            &f.s("out/manifest.json.sig"),
        ],
    );
    f.refused("out", &["rel.pub"], "unknown_format", "\"otter-release/3\"");

    // Same format, one unknown field, properly signed: refused as malformed.
    ok(&f.release("out2", &["--key", &f.s("rel.key")]));
    edit_json(&f.path("out2/manifest.json"), |v| {
        v["min_bootloader"] = 3.into()
    });
    python_json(
        PY_SIGN,
        &[
            &f.s("rel.key"),
            &f.s("out2/manifest.json"),
            &f.s("out2/manifest.json.sig"),
        ],
    );
    f.refused(
        "out2",
        &["rel.pub"],
        "manifest_malformed",
        "unknown field `min_bootloader`",
    );

    // otter-release/1 has no alternatives: the field is unknown there.
    ok(&f.release("out4", &["--key", &f.s("rel.key")]));
    edit_json(&f.path("out4/manifest.json"), |v| {
        v["firmware"]["alternatives"] = serde_json::json!([]);
    });
    python_json(
        PY_SIGN,
        &[
            &f.s("rel.key"),
            &f.s("out4/manifest.json"),
            &f.s("out4/manifest.json.sig"),
        ],
    );
    f.refused(
        "out4",
        &["rel.pub"],
        "manifest_malformed",
        "unknown field `alternatives`",
    );

    // An unknown signature-file format.
    ok(&f.release("out3", &["--key", &f.s("rel.key")]));
    edit_json(&f.path("out3/manifest.json.sig"), |v| {
        v["format"] = "otter-signature/2".into()
    });
    f.refused(
        "out3",
        &["rel.pub"],
        "unknown_signature_format",
        "otter-signature/2",
    );
}

#[test]
fn images_are_checked_before_anything_is_written() {
    let f = Fixture::new();
    let key = f.s("rel.key");
    // Not an app image.
    std::fs::write(f.path("junk.bin"), vec![0x5au8; 4096]).unwrap();
    let o = run_otter([
        "release",
        "--firmware",
        &f.s("junk.bin"),
        "--key",
        &key,
        "-o",
        &f.s("o1"),
        "--json",
    ]);
    assert_eq!(exit(&o), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"], "invalid_image", "{v}");
    assert!(!f.path("o1").exists());
    // A corrupted app image (checksum / SHA-256).
    let mut fw = std::fs::read(f.path("fw.bin")).unwrap();
    fw[4000] ^= 0xff;
    std::fs::write(f.path("bad.bin"), &fw).unwrap();
    let o = run_otter([
        "release",
        "--firmware",
        &f.s("bad.bin"),
        "--key",
        &key,
        "-o",
        &f.s("o2"),
    ]);
    assert_eq!(exit(&o), Some(1));
    assert!(
        stderr(&o).contains("not a valid app image"),
        "{}",
        stderr(&o)
    );
    // A web-UI image that does not mount.
    let o = run_otter([
        "release",
        "--firmware",
        &f.s("fw.bin"),
        "--www",
        &f.s("junk.bin"),
        "--key",
        &key,
        "-o",
        &f.s("o3"),
    ]);
    assert_eq!(exit(&o), Some(1));
    assert!(stderr(&o).contains("not a web-UI image"), "{}", stderr(&o));
    // A web-UI image without index.html.
    let site = f.path("noindex");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("app.js"), "1").unwrap();
    ok(&run_otter([
        "www",
        "build",
        &f.s("noindex"),
        "--size",
        "16K",
        "-o",
        &f.s("noindex.bin"),
        "--allow-no-index",
    ]));
    let o = run_otter([
        "release",
        "--firmware",
        &f.s("fw.bin"),
        "--www",
        &f.s("noindex.bin"),
        "--key",
        &key,
        "-o",
        &f.s("o4"),
        "--json",
    ]);
    assert_eq!(exit(&o), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"], "no_index", "{v}");
    for d in ["o2", "o3", "o4"] {
        assert!(!f.path(d).exists(), "{d} was written");
    }
}

#[test]
fn a_non_empty_folder_is_not_written_without_force() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("out")).unwrap();
    std::fs::write(f.path("out/notes.txt"), "mine").unwrap();
    let o = f.release("out", &["--key", &f.s("rel.key")]);
    assert_eq!(exit(&o), Some(2));
    assert!(stderr(&o).contains("is not empty"), "{}", stderr(&o));
    assert!(!f.path("out/manifest.json").exists());
    ok(&f.release("out", &["--key", &f.s("rel.key"), "--force"]));
    assert_eq!(
        std::fs::read_to_string(f.path("out/notes.txt")).unwrap(),
        "mine"
    );
    let (o, v) = f.verify("out", &["rel.pub"], &[]);
    assert_eq!(exit(&o), Some(0), "{v}");
    // An empty folder is fine without --force.
    std::fs::create_dir_all(f.path("empty")).unwrap();
    ok(&f.release("empty", &["--key", &f.s("rel.key")]));
}

#[test]
fn product_and_firmware_only_releases() {
    let f = Fixture::new();
    ok(&run_otter([
        "release",
        "--firmware",
        &f.s("fw.bin"),
        "--key",
        &f.s("rel.key"),
        "-o",
        &f.s("out"),
        "--product",
        "thermo-pro",
        "--expires",
        "12h",
    ]));
    assert!(!f.path("out/www.bin").exists());
    let (o, v) = f.verify("out", &["rel.pub"], &[]);
    assert_eq!(exit(&o), Some(0), "{v}");
    assert_eq!(v["manifest"]["product"], "thermo-pro");
    assert!(v["manifest"].get("www").is_none(), "{v}");
    let py = python_json(PY_VERIFY, &[&f.s("out"), &f.s("rel.pub")]);
    assert_eq!(py["artifacts"].as_object().unwrap().len(), 1);
}

#[test]
fn key_files_of_the_wrong_kind_are_named() {
    let f = Fixture::new();
    let o = f.release("out", &["--key", &f.s("rel.pub")]);
    assert_eq!(exit(&o), Some(2));
    assert!(
        stderr(&o).contains("rel.pub: this is an Ed25519 public"),
        "{}",
        stderr(&o)
    );
    ok(&f.release("out", &["--key", &f.s("rel.key")]));
    let o = run_otter(["release", "verify", &f.s("out"), "--trust", &f.s("rel.key")]);
    assert_eq!(exit(&o), Some(2));
    assert!(stderr(&o).contains("a public"), "{}", stderr(&o));
    std::fs::write(f.path("junk.pub"), "not a key").unwrap();
    let o = run_otter([
        "release",
        "verify",
        &f.s("out"),
        "--trust",
        &f.s("junk.pub"),
    ]);
    assert_eq!(exit(&o), Some(2));
    assert!(
        stderr(&o).contains("not an Ed25519 public"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_expiry_arguments_are_errors() {
    let f = Fixture::new();
    for bad in ["2020-01-01T00:00:00Z", "0s", "soon", "1.5d"] {
        let o = f.release("out", &["--key", &f.s("rel.key"), "--expires", bad]);
        assert_eq!(exit(&o), Some(2), "{bad}");
        assert!(stderr(&o).contains("--expires"), "{bad}: {}", stderr(&o));
    }
    assert!(!f.path("out").exists());
}

#[test]
fn verify_needs_a_release_folder() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("empty")).unwrap();
    f.refused("empty", &["rel.pub"], "read", "manifest.json");
}

/// `python -m espsecure ARGS`, asserting success.
fn espsecure(args: &[&str]) -> Output {
    let o = Command::new(util::python())
        .args(["-m", "espsecure"])
        .args(args)
        .output()
        .expect("running espsecure");
    assert!(
        o.status.success(),
        "espsecure {args:?}: {}{}",
        stdout(&o),
        stderr(&o)
    );
    o
}

/// Two keys, two jobs: `--key` (Ed25519) signs the manifest, `--sign-firmware`
/// (Secure Boot v2) signs the image the bootloader checks; espsecure checks
/// the released firmware, and `release verify` checks both.
#[test]
fn a_release_signs_the_firmware_and_the_manifest_with_separate_keys() {
    let f = Fixture::new();
    for (name, scheme) in [
        ("sb-rsa", "rsa3072"),
        ("sb-ec", "ecdsa256"),
        ("sb-ec2", "ecdsa256"),
        ("sb-other", "ecdsa256"),
    ] {
        espsecure(&[
            "generate-signing-key",
            "--version",
            "2",
            "--scheme",
            scheme,
            &f.s(&format!("{name}.pem")),
        ]);
    }
    espsecure(&[
        "extract-public-key",
        "--version",
        "2",
        "--keyfile",
        &f.s("sb-ec2.pem"),
        &f.s("sb-ec2.pub.pem"),
    ]);
    // Two blocks (key rotation): all blocks of a sector share one scheme.
    let out = ok(&f.release(
        "out",
        &[
            "--key",
            &f.s("rel.key"),
            "--sign-firmware",
            &f.s("sb-ec.pem"),
            "--sign-firmware",
            &f.s("sb-ec2.pem"),
            "--json",
        ],
    ));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    // espsecure agrees the released firmware carries both blocks.
    for key in ["sb-ec.pem", "sb-ec2.pub.pem"] {
        espsecure(&[
            "verify-signature",
            "--version",
            "2",
            "--keyfile",
            &f.s(key),
            &f.s("out/firmware.bin"),
        ]);
    }
    // The manifest describes the signed bytes.
    let signed = std::fs::read(f.path("out/firmware.bin")).unwrap();
    let unsigned = std::fs::read(f.path("fw.bin")).unwrap();
    assert_eq!(signed.len(), unsigned.len().div_ceil(4096) * 4096 + 4096);
    let m: Value =
        serde_json::from_slice(&std::fs::read(f.path("out/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["firmware"]["size"], signed.len());

    // release verify checks both signatures.
    let (o, v) = f.verify(
        "out",
        &["rel.pub"],
        &["--firmware-key", &f.s("sb-ec2.pub.pem")],
    );
    assert_eq!(exit(&o), Some(0), "{v}");
    assert_eq!(
        (
            &v["firmware_signature"]["verified"],
            &v["firmware_signature"]["block"]
        ),
        (&Value::Bool(true), &Value::from(1)),
        "{v}"
    );
    let (o, v) = f.verify(
        "out",
        &["rel.pub"],
        &["--firmware-key", &f.s("sb-other.pem")],
    );
    assert_eq!(exit(&o), Some(1), "{v}");
    assert_eq!(v["error"], "untrusted_key", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("Secure Boot signature"),
        "{v}"
    );

    // RSA-3072 alone.
    ok(&f.release(
        "rsa",
        &[
            "--key",
            &f.s("rel.key"),
            "--sign-firmware",
            &f.s("sb-rsa.pem"),
        ],
    ));
    let (o, v) = f.verify("rsa", &["rel.pub"], &["--firmware-key", &f.s("sb-rsa.pem")]);
    assert_eq!(exit(&o), Some(0), "{v}");
    // Mixed schemes in one sector are refused, with the reason.
    let o = f.release(
        "mixed",
        &[
            "--key",
            &f.s("rel.key"),
            "--sign-firmware",
            &f.s("sb-rsa.pem"),
            "--sign-firmware",
            &f.s("sb-ec.pem"),
        ],
    );
    assert_eq!(exit(&o), Some(2));
    assert!(stderr(&o).contains("one scheme"), "{}", stderr(&o));
    // A release without --sign-firmware is unsigned for the bootloader.
    ok(&f.release("plain", &["--key", &f.s("rel.key")]));
    let (o, v) = f.verify(
        "plain",
        &["rel.pub"],
        &["--firmware-key", &f.s("sb-rsa.pem")],
    );
    assert_eq!(exit(&o), Some(1), "{v}");
    assert_eq!(v["error"], "unsigned", "{v}");
    // Without firmware keys, release verify checks the manifest alone.
    let (o, v) = f.verify("plain", &["rel.pub"], &[]);
    assert_eq!(
        (exit(&o), &v["firmware_signature"]),
        (Some(0), &Value::Null),
        "{v}"
    );

    // A Secure Boot key is not a manifest key and the other way round.
    let o = f.release("bad1", &["--key", &f.s("sb-rsa.pem")]);
    assert_ne!(exit(&o), Some(0));
    let o = f.release(
        "bad2",
        &["--key", &f.s("rel.key"), "--sign-firmware", &f.s("rel.key")],
    );
    assert_ne!(exit(&o), Some(0));
    assert!(
        stderr(&o).contains("is not a Secure Boot v2 signing key"),
        "{}",
        stderr(&o)
    );
}
