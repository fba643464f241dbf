//! Which uploaders besides HTTP the virtual device answers on its OTA port,
//! and with which passwords: ESPHome's native OTA on TCP (told from HTTP by
//! its first byte) and ArduinoOTA's espota on UDP.

use otter_device::esphome::{EsphomeOptions, Version};
use otter_device::espota::{EspotaAuth, EspotaOptions};
use otter_device::Secret;

use super::Core;

/// The espota challenge a password is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EspotaScheme {
    /// arduino-esp32 3.3.1 and later: SHA-256 + PBKDF2 (64-hex nonce).
    #[default]
    Sha256,
    /// esp8266 and arduino-esp32 before 3.3.1: MD5 (32-hex nonce).
    Md5,
}

/// The uploader settings as configured (passwords in clear, before they
/// are hashed for the device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploaderConfig {
    /// Answer ESPHome's OTA protocol.
    pub esphome: bool,
    /// Its password (`ota: password:` in the ESPHome YAML).
    pub esphome_password: Option<String>,
    /// The protocol version announced (1 or 2).
    pub esphome_version: u8,
    /// Answer espota invitations on UDP.
    pub espota: bool,
    /// Its password (`ArduinoOTA.setPassword`, PlatformIO's `--auth`).
    pub espota_password: Option<String>,
    /// Which challenge the espota password is kept for.
    pub espota_scheme: EspotaScheme,
}

impl Default for UploaderConfig {
    fn default() -> Self {
        Self {
            esphome: true,
            esphome_password: None,
            esphome_version: 2,
            espota: true,
            espota_password: None,
            espota_scheme: EspotaScheme::Sha256,
        }
    }
}

/// Why an uploader setting cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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

/// The uploaders the core serves, with their device-side settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uploaders {
    /// ESPHome's OTA on the TCP port, `None` when off.
    pub esphome: Option<EsphomeOptions>,
    /// espota on the UDP port, `None` when off.
    pub espota: Option<EspotaOptions>,
}

impl Uploaders {
    /// The device-side settings of `cfg`. A protocol without a password is
    /// not served on a device whose HTTP API needs a token (`token`): the
    /// token is never accepted by a challenge protocol, and an open
    /// protocol would bypass it. The notes say what was turned off and how
    /// to turn it on.
    pub fn from_config(
        cfg: &UploaderConfig,
        token: bool,
    ) -> Result<(Self, Vec<String>), UploaderError> {
        let mut notes = Vec::new();
        let esphome = if cfg.esphome {
            let version = match cfg.esphome_version {
                1 => Version::V1,
                2 => Version::V2,
                v => return Err(UploaderError::EsphomeVersion(v)),
            };
            let password = match &cfg.esphome_password {
                Some(p) => Some(
                    Secret::new(p.as_bytes())
                        .ok_or(UploaderError::EsphomePassword { max: Secret::MAX })?,
                ),
                None => None,
            };
            if token && password.is_none() {
                notes.push("ESPHome OTA is off: the device needs a token for HTTP, so ESPHome uploads need their own password (--esphome-password)".to_string());
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
            let auth = match &cfg.espota_password {
                Some(p) if p.is_empty() => return Err(UploaderError::EspotaPassword),
                Some(p) => match cfg.espota_scheme {
                    EspotaScheme::Sha256 => EspotaAuth::sha256_of(p.as_bytes()),
                    EspotaScheme::Md5 => EspotaAuth::md5_of(p.as_bytes()),
                },
                None => EspotaAuth::None,
            };
            if token && !auth.required() {
                notes.push("espota is off: the device needs a token for HTTP, so espota uploads need their own password (--espota-password)".to_string());
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
        Ok((Self { esphome, espota }, notes))
    }
}

impl Core {
    /// Runs `f` over the device state, its flash and the platform at the
    /// core's `now`, then burns a raised eFuse counter and logs progress,
    /// as for an HTTP call.
    pub(crate) fn with_device<R>(
        &mut self,
        vd: &mut otter_sim::device::VirtualDevice,
        f: impl FnOnce(
            &mut otter_device::service::Device,
            &mut otter_sim::SimFlash,
            &mut super::platform::SimPlatform,
            u64,
        ) -> R,
    ) -> R {
        let now = self.now();
        let r = f(&mut self.dev, vd.www_flash(), &mut self.plat, now);
        self.persist_efuse(vd);
        self.log_progress();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_turns_passwordless_protocols_off_and_passwords_turn_them_on() {
        let cfg = UploaderConfig::default();
        let (u, notes) = Uploaders::from_config(&cfg, false).unwrap();
        assert!(u.esphome.is_some() && u.espota.is_some());
        assert!(notes.is_empty());
        let (u, notes) = Uploaders::from_config(&cfg, true).unwrap();
        assert_eq!((u.esphome, u.espota), (None, None));
        assert_eq!(notes.len(), 2);
        let cfg = UploaderConfig {
            esphome_password: Some("pw".into()),
            espota_password: Some("pw".into()),
            ..UploaderConfig::default()
        };
        let (u, notes) = Uploaders::from_config(&cfg, true).unwrap();
        assert!(u.esphome.unwrap().password.is_some());
        assert_eq!(u.espota.unwrap().auth, EspotaAuth::sha256_of(b"pw"));
        assert!(notes.is_empty());
        let bad = UploaderConfig {
            esphome_version: 3,
            ..UploaderConfig::default()
        };
        assert_eq!(
            Uploaders::from_config(&bad, false).unwrap_err(),
            UploaderError::EsphomeVersion(3)
        );
    }
}
