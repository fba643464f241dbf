//! Fuzz the device's decoder path: compressed (gzip, zlib, raw deflate)
//! and `esp_delta_ota` patch uploads through `POST /update`, random or
//! mutated from valid streams, in splits taken from the input. Nothing may
//! panic, the upload lock is always released, the running slot is never
//! written, and the device never boots an image that does not verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_delta::encode::{esp_delta_patch, PatchCompression};
use otter_device::decode::{new_applier, new_inflater, DecoderRam, Inflater, PatchApplier};
use otter_device::service::{
    Action, Connection, Device, DeviceOptions, FileRef, FileSource, Platform, SelfTestVerdict,
};
use otter_device::www::{InspectError, PointerError, UiInspector, UiSummary, WwwPointer};
use otter_format::chip::Chip;
use otter_format::image::{inspect, AppImageBuilder, VerifyOptions};
use otter_format::partition::{CsvOptions, OwnedTable};
use otter_ota::{verify_slot, DeviceConfig, Region, SlotId, SlotMap};
use otter_sim::SimFlash;
use std::sync::OnceLock;

const CSV: &str = "nvs, data, nvs, 0x9000, 0x5000\notadata, data, ota, 0xe000, 0x2000\nota_0, app, ota_0, 0x10000, 0x100000\nota_1, app, ota_1, 0x110000, 0x100000\n";

struct Plat {
    inflate: Box<Inflater>,
    patch: Box<PatchApplier>,
}

impl WwwPointer<SimFlash> for Plat {
    fn read(&mut self, _: &mut SimFlash) -> Result<Option<u8>, PointerError> {
        Ok(None)
    }
    fn can_select(&mut self, _: &mut SimFlash, _: u8) -> Result<(), PointerError> {
        Ok(())
    }
    fn select(&mut self, _: &mut SimFlash, _: u8) -> Result<(), PointerError> {
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
        false
    }
    fn lookup(&mut self, _: &str) -> Option<FileRef> {
        None
    }
    fn read_file(&mut self, _: u32, _: u32, _: &mut [u8]) -> usize {
        0
    }
}
impl Platform<SimFlash> for Plat {
    fn raise_secure_version(&mut self, _: u32) -> bool {
        true
    }
    fn self_test(&mut self) -> SelfTestVerdict {
        SelfTestVerdict::Passed
    }
    fn decoder_ram(&mut self) -> DecoderRam<'_> {
        DecoderRam {
            inflate: Some(&mut self.inflate),
            patch: Some(&mut self.patch),
        }
    }
}

struct Base {
    flash: SimFlash,
    /// (headers, body) of valid encoded uploads.
    streams: Vec<(&'static str, Vec<u8>)>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let bin = OwnedTable::from_csv(CSV, &CsvOptions::default())
            .unwrap()
            .to_binary(true)
            .unwrap();
        let img = |v: &str, n: u32| {
            AppImageBuilder::new(Chip::Esp32c3)
                .version(v)
                .size(n)
                .build()
                .unwrap()
        };
        let old = img("1", 72_000);
        let new = img("2", 74_000);
        let mut flash = SimFlash::new(4 << 20).unwrap();
        flash.load(0x8000, &bin).unwrap();
        flash.load(0x10000, &old).unwrap();
        let sha = inspect(&old).unwrap().sha256.unwrap().stored;
        let deflate = miniz_oxide::deflate::compress_to_vec(&new, 6);
        let zlib = miniz_oxide::deflate::compress_to_vec_zlib(&new, 6);
        let mut gzip = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        gzip.extend_from_slice(&deflate);
        let crc = crc32(&new);
        gzip.extend_from_slice(&crc.to_le_bytes());
        gzip.extend_from_slice(&(new.len() as u32).to_le_bytes());
        let heat = esp_delta_patch(
            &sha,
            &old,
            &new,
            PatchCompression::Heatshrink {
                window_bits: 8,
                lookahead_bits: 4,
            },
        )
        .unwrap();
        let plain = esp_delta_patch(&sha, &old, &new, PatchCompression::None).unwrap();
        let streams = vec![
            ("Content-Encoding: gzip\r\n", gzip.clone()),
            ("", gzip),
            ("Content-Encoding: deflate\r\n", zlib),
            ("Content-Encoding: deflate\r\n", deflate),
            ("Content-Type: application/x-esp-delta-ota\r\n", heat.clone()),
            ("", heat),
            ("", plain),
            ("Content-Encoding: gzip\r\n", Vec::new()),
        ];
        Base { flash, streams }
    })
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0xedb8_8320 } else { c >> 1 };
        }
    }
    !c
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let b = base();
    let mut flash = b.flash.fork();
    let (headers, valid) = &b.streams[usize::from(ctl >> 1) % b.streams.len()];
    // Odd control byte: the input's bytes are (offset, value) mutations of
    // a valid stream (or the body itself, for the empty one); even: the
    // body, with the stream's headers.
    let body: Vec<u8> = if ctl & 1 == 0 || valid.is_empty() {
        rest.to_vec()
    } else {
        let mut r = valid.clone();
        for m in rest.chunks(4) {
            if let [a, b, c, v] = *m {
                let at = (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c)) % r.len();
                r[at] = v;
            }
        }
        if rest.len() % 4 == 1 {
            let cut = usize::from(rest[rest.len() - 1]) * 97 % r.len();
            r.truncate(cut);
        }
        r
    };
    let mut req = format!(
        "POST /update HTTP/1.1\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let cfg = DeviceConfig::new(Chip::Esp32c3);
    let mut dev = Device::new(DeviceOptions::new(cfg));
    let mut plat = Plat {
        inflate: Box::new(new_inflater()),
        patch: Box::new(new_applier()),
    };
    dev.boot(&mut flash, &mut plat, Some(SlotId::Ota(0)), 0).unwrap();
    let mut head = [0u8; 1024];
    let mut tx = vec![0u8; 4096];
    let mut conn = Connection::new(&dev, &mut head, 0);
    let split = usize::from(ctl) * 37 % 1500 + 1;
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
    conn.peer_closed(&mut dev, now);
    assert!(!dev.update_in_progress());
    // The running slot (a patch's base) is only ever read.
    const OTA0: core::ops::Range<usize> = 0x10000..0x110000;
    assert!(flash.contents()[OTA0] == b.flash.contents()[OTA0]);
    const OTADATA: core::ops::Range<usize> = 0xe000..0x10000;
    if flash.contents()[OTADATA] == b.flash.contents()[OTADATA] {
        return;
    }
    let mut probe = flash.fork();
    if let Some(booted) = otter_ota::boot::boot(&mut probe, &cfg).unwrap().booted {
        if booted.slot != SlotId::Ota(0) {
            let map = SlotMap::read(&mut flash, 0x8000).unwrap();
            let region = *map.region(booted.slot).unwrap();
            let mut o = VerifyOptions::new();
            o.chip = Some(Chip::Esp32c3);
            assert!(verify_slot(&mut flash, &region, o).unwrap().is_ok());
        }
    }
});
