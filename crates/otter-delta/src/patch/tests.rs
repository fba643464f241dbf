use super::*;
use proptest::prelude::*;
use std::vec::Vec;

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

const BASE_SHA: [u8; 32] = [0xab; 32];

fn varint(out: &mut Vec<u8>, v: i64) {
    // Written independently of `encode::pack_size`, from detools' reader.
    let mut mag = v.unsigned_abs();
    let mut b = (mag & 0x3f) as u8 | if v < 0 { 0x40 } else { 0 };
    mag >>= 6;
    loop {
        if mag == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
        b = (mag & 0x7f) as u8;
        mag >>= 7;
    }
}

/// base "hello world", new "jello world!!": diff 11 bytes (+2 on 'h'), extra "!!".
fn hand_patch() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let base = b"hello world".to_vec();
    let new = b"jello world!!".to_vec();
    let mut p = Vec::new();
    p.extend_from_slice(&ESP_DELTA_MAGIC.to_le_bytes());
    p.extend_from_slice(&BASE_SHA);
    p.resize(64, 0);
    p.push(0x00); // sequential, none
    varint(&mut p, 13);
    varint(&mut p, 0); // no data format
    varint(&mut p, 11);
    let mut diff = vec![0u8; 11];
    diff[0] = 2;
    p.extend_from_slice(&diff);
    varint(&mut p, 2);
    p.extend_from_slice(b"!!");
    varint(&mut p, -5);
    (base, new, p)
}

fn apply(
    applier: &mut PatchApplier,
    base: &[u8],
    patch: &[u8],
    piece: usize,
) -> Result<Vec<u8>, PatchError<()>> {
    let mut io = Mem {
        base,
        out: Vec::new(),
    };
    for c in patch.chunks(piece.max(1)) {
        applier.feed(c, &mut io)?;
    }
    applier.finish::<()>()?;
    Ok(io.out)
}

#[test]
fn hand_made_patch_applies_in_any_pieces() {
    let (base, new, p) = hand_patch();
    for piece in [1, 2, 7, 64, 65, 1000] {
        let mut a = PatchApplier::new(BASE_SHA, 1000);
        assert_eq!(apply(&mut a, &base, &p, piece).unwrap(), new);
        assert_eq!(a.info().unwrap().to_size, 13);
    }
}

#[test]
fn ram_fits_the_budget() {
    // The figure BENCHMARKS.md quotes; the bound is a const assert.
    assert_eq!(APPLIER_RAM, 4_824);
}

#[test]
fn wrong_base_is_refused_before_any_write() {
    let (base, _, p) = hand_patch();
    let mut a = PatchApplier::new([0; 32], 1000);
    let mut io = Mem {
        base: &base,
        out: Vec::new(),
    };
    let e = a.feed(&p, &mut io).unwrap_err();
    assert_eq!(
        e,
        PatchError::WrongBase {
            patch: BASE_SHA,
            running: [0; 32]
        }
    );
    assert_eq!(e.code(), "wrong_base");
    assert!(io.out.is_empty());
}

#[test]
fn oversize_is_refused_before_any_write() {
    let (base, _, p) = hand_patch();
    let mut a = PatchApplier::new(BASE_SHA, 12);
    let mut io = Mem {
        base: &base,
        out: Vec::new(),
    };
    let e = a.feed(&p, &mut io).unwrap_err();
    assert_eq!(
        e,
        PatchError::TooLarge {
            to_size: 13,
            limit: 12
        }
    );
    assert!(io.out.is_empty());
}

#[test]
fn faults_have_their_codes() {
    let (base, _, p) = hand_patch();
    let mut bad = p.clone();
    bad[0] ^= 1;
    let e = apply(&mut PatchApplier::new(BASE_SHA, 100), &base, &bad, 9).unwrap_err();
    assert_eq!(e, PatchError::BadMagic { found: 0xfccd_de11 });
    assert_eq!(e.code(), "bad_patch_magic");

    let mut bad = p.clone();
    bad[64] = 0x05; // zstd
    let e = apply(&mut PatchApplier::new(BASE_SHA, 100), &base, &bad, 9).unwrap_err();
    assert_eq!(e, PatchError::UnsupportedCompression(5));
    assert_eq!(e.code(), "unsupported_patch");
    let mut bad = p.clone();
    bad[64] = 0x10; // in-place
    assert_eq!(
        apply(&mut PatchApplier::new(BASE_SHA, 100), &base, &bad, 9).unwrap_err(),
        PatchError::UnsupportedPatchType(1)
    );

    let e = apply(
        &mut PatchApplier::new(BASE_SHA, 100),
        &base,
        &p[..p.len() - 1],
        9,
    )
    .unwrap_err();
    assert_eq!(
        e,
        PatchError::Truncated {
            to_pos: 13,
            to_size: 13
        }
    );
    assert_eq!(e.code(), "truncated");
    let e = apply(&mut PatchApplier::new(BASE_SHA, 100), &base, &p[..30], 9).unwrap_err();
    assert_eq!(
        e,
        PatchError::Truncated {
            to_pos: 0,
            to_size: 0
        }
    );

    let mut bad = p.clone();
    bad.push(0);
    let e = apply(&mut PatchApplier::new(BASE_SHA, 100), &base, &bad, 9).unwrap_err();
    assert_eq!(e, PatchError::TrailingData);

    // Diff run longer than the image.
    let mut bad = p.clone();
    bad[67] = 14;
    let e = apply(&mut PatchApplier::new(BASE_SHA, 100), &base, &bad, 9).unwrap_err();
    assert_eq!(
        e,
        PatchError::Corrupt {
            to_pos: 0,
            fault: CorruptFault::RunTooLong { len: 14 }
        }
    );
    assert_eq!(e.code(), "corrupt_patch");

    // Diff reading past the base (base shorter than the diff run).
    let e = apply(&mut PatchApplier::new(BASE_SHA, 100), &base[..5], &p, 9).unwrap_err();
    assert_eq!(
        e,
        // Pieces of 9: the first diff slice (4 bytes) fits, the next does not.
        PatchError::Corrupt {
            to_pos: 4,
            fault: CorruptFault::BaseOutOfRange {
                offset: 4,
                len: 7,
                base_len: 5
            }
        }
    );

    // A data-format section.
    let mut bad = p.clone();
    bad[66] = 3;
    let e = apply(&mut PatchApplier::new(BASE_SHA, 100), &base, &bad, 9).unwrap_err();
    assert_eq!(
        e,
        PatchError::Corrupt {
            to_pos: 0,
            fault: CorruptFault::DataFormat
        }
    );

    // Varint overflow.
    let mut bad = p[..65].to_vec();
    bad.extend_from_slice(&[0xff; 11]);
    let e = apply(&mut PatchApplier::new(BASE_SHA, 100), &base, &bad, 9).unwrap_err();
    assert_eq!(
        e,
        PatchError::Corrupt {
            to_pos: 0,
            fault: CorruptFault::VarintOverflow
        }
    );
}

#[test]
fn varints_match_detools() {
    for v in [
        0i64,
        1,
        63,
        64,
        -1,
        -64,
        8191,
        1 << 40,
        -(1 << 50),
        i64::MAX,
    ] {
        let mut b = Vec::new();
        varint(&mut b, v);
        let mut r = Varint::default();
        let mut got = None;
        for &x in &b {
            got = r.push(x).unwrap();
        }
        assert_eq!(got, Some(v), "{b:02x?}");
    }
}

proptest! {
    #[test]
    fn never_panics_on_any_input(tail in proptest::collection::vec(any::<u8>(), 0..600), piece in 1usize..100, hs in any::<bool>()) {
        let base: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut p = Vec::new();
        p.extend_from_slice(&ESP_DELTA_MAGIC.to_le_bytes());
        p.extend_from_slice(&BASE_SHA);
        p.resize(64, 0);
        p.push(if hs { 0x04 } else { 0x00 });
        p.extend_from_slice(&tail);
        let _ = apply(&mut PatchApplier::new(BASE_SHA, 1 << 16), &base, &p, piece);
        let _ = apply(&mut PatchApplier::bare(1 << 16), &base, &tail, piece);
    }
}
