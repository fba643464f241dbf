//! `otter merge` against esptool 5.6.0's `merge-bin`, byte for byte, on every
//! chip that has a real bootloader in the shared corpus.

mod util;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use util::{corpus, corpus_file, python, run_otter, stderr, stdout, workspace_root};

/// Flash offset of the second-stage bootloader, per chip (esptool's
/// `BOOTLOADER_FLASH_OFFSET`), written out here independently of otter.
fn expected_bootloader_offset(chip: &str) -> u32 {
    match chip {
        "esp32" | "esp32s2" => 0x1000,
        "esp32c2" | "esp32c3" | "esp32c6" | "esp32h2" | "esp32s3" => 0x0,
        "esp32c5" | "esp32p4" => 0x2000,
        other => panic!("no bootloader offset known for {other}"),
    }
}

/// Every corpus bootloader (`bootloader-<chip>.bin`) with its chip and the
/// corpus hello-world app for that chip.
fn corpus_chips() -> Vec<(String, PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(corpus().join("bootloaders")).expect("corpus bootloaders") {
        let dir = dir.unwrap().path();
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let Some(chip) = name
                .strip_prefix("bootloader-")
                .and_then(|n| n.strip_suffix(".bin"))
            else {
                continue;
            };
            let app = corpus_file(&format!(
                "app-images/esp-serial-flasher/hello_world-{chip}.bin"
            ));
            out.push((chip.to_string(), f.clone(), app));
        }
    }
    out.sort();
    out
}

fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// Runs the oracle: esptool merge-bin on the files and offsets of `cmd` (an
/// `esptool ... write-flash ...` line), plus `extra` merge-bin options.
fn esptool_merge(cmd_file: &Path, out: &Path, extra: &[&str]) {
    let script = workspace_root().join("tests/oracle/merge_esptool.py");
    let o = Command::new(python())
        .arg(script)
        .arg(out)
        .arg(cmd_file)
        .args(extra)
        .output()
        .expect("running the esptool oracle");
    assert!(
        o.status.success(),
        "esptool merge-bin failed: {}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        stdout(&o).lines().any(|l| l.trim() == "5.6.0"),
        "the oracle must be esptool 5.6.0, got: {}",
        stdout(&o)
    );
}

fn assert_same(what: &str, ours: &[u8], theirs: &[u8]) {
    if ours != theirs {
        let at = ours
            .iter()
            .zip(theirs)
            .position(|(a, b)| a != b)
            .unwrap_or(ours.len().min(theirs.len()));
        panic!(
            "{what}: otter merge differs from esptool merge-bin: lengths {:#x} vs {:#x}, first \
             difference at {at:#x}",
            ours.len(),
            theirs.len()
        );
    }
}

/// One variant of the inputs, as (otter plan args, otter merge-only args,
/// esptool merge-bin extra args).
struct Variant {
    name: &'static str,
    plan: Vec<OsString>,
    merge: Vec<OsString>,
    esptool: Vec<String>,
}

fn variants(chip: &str, boot: &Path, app: &Path, dir: &Path) -> Vec<Variant> {
    let tables = corpus().join("partition-tables/csv-with-reference-bin");
    let base = |table: &Path| {
        os(&[
            &"--chip",
            &chip,
            &"--partitions",
            &table,
            &"--bootloader",
            &boot,
            &"--app",
            &app,
        ])
    };
    // A table with web UI and NVS partitions that fits 2 MB.
    let csv = dir.join("www.csv");
    std::fs::write(
        &csv,
        "nvs,data,nvs,,0x6000\notadata,data,ota,,0x2000\nphy_init,data,phy,,0x1000\n\
         ota_0,app,ota_0,,768K\nota_1,app,ota_1,,768K\nwww_0,data,littlefs,,128K\n",
    )
    .unwrap();
    let www = dir.join("www.bin");
    let nvs = dir.join("nvs.bin");
    std::fs::write(
        &www,
        (0..70_000u32)
            .map(|i| (i * 7 + 3) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    std::fs::write(
        &nvs,
        (0..0x3000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    let target = format!("{:#x}", expected_bootloader_offset(chip));

    let mut two_ota = base(&tables.join("idf-partitions_two_ota.csv"));
    two_ota.extend(os(&[&"--flash-size", &"4MB"]));
    let single = base(&tables.join("idf-partitions_singleapp.csv"));
    let mut full = base(&csv);
    full.extend(os(&[
        &"--www",
        &www,
        &"--nvs",
        &nvs,
        &"--flash-mode",
        &"dio",
        &"--flash-freq",
        &"40m",
    ]));
    vec![
        Variant {
            name: "two_ota, flash size set to 4MB",
            plan: two_ota,
            merge: vec![],
            esptool: vec![],
        },
        Variant {
            name: "singleapp, header kept",
            plan: single,
            merge: vec![],
            esptool: vec![],
        },
        Variant {
            name: "www + nvs, mode and freq set, filled to 2MB from the bootloader offset",
            plan: full,
            merge: os(&[&"--fill-flash-size", &"2MB", &"--target-offset", &target]),
            esptool: vec!["--pad-to-size".into(), "2MB".into(), "-t".into(), target],
        },
    ]
}

#[test]
fn merge_equals_esptool_merge_bin_on_every_corpus_chip() {
    let chips = corpus_chips();
    assert!(
        chips.len() >= 5,
        "expected the corpus bootloaders for esp32, c3, c6, s3 and p4, found {chips:?}"
    );
    let mut compared = Vec::new();
    for (chip, boot, app) in &chips {
        let tmp = tempfile::tempdir().unwrap();
        for (i, v) in variants(chip, boot, app, tmp.path())
            .into_iter()
            .enumerate()
        {
            let what = format!("{chip}: {}", v.name);
            let gen = tmp.path().join(format!("gen{i}"));
            // The write list as an esptool command line, with its generated files.
            let mut args = v.plan.clone();
            args.extend(os(&[&"--esptool", &"--out-dir", &gen]));
            let o = run_otter([OsString::from("flash-plan")].into_iter().chain(args));
            assert!(o.status.success(), "{what}: flash-plan: {}", stderr(&o));
            let cmd = stdout(&o);
            assert!(
                cmd.starts_with(&format!("esptool --chip {chip} write-flash ")),
                "{what}: {cmd}"
            );
            let cmd_file = tmp.path().join(format!("cmd{i}.txt"));
            std::fs::write(&cmd_file, &cmd).unwrap();
            let theirs_path = tmp.path().join(format!("esptool{i}.bin"));
            let extra: Vec<&str> = v.esptool.iter().map(String::as_str).collect();
            esptool_merge(&cmd_file, &theirs_path, &extra);

            let ours_path = tmp.path().join(format!("otter{i}.bin"));
            let mut args = v.plan.clone();
            args.extend(v.merge.clone());
            args.extend(os(&[&"-o", &ours_path]));
            let o = run_otter([OsString::from("merge")].into_iter().chain(args));
            assert!(o.status.success(), "{what}: merge: {}", stderr(&o));

            let ours = std::fs::read(&ours_path).unwrap();
            let theirs = std::fs::read(&theirs_path).unwrap();
            assert_same(&what, &ours, &theirs);
        }
        compared.push(chip.clone());
    }
    eprintln!(
        "otter merge == esptool merge-bin on {} chips: {}",
        compared.len(),
        compared.join(", ")
    );
    assert_eq!(compared.len(), chips.len());
}

/// Independent of otter's own esptool command line: the reference binary
/// table and the corpus `ota_data_initial.bin` at offsets written here.
#[test]
fn merge_of_reference_files_equals_esptool_merge_bin() {
    let boot = corpus_file("bootloaders/esp-serial-flasher/bootloader-esp32.bin");
    let app = corpus_file("app-images/esp-serial-flasher/hello_world-esp32.bin");
    let table =
        corpus_file("partition-tables/csv-with-reference-bin/idf-partitions_two_ota.ref.bin");
    let otadata = corpus_file("otadata/valuecam-ota_data_initial.bin");
    let tmp = tempfile::tempdir().unwrap();
    let ours = tmp.path().join("otter.bin");
    let theirs = tmp.path().join("esptool.bin");

    let o = run_otter(os(&[
        &"merge",
        &"--chip",
        &"esp32",
        &"--partitions",
        &table,
        &"--bootloader",
        &boot,
        &"--app",
        &app,
        &"--flash-size",
        &"4MB",
        &"--flash-mode",
        &"qio",
        &"--flash-freq",
        &"80m",
        &"-o",
        &ours,
        &"--json",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["header"]["flash_size"], "4MB");
    assert_eq!(report["header"]["flash_mode"], "QIO");

    let o = Command::new(python())
        .args(["-m", "esptool", "--chip", "esp32", "merge-bin", "-o"])
        .arg(&theirs)
        .args([
            "--flash-size",
            "4MB",
            "--flash-mode",
            "qio",
            "--flash-freq",
            "80m",
        ])
        .arg("0x1000")
        .arg(&boot)
        .arg("0x8000")
        .arg(&table)
        .arg("0xd000")
        .arg(&otadata)
        .arg("0x10000")
        .arg(&app)
        .env_remove("ESPTOOL_FS")
        .env_remove("ESPTOOL_FM")
        .env_remove("ESPTOOL_FF")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let ours = std::fs::read(&ours).unwrap();
    let theirs = std::fs::read(&theirs).unwrap();
    assert_same("esp32 reference files", &ours, &theirs);
    assert_eq!(report["output_size"], ours.len());
    // The header really changed: QIO (0), 4MB (2) and 80m (0xF) at 0x1000 + 2.
    assert_eq!(&ours[0x1002..0x1004], &[0x00, 0x2F]);
}

#[test]
fn merge_refuses_a_fill_size_below_the_content() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("flash.bin");
    let o = run_otter(os(&[
        &"merge",
        &"--chip",
        &"esp32",
        &"--partitions",
        &corpus_file("partition-tables/csv-with-reference-bin/idf-partitions_singleapp.csv"),
        &"--bootloader",
        &corpus_file("bootloaders/esp-serial-flasher/bootloader-esp32.bin"),
        &"--app",
        &corpus_file("app-images/esp-serial-flasher/hello_world-esp32.bin"),
        &"--fill-flash-size",
        &"64K",
        &"-o",
        &out,
    ]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("past --fill-flash-size 0x10000"),
        "{}",
        stderr(&o)
    );
    assert!(
        !out.exists(),
        "nothing is written when the merge is refused"
    );
}

#[test]
fn merge_refuses_what_flash_plan_refuses() {
    // The C3 bootloader on an ESP32: refused before anything is written.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("flash.bin");
    let o = run_otter(os(&[
        &"merge",
        &"--chip",
        &"esp32",
        &"--partitions",
        &corpus_file("partition-tables/csv-with-reference-bin/idf-partitions_singleapp.csv"),
        &"--bootloader",
        &corpus_file("bootloaders/esp-serial-flasher/bootloader-esp32c3.bin"),
        &"--app",
        &corpus_file("app-images/esp-serial-flasher/hello_world-esp32.bin"),
        &"-o",
        &out,
        &"--json",
    ]));
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["error"], "bootloader-wrong-chip");
    assert!(!out.exists());
}
