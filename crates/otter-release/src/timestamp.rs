//! [`Timestamp`]: a point in time as the manifest writes it (RFC 3339).

#[allow(unused_imports)]
use crate::prelude::*;
use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A point in time, in whole seconds since 1970-01-01T00:00:00Z.
///
/// In JSON it is an RFC 3339 string. Any offset is read (`2025-01-01T01:00:00+01:00`),
/// fractions of a second are dropped, and it is always written in UTC with a
/// `Z` (`2025-01-01T00:00:00Z`). Only times from 1970 to the end of 9999 exist:
/// nothing else can be written as an RFC 3339 date or is a sensible expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

/// 9999-12-31T23:59:59Z, the last second RFC 3339 can write.
const MAX_UNIX: u64 = 253_402_300_799;

/// Why a string is not a [`Timestamp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// It is not an RFC 3339 date and time.
    #[error("{0:?} is not an RFC 3339 time such as 2025-01-31T12:00:00Z")]
    Syntax(String),
    /// It is before 1970 or after 9999.
    #[error("{0:?} is before 1970 or after 9999")]
    OutOfRange(String),
}

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The time `secs` seconds after the Unix epoch; `None` past the year 9999.
    pub const fn from_unix(secs: u64) -> Option<Timestamp> {
        if secs > MAX_UNIX {
            None
        } else {
            Some(Timestamp(secs))
        }
    }

    /// Like [`Timestamp::from_unix`], but a time past 9999 becomes the last
    /// second of 9999: for clocks, which cannot sensibly be that far ahead.
    pub const fn from_unix_saturating(secs: u64) -> Timestamp {
        if secs > MAX_UNIX {
            Timestamp(MAX_UNIX)
        } else {
            Timestamp(secs)
        }
    }

    /// The system clock, to the second.
    #[cfg(feature = "std")]
    pub fn now() -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Timestamp::from_unix_saturating(secs)
    }

    /// Seconds since the Unix epoch.
    pub const fn unix(self) -> u64 {
        self.0
    }

    /// `secs` seconds later; `None` past the year 9999.
    pub fn checked_add(self, secs: u64) -> Option<Timestamp> {
        self.0.checked_add(secs).and_then(Timestamp::from_unix)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // RFC 3339 in UTC with a `Z`; in range by construction (1970..=9999),
        // should it not be, fall back to the number rather than fail.
        let t = i64::try_from(self.0)
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
        match t {
            Some(t) => write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            None => write!(f, "@{}", self.0),
        }
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Timestamp, TimestampError> {
        let t = OffsetDateTime::parse(s, &Rfc3339)
            .map_err(|_| TimestampError::Syntax(s.chars().take(64).collect()))?;
        u64::try_from(t.unix_timestamp())
            .ok()
            .and_then(Timestamp::from_unix)
            .ok_or_else(|| TimestampError::OutOfRange(s.chars().take(64).collect()))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = <alloc::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_utc_with_z_and_reads_any_offset() {
        let t: Timestamp = "2025-01-01T01:00:00+01:00".parse().unwrap();
        assert_eq!(t.unix(), 1_735_689_600);
        assert_eq!(t.to_string(), "2025-01-01T00:00:00Z");
        let frac: Timestamp = "2025-01-01T00:00:00.999Z".parse().unwrap();
        assert_eq!(frac, t);
    }

    #[test]
    fn refuses_what_is_not_rfc3339_or_out_of_range() {
        for bad in ["", "2025-01-01", "yesterday", "1969-12-31T23:59:59Z"] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
        assert!(Timestamp::from_unix(MAX_UNIX + 1).is_none());
        assert_eq!(
            Timestamp::from_unix(MAX_UNIX).unwrap().to_string(),
            "9999-12-31T23:59:59Z"
        );
        assert!(Timestamp::from_unix(MAX_UNIX)
            .unwrap()
            .checked_add(1)
            .is_none());
    }

    #[test]
    fn serde_round_trip() {
        let t = Timestamp::from_unix(1_700_000_000).unwrap();
        let j = serde_json::to_string(&t).unwrap();
        assert_eq!(j, "\"2023-11-14T22:13:20Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&j).unwrap(), t);
    }
}
