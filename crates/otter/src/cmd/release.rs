//! `otter release`: write a signed release folder, or verify one.
//!
//! - `otter release --firmware FILE [--www FILE] --key KEY.key... -o DIR`
//!   checks the images, then writes `manifest.json`, `manifest.json.sig`,
//!   `firmware.bin` and `www.bin` into DIR, and verifies what it wrote.
//!   `--compress` and `--deltas-from DIR` add the firmware's gzip and delta
//!   alternatives to the manifest (`otter-release/2`), each decoded back
//!   and compared with the firmware before signing.
//!   The firmware must be a valid app image (checksum, SHA-256, app
//!   descriptor); chip, version, project and `secure_version` come from it.
//!   The web-UI image must mount as LittleFS and have `/index.html`.
//! - `otter release verify DIR --trust KEY.pub...` checks the signature,
//!   format, expiry and every artifact's size and SHA-256.
//!
//! Exit codes: 0 ok; 1 a check failed (an image is not fit to release, the
//! release does not verify); 2 the command could not run (unreadable or
//! malformed key files, bad arguments, DIR not empty without `--force`).
//! The format is described in docs/release-manifest.md.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use otter_format::image::{verify, VerifyOptions};
use otter_release::{
    verify_folder, write_release, AlternativeSpec, PublicKey, ReleaseSpec, SigningKey, Timestamp,
    Verified, MANIFEST_FILE,
};
use serde_json::json;

use crate::cmd::artifacts;
use crate::output::{human_size, print_json, refuse};

/// Arguments of `otter release`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    write: WriteArgs,
}

/// `otter release` subcommands.
#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Verify a release folder: signature, format, expiry, and every
    /// artifact's size and SHA-256 (exit 1 if anything fails).
    Verify(VerifyArgs),
}

/// Writing a release.
#[derive(clap::Args, Debug)]
struct WriteArgs {
    /// The app image to release.
    #[arg(long, required = true, value_name = "FILE")]
    firmware: Option<PathBuf>,
    /// A LittleFS web-UI image to ship with it (makes the release a bundle).
    #[arg(long, value_name = "FILE")]
    www: Option<PathBuf>,
    /// A private key to sign with (`otter keygen`); repeat to sign with several.
    #[arg(long = "key", required = true, value_name = "KEY.key")]
    keys: Vec<PathBuf>,
    /// The release folder to write.
    #[arg(short, long, required = true, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Product name devices match against (default: the image's project name).
    #[arg(long)]
    product: Option<String>,
    /// When the release stops being installable: a duration from now
    /// (`90d`, `12h`, `2w`, `30m`, `3600s`) or an RFC 3339 time.
    #[arg(long, default_value = "30d", value_name = "WHEN")]
    expires: String,
    /// Write into DIR even when it is not empty (files of the same names are replaced).
    #[arg(long)]
    force: bool,
    /// Also list firmware.bin.gz (gzip -9) in the manifest, for devices that
    /// inflate as they write (makes the manifest otter-release/2).
    #[arg(long)]
    compress: bool,
    /// Also list an esp_delta_ota patch from each earlier image in this
    /// folder (app-image files, or release folders holding firmware.bin) for
    /// the same chip (makes the manifest otter-release/2).
    #[arg(long, alias = "delta-from", value_name = "DIR")]
    deltas_from: Option<PathBuf>,
    /// Also sign the firmware with this Secure Boot v2 key (PEM: RSA-3072,
    /// ECDSA P-256 or P-384, as `espsecure generate-signing-key --version 2`
    /// writes it) before it goes into the release; repeat to add a second or
    /// third block (key rotation). This key is the one the bootloader and
    /// devices that require signatures check; `--key` signs the manifest.
    #[arg(long = "sign-firmware", value_name = "KEY.pem")]
    sign_firmware: Vec<PathBuf>,
    /// Report as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `otter release verify`.
#[derive(clap::Args, Debug)]
struct VerifyArgs {
    /// The release folder (holding manifest.json).
    dir: PathBuf,
    /// A public key to trust (`NAME.pub`); repeat to trust several.
    #[arg(long = "trust", required = true, value_name = "KEY.pub")]
    trust: Vec<PathBuf>,
    /// Check as of this RFC 3339 time instead of now (will it still be valid next week?).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Also check the firmware's Secure Boot v2 signature with this public
    /// key (PEM; a private key gives its public half). Repeatable.
    #[arg(long = "firmware-key", value_name = "KEY.pem")]
    firmware_keys: Vec<PathBuf>,
    /// Also check the firmware's Secure Boot v2 signature against this eFuse
    /// key digest (64 hex digits, as `otter keys digest` prints). Repeatable.
    #[arg(long = "firmware-key-digest", value_name = "HEX")]
    firmware_digests: Vec<String>,
    /// Report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `otter release`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(Command::Verify(v)) => verify_cmd(v),
        None => write_cmd(args.write),
    }
}

/// What the firmware image says about itself.
struct AppFacts {
    chip: &'static str,
    version: String,
    project: String,
    secure_version: u32,
}

fn write_cmd(a: WriteArgs) -> anyhow::Result<ExitCode> {
    let (Some(firmware_path), Some(out)) = (a.firmware.as_deref(), a.output.as_deref()) else {
        bail!("--firmware and -o are required");
    };
    let keys = a
        .keys
        .iter()
        .map(|p| load_signing_key(p))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let firmware = read(firmware_path)?;
    let app = match check_firmware(&firmware) {
        Ok(f) => f,
        Err((code, msg)) => {
            return refuse(a.json, code, &format!("{}: {msg}", firmware_path.display()))
        }
    };
    let firmware = sign_firmware(firmware, &a.sign_firmware)
        .with_context(|| format!("signing {}", firmware_path.display()))?;
    let www = match &a.www {
        Some(p) => {
            let bytes = read(p)?;
            if let Err((code, msg)) = check_www(&bytes) {
                return refuse(a.json, code, &format!("{}: {msg}", p.display()));
            }
            Some(bytes)
        }
        None => None,
    };

    let created = Timestamp::now();
    let expires = parse_expires(&a.expires, created)?;
    if !a.force && !is_empty_or_missing(out)? {
        bail!(
            "{} is not empty; refusing to write a release into it (pass --force to write anyway)",
            out.display()
        );
    }
    let product = a.product.clone().unwrap_or_else(|| app.project.clone());
    // The alternatives, each decoded back and compared with the firmware
    // before anything is signed.
    let mut extras = Vec::new();
    let mut notes = Vec::new();
    if a.compress {
        extras.push(artifacts::make_gzip(&firmware)?);
    }
    if let Some(from) = &a.deltas_from {
        let (e, n) = artifacts::make_deltas(from, &firmware)?;
        extras.extend(e);
        notes.extend(n);
    }
    let alternatives: Vec<AlternativeSpec<'_>> = extras
        .iter()
        .map(|e| AlternativeSpec {
            encoding: e.encoding,
            file: &e.file,
            bytes: &e.bytes,
            base_sha256: e.base_sha256,
        })
        .collect();
    let spec = ReleaseSpec {
        product: &product,
        chip: app.chip,
        version: &app.version,
        secure_version: app.secure_version,
        project: &app.project,
        firmware: &firmware,
        www: www.as_deref(),
        alternatives: &alternatives,
        created,
        expires,
    };
    let written = write_release(out, &spec, &keys)
        .with_context(|| format!("writing the release into {}", out.display()))?;

    // Read back what was written, as a device would.
    let publics: Vec<PublicKey> = keys.iter().map(SigningKey::public_key).collect();
    let verified = verify_folder(out, &publics, created.unix())
        .with_context(|| format!("re-reading the release in {}", out.display()))?;

    if a.json {
        print_json(&json!({
            "ok": true,
            "dir": out.display().to_string(),
            "extra": extras.iter().map(|e| json!({
                "kind": e.kind(),
                "file": out.join(&e.file).display().to_string(),
                "size": e.bytes.len(),
                "percent": (10_000.0 * e.bytes.len() as f64 / firmware.len().max(1) as f64).round() / 100.0,
                "base_version": e.base_version,
                "base_sha256": e.base_sha256.map(|d| d.to_string()),
                "base_file": e.base_path.as_ref().map(|p| p.display().to_string()),
            })).collect::<Vec<_>>(),
            "notes": notes,
            "manifest": written.manifest,
            "signed_by": written.keyids.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "files": written.files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        }))?;
    } else {
        let m = &verified.manifest;
        println!(
            "wrote release {} {} ({}, secure_version {}) to {}",
            m.product,
            m.firmware.version,
            m.chip,
            m.firmware.secure_version,
            out.display()
        );
        print_artifacts(&verified);
        for e in &extras {
            let size = e.bytes.len() as u64;
            println!(
                "           {} is {:.1}% of the image, decodes to it{}",
                e.file,
                100.0 * size as f64 / firmware.len().max(1) as f64,
                e.base_version
                    .as_ref()
                    .map_or_else(String::new, |v| format!(" from {v}"))
            );
        }
        for n in &notes {
            println!("  note: {n}");
        }
        println!(
            "  expires {} (in {})",
            m.expires,
            human_duration(m.expires.unix().saturating_sub(created.unix()))
        );
        print_signers(&verified);
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_cmd(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let trusted = a
        .trust
        .iter()
        .map(|p| load_public_key(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let now = match &a.at {
        Some(t) => t
            .parse::<Timestamp>()
            .with_context(|| format!("--at {t:?}"))?,
        None => Timestamp::now(),
    };
    let verified = match verify_folder(&a.dir, &trusted, now.unix()) {
        Ok(v) => v,
        Err(e) => {
            let msg = format!(
                "{}: not a valid release: {e}",
                a.dir.join(MANIFEST_FILE).display()
            );
            return refuse(a.json, e.code(), &msg);
        }
    };
    let firmware_signature = if a.firmware_keys.is_empty() && a.firmware_digests.is_empty() {
        None
    } else {
        let trust = crate::cmd::signature::load(&crate::cmd::signature::TrustArgs::new(
            a.firmware_keys.clone(),
            a.firmware_digests.clone(),
        ))?;
        let path = firmware_path(&verified);
        let bytes = read(&path)?;
        let info = verify(&bytes, &VerifyOptions::new())
            .with_context(|| format!("{} is not an app image", path.display()))?;
        let outcome = crate::cmd::signature::check(&bytes, &info, &trust);
        if !outcome.ok() {
            let v = outcome.to_json();
            let code = v["error"].as_str().unwrap_or("bad_signature").to_string();
            let msg = format!(
                "{}: the firmware's Secure Boot signature does not verify: {}",
                path.display(),
                outcome.to_text()
            );
            return refuse(a.json, &code, &msg);
        }
        Some(outcome)
    };
    let m = &verified.manifest;
    if a.json {
        print_json(&json!({
            "ok": true,
            "dir": a.dir.display().to_string(),
            "firmware_signature": firmware_signature.as_ref().map(|o| o.to_json()),
            "manifest": m,
            "signed_by": verified.signed_by.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "checked_at": now.to_string(),
        }))?;
    } else {
        println!(
            "{}: valid release {} {} ({}, secure_version {}{})",
            a.dir.display(),
            m.product,
            m.firmware.version,
            m.chip,
            m.firmware.secure_version,
            if m.www.is_some() { ", with web UI" } else { "" }
        );
        print_artifacts(&verified);
        println!(
            "  expires {} (in {})",
            m.expires,
            human_duration(m.expires.unix().saturating_sub(now.unix()))
        );
        print_signers(&verified);
        if let Some(o) = &firmware_signature {
            println!("  firmware {}", o.to_text());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Adds a Secure Boot v2 block per key, in order (the first replaces no
/// block: a firmware that is already signed keeps its blocks and gains one).
fn sign_firmware(mut firmware: Vec<u8>, keys: &[PathBuf]) -> anyhow::Result<Vec<u8>> {
    use otter_format::secure_boot::sign::{sign_image, SignMode, SigningKey};
    for path in keys {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let key = SigningKey::from_pem(&pem)
            .with_context(|| format!("{} is not a Secure Boot v2 signing key", path.display()))?;
        let len = otter_format::image::inspect(&firmware)?.image_len;
        firmware = sign_image(&firmware, len, &key, SignMode::Append)?;
    }
    Ok(firmware)
}

/// The firmware file of a verified release folder.
fn firmware_path(v: &Verified) -> PathBuf {
    v.manifest
        .artifacts()
        .iter()
        .zip(&v.artifacts)
        .find(|(a, _)| a.kind.name() == "firmware")
        .map(|(_, p)| p.clone())
        .unwrap_or_default()
}

fn print_artifacts(v: &Verified) {
    for (a, path) in v.manifest.artifacts().iter().zip(&v.artifacts) {
        println!(
            "  {:<14} {}  {} ({} bytes)  sha256 {}",
            a.kind.name(),
            path.file_name()
                .map_or_else(|| a.url.into(), |n| n.to_string_lossy()),
            human_size(a.size),
            a.size,
            a.sha256
        );
    }
}

fn print_signers(v: &Verified) {
    let ids: Vec<String> = v.signed_by.iter().map(ToString::to_string).collect();
    println!("  signed by {}", ids.join(", "));
}

/// Checks that `bytes` is a releasable app image and reads its descriptor.
/// Errors are a stable code and a message.
fn check_firmware(bytes: &[u8]) -> Result<AppFacts, (&'static str, String)> {
    let info = verify(bytes, &VerifyOptions::new())
        .map_err(|e| ("invalid_image", format!("not a valid app image: {e}")))?;
    let desc = info.app_desc.as_ref().ok_or((
        "missing_app_desc",
        "the app image has no app descriptor, so it has no version to release".to_owned(),
    ))?;
    let version = desc.version().to_string();
    let project = desc.project_name().to_string();
    if version.trim().is_empty() {
        return Err((
            "no_version",
            "the app descriptor's version is empty; set PROJECT_VER when building".to_owned(),
        ));
    }
    if project.trim().is_empty() {
        return Err((
            "no_project",
            "the app descriptor's project name is empty".to_owned(),
        ));
    }
    Ok(AppFacts {
        chip: info.chip.name(),
        version,
        project,
        secure_version: desc.secure_version(),
    })
}

/// Checks that `bytes` is a web-UI image a device will accept: it mounts as
/// LittleFS and has `/index.html`.
fn check_www(bytes: &[u8]) -> Result<(), (&'static str, String)> {
    let entries = otter_www::list(bytes)
        .map_err(|e| ("not_mountable", format!("not a web-UI image: {e}")))?;
    if !entries.iter().any(|e| !e.is_dir && e.path == "/index.html") {
        return Err((
            "no_index",
            "the web-UI image has no /index.html; the device refuses such an image".to_owned(),
        ));
    }
    Ok(())
}

/// `--expires`: a duration from `created` or an RFC 3339 time, later than `created`.
fn parse_expires(s: &str, created: Timestamp) -> anyhow::Result<Timestamp> {
    let t = match parse_duration(s) {
        Some(secs) => created
            .checked_add(secs)
            .with_context(|| format!("--expires {s:?} is past the year 9999"))?,
        None => s.parse::<Timestamp>().with_context(|| {
            format!("--expires {s:?} is neither a duration (90d, 12h, 2w, 30m, 3600s) nor an RFC 3339 time")
        })?,
    };
    if t <= created {
        bail!("--expires {s:?} is not in the future ({t}); the release would never be installable");
    }
    Ok(t)
}

/// `90d`, `12h`, `2w`, `30m`, `3600s` in seconds; `None` when not of that form.
fn parse_duration(s: &str) -> Option<u64> {
    let unit = s.chars().last()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    let digits = &s[..s.len() - 1];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// `2 days 3 hours`-style rough text for a number of seconds.
fn human_duration(secs: u64) -> String {
    match secs {
        s if s >= 2 * 86_400 => format!("{} days", s / 86_400),
        s if s >= 2 * 3600 => format!("{} hours", s / 3600),
        s if s >= 2 * 60 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn is_empty_or_missing(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

fn load_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key {}", path.display()))?;
    warn_if_readable_by_others(path);
    SigningKey::from_pem(&pem).with_context(|| format!("{}", path.display()))
}

fn load_public_key(path: &Path) -> anyhow::Result<PublicKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key {}", path.display()))?;
    PublicKey::from_pem(&pem).with_context(|| format!("{}", path.display()))
}

/// A private key others can read may already be someone else's: say so.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            if m.permissions().mode() & 0o077 != 0 {
                eprintln!(
                    "warning: {} can be read by other users (mode {:o}); a private key should be 0600",
                    path.display(),
                    m.permissions().mode() & 0o777
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d"), Some(90 * 86_400));
        assert_eq!(parse_duration("12h"), Some(12 * 3600));
        assert_eq!(parse_duration("2w"), Some(14 * 86_400));
        assert_eq!(parse_duration("1s"), Some(1));
        assert_eq!(parse_duration("d"), None);
        assert_eq!(parse_duration("1.5d"), None);
        assert_eq!(parse_duration("-1d"), None);
        assert_eq!(parse_duration("99999999999999999999d"), None);
        assert_eq!(parse_duration("2025-01-01T00:00:00Z"), None);
    }

    #[test]
    fn expiry_must_be_in_the_future() {
        let now = Timestamp::from_unix(1_700_000_000).unwrap();
        assert_eq!(parse_expires("1d", now).unwrap().unix(), 1_700_086_400);
        assert!(parse_expires("0s", now).is_err());
        assert!(parse_expires("2020-01-01T00:00:00Z", now).is_err());
        assert!(parse_expires("2030-01-01T00:00:00Z", now).is_ok());
        assert!(parse_expires("soon", now).is_err());
    }
}
