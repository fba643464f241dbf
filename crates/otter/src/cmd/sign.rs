//! `otter sign IMAGE --key KEY.pem -o OUT`: add a Secure Boot v2 signature
//! block, as `espsecure sign-data --version 2` does.
//!
//! The image is padded with 0xFF to the next 4 KiB boundary and the 4 KiB
//! signature sector follows. `--append` keeps the blocks an already signed
//! image carries and adds one (up to three), for key rotation; without it a
//! signed image is refused. Exit 0 signed, 2 when the image, the key or the
//! existing sector does not allow it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use otter_format::image::inspect;
use otter_format::secure_boot::sign::{sign_image, SignMode, SigningKey};
use otter_format::secure_boot::{parse_sector, signed_len, Slot};
use serde_json::json;

use crate::output::{hex, print_json};

/// Arguments of `otter sign`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The app or bootloader image to sign.
    file: PathBuf,
    /// Private key in PEM (RSA-3072, ECDSA P-256 or P-384, as `espsecure
    /// generate-signing-key --version 2` writes it).
    #[arg(short, long)]
    key: PathBuf,
    /// Output file (may be the input file).
    #[arg(short, long)]
    output: PathBuf,
    /// Keep the signature blocks already present and add one more.
    #[arg(long)]
    append: bool,
    /// Report as JSON: `{ok, output, signed_len, blocks: [{block, scheme, key_digest}]}`.
    #[arg(long)]
    json: bool,
}

/// Runs `otter sign`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let info = inspect(&bytes)
        .with_context(|| format!("{} is not a readable image", args.file.display()))?;
    let pem = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let key = SigningKey::from_pem(&pem)
        .with_context(|| format!("{} is not a Secure Boot v2 signing key", args.key.display()))?;
    let mode = if args.append {
        SignMode::Append
    } else {
        SignMode::Fresh
    };
    let out = sign_image(&bytes, info.image_len, &key, mode)
        .with_context(|| format!("signing {}", args.file.display()))?;
    std::fs::write(&args.output, &out)
        .with_context(|| format!("writing {}", args.output.display()))?;
    let sl = signed_len(info.image_len);
    let sector = out.get(usize::try_from(sl)?..).unwrap_or_default();
    let slots = parse_sector(sector, sl).context("re-reading the new signature sector")?;
    let blocks: Vec<_> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Slot::Block(b) => Some((i, b.scheme(), b.key_digest())),
            Slot::Empty => None,
        })
        .collect();
    if args.json {
        print_json(&json!({
            "ok": true,
            "output": args.output.display().to_string(),
            "signed_len": sl,
            "blocks": blocks.iter().map(|(i, s, d)| json!({
                "block": i, "scheme": s.name(), "key_digest": hex(d),
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        println!(
            "signed {} bytes of {} with {} key {}",
            sl,
            args.file.display(),
            key.scheme(),
            hex(&key.public_key().digest())
        );
        println!(
            "wrote {} ({} bytes); signature sector at {:#x} holds {} block(s)",
            args.output.display(),
            out.len(),
            sl,
            blocks.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
