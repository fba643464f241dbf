//! Carrying out an NVS plan (`otter_format::nvs::plan_set` and friends) on
//! the simulated flash, one operation at a time, so a power cut can fall
//! before, after or inside any of them.

use embedded_storage::nor_flash::NorFlash;
use otter_format::nvs::FlashOp;

use crate::{ProgramMode, SimFlash, SimFlashError};

/// Programs and erases `ops` (offsets in the NVS partition at `base`).
///
/// NVS rewrites bitmap words in place, clearing more bits, as NOR allows:
/// the flash is in relaxed program mode for the duration and restored after.
pub fn apply(flash: &mut SimFlash, base: u32, ops: &[FlashOp]) -> Result<(), SimFlashError> {
    let mode = flash.mode();
    flash.set_mode(ProgramMode::Relaxed);
    let res = ops.iter().try_for_each(|op| {
        let at = u32::try_from(op.offset())
            .ok()
            .and_then(|o| base.checked_add(o))
            .ok_or(SimFlashError::PowerLoss)?;
        match op {
            FlashOp::Program { bytes, .. } => flash.write(at, bytes),
            FlashOp::Erase { .. } => {
                let len = u32::try_from(op.len()).map_err(|_| SimFlashError::PowerLoss)?;
                flash.erase(at, at + len)
            }
        }
    });
    flash.set_mode(mode);
    res
}
