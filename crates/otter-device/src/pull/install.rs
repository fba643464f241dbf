//! What a fleet check-in reports of an offered release (docs/fleet.md,
//! "Events"): the events derived from what the device sees, as a pure
//! decision. The caller keeps an [`Install`] across power cuts (with the
//! release's id, version and SHA-256), gives it what it sees at each
//! check-in ([`Seen`]) and after each check ([`CheckOutcome`]), queues the
//! events returned, and keeps the install returned (`None`: finished).
//!
//! | the device sees | event |
//! |---|---|
//! | the pull starts downloading the offered firmware | `update_started` |
//! | it runs the offered image, pending its self-test | `verified` |
//! | it runs the offered image, confirmed | `verified` (if not yet sent), `confirmed` |
//! | it runs another image and recorded a rollback of the offered version, the image marked invalid (self-test failed) | `self_test_failed` |
//! | ... marked aborted (crashed or hung before confirming) | `rolled_back` |
//! | it runs another image and a slot holds the offered version marked invalid or aborted | `rolled_back` |
//! | the pull refused the offered manifest | `refused` |
//! | the download failed (not the server being unreachable) | `download_failed` |
//!
//! An install that has not started yet sees no rollback: a device still
//! running its old image before the download began has nothing to report.

/// An event a check-in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The download of the offered firmware began.
    UpdateStarted,
    /// The offered image booted and runs pending its self-test.
    Verified,
    /// The offered image runs confirmed.
    Confirmed,
    /// The offered image failed its self-test and the device rolled back.
    SelfTestFailed,
    /// The offered image crashed or hung before confirming and the device
    /// rolled back.
    RolledBack,
    /// The pull refused the offered manifest.
    Refused,
    /// The download failed.
    DownloadFailed,
}

impl EventKind {
    /// Every kind, in the order of the table above.
    pub const ALL: [EventKind; 7] = [
        Self::UpdateStarted,
        Self::Verified,
        Self::Confirmed,
        Self::SelfTestFailed,
        Self::RolledBack,
        Self::Refused,
        Self::DownloadFailed,
    ];

    /// The check-in document's name.
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

    /// The kind named `name`, as the check-in document writes it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Why an event happened, for the caller to put in words (the reason it
/// recorded for a rollback, or the check's error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// None is needed.
    None,
    /// The rollback the device recorded (its reason text).
    RecordedRollback,
    /// A slot holds the offered version marked invalid or aborted.
    FailedSlot,
    /// The check's error (code and message).
    CheckError,
}

/// How far the install of an offered release has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Install {
    /// `update_started` was queued.
    pub started: bool,
    /// `verified` was queued.
    pub verified: bool,
}

/// How the last rollback the device recorded left the offered version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolledBackAs {
    /// Marked invalid: its self-test failed.
    Invalid,
    /// Marked aborted: it crashed or hung before confirming.
    Aborted,
}

/// What the device sees of the offered release at a check-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Seen {
    /// The running image is the offered one (SHA-256 equal).
    pub runs_offered: bool,
    /// The running image waits for its self-test (PENDING_VERIFY).
    pub pending_verify: bool,
    /// The last rollback the device recorded was of the offered version.
    pub rollback: Option<RolledBackAs>,
    /// A slot holds the offered version marked invalid or aborted.
    pub failed_slot: bool,
}

/// What a check did with the offered release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// It started (or resumed) downloading the offered firmware.
    DownloadingFirmware,
    /// It refused the offered manifest.
    RefusedOffered,
    /// It failed; `transport` when the server could not be reached or
    /// refused the exchange (nothing the device did).
    Failed {
        /// The server was unreachable or refused.
        transport: bool,
    },
    /// Anything else (up to date, waiting, another release).
    Other,
}

/// The events a decision queues (at most two), in order, with their reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Events {
    list: [Option<(EventKind, Reason)>; 2],
}

impl Events {
    fn push(&mut self, kind: EventKind, reason: Reason) {
        if let Some(slot) = self.list.iter_mut().find(|e| e.is_none()) {
            *slot = Some((kind, reason));
        }
    }

    /// The events, in order.
    pub fn iter(&self) -> impl Iterator<Item = (EventKind, Reason)> + '_ {
        self.list.iter().flatten().copied()
    }

    /// No event.
    pub fn is_empty(&self) -> bool {
        self.list.iter().all(Option::is_none)
    }
}

/// The events to queue and what becomes of the install (`None`: finished,
/// forget the offered release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The events to queue, in order.
    pub events: Events,
    /// The install afterwards.
    pub install: Option<Install>,
}

/// At a check-in: the events `seen` implies for `install`.
pub fn at_checkin(install: Install, seen: &Seen) -> Decision {
    let mut events = Events::default();
    let mut next = Some(install);
    if seen.runs_offered {
        if seen.pending_verify {
            if !install.verified {
                events.push(EventKind::Verified, Reason::None);
                next = Some(Install {
                    verified: true,
                    ..install
                });
            }
        } else {
            if !install.verified {
                events.push(EventKind::Verified, Reason::None);
            }
            events.push(EventKind::Confirmed, Reason::None);
            next = None;
        }
    } else if install.started {
        match (seen.rollback, seen.failed_slot) {
            (Some(RolledBackAs::Invalid), _) => {
                events.push(EventKind::SelfTestFailed, Reason::RecordedRollback);
                next = None;
            }
            (Some(RolledBackAs::Aborted), _) => {
                events.push(EventKind::RolledBack, Reason::RecordedRollback);
                next = None;
            }
            (None, true) => {
                events.push(EventKind::RolledBack, Reason::FailedSlot);
                next = None;
            }
            (None, false) => {}
        }
    }
    Decision {
        events,
        install: next,
    }
}

/// After a check: the event its `outcome` implies for `install`.
pub fn after_check(install: Install, outcome: CheckOutcome) -> Decision {
    let mut events = Events::default();
    let mut next = Some(install);
    match outcome {
        CheckOutcome::DownloadingFirmware if !install.started => {
            events.push(EventKind::UpdateStarted, Reason::None);
            next = Some(Install {
                started: true,
                ..install
            });
        }
        CheckOutcome::RefusedOffered => {
            events.push(EventKind::Refused, Reason::CheckError);
            next = None;
        }
        CheckOutcome::Failed { transport: false } => {
            events.push(EventKind::DownloadFailed, Reason::CheckError);
        }
        CheckOutcome::DownloadingFirmware
        | CheckOutcome::Failed { transport: true }
        | CheckOutcome::Other => {}
    }
    Decision {
        events,
        install: next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: Install = Install {
        started: false,
        verified: false,
    };
    const STARTED: Install = Install {
        started: true,
        verified: false,
    };
    const VERIFIED: Install = Install {
        started: true,
        verified: true,
    };

    type Kinds = [Option<EventKind>; 2];

    fn kinds(d: &Decision) -> Kinds {
        let mut it = d.events.iter().map(|(k, _)| k);
        [it.next(), it.next()]
    }

    fn ks(a: Option<EventKind>, b: Option<EventKind>) -> Kinds {
        [a, b]
    }

    use EventKind as K;

    #[test]
    fn every_check_in_transition() {
        let seen = |runs_offered, pending_verify, rollback, failed_slot| Seen {
            runs_offered,
            pending_verify,
            rollback,
            failed_slot,
        };
        let ab = Some(RolledBackAs::Aborted);
        let inv = Some(RolledBackAs::Invalid);
        // (install, seen, events, install after)
        let table: &[(Install, Seen, Kinds, Option<Install>)] = &[
            // The offered image runs pending its self-test: verified once.
            (
                STARTED,
                seen(true, true, None, false),
                ks(Some(K::Verified), None),
                Some(VERIFIED),
            ),
            (
                VERIFIED,
                seen(true, true, None, false),
                ks(None, None),
                Some(VERIFIED),
            ),
            // Confirmed: verified first if it was never sent, then done.
            (
                VERIFIED,
                seen(true, false, None, false),
                ks(Some(K::Confirmed), None),
                None,
            ),
            (
                STARTED,
                seen(true, false, None, false),
                ks(Some(K::Verified), Some(K::Confirmed)),
                None,
            ),
            // A device whose bootloader confirms at boot, never seen pending.
            (
                NEW,
                seen(true, false, None, false),
                ks(Some(K::Verified), Some(K::Confirmed)),
                None,
            ),
            // Another image runs: the recorded rollback decides the kind.
            (
                STARTED,
                seen(false, false, inv, false),
                ks(Some(K::SelfTestFailed), None),
                None,
            ),
            (
                VERIFIED,
                seen(false, false, ab, false),
                ks(Some(K::RolledBack), None),
                None,
            ),
            (
                STARTED,
                seen(false, false, ab, true),
                ks(Some(K::RolledBack), None),
                None,
            ),
            (
                STARTED,
                seen(false, false, None, true),
                ks(Some(K::RolledBack), None),
                None,
            ),
            // Still downloading, or rebooted into the old image mid-download.
            (
                STARTED,
                seen(false, false, None, false),
                ks(None, None),
                Some(STARTED),
            ),
            // Not started: a rollback of that version is history, not news.
            (
                NEW,
                seen(false, false, inv, true),
                ks(None, None),
                Some(NEW),
            ),
            (
                NEW,
                seen(false, true, None, false),
                ks(None, None),
                Some(NEW),
            ),
        ];
        for (i, (install, seen, want, after)) in table.iter().enumerate() {
            let d = at_checkin(*install, seen);
            assert_eq!(kinds(&d), *want, "row {i}: {install:?} {seen:?}");
            assert_eq!(d.install, *after, "row {i}: {install:?} {seen:?}");
        }
    }

    #[test]
    fn every_after_check_transition() {
        use CheckOutcome as O;
        let table: &[(Install, CheckOutcome, Kinds, Option<Install>)] = &[
            (
                NEW,
                O::DownloadingFirmware,
                ks(Some(K::UpdateStarted), None),
                Some(STARTED),
            ),
            // Resumed after a power cut: started once.
            (
                STARTED,
                O::DownloadingFirmware,
                ks(None, None),
                Some(STARTED),
            ),
            (NEW, O::RefusedOffered, ks(Some(K::Refused), None), None),
            (STARTED, O::RefusedOffered, ks(Some(K::Refused), None), None),
            (
                STARTED,
                O::Failed { transport: false },
                ks(Some(K::DownloadFailed), None),
                Some(STARTED),
            ),
            (
                NEW,
                O::Failed { transport: true },
                ks(None, None),
                Some(NEW),
            ),
            (VERIFIED, O::Other, ks(None, None), Some(VERIFIED)),
        ];
        for (i, (install, outcome, want, after)) in table.iter().enumerate() {
            let d = after_check(*install, *outcome);
            assert_eq!(kinds(&d), *want, "row {i}: {install:?} {outcome:?}");
            assert_eq!(d.install, *after, "row {i}: {install:?} {outcome:?}");
        }
    }

    #[test]
    fn reasons_name_their_source() {
        let d = at_checkin(
            STARTED,
            &Seen {
                rollback: Some(RolledBackAs::Invalid),
                ..Seen::default()
            },
        );
        assert_eq!(
            d.events.iter().next(),
            Some((K::SelfTestFailed, Reason::RecordedRollback))
        );
        let d = at_checkin(
            STARTED,
            &Seen {
                failed_slot: true,
                ..Seen::default()
            },
        );
        assert_eq!(
            d.events.iter().next(),
            Some((K::RolledBack, Reason::FailedSlot))
        );
        let d = after_check(STARTED, CheckOutcome::Failed { transport: false });
        assert_eq!(
            d.events.iter().next(),
            Some((K::DownloadFailed, Reason::CheckError))
        );
    }

    #[test]
    fn names_round_trip_and_match_the_server() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_name(k.name()), Some(k));
        }
        assert_eq!(EventKind::from_name("exploded"), None);
        let names: [&str; 7] = EventKind::ALL.map(EventKind::name);
        assert_eq!(
            names,
            [
                "update_started",
                "verified",
                "confirmed",
                "self_test_failed",
                "rolled_back",
                "refused",
                "download_failed"
            ]
        );
    }

    /// Whatever is seen in whatever order, an install reports each of
    /// `update_started`, `verified` and `confirmed` at most once, nothing
    /// after it finished, and `confirmed` only after `verified`.
    #[test]
    fn no_sequence_reports_an_event_twice_or_after_the_end() {
        use proptest::prelude::*;
        let step = prop_oneof![
            (any::<bool>(), any::<bool>(), 0u8..3, any::<bool>()).prop_map(|(r, p, rb, f)| {
                Err(Seen {
                    runs_offered: r,
                    pending_verify: p,
                    rollback: match rb {
                        0 => None,
                        1 => Some(RolledBackAs::Invalid),
                        _ => Some(RolledBackAs::Aborted),
                    },
                    failed_slot: f,
                })
            }),
            (0u8..5).prop_map(|o| Ok(match o {
                0 => CheckOutcome::DownloadingFirmware,
                1 => CheckOutcome::RefusedOffered,
                2 => CheckOutcome::Failed { transport: false },
                3 => CheckOutcome::Failed { transport: true },
                _ => CheckOutcome::Other,
            })),
        ];
        proptest!(|(steps in proptest::collection::vec(step, 0..24))| {
            let mut install = Some(Install::default());
            let mut log = std::vec::Vec::new();
            for s in steps {
                let Some(i) = install else {
                    break;
                };
                let d = match s {
                    Err(seen) => at_checkin(i, &seen),
                    Ok(outcome) => after_check(i, outcome),
                };
                log.extend(d.events.iter().map(|(k, _)| k));
                install = d.install;
            }
            for once in [K::UpdateStarted, K::Verified, K::Confirmed] {
                prop_assert!(log.iter().filter(|k| **k == once).count() <= 1, "{log:?}");
            }
            if let Some(c) = log.iter().position(|k| *k == K::Confirmed) {
                prop_assert!(log[..c].contains(&K::Verified), "{log:?}");
            }
            let ends = [K::Confirmed, K::SelfTestFailed, K::RolledBack, K::Refused];
            if let Some(e) = log.iter().position(|k| ends.contains(k)) {
                prop_assert_eq!(e, log.len() - 1, "{:?}", log);
                prop_assert!(install.is_none());
            }
        });
    }
}
