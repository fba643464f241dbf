//! Integration tests of `SimFlash` through its public API.

use std::collections::HashSet;
use std::time::Duration;

use otter_sim::embedded_storage::nor_flash::{
    NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};
use otter_sim::{
    EraseStrategy, Fault, FaultKind, FaultStatus, LogPolicy, OpKind, OpOutcome, ProgramMode,
    SimFlash, SimFlashError, TimingModel, BLOCK64_SIZE, SECTOR_SIZE,
};

const MIB: usize = 1024 * 1024;

fn flash() -> SimFlash {
    SimFlash::new(MIB).expect("1 MiB is a valid capacity")
}

fn kind<T: std::fmt::Debug>(r: Result<T, SimFlashError>) -> NorFlashErrorKind {
    r.expect_err("operation should fail").kind()
}

fn read_vec(f: &mut SimFlash, offset: u32, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    f.read(offset, &mut buf).expect("read");
    buf
}

// ---------------------------------------------------------------- NOR rules

#[test]
fn new_flash_is_erased() {
    let f = flash();
    assert_eq!(f.capacity(), MIB);
    assert!(f.contents().iter().all(|&b| b == 0xFF));
}

#[test]
fn relaxed_program_only_clears_bits() {
    let mut f = flash().with_mode(ProgramMode::Relaxed);
    f.write(0x100, &[0xF0, 0x0F, 0xAA, 0xFF]).expect("write");
    f.write(0x100, &[0x3C, 0xFF, 0x0F, 0x00])
        .expect("re-program");
    assert_eq!(read_vec(&mut f, 0x100, 4), [0x30, 0x0F, 0x0A, 0x00]);
    // Programming 0xFF over data changes nothing: bits cannot be set.
    f.write(0x100, &[0xFF; 4]).expect("no-op program");
    assert_eq!(read_vec(&mut f, 0x100, 4), [0x30, 0x0F, 0x0A, 0x00]);
}

#[test]
fn strict_rejects_program_over_non_erased_and_changes_nothing() {
    let mut f = flash();
    assert_eq!(f.mode(), ProgramMode::Strict);
    f.write(0x1008, &[0x12, 0xFF, 0xFF, 0xFF])
        .expect("write on erased");
    let before = f.snapshot();
    let ops_before = f.counters().program_ops;
    // 0x1000..0x1010: only byte 0x1008 is not erased.
    let err = f.write(0x1000, &[0u8; 16]).expect_err("must be rejected");
    assert!(
        matches!(err, SimFlashError::ProgramNotErased { offset: 0x1008 }),
        "{err:?}"
    );
    assert_eq!(err.kind(), NorFlashErrorKind::Other);
    assert_eq!(
        f.snapshot(),
        before,
        "nothing written, not even the erased part"
    );
    assert_eq!(f.counters().program_ops, ops_before, "not counted");
    // Even programming the same value again counts as a program over non-erased.
    assert!(matches!(
        f.write(0x1008, &[0x12, 0xFF, 0xFF, 0xFF]),
        Err(SimFlashError::ProgramNotErased { offset: 0x1008 })
    ));
    // After an erase it is allowed again.
    f.erase(0x1000, 0x2000).expect("erase");
    f.write(0x1000, &[0u8; 16]).expect("write after erase");
    assert_eq!(read_vec(&mut f, 0x1000, 16), [0u8; 16]);
}

#[test]
fn erase_sets_ff_within_range_only() {
    let mut f = flash();
    f.write(0x0FFC, &[1, 2, 3, 4]).expect("write");
    f.write(0x1000, &[5, 6, 7, 8]).expect("write");
    f.write(0x2000, &[9, 9, 9, 9]).expect("write");
    f.erase(0x1000, 0x2000).expect("erase");
    assert_eq!(
        read_vec(&mut f, 0x0FFC, 12),
        [1, 2, 3, 4, 255, 255, 255, 255, 255, 255, 255, 255]
    );
    assert_eq!(read_vec(&mut f, 0x2000, 4), [9, 9, 9, 9]);
}

// ---------------------------------------------------- alignment and bounds

#[test]
fn misaligned_program_is_rejected() {
    let mut f = flash();
    assert_eq!(kind(f.write(2, &[0; 4])), NorFlashErrorKind::NotAligned);
    assert_eq!(kind(f.write(0, &[0; 3])), NorFlashErrorKind::NotAligned);
    assert_eq!(kind(f.write(4, &[0; 6])), NorFlashErrorKind::NotAligned);
    assert!(f.contents().iter().all(|&b| b == 0xFF));
    assert_eq!(f.mutating_ops(), 0);
}

#[test]
fn out_of_bounds_is_rejected() {
    let mut f = flash();
    let cap = MIB as u32;
    assert_eq!(
        kind(f.write(cap - 4, &[0; 8])),
        NorFlashErrorKind::OutOfBounds
    );
    assert_eq!(kind(f.write(cap, &[0; 4])), NorFlashErrorKind::OutOfBounds);
    assert_eq!(
        kind(f.write(u32::MAX - 3, &[0; 4])),
        NorFlashErrorKind::OutOfBounds
    );
    let mut buf = [0u8; 2];
    assert_eq!(
        kind(f.read(cap - 1, &mut buf)),
        NorFlashErrorKind::OutOfBounds
    );
    assert_eq!(
        kind(f.erase(cap - 0x1000, cap + 0x1000)),
        NorFlashErrorKind::OutOfBounds
    );
    assert_eq!(
        kind(f.erase(0x2000, 0x1000)),
        NorFlashErrorKind::OutOfBounds
    );
    assert_eq!(kind(f.erase_block64(cap)), NorFlashErrorKind::OutOfBounds);
    f.write(cap - 4, &[0; 4]).expect("last word is in bounds");
}

#[test]
fn relaxed_reads_have_byte_granularity() {
    let mut f = flash().with_mode(ProgramMode::Relaxed);
    f.write(0, &[1, 2, 3, 4, 5, 6, 7, 8]).expect("write");
    assert_eq!(read_vec(&mut f, 3, 3), [4, 5, 6]);
    assert_eq!(read_vec(&mut f, MIB as u32 - 1, 1), [0xFF]);
}

#[test]
fn strict_reads_follow_the_real_drivers_4_byte_units() {
    let mut f = flash();
    f.write(0, &[1, 2, 3, 4, 5, 6, 7, 8]).expect("write");
    assert_eq!(read_vec(&mut f, 4, 4), [5, 6, 7, 8]);
    let mut three = [0u8; 3];
    assert!(matches!(
        f.read(4, &mut three),
        Err(SimFlashError::NotAligned {
            offset: 4,
            len: 3,
            align: 4
        })
    ));
    let mut four = [0u8; 4];
    assert!(matches!(
        f.read(3, &mut four),
        Err(SimFlashError::NotAligned {
            offset: 3,
            len: 4,
            align: 4
        })
    ));
    assert_eq!(f.counters().read_ops, 1, "a refused read is not counted");
}

#[test]
fn unaligned_erase_is_rejected() {
    let mut f = flash();
    f.write(0, &[0; 4]).expect("write");
    assert_eq!(kind(f.erase(0, 100)), NorFlashErrorKind::NotAligned);
    assert_eq!(kind(f.erase(100, 4096)), NorFlashErrorKind::NotAligned);
    assert_eq!(kind(f.erase(0x800, 0x1800)), NorFlashErrorKind::NotAligned);
    assert_eq!(kind(f.erase_sector(0x800)), NorFlashErrorKind::NotAligned);
    assert_eq!(kind(f.erase_block64(0x1000)), NorFlashErrorKind::NotAligned);
    assert_eq!(read_vec(&mut f, 0, 4), [0; 4], "nothing erased");
    assert_eq!(f.counters().erase_ops(), 0);
}

#[test]
fn capacity_is_validated() {
    for bad in [0, 4096, 512 * 1024, MIB + 4096, 32 * MIB, 17 * MIB] {
        assert!(
            matches!(
                SimFlash::new(bad),
                Err(SimFlashError::InvalidCapacity { .. })
            ),
            "{bad:#x} should be rejected"
        );
    }
    for good in [MIB, MIB + 64 * 1024, 4 * MIB, 16 * MIB] {
        assert_eq!(SimFlash::new(good).expect("valid").capacity(), good);
    }
    assert!(matches!(
        SimFlash::from_bytes(vec![0xFF; 1000]),
        Err(SimFlashError::InvalidCapacity { capacity: 1000 })
    ));
}

// ------------------------------------------- erase strategy and accounting

#[test]
fn aligned_64k_erase_is_one_block_erase() {
    let mut f = flash();
    f.erase(0x10000, 0x20000).expect("erase");
    let c = *f.counters();
    assert_eq!(
        (c.block_erases, c.sector_erases, c.bytes_erased),
        (1, 0, 65536)
    );
    assert_eq!(f.elapsed(), Duration::from_millis(150));
    assert_eq!(f.mutating_ops(), 1);

    let mut f = flash().with_erase_strategy(EraseStrategy::SectorsOnly);
    f.erase(0x10000, 0x20000).expect("erase");
    let c = *f.counters();
    assert_eq!(
        (c.block_erases, c.sector_erases, c.bytes_erased),
        (0, 16, 65536)
    );
    assert_eq!(f.elapsed(), Duration::from_millis(16 * 45));
    assert_eq!(f.mutating_ops(), 16);
}

#[test]
fn auto_erase_uses_blocks_where_aligned_and_sectors_elsewhere() {
    let mut f = flash();
    f.erase(0x1000, 0x21000).expect("erase");
    let kinds: Vec<(OpKind, u32)> = f.log().iter().map(|r| (r.kind, r.offset)).collect();
    let mut expected: Vec<(OpKind, u32)> = (1..16)
        .map(|i| (OpKind::EraseSector, i * SECTOR_SIZE))
        .collect();
    expected.push((OpKind::EraseBlock64, 0x10000));
    expected.push((OpKind::EraseSector, 0x20000));
    assert_eq!(kinds, expected);
    assert_eq!(f.counters().sector_erases, 16);
    assert_eq!(f.counters().block_erases, 1);
    assert_eq!(f.elapsed(), Duration::from_millis(16 * 45 + 150));
}

#[test]
fn explicit_block_erase() {
    let mut f = flash();
    f.write(0x20000, &[0; 8]).expect("write");
    f.write(0x2FFFC, &[0; 4]).expect("write");
    f.write(0x30000, &[0; 4]).expect("write");
    f.erase_block64(0x20000).expect("block erase");
    assert!(f.contents()[0x20000..0x30000].iter().all(|&b| b == 0xFF));
    let last = *f.log().last().expect("logged");
    assert_eq!(read_vec(&mut f, 0x30000, 4), [0; 4]);
    assert_eq!(f.counters().block_erases, 1);
    assert_eq!(
        (last.kind, last.offset, last.len),
        (OpKind::EraseBlock64, 0x20000, BLOCK64_SIZE)
    );
}

#[test]
fn erasing_1_5_mib_by_sectors_vs_blocks() {
    let len = 1536 * 1024u32;
    let mut sectors = SimFlash::new(2 * MIB)
        .expect("valid")
        .with_erase_strategy(EraseStrategy::SectorsOnly);
    sectors.erase(0, len).expect("erase");
    assert_eq!(sectors.counters().sector_erases, 384);
    assert_eq!(sectors.counters().bytes_erased, u64::from(len));
    assert_eq!(sectors.elapsed(), Duration::from_millis(17_280));

    let mut blocks = SimFlash::new(2 * MIB).expect("valid");
    blocks.erase(0, len).expect("erase");
    assert_eq!(blocks.counters().block_erases, 24);
    assert_eq!(blocks.counters().sector_erases, 0);
    assert_eq!(blocks.elapsed(), Duration::from_millis(3_600));

    let mut explicit = SimFlash::new(2 * MIB).expect("valid");
    for i in 0..24 {
        explicit
            .erase_block64(i * BLOCK64_SIZE)
            .expect("block erase");
    }
    assert_eq!(explicit.elapsed(), Duration::from_millis(3_600));
    assert_eq!(explicit.snapshot(), blocks.snapshot());
}

#[test]
fn counters_and_timing_for_a_known_sequence() {
    let timing = TimingModel::default().with_read_bandwidth(1_000_000); // 1 µs/byte
    let mut f = flash().with_timing(timing);
    f.erase_sector(0).expect("erase");
    f.write(0, &[0u8; 4096]).expect("16 pages");
    f.erase_sector(0x1000).expect("erase");
    f.write(0x10FC, &[0u8; 8]).expect("straddles 2 pages");
    f.write(0x1200, &[0u8; 4]).expect("1 page");
    let mut buf = [0u8; 100];
    f.read(12, &mut buf).expect("read");
    f.read(0, &mut buf[..4]).expect("read");

    let c = *f.counters();
    assert_eq!(c.sector_erases, 2);
    assert_eq!(c.block_erases, 0);
    assert_eq!(c.bytes_erased, 8192);
    assert_eq!(c.program_ops, 3);
    assert_eq!(c.bytes_programmed, 4096 + 8 + 4);
    assert_eq!(c.read_ops, 2);
    assert_eq!(c.bytes_read, 104);
    assert_eq!(f.mutating_ops(), 5);
    let expected =
        Duration::from_millis(90) + Duration::from_micros(700) * 19 + Duration::from_micros(104);
    assert_eq!(f.elapsed(), expected);
    assert_eq!(f.log().len(), 7);
    assert_eq!(f.log().mutating().count(), 5);

    f.reset_counters();
    assert_eq!(*f.counters(), Default::default());
    assert_eq!(f.elapsed(), Duration::ZERO);
    assert_eq!(f.mutating_ops(), 5, "the operation index is not reset");
    assert_eq!(f.log().len(), 7, "the log is kept");
    f.clear_log();
    assert!(f.log().is_empty());
}

#[test]
fn log_policies() {
    let mut f = flash().with_log_policy(LogPolicy::Last(3));
    for i in 0..10 {
        f.write(i * 4, &[0; 4]).expect("write");
    }
    let offsets: Vec<u32> = f.log().iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [28, 32, 36]);
    assert_eq!(f.log().dropped(), 7);
    assert_eq!(f.log().last().and_then(|r| r.op_index), Some(9));

    let mut f = flash().with_log_policy(LogPolicy::Off);
    f.write(0, &[0; 4]).expect("write");
    assert!(f.log().is_empty());
    assert_eq!(f.counters().program_ops, 1, "counters still run");
}

// --------------------------------------------------------- file backing

#[test]
fn file_backed_flash_persists_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flash.bin");
    {
        let mut f = SimFlash::create_file(&path, 4 * MIB).expect("create");
        assert_eq!(f.path(), Some(path.as_path()));
        f.write(0x8000, b"\xAA\x50\x01\x02").expect("write");
        f.write(0x3F_FFFC, &[1, 2, 3, 4]).expect("write");
        f.sync().expect("sync");
    }
    let raw = std::fs::read(&path).expect("read image");
    assert_eq!(raw.len(), 4 * MIB);
    assert_eq!(
        &raw[0x8000..0x8004],
        b"\xAA\x50\x01\x02",
        "raw image at flash offsets"
    );
    assert!(raw[..0x8000].iter().all(|&b| b == 0xFF));

    let mut f = SimFlash::open_file(&path).expect("reopen");
    assert_eq!(f.capacity(), 4 * MIB);
    assert_eq!(f.contents(), &raw[..]);
    f.erase(0x8000, 0x9000).expect("erase");
    drop(f);
    let raw = std::fs::read(&path).expect("read image");
    assert!(raw[0x8000..0x9000].iter().all(|&b| b == 0xFF));
    assert_eq!(&raw[0x3F_FFFC..], &[1, 2, 3, 4]);

    let f = SimFlash::open_or_create_file(&path, 4 * MIB).expect("open existing");
    assert_eq!(f.contents(), &raw[..]);
    assert!(matches!(
        SimFlash::open_or_create_file(&path, MIB),
        Err(SimFlashError::ImageSize { .. })
    ));
    let other = dir.path().join("new.bin");
    let f = SimFlash::open_or_create_file(&other, MIB).expect("create new");
    assert_eq!(std::fs::metadata(&other).expect("exists").len(), MIB as u64);
    drop(f);

    std::fs::write(&other, [0xFFu8; 1000]).expect("write bad image");
    assert!(matches!(
        SimFlash::open_file(&other),
        Err(SimFlashError::InvalidCapacity { capacity: 1000 })
    ));
    assert!(matches!(
        SimFlash::open_file(dir.path().join("missing.bin")),
        Err(SimFlashError::Io(_))
    ));
}

#[test]
fn file_backed_flash_after_cut_holds_last_completed_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flash.bin");
    let mut f = SimFlash::create_file(&path, MIB)
        .expect("create")
        .with_fault(Fault::cut_before(2));
    f.write(0, &[1, 2, 3, 4]).expect("op 0");
    f.write(4, &[5, 6, 7, 8]).expect("op 1");
    let expected = f.snapshot();
    assert!(matches!(f.erase(0, 0x1000), Err(SimFlashError::PowerLoss)));
    drop(f); // the "power cut": no further operation, nothing flushed on drop
    let raw = std::fs::read(&path).expect("read image");
    assert_eq!(raw, expected);
    assert_eq!(&raw[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);

    // A torn program is written through as torn.
    let mut f = SimFlash::open_file(&path)
        .expect("reopen")
        .with_fault(Fault::new(0, FaultKind::TornProgram, 3));
    assert!(f.write(0x100, &[0u8; 256]).is_err());
    let torn = f.snapshot();
    drop(f);
    assert_eq!(std::fs::read(&path).expect("read image"), torn);
}

#[test]
fn restore_and_load_write_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flash.bin");
    let mut f = SimFlash::create_file(&path, MIB).expect("create");
    f.load(0x1001, b"abc")
        .expect("load ignores alignment and NOR rules");
    f.load(0x1001, b"xyz").expect("load overwrites");
    assert!(matches!(
        f.load(MIB as u32 - 2, b"abc"),
        Err(SimFlashError::ImageSize { .. })
    ));
    assert_eq!(f.mutating_ops(), 0, "load is not a device operation");
    assert_eq!(&std::fs::read(&path).expect("read")[0x1001..0x1004], b"xyz");

    let mut image = vec![0xFFu8; MIB];
    image[7] = 0x42;
    f.restore(&image).expect("restore");
    assert_eq!(std::fs::read(&path).expect("read"), image);
    assert!(matches!(
        f.restore(&image[1..]),
        Err(SimFlashError::ImageSize { .. })
    ));
}

/// The child half of `kill_9_is_a_power_cut`: the same test binary, started
/// again with `OTTER_SIM_KILL_CHILD` set, programs the flash file one word at a
/// time and says so after each program until it is killed.
fn kill_9_child(path: &str) {
    let mut f = SimFlash::open_file(path).expect("child opens the image");
    for i in 0..(MIB as u32 / 4) {
        f.write(i * 4, &(i + 1).to_le_bytes()).expect("child write");
        println!("op {i}");
    }
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn kill_9_is_a_power_cut() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    if let Ok(path) = std::env::var("OTTER_SIM_KILL_CHILD") {
        kill_9_child(&path);
        return;
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("flash.bin");
    drop(SimFlash::create_file(&path, MIB).expect("create"));
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "kill_9_is_a_power_cut",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("OTTER_SIM_KILL_CHILD", &path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped");
    let mut last_done = None;
    let mut other = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        // The first line shares its start with libtest's "test ... " banner.
        if let Some((_, n)) = line.split_once("op ") {
            let n: u32 = n.trim().parse().expect("op number");
            last_done = Some(n);
            if n >= 2000 {
                break;
            }
        } else {
            other.push(line);
        }
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap child");
    let done = last_done.unwrap_or_else(|| panic!("child made no progress: {other:?}"));

    let f = SimFlash::open_file(&path).expect("reopen after kill");
    let words: Vec<u32> = f
        .contents()
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    // Every operation the child reported is in the file.
    for i in 0..=done {
        assert_eq!(words[i as usize], i + 1, "completed op {i} lost");
    }
    // Beyond that: a run of later completed writes, then erased flash.
    let mut i = done as usize + 1;
    while i < words.len() && words[i] == i as u32 + 1 {
        i += 1;
    }
    assert!(
        words[i..].iter().all(|&w| w == u32::MAX),
        "garbage after the last write at word {i}"
    );
}

// ------------------------------------------------------------------ faults

/// A flash with some data in sectors 0 and 1, and the snapshot of it.
fn seeded_flash() -> (SimFlash, Vec<u8>) {
    let mut f = flash().with_timing(TimingModel::ZERO);
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    f.write(0, &pattern).expect("write");
    f.write(0x1000, &pattern).expect("write");
    let snap = f.snapshot();
    (f, snap)
}

fn changed_offsets(a: &[u8], b: &[u8]) -> Vec<usize> {
    a.iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn cut_before_does_not_apply_the_op() {
    let (base, _) = seeded_flash();
    let mut f = base.fork().with_fault(Fault::cut_before(1));
    f.erase_sector(0x2000).expect("op 0");
    let before = f.snapshot();
    assert!(f.is_powered());
    assert!(!f.fault_fired());
    assert!(matches!(f.erase_sector(0), Err(SimFlashError::PowerLoss)));
    assert!(f.fault_fired());
    assert!(!f.is_powered());
    assert_eq!(f.snapshot(), before, "op 1 did not happen");
    assert_eq!(
        f.log().last().map(|r| r.outcome),
        Some(OpOutcome::CutBefore)
    );
    assert_eq!(f.counters().sector_erases, 1, "the cut op is not counted");

    // Everything fails until a power cycle, reads included.
    let mut buf = [0u8; 4];
    assert!(matches!(f.read(0, &mut buf), Err(SimFlashError::PowerLoss)));
    assert!(matches!(
        f.write(0x3000, &[0; 4]),
        Err(SimFlashError::PowerLoss)
    ));
    assert!(matches!(
        f.erase(0x3000, 0x4000),
        Err(SimFlashError::PowerLoss)
    ));
    assert!(matches!(
        f.erase_block64(0x10000),
        Err(SimFlashError::PowerLoss)
    ));
    assert_eq!(f.snapshot(), before);

    f.power_cycle();
    assert!(f.is_powered());
    assert!(f.fault_fired(), "still reports that it fired");
    f.read(0, &mut buf).expect("read after power cycle");
    assert_eq!(&buf, &before[..4]);
    f.erase_sector(0)
        .expect("works again; the fault does not fire twice");
}

#[test]
fn cut_after_applies_then_loses_power() {
    let (base, _) = seeded_flash();
    let mut f = base.fork().with_fault(Fault::cut_after(0));
    assert!(matches!(f.erase_sector(0), Err(SimFlashError::PowerLoss)));
    assert!(
        f.contents()[..4096].iter().all(|&b| b == 0xFF),
        "erase happened"
    );
    assert!(!f.is_powered());
    assert_eq!(f.counters().sector_erases, 1);
    assert_eq!(
        f.log().last().map(|r| r.outcome),
        Some(OpOutcome::CompletedThenCut)
    );
    let mut buf = [0u8; 1];
    assert!(matches!(f.read(0, &mut buf), Err(SimFlashError::PowerLoss)));
}

#[test]
fn cut_inside_a_multi_command_erase() {
    let (base, snap) = seeded_flash();
    let mut f = base
        .fork()
        .with_erase_strategy(EraseStrategy::SectorsOnly)
        .with_fault(Fault::cut_before(1));
    assert!(matches!(f.erase(0, 0x2000), Err(SimFlashError::PowerLoss)));
    assert!(
        f.contents()[..0x1000].iter().all(|&b| b == 0xFF),
        "first sector erased"
    );
    assert_eq!(
        &f.contents()[0x1000..0x2000],
        &snap[0x1000..0x2000],
        "second not"
    );
}

#[test]
fn torn_program_clears_a_subset_of_the_change_set() {
    let (base, _) = seeded_flash();
    let mut prepared = base.fork();
    prepared.erase_sector(0x4000).expect("erase");
    // Half the target already programmed (relaxed), so the change set is not all bits.
    prepared.set_mode(ProgramMode::Relaxed);
    let first: Vec<u8> = (0..512u32).map(|i| (i * 13 % 256) as u8 | 0x81).collect();
    prepared.write(0x4000, &first).expect("write");
    let old = prepared.snapshot();
    let data: Vec<u8> = (0..512u32).map(|i| (i * 29 % 256) as u8).collect();

    let mut results = HashSet::new();
    for seed in 0..8 {
        let mut f = prepared
            .fork()
            .with_fault(Fault::new(0, FaultKind::TornProgram, seed));
        assert!(matches!(
            f.write(0x4000, &data),
            Err(SimFlashError::PowerLoss)
        ));
        assert!(f.fault_fired() && !f.is_powered());
        assert_eq!(f.log().last().map(|r| r.outcome), Some(OpOutcome::Torn));
        let now = f.snapshot();
        for i in changed_offsets(&old, &now) {
            assert!(
                (0x4000..0x4200).contains(&i),
                "byte {i:#x} outside the program changed"
            );
        }
        for i in 0..512 {
            let (o, r, d) = (old[0x4000 + i], now[0x4000 + i], data[i]);
            assert_eq!(r & !o, 0, "seed {seed}: bit set at {i}");
            assert_eq!(
                r & (o & d),
                o & d,
                "seed {seed}: cleared outside the change set at {i}"
            );
        }
        // Same seed, same bytes.
        let mut again = prepared
            .fork()
            .with_fault(Fault::new(0, FaultKind::TornProgram, seed));
        let _ = again.write(0x4000, &data);
        assert_eq!(again.snapshot(), now, "seed {seed} is not reproducible");
        results.insert(now);
    }
    assert!(results.len() >= 6, "different seeds should usually differ");
}

#[test]
fn torn_erase_changes_only_the_sector() {
    let (base, snap) = seeded_flash();
    for scramble in [false, true] {
        let mut results = HashSet::new();
        for seed in 0..8 {
            let fault = Fault::new(0, FaultKind::TornErase { scramble }, seed);
            let mut f = base.fork().with_fault(fault);
            assert!(matches!(
                f.erase_sector(0x1000),
                Err(SimFlashError::PowerLoss)
            ));
            assert!(f.fault_fired());
            let now = f.snapshot();
            for i in changed_offsets(&snap, &now) {
                assert!(
                    (0x1000..0x2000).contains(&i),
                    "{fault}: byte {i:#x} outside the sector"
                );
                if !scramble {
                    assert_eq!(now[i], 0xFF, "{fault}: unscrambled tear only erases");
                }
            }
            let mut again = base.fork().with_fault(fault);
            let _ = again.erase_sector(0x1000);
            assert_eq!(again.snapshot(), now, "{fault} is not reproducible");
            results.insert(now);
        }
        assert!(
            results.len() >= 6,
            "scramble={scramble}: seeds should differ"
        );
    }
}

#[test]
fn torn_block_erase_changes_only_the_block() {
    let mut base = flash();
    for off in (0..0x30000u32).step_by(0x1000) {
        base.write(off, &[0x11; 64]).expect("write");
    }
    let snap = base.snapshot();
    let fault = Fault::new(0, FaultKind::TornErase { scramble: true }, 77);
    let mut f = base.fork().with_fault(fault);
    assert!(matches!(
        f.erase(0x10000, 0x20000),
        Err(SimFlashError::PowerLoss)
    ));
    let changed = changed_offsets(&snap, f.contents());
    assert!(!changed.is_empty());
    assert!(changed.iter().all(|i| (0x10000..0x20000).contains(i)));
}

#[test]
fn mismatched_torn_kind_is_skipped() {
    let mut f = flash().with_fault(Fault::new(0, FaultKind::TornErase { scramble: false }, 1));
    f.write(0, &[0; 4]).expect("program completes normally");
    assert_eq!(f.fault_status(), Some(FaultStatus::Skipped));
    assert!(!f.fault_fired());
    assert!(f.is_powered());
    let mut f = flash().with_fault(Fault::new(0, FaultKind::TornProgram, 1));
    f.erase_sector(0).expect("erase completes normally");
    assert_eq!(f.fault_status(), Some(FaultStatus::Skipped));
}

#[test]
fn fault_index_counts_mutating_ops_from_arming_and_skips_reads() {
    let mut f = flash();
    f.write(0, &[0; 4]).expect("before arming");
    f.arm_fault(Fault::cut_before(1));
    assert_eq!(f.fault_status(), Some(FaultStatus::Armed));
    let mut buf = [0u8; 16];
    f.read(0, &mut buf).expect("reads do not count");
    f.write(4, &[0; 4]).expect("op 0 after arming");
    f.read(0, &mut buf).expect("reads do not count");
    // A power cycle before the fault fires keeps it armed.
    f.power_cycle();
    assert!(matches!(f.write(8, &[0; 4]), Err(SimFlashError::PowerLoss)));
    assert_eq!(
        f.log().last().and_then(|r| r.op_index),
        Some(2),
        "absolute index"
    );
    assert_eq!(&f.contents()[8..12], &[0xFF; 4], "op 2 did not happen");
    f.disarm_fault();
    assert_eq!(f.fault_status(), None);
    assert!(!f.is_powered(), "disarming does not restore power");
}

#[test]
fn injected_write_errors_are_transient() {
    let mut f = flash();
    f.inject_write_errors(1, 2);
    f.write(0, &[1; 4]).expect("op 0 succeeds");
    assert!(matches!(
        f.write(4, &[2; 4]),
        Err(SimFlashError::Injected { op_index: 1 })
    ));
    assert!(matches!(
        f.erase_sector(0),
        Err(SimFlashError::Injected { op_index: 2 })
    ));
    assert!(f.is_powered(), "no power loss");
    assert_eq!(f.log().last().map(|r| r.outcome), Some(OpOutcome::Failed));
    assert_eq!(read_vec(&mut f, 0, 8), [1, 1, 1, 1, 255, 255, 255, 255]);
    f.write(4, &[2; 4]).expect("op 3 succeeds again");
    assert_eq!(f.counters().program_ops, 2);
    assert_eq!(f.mutating_ops(), 4);

    f.inject_write_errors(0, u64::MAX);
    assert!(f.write(8, &[0; 4]).is_err());
    f.clear_write_errors();
    f.write(8, &[0; 4]).expect("cleared");
}

#[test]
fn enumerating_every_fault_of_a_recorded_scenario() {
    // Scenario: erase the two written sectors, write a record into each.
    fn scenario(f: &mut SimFlash) -> Result<(), SimFlashError> {
        f.erase(0, 0x2000)?;
        f.write(0, &[0xA5; 32])?;
        f.write(0x1000, &[0x5A; 32])
    }
    let (base, snap) = seeded_flash();
    let clean = base.record(scenario);
    assert!(clean.value.is_ok());
    assert_eq!(clean.mutating_ops, 4);
    let faults = clean.faults(0xC0FFEE);
    assert_eq!(faults.len(), 4 + 4 + 3 + 3);
    let mut outcomes = HashSet::new();
    for fault in faults {
        let mut f = base.fork().with_fault(fault);
        let r = scenario(&mut f);
        assert!(matches!(r, Err(SimFlashError::PowerLoss)), "{fault}: {r:?}");
        assert!(f.fault_fired(), "{fault}");
        f.power_cycle();
        // Outside the scenario's sectors nothing changed, whatever the fault.
        assert_eq!(&f.contents()[0x2000..], &snap[0x2000..], "{fault}");
        outcomes.insert(f.snapshot());
    }
    assert!(outcomes.len() > 8, "faults lead to different states");
    assert_eq!(base.mutating_ops(), 2, "the base flash is untouched");
}

#[test]
fn erase_counts_per_sector_persist_beside_the_flash() {
    use otter_sim::embedded_storage::nor_flash::NorFlash;
    let dir = tempfile::tempdir().expect("tempdir");
    let wear = dir.path().join("wear.bin");
    let mut f = SimFlash::new(1 << 20).expect("flash");
    assert_eq!(f.erase_counts(), None);
    f.track_wear(Some(&wear)).expect("track");
    f.erase(0x2000, 0x3000).expect("sector");
    f.erase(0x2000, 0x3000).expect("sector");
    f.erase_block64(0x10000).expect("block");
    f.write(0x4000, &[0u8; 4]).expect("program");
    let c = f.erase_counts().expect("tracking").to_vec();
    assert_eq!(c.len(), 256);
    assert_eq!((c[1], c[2], c[3], c[4]), (0, 2, 0, 0));
    assert!(c[16..32].iter().all(|&n| n == 1), "{:?}", &c[16..32]);
    assert_eq!(c.iter().sum::<u32>(), 18);
    let bytes = std::fs::read(&wear).expect("wear file");
    assert_eq!(bytes.len(), 1024);
    assert_eq!(&bytes[8..12], &2u32.to_le_bytes());
    // A later run goes on counting from the file.
    let mut g = SimFlash::new(1 << 20).expect("flash");
    g.track_wear(Some(&wear)).expect("track");
    g.erase(0x2000, 0x3000).expect("sector");
    assert_eq!(g.erase_counts().expect("tracking")[2], 3);
}

#[test]
fn a_virtual_device_keeps_its_wear_and_a_new_one_starts_without() {
    use otter_sim::device::{create, CreateOptions, VirtualDevice, WEAR_FILE};
    use otter_sim::embedded_storage::nor_flash::NorFlash;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = CreateOptions::new();
    opts.flash_size = 4 << 20;
    opts.partitions = Some(b"nvs, data, nvs, 0x9000, 0x5000\notadata, data, ota, 0xe000, 0x2000\nota_0, app, ota_0, 0x10000, 0x100000\nota_1, app, ota_1, 0x110000, 0x100000\n".to_vec());
    create(dir.path(), &opts).expect("create");
    {
        let mut dev = VirtualDevice::open(dir.path()).expect("open");
        dev.flash().erase(0x110000, 0x112000).expect("erase");
        assert_eq!(dev.flash().erase_counts().expect("tracked")[0x110], 1);
    }
    {
        let mut dev = VirtualDevice::open(dir.path()).expect("open again");
        assert_eq!(dev.flash().erase_counts().expect("tracked")[0x111], 1);
    }
    opts.force = true;
    create(dir.path(), &opts).expect("re-create");
    assert!(
        !dir.path().join(WEAR_FILE).exists(),
        "a new device has no wear"
    );
    let mut dev = VirtualDevice::open(dir.path()).expect("open new");
    assert!(dev
        .flash()
        .erase_counts()
        .expect("tracked")
        .iter()
        .all(|&c| c == 0));
}
