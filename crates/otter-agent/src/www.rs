//! The web UI: serving the mounted `www` slot's files, and
//! `POST /api/ota/frontend`, which streams a LittleFS image into the
//! inactive slot, verifies it, switches the NVS pointer and reboots (seed
//! 002; the flash side is [`otter_sim::device::www`]).
//!
//! The slot mounted at boot is read once, read-only, when the device boots
//! ([`MountedUi::load`]); it is never written while mounted (an upload goes
//! to the other slot), so what is served is what is on flash.
//!
//! Upload rules are `POST /update`'s (auth, one update at a time, raw body
//! or multipart, the `X-Otter-Sha256` header), plus: the image must be
//! exactly the slot's size (a Content-Length larger than the slot is 413
//! before a byte is read, any other wrong size 422), mount with the slot's
//! geometry and hold `/index.html` (else 422). Anything refused leaves the
//! mounted UI and the NVS pointer unchanged.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use otter_sim::device::www::{read_ui_files, FrontendError, FrontendUpdate, SLOT_LABELS};
use otter_sim::device::VirtualDevice;
use serde_json::json;

use crate::api::{handle_upload, not_found, record, ApiError, At, Upload};
use crate::state::{Reboot, Shared};

/// Path of the web-UI upload.
pub const FRONTEND_PATH: &str = "/api/ota/frontend";

/// The files of the mounted slot.
#[derive(Debug)]
pub struct MountedUi {
    /// The slot (`www_0`, `www_1`).
    pub slot: String,
    /// Path (absolute, `/`-separated) to contents.
    files: HashMap<String, Vec<u8>>,
}

impl MountedUi {
    /// Reads the UI the last power-on mounted: `Ok(None)` when the device has
    /// no web-UI slots or neither mounts.
    pub fn load(dev: &mut VirtualDevice) -> Result<Option<Self>, String> {
        let Some(active) = dev.www_boot().and_then(|b| b.active) else {
            return Ok(None);
        };
        let Some(layout) = dev.www_layout() else {
            return Ok(None);
        };
        let r = &layout.slots[active];
        let mut img = vec![0u8; r.size as usize];
        embedded_storage_read(dev, r.offset, &mut img)?;
        let files = read_ui_files(&img).map_err(|e| format!("{}: {e}", r.name))?;
        Ok(Some(Self {
            slot: SLOT_LABELS[active].to_string(),
            files: files.into_iter().collect(),
        }))
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether it holds no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The file at `path`, if there is one.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }
}

fn embedded_storage_read(dev: &mut VirtualDevice, at: u32, buf: &mut [u8]) -> Result<(), String> {
    use otter_sim::embedded_storage::nor_flash::ReadNorFlash;
    dev.flash()
        .read(at, buf)
        .map_err(|e| format!("reading flash at {at:#x}: {e}"))
}

/// The Content-Type for a file name, by extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "wasm" => "application/wasm",
        "webmanifest" => "application/manifest+json",
        "xml" => "application/xml",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// Decodes `%XX` escapes; `None` when an escape is malformed or the result
/// is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The file path a request path names: `/` and `/dir/` name their
/// `index.html`; `None` when the path tries to leave the root (`..`), holds
/// a backslash or NUL, or does not decode.
pub fn file_path(uri_path: &str) -> Option<String> {
    let decoded = percent_decode(uri_path)?;
    if !decoded.starts_with('/') || decoded.contains(['\\', '\0']) {
        return None;
    }
    if decoded.split('/').any(|seg| seg == ".." || seg == ".") {
        return None;
    }
    Some(if decoded.ends_with('/') {
        format!("{decoded}index.html")
    } else {
        decoded
    })
}

/// Serves a file of the mounted UI (the router's fallback: every path that
/// is not an API endpoint).
pub async fn serve(State(s): State<Arc<Shared>>, req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return not_found().into_response();
    }
    let Some(path) = file_path(req.uri().path()) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            "the path is malformed or leaves the web root (`..`, `.`, `\\`, NUL or a bad %-escape)",
        )
        .into_response();
    };
    let Some(ui) = s.ui() else {
        if path == "/index.html" {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_web_ui",
                "no web UI is mounted (this device has no www_0/www_1 slots, or neither holds a UI; GET /api/ota/status says which); upload one on the Update page at /update",
            )
            .into_response();
        }
        return not_found().into_response();
    };
    let Some(body) = ui.file(&path) else {
        return not_found().into_response();
    };
    let headers = [
        (header::CONTENT_TYPE, content_type(&path)),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    // hyper sends no body for HEAD, and keeps the Content-Length.
    (headers, body.to_vec()).into_response()
}

/// Maps a frontend error to the API's status and code.
pub fn frontend_error(e: &FrontendError) -> ApiError {
    use StatusCode as S;
    let m = e.to_string();
    match e {
        FrontendError::NoSlots | FrontendError::NoNvs => {
            ApiError::new(S::SERVICE_UNAVAILABLE, "no_www_slot", m)
        }
        FrontendError::TooLarge { .. } => ApiError::new(S::PAYLOAD_TOO_LARGE, "too_large", m),
        FrontendError::WrongSize { .. } => ApiError::new(S::UNPROCESSABLE_ENTITY, "wrong_size", m),
        FrontendError::BadUi { .. } => ApiError::new(S::UNPROCESSABLE_ENTITY, "bad_web_ui", m),
        FrontendError::Sha256Mismatch { .. } => {
            ApiError::new(S::UNPROCESSABLE_ENTITY, "sha256_mismatch", m)
        }
        FrontendError::Nvs(_) => ApiError::new(S::INTERNAL_SERVER_ERROR, "nvs_error", m),
        _ => ApiError::new(S::INTERNAL_SERVER_ERROR, "flash_error", m),
    }
}

/// A web-UI upload in progress.
struct FrontendWriter {
    shared: Arc<Shared>,
    update: FrontendUpdate,
    slot: String,
    total: Option<u64>,
}

impl FrontendWriter {
    fn begin(
        shared: &Arc<Shared>,
        size: Option<u64>,
        expected_sha256: Option<[u8; 32]>,
    ) -> Result<Self, ApiError> {
        let update = {
            let mut dev = shared.device();
            // The reboot that mounts the new UI would roll back a firmware
            // that has not confirmed itself yet (as any reboot would).
            if let Some(running) = shared.boot().running {
                let (flash, cfg) = dev.parts();
                if cfg.rollback
                    && otter_ota::lifecycle::running_state(flash, cfg, running)
                        .ok()
                        .flatten()
                        == Some(otter_format::otadata::OtaState::PendingVerify)
                {
                    return Err(crate::api::ota_error(
                        &otter_ota::OtaError::RunningImagePending,
                    ));
                }
            }
            let layout = dev
                .www_layout()
                .ok_or_else(|| frontend_error(&FrontendError::NoSlots))?;
            let active = dev.www_boot().and_then(|b| b.active);
            FrontendUpdate::begin(dev.www_flash(), &layout, active, size, expected_sha256)
                .map_err(|e| frontend_error(&e))?
        };
        let t = update.target().clone();
        shared.event(format!(
            "web-UI update started: writing {} to {} ({:#x}, {} bytes)",
            size.map_or_else(
                || "an image of unknown size".into(),
                |n| format!("{n} bytes")
            ),
            t.name,
            t.offset,
            t.size
        ));
        Ok(Self {
            shared: shared.clone(),
            slot: t.name,
            update,
            total: size,
        })
    }
}

impl Upload for FrontendWriter {
    const KIND: &'static str = "www";

    fn feed(&mut self, data: &[u8]) -> Result<(), ApiError> {
        {
            let mut dev = self.shared.device();
            self.update
                .write(dev.www_flash(), data)
                .map_err(|e| frontend_error(&e))?;
        }
        self.shared.note_progress(self.update.received());
        Ok(())
    }

    fn at(&self) -> At {
        At {
            slot: Some(self.slot.clone()),
            received: self.update.received(),
            total: self.total,
        }
    }

    fn complete(self, s: &Arc<Shared>) -> Result<Response, ApiError> {
        let at = self.at();
        let done = {
            let mut dev = s.device();
            self.update.finish(dev.www_flash())
        };
        match done {
            Ok(sw) => {
                record(
                    s,
                    Self::KIND,
                    "ok",
                    None,
                    Some(sw.slot.clone()),
                    None,
                    at.received,
                    at.total,
                );
                s.event(format!(
                    "web UI written to {} and verified ({} bytes, {} files, sha256 {}); NVS {}/{} = {} ({} flash writes), rebooting",
                    sw.slot,
                    sw.bytes,
                    sw.files,
                    sw.sha256,
                    otter_sim::device::www::NVS_NAMESPACE,
                    otter_sim::device::www::NVS_KEY,
                    sw.index,
                    sw.nvs_writes
                ));
                s.request_reboot(Reboot::Frontend);
                Ok(Json(json!({
                    "result": "ok",
                    "kind": "www",
                    "slot": sw.slot,
                    "bytes": sw.bytes,
                    "files": sw.files,
                    "sha256": sw.sha256,
                    "rebooting": true,
                    "message": format!("web UI written to {} and verified; the NVS pointer selects it; rebooting to mount it", sw.slot),
                }))
                .into_response())
            }
            Err(e) => {
                let e = frontend_error(&e);
                crate::api::fail(s, Self::KIND, at, &e, "rejected");
                Err(e)
            }
        }
    }
}

/// `POST /api/ota/frontend`.
pub async fn frontend(State(s): State<Arc<Shared>>, req: Request) -> Response {
    handle_upload::<FrontendWriter>(s, req, FrontendWriter::begin).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(file_path("/").as_deref(), Some("/index.html"));
        assert_eq!(file_path("/a/").as_deref(), Some("/a/index.html"));
        assert_eq!(file_path("/a%20b.css").as_deref(), Some("/a b.css"));
        assert_eq!(file_path("/../etc/passwd"), None);
        assert_eq!(file_path("/a/%2e%2e/b"), None);
        assert_eq!(file_path("/a/./b"), None);
        assert_eq!(file_path("/a%5cb"), None);
        assert_eq!(file_path("/a%00"), None);
        assert_eq!(file_path("/bad%zz"), None);
        assert_eq!(file_path("/bad%"), None);
    }

    #[test]
    fn types() {
        assert_eq!(content_type("/index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("/a/app.JS"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("/x.svg"), "image/svg+xml");
        assert_eq!(content_type("/noext"), "application/octet-stream");
    }
}
