//! Fuzz the device core's full web-UI walk (`otter_device::www::check_files`):
//! any slot contents, read through the flash, must give a verdict, never
//! panic, loop or read outside the slot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_device::www::{check_files, check_superblock, MountLimits};
use otter_ota::Region;
use otter_sim::SimFlash;

/// Where the slot sits: a strict flash faults on reads past its end, and
/// everything after the slot is 0xFF.
const AT: u32 = 0x10000;

fuzz_target!(|data: &[u8]| {
    // Two to sixteen blocks, the input padded with 0xFF to whole blocks.
    let blocks = data.len().div_ceil(4096).clamp(2, 16);
    let mut slot = data.get(..blocks * 4096).unwrap_or(data).to_vec();
    slot.resize(blocks * 4096, 0xFF);
    let Ok(mut flash) = SimFlash::new(1 << 20) else {
        return;
    };
    if flash.load(AT, &slot).is_err() {
        return;
    }
    let region = Region {
        offset: AT,
        size: slot.len() as u32,
        label: otter_format::partition::Label::new("www_0"),
    };
    let _ = check_superblock(&mut flash, &region, &MountLimits::ESP_LITTLEFS);
    let _ = check_files(&mut flash, &region);
});
