//! Fuzz the ELF → app image conversion: nothing may panic, and every image
//! it makes must pass otter's own image inspection with a valid checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_format::chip::Chip;
use otter_format::image::{elf_to_image, inspect};

fuzz_target!(|data: &[u8]| {
    for chip in [Chip::Esp32c3, Chip::Esp32c6] {
        if let Ok(img) = elf_to_image(data, chip) {
            let info = inspect(&img).expect("a converted image inspects");
            assert!(info.checksum_valid());
        }
    }
});
