//! Unit and property tests for the reader, on images otter builds (the
//! littlefs-python interop is in `tests/oracle.rs`).

use super::*;
use proptest::prelude::*;

fn image() -> Vec<u8> {
    static IMAGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    IMAGE.get_or_init(build).clone()
}

fn build() -> Vec<u8> {
    crate::build_image(folder().path(), 256 * 1024).unwrap()
}

fn folder() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("index.html"), b"<h1>hi</h1>").unwrap();
    std::fs::create_dir_all(d.path().join("a/b")).unwrap();
    std::fs::write(d.path().join("a/b/big"), vec![9u8; 20_000]).unwrap();
    for i in 0..150 {
        std::fs::write(d.path().join(format!("f{i:03}")), [i as u8; 40]).unwrap();
    }
    d
}

#[test]
fn crc_is_littlefs_crc() {
    // CRC-32/ISO-HDLC of "123456789" is 0xCBF43926; littlefs skips the
    // final XOR.
    assert_eq!(crc32(0xffff_ffff, b"123456789"), !0xCBF4_3926u32);
}

#[test]
fn superblock_and_root_of_a_built_image() {
    let img = image();
    let fs = Fs::mount(&img).unwrap();
    assert_eq!(
        fs.superblock(),
        Superblock {
            disk_version: 0x0002_0001,
            block_size: 4096,
            block_count: 64,
            name_max: 64,
            file_max: 0x7fff_ffff,
            attr_max: 1022,
        }
    );
    let root = fs.read_dir("/").unwrap();
    assert_eq!(root.len(), 152, "the split root lists every entry once");
    assert_eq!(fs.read_file("/a/b/big").unwrap(), vec![9u8; 20_000]);
    assert_eq!(fs.read_file("f149").unwrap(), vec![149u8; 40]);
    assert_eq!(
        fs.read_file("/a/nope"),
        Err(ReadError::NotFound("/a/nope".into()))
    );
    assert_eq!(
        fs.read_file("/a"),
        Err(ReadError::WrongType("/a".into(), "file"))
    );
}

#[test]
fn the_root_of_a_many_file_image_is_split() {
    let img = image();
    let log = meta::fetch_pair(&img, 4096, [0, 1]).unwrap();
    assert!(
        matches!(log.tail, Some((_, true))),
        "150 entries should not fit one pair"
    );
}

/// The same folder in 64 KiB nearly fills it: littlefs-rust's panic there
/// comes back as an error.
#[test]
fn a_nearly_full_image_is_an_error_not_a_panic() {
    let d = folder();
    match crate::build_image(d.path(), 64 * 1024) {
        Err(crate::WwwError::WriterFault {
            size: 65536,
            blocks: 16,
        }) => {}
        other => panic!("{:?}", other.map(|i| i.len())),
    }
}

#[test]
fn refusals() {
    assert_eq!(
        Fs::mount(&[0xff; 8192]).err(),
        Some(ReadError::NoSuperblock)
    );
    assert_eq!(Fs::mount(&[]).err(), Some(ReadError::NoSuperblock));
    let img = image();
    assert_eq!(
        Fs::mount(&img[..128 * 1024]).err(),
        Some(ReadError::Geometry {
            block_size: 4096,
            block_count: 64,
            len: 128 * 1024
        })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    /// Flipped bytes in a real image: refused or read, never a panic or a hang.
    #[test]
    fn damaged_images_never_panic(flips in proptest::collection::vec((0usize..262_144, any::<u8>()), 1..20)) {
        let mut img = image();
        for (at, x) in flips {
            img[at] ^= x;
        }
        if let Ok(fs) = Fs::mount(&img) {
            if let Ok(root) = fs.read_dir("/") {
                for e in &root {
                    let _ = fs.contents(e);
                    let _ = fs.read_subdir(e);
                }
            }
        }
        let _ = crate::list(&img);
    }
}
