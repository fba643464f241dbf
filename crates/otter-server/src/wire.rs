//! The device API's request bodies: strict parsing and bounds. Pure: bytes in,
//! a validated report or a typed error naming the field out.

use serde::Deserialize;

use crate::store::{DeviceReport, EventKind, NewEvent};

/// The largest check-in body accepted, in bytes.
pub const MAX_CHECKIN_LEN: usize = 64 * 1024;
/// The most events one check-in may carry.
pub const MAX_EVENTS: usize = 64;
/// The longest id (device or event) accepted.
pub const MAX_ID_LEN: usize = 64;
/// The longest name (product, chip, version, slot, state) accepted.
pub const MAX_NAME_LEN: usize = 128;
/// The longest event reason accepted.
pub const MAX_REASON_LEN: usize = 1024;
/// The most slots a boot report may list.
pub const MAX_SLOTS: usize = 16;
/// The most tags a device may have.
pub const MAX_TAGS: usize = 16;

/// A check-in or enrollment body that is refused. The device's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Not JSON of the expected shape (unknown field, wrong type, missing field).
    #[error("the body is not a valid {what}: {detail}")]
    Malformed {
        /// What was expected.
        what: &'static str,
        /// serde's description, with line and column.
        detail: String,
    },
    /// Too long.
    #[error("the body is {len} bytes; at most {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field's value is refused.
    #[error("{field}: {problem}")]
    Field {
        /// Which field (`events[3].id`).
        field: String,
        /// What is wrong.
        problem: &'static str,
    },
}

impl WireError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed_body",
            Self::TooLarge { .. } => "body_too_large",
            Self::Field { .. } => "invalid_field",
        }
    }
}

/// `POST /device/v1/checkin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckInBody {
    device_id: String,
    product: String,
    chip: String,
    version: String,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    secure_counter: Option<u32>,
    boot: BootBody,
    #[serde(default)]
    events: Vec<EventBody>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct BootBody {
    #[serde(default)]
    running_slot: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    slots: Vec<SlotBody>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct SlotBody {
    name: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody {
    id: String,
    kind: EventKind,
    #[serde(default)]
    release: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    at: Option<u64>,
}

/// `POST /device/v1/enroll`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollBody {
    /// The id the device wants.
    pub device_id: String,
    /// The fleet's enrollment key.
    pub enrollment_key: String,
    /// Tags for targeting rollouts.
    #[serde(default)]
    pub tags: Vec<String>,
}

fn field(field: impl Into<String>, problem: &'static str) -> WireError {
    WireError::Field {
        field: field.into(),
        problem,
    }
}

/// An id: 1..=64 bytes of `[A-Za-z0-9._:-]`.
pub fn check_id(name: &str, v: &str) -> Result<(), WireError> {
    if v.is_empty() || v.len() > MAX_ID_LEN {
        return Err(field(name, "must be 1 to 64 characters"));
    }
    if !v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    {
        return Err(field(
            name,
            "may contain only A-Z, a-z, 0-9, '.', '_', ':' and '-'",
        ));
    }
    Ok(())
}

fn check_name(name: &str, v: &str, max: usize) -> Result<(), WireError> {
    if v.is_empty() || v.len() > max {
        return Err(field(name, "must be non-empty and within its length limit"));
    }
    if v.chars().any(char::is_control) {
        return Err(field(name, "must not contain control characters"));
    }
    Ok(())
}

fn check_opt(name: &str, v: &Option<String>, max: usize) -> Result<(), WireError> {
    match v {
        Some(s) => check_name(name, s, max),
        None => Ok(()),
    }
}

fn malformed(what: &'static str, e: serde_json::Error) -> WireError {
    WireError::Malformed {
        what,
        detail: e.to_string(),
    }
}

/// Parses and checks a check-in body: the claimed device id and the report.
pub fn parse_check_in(bytes: &[u8]) -> Result<(String, DeviceReport), WireError> {
    if bytes.len() > MAX_CHECKIN_LEN {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max: MAX_CHECKIN_LEN,
        });
    }
    let b: CheckInBody = serde_json::from_slice(bytes).map_err(|e| malformed("check-in", e))?;
    check_id("device_id", &b.device_id)?;
    check_name("product", &b.product, MAX_NAME_LEN)?;
    check_name("chip", &b.chip, MAX_NAME_LEN)?;
    check_name("version", &b.version, MAX_NAME_LEN)?;
    if let Some(s) = &b.sha256 {
        if s.len() != 64 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(field("sha256", "must be 64 lowercase hex digits"));
        }
    }
    check_opt("boot.running_slot", &b.boot.running_slot, MAX_NAME_LEN)?;
    check_opt("boot.state", &b.boot.state, MAX_NAME_LEN)?;
    if b.boot.slots.len() > MAX_SLOTS {
        return Err(field("boot.slots", "lists more than 16 slots"));
    }
    for (n, s) in b.boot.slots.iter().enumerate() {
        check_name(&format!("boot.slots[{n}].name"), &s.name, MAX_NAME_LEN)?;
        check_opt(&format!("boot.slots[{n}].state"), &s.state, MAX_NAME_LEN)?;
        check_opt(
            &format!("boot.slots[{n}].version"),
            &s.version,
            MAX_NAME_LEN,
        )?;
    }
    if b.events.len() > MAX_EVENTS {
        return Err(field(
            "events",
            "carries more than 64 events; send the rest next time",
        ));
    }
    let mut events = Vec::with_capacity(b.events.len());
    for (n, e) in b.events.into_iter().enumerate() {
        check_id(&format!("events[{n}].id"), &e.id)?;
        if let Some(r) = &e.release {
            check_id(&format!("events[{n}].release"), r)?;
        }
        check_opt(&format!("events[{n}].version"), &e.version, MAX_NAME_LEN)?;
        check_opt(&format!("events[{n}].reason"), &e.reason, MAX_REASON_LEN)?;
        if e.at.is_some_and(|a| a > i64::MAX as u64) {
            return Err(field(format!("events[{n}].at"), "is out of range"));
        }
        events.push(NewEvent {
            id: e.id,
            kind: e.kind,
            release: e.release,
            version: e.version,
            reason: e.reason,
            at: e.at,
        });
    }
    let pending_verify = b.boot.state.as_deref() == Some("pending_verify");
    let boot = serde_json::to_value(&b.boot).unwrap_or(serde_json::Value::Null);
    Ok((
        b.device_id,
        DeviceReport {
            product: b.product,
            chip: b.chip,
            version: b.version,
            sha256: b.sha256,
            secure_counter: b.secure_counter,
            pending_verify,
            boot,
            events,
        },
    ))
}

/// Parses and checks an enrollment body.
pub fn parse_enroll(bytes: &[u8]) -> Result<EnrollBody, WireError> {
    if bytes.len() > MAX_CHECKIN_LEN {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max: MAX_CHECKIN_LEN,
        });
    }
    let b: EnrollBody = serde_json::from_slice(bytes).map_err(|e| malformed("enrollment", e))?;
    check_id("device_id", &b.device_id)?;
    if b.tags.len() > MAX_TAGS {
        return Err(field("tags", "more than 16 tags"));
    }
    for (n, t) in b.tags.iter().enumerate() {
        check_id(&format!("tags[{n}]"), t)?;
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body(events: &str) -> String {
        format!(
            r#"{{"device_id":"dev-1","product":"p","chip":"esp32s3","version":"1.0.0",
               "boot":{{"running_slot":"ota_0","state":"valid","slots":[{{"name":"ota_0","state":"valid","version":"1.0.0"}}]}},
               "events":[{events}]}}"#
        )
    }

    #[test]
    fn a_good_check_in_parses() {
        let (id, r) = parse_check_in(
            body(r#"{"id":"1-1","kind":"rolled_back","release":"abc","version":"1.1.0","reason":"crash","at":5}"#)
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(id, "dev-1");
        assert_eq!(r.events.len(), 1);
        assert_eq!(r.events[0].kind, EventKind::RolledBack);
        assert!(!r.pending_verify);
    }

    #[test]
    fn refusals_name_the_field() {
        let e =
            parse_check_in(body(r#"{"id":"bad id","kind":"confirmed"}"#).as_bytes()).unwrap_err();
        assert_eq!(
            e,
            WireError::Field {
                field: "events[0].id".into(),
                problem: "may contain only A-Z, a-z, 0-9, '.', '_', ':' and '-'"
            }
        );
        let e = parse_check_in(body(r#"{"id":"x","kind":"exploded"}"#).as_bytes()).unwrap_err();
        assert_eq!(e.code(), "malformed_body");
        let e = parse_check_in(br#"{"device_id":"d","extra":1}"#).unwrap_err();
        assert_eq!(e.code(), "malformed_body");
        let big = vec![b' '; MAX_CHECKIN_LEN + 1];
        assert_eq!(
            parse_check_in(&big).unwrap_err(),
            WireError::TooLarge {
                len: MAX_CHECKIN_LEN + 1,
                max: MAX_CHECKIN_LEN
            }
        );
        let many = vec![r#"{"id":"x","kind":"confirmed"}"#; MAX_EVENTS + 1].join(",");
        assert_eq!(
            parse_check_in(body(&many).as_bytes()).unwrap_err().code(),
            "invalid_field"
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_check_in(&bytes);
            let _ = parse_enroll(&bytes);
        }

        #[test]
        fn never_panics_on_near_valid_json(s in "[ -~]{0,64}") {
            let _ = parse_check_in(body(&format!(r#"{{"id":"{s}","kind":"confirmed","reason":"{s}"}}"#)).as_bytes());
        }
    }
}
