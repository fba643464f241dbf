//! Peak heap and allocation count of one Secure Boot v2 verification per
//! scheme, measured with a counting allocator on the host (the RustCrypto
//! code allocates the same on a 32-bit device, give or take limb width:
//! crypto-bigint uses 32-bit limbs there, the same number of bytes).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use otter_format::chip::Chip;
use otter_format::image::AppImageBuilder;
use otter_format::secure_boot::sign::{sign_image, SignMode, SigningKey};
use otter_format::secure_boot::{verify_v2, StreamVerifier, TrustedKeys};

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

const KEYS: [(&str, &str); 3] = [
    ("rsa3072", include_str!("../../../../crates/otter-format/tests/data/secure-boot/rsa3072.pem")),
    ("ecdsa256", include_str!("../../../../crates/otter-format/tests/data/secure-boot/ecdsa256.pem")),
    ("ecdsa384", include_str!("../../../../crates/otter-format/tests/data/secure-boot/ecdsa384.pem")),
];

fn main() {
    let img = AppImageBuilder::new(Chip::Esp32c3).build().expect("image");
    let len = img.len() as u32;
    println!(
        "StreamVerifier: {} bytes (fixed, on the stack or in a static)",
        core::mem::size_of::<StreamVerifier>()
    );
    println!("| scheme | peak heap during verify | allocations |");
    println!("|---|---|---|");
    for (name, pem) in KEYS {
        let key = SigningKey::from_pem(pem).expect("key");
        let d = [key.public_key().digest()];
        let signed = sign_image(&img, len, &key, SignMode::Fresh).expect("sign");
        let base = NOW.load(Relaxed);
        PEAK.store(base, Relaxed);
        COUNT.store(0, Relaxed);
        verify_v2(&signed, len, &TrustedKeys::new(&d)).expect("verifies");
        let peak = PEAK.load(Relaxed) - base;
        println!("| {name} | {peak} B | {} |", COUNT.load(Relaxed));
    }
}
