//! Each row of the power-cut table, built and run on its first case with one
//! cut (after the first mutating operation), in any build profile: the rows
//! set up, their clean runs reach the goal, a cut is replayed and recovered
//! from, and a replay command names exactly that cut. The whole table is
//! `tests/power_cut.rs` (release).

use std::path::PathBuf;

use otter_sim::powercut::{self, table, PowerCutOptions, Replay};
use otter_sim::{Fault, FaultKind};

fn corpus_dir() -> PathBuf {
    let dir = match std::env::var_os("OTTER_CORPUS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
    };
    assert!(
        dir.is_dir(),
        "the test corpus is missing: looked for {} (set OTTER_CORPUS)",
        dir.display()
    );
    dir
}

#[test]
fn every_row_sets_up_and_recovers_from_one_cut() {
    let fault = Fault::new(0, FaultKind::CutAfter, 0x5eed);
    for row in table::TABLE {
        let mut opts = PowerCutOptions::new(corpus_dir());
        opts.scenario = Some(row.name.to_string());
        opts.case = Some(0);
        opts.replay = Some(Replay {
            fault,
            second: None,
        });
        let report = powercut::run(&opts).expect("the row runs");
        assert!(
            report.failures.is_empty(),
            "{}: {}",
            row.name,
            report.failures[0]
        );
        assert_eq!(report.cut_points, 1, "{}: {report}", row.name);
        let r = report.row(row.name).expect("row report");
        assert_eq!((r.cases, r.failures), (1, 0), "{}", row.name);
    }
}

#[test]
fn an_unknown_scenario_or_case_is_refused_with_the_choices() {
    let mut opts = PowerCutOptions::new(corpus_dir());
    opts.scenario = Some("nope".into());
    let e = powercut::run(&opts).expect_err("unknown row");
    assert!(e.contains("nvs-gc") && e.contains("update"), "{e}");
    opts.scenario = Some("nvs-gc".into());
    opts.case = Some(99);
    let e = powercut::run(&opts).expect_err("no such case");
    assert!(e.contains("nvs-gc has 2 cases"), "{e}");
}

#[test]
fn fault_specs_round_trip() {
    for kind in [
        FaultKind::CutBefore,
        FaultKind::CutAfter,
        FaultKind::TornProgram,
        FaultKind::TornErase { scramble: false },
        FaultKind::TornErase { scramble: true },
    ] {
        let f = Fault::new(1234, kind, 0xdead_beef);
        assert_eq!(Fault::parse(&f.spec()), Ok(f));
    }
    assert!(Fault::parse("1:melt:0").unwrap_err().contains("melt"));
    assert!(Fault::parse("x:cut-after:0")
        .unwrap_err()
        .contains("operation index"));
    assert!(Fault::parse("1:cut-after")
        .unwrap_err()
        .contains("OP:KIND:SEED"));
}
