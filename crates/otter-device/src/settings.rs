//! A device's settings in its NVS partition: the namespace and keys that
//! `otter firmware-config` writes into a factory NVS image and a firmware
//! reads at boot (build-time values are the fallback for a key that is not
//! set). Secrets the device only checks are kept as hashes.
//!
//! | key (namespace [`NAMESPACE`]) | NVS type | meaning |
//! |---|---|---|
//! | [`WIFI_SSID`] | string | the Wi-Fi network |
//! | [`WIFI_PASSWORD`] | string | its WPA2 passphrase (empty: open) |
//! | [`TOKEN_SHA256`] | string, 64 hex | SHA-256 of the HTTP API's bearer token |
//! | [`ESPHOME`] | u8 | 0: ESPHome OTA off, 1: on |
//! | [`ESPHOME_PASSWORD`] | string | ESPHome's OTA password (its challenge needs it in clear) |
//! | [`ESPOTA`] | u8 | 0: espota off, 1: on |
//! | [`ESPOTA_SHA256`] | string, 64 hex | sha256hex(espota password): arduino-esp32 ≥ 3.3.1's challenge |
//! | [`ESPOTA_MD5`] | string, 32 hex | md5hex(espota password): the legacy challenge |

use crate::espota::EspotaAuth;
use crate::uploaders::UploaderSettings;

/// The NVS namespace of the settings.
pub const NAMESPACE: &str = "otter_cfg";
/// Wi-Fi SSID.
pub const WIFI_SSID: &str = "wifi_ssid";
/// Wi-Fi passphrase.
pub const WIFI_PASSWORD: &str = "wifi_pass";
/// SHA-256 of the API token, hex.
pub const TOKEN_SHA256: &str = "token_sha256";
/// ESPHome OTA on (1) or off (0).
pub const ESPHOME: &str = "esphome";
/// ESPHome's OTA password.
pub const ESPHOME_PASSWORD: &str = "esphome_pw";
/// espota on (1) or off (0).
pub const ESPOTA: &str = "espota";
/// sha256hex of the espota password.
pub const ESPOTA_SHA256: &str = "espota_sha256";
/// md5hex of the espota password.
pub const ESPOTA_MD5: &str = "espota_md5";

/// A settings value that cannot be used, with its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A hash is not lowercase hex of its length.
    #[error("NVS key {key} in namespace otter_cfg must be {len} lowercase hex digits")]
    Hex {
        /// The key.
        key: &'static str,
        /// Digits expected.
        len: usize,
    },
}

impl SettingsError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Hex { .. } => "settings_hex",
        }
    }
}

fn hex_of<const N: usize>(key: &'static str, s: &str) -> Result<[u8; N], SettingsError> {
    let ok = s.len() == N
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let mut out = [0u8; N];
    match s.as_bytes().get(..N) {
        Some(b) if ok => {
            out.copy_from_slice(b);
            Ok(out)
        }
        _ => Err(SettingsError::Hex { key, len: N }),
    }
}

/// What the settings say; `None` where a key is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings<'a> {
    /// [`WIFI_SSID`].
    pub wifi_ssid: Option<&'a str>,
    /// [`WIFI_PASSWORD`].
    pub wifi_password: Option<&'a str>,
    /// [`TOKEN_SHA256`], decoded.
    pub token_sha256: Option<[u8; 32]>,
    /// [`ESPHOME`].
    pub esphome: Option<bool>,
    /// [`ESPHOME_PASSWORD`].
    pub esphome_password: Option<&'a str>,
    /// [`ESPOTA`].
    pub espota: Option<bool>,
    /// [`ESPOTA_SHA256`] or [`ESPOTA_MD5`] (SHA-256 wins when both are set).
    pub espota_auth: Option<EspotaAuth>,
}

impl<'a> Settings<'a> {
    /// Reads the settings through `string` and `u8` (the NVS reader's
    /// `get_str`/`get_u8` for [`NAMESPACE`]).
    pub fn read(
        string: impl Fn(&'static str) -> Option<&'a str>,
        byte: impl Fn(&'static str) -> Option<u8>,
    ) -> Result<Self, SettingsError> {
        let token_sha256 = match string(TOKEN_SHA256) {
            Some(h) => {
                let hex: [u8; 64] = hex_of(TOKEN_SHA256, h)?;
                let mut out = [0u8; 32];
                for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
                    let d = |c: u8| if c <= b'9' { c - b'0' } else { c - b'a' + 10 };
                    *o = (d(pair[0]) << 4) | d(pair[1]);
                }
                Some(out)
            }
            None => None,
        };
        let espota_auth = match (string(ESPOTA_SHA256), string(ESPOTA_MD5)) {
            (Some(h), _) => Some(EspotaAuth::Sha256 {
                sha256_hex: hex_of(ESPOTA_SHA256, h)?,
            }),
            (None, Some(h)) => Some(EspotaAuth::Md5 {
                md5_hex: hex_of(ESPOTA_MD5, h)?,
            }),
            (None, None) => None,
        };
        Ok(Self {
            wifi_ssid: string(WIFI_SSID),
            wifi_password: string(WIFI_PASSWORD),
            token_sha256,
            esphome: byte(ESPHOME).map(|b| b != 0),
            esphome_password: string(ESPHOME_PASSWORD),
            espota: byte(ESPOTA).map(|b| b != 0),
            espota_auth,
        })
    }

    /// `fallback` (the build-time settings) with what these settings set
    /// laid over it.
    pub fn uploaders_over(&self, fallback: UploaderSettings<'a>) -> UploaderSettings<'a> {
        UploaderSettings {
            esphome: self.esphome.unwrap_or(fallback.esphome),
            esphome_password: self
                .esphome_password
                .map(str::as_bytes)
                .or(fallback.esphome_password),
            espota: self.espota.unwrap_or(fallback.espota),
            espota_hashed: self.espota_auth.or(fallback.espota_hashed),
            ..fallback
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_decode_and_lay_over_the_build_time_ones() {
        let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let s = Settings::read(
            |k| match k {
                WIFI_SSID => Some("lab"),
                TOKEN_SHA256 => Some(sha),
                ESPOTA_MD5 => Some("0cc175b9c0f1b6a831c399e269772661"),
                _ => None,
            },
            |k| (k == ESPHOME).then_some(0),
        )
        .unwrap();
        assert_eq!(s.wifi_ssid, Some("lab"));
        assert_eq!(s.wifi_password, None);
        assert_eq!(s.token_sha256.unwrap()[..3], [0x9f, 0x86, 0xd0]);
        assert_eq!(s.esphome, Some(false));
        assert_eq!(s.espota_auth, Some(EspotaAuth::md5_of(b"a")));
        let u = s.uploaders_over(UploaderSettings {
            espota_password: Some(b"build"),
            ..UploaderSettings::new()
        });
        assert!(!u.esphome && u.espota);
        assert_eq!(u.espota_hashed, Some(EspotaAuth::md5_of(b"a")));
    }

    #[test]
    fn a_bad_hash_names_its_key() {
        let e = Settings::read(|k| (k == ESPOTA_SHA256).then_some("ABC"), |_| None).unwrap_err();
        assert_eq!(
            e,
            SettingsError::Hex {
                key: ESPOTA_SHA256,
                len: 64
            }
        );
        assert_eq!(e.code(), "settings_hex");
        let e = Settings::read(
            |k| (k == TOKEN_SHA256).then_some("G".repeat(64).leak()),
            |_| None,
        )
        .unwrap_err();
        assert_eq!(
            e,
            SettingsError::Hex {
                key: TOKEN_SHA256,
                len: 64
            }
        );
    }
}
