//! What `otter push` checks against the device's status document (`GET
//! /api/ota/status`) before it uploads a byte: what the device would refuse
//! anyway ([`precheck`]), what the pull client refuses and push refuses
//! unless forced ([`policy`]: a downgrade, the same version, another
//! project, the image that just rolled back), and what deserves a warning
//! ([`warnings`]: rollback off).

use std::cmp::Ordering;

use otter_format::image::ImageInfo;
use otter_release::compare_versions;
use serde_json::Value;

use super::client::Answer;
use crate::output::human_size;

/// Why push refuses an image it could send (overridden by `--force`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable code: `downgrade`, `same_version`, `other_project`, `rolled_back`.
    pub code: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// Refuses, unless forced, what the device's own pull client refuses: the
/// image that just rolled back (by SHA-256 when the status names it, else
/// by version), another project, an older version, the running version.
pub fn policy(project: &str, version: &str, sha256: &str, status: &Value) -> Result<(), Refusal> {
    let refuse = |code, message: String| {
        Err(Refusal {
            code,
            message: format!("{message}; pass --force to push it anyway"),
        })
    };
    if let Some(rb) = status.get("last_rollback").filter(|r| !r.is_null()) {
        let same_sha = text(rb, "/sha256") == Some(sha256);
        let same_version = rb.get("sha256").is_none() && text(rb, "/version") == Some(version);
        if same_sha || same_version {
            return refuse(
                "rolled_back",
                format!(
                    "this image ({version}) is the one the device just rolled back from {}: {}",
                    text(rb, "/from").unwrap_or("?"),
                    text(rb, "/reason").unwrap_or("no reason given")
                ),
            );
        }
    }
    let running_project = text(status, "/running/project_name").unwrap_or("");
    if !running_project.is_empty() && !project.is_empty() && running_project != project {
        return refuse(
            "other_project",
            format!(
                "the image is project {project:?} but the device runs {running_project:?}: this is firmware for another product"
            ),
        );
    }
    let Some(running) = text(status, "/running/version").filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    match compare_versions(version, running) {
        Ordering::Less => refuse(
            "downgrade",
            format!(
                "the image's version {version} is older than the running {running}: a downgrade"
            ),
        ),
        Ordering::Equal => refuse(
            "same_version",
            format!("the device already runs version {running}"),
        ),
        Ordering::Greater => Ok(()),
    }
}

/// Warnings to print before uploading: rollback off means a crashing or
/// hanging image stays.
pub fn warnings(version: &str, status: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if status.get("rollback").and_then(Value::as_bool) == Some(false) {
        out.push(format!(
            "rollback is off on this device (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE is not set): if {version} crashes or hangs at boot, the device cannot go back to {} on its own and needs a serial reflash",
            text(status, "/running/version").unwrap_or("the running image")
        ));
    }
    out
}

/// The device's own report of a boot loop (503 `boot_loop`, which a device
/// with rollback off answers while the image it runs crashes at every
/// boot), as a sentence: what loops, how often, and what to do.
pub fn boot_loop(answer: &Answer) -> Option<String> {
    if answer.status != 503 || answer.body.get("error").and_then(Value::as_str) != Some("boot_loop")
    {
        return None;
    }
    let l = answer.body.get("boot_loop");
    let field = |k: &str| l.and_then(|l| l.get(k)).and_then(Value::as_u64);
    let count = match (field("crashes"), field("limit")) {
        (Some(n), Some(limit)) => format!(" ({n} crashes so far; the device stops after {limit})"),
        _ => String::new(),
    };
    Some(format!(
        "the device reports a boot loop{count}: {}; nothing rolls it back, so flash a working image over serial",
        answer.message()
    ))
}

/// Why the device did not come back after the upload, from the last status
/// seen since the reboot (if any) and the one before the upload.
pub fn no_return_reason(version: &str, before: &Value, after: Option<&Value>) -> Option<String> {
    let crash_note = after.and_then(|st| {
        st.get("events")?
            .as_array()?
            .iter()
            .rev()
            .filter_map(|e| e.get("message").and_then(Value::as_str))
            .find(|m| m.contains("boot loop") || m.contains("crashed") || m.contains("watchdog"))
            .map(str::to_string)
    });
    if let Some(n) = crash_note {
        return Some(format!("the device reports: {n}"));
    }
    if before.get("rollback").and_then(Value::as_bool) == Some(false) {
        return Some(format!(
            "the device has not answered since it rebooted into {version}; rollback is off, so nothing undoes an image that crashes or hangs at boot: {version} is most likely in a boot loop; reflash the device over serial"
        ));
    }
    None
}

/// Checks `info` (an image of `len` bytes) against the device's status;
/// `Err` says why the device would refuse it.
pub fn precheck(info: &ImageInfo, len: u64, status: &Value) -> Result<(), String> {
    let chip = status.get("chip").and_then(Value::as_str).unwrap_or("");
    if info.chip.name() != chip {
        let device = otter_format::chip::Chip::from_name(chip)
            .map_or_else(|| chip.to_string(), |c| c.to_string());
        return Err(format!(
            "the image is built for {}, but the device is {device}; build the firmware for {device}",
            info.chip
        ));
    }
    let Some(next) = status.get("next").filter(|n| !n.is_null()) else {
        return Err("the device has no OTA slot to update (its partition table has no ota_0/ota_1 or no otadata); reflash it over serial with an OTA partition table".into());
    };
    let size = next.get("size").and_then(Value::as_u64).unwrap_or(0);
    let label = next.get("label").and_then(Value::as_str).unwrap_or("?");
    if len > size {
        return Err(format!(
            "the image is {} ({len} bytes) but the device's next slot {label} holds {} ({size} bytes); build a smaller image or repartition",
            human_size(len),
            human_size(size)
        ));
    }
    if let Some(counter) = status.get("anti_rollback").and_then(Value::as_u64) {
        let sv = info
            .app_desc
            .as_ref()
            .map_or(0, |d| u64::from(d.secure_version()));
        if sv < counter {
            return Err(format!(
                "the image's secure_version is {sv} but the device's anti-rollback counter is {counter}: the device would refuse to boot it; build with CONFIG_BOOTLOADER_APP_SECURE_VERSION >= {counter}"
            ));
        }
    }
    if status.pointer("/running/state").and_then(Value::as_str) == Some("pending_verify") {
        return Err("the device's running image is still pending verification (its self-test has not finished); wait for it to confirm or roll back, then push again".into());
    }
    if status.get("update_in_progress").and_then(Value::as_bool) == Some(true) {
        return Err("another update is in progress on the device; wait for it to finish".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn st(project: &str, version: &str, last_rollback: Value) -> Value {
        json!({ "rollback": true, "running": { "project_name": project, "version": version }, "last_rollback": last_rollback })
    }

    #[test]
    fn refusals_in_pull_order() {
        let ok = st("app", "1.0.0", Value::Null);
        assert_eq!(policy("app", "1.1.0", "aa", &ok), Ok(()));
        let code = |r: Result<(), Refusal>| r.err().map(|r| r.code);
        assert_eq!(code(policy("app", "0.9.0", "aa", &ok)), Some("downgrade"));
        assert_eq!(code(policy("app", "v1.0", "aa", &ok)), Some("same_version"));
        assert_eq!(
            code(policy("other", "2.0.0", "aa", &ok)),
            Some("other_project")
        );
        let rb = st(
            "app",
            "1.0.0",
            json!({ "from": "ota_0", "version": "2.0.0", "reason": "crashed" }),
        );
        assert_eq!(code(policy("app", "2.0.0", "aa", &rb)), Some("rolled_back"));
        assert_eq!(policy("app", "2.0.1", "aa", &rb), Ok(()));
        let rb_sha = st(
            "app",
            "1.0.0",
            json!({ "version": "2.0.0", "sha256": "bb", "reason": "x" }),
        );
        assert_eq!(
            code(policy("app", "2.0.0", "bb", &rb_sha)),
            Some("rolled_back")
        );
        // The same version rebuilt (another SHA-256) is not the image that rolled back.
        assert_eq!(policy("app", "2.0.0", "cc", &rb_sha), Ok(()));
    }

    #[test]
    fn rollback_off_warns() {
        let mut s = st("app", "1.0.0", Value::Null);
        assert!(warnings("2.0.0", &s).is_empty());
        s["rollback"] = json!(false);
        assert!(warnings("2.0.0", &s)[0].contains("rollback is off"));
        assert!(no_return_reason("2.0.0", &s, None)
            .unwrap()
            .contains("boot loop"));
    }
}
