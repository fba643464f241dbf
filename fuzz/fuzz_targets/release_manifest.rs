//! Fuzz release-manifest and signature-file parsing: any manifest bytes and
//! signature-file bytes must verify or fail with an error, never panic.
//!
//! The input is split in two at a point its first two bytes choose. Besides
//! verifying the pair as given (which stops at the signature for almost every
//! input), the manifest half is also signed with a fixed key and verified, so
//! the manifest parser, field checks and expiry run behind a good signature
//! too; a manifest that then verifies must re-serialize to bytes that parse
//! back to the same manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_release::{
    compare_versions, resolve_url, sign_manifest, verify_manifest, Manifest, SignatureFile,
    SigningKey,
};

fuzz_target!(|data: &[u8]| {
    let Some((ctl, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = usize::from(u16::from_le_bytes(*ctl)).min(rest.len());
    let (manifest, sig) = rest.split_at(split);
    let key = SigningKey::from_seed(&[7; 32]);
    let trusted = [key.public_key()];
    let now = 1_750_000_000;

    let _ = verify_manifest(manifest, sig, &trusted, now);
    let _ = SignatureFile::from_json(sig);
    let _ = Manifest::from_json(manifest);

    let Ok(good_sig) = sign_manifest(manifest, std::slice::from_ref(&key)) else {
        return;
    };
    if let Ok(m) = verify_manifest(manifest, &good_sig, &trusted, now) {
        let again = Manifest::from_json(&m.to_json()).expect("a verified manifest re-parses");
        assert_eq!(again, m);
        let _ = compare_versions(&m.firmware.version, &m.firmware.project);
        for a in m.artifacts() {
            let _ = resolve_url("https://releases.example/p/manifest.json", a.url);
        }
        // Only /2 lists alternatives, and never more than the limit.
        assert!(m.firmware.alternatives.is_empty() || m.format == otter_release::FORMAT_2);
        assert!(m.firmware.alternatives.len() <= otter_release::MAX_ALTERNATIVES);
    }
    if let (Ok(a), Ok(b)) = (std::str::from_utf8(manifest), std::str::from_utf8(sig)) {
        let _ = compare_versions(a, b);
        let _ = resolve_url(a, b);
    }
});
