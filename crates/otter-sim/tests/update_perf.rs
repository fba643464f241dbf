//! The update engine's performance targets (issue 3, DESIGN.md "Performance
//! model"), checked on the timing model. The modelled time is a pure
//! function of the operations issued, so these are exact, deterministic
//! checks, not wall-clock measurements; `benches/update.rs` prints the same
//! figures beside the host throughput.

mod perf;

use otter_sim::BLOCK64_SIZE;
use perf::{align_sector, best_possible, esp_idf_sequential, image, otter_update, IMAGE_SIZE};

#[test]
fn a_1_5_mb_update_is_within_5_percent_of_the_best_possible() {
    let img = image(IMAGE_SIZE);
    let (write, total) = otter_update(&img, true);
    let best = best_possible(IMAGE_SIZE);
    let ratio = write.time.as_secs_f64() / best.as_secs_f64();
    println!(
        "1.5 MB image write: {:.3} s modelled, best possible {:.3} s ({:.2}%); with activate {:.3} s",
        write.time.as_secs_f64(),
        best.as_secs_f64(),
        (ratio - 1.0) * 100.0,
        total.time.as_secs_f64()
    );
    assert!(ratio <= 1.05, "{ratio:.4}x the best possible");
    let total_ratio = total.time.as_secs_f64() / best.as_secs_f64();
    assert!(total_ratio <= 1.05, "with activate: {total_ratio:.4}x");
}

#[test]
fn a_1_5_mb_update_is_at_least_2_5_times_faster_than_sequential_sector_erase() {
    let img = image(IMAGE_SIZE);
    let (_, total) = otter_update(&img, true);
    let seq = esp_idf_sequential(&img);
    let speedup = seq.time.as_secs_f64() / total.time.as_secs_f64();
    println!(
        "ESP-IDF sequential: {:.3} s modelled; otter (with activate) {:.3} s: {speedup:.2}x faster",
        seq.time.as_secs_f64(),
        total.time.as_secs_f64()
    );
    assert!(speedup >= 2.5, "only {speedup:.2}x");
}

#[test]
fn bytes_erased_with_the_size_known_and_unknown() {
    let img = image(IMAGE_SIZE);
    let (known, _) = otter_update(&img, true);
    let (unknown, _) = otter_update(&img, false);
    let limit = align_sector(IMAGE_SIZE);
    println!(
        "bytes erased: size known {} ({} blocks + {} sectors), unknown {} ({} blocks + {} sectors); image rounded to 4 KiB {limit}",
        known.counters.bytes_erased,
        known.counters.block_erases,
        known.counters.sector_erases,
        unknown.counters.bytes_erased,
        unknown.counters.block_erases,
        unknown.counters.sector_erases,
    );
    assert!(known.counters.bytes_erased <= limit);
    assert!(
        known.counters.bytes_erased >= limit,
        "the image must be erased"
    );
    assert!(unknown.counters.bytes_erased <= limit + u64::from(BLOCK64_SIZE));
}

#[test]
fn best_possible_formula() {
    // 64 KiB + 4 KiB + 1 byte: one block, two sectors, 273 pages.
    let t = otter_sim::TimingModel::DATASHEET;
    let n = 0x1_1001;
    assert_eq!(
        best_possible(n),
        t.block_erase + t.sector_erase * 2 + t.page_program * 273
    );
}
