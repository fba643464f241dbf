//! The signature file (`manifest.json.sig`): signing and checking the exact
//! bytes of `manifest.json`.
//!
//! ```json
//! {
//!   "format": "otter-signature/1",
//!   "signatures": [
//!     { "keyid": "1f2e3d4c5b6a7988", "alg": "ed25519", "sig": "<base64 of 64 bytes>" }
//!   ]
//! }
//! ```
//!
//! # Rules (threshold 1)
//!
//! 1. The file must be `otter-signature/1`, strictly parsed.
//! 2. Entries whose `keyid` is not a trusted key's are skipped unread: they may
//!    be by keys this verifier does not know yet or no longer trusts.
//! 3. Every entry whose `keyid` is a trusted key's must be `ed25519`, decode,
//!    and verify (RFC 8032 strict) over the manifest's bytes. One that does not
//!    refuses the release, even when another trusted signature is good.
//! 4. At least one entry must be by a trusted key.

#[allow(unused_imports)]
use crate::prelude::*;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{KeyIdList, SignatureFault};
use crate::keys::{KeyId, PublicKey, SigningKey};
use crate::ReleaseError;

/// The `format` of the signature files this crate reads and writes.
pub const SIGNATURE_FORMAT: &str = "otter-signature/1";
/// The only algorithm: `ed25519`.
pub const ALG_ED25519: &str = "ed25519";

/// A signature file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// Always [`SIGNATURE_FORMAT`].
    pub format: String,
    /// One entry per signing key.
    pub signatures: Vec<SignatureEntry>,
}

/// One signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureEntry {
    /// The signing key's [`KeyId`], as 16 lowercase hex digits.
    pub keyid: String,
    /// Always [`ALG_ED25519`].
    pub alg: String,
    /// The 64-byte signature, standard base64 with padding.
    pub sig: String,
}

impl SignatureFile {
    /// Parses a signature file, refusing an unknown `format` by name.
    pub fn from_json(bytes: &[u8]) -> Result<SignatureFile, ReleaseError> {
        // First only the format, from any JSON object.
        let probe: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(bytes)
            .map_err(|source| ReleaseError::SignatureFileMalformed { source })?;
        match probe.get("format") {
            Some(serde_json::Value::String(f)) if f.as_str() == SIGNATURE_FORMAT => {}
            Some(serde_json::Value::String(f)) => {
                return Err(ReleaseError::UnknownSignatureFormat {
                    format: f.chars().take(64).collect(),
                })
            }
            _ => {
                return Err(ReleaseError::UnknownSignatureFormat {
                    format: String::new(),
                })
            }
        }
        serde_json::from_slice(bytes)
            .map_err(|source| ReleaseError::SignatureFileMalformed { source })
    }

    /// The bytes otter writes: pretty JSON and a final newline.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings into a Vec: cannot fail.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// Signs `manifest` (the exact bytes of `manifest.json`) with every key, in
/// order, and returns the signature file's bytes.
pub fn sign_manifest(manifest: &[u8], keys: &[SigningKey]) -> Result<Vec<u8>, ReleaseError> {
    if keys.is_empty() {
        return Err(ReleaseError::NoSigningKeys);
    }
    let signatures = keys
        .iter()
        .map(|k| SignatureEntry {
            keyid: k.public_key().keyid().to_string(),
            alg: ALG_ED25519.to_owned(),
            sig: base64::engine::general_purpose::STANDARD.encode(k.sign(manifest)),
        })
        .collect();
    Ok(SignatureFile {
        format: SIGNATURE_FORMAT.to_owned(),
        signatures,
    }
    .to_json())
}

/// Checks the signature file `sig_file` over `manifest` against `trusted`
/// (rules in the module docs) and returns the ids of the trusted keys that
/// signed, in file order without repeats.
///
/// This does not look inside the manifest; [`crate::verify_manifest`] does both.
pub fn verify_signatures(
    manifest: &[u8],
    sig_file: &[u8],
    trusted: &[PublicKey],
) -> Result<Vec<KeyId>, ReleaseError> {
    if trusted.is_empty() {
        return Err(ReleaseError::NoTrustedKeys);
    }
    if sig_file.len() > crate::MAX_SIGNATURE_FILE_LEN {
        return Err(ReleaseError::SignatureFileTooLarge {
            len: sig_file.len(),
            max: crate::MAX_SIGNATURE_FILE_LEN,
        });
    }
    let file = SignatureFile::from_json(sig_file)?;
    let mut signed_by: Vec<KeyId> = Vec::new();
    for entry in &file.signatures {
        let keys: Vec<&PublicKey> = trusted
            .iter()
            .filter(|k| k.keyid().to_string() == entry.keyid)
            .collect();
        let Some(first) = keys.first() else {
            continue; // not a key we trust: ignored
        };
        let keyid = first.keyid();
        let fault = |fault| ReleaseError::BadSignature { keyid, fault };
        if entry.alg != ALG_ED25519 {
            return Err(fault(SignatureFault::UnsupportedAlgorithm(
                entry.alg.chars().take(32).collect(),
            )));
        }
        let sig: [u8; 64] = base64::engine::general_purpose::STANDARD
            .decode(&entry.sig)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| fault(SignatureFault::Encoding))?;
        // Two trusted keys can share an id only by a 64-bit collision; the
        // signature must then verify under one of them.
        if !keys.iter().any(|k| k.verify(manifest, &sig)) {
            return Err(fault(SignatureFault::Mismatch));
        }
        if !signed_by.contains(&keyid) {
            signed_by.push(keyid);
        }
    }
    if signed_by.is_empty() {
        return Err(ReleaseError::NoTrustedSignature {
            found: KeyIdList(
                file.signatures
                    .iter()
                    .map(|e| printable_keyid(&e.keyid))
                    .collect(),
            ),
            trusted: KeyIdList(trusted.iter().map(|k| k.keyid().to_string()).collect()),
        });
    }
    Ok(signed_by)
}

/// A key id from an untrusted file, fit for a message.
fn printable_keyid(s: &str) -> String {
    match s.parse::<KeyId>() {
        Ok(id) => id.to_string(),
        Err(_) => "(malformed key id)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_seed(&[n; 32])
    }

    #[test]
    fn every_key_signs_in_order() {
        let sig = sign_manifest(b"m", &[key(1), key(2)]).unwrap();
        let file = SignatureFile::from_json(&sig).unwrap();
        let ids: Vec<String> = file.signatures.iter().map(|e| e.keyid.clone()).collect();
        assert_eq!(
            ids,
            [
                key(1).public_key().keyid().to_string(),
                key(2).public_key().keyid().to_string()
            ]
        );
        assert_eq!(
            verify_signatures(b"m", &sig, &[key(2).public_key(), key(1).public_key()]).unwrap(),
            [key(1).public_key().keyid(), key(2).public_key().keyid()]
        );
        assert!(matches!(
            sign_manifest(b"m", &[]),
            Err(ReleaseError::NoSigningKeys)
        ));
    }

    #[test]
    fn a_bad_trusted_signature_refuses_even_beside_a_good_one() {
        let sig = sign_manifest(b"m", &[key(1), key(2)]).unwrap();
        let mut file = SignatureFile::from_json(&sig).unwrap();
        file.signatures[1].sig = file.signatures[0].sig.clone();
        let err = verify_signatures(
            b"m",
            &file.to_json(),
            &[key(1).public_key(), key(2).public_key()],
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ReleaseError::BadSignature { keyid, fault: SignatureFault::Mismatch }
                if keyid == key(2).public_key().keyid()
        ));
        // Trusting only key 1, key 2's bad entry is not ours to judge.
        assert!(verify_signatures(b"m", &file.to_json(), &[key(1).public_key()]).is_ok());
    }

    #[test]
    fn faults_of_trusted_entries_are_named() {
        let sig = sign_manifest(b"m", &[key(1)]).unwrap();
        let trusted = [key(1).public_key()];
        let mut file = SignatureFile::from_json(&sig).unwrap();
        file.signatures[0].alg = "rsa".into();
        assert!(matches!(
            verify_signatures(b"m", &file.to_json(), &trusted),
            Err(ReleaseError::BadSignature {
                fault: SignatureFault::UnsupportedAlgorithm(_),
                ..
            })
        ));
        let mut file = SignatureFile::from_json(&sig).unwrap();
        file.signatures[0].sig = "AAAA".into();
        assert!(matches!(
            verify_signatures(b"m", &file.to_json(), &trusted),
            Err(ReleaseError::BadSignature {
                fault: SignatureFault::Encoding,
                ..
            })
        ));
    }

    #[test]
    fn unknown_keys_only_is_no_trusted_signature() {
        let sig = sign_manifest(b"m", &[key(1)]).unwrap();
        match verify_signatures(b"m", &sig, &[key(2).public_key()]) {
            Err(ReleaseError::NoTrustedSignature { found, trusted }) => {
                assert_eq!(found.0, [key(1).public_key().keyid().to_string()]);
                assert_eq!(trusted.0, [key(2).public_key().keyid().to_string()]);
            }
            other => panic!("{other:?}"),
        }
        let empty = br#"{"format":"otter-signature/1","signatures":[]}"#;
        assert!(matches!(
            verify_signatures(b"m", empty, &[key(2).public_key()]),
            Err(ReleaseError::NoTrustedSignature { .. })
        ));
        assert!(matches!(
            verify_signatures(b"m", &sig, &[]),
            Err(ReleaseError::NoTrustedKeys)
        ));
    }

    #[test]
    fn signature_file_format_is_strict() {
        let trusted = [key(1).public_key()];
        assert!(matches!(
            verify_signatures(
                b"m",
                br#"{"format":"otter-signature/9","signatures":[]}"#,
                &trusted
            ),
            Err(ReleaseError::UnknownSignatureFormat { .. })
        ));
        assert!(matches!(
            verify_signatures(
                b"m",
                br#"{"format":"otter-signature/1","signatures":[],"x":1}"#,
                &trusted
            ),
            Err(ReleaseError::SignatureFileMalformed { .. })
        ));
        assert!(matches!(
            verify_signatures(b"m", b"\xff", &trusted),
            Err(ReleaseError::SignatureFileMalformed { .. })
        ));
    }
}
