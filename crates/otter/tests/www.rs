//! `otter www` against the reference LittleFS implementation, littlefs-python:
//! images built by one are mounted and read byte for byte by the other.

mod util;

use std::path::Path;

use util::{python_json, run_otter, stderr, stdout};

/// A web-UI folder: index.html, nested folders, binary, empty and 200 KB files.
fn site(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let files: Vec<(String, Vec<u8>)> = vec![
        (
            "index.html".into(),
            b"<!doctype html><h1>otter</h1>\n".to_vec(),
        ),
        (
            "assets/js/app.js".into(),
            b"console.log('hi')\n".repeat(300),
        ),
        ("assets/css/site.css".into(), b"body{margin:0}\n".to_vec()),
        (
            "assets/img/logo.bin".into(),
            (0..=255u8).cycle().take(5000).collect(),
        ),
        ("empty.txt".into(), Vec::new()),
        (
            "big/blob.dat".into(),
            (0..200 * 1024u32)
                .map(|i| (i * 7 + i / 251) as u8)
                .collect(),
        ),
    ];
    for (rel, bytes) in &files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    files
}

const READ_ALL: &str = r#"
import sys, json, base64
from littlefs import LittleFS
data = open(sys.argv[1], 'rb').read()
# Configured as esp_littlefs configures littlefs by default (Kconfig:
# read/write 128, cache 512, lookahead 128, block cycles 512,
# CONFIG_LITTLEFS_OBJ_NAME_LEN 64).
fs = LittleFS(block_size=4096, block_count=len(data) // 4096, read_size=128,
              prog_size=128, cache_size=512, lookahead_size=128, block_cycles=512,
              name_max=64, mount=False)
fs.context.buffer = bytearray(data)
fs.mount()
out = {}
for root, dirs, files in fs.walk('/'):
    for f in files:
        p = (root.rstrip('/') + '/' + f)
        with fs.open(p, 'rb') as fh:
            out[p] = base64.b64encode(fh.read()).decode()
st = fs.fs_stat()
print(json.dumps({"block_count": st.block_count, "name_max": st.name_max, "disk_version": st.disk_version, "files": out}))
"#;

const BUILD: &str = r#"
import sys, os, json
from littlefs import LittleFS
src, out, size, ver = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4], 16)
fs = LittleFS(block_size=4096, block_count=size // 4096, read_size=128, prog_size=128,
              disk_version=ver)
for root, dirs, files in os.walk(src):
    rel = os.path.relpath(root, src)
    base = '' if rel == '.' else '/' + rel
    for d in sorted(dirs):
        fs.mkdir(base + '/' + d)
    for f in sorted(files):
        with fs.open(base + '/' + f, 'wb') as fh:
            fh.write(open(os.path.join(root, f), 'rb').read())
open(out, 'wb').write(fs.context.buffer)
print(json.dumps({"ok": True}))
"#;

fn b64(s: &str) -> Vec<u8> {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = T.iter().position(|&t| t == c).expect("base64 digit") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn otter_image_reads_identically_in_littlefs_python() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("site");
    let files = site(&src);
    let img = t.path().join("www.bin");
    let o = run_otter([
        "www".as_ref(),
        "build".as_ref(),
        src.as_os_str(),
        "--size".as_ref(),
        "512K".as_ref(),
        "-o".as_ref(),
        img.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 512 * 1024);

    let v = python_json(READ_ALL, &[img.to_str().unwrap()]);
    assert_eq!(v["block_count"], 128);
    assert_eq!(v["name_max"], 64);
    assert_eq!(v["disk_version"], 0x0002_0001);
    let got = v["files"].as_object().unwrap();
    assert_eq!(got.len(), files.len(), "{got:?}");
    for (rel, bytes) in &files {
        let b = got[&format!("/{rel}")].as_str().unwrap();
        assert_eq!(&b64(b), bytes, "{rel}");
    }
}

#[test]
fn littlefs_python_image_lists_and_reads_in_otter() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("site");
    let files = site(&src);
    let img = t.path().join("py.bin");
    python_json(
        BUILD,
        &[
            src.to_str().unwrap(),
            img.to_str().unwrap(),
            "524288",
            "0x00020000",
        ],
    );

    let o = run_otter([
        "www".as_ref(),
        "ls".as_ref(),
        img.as_os_str(),
        "--json".as_ref(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["blocks"], 128);
    let entries = v["entries"].as_array().unwrap();
    for (rel, bytes) in &files {
        let e = entries
            .iter()
            .find(|e| e["path"] == format!("/{rel}"))
            .unwrap_or_else(|| panic!("{rel} not listed: {entries:?}"));
        assert_eq!(e["size"], bytes.len());
    }
    assert!(entries
        .iter()
        .any(|e| e["path"] == "/assets/js" && e["dir"] == true));

    let image = std::fs::read(&img).unwrap();
    assert!(otter_www::mounts(&image));
    for (rel, bytes) in &files {
        assert_eq!(&otter_www::read_file(&image, rel).unwrap(), bytes, "{rel}");
    }

    let out = t.path().join("out");
    let o = run_otter([
        "www".as_ref(),
        "extract".as_ref(),
        img.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (rel, bytes) in &files {
        assert_eq!(&std::fs::read(out.join(rel)).unwrap(), bytes, "{rel}");
    }
}

/// littlefs-python's own defaults (disk version 2.1, name_max 255) and
/// esp_littlefs's build rule (`--name-max=64 --block-size=4096`), both made
/// by the `littlefs-python create` command: listed and extracted byte for
/// byte.
#[test]
fn littlefs_python_create_images_list_and_extract() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("site");
    let files = site(&src);
    let cli = util::python().with_file_name("littlefs-python");
    for (name, extra) in [("default", None), ("esp", Some("--name-max=64"))] {
        let img = t.path().join(format!("{name}.bin"));
        let o = std::process::Command::new(&cli)
            .arg("create")
            .arg(&src)
            .arg(&img)
            .arg("--fs-size=1MB")
            .arg("--block-size=4096")
            .args(extra)
            .output()
            .expect("littlefs-python create");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let image = std::fs::read(&img).unwrap();
        let sb = otter_www::read::superblock(&image).expect("superblock");
        let want_name_max = if extra.is_some() { 64 } else { 255 };
        assert_eq!((sb.disk_version, sb.name_max), (0x0002_0001, want_name_max));

        let o = run_otter([
            "www".as_ref(),
            "ls".as_ref(),
            img.as_os_str(),
            "--json".as_ref(),
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["blocks"], 256);
        let entries = v["entries"].as_array().unwrap();
        for (rel, bytes) in &files {
            let e = entries
                .iter()
                .find(|e| e["path"] == format!("/{rel}"))
                .unwrap_or_else(|| panic!("{name}: {rel} not listed: {entries:?}"));
            assert_eq!(e["size"], bytes.len());
        }
        let out = t.path().join(format!("out-{name}"));
        let o = run_otter([
            "www".as_ref(),
            "extract".as_ref(),
            img.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        for (rel, bytes) in &files {
            assert_eq!(
                &std::fs::read(out.join(rel)).unwrap(),
                bytes,
                "{name}: {rel}"
            );
        }
    }
}

#[test]
fn folder_too_large_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("site");
    site(&src);
    let img = t.path().join("www.bin");
    let o = run_otter([
        "www".as_ref(),
        "build".as_ref(),
        src.as_os_str(),
        "--size".as_ref(),
        "64K".as_ref(),
        "-o".as_ref(),
        img.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("does not fit in 65536 bytes"),
        "{}",
        stderr(&o)
    );
    assert!(!img.exists());
}

#[test]
fn missing_index_and_bad_size_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("site");
    site(&src);
    std::fs::remove_file(src.join("index.html")).unwrap();
    let img = t.path().join("www.bin");
    let args = |size: &str, extra: &[&str]| {
        let mut a: Vec<std::ffi::OsString> = vec!["www".into(), "build".into(), src.clone().into()];
        a.extend([
            "--size".into(),
            size.into(),
            "-o".into(),
            img.clone().into(),
        ]);
        a.extend(extra.iter().map(|s| s.into()));
        a
    };
    let o = run_otter(args("512K", &[]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no index.html"), "{}", stderr(&o));
    let o = run_otter(args("512K", &["--allow-no-index"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_otter(args("500000", &["--allow-no-index"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a multiple of 4096"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn random_bytes_are_not_mountable() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("noise.bin");
    let mut x = 0x2545_f491_u32;
    let noise: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(&img, &noise).unwrap();
    let o = run_otter([
        "www".as_ref(),
        "ls".as_ref(),
        img.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["error"], "not_mountable");
    assert!(!otter_www::mounts(&noise));
}
