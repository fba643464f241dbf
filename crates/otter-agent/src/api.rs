//! The device's HTTP API (see DESIGN.md, "Device API"):
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/update` | the Update page (HTML; file pickers, progress, confirm/rollback) |
//! | POST | `/update` | firmware upload: raw body (`curl --data-binary`) or a multipart form's first file field |
//! | GET | `/api/ota/status` | diagnostics: running, boot, next, slots, otadata, last update, last rollback |
//! | POST | `/api/ota/confirm` | `esp_ota_mark_app_valid_cancel_rollback` |
//! | POST | `/api/ota/rollback` | `esp_ota_mark_app_invalid_rollback_and_reboot` |
//! | POST | `/api/ota/reboot` | `esp_restart` |
//! | POST | `/api/ota/frontend` | web-UI upload: a LittleFS image, raw body or multipart (see [`crate::www`]) |
//! | GET | anything else | the mounted web UI's files (`/` is `/index.html`) |
//!
//! Errors are `{ "error": CODE, "message": TEXT }` with 400 (malformed
//! request), 401/403 (token missing/wrong), 409 (an update is running, the
//! running image is still pending, no rollback target), 413 (does not fit
//! the slot), 422 (not a valid app for this device: magic, chip, checksum,
//! SHA-256, secure_version), 503 (no OTA slot), 500 (flash failure).
//!
//! An upload is decided as early as possible: the Content-Length against the
//! slot before a byte is read, the header, chip and app descriptor from the
//! first bytes, before the slot is erased. A refused request's body is still
//! read to its end (and discarded, within bounds) so the client receives the
//! answer instead of a connection reset; a client that sent
//! `Expect: 100-continue` is answered without sending its body at all.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use otter_format::image::{ImageError, ImageInfo};
use otter_ota::lifecycle::{confirm, mark_invalid_and_rollback, running_state};
use otter_ota::session::{UpdateRequest, UpdateSession};
use otter_ota::{OtaError, SlotId};
use otter_sim::device::Status;
use otter_sim::SimFlashError;
use serde::Serialize;
use serde_json::json;

use crate::state::{
    now_secs, ErrorBody, Event, LastUpdate, Reboot, RollbackRecord, SelfTest, Shared,
};

/// Path of the firmware upload.
pub const UPDATE_PATH: &str = "/update";
/// Path of the status document.
pub const STATUS_PATH: &str = "/api/ota/status";
/// Header carrying the expected SHA-256 of an upload (64 hex digits).
pub const SHA256_HEADER: &str = "x-otter-sha256";
/// The most a refused request's body is read (and discarded) before the
/// connection is dropped.
pub const DRAIN_LIMIT: u64 = 64 << 20;
/// How long a refused request's body is read at most.
pub const DRAIN_TIME: Duration = Duration::from_secs(30);
/// Largest request body accepted (multipart included).
pub const BODY_LIMIT: usize = 64 << 20;

/// An API error: a status code and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: ErrorBody,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: code,
                message: message.into(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// Maps an engine error to the API's status and code.
pub fn ota_error(e: &OtaError<SimFlashError>) -> ApiError {
    use StatusCode as S;
    let m = e.to_string();
    match e {
        OtaError::NoOtaSlots | OtaError::NoOtadata => ApiError::new(
            S::SERVICE_UNAVAILABLE,
            "no_ota_slot",
            format!("this device cannot be updated over the air: {m}"),
        ),
        OtaError::TooLarge { .. } => ApiError::new(S::PAYLOAD_TOO_LARGE, "too_large", m),
        OtaError::Sha256Mismatch => ApiError::new(
            S::UNPROCESSABLE_ENTITY,
            "sha256_mismatch",
            "the image's SHA-256 does not match the X-Otter-Sha256 header: this is not the file you meant to send, or it was damaged on the way; nothing was switched",
        ),
        OtaError::RunningImagePending => ApiError::new(S::CONFLICT, "pending_verify", m),
        OtaError::RollbackImpossible => ApiError::new(S::CONFLICT, "rollback_impossible", m),
        OtaError::Misuse(_) => ApiError::new(S::BAD_REQUEST, "bad_request", m),
        OtaError::Image(ie) => image_error(ie),
        OtaError::TrailingData { .. } => ApiError::new(S::UNPROCESSABLE_ENTITY, "trailing_data", m),
        OtaError::Signature(_) => ApiError::new(
            S::UNPROCESSABLE_ENTITY,
            "bad_signature",
            format!("{m}; nothing was switched (sign the image with a key this device trusts: otter sign or espsecure sign-data --version 2)"),
        ),
        _ => ApiError::new(S::INTERNAL_SERVER_ERROR, "flash_error", m),
    }
}

fn image_error(e: &ImageError) -> ApiError {
    use StatusCode as S;
    let m = format!("update image rejected: {e}");
    let code = match e {
        ImageError::WrongChip { .. } | ImageError::UnknownChip { .. } => "wrong_chip",
        ImageError::SecureVersionTooLow { .. } => "secure_version_too_low",
        ImageError::ImageTooLarge { .. } | ImageError::FileTooLarge { .. } => {
            return ApiError::new(S::PAYLOAD_TOO_LARGE, "too_large", m)
        }
        ImageError::ChecksumMismatch { .. } | ImageError::ShaMismatch { .. } => "integrity",
        ImageError::FileShaMismatch { .. } => "sha256_mismatch",
        ImageError::Sha256Required => "sha256_required",
        ImageError::Truncated { .. } => "truncated",
        ImageError::BadMagic { .. }
        | ImageError::Esp8266 { .. }
        | ImageError::IsBootloader
        | ImageError::IsMergedFlash
        | ImageError::IsRamOnly
        | ImageError::MissingAppDesc => "not_an_app",
        _ => "bad_image",
    };
    ApiError::new(S::UNPROCESSABLE_ENTITY, code, m)
}

/// The API's routes over `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(UPDATE_PATH, post(update).get(update_page))
        .route(STATUS_PATH, get(status))
        .route("/api/ota/confirm", post(confirm_handler))
        .route("/api/ota/rollback", post(rollback_handler))
        .route("/api/ota/reboot", post(reboot_handler))
        .route(crate::www::FRONTEND_PATH, post(crate::www::frontend))
        .route(CHECK_PATH, post(check_handler))
        .fallback(crate::www::serve)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

/// The Update page: served from the firmware (not from the web-UI
/// partition), so a broken web UI can always be repaired from a browser.
/// Plain HTML and JavaScript, within the [`UPDATE_PAGE_BUDGET`].
pub const UPDATE_PAGE: &str = include_str!("update_page.html");
/// The most the Update page may weigh, uncompressed: it lives in firmware.
pub const UPDATE_PAGE_BUDGET: usize = 20 * 1024;
const _: () = assert!(UPDATE_PAGE.len() < UPDATE_PAGE_BUDGET);

async fn update_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        UPDATE_PAGE,
    )
        .into_response()
}

/// The answer to a request for no endpoint and no file of the web UI.
pub fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint or web-UI file; the API is GET /update (the Update page), POST /update, GET /api/ota/status, POST /api/ota/frontend, POST /api/ota/confirm, POST /api/ota/rollback, POST /api/ota/reboot, POST /api/ota/check",
    )
}

/// Checks the bearer token: 401 when missing, 403 when wrong.
pub fn check_auth(s: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    if !s.auth_required() {
        return Ok(());
    }
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this device requires a token: send `Authorization: Bearer TOKEN` (otter push --token TOKEN)",
        ));
    };
    let presented = v
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        Some(t) if s.token_ok(t) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token is wrong",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the Authorization header is not `Bearer TOKEN`",
        )),
    }
}

/// The status document: the device's diagnostics plus what the agent knows.
#[derive(Debug, Serialize)]
pub struct StatusDoc {
    /// Diagnostics read from flash.
    #[serde(flatten)]
    pub device: Status,
    /// Boot number since the agent started.
    pub boot_count: u64,
    /// Milliseconds since this boot.
    pub uptime_ms: u64,
    /// The running firmware's behaviour profile.
    pub behavior: String,
    /// Whether the API requires a token.
    pub auth_required: bool,
    /// Whether an upload is in progress.
    pub update_in_progress: bool,
    /// The last update attempt.
    pub last_update: Option<LastUpdate>,
    /// The self-test of a newly booted image.
    pub selftest: SelfTest,
    /// The running slot's boot loop (crashes or hangs on every boot with
    /// nothing to roll it back), `null` when it is not looping.
    pub boot_loop: Option<crate::bootloop::BootLoop>,
    /// The pull client (`null` when the device does not pull releases).
    pub pull: Option<crate::pull::PullStatus>,
    /// Recent events, oldest first.
    pub events: Vec<Event>,
    /// The API's paths.
    pub api: serde_json::Value,
}

/// Builds the status document.
pub fn status_doc(s: &Shared) -> Result<StatusDoc, ApiError> {
    let boot = s.boot();
    let mut device = s.device().status(boot.running).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "flash_error",
            e.to_string(),
        )
    })?;
    device.predicted = false;
    // The agent's own record wins over flash's (see RollbackRecord::shown).
    if let Some(record) = s.last_rollback() {
        device.last_rollback = Some(record.shown(
            device.last_rollback.as_ref(),
            &boot,
            device.running.as_ref(),
        ));
    }
    Ok(StatusDoc {
        device,
        boot_count: boot.count,
        uptime_ms: s.uptime_ms(),
        behavior: boot.behavior.to_string(),
        auth_required: s.auth_required(),
        update_in_progress: s.update_lock.try_lock().is_err(),
        last_update: s.last_update(),
        selftest: s.selftest(),
        boot_loop: s.boot_loop(),
        pull: s.pull().map(|p| p.status()),
        events: s.events(),
        api: json!({
            "update": UPDATE_PATH,
            "status": STATUS_PATH,
            "confirm": "/api/ota/confirm",
            "rollback": "/api/ota/rollback",
            "reboot": "/api/ota/reboot",
            "frontend": crate::www::FRONTEND_PATH,
            "check": CHECK_PATH,
            "sha256_header": SHA256_HEADER,
        }),
    })
}

async fn status(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(e) = check_auth(&s, &headers) {
        return e.into_response();
    }
    match status_doc(&s) {
        Ok(doc) => Json(doc).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/ota/check`: check the release manifest now.
pub const CHECK_PATH: &str = "/api/ota/check";

/// How long `POST /api/ota/check` waits for the decision (the manifest
/// fetched and checked; not the download).
const CHECK_WAIT: Duration = Duration::from_secs(60);

async fn check_handler(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(e) = check_auth(&s, &headers) {
        return e.into_response();
    }
    let Some(pull) = s.pull() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "pull_not_configured",
            "this device does not pull releases: run it with --manifest-url URL --trust KEY.pub",
        )
        .into_response();
    };
    let Some(report) = pull.check_now(CHECK_WAIT).await else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_decision",
            "the check did not decide in time (the device may be rebooting); GET /api/ota/status shows the pull's step",
        )
        .into_response();
    };
    let code = match report.result {
        "updating" => StatusCode::ACCEPTED,
        "refused" => StatusCode::UNPROCESSABLE_ENTITY,
        "failed" => StatusCode::BAD_GATEWAY,
        "busy" => StatusCode::CONFLICT,
        _ => StatusCode::OK,
    };
    (code, Json(report)).into_response()
}

async fn confirm_handler(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(e) = check_auth(&s, &headers) {
        return e.into_response();
    }
    let Some(running) = s.boot().running else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_running",
            "no image runs",
        )
        .into_response();
    };
    let result = {
        let mut dev = s.device();
        let (flash, cfg) = dev.parts();
        confirm(flash, cfg, running)
            .and_then(|done| Ok((done, running_state(flash, cfg, running)?)))
    };
    match result {
        Ok((done, state)) => {
            let state = state.map(|s| s.name());
            if done {
                s.event(format!("{running} confirmed by API request"));
                s.set_selftest(SelfTest {
                    state: "passed",
                    detail: Some("confirmed by API request".into()),
                    ..s.selftest()
                });
            }
            Json(json!({
                "confirmed": done,
                "slot": running.to_string(),
                "state": state,
                "message": if done { "the running image is now confirmed (VALID); it will not be rolled back" } else { "nothing to confirm: the running image is not pending verification" },
            }))
            .into_response()
        }
        Err(e) => ota_error(&e).into_response(),
    }
}

async fn rollback_handler(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(e) = check_auth(&s, &headers) {
        return e.into_response();
    }
    let Ok(_guard) = s.update_lock.try_lock() else {
        return busy().into_response();
    };
    let boot = s.boot();
    let result = {
        let mut dev = s.device();
        let (flash, cfg) = dev.parts();
        mark_invalid_and_rollback(flash, cfg)
    };
    match result {
        Ok(()) => {
            let from = boot.running.map(|r| r.to_string()).unwrap_or_default();
            s.set_last_rollback(RollbackRecord {
                boot: boot.count,
                from: from.clone(),
                to: None,
                state: "invalid",
                version: Some(boot.version.clone()),
                reason: format!(
                    "a rollback was requested over the API while {} ran from {from}; it was marked INVALID",
                    boot.version
                ),
            });
            s.event(format!(
                "rollback requested: {from} marked invalid, rebooting"
            ));
            s.request_reboot(Reboot::Rollback);
            Json(json!({
                "result": "rolling_back",
                "from": from,
                "message": "the running image was marked invalid; the device reboots into the previous image",
            }))
            .into_response()
        }
        Err(e) => ota_error(&e).into_response(),
    }
}

async fn reboot_handler(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(e) = check_auth(&s, &headers) {
        return e.into_response();
    }
    if s.update_lock.try_lock().is_err() {
        return busy().into_response();
    }
    s.event("reboot requested over the API");
    s.request_reboot(Reboot::Requested);
    Json(json!({ "result": "rebooting" })).into_response()
}

/// 409: an update (firmware or web UI) is already running.
pub fn busy() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "busy",
        "an update is already in progress; wait for it to finish (GET /api/ota/status shows it) and try again",
    )
}

/// An upload being written, whatever it is (firmware or web UI): the raw
/// and multipart loops, the one-at-a-time rule and the last-update record
/// are shared; what is written and how it is checked is the implementor's.
pub trait Upload: Sized + Send {
    /// What the last-update record calls it (`firmware`, `www`).
    const KIND: &'static str;
    /// Writes the next bytes.
    fn feed(&mut self, data: &[u8]) -> Result<(), ApiError>;
    /// Where the upload stands.
    fn at(&self) -> At;
    /// Verifies, switches and answers (the whole body was received).
    fn complete(self, s: &Arc<Shared>) -> Result<Response, ApiError>;
}

impl Upload for Writer {
    const KIND: &'static str = "firmware";
    fn feed(&mut self, data: &[u8]) -> Result<(), ApiError> {
        Writer::feed(self, data)
    }
    fn at(&self) -> At {
        Writer::at(self)
    }
    fn complete(self, s: &Arc<Shared>) -> Result<Response, ApiError> {
        complete_firmware(s, self)
    }
}

/// The update being written: the engine's session plus progress reporting.
struct Writer {
    shared: Arc<Shared>,
    session: UpdateSession,
    slot: SlotId,
    received: u64,
    total: Option<u64>,
    next_log: u64,
}

impl Writer {
    fn begin(
        shared: &Arc<Shared>,
        size: Option<u64>,
        expected_sha256: Option<[u8; 32]>,
    ) -> Result<Self, ApiError> {
        let Some(running) = shared.boot().running else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_running",
                "no image runs",
            ));
        };
        let size32 = match size {
            Some(n) => Some(u32::try_from(n).map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("{n} bytes cannot fit any slot"),
                )
            })?),
            None => None,
        };
        let session = {
            let mut dev = shared.device();
            let (flash, cfg) = dev.parts();
            UpdateSession::begin(
                flash,
                cfg,
                running,
                UpdateRequest::new(size32, expected_sha256),
            )
            .map_err(|e| ota_error(&e))?
        };
        let slot = session.target();
        shared.event(format!(
            "update started: writing {} to {slot} ({:#x}, {} bytes)",
            size.map_or_else(
                || "an image of unknown size".into(),
                |n| format!("{n} bytes")
            ),
            session.region().offset,
            session.region().size
        ));
        Ok(Self {
            shared: shared.clone(),
            session,
            slot,
            received: 0,
            total: size,
            next_log: 5,
        })
    }

    fn feed(&mut self, mut data: &[u8]) -> Result<(), ApiError> {
        // Written in pieces that end on each 5% mark, so progress is logged
        // at every 5% whatever the chunk sizes.
        while !data.is_empty() {
            let total = self
                .total
                .or_else(|| self.session.image_len().map(u64::from))
                .filter(|&t| t > 0);
            let take = match total {
                Some(t) => {
                    let mark = (t * self.next_log).div_ceil(100);
                    usize::try_from(mark.saturating_sub(self.received))
                        .unwrap_or(usize::MAX)
                        .clamp(1, data.len())
                }
                None => data.len(),
            };
            let (piece, rest) = data.split_at(take);
            {
                let mut dev = self.shared.device();
                let (flash, _) = dev.parts();
                self.session
                    .write(flash, piece)
                    .map_err(|e| ota_error(&e))?;
            }
            self.received += piece.len() as u64;
            data = rest;
            self.shared.note_progress(self.received);
            if let Some(t) = total {
                while self.next_log <= 100 && self.received * 100 >= t * self.next_log {
                    tracing::info!(
                        "update progress: {}% ({} of {t} bytes)",
                        self.next_log,
                        self.received
                    );
                    self.next_log += 5;
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<(SlotId, ImageInfo), ApiError> {
        let mut dev = self.shared.device();
        let (flash, _) = dev.parts();
        let verified = self.session.finish(flash).map_err(|e| ota_error(&e))?;
        let info = verified.image().clone();
        let slot = verified.activate(flash).map_err(|e| ota_error(&e))?;
        Ok((slot, info))
    }
}

/// A header's value, when it is text.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The expected SHA-256 from [`SHA256_HEADER`], when sent.
pub fn parse_sha256(headers: &HeaderMap) -> Result<Option<[u8; 32]>, ApiError> {
    let Some(v) = headers.get(SHA256_HEADER) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the {SHA256_HEADER} header must be 64 hex digits (the SHA-256 of the file)"),
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    if s.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = s
            .get(i * 2..i * 2 + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(bad)?;
    }
    Ok(Some(out))
}

/// Reads what is left of a refused request's body and throws it away, so
/// the client gets the answer rather than a reset; bounded in bytes and time.
async fn drain(body: Body) {
    drain_stream(body.into_data_stream()).await;
}

async fn drain_stream<S, B, E>(mut stream: S)
where
    S: futures_util::Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut n = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            n += chunk.as_ref().len() as u64;
            if n > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
}

fn wants_continue(headers: &HeaderMap) -> bool {
    header_str(headers, header::EXPECT.as_str())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// Refuses a request whose body has not been read yet.
async fn refuse(e: ApiError, headers: &HeaderMap, body: Body) -> Response {
    if !wants_continue(headers) {
        drain(body).await;
    }
    e.into_response()
}

/// Records the last update's outcome.
#[allow(clippy::too_many_arguments)]
pub fn record(
    s: &Shared,
    kind: &'static str,
    result: &'static str,
    error: Option<&ApiError>,
    slot: Option<String>,
    version: Option<String>,
    received: u64,
    total: Option<u64>,
) {
    s.set_last_update(LastUpdate {
        result,
        error: error.map(|e| e.body.clone()),
        kind,
        slot,
        version,
        received,
        total,
        boot: s.boot().count,
        at: now_secs(),
    });
}

/// Where an upload stood when it ended.
#[derive(Debug, Clone, Default)]
pub struct At {
    /// The slot written.
    pub slot: Option<String>,
    /// Bytes received.
    pub received: u64,
    /// Bytes announced.
    pub total: Option<u64>,
}

impl Writer {
    fn at(&self) -> At {
        At {
            slot: Some(self.slot.to_string()),
            received: self.received,
            total: self.total,
        }
    }
}

/// Records and logs a failed upload of `kind`.
pub fn fail(s: &Shared, kind: &'static str, at: At, e: &ApiError, result: &'static str) {
    record(
        s,
        kind,
        result,
        Some(e),
        at.slot,
        None,
        at.received,
        at.total,
    );
    let unchanged = if kind == "firmware" {
        "the running image and the boot selection are unchanged"
    } else {
        "the mounted web UI and the NVS pointer are unchanged"
    };
    s.event(format!(
        "{kind} update {result} after {} bytes: {} ({} {}); {unchanged}",
        at.received,
        e.body.message,
        e.status.as_u16(),
        e.body.error
    ));
}

/// How an upload of some kind begins: the shared state, the announced
/// length (Content-Length of a raw body) and the expected SHA-256.
pub type Begin<W> = fn(&Arc<Shared>, Option<u64>, Option<[u8; 32]>) -> Result<W, ApiError>;

async fn update(State(s): State<Arc<Shared>>, req: Request) -> Response {
    handle_upload::<Writer>(s, req, Writer::begin).await
}

/// Runs an upload request of any kind: auth, one at a time, the SHA-256
/// header, raw body or multipart.
pub async fn handle_upload<W: Upload>(s: Arc<Shared>, req: Request, begin: Begin<W>) -> Response {
    let (parts, body) = req.into_parts();
    if let Err(e) = check_auth(&s, &parts.headers) {
        return refuse(e, &parts.headers, body).await;
    }
    let Ok(_guard) = s.update_lock.try_lock() else {
        return refuse(busy(), &parts.headers, body).await;
    };
    let expected = match parse_sha256(&parts.headers) {
        Ok(x) => x,
        Err(e) => return refuse(e, &parts.headers, body).await,
    };
    let multipart = header_str(&parts.headers, header::CONTENT_TYPE.as_str())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"));
    let content_length = header_str(&parts.headers, header::CONTENT_LENGTH.as_str())
        .and_then(|v| v.trim().parse::<u64>().ok());

    let outcome = if multipart {
        let req = Request::from_parts(parts, body);
        match Multipart::from_request(req, &()).await {
            Ok(mp) => upload_multipart(&s, mp, expected, begin).await,
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("malformed multipart upload: {e}"),
            )),
        }
    } else {
        if content_length == Some(0) {
            return refuse(
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "empty",
                    if W::KIND == "firmware" { "the request has no body: send the firmware image (curl --data-binary @firmware.bin)" } else { "the request has no body: send the web-UI image (curl --data-binary @www.bin)" },
                ),
                &parts.headers,
                body,
            )
            .await;
        }
        let w = match begin(&s, content_length, expected) {
            Ok(w) => w,
            Err(e) => {
                fail(&s, W::KIND, At::default(), &e, "rejected");
                return refuse(e, &parts.headers, body).await;
            }
        };
        upload_raw(&s, w, body).await
    };
    match outcome {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn upload_raw<W: Upload>(
    s: &Arc<Shared>,
    mut w: W,
    body: Body,
) -> Result<Response, ApiError> {
    let at = w.at();
    record(s, W::KIND, "in_progress", None, at.slot, None, 0, at.total);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(data) => {
                if let Err(e) = w.feed(&data) {
                    fail(s, W::KIND, w.at(), &e, "rejected");
                    // The session is dropped: nothing switched. Read the
                    // rest so the client sees the answer.
                    drain_stream(stream).await;
                    return Err(e);
                }
            }
            Err(err) => {
                let e = ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "aborted",
                    format!(
                        "the upload was cut off after {} bytes ({err}); the update was abandoned",
                        w.at().received
                    ),
                );
                fail(s, W::KIND, w.at(), &e, "aborted");
                return Err(e);
            }
        }
    }
    complete(s, w)
}

async fn upload_multipart<W: Upload>(
    s: &Arc<Shared>,
    mut mp: Multipart,
    expected: Option<[u8; 32]>,
    begin: Begin<W>,
) -> Result<Response, ApiError> {
    let malformed = |e: axum::extract::multipart::MultipartError| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "aborted",
            format!("the multipart upload broke off: {e}"),
        )
    };
    // The first field that carries a file (or is named like one).
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "empty",
                    "the form has no file field: send the firmware as a file (e.g. curl -F file=@firmware.bin)",
                ))
            }
            Err(e) => return Err(malformed(e)),
        };
        let is_file = field.file_name().is_some()
            || matches!(
                field.name(),
                Some("file" | "firmware" | "update" | "image" | "www")
            );
        if !is_file {
            continue;
        }
        let mut w = match begin(s, None, expected) {
            Ok(w) => w,
            Err(e) => {
                fail(s, W::KIND, At::default(), &e, "rejected");
                let mut field = field;
                drain_field(&mut field).await;
                drop(field);
                drain_multipart_rest(&mut mp).await;
                return Err(e);
            }
        };
        record(s, W::KIND, "in_progress", None, w.at().slot, None, 0, None);
        let mut field = field;
        loop {
            match field.chunk().await {
                Ok(Some(data)) => {
                    if let Err(e) = w.feed(&data) {
                        fail(s, W::KIND, w.at(), &e, "rejected");
                        drain_field(&mut field).await;
                        drop(field);
                        drain_multipart_rest(&mut mp).await;
                        return Err(e);
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    let e = malformed(err);
                    fail(s, W::KIND, w.at(), &e, "aborted");
                    return Err(e);
                }
            }
        }
        if w.at().received == 0 {
            let e = ApiError::new(
                StatusCode::BAD_REQUEST,
                "empty",
                "the uploaded file is empty",
            );
            fail(s, W::KIND, w.at(), &e, "rejected");
            return Err(e);
        }
        // Whatever follows the file is not needed.
        drop(field);
        drain_multipart_rest(&mut mp).await;
        return complete(s, w);
    }
}

async fn drain_field(field: &mut axum::extract::multipart::Field<'_>) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Ok(Some(_)) = field.chunk().await {}
    })
    .await;
}

async fn drain_multipart_rest(mp: &mut Multipart) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Ok(Some(mut f)) = mp.next_field().await {
            while let Ok(Some(_)) = f.chunk().await {}
        }
    })
    .await;
}

fn complete<W: Upload>(s: &Arc<Shared>, w: W) -> Result<Response, ApiError> {
    let at = w.at();
    if let Some(t) = at.total {
        if at.received < t {
            let e = ApiError::new(
                StatusCode::BAD_REQUEST,
                "aborted",
                format!("the upload ended after {} of {t} bytes", at.received),
            );
            fail(s, W::KIND, at, &e, "aborted");
            return Err(e);
        }
    }
    w.complete(s)
}

fn complete_firmware(s: &Arc<Shared>, w: Writer) -> Result<Response, ApiError> {
    let at = w.at();
    let (received, total) = (at.received, at.total);
    match w.finish() {
        Ok((slot, info)) => {
            let desc = info.app_desc.as_ref();
            let text = |f: otter_format::image::FixedStr<'_>| {
                String::from_utf8_lossy(f.bytes()).into_owned()
            };
            let version = desc.map(|d| text(d.version()));
            let project = desc.map(|d| text(d.project_name()));
            record(
                s,
                "firmware",
                "ok",
                None,
                Some(slot.to_string()),
                version.clone(),
                received,
                total,
            );
            s.event(format!(
                "update written to {slot} and verified ({received} bytes, version {}); boot slot switched, rebooting",
                version.as_deref().unwrap_or("?")
            ));
            s.request_reboot(Reboot::Update);
            Ok(Json(json!({
                "result": "ok",
                "slot": slot.to_string(),
                "version": version,
                "project_name": project,
                "bytes": received,
                "rebooting": true,
                "message": format!("update written to {slot} and verified; rebooting into it"),
            }))
            .into_response())
        }
        Err(e) => {
            fail(s, "firmware", at, &e, "rejected");
            Err(e)
        }
    }
}
