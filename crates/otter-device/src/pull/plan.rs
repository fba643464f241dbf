//! What a verified release means for this device: install the firmware,
//! install the web UI, nothing, wait, or refuse (and why).
//!
//! Pure: [`Facts`] are what the device knows about itself
//! ([`super::Pull::decide`] reads them from flash), [`Release`] what the
//! verified manifest says.

use core::cmp::Ordering;

use super::Release;

/// What the device knows about itself that a release is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts<'a> {
    /// The product this device installs releases of.
    pub product: &'a str,
    /// The chip, lowercase (`esp32s3`).
    pub chip: &'a str,
    /// The running firmware's version.
    pub running_version: &'a str,
    /// Whether the running firmware is still PENDING_VERIFY.
    pub pending_verify: bool,
    /// The anti-rollback eFuse counter, when anti-rollback is on.
    pub secure_counter: Option<u32>,
    /// Size of the slot the next firmware goes to.
    pub next_slot_size: Option<u32>,
    /// The web-UI slots, `None` without them.
    pub www: Option<WwwFacts>,
}

/// The web-UI slots, as far as a plan needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WwwFacts {
    /// Size of the slot an update would go to.
    pub target_size: u32,
    /// SHA-256 of the active slot's contents (the whole slot: images are
    /// exactly slot-sized), `None` when no slot is mounted.
    pub active_sha256: Option<[u8; 32]>,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The device runs this release (and its web UI, if it has one).
    UpToDate,
    /// Download and activate the firmware; the web UI follows once the new
    /// firmware has confirmed itself.
    Firmware,
    /// The firmware is current; download the web UI into the inactive slot.
    Www,
    /// The release is newer but the running firmware is not confirmed yet:
    /// check again after its self-test (any reboot before would roll it
    /// back).
    WaitForConfirm,
}

/// Why a release is refused. Nothing is written for any of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `wrong_product`.
    WrongProduct,
    /// `wrong_chip`.
    WrongChip,
    /// `secure_version`: below the anti-rollback counter.
    SecureVersion {
        /// The counter.
        counter: u32,
    },
    /// `older`: a downgrade.
    Older,
    /// `rolled_back`: this device installed that version and rolled it back.
    RolledBack,
    /// `no_slot`: nothing to install into.
    NoSlot,
    /// `too_large`: the firmware does not fit its slot.
    TooLarge {
        /// The slot's size.
        slot: u32,
    },
    /// `www_wrong_size`: the web-UI image is not the slot's size.
    WwwWrongSize {
        /// The slot's size.
        slot: u32,
    },
}

impl Refusal {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::WrongProduct => "wrong_product",
            Self::WrongChip => "wrong_chip",
            Self::SecureVersion { .. } => "secure_version",
            Self::Older => "older",
            Self::RolledBack => "rolled_back",
            Self::NoSlot => "no_slot",
            Self::TooLarge { .. } => "too_large",
            Self::WwwWrongSize { .. } => "www_wrong_size",
        }
    }

    /// What is wrong and what to do, about release `r` on device `d`.
    pub fn explain(self, r: &Release, d: &Facts<'_>, out: &mut dyn core::fmt::Write) {
        let fw = &r.firmware;
        let _ = match self {
            Self::WrongProduct => write!(
                out,
                "the release is for product {:?} but this device is {:?}; publish the release for this product or point the device at its own manifest",
                r.product.as_str(), d.product
            ),
            Self::WrongChip => write!(
                out,
                "the release's firmware is built for {} but this device is an {}; it would not boot",
                r.chip, d.chip
            ),
            Self::SecureVersion { counter } => write!(
                out,
                "the firmware's secure_version is {} but this device's anti-rollback counter is {counter}: the bootloader would refuse it; build it with secure_version {counter} or higher",
                r.secure_version
            ),
            Self::Older => write!(
                out,
                "the release's firmware {} is older than the running {}; otter does not downgrade (publish a higher version)",
                r.version, d.running_version
            ),
            Self::RolledBack => write!(
                out,
                "firmware {} was installed on this device before and rolled back; it is not installed again (publish a fixed, higher version)",
                r.version
            ),
            Self::NoSlot => write!(out, "this device has no OTA slot to install into"),
            Self::TooLarge { slot } => write!(
                out,
                "the firmware is {} bytes but the OTA slot holds {slot}; shrink the image or repartition",
                fw.size
            ),
            Self::WwwWrongSize { slot } => write!(
                out,
                "the web-UI image is {} bytes but the device's web-UI slots are {slot}; a LittleFS image mounts only on a partition of the size it was built for",
                r.www.map_or(0, |w| w.size)
            ),
        };
    }
}

/// Decides what `r` means for the device described by `d`; `rolled_back`
/// says whether a version is in a slot marked INVALID or ABORTED.
///
/// In order: product, chip, secure_version against the eFuse counter,
/// version (older is refused as a downgrade; a version this device rolled
/// back is refused as known bad), the firmware's size against the slot, the
/// web UI's size against its slot. A bundle whose firmware is current
/// updates only the web UI.
pub fn decide(
    r: &Release,
    d: &Facts<'_>,
    rolled_back: &mut dyn FnMut(&str) -> bool,
) -> Result<Plan, Refusal> {
    let fw = &r.firmware;
    if r.product.as_str() != d.product {
        return Err(Refusal::WrongProduct);
    }
    if !r.chip.as_str().eq_ignore_ascii_case(d.chip) {
        return Err(Refusal::WrongChip);
    }
    if let Some(counter) = d.secure_counter {
        if r.secure_version < counter {
            return Err(Refusal::SecureVersion { counter });
        }
    }
    let firmware = match compare_versions(r.version.as_str(), d.running_version) {
        Ordering::Less => return Err(Refusal::Older),
        Ordering::Equal => false,
        Ordering::Greater => {
            if rolled_back(r.version.as_str()) {
                return Err(Refusal::RolledBack);
            }
            true
        }
    };
    if firmware {
        match d.next_slot_size {
            None => return Err(Refusal::NoSlot),
            Some(slot) if fw.size > u64::from(slot) => return Err(Refusal::TooLarge { slot }),
            Some(_) => {}
        }
    }
    if let (Some(www), Some(art)) = (&d.www, &r.www) {
        if art.size != u64::from(www.target_size) {
            return Err(Refusal::WwwWrongSize {
                slot: www.target_size,
            });
        }
    }
    let plan = match (firmware, &d.www, &r.www) {
        (true, _, _) => Plan::Firmware,
        (false, Some(www), Some(art)) if www.active_sha256 != Some(art.sha256) => Plan::Www,
        _ => Plan::UpToDate,
    };
    if d.pending_verify && plan != Plan::UpToDate {
        return Ok(Plan::WaitForConfirm);
    }
    Ok(plan)
}

/// otter's version order (docs/release-manifest.md), otter-release's.
fn compare_versions(a: &str, b: &str) -> Ordering {
    otter_release::compare_versions(a, b)
}
