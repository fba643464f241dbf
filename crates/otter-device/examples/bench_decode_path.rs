//! Host throughput of the device's decoder path against a plain upload:
//! the same new image sent to `POST /update` plain, gzip -9 and as an
//! esp_delta_ota patch from the running image, through
//! `service::Connection` in 1,460-byte segments into the NOR-flash
//! simulator (streamed, decoded, verified, activated), best of N runs each.
//! Also prints the decoders' RAM and the modelled flash time.
//!
//! `cargo run --release -p otter-device --example bench_decode_path [RUNS]`
//! (needs the corpus release pair; `$OTTER_CORPUS` or ../shared/corpus).

use std::time::Instant;

use otter_delta::encode::{esp_delta_patch, PatchCompression};
use otter_device::decode::{
    new_applier, new_inflater, DecoderRam, Inflater, PatchApplier, APPLIER_RAM, INFLATER_RAM,
};
use otter_device::service::{
    Action, Connection, Device, DeviceOptions, FileRef, FileSource, Platform, SelfTestVerdict,
};
use otter_device::www::{InspectError, PointerError, UiInspector, UiSummary, WwwPointer};
use otter_format::chip::Chip;
use otter_format::image::inspect;
use otter_format::partition::{CsvOptions, OwnedTable};
use otter_ota::{DeviceConfig, Region, SlotId};
use otter_sim::SimFlash;

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

fn corpus(rel: &str) -> Vec<u8> {
    let dir = std::env::var("OTTER_CORPUS").unwrap_or_else(|_| "../shared/corpus".into());
    let p = std::path::Path::new(&dir).join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("the corpus file {} is needed: {e}", p.display()))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 0xff];
    v.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, 9));
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    v.extend_from_slice(&(!c).to_le_bytes());
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v
}

/// One upload; returns (seconds, modelled flash seconds).
fn one(base: &SimFlash, headers: &str, body: &[u8], plat: &mut Plat) -> (f64, f64) {
    let mut flash = base.fork();
    flash.reset_counters();
    let mut dev = Device::new(DeviceOptions::new(DeviceConfig::new(Chip::Esp32)));
    dev.boot(&mut flash, plat, Some(SlotId::Ota(0)), 0)
        .expect("boot");
    let mut req = format!(
        "POST /update HTTP/1.1\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let mut head = [0u8; 2048];
    let mut tx = vec![0u8; 4096];
    let mut conn = Connection::new(&dev, &mut head, 0);
    let t = Instant::now();
    let mut answer = Vec::new();
    'feed: for piece in req.chunks(1460) {
        let mut input = piece;
        loop {
            let o = conn.handle(&mut dev, &mut flash, plat, input, 0, &mut tx);
            answer.extend_from_slice(&tx[..o.written]);
            input = &input[o.consumed..];
            match o.action {
                Action::Reboot(_) | Action::Close => break 'feed,
                _ if input.is_empty() => break,
                _ => {}
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    (secs, flash.elapsed().as_secs_f64())
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let old = corpus("delta-pairs/obnizos/obniz-2.1.0.bin");
    let new = corpus("delta-pairs/obnizos/obniz-2.1.1.bin");
    let bin = OwnedTable::from_csv(CSV, &CsvOptions::default())
        .expect("table")
        .to_binary(true)
        .expect("table");
    let mut base = SimFlash::new(4 << 20).expect("flash");
    base.load(0x8000, &bin).expect("table fits");
    base.load(0x10000, &old).expect("image fits");
    let sha = inspect(&old).expect("old").sha256.expect("hash").stored;
    let gz = gzip(&new);
    let patch = esp_delta_patch(&sha, &old, &new, PatchCompression::default()).expect("patch");
    let mut plat = Plat {
        inflate: Box::new(new_inflater()),
        patch: Box::new(new_applier()),
    };
    println!(
        "decoder RAM: inflater {INFLATER_RAM} B, patch applier {APPLIER_RAM} B; Device {} B, Decoder stage {} B",
        std::mem::size_of::<Device>(),
        std::mem::size_of::<otter_device::decode::Decoder>()
    );
    println!(
        "image {} B; gzip {} B; patch {} B; best of {runs} runs, 1460-byte segments",
        new.len(),
        gz.len(),
        patch.len()
    );
    println!("| body | bytes sent | host time | image MB/s | modelled flash |");
    println!("|---|---|---|---|---|");
    for (name, headers, body) in [
        ("plain", "", &new),
        ("gzip", "Content-Encoding: gzip\r\n", &gz),
        (
            "esp_delta_ota patch",
            "Content-Type: application/x-esp-delta-ota\r\n",
            &patch,
        ),
    ] {
        let mut best = f64::MAX;
        let mut flash_secs = 0.0;
        for _ in 0..runs {
            let (s, f) = one(&base, headers, body, &mut plat);
            best = best.min(s);
            flash_secs = f;
        }
        println!(
            "| {name} | {} | {:.1} ms | {:.1} | {:.2} s |",
            body.len(),
            best * 1e3,
            new.len() as f64 / best / 1e6,
            flash_secs
        );
    }
}
