//! otter's device-side OTA engine.
//!
//! This is the code that runs on an ESP32 and decides whether a device
//! survives an update. It is `#![no_std]`, uses no heap, and is generic over
//! [`embedded_storage::nor_flash::NorFlash`], so it runs unchanged on a real
//! chip (esp-hal's flash driver) and on otter's NOR-flash simulator.
//!
//! It is byte-compatible with ESP-IDF: it reads the partition table the
//! bootloader reads, writes otadata exactly as `esp_ota_set_boot_partition`
//! does, and follows the rollback states of `esp_ota_ops`, so a device can mix
//! otter and ESP-IDF code (an ESP-IDF bootloader with an otter app, or the
//! other way round) without disagreeing about which slot boots.
//!
//! - [`slots`]: slot discovery from the on-flash partition table.
//! - [`boot`]: a model of ESP-IDF's second-stage bootloader: which image it
//!   boots for given flash contents, and the otadata writes it makes.
//! - [`session`]: the streaming update session (begin, write, finish,
//!   activate, abort).
//! - [`lifecycle`]: the running image's state, confirm, roll back, and the
//!   diagnostics snapshot ([`diagnostics`], re-exported there).
//! - [`trial`]: an app-level trial boot for bootloaders without app
//!   rollback: a crashing new image rolls back after N attempts.
//!
//! What it is not: there is no networking, no allocation and no logging
//! framework here; transports feed bytes into an [`session::UpdateSession`].
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(test)]
extern crate std;

pub mod boot;
pub mod diagnostics;
mod error;
mod io;
pub mod lifecycle;
pub mod session;
pub mod slots;
pub mod trial;

pub use error::OtaError;
pub use io::{verify_slot, SlotVerdict};
pub use slots::{Region, SlotId, SlotMap};

use otter_format::chip::Chip;
use otter_format::otadata::SameSlotRule;
use otter_format::partition::DEFAULT_TABLE_OFFSET;

/// How the device's bootloader and `esp_ota_ops` are configured. Both sides
/// must agree, so one value describes the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceConfig {
    /// The chip; images for another chip are refused.
    pub chip: Chip,
    /// Flash offset of the partition table (`CONFIG_PARTITION_TABLE_OFFSET`).
    pub table_offset: u32,
    /// `CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE`: new images boot as
    /// PENDING_VERIFY and roll back unless confirmed.
    pub rollback: bool,
    /// `CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK`: the eFuse secure-version counter,
    /// or `None` when anti-rollback is off.
    pub anti_rollback: Option<u32>,
    /// How re-selecting the already active slot is written (ESP-IDF v6 or v5).
    pub same_slot_rule: SameSlotRule,
    /// Refuse an update image without an appended SHA-256
    /// ([`otter_format::image::ImageError::Sha256Required`]). On by default:
    /// without the digest nothing protects the image header, whose fields the
    /// verifier can only check for plausibility.
    pub require_sha256: bool,
    /// Which Secure Boot v2 signatures an update must carry
    /// (`CONFIG_SECURE_SIGNED_ON_UPDATE`). None by default.
    pub signatures: SignaturePolicy,
}

/// The Secure Boot v2 keys an update must be signed with.
///
/// With at least one trusted key, [`session::UpdateSession::finish`] refuses
/// an image unless a signature block after it (at the image length rounded
/// up to 4 KiB, where the bootloader reads it) verifies with a trusted key
/// that is not revoked, over exactly the bytes written
/// ([`OtaError::Signature`]). ESP-IDF's `CONFIG_SECURE_SIGNED_ON_UPDATE`
/// takes the keys from the running app's own signature blocks; otter takes
/// them from the device's configuration (on a chip with Secure Boot on,
/// configure the key digests burnt into eFuse), so a device without hardware
/// Secure Boot can require signatures too.
///
/// Digests are SHA-256 of the public key as the block stores it: what
/// `espsecure digest-sbv2-public-key` prints and eFuse holds. The slices are
/// `'static` so the configuration stays `Copy` and fixed-size: a firmware
/// has them as constants, a host tool leaks one allocation per device.
///
/// Verifying needs the scheme's arithmetic: otter-ota's `sbv2-ecdsa`
/// feature (P-256, P-384; no heap) or `sbv2-rsa` (RSA-3072; heap). Without
/// the one a block needs, that block fails with
/// [`otter_format::secure_boot::SignatureError::UnsupportedScheme`], so a
/// device never accepts what it cannot check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignaturePolicy {
    /// Trusted key digests. Empty: signatures are not required (a signature
    /// sector after the image is still accepted, and checked for shape).
    pub trusted: &'static [[u8; 32]],
    /// Revoked key digests (`KEY_REVOKE`): refused even when also trusted.
    pub revoked: &'static [[u8; 32]],
}

impl SignaturePolicy {
    /// No signature required.
    pub const NONE: Self = Self {
        trusted: &[],
        revoked: &[],
    };

    /// Requires a signature by one of `trusted`.
    pub const fn require(trusted: &'static [[u8; 32]]) -> Self {
        Self {
            trusted,
            revoked: &[],
        }
    }

    /// The same policy, also refusing `revoked`.
    pub const fn revoking(mut self, revoked: &'static [[u8; 32]]) -> Self {
        self.revoked = revoked;
        self
    }

    /// Whether updates must be signed.
    pub const fn required(&self) -> bool {
        !self.trusted.is_empty()
    }

    /// The keys as otter-format's verifier takes them.
    pub const fn trusted_keys(&self) -> otter_format::secure_boot::TrustedKeys<'static> {
        otter_format::secure_boot::TrustedKeys::new(self.trusted).revoking(self.revoked)
    }
}

impl DeviceConfig {
    /// A device with ESP-IDF's defaults: table at 0x8000, no rollback, no
    /// anti-rollback, v6 otadata rules; update images must carry an appended
    /// SHA-256.
    pub const fn new(chip: Chip) -> Self {
        Self {
            chip,
            table_offset: DEFAULT_TABLE_OFFSET,
            rollback: false,
            anti_rollback: None,
            same_slot_rule: SameSlotRule::InPlace,
            require_sha256: true,
            signatures: SignaturePolicy::NONE,
        }
    }

    /// The same configuration with the signature policy set.
    pub const fn with_signatures(mut self, policy: SignaturePolicy) -> Self {
        self.signatures = policy;
        self
    }

    /// The same configuration with the appended-SHA-256 requirement on or off.
    pub const fn with_require_sha256(mut self, on: bool) -> Self {
        self.require_sha256 = on;
        self
    }

    /// The same configuration with app rollback on or off.
    pub const fn with_rollback(mut self, on: bool) -> Self {
        self.rollback = on;
        self
    }

    /// The same configuration with the anti-rollback eFuse counter set.
    pub const fn with_anti_rollback(mut self, counter: Option<u32>) -> Self {
        self.anti_rollback = counter;
        self
    }

    /// The state `esp_ota_set_boot_partition` writes for a newly selected
    /// image: NEW with rollback, else UNDEFINED.
    pub const fn new_image_state(&self) -> otter_format::otadata::OtaState {
        if self.rollback {
            otter_format::otadata::OtaState::New
        } else {
            otter_format::otadata::OtaState::Undefined
        }
    }
}
