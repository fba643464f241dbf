//! Slot discovery from the on-flash partition table.
//!
//! [`SlotMap::read`] reads the table row by row (32 bytes of stack, no table
//! buffer) with the rules of the bootloader's `esp_partition_table_verify`:
//! entries start with `AA 50`, an optional `EB EB` MD5 row must match the rows
//! before it, the table ends at an all-FF row, and every partition must lie
//! inside the flash.
//!
//! Two slot counts matter and ESP-IDF uses both:
//! - [`SlotMap::boot_app_count`]: what the bootloader counts, every app whose
//!   subtype is `0x1N`, and which it uses in `(seq - 1) % count`;
//! - [`SlotMap::ota_count`]: what the app side counts, OTA slots contiguous
//!   from `ota_0` (`esp_ota_get_app_partition_count`), used when writing otadata.
//!
//! They differ only for broken layouts (a gap such as ota_0 + ota_2), which
//! `otter partitions check` flags.

use core::fmt;

use embedded_storage::nor_flash::ReadNorFlash;
use md5::{Digest, Md5};
use otter_format::partition::{Label, Partition, ENTRY_MAGIC, ENTRY_SIZE, MAX_ROWS, MD5_MAGIC};

use crate::error::{OtaError, TableFault};

/// An app slot, named as ESP-IDF names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotId {
    /// The factory app (`app, factory`).
    Factory,
    /// OTA slot `ota_N`.
    Ota(u8),
    /// The test app (`app, test`).
    Test,
}

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Factory => f.write_str("factory"),
            Self::Ota(n) => write!(f, "ota_{n}"),
            Self::Test => f.write_str("test"),
        }
    }
}

/// A partition's place on flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Flash offset.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    /// The partition's label.
    pub label: Label,
}

impl Region {
    fn of(p: &Partition) -> Self {
        Self {
            offset: p.offset,
            size: p.size,
            label: p.label,
        }
    }

    /// One past the last byte.
    pub fn end(&self) -> u32 {
        self.offset.saturating_add(self.size)
    }
}

/// The partitions the OTA engine works with, read from flash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    table_offset: u32,
    factory: Option<Region>,
    test: Option<Region>,
    otadata: Option<Region>,
    ota: [Option<Region>; 16],
    boot_app_count: u8,
    entries: u8,
}

impl SlotMap {
    /// Reads and checks the partition table at `table_offset`, as the
    /// bootloader does.
    pub fn read<F: ReadNorFlash>(
        flash: &mut F,
        table_offset: u32,
    ) -> Result<Self, OtaError<F::Error>> {
        let capacity = u32::try_from(flash.capacity()).unwrap_or(u32::MAX);
        let mut map = Self {
            table_offset,
            factory: None,
            test: None,
            otadata: None,
            ota: [None; 16],
            boot_app_count: 0,
            entries: 0,
        };
        let mut md5 = Md5::new();
        let mut seen_md5 = false;
        let fault = |row: usize, fault| OtaError::Table {
            offset: table_offset,
            row: u8::try_from(row).unwrap_or(u8::MAX),
            fault,
        };
        for row in 0..MAX_ROWS {
            let mut buf = [0u8; ENTRY_SIZE];
            let at = table_offset.saturating_add((row * ENTRY_SIZE) as u32);
            flash.read(at, &mut buf).map_err(OtaError::Flash)?;
            let magic = u16::from_le_bytes([buf[0], buf[1]]);
            if magic == ENTRY_MAGIC {
                md5.update(buf);
                let Some(p) = Partition::from_bytes(&buf) else {
                    return Err(fault(row, TableFault::BadMagic));
                };
                if p.offset > capacity || p.size > capacity - p.offset {
                    return Err(OtaError::PartitionOutOfFlash {
                        offset: p.offset,
                        size: p.size,
                        capacity,
                    });
                }
                map.add(&p);
            } else if magic == MD5_MAGIC {
                if seen_md5 {
                    return Err(fault(row, TableFault::DuplicateMd5));
                }
                seen_md5 = true;
                let digest: [u8; 16] = md5.clone().finalize().into();
                if buf[16..] != digest {
                    return Err(fault(row, TableFault::Md5Mismatch));
                }
            } else if magic == 0xFFFF && buf[2] == 0xFF && buf[3] == 0xFF {
                if row == 0 {
                    return Err(fault(row, TableFault::Empty));
                }
                break;
            } else {
                return Err(fault(row, TableFault::BadMagic));
            }
        }
        Ok(map)
    }

    fn add(&mut self, p: &Partition) {
        self.entries = self.entries.saturating_add(1);
        let region = Region::of(p);
        if p.is_factory() {
            self.factory = Some(region);
        } else if p.is_test() {
            self.test = Some(region);
        } else if p.is_otadata() {
            self.otadata = Some(region);
        } else if p.is_app() && (0x10..=0x1F).contains(&p.subtype.0) {
            if let Some(slot) = self.ota.get_mut(usize::from(p.subtype.0 & 0x0F)) {
                *slot = Some(region);
            }
            self.boot_app_count = self.boot_app_count.saturating_add(1);
        }
    }

    /// Flash offset of the table this map was read from.
    pub fn table_offset(&self) -> u32 {
        self.table_offset
    }

    /// The factory app partition.
    pub fn factory(&self) -> Option<&Region> {
        self.factory.as_ref()
    }

    /// The test app partition.
    pub fn test(&self) -> Option<&Region> {
        self.test.as_ref()
    }

    /// The otadata partition.
    pub fn otadata(&self) -> Option<&Region> {
        self.otadata.as_ref()
    }

    /// OTA slot `ota_index`.
    pub fn ota(&self, index: u8) -> Option<&Region> {
        self.ota.get(usize::from(index)).and_then(Option::as_ref)
    }

    /// A slot's region.
    pub fn region(&self, slot: SlotId) -> Option<&Region> {
        match slot {
            SlotId::Factory => self.factory(),
            SlotId::Test => self.test(),
            SlotId::Ota(n) => self.ota(n),
        }
    }

    /// The slot whose partition starts at `offset`.
    pub fn slot_at(&self, offset: u32) -> Option<SlotId> {
        self.slots()
            .find(|(_, r)| r.offset == offset)
            .map(|(s, _)| s)
    }

    /// Every app slot with its region: factory, ota_0..ota_15, test.
    pub fn slots(&self) -> impl Iterator<Item = (SlotId, &Region)> {
        let factory = self.factory.as_ref().map(|r| (SlotId::Factory, r));
        let test = self.test.as_ref().map(|r| (SlotId::Test, r));
        let ota = self
            .ota
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|r| (SlotId::Ota(i as u8), r)));
        factory.into_iter().chain(ota).chain(test)
    }

    /// Apps with subtype `0x1N`, as the bootloader counts them.
    pub fn boot_app_count(&self) -> u8 {
        self.boot_app_count
    }

    /// OTA slots contiguous from `ota_0`, as `esp_ota_ops` counts them.
    pub fn ota_count(&self) -> u8 {
        let n = self.ota.iter().take_while(|s| s.is_some()).count();
        n as u8
    }

    /// Number of partition entries in the table.
    pub fn entries(&self) -> u8 {
        self.entries
    }

    /// `esp_ota_get_next_update_partition(running)`: the first OTA slot after
    /// the running one, else the first OTA slot. From factory or test it is
    /// the lowest OTA slot. With a single OTA slot that is running, it is that
    /// same slot (the session then refuses it).
    pub fn next_update_slot(&self, running: Option<SlotId>) -> Option<SlotId> {
        let first = (0..16u8).find(|&i| self.ota(i).is_some()).map(SlotId::Ota);
        match running {
            Some(SlotId::Ota(n)) => ((n + 1)..16)
                .find(|&i| self.ota(i).is_some())
                .map(SlotId::Ota)
                .or(first),
            _ => first,
        }
    }

    /// The OTA slot that otadata entry `seq` selects, in the app side's count.
    pub fn slot_for_seq(&self, seq: u32) -> Option<SlotId> {
        let n = u32::from(self.ota_count());
        if n == 0 {
            return None;
        }
        u8::try_from(seq.wrapping_sub(1) % n).ok().map(SlotId::Ota)
    }
}
