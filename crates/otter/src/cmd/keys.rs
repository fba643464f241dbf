//! `otter keys`: Secure Boot key helpers.
//!
//! `otter keys digest KEY.pem` prints the SHA-256 digest of the public key
//! as a Secure Boot v2 signature block stores it, the value burnt into an
//! eFuse key block. `-o FILE` writes the 32 raw bytes, byte for byte what
//! `espsecure digest-sbv2-public-key --keyfile KEY.pem -o FILE` writes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use otter_format::secure_boot::sign::PublicKey;
use serde_json::json;

use crate::output::{hex, print_json};

/// `otter keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print the eFuse digest of a Secure Boot v2 public key (RSA-3072,
    /// ECDSA P-256 or P-384; a private key PEM gives its public half).
    Digest {
        /// Key file in PEM.
        key: PathBuf,
        /// Also write the 32 raw digest bytes here (as espsecure does).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Print JSON: `{key, scheme, digest}`.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an `otter keys` subcommand.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Digest { key, output, json } => {
            let pem = std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?;
            let public = PublicKey::from_pem(&pem)
                .with_context(|| format!("{} is not a Secure Boot v2 key", key.display()))?;
            let digest = public.digest();
            if let Some(out) = &output {
                std::fs::write(out, digest)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
            if json {
                print_json(&json!({
                    "key": key.display().to_string(),
                    "scheme": public.scheme().name(),
                    "digest": hex(&digest),
                }))?;
            } else {
                println!("{}", hex(&digest));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
