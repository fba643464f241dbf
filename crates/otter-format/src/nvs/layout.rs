//! Reading pages and entries: the live items of a partition, in write order.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::{
    crc32, DataFault, ItemType, NvsError, PageState, Value, BITMAP_OFFSET, ENTRY_COUNT, ENTRY_SIZE,
    FIRST_ENTRY_OFFSET, PAGE_SIZE, VERSION_1, VERSION_2,
};

/// Entry state in the bitmap: never written.
pub(super) const ENTRY_EMPTY: u8 = 0b11;
/// Entry state in the bitmap: holds an item (or item data).
pub(super) const ENTRY_WRITTEN: u8 = 0b10;
/// Entry state in the bitmap: no longer used.
pub(super) const ENTRY_ERASED: u8 = 0b00;

/// One page's header facts and where its next free entry is.
#[derive(Debug, Clone)]
pub(super) struct PageInfo {
    pub index: usize,
    pub state: PageState,
    pub seq: u32,
    /// First entry after every used one (as ESP-IDF's `mNextFreeEntry`).
    pub next_free: usize,
    /// Entries held by live items (as ESP-IDF's `mUsedEntryCount` after it
    /// loaded the page: written entries it did not drop).
    pub used: usize,
}

/// How to treat damage while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadMode {
    /// Report it as an [`NvsError`] naming page and entry.
    Strict,
    /// Do what ESP-IDF's `nvs_flash_init` does: a page whose header is bad is
    /// corrupt (not read, reusable after an erase); an entry that is bad is
    /// dropped as if erased.
    Repair,
}

/// What an item holds.
#[derive(Debug, Clone)]
pub(super) enum Payload {
    Value(Value),
    BlobData(Vec<u8>),
    BlobIndex {
        size: u32,
        chunk_count: u8,
        chunk_start: u8,
    },
}

/// A live item and where it sits.
#[derive(Debug, Clone)]
pub(super) struct Item {
    pub page: usize,
    pub entry: usize,
    /// Entries it takes, header included.
    pub span: usize,
    pub ns: u8,
    pub item_type: ItemType,
    pub chunk: u8,
    pub key: String,
    pub payload: Payload,
}

/// A joined blob: (namespace index, key) and its bytes.
pub(super) type Blob = ((u8, String), Vec<u8>);

/// Every page's header facts and the live items, oldest first.
#[derive(Debug, Clone)]
pub(super) struct Scan {
    pub pages: Vec<PageInfo>,
    pub items: Vec<Item>,
}

/// Little-endian u32 at `at`, or 0xFFFFFFFF when out of range.
pub(super) fn le32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, c, d, e]) => u32::from_le_bytes([a, c, d, e]),
        _ => u32::MAX,
    }
}

/// The 2-bit state of `entry` in a page's bitmap.
pub(super) fn entry_state(page: &[u8], entry: usize) -> u8 {
    let byte = page.get(BITMAP_OFFSET + entry / 4).copied().unwrap_or(0xFF);
    (byte >> ((entry % 4) * 2)) & 0b11
}

/// The CRC of an entry: bytes 0..4 and 8..32.
pub(super) fn entry_crc(e: &[u8; ENTRY_SIZE]) -> u32 {
    let mut buf = [0u8; 28];
    buf[..4].copy_from_slice(&e[..4]);
    buf[4..].copy_from_slice(&e[8..]);
    crc32(&buf)
}

/// Which items replace each other: same namespace, key, kind and chunk.
fn identity(item: &Item) -> (u8, String, u8, u8) {
    let kind = match item.item_type {
        ItemType::BlobData => 1,
        ItemType::BlobIndex => 2,
        _ => 0,
    };
    (item.ns, item.key.clone(), kind, item.chunk)
}

impl Scan {
    /// Reads every page of `partition`, reporting damage.
    pub fn read(partition: &[u8]) -> Result<Scan, NvsError> {
        Scan::read_with(partition, ReadMode::Strict)
    }

    /// Reads every page of `partition` as `mode` says.
    pub fn read_with(partition: &[u8], mode: ReadMode) -> Result<Scan, NvsError> {
        if partition.is_empty() || !partition.len().is_multiple_of(PAGE_SIZE) {
            return Err(NvsError::PartitionSize {
                len: partition.len(),
            });
        }
        let mut pages = Vec::new();
        let mut per_page = Vec::new();
        for (index, page) in partition.chunks_exact(PAGE_SIZE).enumerate() {
            let mut items = Vec::new();
            pages.push(read_page(index, page, &mut items, mode)?);
            per_page.push(items);
        }
        // Oldest page first; address breaks ties (stable sort).
        let mut order: Vec<usize> = (0..pages.len()).collect();
        order.sort_by_key(|&i| pages.get(i).map_or(0, |p| p.seq));
        let all: Vec<Item> = order
            .into_iter()
            .flat_map(|i| per_page.get(i).cloned().unwrap_or_default())
            .collect();
        // The latest copy of each item wins.
        let mut latest = BTreeMap::new();
        for (pos, item) in all.iter().enumerate() {
            latest.insert(identity(item), pos);
        }
        let mut keep: Vec<usize> = latest.into_values().collect();
        keep.sort_unstable();
        let items = keep
            .into_iter()
            .filter_map(|p| all.get(p).cloned())
            .collect();
        Ok(Scan { pages, items })
    }

    /// The format-2 blobs, joined from their chunks.
    pub fn blobs(&self) -> Result<Vec<Blob>, NvsError> {
        let mut chunks = BTreeMap::new();
        for item in &self.items {
            if let Payload::BlobData(d) = &item.payload {
                chunks.insert((item.ns, item.key.as_str(), item.chunk), d.as_slice());
            }
        }
        let mut out = Vec::new();
        for item in &self.items {
            let Payload::BlobIndex {
                size,
                chunk_count,
                chunk_start,
            } = item.payload
            else {
                continue;
            };
            let bad = || NvsError::Blob {
                ns: item.ns,
                key: item.key.clone(),
            };
            let mut data = Vec::new();
            for c in 0..u16::from(chunk_count) {
                let idx = u8::try_from(u16::from(chunk_start) + c).map_err(|_| bad())?;
                let chunk = chunks
                    .get(&(item.ns, item.key.as_str(), idx))
                    .ok_or_else(bad)?;
                data.extend_from_slice(chunk);
            }
            if u32::try_from(data.len()).ok() != Some(size) {
                return Err(bad());
            }
            out.push(((item.ns, item.key.clone()), data));
        }
        Ok(out)
    }
}

/// Reads one page's header and its written items.
fn read_page(
    index: usize,
    page: &[u8],
    out: &mut Vec<Item>,
    mode: ReadMode,
) -> Result<PageInfo, NvsError> {
    let word = le32(page, 0);
    let mut info = PageInfo {
        index,
        state: PageState::Corrupt,
        seq: le32(page, 4),
        next_free: 0,
        used: 0,
    };
    match check_header(index, page, word) {
        Ok(state) => info.state = state,
        Err(e) if mode == ReadMode::Strict => return Err(e),
        Err(_) => return Ok(info),
    }
    // ESP-IDF treats an "uninitialized" page that is not fully erased as
    // corrupt: it is neither read nor used until it is erased.
    if info.state == PageState::Uninitialized && page.iter().any(|&b| b != 0xFF) {
        info.state = PageState::Corrupt;
        return Ok(info);
    }
    if !matches!(
        info.state,
        PageState::Active | PageState::Full | PageState::Freeing
    ) {
        return Ok(info);
    }
    let mut i = 0;
    while i < ENTRY_COUNT {
        match entry_state(page, i) {
            ENTRY_EMPTY => {
                // A torn write leaves data behind an empty state: never reuse it.
                if entry_bytes(page, i) != [0xFF; ENTRY_SIZE] {
                    info.next_free = i + 1;
                }
                i += 1;
                continue;
            }
            ENTRY_ERASED => {
                info.next_free = i + 1;
                i += 1;
                continue;
            }
            ENTRY_WRITTEN => {}
            _ if mode == ReadMode::Repair => {
                info.next_free = i + 1;
                i += 1;
                continue;
            }
            _ => {
                return Err(NvsError::EntryState {
                    page: index,
                    entry: i,
                })
            }
        }
        match read_item(index, page, i) {
            Ok((span, item)) => {
                info.next_free = i + span;
                i += span;
                if let Some(item) = item {
                    info.used += span;
                    out.push(item);
                }
            }
            Err(e) if mode == ReadMode::Strict => return Err(e),
            Err(_) => {
                // Dropped as ESP-IDF drops it: the entry reads as erased.
                info.next_free = i + 1;
                i += 1;
            }
        }
    }
    Ok(info)
}

/// The page state, after checking the header's CRC and version for pages
/// that hold items.
fn check_header(index: usize, page: &[u8], word: u32) -> Result<PageState, NvsError> {
    let state = PageState::from_word(word).ok_or(NvsError::PageState {
        page: index,
        state: word,
    })?;
    if !matches!(
        state,
        PageState::Active | PageState::Full | PageState::Freeing
    ) {
        return Ok(state);
    }
    let stored = le32(page, 28);
    let computed = crc32(page.get(4..28).unwrap_or_default());
    if stored != computed {
        return Err(NvsError::HeaderCrc {
            page: index,
            stored,
            computed,
        });
    }
    let version = page.get(8).copied().unwrap_or(0);
    if version != VERSION_2 && version != VERSION_1 {
        return Err(NvsError::Version {
            page: index,
            version,
        });
    }
    Ok(state)
}

/// Entry `i` of a page, 0xFF past its end.
pub(super) fn entry_bytes(page: &[u8], i: usize) -> [u8; ENTRY_SIZE] {
    let at = FIRST_ENTRY_OFFSET + i * ENTRY_SIZE;
    let mut e = [0xFF; ENTRY_SIZE];
    if let Some(s) = page.get(at..at + ENTRY_SIZE) {
        e.copy_from_slice(s);
    }
    e
}

/// The written item whose header is entry `here`: its span, and the item
/// (`None` for a variable-length item whose data entries were never marked
/// written, which ESP-IDF drops).
fn read_item(index: usize, page: &[u8], here: usize) -> Result<(usize, Option<Item>), NvsError> {
    let e = entry_bytes(page, here);
    let stored = le32(&e, 4);
    let computed = entry_crc(&e);
    if stored != computed {
        return Err(NvsError::EntryCrc {
            page: index,
            entry: here,
            stored,
            computed,
        });
    }
    let item_type = ItemType::from_byte(e[1]).ok_or(NvsError::ItemType {
        page: index,
        entry: here,
        item_type: e[1],
    })?;
    let key_end = e[8..24].iter().position(|&b| b == 0);
    let key = match key_end {
        Some(n) if n > 0 => core::str::from_utf8(&e[8..8 + n]).ok(),
        _ => None,
    }
    .ok_or(NvsError::Key {
        page: index,
        entry: here,
    })?;
    let span = usize::from(e[2]);
    let expected = if item_type.is_variable_length() {
        1 + usize::from(u16::from_le_bytes([e[24], e[25]])).div_ceil(ENTRY_SIZE)
    } else {
        1
    };
    if span != expected || here + span > ENTRY_COUNT {
        return Err(NvsError::Span {
            page: index,
            entry: here,
            span: e[2],
            expected,
        });
    }
    let d = &e[24..32];
    let payload = match item_type {
        ItemType::U8 => Payload::Value(Value::U8(d[0])),
        ItemType::I8 => Payload::Value(Value::I8(i8::from_le_bytes([d[0]]))),
        ItemType::U16 => Payload::Value(Value::U16(u16::from_le_bytes([d[0], d[1]]))),
        ItemType::I16 => Payload::Value(Value::I16(i16::from_le_bytes([d[0], d[1]]))),
        ItemType::U32 => Payload::Value(Value::U32(le32(d, 0))),
        ItemType::I32 => Payload::Value(Value::I32(le32(d, 0) as i32)),
        ItemType::U64 => Payload::Value(Value::U64(u64::from_le_bytes(e_u64(d)))),
        ItemType::I64 => Payload::Value(Value::I64(i64::from_le_bytes(e_u64(d)))),
        ItemType::BlobIndex => Payload::BlobIndex {
            size: le32(d, 0),
            chunk_count: d[4],
            chunk_start: d[5],
        },
        ItemType::Str | ItemType::Blob | ItemType::BlobData => {
            // A power cut before the data entries were marked written
            // leaves a header without its data: ESP-IDF drops it.
            if (here + 1..here + span).any(|j| entry_state(page, j) != ENTRY_WRITTEN) {
                return Ok((span, None));
            }
            let size = usize::from(u16::from_le_bytes([d[0], d[1]]));
            let at = FIRST_ENTRY_OFFSET + (here + 1) * ENTRY_SIZE;
            let data = page.get(at..at + size).unwrap_or_default();
            let stored = le32(d, 4);
            let computed = crc32(data);
            let fault = |what| NvsError::Data {
                page: index,
                entry: here,
                what,
            };
            if stored != computed {
                return Err(fault(DataFault::Crc { stored, computed }));
            }
            match item_type {
                ItemType::Str => {
                    let s = match data.split_last() {
                        Some((0, s)) => core::str::from_utf8(s).ok(),
                        _ => None,
                    }
                    .ok_or(fault(DataFault::NotAString))?;
                    Payload::Value(Value::Str(String::from(s)))
                }
                ItemType::Blob => Payload::Value(Value::Blob(data.to_vec())),
                _ => Payload::BlobData(data.to_vec()),
            }
        }
    };
    let item = Item {
        page: index,
        entry: here,
        span,
        ns: e[0],
        item_type,
        chunk: e[3],
        key: String::from(key),
        payload,
    };
    Ok((span, Some(item)))
}

/// The 8 data bytes as an array.
fn e_u64(d: &[u8]) -> [u8; 8] {
    let mut a = [0xFF; 8];
    if let Some(s) = d.get(..8) {
        a.copy_from_slice(s);
    }
    a
}
