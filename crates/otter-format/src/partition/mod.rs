//! Partition tables: the 32-byte binary entries ESP-IDF's bootloader reads, the
//! CSV grammar of `gen_esp32part.py`, its validation, and otter's own lints for
//! OTA layouts.
//!
//! # Layers
//!
//! - This module: the entry type [`Partition`], type/subtype numbers with their
//!   `gen_esp32part.py` keywords, and the framing constants.
//! - [`binary`]: [`PartitionTable`], a fixed-capacity table decoded from and
//!   encoded to the 0xC00-byte binary, without an allocator; plus the queries the
//!   OTA engine needs (otadata, factory, OTA slots).
//! - [`int`]: Python's `int(v, 0)` and `gen_esp32part`'s `parse_int`.
//! - `csv` (feature `alloc`): the CSV grammar with auto-placement, and `to_csv`.
//! - [`validate`]: `gen_esp32part`'s `verify` checks, in its order.
//! - [`lint`]: otter's OTA-layout lints and the per-slot fit report.
//! - `suggest` (feature `alloc`): a layout for a given app size and flash size.
//!
//! # Entry layout (`esp_partition_info_t`, little-endian)
//!
//! | Offset | Len | Field   | Notes                                                   |
//! |-------:|----:|---------|---------------------------------------------------------|
//! | 0      | 2   | magic   | `AA 50` ([`ENTRY_MAGIC`])                               |
//! | 2      | 1   | type    | [`PartitionType`]                                       |
//! | 3      | 1   | subtype | [`SubType`]                                             |
//! | 4      | 4   | offset  |                                                         |
//! | 8      | 4   | size    |                                                         |
//! | 12     | 16  | label   | NUL-padded; a 16-byte label has no NUL ([`Label`])      |
//! | 28     | 4   | flags   | bit 0 encrypted, bit 1 readonly ([`Flags`])             |

pub mod binary;
#[cfg(feature = "alloc")]
pub mod csv;
mod error;
pub mod int;
pub mod lint;
#[cfg(feature = "alloc")]
pub mod suggest;
#[cfg(feature = "alloc")]
mod text;
pub mod validate;

pub use binary::{DecodeInfo, DecodeOptions, PartitionTable, TableEnd};
#[cfg(feature = "std")]
pub use csv::StdEnv;
#[cfg(feature = "alloc")]
pub use csv::{CsvOptions, Entry, Env, ExtraSubtype, NoEnv, OwnedTable};
pub use error::{BinaryError, Field, Name, RowRef, ValidationError};
#[cfg(feature = "alloc")]
pub use error::{CsvError, CsvErrorKind};
#[cfg(feature = "alloc")]
pub use suggest::{suggest, SuggestError, SuggestOptions};

use core::fmt;

/// Size of one binary entry (and of the MD5 row and the end marker).
pub const ENTRY_SIZE: usize = 32;
/// Maximum length of the binary table data (`ESP_PARTITION_TABLE_MAX_LEN`): 96
/// rows of 32 bytes. `gen_esp32part.py` pads its output to exactly this length.
pub const MAX_TABLE_LEN: usize = 0xC00;
/// Number of 32-byte rows in [`MAX_TABLE_LEN`].
pub const MAX_ROWS: usize = MAX_TABLE_LEN / ENTRY_SIZE;
/// Most partitions a binary table can hold: 95 without the MD5 row (one row is
/// always left for the end marker), 94 with it.
pub const MAX_ENTRIES: usize = MAX_ROWS - 1;
/// Magic of a partition entry, bytes `AA 50`.
pub const ENTRY_MAGIC: u16 = 0x50AA;
/// Magic of the MD5 row, bytes `EB EB`.
pub const MD5_MAGIC: u16 = 0xEBEB;
/// Default flash offset of the partition table (`CONFIG_PARTITION_TABLE_OFFSET`).
pub const DEFAULT_TABLE_OFFSET: u32 = 0x8000;
/// The partition table occupies one sector; the first free offset is
/// `table_offset + TABLE_SECTOR_SIZE`.
pub const TABLE_SECTOR_SIZE: u32 = 0x1000;
/// Required size of an otadata (data/ota) partition: two sectors.
pub const OTADATA_SIZE: u32 = 0x2000;
/// Offset alignment of app partitions (the MMU page size).
pub const APP_ALIGN: u32 = 0x10000;
/// Offset alignment of every other partition (one flash sector).
pub const DATA_ALIGN: u32 = 0x1000;
/// Minimum size of a read/write NVS partition.
pub const NVS_RW_MIN_SIZE: u32 = 0x3000;
/// Number of OTA app slots ESP-IDF supports (`ota_0`..`ota_15`).
pub const MAX_OTA_SLOTS: u8 = 16;
/// Length of the label field.
pub const LABEL_LEN: usize = 16;

/// A partition type (byte 2 of an entry). Values 0x40..=0xFE are free for custom
/// types; any value is representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionType(pub u8);

impl PartitionType {
    /// `app`: an executable image.
    pub const APP: Self = Self(0x00);
    /// `data`.
    pub const DATA: Self = Self(0x01);
    /// `bootloader` (ESP-IDF v5.3+ typed rows).
    pub const BOOTLOADER: Self = Self(0x02);
    /// `partition_table` (ESP-IDF v5.3+ typed rows).
    pub const PARTITION_TABLE: Self = Self(0x03);
    /// First value of the range ESP-IDF reserves for custom types.
    pub const CUSTOM_MIN: Self = Self(0x40);
    /// Last value of the custom range.
    pub const CUSTOM_MAX: Self = Self(0xFE);

    /// The `gen_esp32part.py` keyword for this type, if it has one.
    pub fn keyword(self) -> Option<&'static str> {
        TYPE_KEYWORDS
            .iter()
            .find(|(_, v)| *v == self.0)
            .map(|(k, _)| *k)
    }

    /// Required offset alignment (0x10000 for apps, 0x1000 for everything else).
    pub fn offset_alignment(self) -> u32 {
        if self == Self::APP {
            APP_ALIGN
        } else {
            DATA_ALIGN
        }
    }
}

impl fmt::Display for PartitionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.keyword() {
            Some(k) => f.write_str(k),
            None => write!(f, "{:#04x}", self.0),
        }
    }
}

/// A partition subtype (byte 3 of an entry). Its meaning depends on the type;
/// the constants below are named after ESP-IDF's enum (`esp_partition_subtype_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubType(pub u8);

impl SubType {
    /// app/factory.
    pub const FACTORY: Self = Self(0x00);
    /// app/ota_0; ota_N is `OTA_0 + N`.
    pub const OTA_0: Self = Self(0x10);
    /// app/ota_1.
    pub const OTA_1: Self = Self(0x11);
    /// app/ota_15, the last OTA slot.
    pub const OTA_15: Self = Self(0x1F);
    /// app/test.
    pub const TEST: Self = Self(0x20);
    /// app/tee_0.
    pub const TEE_0: Self = Self(0x30);
    /// app/tee_1.
    pub const TEE_1: Self = Self(0x31);
    /// data/ota: otadata, the boot-slot selection.
    pub const OTADATA: Self = Self(0x00);
    /// data/phy.
    pub const PHY: Self = Self(0x01);
    /// data/nvs.
    pub const NVS: Self = Self(0x02);
    /// data/coredump.
    pub const COREDUMP: Self = Self(0x03);
    /// data/nvs_keys.
    pub const NVS_KEYS: Self = Self(0x04);
    /// data/efuse.
    pub const EFUSE: Self = Self(0x05);
    /// data/undefined; also what an empty non-app subtype means in a CSV.
    pub const UNDEFINED: Self = Self(0x06);
    /// data/esphttpd.
    pub const ESPHTTPD: Self = Self(0x80);
    /// data/fat.
    pub const FAT: Self = Self(0x81);
    /// data/spiffs.
    pub const SPIFFS: Self = Self(0x82);
    /// data/littlefs.
    pub const LITTLEFS: Self = Self(0x83);
    /// data/tee_ota: the TEE's otadata.
    pub const TEE_OTA: Self = Self(0x90);
    /// bootloader/primary.
    pub const BOOTLOADER_PRIMARY: Self = Self(0x00);
    /// bootloader/ota.
    pub const BOOTLOADER_OTA: Self = Self(0x01);
    /// bootloader/recovery.
    pub const BOOTLOADER_RECOVERY: Self = Self(0x02);
    /// partition_table/primary.
    pub const PARTITION_TABLE_PRIMARY: Self = Self(0x00);
    /// partition_table/ota.
    pub const PARTITION_TABLE_OTA: Self = Self(0x01);

    /// The app subtype of OTA slot `index` (0..=15), or `None` past ota_15.
    pub fn ota(index: u8) -> Option<Self> {
        if index < MAX_OTA_SLOTS {
            Some(Self(Self::OTA_0.0 | index))
        } else {
            None
        }
    }

    /// The `gen_esp32part.py` keyword for this subtype of `ty`, if any.
    pub fn keyword(self, ty: PartitionType) -> Option<&'static str> {
        subtype_keywords(ty)
            .iter()
            .find(|(_, v)| *v == self.0)
            .map(|(k, _)| *k)
    }
}

/// Type keywords in `gen_esp32part.py`'s dictionary order (which `to_csv`
/// follows when several keywords share a value).
pub const TYPE_KEYWORDS: &[(&str, u8)] = &[
    ("bootloader", 0x02),
    ("partition_table", 0x03),
    ("app", 0x00),
    ("data", 0x01),
];

/// App subtype keywords, in dictionary order.
pub const APP_SUBTYPE_KEYWORDS: &[(&str, u8)] = &[
    ("factory", 0x00),
    ("test", 0x20),
    ("ota_0", 0x10),
    ("ota_1", 0x11),
    ("ota_2", 0x12),
    ("ota_3", 0x13),
    ("ota_4", 0x14),
    ("ota_5", 0x15),
    ("ota_6", 0x16),
    ("ota_7", 0x17),
    ("ota_8", 0x18),
    ("ota_9", 0x19),
    ("ota_10", 0x1A),
    ("ota_11", 0x1B),
    ("ota_12", 0x1C),
    ("ota_13", 0x1D),
    ("ota_14", 0x1E),
    ("ota_15", 0x1F),
    ("tee_0", 0x30),
    ("tee_1", 0x31),
];

/// Data subtype keywords, in dictionary order.
pub const DATA_SUBTYPE_KEYWORDS: &[(&str, u8)] = &[
    ("ota", 0x00),
    ("phy", 0x01),
    ("nvs", 0x02),
    ("coredump", 0x03),
    ("nvs_keys", 0x04),
    ("efuse", 0x05),
    ("undefined", 0x06),
    ("esphttpd", 0x80),
    ("fat", 0x81),
    ("spiffs", 0x82),
    ("littlefs", 0x83),
    ("tee_ota", 0x90),
];

/// Bootloader subtype keywords, in dictionary order.
pub const BOOTLOADER_SUBTYPE_KEYWORDS: &[(&str, u8)] =
    &[("primary", 0x00), ("ota", 0x01), ("recovery", 0x02)];

/// Partition-table subtype keywords, in dictionary order.
pub const PARTITION_TABLE_SUBTYPE_KEYWORDS: &[(&str, u8)] = &[("primary", 0x00), ("ota", 0x01)];

/// The built-in subtype keywords of `ty` (empty for custom types).
pub fn subtype_keywords(ty: PartitionType) -> &'static [(&'static str, u8)] {
    match ty {
        PartitionType::APP => APP_SUBTYPE_KEYWORDS,
        PartitionType::DATA => DATA_SUBTYPE_KEYWORDS,
        PartitionType::BOOTLOADER => BOOTLOADER_SUBTYPE_KEYWORDS,
        PartitionType::PARTITION_TABLE => PARTITION_TABLE_SUBTYPE_KEYWORDS,
        _ => &[],
    }
}

/// Whether `name` is any built-in subtype keyword (of any type).
pub(crate) fn is_any_subtype_keyword(name: &[u8]) -> bool {
    [
        APP_SUBTYPE_KEYWORDS,
        DATA_SUBTYPE_KEYWORDS,
        BOOTLOADER_SUBTYPE_KEYWORDS,
        PARTITION_TABLE_SUBTYPE_KEYWORDS,
    ]
    .iter()
    .any(|t| t.iter().any(|(k, _)| k.as_bytes() == name))
}

/// The flags word (bytes 28..32). Bits other than [`Flags::ENCRYPTED`] and
/// [`Flags::READONLY`] are kept as they were read, so a table round-trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u32);

impl Flags {
    /// Bit 0: the partition is encrypted with flash encryption.
    pub const ENCRYPTED: u32 = 1 << 0;
    /// Bit 1: the partition is read-only.
    pub const READONLY: u32 = 1 << 1;
    /// All bits ESP-IDF defines.
    pub const KNOWN: u32 = Self::ENCRYPTED | Self::READONLY;

    /// Whether the encrypted bit is set.
    pub fn encrypted(self) -> bool {
        self.0 & Self::ENCRYPTED != 0
    }
    /// Whether the readonly bit is set.
    pub fn readonly(self) -> bool {
        self.0 & Self::READONLY != 0
    }
    /// Bits ESP-IDF does not define (zero for tables ESP-IDF writes).
    pub fn unknown(self) -> u32 {
        self.0 & !Self::KNOWN
    }
}

/// The 16-byte label field, kept byte for byte.
///
/// `gen_esp32part.py` encodes the name as UTF-8 and truncates it to 16 bytes
/// with no terminator (which may split a UTF-8 character); shorter names are
/// NUL-padded. [`Label::as_bytes`] returns the bytes up to the first NUL.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Label(pub [u8; LABEL_LEN]);

impl Label {
    /// The label `gen_esp32part.py` writes for `name`: its first 16 UTF-8 bytes,
    /// NUL-padded.
    pub fn new(name: &str) -> Self {
        Self::from_bytes(name.as_bytes())
    }

    /// Like [`Label::new`], from raw bytes.
    pub fn from_bytes(name: &[u8]) -> Self {
        let mut raw = [0u8; LABEL_LEN];
        for (d, s) in raw.iter_mut().zip(name) {
            *d = *s;
        }
        Self(raw)
    }

    /// The label bytes before the first NUL (all 16 when there is none).
    pub fn as_bytes(&self) -> &[u8] {
        let end = self.0.iter().position(|b| *b == 0).unwrap_or(LABEL_LEN);
        self.0.get(..end).unwrap_or(&self.0)
    }

    /// The label as text, if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(self.as_bytes()).ok()
    }
}

impl fmt::Display for Label {
    /// Writes the label as UTF-8, with invalid bytes as U+FFFD.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.as_bytes().utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{FFFD}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label({:?})", DisplayAsDebug(self))
    }
}

struct DisplayAsDebug<'a>(&'a Label);
impl fmt::Debug for DisplayAsDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for chunk in self.0.as_bytes().utf8_chunks() {
            for c in chunk.valid().chars() {
                write!(f, "{}", c.escape_debug())?;
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_str("\"")
    }
}

/// One partition: a decoded 32-byte entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Partition {
    /// Type.
    pub ty: PartitionType,
    /// Subtype (meaning depends on `ty`).
    pub subtype: SubType,
    /// Flash offset in bytes.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    /// Raw label.
    pub label: Label,
    /// Flags word, unknown bits preserved.
    pub flags: Flags,
}

impl Partition {
    /// A partition with no flags.
    pub fn new(ty: PartitionType, subtype: SubType, offset: u32, size: u32, label: &str) -> Self {
        Self {
            ty,
            subtype,
            offset,
            size,
            label: Label::new(label),
            flags: Flags::default(),
        }
    }

    /// Decodes one entry row. The caller has checked the length; the magic is
    /// checked here.
    pub fn from_bytes(row: &[u8; ENTRY_SIZE]) -> Option<Self> {
        let [m0, m1, ty, sub, o0, o1, o2, o3, s0, s1, s2, s3, l @ .., f0, f1, f2, f3] = *row;
        if u16::from_le_bytes([m0, m1]) != ENTRY_MAGIC {
            return None;
        }
        let mut label = [0u8; LABEL_LEN];
        label.copy_from_slice(&l);
        Some(Self {
            ty: PartitionType(ty),
            subtype: SubType(sub),
            offset: u32::from_le_bytes([o0, o1, o2, o3]),
            size: u32::from_le_bytes([s0, s1, s2, s3]),
            label: Label(label),
            flags: Flags(u32::from_le_bytes([f0, f1, f2, f3])),
        })
    }

    /// Encodes this entry as its 32-byte row.
    pub fn to_bytes(&self) -> [u8; ENTRY_SIZE] {
        let mut row = [0u8; ENTRY_SIZE];
        let parts: [&[u8]; 7] = [
            &ENTRY_MAGIC.to_le_bytes(),
            &[self.ty.0],
            &[self.subtype.0],
            &self.offset.to_le_bytes(),
            &self.size.to_le_bytes(),
            &self.label.0,
            &self.flags.0.to_le_bytes(),
        ];
        let mut out = row.iter_mut();
        for b in parts.iter().flat_map(|p| p.iter()) {
            if let Some(d) = out.next() {
                *d = *b;
            }
        }
        row
    }

    /// First byte after the partition, or `None` if it would pass 4 GiB.
    pub fn end(&self) -> Option<u32> {
        self.offset.checked_add(self.size)
    }

    /// First byte after the partition, as a 64-bit number (never overflows).
    pub fn end_u64(&self) -> u64 {
        u64::from(self.offset) + u64::from(self.size)
    }

    /// Whether this is an app partition.
    pub fn is_app(&self) -> bool {
        self.ty == PartitionType::APP
    }

    /// Whether this is an OTA app slot (app/ota_0..ota_15).
    pub fn is_ota_slot(&self) -> bool {
        self.ota_index().is_some()
    }

    /// The OTA slot index (0..=15) of an app/ota_N partition.
    pub fn ota_index(&self) -> Option<u8> {
        if self.is_app() && (SubType::OTA_0.0..=SubType::OTA_15.0).contains(&self.subtype.0) {
            Some(self.subtype.0 & 0x0F)
        } else {
            None
        }
    }

    /// Whether this is the factory app.
    pub fn is_factory(&self) -> bool {
        self.is_app() && self.subtype == SubType::FACTORY
    }

    /// Whether this is the test app.
    pub fn is_test(&self) -> bool {
        self.is_app() && self.subtype == SubType::TEST
    }

    /// Whether this is otadata (data/ota).
    pub fn is_otadata(&self) -> bool {
        self.ty == PartitionType::DATA && self.subtype == SubType::OTADATA
    }

    /// Whether this is a bootloader/primary or partition_table/primary row,
    /// which `gen_esp32part.py` places by option and excludes from the
    /// "below the table" check.
    pub fn is_primary_boot_row(&self) -> bool {
        (self.ty == PartitionType::BOOTLOADER && self.subtype == SubType::BOOTLOADER_PRIMARY)
            || (self.ty == PartitionType::PARTITION_TABLE
                && self.subtype == SubType::PARTITION_TABLE_PRIMARY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trips_through_bytes() {
        let mut p = Partition::new(
            PartitionType::APP,
            SubType::OTA_1,
            0x110000,
            0x100000,
            "ota_1",
        );
        p.flags = Flags(Flags::ENCRYPTED | 0x8000_0000);
        let row = p.to_bytes();
        assert_eq!(&row[..4], &[0xAA, 0x50, 0x00, 0x11]);
        assert_eq!(Partition::from_bytes(&row), Some(p));
        assert_eq!(p.ota_index(), Some(1));
        assert_eq!(p.flags.unknown(), 0x8000_0000);
    }

    #[test]
    fn long_label_is_truncated_without_nul() {
        let l = Label::new("abcdefghijklmnopqrstuvwxyz");
        assert_eq!(l.as_bytes(), b"abcdefghijklmnop");
        // Splits the 2-byte 'и' after 15 ASCII bytes.
        let l = Label::new("0123456789abcdeи");
        assert_eq!(l.0[15], 0xD0);
        assert_eq!(l.as_str(), None);
    }

    #[test]
    fn keywords_follow_the_tool_tables() {
        assert_eq!(
            SubType(0x06).keyword(PartitionType::DATA),
            Some("undefined")
        );
        assert_eq!(SubType(0x1F).keyword(PartitionType::APP), Some("ota_15"));
        assert_eq!(SubType::ota(16), None);
        assert_eq!(PartitionType(0x40).keyword(), None);
        #[cfg(feature = "alloc")]
        assert_eq!(
            alloc::string::ToString::to_string(&PartitionType(0x40)),
            "0x40"
        );
    }
}
