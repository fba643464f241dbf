//! What a verified release means for this device: install the firmware,
//! install the web UI, nothing, wait, or refuse (and why); and which of the
//! firmware's artifacts to fetch ([`choose`]).
//!
//! Pure: [`Facts`] are what the device knows about itself
//! ([`super::Pull::decide`] reads them from flash), [`Release`] what the
//! verified manifest says.

use core::cmp::Ordering;

use super::{ArtifactEncoding, Release};

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
    /// The running image's validation hash (the SHA-256 appended to it,
    /// checked): what a delta's `base_sha256` must be. `None` when the
    /// image has none.
    pub running_sha256: Option<[u8; 32]>,
    /// Which decoders the platform lends.
    pub decoders: Decoders,
}

/// Which decoders the platform lends for a pull
/// ([`crate::service::Platform::decoder_ram`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decoders {
    /// The inflater (gzip).
    pub inflate: bool,
    /// The patch applier (deltas).
    pub patch: bool,
}

/// Which of the firmware's artifacts to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The full image (`firmware.url`).
    Full,
    /// `firmware.alternatives[i]`.
    Alternative(usize),
}

/// The smallest artifact of `r`'s firmware this device can apply: a delta
/// whose `base_sha256` is the running image's validation hash (with the
/// patch applier lent), the gzip stream (with the inflater lent), or the
/// full image. An alternative is taken only when it is strictly smaller
/// than the full image (and than any other candidate; the first of equals
/// wins); `skip` names an artifact SHA-256 that failed since power-on.
pub fn choose(r: &Release, d: &Facts<'_>, skip: Option<[u8; 32]>) -> Choice {
    let mut best = Choice::Full;
    let mut best_size = r.firmware.size;
    for (i, a) in r.alternatives.iter().enumerate() {
        let Some(a) = a else { continue };
        if skip == Some(a.sha256) {
            continue;
        }
        let usable = match a.encoding {
            ArtifactEncoding::Identity => false,
            ArtifactEncoding::Gzip => d.decoders.inflate,
            ArtifactEncoding::Delta => {
                d.decoders.patch && a.base_sha256.is_some() && a.base_sha256 == d.running_sha256
            }
        };
        if usable && a.size < best_size {
            best = Choice::Alternative(i);
            best_size = a.size;
        }
    }
    best
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pull::{AlternativeInfo, ArtifactInfo, Text, MAX_ALTERNATIVES};

    const RUNNING: [u8; 32] = [7; 32];

    fn release(alts: &[AlternativeInfo]) -> Release {
        let mut alternatives = [None; MAX_ALTERNATIVES];
        for (slot, a) in alternatives.iter_mut().zip(alts) {
            *slot = Some(*a);
        }
        Release {
            product: Text::of("app"),
            chip: Text::of("esp32c3"),
            version: Text::of("1.1.0"),
            secure_version: 0,
            expires: 0,
            firmware: ArtifactInfo {
                size: 100_000,
                sha256: [1; 32],
            },
            www: None,
            alternatives,
        }
    }

    fn facts(decoders: Decoders) -> Facts<'static> {
        Facts {
            product: "app",
            chip: "esp32c3",
            running_version: "1.0.0",
            pending_verify: false,
            secure_counter: None,
            next_slot_size: Some(1 << 20),
            www: None,
            running_sha256: Some(RUNNING),
            decoders,
        }
    }

    const ALL: Decoders = Decoders {
        inflate: true,
        patch: true,
    };

    fn gzip(size: u64) -> AlternativeInfo {
        AlternativeInfo {
            encoding: ArtifactEncoding::Gzip,
            size,
            sha256: [2; 32],
            base_sha256: None,
        }
    }

    fn delta(size: u64, base: [u8; 32], sha: u8) -> AlternativeInfo {
        AlternativeInfo {
            encoding: ArtifactEncoding::Delta,
            size,
            sha256: [sha; 32],
            base_sha256: Some(base),
        }
    }

    #[test]
    fn a_matching_delta_wins() {
        let r = release(&[
            gzip(60_000),
            delta(3_000, [9; 32], 3),
            delta(4_000, RUNNING, 4),
        ]);
        assert_eq!(choose(&r, &facts(ALL), None), Choice::Alternative(2));
    }

    #[test]
    fn no_matching_delta_takes_gzip() {
        let r = release(&[delta(3_000, [9; 32], 3), gzip(60_000)]);
        assert_eq!(choose(&r, &facts(ALL), None), Choice::Alternative(1));
        // A running image without a validation hash matches no delta.
        let mut f = facts(ALL);
        f.running_sha256 = None;
        let r = release(&[delta(3_000, RUNNING, 3), gzip(60_000)]);
        assert_eq!(choose(&r, &f, None), Choice::Alternative(1));
    }

    #[test]
    fn without_decoder_ram_the_full_image() {
        let r = release(&[gzip(60_000), delta(3_000, RUNNING, 3)]);
        assert_eq!(choose(&r, &facts(Decoders::default()), None), Choice::Full);
        // Only the inflater: gzip; only the applier: the delta.
        let inflate = Decoders {
            inflate: true,
            patch: false,
        };
        assert_eq!(choose(&r, &facts(inflate), None), Choice::Alternative(0));
        let patch = Decoders {
            inflate: false,
            patch: true,
        };
        assert_eq!(choose(&r, &facts(patch), None), Choice::Alternative(1));
    }

    #[test]
    fn alternatives_no_smaller_than_the_image_are_not_taken() {
        let r = release(&[gzip(100_000), delta(100_001, RUNNING, 3)]);
        assert_eq!(choose(&r, &facts(ALL), None), Choice::Full);
        let r = release(&[gzip(99_999), delta(100_000, RUNNING, 3)]);
        assert_eq!(choose(&r, &facts(ALL), None), Choice::Alternative(0));
        // The smaller of two usable ones, whatever their order.
        let r = release(&[delta(5_000, RUNNING, 3), gzip(4_000)]);
        assert_eq!(choose(&r, &facts(ALL), None), Choice::Alternative(1));
    }

    /// Whatever the alternatives, the decoder RAM lent, the running image
    /// and the artifact skipped: the choice is the full image or a usable
    /// alternative (its decoder lent, a delta on the running image, not the
    /// skipped one) strictly smaller than the image, and no usable one is
    /// smaller still.
    #[test]
    fn the_choice_is_the_smallest_usable_artifact() {
        use proptest::prelude::*;
        let alt = (0u8..3, 1u64..200_000, 0u8..4, 0u8..4).prop_map(|(kind, size, base, sha)| {
            AlternativeInfo {
                encoding: match kind {
                    0 => ArtifactEncoding::Gzip,
                    1 => ArtifactEncoding::Delta,
                    _ => ArtifactEncoding::Identity,
                },
                size,
                sha256: [sha; 32],
                base_sha256: (base > 0).then_some(if base == 1 { RUNNING } else { [base; 32] }),
            }
        });
        let input = (
            proptest::collection::vec(alt, 0..=MAX_ALTERNATIVES),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(0u8..4),
        );
        proptest!(|((alts, inflate, patch, runs_known, skip) in input)| {
            let r = release(&alts);
            let mut f = facts(Decoders { inflate, patch });
            if !runs_known {
                f.running_sha256 = None;
            }
            let skip = skip.map(|s| [s; 32]);
            let usable = |a: &AlternativeInfo| {
                skip != Some(a.sha256)
                    && match a.encoding {
                        ArtifactEncoding::Gzip => inflate,
                        ArtifactEncoding::Delta => {
                            patch && runs_known && a.base_sha256 == Some(RUNNING)
                        }
                        ArtifactEncoding::Identity => false,
                    }
            };
            let smallest = alts
                .iter()
                .filter(|a| usable(a) && a.size < r.firmware.size)
                .map(|a| a.size)
                .min();
            match choose(&r, &f, skip) {
                Choice::Full => prop_assert_eq!(smallest, None),
                Choice::Alternative(i) => {
                    let a = alts[i];
                    prop_assert!(usable(&a), "{:?}", a);
                    prop_assert_eq!(Some(a.size), smallest);
                }
            }
        });
    }

    #[test]
    fn an_artifact_that_failed_is_skipped() {
        let r = release(&[gzip(60_000), delta(3_000, RUNNING, 3)]);
        assert_eq!(
            choose(&r, &facts(ALL), Some([3; 32])),
            Choice::Alternative(0)
        );
        assert_eq!(
            choose(&r, &facts(ALL), Some([2; 32])),
            Choice::Alternative(1)
        );
    }
}
