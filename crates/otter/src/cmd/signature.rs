//! Secure Boot signatures in `otter image verify` and `otter image info`:
//! the trust options, the check, and how its outcome is shown.

use std::path::PathBuf;

use anyhow::{bail, Context};
use otter_format::image::{ImageInfo, SignatureScheme};
use otter_format::secure_boot::sign::PublicKey;
use otter_format::secure_boot::{
    parse_sector, signed_len, verify_v1, verify_v2, Scheme, SignatureError, Slot, TrustedKeys,
};
use serde_json::{json, Value};

use crate::output::hex;

/// Trust options of `otter image verify`.
#[derive(clap::Args, Debug, Default)]
pub struct TrustArgs {
    /// Check the Secure Boot signature with this public key (PEM; a private
    /// key PEM gives its public half). Repeatable.
    #[arg(long = "key", value_name = "KEY.pem")]
    keys: Vec<PathBuf>,
    /// Check the Secure Boot v2 signature against this eFuse key digest (64
    /// hex digits, as `otter keys digest` prints). Repeatable.
    #[arg(long = "key-digest", value_name = "HEX")]
    digests: Vec<String>,
    /// Refuse blocks signed by the key with this digest (a revoked eFuse
    /// key). Repeatable.
    #[arg(long = "revoked-digest", value_name = "HEX")]
    revoked: Vec<String>,
}

impl TrustArgs {
    /// Trust options from key files and digests (no revocations).
    pub fn new(keys: Vec<PathBuf>, digests: Vec<String>) -> Self {
        Self {
            keys,
            digests,
            revoked: Vec::new(),
        }
    }

    /// True when any trust option was given.
    pub fn any(&self) -> bool {
        !self.keys.is_empty() || !self.digests.is_empty() || !self.revoked.is_empty()
    }
}

/// Keys loaded from the trust options.
pub struct Trust {
    keys: Vec<(PathBuf, PublicKey)>,
    digests: Vec<[u8; 32]>,
    revoked: Vec<[u8; 32]>,
}

/// Reads the key files and digests (errors here are exit 2: unreadable input).
pub fn load(args: &TrustArgs) -> anyhow::Result<Trust> {
    let mut keys = Vec::new();
    let mut digests = Vec::new();
    for path in &args.keys {
        let pem =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let k = PublicKey::from_pem(&pem)
            .with_context(|| format!("{} is not a Secure Boot key", path.display()))?;
        digests.push(k.digest());
        keys.push((path.clone(), k));
    }
    for d in &args.digests {
        digests.push(parse_digest(d).context("--key-digest")?);
    }
    let revoked = args
        .revoked
        .iter()
        .map(|d| parse_digest(d).context("--revoked-digest"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if digests.is_empty() {
        bail!("give a key to check the signature with (--key or --key-digest)");
    }
    Ok(Trust {
        keys,
        digests,
        revoked,
    })
}

fn parse_digest(s: &str) -> anyhow::Result<[u8; 32]> {
    let t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let mut d = [0u8; 32];
    hex::decode_to_slice(&t, &mut d)
        .map_err(|_| anyhow::anyhow!("a key digest is 64 hex digits, got {s:?}"))?;
    Ok(d)
}

/// The outcome of a signature check.
pub enum Outcome {
    /// A v2 block verified.
    V2 {
        /// Block number.
        block: u8,
        /// Its scheme.
        scheme: Scheme,
        /// Its key digest.
        key_digest: [u8; 32],
        /// Blocks in the sector.
        blocks: u8,
    },
    /// The v1 signature verified with this key file.
    V1 {
        /// The key file that verified it.
        key: PathBuf,
    },
    /// The check failed: a stable code and a message.
    Failed {
        /// Machine-readable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Outcome {
    /// True when the signature verified.
    pub fn ok(&self) -> bool {
        !matches!(self, Outcome::Failed { .. })
    }

    fn failed(e: &SignatureError) -> Outcome {
        Outcome::Failed {
            code: e.code(),
            message: e.to_string(),
        }
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        match self {
            Outcome::V2 {
                block,
                scheme,
                key_digest,
                blocks,
            } => json!({
                "verified": true, "version": 2, "block": block, "blocks": blocks,
                "scheme": scheme.name(), "key_digest": hex(key_digest),
            }),
            Outcome::V1 { key } => json!({
                "verified": true, "version": 1, "scheme": "ecdsa256",
                "key": key.display().to_string(),
            }),
            Outcome::Failed { code, message } => json!({
                "verified": false, "error": code, "message": message,
            }),
        }
    }

    /// As one line of text.
    pub fn to_text(&self) -> String {
        match self {
            Outcome::V2 {
                block,
                scheme,
                key_digest,
                blocks,
            } => format!(
                "Secure Boot v2 signature verified: block {block} of {blocks}, {scheme}, key digest {}",
                hex(key_digest)
            ),
            Outcome::V1 { key } => format!(
                "Secure Boot v1 signature verified with {}",
                key.display()
            ),
            Outcome::Failed { message, .. } => format!("signature: {message}"),
        }
    }
}

/// Checks the signature of `bytes`, a valid image described by `info`.
pub fn check(bytes: &[u8], info: &ImageInfo, trust: &Trust) -> Outcome {
    if info.signature.map(|s| s.scheme) == Some(SignatureScheme::SecureBootV1) {
        return check_v1(bytes, info, trust);
    }
    let t = TrustedKeys::new(&trust.digests).revoking(&trust.revoked);
    match verify_v2(bytes, info.image_len, &t) {
        Ok(v) => Outcome::V2 {
            block: v.block,
            scheme: v.scheme,
            key_digest: v.key_digest,
            blocks: v.blocks,
        },
        Err(e) => Outcome::failed(&e),
    }
}

fn check_v1(bytes: &[u8], info: &ImageInfo, trust: &Trust) -> Outcome {
    let p256: Vec<_> = trust
        .keys
        .iter()
        .filter_map(|(p, k)| k.p256_sec1().map(|s| (p, s)))
        .collect();
    if p256.is_empty() {
        return Outcome::Failed {
            code: "v1_needs_key",
            message: "the image has a Secure Boot v1 signature, which carries no public key: \
                      a key digest cannot check it; give the ECDSA P-256 public key"
                .to_string(),
        };
    }
    let mut last = None;
    for (path, sec1) in p256 {
        match verify_v1(bytes, info.image_len, &sec1) {
            Ok(_) => return Outcome::V1 { key: path.clone() },
            Err(e) => last = Some(e),
        }
    }
    last.map_or(
        Outcome::Failed {
            code: "unsigned",
            message: "no Secure Boot v1 signature".to_string(),
        },
        |e| Outcome::failed(&e),
    )
}

/// The signature blocks of an image, for `otter image info`: JSON and lines.
pub fn describe(bytes: &[u8], info: &ImageInfo) -> (Value, Vec<String>) {
    let Some(sig) = info.signature else {
        return (Value::Null, Vec::new());
    };
    let mut lines = vec![format!(
        "Signature:      {} at {:#x} ({} bytes)",
        sig.scheme.name(),
        sig.offset,
        sig.len
    )];
    let mut blocks = Vec::new();
    if sig.scheme == SignatureScheme::SecureBootV2 {
        let sl = signed_len(info.image_len);
        let sector = usize::try_from(sl)
            .ok()
            .and_then(|s| bytes.get(s..))
            .unwrap_or_default();
        match parse_sector(sector, sl) {
            Ok(slots) => {
                for (i, slot) in slots.iter().enumerate() {
                    if let Slot::Block(b) = slot {
                        lines.push(format!(
                            "  block {i}:      {}, key digest {}",
                            b.scheme(),
                            hex(&b.key_digest())
                        ));
                        blocks.push(json!({
                            "block": i, "scheme": b.scheme().name(),
                            "key_digest": hex(&b.key_digest()),
                        }));
                    }
                }
            }
            Err(e) => {
                lines.push(format!("  unreadable:    {e}"));
                blocks.push(json!({ "error": e.code(), "message": e.to_string() }));
            }
        }
    } else {
        lines.push("  ECDSA P-256, no key in the block (check with --key)".to_string());
    }
    (
        json!({
            "scheme": sig.scheme.name(), "offset": sig.offset, "len": sig.len,
            "blocks": blocks,
        }),
        lines,
    )
}
