//! The device API's fixed parts that the host side names: the paths it
//! advertises (mDNS) and the built-in Update page, which the firmware serves
//! from its own image (not from the web-UI slot, so a broken UI can always
//! be repaired). Every endpoint is served by the `otter-device` core
//! ([`crate::net`]); docs/device-api.md is its contract.

/// `POST /update` (firmware) and `GET /update` (the Update page).
pub const UPDATE_PATH: &str = "/update";
/// `GET /api/ota/status`.
pub const STATUS_PATH: &str = "/api/ota/status";
/// `POST /api/ota/frontend` (a web-UI image).
pub const FRONTEND_PATH: &str = "/api/ota/frontend";
/// `POST /api/ota/check`: check the release manifest now.
pub const CHECK_PATH: &str = "/api/ota/check";

/// The Update page: file pickers and progress bars for both uploads.
pub const UPDATE_PAGE: &str = include_str!("update_page.html");
/// The most the Update page may weigh, uncompressed: it lives in firmware.
pub const UPDATE_PAGE_BUDGET: usize = 20 * 1024;
const _: () = assert!(UPDATE_PAGE.len() < UPDATE_PAGE_BUDGET);
