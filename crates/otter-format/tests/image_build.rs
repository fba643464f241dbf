//! The builder against esptool: `build_image` must produce esptool's bytes for
//! the same segments; images from `AppImageBuilder` must pass esptool's
//! parser; images from `esptool elf2image` must pass otter's verifier.

mod common;

use common::*;
use otter_format::chip::Chip;
use otter_format::image::{
    build_image, verify, AppImageBuilder, FlashMode, ImageKind, ImageParams, VerifyOptions,
};

/// Deterministic bytes.
fn bytes(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

struct Case {
    chip: Chip,
    segs: Vec<(u32, Vec<u8>, &'static str)>,
    params: ImageParams,
}

fn esptool_save(case: &Case) -> Vec<u8> {
    let spec = serde_json::json!({
        "chip": case.chip.name(),
        "segments": case.segs.iter().map(|(a, d, n)| serde_json::json!({
            "addr": a, "data": hex(d), "name": n,
        })).collect::<Vec<_>>(),
        "flash_mode": case.params.flash_mode.code(),
        "flash_size_freq": case.params.flash_size_freq,
        "entry": case.params.entry,
        "min_rev": case.params.min_rev,
        "min_rev_full": case.params.min_rev_full,
        "max_rev_full": case.params.max_rev_full,
        "append_digest": case.params.append_digest,
    });
    let script = oracle_script("esptool_build.py");
    let out = run_python(&[script.as_os_str()], spec.to_string().as_bytes());
    let text = String::from_utf8(out).expect("hex");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Where a test puts its DROM segment: just past the 0x20 bytes of image
/// header in the DROM window, or one 64 KiB page into the shared window on
/// chips whose IROM and DROM share one address range.
fn drom_load_addr(chip: Chip) -> u32 {
    let f = chip.facts();
    if f.irom.contains(f.drom.start) {
        f.irom.start + 0x10020
    } else {
        f.drom.start + 0x20
    }
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (k, chip) in Chip::all().enumerate() {
        let f = chip.facts();
        let drom = drom_load_addr(chip);
        let irom = f.irom.start + 0x20;
        let seed = k as u32 * 10;
        let mut params = ImageParams::new(chip);
        params.flash_mode = FlashMode::Dio;
        // A frequency the chip has (esptool's image-info warns on any other).
        let freqs = f.flash_freqs;
        params.flash_size_freq = 0x20 | freqs.get(k % freqs.len()).map_or(0, |(c, _)| *c);
        params.entry = f.iram_load_addr + 0x44;
        params.min_rev_full = 3;
        params.max_rev_full = 199;
        params.app_desc_segment = Some(0);
        // Varied sizes: some RAM segments big enough to be split as padding,
        // some not; unaligned lengths (esptool pads them to 4).
        let segs = vec![
            (drom, bytes(seed, 0x900 + 4 * k), ".flash.appdesc"),
            (
                f.iram_load_addr,
                bytes(seed + 1, 0x2345 + 1000 * k),
                ".iram0.text",
            ),
            (irom, bytes(seed + 2, 0x7001 + 333 * k), ".flash.text"),
            (
                f.iram_load_addr + 0x10000,
                bytes(seed + 3, 0x103),
                ".dram0.data",
            ),
        ];
        v.push(Case { chip, segs, params });
    }
    // Digest off, and a layout where only a zero padding segment fits.
    let mut p = ImageParams::new(Chip::Esp32);
    p.append_digest = false;
    p.app_desc_segment = Some(0);
    // The entry point must lie in a loaded segment: here, the flash text.
    p.entry = 0x400D_0020;
    v.push(Case {
        chip: Chip::Esp32,
        segs: vec![
            (0x3F40_0020, bytes(7, 0x100), ".flash.appdesc"),
            (0x400D_0020, bytes(8, 0x10000 - 0x20 + 8), ".flash.text"),
        ],
        params: p,
    });
    v
}

#[test]
fn build_image_matches_esptool_byte_for_byte() {
    for case in cases() {
        let segs: Vec<(u32, &[u8])> = case
            .segs
            .iter()
            .map(|(a, d, _)| (*a, d.as_slice()))
            .collect();
        let ours = build_image(&case.params, &segs).expect("build");
        let theirs = esptool_save(&case);
        assert_eq!(ours.len(), theirs.len(), "{}: length", case.chip);
        if let Some(i) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
            panic!("{}: first difference at byte {i:#x}", case.chip);
        }
        // And otter's verifier takes it (it has no app descriptor magic, but
        // flash segments: an app).
        let info = verify(&ours, &VerifyOptions::new().chip(case.chip))
            .unwrap_or_else(|e| panic!("{}: {e:?}", case.chip));
        assert_eq!(info.kind, ImageKind::App);
    }
}

#[test]
fn builder_images_pass_esptool() {
    let dir = tempdir();
    let mut files = Vec::new();
    let mut expect = Vec::new();
    for (k, chip) in Chip::all().enumerate() {
        let version = format!("1.{k}.0-test");
        let b = AppImageBuilder::new(chip)
            .version(&version)
            .project_name("otter-oracle")
            .secure_version(k as u32)
            .idf_ver("v5.5.1")
            .date_time("Mar  3 2025", "12:34:56")
            .size(200_000 + 4096 * k as u32);
        let img = b.build().expect("build");
        assert_eq!(img.len() as u32, (200_000 + 4096 * k as u32) / 16 * 16);
        let p = dir.join(format!("{}.bin", chip.name()));
        std::fs::write(&p, &img).expect("write");
        files.push(p);
        expect.push((chip, version, k as u32));
    }
    let oracle = esptool_describe(&files);
    for (o, (chip, version, sv)) in oracle.iter().zip(expect) {
        assert!(o.get("error").is_none(), "{chip}: {o}");
        assert_eq!(o["chip"].as_str(), Some(chip.name()));
        assert_eq!(o["checksum_stored"], o["checksum_computed"], "{chip}");
        assert_eq!(o["sha256_stored"], o["sha256_computed"], "{chip}");
        let d = &o["app_desc"];
        assert_eq!(d["version"].as_str(), Some(version.as_str()), "{chip}");
        assert_eq!(d["project_name"].as_str(), Some("otter-oracle"));
        assert_eq!(d["idf_ver"].as_str(), Some("v5.5.1"));
        assert_eq!(d["date"].as_str(), Some("Mar  3 2025"));
        assert_eq!(d["time"].as_str(), Some("12:34:56"));
        assert_eq!(d["secure_version"].as_u64(), Some(u64::from(sv)));
    }
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("otter-image-build-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

#[test]
fn elf2image_output_verifies() {
    let dir = tempdir();
    for chip in [
        Chip::Esp32,
        Chip::Esp32s3,
        Chip::Esp32c3,
        Chip::Esp32c6,
        Chip::Esp32p4,
    ] {
        let f = chip.facts();
        let drom = drom_load_addr(chip);
        // A descriptor with magic, secure_version 5, a version string, and a
        // zeroed app_elf_sha256 slot for --elf-sha256-offset 0xb0.
        let mut desc = vec![0u8; 256];
        desc[..4].copy_from_slice(&0xABCD_5432u32.to_le_bytes());
        desc[4] = 5;
        desc[0x10..0x15].copy_from_slice(b"9.9.9");
        desc[0x30..0x35].copy_from_slice(b"elfed");
        let mut appdesc = desc.clone();
        appdesc.extend(bytes(1, 0x400));
        let machine = if matches!(chip, Chip::Esp32 | Chip::Esp32s3) {
            0x5E
        } else {
            0xF3
        };
        let elf = dir.join(format!("{}.elf", chip.name()));
        let bin = dir.join(format!("{}.bin", chip.name()));
        let spec = serde_json::json!({
            "machine": machine,
            "entry": f.iram_load_addr,
            "out": elf,
            "sections": [
                {"name": ".flash.appdesc", "addr": drom, "data": hex(&appdesc)},
                {"name": ".iram0.text", "addr": f.iram_load_addr, "data": hex(&bytes(2, 0x3000))},
                {"name": ".flash.text", "addr": f.irom.start + 0x20, "data": hex(&bytes(3, 0x5000))},
            ],
        });
        run_python(
            &[oracle_script("make_elf.py").as_os_str()],
            spec.to_string().as_bytes(),
        );
        let args: Vec<std::ffi::OsString> = vec![
            "-m".into(),
            "esptool".into(),
            "--chip".into(),
            chip.name().into(),
            "elf2image".into(),
            "--elf-sha256-offset".into(),
            "0xb0".into(),
            "--output".into(),
            bin.clone().into(),
            elf.clone().into(),
        ];
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        run_python(&refs, b"");
        let img = std::fs::read(&bin).expect("elf2image output");
        let info = verify(&img, &VerifyOptions::new().chip(chip).min_secure_version(5))
            .unwrap_or_else(|e| panic!("{chip}: {e}"));
        let d = info.app_desc.expect("descriptor");
        assert_eq!(d.version().as_str(), Some("9.9.9"));
        assert_eq!(d.project_name().as_str(), Some("elfed"));
        // elf2image patched the ELF's SHA-256 into the descriptor.
        let elf_bytes = std::fs::read(&elf).expect("elf");
        use sha2::Digest;
        assert_eq!(
            d.app_elf_sha256().as_slice(),
            sha2::Sha256::digest(&elf_bytes).as_slice()
        );
    }
}
