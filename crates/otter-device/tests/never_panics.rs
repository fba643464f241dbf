//! Property tests: no input bytes, in any split, make the machine panic, and
//! none makes the device boot an image that does not verify.

mod common;

use common::*;
use otter_device::service::{Action, Connection};
use otter_format::image::VerifyOptions;
use otter_ota::{verify_slot, SlotId, SlotMap};
use proptest::prelude::*;

/// Feeds `req` in pieces whose sizes cycle through `splits`, polling with
/// time moving on, and returns the rig.
fn drive(mut r: Rig, req: &[u8], splits: &[usize]) -> Rig {
    let mut head = [0u8; 2048];
    let mut tx = vec![0u8; 8192];
    let mut now = 0u64;
    let mut conn = Connection::new(&r.dev, &mut head, now);
    let mut at = 0usize;
    let mut k = 0usize;
    while at < req.len() && !conn.is_closed() {
        let n = splits
            .get(k % splits.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        k += 1;
        let end = (at + n).min(req.len());
        let mut input = &req[at..end];
        at = end;
        now += 7;
        loop {
            let o = conn.handle(&mut r.dev, &mut r.flash, &mut r.plat, input, now, &mut tx);
            assert!(o.consumed <= input.len());
            assert!(o.written <= tx.len());
            input = &input[o.consumed..];
            match o.action {
                Action::Close | Action::Reboot(_) => break,
                Action::Continue => continue,
                Action::Read | Action::CheckRelease if input.is_empty() => break,
                Action::Read | Action::CheckRelease => {}
            }
        }
        if k.is_multiple_of(5) {
            let _ = conn.poll(&mut r.dev, now, &mut tx);
        }
    }
    let _ = conn.poll(&mut r.dev, now + 100_000, &mut tx);
    conn.peer_closed(&mut r.dev, now);
    r
}

/// If the boot selection moved, the selected slot holds a verified image.
fn check_boot(r: &mut Rig) {
    match r.boot_choice() {
        Some(SlotId::Ota(0)) => {}
        Some(other) => {
            let map = SlotMap::read(&mut r.flash, 0x8000).unwrap();
            let region = *map.region(other).unwrap();
            let mut o = VerifyOptions::new();
            o.chip = Some(otter_format::chip::Chip::Esp32c3);
            assert!(
                verify_slot(&mut r.flash, &region, o).unwrap().is_ok(),
                "boots an unverified {other}"
            );
        }
        None => panic!("nothing boots"),
    }
    assert!(!r.dev.update_in_progress(), "the lock is released");
}

fn valid_upload() -> Vec<u8> {
    post("/update", &[], &c3("2.0.0"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The superblock walk over flash (64-byte windows of aligned reads) and
    /// over a slice agree on any damage to a real image's metadata blocks,
    /// and neither panics.
    #[test]
    fn superblock_walks_agree_on_damaged_images(
        flips in proptest::collection::vec((0usize..8192, any::<u8>()), 0..6)) {
        let mut ui = ui_image();
        for (at, x) in flips {
            ui[at] ^= x;
        }
        let mut flash = otter_sim::SimFlash::new(1 << 20).unwrap();
        flash.load(0x10000, &ui).unwrap();
        let slot = otter_ota::Region {
            offset: 0x10000,
            size: WWW_SIZE,
            label: otter_format::partition::Label::new("www_0"),
        };
        let via_flash = otter_device::www::check_superblock(&mut flash, &slot, &Default::default()).unwrap().ok();
        let newest = [0usize, 1]
            .iter()
            .filter_map(|&b| otter_device::www::superblock_in(&ui[b * 4096..(b + 1) * 4096]))
            .reduce(|a, b| if (b.0.wrapping_sub(a.0) as i32) > 0 { b } else { a })
            .map(|(_, sb)| sb)
            .filter(|sb| {
                sb.version >> 16 == 2
                    && sb.version & 0xffff <= 1
                    && sb.block_size == 4096
                    && sb.block_count == WWW_SIZE / 4096
                    && sb.name_max <= 64
            });
        prop_assert_eq!(via_flash, newest);
    }

    #[test]
    fn random_bytes_never_panic(req in proptest::collection::vec(any::<u8>(), 0..3000),
                                splits in proptest::collection::vec(1usize..64, 1..8)) {
        let mut r = drive(Rig::new(), &req, &splits);
        check_boot(&mut r);
    }

    #[test]
    fn request_like_bytes_never_panic(
        method in prop::sample::select(vec!["GET", "POST", "HEAD", "PUT", "G\0T"]),
        path in prop::sample::select(vec!["/update", "/api/ota/status", "/api/ota/confirm", "/api/ota/frontend", "/", "/%2", "/a/../b", "/api/ota/rollback"]),
        headers in proptest::collection::vec(prop::sample::select(vec![
            "Content-Length: 10", "Content-Length: x", "Transfer-Encoding: chunked", "Expect: 100-continue",
            "Connection: close", "Content-Type: multipart/form-data; boundary=zz", "Content-Type: multipart/form-data",
            "X-Otter-Sha256: 00", "Authorization: Bearer t", "Content-Length: 4294967296",
        ]), 0..5),
        body in proptest::collection::vec(any::<u8>(), 0..200),
        splits in proptest::collection::vec(1usize..32, 1..6)) {
        let mut req = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
        for h in headers { req.extend_from_slice(h.as_bytes()); req.extend_from_slice(b"\r\n"); }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(&body);
        let mut r = drive(Rig::new(), &req, &splits);
        check_boot(&mut r);
    }

    #[test]
    fn mutated_uploads_never_boot_a_bad_image(
        muts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        splits in proptest::collection::vec(1usize..4096, 1..4)) {
        let mut req = valid_upload();
        for (i, b) in muts { let at = i.index(req.len()); req[at] = b; }
        if truncate { req.truncate(cut.index(req.len())); }
        let mut r = drive(Rig::new(), &req, &splits);
        check_boot(&mut r);
    }
}
