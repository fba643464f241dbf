//! The inflater on arbitrary bytes, fed in arbitrary pieces: never panics,
//! never writes past its limit, and finishes only on a complete stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_delta::inflate::{Container, Inflater};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let container = [Container::Gzip, Container::Zlib, Container::Raw][usize::from(ctl % 3)];
    let piece = usize::from(ctl / 3).max(1);
    let limit = 64 * 1024;
    let mut inf = Inflater::new(container, limit);
    let mut out = Vec::new();
    for p in rest.chunks(piece) {
        if inf.feed(p, &mut out).is_err() {
            break;
        }
    }
    assert!(out.len() as u64 <= limit);
    assert_eq!(out.len() as u64, inf.produced());
    let _ = inf.finish::<()>();
});
