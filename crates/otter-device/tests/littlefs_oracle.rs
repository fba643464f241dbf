//! The web-UI superblock check against images made by littlefs-python 0.19
//! (the C littlefs): configured as esp_littlefs mounts a partition, with the
//! library's own defaults at esp_littlefs's block size (read, program and
//! cache size = one block), and with the library's defaults as they are
//! (128-byte blocks), which esp_littlefs refuses to mount and so must the
//! device. In the first two the superblock's commit ends kilobytes into its
//! block, past what a fixed 512-byte read sees.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use otter_device::www::{check_superblock, MountLimits, UiProblem};
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

/// Builds an image with littlefs-python: `config` is the `LittleFS(...)`
/// keyword arguments. Enough files go into the root directory that the
/// superblock's metadata block is compacted and its first commit ends far
/// past the first 512 bytes. Returns the image padded with 0xFF to `pad`.
fn lfs_image(config: &str, pad: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ui.bin");
    let code = format!(
        r#"
import sys, littlefs
fs = littlefs.LittleFS({config})
with fs.open("index.html", "w") as f:
    f.write("<!doctype html><h1>otter</h1>" * 4)
for i in range(12):
    with fs.open(f"asset{{i:02}}.js", "w") as f:
        f.write("x" * (40 * i + 1))
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
    assert!(
        st.success(),
        "littlefs-python failed for LittleFS({config})"
    );
    let mut img = std::fs::read(&out).expect("image written");
    assert!(img.len() <= pad, "{} bytes do not fit {pad}", img.len());
    img.resize(pad, 0xFF);
    img
}

const ESP: &str = "block_size=4096, block_count=64, read_size=128, prog_size=128, \
                   cache_size=512, lookahead_size=128, block_cycles=512, name_max=64";
const DEFAULTS_4K: &str = "block_size=4096, block_count=64, name_max=64";
/// The library's defaults at 4096-byte blocks, its name_max (255) included.
const DEFAULTS_4K_NAMES: &str = "block_size=4096, block_count=64";
const DEFAULTS: &str = "";

/// Where the first commit of metadata block `b` (of `block` bytes) ends:
/// what the old 512-byte read missed.
fn first_commit_end(img: &[u8], block: usize, b: usize) -> usize {
    let blk = &img[b * block..(b + 1) * block];
    let (mut off, mut ptag) = (4usize, 0xFFFF_FFFFu32);
    loop {
        let tag = u32::from_be_bytes(blk[off..off + 4].try_into().unwrap()) ^ ptag;
        let len = if tag & 0x3ff == 0x3ff {
            0
        } else {
            (tag & 0x3ff) as usize
        };
        if (tag & 0x7800_0000) >> 20 == 0x500 {
            return off + 4 + len;
        }
        ptag = tag;
        off += 4 + len;
    }
}

fn check(img: &[u8]) -> Result<otter_device::www::Superblock, UiProblem> {
    check_with(img, &MountLimits::ESP_LITTLEFS)
}

fn check_with(
    img: &[u8],
    limits: &MountLimits,
) -> Result<otter_device::www::Superblock, UiProblem> {
    let mut flash = SimFlash::new(1 << 20).expect("flash");
    flash.load(0x10000, img).expect("image fits");
    let slot = Region {
        offset: 0x10000,
        size: img.len() as u32,
        label: otter_format::partition::Label::new("www_0"),
    };
    check_superblock(&mut flash, &slot, limits).expect("the flash reads")
}

#[test]
fn esp_littlefs_images_whose_superblock_commit_ends_past_512_bytes_are_accepted() {
    let img = lfs_image(ESP, 64 * 4096);
    let end = (0..2)
        .map(|b| first_commit_end(&img, 4096, b))
        .max()
        .unwrap();
    assert!(
        end > 512,
        "the test needs a commit past 512 bytes, got {end}"
    );
    let sb = check(&img).expect("esp_littlefs's layout");
    assert_eq!((sb.block_size, sb.block_count), (4096, 64));
    assert_eq!(
        sb.version, 0x0002_0001,
        "littlefs-python writes disk version 2.1"
    );
}

#[test]
fn library_defaults_at_4096_are_accepted() {
    let img = lfs_image(DEFAULTS_4K, 64 * 4096);
    let end = (0..2)
        .map(|b| first_commit_end(&img, 4096, b))
        .max()
        .unwrap();
    assert!(
        end > 512,
        "the test needs a commit past 512 bytes, got {end}"
    );
    let sb = check(&img).expect("littlefs-python's defaults at 4096-byte blocks");
    assert_eq!((sb.block_size, sb.block_count), (4096, 64));
}

#[test]
fn library_defaults_with_128_byte_blocks_are_refused_naming_the_block_size() {
    // LittleFS() as is: 64 blocks of 128 bytes, padded to a 256 KiB slot.
    let img = lfs_image(DEFAULTS, 64 * 4096);
    assert_eq!(
        check(&img),
        Err(UiProblem::Geometry {
            image_blocks: 64,
            block_size: 128,
            slot_blocks: 64
        })
    );
}

#[test]
fn the_librarys_name_max_needs_a_device_configured_for_it() {
    let img = lfs_image(DEFAULTS_4K_NAMES, 64 * 4096);
    assert_eq!(
        check(&img),
        Err(UiProblem::NameMax {
            found: 255,
            max: 64
        })
    );
    let msg = UiProblem::NameMax {
        found: 255,
        max: 64,
    }
    .to_string();
    assert!(
        msg.contains("--name-max=64") && msg.contains("configure the device"),
        "{msg}"
    );
    let wide = MountLimits {
        name_max: 255,
        ..MountLimits::ESP_LITTLEFS
    };
    assert_eq!(check_with(&img, &wide).map(|sb| sb.name_max), Ok(255));
}

#[test]
fn a_disk_version_newer_than_the_devices_is_refused() {
    let img = lfs_image(ESP, 64 * 4096);
    let old = MountLimits {
        disk_version_max: 0x0002_0000,
        ..MountLimits::ESP_LITTLEFS
    };
    assert_eq!(
        check_with(&img, &old),
        Err(UiProblem::DiskVersion {
            found: 0x0002_0001,
            max: 0x0002_0000
        })
    );
    let img20 = lfs_image(&format!("{ESP}, disk_version=0x00020000"), 64 * 4096);
    assert_eq!(
        check_with(&img20, &old).map(|sb| sb.version),
        Ok(0x0002_0000)
    );
}

#[test]
fn a_block_count_other_than_the_slots_is_refused() {
    let img = lfs_image(&ESP.replace("block_count=64", "block_count=32"), 64 * 4096);
    assert_eq!(
        check(&img),
        Err(UiProblem::Geometry {
            image_blocks: 32,
            block_size: 4096,
            slot_blocks: 64
        })
    );
}

#[test]
fn a_damaged_superblock_commit_is_no_superblock() {
    let mut img = lfs_image(ESP, 64 * 4096);
    // Flip a byte inside the first commit of both metadata blocks: its CRC
    // no longer checks, so neither block has a committed superblock.
    for b in 0..2 {
        img[b * 4096 + 20] ^= 0x40;
    }
    assert_eq!(check(&img), Err(UiProblem::NoSuperblock));
}

/// Through the HTTP core: each image is uploaded to the 256 KiB slot.
#[test]
fn uploads_of_littlefs_python_images_get_the_right_answer() {
    for (config, status, code) in [
        (ESP, 200, ""),
        (DEFAULTS_4K, 200, ""),
        (DEFAULTS, 422, "bad_web_ui"),
        (DEFAULTS_4K_NAMES, 422, "bad_web_ui"),
    ] {
        let mut rig = Rig::new();
        let img = lfs_image(config, WWW_SIZE as usize);
        let a = rig.one(&post("/api/ota/frontend", &[], &img));
        assert_eq!(
            (a.status, a.code().as_str()),
            (status, code),
            "LittleFS({config}): {}",
            String::from_utf8_lossy(&a.body)
        );
        if status == 422 {
            let msg = a.json()["message"].as_str().unwrap_or("").to_string();
            let why = if config.is_empty() {
                "block size 128"
            } else {
                "name_max is 255"
            };
            assert!(msg.contains(why), "{msg}");
            assert_eq!(rig.plat.pointer, None, "the pointer is unchanged");
        } else {
            assert_eq!(rig.www_slot_bytes(WWW1), &img[..], "written to www_1");
            assert_eq!(rig.plat.pointer, Some(1), "www_1 selected");
        }
    }
}
