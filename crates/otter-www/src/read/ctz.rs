//! Files stored as CTZ skip-lists.
//!
//! A file of more than one block's worth is a chain of blocks written in
//! order; the struct names the last block (the head) and the size. Block
//! `i > 0` opens with `ctz(i) + 1` little-endian pointers, pointer `j` naming
//! block `i - 2^j`; the data fills the rest. Block 0 is all data. Reading the
//! whole file only needs pointer 0 of each block (the previous block), but
//! littlefs seeks through the others, so they are checked too.

use alloc::vec::Vec;

use super::Corruption;

/// Bytes of pointers at the start of block `index`.
fn pointers(index: u32) -> u32 {
    if index == 0 {
        0
    } else {
        4 * (index.trailing_zeros() + 1)
    }
}

/// The contents of the file whose last block is `head`, `size` bytes long.
pub(super) fn read(
    image: &[u8],
    block_size: u32,
    head: u32,
    size: u32,
) -> Result<Vec<u8>, Corruption> {
    let block_count = (image.len() / block_size as usize) as u32;
    if size == 0 {
        return Ok(Vec::new());
    }
    if u64::from(size) > image.len() as u64 {
        return Err(Corruption::FileTooLarge(size));
    }
    // How many blocks hold `size` bytes.
    let mut blocks: u32 = 0;
    let mut held: u64 = 0;
    while held < u64::from(size) {
        if blocks >= block_count {
            return Err(Corruption::FileTooLarge(size));
        }
        held += u64::from(block_size.saturating_sub(pointers(blocks)));
        blocks += 1;
    }
    // Walk back from the head through pointer 0.
    let mut chain = Vec::with_capacity(blocks as usize);
    let mut cur = head;
    for index in (0..blocks).rev() {
        if cur >= block_count {
            return Err(Corruption::BlockOutOfRange(cur));
        }
        chain.push(cur);
        if index > 0 {
            let at = cur as usize * block_size as usize;
            let p = image
                .get(at..at + 4)
                .ok_or(Corruption::BlockOutOfRange(cur))?;
            cur = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
        }
    }
    chain.reverse();
    // littlefs reads through the skip pointers (`lfs_ctz_find` on every
    // block change), not only pointer 0: each must name the block
    // `2^j` back in the chain.
    for (index, &b) in chain.iter().enumerate().skip(1) {
        let at = b as usize * block_size as usize;
        for j in 1..pointers(index as u32) / 4 {
            let p = image
                .get(at + 4 * j as usize..at + 4 * j as usize + 4)
                .ok_or(Corruption::BlockOutOfRange(b))?;
            let named = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
            let want = chain.get(index - (1usize << j)).copied();
            if want != Some(named) {
                return Err(Corruption::SkipPointer(named));
            }
        }
    }
    let mut out = Vec::with_capacity(size as usize);
    for (index, &b) in chain.iter().enumerate() {
        let start = b as usize * block_size as usize + pointers(index as u32) as usize;
        let room = block_size.saturating_sub(pointers(index as u32)) as usize;
        let want = (size as usize - out.len()).min(room);
        let data = image
            .get(start..start + want)
            .ok_or(Corruption::BlockOutOfRange(b))?;
        out.extend_from_slice(data);
    }
    Ok(out)
}
