//! Fuzz the device's ESPHome OTA machine: random bytes, and mutations of a
//! valid upload (magic, features, size, MD5, image), in splits taken from
//! the input, with and without a password. Nothing may panic, the update
//! lock is always released, and the device never boots an image that does
//! not verify.
#![no_main]

#[path = "device_common.rs"]
mod device_common;

use device_common::{base, check_boot, md5_hex, mutate, Plat};
use libfuzzer_sys::fuzz_target;
use otter_device::esphome::{EsphomeConnection, EsphomeOptions, Version, MAGIC};
use otter_device::service::{Action, Device, DeviceOptions};
use otter_device::Secret;
use otter_format::chip::Chip;
use otter_ota::{DeviceConfig, SlotId};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let (flash0, fw) = base();
    let mut flash = flash0.fork();
    let mut valid = MAGIC.to_vec();
    valid.push(if ctl & 8 != 0 { 0x07 } else { 0x01 });
    if ctl & 8 != 0 {
        valid.push(0x00);
    }
    valid.extend_from_slice(&(fw.len() as u32).to_be_bytes());
    valid.extend_from_slice(md5_hex(fw).as_bytes());
    valid.extend_from_slice(fw);
    // Even control byte: the input is the stream. Odd: mutations of a
    // valid upload.
    let input: Vec<u8> = if ctl & 1 == 0 { rest.to_vec() } else { mutate(&valid, rest, ctl) };
    let cfg = DeviceConfig::new(Chip::Esp32c3).with_rollback(ctl & 4 != 0);
    let mut dev = Device::new(DeviceOptions::new(cfg));
    let mut plat = Plat(None);
    dev.boot(&mut flash, &mut plat, Some(SlotId::Ota(0)), 0).unwrap();
    let mut opts = EsphomeOptions::new();
    if ctl & 16 != 0 {
        opts.version = Version::V1;
    }
    if ctl & 32 != 0 {
        opts.password = Secret::new(b"pw");
    }
    let mut conn = EsphomeConnection::new(&opts, &[7; 32], 0);
    let mut tx = [0u8; 128];
    let split = usize::from(ctl >> 6) * 997 + 1;
    let mut now = 0;
    'outer: for piece in input.chunks(split) {
        let mut piece = piece;
        now += 3;
        loop {
            let o = conn.handle(&mut dev, &mut flash, &mut plat, piece, now, &mut tx);
            assert!(o.written <= tx.len());
            piece = &piece[o.consumed..];
            match o.action {
                Action::Close | Action::Reboot(_) => break 'outer,
                _ if piece.is_empty() => break,
                _ => assert!(o.consumed > 0 || o.written > 0, "no progress"),
            }
        }
    }
    let _ = conn.poll(&mut dev, now + 1_000_000);
    conn.peer_closed(&mut dev, now);
    assert!(!dev.update_in_progress());
    check_boot(&mut flash, flash0, &cfg);
});
