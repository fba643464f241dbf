//! The update engine's flash cost on the timing model, shared by
//! `tests/update_perf.rs` (which asserts the targets) and `benches/update.rs`
//! (which prints them next to host throughput).
//!
//! Everything here is modelled device time from `SimFlash`'s datasheet
//! timing model (4 KiB erase 45 ms, 64 KiB erase 150 ms, 0.7 ms per
//! 256-byte page touched), so it is deterministic: the same code gives the
//! same figures on any machine, and asserting them in a test is legitimate.
#![allow(dead_code)]

use std::time::Duration;

use otter_format::chip::Chip;
use otter_format::image::AppImageBuilder;
use otter_format::partition::{CsvOptions, OwnedTable};
use otter_ota::session::{UpdateRequest, UpdateSession};
use otter_ota::{DeviceConfig, SlotId};
use otter_sim::embedded_storage::nor_flash::NorFlash;
use otter_sim::{Counters, SimFlash, TimingModel, BLOCK64_SIZE, PAGE_SIZE, SECTOR_SIZE};

/// The 1.5 MB update the performance targets talk about.
pub const IMAGE_SIZE: u32 = 1_500_000;
/// Upload chunk size.
pub const CHUNK: usize = 4096;
/// ota_0 and ota_1 of 2 MiB (seeds/001's table) on an 8 MiB flash.
const TABLE: &str = otter_sim::powercut::layouts::SEED001_FACTORY_2OTA_8MB.csv;
/// Where ota_0 starts.
pub const OTA0: u32 = 0x220000;

/// A valid app image of exactly `size` bytes.
pub fn image(size: u32) -> Vec<u8> {
    let img = AppImageBuilder::new(Chip::Esp32s3)
        .version("2.0.0")
        .project_name("otter-bench")
        .size(size)
        .build()
        .expect("builder image");
    assert_eq!(
        img.len(),
        size as usize,
        "the builder pads to the size asked"
    );
    img
}

/// A device with the table and a small factory image, with `timing`.
pub fn device(timing: TimingModel) -> SimFlash {
    let table = OwnedTable::from_csv(TABLE, &CsvOptions::default())
        .expect("table")
        .to_binary(true)
        .expect("binary");
    let factory = AppImageBuilder::new(Chip::Esp32s3)
        .version("1.0.0")
        .build()
        .expect("factory image");
    let mut flash = SimFlash::new(8 << 20).expect("flash").with_timing(timing);
    flash.load(0x8000, &table).expect("table");
    flash.load(0x20000, &factory).expect("factory");
    flash.reset_counters();
    flash
}

/// What one modelled run cost.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// Modelled device time.
    pub time: Duration,
    /// The flash counters.
    pub counters: Counters,
}

/// Cost of the image write (begin, write in `CHUNK`s, finish) and of the
/// whole update including `activate` (otadata), with the size announced
/// (`known`) or not.
pub fn otter_update(img: &[u8], known: bool) -> (Cost, Cost) {
    let cfg = DeviceConfig::new(Chip::Esp32s3);
    let mut flash = device(TimingModel::DATASHEET);
    let req = UpdateRequest {
        size: known.then_some(img.len() as u32),
        expected_sha256: None,
        ..UpdateRequest::default()
    };
    let mut s = UpdateSession::begin(&mut flash, &cfg, SlotId::Factory, req).expect("begin");
    for c in img.chunks(CHUNK) {
        s.write(&mut flash, c).expect("write");
    }
    let done = s.finish(&mut flash).expect("finish");
    let write = Cost {
        time: flash.elapsed(),
        counters: *flash.counters(),
    };
    done.activate(&mut flash).expect("activate");
    let total = Cost {
        time: flash.elapsed(),
        counters: *flash.counters(),
    };
    (write, total)
}

/// ESP-IDF's `OTA_WITH_SEQUENTIAL_WRITES`: each 4 KiB sector is erased the
/// first time a write touches it, then the chunk is programmed.
pub fn esp_idf_sequential(img: &[u8]) -> Cost {
    let mut flash = device(TimingModel::DATASHEET);
    let mut erased_to = 0u32;
    let mut at = 0u32;
    for c in img.chunks(CHUNK) {
        let end = at + c.len() as u32;
        while erased_to < end {
            let from = OTA0 + erased_to;
            flash.erase(from, from + SECTOR_SIZE).expect("erase");
            erased_to += SECTOR_SIZE;
        }
        let mut buf = c.to_vec();
        buf.resize(c.len().div_ceil(4) * 4, 0xFF);
        flash.write(OTA0 + at, &buf).expect("program");
        at = end;
    }
    Cost {
        time: flash.elapsed(),
        counters: *flash.counters(),
    }
}

/// The least time any writer can take for `size` bytes without erasing
/// more than it needs: a block erase for every whole 64 KiB, sector erases
/// for the rest, and one page program per 256 bytes.
pub fn best_possible(size: u32) -> Duration {
    let t = TimingModel::DATASHEET;
    let blocks = size / BLOCK64_SIZE;
    let sectors = (size % BLOCK64_SIZE).div_ceil(SECTOR_SIZE);
    let pages = size.div_ceil(PAGE_SIZE);
    t.block_erase * blocks + t.sector_erase * sectors + t.page_program * pages
}

/// `n` rounded up to 4 KiB.
pub fn align_sector(n: u32) -> u64 {
    u64::from(n.div_ceil(SECTOR_SIZE) * SECTOR_SIZE)
}
