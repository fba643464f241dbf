//! The device's diagnostics as one serialisable value: what runs, what boots
//! next, every slot's image and state, otadata, and the last rollback (the
//! seeds' `ota_print_info`, read from flash).

use embedded_storage::nor_flash::ReadNorFlash;
use otter_format::image::FixedStr;
use otter_format::otadata::OtaState;
use otter_ota::diagnostics::{diagnostics, AppSummary, SlotVerdictKind};
use otter_ota::{SlotId, SlotMap};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{DeviceError, VirtualDevice};

/// A slot, named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotLabel {
    /// The partition label (`ota_0`).
    pub label: String,
    /// The slot as ESP-IDF names its role (`factory`, `ota_0`, `test`).
    pub slot: String,
    /// Flash offset.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// The running image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunningStatus {
    /// Where it runs from.
    #[serde(flatten)]
    pub slot: SlotLabel,
    /// `esp_app_desc_t.version`.
    pub version: String,
    /// `esp_app_desc_t.project_name`.
    pub project_name: String,
    /// `esp_app_desc_t.idf_ver`.
    pub idf_ver: String,
    /// `esp_app_desc_t.secure_version`.
    pub secure_version: u32,
    /// Its rollback state (`esp_ota_get_state_partition`): `valid`,
    /// `pending_verify`, `undefined`, ..., or `null` when no otadata entry
    /// names it (factory, or an OTA slot booted before any update).
    pub state: Option<String>,
    /// Image length in bytes.
    pub image_len: Option<u32>,
    /// SHA-256 of the image as stored (all `image_len` bytes), hex: equal to
    /// the SHA-256 of the file that was uploaded.
    pub sha256: Option<String>,
    /// What runs, for people, never blank: `PROJECT VERSION (sha256
    /// PREFIX)`, with [`NO_VERSION`] / [`NO_PROJECT`] standing in for an
    /// empty descriptor field (Tasmota's images have an empty version). An
    /// image that runs is never shown as "nothing runs": that is `running:
    /// null`.
    pub summary: String,
}

/// Shown for an app descriptor's empty version.
pub const NO_VERSION: &str = "(no version)";
/// Shown for an app descriptor's empty project name.
pub const NO_PROJECT: &str = "(no project name)";

/// `text`, or `placeholder` when it is empty.
pub fn or_placeholder<'a>(text: &'a str, placeholder: &'a str) -> &'a str {
    if text.is_empty() {
        placeholder
    } else {
        text
    }
}

/// The [`RunningStatus::summary`] of an image.
pub fn image_summary(project: &str, version: &str, sha256: Option<&str>) -> String {
    let mut s = format!(
        "{} {}",
        or_placeholder(project, NO_PROJECT),
        or_placeholder(version, NO_VERSION)
    );
    if let Some(prefix) = sha256.and_then(|h| h.get(..12)) {
        s.push_str(&format!(" (sha256 {prefix})"));
    }
    s
}

/// One app slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotStatus {
    /// Where it is.
    #[serde(flatten)]
    pub slot: SlotLabel,
    /// `empty`, `valid` (the bootloader would boot it) or `invalid`.
    pub verdict: &'static str,
    /// Why an image is invalid.
    pub error: Option<String>,
    /// The app descriptor's version, when there is one.
    pub version: Option<String>,
    /// The app descriptor's project name.
    pub project_name: Option<String>,
    /// The app descriptor's secure_version.
    pub secure_version: Option<u32>,
    /// Image length when it verifies.
    pub image_len: Option<u32>,
    /// Its otadata state, if an entry names it.
    pub state: Option<String>,
}

/// One otadata entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtadataEntryStatus {
    /// 0 or 1.
    pub sector: u8,
    /// Flash offset.
    pub offset: u32,
    /// `ota_seq`.
    pub seq: u32,
    /// State name.
    pub state: String,
    /// Both words erased.
    pub empty: bool,
    /// The CRC matches.
    pub crc_ok: bool,
    /// ESP-IDF's validity predicate.
    pub valid: bool,
    /// The slot the entry's sequence number names (when its CRC is good).
    pub slot: Option<String>,
}

/// The otadata partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OtadataStatus {
    /// Flash offset.
    pub offset: u32,
    /// The active entry's sector, `null` when neither is valid.
    pub active: Option<u8>,
    /// Both entries.
    pub entries: Vec<OtadataEntryStatus>,
}

/// The last rollback, read from otadata: the newest entry is ABORTED or
/// INVALID and another image runs. (A running agent replaces it with what it
/// saw, which is exact where flash is ambiguous: after two rollbacks in a
/// row both entries are INVALID.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastRollback {
    /// The slot rolled back from.
    pub from: String,
    /// The slot the bootloader booted instead (`null` when nothing boots).
    pub to: Option<String>,
    /// `true` once a later update was confirmed: the rollback is history,
    /// not the device's present state. Flash only shows a rollback while it
    /// is the newest otadata entry, so this is `false` here; a running agent
    /// sets it (docs/device-api.md).
    pub stale: bool,
    /// The version that was rolled back, if its descriptor reads.
    pub version: Option<String>,
    /// SHA-256 (hex) of the rolled-back image as its slot holds it (all
    /// `image_len` bytes: the uploaded file's digest), when the slot still
    /// holds a readable image.
    pub sha256: Option<String>,
    /// `aborted` or `invalid`.
    pub state: String,
    /// Why, in words.
    pub reason: String,
}

/// The device's diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The chip.
    pub chip: String,
    /// Flash size in bytes.
    pub flash_size: u32,
    /// App rollback is enabled.
    pub rollback: bool,
    /// The anti-rollback eFuse counter, `null` when anti-rollback is off.
    pub anti_rollback: Option<u32>,
    /// The running image; `null` when nothing boots.
    pub running: Option<RunningStatus>,
    /// `true` when the device is not running and `running` is the image the
    /// next power-on would boot.
    pub predicted: bool,
    /// The slot otadata selects (`esp_ota_get_boot_partition`).
    pub boot: Option<SlotLabel>,
    /// The slot the next update goes to (`esp_ota_get_next_update_partition`).
    pub next: Option<SlotLabel>,
    /// Every app slot.
    pub slots: Vec<SlotStatus>,
    /// otadata, when the table has it.
    pub otadata: Option<OtadataStatus>,
    /// The last rollback, when the newest otadata entry was rolled back.
    pub last_rollback: Option<LastRollback>,
    /// The web UI: mounted slot, NVS pointer, fallback, both slots; `null`
    /// when the device has no `www_0`/`www_1` partitions.
    pub www: Option<super::www::WwwStatus>,
}

fn text(s: FixedStr<'_>) -> String {
    String::from_utf8_lossy(s.bytes()).into_owned()
}

fn state_name(s: Option<OtaState>) -> Option<String> {
    s.map(|s| match s {
        OtaState::Unknown(raw) => format!("unknown({raw:#x})"),
        s => s.name().to_string(),
    })
}

/// SHA-256 (hex) of the `image_len` bytes of the app image in `slot`.
fn image_sha256<F: ReadNorFlash>(
    flash: &mut F,
    map: &SlotMap,
    slot: SlotId,
    image_len: Option<u32>,
) -> Result<Option<String>, F::Error> {
    match (image_len, map.region(slot)) {
        (Some(len), Some(r)) => {
            let mut buf = vec![0u8; len as usize];
            flash.read(r.offset, &mut buf)?;
            Ok(Some(hex(&Sha256::digest(&buf))))
        }
        _ => Ok(None),
    }
}

fn label_of(map: &SlotMap, slot: SlotId) -> Option<SlotLabel> {
    map.region(slot).map(|r| SlotLabel {
        label: r
            .label
            .as_str()
            .map_or_else(|| slot.to_string(), str::to_string),
        slot: slot.to_string(),
        offset: r.offset,
        size: r.size,
    })
}

pub(super) fn status(
    dev: &mut VirtualDevice,
    running: Option<SlotId>,
) -> Result<Status, DeviceError> {
    let predicted = running.is_none();
    let shown = match running {
        Some(s) => Some(s),
        None => dev.predict_boot()?,
    };
    let www = dev.www_status(running.is_some())?;
    let map = dev.slot_map()?;
    let (flash, cfg) = dev.parts();
    // The diagnostics need a running slot; a device where nothing boots is
    // shown from its first slot, with `running` null.
    let anchor = shown.or_else(|| map.slots().next().map(|(s, _)| s));
    let Some(anchor) = anchor else {
        return Err(DeviceError::Input(
            "the partition table has no app slot".into(),
        ));
    };
    let d = diagnostics(flash, cfg, anchor)?;
    let summary = |app: &Option<AppSummary>| {
        app.as_ref().map(|a| {
            (
                text(a.version()),
                text(a.project_name()),
                text(a.idf_ver()),
                a.secure_version,
            )
        })
    };

    let running_status = match shown {
        Some(slot) => {
            let report = d.slot(slot);
            let app = report.and_then(|r| summary(&r.app));
            let image_len = report.and_then(|r| r.image_len);
            let sha256 = image_sha256(flash, &map, slot, image_len)?;
            let version = app.as_ref().map(|a| a.0.clone()).unwrap_or_default();
            let project_name = app.as_ref().map(|a| a.1.clone()).unwrap_or_default();
            label_of(&map, slot).map(|l| RunningStatus {
                slot: l,
                summary: image_summary(&project_name, &version, sha256.as_deref()),
                version,
                project_name,
                idf_ver: app.as_ref().map(|a| a.2.clone()).unwrap_or_default(),
                secure_version: app.as_ref().map_or(0, |a| a.3),
                state: state_name(report.and_then(|r| r.state)),
                image_len,
                sha256,
            })
        }
        None => None,
    };

    let slots = d
        .slots()
        .filter_map(|r| {
            let app = summary(&r.app);
            Some(SlotStatus {
                slot: label_of(&map, r.slot.slot)?,
                verdict: match r.verdict {
                    SlotVerdictKind::Empty => "empty",
                    SlotVerdictKind::Valid => "valid",
                    SlotVerdictKind::Invalid(_) => "invalid",
                },
                error: match &r.verdict {
                    SlotVerdictKind::Invalid(e) => Some(e.to_string()),
                    _ => None,
                },
                version: app.as_ref().map(|a| a.0.clone()),
                project_name: app.as_ref().map(|a| a.1.clone()),
                secure_version: app.as_ref().map(|a| a.3),
                image_len: r.image_len,
                state: state_name(r.state),
            })
        })
        .collect::<Vec<_>>();

    let otadata = d.otadata.as_ref().map(|o| OtadataStatus {
        offset: o.region.offset,
        active: o.active,
        entries: o
            .entries
            .iter()
            .map(|e| OtadataEntryStatus {
                sector: e.sector,
                offset: e.offset,
                seq: e.entry.seq,
                state: state_name(Some(e.state())).unwrap_or_default(),
                empty: e.empty,
                crc_ok: e.crc_ok,
                valid: e.valid,
                // The slot its sequence number names, valid or not (an
                // ABORTED entry still says which slot was rolled back).
                slot: if e.crc_ok && !e.empty {
                    map.slot_for_seq(e.entry.seq).map(|s| s.to_string())
                } else {
                    None
                },
            })
            .collect(),
    });

    // The newest entry with a good CRC that was rolled back, when another
    // slot runs.
    let last_rollback = d.otadata.as_ref().and_then(|o| {
        let newest = o
            .entries
            .iter()
            .filter(|e| e.crc_ok && !e.empty)
            .max_by_key(|e| e.entry.seq)?;
        let state = newest.state();
        if !matches!(state, OtaState::Aborted | OtaState::Invalid) {
            return None;
        }
        let from = map.slot_for_seq(newest.entry.seq)?;
        if Some(from) == shown {
            return None;
        }
        let version = d.slot(from).and_then(|r| summary(&r.app)).map(|a| a.0);
        let image_len = d.slot(from).and_then(|r| r.image_len);
        let reason = if state == OtaState::Aborted {
            "it was still pending verification at the next reboot (it crashed, hung or lost power before confirming), so the bootloader marked it ABORTED and booted the previous image"
        } else {
            "the firmware marked it INVALID (its self-test failed, or a rollback was requested), and the bootloader booted the previous image"
        };
        Some((from, image_len, LastRollback {
            from: from.to_string(),
            to: shown.map(|s| s.to_string()),
            stale: false,
            version,
            sha256: None,
            state: state_name(Some(state)).unwrap_or_default(),
            reason: reason.into(),
        }))
    });
    // The rolled-back image's SHA-256, so a client can refuse that exact
    // image again (`otter push` does).
    let last_rollback = match last_rollback {
        Some((from, image_len, mut lr)) => {
            lr.sha256 = image_sha256(flash, &map, from, image_len)?;
            Some(lr)
        }
        None => None,
    };

    Ok(Status {
        chip: cfg.chip.name().into(),
        flash_size: flash.capacity() as u32,
        rollback: cfg.rollback,
        anti_rollback: cfg.anti_rollback,
        running: running_status,
        predicted,
        boot: d.boot.and_then(|b| label_of(&map, b.slot)),
        next: d.next.and_then(|n| label_of(&map, n.slot)),
        slots,
        otadata,
        last_rollback,
        www,
    })
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}
