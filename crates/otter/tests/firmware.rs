//! The real firmware (`firmware/`, built by `scripts/build-firmware.sh` for
//! the ESP32-C3 and ESP32-C6) through otter's tools, against esptool 5.6:
//!
//! - `otter image from-elf` equals `esptool elf2image` byte for byte, the
//!   result passes `esptool image-info` and `otter image verify --chip`, and
//!   its app descriptor names the firmware's project and version;
//! - `otter merge` with the corpus ESP-IDF bootloader and
//!   `firmware/partitions.csv` equals `esptool merge-bin` of the same parts;
//! - `otter device create --from-flash` boots that factory image in the
//!   bootloader model from ota_0 and reports the firmware's version.
//!
//! The ELFs are built when missing (into `target/firmware`, as CI caches
//! it); a failed build fails the test.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use util::{corpus_file, python, run_otter, stderr, stdout, workspace_root};

const CHIPS: [(&str, &str); 2] = [
    ("esp32c3", "riscv32imc-unknown-none-elf"),
    ("esp32c6", "riscv32imac-unknown-none-elf"),
];

/// The firmware's version, from `firmware/Cargo.toml`.
fn firmware_version() -> String {
    let toml = std::fs::read_to_string(workspace_root().join("firmware/Cargo.toml"))
        .expect("firmware/Cargo.toml");
    toml.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("a workspace.package version in firmware/Cargo.toml")
        .to_string()
}

fn elf(chip: &str, triple: &str) -> PathBuf {
    let root = workspace_root();
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| d.join("firmware"))
        .filter(|d| d.join(triple).exists())
        .unwrap_or_else(|| root.join("target/firmware"));
    let path = dir.join(triple).join("release/otter-firmware");
    if !path.exists() {
        let o = Command::new("bash")
            .arg(root.join("scripts/build-firmware.sh"))
            .arg(chip)
            .env("CARGO_TARGET_DIR", &dir)
            .output()
            .expect("running scripts/build-firmware.sh");
        assert!(
            o.status.success(),
            "building the {chip} firmware failed:\n{}\n{}",
            stdout(&o),
            stderr(&o)
        );
    }
    assert!(path.exists(), "no firmware ELF at {}", path.display());
    path
}

fn esptool(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let o = Command::new(python())
        .args(["-m", "esptool"])
        .args(args)
        .output()
        .expect("running esptool");
    assert!(
        o.status.success(),
        "esptool {:?} failed:\n{}\n{}",
        args,
        stdout(&o),
        stderr(&o)
    );
    o
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

fn app_image(chip: &str, elf: &Path, dir: &Path) -> PathBuf {
    let ours = dir.join(format!("otter-{chip}.bin"));
    let o = run_otter([
        "image".as_ref(),
        "from-elf".as_ref(),
        elf.as_os_str(),
        "--chip".as_ref(),
        chip.as_ref(),
        "-o".as_ref(),
        ours.as_os_str(),
    ]);
    assert!(o.status.success(), "{chip}: from-elf: {}", stderr(&o));
    ours
}

#[test]
fn from_elf_equals_esptool_elf2image_and_verifies() {
    let version = firmware_version();
    for (chip, triple) in CHIPS {
        let elf = elf(chip, triple);
        let tmp = tempfile::tempdir().unwrap();
        let ours_path = app_image(chip, &elf, tmp.path());
        let theirs_path = tmp.path().join(format!("esptool-{chip}.bin"));
        esptool(&[
            "--chip".as_ref(),
            chip.as_ref(),
            "elf2image".as_ref(),
            elf.as_os_str(),
            "-o".as_ref(),
            theirs_path.as_os_str(),
        ]);
        let ours = std::fs::read(&ours_path).unwrap();
        let theirs = std::fs::read(&theirs_path).unwrap();
        assert!(
            ours == theirs,
            "{chip}: otter from-elf differs from esptool elf2image: lengths {:#x} vs {:#x}, \
             first difference at {:#x}",
            ours.len(),
            theirs.len(),
            first_difference(&ours, &theirs)
        );

        let info = esptool(&["image-info".as_ref(), ours_path.as_os_str()]);
        let text = stdout(&info);
        assert!(
            text.contains("Checksum:") && text.contains("(valid)"),
            "{chip}: esptool image-info: {text}"
        );
        assert!(text.contains("otter-firmware"), "{chip}: {text}");

        let o = run_otter([
            "image".as_ref(),
            "verify".as_ref(),
            ours_path.as_os_str(),
            "--chip".as_ref(),
            chip.as_ref(),
            "--json".as_ref(),
        ]);
        assert!(o.status.success(), "{chip}: verify: {}", stdout(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["valid"], true, "{chip}: {v}");
        let desc = &v["image"]["app_desc"];
        assert_eq!(desc["project_name"], "otter-firmware", "{chip}: {v}");
        assert_eq!(desc["version"], version.as_str(), "{chip}: {v}");
    }
}

#[test]
fn factory_image_equals_esptool_merge_bin_and_boots_in_the_virtual_device() {
    let version = firmware_version();
    let csv = workspace_root().join("firmware/partitions.csv");
    for (chip, triple) in CHIPS {
        let elf = elf(chip, triple);
        let tmp = tempfile::tempdir().unwrap();
        let app = app_image(chip, &elf, tmp.path());
        let boot = corpus_file(&format!(
            "bootloaders/esp-serial-flasher/bootloader-{chip}.bin"
        ));
        let parts = |extra: &[&std::ffi::OsStr]| {
            let mut v: Vec<std::ffi::OsString> = [
                "--chip".as_ref(),
                chip.as_ref(),
                "--partitions".as_ref(),
                csv.as_os_str(),
                "--bootloader".as_ref(),
                boot.as_os_str(),
                "--app".as_ref(),
                app.as_os_str(),
                "--flash-size".as_ref(),
                "4MB".as_ref(),
            ]
            .iter()
            .map(|s: &&std::ffi::OsStr| s.to_os_string())
            .collect();
            v.extend(extra.iter().map(|s| s.to_os_string()));
            v
        };
        // The parts as an esptool write-flash line, merged by esptool.
        let gen = tmp.path().join("gen");
        let o = run_otter(std::iter::once("flash-plan".into()).chain(parts(&[
            "--esptool".as_ref(),
            "--out-dir".as_ref(),
            gen.as_os_str(),
        ])));
        assert!(o.status.success(), "{chip}: flash-plan: {}", stderr(&o));
        let cmd = tmp.path().join("cmd.txt");
        std::fs::write(&cmd, stdout(&o)).unwrap();
        assert!(
            stdout(&o).contains("0xe000") && stdout(&o).contains("0x10000"),
            "{chip}: the plan writes otadata and ota_0: {}",
            stdout(&o)
        );
        let theirs_path = tmp.path().join("esptool-merged.bin");
        let o = Command::new(python())
            .arg(workspace_root().join("tests/oracle/merge_esptool.py"))
            .arg(&theirs_path)
            .arg(&cmd)
            .output()
            .expect("running the esptool merge oracle");
        assert!(o.status.success(), "{chip}: merge-bin: {}", stderr(&o));

        let ours_path = tmp.path().join("otter-merged.bin");
        let o = run_otter(
            std::iter::once("merge".into()).chain(parts(&["-o".as_ref(), ours_path.as_os_str()])),
        );
        assert!(o.status.success(), "{chip}: merge: {}", stderr(&o));
        let ours = std::fs::read(&ours_path).unwrap();
        let theirs = std::fs::read(&theirs_path).unwrap();
        assert!(
            ours == theirs,
            "{chip}: otter merge differs from esptool merge-bin: lengths {:#x} vs {:#x}, first \
             difference at {:#x}",
            ours.len(),
            theirs.len(),
            first_difference(&ours, &theirs)
        );

        let dev = tmp.path().join("dev");
        let o = run_otter([
            "device".as_ref(),
            "create".as_ref(),
            dev.as_os_str(),
            "--from-flash".as_ref(),
            ours_path.as_os_str(),
            "--json".as_ref(),
        ]);
        assert!(o.status.success(), "{chip}: device create: {}", stderr(&o));
        let created: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(created["chip"], chip, "{created}");
        assert_eq!(created["boots"], "ota_0", "{created}");
        let o = run_otter([
            "device".as_ref(),
            "status".as_ref(),
            dev.as_os_str(),
            "--json".as_ref(),
        ]);
        assert!(o.status.success(), "{chip}: device status: {}", stderr(&o));
        let s: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(s["boot"]["slot"], "ota_0", "{s}");
        assert_eq!(s["running"]["project_name"], "otter-firmware", "{s}");
        assert_eq!(s["running"]["version"], version.as_str(), "{s}");
        assert_eq!(
            s["running"]["image_len"],
            std::fs::read(&app).unwrap().len(),
            "{s}"
        );
    }
}
