//! Host side: loading PEM keys as espsecure writes them, the eFuse key
//! digest, and signing images with one more Secure Boot v2 block.
//!
//! Keys are read from PEM: RSA as PKCS#1 (`RSA PRIVATE KEY`, what
//! `espsecure generate-signing-key --scheme rsa3072` writes) or PKCS#8, EC
//! as SEC1 (`EC PRIVATE KEY`, what `--scheme ecdsa256|ecdsa384` writes) or
//! PKCS#8, and public keys as SubjectPublicKeyInfo (`PUBLIC KEY`).

use alloc::vec::Vec;

use sha2::{Digest, Sha256, Sha384};

use super::block::{block_crc, parse_sector, Scheme, Slot, RSA_LEN};
use super::verify::{signed_len, verify_v2, TrustedKeys};
use super::{
    SignatureError, BLOCK_CRC_OFFSET, BLOCK_LEN, BLOCK_MAGIC, CURVE_P256, CURVE_P384, ECDSA_SHA256,
    ECDSA_SHA384, MAX_BLOCKS, SECTOR_LEN, VERSION_ECDSA, VERSION_RSA,
};

/// A key file that otter cannot use for Secure Boot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text holds no PEM block otter knows (`RSA PRIVATE KEY`, `EC
    /// PRIVATE KEY`, `PRIVATE KEY`, `PUBLIC KEY`).
    #[error("not a PEM key: expected an RSA PRIVATE KEY, EC PRIVATE KEY, PRIVATE KEY or PUBLIC KEY block")]
    NotPem,
    /// The PEM block is there but does not decode as a key of its label.
    #[error("the {label} PEM block does not decode as an RSA-3072, P-256 or P-384 key")]
    Undecodable {
        /// The PEM label.
        label: &'static str,
    },
    /// An RSA key of a size Secure Boot v2 does not take.
    #[error("RSA key is {bits} bits; Secure Boot v2 takes RSA-3072 only")]
    RsaSize {
        /// Modulus size.
        bits: u32,
    },
    /// A private key was needed (for signing) and a public key was given.
    #[error("a private key is needed to sign; this is a public key")]
    PublicOnly,
}

impl KeyError {
    /// A stable machine-readable name for the variant.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::NotPem => "not_pem",
            KeyError::Undecodable { .. } => "undecodable_key",
            KeyError::RsaSize { .. } => "rsa_size",
            KeyError::PublicOnly => "public_only",
        }
    }
}

/// Why an image could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The image already carries signature blocks and appending was not asked for.
    #[error("the image is already signed ({blocks} block(s)); append a block or sign the unsigned image")]
    AlreadySigned {
        /// Blocks present.
        blocks: u8,
    },
    /// The sector already holds three blocks.
    #[error("the signature sector already holds {MAX_BLOCKS} blocks")]
    SectorFull,
    /// The new key's scheme differs from the existing blocks'. A chip
    /// checks one scheme (its eFuse-selected one), so every block of a
    /// sector must use it; espsecure cannot verify a mixed sector either.
    #[error("the image's blocks are {existing}, the new key is {new}: all blocks of a sector must use one scheme")]
    SchemeMismatch {
        /// The existing blocks' scheme.
        existing: Scheme,
        /// The new key's scheme.
        new: Scheme,
    },
    /// An existing block does not sign these bytes, so a new block next to
    /// it would make a sector the bootloader cannot fully trust.
    #[error("existing signature block {block} does not sign this image: {source}")]
    ExistingBlock {
        /// Block number.
        block: u8,
        /// What is wrong with it.
        source: SignatureError,
    },
    /// Bytes other than 0xFF follow the signed area where the signature
    /// sector goes.
    #[error("{len} bytes of data at {offset:#x} follow the image where the signature sector goes")]
    TrailingData {
        /// Where they start.
        offset: u64,
        /// How many.
        len: u64,
    },
    /// The signing operation itself failed (RNG or key failure).
    #[error("the {scheme} signing operation failed")]
    Crypto {
        /// The scheme.
        scheme: Scheme,
    },
    /// The new block did not verify against its own key: a bug, never
    /// written out.
    #[error("the new signature block does not verify: {0}")]
    SelfCheck(SignatureError),
}

impl SignError {
    /// A stable machine-readable name for the variant.
    pub fn code(&self) -> &'static str {
        match self {
            SignError::AlreadySigned { .. } => "already_signed",
            SignError::SectorFull => "sector_full",
            SignError::SchemeMismatch { .. } => "scheme_mismatch",
            SignError::ExistingBlock { .. } => "existing_block",
            SignError::TrailingData { .. } => "trailing_data",
            SignError::Crypto { .. } => "crypto",
            SignError::SelfCheck(_) => "self_check",
        }
    }
}

/// A Secure Boot v2 signing key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SigningKey {
    /// RSA-3072.
    Rsa(rsa::PrivateKey),
    /// ECDSA P-256.
    P256(p256::ecdsa::SigningKey),
    /// ECDSA P-384.
    P384(p384::ecdsa::SigningKey),
}

/// A Secure Boot v2 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublicKey {
    /// RSA-3072.
    Rsa(rsa::PublicKey),
    /// ECDSA P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA P-384.
    P384(p384::ecdsa::VerifyingKey),
}

/// The first PEM block with `label`, as its own text.
fn pem_block<'a>(pem: &'a str, label: &str) -> Option<&'a str> {
    let begin = alloc::format!("-----BEGIN {label}-----");
    let end = alloc::format!("-----END {label}-----");
    let start = pem.find(&begin)?;
    let stop = pem.get(start..)?.find(&end)? + start + end.len();
    pem.get(start..stop)
}

fn check_rsa(k: &rsa::PrivateKey) -> Result<(), KeyError> {
    use rsa::traits::PublicKeyParts;
    let bits = k.n().as_ref().bit_width();
    if bits == 3072 {
        Ok(())
    } else {
        Err(KeyError::RsaSize { bits })
    }
}

impl SigningKey {
    /// Reads a private key from PEM text.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        if let Some(b) = pem_block(pem, "RSA PRIVATE KEY") {
            let k = rsa::PrivateKey::from_pkcs1_pem(b).map_err(|_| KeyError::Undecodable {
                label: "RSA PRIVATE KEY",
            })?;
            check_rsa(&k)?;
            return Ok(SigningKey::Rsa(k));
        }
        if let Some(b) = pem_block(pem, "EC PRIVATE KEY") {
            if let Ok(k) = p256::SecretKey::from_sec1_pem(b) {
                return Ok(SigningKey::P256(k.into()));
            }
            if let Ok(k) = p384::SecretKey::from_sec1_pem(b) {
                return Ok(SigningKey::P384(k.into()));
            }
            return Err(KeyError::Undecodable {
                label: "EC PRIVATE KEY",
            });
        }
        if let Some(b) = pem_block(pem, "PRIVATE KEY") {
            if let Ok(k) = rsa::PrivateKey::from_pkcs8_pem(b) {
                check_rsa(&k)?;
                return Ok(SigningKey::Rsa(k));
            }
            if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(b) {
                return Ok(SigningKey::P256(k));
            }
            if let Ok(k) = p384::ecdsa::SigningKey::from_pkcs8_pem(b) {
                return Ok(SigningKey::P384(k));
            }
            return Err(KeyError::Undecodable {
                label: "PRIVATE KEY",
            });
        }
        if pem_block(pem, "PUBLIC KEY").is_some() {
            return Err(KeyError::PublicOnly);
        }
        Err(KeyError::NotPem)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        match self {
            SigningKey::Rsa(k) => PublicKey::Rsa(k.to_public_key()),
            SigningKey::P256(k) => PublicKey::P256(*k.verifying_key()),
            SigningKey::P384(k) => PublicKey::P384(*k.verifying_key()),
        }
    }

    /// The scheme this key signs with.
    pub fn scheme(&self) -> Scheme {
        self.public_key().scheme()
    }
}

impl PublicKey {
    /// Reads a public key from PEM text; a private key PEM gives its public
    /// half (as espsecure accepts either).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        use rsa::pkcs8::DecodePublicKey;
        if let Some(b) = pem_block(pem, "PUBLIC KEY") {
            if let Ok(k) = rsa::PublicKey::from_public_key_pem(b) {
                use rsa::traits::PublicKeyParts;
                let bits = k.n().as_ref().bit_width();
                if bits != 3072 {
                    return Err(KeyError::RsaSize { bits });
                }
                return Ok(PublicKey::Rsa(k));
            }
            if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(b) {
                return Ok(PublicKey::P256(k));
            }
            if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_pem(b) {
                return Ok(PublicKey::P384(k));
            }
            return Err(KeyError::Undecodable {
                label: "PUBLIC KEY",
            });
        }
        SigningKey::from_pem(pem).map(|k| k.public_key())
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        match self {
            PublicKey::Rsa(_) => Scheme::Rsa3072,
            PublicKey::P256(_) => Scheme::EcdsaP256,
            PublicKey::P384(_) => Scheme::EcdsaP384,
        }
    }

    /// The key as a signature block stores it (the bytes the eFuse digest
    /// covers; see [`super::SignatureBlock`]).
    pub fn block_key_bytes(&self) -> Vec<u8> {
        match self {
            PublicKey::Rsa(k) => rsa_key_material(k),
            PublicKey::P256(k) => {
                let p = k.to_sec1_point(false);
                ecdsa_key_material(CURVE_P256, p.as_bytes())
            }
            PublicKey::P384(k) => {
                let p = k.to_sec1_point(false);
                ecdsa_key_material(CURVE_P384, p.as_bytes())
            }
        }
    }

    /// SHA-256 of [`Self::block_key_bytes`]: the digest burnt into eFuse,
    /// exactly what `espsecure digest-sbv2-public-key` writes.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.block_key_bytes()).into()
    }

    /// The uncompressed SEC1 point of a P-256 key (65 bytes), for Secure
    /// Boot v1; `None` for other keys.
    pub fn p256_sec1(&self) -> Option<Vec<u8>> {
        match self {
            PublicKey::P256(k) => Some(k.to_sec1_point(false).as_bytes().to_vec()),
            _ => None,
        }
    }
}

/// n (LE, 384), e (u32 LE), rinv = 2^6144 mod n (LE, 384), mdash = -n⁻¹ mod
/// 2^32 (u32 LE): 776 bytes.
fn rsa_key_material(k: &rsa::PublicKey) -> Vec<u8> {
    use rsa::traits::PublicKeyParts;
    use rsa::BoxedUint;
    let n_be = be_fixed(&k.n().as_ref().to_be_bytes(), RSA_LEN);
    let e_be = k.e().to_be_bytes();
    let e = e_be
        .iter()
        .rev()
        .take(4)
        .rev()
        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    let mut r2 = alloc::vec![0u8; 2 * RSA_LEN + 1];
    if let Some(first) = r2.first_mut() {
        *first = 1;
    }
    let rinv = BoxedUint::from_be_slice_vartime(&r2).rem(k.n());
    let rinv_be = be_fixed(&rinv.to_be_bytes(), RSA_LEN);
    let n0 = n_be
        .iter()
        .rev()
        .take(4)
        .rev()
        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    // Newton's iteration for n0⁻¹ mod 2^32 (n is odd): each step doubles the
    // number of correct low bits, starting from 3.
    let mut inv = n0;
    for _ in 0..5 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
    }
    let mdash = inv.wrapping_neg();
    let mut out = Vec::with_capacity(776);
    out.extend(n_be.iter().rev());
    out.extend_from_slice(&e.to_le_bytes());
    out.extend(rinv_be.iter().rev());
    out.extend_from_slice(&mdash.to_le_bytes());
    out
}

/// Left-pads or trims a big-endian number to `len` bytes.
fn be_fixed(b: &[u8], len: usize) -> Vec<u8> {
    let skip = b.len().saturating_sub(len);
    let mut out = alloc::vec![0u8; len.saturating_sub(b.len())];
    out.extend_from_slice(b.get(skip..).unwrap_or_default());
    out
}

/// Curve id, then x and y little-endian, from an uncompressed SEC1 point.
fn ecdsa_key_material(curve: u8, sec1: &[u8]) -> Vec<u8> {
    let coords = sec1.get(1..).unwrap_or_default();
    let (x, y) = coords.split_at(coords.len() / 2);
    let mut out = Vec::with_capacity(1 + coords.len());
    out.push(curve);
    out.extend(x.iter().rev());
    out.extend(y.iter().rev());
    out
}

/// One signature block over `contents` (the padded image) with `key`.
pub fn make_block(contents: &[u8], key: &SigningKey) -> Result<[u8; BLOCK_LEN], SignError> {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    let scheme = key.scheme();
    let crypto = SignError::Crypto { scheme };
    let mut b = [0u8; BLOCK_LEN];
    b[0] = BLOCK_MAGIC;
    let key_bytes = key.public_key().block_key_bytes();
    let mut body: Vec<u8> = Vec::with_capacity(BLOCK_CRC_OFFSET);
    match key {
        SigningKey::Rsa(k) => {
            let digest: [u8; 32] = Sha256::digest(contents).into();
            let sig = k
                .pss_sign_prehash::<Sha256>(&digest)
                .map_err(|_| crypto.clone())?;
            body.extend_from_slice(&[BLOCK_MAGIC, VERSION_RSA, 0, 0]);
            body.extend_from_slice(&digest);
            body.extend_from_slice(&key_bytes);
            body.extend(be_fixed(&sig, RSA_LEN).iter().rev());
        }
        SigningKey::P256(k) => {
            let digest: [u8; 32] = Sha256::digest(contents).into();
            let sig: p256::ecdsa::Signature =
                k.sign_prehash(&digest).map_err(|_| crypto.clone())?;
            let (r, s) = sig.split_bytes();
            body.extend_from_slice(&[BLOCK_MAGIC, VERSION_ECDSA, ECDSA_SHA256, 0]);
            body.extend_from_slice(&digest);
            body.extend_from_slice(&key_bytes);
            body.extend(r.iter().rev());
            body.extend(s.iter().rev());
        }
        SigningKey::P384(k) => {
            let digest: [u8; 48] = Sha384::digest(contents).into();
            let sig: p384::ecdsa::Signature =
                k.sign_prehash(&digest).map_err(|_| crypto.clone())?;
            let (r, s) = sig.split_bytes();
            body.extend_from_slice(&[BLOCK_MAGIC, VERSION_ECDSA, ECDSA_SHA384, 0]);
            body.extend_from_slice(&digest);
            body.extend_from_slice(&key_bytes);
            body.extend(r.iter().rev());
            body.extend(s.iter().rev());
        }
    }
    if let Some(dst) = b.get_mut(..body.len().min(BLOCK_CRC_OFFSET)) {
        dst.copy_from_slice(body.get(..dst.len()).unwrap_or_default());
    }
    let crc = block_crc(b.get(..BLOCK_CRC_OFFSET).unwrap_or_default());
    if let Some(dst) = b.get_mut(BLOCK_CRC_OFFSET..BLOCK_CRC_OFFSET + 4) {
        dst.copy_from_slice(&crc.to_le_bytes());
    }
    Ok(b)
}

/// How [`sign_image`] treats an image that is already signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMode {
    /// Refuse a signed image ([`SignError::AlreadySigned`]).
    Fresh,
    /// Keep its blocks and add one (key rotation); an unsigned image is
    /// signed afresh, as espsecure's `--append-signatures` does.
    Append,
}

/// Signs `file`, whose ESP image ends at `image_len`: pads the image with
/// 0xFF to the next 4 KiB boundary and writes the signature sector after it
/// (existing blocks kept in [`SignMode::Append`]). The result is what
/// `espsecure sign-data --version 2` writes for the same image and key
/// (ECDSA and PSS signatures are randomised, so the bytes of the signature
/// itself differ from run to run).
pub fn sign_image(
    file: &[u8],
    image_len: u32,
    key: &SigningKey,
    mode: SignMode,
) -> Result<Vec<u8>, SignError> {
    let sl = signed_len(image_len);
    let sl_usize = usize::try_from(sl).unwrap_or(usize::MAX);
    let tail = file.get(sl_usize..).unwrap_or_default();
    let mut kept: Vec<u8> = Vec::new();
    let mut blocks = 0u8;
    if tail.first() == Some(&BLOCK_MAGIC) {
        let slots = parse_sector(tail, sl).map_err(|e| SignError::ExistingBlock {
            block: e_block(&e),
            source: e,
        })?;
        let mut existing = None;
        for slot in slots.iter() {
            if let Slot::Block(b) = slot {
                blocks += 1;
                kept.extend_from_slice(b.as_bytes());
                existing = Some(b.scheme());
            }
        }
        if mode == SignMode::Fresh {
            return Err(SignError::AlreadySigned { blocks });
        }
        if usize::from(blocks) >= MAX_BLOCKS {
            return Err(SignError::SectorFull);
        }
        if let Some(existing) = existing.filter(|s| *s != key.scheme()) {
            return Err(SignError::SchemeMismatch {
                existing,
                new: key.scheme(),
            });
        }
    } else if let Some(pos) = tail.iter().position(|b| *b != 0xFF) {
        return Err(SignError::TrailingData {
            offset: sl + pos as u64,
            len: (tail.len() - pos) as u64,
        });
    }
    let mut out: Vec<u8> = file.get(..sl_usize).unwrap_or(file).to_vec();
    out.resize(sl_usize, 0xFF);
    if blocks > 0 {
        // Every kept block must sign exactly these bytes.
        for (i, b) in kept.chunks(BLOCK_LEN).enumerate() {
            let block = super::SignatureBlock::parse(b, i as u8, sl + (i * BLOCK_LEN) as u64)
                .map_err(|source| SignError::ExistingBlock {
                    block: i as u8,
                    source,
                })?;
            let ok = match block.scheme() {
                Scheme::EcdsaP384 => block.image_digest() == Sha384::digest(&out).as_slice(),
                _ => block.image_digest() == Sha256::digest(&out).as_slice(),
            };
            if !ok {
                return Err(SignError::ExistingBlock {
                    block: i as u8,
                    source: SignatureError::DigestMismatch {
                        block: i as u8,
                        signed_len: sl,
                    },
                });
            }
        }
    }
    let new = make_block(&out, key)?;
    out.extend_from_slice(&kept);
    out.extend_from_slice(&new);
    out.resize(sl_usize + SECTOR_LEN, 0xFF);
    let digest = [key.public_key().digest()];
    verify_v2(&out, image_len, &TrustedKeys::new(&digest)).map_err(SignError::SelfCheck)?;
    Ok(out)
}

fn e_block(e: &SignatureError) -> u8 {
    match e {
        SignatureError::BadMagic { block, .. }
        | SignatureError::BadVersion { block, .. }
        | SignatureError::BadShaVersion { block, .. }
        | SignatureError::BadCurve { block, .. }
        | SignatureError::BadCrc { block, .. } => *block,
        _ => 0,
    }
}
