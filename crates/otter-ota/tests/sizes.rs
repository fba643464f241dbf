//! The engine's working state has a fixed, documented size.

use otter_ota::session::{UpdateSession, SESSION_STATE_SIZE};

#[test]
fn update_session_state_is_fixed_and_bounded() {
    let size = core::mem::size_of::<UpdateSession>();
    println!("UpdateSession: {size} bytes (limit {SESSION_STATE_SIZE})");
    assert!(size <= SESSION_STATE_SIZE);
    // The streaming verifier dominates; the image itself is never held.
    assert!(size >= 512, "the staging buffer alone is 512 bytes");
}

#[test]
fn diagnostics_snapshot_is_fixed_and_bounded() {
    use otter_ota::diagnostics::{Diagnostics, SlotReport, DIAGNOSTICS_SIZE};
    let size = core::mem::size_of::<Diagnostics>();
    println!(
        "Diagnostics: {size} bytes (limit {DIAGNOSTICS_SIZE}); SlotReport {} ImageError {}",
        core::mem::size_of::<SlotReport>(),
        core::mem::size_of::<otter_format::image::ImageError>()
    );
    assert!(size <= DIAGNOSTICS_SIZE);
}
