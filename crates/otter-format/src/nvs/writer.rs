//! Writing: a whole partition image as the generator builds it, and one key
//! appended as `nvs_set_u8` does it, as flash operations.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::layout::{
    entry_bytes, entry_crc, le32, Item, Payload, ReadMode, Scan, ENTRY_ERASED, ENTRY_WRITTEN,
};
use super::{
    crc32, ItemType, NvsError, PageState, Value, BITMAP_OFFSET, CHUNK_ANY, ENTRY_COUNT, ENTRY_SIZE,
    FIRST_ENTRY_OFFSET, MAX_KEY_LEN, MAX_STRING_SIZE, PAGE_SIZE, VERSION_2,
};

/// Checks a key or namespace name: 1..=15 bytes, no NUL.
fn check_name(name: &str) -> Result<(), NvsError> {
    if name.is_empty() || name.len() > MAX_KEY_LEN || name.contains('\0') {
        return Err(NvsError::KeyName {
            key: String::from(name),
        });
    }
    Ok(())
}

/// A page header: state, sequence number, version, 0xFF, CRC of bytes 4..28.
fn page_header(state: PageState, seq: u32) -> [u8; 32] {
    let mut h = [0xFF; 32];
    h[0..4].copy_from_slice(&state.word().to_le_bytes());
    h[4..8].copy_from_slice(&seq.to_le_bytes());
    h[8] = VERSION_2;
    let crc = crc32(&h[4..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// An item header: namespace, type, span, chunk, CRC, key and 8 data bytes.
fn item_header(ns: u8, t: ItemType, span: u8, key: &str, data: [u8; 8]) -> [u8; ENTRY_SIZE] {
    let mut e = [0xFF; ENTRY_SIZE];
    e[0] = ns;
    e[1] = t.byte();
    e[2] = span;
    e[3] = CHUNK_ANY;
    e[8..24].fill(0);
    let k = key.as_bytes();
    let n = k.len().min(MAX_KEY_LEN);
    e[8..8 + n].copy_from_slice(&k[..n]);
    e[24..32].copy_from_slice(&data);
    let crc = entry_crc(&e);
    e[4..8].copy_from_slice(&crc.to_le_bytes());
    e
}

/// The 8 data bytes of a primitive value: little-endian, rest 0xFF.
fn primitive_data(v: &Value) -> Option<(ItemType, [u8; 8])> {
    let mut d = [0xFF; 8];
    let t = match v {
        Value::U8(x) => {
            d[0] = *x;
            ItemType::U8
        }
        Value::I8(x) => {
            d[..1].copy_from_slice(&x.to_le_bytes());
            ItemType::I8
        }
        Value::U16(x) => {
            d[..2].copy_from_slice(&x.to_le_bytes());
            ItemType::U16
        }
        Value::I16(x) => {
            d[..2].copy_from_slice(&x.to_le_bytes());
            ItemType::I16
        }
        Value::U32(x) => {
            d[..4].copy_from_slice(&x.to_le_bytes());
            ItemType::U32
        }
        Value::I32(x) => {
            d[..4].copy_from_slice(&x.to_le_bytes());
            ItemType::I32
        }
        Value::U64(x) => {
            d.copy_from_slice(&x.to_le_bytes());
            ItemType::U64
        }
        Value::I64(x) => {
            d.copy_from_slice(&x.to_le_bytes());
            ItemType::I64
        }
        Value::Str(_) | Value::Blob(_) => return None,
    };
    Some((t, d))
}

/// Builds a new partition image from key-values, entry for entry as
/// `esp-idf-nvs-partition-gen generate` (format 2, no encryption) does for the
/// same CSV rows.
///
/// Pages are filled in address order with sequence numbers 0, 1, ..; a page
/// the writer leaves is marked full; the last used page stays active; the
/// rest is erased (0xFF), including the generator's reserved last page
/// (partitions of three pages or more keep one page free, as the generator
/// does). A primitive goes to the next page when the current one has no free
/// entry; a string when its header and data would reach the last entry.
///
/// ```
/// use otter_format::nvs::{Nvs, NvsWriter};
/// let mut w = NvsWriter::new(0x3000)?;
/// w.namespace("otter")?;
/// w.set_u8("www_slot", 1)?;
/// w.set_str("name", "dev-1")?;
/// let image = w.finish();
/// let nvs = Nvs::parse(&image)?;
/// assert_eq!(nvs.get_u8("otter", "www_slot"), Some(1));
/// assert_eq!(nvs.get_str("otter", "name"), Some("dev-1"));
/// # Ok::<(), otter_format::nvs::NvsError>(())
/// ```
#[derive(Debug, Clone)]
pub struct NvsWriter {
    size: usize,
    data_pages: usize,
    pages: Vec<Vec<u8>>,
    entry_num: usize,
    namespaces: Vec<(String, u8)>,
    ns_count: u8,
    current_ns: Option<u8>,
}

impl NvsWriter {
    /// A writer for a partition of `size` bytes (a non-zero multiple of 4096).
    pub fn new(size: usize) -> Result<NvsWriter, NvsError> {
        if size == 0 || !size.is_multiple_of(PAGE_SIZE) {
            return Err(NvsError::PartitionSize { len: size });
        }
        let total = size / PAGE_SIZE;
        let mut w = NvsWriter {
            size,
            data_pages: if total >= 3 { total - 1 } else { total },
            pages: Vec::new(),
            entry_num: 0,
            namespaces: Vec::new(),
            ns_count: 0,
            current_ns: None,
        };
        w.new_page()?;
        Ok(w)
    }

    /// Marks the current page full and starts the next one.
    fn new_page(&mut self) -> Result<(), NvsError> {
        if self.pages.len() >= self.data_pages {
            return Err(NvsError::Full);
        }
        if let Some(p) = self.pages.last_mut() {
            p[0..4].copy_from_slice(&PageState::Full.word().to_le_bytes());
        }
        let seq = u32::try_from(self.pages.len()).map_err(|_| NvsError::Full)?;
        let mut p = vec![0xFF; PAGE_SIZE];
        p[..32].copy_from_slice(&page_header(PageState::Active, seq));
        self.pages.push(p);
        self.entry_num = 0;
        Ok(())
    }

    /// Copies `data` into the next entries and marks `count` of them written.
    fn put(&mut self, data: &[u8], count: usize) -> Result<(), NvsError> {
        let at = FIRST_ENTRY_OFFSET + self.entry_num * ENTRY_SIZE;
        let page = self.pages.last_mut().ok_or(NvsError::Full)?;
        let dst = page.get_mut(at..at + data.len()).ok_or(NvsError::Full)?;
        dst.copy_from_slice(data);
        for _ in 0..count {
            let i = self.entry_num;
            if let Some(b) = page.get_mut(BITMAP_OFFSET + i / 4) {
                *b &= !(1 << ((i % 4) * 2));
            }
            self.entry_num += 1;
        }
        Ok(())
    }

    /// Writes one primitive item, on a new page if this one has no free entry.
    fn primitive(&mut self, ns: u8, key: &str, v: &Value) -> Result<(), NvsError> {
        check_name(key)?;
        let (t, d) = primitive_data(v).ok_or(NvsError::KeyName {
            key: String::from(key),
        })?;
        if self.entry_num >= ENTRY_COUNT {
            self.new_page()?;
        }
        self.put(&item_header(ns, t, 1, key, d), 1)
    }

    /// The namespace index for key rows; errors before any `namespace`.
    fn ns(&self, key: &str) -> Result<u8, NvsError> {
        self.current_ns.ok_or(NvsError::NoNamespace {
            key: String::from(key),
        })
    }

    /// Chooses the namespace of the following keys (a CSV `namespace` row),
    /// writing its entry the first time.
    pub fn namespace(&mut self, name: &str) -> Result<(), NvsError> {
        check_name(name)?;
        if let Some((_, idx)) = self.namespaces.iter().find(|(n, _)| n == name) {
            self.current_ns = Some(*idx);
            return Ok(());
        }
        if self.ns_count >= 254 {
            return Err(NvsError::NamespacesExhausted);
        }
        let idx = self.ns_count + 1;
        self.primitive(0, name, &Value::U8(idx))?;
        self.ns_count = idx;
        self.namespaces.push((String::from(name), idx));
        self.current_ns = Some(idx);
        Ok(())
    }

    /// Writes a primitive value (any [`Value`] but strings and blobs).
    pub fn set(&mut self, key: &str, value: &Value) -> Result<(), NvsError> {
        match value {
            Value::Str(s) => self.set_str(key, s),
            Value::Blob(_) => Err(NvsError::KeyName {
                key: String::from(key),
            }),
            v => {
                let ns = self.ns(key)?;
                self.primitive(ns, key, v)
            }
        }
    }

    /// Writes a `u8`.
    pub fn set_u8(&mut self, key: &str, v: u8) -> Result<(), NvsError> {
        self.set(key, &Value::U8(v))
    }

    /// Writes a `u32`.
    pub fn set_u32(&mut self, key: &str, v: u32) -> Result<(), NvsError> {
        self.set(key, &Value::U32(v))
    }

    /// Writes an `i32`.
    pub fn set_i32(&mut self, key: &str, v: i32) -> Result<(), NvsError> {
        self.set(key, &Value::I32(v))
    }

    /// Writes a string (stored with its NUL; at most 3999 bytes).
    pub fn set_str(&mut self, key: &str, v: &str) -> Result<(), NvsError> {
        let ns = self.ns(key)?;
        check_name(key)?;
        let mut data = Vec::with_capacity(v.len() + 1);
        data.extend_from_slice(v.as_bytes());
        data.push(0);
        if data.len() > MAX_STRING_SIZE {
            return Err(NvsError::ValueTooLong {
                key: String::from(key),
                len: data.len(),
                max: MAX_STRING_SIZE,
            });
        }
        let data_entries = data.len().div_ceil(ENTRY_SIZE);
        let total = data_entries + 1;
        // The generator's rule: the item may not reach the last entry.
        if self.entry_num + total >= ENTRY_COUNT && self.entry_num > 0 {
            self.new_page()?;
        }
        let mut d = [0xFF; 8];
        let size = u16::try_from(data.len()).map_err(|_| NvsError::Full)?;
        d[0..2].copy_from_slice(&size.to_le_bytes());
        d[4..8].copy_from_slice(&crc32(&data).to_le_bytes());
        let span = u8::try_from(total).map_err(|_| NvsError::Full)?;
        self.put(&item_header(ns, ItemType::Str, span, key, d), 1)?;
        self.put(&data, data_entries)
    }

    /// The partition image, `size` bytes.
    pub fn finish(self) -> Vec<u8> {
        let mut out: Vec<u8> = self.pages.concat();
        out.resize(self.size, 0xFF);
        out
    }
}

/// One flash operation on the partition, at an offset in it.
///
/// NOR flash only clears bits when it programs: every program here only
/// clears bits of what is on flash, so applying it as an AND (see [`apply`])
/// equals writing it. An erase sets a whole page (one 4096-byte sector) to
/// 0xFF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlashOp {
    /// Program `bytes` at `offset`.
    Program {
        /// Offset in the partition.
        offset: usize,
        /// The bytes written there.
        bytes: Vec<u8>,
    },
    /// Erase the page that starts at `offset` ([`PAGE_SIZE`] bytes).
    Erase {
        /// Offset in the partition (a multiple of [`PAGE_SIZE`]).
        offset: usize,
    },
}

impl FlashOp {
    /// Where the operation starts, in the partition.
    pub fn offset(&self) -> usize {
        match self {
            FlashOp::Program { offset, .. } | FlashOp::Erase { offset } => *offset,
        }
    }

    /// How many bytes it covers.
    pub fn len(&self) -> usize {
        match self {
            FlashOp::Program { bytes, .. } => bytes.len(),
            FlashOp::Erase { .. } => PAGE_SIZE,
        }
    }

    /// True for a program of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Applies flash operations to an image as NOR flash does (a program gives
/// old AND bytes, an erase 0xFF). Bytes outside the image are ignored.
pub fn apply(partition: &mut [u8], ops: &[FlashOp]) {
    for op in ops {
        match op {
            FlashOp::Program { offset, bytes } => {
                for (k, b) in bytes.iter().enumerate() {
                    if let Some(dst) = offset.checked_add(k).and_then(|a| partition.get_mut(a)) {
                        *dst &= *b;
                    }
                }
            }
            FlashOp::Erase { offset } => {
                let end = offset.saturating_add(PAGE_SIZE).min(partition.len());
                if let Some(dst) = partition.get_mut(*offset..end) {
                    dst.fill(0xFF);
                }
            }
        }
    }
}

/// A page in use, as the cursor tracks it.
#[derive(Debug, Clone, Copy)]
struct Used {
    index: usize,
    state: PageState,
    seq: u32,
    next_free: usize,
    used: usize,
}

/// The writes of one plan, over a copy of the partition: ESP-IDF's
/// `PageManager` (pages in use oldest first, the free-page list, the next
/// sequence number) and the live items where they are now.
struct Cursor {
    img: Vec<u8>,
    ops: Vec<FlashOp>,
    /// Active, full and freeing pages, oldest first.
    pages: Vec<Used>,
    /// Erased or corrupt pages, in address order (ESP-IDF's free list).
    free: Vec<usize>,
    next_seq: u32,
    /// The live items, where they sit now.
    live: Vec<Item>,
}

impl Cursor {
    /// The cursor over `scan` of `partition`, after finishing a garbage
    /// collection that a power cut interrupted (see [`Cursor::recover`]).
    fn new(partition: &[u8], scan: &Scan) -> Result<Cursor, NvsError> {
        let mut pages: Vec<Used> = scan
            .pages
            .iter()
            .filter(|p| {
                matches!(
                    p.state,
                    PageState::Active | PageState::Full | PageState::Freeing
                )
            })
            .map(|p| Used {
                index: p.index,
                state: p.state,
                seq: p.seq,
                next_free: p.next_free,
                used: p.used,
            })
            .collect();
        pages.sort_by_key(|p| p.seq);
        if let Some(w) = pages.windows(2).find(|w| w[0].seq == w[1].seq) {
            return Err(NvsError::DuplicateSequence {
                first: w[0].index.min(w[1].index),
                second: w[0].index.max(w[1].index),
                seq: w[0].seq,
            });
        }
        let free = scan
            .pages
            .iter()
            .filter(|p| matches!(p.state, PageState::Uninitialized | PageState::Corrupt))
            .map(|p| p.index)
            .collect();
        let next_seq = match pages.last() {
            Some(p) => p.seq.checked_add(1).ok_or(NvsError::Full)?,
            None => 0,
        };
        let mut cur = Cursor {
            img: partition.to_vec(),
            ops: Vec::new(),
            pages,
            free,
            next_seq,
            live: scan.items.clone(),
        };
        cur.recover()?;
        Ok(cur)
    }

    /// Finishes an interrupted garbage collection, as ESP-IDF's
    /// `PageManager::load` does when it finds a page in the freeing state:
    /// the freeing page's live items are copied to the newest page (the one
    /// the collection activated, or a newly activated one), then the page is
    /// erased and becomes free.
    ///
    /// Where ESP-IDF erases the half-filled new page and copies everything
    /// again, otter keeps the copies already made (they are the newest
    /// copies, so they are what reads see) and copies only the rest; both
    /// end in the same keys and values.
    fn recover(&mut self) -> Result<(), NvsError> {
        let Some(pos) = self
            .pages
            .iter()
            .position(|p| p.state == PageState::Freeing)
        else {
            return Ok(());
        };
        let freeing = self.pages[pos].index;
        let has_dest = self
            .pages
            .last()
            .is_some_and(|p| p.state == PageState::Active && p.index != freeing);
        if !has_dest {
            self.activate()?;
        }
        self.move_items(freeing)
    }

    /// The page new items go to, if there is one.
    fn current(&self) -> Option<Used> {
        self.pages
            .last()
            .copied()
            .filter(|p| p.state == PageState::Active)
    }

    fn page_mut(&mut self, index: usize) -> Option<&mut Used> {
        self.pages.iter_mut().find(|p| p.index == index)
    }

    fn write(&mut self, offset: usize, bytes: &[u8]) {
        let op = FlashOp::Program {
            offset,
            bytes: bytes.to_vec(),
        };
        apply(&mut self.img, core::slice::from_ref(&op));
        self.ops.push(op);
    }

    fn erase_page(&mut self, index: usize) {
        let op = FlashOp::Erase {
            offset: index * PAGE_SIZE,
        };
        apply(&mut self.img, core::slice::from_ref(&op));
        self.ops.push(op);
    }

    /// Rewrites the bitmap word holding `entry`'s state, as ESP-IDF's
    /// `alterEntryState` does (one aligned 32-bit word).
    fn set_entry_state(&mut self, page: usize, entry: usize, state: u8) {
        self.set_range_state(page, entry, entry + 1, state);
    }

    /// Sets the state of entries `begin..end` as ESP-IDF's
    /// `alterEntryRangeState` does: from the last entry down, one aligned
    /// 32-bit bitmap word write each time the next entry is in another word.
    fn set_range_state(&mut self, page: usize, begin: usize, end: usize, state: u8) {
        let base = page * PAGE_SIZE + BITMAP_OFFSET;
        let mut i = end;
        while i > begin {
            let word_index = (i - 1) / 16;
            let word_at = base + word_index * 4;
            let mut word = le32(&self.img, word_at);
            while i > begin && (i - 1) / 16 == word_index {
                i -= 1;
                let shift = (i % 16) * 2;
                word &= !(0b11 << shift) | (u32::from(state) << shift);
            }
            self.write(word_at, &word.to_le_bytes());
        }
    }

    /// Sets a page's state word.
    fn set_page_state(&mut self, index: usize, state: PageState) {
        self.write(index * PAGE_SIZE, &state.word().to_le_bytes());
        if let Some(p) = self.page_mut(index) {
            p.state = state;
        }
    }

    /// `PageManager::activatePage`: the first free page (erased first if it
    /// is corrupt) gets an active header with the next sequence number.
    fn activate(&mut self) -> Result<(), NvsError> {
        if self.free.is_empty() {
            return Err(NvsError::Full);
        }
        let index = self.free.remove(0);
        let start = index * PAGE_SIZE;
        let dirty = self
            .img
            .get(start..start + PAGE_SIZE)
            .is_some_and(|p| p.iter().any(|&b| b != 0xFF));
        if dirty {
            self.erase_page(index);
        }
        let seq = self.next_seq;
        self.next_seq = seq.checked_add(1).ok_or(NvsError::Full)?;
        self.write(start, &page_header(PageState::Active, seq));
        self.pages.push(Used {
            index,
            state: PageState::Active,
            seq,
            next_free: 0,
            used: 0,
        });
        Ok(())
    }

    /// `PageManager::requestNewPage`: with two free pages or more, activate
    /// one. With one (the page ESP-IDF keeps for this), collect garbage: the
    /// page with the most unused entries (the oldest of equals) is marked
    /// freeing, a new page is activated, the freeing page's live items are
    /// copied to it one entry at a time, and the freeing page is erased and
    /// becomes free.
    fn request_new_page(&mut self) -> Result<(), NvsError> {
        if self.free.len() >= 2 {
            return self.activate();
        }
        if self.free.is_empty() {
            return Err(NvsError::Full);
        }
        let mut best: Option<(usize, usize)> = None;
        for p in &self.pages {
            let unused = ENTRY_COUNT.saturating_sub(p.used);
            if unused > best.map_or(0, |(_, u)| u) {
                best = Some((p.index, unused));
            }
        }
        let Some((victim, _)) = best else {
            return Err(NvsError::Full);
        };
        self.set_page_state(victim, PageState::Freeing);
        self.activate()?;
        self.move_items(victim)
    }

    /// `Page::copyItems` then `Page::erase`: the live items of page `from`
    /// are copied to the current page, entry by entry (each entry, then its
    /// state), and `from` is erased and joins the free list.
    fn move_items(&mut self, from: usize) -> Result<(), NvsError> {
        let moving: Vec<usize> = (0..self.live.len())
            .filter(|&k| self.live.get(k).is_some_and(|i| i.page == from))
            .collect();
        for k in moving {
            let Some(item) = self.live.get(k).cloned() else {
                continue;
            };
            let dest = self.current().ok_or(NvsError::Full)?;
            if dest.next_free + item.span > ENTRY_COUNT {
                return Err(NvsError::Full);
            }
            for j in 0..item.span {
                let src = from * PAGE_SIZE;
                let raw = self
                    .img
                    .get(src..src + PAGE_SIZE)
                    .map(|p| entry_bytes(p, item.entry + j))
                    .unwrap_or([0xFF; ENTRY_SIZE]);
                let at =
                    dest.index * PAGE_SIZE + FIRST_ENTRY_OFFSET + (dest.next_free + j) * ENTRY_SIZE;
                self.write(at, &raw);
                self.set_entry_state(dest.index, dest.next_free + j, ENTRY_WRITTEN);
            }
            if let Some(p) = self.page_mut(dest.index) {
                p.next_free += item.span;
                p.used += item.span;
            }
            if let Some(live) = self.live.get_mut(k) {
                live.page = dest.index;
                live.entry = dest.next_free;
            }
        }
        self.erase_page(from);
        self.pages.retain(|p| p.index != from);
        self.free.push(from);
        Ok(())
    }

    /// `Storage::writeItem` for an item header and its variable-length data
    /// (empty for a primitive): on the current page, or, when it cannot hold
    /// all the item's entries, after `markFull` and `requestNewPage`. Returns
    /// where the item went.
    fn write_item(
        &mut self,
        item: Item,
        entry: [u8; ENTRY_SIZE],
        data: &[u8],
    ) -> Result<(usize, usize), NvsError> {
        let count = 1 + data.len().div_ceil(ENTRY_SIZE);
        let fits = |c: &Cursor| {
            c.current()
                .is_some_and(|p| p.next_free + count <= ENTRY_COUNT)
        };
        if !fits(self) {
            if self.pages.is_empty() {
                // nvs_flash_init on a blank partition activates its first page.
                self.activate()?;
            } else {
                if let Some(p) = self.current() {
                    self.set_page_state(p.index, PageState::Full);
                }
                self.request_new_page()?;
            }
            if !fits(self) {
                return Err(NvsError::Full);
            }
        }
        let Used {
            index: page,
            next_free: next,
            ..
        } = self.current().ok_or(NvsError::Full)?;
        let entry_at = |e: usize| page * PAGE_SIZE + FIRST_ENTRY_OFFSET + e * ENTRY_SIZE;
        // writeEntry: the header, then its state.
        self.write(entry_at(next), &entry);
        self.set_entry_state(page, next, ENTRY_WRITTEN);
        // writeEntryData: the whole entries of data in one write, then their
        // states; then writeEntry of the tail, padded with 0xFF.
        let whole = data.len() / ENTRY_SIZE * ENTRY_SIZE;
        let (body, tail) = data.split_at(whole);
        let mut at = next + 1;
        if !body.is_empty() {
            let n = body.len() / ENTRY_SIZE;
            self.write(entry_at(at), body);
            self.set_range_state(page, at, at + n, ENTRY_WRITTEN);
            at += n;
        }
        if !tail.is_empty() {
            let mut e = [0xFF; ENTRY_SIZE];
            e[..tail.len()].copy_from_slice(tail);
            self.write(entry_at(at), &e);
            self.set_entry_state(page, at, ENTRY_WRITTEN);
            at += 1;
        }
        if let Some(p) = self.page_mut(page) {
            p.next_free = at;
            p.used += count;
        }
        self.live.push(Item {
            page,
            entry: next,
            span: count,
            ..item
        });
        Ok((page, next))
    }

    /// `Page::eraseEntryAndSpan` of the live item `like` names (same
    /// namespace, key, type and chunk), wherever it sits now, skipping the
    /// one at `keep`: its entries' states set to erased (one word for a
    /// one-entry item, `alterEntryRangeState` else).
    fn erase_item(&mut self, like: &Item, keep: Option<(usize, usize)>) {
        let same = |i: &Item| {
            i.ns == like.ns
                && i.key == like.key
                && i.item_type == like.item_type
                && i.chunk == like.chunk
                && Some((i.page, i.entry)) != keep
        };
        let Some(k) = self.live.iter().position(same) else {
            return;
        };
        let item = self.live.remove(k);
        self.set_range_state(item.page, item.entry, item.entry + item.span, ENTRY_ERASED);
        if let Some(p) = self.page_mut(item.page) {
            p.used = p.used.saturating_sub(item.span);
        }
    }
}

/// A live item the cursor is about to write (page, entry and span are set
/// when it is written).
fn new_item(ns: u8, item_type: ItemType, key: &str, payload: Payload) -> Item {
    Item {
        page: 0,
        entry: 0,
        span: 0,
        ns,
        item_type,
        chunk: CHUNK_ANY,
        key: String::from(key),
        payload,
    }
}

/// The item header and data a value is stored as.
fn encode(ns: u8, key: &str, value: &Value) -> Result<([u8; ENTRY_SIZE], Vec<u8>), NvsError> {
    if let Some((t, d)) = primitive_data(value) {
        return Ok((item_header(ns, t, 1, key, d), Vec::new()));
    }
    let Value::Str(s) = value else {
        return Err(NvsError::BlobInPlace {
            key: String::from(key),
        });
    };
    let mut data = Vec::with_capacity(s.len() + 1);
    data.extend_from_slice(s.as_bytes());
    data.push(0);
    if data.len() > MAX_STRING_SIZE {
        return Err(NvsError::ValueTooLong {
            key: String::from(key),
            len: data.len(),
            max: MAX_STRING_SIZE,
        });
    }
    let span = u8::try_from(1 + data.len().div_ceil(ENTRY_SIZE)).map_err(|_| NvsError::Full)?;
    let mut d = [0xFF; 8];
    let size = u16::try_from(data.len()).map_err(|_| NvsError::Full)?;
    d[0..2].copy_from_slice(&size.to_le_bytes());
    d[4..8].copy_from_slice(&crc32(&data).to_le_bytes());
    Ok((item_header(ns, ItemType::Str, span, key, d), data))
}

/// The type byte a value is stored with.
fn item_type_of(value: &Value) -> Option<ItemType> {
    match value {
        Value::Str(_) => Some(ItemType::Str),
        v => primitive_data(v).map(|(t, _)| t),
    }
}

/// A namespace entry's index, if it names one: 1..=254 (0 holds the
/// namespace entries themselves and 255 means "any"; ESP-IDF never assigns
/// either). An entry with another index is damage and names no namespace,
/// as [`Nvs::load`](super::Nvs::load) reads it.
fn ns_index(item: &Item) -> Option<u8> {
    match item.payload {
        Payload::Value(Value::U8(v))
            if item.item_type == ItemType::U8 && (1..=254).contains(&v) =>
        {
            Some(v)
        }
        _ => None,
    }
}

/// The index of namespace `ns`, if it has an entry.
fn find_ns(scan: &Scan, ns: &str) -> Option<u8> {
    scan.items
        .iter()
        .rev()
        .filter(|i| i.ns == 0 && i.key == ns)
        .find_map(ns_index)
}

/// The flash writes with which ESP-IDF's `nvs_open(ns, READWRITE)` +
/// `nvs_set_*(key, value)` would store `value` (a primitive or a string), in
/// ESP-IDF's order:
///
/// 1. if the namespace is new: its entry (namespace 0, lowest free index),
///    as in step 2;
/// 2. if the current page cannot hold the item's entries: its state word set
///    to full, then the next free page's header (active, sequence number + 1);
/// 3. the item header (32 bytes), then its bitmap word (written); for a
///    string, its whole data entries in one write and their bitmap words,
///    then the last partial entry (padded with 0xFF) and its bitmap word;
/// 4. the old item's bitmap word(s) (erased): an item of the same type
///    under the same key.
///
/// When the current page is full and only one free page is left (the page
/// ESP-IDF keeps for this), step 2 collects garbage first, as
/// `PageManager::requestNewPage` does: the page with the most unused entries
/// is marked freeing, the free page becomes active, the freeing page's live
/// items are copied to it entry by entry, and the freeing page is erased
/// ([`FlashOp::Erase`]). A plan over a partition whose collection a power cut
/// interrupted (a page in the freeing state) first finishes it.
///
/// After any prefix of these operations, and with any one of them torn, the
/// key reads as the old or the new value and every other key as before
/// ([`Nvs::load`](super::Nvs::load)). An unchanged value gives no writes, as
/// in ESP-IDF. [`NvsError::Full`] only when the live items fill every page
/// but the spare. Damage is handled as ESP-IDF handles it (a corrupt page is
/// erased before it is used, a bad entry is skipped). Blobs are refused
/// ([`NvsError::BlobInPlace`]).
pub fn plan_set(
    partition: &[u8],
    ns: &str,
    key: &str,
    value: &Value,
) -> Result<Vec<FlashOp>, NvsError> {
    check_name(ns)?;
    check_name(key)?;
    let scan = Scan::read_with(partition, ReadMode::Repair)?;
    let mut cur = Cursor::new(partition, &scan)?;
    let ns_idx = match find_ns(&scan, ns) {
        Some(i) => i,
        None => {
            let used: Vec<u8> = scan
                .items
                .iter()
                .filter(|i| i.ns == 0)
                .filter_map(ns_index)
                .collect();
            let idx = (1..=254u8)
                .find(|i| !used.contains(i))
                .ok_or(NvsError::NamespacesExhausted)?;
            let mut d = [0xFF; 8];
            d[0] = idx;
            let item = new_item(0, ItemType::U8, ns, Payload::Value(Value::U8(idx)));
            cur.write_item(item, item_header(0, ItemType::U8, 1, ns, d), &[])?;
            idx
        }
    };
    let (header, data) = encode(ns_idx, key, value)?;
    let t = item_type_of(value).ok_or(NvsError::BlobInPlace {
        key: String::from(key),
    })?;
    let old = scan
        .items
        .iter()
        .rev()
        .find(|i| i.ns == ns_idx && i.key == key && i.item_type == t)
        .cloned();
    if let Some(o) = &old {
        if matches!(&o.payload, Payload::Value(v) if v == value) {
            return Ok(cur.ops);
        }
    }
    let item = new_item(ns_idx, t, key, Payload::Value(value.clone()));
    let at = cur.write_item(item, header, &data)?;
    if let Some(o) = &old {
        // Where it is now: a garbage collection may have moved it.
        cur.erase_item(o, Some(at));
    }
    Ok(cur.ops)
}

/// [`plan_set`] of a `u8` (`nvs_set_u8`).
pub fn plan_set_u8(
    partition: &[u8],
    ns: &str,
    key: &str,
    value: u8,
) -> Result<Vec<FlashOp>, NvsError> {
    plan_set(partition, ns, key, &Value::U8(value))
}

/// [`plan_set`] of a `u32` (`nvs_set_u32`).
pub fn plan_set_u32(
    partition: &[u8],
    ns: &str,
    key: &str,
    value: u32,
) -> Result<Vec<FlashOp>, NvsError> {
    plan_set(partition, ns, key, &Value::U32(value))
}

/// [`plan_set`] of a string (`nvs_set_str`; at most 3999 bytes).
pub fn plan_set_str(
    partition: &[u8],
    ns: &str,
    key: &str,
    value: &str,
) -> Result<Vec<FlashOp>, NvsError> {
    plan_set(partition, ns, key, &Value::Str(String::from(value)))
}

/// The flash writes with which ESP-IDF's `nvs_erase_key(key)` would remove
/// `key` from namespace `ns`: the state of the item's entries set to erased
/// (one bitmap word for a primitive; for a string, its header and data
/// entries, last word first). A missing key or namespace gives no writes
/// (ESP-IDF returns `ESP_ERR_NVS_NOT_FOUND`, having written nothing). As
/// ESP-IDF's lookup with `ItemType::ANY`, the oldest live item under the key
/// is the one erased; a blob is refused ([`NvsError::BlobInPlace`]).
///
/// A single write, so after a cut the key reads as before or as gone.
pub fn plan_erase_key(partition: &[u8], ns: &str, key: &str) -> Result<Vec<FlashOp>, NvsError> {
    check_name(ns)?;
    check_name(key)?;
    let scan = Scan::read_with(partition, ReadMode::Repair)?;
    let mut cur = Cursor::new(partition, &scan)?;
    let Some(ns_idx) = find_ns(&scan, ns) else {
        return Ok(cur.ops);
    };
    let Some(item) = scan.items.iter().find(|i| i.ns == ns_idx && i.key == key) else {
        return Ok(cur.ops);
    };
    if matches!(
        item.item_type,
        ItemType::Blob | ItemType::BlobData | ItemType::BlobIndex
    ) {
        return Err(NvsError::BlobInPlace {
            key: String::from(key),
        });
    }
    cur.erase_item(item, None);
    Ok(cur.ops)
}

/// [`plan_set_u8`], applied to `partition`; returns the writes done.
pub fn set_u8(
    partition: &mut [u8],
    ns: &str,
    key: &str,
    value: u8,
) -> Result<Vec<FlashOp>, NvsError> {
    let ops = plan_set_u8(partition, ns, key, value)?;
    apply(partition, &ops);
    Ok(ops)
}
