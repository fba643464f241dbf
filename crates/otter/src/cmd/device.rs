//! `otter device`: create, run and inspect virtual devices.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use otter_agent::fetch::{FetchConfig, Trust, Url};
use otter_agent::mdns::MdnsOptions;
use otter_agent::net::uploaders::{EspotaScheme, UploaderConfig};
use otter_agent::pull::server::ServerConfig;
use otter_agent::pull::PullConfig;
use otter_agent::{Profile, RunEnd, RunOptions};
use otter_format::chip::Chip;
use otter_release::PublicKey;
use otter_sim::device::lock::{AgentPresence, DeviceLock};
use otter_sim::device::{self, chip_names, CreateOptions, Status, VirtualDevice};
use serde_json::{json, Value};

use crate::cmd::partitions::{parse_size, parse_u32};
use crate::cmd::remote::{self, Action, Remote};
use crate::output::{self, human_size};

/// `otter device` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a virtual device: DIR/flash.bin laid out as a factory flash, and DIR/device.json.
    Create(CreateArgs),
    /// Power a virtual device on and serve its OTA API until Ctrl-C.
    Run(Box<RunArgs>),
    /// A device's state: offline from a virtual device's flash (DIR), or
    /// from a running device's API (--to URL).
    Status(StatusArgs),
    /// Write a virtual device's whole flash to a file, ready for `esptool write-flash 0x0`.
    Export(ExportArgs),
    /// Confirm the running image on a device (esp_ota_mark_app_valid_cancel_rollback).
    Confirm(Remote),
    /// Mark the running image invalid and reboot into the previous one.
    Rollback(Remote),
    /// Reboot a device.
    Reboot(Remote),
    /// Make a device check its release manifest now (devices that pull).
    Check(Remote),
}

/// Arguments of `otter device export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The device directory.
    dir: PathBuf,
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
    /// Print JSON: `{ok, dir, output, size}`.
    #[arg(long)]
    json: bool,
}

/// Arguments of `otter device create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The device directory (created if missing).
    dir: PathBuf,
    /// Chip (esp32, esp32s2, esp32s3, esp32c2, esp32c3, esp32c5, esp32c6, esp32h2,
    /// esp32p4) [default: esp32s3, or the bootloader's with --from-flash].
    #[arg(long)]
    chip: Option<String>,
    /// Flash size, 1 MiB .. 16 MiB, written 4MB, 4M or 0x400000 [default: 16 MiB, or the bootloader header's with --from-flash].
    #[arg(long, value_parser = parse_size)]
    flash_size: Option<u64>,
    /// Use a real full-flash image (esptool merge-bin / read-flash) as the device's flash.
    #[arg(long, value_name = "FLASH_BIN", conflicts_with_all = ["partitions", "firmware", "bootloader"])]
    from_flash: Option<PathBuf>,
    /// Partition table, CSV or binary (default: factory, ota_0, ota_1 of 2 MiB, www_0/www_1 of 1 MiB).
    #[arg(long)]
    partitions: Option<PathBuf>,
    /// Flash offset of the partition table.
    #[arg(long, default_value = "0x8000", value_parser = parse_u32)]
    table_offset: u32,
    /// Firmware for the first app slot (default: a built test image, otter-virtual 1.0.0).
    #[arg(long)]
    firmware: Option<PathBuf>,
    /// A real second-stage bootloader for the bootloader region (default: a placeholder).
    #[arg(long)]
    bootloader: Option<PathBuf>,
    /// Initial web UI for www_0: a LittleFS image of the slot's size (`otter www build`)
    /// [default: a built-in page linking to /update].
    #[arg(long, value_name = "WWW_BIN", conflicts_with = "from_flash")]
    www: Option<PathBuf>,
    /// Enable app rollback (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE): new images must confirm themselves.
    #[arg(long)]
    rollback: bool,
    /// Enable anti-rollback with this eFuse secure-version counter.
    #[arg(long, value_name = "N")]
    anti_rollback: Option<u32>,
    /// Require this bearer token on the device's API.
    #[arg(long)]
    token: Option<String>,
    /// Replace a device already in DIR (never one whose agent is running).
    #[arg(long)]
    force: bool,
    /// The longest web-UI file name the device's littlefs accepts
    /// (CONFIG_LITTLEFS_OBJ_NAME_LEN, 1..1022); 255 takes littlefs-python's
    /// default images.
    #[arg(long, value_name = "N", default_value_t = otter_www::limits::ESP_NAME_MAX)]
    lfs_name_max: u32,
    /// Refuse every update (HTTP, pull) whose Secure Boot v2 signature does
    /// not verify with a --trust-key (CONFIG_SECURE_SIGNED_ON_UPDATE).
    #[arg(long, requires = "trust_keys")]
    require_signature: bool,
    /// A Secure Boot v2 public key (PEM; a private key gives its public half)
    /// the device trusts, as its eFuse key digest. Repeatable, at most 3.
    #[arg(
        long = "trust-key",
        value_name = "KEY.pem",
        requires = "require_signature"
    )]
    trust_keys: Vec<PathBuf>,
    /// A key the device has revoked (KEY_REVOKE): refused even if trusted.
    #[arg(
        long = "revoke-key",
        value_name = "KEY.pem",
        requires = "require_signature"
    )]
    revoke_keys: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// The key digests of PEM files, as eFuse holds them.
fn key_digests(paths: &[PathBuf]) -> anyhow::Result<Vec<[u8; 32]>> {
    paths
        .iter()
        .map(|p| {
            let pem = std::fs::read_to_string(p)
                .with_context(|| format!("reading the key {}", p.display()))?;
            let k = otter_format::secure_boot::sign::PublicKey::from_pem(&pem)
                .with_context(|| format!("{} is not a Secure Boot v2 key", p.display()))?;
            Ok(k.digest())
        })
        .collect()
}

/// Arguments of `otter device run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The device directory.
    dir: PathBuf,
    /// Address the API listens on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:3232")]
    http: SocketAddr,
    /// What firmware VERSION does after boot: healthy, crash-on-boot, fail-selftest or hang (repeatable).
    #[arg(long = "behavior", value_name = "VERSION=BEHAVIOR")]
    behaviors: Vec<String>,
    /// Seconds a newly booted image runs its self-test before confirming or rolling back.
    #[arg(long, default_value_t = 3.0)]
    selftest_window: f64,
    /// Seconds before the watchdog resets a hanging firmware.
    #[arg(long, default_value_t = 3.0)]
    watchdog: f64,
    /// Seconds a simulated reboot takes.
    #[arg(long, default_value_t = 0.3)]
    reboot_time: f64,
    /// Require this bearer token (overrides the device's own).
    #[arg(long)]
    token: Option<String>,
    /// Advertise over mDNS (_otter._tcp): auto (loopback only when --http is a
    /// loopback address, else all interfaces), all, loopback, or off.
    #[arg(long, default_value = "auto", value_parser = ["auto", "all", "loopback", "off"])]
    mdns: String,
    /// Pull releases: the URL of a signed release's manifest.json (see `otter release`).
    #[arg(long, value_name = "URL", help_heading = "Pulling releases")]
    manifest_url: Option<String>,
    /// A public key (otter keygen's NAME.pub) whose signature the device accepts (repeatable).
    #[arg(long, value_name = "KEY.pub", help_heading = "Pulling releases")]
    trust: Vec<PathBuf>,
    /// Verify the server against this CA certificate (PEM) instead of any other.
    #[arg(
        long,
        value_name = "PEM",
        conflicts_with = "pin",
        help_heading = "Pulling releases"
    )]
    ca: Option<PathBuf>,
    /// Accept exactly this server certificate (PEM), whoever signed it.
    #[arg(long, value_name = "PEM", help_heading = "Pulling releases")]
    pin: Option<PathBuf>,
    /// Allow plain http:// manifest and artifact URLs (development only: anyone on the path can stall or replay them; signatures still apply).
    #[arg(long, help_heading = "Pulling releases")]
    allow_http: bool,
    /// Check the manifest every SECONDS as well as at boot and on POST /api/ota/check.
    #[arg(long, value_name = "SECONDS", help_heading = "Pulling releases")]
    poll: Option<f64>,
    /// The product this device installs [default: the running firmware's project name].
    #[arg(long, help_heading = "Pulling releases")]
    product: Option<String>,
    /// Seconds to wait before reconnecting after a dropped download.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 1.0,
        help_heading = "Pulling releases"
    )]
    pull_retry_delay: f64,
    /// Answer ESPHome's OTA uploader (`esphome upload`) on the API's TCP port.
    #[arg(long, default_value = "on", value_parser = ["on", "off"], help_heading = "Other uploaders")]
    esphome: String,
    /// The ESPHome OTA password (`ota: password:`); needed when the device has a token.
    #[arg(
        long,
        env = "OTTER_ESPHOME_PASSWORD",
        value_name = "PASSWORD",
        help_heading = "Other uploaders"
    )]
    esphome_password: Option<String>,
    /// The ESPHome OTA protocol version announced: 2, or 1 for clients that speak only 1.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2), help_heading = "Other uploaders")]
    esphome_version: u8,
    /// Answer ArduinoOTA's espota (PlatformIO `upload_protocol = espota`, the Arduino IDE) on the API's UDP port.
    #[arg(long, default_value = "on", value_parser = ["on", "off"], help_heading = "Other uploaders")]
    espota: String,
    /// The espota password (`ArduinoOTA.setPassword`, espota's --auth); only its hash is kept. Needed when the device has a token.
    #[arg(
        long,
        env = "OTTER_ESPOTA_PASSWORD",
        value_name = "PASSWORD",
        help_heading = "Other uploaders"
    )]
    espota_password: Option<String>,
    /// The espota challenge: sha256 (arduino-esp32 3.3.1 and later) or md5 (older espota.py, esp8266).
    #[arg(long, default_value = "sha256", value_parser = ["sha256", "md5"], help_heading = "Other uploaders")]
    espota_auth: String,
    /// Pull through a fleet server (`otter server`): check in at URL, install what it offers.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "manifest_url",
        help_heading = "Fleet server"
    )]
    server: Option<String>,
    /// This device's id on the fleet server [default: the device directory's name].
    #[arg(
        long,
        value_name = "ID",
        requires = "server",
        help_heading = "Fleet server"
    )]
    device_id: Option<String>,
    /// The fleet's enrollment key (the server's DATA/enroll.key), to enroll on first contact.
    #[arg(
        long,
        value_name = "KEY",
        env = "OTTER_ENROLL_KEY",
        hide_env_values = true,
        requires = "server",
        help_heading = "Fleet server"
    )]
    enroll_key: Option<String>,
    /// Read the enrollment key from this file instead.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "enroll_key",
        requires = "server",
        help_heading = "Fleet server"
    )]
    enroll_key_file: Option<PathBuf>,
    /// A tag to enroll with, for rollout targets (repeatable).
    #[arg(
        long = "tag",
        value_name = "TAG",
        requires = "server",
        help_heading = "Fleet server"
    )]
    tags: Vec<String>,
    /// Print the startup line as JSON: `{url, pid, dir, slot, version}`
    /// (the slot and version the power-on boots); logs stay on stderr.
    #[arg(long)]
    json: bool,
}

/// Arguments of `otter device status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The device directory (offline: read from its flash).
    #[arg(required_unless_present = "to", conflicts_with = "to")]
    dir: Option<PathBuf>,
    /// A running device instead: HOST, HOST:PORT, [IPv6]:PORT or http://HOST:PORT.
    #[arg(long)]
    to: Option<String>,
    /// Bearer token for the device's API (with --to).
    #[arg(long, env = "OTTER_TOKEN", requires = "to")]
    token: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs an `otter device` subcommand.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Create(a) => create(&a),
        Command::Run(a) => run_device(*a),
        Command::Status(StatusArgs {
            to: Some(to),
            token,
            json,
            ..
        }) => remote::status(&Remote { to, token, json }),
        Command::Status(a) => status(&a),
        Command::Confirm(r) => remote::act(Action::Confirm, &r),
        Command::Rollback(r) => remote::act(Action::Rollback, &r),
        Command::Reboot(r) => remote::act(Action::Reboot, &r),
        Command::Check(r) => remote::act(Action::Check, &r),
        Command::Export(a) => {
            let n = device::export(&a.dir, &a.output)
                .with_context(|| format!("exporting the flash of {}", a.dir.display()))?;
            if a.json {
                output::print_json(&json!({
                    "ok": true,
                    "dir": a.dir.display().to_string(),
                    "output": a.output.display().to_string(),
                    "size": n,
                }))?;
            } else {
                println!(
                    "wrote {} ({}): flash it with `esptool write-flash 0x0 {}`",
                    a.output.display(),
                    human_size(n),
                    a.output.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Parses a chip name, with the list of valid ones in the error.
pub fn parse_chip(name: &str) -> anyhow::Result<Chip> {
    Chip::from_name(name)
        .with_context(|| format!("unknown chip '{name}': use one of {}", chip_names()))
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

fn flash_size_arg(a: &CreateArgs) -> anyhow::Result<Option<u32>> {
    a.flash_size
        .map(|s| {
            u32::try_from(s)
                .ok()
                .context("the flash size must be at most 16 MiB")
        })
        .transpose()
}

fn create_from_flash(a: &CreateArgs, path: &Path) -> anyhow::Result<ExitCode> {
    let image = read(path, "flash image")?;
    let opts = device::FromFlashOptions {
        chip: a.chip.as_deref().map(parse_chip).transpose()?,
        flash_size: flash_size_arg(a)?,
        table_offset: Some(a.table_offset),
        rollback: a.rollback,
        anti_rollback: a.anti_rollback,
        token: a.token.clone(),
        force: a.force,
        trusted_keys: key_digests(&a.trust_keys)?,
        revoked_keys: key_digests(&a.revoke_keys)?,
    };
    let made = device::create_from_flash(&a.dir, &image, &opts).with_context(|| {
        format!(
            "creating a virtual device in {} from {}",
            a.dir.display(),
            path.display()
        )
    })?;
    if a.json {
        output::print_json(&json!({
            "dir": a.dir.display().to_string(),
            "chip": made.chip.name(),
            "chip_source": made.chip_source,
            "flash_size": made.flash_size,
            "flash_size_source": made.size_source,
            "bootloader_offset": made.bootloader_offset,
            "boots": made.boots.map(|s| s.to_string()),
        }))?;
    } else {
        println!(
            "created a virtual {} from {} in {}: {} of flash (from the {}), bootloader {}",
            made.chip.display_name(),
            path.display(),
            a.dir.display(),
            human_size(u64::from(made.flash_size)),
            made.size_source,
            made.bootloader_offset
                .map_or_else(|| "not found".to_string(), |o| format!("at {o:#x}"))
        );
        match made.boots {
            Some(slot) => println!(
                "the first power-on boots {slot}; run it with: otter device run {}",
                a.dir.display()
            ),
            None => println!(
                "WARNING: nothing in this flash boots (no valid app for {} in any slot)",
                made.chip
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn create(a: &CreateArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &a.from_flash {
        return create_from_flash(a, path);
    }
    let mut opts = CreateOptions::new();
    opts.chip = parse_chip(a.chip.as_deref().unwrap_or("esp32s3"))?;
    opts.flash_size = flash_size_arg(a)?.unwrap_or(device::DEFAULT_FLASH_SIZE);
    opts.table_offset = a.table_offset;
    opts.partitions = a
        .partitions
        .as_deref()
        .map(|p| read(p, "partition table"))
        .transpose()?;
    opts.firmware = a
        .firmware
        .as_deref()
        .map(|p| read(p, "firmware"))
        .transpose()?;
    opts.bootloader = a
        .bootloader
        .as_deref()
        .map(|p| read(p, "bootloader"))
        .transpose()?;
    opts.www = a
        .www
        .as_deref()
        .map(|p| read(p, "web-UI image"))
        .transpose()?;
    opts.rollback = a.rollback;
    opts.anti_rollback = a.anti_rollback;
    opts.token = a.token.clone();
    opts.force = a.force;
    opts.lfs_name_max = a.lfs_name_max;
    opts.trusted_keys = key_digests(&a.trust_keys)?;
    opts.revoked_keys = key_digests(&a.revoke_keys)?;
    let created = device::create(&a.dir, &opts)
        .with_context(|| format!("creating a virtual device in {}", a.dir.display()))?;
    let version = created
        .firmware
        .app_desc
        .as_ref()
        .map(|d| String::from_utf8_lossy(d.version().bytes()).into_owned())
        .unwrap_or_default();
    if a.json {
        output::print_json(&json!({
            "dir": a.dir.display().to_string(),
            "flash": a.dir.join(device::FLASH_FILE).display().to_string(),
            "chip": opts.chip.name(),
            "flash_size": opts.flash_size,
            "app_slot": created.app_slot.to_string(),
            "version": version,
            "rollback": opts.rollback,
            "anti_rollback": opts.anti_rollback,
            "token": opts.token.is_some(),
            "require_signature": !opts.trusted_keys.is_empty(),
            "trusted_keys": opts.trusted_keys.iter().map(|d| crate::output::hex(d)).collect::<Vec<_>>(),
            "regions": created.regions.iter().map(|(o, l, w)| json!({"offset": o, "len": l, "what": w})).collect::<Vec<_>>(),
        }))?;
    } else {
        println!(
            "created a virtual {} with {} of flash in {}",
            opts.chip.display_name(),
            human_size(u64::from(opts.flash_size)),
            a.dir.display()
        );
        for (off, len, what) in &created.regions {
            println!("  {off:#08x}  {:>10}  {what}", human_size(u64::from(*len)));
        }
        println!(
            "  firmware {version} in {}; rollback {}; anti-rollback {}; API token {}",
            created.app_slot,
            if opts.rollback { "on" } else { "off" },
            opts.anti_rollback
                .map_or_else(|| "off".to_string(), |n| format!("on (eFuse counter {n})")),
            if opts.token.is_some() { "set" } else { "none" },
        );
        println!("run it with: otter device run {}", a.dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Installs the log subscriber (stderr; `RUST_LOG` overrides the level).
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

fn secs(name: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .with_context(|| format!("--{name} must be a number of seconds ≥ 0"))
}

/// The pull client's configuration from `--manifest-url` and friends.
fn pull_config(a: &RunArgs) -> anyhow::Result<Option<PullConfig>> {
    let (flag, url) = match (&a.manifest_url, &a.server) {
        (Some(u), _) => ("--manifest-url", u),
        (None, Some(u)) => ("--server", u),
        (None, None) => {
            if !a.trust.is_empty() || a.ca.is_some() || a.pin.is_some() || a.poll.is_some() {
                bail!("--trust, --ca, --pin and --poll configure pulling: add --manifest-url URL or --server URL");
            }
            return Ok(None);
        }
    };
    let mut manifest_url =
        Url::parse(url).with_context(|| format!("{flag} {url:?} is not a URL"))?;
    if a.server.is_some() && !manifest_url.path().ends_with('/') {
        let p = format!("{}/", manifest_url.path());
        manifest_url.set_path(&p);
    }
    if a.trust.is_empty() {
        bail!("{flag} needs at least one --trust KEY.pub: the device installs only releases signed by a key it trusts (make one with `otter keygen`)");
    }
    let mut trusted = Vec::new();
    for p in &a.trust {
        let pem = std::fs::read_to_string(p)
            .with_context(|| format!("reading the trusted key {}", p.display()))?;
        trusted.push(
            PublicKey::from_pem(&pem)
                .with_context(|| format!("{}: not an otter public key", p.display()))?,
        );
    }
    let trust = match (&a.ca, &a.pin) {
        (Some(ca), _) => Some(Trust::ca_from_pem_file(ca)?),
        (None, Some(pin)) => Some(Trust::pinned_from_pem_file(pin)?),
        (None, None) => None,
    };
    match manifest_url.scheme() {
        "https" if trust.is_none() => bail!(
            "{flag} is https:// but no server trust is given: add --ca CA.pem (the CA that signed the server's certificate) or --pin SERVER.pem"
        ),
        "http" if !a.allow_http => bail!(
            "{flag} is plain http://: use https:// with --ca or --pin, or pass --allow-http for development"
        ),
        "http" => tracing::warn!(
            "WARNING: pulling over plain HTTP (--allow-http): anyone on the network path can withhold or delay releases; signatures still decide what is installed"
        ),
        _ => {}
    }
    let server = match &a.server {
        None => None,
        Some(_) => {
            let device_id = match &a.device_id {
                Some(d) => d.clone(),
                None => a
                    .dir
                    .canonicalize()
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .context("cannot name the device after its directory: give --device-id ID")?,
            };
            let enrollment_key = match (&a.enroll_key, &a.enroll_key_file) {
                (Some(k), _) => Some(k.clone()),
                (None, Some(f)) => Some(
                    std::fs::read_to_string(f)
                        .with_context(|| format!("reading the enrollment key {}", f.display()))?
                        .trim()
                        .to_string(),
                ),
                (None, None) => None,
            };
            Some(ServerConfig {
                url: manifest_url.clone(),
                device_id,
                enrollment_key,
                tags: a.tags.clone(),
                state_file: a.dir.join("fleet.json"),
                trust: trust.clone(),
                timeout: Duration::from_secs(20),
            })
        }
    };
    let fetch = FetchConfig {
        trust,
        allow_http: a.allow_http,
        retry_delay: secs("pull-retry-delay", a.pull_retry_delay)?,
        ..FetchConfig::default()
    };
    Ok(Some(PullConfig {
        manifest_url,
        trusted,
        fetch,
        poll: a.poll.map(|p| secs("poll", p)).transpose()?,
        product: a.product.clone(),
        server,
    }))
}

fn run_device(a: RunArgs) -> anyhow::Result<ExitCode> {
    let mut opts = RunOptions::new(&a.dir, a.http);
    let mut profile = Profile::new();
    for b in &a.behaviors {
        profile.add_spec(b).map_err(anyhow::Error::msg)?;
    }
    opts.profile = profile;
    opts.selftest_window = secs("selftest-window", a.selftest_window)?;
    opts.watchdog = secs("watchdog", a.watchdog)?;
    opts.reboot_time = secs("reboot-time", a.reboot_time)?;
    opts.token = a.token.clone();
    opts.uploaders = UploaderConfig {
        esphome: a.esphome == "on",
        esphome_password: a.esphome_password.clone(),
        esphome_version: a.esphome_version,
        espota: a.espota == "on",
        espota_password: a.espota_password.clone(),
        espota_scheme: if a.espota_auth == "md5" {
            EspotaScheme::Md5
        } else {
            EspotaScheme::Sha256
        },
    };
    opts.mdns = match a.mdns.as_str() {
        "off" => None,
        "all" => Some(MdnsOptions::all()),
        "loopback" => Some(MdnsOptions::loopback()),
        _ if a.http.ip().is_loopback() => Some(MdnsOptions::loopback()),
        _ => Some(MdnsOptions::all()),
    };
    init_logging();
    opts.pull = pull_config(&a)?;
    // What the power-on boots, read before the agent takes the flash.
    let boots = a
        .json
        .then(|| {
            VirtualDevice::open(&a.dir)
                .and_then(|mut d| d.status(None))
                .ok()
        })
        .flatten()
        .and_then(|st| st.running)
        .map(|r| (r.slot.label.to_string(), r.version.clone()));
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let end = rt.block_on(async move {
        let mut running = otter_agent::start(opts)
            .await
            .with_context(|| format!("starting the virtual device in {}", a.dir.display()))?;
        if a.json {
            println!(
                "{}",
                json!({
                    "url": running.url(),
                    "pid": std::process::id(),
                    "dir": a.dir.display().to_string(),
                    "slot": boots.as_ref().map(|b| b.0.clone()),
                    "version": boots.as_ref().map(|b| b.1.clone()),
                })
            );
        } else {
            println!(
                "otter device: serving {} (device {})",
                running.url(),
                a.dir.display()
            );
        }
        let _ = std::io::stdout().flush();
        let mut wait = tokio::spawn(async move {
            let _ = shutdown_signal().await;
        });
        tokio::select! {
            _ = &mut wait => {
                running.stop();
                running.wait().await
            }
            end = running.finished() => end,
        }
        .map_err(anyhow::Error::from)
    })?;
    match end {
        RunEnd::Stopped => Ok(ExitCode::SUCCESS),
        RunEnd::Bricked(m) | RunEnd::BootLoop(m) => {
            eprintln!("error: the device stopped: {m}");
            Ok(ExitCode::from(output::EXIT_CHECK_FAILED))
        }
    }
}

async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// The agent that runs DIR, if one does: the device's lock says whether one
/// runs, its DIR/agent.json what it recorded (`pid` and `url` are `null`
/// until it has written that).
pub fn live_agent(dir: &Path) -> anyhow::Result<Option<Value>> {
    let presence = DeviceLock::presence(dir)
        .with_context(|| format!("asking whether an agent runs {}", dir.display()))?;
    Ok(match presence {
        AgentPresence::Stopped => None,
        AgentPresence::Running(Some(h)) => Some(h.record),
        AgentPresence::Running(None) => Some(json!({ "pid": null, "url": null })),
    })
}

fn status(a: &StatusArgs) -> anyhow::Result<ExitCode> {
    let Some(dir) = &a.dir else {
        bail!("give the device directory, or --to URL for a running device");
    };
    let mut dev = VirtualDevice::open(dir)
        .with_context(|| format!("opening the virtual device in {}", dir.display()))?;
    let agent = live_agent(dir)?;
    let running = agent
        .as_ref()
        .and_then(|v| v.get("running")?.as_str().map(str::to_string))
        .and_then(|label| {
            let map = dev.slot_map().ok()?;
            let found = map.slots().map(|(s, _)| s).find(|s| s.to_string() == label);
            found
        });
    let st = dev
        .status(running)
        .with_context(|| format!("reading the flash of {}", dir.display()))?;
    if a.json {
        let mut v = serde_json::to_value(&st)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("agent".into(), agent.clone().unwrap_or(Value::Null));
        }
        output::print_json(&v)?;
    } else {
        print_status(dir, &st, agent.as_ref());
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a status the way the seeds' `ota_print_info` does, and more.
pub fn print_status(dir: &Path, st: &Status, agent: Option<&Value>) {
    let onoff = |b: bool| if b { "on" } else { "off" };
    println!(
        "device {}: {}, {} flash, rollback {}, anti-rollback {}",
        dir.display(),
        st.chip,
        human_size(u64::from(st.flash_size)),
        onoff(st.rollback),
        st.anti_rollback
            .map_or_else(|| "off".into(), |n| format!("on (eFuse counter {n})"))
    );
    match agent {
        Some(a) => println!(
            "agent:   running (pid {}, {})",
            a.get("pid")
                .and_then(Value::as_u64)
                .map_or_else(|| "not recorded yet".to_string(), |p| p.to_string()),
            a.get("url").and_then(Value::as_str).unwrap_or("no URL yet")
        ),
        None => println!("agent:   not running"),
    }
    match &st.running {
        Some(r) => println!(
            "{} {} @ {:#x}: {} (state {}, secure_version {})",
            if st.predicted {
                "next power-on boots:"
            } else {
                "running:"
            },
            r.slot.label,
            r.slot.offset,
            r.summary,
            r.state.as_deref().unwrap_or("none"),
            r.secure_version
        ),
        None => println!("running: NOTHING BOOTS: no valid app in any slot"),
    }
    let lbl = |l: &Option<device::SlotLabel>| {
        l.as_ref().map_or_else(
            || "-".to_string(),
            |l| format!("{} @ {:#x}", l.label, l.offset),
        )
    };
    println!("boot:    {}", lbl(&st.boot));
    println!("next:    {}", lbl(&st.next));
    println!("slots:");
    println!(
        "  {:<8} {:<8} {:>10}  {:<7} {:<12} {:<10} ERROR",
        "SLOT", "OFFSET", "SIZE", "VERDICT", "VERSION", "STATE"
    );
    for s in &st.slots {
        println!(
            "  {:<8} {:#08x} {:>10}  {:<7} {:<12} {:<10} {}",
            s.slot.label,
            s.slot.offset,
            human_size(u64::from(s.slot.size)),
            s.verdict,
            s.version
                .as_deref()
                .map_or("-", |v| device::or_placeholder(v, device::NO_VERSION)),
            s.state.as_deref().unwrap_or("-"),
            s.error.as_deref().unwrap_or("")
        );
    }
    if let Some(o) = &st.otadata {
        println!(
            "otadata @ {:#x}: active entry {}",
            o.offset,
            o.active.map_or("none".into(), |a| a.to_string())
        );
        for e in &o.entries {
            if e.empty {
                println!("  sector {}: empty", e.sector);
            } else {
                println!(
                    "  sector {}: seq {} state {} crc {} -> {}",
                    e.sector,
                    e.seq,
                    e.state,
                    if e.crc_ok { "ok" } else { "BAD" },
                    e.slot.as_deref().unwrap_or("-")
                );
            }
        }
    }
    if let Some(r) = &st.last_rollback {
        println!(
            "last rollback{}: from {} ({}){}: {}",
            if r.stale {
                " (superseded by a later confirmed update)"
            } else {
                ""
            },
            r.from,
            r.version
                .as_deref()
                .map_or("?", |v| device::or_placeholder(v, device::NO_VERSION)),
            r.to.as_deref()
                .map_or_else(String::new, |t| format!(" to {t}")),
            r.reason
        );
    }
    if let Some(w) = &st.www {
        println!(
            "web UI:  {} mounted (NVS selects {}{})",
            w.active.as_deref().unwrap_or("NOTHING"),
            w.selected,
            w.nvs_value.map_or_else(
                || ", key missing".to_string(),
                |v| format!(", www_slot = {v}")
            )
        );
        if let Some(n) = &w.nvs_note {
            println!("  note: {n}");
        }
        if let Some(f) = &w.fallback {
            println!("  fallback: {}", f.reason);
        }
        for s in &w.slots {
            println!(
                "  {:<8} {:#08x} {:>8}  {}",
                s.name,
                s.offset,
                human_size(u64::from(s.size)),
                if s.mounts {
                    format!(
                        "{} files{}",
                        s.files,
                        if s.index_html { "" } else { ", no index.html" }
                    )
                } else {
                    s.error.clone().unwrap_or_default()
                }
            );
        }
    }
}
