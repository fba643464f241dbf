//! Devices on the NOR-flash simulator, shared by otter-ota's integration tests.
#![allow(dead_code)]

use otter_format::partition::{CsvOptions, OwnedTable};
use otter_sim::powercut::layouts;
use otter_sim::SimFlash;

#[path = "../../../../tests/support/paths.rs"]
mod paths;
#[allow(unused_imports)]
pub use paths::*;

/// Factory + ota_0 + ota_1, 1 MiB each, otadata at 0xd000: the power-cut
/// harness's `factory+2ota/4MB` layout.
pub const FACTORY_TWO_OTA: &str = layouts::FACTORY_2OTA_4MB.csv;
/// ota_0 + ota_1 of 1.5 MiB, no factory, otadata at 0xf000 (seeds/003).
pub const TWO_OTA: &str = layouts::SEED003_2OTA_4MB.csv;

/// A 4 MiB flash with `csv`'s table at 0x8000 and `image` at `image_at`, as
/// a factory programmer leaves it (otadata erased).
pub fn device(csv: &str, image_at: u32, image: &[u8]) -> SimFlash {
    let bin = OwnedTable::from_csv(csv, &CsvOptions::default())
        .expect("test table parses")
        .to_binary(true)
        .expect("test table encodes");
    let mut flash = SimFlash::new(4 << 20).expect("4 MiB flash");
    flash.load(0x8000, &bin).expect("table fits");
    flash.load(image_at, image).expect("image fits");
    flash
}
