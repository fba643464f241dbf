//! The patch applier on arbitrary bytes (framed and bare), against a fixed
//! base: never panics, never reads outside the base, never writes more than
//! the patch declares; and a patch otter makes from two fuzz-chosen halves
//! applies back to the second half.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_delta::encode::{esp_delta_patch, PatchCompression};
use otter_delta::patch::{PatchApplier, PatchIo};

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
        let o = usize::try_from(offset).map_err(|_| ())?;
        let src = self
            .base
            .get(o..o + buf.len())
            .expect("applier reads inside the base");
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> Result<(), ()> {
        self.out.extend_from_slice(data);
        Ok(())
    }
}

const SHA: [u8; 32] = [7; 32];

fn apply(a: &mut PatchApplier, base: &[u8], patch: &[u8], piece: usize) -> Result<Vec<u8>, ()> {
    let mut io = Mem {
        base,
        out: Vec::new(),
    };
    for p in patch.chunks(piece.max(1)) {
        a.feed(p, &mut io).map_err(|_| ())?;
    }
    let declared = a.info().map_or(0, |i| i.to_size);
    assert!(io.out.len() as u64 <= declared);
    a.finish::<()>().map_err(|_| ())?;
    assert_eq!(io.out.len() as u64, declared);
    Ok(io.out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let base: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
    let mut framed = 0xfccd_de10u32.to_le_bytes().to_vec();
    framed.extend_from_slice(&SHA);
    framed.resize(64, 0);
    framed.extend_from_slice(rest);
    let _ = apply(
        &mut PatchApplier::new(SHA, 1 << 16),
        &base,
        &framed,
        usize::from(ctl),
    );
    let _ = apply(
        &mut PatchApplier::bare(1 << 16),
        &base,
        rest,
        usize::from(ctl),
    );

    if rest.len() < 8192 {
        let (old, new) = rest.split_at(rest.len() / 2);
        let c = if ctl & 1 == 0 {
            PatchCompression::None
        } else {
            PatchCompression::default()
        };
        let p = esp_delta_patch(&SHA, old, new, c).expect("encoder takes any input");
        let made = apply(
            &mut PatchApplier::new(SHA, 1 << 16),
            old,
            &p,
            usize::from(ctl >> 1),
        );
        assert_eq!(made.as_deref(), Ok(new));
    }
});
