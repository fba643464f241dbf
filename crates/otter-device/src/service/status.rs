//! The status document (`GET /api/ota/status`), written into the response
//! buffer.

use embedded_storage::nor_flash::NorFlash;
use otter_format::otadata::OtaState;
use otter_ota::diagnostics::{diagnostics, AppSummary, SlotVerdictKind};
use otter_ota::{SlotId, SlotMap};

use super::conn::write_json;
use super::{Device, Platform, RollbackReason, SelfTest, StatusField, UpdateResult};
use crate::error::DeviceError;
use crate::json::JsonOut;
use crate::www::hash_region;

fn slot_obj(j: &mut JsonOut<'_>, map: &SlotMap, slot: SlotId) {
    let Some(r) = map.region(slot) else {
        j.raw("null");
        return;
    };
    j.raw("{").key("label");
    match r.label.as_str() {
        Some(l) => j.string(l),
        None => j.display(&slot),
    };
    j.raw(",").key("slot").display(&slot);
    j.raw(",").key("offset").num(u64::from(r.offset));
    j.raw(",").key("size").num(u64::from(r.size)).raw("}");
}

fn state_str(s: Option<OtaState>) -> Option<&'static str> {
    s.map(|s| match s {
        OtaState::Unknown(_) => "unknown",
        s => s.name(),
    })
}

fn desc_text(
    j: &mut JsonOut<'_>,
    key: &str,
    app: Option<&AppSummary>,
    f: fn(&AppSummary) -> otter_format::image::FixedStr<'_>,
) {
    j.key(key);
    match app {
        Some(a) => {
            let t = super::Text32::of(f(a));
            j.string(t.as_str())
        }
        None => j.raw("null"),
    };
}

/// Writes the whole response (head and status document) into `tx`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_status<F: NorFlash, P: Platform<F>>(
    dev: &mut Device,
    flash: &mut F,
    platform: &mut P,
    running: Option<SlotId>,
    now: u64,
    tx: &mut [u8],
    close: bool,
    head_only: bool,
) -> Result<usize, DeviceError> {
    let cfg = dev.opts.cfg;
    let map = SlotMap::read(flash, cfg.table_offset).map_err(|e| DeviceError::from_ota(&e))?;
    let anchor = running
        .or_else(|| map.slots().next().map(|(s, _)| s))
        .ok_or(DeviceError::NoOtaSlot)?;
    let d = diagnostics(flash, &cfg, anchor).map_err(|e| DeviceError::from_ota(&e))?;
    // The running image's SHA-256, once per boot (read in chunks).
    let running_sha = match running.and_then(|s| Some((s, d.slot(s)?.image_len?))) {
        Some((slot, len)) => match dev.running_sha {
            Some((s, l, h)) if s == slot && l == len => Some(h),
            _ => {
                let region = *map.region(slot).ok_or(DeviceError::NotRunning)?;
                let h = hash_region(flash, &region, len)?;
                dev.running_sha = Some((slot, len, h));
                Some(h)
            }
        },
        None => None,
    };
    let capacity = flash.capacity() as u64;
    let written = write_json(tx, 200, close, &[], head_only, |j| {
        j.raw("{").key("chip").string(cfg.chip.name());
        j.raw(",").key("flash_size").num(capacity);
        j.raw(",").key("rollback").bool(cfg.rollback);
        let mode = dev.opts.rollback_mode.unwrap_or(if cfg.rollback {
            super::RollbackMode::Bootloader
        } else {
            super::RollbackMode::Off
        });
        j.raw(",").key("rollback_mode").string(mode.name());
        j.raw(",")
            .key("anti_rollback")
            .opt_num(cfg.anti_rollback.map(u64::from));
        j.raw(",").key("running");
        match running.and_then(|s| Some((s, d.slot(s)?))) {
            Some((slot, rep)) => {
                let app = rep.app.as_ref();
                let region = map.region(slot);
                j.raw("{").key("label");
                match region.and_then(|r| r.label.as_str()) {
                    Some(l) => j.string(l),
                    None => j.display(&slot),
                };
                j.raw(",").key("slot").display(&slot);
                j.raw(",")
                    .key("offset")
                    .opt_num(region.map(|r| u64::from(r.offset)));
                j.raw(",")
                    .key("size")
                    .opt_num(region.map(|r| u64::from(r.size)));
                j.raw(",");
                desc_text(j, "version", app, AppSummary::version);
                j.raw(",");
                desc_text(j, "project_name", app, AppSummary::project_name);
                j.raw(",");
                desc_text(j, "idf_ver", app, AppSummary::idf_ver);
                j.raw(",")
                    .key("secure_version")
                    .num(u64::from(app.map_or(0, |a| a.secure_version)));
                j.raw(",").key("state").opt_string(state_str(rep.state));
                j.raw(",")
                    .key("image_len")
                    .opt_num(rep.image_len.map(u64::from));
                j.raw(",").key("sha256");
                match &running_sha {
                    Some(h) => j.hex(h),
                    None => j.raw("null"),
                };
                let text = |f: fn(&AppSummary) -> otter_format::image::FixedStr<'_>| {
                    app.map(|a| super::Text32::of(f(a))).unwrap_or_default()
                };
                let (project, version) =
                    (text(AppSummary::project_name), text(AppSummary::version));
                j.raw(",").key("summary").display(&Summary {
                    project: project.as_str(),
                    version: version.as_str(),
                    sha: running_sha.as_ref(),
                });
                j.raw("}");
            }
            None => {
                j.raw("null");
            }
        }
        j.raw(",\"predicted\":false,").key("boot");
        match d.boot {
            Some(b) => slot_obj(j, &map, b.slot),
            None => {
                j.raw("null");
            }
        }
        j.raw(",").key("next");
        match d.next {
            Some(n) => slot_obj(j, &map, n.slot),
            None => {
                j.raw("null");
            }
        }
        j.raw(",").key("slots").raw("[");
        for (i, r) in d.slots().enumerate() {
            if i > 0 {
                j.raw(",");
            }
            let Some(reg) = map.region(r.slot.slot) else {
                continue;
            };
            let app = r.app.as_ref();
            j.raw("{").key("label");
            match reg.label.as_str() {
                Some(l) => j.string(l),
                None => j.display(&r.slot.slot),
            };
            j.raw(",").key("slot").display(&r.slot.slot);
            j.raw(",").key("offset").num(u64::from(reg.offset));
            j.raw(",").key("size").num(u64::from(reg.size));
            j.raw(",").key("verdict").string(match r.verdict {
                SlotVerdictKind::Empty => "empty",
                SlotVerdictKind::Valid => "valid",
                SlotVerdictKind::Invalid(_) => "invalid",
            });
            j.raw(",").key("error");
            match &r.verdict {
                SlotVerdictKind::Invalid(e) => j.display(e),
                _ => j.raw("null"),
            };
            j.raw(",");
            desc_text(j, "version", app, AppSummary::version);
            j.raw(",");
            desc_text(j, "project_name", app, AppSummary::project_name);
            j.raw(",")
                .key("secure_version")
                .opt_num(app.map(|a| u64::from(a.secure_version)));
            j.raw(",")
                .key("image_len")
                .opt_num(r.image_len.map(u64::from));
            j.raw(",")
                .key("state")
                .opt_string(state_str(r.state))
                .raw("}");
        }
        j.raw("],").key("otadata");
        match &d.otadata {
            Some(o) => {
                j.raw("{").key("offset").num(u64::from(o.region.offset));
                j.raw(",").key("active").opt_num(o.active.map(u64::from));
                j.raw(",").key("entries").raw("[");
                for (i, e) in o.entries.iter().enumerate() {
                    if i > 0 {
                        j.raw(",");
                    }
                    j.raw("{").key("sector").num(u64::from(e.sector));
                    j.raw(",").key("offset").num(u64::from(e.offset));
                    j.raw(",").key("seq").num(u64::from(e.entry.seq));
                    j.raw(",")
                        .key("state")
                        .opt_string(state_str(Some(e.state())));
                    j.raw(",").key("empty").bool(e.empty);
                    j.raw(",").key("crc_ok").bool(e.crc_ok);
                    j.raw(",").key("valid").bool(e.valid);
                    j.raw(",").key("slot");
                    match (e.crc_ok && !e.empty)
                        .then(|| map.slot_for_seq(e.entry.seq))
                        .flatten()
                    {
                        Some(s) => j.display(&s),
                        None => j.raw("null"),
                    };
                    j.raw("}");
                }
                j.raw("]}");
            }
            None => {
                j.raw("null");
            }
        }
        j.raw(",").key("last_update");
        match &dev.last_update {
            Some(u) => {
                j.raw("{").key("result").string(u.result.name());
                j.raw(",").key("error");
                match &u.error {
                    Some(e) => {
                        j.raw("{")
                            .key("error")
                            .string(e.code())
                            .raw(",")
                            .key("message")
                            .display(e)
                            .raw("}");
                    }
                    None => {
                        j.raw("null");
                    }
                }
                j.raw(",").key("kind").string(u.kind.name());
                j.raw(",").key("protocol").string(u.protocol.name());
                j.raw(",").key("slot");
                match (u.slot, u.www_slot) {
                    (Some(s), _) => j.display(&s),
                    (None, Some(0)) => j.string("www_0"),
                    (None, Some(_)) => j.string("www_1"),
                    (None, None) => j.raw("null"),
                };
                j.raw(",")
                    .key("version")
                    .opt_string(u.version.as_ref().map(super::Text32::as_str));
                // While the update runs its record holds the start; the
                // live count is the session's.
                let received = match (u.result, dev.upload_progress()) {
                    (UpdateResult::InProgress, Some((live, _))) => live,
                    _ => u.received,
                };
                j.raw(",").key("received").num(received);
                j.raw(",").key("total").opt_num(u.total);
                j.raw(",")
                    .key("encoding")
                    .opt_string(u.encoding.and_then(crate::decode::Encoding::status_name));
                j.raw(",").key("boot").num(u64::from(u.boot));
                j.raw(",").key("at").num(u.at).raw("}");
            }
            None => {
                j.raw("null");
            }
        }
        j.raw(",").key("www");
        let supplied = platform.status_field(flash, StatusField::Www, j);
        match &dev.www {
            _ if supplied => {}
            Some(w) => {
                let name = |i: u8| if i == 0 { "www_0" } else { "www_1" };
                j.raw("{").key("active").opt_string(w.active.map(name));
                j.raw(",").key("selected").string(name(w.selected));
                j.raw(",")
                    .key("nvs_value")
                    .opt_num(w.nvs_value.map(u64::from));
                j.raw(",").key("nvs_note").opt_string(if w.nvs_unreadable {
                    Some("NVS is unreadable: www_0 is used")
                } else if w.nvs_value.is_some_and(|v| v > 1) {
                    Some("the pointer is neither 0 nor 1: www_0 is used")
                } else {
                    None
                });
                j.raw(",").key("fallback");
                if let Some(p) = w.fallback {
                    j.raw("{")
                        .key("from")
                        .string(name(w.selected))
                        .raw(",")
                        .key("to");
                    j.opt_string(w.active.map(name)).raw(",").key("reason");
                    j.display(&p).raw("}");
                } else {
                    j.raw("null");
                }
                j.raw(",").key("slots").raw("[");
                for (i, r) in w.slots.iter().enumerate() {
                    if i > 0 {
                        j.raw(",");
                    }
                    j.raw("{").key("name").string(name(i as u8));
                    j.raw(",").key("offset").num(u64::from(r.offset));
                    j.raw(",").key("size").num(u64::from(r.size));
                    j.raw(",")
                        .key("mounts")
                        .bool(w.active == Some(i as u8))
                        .raw("}");
                }
                j.raw("]}");
            }
            None => {
                j.raw("null");
            }
        }
        j.raw(",\"boot_loop\":");
        if !platform.status_field(flash, StatusField::BootLoop, j) {
            j.raw("null");
        }
        j.raw(",\"pull\":");
        if !platform.status_field(flash, StatusField::Pull, j) {
            j.raw("null");
        }
        j.raw(",").key("last_rollback");
        let supplied = platform.status_field(flash, StatusField::LastRollback, j);
        match &dev.last_rollback {
            _ if supplied => {}
            Some(r) => {
                j.raw("{").key("from").display(&r.from);
                j.raw(",")
                    .key("version")
                    .opt_string(r.version.as_ref().map(super::Text32::as_str));
                j.raw(",\"state\":\"invalid\",")
                    .key("reason")
                    .string(match r.reason {
                        RollbackReason::Requested => {
                            "a rollback was requested over the API; the image was marked INVALID"
                        }
                        RollbackReason::SelfTestFailed => {
                            "its self-test failed; the image was marked INVALID"
                        }
                    });
                j.raw("}");
            }
            None => {
                j.raw("null");
            }
        }
        j.raw(",")
            .key("selftest")
            .raw("{")
            .key("state")
            .string(dev.selftest.name());
        j.raw(",").key("window_ms").num(dev.opts.selftest_window_ms);
        j.raw(",").key("detail").raw("null}");
        if let SelfTest::Running { deadline } = dev.selftest {
            let _ = deadline;
        }
        j.raw(",").key("boot_count").num(u64::from(dev.boot_count));
        j.raw(",")
            .key("uptime_ms")
            .num(now.saturating_sub(dev.boot_at));
        j.raw(",").key("behavior").string(dev.opts.behavior);
        j.raw(",")
            .key("auth_required")
            .bool(dev.opts.token_sha256.is_some());
        j.raw(",")
            .key("update_in_progress")
            .bool(dev.update_in_progress());
        j.raw(",").key("events").raw("[");
        for (i, e) in dev.events.iter().enumerate() {
            if i > 0 {
                j.raw(",");
            }
            j.raw("{").key("boot").num(u64::from(e.boot));
            j.raw(",").key("uptime_ms").num(e.uptime_ms);
            j.raw(",").key("message").display(&e.kind).raw("}");
        }
        j.raw("],\"api\":{\"update\":\"/update\",\"status\":\"/api/ota/status\",\"confirm\":\"/api/ota/confirm\",\"rollback\":\"/api/ota/rollback\",\"reboot\":\"/api/ota/reboot\",\"frontend\":\"/api/ota/frontend\",\"check\":\"/api/ota/check\",\"sha256_header\":\"x-otter-sha256\"}}");
    });
    written.ok_or(DeviceError::ResponseTooLarge)
}

/// `running.summary`: "PROJECT VERSION (sha256 PREFIX)", with placeholders
/// for empty descriptor strings.
struct Summary<'a> {
    project: &'a str,
    version: &'a str,
    sha: Option<&'a [u8; 32]>,
}

impl core::fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        fn or<'x>(s: &'x str, none: &'x str) -> &'x str {
            if s.is_empty() {
                none
            } else {
                s
            }
        }
        write!(
            f,
            "{} {}",
            or(self.project, "(no project name)"),
            or(self.version, "(no version)")
        )?;
        if let Some(h) = self.sha {
            f.write_str(" (sha256 ")?;
            for b in h.iter().take(6) {
                write!(f, "{b:02x}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}
