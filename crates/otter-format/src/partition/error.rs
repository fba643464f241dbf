//! Error types for partition tables: binary framing, CSV parsing and
//! `gen_esp32part.py` validation. Every variant names where the problem is (entry
//! index and byte offset, or CSV line and partition name) and what to do.

use core::fmt;

#[cfg(feature = "alloc")]
use alloc::string::String;

#[cfg(not(feature = "alloc"))]
use super::Label;

/// The name of a partition as errors report it: the full CSV name with `alloc`,
/// else the (possibly truncated) label.
#[cfg(feature = "alloc")]
pub type Name = String;
/// The name of a partition as errors report it: the full CSV name with `alloc`,
/// else the (possibly truncated) label.
#[cfg(not(feature = "alloc"))]
pub type Name = Label;

/// Which partition a validation error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowRef {
    /// Position in the table (0-based, in stored/CSV order).
    pub index: usize,
    /// 1-based physical CSV line, when the table came from a CSV.
    pub line: Option<usize>,
    /// The partition's name.
    pub name: Name,
}

impl RowRef {
    pub(crate) fn new(index: usize, line: Option<usize>, name: &[u8]) -> Self {
        #[cfg(feature = "alloc")]
        let name = String::from_utf8_lossy(name).into_owned();
        #[cfg(not(feature = "alloc"))]
        let name = Label::from_bytes(name);
        Self { index, line, name }
    }
}

impl fmt::Display for RowRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line} (partition `{}`)", self.name),
            None => write!(f, "entry {} (partition `{}`)", self.index, self.name),
        }
    }
}

/// A CSV column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Column 2, Type.
    Type,
    /// Column 3, SubType.
    SubType,
    /// Column 4, Offset.
    Offset,
    /// Column 5, Size.
    Size,
    /// Column 6, Flags.
    Flags,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Type => "type",
            Field::SubType => "subtype",
            Field::Offset => "offset",
            Field::Size => "size",
            Field::Flags => "flags",
        })
    }
}

/// A binary partition table could not be decoded or encoded. The input is at
/// fault, except for [`BinaryError::TableTooLong`], which is the caller's table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BinaryError {
    /// The input ends inside a 32-byte row.
    #[error(
        "entry {index} at byte offset {offset:#x}: the input ends after {len} bytes, inside a \
         32-byte row; a partition table is a sequence of 32-byte rows (is the file truncated?)"
    )]
    Truncated {
        /// Index of the incomplete row.
        index: usize,
        /// Byte offset of the incomplete row.
        offset: usize,
        /// Total input length.
        len: usize,
    },
    /// A row is neither an entry (`AA 50`), the MD5 row (`EB EB`) nor the end
    /// marker (32 x `FF`).
    #[error(
        "entry {index} at byte offset {offset:#x}: invalid magic bytes {:02x} {:02x} (expected \
         AA 50 for a partition, EB EB for the MD5 row, or 32 x FF to end the table); this is not \
         a partition table, or it is corrupt",
        magic[0], magic[1]
    )]
    InvalidMagic {
        /// Index of the row.
        index: usize,
        /// Byte offset of the row.
        offset: usize,
        /// The two bytes found.
        magic: [u8; 2],
    },
    /// The MD5 row does not match the entries before it.
    #[error(
        "entry {index} at byte offset {offset:#x}: MD5 checksums don't match (stored {}, \
         computed {}); the table is corrupt or was edited without regenerating its MD5 row",
        Hex(stored),
        Hex(computed)
    )]
    Md5Mismatch {
        /// Index of the MD5 row.
        index: usize,
        /// Byte offset of the MD5 row.
        offset: usize,
        /// Digest in the row.
        stored: [u8; 16],
        /// Digest of the preceding entries.
        computed: [u8; 16],
    },
    /// More entries than a table can hold.
    #[error(
        "entry {index} at byte offset {offset:#x}: more than {max} partitions without an end \
         marker; a partition table holds at most {max} entries",
        max = super::MAX_ENTRIES
    )]
    TooManyEntries {
        /// Index of the first entry that does not fit.
        index: usize,
        /// Its byte offset.
        offset: usize,
    },
    /// Encoding: the entries plus the MD5 row do not leave room for the end
    /// marker in 0xC00 bytes.
    #[error(
        "binary partition table length ({len}) longer than max {max}: {entries} partitions{} \
         do not fit; remove partitions (at most 94 with the MD5 row, 95 without)",
        if *md5 { " plus the MD5 row" } else { "" }, max = super::MAX_TABLE_LEN
    )]
    TableTooLong {
        /// Number of entries.
        entries: usize,
        /// Whether an MD5 row was requested.
        md5: bool,
        /// Bytes the entries (and MD5 row) would take.
        len: usize,
    },
}

struct Hex<'a>(&'a [u8]);
impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A CSV partition table could not be parsed: what is wrong ([`CsvErrorKind`]),
/// on which 1-based physical line, in which partition if known.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg(feature = "alloc")]
pub struct CsvError {
    /// 1-based physical line (comments and blank lines count).
    pub line: usize,
    /// The partition's name (column 1), when the line got that far.
    pub name: Option<String>,
    /// What is wrong.
    pub kind: CsvErrorKind,
}

#[cfg(feature = "alloc")]
impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(name) = &self.name {
            write!(f, " (partition `{name}`)")?;
        }
        write!(f, ": {}", self.kind)
    }
}

#[cfg(feature = "alloc")]
impl core::error::Error for CsvError {}

/// What is wrong in a CSV line.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CsvErrorKind {
    /// The bytes are not valid text in the encoding their BOM (or its absence)
    /// announces.
    #[error(
        "byte offset {offset:#x} is not valid {encoding}; save the CSV as UTF-8 (a BOM is allowed)"
    )]
    Encoding {
        /// Byte offset of the first bad byte.
        offset: usize,
        /// Encoding the file was read as.
        encoding: &'static str,
    },
    /// The line starts with `$NAME` that no variable expanded.
    #[error("unknown variable '{name}'; set it in the environment or write the value instead")]
    UnknownVariable {
        /// The variable name.
        name: String,
    },
    /// Column 2 is empty.
    #[error("field 'type' can't be left empty; use app, data, or a number such as 0x40")]
    EmptyType,
    /// An app row with an empty SubType.
    #[error("app partition cannot have an empty subtype; use factory, test or ota_0..ota_15")]
    EmptyAppSubtype,
    /// Column 5 is empty on a row that needs it.
    #[error("size field can't be empty; write a size such as 1M, 0x100000 or 64K")]
    EmptySize,
    /// Offset or size is not a number.
    #[error(
        "invalid {field} value '{value}': write a number like 0x10000, 65536, 64K or 1M \
         (a leading 0 needs 0x, 0o or 0b)"
    )]
    InvalidNumber {
        /// The column.
        field: Field,
        /// The text found.
        value: String,
    },
    /// Type or SubType is neither a number nor a known keyword.
    #[error("{field} value '{value}' is not valid; known keywords: {known} (or a number)")]
    UnknownKeyword {
        /// The column.
        field: Field,
        /// The text found.
        value: String,
        /// The keywords that would have been accepted, comma-separated.
        known: String,
    },
    /// A number does not fit its binary field.
    #[error(
        "{field} value {value} is out of range: it must be between 0 and {max:#x}{}",
        if matches!(field, Field::Type | Field::SubType) {
            " (custom types are 0x40..0xFE)"
        } else {
            ""
        }
    )]
    OutOfRange {
        /// The column.
        field: Field,
        /// The value found (after suffixes and end-address arithmetic).
        value: i128,
        /// Largest allowed value.
        max: u64,
    },
    /// A flag other than `encrypted` or `readonly` (pieces between `:` are not
    /// trimmed).
    #[error(
        "CSV flag column contains unknown flag '{flag}'; known flags are encrypted and readonly, \
         separated by ':' with no spaces"
    )]
    UnknownFlag {
        /// The flag text.
        flag: String,
    },
    /// A bootloader row needs `primary_bootloader_offset`.
    #[error(
        "primary bootloader offset is not defined; set the primary bootloader offset \
         (0x1000 on ESP32/S2, 0x0 on C3/S3/C6/H2, 0x2000 on C5/P4)"
    )]
    PrimaryBootloaderOffsetMissing,
    /// A bootloader/recovery row needs `recovery_bootloader_offset`.
    #[error("recovery bootloader offset is not defined; set the recovery bootloader offset")]
    RecoveryBootloaderOffsetMissing,
    /// An explicit offset lies before the end of the previous partition (or
    /// inside the partition table's sector).
    #[error(
        "partitions overlap: this partition sets offset {offset:#x}{}",
        OverlapTail { previous_end: *previous_end, first: *first, table_offset: *table_offset }
    )]
    Overlap {
        /// The offset written.
        offset: i128,
        /// Where the previous partition (or the table sector) ends.
        previous_end: i128,
        /// Whether this is the first partition placed (so the table sector is
        /// what it overlaps).
        first: bool,
        /// The table offset in use.
        table_offset: u32,
    },
    /// More rows than the parser accepts.
    #[error("more than {max} partitions; a partition table holds at most 95")]
    TooManyRows {
        /// The limit.
        max: usize,
    },
}

#[cfg(feature = "alloc")]
struct OverlapTail {
    previous_end: i128,
    first: bool,
    table_offset: u32,
}

#[cfg(feature = "alloc")]
impl fmt::Display for OverlapTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first {
            write!(
                f,
                ", but the partition table occupies the whole sector {:#x}; use a free offset \
                 {:#x} or higher, or leave the offset empty for automatic placement",
                self.table_offset, self.previous_end
            )
        } else {
            write!(
                f,
                ", but the previous partition ends at {:#x}; rows with explicit offsets must be \
                 in ascending order: use {:#x} or higher, or leave the offset empty",
                self.previous_end, self.previous_end
            )
        }
    }
}

/// A table failed `gen_esp32part.py`'s validation. The table is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// Offset not aligned to the type's alignment.
    #[error(
        "{row}: offset {offset:#x} is not aligned to {align:#x}: {what} must start on a {} \
         boundary; use {}, or leave the offset empty for automatic placement",
        KiB(*align), Neighbours { value: *offset, align: *align },
        what = if *align == super::APP_ALIGN { "app partitions" } else { "partitions other than apps" }
    )]
    OffsetMisaligned {
        /// The partition.
        row: RowRef,
        /// Its offset.
        offset: u32,
        /// Required alignment.
        align: u32,
    },
    /// App size not a multiple of 4 KiB (64 KiB with secure boot v1).
    #[error(
        "{row}: size {size:#x} is not aligned to {align:#x}: app partition sizes must be a \
         multiple of {}{}; use {}",
        KiB(*align),
        if *align == super::APP_ALIGN { " with secure boot v1" } else { "" },
        Neighbours { value: *size, align: *align }
    )]
    SizeMisaligned {
        /// The partition.
        row: RowRef,
        /// Its size.
        size: u32,
        /// Required alignment.
        align: u32,
    },
    /// data/ota or data/coredump flagged readonly.
    #[error(
        "{row}: partition of type {ty} and subtype {subtype} is always read-write and cannot be \
         read-only; remove the readonly flag"
    )]
    AlwaysReadWrite {
        /// The partition.
        row: RowRef,
        /// Type number.
        ty: u8,
        /// Subtype number.
        subtype: u8,
    },
    /// A read/write NVS partition smaller than 0x3000.
    #[error(
        "{row}: NVS partition of size {size:#x} must be flagged as 'readonly' (the size of \
         read/write NVS has to be at least 0x3000); enlarge it or add the readonly flag"
    )]
    NvsTooSmall {
        /// The partition.
        row: RowRef,
        /// Its size.
        size: u32,
    },
    /// Two partitions share a name.
    #[error("{row}: partition names must be unique, and {first} has the same name; rename one")]
    DuplicateName {
        /// The later partition.
        row: RowRef,
        /// The earlier partition with the same name.
        first: RowRef,
    },
    /// A partition starts inside or before the partition table sector.
    #[error(
        "{row}: partition offset {offset:#x} is below {min:#x}, the end of the partition \
         table's sector; move it to {min:#x} or later"
    )]
    BelowTable {
        /// The partition.
        row: RowRef,
        /// Its offset.
        offset: u32,
        /// First free offset after the table.
        min: u64,
    },
    /// Two partitions overlap (in offset order).
    #[error(
        "{row}: partition at {offset:#x} overlaps {other} at {start:#x}-{last:#x}; move it to \
         {:#x} or later, or shrink {other}",
        last.saturating_add(1)
    )]
    Overlap {
        /// The partition that starts inside another.
        row: RowRef,
        /// Its offset.
        offset: u32,
        /// The partition it overlaps.
        other: RowRef,
        /// Start of `other`.
        start: u32,
        /// Last byte of `other` (inclusive, as the tool prints it).
        last: u64,
    },
    /// More than one otadata (or TEE otadata) partition.
    #[error(
        "{second}: found multiple {what} partitions ({first} is one); only one partition can be \
         defined with type \"data\"(1) and subtype {sub}; remove one",
        what = if *tee { "TEE otadata" } else { "otadata" },
        sub = if *tee { "\"tee_ota\"(0x90)" } else { "\"ota\"(0)" }
    )]
    MultipleOtadata {
        /// The first one.
        first: RowRef,
        /// The second one.
        second: RowRef,
        /// Whether these are TEE otadata (data/tee_ota) partitions.
        tee: bool,
    },
    /// otadata not exactly 0x2000 bytes.
    #[error(
        "{row}: {} partition must have size = 0x2000, not {size:#x}; set its size to 0x2000 (8K)",
        if *tee { "TEE otadata" } else { "otadata" }
    )]
    OtadataSize {
        /// The partition.
        row: RowRef,
        /// Its size.
        size: u32,
        /// Whether this is TEE otadata.
        tee: bool,
    },
    /// The last partition ends past the flash size.
    #[error(
        "the partitions occupy {}.{} MiB of flash ({end} bytes), which does not fit in the \
         configured flash size {}; choose a larger flash size or shrink the partitions",
        end / (1024 * 1024), (end % (1024 * 1024)) * 10 / (1024 * 1024),
        FlashSize(*flash_size)
    )]
    DoesNotFitFlash {
        /// End of the partition with the highest offset.
        end: u64,
        /// The configured flash size in bytes.
        flash_size: u64,
    },
}

struct KiB(u32);
impl fmt::Display for KiB {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} KiB", self.0 / 1024)
    }
}

struct FlashSize(u64);
impl fmt::Display for FlashSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1024 * 1024) {
            write!(f, "{} MiB", self.0 / (1024 * 1024))
        } else {
            write!(f, "{:#x} bytes", self.0)
        }
    }
}

/// "0x110000 or 0x120000": the aligned values on either side of `value`.
struct Neighbours {
    value: u32,
    align: u32,
}

impl fmt::Display for Neighbours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let align = u64::from(self.align.max(1));
        let down = u64::from(self.value) / align * align;
        let up = down + align;
        if down == 0 {
            write!(f, "{up:#x}")
        } else {
            write!(f, "{down:#x} or {up:#x}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misaligned_offset_says_what_to_do() {
        let e = ValidationError::OffsetMisaligned {
            row: RowRef::new(3, Some(5), b"ota_0"),
            offset: 0x110001,
            align: 0x10000,
        };
        #[cfg(feature = "alloc")]
        assert_eq!(
            alloc::string::ToString::to_string(&e),
            "line 5 (partition `ota_0`): offset 0x110001 is not aligned to 0x10000: app \
             partitions must start on a 64 KiB boundary; use 0x110000 or 0x120000, or leave the \
             offset empty for automatic placement"
        );
        let _ = e;
    }
}
