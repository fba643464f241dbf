//! `otter flash-plan` on the real bootloaders, apps and tables of the shared
//! corpus, including every factory-flashing mistake of seed 000: each is
//! refused with exit 1 and a message that says what is wrong and what to do.

mod util;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::Value;
use util::{corpus_file, run_otter, stderr, stdout};

const BOOT_ESP32: &str = "bootloaders/esp-serial-flasher/bootloader-esp32.bin";
const APP_ESP32: &str = "app-images/esp-serial-flasher/hello_world-esp32.bin";
const TWO_OTA: &str = "partition-tables/csv-with-reference-bin/idf-partitions_two_ota.csv";

fn table(name: &str) -> PathBuf {
    corpus_file(&format!("partition-tables/csv-with-reference-bin/{name}"))
}

/// `otter flash-plan --chip CHIP --partitions T --bootloader B --app A EXTRA...`.
fn plan(
    chip: &str,
    t: &Path,
    boot: &Path,
    app: &Path,
    extra: &[&dyn AsRef<std::ffi::OsStr>],
) -> std::process::Output {
    let mut args: Vec<OsString> = vec![
        "flash-plan".into(),
        "--chip".into(),
        chip.into(),
        "--partitions".into(),
        t.into(),
        "--bootloader".into(),
        boot.into(),
        "--app".into(),
        app.into(),
    ];
    args.extend(extra.iter().map(|a| a.as_ref().to_os_string()));
    run_otter(args)
}

fn plan_json(
    chip: &str,
    t: &Path,
    boot: &Path,
    app: &Path,
    extra: &[&dyn AsRef<std::ffi::OsStr>],
) -> (Option<i32>, Value) {
    let mut e: Vec<&dyn AsRef<std::ffi::OsStr>> = extra.to_vec();
    e.push(&"--json");
    let o = plan(chip, t, boot, app, &e);
    let v = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}\n{}", stdout(&o), stderr(&o)));
    (o.status.code(), v)
}

/// (offset, kind) of every region.
fn layout(v: &Value) -> Vec<(u64, String)> {
    v["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["offset"].as_u64().unwrap(),
                r["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn l(items: &[(u64, &str)]) -> Vec<(u64, String)> {
    items.iter().map(|(o, k)| (*o, k.to_string())).collect()
}

#[test]
fn bootloader_goes_to_each_chips_offset() {
    // esptool's BOOTLOADER_FLASH_OFFSET, written out here.
    for (chip, boot, offset) in [
        ("esp32", BOOT_ESP32, 0x1000),
        (
            "esp32c3",
            "bootloaders/esp-serial-flasher/bootloader-esp32c3.bin",
            0x0,
        ),
        (
            "esp32c6",
            "bootloaders/esp-serial-flasher/bootloader-esp32c6.bin",
            0x0,
        ),
        (
            "esp32s3",
            "bootloaders/esp-serial-flasher/bootloader-esp32s3.bin",
            0x0,
        ),
        (
            "esp32p4",
            "bootloaders/valuecam/bootloader-esp32p4.bin",
            0x2000,
        ),
    ] {
        let app = corpus_file(&format!(
            "app-images/esp-serial-flasher/hello_world-{chip}.bin"
        ));
        let (code, v) = plan_json(
            chip,
            &corpus_file(TWO_OTA),
            &corpus_file(boot),
            &app,
            &[&"--flash-size", &"4MB"],
        );
        assert_eq!(code, Some(0), "{chip}: {v}");
        assert_eq!(
            layout(&v),
            l(&[
                (offset, "bootloader"),
                (0x8000, "partition-table"),
                (0xd000, "otadata"),
                (0x10000, "app")
            ]),
            "{chip}"
        );
        assert_eq!(v["app"]["partition"], "factory", "{chip}");
        assert_eq!(v["chip"], chip);
    }
}

#[test]
fn app_goes_to_ota_0_without_a_factory_partition() {
    // two_ota_large: nvs, otadata, phy_init, ota_0, ota_1 with automatic offsets.
    let (code, v) = plan_json(
        "esp32",
        &table("idf-partitions_two_ota_large.csv"),
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--flash-size", &"4MB"],
    );
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(
        layout(&v),
        l(&[
            (0x1000, "bootloader"),
            (0x8000, "partition-table"),
            (0xf000, "otadata"),
            (0x20000, "app")
        ])
    );
    assert_eq!(v["app"]["partition"], "ota_0");
    // Empty otadata boots ota_0 when there is no factory app: nothing to select.
    assert_eq!(v["otadata_selects"], Value::Null);
    assert_eq!(v["flash_size_source"], "given");
    assert_eq!(v["header"]["flash_size"], "4MB");
}

#[test]
fn table_offset_moves_the_table_and_the_automatic_offsets() {
    let (code, v) = plan_json(
        "esp32",
        &corpus_file(TWO_OTA),
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--flash-size", &"4MB", &"--table-offset", &"0x10000"],
    );
    assert_eq!(code, Some(0), "{v}");
    // nvs 0x11000 (0x4000), otadata 0x15000, phy_init 0x17000, factory 0x20000.
    assert_eq!(
        layout(&v),
        l(&[
            (0x1000, "bootloader"),
            (0x10000, "partition-table"),
            (0x15000, "otadata"),
            (0x20000, "app")
        ])
    );
    // A bootloader reaching into the table's sector is refused.
    let o = plan(
        "esp32",
        &corpus_file(TWO_OTA),
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--flash-size", &"4MB", &"--table-offset", &"0x7000"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("it is 24864 bytes at 0x1000, so it reaches the flash sector of the partition table at 0x7000"), "{}", stderr(&o));
}

#[test]
fn generated_files_equal_the_esp_idf_build_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("gen");
    let o = plan(
        "esp32",
        &corpus_file(TWO_OTA),
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--flash-size", &"4MB", &"--esptool", &"--out-dir", &out],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let cmd = stdout(&o);
    let expected = format!(
        "esptool --chip esp32 write-flash --flash-size 4MB 0x1000 {} 0x8000 {} 0xd000 {} 0x10000 {}\n",
        corpus_file(BOOT_ESP32).display(),
        out.join("partition-table.bin").display(),
        out.join("ota_data_initial.bin").display(),
        corpus_file(APP_ESP32).display()
    );
    assert_eq!(cmd, expected);
    // The table is what gen_esp32part.py makes from the CSV; otadata is ESP-IDF's
    // ota_data_initial.bin.
    assert_eq!(
        std::fs::read(out.join("partition-table.bin")).unwrap(),
        std::fs::read(table("idf-partitions_two_ota.ref.bin")).unwrap()
    );
    assert_eq!(
        std::fs::read(out.join("ota_data_initial.bin")).unwrap(),
        std::fs::read(corpus_file("otadata/valuecam-ota_data_initial.bin")).unwrap()
    );
}

#[test]
fn esptool_output_needs_out_dir_for_generated_files() {
    let o = plan(
        "esp32",
        &corpus_file(TWO_OTA),
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--flash-size", &"4MB", &"--esptool"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("add --out-dir DIR"), "{}", stderr(&o));
    // A binary table needs nothing generated when there is no otadata.
    let o = plan(
        "esp32",
        &table("idf-partitions_singleapp.ref.bin"),
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--esptool"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!(
            "0x8000 {}",
            table("idf-partitions_singleapp.ref.bin").display()
        )),
        "{}",
        stdout(&o)
    );
}

#[test]
fn human_table_names_every_region_and_source() {
    let o = plan(
        "esp32",
        &corpus_file(TWO_OTA),
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--flash-size", &"4MB"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for needle in [
        "Flash plan for ESP32 (4.00 MiB flash; partition table at 0x8000)",
        "0x1000     0x6120     bootloader",
        "0x8000     0xc00      partition-table  -          generated from",
        "0xd000     0x2000     otadata          otadata    generated: ota_data_initial, all 0xFF",
        "0x10000    0x1e600    app              factory",
        "hello_world v1.4.1-2-g0296947-dirty",
        "note: the bootloader header's flash size is changed from 2 MiB to 4 MiB",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn web_ui_goes_to_www_0_or_the_first_file_system_partition() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www.bin");
    std::fs::write(&www, vec![0x42u8; 5000]).unwrap();
    let with = tmp.path().join("with.csv");
    std::fs::write(
        &with,
        "nvs,data,nvs,,0x6000\notadata,data,ota,,0x2000\nota_0,app,ota_0,,768K\n\
         ota_1,app,ota_1,,768K\nstorage,data,spiffs,,64K\nwww_0,data,littlefs,,128K\n",
    )
    .unwrap();
    let (code, v) = plan_json(
        "esp32",
        &with,
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--www", &www],
    );
    assert_eq!(code, Some(0), "{v}");
    let r = &v["regions"][4];
    assert_eq!(r["kind"], "www");
    assert_eq!(r["partition"], "www_0");
    assert_eq!(r["offset"], 0x1b0000);
    assert_eq!(r["size"], 5000);

    let without = tmp.path().join("without.csv");
    std::fs::write(
        &without,
        "nvs,data,nvs,,0x6000\notadata,data,ota,,0x2000\nota_0,app,ota_0,,768K\n\
         ota_1,app,ota_1,,768K\nstorage,data,spiffs,,64K\n",
    )
    .unwrap();
    let (code, v) = plan_json(
        "esp32",
        &without,
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--www", &www],
    );
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["regions"][4]["partition"], "storage");
    assert_eq!(v["regions"][4]["offset"], 0x1a0000);
    let notes = v["notes"].to_string();
    assert!(
        notes.contains(
            "no `www_0` partition: the web UI goes to `storage`, the first data/spiffs partition"
        ),
        "{notes}"
    );

    // No file system partition at all.
    let o = plan(
        "esp32",
        &table("idf-partitions_singleapp.csv"),
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--www", &www],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("add `www_0, data, littlefs"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn nvs_image_goes_to_the_nvs_partition_and_must_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let nvs = tmp.path().join("nvs.bin");
    std::fs::write(&nvs, vec![0x11u8; 0x4000]).unwrap();
    let (code, v) = plan_json(
        "esp32",
        &corpus_file(TWO_OTA),
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--flash-size", &"4MB", &"--nvs", &nvs],
    );
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["regions"][2]["kind"], "nvs");
    assert_eq!(v["regions"][2]["offset"], 0x9000);
    std::fs::write(&nvs, vec![0x11u8; 0x4001]).unwrap();
    let o = plan(
        "esp32",
        &corpus_file(TWO_OTA),
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--flash-size", &"4MB", &"--nvs", &nvs],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "the NVS image is 16385 bytes but partition `nvs` at 0x9000 holds only 16384 bytes"
        ),
        "{}",
        stderr(&o)
    );
}

// ---- seed 000: every mistake is refused, saying what is wrong and what to do.

#[test]
fn seed_app_too_big_for_its_slot() {
    // Tasmota (1.23 MB) into the 1 MB factory slot of partitions_two_ota.
    let app = corpus_file("app-images/tasmota-sml/tasmota32_ottelo_tas-15.5.0.bin");
    let o = plan(
        "esp32",
        &corpus_file(TWO_OTA),
        &corpus_file(BOOT_ESP32),
        &app,
        &[&"--flash-size", &"4MB"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    // 1293120 bytes x 1.2, rounded up to 64 KiB: 0x180000.
    for needle in [
        "the image is 1293120 bytes (1.23 MiB) but partition `factory` at 0x10000 holds 1048576 bytes",
        "123.3% full",
        "at least 0x180000 bytes",
        "hint: otter size",
        "--explain",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    let (_, v) = plan_json(
        "esp32",
        &corpus_file(TWO_OTA),
        &corpus_file(BOOT_ESP32),
        &app,
        &[&"--flash-size", &"4MB"],
    );
    assert_eq!(v["error"], "app-too-big");
    assert_eq!(v["ok"], false);
}

#[test]
fn seed_app_at_a_non_app_offset() {
    // 0x9000 is the nvs partition; 0x20000 is inside factory, not its start.
    for (offset, found) in [
        ("0x9000", "(`nvs`, a data/nvs partition, starts there)"),
        ("0x20000", ""),
    ] {
        let o = plan(
            "esp32",
            &corpus_file(TWO_OTA),
            &corpus_file(BOOT_ESP32),
            &corpus_file(APP_ESP32),
            &[&"--flash-size", &"4MB", &"--app-offset", &offset],
        );
        assert_eq!(o.status.code(), Some(1), "{offset}");
        let err = stderr(&o);
        assert!(
            err.contains(&format!(
                "app offset {offset} is not the start of an app partition"
            )),
            "{err}"
        );
        assert!(err.contains(found), "{err}");
        assert!(err.contains("invalid magic byte"), "{err}");
        assert!(
            err.contains("use factory at 0x10000, ota_0 at 0x110000, ota_1 at 0x210000"),
            "{err}"
        );
        assert!(err.contains("hint: drop --app-offset"), "{err}");
    }
    // The start of an OTA slot is fine; otadata then selects it, because
    // empty otadata would boot factory instead.
    let (code, v) = plan_json(
        "esp32",
        &corpus_file(TWO_OTA),
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--flash-size", &"4MB", &"--app-offset", &"0x210000"],
    );
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["app"]["partition"], "ota_1");
    assert_eq!(v["otadata_selects"], 1);
    assert!(
        v["notes"].to_string().contains("otadata selects it"),
        "{}",
        v["notes"]
    );
}

#[test]
fn seed_missing_otadata_with_two_ota_slots() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("no-otadata.csv");
    std::fs::write(&csv, "nvs,data,nvs,0x9000,0x5000\napp0,app,ota_0,0x10000,0x100000\napp1,app,ota_1,0x110000,0x100000\n").unwrap();
    let o = plan(
        "esp32",
        &csv,
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--flash-size", &"4MB"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("the table has 2 OTA slot(s) but no otadata partition"),
        "{err}"
    );
    assert!(err.contains("add `otadata, data, ota, , 0x2000`"), "{err}");
    let (_, v) = plan_json(
        "esp32",
        &csv,
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--flash-size", &"4MB"],
    );
    assert_eq!(v["error"], "missing-otadata");
}

#[test]
fn seed_bootloader_for_the_wrong_chip() {
    let o = plan(
        "esp32s3",
        &corpus_file(TWO_OTA),
        &corpus_file("bootloaders/esp-serial-flasher/bootloader-esp32c3.bin"),
        &corpus_file("app-images/esp-serial-flasher/hello_world-esp32s3.bin"),
        &[&"--flash-size", &"4MB"],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("bootloader-esp32c3.bin: bootloader: this is a bootloader for ESP32-C3, but the device is ESP32-S3"), "{err}");
    assert!(
        err.contains("flash the bootloader built for ESP32-S3"),
        "{err}"
    );
    // The app passed as the bootloader.
    let o = plan(
        "esp32",
        &corpus_file(TWO_OTA),
        &corpus_file(APP_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--flash-size", &"4MB"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("this is an app image, not a second-stage bootloader"),
        "{}",
        stderr(&o)
    );
    // The app for another chip.
    let o = plan(
        "esp32",
        &corpus_file(TWO_OTA),
        &corpus_file(BOOT_ESP32),
        &corpus_file("app-images/esp-serial-flasher/hello_world-esp32c3.bin"),
        &[&"--flash-size", &"4MB"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("app: the image is built for ESP32-C3, but the device is ESP32"),
        "{}",
        stderr(&o)
    );
    // A merged flash image passed as the app.
    let o = plan(
        "esp32c3",
        &corpus_file(TWO_OTA),
        &corpus_file("bootloaders/esp-serial-flasher/bootloader-esp32c3.bin"),
        &corpus_file("negative/merged-flash-image-esp32c3.bin"),
        &[&"--flash-size", &"4MB"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("this is a merged full-flash image"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn seed_table_larger_than_the_flash() {
    // partitions_two_ota ends at 0x310000; the corpus bootloader says 2 MB.
    let o = plan(
        "esp32",
        &corpus_file(TWO_OTA),
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("the partitions end at 0x310000 (3.06 MiB), but the bootloader's image header says the flash is 2 MiB"), "{err}");
    assert!(
        err.contains("hint: if the flash chip is larger, say so: --flash-size 4MB"),
        "{err}"
    );
    // A flash size given explicitly: gen_esp32part.py's check.
    let (code, v) = plan_json(
        "esp32",
        &corpus_file(TWO_OTA),
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--flash-size", &"2MB"],
    );
    assert_eq!(code, Some(1));
    assert_eq!(v["error"], "table-exceeds-flash");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("does not fit in the configured flash size 2 MiB"),
        "{msg}"
    );
    assert!(
        msg.contains("choose a larger flash size or shrink the partitions"),
        "{msg}"
    );
}

#[test]
fn unreadable_inputs_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("bad.csv");
    std::fs::write(&csv, "nvs,data,nvs,0x9000\n").unwrap();
    let o = plan(
        "esp32",
        &csv,
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad.csv"), "{}", stderr(&o));
    let o = plan(
        "esp32",
        &corpus_file(TWO_OTA),
        &csv,
        &corpus_file(APP_ESP32),
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("bootloader: not a readable ESP32 image"),
        "{}",
        stderr(&o)
    );
    let o = plan(
        "esp32",
        &corpus_file(TWO_OTA),
        &corpus_file(BOOT_ESP32),
        &corpus_file(APP_ESP32),
        &[&"--flash-size", &"3MB"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o)
            .contains("--flash-size: flash size 0x300000 is not one ESP32 image headers can hold"),
        "{}",
        stderr(&o)
    );
    let o = plan(
        "esp99",
        &corpus_file(TWO_OTA),
        &csv,
        &corpus_file(APP_ESP32),
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown chip \"esp99\""),
        "{}",
        stderr(&o)
    );
}
