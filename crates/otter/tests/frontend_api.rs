//! End to end: the web-UI (`www`) A/B slots of a virtual device run as a
//! real `otter device run` process, driven over real HTTP by curl, Python
//! `requests` and `otter push --www`. NVS is cross-checked with ESP-IDF's
//! `esp-idf-nvs-partition-gen` (the generator) and with an independent
//! Python reader of ESP-IDF's NVS layout. Every refused upload is checked for
//! its status code and JSON error, and that the served UI, the slot it is
//! served from and the NVS partition did not change.

mod devproc;
mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use devproc::{curl, cut_upload, raw_upload_to, upload_cuts, CutTally, Device};
use serde_json::Value;
use sha2::{Digest, Sha256};
use util::{python, python_json, run_otter, stderr, stdout};

/// The default table's NVS partition.
const NVS: std::ops::Range<usize> = 0x9000..0xE000;
/// The default table's web-UI slots.
const WWW_0: std::ops::Range<usize> = 0x620000..0x720000;
const WWW_1: std::ops::Range<usize> = 0x720000..0x820000;
const SLOT: usize = 0x100000;

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Builds a UI image with `otter www build`: index.html saying `tag`, a
/// script and a stylesheet.
fn ui(dir: &Path, tag: &str, size: &str) -> (PathBuf, Vec<u8>) {
    let src = dir.join(format!("src-{tag}"));
    std::fs::create_dir_all(src.join("assets")).expect("mkdir");
    let index = format!("<!doctype html><title>{tag}</title><h1>UI {tag}</h1>\n").into_bytes();
    std::fs::write(src.join("index.html"), &index).expect("write");
    std::fs::write(
        src.join("assets/app.js"),
        format!("console.log('{tag}');\n"),
    )
    .expect("write");
    std::fs::write(src.join("style.css"), "h1 { color: teal }\n").expect("write");
    let out = dir.join(format!("{tag}.bin"));
    let o = run_otter(["www", "build", &s(&src), "--size", size, "-o", &s(&out)]);
    assert!(o.status.success(), "www build: {}", stderr(&o));
    (out, index)
}

/// GET `path` with curl: (status, headers text, body bytes).
fn get(url: &str, path: &str, extra: &[&str]) -> (u16, String, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = dir.path().join("body");
    let heads = dir.path().join("heads");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-o", &s(&body), "-D", &s(&heads)])
        .args(["-w", "%{http_code}"])
        .args(extra)
        .arg(format!("{url}{path}"))
        .output()
        .expect("curl");
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (
        code,
        std::fs::read_to_string(heads)
            .unwrap_or_default()
            .to_ascii_lowercase(),
        std::fs::read(body).unwrap_or_default(),
    )
}

/// POST a file raw to /api/ota/frontend with curl.
fn upload(dev: &Device, file: &Path, extra: &[&str]) -> (u16, Value) {
    let data = format!("@{}", s(file));
    let mut args = vec![
        "-X",
        "POST",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &data,
    ];
    args.extend_from_slice(extra);
    dev.curl("/api/ota/frontend", &args)
}

fn sha_of(p: &Path) -> String {
    hex(&Sha256::digest(std::fs::read(p).expect("read")))
}

/// What must not change when a web-UI upload is refused.
#[derive(Debug, PartialEq)]
struct Unchanged {
    index: Vec<u8>,
    active: Value,
    nvs: Vec<u8>,
    active_slot: Vec<u8>,
}

fn unchanged(dev: &Device) -> Unchanged {
    unchanged_in(dev, &dev.status())
}

/// [`unchanged`] with the status already read.
fn unchanged_in(dev: &Device, st: &Value) -> Unchanged {
    let flash = dev.flash();
    let active = st["www"]["active"].clone();
    let range = if active == "www_1" { WWW_1 } else { WWW_0 };
    let mut auth = dev.auth();
    auth.truncate(2);
    let extra: Vec<&str> = auth.iter().map(String::as_str).collect();
    Unchanged {
        index: get(&dev.url, "/", &extra).2,
        active,
        nvs: flash[NVS].to_vec(),
        active_slot: flash[range].to_vec(),
    }
}

fn boot_count(st: &Value) -> u64 {
    st["boot_count"].as_u64().unwrap_or(0)
}

fn wait_for_www(dev: &Device, slot: &str, after_boot: u64) -> Value {
    dev.wait_until(
        |st| boot_count(st) > after_boot && st["www"]["active"] == slot,
        &format!("a reboot serving {slot}"),
    )
}

#[test]
fn new_ui_is_served_after_upload_and_reboot() {
    let dev = Device::create(&[]).run(&[]);
    let work = tempfile::tempdir().expect("tempdir");

    // The built-in UI from www_0.
    let (code, heads, body) = get(&dev.url, "/", &[]);
    assert_eq!(code, 200);
    assert!(heads.contains("content-type: text/html"), "{heads}");
    assert!(heads.contains("cache-control: no-cache"), "{heads}");
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("otter") && text.contains("href=\"/update\""),
        "{text}"
    );
    let st = dev.status();
    assert_eq!(st["www"]["active"], "www_0");
    assert_eq!(st["www"]["selected"], "www_0");
    assert_eq!(st["www"]["nvs_value"], 0);
    assert_eq!(st["www"]["fallback"], Value::Null);
    assert_eq!(st["www"]["slots"][1]["mounts"], false);
    assert_eq!(st["api"]["frontend"], "/api/ota/frontend");

    // Upload v2, raw, with its SHA-256.
    let (v2, v2_index) = ui(work.path(), "v2", "1MB");
    let sha = sha_of(&v2);
    let (code, body) = upload(&dev, &v2, &["-H", &format!("X-Otter-Sha256: {sha}")]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["slot"], "www_1");
    assert_eq!(body["sha256"], sha.as_str());
    assert_eq!(body["rebooting"], true);
    let st = wait_for_www(&dev, "www_1", boot_count(&st));
    assert_eq!(st["www"]["selected"], "www_1");
    assert_eq!(st["www"]["nvs_value"], 1);
    assert_eq!(st["www"]["slots"][1]["sha256"], sha.as_str());
    assert_eq!(st["www"]["slots"][1]["files"], 3);
    assert_eq!(st["last_update"]["kind"], "www");
    assert_eq!(st["last_update"]["result"], "ok");
    // The slot holds the file byte for byte.
    assert_eq!(
        &dev.flash()[WWW_1],
        &std::fs::read(&v2).expect("read")[..],
        "www_1 holds the uploaded image"
    );

    let (code, heads, body) = get(&dev.url, "/", &[]);
    assert_eq!((code, body), (200, v2_index.clone()));
    assert!(heads.contains("cache-control: no-cache"));
    let (code, heads, body) = get(&dev.url, "/assets/app.js", &[]);
    assert_eq!(code, 200);
    assert!(heads.contains("content-type: text/javascript"), "{heads}");
    assert_eq!(body, b"console.log('v2');\n");
    let (_, heads, _) = get(&dev.url, "/style.css", &[]);
    assert!(heads.contains("content-type: text/css"), "{heads}");
    let (code, _, body) = get(&dev.url, "/index.html", &[]);
    assert_eq!((code, body), (200, v2_index));

    // Missing files: 404 JSON. Traversal: refused, nothing outside the UI.
    let (code, body) = dev.curl("/nope.html", &[]);
    assert_eq!(code, 404);
    assert_eq!(body["error"], "not_found");
    for p in [
        "/../flash.bin",
        "/assets/../../device.json",
        "/%2e%2e/device.json",
    ] {
        let (code, body) = dev.curl(p, &["--path-as-is"]);
        assert!(code == 400 || code == 404, "{p}: {code} {body}");
        assert!(body.get("error").is_some(), "{p}: {body}");
    }
    // The Update page is the firmware's, whatever the UI holds.
    let (code, _, body) = get(&dev.url, "/update", &[]);
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("<"), "update page");

    // Back to www_0 with a multipart upload by Python requests.
    let (v3, v3_index) = ui(work.path(), "v3", "0x100000");
    let before = boot_count(&dev.status());
    let r = python_json(
        "import json,sys,requests\n\
         r = requests.post(sys.argv[1] + '/api/ota/frontend', files={'www': open(sys.argv[2], 'rb')}, timeout=60)\n\
         print(json.dumps({'status': r.status_code, 'body': r.json()}))",
        &[&dev.url, &s(&v3)],
    );
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["body"]["slot"], "www_0");
    wait_for_www(&dev, "www_0", before);
    let (code, _, body) = get(&dev.url, "/", &[]);
    assert_eq!((code, body), (200, v3_index));
}

#[test]
fn refused_uploads_leave_the_ui_and_nvs_untouched() {
    let dev = Device::create(&["--token", "s3cret"]).run(&[]);
    let work = tempfile::tempdir().expect("tempdir");
    let auth = dev.auth();
    let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
    let before = unchanged(&dev);
    assert_eq!(before.active, "www_0");

    let (good, _) = ui(work.path(), "good", "1MB");
    // Token required, and checked.
    let (code, body) = curl(
        &dev.url,
        "/api/ota/frontend",
        &[],
        &["-X", "POST", "--data-binary", &format!("@{}", s(&good))],
    )
    .expect("reachable");
    assert_eq!((code, body["error"].as_str()), (401, Some("unauthorized")));
    let (code, body) = curl(
        &dev.url,
        "/api/ota/frontend",
        &["-H".into(), "Authorization: Bearer wrong".into()],
        &["-X", "POST", "--data-binary", &format!("@{}", s(&good))],
    )
    .expect("reachable");
    assert_eq!((code, body["error"].as_str()), (403, Some("forbidden")));
    assert_eq!(unchanged(&dev), before, "after 401/403");

    // A right-sized file that is not LittleFS.
    let garbage = work.path().join("garbage.bin");
    let g: Vec<u8> = (0..SLOT as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, &g).expect("write");
    // A UI without index.html.
    let noindex_src = work.path().join("noindex");
    std::fs::create_dir_all(&noindex_src).expect("mkdir");
    std::fs::write(noindex_src.join("home.html"), "<p>no index</p>").expect("write");
    let noindex = work.path().join("noindex.bin");
    let o = run_otter([
        "www",
        "build",
        &s(&noindex_src),
        "--size",
        "1MB",
        "--allow-no-index",
        "-o",
        &s(&noindex),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // An image built for 512 KB: wrong size as is, and padded to 1 MB it is
    // the slot's length but its superblock says 128 blocks.
    let (small, _) = ui(work.path(), "small", "512KB");
    let padded = work.path().join("padded.bin");
    let mut p = std::fs::read(&small).expect("read");
    p.resize(SLOT, 0xFF);
    std::fs::write(&padded, &p).expect("write");

    // (what, file, extra curl args, status, error code, message excerpt)
    type Case<'a> = (&'a str, &'a Path, Vec<&'a str>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        ("garbage", &garbage, vec![], 422, "bad_web_ui", "LittleFS"),
        (
            "no index.html",
            &noindex,
            vec![],
            422,
            "bad_web_ui",
            "index.html",
        ),
        ("512 KB image", &small, vec![], 422, "wrong_size", "1048576"),
        (
            "padded 512 KB image",
            &padded,
            vec![],
            422,
            "bad_web_ui",
            "block count is 128, but the slot holds 256 blocks",
        ),
        (
            "wrong SHA-256",
            &good,
            vec![
                "-H",
                "X-Otter-Sha256: 0000000000000000000000000000000000000000000000000000000000000000",
            ],
            422,
            "sha256_mismatch",
            "SHA-256",
        ),
    ];
    for (what, file, extra, want, code_str, needle) in cases {
        let mut args = auth.clone();
        args.extend(extra);
        let (code, body) = upload(&dev, file, &args);
        assert_eq!(code, want, "{what}: {body}");
        assert_eq!(body["error"], code_str, "{what}: {body}");
        let msg = body["message"].as_str().unwrap_or("");
        assert!(msg.contains(needle), "{what}: {msg:?} lacks {needle:?}");
        let st = dev.status();
        assert_eq!(st["last_update"]["kind"], "www", "{what}");
        assert_eq!(st["last_update"]["result"], "rejected", "{what}");
        assert_eq!(boot_count(&st), 1, "{what}: no reboot");
        assert_eq!(unchanged(&dev), before, "{what}: the UI or NVS changed");
    }

    // Larger than the slot: 413 from the Content-Length, before the body.
    let big = work.path().join("big.bin");
    std::fs::write(&big, vec![0xFFu8; SLOT + 4096]).expect("write");
    let mut args = auth.clone();
    args.extend(["-H", "Expect: 100-continue"]);
    let (code, body) = upload(&dev, &big, &args);
    assert_eq!(
        (code, body["error"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
    assert_eq!(unchanged(&dev), before, "after 413");

    // The device still takes a good one after all that.
    let (code, body) = upload(&dev, &good, &auth);
    assert_eq!(code, 200, "{body}");
    wait_for_www(&dev, "www_1", 1);
}

#[test]
fn one_update_at_a_time_across_firmware_and_web_ui() {
    let dev = Device::create(&[]).run(&[]);
    let work = tempfile::tempdir().expect("tempdir");
    let (good, _) = ui(work.path(), "v2", "1MB");
    let before = unchanged(&dev);
    let img = std::fs::read(&good).expect("read");
    let held = raw_upload_to(&dev.url, "/api/ota/frontend", img.len(), &img[..100_000]);
    dev.wait_until(
        |st| st["update_in_progress"] == true,
        "the held upload to start",
    );
    // A second web UI, and a firmware, while it runs: 409.
    let (code, body) = upload(&dev, &good, &[]);
    assert_eq!(
        (code, body["error"].as_str()),
        (409, Some("busy")),
        "{body}"
    );
    let fw = devproc::image(work.path(), "esp32s3", "2.0.0", &[]);
    let (code, body) = dev.curl(
        "/update",
        &["-X", "POST", "--data-binary", &format!("@{}", s(&fw))],
    );
    assert_eq!(
        (code, body["error"].as_str()),
        (409, Some("busy")),
        "{body}"
    );
    // The held upload is cut off: nothing switched.
    held.shutdown(std::net::Shutdown::Both).ok();
    drop(held);
    dev.wait_until(
        |st| st["update_in_progress"] == false,
        "the held upload to end",
    );
    let st = dev.status();
    assert_eq!(st["last_update"]["kind"], "www");
    assert_eq!(
        st["last_update"]["result"], "aborted",
        "{}",
        st["last_update"]
    );
    assert_eq!(unchanged(&dev), before);
    // The half-written slot is not what is mounted. (A LittleFS image cut
    // short can still mount, which is why only the verified NVS switch, never
    // mountability alone, selects a slot.)
    assert_eq!(st["www"]["active"], "www_0");
    assert_eq!(st["www"]["selected"], "www_0");
}

/// `kill -9` of the device at 20 and more points of one web-UI upload (the
/// cut points of the firmware test: after the head, in the first sector,
/// past 64 KiB boundaries, all over, just before the end, after the last
/// byte). After every cut the device restarts serving the old UI (`GET /`
/// byte for byte), from the same slot, with the NVS pointer and the served
/// slot byte for byte unchanged and no update reported; only the cut after
/// the last byte may find the new UI switched in, whole. Then the retried
/// upload completes and the new UI is served.
#[test]
fn kill_9_during_a_web_ui_upload_keeps_the_old_ui_and_pointer() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut dev = Device::create(&[]).run(&[]);
    let (v2, v2_index) = ui(work.path(), "v2", "1MB");
    let bytes = std::fs::read(&v2).expect("read");
    let before = unchanged(&dev);
    assert_eq!(before.active, "www_0");
    let mut tally = CutTally::default();
    let mut installed = false;
    for (round, at) in upload_cuts(0x0017_3eb0, bytes.len(), 21)
        .into_iter()
        .enumerate()
    {
        let st = cut_upload(&mut dev, "/api/ota/frontend", &bytes, at);
        tally.cuts += 1;
        let now = unchanged_in(&dev, &st);
        let what = format!("round {round}, cut after {at} of {} bytes", bytes.len());
        if at == bytes.len() && now != before {
            // The cut fell after the switch: the new UI, whole.
            assert_eq!(now.index, v2_index, "{what}");
            assert_eq!(now.active, "www_1", "{what}");
            assert_eq!(st["www"]["nvs_value"], 1, "{what}");
            assert_eq!(st["www"]["slots"][1]["sha256"], sha_of(&v2).as_str());
            installed = true;
            tally.completed += 1;
        } else {
            assert_eq!(
                now, before,
                "{what}: the old UI is served from www_0, NVS untouched"
            );
            assert_eq!(st["www"]["selected"], "www_0", "{what}");
            assert_eq!(st["www"]["nvs_value"], 0, "{what}");
            assert_eq!(st["update_in_progress"], false, "{what}");
            assert_eq!(st["last_update"], Value::Null, "{what}: {st:#}");
        }
        tally.recovered += 1;
    }
    if !installed {
        let boots = boot_count(&dev.status());
        let (code, body) = upload(&dev, &v2, &[]);
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["slot"], "www_1");
        wait_for_www(&dev, "www_1", boots);
    }
    let (code, _, body) = get(&dev.url, "/", &[]);
    assert_eq!((code, body), (200, v2_index));
    assert_eq!(&dev.flash()[WWW_1], &bytes[..], "www_1 holds the upload");
    assert_ne!(dev.flash()[NVS], before.nvs[..], "the pointer moved");
    tally.finish("kill_9_during_a_web_ui_upload", 20);
}

/// The generator's partition for `rows` (CSV lines after the header).
fn generate_nvs(dir: &Path, rows: &str, size: usize) -> Vec<u8> {
    let csv = dir.join("nvs.csv");
    let bin = dir.join("nvs.bin");
    std::fs::write(&csv, format!("key,type,encoding,value\n{rows}")).expect("write");
    let out = Command::new(python())
        .args(["-m", "esp_idf_nvs_partition_gen", "generate"])
        .arg(&csv)
        .arg(&bin)
        .arg(format!("0x{size:x}"))
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "generator: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&bin).expect("generator output")
}

/// An independent reader of ESP-IDF's NVS layout (pages by sequence
/// number, entry-state bitmap, item CRCs), in Python: the u8 value of
/// `ns`/`key`, or null.
const NVS_READER: &str = r#"
import json, struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
ns_name, key = sys.argv[2], sys.argv[3]
pages = []
for p in range(len(data) // 4096):
    pg = data[p*4096:(p+1)*4096]
    state, seq = struct.unpack_from('<II', pg, 0)
    if state in (0xFFFFFFFE, 0xFFFFFFFC, 0xFFFFFFF8):
        assert struct.unpack_from('<I', pg, 28)[0] == zlib.crc32(pg[4:28], 0xFFFFFFFF), 'page CRC'
        pages.append((seq, pg))
pages.sort(key=lambda x: x[0])
items = []
for seq, pg in pages:
    i = 0
    while i < 126:
        st = (pg[32 + i // 4] >> ((i % 4) * 2)) & 3
        e = pg[64 + i*32: 96 + i*32]
        if st != 2:
            i += 1
            continue
        crc = zlib.crc32(e[0:4] + e[8:32], 0xFFFFFFFF)
        span = max(e[2], 1)
        if struct.unpack_from('<I', e, 4)[0] == crc:
            items.append((e[0], e[1], e[8:24].split(b'\0')[0].decode(), e[24:32]))
        i += span
ns = {k: v[0] for (n, t, k, v) in items if n == 0 and t == 1}
idx = ns.get(ns_name)
val = None
for (n, t, k, v) in items:
    if idx is not None and n == idx and t == 1 and k == key:
        val = v[0]
print(json.dumps({'namespace_index': idx, 'value': val}))
"#;

fn python_nvs_u8(nvs: &[u8]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("nvs.bin");
    std::fs::write(&p, nvs).expect("write");
    python_json(NVS_READER, &[&s(&p), "otter", "www_slot"])
}

#[test]
fn nvs_interop_with_esp_idf() {
    let work = tempfile::tempdir().expect("tempdir");
    // otter's initial NVS is the generator's, byte for byte.
    let dev = Device::create(&[]);
    let generated0 = generate_nvs(
        work.path(),
        "otter,namespace,,\nwww_slot,data,u8,0\n",
        NVS.len(),
    );
    assert_eq!(
        &dev.flash()[NVS],
        &generated0[..],
        "otter's initial NVS differs from the generator's"
    );

    // A partition made by the generator saying www_slot = 1, with a UI in
    // www_1, written into the device's flash: the device serves www_1.
    let generated1 = generate_nvs(
        work.path(),
        "otter,namespace,,\nwww_slot,data,u8,1\n",
        NVS.len(),
    );
    let (v1, v1_index) = ui(work.path(), "from-idf", "1MB");
    let mut flash = dev.flash();
    flash[NVS].copy_from_slice(&generated1);
    flash[WWW_1].copy_from_slice(&std::fs::read(&v1).expect("read"));
    std::fs::write(dev.path().join("flash.bin"), &flash).expect("write flash");
    let off = run_otter(["device", "status", &s(dev.path()), "--json"]);
    assert!(off.status.success(), "{}", stderr(&off));
    let offline: Value = serde_json::from_str(&stdout(&off)).expect("json");
    assert_eq!(offline["www"]["active"], "www_1", "offline status");
    let dev = dev.run(&[]);
    let st = dev.status();
    assert_eq!(st["www"]["active"], "www_1");
    assert_eq!(st["www"]["nvs_value"], 1);
    let (code, _, body) = get(&dev.url, "/", &[]);
    assert_eq!((code, body), (200, v1_index));

    // otter switches back to www_0; an independent reader of the ESP-IDF
    // layout sees otter/www_slot = 0 in what otter wrote over the
    // generator's partition.
    assert_eq!(python_nvs_u8(&dev.flash()[NVS])["value"], 1);
    let (v2, v2_index) = ui(work.path(), "v2", "1MB");
    let (code, body) = upload(&dev, &v2, &[]);
    assert_eq!(code, 200, "{body}");
    wait_for_www(&dev, "www_0", 1);
    let (_, _, body) = get(&dev.url, "/", &[]);
    assert_eq!(body, v2_index);
    let read = python_nvs_u8(&dev.flash()[NVS]);
    assert_eq!(read["value"], 0, "{read}");
    assert_eq!(read["namespace_index"], 1, "{read}");
}

#[test]
fn a_broken_selected_slot_falls_back_and_status_says_why() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut dev = Device::create(&[]).run(&[]);
    let (v2, _) = ui(work.path(), "v2", "1MB");
    let (code, body) = upload(&dev, &v2, &[]);
    assert_eq!(code, 200, "{body}");
    wait_for_www(&dev, "www_1", 1);
    dev.kill();
    // www_1 (selected) is damaged while the device is off.
    let mut flash = dev.flash();
    flash[WWW_1.start..WWW_1.start + 8192].fill(0);
    std::fs::write(dev.path().join("flash.bin"), &flash).expect("write");
    dev.start();
    let st = dev.status();
    assert_eq!(st["www"]["selected"], "www_1");
    assert_eq!(st["www"]["active"], "www_0");
    let reason = st["www"]["fallback"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("www_1") && reason.contains("superblock"),
        "{reason}"
    );
    assert_eq!(st["www"]["slots"][1]["mounts"], false);
    let (code, _, body) = get(&dev.url, "/", &[]);
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("built-in web UI"));

    // An out-of-range pointer: www_0, and status says so.
    dev.kill();
    let mut flash = dev.flash();
    let gen = generate_nvs(
        work.path(),
        "otter,namespace,,\nwww_slot,data,u8,7\n",
        NVS.len(),
    );
    flash[NVS].copy_from_slice(&gen);
    std::fs::write(dev.path().join("flash.bin"), &flash).expect("write");
    dev.start();
    let st = dev.status();
    assert_eq!(st["www"]["nvs_value"], 7);
    assert_eq!(st["www"]["active"], "www_0");
    let note = st["www"]["nvs_note"].as_str().unwrap_or("");
    assert!(note.contains('7') && note.contains("www_0"), "{note}");
}

#[test]
fn a_device_without_web_ui_slots_keeps_working() {
    let work = tempfile::tempdir().expect("tempdir");
    let table = work.path().join("t.csv");
    std::fs::write(
        &table,
        "nvs,data,nvs,0x9000,0x5000,\notadata,data,ota,0xe000,0x2000,\nfactory,app,factory,0x10000,0x200000,\nota_0,app,ota_0,0x210000,0x200000,\nota_1,app,ota_1,0x410000,0x200000,\n",
    )
    .expect("write");
    let dev = Device::create(&["--partitions", &s(&table)]).run(&[]);
    let st = dev.status();
    assert_eq!(st["www"], Value::Null);
    let (code, body) = dev.curl("/", &[]);
    assert_eq!(
        (code, body["error"].as_str()),
        (503, Some("no_web_ui")),
        "{body}"
    );
    let (v2, _) = ui(work.path(), "v2", "1MB");
    let (code, body) = upload(&dev, &v2, &[]);
    assert_eq!(
        (code, body["error"].as_str()),
        (503, Some("no_www_slot")),
        "{body}"
    );
    // --www needs the slots.
    let o = run_otter([
        "device",
        "create",
        &s(&work.path().join("d2")),
        "--partitions",
        &s(&table),
        "--www",
        &s(&v2),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("www_0"), "{}", stderr(&o));
}

#[test]
fn create_with_www_puts_the_ui_in_www_0() {
    let work = tempfile::tempdir().expect("tempdir");
    let (v1, v1_index) = ui(work.path(), "factory", "1MB");
    let dev = Device::create(&["--www", &s(&v1)]);
    assert_eq!(&dev.flash()[WWW_0], &std::fs::read(&v1).expect("read")[..]);
    let dev = dev.run(&[]);
    let (code, _, body) = get(&dev.url, "/", &[]);
    assert_eq!((code, body), (200, v1_index));
    // A wrong-size image is refused at create, naming the size to use.
    let (small, _) = ui(work.path(), "small", "256KB");
    let o = run_otter([
        "device",
        "create",
        &s(&work.path().join("d2")),
        "--www",
        &s(&small),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("1048576"), "{}", stderr(&o));
}

#[test]
fn otter_push_www() {
    let dev = Device::create(&["--token", "t0k"]).run(&[]);
    let work = tempfile::tempdir().expect("tempdir");
    let (v2, v2_index) = ui(work.path(), "v2", "1MB");
    let o = run_otter([
        "push",
        "--www",
        &s(&v2),
        "--to",
        &dev.url,
        "--token",
        "t0k",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let rep: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(rep["result"], "running");
    assert_eq!(rep["slot"], "www_1");
    assert_eq!(rep["sha256"], sha_of(&v2).as_str());
    assert_eq!(rep["status"]["www"]["active"], "www_1");
    let (_, _, body) = get(&dev.url, "/", &[]);
    assert_eq!(body, v2_index);

    // Plain lines with progress when not --json.
    let (v3, _) = ui(work.path(), "v3", "1MB");
    let o = run_otter(["push", "--www", &s(&v3), "--to", &dev.url, "--token", "t0k"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("uploading: 100%"), "{}", stderr(&o));
    assert!(stdout(&o).contains("www_0"), "{}", stdout(&o));

    // Wrong size: refused locally, exit 1, nothing sent.
    let (small, _) = ui(work.path(), "small", "512KB");
    let before = boot_count(&dev.status());
    let o = run_otter([
        "push",
        "--www",
        &s(&small),
        "--to",
        &dev.url,
        "--token",
        "t0k",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not sent"), "{}", stderr(&o));
    // Not a UI at all: a failed check (exit 1) before contacting the device.
    let junk = work.path().join("junk.bin");
    std::fs::write(&junk, vec![0u8; SLOT]).expect("write");
    let o = run_otter(["push", "--www", &s(&junk), "--to", &dev.url]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a usable web-UI image"),
        "{}",
        stderr(&o)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(boot_count(&dev.status()), before, "nothing was sent");
}

/// littlefs-python (the reference implementation) builds UIs as ESP-IDF
/// projects do. Accepted and served: esp_littlefs's build rule
/// (`littlefs-python create --name-max=64 --block-size=4096`, disk version
/// 2.1) through `otter push --www`, and a disk version 2.0 image through
/// POST. Refused, naming the field, as esp_littlefs's default configuration
/// would refuse to mount them: littlefs-python's default `name_max` (255 >
/// 64), and an image built for 128 blocks padded to the 256-block slot.
#[test]
fn littlefs_python_images_and_the_superblock_check() {
    const BUILD: &str = r#"
import json, sys
from littlefs import LittleFS
out, blocks, pad, ver, name_max = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4], 16), int(sys.argv[5])
fs = LittleFS(block_size=4096, block_count=blocks, read_size=128, prog_size=128,
              disk_version=ver, name_max=name_max)
with fs.open('/index.html', 'wb') as f:
    f.write(b'<h1>from littlefs-python</h1>')
fs.mkdir('/js')
with fs.open('/js/a.js', 'wb') as f:
    f.write(b'1;' * 3000)
data = bytes(fs.context.buffer)
data += b'\xff' * (pad - len(data))
open(out, 'wb').write(data)
print(json.dumps({"len": len(data)}))
"#;
    let work = tempfile::tempdir().expect("tempdir");
    let v20 = work.path().join("v20.bin");
    let padded = work.path().join("padded.bin");
    let r = python_json(
        BUILD,
        &[&s(&v20), "256", &SLOT.to_string(), "0x20000", "64"],
    );
    assert_eq!(r["len"], SLOT);
    let r = python_json(
        BUILD,
        &[&s(&padded), "128", &SLOT.to_string(), "0x20000", "64"],
    );
    assert_eq!(r["len"], SLOT);
    // The CLI, as esp_littlefs's littlefs_create_partition_image runs it, and
    // with its defaults.
    let src = work.path().join("site");
    std::fs::create_dir_all(src.join("js")).expect("mkdir");
    let index = b"<h1>from littlefs-python create</h1>".to_vec();
    std::fs::write(src.join("index.html"), &index).expect("write");
    let script: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(src.join("js/app.js"), &script).expect("write");
    let cli = python().with_file_name("littlefs-python");
    let esp = work.path().join("esp.bin");
    let default = work.path().join("default.bin");
    for (out, extra) in [(&esp, vec!["--name-max=64"]), (&default, vec![])] {
        let o = Command::new(&cli)
            .arg("create")
            .arg(&src)
            .arg(out)
            .arg(format!("--fs-size={SLOT}"))
            .arg("--block-size=4096")
            .args(extra)
            .output()
            .expect("littlefs-python create");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    let dev = Device::create(&[]).run(&[]);
    let before = unchanged(&dev);
    let (code, body) = upload(&dev, &padded, &[]);
    assert_eq!(
        (code, body["error"].as_str()),
        (422, Some("bad_web_ui")),
        "{body}"
    );
    let msg = body["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("block count is 128, but the slot holds 256 blocks"),
        "{msg}"
    );
    let (code, body) = upload(&dev, &default, &[]);
    assert_eq!(
        (code, body["error"].as_str()),
        (422, Some("bad_web_ui")),
        "{body}"
    );
    let msg = body["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("name_max is 255, but the device's littlefs allows at most 64"),
        "{msg}"
    );
    assert_eq!(unchanged(&dev), before);

    // esp_littlefs's build rule, pushed with otter.
    let o = run_otter(["push", "--www", &s(&esp), "--to", &dev.url, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let rep: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(rep["slot"], "www_1");
    let (code, _, body) = get(&dev.url, "/", &[]);
    assert_eq!((code, body), (200, index));
    let (code, _, body) = get(&dev.url, "/js/app.js", &[]);
    assert_eq!((code, body), (200, script));

    // Disk version 2.0, POSTed.
    let boots = boot_count(&dev.status());
    let (code, body) = upload(&dev, &v20, &[]);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["files"], 2);
    wait_for_www(&dev, "www_0", boots);
    let (code, heads, body) = get(&dev.url, "/", &[]);
    assert_eq!(
        (code, body),
        (200, b"<h1>from littlefs-python</h1>".to_vec())
    );
    assert!(heads.contains("text/html"));
    let (code, _, body) = get(&dev.url, "/js/a.js", &[]);
    assert_eq!((code, body.len()), (200, 6000));
}

/// A web-UI update reboots the device, and any reboot before a new firmware
/// confirms itself rolls that firmware back: while the running firmware is
/// PENDING_VERIFY the upload is refused (409, as `/update` is), and accepted
/// once it has confirmed.
#[test]
fn a_web_ui_upload_waits_for_the_running_firmware_to_confirm() {
    let t = tempfile::tempdir().unwrap();
    let fw = devproc::image(t.path(), "esp32s3", "2.0.0", &[]);
    let (img, index) = ui(t.path(), "later", "1M");
    let dev = Device::create(&["--rollback"]).run(&["--selftest-window", "3"]);
    let (code, body) = dev.curl(
        "/update",
        &["-X", "POST", "--data-binary", &format!("@{}", s(&fw))],
    );
    assert_eq!(code, 200, "{body:#}");
    let st = dev.wait_until(
        |st| st["running"]["version"] == "2.0.0",
        "the new firmware to boot",
    );
    assert_eq!(st["running"]["state"], "pending_verify", "{st:#}");
    let before = unchanged(&dev);
    let (code, body) = upload(&dev, &img, &[]);
    assert_eq!(
        (code, body["error"].as_str()),
        (409, Some("pending_verify")),
        "{body:#}"
    );
    assert_eq!(before, unchanged(&dev));
    let st = dev.wait_until(
        |st| st["running"]["state"] == "valid",
        "the self-test to confirm",
    );
    let (code, body) = upload(&dev, &img, &[]);
    assert_eq!(code, 200, "{body:#}");
    let st = wait_for_www(&dev, "www_1", boot_count(&st));
    assert_eq!(st["running"]["version"], "2.0.0", "the firmware stayed");
    assert_eq!(get(&dev.url, "/", &[]).2, index);
}

/// littlefs-python's default image (`littlefs-python create` without
/// `--name-max`: name_max 255) installs on a device whose littlefs is
/// configured for 255-byte names and is served; a default device (esp_littlefs's
/// 64) refuses it, saying how to build a fitting image or configure the device.
#[test]
fn a_littlefs_python_default_image_installs_on_a_device_configured_for_it() {
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("site");
    std::fs::create_dir_all(&src).expect("mkdir");
    let index = b"<h1>littlefs-python, default settings</h1>".to_vec();
    std::fs::write(src.join("index.html"), &index).expect("write");
    let img = work.path().join("default.bin");
    let o = Command::new(python().with_file_name("littlefs-python"))
        .arg("create")
        .arg(&src)
        .arg(&img)
        .arg(format!("--fs-size={SLOT}"))
        .arg("--block-size=4096")
        .output()
        .expect("littlefs-python create");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let plain = Device::create(&[]).run(&[]);
    let (code, body) = upload(&plain, &img, &[]);
    assert_eq!(
        (code, body["error"].as_str()),
        (422, Some("bad_web_ui")),
        "{body}"
    );
    let msg = body["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("name_max is 255, but the device's littlefs allows at most 64"),
        "{msg}"
    );
    assert!(
        msg.contains("--name-max=64"),
        "says how to build a fitting image: {msg}"
    );
    assert!(msg.contains("configure the device"), "{msg}");
    drop(plain);

    let dev = Device::create(&["--lfs-name-max", "255"]).run(&[]);
    let cfg: Value = serde_json::from_slice(
        &std::fs::read(dev.path().join("device.json")).expect("device.json"),
    )
    .expect("json");
    assert_eq!(cfg["lfs_name_max"], 255);
    let o = run_otter(["push", "--www", &s(&img), "--to", &dev.url, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let rep: Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(rep["slot"], "www_1", "{rep}");
    let (code, _, body) = get(&dev.url, "/", &[]);
    assert_eq!((code, body), (200, index));
    let st = dev.status();
    assert_eq!(st["www"]["active"], "www_1", "{st:#}");
}

/// A littlefs-python image of a whole slot whose `/app.js` (five CTZ
/// blocks of `Z`s) has its data blocks overwritten, the directory intact.
fn damaged_ui(work: &Path) -> PathBuf {
    const BUILD: &str = r#"
import json, sys
from littlefs import LittleFS
fs = LittleFS(block_size=4096, block_count=int(sys.argv[2]), read_size=128, prog_size=128,
              cache_size=512, lookahead_size=128, name_max=64)
with fs.open('/index.html', 'wb') as f:
    f.write(b'<h1>damaged</h1>')
with fs.open('/app.js', 'wb') as f:
    f.write(b'Z' * 20000)
open(sys.argv[1], 'wb').write(bytes(fs.context.buffer))
print(json.dumps({"files": fs.listdir('/')}))
"#;
    let out = work.join("damaged.bin");
    let r = python_json(BUILD, &[&s(&out), &(SLOT / 4096).to_string()]);
    assert_eq!(r["files"], serde_json::json!(["app.js", "index.html"]));
    let mut img = std::fs::read(&out).expect("read");
    let mut hit = 0;
    for b in img.chunks_mut(4096) {
        if b.iter().filter(|&&c| c == b'Z').count() > 3000 {
            b.fill(0xA5);
            hit += 1;
        }
    }
    assert_eq!(hit, 5, "app.js spans five blocks");
    std::fs::write(&out, &img).expect("write");
    out
}

#[test]
fn a_web_ui_whose_file_data_is_damaged_is_refused_and_a_flipped_one_falls_back() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut dev = Device::create(&[]).run(&[]);
    let bad = damaged_ui(work.path());
    // The upload: refused before the pointer flips, the UI still served.
    let before = unchanged(&dev);
    let (code, body) = upload(&dev, &bad, &[]);
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["error"], "bad_web_ui");
    let msg = body["message"].as_str().unwrap_or("");
    assert!(msg.contains("does not read to the end"), "{msg}");
    assert_eq!(unchanged(&dev), before);
    let st = dev.status();
    assert_eq!(st["last_update"]["result"], "rejected");
    assert_eq!(st["www"]["active"], "www_0");
    // Flipped behind the device's back: the image in www_1, the pointer on
    // it (ESP-IDF's NVS generator), then a power-on.
    dev.kill();
    let mut flash = dev.flash();
    flash[WWW_1].copy_from_slice(&std::fs::read(&bad).expect("read"));
    let gen = generate_nvs(
        work.path(),
        "otter,namespace,,\nwww_slot,data,u8,1\n",
        NVS.len(),
    );
    flash[NVS].copy_from_slice(&gen);
    std::fs::write(dev.path().join("flash.bin"), &flash).expect("write");
    dev.start();
    let st = dev.status();
    assert_eq!(st["www"]["selected"], "www_1", "{}", st["www"]);
    assert_eq!(st["www"]["active"], "www_0", "{}", st["www"]);
    let reason = st["www"]["fallback"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("www_1") && reason.contains("block 2779096485"),
        "{reason}"
    );
    assert_eq!(st["www"]["slots"][1]["mounts"], false);
    let (code, _, body) = get(&dev.url, "/", &[]);
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("built-in web UI"));
}
