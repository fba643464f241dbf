//! The binary partition table, without an allocator: [`PartitionTable`] holds up
//! to [`MAX_ENTRIES`] entries inline, decodes the 32-byte rows with or without
//! the MD5 row, encodes them back byte for byte, and answers the questions the
//! OTA engine asks (where is otadata, which OTA slots exist).
//!
//! # Framing
//!
//! | Rows                | Content                                                      |
//! |---------------------|--------------------------------------------------------------|
//! | 0..n                | entries, magic `AA 50`, in stored (CSV) order, not sorted    |
//! | n (optional)        | MD5 row: `EB EB`, 14 x `FF`, MD5 of rows 0..n                |
//! | next                | end marker: 32 x `FF`                                        |
//! | rest, up to 0xC00   | `FF` padding                                                 |
//!
//! # End of input without an end marker
//!
//! `gen_esp32part.py` rejects input that ends (at a row boundary) before a row of
//! 32 x `FF`; on a device the question never arises, because the bootloader and
//! the app read a whole sector and the erased flash after the last row *is* the
//! marker. Old tools wrote only the entries (esptool's 96-byte
//! `partitions_singleapp.bin`), and such a file, written to flash, is read by
//! ESP-IDF as a complete table. So [`PartitionTable::decode`] accepts end of
//! input at a row boundary as the end of the table and says so in
//! [`DecodeInfo::end`] ([`TableEnd::EndOfInput`]); callers that want the tool's
//! strictness check that field. Input that ends *inside* a row is always an
//! error ([`BinaryError::Truncated`]), as is a 96th entry.

use md5::{Digest, Md5};

use super::{
    BinaryError, Label, Partition, PartitionType, SubType, ENTRY_MAGIC, ENTRY_SIZE, MAX_ENTRIES,
    MAX_TABLE_LEN, MD5_MAGIC,
};

const END_MARKER: [u8; ENTRY_SIZE] = [0xFF; ENTRY_SIZE];
const EMPTY: Partition = Partition {
    ty: PartitionType(0xFF),
    subtype: SubType(0xFF),
    offset: 0,
    size: 0,
    label: Label([0; 16]),
    flags: super::Flags(0),
};

/// How to decode a binary table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Check rows starting with `EB EB` as MD5 rows (the default). When false
    /// they are read as entries and fail with [`BinaryError::InvalidMagic`], as
    /// `gen_esp32part.py --disable-md5sum` does.
    pub verify_md5: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { verify_md5: true }
    }
}

/// How the decoded table ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableEnd {
    /// A row of 32 x `FF` at this row index.
    Marker {
        /// Row index of the end marker.
        row: usize,
    },
    /// The input ended at a row boundary with no end marker (a legacy table
    /// with no padding). `gen_esp32part.py` rejects this; ESP-IDF on a device
    /// sees erased flash there and accepts it.
    EndOfInput,
}

/// What [`PartitionTable::decode`] found besides the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeInfo {
    /// Row index of the (verified) MD5 row, if there was one. With several MD5
    /// rows (never written by ESP-IDF), the last.
    pub md5_row: Option<usize>,
    /// How the table ended.
    pub end: TableEnd,
}

/// A partition table of at most [`MAX_ENTRIES`] entries, stored inline (no heap).
#[derive(Clone, PartialEq, Eq)]
pub struct PartitionTable {
    entries: [Partition; MAX_ENTRIES],
    len: usize,
}

impl core::fmt::Debug for PartitionTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.entries()).finish()
    }
}

impl Default for PartitionTable {
    fn default() -> Self {
        Self::new()
    }
}

impl PartitionTable {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            entries: [EMPTY; MAX_ENTRIES],
            len: 0,
        }
    }

    /// A table of `partitions`, in this order.
    pub fn from_partitions(partitions: &[Partition]) -> Result<Self, BinaryError> {
        let mut t = Self::new();
        for p in partitions {
            t.push(*p)?;
        }
        Ok(t)
    }

    /// Appends an entry; fails when the table already holds [`MAX_ENTRIES`].
    pub fn push(&mut self, p: Partition) -> Result<(), BinaryError> {
        match self.entries.get_mut(self.len) {
            Some(slot) => {
                *slot = p;
                self.len += 1;
                Ok(())
            }
            None => Err(BinaryError::TooManyEntries {
                index: self.len,
                offset: self.len.saturating_mul(ENTRY_SIZE),
            }),
        }
    }

    /// The entries, in stored order.
    pub fn entries(&self) -> &[Partition] {
        self.entries.get(..self.len).unwrap_or(&[])
    }

    /// Mutable access to the entries (to edit them in place).
    pub fn entries_mut(&mut self) -> &mut [Partition] {
        self.entries.get_mut(..self.len).unwrap_or(&mut [])
    }

    /// Iterates over the entries in stored order.
    pub fn iter(&self) -> core::slice::Iter<'_, Partition> {
        self.entries().iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Decodes a binary table with the default options (MD5 rows verified).
    /// See the module docs for what happens when the end marker is missing.
    pub fn from_binary(input: &[u8]) -> Result<Self, BinaryError> {
        Self::decode(input, &DecodeOptions::default()).map(|(t, _)| t)
    }

    /// Decodes a binary table, reporting the MD5 row and how the table ended.
    ///
    /// Rows are read until a row of 32 x `FF` (anything after it is ignored,
    /// like `gen_esp32part.py`) or the end of the input at a row boundary.
    pub fn decode(input: &[u8], opts: &DecodeOptions) -> Result<(Self, DecodeInfo), BinaryError> {
        let mut table = Self::new();
        let mut md5 = Md5::new();
        let mut md5_row = None;
        for (index, chunk) in input.chunks(ENTRY_SIZE).enumerate() {
            let offset = index.saturating_mul(ENTRY_SIZE);
            let row: &[u8; ENTRY_SIZE] = match chunk.try_into() {
                Ok(r) => r,
                Err(_) => {
                    return Err(BinaryError::Truncated {
                        index,
                        offset,
                        len: input.len(),
                    })
                }
            };
            if *row == END_MARKER {
                return Ok((
                    table,
                    DecodeInfo {
                        md5_row,
                        end: TableEnd::Marker { row: index },
                    },
                ));
            }
            let magic = [row[0], row[1]];
            if opts.verify_md5 && u16::from_le_bytes(magic) == MD5_MAGIC {
                let computed: [u8; 16] = md5.clone().finalize().into();
                let mut stored = [0u8; 16];
                stored.copy_from_slice(&row[16..]);
                if stored != computed {
                    return Err(BinaryError::Md5Mismatch {
                        index,
                        offset,
                        stored,
                        computed,
                    });
                }
                md5_row = Some(index);
                continue;
            }
            md5.update(row);
            let p = Partition::from_bytes(row).ok_or(BinaryError::InvalidMagic {
                index,
                offset,
                magic,
            })?;
            table
                .push(p)
                .map_err(|_| BinaryError::TooManyEntries { index, offset })?;
        }
        Ok((
            table,
            DecodeInfo {
                md5_row,
                end: TableEnd::EndOfInput,
            },
        ))
    }

    /// Encodes the table as `gen_esp32part.py` does: entries in stored order,
    /// the MD5 row if `md5`, then `FF` up to exactly [`MAX_TABLE_LEN`] bytes.
    pub fn to_binary(&self, md5: bool) -> Result<[u8; MAX_TABLE_LEN], BinaryError> {
        let mut out = [0xFF; MAX_TABLE_LEN];
        self.encode_into(md5, &mut out)?;
        Ok(out)
    }

    /// Like [`PartitionTable::to_binary`], into a caller-provided buffer.
    pub fn encode_into(&self, md5: bool, out: &mut [u8; MAX_TABLE_LEN]) -> Result<(), BinaryError> {
        let len = self
            .len
            .saturating_add(usize::from(md5))
            .saturating_mul(ENTRY_SIZE);
        if len >= MAX_TABLE_LEN {
            return Err(BinaryError::TableTooLong {
                entries: self.len,
                md5,
                len,
            });
        }
        out.fill(0xFF);
        let mut hasher = Md5::new();
        let mut rows = out.chunks_exact_mut(ENTRY_SIZE);
        for (p, row) in self.entries().iter().zip(rows.by_ref()) {
            let bytes = p.to_bytes();
            hasher.update(bytes);
            row.copy_from_slice(&bytes);
        }
        if md5 {
            if let Some(row) = rows.next() {
                let digest: [u8; 16] = hasher.finalize().into();
                row[..2].copy_from_slice(&MD5_MAGIC.to_le_bytes());
                row[16..].copy_from_slice(&digest);
            }
        }
        Ok(())
    }

    /// The first entry with this type and subtype.
    pub fn find(&self, ty: PartitionType, subtype: SubType) -> Option<&Partition> {
        self.iter().find(|p| p.ty == ty && p.subtype == subtype)
    }

    /// The entry whose label equals `name` as `gen_esp32part.py` would store it
    /// (its first 16 bytes).
    pub fn find_by_label(&self, name: &str) -> Option<&Partition> {
        let label = Label::new(name);
        self.iter().find(|p| p.label == label)
    }

    /// otadata (data/ota), the boot-slot selection.
    pub fn otadata(&self) -> Option<&Partition> {
        self.iter().find(|p| p.is_otadata())
    }

    /// The factory app.
    pub fn factory(&self) -> Option<&Partition> {
        self.iter().find(|p| p.is_factory())
    }

    /// The test app.
    pub fn test_app(&self) -> Option<&Partition> {
        self.iter().find(|p| p.is_test())
    }

    /// OTA slot `index` (app/ota_`index`), the first such entry.
    pub fn ota_slot(&self, index: u8) -> Option<&Partition> {
        let sub = SubType::ota(index)?;
        self.find(PartitionType::APP, sub)
    }

    /// All OTA slot entries (app/ota_N), in stored order.
    pub fn ota_slots(&self) -> impl Iterator<Item = &Partition> {
        self.iter().filter(|p| p.is_ota_slot())
    }

    /// All app partitions, in stored order.
    pub fn apps(&self) -> impl Iterator<Item = &Partition> {
        self.iter().filter(|p| p.is_app())
    }

    /// The number of OTA slots ESP-IDF's app side uses
    /// (`esp_ota_get_app_partition_count`): how many of ota_0, ota_1, ... exist
    /// without a gap. A table with ota_0 and ota_2 has 1.
    pub fn ota_slot_count(&self) -> u8 {
        let mut n = 0;
        while n < super::MAX_OTA_SLOTS && self.ota_slot(n).is_some() {
            n += 1;
        }
        n
    }

    /// The end of the partition with the highest offset, as
    /// `gen_esp32part.py`'s `flash_size()` computes it (0 for an empty table).
    pub fn flash_end(&self) -> u64 {
        flash_end(self.entries())
    }
}

/// `gen_esp32part.py`'s `flash_size()`: end of the entry with the highest offset
/// (the last such entry in stored order when offsets tie).
pub(crate) fn flash_end(entries: &[Partition]) -> u64 {
    let mut best: Option<&Partition> = None;
    for p in entries {
        // Python sorts descending with a stable sort and takes the first, so on
        // equal offsets the earliest in stored order wins.
        if best.is_none_or(|b| p.offset > b.offset) {
            best = Some(p);
        }
    }
    best.map_or(0, |p| p.end_u64())
}

impl<'a> IntoIterator for &'a PartitionTable {
    type Item = &'a Partition;
    type IntoIter = core::slice::Iter<'a, Partition>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

const _: () = assert!(ENTRY_MAGIC.to_le_bytes()[0] == 0xAA);

#[cfg(test)]
mod tests {
    use super::*;

    fn two_ota() -> PartitionTable {
        let d = PartitionType::DATA;
        let a = PartitionType::APP;
        PartitionTable::from_partitions(&[
            Partition::new(d, SubType::NVS, 0x9000, 0x4000, "nvs"),
            Partition::new(d, SubType::OTADATA, 0xd000, 0x2000, "otadata"),
            Partition::new(d, SubType::PHY, 0xf000, 0x1000, "phy_init"),
            Partition::new(a, SubType::FACTORY, 0x10000, 0x100000, "factory"),
            Partition::new(a, SubType::OTA_0, 0x110000, 0x100000, "ota_0"),
            Partition::new(a, SubType::OTA_1, 0x210000, 0x100000, "ota_1"),
        ])
        .unwrap()
    }

    #[test]
    fn encode_decode_round_trip() {
        let t = two_ota();
        let bin = t.to_binary(true).unwrap();
        assert_eq!(bin.len(), 0xC00);
        let (d, info) = PartitionTable::decode(&bin, &DecodeOptions::default()).unwrap();
        assert_eq!(d, t);
        assert_eq!(info.md5_row, Some(6));
        assert_eq!(info.end, TableEnd::Marker { row: 7 });
        assert_eq!(d.ota_slot_count(), 2);
        assert_eq!(d.otadata().unwrap().offset, 0xd000);
        assert_eq!(d.find_by_label("phy_init").unwrap().offset, 0xf000);
    }

    #[test]
    fn md5_mismatch_names_the_row() {
        let mut bin = two_ota().to_binary(true).unwrap();
        bin[6 * 32 + 20] ^= 1;
        assert_eq!(
            PartitionTable::from_binary(&bin).unwrap_err(),
            match PartitionTable::from_binary(&bin).unwrap_err() {
                e @ BinaryError::Md5Mismatch {
                    index: 6,
                    offset: 0xc0,
                    ..
                } => e,
                e => panic!("{e:?}"),
            }
        );
    }

    #[test]
    fn capacity_limits() {
        let mut t = PartitionTable::new();
        for i in 0..MAX_ENTRIES {
            let off = 0x10000 * (i as u32 + 1);
            t.push(Partition::new(
                PartitionType::DATA,
                SubType::NVS,
                off,
                0x1000,
                "x",
            ))
            .unwrap();
        }
        assert!(t.push(EMPTY).is_err());
        assert!(t.to_binary(false).is_ok());
        assert!(matches!(
            t.to_binary(true),
            Err(BinaryError::TableTooLong {
                entries: 95,
                md5: true,
                len: 3072
            })
        ));
    }

    #[test]
    fn gap_in_ota_slots_counts_like_esp_idf() {
        let mut t = two_ota();
        t.entries_mut()[5].subtype = SubType(0x12);
        assert_eq!(t.ota_slot_count(), 1);
    }
}
