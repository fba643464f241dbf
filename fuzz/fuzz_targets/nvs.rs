//! Fuzz the NVS readers and the `set_u8` planner: any partition bytes (padded
//! to whole pages) must parse or fail with an error, never panic, and a
//! planned `set_u8` (garbage collection included), once applied, must read
//! back as a device reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_format::nvs::{apply, plan_set_u8, Nvs, PAGE_SIZE};

fuzz_target!(|data: &[u8]| {
    let mut img = data.to_vec();
    let pages = img.len().div_ceil(PAGE_SIZE).clamp(1, 8);
    img.resize(pages * PAGE_SIZE, 0xFF);
    if let Ok(nvs) = Nvs::parse(&img) {
        let _ = nvs.iter().count();
    }
    let loaded = Nvs::load(&img).expect("whole pages always load");
    let _ = loaded.iter().count();
    if let Ok(ops) = plan_set_u8(&img, "otter", "www_slot", 7) {
        apply(&mut img, &ops);
        let nvs = Nvs::load(&img).expect("whole pages always load");
        assert_eq!(nvs.get_u8("otter", "www_slot"), Some(7));
    }
});
