//! The fleet's records: devices, releases, events, rollouts. One SQL code
//! path through sqlx's `Any` driver serves SQLite (a file, the default) and
//! PostgreSQL; the schema uses only `TEXT` and `BIGINT` so it is the same on
//! both. Every change is one transaction, committed before the HTTP answer
//! goes out, so an acknowledged event survives `kill -9` (SQLite runs in WAL
//! mode with `synchronous=FULL`).
//!
//! Writes are serialised by one lock: a fleet's write rate is check-ins, and
//! SQLite allows one writer anyway.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::AnyConnection;
use sqlx::{AnyPool, Executor, Row};

use crate::error::StoreError;
use crate::rollout::{self, Command, HaltReason, Policy, RolloutState, Transition, WaveCounts};

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// SQLite in a file.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS devices (
        id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, tags TEXT NOT NULL,
        product TEXT, chip TEXT, version TEXT, sha256 TEXT, secure_counter BIGINT,
        boot TEXT, pinned_release TEXT, enrolled_at BIGINT NOT NULL, last_seen BIGINT,
        checkins BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS releases (
        id TEXT PRIMARY KEY, product TEXT NOT NULL, chip TEXT NOT NULL, version TEXT NOT NULL,
        secure_version BIGINT NOT NULL, firmware_sha256 TEXT NOT NULL, firmware_size BIGINT NOT NULL,
        www_size BIGINT, manifest TEXT NOT NULL, signature TEXT NOT NULL, signed_by TEXT NOT NULL,
        expires TEXT NOT NULL, published_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS events (
        device_id TEXT NOT NULL, event_id TEXT NOT NULL, kind TEXT NOT NULL, release_id TEXT,
        version TEXT, reason TEXT, at BIGINT, received_at BIGINT NOT NULL,
        PRIMARY KEY (device_id, event_id))",
    "CREATE TABLE IF NOT EXISTS device_releases (
        device_id TEXT NOT NULL, release_id TEXT NOT NULL, state TEXT NOT NULL,
        updated_at BIGINT NOT NULL, PRIMARY KEY (device_id, release_id))",
    "CREATE TABLE IF NOT EXISTS rollouts (
        id TEXT PRIMARY KEY, release_id TEXT NOT NULL, target TEXT NOT NULL, policy TEXT NOT NULL,
        status TEXT NOT NULL, state TEXT NOT NULL, devices BIGINT NOT NULL,
        created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rollout_devices (
        rollout_id TEXT NOT NULL, device_id TEXT NOT NULL, rank BIGINT NOT NULL,
        PRIMARY KEY (rollout_id, device_id))",
    "CREATE INDEX IF NOT EXISTS rollout_devices_device ON rollout_devices (device_id)",
    "CREATE TABLE IF NOT EXISTS rollout_log (
        rollout_id TEXT NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL, kind TEXT NOT NULL,
        wave BIGINT NOT NULL, detail TEXT NOT NULL, PRIMARY KEY (rollout_id, seq))",
    "CREATE TABLE IF NOT EXISTS tickets (
        ticket TEXT PRIMARY KEY, device_id TEXT NOT NULL, release_id TEXT NOT NULL,
        created_at BIGINT NOT NULL)",
    "CREATE UNIQUE INDEX IF NOT EXISTS tickets_device_release ON tickets (device_id, release_id)",
    "CREATE TABLE IF NOT EXISTS downloads (
        device_id TEXT NOT NULL, release_id TEXT NOT NULL, file TEXT NOT NULL, at BIGINT NOT NULL,
        range_start BIGINT)",
];

/// How stale a device's `last_seen` may get while its check-ins report
/// nothing new (they are then answered without a write).
pub const LAST_SEEN_RESOLUTION_S: u64 = 30;

/// The store.
pub struct Store {
    pool: AnyPool,
    write: tokio::sync::Mutex<()>,
    backend: Backend,
}

/// What happens to a device's record of a release, in order: a later state
/// never goes back to an earlier one, and the failures are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceReleaseState {
    /// The server offered it.
    Offered,
    /// The device started installing it.
    UpdateStarted,
    /// The device booted it (pending its self-test).
    Verified,
    /// The device confirmed it.
    Confirmed,
    /// The device refused the manifest (its own checks).
    Refused,
    /// Its self-test failed and the device rolled back.
    SelfTestFailed,
    /// It crashed or hung before confirming and the bootloader rolled back.
    RolledBack,
}

impl DeviceReleaseState {
    /// The name stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            Self::Offered => "offered",
            Self::UpdateStarted => "update_started",
            Self::Verified => "verified",
            Self::Confirmed => "confirmed",
            Self::Refused => "refused",
            Self::SelfTestFailed => "self_test_failed",
            Self::RolledBack => "rolled_back",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "offered" => Self::Offered,
            "update_started" => Self::UpdateStarted,
            "verified" => Self::Verified,
            "confirmed" => Self::Confirmed,
            "refused" => Self::Refused,
            "self_test_failed" => Self::SelfTestFailed,
            "rolled_back" => Self::RolledBack,
            _ => return None,
        })
    }
    /// Whether the release is not offered to the device again.
    pub fn is_final(self) -> bool {
        self >= Self::Refused
    }
}

/// What a device reports happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Started downloading an offered release.
    UpdateStarted,
    /// Booted the new image (pending its self-test).
    Verified,
    /// The new image confirmed itself.
    Confirmed,
    /// The self-test failed; the device rolled back.
    SelfTestFailed,
    /// The new image crashed or hung; the bootloader rolled back.
    RolledBack,
    /// The device refused the manifest (product, chip, version, signature...).
    Refused,
    /// The download failed (network, SHA-256).
    DownloadFailed,
}

impl EventKind {
    /// The stored name.
    pub fn name(self) -> &'static str {
        match self {
            Self::UpdateStarted => "update_started",
            Self::Verified => "verified",
            Self::Confirmed => "confirmed",
            Self::SelfTestFailed => "self_test_failed",
            Self::RolledBack => "rolled_back",
            Self::Refused => "refused",
            Self::DownloadFailed => "download_failed",
        }
    }
    fn state(self) -> Option<DeviceReleaseState> {
        Some(match self {
            Self::UpdateStarted => DeviceReleaseState::UpdateStarted,
            Self::Verified => DeviceReleaseState::Verified,
            Self::Confirmed => DeviceReleaseState::Confirmed,
            Self::SelfTestFailed => DeviceReleaseState::SelfTestFailed,
            Self::RolledBack => DeviceReleaseState::RolledBack,
            Self::Refused => DeviceReleaseState::Refused,
            Self::DownloadFailed => return None,
        })
    }
}

/// One event as the device sent it (already validated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The device's id for it; a replay carries the same id.
    pub id: String,
    /// What happened.
    pub kind: EventKind,
    /// The release it is about.
    pub release: Option<String>,
    /// The version it is about.
    pub version: Option<String>,
    /// Why (rollback reason, refusal code and message).
    pub reason: Option<String>,
    /// The device's time (Unix seconds), if it has one.
    pub at: Option<u64>,
}

/// What a check-in says about the device (already validated).
#[derive(Debug, Clone)]
pub struct DeviceReport {
    /// Product.
    pub product: String,
    /// Chip.
    pub chip: String,
    /// Running version.
    pub version: String,
    /// Running image's SHA-256 (hex), when known.
    pub sha256: Option<String>,
    /// The anti-rollback counter.
    pub secure_counter: Option<u32>,
    /// Whether the running image still waits for its self-test.
    pub pending_verify: bool,
    /// The boot states as JSON, kept for operators.
    pub boot: serde_json::Value,
    /// Events since the last acknowledged check-in.
    pub events: Vec<NewEvent>,
}

/// A refused check-in: nothing was recorded.
#[derive(Debug, thiserror::Error)]
pub enum CheckInError {
    /// An event id already recorded with other content.
    #[error(
        "event {id:?} was already recorded with different content; event ids are never reused"
    )]
    EventConflict {
        /// The id.
        id: String,
    },
    /// An event names a release the server does not have.
    #[error("event {id:?} names release {release:?}, which this server never published")]
    UnknownRelease {
        /// The event id.
        id: String,
        /// The release.
        release: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CheckInError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// What the server answers a check-in with.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Offer {
    /// Release id.
    pub release: String,
    /// Its firmware version.
    pub version: String,
    /// Its firmware SHA-256.
    pub sha256: String,
    /// The download ticket (the manifest is at `dl/TICKET/manifest.json`).
    pub ticket: String,
    /// Why this device gets it: `rollout` (with its id) or `pinned`.
    pub via: String,
}

/// A recorded check-in.
#[derive(Debug, Clone, Serialize)]
pub struct CheckInOutcome {
    /// Events recorded now.
    pub recorded: Vec<String>,
    /// Events that were already recorded (replays): nothing new.
    pub duplicates: Vec<String>,
    /// What to install, if anything.
    pub offer: Option<Offer>,
    /// Rollouts that changed state because of it.
    pub transitions: Vec<(String, Transition)>,
}

/// A device as stored.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRow {
    /// Id.
    pub id: String,
    /// Tags given at enrollment.
    pub tags: Vec<String>,
    /// Reported product.
    pub product: Option<String>,
    /// Reported chip.
    pub chip: Option<String>,
    /// Reported running version.
    pub version: Option<String>,
    /// Reported running SHA-256.
    pub sha256: Option<String>,
    /// Reported anti-rollback counter.
    pub secure_counter: Option<i64>,
    /// Reported boot states.
    pub boot: Option<serde_json::Value>,
    /// The release it is pinned to.
    pub pinned_release: Option<String>,
    /// When it enrolled.
    pub enrolled_at: i64,
    /// Its last check-in.
    pub last_seen: Option<i64>,
    /// Check-ins recorded: those that changed something or refreshed
    /// `last_seen` (an unchanged check-in within
    /// [`LAST_SEEN_RESOLUTION_S`] is answered without a write).
    pub checkins: i64,
    /// Per release: its state there.
    pub releases: HashMap<String, String>,
}

/// A release as stored.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseRow {
    /// Id: the first 16 hex digits of the manifest's SHA-256.
    pub id: String,
    /// Product.
    pub product: String,
    /// Chip.
    pub chip: String,
    /// Firmware version.
    pub version: String,
    /// Firmware secure_version.
    pub secure_version: i64,
    /// Firmware SHA-256.
    pub firmware_sha256: String,
    /// Firmware size.
    pub firmware_size: i64,
    /// Web-UI image size, for a bundle.
    pub www_size: Option<i64>,
    /// Key ids that signed it.
    pub signed_by: Vec<String>,
    /// Manifest expiry.
    pub expires: String,
    /// When it was published.
    pub published_at: i64,
    /// The manifest's bytes (not listed).
    #[serde(skip)]
    pub manifest: String,
    /// The signature file's bytes (not listed).
    #[serde(skip)]
    pub signature: String,
}

/// Which devices a rollout targets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Devices reporting this product (default: the release's product when
    /// neither `tag` nor `devices` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Devices enrolled with this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Exactly these devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
}

/// One entry of a rollout's history.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    /// When.
    pub at: i64,
    /// `created`, `advanced`, `completed`, `halted`, `paused`, `resumed`, `aborted`.
    pub kind: String,
    /// The wave then (0-based).
    pub wave: i64,
    /// Details (the halt reason).
    pub detail: String,
}

/// A rollout as stored, with its waves' counts.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutRow {
    /// Id.
    pub id: String,
    /// The release.
    pub release: String,
    /// The target.
    pub target: Target,
    /// The policy.
    pub policy: Policy,
    /// The state.
    pub state: RolloutState,
    /// Devices in the rollout.
    pub devices: i64,
    /// Cumulative device counts per wave.
    pub wave_sizes: Vec<usize>,
    /// Per wave: its own devices' counts.
    pub waves: Vec<WaveCounts>,
    /// When created.
    pub created_at: i64,
    /// History.
    pub log: Vec<LogEntry>,
    /// When each device of the rollout confirmed, rolled back or failed its
    /// self-test, oldest first: the dashboard's plot.
    pub timeline: Vec<TimelinePoint>,
}

/// One device outcome in a rollout, for the plot over time.
#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    /// When (Unix seconds).
    pub at: i64,
    /// `confirmed`, `rolled_back` or `self_test_failed`.
    pub state: String,
}

/// Why a rollout cannot be created or changed. The operator's fault unless
/// `Store`.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// No such release.
    #[error("no release {0:?}")]
    UnknownRelease(String),
    /// No such rollout.
    #[error("no rollout {0:?}")]
    UnknownRollout(String),
    /// A listed device is not enrolled.
    #[error("device {0:?} is not enrolled")]
    UnknownDevice(String),
    /// Nothing matches.
    #[error("the target matches no enrolled device")]
    EmptyTarget,
    /// The policy is unusable.
    #[error(transparent)]
    Policy(#[from] rollout::PolicyError),
    /// The command does not apply.
    #[error(transparent)]
    Command(#[from] rollout::CommandError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RolloutError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn json_col<T: for<'de> Deserialize<'de>>(what: &'static str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|source| StoreError::Corrupt { what, source })
}

fn to_json<T: Serialize>(v: &T) -> String {
    // Serialising these plain data types cannot fail (no maps with non-string
    // keys, no custom serialisers).
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// `n` random bytes as hex, from the operating system.
pub fn random_hex(n: usize) -> Result<String, StoreError> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| StoreError::Io {
        path: "getrandom".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(hex(&b))
}

impl Store {
    /// Opens (and creates) the store at `url`: `sqlite://FILE` or
    /// `postgres://...`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let sqlite = backend == Backend::Sqlite;
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 16 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        conn.execute("PRAGMA synchronous=FULL").await?;
                        conn.execute("PRAGMA busy_timeout=10000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        for stmt in SCHEMA {
            pool.execute(*stmt).await?;
        }
        Ok(Store {
            pool,
            write: tokio::sync::Mutex::new(()),
            backend,
        })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    // -- devices ---------------------------------------------------------

    /// Records a device with its token's hash. `false` when the id is taken
    /// (nothing is recorded).
    pub async fn enroll(
        &self,
        id: &str,
        token_hash: &str,
        tags: &[String],
        now: u64,
    ) -> Result<bool, StoreError> {
        let _w = self.write.lock().await;
        let r = sqlx::query(
            "INSERT INTO devices (id, token_hash, tags, enrolled_at, checkins) VALUES ($1, $2, $3, $4, 0)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(token_hash)
        .bind(to_json(&tags))
        .bind(i(now))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The device whose token hashes to `token_hash`.
    pub async fn device_by_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT id FROM devices WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<String, _>("id")?),
            None => None,
        })
    }

    fn device_row(r: &AnyRow) -> Result<DeviceRow, StoreError> {
        let boot: Option<String> = r.try_get("boot")?;
        Ok(DeviceRow {
            id: r.try_get("id")?,
            tags: json_col("devices.tags", &r.try_get::<String, _>("tags")?)?,
            product: r.try_get("product")?,
            chip: r.try_get("chip")?,
            version: r.try_get("version")?,
            sha256: r.try_get("sha256")?,
            secure_counter: r.try_get("secure_counter")?,
            boot: boot.map(|b| json_col("devices.boot", &b)).transpose()?,
            pinned_release: r.try_get("pinned_release")?,
            enrolled_at: r.try_get("enrolled_at")?,
            last_seen: r.try_get("last_seen")?,
            checkins: r.try_get("checkins")?,
            releases: HashMap::new(),
        })
    }

    /// Every device, by id.
    pub async fn devices(&self) -> Result<Vec<DeviceRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM devices ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<DeviceRow> = rows
            .iter()
            .map(Self::device_row)
            .collect::<Result<_, _>>()?;
        let states = sqlx::query("SELECT device_id, release_id, state FROM device_releases")
            .fetch_all(&self.pool)
            .await?;
        let mut by: HashMap<String, HashMap<String, String>> = HashMap::new();
        for r in &states {
            by.entry(r.try_get("device_id")?)
                .or_default()
                .insert(r.try_get("release_id")?, r.try_get("state")?);
        }
        for d in &mut out {
            d.releases = by.remove(&d.id).unwrap_or_default();
        }
        Ok(out)
    }

    /// One device.
    pub async fn device(&self, id: &str) -> Result<Option<DeviceRow>, StoreError> {
        let Some(r) = sqlx::query("SELECT * FROM devices WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut d = Self::device_row(&r)?;
        for r in sqlx::query("SELECT release_id, state FROM device_releases WHERE device_id = $1")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
        {
            d.releases
                .insert(r.try_get("release_id")?, r.try_get("state")?);
        }
        Ok(Some(d))
    }

    /// A device's events, oldest first.
    pub async fn events(&self, device: &str) -> Result<Vec<(String, NewEvent, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT event_id, kind, release_id, version, reason, at, received_at FROM events
             WHERE device_id = $1 ORDER BY received_at, event_id",
        )
        .bind(device)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let kind: String = r.try_get("kind")?;
            let kind = json_col("events.kind", &format!("\"{kind}\""))?;
            let at: Option<i64> = r.try_get("at")?;
            out.push((
                device.to_string(),
                NewEvent {
                    id: r.try_get("event_id")?,
                    kind,
                    release: r.try_get("release_id")?,
                    version: r.try_get("version")?,
                    reason: r.try_get("reason")?,
                    at: at.map(|a| a.max(0) as u64),
                },
                r.try_get("received_at")?,
            ));
        }
        Ok(out)
    }

    /// Pins a device to a release (or unpins it). `false`: no such device.
    pub async fn pin(&self, device: &str, release: Option<&str>) -> Result<bool, RolloutError> {
        let _w = self.write.lock().await;
        if let Some(rel) = release {
            if self.release(rel).await?.is_none() {
                return Err(RolloutError::UnknownRelease(rel.to_string()));
            }
        }
        let r = sqlx::query("UPDATE devices SET pinned_release = $1 WHERE id = $2")
            .bind(release)
            .bind(device)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    // -- check-ins -------------------------------------------------------

    /// Records a check-in of `device` (authenticated) and decides its offer,
    /// in one transaction: either all of it is recorded or nothing.
    ///
    /// A check-in without events that reports exactly what is stored, within
    /// [`LAST_SEEN_RESOLUTION_S`] of the stored `last_seen`, and whose offer
    /// is already recorded, changes nothing: it is answered from a read
    /// without the write lock or a commit (most check-ins of a quiet fleet).
    pub async fn check_in(
        &self,
        device: &str,
        report: &DeviceReport,
        now: u64,
    ) -> Result<CheckInOutcome, CheckInError> {
        if let Some(out) = self.check_in_unchanged(device, report, now).await? {
            return Ok(out);
        }
        let _w = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let c: &mut AnyConnection = &mut tx;
        let mut recorded = Vec::new();
        let mut duplicates = Vec::new();
        let mut fresh: Vec<&NewEvent> = Vec::new();
        let mut seen: HashMap<&str, &NewEvent> = HashMap::new();
        for ev in &report.events {
            if let Some(prev) = seen.get(ev.id.as_str()) {
                if *prev != ev {
                    return Err(CheckInError::EventConflict { id: ev.id.clone() });
                }
                continue;
            }
            seen.insert(&ev.id, ev);
            let old = sqlx::query(
                "SELECT kind, release_id, version, reason, at FROM events WHERE device_id = $1 AND event_id = $2",
            )
            .bind(device)
            .bind(&ev.id)
            .fetch_optional(&mut *c)
            .await?;
            if let Some(o) = old {
                let same = o.try_get::<String, _>("kind")? == ev.kind.name()
                    && o.try_get::<Option<String>, _>("release_id")? == ev.release
                    && o.try_get::<Option<String>, _>("version")? == ev.version
                    && o.try_get::<Option<String>, _>("reason")? == ev.reason
                    && o.try_get::<Option<i64>, _>("at")? == ev.at.map(i);
                if !same {
                    return Err(CheckInError::EventConflict { id: ev.id.clone() });
                }
                duplicates.push(ev.id.clone());
                continue;
            }
            if let Some(rel) = &ev.release {
                let known = sqlx::query("SELECT id FROM releases WHERE id = $1")
                    .bind(rel)
                    .fetch_optional(&mut *c)
                    .await?;
                if known.is_none() {
                    return Err(CheckInError::UnknownRelease {
                        id: ev.id.clone(),
                        release: rel.clone(),
                    });
                }
            }
            fresh.push(ev);
        }
        for ev in fresh {
            sqlx::query(
                "INSERT INTO events (device_id, event_id, kind, release_id, version, reason, at, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(device)
            .bind(&ev.id)
            .bind(ev.kind.name())
            .bind(&ev.release)
            .bind(&ev.version)
            .bind(&ev.reason)
            .bind(ev.at.map(i))
            .bind(i(now))
            .execute(&mut *c)
            .await?;
            if let (Some(rel), Some(state)) = (&ev.release, ev.kind.state()) {
                raise_state(c, device, rel, state, now).await?;
            }
            recorded.push(ev.id.clone());
        }
        sqlx::query(
            "UPDATE devices SET product = $1, chip = $2, version = $3, sha256 = $4, secure_counter = $5,
             boot = $6, last_seen = $7, checkins = checkins + 1 WHERE id = $8",
        )
        .bind(&report.product)
        .bind(&report.chip)
        .bind(&report.version)
        .bind(&report.sha256)
        .bind(report.secure_counter.map(i64::from))
        .bind(to_json(&report.boot))
        .bind(i(now))
        .bind(device)
        .execute(&mut *c)
        .await?;
        // Running a release's image past its self-test is a confirmation,
        // even if the event was lost.
        if let (Some(sha), false) = (&report.sha256, report.pending_verify) {
            let rows = sqlx::query(
                "SELECT dr.release_id FROM device_releases dr JOIN releases r ON r.id = dr.release_id
                 WHERE dr.device_id = $1 AND r.firmware_sha256 = $2",
            )
            .bind(device)
            .bind(sha)
            .fetch_all(&mut *c)
            .await?;
            for r in rows {
                let rel: String = r.try_get("release_id")?;
                raise_state(c, device, &rel, DeviceReleaseState::Confirmed, now).await?;
            }
        }
        // The device's rollouts first: a failure it just reported may halt
        // one before anything is offered.
        let mine = sqlx::query(
            "SELECT r.id FROM rollouts r JOIN rollout_devices rd ON rd.rollout_id = r.id
             WHERE rd.device_id = $1 AND r.status = 'running'",
        )
        .bind(device)
        .fetch_all(&mut *c)
        .await?;
        let mut transitions = Vec::new();
        for r in mine {
            let id: String = r.try_get("id")?;
            for t in evaluate(c, &id, now).await? {
                transitions.push((id.clone(), t));
            }
        }
        let offer = decide_offer(c, device, report, now, true).await?.offer();
        tx.commit().await?;
        Ok(CheckInOutcome {
            recorded,
            duplicates,
            offer,
            transitions,
        })
    }

    async fn check_in_unchanged(
        &self,
        device: &str,
        report: &DeviceReport,
        now: u64,
    ) -> Result<Option<CheckInOutcome>, StoreError> {
        if !report.events.is_empty() {
            return Ok(None);
        }
        let mut conn = self.pool.acquire().await?;
        let c: &mut AnyConnection = &mut conn;
        let Some(r) = sqlx::query(
            "SELECT product, chip, version, sha256, secure_counter, boot, last_seen FROM devices WHERE id = $1",
        )
        .bind(device)
        .fetch_optional(&mut *c)
        .await?
        else {
            return Ok(None);
        };
        let last_seen: Option<i64> = r.try_get("last_seen")?;
        let same = r.try_get::<Option<String>, _>("product")?.as_deref()
            == Some(report.product.as_str())
            && r.try_get::<Option<String>, _>("chip")?.as_deref() == Some(report.chip.as_str())
            && r.try_get::<Option<String>, _>("version")?.as_deref()
                == Some(report.version.as_str())
            && r.try_get::<Option<String>, _>("sha256")? == report.sha256
            && r.try_get::<Option<i64>, _>("secure_counter")?
                == report.secure_counter.map(i64::from)
            && r.try_get::<Option<String>, _>("boot")?.as_deref()
                == Some(to_json(&report.boot).as_str())
            && last_seen.is_some_and(|l| i(now).saturating_sub(l) < i(LAST_SEEN_RESOLUTION_S));
        if !same {
            return Ok(None);
        }
        let offer = match decide_offer(c, device, report, now, false).await? {
            Decision::NeedsWrite => return Ok(None),
            d => d.offer(),
        };
        Ok(Some(CheckInOutcome {
            recorded: Vec::new(),
            duplicates: Vec::new(),
            offer,
            transitions: Vec::new(),
        }))
    }

    /// The release and device a download ticket stands for; records the
    /// download.
    pub async fn ticket(
        &self,
        ticket: &str,
        file: &str,
        range_start: Option<u64>,
        now: u64,
    ) -> Result<Option<(String, String)>, StoreError> {
        let Some(r) = sqlx::query("SELECT device_id, release_id FROM tickets WHERE ticket = $1")
            .bind(ticket)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let device: String = r.try_get("device_id")?;
        let release: String = r.try_get("release_id")?;
        let _w = self.write.lock().await;
        sqlx::query(
            "INSERT INTO downloads (device_id, release_id, file, at, range_start) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&device)
        .bind(&release)
        .bind(file)
        .bind(i(now))
        .bind(range_start.map(i))
        .execute(&self.pool)
        .await?;
        Ok(Some((device, release)))
    }

    /// Every download: (device, release, file, at).
    pub async fn downloads(&self) -> Result<Vec<(String, String, String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT device_id, release_id, file, at FROM downloads ORDER BY at")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("device_id")?,
                    r.try_get("release_id")?,
                    r.try_get("file")?,
                    r.try_get("at")?,
                ))
            })
            .collect()
    }

    // -- releases --------------------------------------------------------

    /// Records a verified release. `false` when its id is taken.
    pub async fn insert_release(&self, r: &ReleaseRow) -> Result<bool, StoreError> {
        let _w = self.write.lock().await;
        let res = sqlx::query(
            "INSERT INTO releases (id, product, chip, version, secure_version, firmware_sha256, firmware_size,
             www_size, manifest, signature, signed_by, expires, published_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&r.id)
        .bind(&r.product)
        .bind(&r.chip)
        .bind(&r.version)
        .bind(r.secure_version)
        .bind(&r.firmware_sha256)
        .bind(r.firmware_size)
        .bind(r.www_size)
        .bind(&r.manifest)
        .bind(&r.signature)
        .bind(to_json(&r.signed_by))
        .bind(&r.expires)
        .bind(r.published_at)
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    fn release_row(r: &AnyRow) -> Result<ReleaseRow, StoreError> {
        Ok(ReleaseRow {
            id: r.try_get("id")?,
            product: r.try_get("product")?,
            chip: r.try_get("chip")?,
            version: r.try_get("version")?,
            secure_version: r.try_get("secure_version")?,
            firmware_sha256: r.try_get("firmware_sha256")?,
            firmware_size: r.try_get("firmware_size")?,
            www_size: r.try_get("www_size")?,
            signed_by: json_col("releases.signed_by", &r.try_get::<String, _>("signed_by")?)?,
            expires: r.try_get("expires")?,
            published_at: r.try_get("published_at")?,
            manifest: r.try_get("manifest")?,
            signature: r.try_get("signature")?,
        })
    }

    /// One release.
    pub async fn release(&self, id: &str) -> Result<Option<ReleaseRow>, StoreError> {
        sqlx::query("SELECT * FROM releases WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Self::release_row)
            .transpose()
    }

    /// Every release, newest first.
    pub async fn releases(&self) -> Result<Vec<ReleaseRow>, StoreError> {
        sqlx::query("SELECT * FROM releases ORDER BY published_at DESC, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(Self::release_row)
            .collect()
    }

    // -- rollouts --------------------------------------------------------

    /// Creates a rollout of `release` to `target`, fixing its devices now.
    pub async fn create_rollout(
        &self,
        release: &str,
        target: &Target,
        policy: &Policy,
        now: u64,
    ) -> Result<String, RolloutError> {
        policy.validate()?;
        let _w = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let c: &mut AnyConnection = &mut tx;
        let Some(rel) = sqlx::query("SELECT product FROM releases WHERE id = $1")
            .bind(release)
            .fetch_optional(&mut *c)
            .await?
        else {
            return Err(RolloutError::UnknownRelease(release.to_string()));
        };
        let rel_product: String = rel.try_get("product")?;
        let all = sqlx::query("SELECT id, tags, product FROM devices")
            .fetch_all(&mut *c)
            .await?;
        let mut known: HashMap<String, (Vec<String>, Option<String>)> = HashMap::new();
        for r in &all {
            known.insert(
                r.try_get("id")?,
                (
                    json_col("devices.tags", &r.try_get::<String, _>("tags")?)?,
                    r.try_get("product")?,
                ),
            );
        }
        let product = match (&target.product, &target.tag, &target.devices) {
            (Some(p), _, _) => Some(p.clone()),
            (None, None, None) => Some(rel_product),
            _ => None,
        };
        let mut chosen = Vec::new();
        if let Some(list) = &target.devices {
            for d in list {
                if !known.contains_key(d) {
                    return Err(RolloutError::UnknownDevice(d.clone()));
                }
            }
        }
        for (id, (tags, prod)) in &known {
            let ok = product.as_ref().is_none_or(|p| prod.as_ref() == Some(p))
                && target.tag.as_ref().is_none_or(|t| tags.contains(t))
                && target.devices.as_ref().is_none_or(|l| l.contains(id));
            if ok {
                chosen.push(id.clone());
            }
        }
        if chosen.is_empty() {
            return Err(RolloutError::EmptyTarget);
        }
        let id = format!("r-{}", random_hex(6)?);
        let ranked = rollout::rank_devices(&id, chosen);
        let state = RolloutState::Running {
            wave: 0,
            since: now,
        };
        sqlx::query(
            "INSERT INTO rollouts (id, release_id, target, policy, status, state, devices, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(release)
        .bind(to_json(target))
        .bind(to_json(policy))
        .bind(state.name())
        .bind(to_json(&state))
        .bind(ranked.len() as i64)
        .bind(i(now))
        .bind(i(now))
        .execute(&mut *c)
        .await?;
        for (rank, d) in ranked.iter().enumerate() {
            sqlx::query(
                "INSERT INTO rollout_devices (rollout_id, device_id, rank) VALUES ($1, $2, $3)",
            )
            .bind(&id)
            .bind(d)
            .bind(rank as i64)
            .execute(&mut *c)
            .await?;
        }
        log(
            c,
            &id,
            now,
            "created",
            0,
            &format!("{} device(s)", ranked.len()),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Applies an operator's command.
    pub async fn command_rollout(
        &self,
        id: &str,
        cmd: Command,
        now: u64,
    ) -> Result<RolloutState, RolloutError> {
        let _w = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let c: &mut AnyConnection = &mut tx;
        let Some((_, policy, state)) = load_rollout(c, id).await? else {
            return Err(RolloutError::UnknownRollout(id.to_string()));
        };
        let next = rollout::command(state, cmd, now)?;
        save_state(c, id, &next, now).await?;
        let kind = match cmd {
            Command::Pause => "paused",
            Command::Resume => "resumed",
            Command::Abort => "aborted",
        };
        log(
            c,
            id,
            now,
            kind,
            next.wave(policy.waves.len()) as i64,
            "by the operator",
        )
        .await?;
        tx.commit().await?;
        Ok(next)
    }

    /// Evaluates every running rollout (soak times pass without check-ins).
    pub async fn tick(&self, now: u64) -> Result<Vec<(String, Transition)>, StoreError> {
        let _w = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let c: &mut AnyConnection = &mut tx;
        let ids = sqlx::query("SELECT id FROM rollouts WHERE status = 'running'")
            .fetch_all(&mut *c)
            .await?;
        let mut out = Vec::new();
        for r in ids {
            let id: String = r.try_get("id")?;
            for t in evaluate(c, &id, now).await? {
                out.push((id.clone(), t));
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Every rollout, newest first, with counts.
    pub async fn rollouts(&self) -> Result<Vec<RolloutRow>, StoreError> {
        let ids = sqlx::query("SELECT id FROM rollouts ORDER BY created_at DESC, id")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in ids {
            let id: String = r.try_get("id")?;
            if let Some(row) = self.rollout(&id).await? {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// One rollout with its waves' counts and history.
    pub async fn rollout(&self, id: &str) -> Result<Option<RolloutRow>, StoreError> {
        let mut c = self.pool.acquire().await?;
        let c: &mut AnyConnection = &mut c;
        let Some(r) = sqlx::query("SELECT * FROM rollouts WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
        else {
            return Ok(None);
        };
        let policy: Policy = json_col("rollouts.policy", &r.try_get::<String, _>("policy")?)?;
        let devices: i64 = r.try_get("devices")?;
        let release: String = r.try_get("release_id")?;
        let sizes = rollout::wave_sizes(devices.max(0) as usize, &policy.waves);
        let mut waves = Vec::new();
        let mut lo = 0;
        for &hi in &sizes {
            waves.push(wave_counts(c, id, &release, lo, hi).await?);
            lo = hi;
        }
        let log = sqlx::query(
            "SELECT at, kind, wave, detail FROM rollout_log WHERE rollout_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|l| {
            Ok(LogEntry {
                at: l.try_get("at")?,
                kind: l.try_get("kind")?,
                wave: l.try_get("wave")?,
                detail: l.try_get("detail")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        let timeline = sqlx::query(
            "SELECT dr.state, dr.updated_at FROM device_releases dr
             JOIN rollout_devices rd ON rd.device_id = dr.device_id AND rd.rollout_id = $1
             WHERE dr.release_id = $2 AND dr.state IN ('confirmed', 'rolled_back', 'self_test_failed')
             ORDER BY dr.updated_at, dr.device_id",
        )
        .bind(id)
        .bind(&release)
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|t| {
            Ok(TimelinePoint {
                at: t.try_get("updated_at")?,
                state: t.try_get("state")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some(RolloutRow {
            timeline,
            id: r.try_get("id")?,
            release,
            target: json_col("rollouts.target", &r.try_get::<String, _>("target")?)?,
            state: json_col("rollouts.state", &r.try_get::<String, _>("state")?)?,
            policy,
            devices,
            wave_sizes: sizes,
            waves,
            created_at: r.try_get("created_at")?,
            log,
        }))
    }

    /// Devices of rollout `id` by rank.
    pub async fn rollout_devices(&self, id: &str) -> Result<Vec<String>, StoreError> {
        sqlx::query("SELECT device_id FROM rollout_devices WHERE rollout_id = $1 ORDER BY rank")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok(r.try_get("device_id")?))
            .collect()
    }
}

/// Moves a device's record of a release forward (never back).
async fn raise_state(
    c: &mut AnyConnection,
    device: &str,
    release: &str,
    state: DeviceReleaseState,
    now: u64,
) -> Result<(), StoreError> {
    let old =
        sqlx::query("SELECT state FROM device_releases WHERE device_id = $1 AND release_id = $2")
            .bind(device)
            .bind(release)
            .fetch_optional(&mut *c)
            .await?;
    match old {
        None => {
            sqlx::query(
                "INSERT INTO device_releases (device_id, release_id, state, updated_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(device)
            .bind(release)
            .bind(state.name())
            .bind(i(now))
            .execute(&mut *c)
            .await?;
        }
        Some(r) => {
            let cur = DeviceReleaseState::parse(&r.try_get::<String, _>("state")?)
                .unwrap_or(DeviceReleaseState::Offered);
            if state > cur {
                sqlx::query(
                    "UPDATE device_releases SET state = $1, updated_at = $2 WHERE device_id = $3 AND release_id = $4",
                )
                .bind(state.name())
                .bind(i(now))
                .bind(device)
                .bind(release)
                .execute(&mut *c)
                .await?;
            }
        }
    }
    Ok(())
}

async fn load_rollout(
    c: &mut AnyConnection,
    id: &str,
) -> Result<Option<(String, Policy, RolloutState)>, StoreError> {
    let Some(r) = sqlx::query("SELECT release_id, policy, state FROM rollouts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some((
        r.try_get("release_id")?,
        json_col("rollouts.policy", &r.try_get::<String, _>("policy")?)?,
        json_col("rollouts.state", &r.try_get::<String, _>("state")?)?,
    )))
}

async fn save_state(
    c: &mut AnyConnection,
    id: &str,
    state: &RolloutState,
    now: u64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE rollouts SET status = $1, state = $2, updated_at = $3 WHERE id = $4")
        .bind(state.name())
        .bind(to_json(state))
        .bind(i(now))
        .bind(id)
        .execute(&mut *c)
        .await?;
    Ok(())
}

async fn log(
    c: &mut AnyConnection,
    id: &str,
    now: u64,
    kind: &str,
    wave: i64,
    detail: &str,
) -> Result<(), StoreError> {
    let seq: i64 =
        sqlx::query("SELECT COALESCE(MAX(seq), 0) AS m FROM rollout_log WHERE rollout_id = $1")
            .bind(id)
            .fetch_one(&mut *c)
            .await?
            .try_get("m")?;
    sqlx::query(
        "INSERT INTO rollout_log (rollout_id, seq, at, kind, wave, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(seq + 1)
    .bind(i(now))
    .bind(kind)
    .bind(wave)
    .bind(detail)
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn wave_counts(
    c: &mut AnyConnection,
    rollout: &str,
    release: &str,
    lo: usize,
    hi: usize,
) -> Result<WaveCounts, StoreError> {
    let r = sqlx::query(
        "SELECT COUNT(*) AS n,
            COALESCE(SUM(CASE WHEN dr.state = 'confirmed' THEN 1 ELSE 0 END), 0) AS confirmed,
            COALESCE(SUM(CASE WHEN dr.state = 'rolled_back' THEN 1 ELSE 0 END), 0) AS rolled_back,
            COALESCE(SUM(CASE WHEN dr.state = 'self_test_failed' THEN 1 ELSE 0 END), 0) AS failed
         FROM rollout_devices rd
         LEFT JOIN device_releases dr ON dr.device_id = rd.device_id AND dr.release_id = $1
         WHERE rd.rollout_id = $2 AND rd.rank >= $3 AND rd.rank < $4",
    )
    .bind(release)
    .bind(rollout)
    .bind(lo as i64)
    .bind(hi as i64)
    .fetch_one(&mut *c)
    .await?;
    let n = |k: &str| -> Result<usize, StoreError> { Ok(r.try_get::<i64, _>(k)?.max(0) as usize) };
    Ok(WaveCounts {
        devices: n("n")?,
        confirmed: n("confirmed")?,
        rolled_back: n("rolled_back")?,
        selftest_failed: n("failed")?,
    })
}

/// Steps a rollout until it stops moving; records each transition.
async fn evaluate(
    c: &mut AnyConnection,
    id: &str,
    now: u64,
) -> Result<Vec<Transition>, StoreError> {
    let Some((release, policy, mut state)) = load_rollout(c, id).await? else {
        return Ok(Vec::new());
    };
    let total: i64 = sqlx::query("SELECT devices FROM rollouts WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *c)
        .await?
        .try_get("devices")?;
    let sizes = rollout::wave_sizes(total.max(0) as usize, &policy.waves);
    let mut out = Vec::new();
    for _ in 0..=policy.waves.len() {
        let RolloutState::Running { wave, .. } = state else {
            break;
        };
        let lo = if wave == 0 { 0 } else { sizes[wave - 1] };
        let hi = sizes.get(wave).copied().unwrap_or(lo);
        let counts = wave_counts(c, id, &release, lo, hi).await?;
        let (next, t) = rollout::step(state, &policy, &counts, now);
        state = next;
        let Some(t) = t else { break };
        save_state(c, id, &state, now).await?;
        let (kind, wave, detail) = match &t {
            Transition::Advanced { wave } => {
                ("advanced", *wave, format!("wave {} started", wave + 1))
            }
            Transition::Completed => ("completed", sizes.len().saturating_sub(1), String::new()),
            Transition::Halted { reason } => (
                "halted",
                match reason {
                    HaltReason::RollbackRate { wave, .. }
                    | HaltReason::SelfTestFailureRate { wave, .. } => *wave,
                },
                reason.to_string(),
            ),
        };
        tracing::info!("rollout {id}: {kind} (wave {}) {detail}", wave + 1);
        log(c, id, now, kind, wave as i64, &detail).await?;
        out.push(t);
    }
    Ok(out)
}

/// What the device should install now, if anything. A pin wins over
/// rollouts; a release the device refused, rolled back or failed is never
/// offered again; a device already running the release is not offered it.
async fn decide_offer(
    c: &mut AnyConnection,
    device: &str,
    report: &DeviceReport,
    now: u64,
    write: bool,
) -> Result<Decision, StoreError> {
    let pinned: Option<String> = sqlx::query("SELECT pinned_release FROM devices WHERE id = $1")
        .bind(device)
        .fetch_one(&mut *c)
        .await?
        .try_get("pinned_release")?;
    let mut candidates: Vec<(String, String)> = Vec::new();
    if let Some(p) = pinned {
        candidates.push((p, "pinned".into()));
    } else {
        let rows = sqlx::query(
            "SELECT r.id, r.release_id, r.policy, r.state, r.devices, rd.rank FROM rollouts r
             JOIN rollout_devices rd ON rd.rollout_id = r.id
             WHERE rd.device_id = $1 AND r.status = 'running' ORDER BY r.created_at DESC, r.id",
        )
        .bind(device)
        .fetch_all(&mut *c)
        .await?;
        for r in rows {
            let policy: Policy = json_col("rollouts.policy", &r.try_get::<String, _>("policy")?)?;
            let state: RolloutState =
                json_col("rollouts.state", &r.try_get::<String, _>("state")?)?;
            let total: i64 = r.try_get("devices")?;
            let rank: i64 = r.try_get("rank")?;
            let RolloutState::Running { wave, .. } = state else {
                continue;
            };
            let sizes = rollout::wave_sizes(total.max(0) as usize, &policy.waves);
            if sizes.get(wave).is_some_and(|&n| (rank.max(0) as usize) < n) {
                candidates.push((
                    r.try_get("release_id")?,
                    format!("rollout {}", r.try_get::<String, _>("id")?),
                ));
            }
        }
    }
    for (release, via) in candidates {
        let Some(rel) = sqlx::query("SELECT version, firmware_sha256 FROM releases WHERE id = $1")
            .bind(&release)
            .fetch_optional(&mut *c)
            .await?
        else {
            continue;
        };
        let sha: String = rel.try_get("firmware_sha256")?;
        if report.sha256.as_deref() == Some(sha.as_str()) {
            continue;
        }
        let st = sqlx::query(
            "SELECT state FROM device_releases WHERE device_id = $1 AND release_id = $2",
        )
        .bind(device)
        .bind(&release)
        .fetch_optional(&mut *c)
        .await?;
        if let Some(s) = st {
            if DeviceReleaseState::parse(&s.try_get::<String, _>("state")?)
                .is_some_and(DeviceReleaseState::is_final)
            {
                continue;
            }
        } else if !write {
            return Ok(Decision::NeedsWrite);
        } else {
            raise_state(c, device, &release, DeviceReleaseState::Offered, now).await?;
        }
        let existing =
            sqlx::query("SELECT ticket FROM tickets WHERE device_id = $1 AND release_id = $2")
                .bind(device)
                .bind(&release)
                .fetch_optional(&mut *c)
                .await?;
        let ticket = match existing {
            Some(t) => t.try_get("ticket")?,
            None if !write => return Ok(Decision::NeedsWrite),
            None => {
                let t = random_hex(16)?;
                sqlx::query(
                    "INSERT INTO tickets (ticket, device_id, release_id, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&t)
                .bind(device)
                .bind(&release)
                .bind(i(now))
                .execute(&mut *c)
                .await?;
                t
            }
        };
        return Ok(Decision::Offer(Offer {
            release,
            version: rel.try_get("version")?,
            sha256: sha,
            ticket,
            via,
        }));
    }
    Ok(Decision::Nothing)
}

/// What [`decide_offer`] found.
enum Decision {
    /// Install this.
    Offer(Offer),
    /// Nothing to install.
    Nothing,
    /// An offer needs recording first (read-only mode only).
    NeedsWrite,
}

impl Decision {
    fn offer(self) -> Option<Offer> {
        match self {
            Decision::Offer(o) => Some(o),
            _ => None,
        }
    }
}
