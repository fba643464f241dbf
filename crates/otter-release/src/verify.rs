//! [`verify_manifest`]: everything a device checks about a manifest before it
//! looks at the firmware.

use crate::keys::{KeyId, PublicKey};
use crate::manifest::Manifest;
#[allow(unused_imports)]
use crate::prelude::*;
use crate::signature::verify_signatures;
use crate::timestamp::Timestamp;
use crate::ReleaseError;

/// The longest `manifest.json` accepted, in bytes. A device reads the whole
/// manifest into memory before it may act on it, so this bounds that buffer.
pub const MAX_MANIFEST_LEN: usize = 64 * 1024;
/// The longest `manifest.json.sig` accepted, in bytes (room for about a
/// hundred signatures).
pub const MAX_SIGNATURE_FILE_LEN: usize = 16 * 1024;

/// A manifest that passed [`verify_manifest_by`], and who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedManifest {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The trusted keys whose signatures verified, in signature-file order.
    pub signed_by: Vec<KeyId>,
}

/// Verifies a manifest and returns it parsed.
///
/// `manifest` is the exact bytes of `manifest.json` as fetched, `sig_file`
/// those of `manifest.json.sig`, `trusted` the public keys the caller trusts,
/// and `now_unix` the current time in seconds since the Unix epoch.
///
/// In order, failing on the first problem: both lengths are within
/// [`MAX_MANIFEST_LEN`] and [`MAX_SIGNATURE_FILE_LEN`]; the signatures pass
/// (see [`crate::signature`]; the manifest is not parsed before they do); the
/// manifest's `format` is `otter-release/1` or `/2`; it parses strictly and its fields
/// are valid ([`Manifest::validate`]); and `now_unix` is before `expires`.
///
/// What it cannot know is the caller's to check: product, chip, version,
/// `secure_version` and size against the device (docs/release-manifest.md,
/// "What the device checks").
pub fn verify_manifest(
    manifest: &[u8],
    sig_file: &[u8],
    trusted: &[PublicKey],
    now_unix: u64,
) -> Result<Manifest, ReleaseError> {
    verify_manifest_by(manifest, sig_file, trusted, now_unix).map(|v| v.manifest)
}

/// [`verify_manifest`], also saying which trusted keys signed.
pub fn verify_manifest_by(
    manifest: &[u8],
    sig_file: &[u8],
    trusted: &[PublicKey],
    now_unix: u64,
) -> Result<VerifiedManifest, ReleaseError> {
    if manifest.len() > MAX_MANIFEST_LEN {
        return Err(ReleaseError::ManifestTooLarge {
            len: manifest.len(),
            max: MAX_MANIFEST_LEN,
        });
    }
    let signed_by = verify_signatures(manifest, sig_file, trusted)?;
    let parsed = Manifest::from_json(manifest)?;
    let now = Timestamp::from_unix_saturating(now_unix);
    if now >= parsed.expires {
        return Err(ReleaseError::Expired {
            expires: parsed.expires,
            now,
        });
    }
    Ok(VerifiedManifest {
        manifest: parsed,
        signed_by,
    })
}
