//! A bare-metal program that verifies a Secure Boot v2 image from flash with
//! otter's streaming verifier, so the linker keeps exactly what a device
//! needs. Built for riscv32imc-unknown-none-elf; never run.
//!
//! With the `rsa` feature it also brings the RSA-3072 check and a 16 KiB
//! bump heap for it (the host probe `heap` measures the real need).
#![no_std]
#![no_main]

use otter_format::secure_boot::{StreamVerifier, TrustedKeys};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(feature = "rsa")]
mod heap {
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicUsize, Ordering};

    const SIZE: usize = 16 * 1024;
    pub struct Bump {
        arena: UnsafeCell<[u8; SIZE]>,
        next: AtomicUsize,
    }
    unsafe impl Sync for Bump {}
    unsafe impl GlobalAlloc for Bump {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            let start = (self.next.load(Ordering::Relaxed) + l.align() - 1) & !(l.align() - 1);
            if start + l.size() > SIZE {
                return core::ptr::null_mut();
            }
            self.next.store(start + l.size(), Ordering::Relaxed);
            unsafe { (self.arena.get() as *mut u8).add(start) }
        }
        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
    }
    #[global_allocator]
    static HEAP: Bump = Bump {
        arena: UnsafeCell::new([0; SIZE]),
        next: AtomicUsize::new(0),
    };
}

#[cfg(feature = "rsa")]
extern crate alloc;

/// Where a real device would map the update slot.
const FLASH: usize = 0x4200_0000;

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let len = core::hint::black_box(0x1_0000usize);
    let image_len = core::hint::black_box(0xF000u32);
    // SAFETY: not run; stands for the memory-mapped flash of the slot.
    let flash = unsafe { core::slice::from_raw_parts(FLASH as *const u8, len) };
    let digest: [[u8; 32]; 1] = core::hint::black_box([[0x5A; 32]]);
    let mut v = StreamVerifier::new(image_len);
    for chunk in flash.chunks(4096) {
        v.update(chunk);
    }
    let ok = v.finish(&TrustedKeys::new(&digest)).is_ok();
    core::hint::black_box(ok);
    loop {}
}
