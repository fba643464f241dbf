//! What a test firmware does after it boots.
//!
//! The virtual device does not execute firmware code. What an image does
//! once the bootloader has started it comes from a behaviour profile keyed
//! by the image's app-descriptor version, so that rollback can be tested end
//! to end with real images.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// What a firmware does after boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Behavior {
    /// Starts, serves the API, passes its self-test and confirms itself.
    #[default]
    Healthy,
    /// Crashes right after boot, before it can confirm itself or serve
    /// anything; the device reboots.
    CrashOnBoot,
    /// Starts and serves the API, but its self-test fails: it marks itself
    /// invalid and reboots into the previous image
    /// (`esp_ota_mark_app_invalid_rollback_and_reboot`).
    FailSelftest,
    /// Starts and then hangs: no API, no confirm, until the watchdog resets
    /// the device.
    Hang,
}

impl Behavior {
    /// Every behaviour, in the order the help lists them.
    pub const ALL: [Behavior; 4] = [
        Behavior::Healthy,
        Behavior::CrashOnBoot,
        Behavior::FailSelftest,
        Behavior::Hang,
    ];

    /// The name used on the command line and in status.
    pub fn name(self) -> &'static str {
        match self {
            Behavior::Healthy => "healthy",
            Behavior::CrashOnBoot => "crash-on-boot",
            Behavior::FailSelftest => "fail-selftest",
            Behavior::Hang => "hang",
        }
    }
}

impl fmt::Display for Behavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Behavior {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Behavior::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown behaviour {s:?}: expected one of {}",
                    Behavior::ALL.map(Behavior::name).join(", ")
                )
            })
    }
}

/// Behaviours by firmware version; versions not listed are healthy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    by_version: BTreeMap<String, Behavior>,
}

impl Profile {
    /// An empty profile: every firmware is healthy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the behaviour of `version`.
    pub fn set(&mut self, version: &str, behavior: Behavior) {
        self.by_version.insert(version.to_string(), behavior);
    }

    /// Parses `VERSION=BEHAVIOUR` and adds it.
    pub fn add_spec(&mut self, spec: &str) -> Result<(), String> {
        let (version, behavior) = spec.rsplit_once('=').ok_or_else(|| {
            format!("behaviour {spec:?} is not VERSION=BEHAVIOUR (e.g. 3.0.0=crash-on-boot)")
        })?;
        if version.is_empty() {
            return Err(format!("behaviour {spec:?} names no version"));
        }
        self.set(version, behavior.parse()?);
        Ok(())
    }

    /// The behaviour of firmware `version`.
    pub fn of(&self, version: &str) -> Behavior {
        self.by_version.get(version).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_unknown_versions_are_healthy() {
        let mut p = Profile::new();
        p.add_spec("3.0.0=crash-on-boot").unwrap();
        p.add_spec("v=4=hang").unwrap();
        assert_eq!(p.of("3.0.0"), Behavior::CrashOnBoot);
        assert_eq!(p.of("v=4"), Behavior::Hang);
        assert_eq!(p.of("2.0.0"), Behavior::Healthy);
        assert!(p
            .add_spec("3.0.0")
            .unwrap_err()
            .contains("VERSION=BEHAVIOUR"));
        assert!(p.add_spec("=hang").unwrap_err().contains("no version"));
        assert!(p
            .add_spec("1=explode")
            .unwrap_err()
            .contains("fail-selftest"));
    }
}
