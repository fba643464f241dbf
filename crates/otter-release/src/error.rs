//! [`ReleaseError`]: every way reading, writing or checking a release fails.
//!
//! Variants are grouped by who is at fault:
//!
//! - the **release** (whoever published or changed the files): a manifest or
//!   signature file that is malformed, unsigned, badly signed, expired, or
//!   whose artifacts do not match it. A device must refuse such a release.
//! - the **key files** handed to the caller: not an Ed25519 PEM key, or the
//!   wrong half of a pair.
//! - the **caller** (misuse of this API): no keys at all.
//! - the **system**: reading or writing files, the random source.

#[allow(unused_imports)]
use crate::prelude::*;
#[cfg(feature = "std")]
use std::path::PathBuf;

#[cfg(feature = "std")]
use crate::manifest::Sha256Digest;
use crate::timestamp::Timestamp;
use crate::KeyId;

/// Why a release could not be written, read or trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    // ---- the release is at fault -------------------------------------------
    /// The manifest is longer than any otter manifest may be (the device
    /// reads it into a fixed buffer).
    #[error("the manifest is {len} bytes, more than the {max}-byte limit: it is not an otter release manifest")]
    ManifestTooLarge {
        /// Its length.
        len: usize,
        /// [`crate::MAX_MANIFEST_LEN`].
        max: usize,
    },
    /// The signature file is longer than any otter signature file may be.
    #[error("the signature file is {len} bytes, more than the {max}-byte limit: it is not an otter signature file")]
    SignatureFileTooLarge {
        /// Its length.
        len: usize,
        /// [`crate::MAX_SIGNATURE_FILE_LEN`].
        max: usize,
    },
    /// The signature file is not JSON of the `otter-signature/1` shape.
    #[error("the signature file is not a valid otter-signature/1 document: {source}")]
    SignatureFileMalformed {
        /// The JSON error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// The signature file names a format this version of otter does not know.
    #[error("the signature file's format is {format:?}, not \"otter-signature/1\": this otter cannot check it; update otter")]
    UnknownSignatureFormat {
        /// The `format` it names.
        format: String,
    },
    /// No signature in the signature file is by a trusted key.
    #[error("no signature by a trusted key: the manifest is signed by {found} and the trusted keys are {trusted}; trust the release's public key, or sign the release with a trusted key")]
    NoTrustedSignature {
        /// Key ids of the signatures present (possibly none), comma-separated.
        found: KeyIdList,
        /// Key ids of the trusted keys, comma-separated.
        trusted: KeyIdList,
    },
    /// A signature by a trusted key failed. The release is refused even when
    /// another trusted key signed it correctly: a bad signature by a key we
    /// trust means the files were changed or the signer is broken.
    #[error("the signature by trusted key {keyid} {fault}: the manifest or its signature was changed after signing; refusing the release")]
    BadSignature {
        /// The trusted key the signature claims.
        keyid: KeyId,
        /// What is wrong with it.
        fault: SignatureFault,
    },
    /// The manifest is not JSON of the shape its `format` names (bad syntax,
    /// a missing or unknown field, a duplicate field, a wrong type).
    #[error("the manifest is not a valid otter-release manifest: {source}")]
    ManifestMalformed {
        /// The JSON error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest names a format this version of otter does not know.
    #[error("the manifest's format is {format:?}, not \"otter-release/1\" or \"otter-release/2\": this otter cannot read it; update otter or publish an otter-release/1 manifest")]
    UnknownFormat {
        /// The `format` it names (empty when missing or not a string).
        format: String,
    },
    /// A manifest field parsed but its value is not acceptable.
    #[error("the manifest's {field} {problem}")]
    InvalidField {
        /// The field's JSON path (`firmware.url`).
        field: &'static str,
        /// What is wrong with it.
        problem: FieldProblem,
    },
    /// The manifest's expiry time has passed.
    #[error("the manifest expired at {expires} (it is now {now}): publish a freshly signed release with a later expiry")]
    Expired {
        /// When it expired.
        expires: Timestamp,
        /// The time it was checked at.
        now: Timestamp,
    },
    /// An artifact's URL points outside the release folder, so a local check
    /// cannot read it.
    #[error("{artifact} is hosted elsewhere ({url}): only artifacts inside the release folder can be checked")]
    ArtifactNotLocal {
        /// `firmware` or `www`.
        artifact: &'static str,
        /// Its absolute URL.
        url: String,
    },
    /// An artifact file has another length than the manifest says.
    #[cfg(feature = "std")]
    #[error("{} is {got} bytes but the manifest says {expected}: the file was changed or replaced after signing", path.display())]
    ArtifactSizeMismatch {
        /// The file.
        path: PathBuf,
        /// The manifest's `size`.
        expected: u64,
        /// The file's length.
        got: u64,
    },
    /// An artifact file has another SHA-256 than the manifest says.
    #[cfg(feature = "std")]
    #[error("{} has SHA-256 {got} but the manifest says {expected}: the file was changed or replaced after signing", path.display())]
    ArtifactHashMismatch {
        /// The file.
        path: PathBuf,
        /// The manifest's `sha256`.
        expected: Sha256Digest,
        /// The file's digest.
        got: Sha256Digest,
    },

    // ---- the key files are at fault ----------------------------------------
    /// A key file is not an Ed25519 key in the expected PEM form.
    #[error("not an Ed25519 {expected} key in PEM form ({detail})")]
    BadKey {
        /// What was expected.
        expected: KeyKind,
        /// What the PEM/DER decoder said.
        detail: KeyDecodeError,
    },
    /// A key file holds the other half of a key pair.
    #[error("this is an Ed25519 {found} key, but a {expected} key is needed here")]
    WrongKeyKind {
        /// What was expected.
        expected: KeyKind,
        /// What the file holds.
        found: KeyKind,
    },

    // ---- the caller is at fault --------------------------------------------
    /// Signing was asked for with no signing key.
    #[error("no signing key was given: a release needs at least one signature")]
    NoSigningKeys,
    /// Verification was asked for with no trusted key.
    #[error("no trusted public key was given: nothing can be verified without one")]
    NoTrustedKeys,

    // ---- the system failed -------------------------------------------------
    /// Reading a file failed.
    #[cfg(feature = "std")]
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a file failed.
    #[cfg(feature = "std")]
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random source failed while making a key.
    #[cfg(feature = "std")]
    #[error("the operating system's random source failed: {0}")]
    Random(getrandom::Error),
}

impl ReleaseError {
    /// A stable machine-readable name for the variant (`bad_signature`,
    /// `expired`, ...), for JSON output and device status.
    pub fn code(&self) -> &'static str {
        match self {
            ReleaseError::ManifestTooLarge { .. } => "manifest_too_large",
            ReleaseError::SignatureFileTooLarge { .. } => "signature_file_too_large",
            ReleaseError::SignatureFileMalformed { .. } => "signature_file_malformed",
            ReleaseError::UnknownSignatureFormat { .. } => "unknown_signature_format",
            ReleaseError::NoTrustedSignature { .. } => "no_trusted_signature",
            ReleaseError::BadSignature { .. } => "bad_signature",
            ReleaseError::ManifestMalformed { .. } => "manifest_malformed",
            ReleaseError::UnknownFormat { .. } => "unknown_format",
            ReleaseError::InvalidField { .. } => "invalid_field",
            ReleaseError::Expired { .. } => "expired",
            ReleaseError::ArtifactNotLocal { .. } => "artifact_not_local",
            #[cfg(feature = "std")]
            ReleaseError::ArtifactSizeMismatch { .. } => "artifact_size_mismatch",
            #[cfg(feature = "std")]
            ReleaseError::ArtifactHashMismatch { .. } => "artifact_sha256_mismatch",
            ReleaseError::BadKey { .. } => "bad_key",
            ReleaseError::WrongKeyKind { .. } => "wrong_key_kind",
            ReleaseError::NoSigningKeys => "no_signing_keys",
            ReleaseError::NoTrustedKeys => "no_trusted_keys",
            #[cfg(feature = "std")]
            ReleaseError::Read { .. } => "read",
            #[cfg(feature = "std")]
            ReleaseError::Write { .. } => "write",
            #[cfg(feature = "std")]
            ReleaseError::Random(_) => "random",
        }
    }
}

/// What is wrong with one signature by a trusted key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureFault {
    /// It names an algorithm other than `ed25519`.
    #[error("uses algorithm {0:?}, not \"ed25519\"")]
    UnsupportedAlgorithm(String),
    /// `sig` is not the standard base64 of 64 bytes.
    #[error("is not the base64 of a 64-byte Ed25519 signature")]
    Encoding,
    /// It does not verify over the manifest's bytes.
    #[error("does not match the manifest")]
    Mismatch,
}

/// What is wrong with a manifest field's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldProblem {
    /// It is empty.
    #[error("is empty")]
    Empty,
    /// It holds a control character (or, for names, whitespace at an end).
    #[error("holds a control character or leading/trailing whitespace")]
    BadCharacters,
    /// It is longer than the format allows.
    #[error("is longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// The chip is not a lowercase chip name such as `esp32s3`.
    #[error("is not a lowercase chip name such as \"esp32s3\"")]
    BadChip,
    /// The expiry is not after the creation time.
    #[error("is not later than created")]
    NotAfterCreated,
    /// An artifact is empty.
    #[error("is zero")]
    Zero,
    /// More entries than the format allows.
    #[error("has more than {max} entries")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// A field the entry needs is absent (a delta's `base_sha256`).
    #[error("is missing: a delta names the SHA-256 of the image it applies to")]
    Missing,
    /// A gzip entry names a base image.
    #[error("is given for a gzip artifact, which has no base image")]
    NotForGzip,
    /// Two entries say the same thing (two gzip artifacts, two deltas from
    /// one base).
    #[error("lists two artifacts of the same encoding and base")]
    Duplicate,
    /// The field exists only from `otter-release/2` on.
    #[error("needs format \"otter-release/2\"")]
    NeedsFormat2,
    /// A URL is neither an absolute http(s) URL nor a plain relative path.
    #[error("is not an absolute http:// or https:// URL nor a relative path of letters, digits, '.', '_', '~', '-' and '/' without '.' or '..' segments")]
    BadUrl,
}

/// Which half of a key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// A PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`).
    Private,
    /// An SPKI public key (`-----BEGIN PUBLIC KEY-----`).
    Public,
}

impl core::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            KeyKind::Private => "private (PKCS#8, BEGIN PRIVATE KEY)",
            KeyKind::Public => "public (SPKI, BEGIN PUBLIC KEY)",
        })
    }
}

/// The PEM/DER decoder's complaint about a key file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyDecodeError {
    /// From the PKCS#8 decoder.
    #[error("{0}")]
    Pkcs8(ed25519_dalek::pkcs8::Error),
    /// From the SPKI decoder.
    #[error("{0}")]
    Spki(ed25519_dalek::pkcs8::spki::Error),
}

/// Key ids for a message: `a1b2c3d4e5f60718, 0011223344556677`, or `none`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyIdList(pub Vec<String>);

impl core::fmt::Display for KeyIdList {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&self.0.join(", "))
    }
}
