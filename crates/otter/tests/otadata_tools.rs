//! `otter otadata show | init | select` on otadata files and on full flash
//! images, against an independent Python model of ESP-IDF's
//! `esp_rewrite_ota_data` (CRC from `binascii.crc32`, as the ROM computes it)
//! and against otter's model of the bootloader.

mod util;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use util::{corpus_file, python, run_otter, stderr, stdout};

/// What `esp_ota_set_boot_partition` writes, restated in Python from
/// ESP-IDF's esp_ota_ops.c (`esp_rewrite_ota_data`) and
/// bootloader_common_loader.c (validity, active entry, CRC).
///
/// argv: START_FILE OUT_DIR SLOTS STATE RULE STEP... ; STATE is the raw
/// ota_state written (0xFFFFFFFF without rollback, 0 = NEW with it), RULE is
/// `v6` (same slot: rewrite the active sector) or `v5` (other sector), a STEP
/// is a slot number or `factory`. Writes OUT_DIR/step<i>.bin after each step.
/// When START_FILE is erased, also checks that the first step writes what
/// otatool.py's switch_ota_partition writes on erased otadata.
const ESP_IDF_MODEL: &str = r#"
import binascii, struct, sys
start, out, n, state, rule = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4], 0), sys.argv[5]
steps = sys.argv[6:]
SEC = 0x1000
def crc(seq):
    return binascii.crc32(struct.pack('<I', seq), 0xFFFFFFFF) & 0xFFFFFFFF
def entry(buf, s):
    seq, = struct.unpack_from('<I', buf, s * SEC)
    st, c = struct.unpack_from('<II', buf, s * SEC + 24)
    return seq, st, c
def valid(e):
    seq, st, c = e
    return seq != 0xFFFFFFFF and st not in (3, 4) and c == crc(seq)
def active(buf):
    e = [entry(buf, 0), entry(buf, 1)]
    v = [valid(x) for x in e]
    if v[0] and v[1]:
        return 1 if e[1][0] > e[0][0] else 0
    return 0 if v[0] else 1 if v[1] else -1
buf = bytearray(open(start, 'rb').read())
assert len(buf) == 2 * SEC
erased = all(b == 0xFF for b in buf)
for i, step in enumerate(steps):
    if step == 'factory':
        buf = bytearray(b'\xff' * 2 * SEC)
    else:
        k = int(step)
        a = active(buf)
        if a == -1:
            sector, seq = 0, k + 1
        else:
            s = entry(buf, a)[0]
            if (s - 1) % n == k:
                sector, seq = (a, s) if rule == 'v6' else (1 - a, s)
            else:
                base, j = (k + 1) % n, 0
                while base + j * n < s:
                    j += 1
                sector, seq = 1 - a, base + j * n
        label = bytes(buf[sector * SEC + 4: sector * SEC + 24])
        new = struct.pack('<I', seq) + label + struct.pack('<II', state, crc(seq))
        if i == 0 and erased and state == 0xFFFFFFFF:
            # otatool.py switch_ota_partition on erased otadata: seq and CRC
            # into sector 0 of the old contents, nothing else.
            ot = bytearray(buf)
            ot[0:4] = struct.pack('I', k + 1)
            ot[28:32] = struct.pack('I', binascii.crc32(struct.pack('I', k + 1), 0xFFFFFFFF) % (1 << 32))
        buf[sector * SEC:(sector + 1) * SEC] = new + b'\xff' * (SEC - 32)
        if i == 0 and erased and state == 0xFFFFFFFF:
            assert ot == buf, 'model and otatool disagree on erased otadata'
        assert (entry(buf, active(buf))[0] - 1) % n == k, 'the model does not select its slot'
    open(f'{out}/step{i}.bin', 'wb').write(buf)
"#;

fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

/// Runs the ESP-IDF model over `steps` from `start`; returns the expected
/// otadata after each step.
fn model(start: &Path, slots: u8, state: &str, rule: &str, steps: &[&str]) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(python())
        .arg("-c")
        .arg(ESP_IDF_MODEL)
        .arg(start)
        .arg(dir.path())
        .arg(slots.to_string())
        .arg(state)
        .arg(rule)
        .args(steps)
        .output()
        .expect("running the Python model");
    assert!(o.status.success(), "ESP-IDF model failed: {}", stderr(&o));
    (0..steps.len())
        .map(|i| std::fs::read(dir.path().join(format!("step{i}.bin"))).unwrap())
        .collect()
}

/// Applies `steps` with `otter otadata select` to a copy of `start` and
/// compares every intermediate file with the model.
fn check_against_model(
    start: &Path,
    slots: u8,
    flags: &[&str],
    state: &str,
    rule: &str,
    steps: &[&str],
) {
    let expected = model(start, slots, state, rule, steps);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("otadata.bin");
    std::fs::copy(start, &file).unwrap();
    for (i, step) in steps.iter().enumerate() {
        let mut args = os(&[
            &"otadata",
            &"select",
            step,
            &"--otadata",
            &file,
            &"--slots",
            &slots.to_string(),
        ]);
        args.extend(flags.iter().map(OsString::from));
        let o = run_otter(args);
        assert!(o.status.success(), "step {i} ({step}): {}", stderr(&o));
        let got = std::fs::read(&file).unwrap();
        assert!(got == expected[i], "step {i} ({step}) of {steps:?} {flags:?}: otter wrote otadata that differs from esp_ota_set_boot_partition's");
        // otter's reader (the bootloader's selection) picks the slot.
        let o = run_otter(os(&[
            &"otadata",
            &"info",
            &file,
            &"--slots",
            &slots.to_string(),
            &"--json",
        ]));
        let v = json_of(&o);
        if *step == "factory" {
            assert_eq!(v["selected_slot"], Value::Null);
        } else {
            assert_eq!(
                v["selected_slot"].as_u64(),
                Some(step.parse().unwrap()),
                "step {i}: {v}"
            );
            assert!(v["entries"][v["active"].as_u64().unwrap() as usize]["crc_valid"] == true);
        }
    }
}

fn erased_file(dir: &Path) -> PathBuf {
    let p = dir.join("erased.bin");
    std::fs::write(&p, vec![0xFFu8; 0x2000]).unwrap();
    p
}

#[test]
fn select_writes_what_esp_ota_set_boot_partition_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let erased = erased_file(tmp.path());
    // Two slots, rollback off, ESP-IDF v6 (same slot rewritten in place).
    check_against_model(
        &erased,
        2,
        &[],
        "0xFFFFFFFF",
        "v6",
        &["0", "1", "0", "1", "1", "0", "factory", "1"],
    );
    // Three slots, rollback on (NEW), ESP-IDF v5 rule (same slot: other sector).
    check_against_model(
        &erased,
        3,
        &["--rollback", "--idf-v5"],
        "0",
        "v5",
        &["2", "2", "0", "1", "1", "2", "0"],
    );
    // From Arduino's boot_app0.bin (sector 1 holds seq 0, whose CRC is 0xFFFFFFFF).
    check_against_model(
        &corpus_file("otadata/arduino-boot_app0.bin"),
        2,
        &[],
        "0xFFFFFFFF",
        "v6",
        &["1", "1", "0", "1"],
    );
}

#[test]
fn select_json_reports_the_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let file = erased_file(tmp.path());
    let v = json_of(&run_otter(os(&[
        &"otadata",
        &"select",
        &"ota_1",
        &"--otadata",
        &file,
        &"--slots",
        &"2",
        &"--json",
    ])));
    assert_eq!(v["slot"], "ota_1");
    assert_eq!(v["sector"], 0);
    assert_eq!(v["seq"], 2);
    assert_eq!(v["state"], "undefined");
    // ESP-IDF's vector for seq 2 (esp_rom_crc32_le(0xFFFFFFFF, le32(2))).
    assert_eq!(v["crc"], "0x55f63774");
    // Out of range, and --slots missing.
    let o = run_otter(os(&[
        &"otadata",
        &"select",
        &"2",
        &"--otadata",
        &file,
        &"--slots",
        &"2",
    ]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("ota_2 does not exist: the table has 2 contiguous OTA slots"),
        "{}",
        stderr(&o)
    );
    let o = run_otter(os(&[&"otadata", &"select", &"1", &"--otadata", &file]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--slots N is needed with --otadata"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn init_and_show_on_otadata_files() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("new.bin");
    let o = run_otter(os(&[&"otadata", &"init", &"--otadata", &file]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&file).unwrap(),
        std::fs::read(corpus_file("otadata/valuecam-ota_data_initial.bin")).unwrap(),
        "init writes ESP-IDF's ota_data_initial.bin"
    );
    let v = json_of(&run_otter(os(&[
        &"otadata",
        &"show",
        &"--otadata",
        &file,
        &"--json",
    ])));
    assert_eq!(v["state"], "empty");
    assert_eq!(v["ok"], true);
    let v = json_of(&run_otter(os(&[
        &"otadata",
        &"show",
        &"--otadata",
        &corpus_file("otadata/arduino-boot_app0.bin"),
        &"--json",
    ])));
    assert_eq!(v["state"], "selects");
    assert_eq!(v["selected_slot"], 0);
    // Zeros: neither erased nor a valid entry.
    std::fs::write(&file, vec![0u8; 0x2000]).unwrap();
    let o = run_otter(os(&[&"otadata", &"show", &"--otadata", &file]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("it was never initialised"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains(&format!(
            "fix: otter otadata init --otadata {}",
            file.display()
        )),
        "{}",
        stdout(&o)
    );
}

// ---- full flash images

const BOOT_C3: &str = "bootloaders/esp-serial-flasher/bootloader-esp32c3.bin";
const APP_C3: &str = "app-images/esp-serial-flasher/hello_world-esp32c3.bin";
const BOOT_ESP32: &str = "bootloaders/esp-serial-flasher/bootloader-esp32.bin";
const APP_ESP32: &str = "app-images/esp-serial-flasher/hello_world-esp32.bin";

fn table(name: &str) -> PathBuf {
    corpus_file(&format!("partition-tables/csv-with-reference-bin/{name}"))
}

/// `otter merge` of the corpus bootloader and app for `chip` with `table`,
/// flash size 4 MB, plus `extra`.
fn merged(
    dir: &Path,
    name: &str,
    chip: &str,
    boot: &str,
    app: &str,
    t: &Path,
    extra: &[&str],
) -> PathBuf {
    let out = dir.join(name);
    let mut args = os(&[
        &"merge",
        &"--chip",
        &chip,
        &"--partitions",
        &t,
        &"--bootloader",
        &corpus_file(boot),
        &"--app",
        &corpus_file(app),
        &"--flash-size",
        &"4MB",
        &"-o",
        &out,
    ]);
    args.extend(extra.iter().map(OsString::from));
    let o = run_otter(args);
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

fn show(flash: &Path) -> (Option<i32>, Value) {
    let o = run_otter(os(&[&"otadata", &"show", &"--flash", &flash, &"--json"]));
    (o.status.code(), json_of(&o))
}

fn select(flash: &Path, slot: &str, extra: &[&str]) -> std::process::Output {
    let mut args = os(&[&"otadata", &"select", &slot, &"--flash", &flash]);
    args.extend(extra.iter().map(OsString::from));
    run_otter(args)
}

/// ESP-IDF's otadata CRC of `seq`, computed by Python's binascii.
fn python_crc(seq: u32) -> String {
    let o = Command::new(python())
        .arg("-c")
        .arg(format!("import binascii, struct; print('%#010x' % (binascii.crc32(struct.pack('<I', {seq}), 0xFFFFFFFF) & 0xFFFFFFFF))"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_string()
}

#[test]
fn select_on_a_flash_image_and_the_bootloader_boots_it() {
    let tmp = tempfile::tempdir().unwrap();
    // ota_0 and ota_1 of 1700K, no factory: ota_0 at 0x20000, ota_1 at 0x1d0000.
    let flash = merged(
        tmp.path(),
        "flash.bin",
        "esp32c3",
        BOOT_C3,
        APP_C3,
        &table("idf-partitions_two_ota_large.csv"),
        &["--fill-flash-size", "4MB"],
    );
    let (code, v) = show(&flash);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["chip"], "esp32c3");
    assert_eq!(v["otadata"]["state"], "empty");
    assert_eq!(v["boots"], "ota_0");
    assert_eq!(v["booted_app"]["offset"], 0x20000);
    assert_eq!(v["booted_app"]["project_name"], "hello_world");

    // Put the same app into ota_1 too, then switch to it.
    let mut bytes = std::fs::read(&flash).unwrap();
    let app = std::fs::read(corpus_file(APP_C3)).unwrap();
    bytes[0x1d0000..0x1d0000 + app.len()].copy_from_slice(&app);
    std::fs::write(&flash, &bytes).unwrap();
    let o = select(&flash, "ota_1", &["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let w = json_of(&o);
    assert_eq!(
        (w["sector"].as_u64(), w["seq"].as_u64()),
        (Some(0), Some(2))
    );
    assert_eq!(w["crc"].as_str().unwrap(), python_crc(2));
    assert_eq!(w["sector_offset"], 0xf000);
    let (code, v) = show(&flash);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(
        (v["selected"].as_str(), v["boots"].as_str()),
        (Some("ota_1"), Some("ota_1"))
    );
    assert_eq!(v["booted_app"]["offset"], 0x1d0000);
    assert_eq!(v["booted_app"]["fell_back"], false);

    // Back to ota_0: the other sector, seq 3.
    let w = json_of(&select(&flash, "ota_0", &["--json"]));
    assert_eq!(
        (w["sector"].as_u64(), w["seq"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(w["crc"].as_str().unwrap(), python_crc(3));
    let (_, v) = show(&flash);
    assert_eq!(v["boots"], "ota_0");
    assert_eq!(v["otadata"]["active"], 1);

    // Nothing else in the image changed: only the otadata sectors differ.
    let after = std::fs::read(&flash).unwrap();
    assert_eq!(after.len(), bytes.len());
    let diff: Vec<usize> = (0..after.len()).filter(|&i| after[i] != bytes[i]).collect();
    assert!(
        diff.iter().all(|&i| (0xf000..0x11000).contains(&i)),
        "bytes outside otadata changed"
    );

    // factory: this table has none.
    let o = select(&flash, "factory", &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("has no factory partition"),
        "{}",
        stderr(&o)
    );

    // init: both sectors erased, the bootloader boots ota_0.
    let o = run_otter(os(&[&"otadata", &"init", &"--flash", &flash]));
    assert!(o.status.success(), "{}", stderr(&o));
    let after = std::fs::read(&flash).unwrap();
    assert!(after[0xf000..0x11000].iter().all(|&b| b == 0xFF));
    let (_, v) = show(&flash);
    assert_eq!(v["otadata"]["state"], "empty");
    assert_eq!(v["boots"], "ota_0");
}

#[test]
fn selecting_an_empty_slot_is_refused_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let flash = merged(
        tmp.path(),
        "flash.bin",
        "esp32c3",
        BOOT_C3,
        APP_C3,
        &table("idf-partitions_two_ota_large.csv"),
        &[],
    );
    let o = select(&flash, "ota_1", &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("ota_1 (`ota_1` at 0x1d0000) holds no valid app"),
        "{err}"
    );
    assert!(err.contains("pass --skip-validate"), "{err}");
    // Skipping validation writes the selection; the bootloader falls back, and show says so.
    let o = select(&flash, "ota_1", &["--skip-validate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (code, v) = show(&flash);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["selected"], "ota_1");
    assert_eq!(v["boots"], "ota_0");
    assert_eq!(v["booted_app"]["fell_back"], true);
    assert_eq!(v["problems"][0]["code"], "selected-slot-not-bootable");
    let msg = v["problems"][0]["message"].as_str().unwrap();
    assert!(msg.contains("otadata selects ota_1, but it holds no valid app, so the bootloader falls back to ota_0"), "{msg}");
}

/// Seed 000, issue 2: the app flashed to an OTA slot that empty otadata does
/// not boot. The plan selects that slot, so the device boots it.
#[test]
fn seed_app_flashed_to_ota_1_boots_because_otadata_selects_it() {
    let tmp = tempfile::tempdir().unwrap();
    let flash = merged(
        tmp.path(),
        "flash.bin",
        "esp32",
        BOOT_ESP32,
        APP_ESP32,
        &table("idf-partitions_two_ota.csv"),
        &["--app-offset", "0x210000"],
    );
    let (code, v) = show(&flash);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["otadata"]["state"], "selects");
    assert_eq!(
        (v["selected"].as_str(), v["boots"].as_str()),
        (Some("ota_1"), Some("ota_1"))
    );
    assert_eq!(v["booted_app"]["offset"], 0x210000);
    // Without otadata selecting it, the same layout would boot nothing valid
    // first: factory is empty. Erase otadata and look.
    let o = run_otter(os(&[&"otadata", &"init", &"--flash", &flash]));
    assert!(o.status.success(), "{}", stderr(&o));
    let (code, v) = show(&flash);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["selected"], "factory");
    assert_eq!(v["boots"], "ota_1");
    assert_eq!(v["problems"][0]["code"], "selected-slot-not-bootable");
}

/// Seed 000: otadata never initialised.
#[test]
fn seed_otadata_not_initialised_is_reported_and_init_fixes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let flash = merged(
        tmp.path(),
        "flash.bin",
        "esp32",
        BOOT_ESP32,
        APP_ESP32,
        &table("idf-partitions_two_ota.csv"),
        &[],
    );
    let mut bytes = std::fs::read(&flash).unwrap();
    // What an earlier firmware could leave behind: not erased, no valid entry.
    for (i, b) in bytes[0xd000..0xf000].iter_mut().enumerate() {
        *b = (i * 31 % 253) as u8;
    }
    std::fs::write(&flash, &bytes).unwrap();
    let (code, v) = show(&flash);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["otadata"]["state"], "not-initialised");
    assert_eq!(v["problems"][0]["code"], "otadata-not-initialised");
    let msg = v["problems"][0]["message"].as_str().unwrap();
    assert!(msg.contains("otadata at 0xd000"), "{msg}");
    assert!(msg.contains("it was never initialised"), "{msg}");
    assert!(
        msg.contains(&format!(
            "fix: otter otadata init --flash {}",
            flash.display()
        )),
        "{msg}"
    );
    let o = run_otter(os(&[&"otadata", &"show", &"--flash", &flash]));
    assert!(
        stdout(&o).contains("problem: otadata at 0xd000"),
        "{}",
        stdout(&o)
    );

    let o = run_otter(os(&[&"otadata", &"init", &"--flash", &flash]));
    assert!(o.status.success(), "{}", stderr(&o));
    let (code, v) = show(&flash);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["otadata"]["state"], "empty");
    assert_eq!(v["boots"], "factory");
}

/// Seed 000: OTA slots but no otadata partition.
#[test]
fn seed_missing_otadata_is_reported_by_show() {
    let tmp = tempfile::tempdir().unwrap();
    let flash = merged(
        tmp.path(),
        "flash.bin",
        "esp32",
        BOOT_ESP32,
        APP_ESP32,
        &table("idf-partitions_two_ota.csv"),
        &[],
    );
    // Replace the table with one that has two OTA slots and no otadata.
    let csv = tmp.path().join("no-otadata.csv");
    std::fs::write(&csv, "nvs,data,nvs,0x9000,0x4000\nphy_init,data,phy,0xf000,0x1000\nfactory,app,factory,0x10000,1M\nota_0,app,ota_0,,1M\nota_1,app,ota_1,,1M\n").unwrap();
    let bin = tmp.path().join("no-otadata.bin");
    let o = run_otter(os(&[&"partitions", &"convert", &csv, &bin]));
    assert!(o.status.success(), "{}", stderr(&o));
    let table = std::fs::read(&bin).unwrap();
    let mut bytes = std::fs::read(&flash).unwrap();
    bytes[0x8000..0x8000 + table.len()].copy_from_slice(&table);
    std::fs::write(&flash, &bytes).unwrap();

    let (code, v) = show(&flash);
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["otadata"], Value::Null);
    assert_eq!(v["problems"][0]["code"], "missing-otadata");
    let msg = v["problems"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("2 OTA slot(s) but no otadata partition"),
        "{msg}"
    );
    assert!(msg.contains("add `otadata, data, ota, , 0x2000`"), "{msg}");
    for cmd in [
        os(&[&"otadata", &"init", &"--flash", &flash]),
        os(&[&"otadata", &"select", &"0", &"--flash", &flash]),
    ] {
        let o = run_otter(cmd);
        assert_eq!(o.status.code(), Some(2));
        assert!(
            stderr(&o).contains("has no otadata (data/ota) partition"),
            "{}",
            stderr(&o)
        );
    }
}

#[test]
fn show_reads_a_real_merged_image() {
    // ESP-IDF 4.x era C3 merge: bootloader, table (nvs, phy_init, factory), app.
    let (code, v) = show(&corpus_file("negative/merged-flash-image-esp32c3.bin"));
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["chip"], "esp32c3");
    assert_eq!(v["otadata"], Value::Null);
    assert_eq!(v["boots"], "factory");
    assert_eq!(v["booted_app"]["project_name"], "uart_test");
    // A file that is no flash image at all.
    let o = run_otter(os(&[
        &"otadata",
        &"show",
        &"--flash",
        &corpus_file(APP_ESP32),
    ]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no valid partition table at 0x8000"),
        "{}",
        stderr(&o)
    );
}
