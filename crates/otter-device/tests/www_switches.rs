//! A thousand web-UI switches on a 20 KB NVS partition through the core's
//! upload path (`POST /api/ota/frontend` → `WwwUpload` → the NVS pointer,
//! then a boot mounting what was written): the regression test of NVS pages
//! that were never reclaimed (after about 370 switches every web-UI update
//! was refused with `nvs_error`). The pointer is kept as the virtual device
//! keeps it: otter-format's `nvs_set_u8` plan applied to the flash.

mod common;

use common::*;

/// nvs (20 KB, five pages) + otadata + two app slots + two 64 KiB web-UI
/// slots.
const CSV_64K: &str = "\
nvs,      data, nvs,      0x9000,   0x5000
otadata,  data, ota,      0xe000,   0x2000
ota_0,    app,  ota_0,    0x10000,  0x100000
ota_1,    app,  ota_1,    0x110000, 0x100000
www_0,    data, littlefs, 0x210000, 0x10000
www_1,    data, littlefs, 0x220000, 0x10000
";
const SLOT: u32 = 0x10000;

/// A UI of one 64 KiB slot whose index.html says `tag`, with a 20,000-byte
/// script (a multi-block CTZ file) and a stylesheet.
fn ui(tag: &str) -> Vec<u8> {
    let d = tempfile::tempdir().expect("tempdir");
    let index = format!("<!doctype html><title>{tag}</title><h1>{tag}</h1>\n");
    std::fs::write(d.path().join("index.html"), index).expect("write");
    std::fs::create_dir(d.path().join("assets")).expect("mkdir");
    let js: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(d.path().join("assets/app.js"), &js).expect("write");
    std::fs::write(
        d.path().join("style.css"),
        format!("h1{{color:red}}/*{tag}*/"),
    )
    .expect("write");
    otter_www::build_image(d.path(), SLOT).expect("build image")
}

#[test]
fn a_thousand_web_ui_switches_on_a_20k_nvs_partition() {
    let images = [ui("even"), ui("odd")];
    let mut r = Rig::with_ui(
        CSV_64K,
        &c3("1.0.0"),
        opts(false, None, false),
        Some(&images[1]),
    );
    assert_eq!(r.dev.www().and_then(|w| w.active), Some(0));
    let mut nvs_erases = 0u64;
    for n in 0..1000usize {
        let img = &images[n % 2];
        let before = r.flash.counters().bytes_erased;
        let a = r.one(&post("/api/ota/frontend", &[], img));
        assert_eq!(
            a.status,
            200,
            "switch {n} refused: {}",
            String::from_utf8_lossy(&a.body)
        );
        let want = if n % 2 == 0 { "www_1" } else { "www_0" };
        assert_eq!(a.json()["slot"], want, "switch {n}");
        // The slot is erased whole; more means NVS collected a page.
        let erased = r.flash.counters().bytes_erased - before;
        nvs_erases += (erased - u64::from(SLOT)) / 4096;
        r.boot();
        let w = *r.dev.www().expect("slots");
        assert_eq!(
            (w.active, w.fallback, w.nvs_unreadable),
            (Some(((n + 1) % 2) as u8), None, false),
            "after switch {n}"
        );
        assert_eq!(w.nvs_value, Some(((n + 1) % 2) as u8), "after switch {n}");
    }
    // 1,000 entries over 126-entry pages: the four free pages fill after
    // about 500 switches, then a page is collected every 126.
    assert!(nvs_erases >= 3, "{nvs_erases} NVS page erases");
}
