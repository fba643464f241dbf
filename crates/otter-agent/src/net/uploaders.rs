//! Which uploaders besides HTTP the virtual device answers on its OTA port,
//! and with which passwords: ESPHome's native OTA on TCP (told from HTTP by
//! its first byte) and ArduinoOTA's espota on UDP.

pub use otter_device::uploaders::{EspotaScheme, UploaderError, Uploaders};
use otter_device::uploaders::{TurnedOff, UploaderSettings};

use super::Core;

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

/// The device-side settings of `cfg` (`otter_device::uploaders`, the rule
/// the firmware applies too), and for each protocol the token turned off a
/// note that says how to turn it on.
pub fn from_config(
    cfg: &UploaderConfig,
    token: bool,
) -> Result<(Uploaders, Vec<String>), UploaderError> {
    let settings = UploaderSettings {
        esphome: cfg.esphome,
        esphome_password: cfg.esphome_password.as_deref().map(str::as_bytes),
        esphome_version: cfg.esphome_version,
        espota: cfg.espota,
        espota_password: cfg.espota_password.as_deref().map(str::as_bytes),
        espota_scheme: cfg.espota_scheme,
        espota_hashed: None,
    };
    let (u, off) = Uploaders::from_settings(&settings, token)?;
    let notes = off
        .into_iter()
        .flatten()
        .map(|o| match o {
            TurnedOff::EsphomeNeedsPassword => "ESPHome OTA is off: the device needs a token for HTTP, so ESPHome uploads need their own password (--esphome-password)",
            TurnedOff::EspotaNeedsPassword => "espota is off: the device needs a token for HTTP, so espota uploads need their own password (--espota-password)",
        }.to_string())
        .collect();
    Ok((u, notes))
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
    use otter_device::espota::EspotaAuth;

    #[test]
    fn a_token_turns_passwordless_protocols_off_with_a_note_naming_the_option() {
        let cfg = UploaderConfig::default();
        let (u, notes) = from_config(&cfg, false).unwrap();
        assert!(u.esphome.is_some() && u.espota.is_some());
        assert!(notes.is_empty());
        let (u, notes) = from_config(&cfg, true).unwrap();
        assert_eq!((u.esphome, u.espota), (None, None));
        assert_eq!(notes.len(), 2);
        assert!(notes[0].contains("--esphome-password"), "{notes:?}");
        assert!(notes[1].contains("--espota-password"), "{notes:?}");
        let cfg = UploaderConfig {
            esphome_password: Some("pw".into()),
            espota_password: Some("pw".into()),
            ..UploaderConfig::default()
        };
        let (u, notes) = from_config(&cfg, true).unwrap();
        assert!(u.esphome.unwrap().password.is_some());
        assert_eq!(u.espota.unwrap().auth, EspotaAuth::sha256_of(b"pw"));
        assert!(notes.is_empty());
        let bad = UploaderConfig {
            esphome_version: 3,
            ..UploaderConfig::default()
        };
        assert_eq!(
            from_config(&bad, false).unwrap_err(),
            UploaderError::EsphomeVersion(3)
        );
    }
}
