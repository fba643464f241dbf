//! A firmware that crashes or hangs on every boot, with nothing to roll it
//! back (app rollback off, or the image already confirmed): a boot loop.
//!
//! A real ESP32 in a boot loop answers nothing, so a client that just pushed
//! the image can only say "unreachable". The virtual device knows better (the
//! behaviour profile says what the firmware does), and says so: while the
//! looping firmware is between its boot and its crash, the device's port
//! answers every request with `503 {"error": "boot_loop", "message", "boot_loop":
//! {...}}`, the [`BootLoop`] of the running attempt. Nothing else is served:
//! the firmware is not up, so nothing can be uploaded, confirmed or rolled
//! back. The normal status document carries the same `boot_loop` (null
//! unless the last boots of the running slot crashed or hung).

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use crate::state::Shared;

/// The error code of a request answered during a boot loop.
pub const BOOT_LOOP_CODE: &str = "boot_loop";

/// The running attempt's crashes: the same slot crashed or hung on this many
/// boots in a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootLoop {
    /// The slot that keeps crashing.
    pub slot: String,
    /// Its firmware version.
    pub version: String,
    /// Its behaviour (`crash-on-boot` or `hang`).
    pub behavior: String,
    /// Boots in a row that crashed or hung, this one included once it has.
    pub crashes: u32,
    /// After this many the virtual device stops (`otter device run` exits 1).
    pub limit: u32,
    /// Whether app rollback is on (it is off, or the image was already
    /// confirmed, when nothing rolls it back).
    pub rollback: bool,
    /// What happens, for people.
    pub message: String,
}

impl BootLoop {
    /// The record for `crashes` crashed boots of `slot`.
    pub fn new(
        slot: &str,
        version: &str,
        behavior: &str,
        crashes: u32,
        limit: u32,
        rollback: bool,
    ) -> Self {
        let shown = otter_sim::device::or_placeholder(version, otter_sim::device::NO_VERSION);
        let message = format!(
            "{shown} in {slot} {} on {crashes} boot{} in a row (behaviour {behavior}) and nothing rolls it back{}; the virtual device stops after {limit}",
            if behavior == "hang" { "hung" } else { "crashed" },
            if crashes == 1 { "" } else { "s" },
            if rollback {
                " (it was confirmed before)"
            } else {
                " (app rollback is off)"
            },
        );
        Self {
            slot: slot.to_string(),
            version: version.to_string(),
            behavior: behavior.to_string(),
            crashes,
            limit,
            rollback,
            message,
        }
    }

    /// The answer to any request while the firmware loops.
    pub fn response(&self) -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "error": BOOT_LOOP_CODE,
                "message": self.message,
                "boot_loop": self,
            })),
        )
            .into_response()
    }
}

/// The router of a looping boot: every request gets the [`BootLoop`].
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(move || {
        let shared = shared.clone();
        async move {
            match shared.boot_loop() {
                Some(b) => b.response(),
                None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_slot_version_count_and_why() {
        let b = BootLoop::new("ota_0", "3.0.0", "crash-on-boot", 2, 5, false);
        assert_eq!(
            b.message,
            "3.0.0 in ota_0 crashed on 2 boots in a row (behaviour crash-on-boot) and nothing rolls it back (app rollback is off); the virtual device stops after 5"
        );
        let b = BootLoop::new("ota_1", "", "hang", 1, 5, true);
        assert_eq!(
            b.message,
            "(no version) in ota_1 hung on 1 boot in a row (behaviour hang) and nothing rolls it back (it was confirmed before); the virtual device stops after 5"
        );
    }
}
