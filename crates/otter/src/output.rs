//! Output conventions shared by every command: exit codes and JSON printing.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

/// Exit code when a check ran and found a problem.
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code when a command could not run at all.
pub const EXIT_ERROR: u8 = 2;

/// Exit code for a check: success when `ok`, else [`EXIT_CHECK_FAILED`].
pub fn check_exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    }
}

/// Prints `value` as pretty JSON on standard output, followed by a newline.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).context("writing JSON to standard output")?;
    writeln!(out).context("writing to standard output")?;
    Ok(())
}

/// Formats a byte count the way the rest of otter's output does: `1.06 MiB`,
/// `64.00 KiB` or `512 B` (binary units, one convention everywhere).
pub fn human_size(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if bytes >= 1024 * 1024 {
        format!("{:.2} MiB", b / (K * K))
    } else if bytes >= 1024 {
        format!("{:.2} KiB", b / K)
    } else {
        format!("{bytes} B")
    }
}

/// Hex string of a byte slice, lowercase.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// A check that failed before any output was produced: `{ok: false, error,
/// message}` as JSON, or `error: MESSAGE` on standard error; exit 1.
pub fn refuse(json: bool, code: &str, message: &str) -> anyhow::Result<ExitCode> {
    if json {
        print_json(&serde_json::json!({ "ok": false, "error": code, "message": message }))?;
    } else {
        eprintln!("error: {message}");
    }
    Ok(ExitCode::from(EXIT_CHECK_FAILED))
}
