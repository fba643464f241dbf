//! [`Manifest`]: what a release is, as the signed `manifest.json` says it.
//!
//! ```json
//! {
//!   "format": "otter-release/1",
//!   "product": "thermostat",
//!   "chip": "esp32s3",
//!   "created": "2025-06-01T12:00:00Z",
//!   "expires": "2025-07-01T12:00:00Z",
//!   "firmware": {
//!     "version": "1.4.0", "secure_version": 2, "project": "thermostat",
//!     "url": "firmware.bin", "size": 912384, "sha256": "<64 hex digits>"
//!   },
//!   "www": { "url": "www.bin", "size": 262144, "sha256": "<64 hex digits>" }
//! }
//! ```
//!
//! Parsing is strict: an unknown field anywhere, a duplicate field, a missing
//! field or a wrong type is refused, so nothing in the signed bytes can carry
//! meaning this version of otter would silently ignore. New fields come with a
//! new `format` (docs/release-manifest.md, "Versioning").
//!
//! Two formats are read: `otter-release/1` ([`FORMAT`]) and
//! `otter-release/2` ([`FORMAT_2`]), which adds `firmware.alternatives`:
//! the same image as a gzip stream or as `esp_delta_ota` patches from earlier
//! images ([`Alternative`]). [`Manifest::format_for`] picks the oldest format
//! that holds a manifest's fields, so a release without alternatives is
//! still `/1` and older devices keep reading it.

#[allow(unused_imports)]
use crate::prelude::*;
use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::FieldProblem;
use crate::keys::lower_hex_value;
use crate::timestamp::Timestamp;
use crate::ReleaseError;

/// The `format` of a manifest without alternative artifacts: what every
/// otter device reads.
pub const FORMAT: &str = "otter-release/1";
/// The `format` of a manifest whose firmware lists alternative artifacts
/// (`firmware.alternatives`); read by this version beside [`FORMAT`].
pub const FORMAT_2: &str = "otter-release/2";

/// Most alternative artifacts one firmware may list.
pub const MAX_ALTERNATIVES: usize = 8;

/// File name of the firmware artifact in a release folder.
pub const FIRMWARE_FILE: &str = "firmware.bin";
/// File name of the web-UI artifact in a release folder.
pub const WWW_FILE: &str = "www.bin";

/// Longest product, chip, version or project name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Longest artifact URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// A release manifest (`otter-release/1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// What product the release is for; a device installs only its own.
    pub product: String,
    /// The chip the firmware is built for, lowercase (`esp32s3`).
    pub chip: String,
    /// When the release was signed.
    pub created: Timestamp,
    /// After this the release must not be installed.
    pub expires: Timestamp,
    /// The firmware image.
    pub firmware: Firmware,
    /// The web-UI image (LittleFS), when the release is a bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub www: Option<Artifact>,
}

/// The firmware entry: the app image and what its app descriptor says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firmware {
    /// The app descriptor's `version`.
    pub version: String,
    /// The app descriptor's anti-rollback `secure_version`.
    pub secure_version: u32,
    /// The app descriptor's `project_name`.
    pub project: String,
    /// Where to fetch it: absolute, or relative to the manifest's URL.
    pub url: String,
    /// Its length in bytes.
    pub size: u64,
    /// The SHA-256 of the whole file.
    pub sha256: Sha256Digest,
    /// The same image as other artifacts (gzip, deltas), smaller to fetch;
    /// `otter-release/2` only, at most [`MAX_ALTERNATIVES`]. Whichever a
    /// device fetches, what it decodes must be this entry's `size` and
    /// `sha256`; this entry stays the fallback.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<Alternative>,
}

/// How an alternative artifact encodes the firmware image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Encoding {
    /// RFC 1952 gzip of the whole image file.
    Gzip,
    /// An `esp_delta_ota` patch (64-byte header naming the base image, then
    /// a detools sequential patch) from the image `base_sha256` names.
    Delta,
}

impl Encoding {
    /// The manifest's name: `gzip` or `delta`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Delta => "delta",
        }
    }
}

/// One alternative artifact of the firmware image (`otter-release/2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alternative {
    /// How it encodes the image.
    pub encoding: Encoding,
    /// Where to fetch it: absolute, or relative to the manifest's URL.
    pub url: String,
    /// Its length in bytes (what travels).
    pub size: u64,
    /// The SHA-256 of the artifact's own bytes (not of the image).
    pub sha256: Sha256Digest,
    /// For a delta: the base image's validation hash, the SHA-256 appended
    /// to the app image (as `esptool image-info` prints it and the patch's
    /// header names it). Absent for gzip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_sha256: Option<Sha256Digest>,
}

/// An artifact other than the firmware (the web-UI image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Where to fetch it: absolute, or relative to the manifest's URL.
    pub url: String,
    /// Its length in bytes.
    pub size: u64,
    /// The SHA-256 of the whole file.
    pub sha256: Sha256Digest,
}

/// Which artifact of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArtifactKind {
    /// The app image.
    Firmware,
    /// The web-UI image.
    Www,
    /// An alternative artifact of the app image.
    Alternative(Encoding),
}

impl ArtifactKind {
    /// The manifest key: `firmware`, `www`, or for an alternative
    /// `firmware.gzip` / `firmware.delta`.
    pub fn name(self) -> &'static str {
        match self {
            ArtifactKind::Firmware => "firmware",
            ArtifactKind::Www => "www",
            ArtifactKind::Alternative(Encoding::Gzip) => "firmware.gzip",
            ArtifactKind::Alternative(Encoding::Delta) => "firmware.delta",
        }
    }
}

/// One artifact's location and identity, whichever kind it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactRef<'a> {
    /// Which one.
    pub kind: ArtifactKind,
    /// Its URL as written in the manifest.
    pub url: &'a str,
    /// Its length in bytes.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: &'a Sha256Digest,
}

/// A SHA-256 digest; 64 lowercase hex digits in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

/// A string that is not 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a SHA-256 is 64 lowercase hex digits")]
pub struct DigestSyntax;

impl Manifest {
    /// Parses and checks a manifest's bytes, without any signature check
    /// (use [`crate::verify_manifest`] for bytes from the network).
    ///
    /// Refuses an unknown `format` first, so a newer manifest is reported as
    /// such rather than as a field this version does not know.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, ReleaseError> {
        // First only the format, from any JSON object.
        let probe: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes)
            .map_err(|source| ReleaseError::ManifestMalformed { source })?;
        match probe.get("format") {
            Some(serde_json::Value::String(f)) if f.as_str() == FORMAT => {
                // `/1` has no alternatives: the field is as unknown there as
                // any other (refused the way serde refuses one).
                let has_alternatives = probe
                    .get("firmware")
                    .and_then(serde_json::Value::as_object)
                    .is_some_and(|fw| fw.contains_key("alternatives"));
                if has_alternatives {
                    return Err(ReleaseError::ManifestMalformed {
                        source: <serde_json::Error as serde::de::Error>::unknown_field(
                            "alternatives",
                            FIRMWARE_FIELDS_1,
                        ),
                    });
                }
            }
            Some(serde_json::Value::String(f)) if f.as_str() == FORMAT_2 => {}
            Some(serde_json::Value::String(f)) => {
                return Err(ReleaseError::UnknownFormat {
                    format: f.chars().take(64).collect(),
                })
            }
            _ => {
                return Err(ReleaseError::UnknownFormat {
                    format: String::new(),
                })
            }
        }
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|source| ReleaseError::ManifestMalformed { source })?;
        m.validate()?;
        Ok(m)
    }

    /// The exact bytes otter writes and signs: pretty JSON, fields in the
    /// documented order, and a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain strings, numbers and well-formed timestamps into
        // a Vec cannot fail.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// The oldest format that holds this manifest's fields:
    /// [`FORMAT_2`] when the firmware lists alternatives, else [`FORMAT`]
    /// (so devices that read only `/1` keep reading it).
    pub fn format_for(firmware: &Firmware) -> &'static str {
        if firmware.alternatives.is_empty() {
            FORMAT
        } else {
            FORMAT_2
        }
    }

    /// Checks what the types do not: the format, non-empty names without
    /// control characters, a lowercase chip name, URLs, non-zero sizes, and
    /// an expiry after the creation time; for alternatives, their number,
    /// URLs, sizes, that a delta names its base and gzip does not, at most
    /// one gzip and one delta per base.
    pub fn validate(&self) -> Result<(), ReleaseError> {
        match self.format.as_str() {
            FORMAT if !self.firmware.alternatives.is_empty() => {
                return invalid("firmware.alternatives", FieldProblem::NeedsFormat2);
            }
            FORMAT | FORMAT_2 => {}
            _ => {
                return Err(ReleaseError::UnknownFormat {
                    format: self.format.chars().take(64).collect(),
                })
            }
        }
        check_name("product", &self.product)?;
        check_name("chip", &self.chip)?;
        if !self
            .chip
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return invalid("chip", FieldProblem::BadChip);
        }
        if self.expires <= self.created {
            return invalid("expires", FieldProblem::NotAfterCreated);
        }
        check_name("firmware.version", &self.firmware.version)?;
        check_name("firmware.project", &self.firmware.project)?;
        check_url("firmware.url", &self.firmware.url)?;
        if self.firmware.size == 0 {
            return invalid("firmware.size", FieldProblem::Zero);
        }
        check_alternatives(&self.firmware.alternatives)?;
        if let Some(w) = &self.www {
            check_url("www.url", &w.url)?;
            if w.size == 0 {
                return invalid("www.size", FieldProblem::Zero);
            }
        }
        Ok(())
    }

    /// The firmware, then the web-UI image when there is one, then the
    /// firmware's alternatives in manifest order.
    pub fn artifacts(&self) -> Vec<ArtifactRef<'_>> {
        let mut v = vec![ArtifactRef {
            kind: ArtifactKind::Firmware,
            url: &self.firmware.url,
            size: self.firmware.size,
            sha256: &self.firmware.sha256,
        }];
        let alternatives = self.firmware.alternatives.iter().map(|a| ArtifactRef {
            kind: ArtifactKind::Alternative(a.encoding),
            url: &a.url,
            size: a.size,
            sha256: &a.sha256,
        });
        if let Some(w) = &self.www {
            v.push(ArtifactRef {
                kind: ArtifactKind::Www,
                url: &w.url,
                size: w.size,
                sha256: &w.sha256,
            });
        }
        v.extend(alternatives);
        v
    }
}

/// The fields of an `otter-release/1` firmware entry (for the error that
/// names an unknown one).
const FIRMWARE_FIELDS_1: &[&str] = &[
    "version",
    "secure_version",
    "project",
    "url",
    "size",
    "sha256",
];

fn check_alternatives(alts: &[Alternative]) -> Result<(), ReleaseError> {
    const FIELD: &str = "firmware.alternatives";
    if alts.len() > MAX_ALTERNATIVES {
        return invalid(
            FIELD,
            FieldProblem::TooMany {
                max: MAX_ALTERNATIVES,
            },
        );
    }
    for (i, a) in alts.iter().enumerate() {
        check_url("firmware.alternatives.url", &a.url)?;
        if a.size == 0 {
            return invalid("firmware.alternatives.size", FieldProblem::Zero);
        }
        match (a.encoding, a.base_sha256) {
            (Encoding::Delta, None) => {
                return invalid("firmware.alternatives.base_sha256", FieldProblem::Missing)
            }
            (Encoding::Gzip, Some(_)) => {
                return invalid(
                    "firmware.alternatives.base_sha256",
                    FieldProblem::NotForGzip,
                )
            }
            _ => {}
        }
        let earlier = alts.get(..i).unwrap_or_default();
        if earlier
            .iter()
            .any(|b| b.encoding == a.encoding && b.base_sha256 == a.base_sha256)
        {
            return invalid(FIELD, FieldProblem::Duplicate);
        }
    }
    Ok(())
}

fn invalid(field: &'static str, problem: FieldProblem) -> Result<(), ReleaseError> {
    Err(ReleaseError::InvalidField { field, problem })
}

fn check_name(field: &'static str, s: &str) -> Result<(), ReleaseError> {
    if s.is_empty() {
        return invalid(field, FieldProblem::Empty);
    }
    if s.len() > MAX_NAME_LEN {
        return invalid(field, FieldProblem::TooLong { max: MAX_NAME_LEN });
    }
    if s.chars().any(char::is_control) || s.trim() != s {
        return invalid(field, FieldProblem::BadCharacters);
    }
    Ok(())
}

fn check_url(field: &'static str, url: &str) -> Result<(), ReleaseError> {
    if url.is_empty() {
        return invalid(field, FieldProblem::Empty);
    }
    if url.len() > MAX_URL_LEN {
        return invalid(field, FieldProblem::TooLong { max: MAX_URL_LEN });
    }
    if is_absolute_url(url) || is_relative_path(url) {
        Ok(())
    } else {
        invalid(field, FieldProblem::BadUrl)
    }
}

/// `http://HOST...` or `https://HOST...` (scheme in any case), with no
/// whitespace, control characters or backslashes, and a non-empty host.
pub(crate) fn is_absolute_url(url: &str) -> bool {
    let Some(rest) = strip_scheme(url) else {
        return false;
    };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    host_end > 0
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
}

fn strip_scheme(url: &str) -> Option<&str> {
    for scheme in ["https://", "http://"] {
        if let Some(head) = url.get(..scheme.len()) {
            if head.eq_ignore_ascii_case(scheme) {
                return url.get(scheme.len()..);
            }
        }
    }
    None
}

/// `a/b/file.bin`: segments of `[A-Za-z0-9._~-]`, none empty, `.` or `..`.
/// Such a path is the same string as a URL path and as a file path, so the
/// device and a local check read the same file.
pub(crate) fn is_relative_path(url: &str) -> bool {
    url.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
    })
}

/// The URL to fetch an artifact from, given the URL the manifest was fetched
/// from: an absolute artifact URL as it is; a relative one replaces the last
/// segment of `manifest_url`'s path (query and fragment dropped), so
/// `https://h/rel/1.4/manifest.json` + `firmware.bin` is
/// `https://h/rel/1.4/firmware.bin`.
///
/// Fails with [`FieldProblem::BadUrl`] (field `url`) when `artifact_url` is
/// neither form, or `manifest_url` is not an absolute http(s) URL.
pub fn resolve_url(manifest_url: &str, artifact_url: &str) -> Result<String, ReleaseError> {
    if is_absolute_url(artifact_url) {
        return Ok(artifact_url.to_owned());
    }
    let bad = || ReleaseError::InvalidField {
        field: "url",
        problem: FieldProblem::BadUrl,
    };
    if !is_relative_path(artifact_url) || !is_absolute_url(manifest_url) {
        return Err(bad());
    }
    let base = manifest_url
        .split(['?', '#'])
        .next()
        .unwrap_or(manifest_url);
    let rest = strip_scheme(base).ok_or_else(bad)?;
    let scheme_len = base.len() - rest.len();
    match rest.rfind('/') {
        // `https://host/dir/manifest.json`: keep up to the last slash.
        Some(i) => Ok(format!("{}{}", &base[..scheme_len + i + 1], artifact_url)),
        // `https://host`: the path is empty, so the artifact is at the root.
        None => Ok(format!("{base}/{artifact_url}")),
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex(&self.0))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256Digest {
        use sha2::Digest;
        Sha256Digest(sha2::Sha256::digest(bytes).into())
    }
}

impl FromStr for Sha256Digest {
    type Err = DigestSyntax;

    fn from_str(s: &str) -> Result<Sha256Digest, DigestSyntax> {
        let digits = s.as_bytes();
        if digits.len() != 64 {
            return Err(DigestSyntax);
        }
        let mut d = [0u8; 32];
        for (out, pair) in d.iter_mut().zip(digits.chunks_exact(2)) {
            let hi = lower_hex_value(pair[0]).ok_or(DigestSyntax)?;
            let lo = lower_hex_value(pair[1]).ok_or(DigestSyntax)?;
            *out = hi << 4 | lo;
        }
        Ok(Sha256Digest(d))
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sha256Digest, D::Error> {
        let s = <alloc::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            product: "thermostat".into(),
            chip: "esp32s3".into(),
            created: Timestamp::from_unix(1_700_000_000).unwrap(),
            expires: Timestamp::from_unix(1_702_592_000).unwrap(),
            firmware: Firmware {
                version: "1.4.0".into(),
                secure_version: 2,
                project: "thermostat".into(),
                url: FIRMWARE_FILE.into(),
                size: 1000,
                sha256: Sha256Digest::of(b"fw"),
                alternatives: Vec::new(),
            },
            www: Some(Artifact {
                url: WWW_FILE.into(),
                size: 8192,
                sha256: Sha256Digest::of(b"www"),
            }),
        }
    }

    #[test]
    fn json_round_trip_in_documented_order() {
        let m = sample();
        let bytes = m.to_json();
        let text = core::str::from_utf8(&bytes).unwrap();
        let order: Vec<usize> = [
            "\"format\"",
            "\"product\"",
            "\"chip\"",
            "\"created\"",
            "\"expires\"",
            "\"firmware\"",
            "\"www\"",
        ]
        .iter()
        .map(|k| text.find(k).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.ends_with("}\n"));
        assert_eq!(Manifest::from_json(&bytes).unwrap(), m);
        let mut no_www = m.clone();
        no_www.www = None;
        let bytes = no_www.to_json();
        assert!(!String::from_utf8_lossy(&bytes).contains("www"));
        assert_eq!(Manifest::from_json(&bytes).unwrap(), no_www);
    }

    fn edit(f: impl FnOnce(&mut serde_json::Value)) -> Result<Manifest, ReleaseError> {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        f(&mut v);
        Manifest::from_json(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn unknown_fields_anywhere_are_refused() {
        assert!(matches!(
            edit(|v| v["extra"] = 1.into()),
            Err(ReleaseError::ManifestMalformed { .. })
        ));
        assert!(matches!(
            edit(|v| v["firmware"]["extra"] = 1.into()),
            Err(ReleaseError::ManifestMalformed { .. })
        ));
        assert!(matches!(
            edit(|v| v["www"]["extra"] = 1.into()),
            Err(ReleaseError::ManifestMalformed { .. })
        ));
    }

    #[test]
    fn duplicate_fields_are_refused() {
        let text = String::from_utf8(sample().to_json()).unwrap();
        let dup = text.replacen("\"chip\"", "\"chip\": \"esp32\",\n  \"chip\"", 1);
        assert!(matches!(
            Manifest::from_json(dup.as_bytes()),
            Err(ReleaseError::ManifestMalformed { .. })
        ));
    }

    #[test]
    fn unknown_or_missing_format_is_named_before_fields() {
        match edit(|v| {
            v["format"] = "otter-release/3".into();
            v["new_field"] = true.into();
        }) {
            Err(ReleaseError::UnknownFormat { format }) => assert_eq!(format, "otter-release/3"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            edit(|v| v["format"] = 1.into()),
            Err(ReleaseError::UnknownFormat { .. })
        ));
        assert!(matches!(
            Manifest::from_json(b"{}"),
            Err(ReleaseError::UnknownFormat { .. })
        ));
        assert!(matches!(
            Manifest::from_json(b"[1]"),
            Err(ReleaseError::ManifestMalformed { .. })
        ));
    }

    #[test]
    fn field_values_are_checked() {
        type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("product", Box::new(|v| v["product"] = "".into())),
            ("product", Box::new(|v| v["product"] = " x".into())),
            ("chip", Box::new(|v| v["chip"] = "ESP32-S3".into())),
            ("expires", Box::new(|v| v["expires"] = v["created"].clone())),
            (
                "firmware.version",
                Box::new(|v| v["firmware"]["version"] = "1\n2".into()),
            ),
            (
                "firmware.url",
                Box::new(|v| v["firmware"]["url"] = "../firmware.bin".into()),
            ),
            (
                "firmware.url",
                Box::new(|v| v["firmware"]["url"] = "/firmware.bin".into()),
            ),
            (
                "firmware.url",
                Box::new(|v| v["firmware"]["url"] = "ftp://h/f".into()),
            ),
            (
                "firmware.size",
                Box::new(|v| v["firmware"]["size"] = 0.into()),
            ),
            ("www.url", Box::new(|v| v["www"]["url"] = "a//b".into())),
        ];
        for (want, f) in cases {
            match edit(f) {
                Err(ReleaseError::InvalidField { field, .. }) => assert_eq!(field, want),
                other => panic!("{want}: {other:?}"),
            }
        }
        // Bad digests and times are type errors, with a line and column.
        assert!(matches!(
            edit(|v| v["firmware"]["sha256"] = "ABC".into()),
            Err(ReleaseError::ManifestMalformed { .. })
        ));
        assert!(matches!(
            edit(|v| v["expires"] = "tomorrow".into()),
            Err(ReleaseError::ManifestMalformed { .. })
        ));
        assert!(matches!(
            edit(|v| v["firmware"]["secure_version"] = (1u64 << 32).into()),
            Err(ReleaseError::ManifestMalformed { .. })
        ));
    }

    fn with_alternatives() -> Manifest {
        let mut m = sample();
        m.firmware.alternatives = vec![
            Alternative {
                encoding: Encoding::Gzip,
                url: "firmware.bin.gz".into(),
                size: 600,
                sha256: Sha256Digest::of(b"gz"),
                base_sha256: None,
            },
            Alternative {
                encoding: Encoding::Delta,
                url: "https://cdn.example/d/from-1.3.0.patch".into(),
                size: 40,
                sha256: Sha256Digest::of(b"patch"),
                base_sha256: Some(Sha256Digest::of(b"1.3.0")),
            },
        ];
        m.format = Manifest::format_for(&m.firmware).into();
        m
    }

    #[test]
    fn alternatives_round_trip_as_format_2() {
        let m = with_alternatives();
        assert_eq!(m.format, FORMAT_2);
        let bytes = m.to_json();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"format\": \"otter-release/2\""), "{text}");
        assert!(text.contains("\"encoding\": \"delta\""), "{text}");
        // gzip has no base_sha256 key at all.
        assert_eq!(text.matches("base_sha256").count(), 1, "{text}");
        assert_eq!(Manifest::from_json(&bytes).unwrap(), m);
        let kinds: Vec<&str> = m.artifacts().iter().map(|a| a.kind.name()).collect();
        assert_eq!(
            kinds,
            ["firmware", "www", "firmware.gzip", "firmware.delta"]
        );
        // Without alternatives the oldest format is written, and /2 is
        // still read without them.
        let mut plain = m.clone();
        plain.firmware.alternatives.clear();
        assert_eq!(Manifest::format_for(&plain.firmware), FORMAT);
        plain.format = FORMAT_2.into();
        let bytes = plain.to_json();
        assert!(!String::from_utf8_lossy(&bytes).contains("alternatives"));
        assert_eq!(Manifest::from_json(&bytes).unwrap(), plain);
    }

    fn edit2(f: impl FnOnce(&mut serde_json::Value)) -> Result<Manifest, ReleaseError> {
        let mut v: serde_json::Value =
            serde_json::from_slice(&with_alternatives().to_json()).unwrap();
        f(&mut v);
        Manifest::from_json(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn format_1_knows_no_alternatives() {
        // The field in a /1 manifest is an unknown field, even empty.
        for alts in [
            serde_json::json!([]),
            serde_json::json!([{"encoding": "gzip"}]),
        ] {
            match edit2(|v| {
                v["format"] = FORMAT.into();
                v["firmware"]["alternatives"] = alts;
            }) {
                Err(ReleaseError::ManifestMalformed { source }) => {
                    assert!(
                        source.to_string().contains("unknown field `alternatives`"),
                        "{source}"
                    )
                }
                other => panic!("{other:?}"),
            }
        }
        // A constructed /1 manifest with alternatives does not validate.
        let mut m = with_alternatives();
        m.format = FORMAT.into();
        match m.validate() {
            Err(ReleaseError::InvalidField { field, problem }) => {
                assert_eq!(field, "firmware.alternatives");
                assert_eq!(problem, FieldProblem::NeedsFormat2);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn alternatives_are_parsed_strictly() {
        let malformed = [
            edit2(|v| v["firmware"]["alternatives"][0]["extra"] = 1.into()),
            edit2(|v| v["firmware"]["alternatives"][0]["encoding"] = "xz".into()),
            edit2(|v| v["firmware"]["alternatives"][1]["base_sha256"] = "AB".into()),
            edit2(|v| {
                v["firmware"]["alternatives"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("sha256");
            }),
            edit2(|v| v["firmware"]["alternatives"] = serde_json::json!({})),
        ];
        for (i, r) in malformed.into_iter().enumerate() {
            assert!(
                matches!(r, Err(ReleaseError::ManifestMalformed { .. })),
                "case {i}: {r:?}"
            );
        }
        let text = String::from_utf8(with_alternatives().to_json()).unwrap();
        let dup = text.replacen("\"size\": 600", "\"size\": 600,\n \"size\": 600", 1);
        assert!(matches!(
            Manifest::from_json(dup.as_bytes()),
            Err(ReleaseError::ManifestMalformed { .. })
        ));
    }

    #[test]
    fn alternative_values_are_checked() {
        type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
        let gz = || with_alternatives().firmware.alternatives[0].clone();
        let cases: Vec<(&str, FieldProblem, Edit)> = vec![
            (
                "firmware.alternatives.url",
                FieldProblem::BadUrl,
                Box::new(|v| v["firmware"]["alternatives"][0]["url"] = "../x.gz".into()),
            ),
            (
                "firmware.alternatives.url",
                FieldProblem::TooLong { max: MAX_URL_LEN },
                Box::new(|v| {
                    v["firmware"]["alternatives"][0]["url"] = "a".repeat(MAX_URL_LEN + 1).into()
                }),
            ),
            (
                "firmware.alternatives.size",
                FieldProblem::Zero,
                Box::new(|v| v["firmware"]["alternatives"][1]["size"] = 0.into()),
            ),
            (
                "firmware.alternatives.base_sha256",
                FieldProblem::Missing,
                Box::new(|v| {
                    v["firmware"]["alternatives"][1]
                        .as_object_mut()
                        .unwrap()
                        .remove("base_sha256");
                }),
            ),
            (
                "firmware.alternatives.base_sha256",
                FieldProblem::NotForGzip,
                Box::new(|v| {
                    v["firmware"]["alternatives"][0]["base_sha256"] =
                        Sha256Digest::of(b"x").to_string().into()
                }),
            ),
            (
                "firmware.alternatives",
                FieldProblem::Duplicate,
                Box::new(move |v| {
                    let mut g = serde_json::to_value(gz()).unwrap();
                    g["url"] = "other.gz".into();
                    v["firmware"]["alternatives"]
                        .as_array_mut()
                        .unwrap()
                        .push(g);
                }),
            ),
            (
                "firmware.alternatives",
                FieldProblem::TooMany {
                    max: MAX_ALTERNATIVES,
                },
                Box::new(|v| {
                    let list: Vec<serde_json::Value> = (0..=MAX_ALTERNATIVES as u8)
                        .map(|i| {
                            serde_json::to_value(Alternative {
                                encoding: Encoding::Delta,
                                url: format!("d{i}.patch"),
                                size: 10,
                                sha256: Sha256Digest::of(&[i]),
                                base_sha256: Some(Sha256Digest::of(&[i, i])),
                            })
                            .unwrap()
                        })
                        .collect();
                    v["firmware"]["alternatives"] = list.into();
                }),
            ),
        ];
        for (want, problem, f) in cases {
            match edit2(f) {
                Err(ReleaseError::InvalidField { field, problem: p }) => {
                    assert_eq!((field, &p), (want, &problem))
                }
                other => panic!("{want}: {other:?}"),
            }
        }
        // Exactly the limit is fine.
        let mut m = with_alternatives();
        m.firmware.alternatives = (0..MAX_ALTERNATIVES as u8)
            .map(|i| Alternative {
                encoding: Encoding::Delta,
                url: format!("d{i}.patch"),
                size: 10,
                sha256: Sha256Digest::of(&[i]),
                base_sha256: Some(Sha256Digest::of(&[i, i])),
            })
            .collect();
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn urls_resolve_against_the_manifest() {
        let r = |m, a| resolve_url(m, a).ok();
        assert_eq!(
            r("https://h/rel/1.4/manifest.json", "firmware.bin").as_deref(),
            Some("https://h/rel/1.4/firmware.bin")
        );
        assert_eq!(
            r("https://h/rel/manifest.json?x=1#f", "a/www.bin").as_deref(),
            Some("https://h/rel/a/www.bin")
        );
        assert_eq!(r("https://h", "f.bin").as_deref(), Some("https://h/f.bin"));
        assert_eq!(
            r("https://h/m.json", "https://cdn/f.bin").as_deref(),
            Some("https://cdn/f.bin")
        );
        assert_eq!(r("HTTP://h/", "f.bin").as_deref(), Some("HTTP://h/f.bin"));
        assert!(r("https://h/m.json", "../f.bin").is_none());
        assert!(r("m.json", "f.bin").is_none());
        assert!(r("https:///m.json", "f.bin").is_none());
    }
}
