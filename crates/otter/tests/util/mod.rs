//! Helpers shared by the `otter` binary's integration tests.
#![allow(dead_code)]

use std::process::{Command, Output};

#[path = "../../../../tests/support/paths.rs"]
mod paths;
pub use paths::*;

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
