//! Fuzz the device's HTTP machine: random bytes, and mutations of a valid
//! firmware upload, in splits taken from the input. Nothing may panic, the
//! upload lock is always released, and the device never boots an image
//! that does not verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_device::service::{
    Action, Connection, Device, DeviceOptions, FileRef, FileSource, Platform, SelfTestVerdict,
};
use otter_device::www::{InspectError, PointerError, UiInspector, UiSummary, WwwPointer};
use otter_format::chip::Chip;
use otter_format::image::{AppImageBuilder, VerifyOptions};
use otter_format::partition::{CsvOptions, OwnedTable};
use otter_ota::{verify_slot, DeviceConfig, Region, SlotId, SlotMap};
use otter_sim::SimFlash;
use std::sync::OnceLock;

const CSV: &str = "nvs, data, nvs, 0x9000, 0x5000\notadata, data, ota, 0xe000, 0x2000\nota_0, app, ota_0, 0x10000, 0x100000\nota_1, app, ota_1, 0x110000, 0x100000\nwww_0, data, littlefs, 0x210000, 0x40000\nwww_1, data, littlefs, 0x250000, 0x40000\n";

struct Plat(Option<u8>);

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

fn base() -> &'static (SimFlash, Vec<u8>) {
    static BASE: OnceLock<(SimFlash, Vec<u8>)> = OnceLock::new();
    BASE.get_or_init(|| {
        let bin = OwnedTable::from_csv(CSV, &CsvOptions::default()).unwrap().to_binary(true).unwrap();
        let img = |v: &str| AppImageBuilder::new(Chip::Esp32c3).version(v).size(72_000).build().unwrap();
        let mut flash = SimFlash::new(4 << 20).unwrap();
        flash.load(0x8000, &bin).unwrap();
        flash.load(0x10000, &img("1")).unwrap();
        let fw = img("2");
        let mut req = format!("POST /update HTTP/1.1\r\nContent-Length: {}\r\n\r\n", fw.len()).into_bytes();
        req.extend_from_slice(&fw);
        (flash, req)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let (flash0, valid) = base();
    let mut flash = flash0.fork();
    // Even control byte: the input is the request. Odd: the input's bytes
    // are (offset, value) mutations of a valid upload.
    let req: Vec<u8> = if ctl & 1 == 0 {
        rest.to_vec()
    } else {
        let mut r = valid.clone();
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
    };
    let cfg = DeviceConfig::new(Chip::Esp32c3).with_rollback(ctl & 4 != 0);
    let mut dev = Device::new(DeviceOptions::new(cfg));
    let mut plat = Plat(None);
    dev.boot(&mut flash, &mut plat, Some(SlotId::Ota(0)), 0).unwrap();
    let mut head = [0u8; 1024];
    let mut tx = vec![0u8; 4096];
    let mut conn = Connection::new(&dev, &mut head, 0);
    let split = usize::from(ctl >> 3) + 1;
    let mut now = 0;
    'outer: for piece in req.chunks(split) {
        let mut input = piece;
        now += 3;
        loop {
            let o = conn.handle(&mut dev, &mut flash, &mut plat, input, now, &mut tx);
            input = &input[o.consumed..];
            match o.action {
                Action::Close | Action::Reboot(_) => break 'outer,
                Action::Continue => {}
                Action::Read | Action::CheckRelease if input.is_empty() => break,
                Action::Read | Action::CheckRelease => {}
            }
        }
    }
    let _ = conn.poll(&mut dev, now + 1_000_000, &mut tx);
    conn.peer_closed(&mut dev, now);
    assert!(!dev.update_in_progress());
    // otadata unchanged: the boot selection cannot have moved.
    const OTADATA: core::ops::Range<usize> = 0xe000..0x10000;
    if flash.contents()[OTADATA] == flash0.contents()[OTADATA] {
        return;
    }
    let mut probe = flash.fork();
    if let Some(b) = otter_ota::boot::boot(&mut probe, &cfg).unwrap().booted {
        if b.slot != SlotId::Ota(0) {
            let map = SlotMap::read(&mut flash, 0x8000).unwrap();
            let region = *map.region(b.slot).unwrap();
            let mut o = VerifyOptions::new();
            o.chip = Some(Chip::Esp32c3);
            assert!(verify_slot(&mut flash, &region, o).unwrap().is_ok());
        }
    }
});
