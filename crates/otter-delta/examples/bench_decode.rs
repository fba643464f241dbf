//! Host throughput of the decoders and the encoder, for
//! `scripts/bench_delta.py`: `bench_decode GZ IMAGE OLD NEW` prints one JSON
//! object (sizes in bytes, rates in MB/s, RAM from `size_of`).

use std::time::Instant;

use otter_delta::encode::{esp_delta_patch, PatchCompression};
use otter_delta::inflate::{Container, Inflater, INFLATER_RAM};
use otter_delta::patch::{PatchApplier, PatchIo, APPLIER_RAM};

struct Mem<'a> {
    base: &'a [u8],
    out: Vec<u8>,
}

impl PatchIo for Mem<'_> {
    type Error = ();
    fn base_len(&self) -> u64 {
        self.base.len() as u64
    }
    fn read_base(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ()> {
        let o = offset as usize;
        buf.copy_from_slice(&self.base[o..o + buf.len()]);
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> Result<(), ()> {
        self.out.extend_from_slice(data);
        Ok(())
    }
}

fn mbps(bytes: usize, secs: f64) -> f64 {
    (bytes as f64 / 1e6 / secs * 10.0).round() / 10.0
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    assert_eq!(a.len(), 4, "usage: bench_decode GZ IMAGE OLD NEW");
    let gz = std::fs::read(&a[0]).expect("gz");
    let image = std::fs::read(&a[1]).expect("image");
    let old = std::fs::read(&a[2]).expect("old");
    let new = std::fs::read(&a[3]).expect("new");

    let runs = 5;
    let t = Instant::now();
    for _ in 0..runs {
        let mut inf = Inflater::new(Container::Gzip, image.len() as u64);
        let mut out = Vec::with_capacity(image.len());
        for p in gz.chunks(1460) {
            inf.feed(p, &mut out).expect("inflate");
        }
        assert!(out == image);
    }
    let inflate = mbps(image.len() * runs, t.elapsed().as_secs_f64());

    let sha = [0u8; 32];
    let t = Instant::now();
    let patch = esp_delta_patch(&sha, &old, &new, PatchCompression::default()).expect("patch");
    let create_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    for _ in 0..runs {
        let mut ap = PatchApplier::new(sha, new.len() as u64);
        let mut io = Mem {
            base: &old,
            out: Vec::with_capacity(new.len()),
        };
        for p in patch.chunks(1460) {
            ap.feed(p, &mut io).expect("apply");
        }
        ap.finish::<()>().expect("complete");
        assert!(io.out == new);
    }
    let apply = mbps(new.len() * runs, t.elapsed().as_secs_f64());

    println!(
        "{{\"inflater_ram\": {INFLATER_RAM}, \"applier_ram\": {APPLIER_RAM}, \"inflate_mbps\": {inflate}, \"apply_mbps\": {apply}, \"create_s\": {:.2}, \"patch_bytes\": {}}}",
        create_s,
        patch.len()
    );
}
