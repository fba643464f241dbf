//! Fuzz the device's espota machines: datagrams taken from the input (or
//! a valid invitation), then the transfer fed random bytes or mutations of
//! the valid image, in splits taken from the input, with each password
//! scheme. Nothing may panic, the update lock is always released, and the
//! device never boots an image that does not verify.
#![no_main]

#[path = "device_common.rs"]
mod device_common;

use device_common::{base, check_boot, md5_hex, mutate, Plat};
use libfuzzer_sys::fuzz_target;
use otter_device::espota::{Espota, EspotaAuth, EspotaOptions};
use otter_device::service::{Action, Device, DeviceOptions};
use otter_format::chip::Chip;
use otter_ota::{DeviceConfig, SlotId};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let (flash0, fw) = base();
    let mut flash = flash0.fork();
    let cfg = DeviceConfig::new(Chip::Esp32c3).with_rollback(ctl & 4 != 0);
    let mut dev = Device::new(DeviceOptions::new(cfg));
    let mut plat = Plat(None);
    dev.boot(&mut flash, &mut plat, Some(SlotId::Ota(0)), 0).unwrap();
    let auth = match (ctl >> 3) & 3 {
        0 | 3 => EspotaAuth::None,
        1 => EspotaAuth::md5_of(b"pw"),
        _ => EspotaAuth::sha256_of(b"pw"),
    };
    let mut udp = Espota::new(&EspotaOptions { auth, ..EspotaOptions::new() });
    let mut tx = [0u8; 256];
    // The first part of the input: datagrams separated by 0xff, up to a 0xfe.
    let (grams, body) = match rest.iter().position(|&b| b == 0xfe) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let mut transfer = None;
    let mut now = 0;
    let valid = format!("0 40000 {} {}\n", fw.len(), md5_hex(fw));
    let mut datagrams: Vec<&[u8]> = grams.split(|&b| b == 0xff).collect();
    if ctl & 1 != 0 {
        datagrams.push(valid.as_bytes());
    }
    for d in datagrams {
        now += 5;
        let r = udp.datagram(&mut dev, &mut flash, &mut plat, 1, d, &[3; 32], now, &mut tx);
        assert!(r.written <= tx.len());
        if transfer.is_none() {
            transfer = r.transfer;
        }
    }
    let Some(mut t) = transfer else {
        assert!(!dev.update_in_progress());
        return;
    };
    let stream = if ctl & 2 != 0 { mutate(fw, body, ctl) } else { body.to_vec() };
    let split = usize::from(ctl >> 5) * 331 + 1;
    for piece in stream.chunks(split) {
        now += 3;
        let o = t.handle(&mut dev, &mut flash, &mut plat, piece, now, &mut tx);
        assert_eq!(o.consumed, piece.len());
        if o.action != Action::Read {
            break;
        }
        let _ = t.poll(&mut dev, now, &mut tx);
    }
    let _ = t.poll(&mut dev, now + 1_000_000, &mut tx);
    t.peer_closed(&mut dev, now);
    assert!(!dev.update_in_progress());
    check_boot(&mut flash, flash0, &cfg);
});
