//! Fuzz the device's pull machine: a manifest taken from the input (or
//! the valid one, mutated), signed with the trusted key so the parser and
//! the device checks run behind a good signature, then a download of the
//! valid image or mutations of it in splits taken from the input, with cuts
//! (a new machine and core over the same flash: a power loss) and
//! restarts. Nothing may panic, the update lock is always released once a
//! check ends, and the device never boots an image that does not verify.
//! The input is also a fleet check-in answer for the device's parser.
#![no_main]

#[path = "device_common.rs"]
mod device_common;

use device_common::{base, check_boot, mutate, Plat};
use libfuzzer_sys::fuzz_target;
use otter_device::pull::{Decision, Now, Pull};
use otter_device::service::{Device, DeviceOptions};
use otter_format::chip::Chip;
use otter_ota::{DeviceConfig, SlotId};
use otter_release::{sign_manifest, SigningKey};
use sha2::{Digest, Sha256};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    // The fleet answer parser takes the same bytes.
    let _ = otter_device::pull::checkin::parse_answer(rest, &mut |_| {});
    let (flash0, fw) = base();
    let mut flash = flash0.fork();
    let cfg = DeviceConfig::new(Chip::Esp32c3).with_rollback(ctl & 4 != 0);
    let key = SigningKey::from_seed(&[7; 32]);
    let trusted = [key.public_key()];
    let now = Now { ms: 0, unix: 1_750_000_000 };
    let valid = format!(
        r#"{{"format":"otter-release/1","product":"","chip":"esp32c3","created":"2025-01-01T00:00:00Z","expires":"2099-01-01T00:00:00Z","firmware":{{"version":"2","secure_version":0,"project":"x","url":"firmware.bin","size":{},"sha256":"{}"}}}}"#,
        fw.len(),
        hex(&Sha256::digest(fw))
    );
    // The first part: manifest mutations, up to a 0xfe; the rest drives
    // the download.
    let (m_ops, body_ops) = match rest.iter().position(|&b| b == 0xfe) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let manifest = if ctl & 1 != 0 {
        m_ops.to_vec()
    } else {
        mutate(valid.as_bytes(), m_ops, 0)
    };
    let sig = sign_manifest(&manifest, &[key]).unwrap();
    let image = if ctl & 2 != 0 { mutate(fw, body_ops, ctl) } else { fw.clone() };
    let product = Some("");
    for round in 0..2u8 {
        let mut dev = Device::new(DeviceOptions::new(cfg));
        let mut plat = Plat(None);
        dev.boot(&mut flash, &mut plat, Some(SlotId::Ota(0)), 0).unwrap();
        let mut pull = Pull::new();
        pull.start(now);
        let Ok(Decision::Download(_)) =
            pull.check(&mut dev, &mut flash, &mut plat, &manifest, &sig, &trusted, product, now)
        else {
            assert!(!dev.update_in_progress());
            return;
        };
        let head = pull
            .head_range()
            .map(|(a, b)| image.get(a as usize..(b as usize).min(image.len())).unwrap_or(&[]).to_vec())
            .unwrap_or_default();
        let Ok(f) = pull.begin(&mut dev, &mut flash, &mut plat, &head, now) else {
            assert!(!dev.update_in_progress());
            return;
        };
        let mut at = f.from as usize;
        let mut ops = body_ops.iter().copied().cycle().take(4096);
        let cut = if round == 0 && ctl & 8 != 0 { Some(image.len() / 2) } else { None };
        let mut failed = false;
        while at < image.len() {
            let step = usize::from(ops.next().unwrap_or(200)).max(1) * 37;
            let end = (at + step).min(image.len()).min(cut.unwrap_or(usize::MAX));
            if end <= at {
                break;
            }
            if ctl & 16 != 0 && at > 0 && step % 11 == 0 {
                if pull.restart(&mut dev, &mut flash, &mut plat).is_err() {
                    failed = true;
                    break;
                }
                at = 0;
                continue;
            }
            if let Err(e) = pull.write(&mut dev, &mut flash, &mut plat, at as u64, &image[at..end]) {
                pull.abort(&mut dev, e, format_args!("refused"), now);
                failed = true;
                break;
            }
            at = end;
        }
        if cut.is_some() && !failed {
            // Power loss: the next round starts a new machine over this flash.
            continue;
        }
        if !failed {
            let _ = pull.finish(&mut dev, &mut flash, &mut plat, now);
        }
        assert!(!dev.update_in_progress(), "the lock is released");
        check_boot(&mut flash, flash0, &cfg);
        return;
    }
});
