//! `otter firmware-config`: writes the NVS partition image a firmware reads
//! its settings from at boot (`otter_device::settings`): Wi-Fi credentials,
//! the API token's hash and the uploaders' passwords. Flash it with the
//! factory image (`otter merge --nvs`, `otter flash-plan --nvs`) or on its
//! own at the nvs partition's offset.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use otter_device::espota::EspotaAuth;
use otter_device::settings as key;
use otter_format::nvs::NvsWriter;
use sha2::{Digest, Sha256};

/// Arguments of `otter firmware-config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Wi-Fi network to join.
    #[arg(long)]
    pub wifi_ssid: Option<String>,
    /// Its WPA2 passphrase (omit for an open network).
    #[arg(long)]
    pub wifi_password: Option<String>,
    /// The HTTP API's bearer token (the device keeps its SHA-256 only).
    #[arg(long)]
    pub token: Option<String>,
    /// ESPHome native OTA: on or off.
    #[arg(long, value_parser = ["on", "off"])]
    pub esphome: Option<String>,
    /// ESPHome's OTA password (`ota: password:`).
    #[arg(long)]
    pub esphome_password: Option<String>,
    /// ArduinoOTA/espota: on or off.
    #[arg(long, value_parser = ["on", "off"])]
    pub espota: Option<String>,
    /// The espota password (the device keeps a hash only).
    #[arg(long)]
    pub espota_password: Option<String>,
    /// The espota challenge: sha256 (arduino-esp32 3.3.1 and later) or md5
    /// (older uploaders).
    #[arg(long, value_parser = ["sha256", "md5"], default_value = "sha256")]
    pub espota_auth: String,
    /// The nvs partition's size (firmware/partitions.csv: 0x5000).
    #[arg(long, default_value = "0x5000", value_parser = crate::cmd::flash_plan::parse_offset)]
    pub size: u32,
    /// Where to write the NVS image.
    #[arg(short, long)]
    pub output: PathBuf,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs `otter firmware-config`.
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let mut w = NvsWriter::new(a.size as usize)
        .with_context(|| format!("--size {:#x}: not an NVS partition size", a.size))?;
    w.namespace(key::NAMESPACE)?;
    let mut set = Vec::new();
    if let Some(s) = &a.wifi_ssid {
        anyhow::ensure!(
            !s.is_empty() && s.len() <= 32,
            "--wifi-ssid must be 1 to 32 bytes"
        );
        w.set_str(key::WIFI_SSID, s)?;
        set.push(key::WIFI_SSID);
    }
    if let Some(p) = &a.wifi_password {
        anyhow::ensure!(
            p.is_empty() || (8..=64).contains(&p.len()),
            "--wifi-password must be 8 to 64 characters (WPA2), or empty for an open network"
        );
        w.set_str(key::WIFI_PASSWORD, p)?;
        set.push(key::WIFI_PASSWORD);
    }
    if let Some(t) = &a.token {
        anyhow::ensure!(!t.is_empty(), "--token must not be empty");
        w.set_str(key::TOKEN_SHA256, &hex(&Sha256::digest(t.as_bytes())))?;
        set.push(key::TOKEN_SHA256);
    }
    if let Some(v) = &a.esphome {
        w.set_u8(key::ESPHOME, u8::from(v == "on"))?;
        set.push(key::ESPHOME);
    }
    if let Some(p) = &a.esphome_password {
        anyhow::ensure!(
            otter_device::Secret::new(p.as_bytes()).is_some(),
            "--esphome-password must be 1 to {} bytes",
            otter_device::Secret::MAX
        );
        w.set_str(key::ESPHOME_PASSWORD, p)?;
        set.push(key::ESPHOME_PASSWORD);
    }
    if let Some(v) = &a.espota {
        w.set_u8(key::ESPOTA, u8::from(v == "on"))?;
        set.push(key::ESPOTA);
    }
    if let Some(p) = &a.espota_password {
        anyhow::ensure!(!p.is_empty(), "--espota-password must not be empty");
        let (k, hash) = match a.espota_auth.as_str() {
            "md5" => (key::ESPOTA_MD5, EspotaAuth::md5_of(p.as_bytes())),
            _ => (key::ESPOTA_SHA256, EspotaAuth::sha256_of(p.as_bytes())),
        };
        let hex_bytes: &[u8] = match &hash {
            EspotaAuth::Md5 { md5_hex } => md5_hex,
            EspotaAuth::Sha256 { sha256_hex } => sha256_hex,
            EspotaAuth::None => &[],
        };
        w.set_str(k, std::str::from_utf8(hex_bytes)?)?;
        set.push(k);
    }
    anyhow::ensure!(
        !set.is_empty(),
        "nothing to write: give at least one setting (--wifi-ssid, --token, ...)"
    );
    let image = w.finish();
    std::fs::write(&a.output, &image).with_context(|| format!("writing {}", a.output.display()))?;
    println!(
        "{}: NVS image of {} bytes, namespace {}: {}",
        a.output.display(),
        image.len(),
        key::NAMESPACE,
        set.join(", ")
    );
    println!(
        "flash it with the factory image: otter merge ... --nvs {}",
        a.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
