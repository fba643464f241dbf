use super::*;
use miniz_oxide::deflate::{compress_to_vec, compress_to_vec_zlib};
use proptest::prelude::*;
use std::vec::Vec;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x1f, 0x8b, 8, FNAME, 0, 0, 0, 0, 2, 3];
    v.extend_from_slice(b"app.bin\0");
    v.extend_from_slice(&compress_to_vec(data, 9));
    v.extend_from_slice(&CRC32.checksum(data).to_le_bytes());
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v
}

fn inflate(
    c: Container,
    limit: u64,
    input: &[u8],
    piece: usize,
) -> Result<Vec<u8>, InflateError<core::convert::Infallible>> {
    let mut inf = Inflater::new(c, limit);
    let mut out = Vec::new();
    for chunk in input.chunks(piece.max(1)) {
        inf.feed(chunk, &mut out)?;
    }
    inf.finish::<core::convert::Infallible>()?;
    Ok(out)
}

fn sample(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| ((i * 7) % 251) as u8 ^ (i / 1000) as u8)
        .collect()
}

#[test]
fn ram_fits_the_budget() {
    // The figure BENCHMARKS.md quotes; the 48 KiB bound is a const assert.
    assert_eq!(INFLATER_RAM, 43_336);
}

#[test]
fn gzip_zlib_raw_round_trip_in_odd_pieces() {
    let data = sample(200_000);
    assert_eq!(
        inflate(Container::Gzip, 200_000, &gzip(&data), 997).unwrap(),
        data
    );
    assert_eq!(
        inflate(Container::Zlib, 200_000, &compress_to_vec_zlib(&data, 6), 1).unwrap(),
        data
    );
    assert_eq!(
        inflate(Container::Raw, 200_000, &compress_to_vec(&data, 1), 4096).unwrap(),
        data
    );
}

#[test]
fn bomb_is_refused_at_the_limit() {
    let zeros = vec![0u8; 1 << 20];
    let bomb = gzip(&zeros);
    assert!(bomb.len() < 2048);
    let mut inf = Inflater::new(Container::Gzip, 100_000);
    let mut out = Vec::new();
    let err = inf.feed(&bomb, &mut out).unwrap_err();
    assert_eq!(err, InflateError::TooLarge { limit: 100_000 });
    assert_eq!(err.code(), "too_large");
    assert!(out.len() <= 100_000);
    // Exactly at the limit is fine.
    assert_eq!(
        inflate(Container::Gzip, 1 << 20, &bomb, 512).unwrap().len(),
        1 << 20
    );
}

#[test]
fn gzip_faults_have_their_codes() {
    let data = sample(5000);
    let good = gzip(&data);
    let mut bad = good.clone();
    bad[0] = 0x1e;
    let e = inflate(Container::Gzip, 1 << 20, &bad, 64).unwrap_err();
    assert_eq!(e, InflateError::GzipHeader(GzipHeaderFault::BadMagic));
    assert_eq!(e.code(), "bad_gzip_header");
    let mut bad = good.clone();
    bad[2] = 7;
    assert_eq!(
        inflate(Container::Gzip, 1 << 20, &bad, 64).unwrap_err(),
        InflateError::UnsupportedMethod(7)
    );
    let mut bad = good.clone();
    bad[3] |= 0x20;
    assert_eq!(
        inflate(Container::Gzip, 1 << 20, &bad, 64).unwrap_err(),
        InflateError::GzipHeader(GzipHeaderFault::ReservedFlags(0x28))
    );
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 8] ^= 1;
    let e = inflate(Container::Gzip, 1 << 20, &bad, 64).unwrap_err();
    assert!(matches!(e, InflateError::Crc32Mismatch { .. }), "{e:?}");
    assert_eq!(e.code(), "checksum_mismatch");
    let mut bad = good.clone();
    bad[n - 1] ^= 1;
    assert_eq!(
        inflate(Container::Gzip, 1 << 20, &bad, 64).unwrap_err(),
        InflateError::SizeMismatch {
            expected: 5000 | (1 << 24),
            actual: 5000
        }
    );
    let e = inflate(Container::Gzip, 1 << 20, &good[..n - 3], 64).unwrap_err();
    assert_eq!(e, InflateError::Truncated { produced: 5000 });
    assert_eq!(e.code(), "truncated");
    let mut bad = good.clone();
    bad.push(0);
    assert_eq!(
        inflate(Container::Gzip, 1 << 20, &bad, 64).unwrap_err(),
        InflateError::TrailingData(1)
    );
}

#[test]
fn corrupt_deflate_is_corrupt() {
    // Block type 3 is reserved.
    let e = inflate(Container::Raw, 1 << 20, &[0x07, 0, 0, 0], 1).unwrap_err();
    assert!(matches!(e, InflateError::Corrupt { .. }), "{e:?}");
    assert_eq!(e.code(), "corrupt_deflate");
    let mut z = compress_to_vec_zlib(&sample(3000), 6);
    let n = z.len();
    z[n - 1] ^= 0xff;
    assert_eq!(
        inflate(Container::Zlib, 1 << 20, &z, 100).unwrap_err(),
        InflateError::Adler32Mismatch
    );
}

proptest! {
    #[test]
    fn never_panics_on_any_input(input in proptest::collection::vec(any::<u8>(), 0..2000), piece in 1usize..300, c in 0u8..3) {
        let c = [Container::Gzip, Container::Zlib, Container::Raw][usize::from(c)];
        let _ = inflate(c, 10_000, &input, piece);
    }

    #[test]
    fn round_trips_any_data(data in proptest::collection::vec(any::<u8>(), 0..20_000), piece in 1usize..5000, level in 0u8..10) {
        let mut g = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
        g.extend_from_slice(&compress_to_vec(&data, level));
        g.extend_from_slice(&CRC32.checksum(&data).to_le_bytes());
        g.extend_from_slice(&(data.len() as u32).to_le_bytes());
        prop_assert_eq!(inflate(Container::Gzip, data.len() as u64, &g, piece).unwrap(), data.clone());
        if !data.is_empty() {
            let e = inflate(Container::Gzip, data.len() as u64 - 1, &g, piece).unwrap_err();
            prop_assert_eq!(e, InflateError::TooLarge { limit: data.len() as u64 - 1 });
        }
    }
}
