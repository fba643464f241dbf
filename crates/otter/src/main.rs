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

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(output::EXIT_ERROR)
        }
    }
}

/// A reader that closed our standard output (`otter ... | head`) is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
