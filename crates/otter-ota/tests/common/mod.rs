//! Devices on the NOR-flash simulator, shared by otter-ota's integration tests.
#![allow(dead_code)]

use otter_format::partition::{CsvOptions, OwnedTable};
use otter_sim::SimFlash;

/// The seeds' layout: factory + ota_0 + ota_1, 1 MiB each, otadata at 0xd000.
pub const FACTORY_TWO_OTA: &str = "\
nvs,      data, nvs,     0x9000,  0x4000,
otadata,  data, ota,     0xd000,  0x2000,
phy_init, data, phy,     0xf000,  0x1000,
factory,  app,  factory, 0x10000, 1M,
ota_0,    app,  ota_0,   ,        1M,
ota_1,    app,  ota_1,   ,        1M,
";

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
