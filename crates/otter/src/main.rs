//! The `otter` command-line tool: a thin layer over otter's libraries.
//!
//! `main` parses the arguments, runs one command and turns its outcome into an
//! exit code: 0 when everything is fine, 1 when a check failed (the command ran
//! and found a problem), 2 when the command could not run (bad arguments,
//! unreadable or malformed input). Errors are printed once, with their context
//! chain, on standard error.

mod cli;
mod cmd;
mod output;

use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `println!` panics when standard output is a closed pipe; that panic is
    // caught below and means success, so its message is not printed.
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if !is_broken_pipe_panic(info.payload()) {
            default_hook(info);
        }
    }));
    let cli = cli::Cli::parse();
    match panic::catch_unwind(AssertUnwindSafe(|| cli::run(cli))) {
        Ok(Ok(code)) => code,
        Ok(Err(err)) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(output::EXIT_ERROR)
        }
        Err(payload) if is_broken_pipe_panic(payload.as_ref()) => ExitCode::SUCCESS,
        Err(payload) => panic::resume_unwind(payload),
    }
}

/// A reader that closed our standard output (`otter ... | head`) is not an
/// error (ripgrep's rule), whichever command was writing.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

/// The panic of `print!`/`println!` on a closed standard output.
fn is_broken_pipe_panic(payload: &(dyn std::any::Any + Send)) -> bool {
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe")
}
