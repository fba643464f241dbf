//! The fleet server's device-API parsers on arbitrary bytes: a check-in or
//! an enrollment body never panics, and whatever parses is within the
//! documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_server::wire::{parse_check_in, parse_enroll, MAX_EVENTS, MAX_ID_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok((id, report)) = parse_check_in(data) {
        assert!(!id.is_empty() && id.len() <= MAX_ID_LEN);
        assert!(report.events.len() <= MAX_EVENTS);
        for e in &report.events {
            assert!(!e.id.is_empty() && e.id.len() <= MAX_ID_LEN);
        }
    }
    if let Ok(b) = parse_enroll(data) {
        assert!(!b.device_id.is_empty() && b.device_id.len() <= MAX_ID_LEN);
    }
});
