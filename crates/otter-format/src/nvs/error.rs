//! The one error type of the NVS module.

use alloc::string::String;

/// What went wrong reading or writing an NVS partition.
///
/// `page` is the page's index in the partition (offset / 4096), `entry` the
/// entry's index in the page (0..126). Variants up to [`NvsError::Blob`] mean
/// the partition's bytes are bad (the flash or whoever wrote it is at fault);
/// the rest mean the caller asked for something NVS cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NvsError {
    /// The partition is not a non-zero multiple of the 4096-byte page.
    #[error("NVS partition of {len} bytes is not a non-zero multiple of 4096-byte pages")]
    PartitionSize {
        /// Length of the partition given.
        len: usize,
    },
    /// The page state word is none of ESP-IDF's states.
    #[error("NVS page {page}: unknown page state 0x{state:08x}")]
    PageState {
        /// Page index.
        page: usize,
        /// The raw state word.
        state: u32,
    },
    /// The page header's CRC does not match its contents.
    #[error("NVS page {page}: header CRC is 0x{stored:08x}, contents give 0x{computed:08x}")]
    HeaderCrc {
        /// Page index.
        page: usize,
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over header bytes 4..28.
        computed: u32,
    },
    /// The page's format version is neither 1 (0xFF) nor 2 (0xFE).
    #[error("NVS page {page}: unknown format version byte 0x{version:02x}")]
    Version {
        /// Page index.
        page: usize,
        /// The version byte.
        version: u8,
    },
    /// The entry-state bitmap holds the illegal value 0b01 for an entry.
    #[error("NVS page {page} entry {entry}: illegal entry state 0b01 in the state bitmap")]
    EntryState {
        /// Page index.
        page: usize,
        /// Entry index.
        entry: usize,
    },
    /// A written entry's CRC does not match its contents.
    #[error("NVS page {page} entry {entry}: entry CRC is 0x{stored:08x}, contents give 0x{computed:08x}")]
    EntryCrc {
        /// Page index.
        page: usize,
        /// Entry index.
        entry: usize,
        /// CRC stored in the entry.
        stored: u32,
        /// CRC computed over the entry without its CRC field.
        computed: u32,
    },
    /// The span does not fit the page or does not match the item's type and size.
    #[error(
        "NVS page {page} entry {entry}: span {span} is invalid for this item (expected {expected})"
    )]
    Span {
        /// Page index.
        page: usize,
        /// Entry index.
        entry: usize,
        /// The span stored.
        span: u8,
        /// The span the type and data size call for.
        expected: usize,
    },
    /// The item type byte is unknown.
    #[error("NVS page {page} entry {entry}: unknown item type 0x{item_type:02x}")]
    ItemType {
        /// Page index.
        page: usize,
        /// Entry index.
        entry: usize,
        /// The type byte.
        item_type: u8,
    },
    /// The key is not NUL-terminated within 16 bytes, is empty, or is not UTF-8.
    #[error("NVS page {page} entry {entry}: key is empty, not NUL-terminated within 16 bytes, or not UTF-8")]
    Key {
        /// Page index.
        page: usize,
        /// Entry index.
        entry: usize,
    },
    /// Variable-length data fails its CRC, or a string is not NUL-terminated UTF-8.
    #[error("NVS page {page} entry {entry}: variable-length data is corrupt ({what})")]
    Data {
        /// Page index.
        page: usize,
        /// Entry index.
        entry: usize,
        /// What is wrong with it.
        what: DataFault,
    },
    /// An item refers to a namespace index that no namespace entry defines.
    #[error(
        "NVS page {page} entry {entry}: namespace index {ns} is not defined by any namespace entry"
    )]
    UnknownNamespace {
        /// Page index.
        page: usize,
        /// Entry index.
        entry: usize,
        /// The namespace index.
        ns: u8,
    },
    /// A blob index names chunks that are missing or whose sizes do not add up.
    #[error(
        "NVS blob {key:?} in namespace index {ns}: chunks are missing or do not add up to its size"
    )]
    Blob {
        /// Namespace index.
        ns: u8,
        /// Key of the blob.
        key: String,
    },
    /// A key or namespace name is empty, longer than 15 bytes, or contains NUL.
    #[error("NVS key or namespace name {key:?} must be 1 to 15 bytes without NUL")]
    KeyName {
        /// The offending name.
        key: String,
    },
    /// A string value is too long for one NVS page.
    #[error("NVS value for {key:?} is {len} bytes; at most {max} fit")]
    ValueTooLong {
        /// Key of the value.
        key: String,
        /// Its length in bytes (with the NUL for strings).
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// A key was written before any namespace was chosen.
    #[error("NVS key {key:?} written before any namespace was chosen")]
    NoNamespace {
        /// The key.
        key: String,
    },
    /// Two used pages (active, full or freeing) carry the same sequence
    /// number, so which one is newer cannot be told: the writer does not
    /// write. Only damage makes such a partition.
    #[error("NVS pages {first} and {second} carry the same sequence number {seq}, so which holds the newer values cannot be told; nothing was written (erase the NVS partition, or flash one written by nvs_partition_gen)")]
    DuplicateSequence {
        /// The lower page index.
        first: usize,
        /// The higher page index.
        second: usize,
        /// The sequence number both carry.
        seq: u32,
    },
    /// All 254 namespace indices are in use.
    #[error("NVS partition has no free namespace index (254 in use)")]
    NamespacesExhausted,
    /// No free page is left for the write: the live items fill every page
    /// but the spare one, even after garbage collection.
    #[error("NVS partition is full: its live keys fill every page but the spare one, even after garbage collection; erase keys or use a larger NVS partition")]
    Full,
    /// A blob was to be written or erased in place: otter's in-place writer
    /// ([`plan_set`](super::plan_set), [`plan_erase_key`](super::plan_erase_key))
    /// handles primitives and strings only. Caller's request.
    #[error(
        "NVS key {key:?} is a blob: otter writes and erases only primitives and strings in place"
    )]
    BlobInPlace {
        /// The key.
        key: String,
    },
}

/// What is wrong with an item's variable-length data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataFault {
    /// The data CRC does not match.
    Crc {
        /// CRC stored in the item header.
        stored: u32,
        /// CRC computed over the data.
        computed: u32,
    },
    /// A string is not NUL-terminated or not UTF-8.
    NotAString,
}

impl core::fmt::Display for DataFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DataFault::Crc { stored, computed } => {
                write!(f, "data CRC is 0x{stored:08x}, data gives 0x{computed:08x}")
            }
            DataFault::NotAString => f.write_str("string is not NUL-terminated UTF-8"),
        }
    }
}
