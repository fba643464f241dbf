//! `otter discover`: list otter devices on the local network over mDNS.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use otter_agent::mdns::{self, FoundDevice, MdnsOptions};

use crate::output;

/// The longest `--timeout` accepted, in seconds.
const MAX_TIMEOUT_SECS: f64 = 600.0;

/// Arguments of `otter discover`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// How long to listen for answers, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "3",
        value_parser = parse_timeout,
        allow_negative_numbers = true
    )]
    timeout: Duration,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Look on IPv4 loopback only (virtual devices on 127.0.0.1), not on the network.
    #[arg(long)]
    loopback: bool,
}

/// Runs `otter discover`. Finding nothing is not a failure: the exit code is 0
/// either way.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opts = if args.loopback {
        MdnsOptions::loopback()
    } else {
        MdnsOptions::all()
    };
    let found =
        mdns::browse(args.timeout, &opts).context("browsing for otter devices over mDNS")?;
    if args.json {
        output::print_json(&found)?;
    } else if found.is_empty() {
        eprintln!("no otter devices found in {}s", args.timeout.as_secs_f64());
    } else {
        print_table(&found)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--timeout`: a positive number of seconds, fractions allowed.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= MAX_TIMEOUT_SECS) {
        return Err(format!(
            "the timeout must be more than 0 and at most {MAX_TIMEOUT_SECS} seconds"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Prints one line per device, in aligned columns.
fn print_table(found: &[FoundDevice]) -> anyhow::Result<()> {
    use std::io::Write;

    const HEADER: [&str; 6] = ["INSTANCE", "URL", "CHIP", "VERSION", "PROJECT", "AUTH"];
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let rows: Vec<[String; 6]> = found
        .iter()
        .map(|d| {
            [
                d.instance.clone(),
                d.url.clone(),
                dash(&d.chip),
                dash(&d.version),
                dash(&d.project),
                dash(&d.auth),
            ]
        })
        .collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let header = HEADER.map(str::to_owned);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(out, "{line}").context("writing to standard output")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_positive_seconds() {
        assert_eq!(parse_timeout("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_timeout("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "nan", "inf", "601", "soon"] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
    }
}
