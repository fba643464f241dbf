//! Power cuts during a web-UI (frontend) update: for every mutating flash
//! operation of the update (the slot's sector erases and programs, the NVS
//! pointer's writes), cut before it, after it, and tear it (programs torn,
//! erases torn with and without scramble); then power on and check that the
//! device mounts a complete UI, the old or the new one (its `index.html`
//! byte-compared, the slot's SHA-256 compared with the image), never none and
//! never through a fallback; and that the NVS pointer reads as the old or the
//! new slot. Then the update is retried from the post-cut flash and must
//! complete and mount the new UI.
//!
//! The update runs on the code the device ships: `otter-device`'s web-UI
//! writer and check (`Device::begin_external_www`, as a pull writes it; an
//! upload feeds the same `WwwUpload`) with the virtual device's platform
//! (the NVS pointer, the LittleFS inspector), on a device made by
//! `device::create`. Small slots are
//! enumerated exhaustively; the default 1 MB slots are sampled (every NVS
//! operation, the first and last sectors, and every 64th sector).

use otter_agent::net::platform::SimPlatform;
use otter_device::service::{Device, DeviceOptions, UpdateKind};
use otter_device::DeviceError;
use otter_sim::device::www::{mount, WwwLayout, DEFAULT_INDEX_HTML, SLOT_LABELS};
use otter_sim::device::{create, CreateOptions, VirtualDevice};
use otter_sim::{Fault, FaultKind, SimFlash};
use sha2::{Digest, Sha256};

/// The seed of every torn fault (printed with each failure).
const SEED: u64 = 0x0077_7700_5eed;

/// A small table: the default's app layout on 4 MB, with 64 KiB web-UI slots.
const SMALL_TABLE: &str = "\
nvs,      data, nvs,      0x9000,  0x4000,
otadata,  data, ota,      0xd000,  0x2000,
phy_init, data, phy,      0xf000,  0x1000,
ota_0,    app,  ota_0,    0x10000, 0x100000,
ota_1,    app,  ota_1,    0x110000, 0x100000,
www_0,    data, littlefs, 0x210000, 0x10000,
www_1,    data, littlefs, 0x220000, 0x10000,
";

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
) -> Result<usize, DeviceError> {
    // A power-on of the core: it finds the slots and the mounted UI.
    let boot = mount(flash, layout);
    let mut plat = SimPlatform {
        nvs: layout.nvs.as_ref().map(|r| (r.offset, r.size)),
        www: Some((boot, layout.clone())),
        ..SimPlatform::default()
    };
    let mut dev = Device::new(DeviceOptions::new(otter_ota::DeviceConfig::new(
        otter_format::chip::Chip::Esp32,
    )));
    dev.boot(flash, &mut plat, None, 0)?;
    let sha: [u8; 32] = Sha256::digest(image).into();
    dev.begin_external(UpdateKind::Www)?;
    let mut u = dev.begin_external_www(flash, &mut plat, image.len() as u64, Some(sha))?;
    // Odd-sized chunks, as HTTP delivers them.
    for chunk in image.chunks(1500) {
        u.write(flash, chunk)?;
    }
    let done = dev.finish_external_www(flash, &mut plat, u)?;
    dev.end_external();
    Ok(usize::from(done.target))
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
    otter_sim::embedded_storage::nor_flash::ReadNorFlash::read(flash, r.offset, &mut img)
        .map_err(|e| e.to_string())?;
    let index = otter_www::read_file(&img, "/index.html").map_err(|e| e.to_string())?;
    Ok((a, index))
}

struct Outcome {
    cut_points: usize,
    old_seen: usize,
    new_seen: usize,
}

/// Enumerates the faults of one update from `initial` (which mounts
/// `old_index` from slot `old_slot`) to `new`.
fn enumerate(
    name: &str,
    initial: &SimFlash,
    layout: &WwwLayout,
    old: (usize, &[u8]),
    new: (&[u8], &[u8]),
    keep: impl Fn(u64, u64) -> bool,
) -> Outcome {
    let (new_image, new_index) = new;
    let (old_slot, old_index) = old;
    let new_slot = 1 - old_slot;
    let rec = initial.record(|f| run_update(f, layout, new_image));
    assert_eq!(
        rec.value.as_ref().ok(),
        Some(&new_slot),
        "{name}: the clean update failed: {:?}",
        rec.value.as_ref().err().map(ToString::to_string)
    );
    let total = rec.mutating_ops;
    let mut out = Outcome {
        cut_points: 0,
        old_seen: 0,
        new_seen: 0,
    };
    let mut failures = Vec::new();
    for (n, fault) in rec.faults(SEED).into_iter().enumerate() {
        if !keep(fault.op_index, total) {
            continue;
        }
        // A distinct seed per fault, so tears differ in depth.
        let fault = Fault::new(
            fault.op_index,
            fault.kind,
            SEED ^ (n as u64).wrapping_mul(0x9E37_79B9),
        );
        out.cut_points += 1;
        let mut f = initial.fork().with_fault(fault);
        let r = run_update(&mut f, layout, new_image);
        if !f.fault_fired() {
            failures.push(format!("{name}: {fault}: the fault never fired"));
            continue;
        }
        if r.is_ok() && fault.kind != FaultKind::CutAfter {
            failures.push(format!(
                "{name}: {fault}: the update reported success through a power cut"
            ));
        }
        f.power_cycle();
        match mounted(&mut f, layout) {
            Ok((slot, index)) => {
                if slot == old_slot && index == old_index {
                    out.old_seen += 1;
                } else if slot == new_slot && index == new_index {
                    out.new_seen += 1;
                } else {
                    failures.push(format!(
                        "{name}: {fault}: {} mounted with an index.html that is neither old nor new",
                        SLOT_LABELS[slot]
                    ));
                    continue;
                }
            }
            Err(e) => {
                failures.push(format!("{name}: {fault}: {e}"));
                continue;
            }
        }
        // A retried update completes from whatever the cut left (into the
        // slot that is not mounted now, which is www_0 again when the cut
        // came after the switch).
        match run_update(&mut f, layout, new_image) {
            Ok(s) => match mounted(&mut f, layout) {
                Ok((slot, index)) if slot == s && index == new_index => {}
                Ok((slot, _)) => failures.push(format!(
                    "{name}: {fault}: the retry wrote {} but {} is mounted with another UI",
                    SLOT_LABELS[s], SLOT_LABELS[slot]
                )),
                Err(e) => failures.push(format!("{name}: {fault}: after the retry: {e}")),
            },
            Err(e) => failures.push(format!("{name}: {fault}: the retry failed: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cut points failed (seed {SEED:#x}):\n{}",
        failures.len(),
        out.cut_points,
        failures.join("\n")
    );
    eprintln!(
        "{name}: {} mutating operations, {} cut points: old UI after {}, new UI after {}",
        total, out.cut_points, out.old_seen, out.new_seen
    );
    out
}

#[test]
fn every_cut_of_a_frontend_update_leaves_a_complete_ui() {
    let fx = device(Some(SMALL_TABLE), 4 << 20);
    let size = fx.layout.slots[1].size;
    let (v2, v2_index) = ui(size, "v2");
    let (v3, v3_index) = ui(size, "v3");

    // www_0 (the built-in UI) -> www_1: the pointer's entry is rewritten.
    let a = enumerate(
        "www_0 -> www_1",
        &fx.flash,
        &fx.layout,
        (0, DEFAULT_INDEX_HTML.as_bytes()),
        (&v2, &v2_index),
        |_, _| true,
    );
    // Then www_1 -> www_0 from the updated device.
    let mut after = fx.flash.fork();
    assert_eq!(run_update(&mut after, &fx.layout, &v2).ok(), Some(1));
    let b = enumerate(
        "www_1 -> www_0",
        &after,
        &fx.layout,
        (1, &v2_index),
        (&v3, &v3_index),
        |_, _| true,
    );
    let total = a.cut_points + b.cut_points;
    eprintln!("frontend power-cut matrix (64 KiB slots, exhaustive): {total} cut points");
    assert!(
        a.old_seen > 0 && a.new_seen > 0,
        "both outcomes are reached"
    );
    assert!(
        b.old_seen > 0 && b.new_seen > 0,
        "both outcomes are reached"
    );
}

#[test]
fn cuts_of_an_update_on_the_default_1mb_slots() {
    let fx = device(None, 16 << 20);
    let size = fx.layout.slots[1].size;
    assert_eq!(size, 0x100000);
    let (v2, v2_index) = ui(size, "v2");
    // Every NVS write (the last operations), the first and last sectors, and
    // every 64th sector of the slot (an erase and a program per sector).
    let keep = |op: u64, total: u64| op < 4 || op + 12 >= total || (op / 2).is_multiple_of(64);
    let o = enumerate(
        "default www_0 -> www_1",
        &fx.flash,
        &fx.layout,
        (0, DEFAULT_INDEX_HTML.as_bytes()),
        (&v2, &v2_index),
        keep,
    );
    eprintln!(
        "frontend power-cut matrix (1 MB slots, sampled): {} cut points",
        o.cut_points
    );
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
