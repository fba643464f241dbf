//! A web UI whose directory is intact but whose file data is damaged
//! (issue 19, defect 2): the image is made by littlefs-python (the C
//! littlefs, configured as esp_littlefs mounts a slot), then one file's
//! CTZ blocks are overwritten. The superblock checks and a listing still
//! pass; reading the file does not. The upload must be refused before the
//! NVS pointer flips, and a boot whose selected slot holds such an image
//! must fall back to the other slot and say why.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use otter_device::www::{check_files, check_superblock, Damage, MountLimits, UiProblem};
use otter_ota::Region;
use otter_sim::SimFlash;

/// The project's Python with littlefs-python, or a loud panic.
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

/// `/index.html` inline, `/app.js` of 20,000 `Z`s (five CTZ blocks), and a
/// directory with one more file; a whole [`WWW_SIZE`] slot.
fn lfs_image() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ui.bin");
    let blocks = WWW_SIZE / 4096;
    let code = format!(
        r#"
import sys, littlefs
fs = littlefs.LittleFS(block_size=4096, block_count={blocks}, read_size=128, prog_size=128,
                       cache_size=512, lookahead_size=128, block_cycles=512, name_max=64)
with fs.open("index.html", "w") as f:
    f.write("<!doctype html><h1>otter</h1>")
with fs.open("app.js", "w") as f:
    f.write("Z" * 20000)
fs.mkdir("css")
with fs.open("css/site.css", "w") as f:
    f.write("body{{}}" * 900)
fs.unmount()
open(sys.argv[1], "wb").write(bytes(fs.context.buffer))
"#
    );
    let st = Command::new(python())
        .arg("-c")
        .arg(&code)
        .arg(&out)
        .status()
        .expect("python runs");
    assert!(st.success(), "littlefs-python failed");
    let img = std::fs::read(&out).expect("image written");
    assert_eq!(img.len(), WWW_SIZE as usize);
    img
}

/// The blocks holding `app.js`'s data (its `Z`s), in file order: block 0
/// is all data, each later one names the one before in its pointer 0.
fn app_js_blocks(img: &[u8]) -> Vec<usize> {
    let set: Vec<usize> = img
        .chunks(4096)
        .enumerate()
        .filter(|(_, b)| b.iter().filter(|&&c| c == b'Z').count() > 3000)
        .map(|(i, _)| i)
        .collect();
    let p0 = |b: usize| u32::from_le_bytes(img[b * 4096..b * 4096 + 4].try_into().unwrap());
    let mut chain = vec![*set
        .iter()
        .find(|&&b| &img[b * 4096..b * 4096 + 4] == b"ZZZZ")
        .expect("the first block")];
    while let Some(&next) = set
        .iter()
        .find(|&&b| p0(b) as usize == *chain.last().unwrap())
    {
        chain.push(next);
    }
    assert_eq!(chain.len(), set.len(), "one chain: {set:?}");
    chain
}

/// `img` with every block of `app.js` overwritten with 0xA5: its pointers
/// now name block 0xA5A5A5A5. The metadata is untouched.
fn damaged(img: &[u8]) -> Vec<u8> {
    let mut d = img.to_vec();
    let blocks = app_js_blocks(img);
    assert_eq!(blocks.len(), 5, "app.js spans five blocks");
    for b in blocks {
        d[b * 4096..(b + 1) * 4096].fill(0xA5);
    }
    d
}

fn slot_with(img: &[u8]) -> (SimFlash, Region) {
    let mut f = SimFlash::new(1 << 20).expect("flash");
    f.load(0, img).expect("fits");
    let r = Region {
        offset: 0,
        size: WWW_SIZE,
        label: otter_format::partition::Label::new("www_1"),
    };
    (f, r)
}

#[test]
fn the_walk_reads_every_file_of_a_littlefs_python_image() {
    let img = lfs_image();
    let (mut f, r) = slot_with(&img);
    let sum = check_files(&mut f, &r)
        .expect("flash reads")
        .expect("reads");
    assert_eq!((sum.files, sum.dirs), (3, 1));
    assert_eq!(sum.bytes, 29 + 20_000 + 6 * 900);
    // The host reader agrees with the file sizes.
    assert_eq!(
        otter_www::read_file(&img, "/app.js").expect("reads").len(),
        20_000
    );
}

#[test]
fn damaged_file_blocks_pass_the_superblock_and_the_listing_but_not_the_walk() {
    let img = damaged(&lfs_image());
    // What the old check saw: a good superblock, and every file listed.
    let (mut f, r) = slot_with(&img);
    check_superblock(&mut f, &r, &MountLimits::ESP_LITTLEFS)
        .expect("flash reads")
        .expect("the superblock is intact");
    let listed: Vec<String> = otter_www::list(&img)
        .expect("the directory is intact")
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert!(listed.iter().any(|p| p == "/app.js"), "{listed:?}");
    // What a read sees.
    assert_eq!(
        check_files(&mut f, &r).expect("flash reads"),
        Err(UiProblem::Damaged(Damage::BlockOutOfRange {
            block: 0xA5A5_A5A5,
            blocks: WWW_SIZE / 4096
        }))
    );
    assert!(matches!(
        otter_www::read_file(&img, "/app.js"),
        Err(otter_www::WwwError::NotMountable(_))
    ));
}

#[test]
fn a_skip_pointer_that_names_another_block_in_the_slot_is_found() {
    let img = lfs_image();
    let blocks = app_js_blocks(&img);
    // The head (index 4) has three pointers; pointer 1 should name index 2.
    // Point it at index 1's block instead: in range, but wrong.
    let head = blocks[4];
    let mut d = img.clone();
    let wrong = (blocks[1] as u32).to_le_bytes();
    d[head * 4096 + 4..head * 4096 + 8].copy_from_slice(&wrong);
    let (mut f, r) = slot_with(&d);
    assert_eq!(
        check_files(&mut f, &r).expect("flash reads"),
        // Seeking index 1 now lands on index 0's block, whose first word
        // is data: the chain and the skip pointers disagree.
        Err(UiProblem::Damaged(Damage::SkipPointer {
            found: blocks[0] as u32,
            chain: u32::from_le_bytes(*b"ZZZZ")
        }))
    );
    assert!(otter_www::read_file(&d, "/app.js").is_err());
}

#[test]
fn a_damaged_web_ui_upload_is_refused_and_nothing_flips() {
    let mut r = Rig::new();
    r.plat.files = vec![("/index.html".into(), b"<h1>old</h1>".to_vec())];
    let bad = damaged(&lfs_image());
    let a = r.one(&post("/api/ota/frontend", &[], &bad));
    assert_eq!(a.status, 422, "{:?}", String::from_utf8_lossy(&a.body));
    let j = a.json();
    assert_eq!(j["error"], "bad_web_ui");
    assert!(
        j["message"].as_str().is_some_and(
            |m| m.contains("does not read to the end") && m.contains("block 2779096485")
        ),
        "{j}"
    );
    // Nothing flipped; the UI is still served.
    assert_eq!(r.plat.pointer, None);
    assert_eq!(
        otter_device::www::WwwPointer::read(&mut r.plat, &mut r.flash).unwrap(),
        Some(0)
    );
    let s = r.one(&get("/api/ota/status", &[])).json();
    assert_eq!(
        s["last_update"]["result"], "rejected",
        "{}",
        s["last_update"]
    );
    assert_eq!(s["last_update"]["error"]["error"], "bad_web_ui");
    assert_eq!(r.one(&get("/", &[])).status, 200);
    // The same image undamaged is taken.
    let a = r.one(&post("/api/ota/frontend", &[], &lfs_image()));
    assert_eq!(a.status, 200, "{:?}", String::from_utf8_lossy(&a.body));
    assert_eq!(r.plat.pointer, Some(1));
}

#[test]
fn a_boot_whose_selected_slot_does_not_read_falls_back_and_says_why() {
    let mut r = Rig::new();
    // Flipped behind the device's back: www_1 damaged, the pointer on it.
    r.flash.load(WWW1, &damaged(&lfs_image())).expect("fits");
    otter_device::www::WwwPointer::select(&mut r.plat, &mut r.flash, 1).expect("NVS");
    r.boot();
    let w = *r.dev.www().expect("slots");
    assert_eq!((w.selected, w.active), (1, Some(0)));
    assert!(
        matches!(
            w.fallback,
            Some(UiProblem::Damaged(Damage::BlockOutOfRange { .. }))
        ),
        "{:?}",
        w.fallback
    );
    let s = r.one(&get("/api/ota/status", &[])).json();
    assert_eq!(s["www"]["active"], "www_0");
    assert_eq!(s["www"]["selected"], "www_1");
    assert_eq!(s["www"]["fallback"]["from"], "www_1");
    assert_eq!(s["www"]["fallback"]["to"], "www_0");
    assert!(
        s["www"]["fallback"]["reason"]
            .as_str()
            .is_some_and(|m| m.contains("does not read to the end")),
        "{}",
        s["www"]
    );
    assert_eq!(s["www"]["slots"][0]["mounts"], true);
    assert_eq!(s["www"]["slots"][1]["mounts"], false);
    // An undamaged slot selected mounts with no fallback.
    r.flash.load(WWW1, &lfs_image()).expect("fits");
    r.boot();
    let w = *r.dev.www().expect("slots");
    assert_eq!((w.active, w.fallback), (Some(1), None));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any damage to a real image (bytes overwritten anywhere, metadata
    /// included) gives a verdict: the walk never panics or runs away.
    #[test]
    fn the_walk_gives_a_verdict_on_any_damage(
        edits in proptest::collection::vec((0usize..WWW_SIZE as usize, proptest::prelude::any::<u8>()), 1..40)
    ) {
        static IMG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let mut img = IMG.get_or_init(lfs_image).clone();
        for (at, b) in edits {
            img[at] = b;
        }
        let (mut f, r) = slot_with(&img);
        if let Ok(Ok(_)) = check_superblock(&mut f, &r, &MountLimits::ESP_LITTLEFS) {
            let _ = check_files(&mut f, &r).expect("the slot's flash reads");
        }
    }
}
