//! `otter otadata` on real otadata files.

mod util;

use util::{corpus_file, run_otter, stderr, stdout};

#[test]
fn info_json_on_arduino_boot_app0() {
    let f = corpus_file("otadata/arduino-boot_app0.bin");
    let out = run_otter(
        ["otadata", "info", "--json"]
            .map(Into::into)
            .into_iter()
            .chain([f.into_os_string()]),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["active"], 0);
    assert_eq!(v["selected_slot"], 0);
    assert_eq!(v["entries"][0]["seq"], 1);
    assert_eq!(v["entries"][0]["crc"], "0x4743989a");
    assert_eq!(v["entries"][0]["crc_valid"], true);
    assert_eq!(v["entries"][1]["seq"], 0);
    assert_eq!(v["boots"], "ota_0");
}

#[test]
fn info_text_on_initial_otadata() {
    let f = corpus_file("otadata/valuecam-ota_data_initial.bin");
    let out = run_otter([
        std::ffi::OsString::from("otadata"),
        "info".into(),
        f.into_os_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("sector 0 @ 0x0: empty"), "{text}");
    assert!(text.contains("active entry: none"), "{text}");
    assert!(text.contains("factory if present, else ota_0"), "{text}");
}

#[test]
fn info_rejects_mangled_otadata_with_exit_2() {
    let f = corpus_file("negative/corrupted-boot_app0-utf8-mangled.bin");
    let out = run_otter([
        std::ffi::OsString::from("otadata"),
        "info".into(),
        f.into_os_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("not an otadata partition") && err.contains("6145"),
        "{err}"
    );
}
