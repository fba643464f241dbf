//! `otter fleet`: the fleet server's operator API (docs/fleet.md) from the
//! command line.
//!
//! Exit codes: 0 done; 1 the server refused (the JSON error is printed);
//! 2 the server could not be asked (unreachable, no token).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// `otter fleet` and its connection options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server: http://HOST:PORT.
    #[arg(
        long,
        env = "OTTER_SERVER",
        global = true,
        default_value = "http://127.0.0.1:8780"
    )]
    server: String,
    /// The operator token (the server's DATA/admin.token).
    #[arg(long, env = "OTTER_ADMIN_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Read the operator token from this file instead.
    #[arg(long, value_name = "FILE", global = true, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Print the server's answer as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Enrolled devices: what they run and what they did.
    #[command(subcommand)]
    Devices(Devices),
    /// Published releases.
    #[command(subcommand)]
    Releases(Releases),
    /// Staged rollouts.
    #[command(subcommand)]
    Rollouts(Rollouts),
}

#[derive(Debug, clap::Subcommand)]
enum Devices {
    /// Every device.
    List,
    /// One device and its events.
    Show {
        /// Device id.
        id: String,
    },
    /// Offer this device exactly this release, whatever the rollouts say.
    Pin {
        /// Device id.
        id: String,
        /// Release id.
        release: String,
    },
    /// Remove a pin.
    Unpin {
        /// Device id.
        id: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum Releases {
    /// Every release.
    List,
    /// One release.
    Show {
        /// Release id.
        id: String,
    },
    /// Publish a signed release folder (`otter release -o DIR`).
    Publish {
        /// The folder: manifest.json, manifest.json.sig, firmware.bin[, www.bin].
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Subcommand)]
enum Rollouts {
    /// Every rollout.
    List,
    /// One rollout: waves, counts, history, devices by rank.
    Show {
        /// Rollout id.
        id: String,
    },
    /// Roll a release out in waves.
    Create(CreateArgs),
    /// Stop offering (keep the wave).
    Pause {
        /// Rollout id.
        id: String,
    },
    /// Offer again, after a pause or a halt.
    Resume {
        /// Rollout id.
        id: String,
    },
    /// Stop for good.
    Abort {
        /// Rollout id.
        id: String,
    },
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// Release id.
    release: String,
    /// Devices reporting this product [default: the release's, unless --tag or --device].
    #[arg(long)]
    product: Option<String>,
    /// Devices enrolled with this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Exactly these devices (repeatable).
    #[arg(long = "device", value_name = "ID")]
    devices: Vec<String>,
    /// Cumulative wave sizes in percent, comma-separated [default: 1,10,50,100].
    #[arg(long, value_delimiter = ',')]
    waves: Vec<f64>,
    /// Minimum seconds per wave [default: 3600].
    #[arg(long, value_name = "SECONDS")]
    soak: Option<u64>,
    /// Percent of a wave that must confirm before the next [default: 90].
    #[arg(long, value_name = "PERCENT")]
    success: Option<f64>,
    /// Halt when more than this percent of a wave rolled back [default: 5].
    #[arg(long, value_name = "PERCENT")]
    max_rollback: Option<f64>,
    /// Halt when more than this percent of a wave failed its self-test [default: 5].
    #[arg(long, value_name = "PERCENT")]
    max_selftest_failure: Option<f64>,
}

struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Api {
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(Vec<u8>, String)>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let resp = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            (m, Some((b, ct))) => {
                let req = if m == "PUT" {
                    self.agent.put(&url)
                } else {
                    self.agent.post(&url)
                };
                req.header("Authorization", &auth)
                    .header("Content-Type", &ct)
                    .send(&b[..])
            }
            (_, None) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_empty(),
        }
        .with_context(|| {
            format!(
                "{method} {url}: cannot reach the fleet server (is `otter server` running there?)"
            )
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .context("reading the server's answer")?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }
}

fn permille(name: &str, pct: f64) -> anyhow::Result<u32> {
    if !(0.0..=100.0).contains(&pct) {
        bail!("--{name} is a percentage, 0 to 100 (got {pct})");
    }
    Ok((pct * 10.0).round() as u32)
}

fn multipart(dir: &Path) -> anyhow::Result<(Vec<u8>, String)> {
    let boundary = format!("otter-{:016x}", std::process::id() as u64 ^ 0x5eed_f1ee7);
    let mut body = Vec::new();
    for (part, file, required) in [
        ("manifest", "manifest.json", true),
        ("signature", "manifest.json.sig", true),
        ("firmware", "firmware.bin", false),
        ("www", "www.bin", false),
    ] {
        let p = dir.join(file);
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        };
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{part}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok((body, format!("multipart/form-data; boundary={boundary}")))
}

fn text(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs `otter fleet ...`.
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let token = match (&a.token, &a.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the operator token {}", f.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!("the operator API needs a token: --token-file DATA/admin.token (or --token / OTTER_ADMIN_TOKEN)"),
    };
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .build()
        .new_agent();
    let api = Api {
        base: a.server.trim_end_matches('/').to_string(),
        token,
        agent,
    };
    let json_body = |v: Value| Some((v.to_string().into_bytes(), "application/json".to_string()));
    let (status, body) = match &a.command {
        Command::Devices(Devices::List) => api.call("GET", "/api/v1/devices", None)?,
        Command::Devices(Devices::Show { id }) => {
            api.call("GET", &format!("/api/v1/devices/{id}"), None)?
        }
        Command::Devices(Devices::Pin { id, release }) => api.call(
            "PUT",
            &format!("/api/v1/devices/{id}/pin"),
            json_body(json!({"release": release})),
        )?,
        Command::Devices(Devices::Unpin { id }) => api.call(
            "PUT",
            &format!("/api/v1/devices/{id}/pin"),
            json_body(json!({"release": null})),
        )?,
        Command::Releases(Releases::List) => api.call("GET", "/api/v1/releases", None)?,
        Command::Releases(Releases::Show { id }) => {
            api.call("GET", &format!("/api/v1/releases/{id}"), None)?
        }
        Command::Releases(Releases::Publish { dir }) => {
            api.call("POST", "/api/v1/releases", Some(multipart(dir)?))?
        }
        Command::Rollouts(Rollouts::List) => api.call("GET", "/api/v1/rollouts", None)?,
        Command::Rollouts(Rollouts::Show { id }) => {
            api.call("GET", &format!("/api/v1/rollouts/{id}"), None)?
        }
        Command::Rollouts(Rollouts::Create(c)) => {
            let mut target = serde_json::Map::new();
            if let Some(p) = &c.product {
                target.insert("product".into(), json!(p));
            }
            if let Some(t) = &c.tag {
                target.insert("tag".into(), json!(t));
            }
            if !c.devices.is_empty() {
                target.insert("devices".into(), json!(c.devices));
            }
            let mut b = json!({"release": c.release, "target": target});
            if !c.waves.is_empty() {
                b["waves"] = json!(c
                    .waves
                    .iter()
                    .map(|w| permille("waves", *w))
                    .collect::<anyhow::Result<Vec<_>>>()?);
            }
            if let Some(s) = c.soak {
                b["min_soak_s"] = json!(s);
            }
            for (k, name, v) in [
                ("success", "success", c.success),
                ("max_rollback", "max-rollback", c.max_rollback),
                (
                    "max_selftest_failure",
                    "max-selftest-failure",
                    c.max_selftest_failure,
                ),
            ] {
                if let Some(v) = v {
                    b[k] = json!(permille(name, v)?);
                }
            }
            api.call("POST", "/api/v1/rollouts", json_body(b))?
        }
        Command::Rollouts(Rollouts::Pause { id }) => {
            api.call("POST", &format!("/api/v1/rollouts/{id}/pause"), None)?
        }
        Command::Rollouts(Rollouts::Resume { id }) => {
            api.call("POST", &format!("/api/v1/rollouts/{id}/resume"), None)?
        }
        Command::Rollouts(Rollouts::Abort { id }) => {
            api.call("POST", &format!("/api/v1/rollouts/{id}/abort"), None)?
        }
    };
    if status == 401 {
        eprintln!("{}: {}", text(&body, "error"), text(&body, "message"));
        return Ok(ExitCode::from(2));
    }
    if !(200..300).contains(&status) {
        if a.json {
            println!("{body}");
        } else {
            eprintln!(
                "refused ({status} {}): {}",
                text(&body, "error"),
                text(&body, "message")
            );
        }
        return Ok(ExitCode::from(1));
    }
    if a.json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    print_human(&a.command, &body);
    Ok(ExitCode::SUCCESS)
}

fn print_human(cmd: &Command, body: &Value) {
    match cmd {
        Command::Devices(Devices::List) => {
            println!(
                "{:<20} {:<14} {:<10} {:<12} {:<16} LAST SEEN",
                "DEVICE", "PRODUCT", "CHIP", "VERSION", "STATE"
            );
            for d in body["devices"].as_array().into_iter().flatten() {
                println!(
                    "{:<20} {:<14} {:<10} {:<12} {:<16} {}",
                    text(d, "id"),
                    text(d, "product"),
                    text(d, "chip"),
                    text(d, "version"),
                    d["boot"]["state"].as_str().unwrap_or("-"),
                    text(d, "last_seen")
                );
            }
        }
        Command::Releases(Releases::List) => {
            println!(
                "{:<18} {:<14} {:<10} {:<12} SHA-256",
                "RELEASE", "PRODUCT", "CHIP", "VERSION"
            );
            for r in body["releases"].as_array().into_iter().flatten() {
                println!(
                    "{:<18} {:<14} {:<10} {:<12} {}",
                    text(r, "id"),
                    text(r, "product"),
                    text(r, "chip"),
                    text(r, "version"),
                    text(r, "firmware_sha256")
                );
            }
        }
        Command::Releases(Releases::Publish { .. }) => {
            let r = &body["release"];
            println!(
                "published release {} ({} {} for {})",
                text(r, "id"),
                text(r, "product"),
                text(r, "version"),
                text(r, "chip")
            );
        }
        Command::Rollouts(Rollouts::List) => {
            for r in body["rollouts"].as_array().into_iter().flatten() {
                print_rollout(r);
            }
        }
        Command::Rollouts(Rollouts::Show { .. } | Rollouts::Create(_)) => {
            print_rollout(&body["rollout"])
        }
        _ => println!("{}", serde_json::to_string_pretty(body).unwrap_or_default()),
    }
}

fn print_rollout(r: &Value) {
    let st = &r["state"];
    println!(
        "rollout {}: release {}, {} device(s), {}",
        text(r, "id"),
        text(r, "release"),
        text(r, "devices"),
        text(st, "state")
    );
    if st.get("reason").is_some() {
        let detail = r["log"]
            .as_array()
            .and_then(|l| l.iter().rev().find(|e| e["kind"] == "halted"))
            .map_or_else(|| st["reason"].to_string(), |e| text(e, "detail"));
        println!("  halted by itself: {detail}");
    }
    let sizes = r["wave_sizes"].as_array().cloned().unwrap_or_default();
    for (i, w) in r["waves"].as_array().into_iter().flatten().enumerate() {
        println!(
            "  wave {} (up to {} devices): {} own, {} confirmed, {} rolled back, {} self-test failed",
            i + 1,
            sizes.get(i).map_or("-".into(), |s| s.to_string()),
            text(w, "devices"), text(w, "confirmed"), text(w, "rolled_back"), text(w, "selftest_failed")
        );
    }
}
