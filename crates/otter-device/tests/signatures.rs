//! A device that requires Secure Boot v2 signatures, socket-free: every
//! case is an HTTP upload through the core, checked for the exact status and code, and for otadata afterwards
//! (byte-identical on every refusal, ota_1 selected on success).
//!
//! The keys are espsecure's (crates/otter-format/tests/data/secure-boot);
//! images are signed with otter-format's signer, which the format crate's
//! own tests prove equal to `espsecure sign-data --version 2`.

mod common;

use common::*;
use otter_device::service::Device;
use otter_format::chip::Chip;
use otter_format::secure_boot::sign::{sign_image, SignMode, SigningKey};
use otter_format::secure_boot::{block_crc, signed_len, BLOCK_CRC_OFFSET, BLOCK_LEN};
use otter_ota::{SignaturePolicy, SlotId};

const KEYS: &str = "../otter-format/tests/data/secure-boot";
const OTADATA: std::ops::Range<usize> = 0xe000..0x10000;

fn pem(name: &str) -> String {
    let p = format!("{KEYS}/{name}.pem");
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("test key {p}: {e}"))
}

fn key(name: &str) -> SigningKey {
    SigningKey::from_pem(&pem(name)).expect("test key parses")
}

/// The digest espsecure printed for the key (the oracle), leaked so that it
/// can be a device's `'static` trust anchor.
fn digest(name: &str) -> &'static [[u8; 32]] {
    let p = format!("{KEYS}/{name}.digest");
    let d: [u8; 32] = std::fs::read(&p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .try_into()
        .expect("a digest is 32 bytes");
    assert_eq!(
        key(name).public_key().digest(),
        d,
        "otter's digest of {name}"
    );
    Box::leak(Box::new([d]))
}

fn fw_of(version: &str, secure_version: u32) -> Vec<u8> {
    app(Chip::Esp32c3, version, secure_version, 72_000)
}

fn sign(image: &[u8], key_name: &str, mode: SignMode) -> Vec<u8> {
    // The image's own length: an unsigned image is all image; a signed one
    // keeps its length in the header walk, which sign_image redoes.
    let len = otter_format::image::verify(image, &Default::default())
        .expect("test image verifies")
        .image_len;
    sign_image(image, len, &key(key_name), mode).expect("signs")
}

fn signed(key_name: &str) -> Vec<u8> {
    sign(&fw_of("2.0.0", 0), key_name, SignMode::Fresh)
}

/// Offset of the signature sector of a signed 2.0.0 test image.
fn sector_at() -> usize {
    signed_len(fw_of("2.0.0", 0).len() as u32) as usize
}

/// File offset of the first byte of block 0's signature in `f`.
fn signature_at(f: &[u8]) -> usize {
    let s = sector_at();
    let b = otter_format::secure_boot::SignatureBlock::parse(&f[s..], 0, s as u64)
        .expect("block 0 parses");
    b.signature().as_ptr() as usize - f.as_ptr() as usize
}

fn fix_crc(f: &mut [u8], block: usize) {
    let at = sector_at() + block * BLOCK_LEN;
    let crc = block_crc(&f[at..at + BLOCK_CRC_OFFSET]);
    f[at + BLOCK_CRC_OFFSET..at + BLOCK_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
}

fn rig_policy(policy: SignaturePolicy, anti: Option<u32>) -> Rig {
    let mut o = opts(false, anti, false);
    o.cfg = o.cfg.with_signatures(policy);
    let running = if anti.is_some() {
        app(Chip::Esp32c3, "1.0.0", 3, 72_000)
    } else {
        c3("1.0.0")
    };
    let mut r = Rig::with(CSV, &running, o);
    // A fresh Device with the same options, booted as the rig's.
    r.dev = Device::new(o);
    r.boot();
    r
}

fn trusting(names: &[&str]) -> SignaturePolicy {
    let all: Vec<[u8; 32]> = names
        .iter()
        .flat_map(|n| digest(n).iter().copied())
        .collect();
    SignaturePolicy::require(Box::leak(all.into_boxed_slice()))
}

fn rig_p256() -> Rig {
    rig_policy(trusting(&["ecdsa256"]), None)
}
fn rig_rsa_p256() -> Rig {
    rig_policy(trusting(&["rsa3072", "ecdsa256"]), None)
}
fn rig_revoked() -> Rig {
    rig_policy(
        trusting(&["ecdsa256", "rsa3072"]).revoking(digest("ecdsa256")),
        None,
    )
}
fn rig_p256_anti() -> Rig {
    rig_policy(trusting(&["ecdsa256"]), Some(3))
}
fn rig_plain() -> Rig {
    rig_policy(SignaturePolicy::NONE, None)
}

struct Case {
    name: &'static str,
    setup: fn() -> Rig,
    image: fn() -> Vec<u8>,
    status: u16,
    code: &'static str,
}

fn cases() -> Vec<Case> {
    macro_rules! case {
        ($name:expr, $setup:expr, $image:expr, $status:expr, $code:expr) => {
            Case {
                name: $name,
                setup: $setup,
                image: $image,
                status: $status,
                code: $code,
            }
        };
    }
    vec![
        // ---- accepted
        case!(
            "P-256 signed, trusted",
            rig_p256,
            || signed("ecdsa256"),
            200,
            ""
        ),
        case!(
            "RSA-3072 signed, trusted",
            rig_rsa_p256,
            || signed("rsa3072"),
            200,
            ""
        ),
        case!(
            "P-256 signed, second trusted key",
            rig_rsa_p256,
            || signed("ecdsa256"),
            200,
            ""
        ),
        case!(
            "untrusted block then a trusted one (key rotation)",
            rig_p256,
            || sign(&signed("ecdsa256-other"), "ecdsa256", SignMode::Append),
            200,
            ""
        ),
        case!(
            "signed image, device requires none",
            rig_plain,
            || signed("ecdsa256"),
            200,
            ""
        ),
        case!(
            "corpus image signed, trusted",
            rig_p256,
            || {
                let c = corpus_c3();
                let len = c.len() as u32;
                sign_image(&c, len, &key("ecdsa256"), SignMode::Fresh).unwrap()
            },
            200,
            ""
        ),
        // ---- refused: who signed
        case!(
            "unsigned",
            rig_p256,
            || fw_of("2.0.0", 0),
            422,
            "bad_signature"
        ),
        case!(
            "signed by another P-256 key",
            rig_p256,
            || signed("ecdsa256-other"),
            422,
            "bad_signature"
        ),
        case!(
            "signed by an untrusted P-384 key",
            rig_p256,
            || signed("ecdsa384"),
            422,
            "bad_signature"
        ),
        case!(
            "RSA block, device trusts only P-256",
            rig_p256,
            || signed("rsa3072"),
            422,
            "bad_signature"
        ),
        case!(
            "revoked key",
            rig_revoked,
            || signed("ecdsa256"),
            422,
            "bad_signature"
        ),
        case!(
            "another image: the genuine block plus a forger's second block",
            rig_p256,
            || {
                // Block 0 is the owner's (trusted key, over 2.0.0), block 1 the
                // forger's (own key, over 2.0.1); the file is 2.0.1.
                let genuine = signed("ecdsa256");
                let mut forged = sign(&fw_of("2.0.1", 0), "ecdsa256-other", SignMode::Fresh);
                let s = sector_at();
                let forger = forged[s..s + BLOCK_LEN].to_vec();
                forged[s..s + BLOCK_LEN].copy_from_slice(&genuine[s..s + BLOCK_LEN]);
                forged[s + BLOCK_LEN..s + 2 * BLOCK_LEN].copy_from_slice(&forger);
                forged
            },
            422,
            "bad_signature"
        ),
        // ---- refused: what was signed
        case!(
            "signature over a different image",
            rig_p256,
            || {
                let genuine = signed("ecdsa256");
                let mut other = fw_of("2.0.1", 0);
                let s = sector_at();
                assert_eq!(
                    signed_len(other.len() as u32) as usize,
                    s,
                    "same signed length"
                );
                other.resize(s, 0xFF);
                other.extend_from_slice(&genuine[s..]);
                other
            },
            422,
            "bad_signature"
        ),
        case!(
            "signature over a different length",
            rig_p256,
            || {
                // A longer image's block put after a shorter image.
                let long = sign(
                    &app(Chip::Esp32c3, "2.0.0", 0, 90_000),
                    "ecdsa256",
                    SignMode::Fresh,
                );
                let long_sector =
                    signed_len(app(Chip::Esp32c3, "2.0.0", 0, 90_000).len() as u32) as usize;
                let mut f = fw_of("2.0.0", 0);
                f.resize(sector_at(), 0xFF);
                f.extend_from_slice(&long[long_sector..]);
                f
            },
            422,
            "bad_signature"
        ),
        case!(
            "image digest byte flipped (CRC fixed)",
            rig_p256,
            || {
                let mut f = signed("ecdsa256");
                f[sector_at() + 4] ^= 0x01;
                fix_crc(&mut f, 0);
                f
            },
            422,
            "bad_signature"
        ),
        case!(
            "RSA signature byte flipped (CRC fixed)",
            rig_rsa_p256,
            || {
                let mut f = signed("rsa3072");
                let at = signature_at(&f) + 100;
                f[at] ^= 0x01;
                fix_crc(&mut f, 0);
                f
            },
            422,
            "bad_signature"
        ),
        case!(
            "signature byte flipped (CRC fixed)",
            rig_p256,
            || {
                let mut f = signed("ecdsa256");
                let at = signature_at(&f) + 5;
                f[at] ^= 0x01;
                fix_crc(&mut f, 0);
                f
            },
            422,
            "bad_signature"
        ),
        case!(
            "public key byte flipped (CRC fixed)",
            rig_p256,
            || {
                let mut f = signed("ecdsa256");
                f[sector_at() + 40] ^= 0x01;
                fix_crc(&mut f, 0);
                f
            },
            422,
            "bad_signature"
        ),
        case!(
            "CRC flipped",
            rig_p256,
            || {
                let mut f = signed("ecdsa256");
                f[sector_at() + BLOCK_CRC_OFFSET] ^= 0x01;
                f
            },
            422,
            "bad_signature"
        ),
        case!(
            "CRC flipped, device requires none",
            rig_plain,
            || {
                let mut f = signed("ecdsa256");
                f[sector_at() + BLOCK_CRC_OFFSET] ^= 0x01;
                f
            },
            422,
            "bad_signature"
        ),
        case!(
            "block truncated",
            rig_p256,
            || {
                let f = signed("ecdsa256");
                f[..sector_at() + 600].to_vec()
            },
            422,
            "bad_signature"
        ),
        case!(
            "sector truncated after the block",
            rig_p256,
            || {
                let f = signed("ecdsa256");
                f[..sector_at() + BLOCK_LEN].to_vec()
            },
            422,
            "bad_signature"
        ),
        case!(
            "block right after the image, not at 4 KiB",
            rig_p256,
            || {
                let f = signed("ecdsa256");
                let mut img = fw_of("2.0.0", 0);
                img.extend_from_slice(&f[sector_at()..]);
                img
            },
            422,
            "trailing_data"
        ),
        case!(
            "padding byte changed",
            rig_p256,
            || {
                let mut f = signed("ecdsa256");
                f[sector_at() - 1] = 0x00;
                f
            },
            422,
            "trailing_data"
        ),
        case!(
            "bytes after the signature sector",
            rig_p256,
            || {
                let mut f = signed("ecdsa256");
                f.extend_from_slice(&[0xFF; 16]);
                f
            },
            422,
            "trailing_data"
        ),
        case!(
            "bytes after the signature sector, device requires none",
            rig_plain,
            || {
                let mut f = signed("ecdsa256");
                f.push(0xE7);
                f
            },
            422,
            "trailing_data"
        ),
        // ---- anti-rollback under signatures
        case!(
            "signed but secure_version below the counter",
            rig_p256_anti,
            || sign(&fw_of("2.0.0", 2), "ecdsa256", SignMode::Fresh),
            422,
            "secure_version_too_low"
        ),
        case!(
            "signed, secure_version at the counter",
            rig_p256_anti,
            || sign(&fw_of("2.0.0", 3), "ecdsa256", SignMode::Fresh),
            200,
            ""
        ),
        case!(
            "unsigned, secure_version at the counter",
            rig_p256_anti,
            || fw_of("2.0.0", 3),
            422,
            "bad_signature"
        ),
    ]
}

#[test]
fn signature_table() {
    let cases = cases();
    assert!(cases.len() >= 25, "the table shrank to {}", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let image = (c.image)();
        let mut r = (c.setup)();
        let before = r.flash.contents()[OTADATA].to_vec();
        let a = r.one(&post("/update", &[], &image));
        let got_code = if a.status == 200 {
            String::new()
        } else {
            a.code()
        };
        if a.status != c.status || got_code != c.code {
            failures.push(format!(
                "{}: got {} {got_code:?}, want {} {:?}: {}",
                c.name,
                a.status,
                c.status,
                c.code,
                String::from_utf8_lossy(&a.body)
            ));
            continue;
        }
        if c.status == 200 {
            assert_eq!(
                r.boot_choice(),
                Some(SlotId::Ota(1)),
                "{}: boots the new image",
                c.name
            );
        } else {
            assert_eq!(
                r.flash.contents()[OTADATA],
                before[..],
                "{}: otadata changed on a refusal",
                c.name
            );
            assert_eq!(r.boot_choice(), Some(SlotId::Ota(0)), "{}", c.name);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The same upload in one-byte and odd-sized pieces: the trailer checks and
/// the read-back verification do not depend on how the bytes arrive.
#[test]
fn split_delivery_of_signed_and_forged_images() {
    let good = signed("ecdsa256");
    let mut forged = good.clone();
    let at = signature_at(&forged) + 3;
    forged[at] ^= 0x01;
    fix_crc(&mut forged, 0);
    let mut junk = good.clone();
    junk[sector_at() - 3] = 0x5A;
    for split in [1usize, 7, 4096] {
        let mut r = rig_p256();
        let a = r.exchange(&post("/update", &[], &good), split);
        assert_eq!(
            a[0].status,
            200,
            "good, split {split}: {:?}",
            String::from_utf8_lossy(&a[0].body)
        );
        for (img, code) in [(&forged, "bad_signature"), (&junk, "trailing_data")] {
            let mut r = rig_p256();
            let before = r.flash.contents()[OTADATA].to_vec();
            let a = r.exchange(&post("/update", &[], img), split);
            assert_eq!(
                (a[0].status, a[0].code().as_str()),
                (422, code),
                "split {split}"
            );
            assert_eq!(r.flash.contents()[OTADATA], before[..]);
        }
    }
}

/// Trailing junk is refused as soon as it arrives, before the rest of the
/// body: the answer comes while the client is still sending.
#[test]
fn junk_after_the_image_is_refused_at_once() {
    let mut f = fw_of("2.0.0", 0);
    let image_len = f.len();
    f.extend_from_slice(&[0x00; 4]);
    f.extend_from_slice(&vec![0xFF; 200_000]);
    let mut r = rig_plain();
    let req = post("/update", &[], &f);
    let a = r.exchange(&req, 4096);
    assert_eq!((a[0].status, a[0].code().as_str()), (422, "trailing_data"));
    let msg = a[0].json()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains(&format!("{image_len}-byte app image")),
        "{msg}"
    );
}

#[test]
fn error_messages_say_what_to_do() {
    let mut r = rig_p256();
    let a = r.one(&post("/update", &[], &fw_of("2.0.0", 0)));
    let msg = a.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("not signed"), "{msg}");
    assert!(msg.contains("otter sign"), "{msg}");
    let mut r = rig_p256();
    let a = r.one(&post("/update", &[], &signed("ecdsa256-other")));
    let msg = a.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(
        msg.contains("not trusted") || msg.contains("untrusted"),
        "{msg}"
    );
}
