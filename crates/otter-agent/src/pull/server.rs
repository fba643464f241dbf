//! The pull client's fleet-server mode (`--server URL`, docs/fleet.md): before
//! each check the device checks in (who it is, what it runs, its boot states
//! and what happened since the last acknowledged check-in), and the server
//! answers with the manifest to install now, if any. The manifest then goes
//! through the same verified pull path as `--manifest-url`: the server is
//! trusted for nothing but the choice of release.
//!
//! Events are kept in `DIR/fleet.json` until the server acknowledges them,
//! so a lost answer, a server restart or a power cut replays them with the
//! same ids (the server records each id once). The same file keeps the token
//! issued at enrollment and the release being installed; which events that
//! release's install reports, and when, is the device core's decision
//! (`otter_device::pull::install`, the table there): this module only keeps
//! the journal and puts reasons in words.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::{header, Request};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use url::Url;

use super::{CheckReport, Stop};
use crate::fetch::Trust;
use crate::state::{now_secs, Shared};

/// The typed fault of a check-in's failure code.
pub(super) fn fault(code: &str) -> otter_device::pull::ServerFault {
    use otter_device::pull::ServerFault as F;
    match code {
        "server_unreachable" => F::Unreachable,
        "server_refused" => F::Refused,
        "server_answer" => F::Answer,
        "server_url" => F::Url,
        "not_enrolled" => F::NotEnrolled,
        _ => F::State,
    }
}

/// The largest answer the server may send to a check-in.
const MAX_ANSWER: usize = 64 * 1024;
/// Events kept while the server is unreachable; the oldest go first.
const MAX_OUTBOX: usize = 256;
/// Events sent in one check-in (the server's limit).
const MAX_EVENTS_PER_CHECKIN: usize = 64;

/// How the device talks to a fleet server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The server's base URL (`http://fleet.example:8780/`).
    pub url: Url,
    /// This device's id on the server.
    pub device_id: String,
    /// The fleet's enrollment key, to enroll when no token is kept yet.
    pub enrollment_key: Option<String>,
    /// Tags to enroll with.
    pub tags: Vec<String>,
    /// Where the token, the outbox and the install in progress are kept
    /// (`DIR/fleet.json`).
    pub state_file: PathBuf,
    /// TLS trust for an `https://` server.
    pub trust: Option<Trust>,
    /// Connect and read timeout.
    pub timeout: Duration,
}

/// An event waiting for the server's acknowledgement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Event {
    id: String,
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    at: u64,
}

/// The offered release being installed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Pending {
    release: String,
    version: String,
    sha256: String,
    started: bool,
    verified: bool,
}

/// `DIR/fleet.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Journal {
    device_id: String,
    token: Option<String>,
    next_event: u64,
    outbox: Vec<Event>,
    pending: Option<Pending>,
}

impl Pending {
    /// How far the core's view of the install has come.
    fn install(&self) -> otter_device::pull::install::Install {
        otter_device::pull::install::Install {
            started: self.started,
            verified: self.verified,
        }
    }
}

impl Journal {
    /// Keeps the core's decision: the install's progress, or none once it
    /// finished.
    fn set_install(&mut self, install: Option<otter_device::pull::install::Install>) {
        match (install, self.pending.as_mut()) {
            (Some(i), Some(p)) => {
                p.started = i.started;
                p.verified = i.verified;
            }
            (None, _) => self.pending = None,
            (Some(_), None) => {}
        }
    }

    fn load(path: &Path, device_id: &str) -> Result<Journal, Stop> {
        match std::fs::read(path) {
            Ok(b) => {
                let j: Journal = serde_json::from_slice(&b).map_err(|e| {
                    Stop::failed(
                        "fleet_state",
                        format!(
                            "{} does not parse ({e}); move it away to enroll again",
                            path.display()
                        ),
                    )
                })?;
                if j.device_id != device_id {
                    return Err(Stop::failed(
                        "fleet_state",
                        format!(
                            "{} belongs to device {:?}, not {device_id:?}; move it away to enroll as {device_id:?}",
                            path.display(),
                            j.device_id
                        ),
                    ));
                }
                Ok(j)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Journal {
                device_id: device_id.to_string(),
                ..Journal::default()
            }),
            Err(e) => Err(Stop::failed(
                "fleet_state",
                format!("{}: {e}", path.display()),
            )),
        }
    }

    /// Written to a temporary file, synced, then renamed over the old one:
    /// a power cut leaves the old or the new journal, never a torn one.
    fn save(&self, path: &Path) -> Result<(), Stop> {
        use std::io::Write as _;
        let fail =
            |e: std::io::Error| Stop::failed("fleet_state", format!("{}: {e}", path.display()));
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| fail(std::io::Error::other(e)))?;
        let mut f = std::fs::File::create(&tmp).map_err(fail)?;
        f.write_all(&bytes).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, path).map_err(fail)
    }

    fn push(
        &mut self,
        kind: &str,
        release: Option<&str>,
        version: Option<&str>,
        reason: Option<String>,
    ) {
        self.next_event += 1;
        self.outbox.push(Event {
            id: format!("e{}", self.next_event),
            kind: kind.to_string(),
            release: release.map(str::to_string),
            version: version.map(str::to_string),
            reason: reason.map(|r| r.chars().take(1000).collect()),
            at: now_secs(),
        });
        if self.outbox.len() > MAX_OUTBOX {
            self.outbox.remove(0);
        }
    }
}

/// The device's state as a check-in reports it, and the events it implies.
fn observe(shared: &Shared, j: &mut Journal) -> Result<Observed, Stop> {
    let boot = shared.boot();
    let status = shared
        .device()
        .status(boot.running)
        .map_err(|e| Stop::failed("flash_error", e.to_string()))?;
    let running = status
        .running
        .as_ref()
        .ok_or_else(|| Stop::failed("not_running", "no image runs"))?;
    let state = running.state.clone();
    if let Some(p) = j.pending.clone() {
        use otter_device::pull::install::{self, Reason, RolledBackAs, Seen};
        let rollback = shared
            .last_rollback()
            .filter(|r| r.version.as_deref() == Some(p.version.as_str()));
        let seen = Seen {
            runs_offered: running.sha256.as_deref() == Some(p.sha256.as_str()),
            pending_verify: state.as_deref() == Some("pending_verify"),
            rollback: rollback.as_ref().map(|r| {
                if r.state == "invalid" {
                    RolledBackAs::Invalid
                } else {
                    RolledBackAs::Aborted
                }
            }),
            failed_slot: status.slots.iter().any(|s| {
                s.version.as_deref() == Some(p.version.as_str())
                    && matches!(s.state.as_deref(), Some("invalid" | "aborted"))
            }),
        };
        let d = install::at_checkin(p.install(), &seen);
        for (kind, reason) in d.events.iter() {
            let reason = match reason {
                Reason::RecordedRollback => rollback.as_ref().map(|r| r.reason.clone()),
                Reason::FailedSlot => Some(format!(
                    "{} is in a slot marked invalid or aborted",
                    p.version
                )),
                Reason::None | Reason::CheckError => None,
            };
            j.push(kind.name(), Some(&p.release), Some(&p.version), reason);
        }
        j.set_install(d.install);
    }
    let slots = status
        .slots
        .iter()
        .take(16)
        .map(|s| (s.slot.label.to_string(), s.state.clone(), s.version.clone()))
        .collect();
    Ok(Observed {
        product: running.project_name.clone(),
        chip: status.chip.clone(),
        version: running.version.clone(),
        sha256: running.sha256.clone(),
        secure_counter: status.anti_rollback,
        running_slot: running.slot.label.to_string(),
        state,
        slots,
    })
}

/// What a check-in reports of the device, as [`observe`] read it.
struct Observed {
    product: String,
    chip: String,
    version: String,
    sha256: Option<String>,
    secure_counter: Option<u32>,
    running_slot: String,
    state: Option<String>,
    slots: Vec<(String, Option<String>, Option<String>)>,
}

/// The check-in document, written by the device core's writer.
fn checkin_body(device_id: &str, o: &Observed, events: &[Event]) -> Result<Vec<u8>, Stop> {
    use otter_device::pull::checkin::{EventReport, Report, SlotReport};
    let slots: Vec<SlotReport<'_>> = o
        .slots
        .iter()
        .map(|(name, state, version)| SlotReport {
            name,
            state: state.as_deref(),
            version: version.as_deref(),
        })
        .collect();
    let events: Vec<EventReport<'_>> = events
        .iter()
        .map(|e| EventReport {
            id: &e.id,
            kind: &e.kind,
            release: e.release.as_deref(),
            version: e.version.as_deref(),
            reason: e.reason.as_deref(),
            at: e.at,
        })
        .collect();
    let report = Report {
        device_id,
        product: &o.product,
        chip: &o.chip,
        version: &o.version,
        sha256: o.sha256.as_deref(),
        secure_counter: o.secure_counter,
        running_slot: &o.running_slot,
        state: o.state.as_deref(),
        slots: &slots,
        events: &events,
    };
    // Events carry reasons of at most 1,000 characters (6 bytes each
    // escaped), so this bounds any document.
    let mut buf = vec![0u8; 16 * 1024 + MAX_EVENTS_PER_CHECKIN * 7 * 1024];
    let mut out = otter_device::JsonOut::new(&mut buf);
    if !report.write(&mut out) {
        return Err(Stop::failed(
            "fleet_state",
            "the check-in document does not fit its buffer",
        ));
    }
    let n = out.len();
    buf.truncate(n);
    Ok(buf)
}

/// One HTTP exchange with the server: `POST path` with a JSON body.
async fn post(
    cfg: &ServerConfig,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), Stop> {
    let url = cfg
        .url
        .join(path)
        .map_err(|e| Stop::failed("server_url", format!("{}{path}: {e}", cfg.url)))?;
    let fail = |what: String| Stop::failed("server_unreachable", format!("{url}: {what}"));
    let host = url
        .host_str()
        .ok_or_else(|| fail("no host".into()))?
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| fail("no port".into()))?;
    let bytes = Bytes::from(body);
    let mut req = Request::post(url.path())
        .header(header::HOST, format!("{host}:{port}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONNECTION, "close");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(bytes))
        .map_err(|e| fail(e.to_string()))?;
    let exchange = async {
        let host_for_connect = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tcp = TcpStream::connect((host_for_connect.as_str(), port))
            .await
            .map_err(|e| fail(format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let resp = if url.scheme() == "https" {
            let trust = cfg.trust.clone().ok_or_else(|| {
                Stop::failed("server_url", "an https:// server needs --ca or --pin")
            })?;
            let tls = crate::fetch::trust::tls_connector(trust).map_err(|e| fail(e.to_string()))?;
            let name = rustls_pki_types::ServerName::try_from(host_for_connect.clone())
                .map_err(|e| fail(e.to_string()))?;
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| fail(format!("TLS: {e}")))?;
            send(TokioIo::new(stream), req).await
        } else {
            send(TokioIo::new(tcp), req).await
        };
        resp.map_err(|e| fail(e.to_string()))
    };
    tokio::time::timeout(cfg.timeout, exchange)
        .await
        .map_err(|_| {
            fail(format!(
                "no answer within {:.0} s",
                cfg.timeout.as_secs_f64()
            ))
        })?
}

async fn send<IO>(io: TokioIo<IO>, req: Request<Full<Bytes>>) -> Result<(u16, Vec<u8>), String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt as _;
    let (mut sender, conn) = http1::handshake(io).await.map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let limited = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER);
    let body = limited
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    task.abort();
    Ok((status, body.to_vec()))
}

fn refusal(status: u16, body: &[u8]) -> Stop {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = body["error"].as_str().unwrap_or("unknown");
    let message = body["message"].as_str().unwrap_or("");
    Stop::failed(
        "server_refused",
        format!("the fleet server answered {status} {code}: {message}"),
    )
}

/// Checks in; returns the manifest URL to check now, or `None` when the
/// server offers nothing.
pub(super) async fn check_in(
    cfg: &ServerConfig,
    shared: &Arc<Shared>,
) -> Result<Option<Url>, Stop> {
    let mut j = Journal::load(&cfg.state_file, &cfg.device_id)?;
    if j.token.is_none() {
        let Some(key) = &cfg.enrollment_key else {
            return Err(Stop::failed(
                "not_enrolled",
                format!(
                    "no token in {} and no enrollment key to get one",
                    cfg.state_file.display()
                ),
            ));
        };
        let (status, body) = post(
            cfg,
            "device/v1/enroll",
            None,
            json!({"device_id": cfg.device_id, "enrollment_key": key, "tags": cfg.tags})
                .to_string()
                .into_bytes(),
        )
        .await?;
        if status != 201 {
            return Err(refusal(status, &body));
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        j.token = body["token"].as_str().map(str::to_string);
        j.save(&cfg.state_file)?;
        shared.event(format!(
            "fleet: enrolled as {} at {}",
            cfg.device_id, cfg.url
        ));
    }
    let observed = observe(shared, &mut j)?;
    j.save(&cfg.state_file)?;
    let sending: Vec<Event> = j
        .outbox
        .iter()
        .take(MAX_EVENTS_PER_CHECKIN)
        .cloned()
        .collect();
    let doc = checkin_body(&j.device_id, &observed, &sending)?;
    let (status, body) = post(cfg, "device/v1/checkin", j.token.as_deref(), doc).await?;
    if status != 200 {
        return Err(refusal(status, &body));
    }
    let mut acked: Vec<String> = Vec::new();
    let offer = otter_device::pull::checkin::parse_answer(&body, &mut |id| {
        acked.push(id.to_string());
    });
    let offer = match offer {
        Ok(o) => o,
        Err(_) => {
            j.save(&cfg.state_file)?;
            return Err(Stop::failed(
                "server_answer",
                format!(
                    "the answer does not parse: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
            ));
        }
    };
    j.outbox.retain(|e| !acked.contains(&e.id));
    let url = match offer {
        None => None,
        Some(o) => {
            let path = o.manifest_url.as_str();
            let url = cfg.url.join(path).map_err(|e| {
                Stop::failed("server_answer", format!("manifest_url {path:?}: {e}"))
            })?;
            if j.pending.as_ref().map(|p| p.release.as_str()) != Some(o.release.as_str()) {
                j.pending = Some(Pending {
                    release: o.release.as_str().into(),
                    version: o.version.as_str().into(),
                    sha256: o.sha256.as_str().into(),
                    started: false,
                    verified: false,
                });
            }
            Some(url)
        }
    };
    j.save(&cfg.state_file)?;
    Ok(url)
}

/// Records what the check after a check-in did: an install started, a
/// refusal, a failed download.
pub(super) fn after_check(cfg: &ServerConfig, report: &CheckReport) {
    let Ok(mut j) = Journal::load(&cfg.state_file, &cfg.device_id) else {
        return;
    };
    let Some(p) = j.pending.clone() else { return };
    use otter_device::pull::install::{self, CheckOutcome, Reason};
    let outcome = match (report.result, report.artifact) {
        ("updating", Some("firmware")) => CheckOutcome::DownloadingFirmware,
        ("refused", _)
            if report
                .release
                .as_ref()
                .is_some_and(|r| r.sha256 == p.sha256) =>
        {
            CheckOutcome::RefusedOffered
        }
        ("failed", _) => CheckOutcome::Failed {
            transport: report
                .error
                .as_ref()
                .is_none_or(|e| e.error == "server_unreachable" || e.error == "server_refused"),
        },
        _ => CheckOutcome::Other,
    };
    let d = install::after_check(p.install(), outcome);
    if d.events.is_empty() && d.install == Some(p.install()) {
        return;
    }
    for (kind, reason) in d.events.iter() {
        let reason = match reason {
            Reason::CheckError => report
                .error
                .as_ref()
                .map(|e| format!("{}: {}", e.error, e.message)),
            Reason::None | Reason::RecordedRollback | Reason::FailedSlot => None,
        };
        j.push(kind.name(), Some(&p.release), Some(&p.version), reason);
    }
    j.set_install(d.install);
    let _ = j.save(&cfg.state_file);
}
