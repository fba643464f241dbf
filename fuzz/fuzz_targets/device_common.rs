//! What the protocol fuzz targets share: the table, a platform, and a
//! flash with version 1 in ota_0 next to the image version 2.
#![allow(dead_code)]

use otter_device::service::{FileRef, FileSource, Platform, SelfTestVerdict};
use otter_device::www::{InspectError, PointerError, UiInspector, UiSummary, WwwPointer};
use otter_format::chip::Chip;
use otter_format::image::{AppImageBuilder, VerifyOptions};
use otter_format::partition::{CsvOptions, OwnedTable};
use otter_ota::{verify_slot, DeviceConfig, Region, SlotId, SlotMap};
use otter_sim::SimFlash;
use std::sync::OnceLock;

pub const CSV: &str = "nvs, data, nvs, 0x9000, 0x5000\notadata, data, ota, 0xe000, 0x2000\nota_0, app, ota_0, 0x10000, 0x100000\nota_1, app, ota_1, 0x110000, 0x100000\nwww_0, data, littlefs, 0x210000, 0x40000\nwww_1, data, littlefs, 0x250000, 0x40000\n";

pub struct Plat(pub Option<u8>);

impl WwwPointer<SimFlash> for Plat {
    fn read(&mut self, _: &mut SimFlash) -> Result<Option<u8>, PointerError> {
        Ok(self.0)
    }
    fn can_select(&mut self, _: &mut SimFlash, _: u8) -> Result<(), PointerError> {
        Ok(())
    }
    fn select(&mut self, _: &mut SimFlash, s: u8) -> Result<(), PointerError> {
        self.0 = Some(s);
        Ok(())
    }
}
impl UiInspector<SimFlash> for Plat {
    fn inspect(&mut self, _: &mut SimFlash, _: &Region) -> Result<UiSummary, InspectError> {
        Ok(UiSummary::default())
    }
}
impl FileSource for Plat {
    fn mounted(&self) -> bool {
        true
    }
    fn lookup(&mut self, path: &str) -> Option<FileRef> {
        (path == "/index.html").then_some(FileRef { id: 0, len: 5000 })
    }
    fn read_file(&mut self, _: u32, offset: u32, buf: &mut [u8]) -> usize {
        let n = (5000 - offset as usize).min(buf.len());
        buf[..n].fill(b'x');
        n
    }
}
impl Platform<SimFlash> for Plat {
    fn raise_secure_version(&mut self, _: u32) -> bool {
        true
    }
    fn self_test(&mut self) -> SelfTestVerdict {
        SelfTestVerdict::Passed
    }
}

pub fn base() -> &'static (SimFlash, Vec<u8>) {
    static BASE: OnceLock<(SimFlash, Vec<u8>)> = OnceLock::new();
    BASE.get_or_init(|| {
        let bin = OwnedTable::from_csv(CSV, &CsvOptions::default()).unwrap().to_binary(true).unwrap();
        let img = |v: &str| AppImageBuilder::new(Chip::Esp32c3).version(v).size(72_000).build().unwrap();
        let mut flash = SimFlash::new(4 << 20).unwrap();
        flash.load(0x8000, &bin).unwrap();
        flash.load(0x10000, &img("1")).unwrap();
        (flash, img("2"))
    })
}


/// Mutates `valid` with the (offset, value) quadruples of `rest`.
pub fn mutate(valid: &[u8], rest: &[u8], ctl: u8) -> Vec<u8> {
    let mut r = valid.to_vec();
    for m in rest.chunks(4) {
        if let [a, b, c, v] = *m {
            let at = (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c)) % r.len();
            r[at] = v;
        }
    }
    if ctl & 2 != 0 {
        r.truncate(usize::from(ctl) * 300 % r.len());
    }
    r
}

/// The boot selection moved only to an image that verifies.
pub fn check_boot(flash: &mut SimFlash, flash0: &SimFlash, cfg: &DeviceConfig) {
    const OTADATA: core::ops::Range<usize> = 0xe000..0x10000;
    if flash.contents()[OTADATA] == flash0.contents()[OTADATA] {
        return;
    }
    let mut probe = flash.fork();
    if let Some(b) = otter_ota::boot::boot(&mut probe, cfg).unwrap().booted {
        if b.slot != SlotId::Ota(0) {
            let map = SlotMap::read(flash, 0x8000).unwrap();
            let region = *map.region(b.slot).unwrap();
            let mut o = VerifyOptions::new();
            o.chip = Some(Chip::Esp32c3);
            assert!(verify_slot(flash, &region, o).unwrap().is_ok());
        }
    }
}

pub fn md5_hex(b: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}
