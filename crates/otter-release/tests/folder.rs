//! Release folders through the library API: written, verified, and refused
//! when a file changes.

use otter_release::{
    sign_manifest, verify_folder, write_release, Manifest, ReleaseError, ReleaseSpec, SigningKey,
    Timestamp, MANIFEST_FILE, SIGNATURE_FILE,
};

const CREATED: u64 = 1_750_000_000;

fn spec<'a>(fw: &'a [u8], www: Option<&'a [u8]>) -> ReleaseSpec<'a> {
    ReleaseSpec {
        product: "thermostat",
        chip: "esp32s3",
        version: "1.4.0",
        secure_version: 2,
        project: "thermostat",
        firmware: fw,
        www,
        alternatives: &[],
        created: Timestamp::from_unix(CREATED).unwrap(),
        expires: Timestamp::from_unix(CREATED + 3600).unwrap(),
    }
}

#[test]
fn written_folders_verify_and_list_their_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let fw = vec![0xE9u8; 70_000];
    let www = vec![7u8; 8192];
    let w = write_release(
        dir.path(),
        &spec(&fw, Some(&www)),
        std::slice::from_ref(&key),
    )
    .unwrap();
    assert_eq!(w.files.last().unwrap(), &dir.path().join(MANIFEST_FILE));
    assert_eq!(
        std::fs::read(dir.path().join(MANIFEST_FILE)).unwrap(),
        w.manifest_bytes
    );
    let v = verify_folder(dir.path(), &[key.public_key()], CREATED + 10).unwrap();
    assert_eq!(v.manifest, w.manifest);
    assert_eq!(v.signed_by, [key.public_key().keyid()]);
    assert_eq!(
        v.artifacts,
        [dir.path().join("firmware.bin"), dir.path().join("www.bin")]
    );
    assert!(matches!(
        verify_folder(dir.path(), &[key.public_key()], CREATED + 3600),
        Err(ReleaseError::Expired { .. })
    ));
    assert!(matches!(
        verify_folder(dir.path(), &[], CREATED),
        Err(ReleaseError::NoTrustedKeys)
    ));
    // No temporary files are left behind.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "firmware.bin",
            "manifest.json",
            "manifest.json.sig",
            "www.bin"
        ]
    );
}

#[test]
fn an_invalid_spec_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let fw = vec![1u8; 10];
    let mut s = spec(&fw, None);
    s.chip = "ESP32-S3";
    assert!(matches!(
        write_release(dir.path(), &s, std::slice::from_ref(&key)),
        Err(ReleaseError::InvalidField { field: "chip", .. })
    ));
    assert!(matches!(
        write_release(dir.path(), &spec(&[], None), &[key]),
        Err(ReleaseError::InvalidField {
            field: "firmware.size",
            ..
        })
    ));
    assert!(matches!(
        write_release(dir.path(), &spec(&fw, None), &[]),
        Err(ReleaseError::NoSigningKeys)
    ));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn artifacts_hosted_elsewhere_cannot_be_checked_locally() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let fw = vec![1u8; 10];
    let w = write_release(dir.path(), &spec(&fw, None), std::slice::from_ref(&key)).unwrap();
    let mut m: Manifest = w.manifest;
    m.firmware.url = "https://cdn.example/fw/1.4.0.bin".into();
    let bytes = m.to_json();
    std::fs::write(dir.path().join(MANIFEST_FILE), &bytes).unwrap();
    std::fs::write(
        dir.path().join(SIGNATURE_FILE),
        sign_manifest(&bytes, std::slice::from_ref(&key)).unwrap(),
    )
    .unwrap();
    match verify_folder(dir.path(), &[key.public_key()], CREATED) {
        Err(ReleaseError::ArtifactNotLocal { artifact, url }) => {
            assert_eq!(artifact, "firmware");
            assert_eq!(url, "https://cdn.example/fw/1.4.0.bin");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_oversized_manifest_is_not_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    std::fs::write(dir.path().join(MANIFEST_FILE), vec![b' '; 1 << 20]).unwrap();
    std::fs::write(dir.path().join(SIGNATURE_FILE), b"{}").unwrap();
    assert!(matches!(
        verify_folder(dir.path(), &[key.public_key()], CREATED),
        Err(ReleaseError::ManifestTooLarge { len: 65537, .. })
    ));
}

#[test]
fn alternatives_are_written_listed_and_checked() {
    use otter_release::{AlternativeSpec, Encoding, Sha256Digest, FORMAT, FORMAT_2};
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate().unwrap();
    let fw = vec![0xE9u8; 70_000];
    let gz = vec![0x1fu8; 900];
    let patch = vec![0x10u8; 120];
    let base = Sha256Digest::of(b"the 1.3.0 image");
    let alts = [
        AlternativeSpec {
            encoding: Encoding::Gzip,
            file: "firmware.bin.gz",
            bytes: &gz,
            base_sha256: None,
        },
        AlternativeSpec {
            encoding: Encoding::Delta,
            file: "delta-from-1.3.0.patch",
            bytes: &patch,
            base_sha256: Some(base),
        },
    ];
    let mut s = spec(&fw, None);
    s.alternatives = &alts;
    let w = write_release(dir.path(), &s, std::slice::from_ref(&key)).unwrap();
    assert_eq!(w.manifest.format, FORMAT_2);
    let a = &w.manifest.firmware.alternatives;
    assert_eq!(a.len(), 2);
    assert_eq!((a[0].size, a[0].sha256), (900, Sha256Digest::of(&gz)));
    assert_eq!((a[1].size, a[1].base_sha256), (120, Some(base)));
    let v = verify_folder(dir.path(), &[key.public_key()], CREATED + 10).unwrap();
    assert_eq!(
        v.artifacts,
        [
            dir.path().join("firmware.bin"),
            dir.path().join("firmware.bin.gz"),
            dir.path().join("delta-from-1.3.0.patch")
        ]
    );
    // A changed alternative is refused like a changed firmware.
    let mut bad = patch.clone();
    bad[60] ^= 1;
    std::fs::write(dir.path().join("delta-from-1.3.0.patch"), &bad).unwrap();
    match verify_folder(dir.path(), &[key.public_key()], CREATED + 10) {
        Err(e @ ReleaseError::ArtifactHashMismatch { .. }) => {
            assert_eq!(e.code(), "artifact_sha256_mismatch")
        }
        other => panic!("{other:?}"),
    }
    // Without alternatives the release is still /1.
    let plain = tempfile::tempdir().unwrap();
    let w = write_release(plain.path(), &spec(&fw, None), &[key]).unwrap();
    assert_eq!(w.manifest.format, FORMAT);
    // A file name outside the folder, or one the folder uses, is refused.
    for file in ["a/b.gz", "firmware.bin", "manifest.json", "../x"] {
        let one = [AlternativeSpec {
            encoding: Encoding::Gzip,
            file,
            bytes: &gz,
            base_sha256: None,
        }];
        let mut s = spec(&fw, None);
        s.alternatives = &one;
        assert!(
            matches!(
                s.manifest(),
                Err(ReleaseError::InvalidField {
                    field: "firmware.alternatives.url",
                    ..
                })
            ),
            "{file}"
        );
    }
}
