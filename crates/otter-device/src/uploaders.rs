//! Which uploaders besides HTTP a device serves on its OTA port, and with
//! which passwords: ESPHome's native OTA on TCP (told from HTTP by its
//! first byte, [`crate::esphome::sniff`]) and ArduinoOTA's espota on UDP.
//!
//! [`Uploaders::from_settings`] is the one place that turns a device's
//! configuration (passwords in clear, as a user types them) into the
//! options of the two machines, and applies the rule that keeps a device's
//! HTTP token meaningful: a challenge protocol without its own password is
//! not served on a device whose HTTP API needs a token (the token is never
//! accepted by a challenge protocol, and an open protocol would bypass it).
//! The virtual device and the firmware both call it.

use crate::challenge::Secret;
use crate::esphome::{EsphomeOptions, Version};
use crate::espota::{EspotaAuth, EspotaOptions};

/// The espota challenge a password is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EspotaScheme {
    /// arduino-esp32 3.3.1 and later: SHA-256 + PBKDF2 (64-hex nonce).
    #[default]
    Sha256,
    /// esp8266 and arduino-esp32 before 3.3.1: MD5 (32-hex nonce).
    Md5,
}

/// The uploader settings as configured, passwords in clear (they are
/// hashed or copied into the options and can be dropped afterwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploaderSettings<'a> {
    /// Answer ESPHome's OTA protocol.
    pub esphome: bool,
    /// Its password (`ota: password:` in the ESPHome YAML).
    pub esphome_password: Option<&'a [u8]>,
    /// The protocol version announced (1 or 2).
    pub esphome_version: u8,
    /// Answer espota invitations on UDP.
    pub espota: bool,
    /// Its password (`ArduinoOTA.setPassword`, PlatformIO's `--auth`).
    pub espota_password: Option<&'a [u8]>,
    /// Which challenge the espota password is kept for.
    pub espota_scheme: EspotaScheme,
    /// The espota password already hashed (as a device's settings keep
    /// it); wins over `espota_password`.
    pub espota_hashed: Option<EspotaAuth>,
}

impl UploaderSettings<'_> {
    /// Both protocols on, no passwords, ESPHome version 2, espota SHA-256.
    pub const fn new() -> Self {
        Self {
            esphome: true,
            esphome_password: None,
            esphome_version: 2,
            espota: true,
            espota_password: None,
            espota_scheme: EspotaScheme::Sha256,
            espota_hashed: None,
        }
    }
}

impl Default for UploaderSettings<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// Why an uploader setting cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UploaderError {
    /// The ESPHome password is empty or longer than the device keeps.
    #[error("the ESPHome OTA password must be 1 to {max} bytes long")]
    EsphomePassword {
        /// The longest kept.
        max: usize,
    },
    /// The ESPHome protocol version is neither 1 nor 2.
    #[error("ESPHome's OTA protocol version is 1 or 2, not {0}")]
    EsphomeVersion(u8),
    /// The espota password is empty.
    #[error("the espota password must not be empty")]
    EspotaPassword,
}

impl UploaderError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::EsphomePassword { .. } => "esphome_password",
            Self::EsphomeVersion(_) => "esphome_version",
            Self::EspotaPassword => "espota_password",
        }
    }
}

/// A protocol that was configured on but is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnedOff {
    /// ESPHome OTA: the HTTP API needs a token and ESPHome has no password.
    EsphomeNeedsPassword,
    /// espota: the HTTP API needs a token and espota has no password.
    EspotaNeedsPassword,
}

/// The uploaders a device serves, with their device-side settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uploaders {
    /// ESPHome's OTA on the TCP port, `None` when off.
    pub esphome: Option<EsphomeOptions>,
    /// espota on the UDP port, `None` when off.
    pub espota: Option<EspotaOptions>,
}

impl Uploaders {
    /// The device-side settings of `cfg` on a device whose HTTP API needs
    /// a token (`token`) or not, and the protocols turned off by the token
    /// rule (at most two, in that order).
    pub fn from_settings(
        cfg: &UploaderSettings<'_>,
        token: bool,
    ) -> Result<(Self, [Option<TurnedOff>; 2]), UploaderError> {
        let mut off = [None, None];
        let esphome = if cfg.esphome {
            let version = match cfg.esphome_version {
                1 => Version::V1,
                2 => Version::V2,
                v => return Err(UploaderError::EsphomeVersion(v)),
            };
            let password = match cfg.esphome_password {
                Some(p) => Some(
                    Secret::new(p).ok_or(UploaderError::EsphomePassword { max: Secret::MAX })?,
                ),
                None => None,
            };
            if token && password.is_none() {
                off[0] = Some(TurnedOff::EsphomeNeedsPassword);
                None
            } else {
                let mut o = EsphomeOptions::new();
                o.version = version;
                o.password = password;
                Some(o)
            }
        } else {
            None
        };
        let espota = if cfg.espota {
            let auth = match cfg.espota_password {
                _ if cfg.espota_hashed.is_some() => cfg.espota_hashed.unwrap_or(EspotaAuth::None),
                Some([]) => return Err(UploaderError::EspotaPassword),
                Some(p) => match cfg.espota_scheme {
                    EspotaScheme::Sha256 => EspotaAuth::sha256_of(p),
                    EspotaScheme::Md5 => EspotaAuth::md5_of(p),
                },
                None => EspotaAuth::None,
            };
            if token && !auth.required() {
                off[1] = Some(TurnedOff::EspotaNeedsPassword);
                None
            } else {
                Some(EspotaOptions {
                    auth,
                    ..EspotaOptions::new()
                })
            }
        } else {
            None
        };
        Ok((Self { esphome, espota }, off))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_turns_passwordless_protocols_off_and_passwords_turn_them_on() {
        let cfg = UploaderSettings::new();
        let (u, off) = Uploaders::from_settings(&cfg, false).unwrap();
        assert!(u.esphome.is_some() && u.espota.is_some());
        assert_eq!(off, [None, None]);
        let (u, off) = Uploaders::from_settings(&cfg, true).unwrap();
        assert_eq!((u.esphome, u.espota), (None, None));
        assert_eq!(
            off,
            [
                Some(TurnedOff::EsphomeNeedsPassword),
                Some(TurnedOff::EspotaNeedsPassword)
            ]
        );
        let cfg = UploaderSettings {
            esphome_password: Some(b"pw"),
            espota_password: Some(b"pw"),
            ..UploaderSettings::new()
        };
        let (u, off) = Uploaders::from_settings(&cfg, true).unwrap();
        assert!(u.esphome.unwrap().password.is_some());
        assert_eq!(u.espota.unwrap().auth, EspotaAuth::sha256_of(b"pw"));
        assert_eq!(off, [None, None]);
        let md5 = UploaderSettings {
            espota_password: Some(b"pw"),
            espota_scheme: EspotaScheme::Md5,
            ..UploaderSettings::new()
        };
        let (u, _) = Uploaders::from_settings(&md5, false).unwrap();
        assert_eq!(u.espota.unwrap().auth, EspotaAuth::md5_of(b"pw"));
    }

    #[test]
    fn bad_settings_are_refused_with_their_code() {
        let bad = UploaderSettings {
            esphome_version: 3,
            ..UploaderSettings::new()
        };
        let e = Uploaders::from_settings(&bad, false).unwrap_err();
        assert_eq!(e, UploaderError::EsphomeVersion(3));
        assert_eq!(e.code(), "esphome_version");
        let empty = UploaderSettings {
            espota_password: Some(b""),
            ..UploaderSettings::new()
        };
        let e = Uploaders::from_settings(&empty, false).unwrap_err();
        assert_eq!(
            (e, e.code()),
            (UploaderError::EspotaPassword, "espota_password")
        );
        let long = [b'x'; Secret::MAX + 1];
        let too_long = UploaderSettings {
            esphome_password: Some(&long),
            ..UploaderSettings::new()
        };
        let e = Uploaders::from_settings(&too_long, false).unwrap_err();
        assert_eq!(e, UploaderError::EsphomePassword { max: Secret::MAX });
        // Off stays off whatever its password.
        let none = UploaderSettings {
            esphome: false,
            espota: false,
            ..UploaderSettings::new()
        };
        let (u, off) = Uploaders::from_settings(&none, true).unwrap();
        assert_eq!((u, off), (Uploaders::default(), [None, None]));
    }
}
