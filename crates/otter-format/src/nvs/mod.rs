//! ESP-IDF NVS partitions (`nvs_flash`): read keys, generate a partition image
//! the way `esp-idf-nvs-partition-gen` does, and set or erase a key in place
//! the way `nvs_set_u8` / `nvs_set_u32` / `nvs_set_str` / `nvs_erase_key` do,
//! as a list of flash writes ([`plan_set`], [`plan_erase_key`]).
//!
//! # Layout
//!
//! A partition is a run of 4096-byte pages:
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 4 | page state: 0xFFFFFFFF uninitialized, 0xFFFFFFFE active, 0xFFFFFFFC full, 0xFFFFFFF8 freeing, 0xFFFFFFF0 corrupt, 0 invalid |
//! | 4 | 4 | sequence number (pages are ordered by it, not by address) |
//! | 8 | 1 | version: 0xFE (format 2) or 0xFF (format 1) |
//! | 9 | 19 | reserved, 0xFF |
//! | 28 | 4 | CRC32 of bytes 4..28 |
//! | 32 | 32 | entry-state bitmap, 2 bits per entry, LSB first: 0b11 empty, 0b10 written, 0b00 erased |
//! | 64 | 126 × 32 | entries |
//!
//! An entry (an item header) is:
//!
//! | Offset | Size | Field |
//! |---|---|---|
//! | 0 | 1 | namespace index (0 holds the namespace names) |
//! | 1 | 1 | type ([`ItemType`]) |
//! | 2 | 1 | span: entries used, header included |
//! | 3 | 1 | chunk index (0xFF unless a blob data chunk) |
//! | 4 | 4 | CRC32 of bytes 0..4 and 8..32 |
//! | 8 | 16 | key, NUL-padded, at most 15 bytes |
//! | 24 | 8 | primitive value (little-endian, rest 0xFF), or data size u16, reserved 0xFFFF, data CRC32 |
//!
//! Variable-length data (strings, blobs) follows its header in `span - 1`
//! entries of the same page. A namespace is a `u8` item in namespace 0 whose
//! key is the name and whose value is its index (1..=254).
//!
//! The CRC is `esp_rom_crc32_le(0xFFFFFFFF, ..)`, i.e. Python's
//! `zlib.crc32(data, 0xFFFFFFFF)`.
//!
//! # What otter does and does not do
//!
//! [`Nvs::parse`] reads what ESP-IDF's `nvs_flash_init` would see, including
//! the intermediate states a power cut leaves (a torn entry whose state bit
//! was never set, a variable-length item whose data entries were never marked
//! written, an old and a new copy of a key: the later one wins). Damage that
//! ESP-IDF would silently repair (bad CRCs) is reported as an [`NvsError`].
//! [`Nvs::load`] reads as a device does, skipping that damage as ESP-IDF does.
//! Encrypted NVS is not supported and blobs are not written in place.
//! [`plan_set`] collects garbage as ESP-IDF's `PageManager` does (a full page
//! with erased entries is copied to the spare page and erased, under the
//! page-state protocol that makes a power cut at any point recoverable), so
//! a key can be rewritten forever: [`NvsError::Full`] only when live items
//! fill the partition.

mod error;
mod layout;
mod writer;

#[cfg(test)]
mod gc_tests;
#[cfg(test)]
mod tests;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

pub use error::{DataFault, NvsError};
pub use writer::{
    apply, plan_erase_key, plan_set, plan_set_str, plan_set_u32, plan_set_u8, set_u8, FlashOp,
    NvsWriter,
};

/// Size of one NVS page (one flash sector).
pub const PAGE_SIZE: usize = 4096;
/// Size of one entry, and of the page header and the state bitmap.
pub const ENTRY_SIZE: usize = 32;
/// Entries per page.
pub const ENTRY_COUNT: usize = 126;
/// Offset of the entry-state bitmap in a page.
pub const BITMAP_OFFSET: usize = 32;
/// Offset of the first entry in a page.
pub const FIRST_ENTRY_OFFSET: usize = 64;
/// Longest key or namespace name, in bytes (the 16th byte is the NUL).
pub const MAX_KEY_LEN: usize = 15;
/// Longest string (NUL included) format 2 stores, as the generator enforces.
pub const MAX_STRING_SIZE: usize = 4000;
/// Version byte of NVS format 2, which ESP-IDF and the generator write.
pub const VERSION_2: u8 = 0xFE;
/// Version byte of NVS format 1.
pub const VERSION_1: u8 = 0xFF;
/// Chunk index of every item but blob data chunks.
pub const CHUNK_ANY: u8 = 0xFF;

/// The NVS CRC of `data`: `esp_rom_crc32_le(0xFFFFFFFF, ..)`, the same
/// CRC otadata uses.
fn crc32(data: &[u8]) -> u32 {
    crate::otadata::esp_crc32(data)
}

/// The state of a page, from the word at its offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PageState {
    /// Erased, never used (0xFFFFFFFF).
    Uninitialized,
    /// The page new items go to (0xFFFFFFFE).
    Active,
    /// No more items go here (0xFFFFFFFC).
    Full,
    /// Being emptied into a new page by garbage collection (0xFFFFFFF8).
    Freeing,
    /// Marked corrupt by ESP-IDF (0xFFFFFFF0).
    Corrupt,
    /// Marked invalid by ESP-IDF (0).
    Invalid,
}

impl PageState {
    /// The state word on flash.
    pub const fn word(self) -> u32 {
        match self {
            PageState::Uninitialized => 0xFFFF_FFFF,
            PageState::Active => 0xFFFF_FFFE,
            PageState::Full => 0xFFFF_FFFC,
            PageState::Freeing => 0xFFFF_FFF8,
            PageState::Corrupt => 0xFFFF_FFF0,
            PageState::Invalid => 0,
        }
    }

    /// The state for a word on flash, if it is one of ESP-IDF's.
    pub const fn from_word(word: u32) -> Option<Self> {
        Some(match word {
            0xFFFF_FFFF => PageState::Uninitialized,
            0xFFFF_FFFE => PageState::Active,
            0xFFFF_FFFC => PageState::Full,
            0xFFFF_FFF8 => PageState::Freeing,
            0xFFFF_FFF0 => PageState::Corrupt,
            0 => PageState::Invalid,
            _ => return None,
        })
    }
}

/// An item's type byte (`nvs::ItemType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ItemType {
    /// `uint8_t` (also namespace entries).
    U8,
    /// `int8_t`.
    I8,
    /// `uint16_t`.
    U16,
    /// `int16_t`.
    I16,
    /// `uint32_t`.
    U32,
    /// `int32_t`.
    I32,
    /// `uint64_t`.
    U64,
    /// `int64_t`.
    I64,
    /// NUL-terminated string, variable length.
    Str,
    /// Format-1 blob, variable length in one item.
    Blob,
    /// Format-2 blob data chunk.
    BlobData,
    /// Format-2 blob index (size, chunk count, first chunk).
    BlobIndex,
}

impl ItemType {
    /// The type byte on flash.
    pub const fn byte(self) -> u8 {
        match self {
            ItemType::U8 => 0x01,
            ItemType::I8 => 0x11,
            ItemType::U16 => 0x02,
            ItemType::I16 => 0x12,
            ItemType::U32 => 0x04,
            ItemType::I32 => 0x14,
            ItemType::U64 => 0x08,
            ItemType::I64 => 0x18,
            ItemType::Str => 0x21,
            ItemType::Blob => 0x41,
            ItemType::BlobData => 0x42,
            ItemType::BlobIndex => 0x48,
        }
    }

    /// The type for a byte on flash, if known.
    pub const fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => ItemType::U8,
            0x11 => ItemType::I8,
            0x02 => ItemType::U16,
            0x12 => ItemType::I16,
            0x04 => ItemType::U32,
            0x14 => ItemType::I32,
            0x08 => ItemType::U64,
            0x18 => ItemType::I64,
            0x21 => ItemType::Str,
            0x41 => ItemType::Blob,
            0x42 => ItemType::BlobData,
            0x48 => ItemType::BlobIndex,
            _ => return None,
        })
    }

    /// Whether the data follows the header in further entries.
    pub const fn is_variable_length(self) -> bool {
        matches!(self, ItemType::Str | ItemType::Blob | ItemType::BlobData)
    }
}

/// A value stored under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Value {
    /// `nvs_set_u8`.
    U8(u8),
    /// `nvs_set_i8`.
    I8(i8),
    /// `nvs_set_u16`.
    U16(u16),
    /// `nvs_set_i16`.
    I16(i16),
    /// `nvs_set_u32`.
    U32(u32),
    /// `nvs_set_i32`.
    I32(i32),
    /// `nvs_set_u64`.
    U64(u64),
    /// `nvs_set_i64`.
    I64(i64),
    /// `nvs_set_str`, without the NUL.
    Str(String),
    /// `nvs_set_blob`, chunks joined.
    Blob(Vec<u8>),
}

/// The keys of an NVS partition, as ESP-IDF would read them.
///
/// Keys are looked up by namespace and key. Where ESP-IDF keeps items of
/// different types under one key apart, otter keeps the later one only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nvs {
    /// Namespace index to name.
    namespaces: BTreeMap<u8, String>,
    /// Namespace name to index (the latest namespace entry for a name wins).
    by_name: BTreeMap<String, u8>,
    /// (namespace index, key) to value.
    values: BTreeMap<(u8, String), Value>,
}

impl Nvs {
    /// Reads every page of `partition` (a whole NVS partition).
    ///
    /// Pages in the states active, full and freeing are read in sequence-number
    /// order; erased entries are skipped; the latest copy of a key wins.
    ///
    /// Damage (a bad CRC, an unknown state or type) is an error naming the
    /// page and entry: this is the reader for tools that inspect a partition.
    /// A device reads with [`Nvs::load`].
    pub fn parse(partition: &[u8]) -> Result<Nvs, NvsError> {
        Nvs::from_scan(layout::Scan::read(partition)?, layout::ReadMode::Strict)
    }

    /// Reads `partition` as ESP-IDF's `nvs_flash_init` does: a page whose
    /// header is damaged (what a torn page write or erase leaves) is not
    /// read, and a damaged entry is skipped, as ESP-IDF skips (and erases)
    /// it. Only a partition whose size is not a whole number of pages is an
    /// error.
    pub fn load(partition: &[u8]) -> Result<Nvs, NvsError> {
        let mode = layout::ReadMode::Repair;
        Nvs::from_scan(layout::Scan::read_with(partition, mode)?, mode)
    }

    fn from_scan(scan: layout::Scan, mode: layout::ReadMode) -> Result<Nvs, NvsError> {
        let mut namespaces = BTreeMap::new();
        let mut by_name = BTreeMap::new();
        for item in scan.items.iter().filter(|i| i.ns == 0) {
            // Indices 0 (the namespace entries' own) and 255 ("any") name
            // no namespace; ESP-IDF never assigns them.
            if let layout::Payload::Value(Value::U8(idx @ 1..=254)) = &item.payload {
                namespaces.insert(*idx, item.key.clone());
                by_name.insert(item.key.clone(), *idx);
            }
        }
        let mut values = BTreeMap::new();
        for item in scan.items.iter().filter(|i| i.ns != 0) {
            if !namespaces.contains_key(&item.ns) {
                if mode == layout::ReadMode::Repair {
                    continue;
                }
                return Err(NvsError::UnknownNamespace {
                    page: item.page,
                    entry: item.entry,
                    ns: item.ns,
                });
            }
            if let layout::Payload::Value(v) = &item.payload {
                values.insert((item.ns, item.key.clone()), v.clone());
            }
        }
        match scan.blobs() {
            Ok(blobs) => {
                for ((ns, key), v) in blobs {
                    values.insert((ns, key), Value::Blob(v));
                }
            }
            Err(_) if mode == layout::ReadMode::Repair => {}
            Err(e) => return Err(e),
        }
        Ok(Nvs {
            namespaces,
            by_name,
            values,
        })
    }

    /// The namespace names, by index.
    pub fn namespaces(&self) -> impl Iterator<Item = (u8, &str)> {
        self.namespaces.iter().map(|(i, n)| (*i, n.as_str()))
    }

    /// The value of `key` in namespace `ns`, whatever its type.
    pub fn value(&self, ns: &str, key: &str) -> Option<&Value> {
        let idx = *self.by_name.get(ns)?;
        self.values.get(&(idx, String::from(key)))
    }

    /// `nvs_get_u8`.
    pub fn get_u8(&self, ns: &str, key: &str) -> Option<u8> {
        match self.value(ns, key)? {
            Value::U8(v) => Some(*v),
            _ => None,
        }
    }

    /// `nvs_get_u32`.
    pub fn get_u32(&self, ns: &str, key: &str) -> Option<u32> {
        match self.value(ns, key)? {
            Value::U32(v) => Some(*v),
            _ => None,
        }
    }

    /// `nvs_get_i32`.
    pub fn get_i32(&self, ns: &str, key: &str) -> Option<i32> {
        match self.value(ns, key)? {
            Value::I32(v) => Some(*v),
            _ => None,
        }
    }

    /// `nvs_get_str`, without the NUL.
    pub fn get_str(&self, ns: &str, key: &str) -> Option<&str> {
        match self.value(ns, key)? {
            Value::Str(v) => Some(v.as_str()),
            _ => None,
        }
    }

    /// `nvs_get_blob`.
    pub fn get_blob(&self, ns: &str, key: &str) -> Option<&[u8]> {
        match self.value(ns, key)? {
            Value::Blob(v) => Some(v.as_slice()),
            _ => None,
        }
    }

    /// Every (namespace, key, value), by namespace index then key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.values.iter().filter_map(|((ns, key), v)| {
            let name = self.namespaces.get(ns)?;
            Some((name.as_str(), key.as_str(), v))
        })
    }

    /// Number of keys (namespace entries not counted).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}
