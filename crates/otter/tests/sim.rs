//! `otter sim powercut` end to end.
//!
//! The test runs `--quick` (about 300 cut points, a few seconds in the debug
//! build tests use). The standard matrix (thousands of cut points, a minute
//! of CPU in debug) is the same library call, `otter_sim::powercut::run_all`,
//! and is run in full by otter-sim's `tests/power_cut.rs`, which asserts
//! `cut_points >= 3000`, no failures and that the real image was used;
//! running it a second time here would only double the suite's runtime.

mod util;

use util::{corpus, run_otter, stderr, stdout};

#[test]
fn powercut_quick_json_reports_no_failures() {
    let corpus = corpus();
    let out = run_otter([
        std::ffi::OsString::from("sim"),
        "powercut".into(),
        "--json".into(),
        "--quick".into(),
        "--corpus".into(),
        corpus.into_os_string(),
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}\n{}", stderr(&out), text);
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON on stdout");
    assert_eq!(v["failures"].as_array().map(Vec::len), Some(0), "{text}");
    assert_eq!(v["matrix"], "quick");
    assert_eq!(
        v["real_image"],
        "app-images/esp-serial-flasher/hello_world-esp32s3.bin"
    );
    let cuts = v["cut_points"].as_u64().expect("cut_points");
    assert!((200..2000).contains(&cuts), "quick ran {cuts} cut points");
    let scenarios = v["scenarios"].as_u64().expect("scenarios");
    assert_eq!(
        scenarios,
        v["cases"].as_array().map_or(0, |c| c.len() as u64)
    );
    assert!(scenarios >= 10, "{scenarios} cases");
}

#[test]
fn powercut_text_names_the_real_image_and_bad_seed_is_an_error() {
    let out = run_otter(["sim", "powercut", "--quick", "--filter", "reboot-pending"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}\n{}", stderr(&out), text);
    assert!(text.contains("0 failures"), "{text}");
    assert!(text.contains("real image:"), "{text}");
    assert!(text.contains("ok: "), "{text}");

    let out = run_otter(["sim", "powercut", "--seed", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn powercut_missing_corpus_is_an_error() {
    let out = run_otter([
        "sim",
        "powercut",
        "--quick",
        "--corpus",
        "/nonexistent/corpus",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/corpus"),
        "{}",
        stderr(&out)
    );
}
