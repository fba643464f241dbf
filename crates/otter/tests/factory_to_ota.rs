//! The whole factory-to-field path on real third-party files: for every chip
//! with a bootloader in the corpus, `otter flash-plan` → `otter merge` →
//! `otter device create --from-flash` → `otter device run` boots the real app
//! (status shows its app descriptor) → `otter push` installs an update over
//! HTTP → `otter device export` writes a flash whose otadata selects ota_0 as
//! ESP-IDF would, checked by an independent Python reading of the entries.

mod devproc;
mod util;

use std::path::{Path, PathBuf};

use devproc::{image, Device};
use serde_json::Value;
use util::{corpus_file, python_json, run_otter, stderr, stdout};

/// (chip, bootloader, app) for every corpus bootloader.
fn chips() -> Vec<(&'static str, PathBuf, PathBuf)> {
    [
        (
            "esp32",
            "esp-serial-flasher/bootloader-esp32.bin",
            "hello_world-esp32.bin",
        ),
        (
            "esp32c3",
            "esp-serial-flasher/bootloader-esp32c3.bin",
            "hello_world-esp32c3.bin",
        ),
        (
            "esp32c6",
            "esp-serial-flasher/bootloader-esp32c6.bin",
            "hello_world-esp32c6.bin",
        ),
        (
            "esp32s3",
            "esp-serial-flasher/bootloader-esp32s3.bin",
            "hello_world-esp32s3.bin",
        ),
        (
            "esp32p4",
            "valuecam/bootloader-esp32p4.bin",
            "hello_world-esp32p4.bin",
        ),
    ]
    .into_iter()
    .map(|(c, b, a)| {
        (
            c,
            corpus_file(&format!("bootloaders/{b}")),
            corpus_file(&format!("app-images/esp-serial-flasher/{a}")),
        )
    })
    .collect()
}

/// Factory + two 1 MB OTA slots on 4 MB, otadata at 0xd000: the table the
/// engine's own tests run on.
const CSV: &str = otter_sim::powercut::layouts::FACTORY_2OTA_4MB.csv;

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8").to_string()
}

fn json_of(args: &[String]) -> Value {
    let out = run_otter(args);
    assert!(
        out.status.success(),
        "otter {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", stdout(&out)))
}

/// ESP-IDF's reading of otadata, written independently in Python: the valid
/// entries (seq not erased, state neither INVALID nor ABORTED, CRC as the ROM
/// computes it), the one with the highest seq, and the OTA slot it selects.
const ESP_IDF_SELECTION: &str = r#"
import binascii, json, struct, sys
flash = open(sys.argv[1], 'rb').read()
base, slots = int(sys.argv[2], 0), int(sys.argv[3])
def crc(seq): return binascii.crc32(struct.pack('<I', seq), 0xFFFFFFFF) & 0xFFFFFFFF
best = None
for sector in (0, 1):
    e = flash[base + sector * 0x1000: base + sector * 0x1000 + 32]
    seq, state, c = struct.unpack('<I', e[0:4])[0], struct.unpack('<I', e[24:28])[0], struct.unpack('<I', e[28:32])[0]
    if seq != 0xFFFFFFFF and state not in (3, 4) and c == crc(seq):
        if best is None or seq > best[1]:
            best = (sector, seq, state)
if best is None:
    print(json.dumps(None))
else:
    print(json.dumps({'sector': best[0], 'seq': best[1], 'state': best[2], 'slot': (best[1] - 1) % slots}))
"#;

#[test]
fn plan_merge_boot_push_export_on_every_corpus_chip() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("partitions.csv");
    std::fs::write(&csv, CSV).unwrap();
    let mut done = Vec::new();
    for (chip, boot, app) in chips() {
        let dir = tmp.path().join(chip);
        std::fs::create_dir_all(&dir).unwrap();
        let common = [
            "--chip",
            chip,
            "--partitions",
            &s(&csv),
            "--bootloader",
            &s(&boot),
            "--app",
            &s(&app),
            "--flash-size",
            "4MB",
        ]
        .map(String::from)
        .to_vec();

        // Plan: every check passes, the app goes to factory.
        let mut args = vec!["flash-plan".to_string()];
        args.extend(common.clone());
        args.push("--json".into());
        let plan = json_of(&args);
        let plan_text = plan.to_string();
        assert!(plan_text.contains("factory"), "{chip}: {plan_text}");

        // Merge into a full 4 MB image.
        let merged = dir.join("flash.bin");
        let mut args = vec!["merge".to_string()];
        args.extend(common);
        args.extend([
            "-o".into(),
            s(&merged),
            "--fill-flash-size".into(),
            "4MB".into(),
        ]);
        let out = run_otter(&args);
        assert!(out.status.success(), "{chip}: merge: {}", stderr(&out));

        // A virtual device from it boots the real app.
        let app_info = json_of(&["image", "info", &s(&app), "--json"].map(String::from));
        let project = app_info
            .pointer("/app_desc/project_name")
            .cloned()
            .unwrap_or(Value::Null);
        let version = app_info
            .pointer("/app_desc/version")
            .cloned()
            .unwrap_or(Value::Null);
        assert!(
            project.is_string(),
            "{chip}: the app has a descriptor: {app_info}"
        );
        let mut dev = Device::create(&["--from-flash", &s(&merged)]).run(&[]);
        let st = dev.status();
        assert_eq!(st["chip"], chip);
        assert_eq!(
            st["flash_size"],
            4 << 20,
            "{chip}: size from the patched bootloader header"
        );
        assert_eq!(st["running"]["label"], "factory", "{chip}: {st:#}");
        assert_eq!(st["running"]["project_name"], project, "{chip}");
        assert_eq!(st["running"]["version"], version, "{chip}");
        assert_eq!(st["next"]["label"], "ota_0");

        // An OTA update over HTTP: the same project, as push requires.
        let project = project.as_str().unwrap_or_default().to_string();
        let v2 = image(&dir, chip, "2.0.0", &["--project", &project]);
        let out = run_otter(["push", &s(&v2), "--to", &dev.url]);
        assert!(
            out.status.success(),
            "{chip}: push: {}{}",
            stdout(&out),
            stderr(&out)
        );
        let st = dev.status();
        assert_eq!(st["running"]["label"], "ota_0");
        assert_eq!(st["running"]["version"], "2.0.0");
        dev.kill();

        // The exported flash: otadata selects ota_0 by ESP-IDF's rules, the
        // factory app is untouched, and the update sits in ota_0.
        let exported = dir.join("exported.bin");
        let out = run_otter(["device", "export", &s(dev.path()), "-o", &s(&exported)]);
        assert!(out.status.success(), "{chip}: export: {}", stderr(&out));
        let flash = std::fs::read(&exported).unwrap();
        let original = std::fs::read(&merged).unwrap();
        assert_eq!(flash.len(), original.len());
        assert_eq!(
            &flash[..0xd000],
            &original[..0xd000],
            "{chip}: bootloader and table unchanged"
        );
        assert_eq!(
            &flash[0x10000..0x110000],
            &original[0x10000..0x110000],
            "{chip}: factory unchanged"
        );
        let v2_bytes = std::fs::read(&v2).unwrap();
        assert_eq!(&flash[0x110000..0x110000 + v2_bytes.len()], &v2_bytes[..]);
        let sel = python_json(ESP_IDF_SELECTION, &[&s(&exported), "0xd000", "2"]);
        assert_eq!(sel["slot"], 0, "{chip}: ESP-IDF would boot ota_0: {sel}");
        assert_eq!(
            sel["seq"], 1,
            "{chip}: the first update from empty otadata is seq 1: {sel}"
        );
        assert_eq!(
            sel["state"], 0xFFFF_FFFFu32,
            "{chip}: UNDEFINED without rollback: {sel}"
        );

        // The exported image is a device again: it boots the update.
        let again = Device::create(&["--from-flash", &s(&exported)]);
        let out = run_otter(["device", "status", &s(again.path()), "--json"]);
        let st: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(st["running"]["label"], "ota_0", "{chip}");
        assert_eq!(st["running"]["version"], "2.0.0", "{chip}");
        done.push(chip);
    }
    assert_eq!(done.len(), 5, "{done:?}");
}

#[test]
fn from_flash_refuses_what_is_not_a_full_flash_image() {
    let tmp = tempfile::tempdir().unwrap();
    // An app alone: no bootloader to tell the chip, no table.
    let app = corpus_file("app-images/esp-serial-flasher/hello_world-esp32c3.bin");
    let out = run_otter([
        "device",
        "create",
        &s(&tmp.path().join("a")),
        "--from-flash",
        &s(&app),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--chip"), "{}", stderr(&out));
    // With --chip: there is still no partition table at 0x8000.
    let out = run_otter([
        "device",
        "create",
        &s(&tmp.path().join("b")),
        "--from-flash",
        &s(&app),
        "--chip",
        "esp32c3",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("partition table at 0x8000"),
        "{}",
        stderr(&out)
    );
}
