//! Peak heap and allocation count of the pull client's manifest check
//! (`otter_release::verify_manifest_by`, which `otter_device::pull` calls on
//! the bounded `alloc` heap), for the manifests a device meets: firmware
//! only, a bundle, a bundle with every name and URL at its limit, the
//! largest manifest a device accepts (64 KiB, padded with JSON whitespace),
//! and 64 KiB of garbage (refused). Measured with a counting allocator on
//! the host; a 32-bit device allocates the same or less (pointer-sized
//! fields are half as wide).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use otter_release::{
    sign_manifest, verify_manifest_by, ReleaseSpec, SigningKey, Timestamp, MAX_MANIFEST_LEN,
};

struct Counting;
static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = NOW.fetch_add(l.size(), Relaxed) + l.size();
        PEAK.fetch_max(now, Relaxed);
        COUNT.fetch_add(1, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        NOW.fetch_sub(l.size(), Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const NOW_UNIX: u64 = 1_900_000_000;

fn manifest(www: bool, long: bool) -> Vec<u8> {
    let firmware = vec![0xA5u8; 1_200_000];
    let ui = vec![0x5Au8; 256 * 1024];
    let name = "p".repeat(if long { 128 } else { 10 });
    let spec = ReleaseSpec {
        product: &name,
        chip: "esp32c3",
        version: "1.2.3",
        secure_version: 2,
        project: &name,
        firmware: &firmware,
        www: www.then_some(&ui[..]),
        created: Timestamp::from_unix_saturating(NOW_UNIX - 10),
        expires: Timestamp::from_unix_saturating(NOW_UNIX + 86_400),
    };
    let mut json = spec.manifest().expect("manifest").to_json();
    if long {
        // Every artifact URL at the 2,048-byte limit.
        let url = |file: &str| {
            let base = "https://cdn.example.com/";
            format!("{base}{}{file}", "u".repeat(2048 - base.len() - file.len()))
        };
        let s = String::from_utf8(json).unwrap();
        json = s
            .replace("\"firmware.bin\"", &format!("\"{}\"", url("/firmware.bin")))
            .replace("\"www.bin\"", &format!("\"{}\"", url("/www.bin")))
            .into_bytes();
    }
    json
}

fn measure(name: &str, manifest: &[u8], sig: &[u8], key: &SigningKey) {
    let trusted = [key.public_key()];
    let base = NOW.load(Relaxed);
    PEAK.store(base, Relaxed);
    COUNT.store(0, Relaxed);
    let r = verify_manifest_by(manifest, sig, &trusted, NOW_UNIX);
    let peak = PEAK.load(Relaxed) - base;
    let n = COUNT.load(Relaxed);
    let outcome = match &r {
        Ok(_) => "verified".to_string(),
        Err(e) => format!("refused: {} ({e})", e.code()),
    };
    drop(r);
    println!(
        "| {name} | {} B | {peak} B | {n} | {outcome} |",
        manifest.len()
    );
}

fn main() {
    let key = SigningKey::from_seed(&[7; 32]);
    println!("| manifest | size | peak heap during verify | allocations | result |");
    println!("|---|---|---|---|---|");
    for (name, www, long) in [
        ("firmware only", false, false),
        ("bundle (firmware + web UI)", true, false),
        ("bundle, names and URLs at their limits", true, true),
    ] {
        let m = manifest(www, long);
        let sig = sign_manifest(&m, std::slice::from_ref(&key)).expect("sign");
        measure(name, &m, &sig, &key);
    }
    // The largest manifest a device takes: a bundle padded with whitespace.
    let mut m = manifest(true, true);
    let close = m.iter().rposition(|&b| b == b'}').unwrap();
    let pad = MAX_MANIFEST_LEN - m.len();
    m.splice(close..close, std::iter::repeat_n(b' ', pad));
    let sig = sign_manifest(&m, std::slice::from_ref(&key)).expect("sign");
    measure("bundle padded to MAX_MANIFEST_LEN", &m, &sig, &key);
    let junk = vec![b'{'; MAX_MANIFEST_LEN];
    measure("64 KiB of garbage", &junk, &sig, &key);
}
