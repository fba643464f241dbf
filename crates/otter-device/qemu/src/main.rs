//! A scenario on the real instruction set: `qemu-system-riscv32 -machine
//! virt` runs this bare riscv32imc binary. It streams an HTTP upload of a
//! real ESP32-C3 app image (from the corpus) through otter-device into a RAM
//! flash with esp-storage's rules (reads and programs in 4-byte units at
//! 4-byte offsets, 4 KiB erases), checks the answer, and lets otter-ota's
//! boot model boot the new slot. It prints the stack used and the
//! instructions retired (`-icount shift=0` makes them exact), then exits
//! through the `sifive_test` device: 0 on PASS.
//!
//! `unsafe` lives here only (the entry point, the UART, the exit device,
//! the RAM flash's static and the stack paint); the library forbids it.
#![no_std]
#![no_main]

use core::fmt::Write;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use otter_device::service::{
    Action, Connection, Device, DeviceOptions, FileRef, FileSource, Platform, RebootReason,
    SelfTestVerdict,
};
use otter_device::www::{InspectError, PointerError, UiInspector, UiSummary, WwwPointer};
use otter_format::chip::Chip;
use otter_ota::{DeviceConfig, Region, SlotId};

const UART: *mut u8 = 0x1000_0000 as *mut u8;
const TEST_DEV: *mut u32 = 0x0010_0000 as *mut u32;
const FLASH_SIZE: usize = 4 << 20;
const STACK_PAINT: u32 = 0xA5A5_A5A5;

static TABLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/table.bin"));
static RUNNING: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/running.bin"));
static UPLOAD: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/upload.bin"));
static UPLOAD_SHA: &str = include_str!(concat!(env!("OUT_DIR"), "/upload.sha256"));

static mut FLASH: [u8; FLASH_SIZE] = [0; FLASH_SIZE];

core::arch::global_asm!(
    ".section .text.start",
    ".global _start",
    "_start:",
    "  la sp, _stack_top",
    "  la t0, _sbss",
    "  la t1, _ebss",
    "1: bgeu t0, t1, 2f",
    "  sw zero, 0(t0)",
    "  addi t0, t0, 4",
    "  j 1b",
    "2: call scenario",
    "3: j 3b",
);

struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            // SAFETY: the virt machine's ns16550 transmit register.
            unsafe { UART.write_volatile(b) };
        }
        Ok(())
    }
}

fn exit(code: u32) -> ! {
    let v = if code == 0 {
        0x5555
    } else {
        (code << 16) | 0x3333
    };
    // SAFETY: the virt machine's sifive_test finisher.
    unsafe { TEST_DEV.write_volatile(v) };
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = writeln!(Uart, "FAIL: panic: {info}");
    exit(1)
}

fn instret() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading the retired-instruction counter has no side effect.
    unsafe {
        core::arch::asm!("csrr {0}, minstret", "csrr {1}, minstreth", out(reg) lo, out(reg) hi);
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

#[derive(Debug, Clone, Copy)]
struct RamFlashError(NorFlashErrorKind);

impl NorFlashError for RamFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        self.0
    }
}

/// A RAM flash with esp-storage's FlashStorage rules.
struct RamFlash {
    cells: &'static mut [u8],
    reads: u32,
    programs: u32,
    erases: u32,
}

impl RamFlash {
    fn check(
        &self,
        offset: u32,
        len: usize,
        align: usize,
    ) -> Result<core::ops::Range<usize>, RamFlashError> {
        let start = offset as usize;
        let end = start
            .checked_add(len)
            .ok_or(RamFlashError(NorFlashErrorKind::OutOfBounds))?;
        if end > self.cells.len() {
            return Err(RamFlashError(NorFlashErrorKind::OutOfBounds));
        }
        if !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(RamFlashError(NorFlashErrorKind::NotAligned));
        }
        Ok(start..end)
    }
}

impl ErrorType for RamFlash {
    type Error = RamFlashError;
}

impl ReadNorFlash for RamFlash {
    const READ_SIZE: usize = 4;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        let r = self.check(offset, bytes.len(), Self::READ_SIZE)?;
        bytes.copy_from_slice(&self.cells[r]);
        self.reads += 1;
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.cells.len()
    }
}

impl NorFlash for RamFlash {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = 4096;
    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        let len = (to as usize)
            .checked_sub(from as usize)
            .ok_or(RamFlashError(NorFlashErrorKind::OutOfBounds))?;
        let r = self.check(from, len, Self::ERASE_SIZE)?;
        self.cells[r].fill(0xFF);
        self.erases += 1;
        Ok(())
    }
    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        let r = self.check(offset, bytes.len(), Self::WRITE_SIZE)?;
        for (c, b) in self.cells[r].iter_mut().zip(bytes) {
            *c &= *b;
        }
        self.programs += 1;
        Ok(())
    }
}

struct Plat;

impl WwwPointer<RamFlash> for Plat {
    fn read(&mut self, _: &mut RamFlash) -> Result<Option<u8>, PointerError> {
        Ok(None)
    }
    fn can_select(&mut self, _: &mut RamFlash, _: u8) -> Result<(), PointerError> {
        Err(PointerError::Nvs)
    }
    fn select(&mut self, _: &mut RamFlash, _: u8) -> Result<(), PointerError> {
        Err(PointerError::Nvs)
    }
}
impl UiInspector<RamFlash> for Plat {
    fn inspect(&mut self, _: &mut RamFlash, _: &Region) -> Result<UiSummary, InspectError> {
        Ok(UiSummary::default())
    }
}
impl FileSource for Plat {
    fn mounted(&self) -> bool {
        false
    }
    fn lookup(&mut self, _: &str) -> Option<FileRef> {
        None
    }
    fn read_file(&mut self, _: u32, _: u32, _: &mut [u8]) -> usize {
        0
    }
}
impl Platform<RamFlash> for Plat {
    fn raise_secure_version(&mut self, _: u32) -> bool {
        true
    }
    fn self_test(&mut self) -> SelfTestVerdict {
        SelfTestVerdict::Passed
    }
}

fn fail(what: &str) -> ! {
    let _ = writeln!(Uart, "FAIL: {what}");
    exit(2)
}

extern "C" {
    static _stack_bottom: u32;
}

fn paint_stack() -> (usize, usize) {
    let sp: usize;
    // SAFETY: reads the stack pointer.
    unsafe { core::arch::asm!("mv {0}, sp", out(reg) sp) };
    // SAFETY: the linker script reserves [_stack_bottom, _stack_top); the
    // words below sp - 64 are unused yet.
    let bottom = core::ptr::addr_of!(_stack_bottom) as usize;
    let mut p = bottom;
    while p < sp - 64 {
        unsafe { (p as *mut u32).write_volatile(STACK_PAINT) };
        p += 4;
    }
    (bottom, sp)
}

fn stack_low_water(bottom: usize) -> usize {
    let mut p = bottom;
    // SAFETY: reads within the painted stack area.
    while unsafe { (p as *const u32).read_volatile() } == STACK_PAINT {
        p += 4;
    }
    p
}

#[no_mangle]
extern "C" fn scenario() -> ! {
    let (bottom, sp0) = paint_stack();
    let _ = writeln!(
        Uart,
        "otter-device on riscv32imc: uploading {} bytes",
        UPLOAD.len()
    );
    // SAFETY: the one reference to the static flash array.
    let cells: &'static mut [u8] = unsafe { &mut *core::ptr::addr_of_mut!(FLASH) };
    cells.fill(0xFF);
    cells[0x8000..0x8000 + TABLE.len()].copy_from_slice(TABLE);
    cells[0x10000..0x10000 + RUNNING.len()].copy_from_slice(RUNNING);
    let mut flash = RamFlash {
        cells,
        reads: 0,
        programs: 0,
        erases: 0,
    };
    let cfg = DeviceConfig::new(Chip::Esp32c3).with_rollback(true);

    let t0 = instret();
    let booted = otter_ota::boot::boot(&mut flash, &cfg).unwrap_or_else(|_| fail("first boot"));
    let running = booted.booted.map(|b| b.slot);
    if running != Some(SlotId::Ota(0)) {
        fail("the running image did not boot from ota_0");
    }
    let mut plat = Plat;
    let mut dev = Device::new(DeviceOptions::new(cfg));
    dev.boot(&mut flash, &mut plat, running, 0)
        .unwrap_or_else(|_| fail("device boot"));
    let t1 = instret();

    // The request head, then the body in TCP-segment-sized pieces.
    let mut head_text = [0u8; 256];
    let head_len = {
        struct Buf<'a>(&'a mut [u8], usize);
        impl Write for Buf<'_> {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                let end = self.1 + s.len();
                self.0
                    .get_mut(self.1..end)
                    .ok_or(core::fmt::Error)?
                    .copy_from_slice(s.as_bytes());
                self.1 = end;
                Ok(())
            }
        }
        let mut b = Buf(&mut head_text, 0);
        let _ = write!(b, "POST /update HTTP/1.1\r\nHost: otter\r\nContent-Length: {}\r\nX-Otter-Sha256: {}\r\n\r\n", UPLOAD.len(), UPLOAD_SHA.trim());
        b.1
    };
    let mut head_buf = [0u8; 2048];
    let mut tx = [0u8; 4096];
    let mut conn = Connection::new(&dev, &mut head_buf, 0);
    let mut answer_len = 0usize;
    let mut answer = [0u8; 512];
    let mut action = Action::Read;
    let mut now = 0u64;
    let pieces = core::iter::once(&head_text[..head_len]).chain(UPLOAD.chunks(1460));
    'outer: for piece in pieces {
        let mut input = piece;
        now += 1;
        loop {
            let o = conn.handle(&mut dev, &mut flash, &mut plat, input, now, &mut tx);
            let n = o.written.min(answer.len() - answer_len);
            answer[answer_len..answer_len + n].copy_from_slice(&tx[..n]);
            answer_len += n;
            input = &input[o.consumed..];
            action = o.action;
            match o.action {
                Action::Close | Action::Reboot(_) => break 'outer,
                Action::Read if input.is_empty() => break,
                _ => {}
            }
        }
    }
    let t2 = instret();
    let text = core::str::from_utf8(&answer[..answer_len]).unwrap_or("(not utf-8)");
    let _ = writeln!(Uart, "answer: {}", text.lines().next().unwrap_or(""));
    if !text.starts_with("HTTP/1.1 200") || action != Action::Reboot(RebootReason::Update) {
        let _ = writeln!(Uart, "{text}");
        fail("the upload was not accepted");
    }
    // Reboot: the bootloader model boots the new slot.
    let booted = otter_ota::boot::boot(&mut flash, &cfg).unwrap_or_else(|_| fail("second boot"));
    let t3 = instret();
    match booted.booted {
        Some(b) if b.slot == SlotId::Ota(1) => {}
        _ => fail("the new image did not boot"),
    }
    let low = stack_low_water(bottom);
    let _ = writeln!(
        Uart,
        "flash ops: {} reads, {} programs, {} erases",
        flash.reads, flash.programs, flash.erases
    );
    let _ = writeln!(
        Uart,
        "stack used: {} bytes (of the scenario, below its entry)",
        sp0 - low
    );
    let _ = writeln!(
        Uart,
        "instructions: boot {} , upload+verify+activate {} , reboot into ota_1 {}",
        t1 - t0,
        t2 - t1,
        t3 - t2
    );
    let _ = writeln!(
        Uart,
        "size_of Device {} Connection {}",
        core::mem::size_of::<Device>(),
        core::mem::size_of::<Connection<'static>>()
    );
    let _ = writeln!(Uart, "PASS");
    exit(0)
}
