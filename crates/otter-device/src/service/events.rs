//! The last few things the device did, for the status document's
//! `events[]`: a fixed ring of typed events, rendered as text only when the
//! status is written.

use core::fmt;

use otter_ota::SlotId;

use super::{RollbackReason, UpdateKind, UpdateResult};

/// Events kept (the oldest is dropped first).
pub const EVENTS: usize = 16;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The device booted `slot`.
    Boot {
        /// The running slot, if any.
        slot: Option<SlotId>,
    },
    /// An update was recorded.
    Update {
        /// Firmware or web UI.
        kind: UpdateKind,
        /// How it stands.
        result: UpdateResult,
        /// The error code, when it failed.
        code: Option<&'static str>,
    },
    /// The running image was confirmed.
    Confirmed {
        /// The slot.
        slot: SlotId,
    },
    /// The running image was marked invalid.
    RolledBack {
        /// The slot rolled back from.
        from: SlotId,
        /// Why.
        reason: RollbackReason,
    },
    /// A reboot was requested over the API.
    RebootRequested,
}

/// One event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Boot number.
    pub boot: u32,
    /// Milliseconds since that boot.
    pub uptime_ms: u64,
    /// What happened.
    pub kind: EventKind,
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Boot { slot: Some(s) } => write!(f, "booted {s}"),
            Self::Boot { slot: None } => f.write_str("booted, but no app image runs"),
            Self::Update {
                kind,
                result,
                code: Some(c),
            } => write!(f, "{} update {}: {c}", kind.name(), result.name()),
            Self::Update {
                kind,
                result: UpdateResult::InProgress,
                ..
            } => write!(f, "{} update started", kind.name()),
            Self::Update { kind, result, .. } => {
                write!(f, "{} update {}", kind.name(), result.name())
            }
            Self::Confirmed { slot } => write!(f, "{slot} confirmed (VALID)"),
            Self::RolledBack { from, reason } => write!(
                f,
                "{from} marked invalid ({}); rebooting into the previous image",
                match reason {
                    RollbackReason::Requested => "requested over the API",
                    RollbackReason::SelfTestFailed => "its self-test failed",
                }
            ),
            Self::RebootRequested => f.write_str("reboot requested over the API"),
        }
    }
}

/// The ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    ring: [Option<Event>; EVENTS],
    next: usize,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            ring: [None; EVENTS],
            next: 0,
        }
    }
}

impl Events {
    /// Adds an event, dropping the oldest when full.
    pub fn push(&mut self, e: Event) {
        if let Some(slot) = self.ring.get_mut(self.next % EVENTS) {
            *slot = Some(e);
        }
        self.next = (self.next + 1) % EVENTS;
    }

    /// The events, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Event> {
        let (a, b) = self.ring.split_at(self.next.min(EVENTS));
        b.iter().chain(a.iter()).flatten()
    }
}
