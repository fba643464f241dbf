//! otadata reader: any bytes parse or fail cleanly; planning a slot switch on
//! any parsed otadata selects that slot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_format::otadata::{plan_set_boot, OtaState, Otadata, SameSlotRule, OTADATA_SIZE};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else { return };
    // Build a full partition from the input: the fuzzer's bytes at the two entries.
    let mut part = [0xFFu8; OTADATA_SIZE];
    let n = rest.len().min(32);
    part[..n].copy_from_slice(&rest[..n]);
    if rest.len() > 32 {
        let m = (rest.len() - 32).min(32);
        part[0x1000..0x1000 + m].copy_from_slice(&rest[32..32 + m]);
    }
    let _ = Otadata::from_partition(rest);
    let Ok(o) = Otadata::from_partition(&part) else {
        panic!("a full-size partition always parses")
    };
    let slots = (ctl & 0x0F) + 1;
    let slot = (ctl >> 4) % slots;
    let rule = if ctl & 0x80 != 0 { SameSlotRule::OtherSector } else { SameSlotRule::InPlace };
    if let Ok(w) = plan_set_boot(&o, slot, slots, OtaState::New, rule) {
        assert_eq!(w.apply(&o).active_slot(slots), Some(slot));
    }
});
