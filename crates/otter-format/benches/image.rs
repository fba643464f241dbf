//! Parse and fully verify app images: a 4 MiB image from the builder and the
//! largest corpus image, whole-file and streamed in 4 KiB chunks. Compare
//! with raw SHA-256 throughput on the same machine.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use otter_format::chip::Chip;
use otter_format::image::{verify, AppImageBuilder, StreamingVerifier, VerifyOptions};
use sha2::Digest;

fn corpus_largest() -> Option<(String, Vec<u8>)> {
    let dir = std::env::var_os("OTTER_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus")
        });
    let p = dir.join("app-images/tasmota-sml/tasmota32_ottelo_tas-15.5.0.bin");
    std::fs::read(&p).ok().map(|b| (p.display().to_string(), b))
}

fn bench(c: &mut Criterion) {
    let big = AppImageBuilder::new(Chip::Esp32)
        .size(4 * 1024 * 1024)
        .build()
        .expect("build");
    let mut images = vec![("builder-4MiB".to_string(), big)];
    match corpus_largest() {
        Some((_, b)) => images.push(("tasmota32-1.2MiB".to_string(), b)),
        None => eprintln!("corpus not found: set OTTER_CORPUS; benchmarking the built image only"),
    }
    let opts = VerifyOptions::new();
    for (name, img) in &images {
        let mut g = c.benchmark_group(name.as_str());
        g.throughput(Throughput::Bytes(img.len() as u64));
        g.bench_function("verify-whole", |b| {
            b.iter(|| verify(img, &opts).expect("valid"))
        });
        g.bench_function("verify-stream-4KiB", |b| {
            b.iter(|| {
                let mut v = StreamingVerifier::new(opts);
                for chunk in img.chunks(4096) {
                    v.feed(chunk).expect("valid");
                }
                v.finish().expect("valid")
            })
        });
        g.bench_function("sha256-only", |b| b.iter(|| sha2::Sha256::digest(img)));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
