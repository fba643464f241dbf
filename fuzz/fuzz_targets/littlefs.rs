//! Fuzz the LittleFS reader: mounting any bytes, listing every directory
//! and reading every file must return, never panic or loop; a mounted
//! image's superblock must fit the input. The device core's superblock
//! walk runs over the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_www::read::{superblock, Fs, Kind};

fuzz_target!(|data: &[u8]| {
    let _ = superblock(data);
    let _ = otter_device::www::superblock_in(data.get(..4096).unwrap_or(data));
    let Ok(fs) = Fs::mount(data) else {
        return;
    };
    let sb = fs.superblock();
    assert!(u64::from(sb.block_size) * u64::from(sb.block_count) <= data.len() as u64);
    let Ok(root) = fs.read_dir("/") else {
        return;
    };
    // Two levels deep, bounded: loops are the reader's to stop.
    for e in &root {
        match e.kind {
            Kind::File(size) => {
                if let Ok(bytes) = fs.contents(e) {
                    assert_eq!(bytes.len() as u64, u64::from(size));
                }
            }
            Kind::Dir => {
                if let Ok(sub) = fs.read_subdir(e) {
                    for f in &sub {
                        let _ = fs.contents(f);
                    }
                }
            }
        }
    }
});
