//! Property tests: verification never panics and never accepts a changed
//! byte; signing round-trips for any valid manifest; version comparison is a
//! total order.

use std::cmp::Ordering;

use otter_release::{
    compare_versions, resolve_url, sign_manifest, verify_manifest, Artifact, Firmware, Manifest,
    PublicKey, ReleaseError, Sha256Digest, SigningKey, Timestamp, FORMAT,
};
use proptest::prelude::*;

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32])
}

const NOW: u64 = 1_750_000_000;

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9 ._+-]{0,30}[a-zA-Z0-9]"
}

prop_compose! {
    fn manifest()(
        product in name(),
        chip in "esp32[a-z0-9]{0,3}",
        created in 1_600_000_000u64..1_749_000_000,
        life in 1u64..100_000_000,
        version in name(),
        secure_version in any::<u32>(),
        project in name(),
        fw_url in prop_oneof![Just("firmware.bin".to_owned()), "[a-z0-9]{1,8}(/[a-z0-9][a-z0-9._-]{0,7}){0,2}", "https://[a-z]{1,10}\\.example/[a-z/]{0,20}"],
        size in 1u64..u64::MAX,
        d1 in any::<[u8; 32]>(),
        www in proptest::option::of((1u64..1_000_000, any::<[u8; 32]>())),
    ) -> Manifest {
        // Keep the expiry after NOW so that round trips verify.
        let created = Timestamp::from_unix(created).unwrap();
        let expires = Timestamp::from_unix(NOW + life).unwrap();
        Manifest {
            format: FORMAT.into(),
            product,
            chip,
            created,
            expires,
            firmware: Firmware {
                version,
                secure_version,
                project,
                url: fw_url,
                size,
                sha256: Sha256Digest(d1),
                alternatives: Vec::new(),
            },
            www: www.map(|(size, d)| Artifact {
                url: "www.bin".into(),
                size,
                sha256: Sha256Digest(d),
            }),
        }
    }
}

fn version() -> impl Strategy<Value = String> {
    prop_oneof![
        "v?[0-9]{1,3}(\\.[0-9]{1,3}){0,3}(-[0-9a-zA-Z-]{1,5}(\\.[0-9a-zA-Z-]{1,5}){0,2})?(\\+[0-9a-z.]{1,5})?",
        "[0-9a-z.+-]{0,8}",
        ".{0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn verify_manifest_never_panics_on_arbitrary_bytes(
        m in proptest::collection::vec(any::<u8>(), 0..2048),
        s in proptest::collection::vec(any::<u8>(), 0..2048),
        now in any::<u64>(),
    ) {
        let trusted = [key(1).public_key()];
        let _ = verify_manifest(&m, &s, &trusted, now);
        let _ = Manifest::from_json(&m);
    }

    #[test]
    fn verify_manifest_never_panics_on_json_shaped_bytes(
        m in "\\{[\"a-z0-9:,{}\\[\\] ./-]{0,300}\\}",
        s in "\\{[\"a-z0-9:,{}\\[\\] =+/-]{0,300}\\}",
    ) {
        let trusted = [key(1).public_key()];
        let _ = verify_manifest(m.as_bytes(), s.as_bytes(), &trusted, NOW);
        let _ = Manifest::from_json(m.as_bytes());
    }

    #[test]
    fn any_valid_manifest_round_trips(m in manifest()) {
        let bytes = m.to_json();
        let sig = sign_manifest(&bytes, &[key(1), key(2)]).unwrap();
        let trusted = [key(2).public_key()];
        prop_assert_eq!(verify_manifest(&bytes, &sig, &trusted, NOW).unwrap(), m);
    }

    #[test]
    fn no_changed_manifest_byte_verifies(m in manifest(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = m.to_json();
        let sig = sign_manifest(&bytes, &[key(1)]).unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let r = verify_manifest(&bytes, &sig, &[key(1).public_key()], NOW);
        prop_assert!(
            matches!(r, Err(ReleaseError::BadSignature { .. })),
            "flipping bit {} of byte {} gave {:?}", bit, i, r
        );
    }

    #[test]
    fn no_changed_signature_byte_verifies(m in manifest(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let bytes = m.to_json();
        let mut sig = sign_manifest(&bytes, &[key(1)]).unwrap();
        let i = at.index(sig.len());
        sig[i] ^= 1 << bit;
        prop_assert!(verify_manifest(&bytes, &sig, &[key(1).public_key()], NOW).is_err());
    }

    #[test]
    fn compare_versions_is_a_total_order(a in version(), b in version(), c in version()) {
        prop_assert_eq!(compare_versions(&a, &a), Ordering::Equal);
        prop_assert_eq!(compare_versions(&a, &b), compare_versions(&b, &a).reverse());
        let (ab, bc, ac) = (compare_versions(&a, &b), compare_versions(&b, &c), compare_versions(&a, &c));
        if ab != Ordering::Greater && bc != Ordering::Greater {
            prop_assert_ne!(ac, Ordering::Greater, "{} <= {} <= {} but {} > {}", a, b, c, a, c);
        }
        if ab == Ordering::Equal && bc == Ordering::Equal {
            prop_assert_eq!(ac, Ordering::Equal);
        }
    }

    #[test]
    fn timestamps_round_trip(secs in 0u64..=253_402_300_799) {
        let t = Timestamp::from_unix(secs).unwrap();
        prop_assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
    }

    #[test]
    fn resolve_url_never_panics(m in ".{0,40}", a in ".{0,20}") {
        let _ = resolve_url(&m, &a);
    }

    #[test]
    fn public_key_pem_parsing_never_panics(s in ".{0,200}") {
        let _ = PublicKey::from_pem(&s);
        let _ = SigningKey::from_pem(&s);
    }
}
