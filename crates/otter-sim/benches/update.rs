//! Benchmarks of the update engine (otter-ota) on the simulator.
//!
//! 1. Modelled flash time of a 1.5 MB update on the datasheet timing model,
//!    against the best possible for that size and against ESP-IDF's
//!    sequential mode, and bytes erased with the size known and unknown.
//!    These are deterministic; `tests/update_perf.rs` asserts them.
//! 2. Host throughput of the write path (begin, write in 4 KiB chunks,
//!    finish, on a `SimFlash` with zero timing and no log) against raw
//!    SHA-256 of the same bytes on this machine. Target: >= 50%.
//!
//! Run: `cargo bench -p otter-sim --bench update`.

#[path = "../tests/perf/mod.rs"]
mod perf;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use otter_format::chip::Chip;
use otter_ota::session::{UpdateRequest, UpdateSession};
use otter_ota::{DeviceConfig, SlotId};
use otter_sim::{LogPolicy, SimFlash, TimingModel, BLOCK64_SIZE};
use sha2::{Digest, Sha256};

use perf::{
    align_sector, best_possible, esp_idf_sequential, image, otter_update, CHUNK, IMAGE_SIZE,
};

fn write_path(flash: &mut SimFlash, img: &[u8]) {
    let cfg = DeviceConfig::new(Chip::Esp32s3);
    let req = UpdateRequest {
        size: Some(img.len() as u32),
        expected_sha256: None,
        ..UpdateRequest::default()
    };
    let mut s = UpdateSession::begin(flash, &cfg, SlotId::Factory, req).expect("begin");
    for c in img.chunks(CHUNK) {
        s.write(flash, c).expect("write");
    }
    black_box(s.finish(flash).expect("finish"));
}

fn zero_timing_device() -> SimFlash {
    perf::device(TimingModel::ZERO).with_log_policy(LogPolicy::Off)
}

/// Median MB/s of `f` over `runs` runs of `bytes` bytes each.
fn mb_per_s(bytes: usize, runs: usize, mut f: impl FnMut() -> Duration) -> f64 {
    let mut times: Vec<f64> = (0..runs).map(|_| f().as_secs_f64()).collect();
    times.sort_by(f64::total_cmp);
    bytes as f64 / 1e6 / times[runs / 2]
}

fn report_figures(img: &[u8]) {
    let (write, total) = otter_update(img, true);
    let (unknown, _) = otter_update(img, false);
    let seq = esp_idf_sequential(img);
    let best = best_possible(IMAGE_SIZE);
    println!("== update engine, {IMAGE_SIZE} B image, datasheet timing model ==");
    println!(
        "modelled: otter write {:.3} s (+ activate: {:.3} s), best possible {:.3} s -> {:+.2}%",
        write.time.as_secs_f64(),
        total.time.as_secs_f64(),
        best.as_secs_f64(),
        (write.time.as_secs_f64() / best.as_secs_f64() - 1.0) * 100.0
    );
    println!(
        "modelled: ESP-IDF sequential {:.3} s -> otter is {:.2}x faster",
        seq.time.as_secs_f64(),
        seq.time.as_secs_f64() / total.time.as_secs_f64()
    );
    println!(
        "bytes erased: known {} (limit {}), unknown {} (limit {})",
        write.counters.bytes_erased,
        align_sector(IMAGE_SIZE),
        unknown.counters.bytes_erased,
        align_sector(IMAGE_SIZE) + u64::from(BLOCK64_SIZE)
    );

    let runs = 15;
    let device = zero_timing_device();
    let write_mbs = mb_per_s(img.len(), runs, || {
        let mut flash = device.fork();
        let t = Instant::now();
        write_path(&mut flash, img);
        t.elapsed()
    });
    let sha_mbs = mb_per_s(img.len(), runs, || {
        let t = Instant::now();
        black_box(Sha256::digest(black_box(img)));
        t.elapsed()
    });
    println!(
        "host: write path {write_mbs:.1} MB/s, raw SHA-256 {sha_mbs:.1} MB/s -> {:.0}% (target >= 50%)",
        write_mbs / sha_mbs * 100.0
    );
}

fn bench(c: &mut Criterion) {
    let img = image(IMAGE_SIZE);
    report_figures(&img);

    let mut g = c.benchmark_group("update_1.5MB");
    g.throughput(Throughput::Bytes(img.len() as u64));
    g.sample_size(20);
    let device = zero_timing_device();
    g.bench_function("write_path_4k_chunks", |b| {
        b.iter_batched_ref(
            || device.fork(),
            |flash| write_path(flash, &img),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("sha256_raw", |b| {
        b.iter(|| black_box(Sha256::digest(black_box(&img))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
