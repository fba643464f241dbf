//! Signed release manifests: the `otter-release/1` and `/2` formats, Ed25519 keys,
//! signing, and the checks a device makes before it installs a release.
//!
//! A release is a folder any static web server can host:
//!
//! | file                | what                                                   |
//! |---------------------|--------------------------------------------------------|
//! | `manifest.json`     | [`Manifest`]: product, chip, times, artifacts (signed) |
//! | `manifest.json.sig` | [`SignatureFile`]: Ed25519 signatures of those bytes   |
//! | `firmware.bin`      | the app image                                          |
//! | `www.bin`           | the web-UI LittleFS image (a bundle only)              |
//! | `firmware.bin.gz`, `*.patch` | alternatives of the firmware (`/2` only)      |
//!
//! The signature covers the exact bytes of `manifest.json`, and the manifest
//! holds every artifact's size and SHA-256, so every byte a device acts on is
//! signed. The format, key rotation and expiry are described in
//! `docs/release-manifest.md`.
//!
//! # For a device
//!
//! ```no_run
//! # fn f(manifest: &[u8], sig: &[u8], pem: &str, now: u64) -> Result<(), otter_release::ReleaseError> {
//! use otter_release::{verify_manifest, PublicKey};
//! let trusted = [PublicKey::from_pem(pem)?];
//! let m = verify_manifest(manifest, sig, &trusted, now)?;
//! // Then the device's own checks: m.product, m.chip, m.firmware.version
//! // (compare_versions), m.firmware.secure_version, m.firmware.size.
//! # Ok(()) }
//! ```
//!
//! # What this crate is not
//!
//! It does no networking and knows no device: fetching, and comparing the
//! manifest with what a device runs, belong to the pull client. It does not
//! look inside images either; the CLI checks them before signing.

#![no_std]

extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

/// What every module uses from `alloc`.
#[allow(unused_imports)]
mod prelude {
    pub(crate) use alloc::borrow::ToOwned;
    pub(crate) use alloc::boxed::Box;
    pub(crate) use alloc::format;
    pub(crate) use alloc::string::{String, ToString};
    pub(crate) use alloc::vec;
    pub(crate) use alloc::vec::Vec;
}

mod error;
#[cfg(feature = "std")]
mod folder;
mod keys;
mod manifest;
pub mod signature;
mod timestamp;
mod verify;
mod version;

pub use error::{FieldProblem, KeyDecodeError, KeyIdList, KeyKind, ReleaseError, SignatureFault};
#[cfg(feature = "std")]
pub use folder::{
    verify_folder, write_release, AlternativeSpec, ReleaseSpec, Verified, Written, MANIFEST_FILE,
    SIGNATURE_FILE,
};
pub use keys::{KeyId, KeyIdSyntax, PublicKey, SigningKey, KEY_ID_LEN};
pub use manifest::{
    resolve_url, Alternative, Artifact, ArtifactKind, ArtifactRef, DigestSyntax, Encoding,
    Firmware, Manifest, Sha256Digest, FIRMWARE_FILE, FORMAT, FORMAT_2, MAX_ALTERNATIVES,
    MAX_NAME_LEN, MAX_URL_LEN, WWW_FILE,
};
pub use signature::{
    sign_manifest, verify_signatures, SignatureEntry, SignatureFile, SIGNATURE_FORMAT,
};
pub use timestamp::{Timestamp, TimestampError};
pub use verify::{
    verify_manifest, verify_manifest_by, VerifiedManifest, MAX_MANIFEST_LEN, MAX_SIGNATURE_FILE_LEN,
};
pub use version::compare_versions;

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> alloc::string::String {
    hex::encode(bytes)
}
