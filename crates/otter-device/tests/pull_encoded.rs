//! Pulls of gzip and delta artifacts (`otter-release/2`) through the pull
//! machine, without a socket: which artifact is chosen, that it streams
//! through the decoder stage into the same session, that its own SHA-256 is
//! checked, and that any failure falls back to the full image in the same
//! check with nothing switched.

mod common;

use common::*;
use otter_delta::encode::{esp_delta_patch, PatchCompression};
use otter_device::decode::{new_applier, new_inflater, Encoding};
use otter_device::pull::{
    Artifact, ArtifactEncoding, Decision, Fallback, Now, Pull, PullError, Step,
};
use otter_device::service::{Protocol, RebootReason};
use otter_format::image::inspect;
use otter_ota::SlotId;
use otter_release::{sign_manifest, SigningKey};
use sha2::{Digest, Sha256};

const NOW: u64 = 1_800_000_000;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn key() -> SigningKey {
    SigningKey::from_seed(&[1; 32])
}

/// One alternative as the manifest lists it.
struct Alt<'a> {
    encoding: &'a str,
    url: &'a str,
    bytes: &'a [u8],
    base: Option<[u8; 32]>,
}

/// A signed `otter-release/2` manifest for `firmware` with `alts`.
fn signed(version: &str, firmware: &[u8], alts: &[Alt<'_>]) -> (Vec<u8>, Vec<u8>) {
    let list: Vec<String> = alts
        .iter()
        .map(|a| {
            let base = a
                .base
                .map(|b| format!(r#","base_sha256":"{}""#, hex(&b)))
                .unwrap_or_default();
            format!(
                r#"{{"encoding":"{}","url":"{}","size":{},"sha256":"{}"{base}}}"#,
                a.encoding,
                a.url,
                a.bytes.len(),
                hex(&Sha256::digest(a.bytes))
            )
        })
        .collect();
    let m = format!(
        r#"{{"format":"otter-release/2","product":"app","chip":"esp32c3","created":"2026-01-01T00:00:00Z","expires":"2099-01-01T00:00:00Z","firmware":{{"version":"{version}","secure_version":0,"project":"app","url":"firmware.bin","size":{},"sha256":"{}","alternatives":[{}]}}}}"#,
        firmware.len(),
        hex(&Sha256::digest(firmware)),
        list.join(",")
    )
    .into_bytes();
    let s = sign_manifest(&m, &[key()]).expect("signs");
    (m, s)
}

fn now(rig: &Rig) -> Now {
    Now {
        ms: rig.now,
        unix: NOW,
    }
}

fn lend_decoders(rig: &mut Rig) {
    rig.plat.inflate = Some(Box::new(new_inflater()));
    rig.plat.patch = Some(Box::new(new_applier()));
}

fn check(rig: &mut Rig, pull: &mut Pull, m: &[u8], s: &[u8]) -> Result<Decision, PullError> {
    let n = now(rig);
    pull.start(n);
    pull.check(
        &mut rig.dev,
        &mut rig.flash,
        &mut rig.plat,
        m,
        s,
        &[key().public_key()],
        None,
        n,
    )
}

/// Fetches what the machine asks for from `body` (the artifact at the URL it
/// names), in 1460-byte writes, and finishes.
fn download(rig: &mut Rig, pull: &mut Pull, body: &[u8]) -> Result<RebootReason, PullError> {
    let head = pull
        .head_range()
        .map(|(a, b)| body[a as usize..b as usize].to_vec())
        .unwrap_or_default();
    let n = now(rig);
    let f = pull.begin(&mut rig.dev, &mut rig.flash, &mut rig.plat, &head, n)?;
    assert_eq!(f.to, body.len() as u64, "the artifact's size");
    let mut at = f.from as usize;
    while at < body.len() {
        let end = (at + 1460).min(body.len());
        if let Err(e) = pull.write(
            &mut rig.dev,
            &mut rig.flash,
            &mut rig.plat,
            at as u64,
            &body[at..end],
        ) {
            pull.abort(&mut rig.dev, e.clone(), format_args!("refused"), n);
            return Err(e);
        }
        at = end;
    }
    pull.finish(&mut rig.dev, &mut rig.flash, &mut rig.plat, n)
}

/// Whether the running slot holds exactly `image` at its start.
fn runs(rig: &mut Rig, image: &[u8]) -> bool {
    let Some(slot) = rig.running() else {
        return false;
    };
    let map = otter_ota::SlotMap::read(&mut rig.flash, 0x8000).unwrap();
    let r = *map.region(slot).unwrap();
    let at = r.offset as usize;
    rig.flash.contents().get(at..at + image.len()) == Some(image)
}

fn validation_hash(image: &[u8]) -> [u8; 32] {
    inspect(image).unwrap().sha256.unwrap().stored
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 0xff];
    v.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, 9));
    let crc = {
        // CRC-32 (ISO-HDLC), bitwise: the test's own, not the device's.
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0xedb8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    };
    v.extend_from_slice(&crc.to_le_bytes());
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v
}

#[test]
fn a_delta_from_the_running_image_is_chosen_applied_and_recorded() {
    let mut rig = Rig::new();
    lend_decoders(&mut rig);
    let old = c3("1.0.0");
    let new = c3("1.1.0");
    let patch = esp_delta_patch(
        &validation_hash(&old),
        &old,
        &new,
        PatchCompression::default(),
    )
    .unwrap();
    assert!(
        patch.len() * 4 < new.len(),
        "a small patch: {}",
        patch.len()
    );
    let (m, s) = signed(
        "1.1.0",
        &new,
        &[Alt {
            encoding: "delta",
            url: "delta-from-1.0.0.patch",
            bytes: &patch,
            base: Some(validation_hash(&old)),
        }],
    );
    let mut pull = Pull::new();
    assert_eq!(
        check(&mut rig, &mut pull, &m, &s),
        Ok(Decision::Download(Artifact::Firmware))
    );
    assert_eq!(pull.encoding(), ArtifactEncoding::Delta);
    assert_eq!(pull.url(), "delta-from-1.0.0.patch");
    // No first sector: an encoded download starts at 0.
    assert_eq!(pull.head_range(), None);
    assert_eq!(
        download(&mut rig, &mut pull, &patch),
        Ok(RebootReason::Update)
    );
    assert_eq!(pull.fallback(), None);
    let lu = rig.dev.last_update().expect("recorded");
    assert_eq!(
        (lu.protocol, lu.received, lu.encoding, lu.result.name()),
        (
            Protocol::Pull,
            patch.len() as u64,
            Some(Encoding::EspDelta),
            "ok"
        )
    );
    rig.boot();
    assert_eq!(rig.running(), Some(SlotId::Ota(1)));
    assert!(runs(&mut rig, &new));
}

#[test]
fn without_a_matching_base_gzip_and_without_decoder_ram_the_full_image() {
    // A real (compressible) image, so that gzip is smaller than it.
    let new = corpus_c3();
    let gzip = gz(&new);
    assert!(gzip.len() < new.len() * 3 / 4);
    let (m, s) = signed(
        "9.0.0",
        &new,
        &[
            Alt {
                encoding: "delta",
                url: "delta-from-other.patch",
                bytes: b"not applied to this device",
                base: Some([9; 32]),
            },
            Alt {
                encoding: "gzip",
                url: "firmware.bin.gz",
                bytes: &gzip,
                base: None,
            },
        ],
    );
    let mut rig = Rig::new();
    lend_decoders(&mut rig);
    let mut pull = Pull::new();
    assert_eq!(
        check(&mut rig, &mut pull, &m, &s),
        Ok(Decision::Download(Artifact::Firmware))
    );
    assert_eq!(
        (pull.encoding(), pull.url()),
        (ArtifactEncoding::Gzip, "firmware.bin.gz")
    );
    assert_eq!(
        download(&mut rig, &mut pull, &gzip),
        Ok(RebootReason::Update)
    );
    let lu = rig.dev.last_update().expect("recorded");
    assert_eq!(
        (lu.received, lu.encoding),
        (gzip.len() as u64, Some(Encoding::Gzip))
    );
    rig.boot();
    assert!(runs(&mut rig, &new));

    // A device that lends no decoder RAM fetches the image.
    let mut rig = Rig::new();
    let mut pull = Pull::new();
    check(&mut rig, &mut pull, &m, &s).unwrap();
    assert_eq!(
        (pull.encoding(), pull.url()),
        (ArtifactEncoding::Identity, "firmware.bin")
    );
    assert_eq!(pull.head_range(), Some((0, 4096)));
    assert_eq!(
        download(&mut rig, &mut pull, &new),
        Ok(RebootReason::Update)
    );
    assert_eq!(
        rig.dev.last_update().unwrap().encoding,
        Some(Encoding::Identity)
    );
}

/// A corrupted delta (one byte flipped, the manifest unchanged): the
/// artifact's SHA-256 (or the decoder) fails, nothing is switched, and the
/// same check installs the full image.
#[test]
fn a_corrupted_delta_falls_back_to_the_full_image() {
    let old = c3("1.0.0");
    let new = c3("1.1.0");
    let base = validation_hash(&old);
    let patch = esp_delta_patch(&base, &old, &new, PatchCompression::default()).unwrap();
    let (m, s) = signed(
        "1.1.0",
        &new,
        &[Alt {
            encoding: "delta",
            url: "d.patch",
            bytes: &patch,
            base: Some(base),
        }],
    );
    // Flipped in the header's tail (decodes, wrong artifact hash) and in
    // the body (a decode error or a wrong image), each a fallback.
    for flip in [40, patch.len() / 2, patch.len() - 1] {
        let mut bad = patch.clone();
        bad[flip] ^= 0x55;
        let mut rig = Rig::new();
        lend_decoders(&mut rig);
        let mut pull = Pull::new();
        check(&mut rig, &mut pull, &m, &s).unwrap();
        assert_eq!(pull.encoding(), ArtifactEncoding::Delta);
        let before = rig.boot_choice();
        let err = download(&mut rig, &mut pull, &bad).expect_err("the bad delta fails");
        assert_eq!(pull.step(), Step::Failed);
        assert_eq!(rig.boot_choice(), before, "flip {flip}: nothing switched");
        assert!(!rig.dev.update_in_progress());
        let n = now(&rig);
        assert!(pull.fall_back(&mut rig.dev, n), "flip {flip}");
        assert_eq!(
            pull.fallback(),
            Some(Fallback {
                from: ArtifactEncoding::Delta,
                error: err.code(),
            })
        );
        assert_ne!(err.code(), "internal", "flip {flip}");
        assert_eq!(
            (pull.step(), pull.encoding(), pull.url(), pull.last_error()),
            (
                Step::Checking,
                ArtifactEncoding::Identity,
                "firmware.bin",
                None
            )
        );
        // The full image starts over (no resume from what the decoder wrote).
        assert_eq!(
            download(&mut rig, &mut pull, &new),
            Ok(RebootReason::Update)
        );
        assert_eq!(rig.dev.last_update().unwrap().received, new.len() as u64);
        // Only once: the full image does not fall back.
        assert!(!pull.fall_back(&mut rig.dev, n));
        assert_eq!(
            rig.dev.last_update().unwrap().encoding,
            Some(Encoding::Identity)
        );
        rig.boot();
        assert!(runs(&mut rig, &new), "flip {flip}");
    }
    // The flip in the header's padding passes the decoder: the artifact's
    // own SHA-256 is what refuses it.
    let mut bad = patch.clone();
    bad[40] ^= 0x55;
    let mut rig = Rig::new();
    lend_decoders(&mut rig);
    let mut pull = Pull::new();
    check(&mut rig, &mut pull, &m, &s).unwrap();
    assert_eq!(
        download(&mut rig, &mut pull, &bad).map_err(|e| e.code()),
        Err("artifact_sha256_mismatch")
    );
    // A check after the failure does not choose that artifact again.
    let n = now(&rig);
    assert!(pull.fall_back(&mut rig.dev, n));
    check(&mut rig, &mut pull, &m, &s).unwrap();
    assert_eq!(pull.encoding(), ArtifactEncoding::Identity);
}
