//! Flash access shared by the bootloader model, the session and the lifecycle:
//! otadata reads and writes, and verification of an image in a slot.

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use otter_format::image::{ImageError, ImageInfo, StreamingVerifier, VerifyOptions};
use otter_format::otadata::{Otadata, SelectEntry, ENTRY_SIZE, SECTOR1_OFFSET};
use otter_format::SECTOR_SIZE;

use crate::error::OtaError;
use crate::slots::Region;

/// Bytes read from flash per step while verifying a slot.
pub(crate) const VERIFY_CHUNK: usize = 256;

/// Reads both otadata entries.
pub(crate) fn read_otadata<F: ReadNorFlash>(
    flash: &mut F,
    otadata: &Region,
) -> Result<Otadata, OtaError<F::Error>> {
    let mut e0 = [0u8; ENTRY_SIZE];
    let mut e1 = [0u8; ENTRY_SIZE];
    flash
        .read(otadata.offset, &mut e0)
        .map_err(OtaError::Flash)?;
    flash
        .read(otadata.offset + SECTOR1_OFFSET as u32, &mut e1)
        .map_err(OtaError::Flash)?;
    Ok(Otadata::from_entries(&e0, &e1))
}

/// Rewrites one otadata sector as ESP-IDF does: one sector erase, then one
/// 32-byte program of `entry`.
pub(crate) fn write_otadata_entry<F: NorFlash>(
    flash: &mut F,
    otadata: &Region,
    sector: usize,
    entry: &SelectEntry,
) -> Result<(), OtaError<F::Error>> {
    let at = otadata.offset + (sector as u32) * SECTOR_SIZE;
    flash.erase(at, at + SECTOR_SIZE).map_err(OtaError::Flash)?;
    flash.write(at, &entry.to_bytes()).map_err(OtaError::Flash)
}

/// The verdict on the image in a slot.
pub type SlotVerdict = Result<ImageInfo, ImageError>;

/// Verifies the image stored in `slot` (checksum, appended SHA-256, chip,
/// size, app descriptor, and whatever else `opts` asks), reading it in small
/// chunks. The image must fit the slot. A flash failure is an `Err`; a bad
/// image is `Ok(Err(..))`.
pub fn verify_slot<F: ReadNorFlash>(
    flash: &mut F,
    slot: &Region,
    mut opts: VerifyOptions,
) -> Result<SlotVerdict, OtaError<F::Error>> {
    opts.slot_size = Some(opts.slot_size.map_or(slot.size, |s| s.min(slot.size)));
    let mut verifier = StreamingVerifier::new(opts);
    let mut buf = [0u8; VERIFY_CHUNK];
    let mut at: u32 = 0;
    while at < slot.size {
        let n = (slot.size - at).min(VERIFY_CHUNK as u32) as usize;
        let Some(chunk) = buf.get_mut(..n) else { break };
        flash
            .read(slot.offset + at, chunk)
            .map_err(OtaError::Flash)?;
        match verifier.feed(chunk) {
            Ok(p) if p.image_complete => break,
            Ok(_) => {}
            Err(_) => break,
        }
        at += n as u32;
    }
    Ok(verifier.finish())
}
