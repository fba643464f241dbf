//! Property test: random operation sequences on `SimFlash` match a plain
//! `Vec<u8>` model of NOR flash, in both program modes, errors included.

use otter_sim::embedded_storage::nor_flash::{NorFlash, NorFlashErrorKind, ReadNorFlash};
use otter_sim::{ProgramMode, SimFlash, SimFlashError, BLOCK64_SIZE, SECTOR_SIZE};
use proptest::prelude::*;

const CAPACITY: usize = 1024 * 1024;
/// Most operations land in the first 128 KiB so they collide often.
const HOT: u32 = 128 * 1024;

#[derive(Debug, Clone)]
enum Op {
    Read { offset: u32, len: u32 },
    Write { offset: u32, data: Vec<u8> },
    Erase { from: u32, to: u32 },
    EraseSector { offset: u32 },
    EraseBlock { offset: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..HOT, 0..600u32).prop_map(|(offset, len)| Op::Read { offset, len }),
        // Mostly aligned writes, sometimes misaligned or out of bounds.
        (0..HOT / 4, prop::collection::vec(any::<u8>(), 1..96usize)).prop_map(|(w, mut data)| {
            data.truncate(data.len() / 4 * 4);
            Op::Write {
                offset: w * 4,
                data,
            }
        }),
        (0..HOT, prop::collection::vec(any::<u8>(), 0..12usize))
            .prop_map(|(offset, data)| Op::Write { offset, data }),
        (
            CAPACITY as u32 - 64..CAPACITY as u32 + 8,
            prop::collection::vec(any::<u8>(), 4..8usize)
        )
            .prop_map(|(offset, data)| Op::Write {
                offset: offset & !3,
                data
            }),
        (0..HOT / SECTOR_SIZE, 0..20u32).prop_map(|(s, n)| Op::Erase {
            from: s * SECTOR_SIZE,
            to: (s + n) * SECTOR_SIZE
        }),
        (0..HOT, 0..HOT).prop_map(|(from, to)| Op::Erase { from, to }),
        (0..HOT / SECTOR_SIZE).prop_map(|s| Op::EraseSector {
            offset: s * SECTOR_SIZE
        }),
        (0..HOT / SECTOR_SIZE).prop_map(|s| Op::EraseBlock {
            offset: s * SECTOR_SIZE
        }),
    ]
}

/// The reference: NOR flash as a byte vector.
struct Model {
    cells: Vec<u8>,
    strict: bool,
}

/// What the model expects an operation to return.
#[derive(Debug, PartialEq)]
enum Expect {
    Ok,
    Kind(NorFlashErrorKind),
    NotErased(u32),
}

impl Model {
    fn range(&self, offset: u32, len: u32, align: u32) -> Option<Expect> {
        if u64::from(offset) + u64::from(len) > self.cells.len() as u64 {
            Some(Expect::Kind(NorFlashErrorKind::OutOfBounds))
        } else if !offset.is_multiple_of(align) || !len.is_multiple_of(align) {
            Some(Expect::Kind(NorFlashErrorKind::NotAligned))
        } else {
            None
        }
    }

    fn erase(&mut self, from: u32, to: u32) {
        self.cells[from as usize..to as usize].fill(0xFF);
    }

    fn apply(&mut self, op: &Op) -> Expect {
        match *op {
            // Strict mode reads in the real driver's 4-byte units.
            Op::Read { offset, len } => self
                .range(offset, len, if self.strict { 4 } else { 1 })
                .unwrap_or(Expect::Ok),
            Op::Write { offset, ref data } => {
                let len = data.len() as u32;
                if let Some(e) = self.range(offset, len, 4) {
                    return e;
                }
                let target = &mut self.cells[offset as usize..][..data.len()];
                if self.strict {
                    if let Some(i) = target.iter().position(|&b| b != 0xFF) {
                        return Expect::NotErased(offset + i as u32);
                    }
                }
                for (c, d) in target.iter_mut().zip(data) {
                    *c &= d;
                }
                Expect::Ok
            }
            Op::Erase { from, to } => {
                if from > to {
                    return Expect::Kind(NorFlashErrorKind::OutOfBounds);
                }
                if let Some(e) = self.range(from, to - from, SECTOR_SIZE) {
                    return e;
                }
                self.erase(from, to);
                Expect::Ok
            }
            Op::EraseSector { offset } => {
                if let Some(e) = self.range(offset, SECTOR_SIZE, SECTOR_SIZE) {
                    return e;
                }
                self.erase(offset, offset + SECTOR_SIZE);
                Expect::Ok
            }
            Op::EraseBlock { offset } => {
                if let Some(e) = self.range(offset, BLOCK64_SIZE, BLOCK64_SIZE) {
                    return e;
                }
                self.erase(offset, offset + BLOCK64_SIZE);
                Expect::Ok
            }
        }
    }
}

fn run(flash: &mut SimFlash, op: &Op) -> (Expect, Option<Vec<u8>>) {
    let (result, read) = match *op {
        Op::Read { offset, len } => {
            let mut buf = vec![0u8; len as usize];
            let r = flash.read(offset, &mut buf);
            let ok = r.is_ok();
            (r, ok.then_some(buf))
        }
        Op::Write { offset, ref data } => (flash.write(offset, data), None),
        Op::Erase { from, to } => (flash.erase(from, to), None),
        Op::EraseSector { offset } => (flash.erase_sector(offset), None),
        Op::EraseBlock { offset } => (flash.erase_block64(offset), None),
    };
    let expect = match result {
        Ok(()) => Expect::Ok,
        Err(SimFlashError::ProgramNotErased { offset }) => Expect::NotErased(offset),
        Err(e) => Expect::Kind(otter_sim::embedded_storage::nor_flash::NorFlashError::kind(
            &e,
        )),
    };
    (expect, read)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn simflash_matches_reference_model(
        relaxed in any::<bool>(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mode = if relaxed { ProgramMode::Relaxed } else { ProgramMode::Strict };
        let mut flash = SimFlash::new(CAPACITY).expect("valid").with_mode(mode);
        let mut model = Model { cells: vec![0xFF; CAPACITY], strict: !relaxed };
        let mut programmed = 0u64;
        for (i, op) in ops.iter().enumerate() {
            let expected = model.apply(op);
            let (got, read) = run(&mut flash, op);
            prop_assert_eq!(&got, &expected, "op {} {:?}", i, op);
            if let (Some(buf), Op::Read { offset, .. }) = (read, op) {
                prop_assert_eq!(&buf[..], &model.cells[*offset as usize..][..buf.len()]);
            }
            if let (Expect::Ok, Op::Write { data, .. }) = (&expected, op) {
                programmed += data.len() as u64;
            }
        }
        prop_assert!(flash.contents() == &model.cells[..], "contents diverged");
        prop_assert_eq!(flash.counters().bytes_programmed, programmed);
    }
}
