//! The server's HTTP API through the router (no socket), on SQLite in a
//! temporary folder, with an injected clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use otter_release::{sign_manifest, ReleaseSpec, SigningKey, Timestamp};
use otter_server::{app, AppState, Config, Store};
use serde_json::{json, Value};
use tower::ServiceExt as _;

#[path = "support/pg.rs"]
mod pg;
#[path = "support/s3.rs"]
mod s3;

use otter_server::artifacts::{ArtifactError, Artifacts, Downloads, S3Options, S3Store};

/// Which database a test runs on.
#[derive(Clone, Copy)]
enum Db {
    Sqlite,
    Postgres,
}

/// Each test twice: on SQLite in a file and on a PostgreSQL server started
/// for it.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::Db::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::Db::Postgres).await })*
        }
    };
}

on_both!(
    enrollment_issues_a_token_once_and_stores_only_its_hash,
    forged_tokens_and_borrowed_identities_are_refused_and_nothing_is_recorded,
    oversized_and_malformed_check_ins_are_refused,
    check_ins_are_rate_limited_per_device,
    replayed_events_record_nothing_new_and_reused_ids_are_refused,
    a_release_that_does_not_verify_is_not_published,
    a_release_with_alternatives_is_refused_and_nothing_is_kept,
    a_rollout_goes_wave_by_wave_and_halts_on_a_rollback,
    bad_rollout_requests_are_refused,
    a_pinned_device_is_offered_its_release_and_downloads_go_through_its_ticket,
    the_openapi_description_matches_the_router,
    artifacts_in_s3_are_published_and_downloaded_by_redirect_and_by_proxy,
    a_publish_while_the_object_store_is_down_publishes_nothing,
);

const ADMIN: &str = "admin-secret";
const ENROLL: &str = "enroll-secret";
const T0: u64 = 1_900_000_000;

struct Harness {
    _pg: Option<pg::Postgres>,
    db: Db,
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    state: AppState,
    clock: Arc<AtomicU64>,
    key: SigningKey,
}

async fn harness_with(db: Db, rate_per_s: f64, burst: f64) -> Harness {
    harness_on(db, rate_per_s, burst, None).await
}

async fn harness_on(db: Db, rate_per_s: f64, burst: f64, s3: Option<S3Options>) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    std::fs::create_dir_all(data.join("tmp")).unwrap();
    let pg = match db {
        Db::Postgres => Some(
            tokio::task::spawn_blocking(pg::Postgres::start)
                .await
                .unwrap(),
        ),
        Db::Sqlite => None,
    };
    let url = match &pg {
        Some(p) => p.url.clone(),
        None => format!("sqlite://{}", data.join("fleet.db").display()),
    };
    let store = Arc::new(Store::open(&url).await.unwrap());
    let key = SigningKey::from_seed(&[7; 32]);
    let clock = Arc::new(AtomicU64::new(T0));
    let c = clock.clone();
    let cfg = Config {
        data: data.clone(),
        artifacts: Arc::new(match &s3 {
            None => Artifacts::Local(data.join("artifacts")),
            Some(o) => Artifacts::S3(Box::new(S3Store::open(o).await.unwrap())),
        }),
        trusted: vec![key.public_key()],
        admin_token: ADMIN.into(),
        enrollment_key: ENROLL.into(),
        poll_s: 5,
        rate_per_s,
        burst,
    };
    let state = AppState::new(store, cfg, Arc::new(move || c.load(Ordering::SeqCst)));
    Harness {
        _pg: pg,
        db,
        _dir: dir,
        data,
        state,
        clock,
        key,
    }
}

async fn harness(db: Db) -> Harness {
    harness_with(db, 1000.0, 1000.0).await
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
    raw: Vec<u8>,
}

impl Harness {
    async fn send(&self, req: Request<Body>) -> Answer {
        let r = app(self.state.clone()).oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let raw = r.into_body().collect().await.unwrap().to_bytes().to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            raw,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(v) => b
                .header("content-type", "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        self.send(req).await
    }

    async fn enroll(&self, id: &str, tags: &[&str]) -> String {
        let a = self
            .call(
                "POST",
                "/device/v1/enroll",
                None,
                Some(json!({"device_id": id, "enrollment_key": ENROLL, "tags": tags})),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["token"].as_str().unwrap().to_string()
    }

    async fn check_in(&self, token: &str, body: Value) -> Answer {
        self.call("POST", "/device/v1/checkin", Some(token), Some(body))
            .await
    }

    /// A signed release of `version`; `tamper` changes the manifest after signing.
    fn release(
        &self,
        version: &str,
        tamper: bool,
        key: &SigningKey,
    ) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let firmware: Vec<u8> = format!("firmware {version}")
            .bytes()
            .cycle()
            .take(5000)
            .collect();
        let spec = ReleaseSpec {
            product: "thermo",
            chip: "esp32s3",
            version,
            secure_version: 0,
            project: "thermo",
            firmware: &firmware,
            www: None,
            alternatives: &[],
            created: Timestamp::from_unix_saturating(T0 - 10),
            expires: Timestamp::from_unix_saturating(T0 + 86_400 * 30),
        };
        let mut manifest = spec.manifest().unwrap().to_json();
        let sig = sign_manifest(&manifest, std::slice::from_ref(key)).unwrap();
        if tamper {
            let s = String::from_utf8(manifest)
                .unwrap()
                .replace("\"secure_version\": 0", "\"secure_version\": 1");
            manifest = s.into_bytes();
        }
        (manifest, sig, firmware)
    }

    async fn publish_parts(&self, parts: &[(&str, &[u8])]) -> Answer {
        let boundary = "otter-test-boundary";
        let mut body = Vec::new();
        for (name, bytes) in parts {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let req = Request::builder()
            .method("POST")
            .uri("/api/v1/releases")
            .header("authorization", format!("Bearer {ADMIN}"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap();
        self.send(req).await
    }

    async fn publish(&self, version: &str) -> (String, Vec<u8>) {
        let (m, s, f) = self.release(version, false, &self.key);
        let a = self
            .publish_parts(&[("manifest", &m), ("signature", &s), ("firmware", &f)])
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        (a.body["release"]["id"].as_str().unwrap().to_string(), f)
    }

    fn advance(&self, s: u64) {
        self.clock.fetch_add(s, Ordering::SeqCst);
    }
}

fn sha_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn report(id: &str, version: &str, sha: Option<&str>, state: &str, events: Value) -> Value {
    json!({
        "device_id": id, "product": "thermo", "chip": "esp32s3", "version": version,
        "sha256": sha, "secure_counter": 0,
        "boot": {"running_slot": "ota_0", "state": state, "slots": [{"name": "ota_0", "state": state, "version": version}]},
        "events": events,
    })
}

fn assert_error(a: &Answer, status: StatusCode, code: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.body["error"], code, "{}", a.body);
    assert!(a.body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

async fn enrollment_issues_a_token_once_and_stores_only_its_hash(db: Db) {
    let h = harness(db).await;
    let token = h.enroll("dev-1", &["lab"]).await;
    assert_eq!(token.len(), 64);
    let again = h
        .call(
            "POST",
            "/device/v1/enroll",
            None,
            Some(json!({"device_id": "dev-1", "enrollment_key": ENROLL})),
        )
        .await;
    assert_error(&again, StatusCode::CONFLICT, "already_enrolled");
    let bad = h
        .call(
            "POST",
            "/device/v1/enroll",
            None,
            Some(json!({"device_id": "dev-2", "enrollment_key": "guess"})),
        )
        .await;
    assert_error(&bad, StatusCode::UNAUTHORIZED, "bad_enrollment_key");
    let malformed = h
        .call(
            "POST",
            "/device/v1/enroll",
            None,
            Some(json!({"device": "x"})),
        )
        .await;
    assert_error(&malformed, StatusCode::BAD_REQUEST, "malformed_body");
    // The token itself is nowhere in the database file; its SHA-256 finds the device.
    if let Db::Sqlite = h.db {
        let db = std::fs::read(h.data.join("fleet.db")).unwrap();
        let wal = std::fs::read(h.data.join("fleet.db-wal")).unwrap_or_default();
        for bytes in [&db, &wal] {
            assert!(
                !bytes.windows(64).any(|w| w == token.as_bytes()),
                "the plain token was stored"
            );
        }
    }
    let hash = sha_hex(token.as_bytes());
    assert_eq!(
        h.state
            .store()
            .device_by_token(&hash)
            .await
            .unwrap()
            .as_deref(),
        Some("dev-1")
    );
    assert_eq!(h.state.store().device_by_token(&token).await.unwrap(), None);
    let devices = h.call("GET", "/api/v1/devices", Some(ADMIN), None).await;
    assert_eq!(devices.body["devices"].as_array().unwrap().len(), 1);
}

async fn forged_tokens_and_borrowed_identities_are_refused_and_nothing_is_recorded(db: Db) {
    let h = harness(db).await;
    let a = h.enroll("dev-a", &[]).await;
    let _b = h.enroll("dev-b", &[]).await;
    let ev = json!([{"id": "1-1", "kind": "confirmed"}]);
    let none = h
        .call(
            "POST",
            "/device/v1/checkin",
            None,
            Some(report("dev-a", "1.0.0", None, "valid", ev.clone())),
        )
        .await;
    assert_error(&none, StatusCode::UNAUTHORIZED, "missing_token");
    let forged = h
        .check_in(
            &"0".repeat(64),
            report("dev-a", "1.0.0", None, "valid", ev.clone()),
        )
        .await;
    assert_error(&forged, StatusCode::UNAUTHORIZED, "unknown_token");
    let borrowed = h
        .check_in(&a, report("dev-b", "6.6.6", None, "valid", ev.clone()))
        .await;
    assert_error(&borrowed, StatusCode::FORBIDDEN, "identity_mismatch");
    for id in ["dev-a", "dev-b"] {
        let d = h
            .call("GET", &format!("/api/v1/devices/{id}"), Some(ADMIN), None)
            .await;
        assert_eq!(d.body["device"]["checkins"], 0, "{id}: {}", d.body);
        assert_eq!(d.body["device"]["version"], Value::Null);
        assert_eq!(d.body["events"], json!([]));
    }
    // The operator API wants the admin token, not a device's.
    let as_device = h.call("GET", "/api/v1/devices", Some(&a), None).await;
    assert_error(&as_device, StatusCode::UNAUTHORIZED, "bad_token");
}

async fn oversized_and_malformed_check_ins_are_refused(db: Db) {
    let h = harness(db).await;
    let t = h.enroll("dev-a", &[]).await;
    let big = "x".repeat(70_000);
    let a = h
        .check_in(&t, report("dev-a", &big, None, "valid", json!([])))
        .await;
    assert_error(&a, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    let req = Request::builder()
        .method("POST")
        .uri("/device/v1/checkin")
        .header("authorization", format!("Bearer {t}"))
        .body(Body::from("{not json"))
        .unwrap();
    assert_error(
        &h.send(req).await,
        StatusCode::BAD_REQUEST,
        "malformed_body",
    );
    let mut unknown = report("dev-a", "1.0", None, "valid", json!([]));
    unknown["firmware_is_fine"] = json!(true);
    assert_error(
        &h.check_in(&t, unknown).await,
        StatusCode::BAD_REQUEST,
        "malformed_body",
    );
    let bad_sha = h
        .check_in(&t, report("dev-a", "1.0", Some("XYZ"), "valid", json!([])))
        .await;
    assert_error(&bad_sha, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(bad_sha.body["message"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let unknown_rel = h
        .check_in(
            &t,
            report(
                "dev-a",
                "1.0",
                None,
                "valid",
                json!([{"id": "e1", "kind": "confirmed", "release": "nope"}]),
            ),
        )
        .await;
    assert_error(
        &unknown_rel,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_release",
    );
    let d = h
        .call("GET", "/api/v1/devices/dev-a", Some(ADMIN), None)
        .await;
    assert_eq!(d.body["device"]["checkins"], 0);
}

async fn check_ins_are_rate_limited_per_device(db: Db) {
    let h = harness_with(db, 0.001, 3.0).await;
    let a = h.enroll("dev-a", &[]).await;
    let b = h.enroll("dev-b", &[]).await;
    for _ in 0..3 {
        let r = h
            .check_in(&a, report("dev-a", "1.0", None, "valid", json!([])))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = h
        .check_in(
            &a,
            report(
                "dev-a",
                "1.0",
                None,
                "valid",
                json!([{"id": "x", "kind": "confirmed"}]),
            ),
        )
        .await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(r.headers.get("retry-after").is_some());
    // Another device is not affected, and the refused event was not recorded.
    let r = h
        .check_in(&b, report("dev-b", "1.0", None, "valid", json!([])))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let d = h
        .call("GET", "/api/v1/devices/dev-a", Some(ADMIN), None)
        .await;
    // Two of the three reported nothing new: only the first was written.
    assert_eq!(d.body["device"]["checkins"], 1);
    assert_eq!(d.body["events"], json!([]));
}

async fn replayed_events_record_nothing_new_and_reused_ids_are_refused(db: Db) {
    let h = harness(db).await;
    let t = h.enroll("dev-a", &[]).await;
    let evs = json!([
        {"id": "b1-1", "kind": "download_failed", "reason": "connection reset", "at": 5},
        {"id": "b1-2", "kind": "download_failed", "reason": "timeout", "at": 6},
    ]);
    let r = h
        .check_in(&t, report("dev-a", "1.0", None, "valid", evs.clone()))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["recorded"], json!(["b1-1", "b1-2"]));
    assert_eq!(r.body["duplicates"], json!([]));
    // The same check-in again (the answer was lost): acknowledged, nothing new.
    let r = h
        .check_in(&t, report("dev-a", "1.0", None, "valid", evs.clone()))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["recorded"], json!([]));
    assert_eq!(r.body["duplicates"], json!(["b1-1", "b1-2"]));
    assert_eq!(r.body["acknowledged"], json!(["b1-1", "b1-2"]));
    // An old id with new content is refused, and the batch's new event too.
    let r = h
        .check_in(
            &t,
            report(
                "dev-a",
                "2.0",
                None,
                "valid",
                json!([
                    {"id": "b1-3", "kind": "download_failed", "reason": "new"},
                    {"id": "b1-1", "kind": "confirmed"},
                ]),
            ),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "event_id_reused");
    let d = h
        .call("GET", "/api/v1/devices/dev-a", Some(ADMIN), None)
        .await;
    assert_eq!(d.body["events"].as_array().unwrap().len(), 2);
    assert_eq!(
        d.body["device"]["version"], "1.0",
        "the refused check-in changed nothing"
    );
    assert_eq!(d.body["device"]["checkins"], 2);
}

async fn a_release_that_does_not_verify_is_not_published(db: Db) {
    let h = harness(db).await;
    let (m, s, f) = h.release("1.1.0", true, &h.key);
    let a = h
        .publish_parts(&[("manifest", &m), ("signature", &s), ("firmware", &f)])
        .await;
    assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "bad_signature");
    let stranger = SigningKey::from_seed(&[9; 32]);
    let (m, s, f) = h.release("1.1.0", false, &stranger);
    let a = h
        .publish_parts(&[("manifest", &m), ("signature", &s), ("firmware", &f)])
        .await;
    assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "no_trusted_signature");
    let (m, s, mut f) = h.release("1.1.0", false, &h.key);
    f[100] ^= 1;
    let a = h
        .publish_parts(&[("manifest", &m), ("signature", &s), ("firmware", &f)])
        .await;
    assert_error(
        &a,
        StatusCode::UNPROCESSABLE_ENTITY,
        "artifact_sha256_mismatch",
    );
    f.push(0);
    let a = h
        .publish_parts(&[("manifest", &m), ("signature", &s), ("firmware", &f)])
        .await;
    assert_error(
        &a,
        StatusCode::UNPROCESSABLE_ENTITY,
        "artifact_size_mismatch",
    );
    let a = h
        .publish_parts(&[("manifest", &m), ("signature", &s)])
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "missing_part");
    let l = h.call("GET", "/api/v1/releases", Some(ADMIN), None).await;
    assert_eq!(l.body["releases"], json!([]));
    let left: Vec<_> = std::fs::read_dir(h.data.join("artifacts"))
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert!(left.is_empty() || left == vec![0], "artifacts were kept");
    assert_eq!(
        std::fs::read_dir(h.data.join("tmp")).unwrap().count(),
        0,
        "staging files were kept"
    );
    // The good one publishes once.
    let (id, _) = h.publish("1.1.0").await;
    assert_eq!(id.len(), 16);
    let (m, s, f) = h.release("1.1.0", false, &h.key);
    let a = h
        .publish_parts(&[("manifest", &m), ("signature", &s), ("firmware", &f)])
        .await;
    assert_error(&a, StatusCode::CONFLICT, "release_exists");
    let no_admin = h.call("GET", "/api/v1/releases", None, None).await;
    assert_error(&no_admin, StatusCode::UNAUTHORIZED, "missing_token");
}

/// The server stores only the full image and the web UI: a release whose
/// manifest lists gzip or delta alternatives (`otter-release/2`) would have
/// devices fetch files it does not have, so it is refused, naming the fix.
async fn a_release_with_alternatives_is_refused_and_nothing_is_kept(db: Db) {
    let h = harness(db).await;
    let firmware = vec![0x5a_u8; 5000];
    let gz = vec![0x1f_u8; 300];
    let alternatives = [otter_release::AlternativeSpec {
        encoding: otter_release::Encoding::Gzip,
        file: "firmware.bin.gz",
        bytes: &gz,
        base_sha256: None,
    }];
    let spec = ReleaseSpec {
        product: "thermo",
        chip: "esp32s3",
        version: "1.2.0",
        secure_version: 0,
        project: "thermo",
        firmware: &firmware,
        www: None,
        alternatives: &alternatives,
        created: Timestamp::from_unix_saturating(T0 - 10),
        expires: Timestamp::from_unix_saturating(T0 + 86_400),
    };
    let manifest = spec.manifest().unwrap();
    assert_eq!(manifest.format, otter_release::FORMAT_2);
    let m = manifest.to_json();
    let sig = sign_manifest(&m, std::slice::from_ref(&h.key)).unwrap();
    let a = h
        .publish_parts(&[
            ("manifest", &m),
            ("signature", &sig),
            ("firmware", &firmware),
        ])
        .await;
    assert_error(
        &a,
        StatusCode::UNPROCESSABLE_ENTITY,
        "alternatives_unsupported",
    );
    let msg = a.body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("firmware.bin.gz") && msg.contains("otter-release/1"),
        "{msg}"
    );
    let l = h.call("GET", "/api/v1/releases", Some(ADMIN), None).await;
    assert_eq!(l.body["releases"], json!([]));
    assert_eq!(
        std::fs::read_dir(h.data.join("tmp")).unwrap().count(),
        0,
        "staging files were kept"
    );
}

/// Enrolls `n` devices running 1.0.0 and checks each in once.
async fn fleet(h: &Harness, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..n {
        let id = format!("dev-{i:02}");
        let t = h.enroll(&id, &[]).await;
        let r = h
            .check_in(
                &t,
                report(&id, "1.0.0", Some(&"0".repeat(64)), "valid", json!([])),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["offer"], Value::Null);
        out.push((id, t));
    }
    out
}

async fn offers(
    h: &Harness,
    devices: &[(String, String)],
    version: &str,
    sha: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    for (id, t) in devices {
        let r = h
            .check_in(t, report(id, version, Some(sha), "valid", json!([])))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        if !r.body["offer"].is_null() {
            out.push(id.clone());
        }
    }
    out
}

async fn a_rollout_goes_wave_by_wave_and_halts_on_a_rollback(db: Db) {
    let h = harness(db).await;
    let devices = fleet(&h, 20).await;
    let old = "0".repeat(64);
    let (rel, fw) = h.publish("1.1.0").await;
    let a = h
        .call(
            "POST",
            "/api/v1/rollouts",
            Some(ADMIN),
            Some(json!({"release": rel, "min_soak_s": 60})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let rid = a.body["rollout"]["id"].as_str().unwrap().to_string();
    assert_eq!(a.body["rollout"]["wave_sizes"], json!([1, 2, 10, 20]));
    let show = h
        .call("GET", &format!("/api/v1/rollouts/{rid}"), Some(ADMIN), None)
        .await;
    let ranked: Vec<String> = serde_json::from_value(show.body["devices_by_rank"].clone()).unwrap();
    // Only rank 0 is offered in wave 1.
    assert_eq!(
        offers(&h, &devices, "1.0.0", &old).await,
        vec![ranked[0].clone()]
    );
    // It installs and confirms; before the soak the wave does not advance.
    let first = devices.iter().find(|d| d.0 == ranked[0]).unwrap();
    let new_sha = sha_hex(&fw);
    let r = h
        .check_in(
            &first.1,
            report(
                &first.0,
                "1.1.0",
                Some(&new_sha),
                "valid",
                json!([{"id": "e1", "kind": "confirmed", "release": rel, "version": "1.1.0"}]),
            ),
        )
        .await;
    assert_eq!(r.body["offer"], Value::Null, "running it already");
    assert_eq!(
        offers(&h, &devices[..], "1.0.0", &old).await.len(),
        1,
        "first device still offered by the stale report"
    );
    h.advance(60);
    h.state.store().tick(h.state.now()).await.unwrap();
    let show = h
        .call("GET", &format!("/api/v1/rollouts/{rid}"), Some(ADMIN), None)
        .await;
    assert_eq!(show.body["rollout"]["state"]["state"], "running");
    assert_eq!(show.body["rollout"]["state"]["wave"], 1, "{}", show.body);
    assert_eq!(show.body["rollout"]["waves"][0]["confirmed"], 1);

    // A second release that crashes: its first device rolls back, the rollout halts.
    let (bad, _) = h.publish("1.2.0").await;
    let a = h
        .call(
            "POST",
            "/api/v1/rollouts",
            Some(ADMIN),
            Some(json!({"release": bad, "min_soak_s": 60})),
        )
        .await;
    let bid = a.body["rollout"]["id"].as_str().unwrap().to_string();
    let show = h
        .call("GET", &format!("/api/v1/rollouts/{bid}"), Some(ADMIN), None)
        .await;
    let branked: Vec<String> =
        serde_json::from_value(show.body["devices_by_rank"].clone()).unwrap();
    let victim = devices.iter().find(|d| d.0 == branked[0]).unwrap();
    let r = h
        .check_in(
            &victim.1,
            report(&victim.0, "1.0.0", Some(&old), "valid", json!([])),
        )
        .await;
    assert_eq!(r.body["offer"]["release"], bad.as_str(), "{}", r.body);
    let r = h
        .check_in(
            &victim.1,
            report(&victim.0, "1.0.0", Some(&old), "valid", json!([
                {"id": "x1", "kind": "update_started", "release": bad},
                {"id": "x2", "kind": "rolled_back", "release": bad, "version": "1.2.0", "reason": "1.2.0 crashed on boot"},
            ])),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(
        r.body["offer"]["release"],
        bad.as_str(),
        "a rolled-back release is not offered again"
    );
    let show = h
        .call("GET", &format!("/api/v1/rollouts/{bid}"), Some(ADMIN), None)
        .await;
    let st = &show.body["rollout"]["state"];
    assert_eq!(st["state"], "halted", "{}", show.body);
    assert_eq!(st["reason"]["kind"], "rollback_rate");
    assert_eq!(st["reason"]["failed"], 1);
    let log = show.body["rollout"]["log"].as_array().unwrap();
    assert_eq!(log.last().unwrap()["kind"], "halted");
    assert_eq!(
        log.last().unwrap()["detail"],
        "1 of wave 1's 1 device(s) rolled back, more than the 5.0% allowed"
    );
    // Nobody gets the bad release now, and time does not move a halted rollout.
    h.advance(3600);
    h.state.store().tick(h.state.now()).await.unwrap();
    for (id, t) in &devices {
        let r = h
            .check_in(t, report(id, "1.0.0", Some(&old), "valid", json!([])))
            .await;
        assert_ne!(
            r.body["offer"]["release"],
            bad.as_str(),
            "{id} was offered the halted release"
        );
    }
    // Resuming offers wave 1 again, but not to the device that rolled back.
    let a = h
        .call(
            "POST",
            &format!("/api/v1/rollouts/{bid}/resume"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(a.body["state"]["state"], "running");
    let r = h
        .check_in(
            &victim.1,
            report(&victim.0, "1.0.0", Some(&old), "valid", json!([])),
        )
        .await;
    assert_ne!(r.body["offer"]["release"], bad.as_str());
    let a = h
        .call(
            "POST",
            &format!("/api/v1/rollouts/{bid}/abort"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(a.body["state"]["state"], "aborted");
    let a = h
        .call(
            "POST",
            &format!("/api/v1/rollouts/{bid}/resume"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_error(&a, StatusCode::CONFLICT, "invalid_transition");
    let a = h
        .call(
            "POST",
            &format!("/api/v1/rollouts/{bid}/explode"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_error(&a, StatusCode::NOT_FOUND, "unknown_command");
}

async fn bad_rollout_requests_are_refused(db: Db) {
    let h = harness(db).await;
    fleet(&h, 2).await;
    let (rel, _) = h.publish("1.1.0").await;
    for (body, status, code) in [
        (
            json!({"release": "nope"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_release",
        ),
        (
            json!({"release": rel, "waves": [500, 100, 1000]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "waves_not_increasing",
        ),
        (
            json!({"release": rel, "waves": [500]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "last_wave_not_all",
        ),
        (
            json!({"release": rel, "target": {"tag": "none"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_target",
        ),
        (
            json!({"release": rel, "target": {"devices": ["ghost"]}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_device",
        ),
        (
            json!({"release": rel, "surprise": 1}),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
    ] {
        let a = h
            .call("POST", "/api/v1/rollouts", Some(ADMIN), Some(body))
            .await;
        assert_error(&a, status, code);
    }
    let l = h.call("GET", "/api/v1/rollouts", Some(ADMIN), None).await;
    assert_eq!(l.body["rollouts"], json!([]));
}

async fn a_pinned_device_is_offered_its_release_and_downloads_go_through_its_ticket(db: Db) {
    let h = harness(db).await;
    let devices = fleet(&h, 3).await;
    let (rel, fw) = h.publish("1.1.0").await;
    let a = h
        .call(
            "PUT",
            "/api/v1/devices/dev-01/pin",
            Some(ADMIN),
            Some(json!({"release": rel})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = h
        .call(
            "PUT",
            "/api/v1/devices/dev-01/pin",
            Some(ADMIN),
            Some(json!({"release": "nope"})),
        )
        .await;
    assert_error(&a, StatusCode::UNPROCESSABLE_ENTITY, "unknown_release");
    let old = "0".repeat(64);
    let got = offers(&h, &devices, "1.0.0", &old).await;
    assert_eq!(got, vec!["dev-01".to_string()]);
    let r = h
        .check_in(
            &devices[1].1,
            report("dev-01", "1.0.0", Some(&old), "valid", json!([])),
        )
        .await;
    assert_eq!(r.body["offer"]["via"], "pinned");
    let url = format!("/{}", r.body["offer"]["manifest_url"].as_str().unwrap());
    let m = h.call("GET", &url, None, None).await;
    assert_eq!(m.status, StatusCode::OK);
    assert_eq!(m.body["firmware"]["version"], "1.1.0");
    let sig = h.call("GET", &format!("{url}.sig"), None, None).await;
    assert_eq!(sig.body["format"], "otter-signature/1");
    let fw_url = url.replace("manifest.json", "firmware.bin");
    let req = Request::builder()
        .uri(&fw_url)
        .header("range", "bytes=1000-")
        .body(Body::empty())
        .unwrap();
    let part = h.send(req).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.raw, fw[1000..]);
    let bogus = h
        .call(
            "GET",
            "/dl/0123456789abcdef0123456789abcdef/firmware.bin",
            None,
            None,
        )
        .await;
    assert_error(&bogus, StatusCode::NOT_FOUND, "unknown_ticket");
    let d = h.call("GET", "/api/v1/downloads", Some(ADMIN), None).await;
    let files: Vec<(String, String)> = d.body["downloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["device_id"].as_str().unwrap().into(),
                x["file"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        files,
        vec![
            ("dev-01".into(), "manifest.json".into()),
            ("dev-01".into(), "manifest.json.sig".into()),
            ("dev-01".into(), "firmware.bin".into()),
        ]
    );
    // Unpinned: nothing offered.
    h.call(
        "PUT",
        "/api/v1/devices/dev-01/pin",
        Some(ADMIN),
        Some(json!({"release": null})),
    )
    .await;
    let r = h
        .check_in(
            &devices[1].1,
            report("dev-01", "1.0.0", Some(&old), "valid", json!([])),
        )
        .await;
    assert_eq!(r.body["offer"], Value::Null);
}

/// Every operation the OpenAPI document lists is routed (answers with
/// something other than the fallback's 404 or a 405), and it is a
/// well-formed OpenAPI 3.1 document.
async fn the_openapi_description_matches_the_router(db: Db) {
    let h = harness(db).await;
    let a = h.call("GET", "/openapi.json", None, None).await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.body;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut ops = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            ops += 1;
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
            assert!(op["operationId"].is_string(), "{method} {path}");
            let concrete = path
                .replace("{ticket}", "0123456789abcdef")
                .replace("{file}", "firmware.bin")
                .replace("{command}", "pause")
                .replace("{id}", "x");
            let r = h.call(&method.to_uppercase(), &concrete, None, None).await;
            assert_ne!(
                r.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is not routed"
            );
            assert_ne!(
                r.body["error"], "not_found",
                "{method} {path} is not routed: {}",
                r.body
            );
        }
    }
    assert_eq!(ops, 17);
    // And something undocumented is the fallback.
    let r = h.call("GET", "/api/v1/secrets", None, None).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
}

fn s3_options(store: &s3::SeaweedFs, downloads: Downloads) -> S3Options {
    S3Options {
        endpoint: store.endpoint.clone(),
        bucket: store.bucket.clone(),
        region: "us-east-1".into(),
        prefix: "fleet/".into(),
        virtual_host: false,
        access_key: s3::ACCESS_KEY.into(),
        secret_key: s3::SECRET_KEY.into(),
        downloads,
    }
}

/// The device's ticket URL of `file` for a pinned device, after its check-in.
async fn pinned_ticket(h: &Harness, rel: &str, file: &str) -> String {
    let devices = fleet(h, 1).await;
    let a = h
        .call(
            "PUT",
            "/api/v1/devices/dev-00/pin",
            Some(ADMIN),
            Some(json!({"release": rel})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let r = h
        .check_in(
            &devices[0].1,
            report("dev-00", "1.0.0", Some(&"0".repeat(64)), "valid", json!([])),
        )
        .await;
    let url = format!("/{}", r.body["offer"]["manifest_url"].as_str().unwrap());
    url.replace("manifest.json", file)
}

/// Artifacts go to the bucket (checked through SeaweedFS's own filer
/// listing, not otter's S3 client), nothing is left in the data folder, and
/// a device's ticketed download is a 302 to a presigned URL that curl can
/// fetch with a Range (a resumed download), or, proxied, the same bytes
/// through the server.
async fn artifacts_in_s3_are_published_and_downloaded_by_redirect_and_by_proxy(db: Db) {
    let store = tokio::task::spawn_blocking(|| s3::SeaweedFs::start("otter-artifacts"))
        .await
        .unwrap();
    let h = harness_on(
        db,
        1000.0,
        1000.0,
        Some(s3_options(&store, Downloads::Redirect)),
    )
    .await;
    let (rel, fw) = h.publish("1.1.0").await;
    let objects = store.objects("fleet/");
    assert_eq!(
        objects,
        vec![(format!("fleet/{rel}/firmware.bin"), fw.len() as u64)],
        "the bucket holds {objects:?}"
    );
    let local: Vec<_> = std::fs::read_dir(h.data.join("artifacts"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        local.is_empty(),
        "artifacts left in the data folder: {local:?}"
    );

    let fw_url = pinned_ticket(&h, &rel, "firmware.bin").await;
    let a = h.call("GET", &fw_url, None, None).await;
    assert_eq!(a.status, StatusCode::FOUND, "{}", a.body);
    let location = a.headers["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!(
            "{}/otter-artifacts/fleet/{rel}/firmware.bin?",
            store.endpoint
        )) && location.contains("X-Amz-Signature="),
        "not a presigned URL of the object: {location}"
    );
    let got = curl(&["-sS", "-f", "-H", "Range: bytes=1000-", &location]).await;
    assert!(
        got.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        got.stdout,
        fw[1000..],
        "the presigned URL served other bytes"
    );
    // The signature covers the object: another key with the same query fails.
    let forged = location.replace("firmware.bin?", "www.bin?");
    let code = curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", &forged]).await;
    assert_eq!(String::from_utf8_lossy(&code.stdout), "403");

    // Proxied: the same ticket answers the bytes itself, Range included.
    let mut cfg = h.state.config().clone();
    let proxy = S3Store::open(&s3_options(&store, Downloads::Proxy))
        .await
        .unwrap();
    cfg.artifacts = Arc::new(Artifacts::S3(Box::new(proxy)));
    let state = AppState::new(h.state.store().clone(), cfg, h.state.clock());
    let proxied = Harness { state, ..h };
    let req = Request::builder()
        .uri(&fw_url)
        .header("range", "bytes=1000-")
        .body(Body::empty())
        .unwrap();
    let part = proxied.send(req).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.raw, fw[1000..]);
    let whole = proxied.call("GET", &fw_url, None, None).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.raw, fw);
    let www = proxied
        .call(
            "GET",
            &fw_url.replace("firmware.bin", "www.bin"),
            None,
            None,
        )
        .await;
    assert_error(&www, StatusCode::NOT_FOUND, "no_artifact");

    // A wrong bucket, a wrong secret and a closed port stop the server at
    // start, each with its own code.
    let mut o = s3_options(&store, Downloads::Redirect);
    o.bucket = "no-such-bucket".into();
    let e = S3Store::open(&o)
        .await
        .err()
        .expect("opened a missing bucket");
    assert!(
        matches!(e, ArtifactError::Refused { status: 404, .. }),
        "{e}"
    );
    assert_eq!(e.code(), "s3_not_found");
    let mut o = s3_options(&store, Downloads::Redirect);
    o.secret_key = "wrong".into();
    let e = S3Store::open(&o)
        .await
        .err()
        .expect("opened with a wrong secret");
    assert_eq!(e.code(), "s3_forbidden", "{e}");
    let mut o = s3_options(&store, Downloads::Redirect);
    o.endpoint = format!("http://127.0.0.1:{}", closed_port());
    let e = S3Store::open(&o).await.err().expect("opened a closed port");
    assert!(matches!(e, ArtifactError::Unreachable { .. }), "{e}");
    let mut o = s3_options(&store, Downloads::Redirect);
    o.endpoint = "ftp://127.0.0.1".into();
    let e = S3Store::open(&o).await.err().expect("opened ftp://");
    assert_eq!(e.code(), "s3_bad_endpoint", "{e}");
}

async fn curl(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(&args)
            .output()
            .expect("curl (scripts/setup-system.sh installs it)")
    })
    .await
    .unwrap()
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The object store goes away after the server started: a publish answers
/// 502 with the store's code, and no release is recorded (a device is never
/// offered a release whose bytes are not stored).
async fn a_publish_while_the_object_store_is_down_publishes_nothing(db: Db) {
    let store = tokio::task::spawn_blocking(|| s3::SeaweedFs::start("otter-down"))
        .await
        .unwrap();
    let h = harness_on(
        db,
        1000.0,
        1000.0,
        Some(s3_options(&store, Downloads::Redirect)),
    )
    .await;
    drop(store);
    let (m, s, f) = h.release("1.1.0", false, &h.key);
    let a = h
        .publish_parts(&[("manifest", &m), ("signature", &s), ("firmware", &f)])
        .await;
    assert_error(&a, StatusCode::BAD_GATEWAY, "s3_unreachable");
    let list = h.call("GET", "/api/v1/releases", Some(ADMIN), None).await;
    assert_eq!(list.body["releases"], json!([]), "{}", list.body);
}
