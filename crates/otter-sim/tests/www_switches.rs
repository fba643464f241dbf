//! A thousand web-UI switches on a 20 KB NVS partition through the virtual
//! device's update path (`FrontendUpdate`), each mounting the UI it wrote:
//! the regression test of NVS pages that were never reclaimed (after about
//! 370 switches every web-UI update was refused). The power cuts of a web-UI
//! update and of the NVS collection are rows of the power-cut table
//! (`www-update`, `nvs-gc`; `tests/power_cut.rs`).

use otter_sim::device::www::{mount, FrontendUpdate, WwwLayout};
use otter_sim::device::{create, CreateOptions, VirtualDevice};
use otter_sim::SimFlash;
use sha2::{Digest, Sha256};

struct Fixture {
    _dir: tempfile::TempDir,
    flash: SimFlash,
    layout: WwwLayout,
}

fn device(table: Option<&str>, flash_size: u32) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = CreateOptions::new();
    opts.flash_size = flash_size;
    opts.partitions = table.map(|t| t.as_bytes().to_vec());
    create(dir.path(), &opts).expect("create device");
    let mut dev = VirtualDevice::open(dir.path()).expect("open");
    let layout = dev.www_layout().expect("device has web-UI slots");
    let flash = SimFlash::from_bytes(dev.flash().snapshot()).expect("flash");
    Fixture {
        _dir: dir,
        flash,
        layout,
    }
}

/// A UI image of `size` bytes whose index.html says `tag` (plus more files,
/// so the image spans more than the superblock pair).
fn ui(size: u32, tag: &str) -> (Vec<u8>, Vec<u8>) {
    let d = tempfile::tempdir().expect("tempdir");
    let index = format!("<!doctype html><title>{tag}</title><h1>{tag}</h1>\n").into_bytes();
    std::fs::write(d.path().join("index.html"), &index).expect("write");
    std::fs::create_dir(d.path().join("assets")).expect("mkdir");
    let js: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(d.path().join("assets/app.js"), &js).expect("write");
    std::fs::write(
        d.path().join("style.css"),
        format!("h1{{color:red}}/*{tag}*/"),
    )
    .expect("write");
    let img = otter_www::build_image(d.path(), size).expect("build image");
    (img, index)
}

fn run_update(
    flash: &mut SimFlash,
    layout: &WwwLayout,
    image: &[u8],
) -> Result<usize, otter_sim::device::www::FrontendError> {
    let boot = mount(flash, layout);
    let sha: [u8; 32] = Sha256::digest(image).into();
    let mut u = FrontendUpdate::begin(
        flash,
        layout,
        boot.active,
        Some(image.len() as u64),
        Some(sha),
    )?;
    // Odd-sized chunks, as HTTP delivers them.
    for chunk in image.chunks(1500) {
        u.write(flash, chunk)?;
    }
    Ok(u.finish(flash)?.index)
}

/// What a power-on mounted: the slot, and its index.html.
fn mounted(flash: &mut SimFlash, layout: &WwwLayout) -> Result<(usize, Vec<u8>), String> {
    let boot = mount(flash, layout);
    if let Some(f) = &boot.fallback {
        return Err(format!("power-on fell back: {}", f.reason));
    }
    if let Some(n) = &boot.pointer.note {
        return Err(format!("the NVS pointer is unreadable: {n}"));
    }
    let a = boot.active.ok_or("no UI mounted")?;
    let r = &layout.slots[a];
    let mut img = vec![0u8; r.size as usize];
    embedded_storage::nor_flash::ReadNorFlash::read(flash, r.offset, &mut img)
        .map_err(|e| e.to_string())?;
    let index = otter_www::read_file(&img, "/index.html").map_err(|e| e.to_string())?;
    Ok((a, index))
}

/// The small table with a 20 KB NVS partition (five pages).
const NVS_20K_TABLE: &str = "\
nvs,      data, nvs,      0x9000,  0x5000,
otadata,  data, ota,      0xe000,  0x2000,
ota_0,    app,  ota_0,    0x10000, 0x100000,
ota_1,    app,  ota_1,    0x110000, 0x100000,
www_0,    data, littlefs, 0x210000, 0x10000,
www_1,    data, littlefs, 0x220000, 0x10000,
";

/// Regression: NVS pages were never reclaimed, so after about 370 web-UI
/// switches on a 20 KB NVS partition every web-UI update was refused
/// (`nvs_error`). Each switch takes one NVS entry; 1,000 switches need the
/// pages collected several times over, through the shipped update path.
#[test]
fn a_thousand_web_ui_switches_on_a_20k_nvs_partition() {
    let mut fx = device(Some(NVS_20K_TABLE), 4 << 20);
    let size = fx.layout.slots[0].size;
    let images = [ui(size, "even"), ui(size, "odd")];
    let mut erases = 0u64;
    for n in 0..1000usize {
        let (img, index) = &images[n % 2];
        let before = fx.flash.counters().bytes_erased;
        let slot = run_update(&mut fx.flash, &fx.layout, img)
            .unwrap_or_else(|e| panic!("switch {n} refused: {e}"));
        let after = fx.flash.counters().bytes_erased;
        // The slot is erased whole; more means the NVS collected a page.
        erases += (after - before - u64::from(size)) / 4096;
        let (active, got) =
            mounted(&mut fx.flash, &fx.layout).unwrap_or_else(|e| panic!("after switch {n}: {e}"));
        assert_eq!((active, &got), (slot, index), "after switch {n}");
    }
    // 1,000 entries over 126-entry pages: the four free pages fill after
    // about 500 switches, then a page is collected every 126.
    assert!(erases >= 3, "{erases} NVS page erases");
}
