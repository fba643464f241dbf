//! What a verified manifest means for this device: install the firmware,
//! install the web UI, nothing, or refuse (and why).
//!
//! Pure: the caller gathers [`DeviceFacts`] from flash and passes a manifest
//! whose signature and expiry [`otter_release::verify_manifest`] already
//! checked.

use std::cmp::Ordering;

use otter_release::{compare_versions, Manifest};

/// What the device knows about itself that a release is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    /// The product this device installs releases of.
    pub product: String,
    /// The chip, lowercase (`esp32s3`).
    pub chip: String,
    /// The running firmware's version.
    pub running_version: String,
    /// Whether the running firmware is still PENDING_VERIFY (its self-test
    /// has not confirmed it yet).
    pub pending_verify: bool,
    /// The anti-rollback eFuse counter, when anti-rollback is on.
    pub secure_counter: Option<u32>,
    /// Size of the slot the next firmware goes to.
    pub next_slot_size: Option<u32>,
    /// Versions in slots the bootloader or the self-test marked INVALID or
    /// ABORTED: this device installed them once and rolled them back.
    pub rolled_back: Vec<String>,
    /// The web UI: the size of the inactive slot and the SHA-256 of the
    /// active one; `None` when the device has no web-UI slots.
    pub www: Option<WwwFacts>,
}

/// The web-UI slots, as far as a plan needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The firmware is newer but the running one is not confirmed yet:
    /// check again after its self-test.
    WaitForConfirm,
}

/// Why a release is refused. Nothing is written for any of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Machine-readable code (status `last_error.error`).
    pub code: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl Refusal {
    fn new(code: &'static str, message: String) -> Self {
        Self { code, message }
    }
}

/// Decides what `m` means for the device described by `d`.
///
/// In order: product, chip, secure_version against the eFuse counter,
/// version (older is refused as a downgrade; a version this device rolled
/// back is refused as known bad), the firmware's size against the slot, the
/// web UI's size against its slot. A bundle whose firmware is current
/// updates only the web UI.
pub fn plan(m: &Manifest, d: &DeviceFacts) -> Result<Plan, Refusal> {
    let fw = &m.firmware;
    if m.product != d.product {
        return Err(Refusal::new(
            "wrong_product",
            format!(
                "the release is for product {:?} but this device is {:?}; publish the release for this product or point the device at its own manifest",
                m.product, d.product
            ),
        ));
    }
    if !m.chip.eq_ignore_ascii_case(&d.chip) {
        return Err(Refusal::new(
            "wrong_chip",
            format!(
                "the release's firmware is built for {} but this device is an {}; it would not boot",
                m.chip, d.chip
            ),
        ));
    }
    if let Some(counter) = d.secure_counter {
        if fw.secure_version < counter {
            return Err(Refusal::new(
                "secure_version",
                format!(
                    "the firmware's secure_version is {} but this device's anti-rollback counter is {counter}: the bootloader would refuse it; build it with secure_version {counter} or higher",
                    fw.secure_version
                ),
            ));
        }
    }
    let firmware_plan = match compare_versions(&fw.version, &d.running_version) {
        Ordering::Less => {
            return Err(Refusal::new(
                "older",
                format!(
                    "the release's firmware {} is older than the running {}; otter does not downgrade (publish a higher version)",
                    fw.version, d.running_version
                ),
            ))
        }
        Ordering::Equal => None,
        Ordering::Greater => {
            if d.rolled_back.iter().any(|v| v == &fw.version) {
                return Err(Refusal::new(
                    "rolled_back",
                    format!(
                        "firmware {} was installed on this device before and rolled back; it is not installed again (publish a fixed, higher version)",
                        fw.version
                    ),
                ));
            }
            Some(Plan::Firmware)
        }
    };
    if firmware_plan == Some(Plan::Firmware) {
        match d.next_slot_size {
            None => {
                return Err(Refusal::new(
                    "no_slot",
                    "this device has no OTA slot to install into".to_string(),
                ))
            }
            Some(size) if fw.size > u64::from(size) => {
                return Err(Refusal::new(
                    "too_large",
                    format!(
                        "the firmware is {} bytes but the OTA slot holds {size}; shrink the image or repartition",
                        fw.size
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    if let (Some(www), Some(art)) = (&d.www, &m.www) {
        if art.size != u64::from(www.target_size) {
            return Err(Refusal::new(
                "www_wrong_size",
                format!(
                    "the web-UI image is {} bytes but the device's web-UI slots are {}; a LittleFS image mounts only on a partition of the size it was built for",
                    art.size, www.target_size
                ),
            ));
        }
    }
    let plan = match (firmware_plan, &d.www, &m.www) {
        (Some(p), _, _) => p,
        (None, Some(www), Some(art)) if www.active_sha256 != Some(art.sha256.0) => Plan::Www,
        _ => Plan::UpToDate,
    };
    // Any reboot before the running firmware confirms itself rolls it back:
    // nothing is installed until it has.
    if d.pending_verify && plan != Plan::UpToDate {
        return Ok(Plan::WaitForConfirm);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(version: &str, secure_version: u32, size: u64, www: Option<(u64, u8)>) -> Manifest {
        let www = www.map(|(size, b)| {
            format!(
                r#","www":{{"url":"www.bin","size":{size},"sha256":"{}"}}"#,
                hex(b)
            )
        });
        let json = format!(
            r#"{{"format":"otter-release/1","product":"demo","chip":"esp32s3","created":"2026-01-01T00:00:00Z","expires":"2099-01-01T00:00:00Z","firmware":{{"version":"{version}","secure_version":{secure_version},"project":"demo","url":"firmware.bin","size":{size},"sha256":"{}"}}{}}}"#,
            hex(1),
            www.unwrap_or_default()
        );
        Manifest::from_json(json.as_bytes()).expect("test manifest parses")
    }

    fn hex(b: u8) -> String {
        format!("{b:02x}").repeat(32)
    }

    fn facts() -> DeviceFacts {
        DeviceFacts {
            product: "demo".into(),
            chip: "esp32s3".into(),
            running_version: "1.0.0".into(),
            pending_verify: false,
            secure_counter: None,
            next_slot_size: Some(0x20_0000),
            rolled_back: vec![],
            www: Some(WwwFacts {
                target_size: 0x10_0000,
                active_sha256: Some([7; 32]),
            }),
        }
    }

    fn code(r: Result<Plan, Refusal>) -> &'static str {
        r.expect_err("refused").code
    }

    #[test]
    fn newer_firmware_is_installed_first_then_the_ui() {
        let m = manifest("1.1.0", 0, 1000, Some((0x10_0000, 9)));
        assert_eq!(plan(&m, &facts()), Ok(Plan::Firmware));
        let mut d = facts();
        d.running_version = "1.1.0".into();
        assert_eq!(plan(&m, &d), Ok(Plan::Www));
        d.www.as_mut().unwrap().active_sha256 = Some([9; 32]);
        assert_eq!(plan(&m, &d), Ok(Plan::UpToDate));
        d.pending_verify = true;
        assert_eq!(plan(&m, &d), Ok(Plan::UpToDate));
        d.www.as_mut().unwrap().active_sha256 = Some([7; 32]);
        assert_eq!(
            plan(&m, &d),
            Ok(Plan::WaitForConfirm),
            "the UI waits for the confirm"
        );
        d.running_version = "1.0.0".into();
        assert_eq!(plan(&m, &d), Ok(Plan::WaitForConfirm));
    }

    #[test]
    fn every_refusal_has_its_code() {
        let d = facts();
        let mut m = manifest("1.1.0", 0, 1000, None);
        m.product = "other".into();
        assert_eq!(code(plan(&m, &d)), "wrong_product");
        let mut m = manifest("1.1.0", 0, 1000, None);
        m.chip = "esp32c3".into();
        assert_eq!(code(plan(&m, &d)), "wrong_chip");
        assert_eq!(code(plan(&manifest("0.9.0", 0, 1000, None), &d)), "older");
        assert_eq!(
            code(plan(&manifest("1.1.0", 0, 0x20_0001, None), &d)),
            "too_large"
        );
        let mut d2 = d.clone();
        d2.secure_counter = Some(3);
        assert_eq!(
            code(plan(&manifest("1.1.0", 2, 1000, None), &d2)),
            "secure_version"
        );
        assert_eq!(
            plan(&manifest("1.1.0", 3, 1000, None), &d2),
            Ok(Plan::Firmware)
        );
        let mut d3 = d.clone();
        d3.rolled_back = vec!["1.1.0".into()];
        assert_eq!(
            code(plan(&manifest("1.1.0", 0, 1000, None), &d3)),
            "rolled_back"
        );
        assert_eq!(
            plan(&manifest("1.1.1", 0, 1000, None), &d3),
            Ok(Plan::Firmware)
        );
        assert_eq!(
            code(plan(&manifest("1.1.0", 0, 1000, Some((4096, 1))), &d)),
            "www_wrong_size"
        );
    }

    #[test]
    fn a_firmware_only_release_of_the_running_version_is_up_to_date() {
        assert_eq!(
            plan(&manifest("1.0.0", 0, 1000, None), &facts()),
            Ok(Plan::UpToDate)
        );
        let mut d = facts();
        d.www = None;
        let m = manifest("1.0.0", 0, 1000, Some((0x10_0000, 9)));
        assert_eq!(plan(&m, &d), Ok(Plan::UpToDate));
    }
}
