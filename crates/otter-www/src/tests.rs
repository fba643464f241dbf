//! Unit and property tests for the image builder and reader.

use super::*;
use proptest::prelude::*;

fn folder() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("index.html"), b"<h1>hi</h1>").unwrap();
    std::fs::create_dir_all(d.path().join("assets/js")).unwrap();
    std::fs::write(d.path().join("assets/js/app.js"), vec![7u8; 10_000]).unwrap();
    std::fs::write(d.path().join("empty"), b"").unwrap();
    d
}

#[test]
fn round_trip() {
    let d = folder();
    let img = build_image(d.path(), 64 * 1024).unwrap();
    assert_eq!(img.len(), 64 * 1024);
    assert!(mounts(&img));
    let paths: Vec<_> = list(&img)
        .unwrap()
        .into_iter()
        .map(|e| (e.path, e.size))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("/assets".to_owned(), 0),
            ("/assets/js".to_owned(), 0),
            ("/assets/js/app.js".to_owned(), 10_000),
            ("/empty".to_owned(), 0),
            ("/index.html".to_owned(), 11),
        ]
    );
    assert_eq!(read_file(&img, "/index.html").unwrap(), b"<h1>hi</h1>");
    assert_eq!(
        read_file(&img, "assets/js/app.js").unwrap(),
        vec![7u8; 10_000]
    );
    assert!(matches!(
        read_file(&img, "/nope"),
        Err(WwwError::NotFound(_))
    ));
}

#[test]
fn too_large_and_bad_sizes() {
    let d = folder();
    std::fs::write(d.path().join("big"), vec![1u8; 40_000]).unwrap();
    assert!(matches!(
        build_image(d.path(), 16 * 1024),
        Err(WwwError::TooLarge { .. })
    ));
    assert!(matches!(
        build_image(d.path(), 5000),
        Err(WwwError::BadSize(5000))
    ));
    assert!(matches!(
        build_image(d.path(), 4096),
        Err(WwwError::BadSize(4096))
    ));
}

#[test]
fn erased_flash_does_not_mount() {
    assert!(!mounts(&vec![0xff; 8192]));
    assert!(!mounts(&[0u8; 100]));
    assert!(matches!(
        list(&vec![0u8; 8192]),
        Err(WwwError::NotMountable(crate::read::ReadError::NoSuperblock))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_bytes_never_panic(blocks in 0usize..6, seed in any::<Vec<u8>>()) {
        let mut img = vec![0u8; blocks * 4096];
        for (i, b) in img.iter_mut().enumerate() {
            *b = seed.get(i % seed.len().max(1)).copied().unwrap_or(0);
        }
        let _ = mounts(&img);
        let _ = list(&img);
    }

    #[test]
    fn corrupted_image_never_panics(flips in proptest::collection::vec((0usize..65536, any::<u8>()), 1..40)) {
        let d = folder();
        let mut img = build_image(d.path(), 64 * 1024).unwrap();
        for (at, x) in flips {
            img[at] ^= x;
        }
        let _ = mounts(&img);
        if let Ok(entries) = list(&img) {
            for e in entries.iter().filter(|e| !e.is_dir) {
                let _ = read_file(&img, &e.path);
            }
        }
    }
}
