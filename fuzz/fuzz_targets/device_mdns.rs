//! The firmware's mDNS answers (otter_device::mdns): any datagram, legacy or
//! not, gets a reply that fits the buffer, no reply, or a typed error;
//! never a panic, and never a reply longer than the buffer.
#![no_main]

use core::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use otter_device::mdns::{Advert, MAX_REPLY};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, query)) = data.split_first() else { return };
    let advert = Advert {
        instance: "otter-fuzz",
        hostname: "otter-fuzz",
        ipv4: Ipv4Addr::new(10, 0, 0, 7),
        port: 3232,
        http_port: (ctl & 1 != 0).then_some(80),
        chip: "esp32c3",
        version: "1.0.0",
        project: "fuzz",
        auth: ctl & 2 != 0,
        arduino: (ctl & 4 != 0).then_some(ctl & 8 != 0),
        esphome: ctl & 16 != 0,
    };
    let len = if ctl & 32 != 0 { 256 } else { MAX_REPLY };
    let mut out = vec![0u8; len];
    if let Ok(Some(n)) = advert.answer(query, ctl & 64 != 0, &mut out) {
        assert!(n > 0 && n <= len);
    }
});
