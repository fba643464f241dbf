//! `otter keygen -o NAME`: an Ed25519 key pair for signing releases.
//!
//! Writes `NAME.key` (the private key, PKCS#8 PEM as `openssl genpkey
//! -algorithm ed25519` writes it, readable by its owner only) and `NAME.pub`
//! (the public key, SPKI PEM as `openssl pkey -pubout` writes it), and prints
//! the key id that signatures by this key carry. Refuses to replace either
//! file unless `--force` (exit 2): a lost private key cannot be recovered, and
//! devices trusting it would have to be re-keyed.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use otter_release::SigningKey;
use serde_json::json;

use crate::output::print_json;

/// Arguments of `otter keygen`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Base name of the key files: writes NAME.key (private) and NAME.pub (public).
    #[arg(short, long, value_name = "NAME")]
    output: PathBuf,
    /// Replace existing NAME.key and NAME.pub.
    #[arg(long)]
    force: bool,
    /// Report as JSON: `{ok, key, pub, keyid}`.
    #[arg(long)]
    json: bool,
}

/// Runs `otter keygen`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let key_path = with_suffix(&args.output, ".key");
    let pub_path = with_suffix(&args.output, ".pub");
    if !args.force {
        for p in [&key_path, &pub_path] {
            if p.exists() {
                bail!(
                    "{} already exists; refusing to replace a key (pass --force to replace it)",
                    p.display()
                );
            }
        }
    }
    let key = SigningKey::generate().context("making a key")?;
    let public = key.public_key();
    let pem = key.to_pem();
    // Never write a key file that does not read back as the same key.
    let reread = SigningKey::from_pem(&pem).context("re-reading the new key's PEM")?;
    if reread.public_key() != public {
        bail!("the new key's PEM does not read back as the same key; nothing was written");
    }
    write_private(&key_path, pem.as_bytes())?;
    std::fs::write(&pub_path, public.to_pem())
        .with_context(|| format!("writing {}", pub_path.display()))?;
    let keyid = public.keyid().to_string();
    if args.json {
        print_json(&json!({
            "ok": true,
            "key": key_path.display().to_string(),
            "pub": pub_path.display().to_string(),
            "keyid": keyid,
        }))?;
    } else {
        println!(
            "wrote {} (private: keep it secret) and {} (public: give it to devices)",
            key_path.display(),
            pub_path.display()
        );
        println!("keyid {keyid}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `NAME` + `suffix`, keeping any dots already in NAME (`a.b` → `a.b.key`).
fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(base.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes the private key so that only its owner can ever read it: a fresh
/// file created with mode 0600 (an old one is removed first, so its mode
/// cannot leak into the new key).
fn write_private(path: &Path, pem: &[u8]) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("replacing {}", path.display())),
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(pem)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
