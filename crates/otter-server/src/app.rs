//! The HTTP side: the device API (`/device/v1/...`, `/dl/...`) and the
//! operator's REST API (`/api/v1/...`), as one axum router built by [`app`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use otter_release::{verify_manifest_by, ArtifactKind, PublicKey, ReleaseError, Sha256Digest};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::artifacts::Artifacts;
use crate::error::{ApiError, StoreError};
use crate::rollout::{Command, Permille, Policy};
use crate::store::{hex, random_hex, CheckInError, ReleaseRow, RolloutError, Store, Target};
use crate::wire::{self, WireError, MAX_CHECKIN_LEN};

/// The largest artifact a release may carry (the largest ESP32 flash).
pub const MAX_ARTIFACT_LEN: u64 = 16 * 1024 * 1024;

/// Where the time comes from (Unix seconds); tests inject their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// How the server behaves.
#[derive(Clone)]
pub struct Config {
    /// The data folder (`tmp/` stages uploads).
    pub data: PathBuf,
    /// Where artifacts are kept: `RELEASE/firmware.bin` in the data
    /// folder's `artifacts/` or in a bucket.
    pub artifacts: Arc<Artifacts>,
    /// Keys a release must be signed by (at least one of them).
    pub trusted: Vec<PublicKey>,
    /// The operator's bearer token.
    pub admin_token: String,
    /// The fleet's enrollment key.
    pub enrollment_key: String,
    /// Seconds between check-ins the server suggests.
    pub poll_s: u64,
    /// Check-ins per second a device may make on average.
    pub rate_per_s: f64,
    /// Check-ins a device may make in a burst.
    pub burst: f64,
}

/// Per-device token buckets.
#[derive(Default)]
struct Limiter {
    buckets: HashMap<String, (f64, Instant)>,
}

impl Limiter {
    /// Takes one token for `key`; `Err(seconds)` to wait when empty.
    fn take(&mut self, key: &str, rate: f64, burst: f64, now: Instant) -> Result<(), u64> {
        if self.buckets.len() > 1_000_000 {
            self.buckets.clear();
        }
        let (tokens, at) = self.buckets.entry(key.to_string()).or_insert((burst, now));
        let refill = now.saturating_duration_since(*at).as_secs_f64() * rate;
        *tokens = (*tokens + refill).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate.max(1e-6)).ceil().max(1.0) as u64)
        }
    }
}

/// The router's state.
#[derive(Clone)]
pub struct AppState {
    store: Arc<Store>,
    cfg: Arc<Config>,
    clock: Clock,
    limiter: Arc<Mutex<Limiter>>,
    admin_hash: [u8; 32],
    enroll_hash: [u8; 32],
}

impl AppState {
    /// State over `store` with `cfg` and `clock`.
    pub fn new(store: Arc<Store>, cfg: Config, clock: Clock) -> Self {
        Self {
            admin_hash: Sha256::digest(cfg.admin_token.as_bytes()).into(),
            enroll_hash: Sha256::digest(cfg.enrollment_key.as_bytes()).into(),
            store,
            cfg: Arc::new(cfg),
            clock,
            limiter: Arc::new(Mutex::new(Limiter::default())),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// How it behaves.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The clock.
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    /// Now, by the configured clock.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }
}

/// The whole router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"ok": true})) }))
        .route("/openapi.json", get(openapi))
        .route("/dashboard", get(dashboard))
        .route("/device/v1/enroll", post(enroll))
        .route("/device/v1/checkin", post(check_in))
        .route("/dl/{ticket}/{file}", get(download))
        .route("/api/v1/devices", get(list_devices))
        .route("/api/v1/devices/{id}", get(show_device))
        .route("/api/v1/devices/{id}/pin", put(pin_device))
        .route(
            "/api/v1/releases",
            get(list_releases)
                .post(publish)
                .layer(DefaultBodyLimit::max(3 * MAX_ARTIFACT_LEN as usize)),
        )
        .route("/api/v1/releases/{id}", get(show_release))
        .route("/api/v1/rollouts", get(list_rollouts).post(create_rollout))
        .route("/api/v1/rollouts/{id}", get(show_rollout))
        .route("/api/v1/rollouts/{id}/{command}", post(command_rollout))
        .route("/api/v1/downloads", get(list_downloads))
        .fallback(|| async {
            ApiError::not_found(
                "not_found",
                "no such endpoint; the API is described at /openapi.json",
            )
        })
        .with_state(state)
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::OPENAPI_JSON,
    )
        .into_response()
}

/// The dashboard page: static, it reads the REST API with the operator
/// token the user gives it (kept in the tab's sessionStorage, or passed as
/// `#token=...`, which browsers never send to the server).
async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        include_str!("dashboard.html"),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Checks the operator's token in constant time.
fn admin(s: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(t) = bearer(headers) else {
        return Err(ApiError::unauthorized(
            "missing_token",
            "the operator API needs Authorization: Bearer <admin token> (the server's DATA/admin.token)",
        ));
    };
    let got: [u8; 32] = Sha256::digest(t.as_bytes()).into();
    if bool::from(got.ct_eq(&s.admin_hash)) {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            "bad_token",
            "this is not the server's admin token",
        ))
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::too_large(
            "body_too_large",
            format!("the body is over {limit} bytes (or was cut off); nothing was recorded"),
        )
    })
}

fn wire_error(e: WireError) -> ApiError {
    match &e {
        WireError::TooLarge { .. } => ApiError::too_large(e.code(), e.to_string()),
        WireError::Malformed { .. } => ApiError::bad_request(e.code(), e.to_string()),
        WireError::Field { .. } => ApiError::unprocessable(e.code(), e.to_string()),
    }
}

// -- device API ----------------------------------------------------------

async fn enroll(State(s): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let body = read_body(req.into_body(), MAX_CHECKIN_LEN).await?;
    let b = wire::parse_enroll(&body).map_err(wire_error)?;
    let got: [u8; 32] = Sha256::digest(b.enrollment_key.as_bytes()).into();
    if !bool::from(got.ct_eq(&s.enroll_hash)) {
        return Err(ApiError::unauthorized(
            "bad_enrollment_key",
            "the enrollment key is not this fleet's (DATA/enroll.key on the server)",
        ));
    }
    let token = random_hex(32)?;
    if !s
        .store
        .enroll(&b.device_id, &token_hash(&token), &b.tags, s.now())
        .await?
    {
        return Err(ApiError::conflict(
            "already_enrolled",
            format!(
                "device {:?} is already enrolled; a device keeps the token it was given (an id cannot be enrolled twice)",
                b.device_id
            ),
        ));
    }
    tracing::info!("enrolled device {}", b.device_id);
    Ok((
        StatusCode::CREATED,
        Json(json!({"device_id": b.device_id, "token": token})),
    )
        .into_response())
}

async fn check_in(State(s): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let Some(token) = bearer(req.headers()).map(str::to_string) else {
        return Err(ApiError::unauthorized(
            "missing_token",
            "a check-in needs Authorization: Bearer <device token> (issued at enrollment)",
        ));
    };
    let Some(device) = s.store.device_by_token(&token_hash(&token)).await? else {
        return Err(ApiError::unauthorized(
            "unknown_token",
            "no device was enrolled with this token",
        ));
    };
    let limited = {
        let mut l = s
            .limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        l.take(&device, s.cfg.rate_per_s, s.cfg.burst, Instant::now())
    };
    if let Err(wait) = limited {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("device {device} checks in too often; retry in {wait} s. Nothing was recorded"),
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    let body = read_body(req.into_body(), MAX_CHECKIN_LEN).await?;
    let (claimed, report) = wire::parse_check_in(&body).map_err(wire_error)?;
    if claimed != device {
        return Err(ApiError::forbidden(
            "identity_mismatch",
            format!(
                "this token belongs to device {device:?}, not {claimed:?}; nothing was recorded"
            ),
        ));
    }
    let now = s.now();
    let out = s
        .store
        .check_in(&device, &report, now)
        .await
        .map_err(|e| match e {
            CheckInError::EventConflict { .. } => {
                ApiError::conflict("event_id_reused", e.to_string())
            }
            CheckInError::UnknownRelease { .. } => {
                ApiError::unprocessable("unknown_release", e.to_string())
            }
            CheckInError::Store(st) => st.into(),
        })?;
    for ev in &report.events {
        if out.recorded.contains(&ev.id) {
            tracing::info!(
                "event device={device} id={} kind={} release={} reason={}",
                ev.id,
                ev.kind.name(),
                ev.release.as_deref().unwrap_or("-"),
                ev.reason.as_deref().unwrap_or("-")
            );
        }
    }
    let offer = out.offer.as_ref().map(|o| {
        json!({
            "release": o.release,
            "version": o.version,
            "sha256": o.sha256,
            "manifest_url": format!("dl/{}/manifest.json", o.ticket),
            "via": o.via,
        })
    });
    Ok(Json(json!({
        "device_id": device,
        "acknowledged": report.events.iter().map(|e| &e.id).collect::<Vec<_>>(),
        "recorded": out.recorded,
        "duplicates": out.duplicates,
        "offer": offer,
        "poll_s": s.cfg.poll_s,
    }))
    .into_response())
}

fn range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    v.strip_prefix("bytes=")?.split('-').next()?.parse().ok()
}

async fn download(
    State(s): State<AppState>,
    Path((ticket, file)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    let known = matches!(
        file.as_str(),
        "manifest.json" | "manifest.json.sig" | "firmware.bin" | "www.bin"
    );
    if !known || wire::check_id("ticket", &ticket).is_err() {
        return Err(ApiError::not_found("not_found", "no such file"));
    }
    let from = range_start(req.headers());
    let Some((device, release)) = s.store.ticket(&ticket, &file, from, s.now()).await? else {
        return Err(ApiError::not_found(
            "unknown_ticket",
            "this download link was never issued; check in for a fresh one",
        ));
    };
    tracing::info!(
        "download device={device} release={release} file={file} from={}",
        from.unwrap_or(0)
    );
    let rel = s
        .store
        .release(&release)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_release", "the release is gone"))?;
    match file.as_str() {
        "manifest.json" => {
            Ok(([(header::CONTENT_TYPE, "application/json")], rel.manifest).into_response())
        }
        "manifest.json.sig" => {
            Ok(([(header::CONTENT_TYPE, "application/json")], rel.signature).into_response())
        }
        _ => s.cfg.artifacts.serve(&release, &file, req).await,
    }
}

// -- operator API --------------------------------------------------------

async fn list_devices(State(s): State<AppState>, h: HeaderMap) -> Result<Response, ApiError> {
    admin(&s, &h)?;
    Ok(Json(json!({"devices": s.store.devices().await?})).into_response())
}

async fn show_device(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(&s, &h)?;
    let d = s
        .store
        .device(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_device", format!("no device {id:?}")))?;
    let events: Vec<Value> = s
        .store
        .events(&id)
        .await?
        .into_iter()
        .map(|(_, e, received)| json!({"event": e, "received_at": received}))
        .collect();
    Ok(Json(json!({"device": d, "events": events})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinBody {
    release: Option<String>,
}

fn json_body<T: for<'de> Deserialize<'de>>(what: &'static str, b: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(b).map_err(|e| {
        ApiError::bad_request(
            "malformed_body",
            format!("the body is not a valid {what}: {e}"),
        )
    })
}

fn rollout_error(e: RolloutError) -> ApiError {
    match &e {
        RolloutError::UnknownRelease(_) => {
            ApiError::unprocessable("unknown_release", e.to_string())
        }
        RolloutError::UnknownRollout(_) => ApiError::not_found("unknown_rollout", e.to_string()),
        RolloutError::UnknownDevice(_) => ApiError::unprocessable("unknown_device", e.to_string()),
        RolloutError::EmptyTarget => ApiError::unprocessable("empty_target", e.to_string()),
        RolloutError::Policy(p) => ApiError::unprocessable(p.code(), e.to_string()),
        RolloutError::Command(c) => ApiError::conflict(c.code(), e.to_string()),
        RolloutError::Store(_) => match e {
            RolloutError::Store(st) => st.into(),
            _ => unreachable!("matched above"),
        },
    }
}

async fn pin_device(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin(&s, &h)?;
    let b: PinBody = json_body("pin", &body)?;
    if !s
        .store
        .pin(&id, b.release.as_deref())
        .await
        .map_err(rollout_error)?
    {
        return Err(ApiError::not_found(
            "unknown_device",
            format!("no device {id:?}"),
        ));
    }
    Ok(Json(json!({"device_id": id, "pinned_release": b.release})).into_response())
}

async fn list_releases(State(s): State<AppState>, h: HeaderMap) -> Result<Response, ApiError> {
    admin(&s, &h)?;
    Ok(Json(json!({"releases": s.store.releases().await?})).into_response())
}

async fn show_release(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(&s, &h)?;
    let r = s
        .store
        .release(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_release", format!("no release {id:?}")))?;
    Ok(Json(json!({"release": r})).into_response())
}

/// An artifact streamed to a temporary file while hashed.
struct Staged {
    path: PathBuf,
    size: u64,
    sha256: [u8; 32],
}

async fn stage(
    dir: &std::path::Path,
    name: &str,
    mut field: axum::extract::multipart::Field<'_>,
) -> Result<Staged, ApiError> {
    use tokio::io::AsyncWriteExt as _;
    let path = dir.join(name);
    let io = |e: std::io::Error| {
        ApiError::from(StoreError::Io {
            path: path.display().to_string(),
            source: e,
        })
    };
    let mut f = tokio::fs::File::create(&path).await.map_err(io)?;
    let mut h = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(|e| {
        ApiError::bad_request(
            "malformed_upload",
            format!("the {name} part was cut off: {e}"),
        )
    })? {
        size += chunk.len() as u64;
        if size > MAX_ARTIFACT_LEN {
            return Err(ApiError::too_large(
                "artifact_too_large",
                format!("{name} is over {MAX_ARTIFACT_LEN} bytes, larger than any ESP32 flash"),
            ));
        }
        h.update(&chunk);
        f.write_all(&chunk).await.map_err(io)?;
    }
    f.sync_all().await.map_err(io)?;
    Ok(Staged {
        path,
        size,
        sha256: h.finalize().into(),
    })
}

fn release_error(e: ReleaseError) -> ApiError {
    ApiError::unprocessable(
        e.code(),
        format!("the release does not verify, so it was not published: {e}"),
    )
}

async fn publish(
    State(s): State<AppState>,
    h: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    admin(&s, &h)?;
    let mut mp = multipart.map_err(|e| {
        ApiError::bad_request(
            "malformed_upload",
            format!("publish with multipart/form-data parts manifest, signature, firmware and (a bundle) www: {e}"),
        )
    })?;
    let tmp_root = s.cfg.data.join("tmp");
    let tmp = tmp_root.join(random_hex(8)?);
    tokio::fs::create_dir_all(&tmp)
        .await
        .map_err(|e| StoreError::Io {
            path: tmp.display().to_string(),
            source: e,
        })?;
    let result = publish_staged(&s, &mut mp, &tmp).await;
    let _ = tokio::fs::remove_dir_all(&tmp).await;
    result
}

async fn publish_staged(
    s: &AppState,
    mp: &mut Multipart,
    tmp: &std::path::Path,
) -> Result<Response, ApiError> {
    let mut manifest: Option<Bytes> = None;
    let mut signature: Option<Bytes> = None;
    let mut staged: HashMap<&'static str, Staged> = HashMap::new();
    while let Some(field) = mp.next_field().await.map_err(|e| {
        ApiError::bad_request(
            "malformed_upload",
            format!("the upload does not parse: {e}"),
        )
    })? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "manifest" | "signature" => {
                let limit = if name == "manifest" {
                    otter_release::MAX_MANIFEST_LEN
                } else {
                    otter_release::MAX_SIGNATURE_FILE_LEN
                };
                let b = field.bytes().await.map_err(|e| {
                    ApiError::bad_request(
                        "malformed_upload",
                        format!("the {name} part was cut off: {e}"),
                    )
                })?;
                if b.len() > limit {
                    return Err(ApiError::too_large(
                        "body_too_large",
                        format!("the {name} is {} bytes; at most {limit}", b.len()),
                    ));
                }
                if name == "manifest" {
                    manifest = Some(b);
                } else {
                    signature = Some(b);
                }
            }
            "firmware" => {
                staged.insert("firmware", stage(tmp, "firmware.bin", field).await?);
            }
            "www" => {
                staged.insert("www", stage(tmp, "www.bin", field).await?);
            }
            other => {
                return Err(ApiError::bad_request(
                    "unknown_part",
                    format!(
                        "unknown part {other:?}; the parts are manifest, signature, firmware, www"
                    ),
                ))
            }
        }
    }
    let (Some(manifest), Some(signature)) = (manifest, signature) else {
        return Err(ApiError::bad_request(
            "missing_part",
            "a release needs the parts manifest (manifest.json) and signature (manifest.json.sig)",
        ));
    };
    let v = verify_manifest_by(&manifest, &signature, &s.cfg.trusted, s.now())
        .map_err(release_error)?;
    let m = &v.manifest;
    let mut files = Vec::new();
    for a in m.artifacts() {
        let (part, file) = match a.kind {
            ArtifactKind::Firmware => ("firmware", "firmware.bin"),
            ArtifactKind::Alternative(_) => {
                // Devices would fetch them from here: the server stores only
                // the parts it knows, so it does not publish what it cannot
                // serve.
                return Err(ApiError::unprocessable(
                    "alternatives_unsupported",
                    format!(
                        "the manifest lists {} ({}): this server publishes the full image and web UI only; publish the release without --compress/--deltas-from (an otter-release/1 manifest)",
                        a.kind.name(),
                        a.url
                    ),
                ));
            }
            _ => ("www", "www.bin"),
        };
        let absolute = a.url.starts_with("http://") || a.url.starts_with("https://");
        if absolute {
            continue;
        }
        if a.url != file {
            return Err(ApiError::unprocessable(
                "artifact_url",
                format!("{part}.url is {:?}; a release published here names its files {file:?} (as `otter release` writes them)", a.url),
            ));
        }
        let Some(st) = staged.get(part) else {
            return Err(ApiError::bad_request(
                "missing_part",
                format!("the manifest names {file} but the upload has no {part} part"),
            ));
        };
        if st.size != a.size {
            return Err(ApiError::unprocessable(
                "artifact_size_mismatch",
                format!(
                    "{file} is {} bytes; the signed manifest says {}",
                    st.size, a.size
                ),
            ));
        }
        if Sha256Digest(st.sha256) != *a.sha256 {
            return Err(ApiError::unprocessable(
                "artifact_sha256_mismatch",
                format!(
                    "{file}'s SHA-256 is {}; the signed manifest says {}",
                    Sha256Digest(st.sha256),
                    a.sha256
                ),
            ));
        }
        files.push((st, file));
    }
    let id = hex(&Sha256::digest(&manifest)[..8]);
    if s.store.release(&id).await?.is_some() {
        return Err(ApiError::conflict(
            "release_exists",
            format!("release {id} (this exact manifest) is already published"),
        ));
    }
    for (st, file) in &files {
        s.cfg.artifacts.put(&id, file, &st.path).await?;
    }
    let row = ReleaseRow {
        id: id.clone(),
        product: m.product.clone(),
        chip: m.chip.clone(),
        version: m.firmware.version.clone(),
        secure_version: i64::from(m.firmware.secure_version),
        firmware_sha256: m.firmware.sha256.to_string(),
        firmware_size: m.firmware.size as i64,
        www_size: m.www.as_ref().map(|w| w.size as i64),
        signed_by: v.signed_by.iter().map(ToString::to_string).collect(),
        expires: m.expires.to_string(),
        published_at: s.now() as i64,
        // Verified above: the JSON is UTF-8.
        manifest: String::from_utf8_lossy(&manifest).into_owned(),
        signature: String::from_utf8_lossy(&signature).into_owned(),
    };
    if !s.store.insert_release(&row).await? {
        return Err(ApiError::conflict(
            "release_exists",
            format!("release {id} (this exact manifest) is already published"),
        ));
    }
    tracing::info!(
        "published release {id}: {} {} for {}",
        row.product,
        row.version,
        row.chip
    );
    Ok((StatusCode::CREATED, Json(json!({"release": row}))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutBody {
    release: String,
    #[serde(default)]
    target: Target,
    #[serde(default)]
    waves: Option<Vec<Permille>>,
    #[serde(default)]
    min_soak_s: Option<u64>,
    #[serde(default)]
    success: Option<Permille>,
    #[serde(default)]
    max_rollback: Option<Permille>,
    #[serde(default)]
    max_selftest_failure: Option<Permille>,
}

async fn create_rollout(
    State(s): State<AppState>,
    h: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin(&s, &h)?;
    let b: RolloutBody = json_body("rollout", &body)?;
    let d = Policy::default();
    let policy = Policy {
        waves: b.waves.unwrap_or(d.waves),
        min_soak_s: b.min_soak_s.unwrap_or(d.min_soak_s),
        success: b.success.unwrap_or(d.success),
        max_rollback: b.max_rollback.unwrap_or(d.max_rollback),
        max_selftest_failure: b.max_selftest_failure.unwrap_or(d.max_selftest_failure),
    };
    let id = s
        .store
        .create_rollout(&b.release, &b.target, &policy, s.now())
        .await
        .map_err(rollout_error)?;
    tracing::info!("rollout {id} of release {} created", b.release);
    let row = s.store.rollout(&id).await?;
    Ok((StatusCode::CREATED, Json(json!({"rollout": row}))).into_response())
}

async fn list_rollouts(State(s): State<AppState>, h: HeaderMap) -> Result<Response, ApiError> {
    admin(&s, &h)?;
    Ok(Json(json!({"rollouts": s.store.rollouts().await?})).into_response())
}

async fn show_rollout(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(&s, &h)?;
    let r = s
        .store
        .rollout(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_rollout", format!("no rollout {id:?}")))?;
    let devices = s.store.rollout_devices(&id).await?;
    Ok(Json(json!({"rollout": r, "devices_by_rank": devices})).into_response())
}

async fn command_rollout(
    State(s): State<AppState>,
    h: HeaderMap,
    Path((id, command)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin(&s, &h)?;
    let cmd = match command.as_str() {
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "abort" => Command::Abort,
        _ => {
            return Err(ApiError::not_found(
                "unknown_command",
                "rollout commands are pause, resume and abort",
            ))
        }
    };
    let state = s
        .store
        .command_rollout(&id, cmd, s.now())
        .await
        .map_err(rollout_error)?;
    tracing::info!("rollout {id}: {command} by the operator");
    Ok(Json(json!({"id": id, "state": state})).into_response())
}

async fn list_downloads(State(s): State<AppState>, h: HeaderMap) -> Result<Response, ApiError> {
    admin(&s, &h)?;
    let d: Vec<Value> = s
        .store
        .downloads()
        .await?
        .into_iter()
        .map(|(device, release, file, at)| json!({"device_id": device, "release": release, "file": file, "at": at}))
        .collect();
    Ok(Json(json!({"downloads": d})).into_response())
}
