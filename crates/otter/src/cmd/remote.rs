//! `otter device status|confirm|rollback|reboot|check --to URL`: a device
//! reached over its HTTP API (docs/device-api.md) instead of curl.
//!
//! Exit codes: 0 when the device did what was asked, 1 when it answered
//! and refused (409 `rollback_impossible`, 404 `pull_not_configured`, a
//! refused release, ...), 2 when it could not be asked (unreachable, a
//! missing or wrong token).

use std::process::ExitCode;

use anyhow::bail;
use serde_json::{json, Value};

use crate::cmd::push::Client;
use crate::output::{self, human_size};

/// How to reach a device: `--to` and `--token`.
#[derive(Debug, clap::Args)]
pub struct Remote {
    /// The device: HOST, HOST:PORT, [IPv6]:PORT or http://HOST:PORT
    /// (http:// and port 3232 when missing).
    #[arg(long)]
    pub to: String,
    /// Bearer token for the device's API.
    #[arg(long, env = "OTTER_TOKEN")]
    pub token: Option<String>,
    /// Print the device's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A request the remote commands make.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// `POST /api/ota/confirm`.
    Confirm,
    /// `POST /api/ota/rollback`.
    Rollback,
    /// `POST /api/ota/reboot`.
    Reboot,
    /// `POST /api/ota/check`.
    Check,
}

impl Action {
    fn path(self) -> &'static str {
        match self {
            Action::Confirm => "/api/ota/confirm",
            Action::Rollback => "/api/ota/rollback",
            Action::Reboot => "/api/ota/reboot",
            Action::Check => "/api/ota/check",
        }
    }
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("-")
}

/// `otter device status --to URL`.
pub fn status(r: &Remote) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(&r.to, r.token.clone())?;
    client.quiet = r.json;
    let st = client.status()?;
    if r.json {
        output::print_json(&st)?;
        return Ok(ExitCode::SUCCESS);
    }
    let onoff = |b: Option<bool>| match b {
        Some(true) => "on",
        Some(false) => "off",
        None => "?",
    };
    println!(
        "device {}: {}, {} flash, rollback {}, anti-rollback {}",
        client.base,
        text(&st, "/chip"),
        st.get("flash_size")
            .and_then(Value::as_u64)
            .map_or_else(|| "?".into(), human_size),
        onoff(st.get("rollback").and_then(Value::as_bool)),
        st.get("anti_rollback")
            .and_then(Value::as_u64)
            .map_or_else(|| "off".into(), |n| format!("on (eFuse counter {n})"))
    );
    match st.get("running").filter(|r| !r.is_null()) {
        Some(run) => println!(
            "running: {} @ {:#x}: {} {} (state {}, secure_version {})",
            text(run, "/label"),
            run.get("offset").and_then(Value::as_u64).unwrap_or(0),
            text(run, "/project_name"),
            text(run, "/version"),
            run.get("state").and_then(Value::as_str).unwrap_or("none"),
            run.get("secure_version")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        ),
        None => println!("running: nothing"),
    }
    println!("boot:    {}", text(&st, "/boot/label"));
    println!("next:    {}", text(&st, "/next/label"));
    println!(
        "uptime:  {:.1} s, boot {}; self-test {}",
        st.get("uptime_ms").and_then(Value::as_u64).unwrap_or(0) as f64 / 1000.0,
        st.get("boot_count").and_then(Value::as_u64).unwrap_or(0),
        text(&st, "/selftest/state")
    );
    println!("slots:");
    println!(
        "  {:<8} {:<8} {:>10}  {:<7} {:<12} {:<10} ERROR",
        "SLOT", "OFFSET", "SIZE", "VERDICT", "VERSION", "STATE"
    );
    for s in st
        .get("slots")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let line = format!(
            "  {:<8} {:#08x} {:>10}  {:<7} {:<12} {:<10} {}",
            text(s, "/label"),
            s.get("offset").and_then(Value::as_u64).unwrap_or(0),
            human_size(s.get("size").and_then(Value::as_u64).unwrap_or(0)),
            text(s, "/verdict"),
            text(s, "/version"),
            text(s, "/state"),
            s.get("error").and_then(Value::as_str).unwrap_or("")
        );
        println!("{}", line.trim_end());
    }
    if let Some(u) = st.get("last_update").filter(|u| !u.is_null()) {
        println!(
            "last update: {} {} to {} ({})",
            text(u, "/kind"),
            text(u, "/version"),
            text(u, "/slot"),
            text(u, "/result")
        );
    }
    if let Some(rb) = st.get("last_rollback").filter(|r| !r.is_null()) {
        println!(
            "last rollback: from {} ({}): {}",
            text(rb, "/from"),
            text(rb, "/version"),
            text(rb, "/reason")
        );
    }
    if let Some(p) = st.get("pull").filter(|p| !p.is_null()) {
        println!("pull:    {}", text(p, "/step"));
    }
    Ok(ExitCode::SUCCESS)
}

/// `otter device confirm|rollback|reboot|check --to URL`.
pub fn act(action: Action, r: &Remote) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(&r.to, r.token.clone())?;
    client.quiet = r.json;
    let a = client.post_empty(action.path())?;
    match a.status {
        401 => bail!("the device requires a token: pass --token TOKEN (or set OTTER_TOKEN)"),
        403 => bail!("the device refused the token: {}", a.message()),
        _ => {}
    }
    // A pull check that ran but refused or failed the release is a refusal.
    let refused = !(200..300).contains(&a.status)
        || matches!(
            a.body.get("result").and_then(Value::as_str),
            Some("refused" | "failed")
        );
    if r.json {
        output::print_json(&json!({ "ok": !refused, "http_status": a.status, "answer": a.body }))?;
        return Ok(output::check_exit(!refused));
    }
    let message = a
        .body
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string);
    if refused {
        let code = a.body.get("error").and_then(Value::as_str).unwrap_or("");
        eprintln!(
            "error: the device refused ({} {code}): {}",
            a.status,
            message.unwrap_or_else(|| a.body.to_string())
        );
        return Ok(output::check_exit(false));
    }
    match (action, message) {
        (_, Some(m)) => println!("{m}"),
        (Action::Reboot, None) => println!("the device at {} reboots", client.base),
        (_, None) => println!("{}", a.body),
    }
    if let (Action::Check, Some(res)) = (action, a.body.get("result").and_then(Value::as_str)) {
        println!("result: {res}");
    }
    Ok(ExitCode::SUCCESS)
}
