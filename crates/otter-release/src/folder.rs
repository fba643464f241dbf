//! Release folders: [`write_release`] and [`verify_folder`].
//!
//! A release folder holds `manifest.json` (the exact signed bytes),
//! `manifest.json.sig`, `firmware.bin`, for a bundle `www.bin`, and the
//! firmware's alternative artifacts (`firmware.bin.gz`, deltas). Any
//! static web server can host it; devices fetch the manifest and resolve the
//! artifacts' relative URLs against its URL.

use crate::prelude::*;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::keys::{KeyId, PublicKey, SigningKey};
use crate::manifest::{
    is_absolute_url, is_relative_path, Alternative, Artifact, Encoding, Firmware, Manifest,
    Sha256Digest, FIRMWARE_FILE, WWW_FILE,
};
use crate::signature::sign_manifest;
use crate::timestamp::Timestamp;
use crate::verify::{verify_manifest_by, MAX_MANIFEST_LEN, MAX_SIGNATURE_FILE_LEN};
use crate::ReleaseError;

/// File name of the manifest in a release folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the signature file in a release folder.
pub const SIGNATURE_FILE: &str = "manifest.json.sig";

/// Buffer size for hashing artifacts from disk.
const HASH_BUF_LEN: usize = 64 * 1024;

/// What a release is made of. The caller has checked the images (otter's
/// CLI checks the app image and that the web-UI image mounts).
#[derive(Debug, Clone, Copy)]
pub struct ReleaseSpec<'a> {
    /// The product the release is for.
    pub product: &'a str,
    /// The chip, lowercase (`esp32s3`).
    pub chip: &'a str,
    /// The app descriptor's version.
    pub version: &'a str,
    /// The app descriptor's `secure_version`.
    pub secure_version: u32,
    /// The app descriptor's project name.
    pub project: &'a str,
    /// The app image.
    pub firmware: &'a [u8],
    /// The web-UI image, for a bundle.
    pub www: Option<&'a [u8]>,
    /// Alternative artifacts of the firmware (gzip, deltas), already
    /// checked to decode to `firmware` by the caller. None: an
    /// `otter-release/1` manifest.
    pub alternatives: &'a [AlternativeSpec<'a>],
    /// When it is signed.
    pub created: Timestamp,
    /// When it stops being installable.
    pub expires: Timestamp,
}

/// One alternative artifact of the firmware, to be written beside it.
#[derive(Debug, Clone, Copy)]
pub struct AlternativeSpec<'a> {
    /// How it encodes the firmware.
    pub encoding: Encoding,
    /// Its file name in the release folder (also its relative URL): a
    /// single segment of `[A-Za-z0-9._~-]`.
    pub file: &'a str,
    /// Its bytes.
    pub bytes: &'a [u8],
    /// For a delta, the base image's validation hash.
    pub base_sha256: Option<Sha256Digest>,
}

impl ReleaseSpec<'_> {
    /// The manifest for this release, with the artifacts at `firmware.bin`
    /// and `www.bin` beside it, and the alternatives at their file names;
    /// `otter-release/2` when there are alternatives, else `/1`. Fails when
    /// a field is invalid.
    pub fn manifest(&self) -> Result<Manifest, ReleaseError> {
        let firmware = Firmware {
            version: self.version.to_owned(),
            secure_version: self.secure_version,
            project: self.project.to_owned(),
            url: FIRMWARE_FILE.to_owned(),
            size: self.firmware.len() as u64,
            sha256: Sha256Digest::of(self.firmware),
            alternatives: self
                .alternatives
                .iter()
                .map(|a| Alternative {
                    encoding: a.encoding,
                    url: a.file.to_owned(),
                    size: a.bytes.len() as u64,
                    sha256: Sha256Digest::of(a.bytes),
                    base_sha256: a.base_sha256,
                })
                .collect(),
        };
        for a in self.alternatives {
            // One segment, and not a name the folder already uses.
            let reserved = [FIRMWARE_FILE, WWW_FILE, MANIFEST_FILE, SIGNATURE_FILE];
            if a.file.contains('/') || !is_relative_path(a.file) || reserved.contains(&a.file) {
                return Err(ReleaseError::InvalidField {
                    field: "firmware.alternatives.url",
                    problem: crate::FieldProblem::BadUrl,
                });
            }
        }
        let m = Manifest {
            format: Manifest::format_for(&firmware).to_owned(),
            product: self.product.to_owned(),
            chip: self.chip.to_owned(),
            created: self.created,
            expires: self.expires,
            firmware,
            www: self.www.map(|w| Artifact {
                url: WWW_FILE.to_owned(),
                size: w.len() as u64,
                sha256: Sha256Digest::of(w),
            }),
        };
        m.validate()?;
        Ok(m)
    }
}

/// What [`write_release`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The manifest.
    pub manifest: Manifest,
    /// Its exact bytes, as signed.
    pub manifest_bytes: Vec<u8>,
    /// The signing keys' ids, in signature order.
    pub keyids: Vec<KeyId>,
    /// Every file written, artifacts first, the manifest last.
    pub files: Vec<PathBuf>,
}

/// Writes a signed release into `dir` (created when missing): the artifacts,
/// then `manifest.json.sig`, then `manifest.json`, each through a temporary
/// file renamed into place. Files of the same names are replaced; nothing
/// else in `dir` is touched (whether `dir` may hold anything is the caller's
/// policy).
pub fn write_release(
    dir: &Path,
    spec: &ReleaseSpec<'_>,
    keys: &[SigningKey],
) -> Result<Written, ReleaseError> {
    let manifest = spec.manifest()?;
    let manifest_bytes = manifest.to_json();
    let sig = sign_manifest(&manifest_bytes, keys)?;
    std::fs::create_dir_all(dir).map_err(|source| ReleaseError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<(), ReleaseError> {
        let path = dir.join(name);
        write_atomically(&path, bytes)?;
        files.push(path);
        Ok(())
    };
    put(FIRMWARE_FILE, spec.firmware)?;
    if let Some(w) = spec.www {
        put(WWW_FILE, w)?;
    }
    for a in spec.alternatives {
        put(a.file, a.bytes)?;
    }
    put(SIGNATURE_FILE, &sig)?;
    put(MANIFEST_FILE, &manifest_bytes)?;
    Ok(Written {
        manifest,
        manifest_bytes,
        keyids: keys.iter().map(|k| k.public_key().keyid()).collect(),
        files,
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReleaseError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let err = |source| ReleaseError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

/// A release folder that passed [`verify_folder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The manifest.
    pub manifest: Manifest,
    /// The trusted keys whose signatures verified.
    pub signed_by: Vec<KeyId>,
    /// Each artifact's file, in manifest order (firmware first).
    pub artifacts: Vec<PathBuf>,
}

/// Verifies a release folder as a device would before installing it: the
/// manifest with [`crate::verify_manifest`] at `now_unix`, then every
/// artifact's size and SHA-256. Artifacts with absolute URLs cannot be read
/// here and are refused ([`ReleaseError::ArtifactNotLocal`]).
pub fn verify_folder(
    dir: &Path,
    trusted: &[PublicKey],
    now_unix: u64,
) -> Result<Verified, ReleaseError> {
    if trusted.is_empty() {
        return Err(ReleaseError::NoTrustedKeys);
    }
    let manifest_bytes = read_limited(&dir.join(MANIFEST_FILE), MAX_MANIFEST_LEN)?;
    let sig_bytes = read_limited(&dir.join(SIGNATURE_FILE), MAX_SIGNATURE_FILE_LEN)?;
    let v = verify_manifest_by(&manifest_bytes, &sig_bytes, trusted, now_unix)?;
    let mut artifacts = Vec::new();
    for a in v.manifest.artifacts() {
        if is_absolute_url(a.url) {
            return Err(ReleaseError::ArtifactNotLocal {
                artifact: a.kind.name(),
                url: a.url.to_owned(),
            });
        }
        // A validated relative URL has only `[A-Za-z0-9._~-]` segments, none
        // `.` or `..`: it stays inside `dir`.
        let path = dir.join(a.url);
        check_artifact(&path, a.size, a.sha256)?;
        artifacts.push(path);
    }
    Ok(Verified {
        manifest: v.manifest,
        signed_by: v.signed_by,
        artifacts,
    })
}

/// Reads a file of at most `max` bytes; a longer file is read only to `max + 1`
/// so that the verifier reports it as too large.
fn read_limited(path: &Path, max: usize) -> Result<Vec<u8>, ReleaseError> {
    let err = |source| ReleaseError::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = File::open(path).map_err(err)?;
    let mut out = Vec::new();
    f.take(max as u64 + 1).read_to_end(&mut out).map_err(err)?;
    Ok(out)
}

fn check_artifact(path: &Path, size: u64, sha256: &Sha256Digest) -> Result<(), ReleaseError> {
    let err = |source| ReleaseError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(err)?;
    let len = f.metadata().map_err(err)?.len();
    if len != size {
        return Err(ReleaseError::ArtifactSizeMismatch {
            path: path.to_path_buf(),
            expected: size,
            got: len,
        });
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; HASH_BUF_LEN];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    if total != size {
        // The file changed while it was read.
        return Err(ReleaseError::ArtifactSizeMismatch {
            path: path.to_path_buf(),
            expected: size,
            got: total,
        });
    }
    let got = Sha256Digest(h.finalize().into());
    if &got != sha256 {
        return Err(ReleaseError::ArtifactHashMismatch {
            path: path.to_path_buf(),
            expected: *sha256,
            got,
        });
    }
    Ok(())
}
