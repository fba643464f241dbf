//! Stack high-water of the main stack (esp-hal's `_stack_end` ..
//! `_stack_start`, where the executor, and with it every otter machine,
//! runs): [`paint`] fills the unused part with a pattern at boot,
//! [`high_water`] finds how deep the stack has been since.

use core::ptr::{addr_of, read_volatile, write_volatile};

const PAINT: u32 = 0x5AA5_C33C;
/// Left alone above the stack's end: the stack-protector guard lives there.
const GUARD: usize = 256;
/// Left alone below the caller's frame.
const MARGIN: usize = 256;

extern "C" {
    static _stack_end: u32;
    static _stack_start: u32;
}

fn bounds() -> (usize, usize) {
    // Linker symbols: only their addresses are taken.
    let (end, start) = (
        addr_of!(_stack_end) as usize,
        addr_of!(_stack_start) as usize,
    );
    ((end + GUARD + 3) & !3, start)
}

fn sp() -> usize {
    let sp: usize;
    // SAFETY: reads the stack pointer register only.
    unsafe { core::arch::asm!("mv {}, sp", out(reg) sp) };
    sp
}

/// The main stack's size in bytes.
pub fn size() -> usize {
    let (bottom, top) = bounds();
    top.saturating_sub(bottom)
}

/// Paints the stack below the caller with the pattern, interrupts off (an
/// interrupt's frame goes below the stack pointer). Call it once, first
/// thing in `main`.
pub fn paint() {
    let (bottom, _) = bounds();
    let top = (sp().saturating_sub(MARGIN)) & !3;
    critical_section::with(|_| {
        let mut a = bottom;
        while a < top {
            // SAFETY: [bottom, top) is the unused part of the main stack:
            // below the current frame and the margin, above the guard.
            unsafe { write_volatile(a as *mut u32, PAINT) };
            a += 4;
        }
    });
}

/// The deepest the main stack has been since [`paint`], in bytes from its
/// top (an upper bound of what ran on it: a frame that skipped words
/// counts them).
pub fn high_water() -> usize {
    let (bottom, top) = bounds();
    let mut a = bottom;
    // SAFETY: reads within the main stack.
    while a < top && unsafe { read_volatile(a as *const u32) } == PAINT {
        a += 4;
    }
    top.saturating_sub(a)
}
