//! `otter sim powercut` end to end.
//!
//! The whole table (42,000 cut points) is the same library call,
//! `otter_sim::powercut::run`, and runs in release in otter-sim's
//! `tests/power_cut.rs`, which asserts the floor of 25,000 cut points and no
//! failures; here the binary runs one small row, one replayed cut, the list,
//! and its refusals.

mod util;

use util::{corpus, run_otter, stderr, stdout};

fn with_corpus(args: &[&str]) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    v.push("--corpus".into());
    v.push(corpus().into_os_string());
    v
}

#[test]
fn powercut_one_scenario_json_reports_no_failures() {
    let out = run_otter(with_corpus(&[
        "sim",
        "powercut",
        "--json",
        "--scenario",
        "api-rollback",
    ]));
    let text = stdout(&out);
    assert!(out.status.success(), "{}\n{}", stderr(&out), text);
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON on stdout");
    assert_eq!(v["failures"].as_array().map(Vec::len), Some(0), "{text}");
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{text}");
    assert_eq!(rows[0]["row"], "api-rollback");
    let cuts = v["cut_points"].as_u64().expect("cut_points");
    assert_eq!(rows[0]["cut_points"].as_u64(), Some(cuts));
    assert!(
        (40..1000).contains(&cuts),
        "api-rollback ran {cuts} cut points"
    );
    assert_eq!(v["scenarios"].as_u64(), Some(4));
}

#[test]
fn powercut_replays_one_cut_and_lists_the_table() {
    let out = run_otter(with_corpus(&[
        "sim",
        "powercut",
        "--scenario",
        "www-update",
        "--case",
        "1",
        "--fault",
        "3:cut-after:0x5eed",
    ]));
    let text = stdout(&out);
    assert!(out.status.success(), "{}\n{}", stderr(&out), text);
    assert!(text.contains("1 cases, 1 cut points, 0 failures"), "{text}");
    assert!(text.contains("www-update #1"), "{text}");

    // A fault that cannot hit its operation (a torn erase aimed at a
    // program) fails as `replay`, and the failure prints its own replay.
    let out = run_otter(with_corpus(&[
        "sim",
        "powercut",
        "--scenario",
        "www-update",
        "--case",
        "1",
        "--fault",
        "3:torn-erase-scramble:0x5eed",
    ]));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{}\n{text}", stderr(&out));
    assert!(text.contains("invariant `replay` broken"), "{text}");
    assert!(
        text.contains(
            "replay: otter sim powercut --scenario www-update --case 1 --seed 0x7707ea5 --fault 3:torn-erase-scramble:0x5eed"
        ),
        "{text}"
    );

    let out = run_otter(["sim", "powercut", "--list"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    for row in otter_sim::powercut::table::TABLE {
        assert!(
            text.contains(row.name),
            "{} missing from --list:\n{text}",
            row.name
        );
    }
    let out = run_otter(["sim", "powercut", "--list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(
        v.as_array().map(Vec::len),
        Some(otter_sim::powercut::table::TABLE.len())
    );
}

#[test]
fn powercut_refusals_say_what_to_do() {
    let out = run_otter(with_corpus(&["sim", "powercut", "--scenario", "nope"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nvs-gc"), "{}", stderr(&out));

    let out = run_otter(with_corpus(&[
        "sim",
        "powercut",
        "--scenario",
        "nvs-gc",
        "--case",
        "9",
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nvs-gc has 2 cases"),
        "{}",
        stderr(&out)
    );

    let out = run_otter(["sim", "powercut", "--seed", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = run_otter([
        "sim",
        "powercut",
        "--scenario",
        "confirm",
        "--case",
        "0",
        "--fault",
        "1:melt:0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("melt"), "{}", stderr(&out));

    let out = run_otter(["sim", "powercut", "--corpus", "/nonexistent/corpus"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/corpus"),
        "{}",
        stderr(&out)
    );
}
