//! Ed25519 keys: [`SigningKey`] (the release signer's secret), [`PublicKey`]
//! (what a device trusts) and [`KeyId`] (how a signature names its key).
//!
//! Files are the standard PEM forms, so OpenSSL and every crypto library read
//! them: the private key is PKCS#8 v1 (`-----BEGIN PRIVATE KEY-----`, exactly
//! what `openssl genpkey -algorithm ed25519` writes), the public key is SPKI
//! (`-----BEGIN PUBLIC KEY-----`, what `openssl pkey -pubout` writes).

#[allow(unused_imports)]
use crate::prelude::*;
use core::fmt;
use core::str::FromStr;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::KeypairBytes;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{KeyDecodeError, KeyKind};
use crate::ReleaseError;

/// Length of a [`KeyId`] in bytes.
pub const KEY_ID_LEN: usize = 8;

const PRIVATE_PEM_LABEL: &str = "-----BEGIN PRIVATE KEY-----";
const PUBLIC_PEM_LABEL: &str = "-----BEGIN PUBLIC KEY-----";

/// An Ed25519 secret key that signs releases. Its bytes are wiped on drop.
#[derive(Clone)]
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
}

/// An Ed25519 public key that a verifier trusts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    inner: ed25519_dalek::VerifyingKey,
}

/// The name of a public key in a signature file: the first 8 bytes of the
/// SHA-256 of the raw 32-byte public key, written as 16 lowercase hex digits.
///
/// It only *selects* a key; trust comes from the signature verifying under a
/// key the verifier holds, so a collision can cost a verification, never let a
/// signature through.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId([u8; KEY_ID_LEN]);

impl SigningKey {
    /// A fresh key from the operating system's random source.
    #[cfg(feature = "std")]
    pub fn generate() -> Result<SigningKey, ReleaseError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(ReleaseError::Random)?;
        Ok(SigningKey::from_seed(&seed))
    }

    /// The key whose 32-byte secret (RFC 8032's "private key") is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> SigningKey {
        SigningKey {
            inner: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }

    /// Reads a PKCS#8 PEM private key (v1 or v2, as OpenSSL and otter write).
    pub fn from_pem(pem: &str) -> Result<SigningKey, ReleaseError> {
        if pem.contains(PUBLIC_PEM_LABEL) && !pem.contains(PRIVATE_PEM_LABEL) {
            return Err(ReleaseError::WrongKeyKind {
                expected: KeyKind::Private,
                found: KeyKind::Public,
            });
        }
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map(|inner| SigningKey { inner })
            .map_err(|e| ReleaseError::BadKey {
                expected: KeyKind::Private,
                detail: KeyDecodeError::Pkcs8(e),
            })
    }

    /// The key as PKCS#8 v1 PEM (secret only, as `openssl genpkey` writes),
    /// with `\n` line endings.
    pub fn to_pem(&self) -> Zeroizing<String> {
        let bytes = KeypairBytes {
            secret_key: self.inner.to_bytes(),
            public_key: None,
        };
        // Encoding 32 bytes into a fixed ASN.1 structure cannot fail; the
        // error arm is kept so that no input path panics.
        bytes
            .to_pkcs8_pem(LineEnding::LF)
            .unwrap_or_else(|_| Zeroizing::new(String::new()))
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            inner: self.inner.verifying_key(),
        }
    }

    /// The Ed25519 signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.inner.sign(message).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("keyid", &self.public_key().keyid())
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Reads an SPKI PEM public key (`openssl pkey -pubout` output).
    pub fn from_pem(pem: &str) -> Result<PublicKey, ReleaseError> {
        if pem.contains(PRIVATE_PEM_LABEL) {
            return Err(ReleaseError::WrongKeyKind {
                expected: KeyKind::Public,
                found: KeyKind::Private,
            });
        }
        ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
            .map(|inner| PublicKey { inner })
            .map_err(|e| ReleaseError::BadKey {
                expected: KeyKind::Public,
                detail: KeyDecodeError::Spki(e),
            })
    }

    /// The key from its raw 32 bytes (RFC 8032 encoding); `None` when they
    /// are not a point on the curve.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<PublicKey> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .ok()
            .map(|inner| PublicKey { inner })
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.inner.to_bytes()
    }

    /// The key as SPKI PEM with `\n` line endings, byte for byte what
    /// `openssl pkey -pubout` prints.
    pub fn to_pem(&self) -> String {
        // As in `SigningKey::to_pem`: a fixed structure, cannot fail.
        self.inner
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// This key's id.
    pub fn keyid(&self) -> KeyId {
        KeyId::of(&self.to_bytes())
    }

    /// Whether `sig` is this key's signature of `message`. Uses RFC 8032's
    /// strict checks (no small-order keys or malleable signatures).
    pub(crate) fn verify(&self, message: &[u8], sig: &[u8; 64]) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(sig);
        self.inner.verify_strict(message, &sig).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("keyid", &self.keyid())
            .finish()
    }
}

impl KeyId {
    /// The id of the raw 32-byte public key `raw`.
    pub fn of(raw: &[u8; 32]) -> KeyId {
        let digest = Sha256::digest(raw);
        let mut id = [0u8; KEY_ID_LEN];
        for (d, s) in id.iter_mut().zip(digest.iter()) {
            *d = *s;
        }
        KeyId(id)
    }

    /// The 8 bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A string that is not 16 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a key id is 16 lowercase hex digits")]
pub struct KeyIdSyntax;

impl FromStr for KeyId {
    type Err = KeyIdSyntax;

    /// Reads 16 lowercase hex digits (the only spelling written).
    fn from_str(s: &str) -> Result<KeyId, KeyIdSyntax> {
        let digits = s.as_bytes();
        if digits.len() != 2 * KEY_ID_LEN {
            return Err(KeyIdSyntax);
        }
        let mut id = [0u8; KEY_ID_LEN];
        for (out, pair) in id.iter_mut().zip(digits.chunks_exact(2)) {
            let hi = lower_hex_value(pair[0]).ok_or(KeyIdSyntax)?;
            let lo = lower_hex_value(pair[1]).ok_or(KeyIdSyntax)?;
            *out = hi << 4 | lo;
        }
        Ok(KeyId(id))
    }
}

/// The value of a lowercase hex digit.
pub(crate) fn lower_hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 section 7.1, test 1: the secret key.
    const RFC8032_SEED: [u8; 32] = [
        0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c,
        0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae,
        0x7f, 0x60,
    ];

    #[test]
    fn rfc8032_test_vector_1() {
        let k = SigningKey::from_seed(&RFC8032_SEED);
        assert_eq!(
            crate::hex(&k.public_key().to_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = k.sign(b"");
        assert_eq!(
            crate::hex(&sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        );
        assert!(k.public_key().verify(b"", &sig));
        assert!(!k.public_key().verify(b"x", &sig));
    }

    #[test]
    fn pem_round_trips_and_matches_openssl_layout() {
        let k = SigningKey::from_seed(&RFC8032_SEED);
        let pem = k.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        // PKCS#8 v1 for Ed25519 is 48 bytes of DER: 64 base64 characters.
        assert_eq!(pem.lines().nth(1).map(str::len), Some(64));
        let back = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(back.public_key(), k.public_key());
        let pubpem = k.public_key().to_pem();
        assert!(pubpem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert_eq!(PublicKey::from_pem(&pubpem).unwrap(), k.public_key());
    }

    #[test]
    fn the_wrong_half_is_named() {
        let k = SigningKey::from_seed(&RFC8032_SEED);
        assert!(matches!(
            SigningKey::from_pem(&k.public_key().to_pem()),
            Err(ReleaseError::WrongKeyKind {
                expected: KeyKind::Private,
                found: KeyKind::Public
            })
        ));
        assert!(matches!(
            PublicKey::from_pem(&k.to_pem()),
            Err(ReleaseError::WrongKeyKind {
                expected: KeyKind::Public,
                found: KeyKind::Private
            })
        ));
        assert!(matches!(
            PublicKey::from_pem("hello"),
            Err(ReleaseError::BadKey { .. })
        ));
    }

    #[test]
    fn keyid_is_sha256_prefix_in_lowercase_hex() {
        let k = SigningKey::from_seed(&RFC8032_SEED).public_key();
        let id = k.keyid();
        let full = Sha256::digest(k.to_bytes());
        assert_eq!(id.to_string(), crate::hex(&full[..8]));
        assert_eq!(id.to_string().parse::<KeyId>().unwrap(), id);
        assert!(id.to_string().to_uppercase().parse::<KeyId>().is_err());
        assert!("0123".parse::<KeyId>().is_err());
    }
}
