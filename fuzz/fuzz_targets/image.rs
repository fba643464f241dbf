//! Fuzz the image verifier: whole-file and streaming verification (with chunk
//! sizes taken from the input) must give the same verdict, in both verify and
//! inspect modes, with and without the appended-SHA-256 requirement, and
//! nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_format::image::{verify, StreamingVerifier, VerifyOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let opts = if ctl & 1 == 0 {
        VerifyOptions::new()
    } else {
        VerifyOptions::inspect()
    };
    let opts = if ctl & 2 != 0 {
        opts.slot_size(u32::from(ctl) * 64)
    } else {
        opts
    };
    // A device's policy: an appended SHA-256 required.
    let opts = opts.require_sha256(ctl & 4 != 0);
    let whole = verify(rest, &opts);
    // Chunk sizes cycle through the input's own bytes (1..=256).
    let mut v = StreamingVerifier::new(opts);
    let mut at = 0;
    let mut k = 0;
    while at < rest.len() {
        let n = usize::from(rest[k % rest.len()]) + 1;
        let end = (at + n).min(rest.len());
        let _ = v.feed(&rest[at..end]);
        at = end;
        k += 1;
    }
    assert_eq!(v.finish(), whole);
});
