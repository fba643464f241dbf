//! Helpers shared by the `otter` binary's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/otter sits two levels below the workspace root")
        .to_path_buf()
}

/// The shared corpus of real third-party files: `$OTTER_CORPUS`, else
/// `../shared/corpus` beside the workspace. Panics loudly when missing: tests
/// that need it must not pass quietly without it.
pub fn corpus() -> PathBuf {
    let dir = match std::env::var_os("OTTER_CORPUS") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("../shared/corpus"),
    };
    assert!(
        dir.join("README.md").is_file(),
        "the test corpus is missing at {} (set OTTER_CORPUS to its folder)",
        dir.display()
    );
    dir
}

/// A file in the corpus, by path relative to the corpus root.
pub fn corpus_file(rel: &str) -> PathBuf {
    let p = corpus().join(rel);
    assert!(p.is_file(), "corpus file missing: {}", p.display());
    p
}

/// The project-local Python with the oracles installed (`scripts/setup-oracles.sh`).
/// Panics loudly when it is missing.
pub fn python() -> PathBuf {
    let py = match std::env::var_os("OTTER_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join(".venv/bin/python"),
    };
    assert!(
        py.is_file(),
        "the Python oracles are not installed at {}: run scripts/setup-oracles.sh (scripts/test.sh does)",
        py.display()
    );
    py
}

/// A `Command` for the `otter` binary under test.
pub fn otter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_otter"))
}

/// Runs `otter` with `args` and returns its output.
pub fn run_otter<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    otter().args(args).output().expect("spawning otter")
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `code` with the project's Python (`python -c CODE ARGS...`) and
/// parses what it prints as JSON. Panics with Python's error output when it
/// fails.
pub fn python_json(code: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python did not print JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
