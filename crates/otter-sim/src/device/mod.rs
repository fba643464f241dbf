//! The virtual device: a flash file, a small config, and the bootloader model.
//!
//! A virtual device lives in a directory:
//!
//! | file | what |
//! |---|---|
//! | `flash.bin` | a raw image of the whole flash (byte `n` is flash address `n`), so esptool and otter read it at the usual offsets |
//! | `agent.lock` | locked by the agent that runs the device ([`lock`]); `agent.json` says who it is |
//! | `device.json` | chip, flash size, table offset, bootloader options (rollback, anti-rollback), the eFuse secure-version counter, the API token |
//!
//! The flash file is the device's state. Every flash operation is written
//! through to it before it returns, so killing the process at any moment is a
//! power cut, and the next [`VirtualDevice::power_on`] continues from what is
//! in flash. The eFuse counter is the one piece of state outside flash (it
//! lives in eFuses on a real chip); it only ever goes up and is stored in
//! `device.json` by an atomic rename.
//!
//! [`create`] lays the flash out as a factory flash would: the bootloader at
//! the chip's offset, the partition table at its offset, otadata all 0xFF,
//! the firmware in the first app slot (factory if there is one, else ota_0),
//! everything else erased. [`VirtualDevice::power_on`] runs the bootloader
//! model ([`otter_ota::boot`]) and then the start-up step every otter
//! firmware runs first ([`otter_ota::lifecycle::recover`]).

pub mod lock;
mod status;
pub mod www;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use otter_format::chip::Chip;
use otter_format::image::{
    build_image, inspect, verify, AppImageBuilder, ImageInfo, ImageKind, ImageParams, VerifyOptions,
};
use otter_format::otadata::{OtaState, SameSlotRule};
use otter_format::partition::validate::ValidateOptions;
use otter_format::partition::{
    CsvOptions, DecodeOptions, OwnedTable, PartitionTable, PartitionType, DEFAULT_TABLE_OFFSET,
};
use otter_ota::boot::{boot, BootOutcome};
use otter_ota::lifecycle::{recover, running_state, Recovery};
use otter_ota::{DeviceConfig, OtaError, SignaturePolicy, SlotId, SlotMap};
use serde::{Deserialize, Serialize};

use crate::{SimFlash, SimFlashError};

pub use status::{
    image_summary, or_placeholder, LastRollback, OtadataEntryStatus, OtadataStatus, RunningStatus,
    SlotLabel, SlotStatus, Status, NO_PROJECT, NO_VERSION,
};

/// The flash file's name inside a device directory.
pub const FLASH_FILE: &str = "flash.bin";
/// The config file's name inside a device directory.
pub const CONFIG_FILE: &str = "device.json";
/// Erase counts per 4 KiB sector (little-endian u32 each), inside a device
/// directory: the flash wear of every run of the device.
pub const WEAR_FILE: &str = "wear.bin";
/// How many flash operation records a running device keeps.
pub const LOG_RECORDS: usize = 4096;
/// Version of the `device.json` format.
pub const CONFIG_FORMAT: u32 = 1;

/// The default partition table: the seeds' factory + ota_0 + ota_1 layout
/// (seed 001: NVS, otadata, phy_init, a 2 MiB factory app and two 2 MiB OTA
/// slots), plus two 1 MiB LittleFS slots for the web UI.
pub const DEFAULT_PARTITIONS_CSV: &str = concat!(
    crate::powercut::layouts::seed001_rows!(),
    "\
www_0,    data, littlefs, 0x620000, 0x100000,
www_1,    data, littlefs, 0x720000, 0x100000,
"
);

/// The default chip of a new device.
pub const DEFAULT_CHIP: Chip = Chip::Esp32s3;
/// The default flash size of a new device: 16 MiB.
pub const DEFAULT_FLASH_SIZE: u32 = 16 << 20;
/// Version of the firmware a device gets when none is given.
pub const DEFAULT_FIRMWARE_VERSION: &str = "1.0.0";
/// Project name of the firmware a device gets when none is given, and of
/// the images `otter image build` makes without `--project`: one name, so a
/// fresh device accepts a release of such an image as its own product.
pub const DEFAULT_PROJECT: &str = "otter-virtual";

/// Everything that can go wrong creating, opening or running a device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// A file of the device could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The directory is not a virtual device, or its config is damaged.
    #[error("{path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `create` would overwrite an existing device.
    #[error("{0} already holds a virtual device (flash.bin exists); pass --force to replace it, or choose another directory")]
    Exists(PathBuf),
    /// `create` (even with `force`) would replace the flash of a device
    /// whose agent is running: stop it first.
    #[error(transparent)]
    Locked(#[from] lock::LockError),
    /// An input of `create` is unusable (table, firmware, bootloader, size).
    #[error("{0}")]
    Input(String),
    /// The flash simulator failed.
    #[error("flash: {0}")]
    Flash(#[from] SimFlashError),
    /// The OTA engine or the bootloader model failed.
    #[error("{0}")]
    Ota(#[from] OtaError<SimFlashError>),
}

/// The device's `device.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfigFile {
    /// [`CONFIG_FORMAT`].
    pub format: u32,
    /// Chip name as esptool spells it (`esp32s3`).
    pub chip: String,
    /// Flash size in bytes; the flash file has exactly this length.
    pub flash_size: u32,
    /// Flash offset of the partition table.
    pub table_offset: u32,
    /// `CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE`.
    pub rollback: bool,
    /// `CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK`: the eFuse secure-version
    /// counter, `null` when anti-rollback is off.
    pub anti_rollback: Option<u32>,
    /// The HTTP API's bearer token, `null` for none.
    pub token: Option<String>,
    /// How re-selecting the running slot is written: `v6` (in place) or `v5`.
    #[serde(default = "default_rule")]
    pub otadata_rule: String,
    /// The longest file name the device's littlefs accepts
    /// (`CONFIG_LITTLEFS_OBJ_NAME_LEN`): a web-UI image whose `name_max` is
    /// larger is refused. esp_littlefs's default, 64, when absent.
    #[serde(default = "default_lfs_name_max")]
    pub lfs_name_max: u32,
    /// Secure Boot v2 key digests (64 hex digits each, what `espsecure
    /// digest-sbv2-public-key` prints): when any is listed, every update must
    /// carry a signature block that verifies with one of them. At most
    /// [`MAX_TRUSTED_KEYS`], like the chip's eFuse key blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<String>,
    /// Revoked key digests (`KEY_REVOKE`), refused even when trusted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_keys: Vec<String>,
}

/// How many Secure Boot v2 keys a device can trust: an ESP32's three eFuse
/// key digest blocks.
pub const MAX_TRUSTED_KEYS: usize = 3;

fn parse_digests(field: &str, list: &[String]) -> Result<&'static [[u8; 32]], String> {
    if list.is_empty() {
        return Ok(&[]);
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, h) in list.iter().enumerate() {
        let mut d = [0u8; 32];
        hex::decode_to_slice(h, &mut d)
            .map_err(|_| format!("{field}[{i}] is {h:?}, not a 64-hex-digit key digest"))?;
        out.push(d);
    }
    // The engine's configuration is `Copy` with `'static` key lists; one
    // small allocation per opened device.
    Ok(Box::leak(out.into_boxed_slice()))
}

fn default_rule() -> String {
    "v6".into()
}

fn default_lfs_name_max() -> u32 {
    otter_www::limits::ESP_NAME_MAX
}

/// The largest `name_max` littlefs supports (`LFS_NAME_MAX` <= 1022).
pub const LFS_NAME_MAX_LIMIT: u32 = 1022;

impl DeviceConfigFile {
    /// The engine's view of this config.
    pub fn device_config(&self) -> Result<DeviceConfig, String> {
        let chip = Chip::from_name(&self.chip).ok_or_else(|| {
            format!(
                "unknown chip {:?} (expected one of {})",
                self.chip,
                chip_names()
            )
        })?;
        let rule = match self.otadata_rule.as_str() {
            "v6" => SameSlotRule::InPlace,
            "v5" => SameSlotRule::OtherSector,
            other => {
                return Err(format!(
                    "otadata_rule {other:?} is neither \"v6\" nor \"v5\""
                ))
            }
        };
        let mut cfg = DeviceConfig::new(chip)
            .with_rollback(self.rollback)
            .with_anti_rollback(self.anti_rollback);
        cfg.table_offset = self.table_offset;
        cfg.same_slot_rule = rule;
        if self.trusted_keys.len() > MAX_TRUSTED_KEYS {
            return Err(format!(
                "trusted_keys lists {} keys; a device trusts at most {MAX_TRUSTED_KEYS}",
                self.trusted_keys.len()
            ));
        }
        if self.trusted_keys.is_empty() && !self.revoked_keys.is_empty() {
            return Err(
                "revoked_keys without trusted_keys: list the keys the device trusts".into(),
            );
        }
        cfg.signatures =
            SignaturePolicy::require(parse_digests("trusted_keys", &self.trusted_keys)?)
                .revoking(parse_digests("revoked_keys", &self.revoked_keys)?);
        Ok(cfg)
    }
}

/// The trust options of `create` and `create_from_flash`.
fn check_keys(trusted: &[[u8; 32]], revoked: &[[u8; 32]]) -> Result<(), DeviceError> {
    if trusted.len() > MAX_TRUSTED_KEYS {
        return Err(DeviceError::Input(format!(
            "{} trusted Secure Boot keys given; a device trusts at most {MAX_TRUSTED_KEYS} (its eFuse key digest blocks)",
            trusted.len()
        )));
    }
    if trusted.is_empty() && !revoked.is_empty() {
        return Err(DeviceError::Input(
            "revoked keys without trusted keys: name the keys the device trusts too".into(),
        ));
    }
    Ok(())
}

fn hex32(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The chips a device can be, comma separated.
pub fn chip_names() -> String {
    Chip::all().map(Chip::name).collect::<Vec<_>>().join(", ")
}

/// What [`create`] builds.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// The chip.
    pub chip: Chip,
    /// Flash size in bytes (1–16 MiB).
    pub flash_size: u32,
    /// Partition table, CSV text or binary; `None` for
    /// [`DEFAULT_PARTITIONS_CSV`].
    pub partitions: Option<Vec<u8>>,
    /// Flash offset of the partition table.
    pub table_offset: u32,
    /// The firmware for the first app slot; `None` builds a test image
    /// ([`DEFAULT_PROJECT`] [`DEFAULT_FIRMWARE_VERSION`]).
    pub firmware: Option<Vec<u8>>,
    /// A second-stage bootloader for the bootloader region; `None` writes a
    /// small placeholder bootloader image (the boot logic is otter's model).
    pub bootloader: Option<Vec<u8>>,
    /// App rollback.
    pub rollback: bool,
    /// Anti-rollback with this initial eFuse counter.
    pub anti_rollback: Option<u32>,
    /// Bearer token for the HTTP API.
    pub token: Option<String>,
    /// Replace an existing device in the directory.
    pub force: bool,
    /// The initial web UI for `www_0` (a LittleFS image exactly the slot's
    /// size); `None` builds the built-in default UI
    /// ([`www::DEFAULT_INDEX_HTML`]) when the table has web-UI slots.
    pub www: Option<Vec<u8>>,
    /// The device's littlefs name limit (`CONFIG_LITTLEFS_OBJ_NAME_LEN`),
    /// 1..=[`LFS_NAME_MAX_LIMIT`]; esp_littlefs's default is 64.
    pub lfs_name_max: u32,
    /// Secure Boot v2 key digests every update must be signed with (none:
    /// signatures not required); at most [`MAX_TRUSTED_KEYS`].
    pub trusted_keys: Vec<[u8; 32]>,
    /// Revoked key digests.
    pub revoked_keys: Vec<[u8; 32]>,
}

impl CreateOptions {
    /// The defaults: esp32s3, 16 MiB, the default table, a built firmware,
    /// no rollback, no anti-rollback, no token.
    pub fn new() -> Self {
        Self {
            chip: DEFAULT_CHIP,
            flash_size: DEFAULT_FLASH_SIZE,
            partitions: None,
            table_offset: DEFAULT_TABLE_OFFSET,
            firmware: None,
            bootloader: None,
            rollback: false,
            anti_rollback: None,
            token: None,
            force: false,
            www: None,
            lfs_name_max: otter_www::limits::ESP_NAME_MAX,
            trusted_keys: Vec::new(),
            revoked_keys: Vec::new(),
        }
    }
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`create`] wrote, for the caller's report.
#[derive(Debug, Clone)]
pub struct Created {
    /// The device directory.
    pub dir: PathBuf,
    /// Each region written, in flash order: (offset, length, what).
    pub regions: Vec<(u32, u32, String)>,
    /// The firmware's slot.
    pub app_slot: SlotId,
    /// The firmware.
    pub firmware: ImageInfo,
}

/// Builds a test firmware image for `chip`: a real ESP-IDF app image
/// (header, segments, checksum, SHA-256, app descriptor) whose code is never
/// run. What it does after boot is the virtual device's behaviour profile.
pub fn build_firmware(
    chip: Chip,
    project: &str,
    version: &str,
    secure_version: u32,
) -> Result<Vec<u8>, DeviceError> {
    AppImageBuilder::new(chip)
        .project_name(project)
        .version(version)
        .secure_version(secure_version)
        .build()
        .map_err(|e| DeviceError::Input(format!("building the test firmware {version}: {e}")))
}

/// A placeholder second-stage bootloader for `chip`: a valid bootloader image
/// (RAM segment only, `esp_bootloader_desc_t` at 0x20) so the region looks
/// and verifies like a real one. The virtual device never runs it; its boot
/// logic is [`otter_ota::boot`].
pub fn placeholder_bootloader(chip: Chip) -> Result<Vec<u8>, DeviceError> {
    let mut desc = [0u8; 80];
    desc[0] = 0x50; // esp_bootloader_desc_t.magic_byte
    desc[4..8].copy_from_slice(&1u32.to_le_bytes());
    let idf = b"otter-virtual-bootloader";
    desc[8..8 + idf.len()].copy_from_slice(idf);
    let mut payload = desc.to_vec();
    payload.extend_from_slice(
        b"otter virtual device: placeholder bootloader; boot logic is modelled by otter_ota::boot\0",
    );
    while payload.len() % 4 != 0 {
        payload.push(0);
    }
    let mut params = ImageParams::new(chip);
    let iram = chip.facts().iram_load_addr;
    params.entry = iram;
    build_image(&params, &[(iram, &payload)])
        .map_err(|e| DeviceError::Input(format!("building the placeholder bootloader: {e}")))
}

/// Holds the directory's agent lock while a device is created in it, so a
/// running agent's flash is never replaced under it (`force` included) and
/// no agent starts on a half-written device. A directory that does not exist
/// yet has no agent.
fn lock_for_create(dir: &Path) -> Result<Option<lock::DeviceLock>, DeviceError> {
    if !dir.is_dir() {
        return Ok(None);
    }
    Ok(Some(lock::DeviceLock::acquire(dir)?))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DeviceError + '_ {
    move |source| DeviceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a partition table given as CSV text or binary.
pub fn parse_table(bytes: &[u8]) -> Result<OwnedTable, String> {
    if bytes.starts_with(&[0xAA, 0x50]) {
        let (t, _) = PartitionTable::decode(bytes, &DecodeOptions { verify_md5: true })
            .map_err(|e| format!("not a valid binary partition table: {e}"))?;
        Ok(OwnedTable::from_table(&t))
    } else {
        OwnedTable::from_csv_bytes(bytes, &CsvOptions::default())
            .map_err(|e| format!("invalid partition CSV: {e}"))
    }
}

/// Creates a virtual device in `dir` (see the module docs for the layout).
pub fn create(dir: &Path, opts: &CreateOptions) -> Result<Created, DeviceError> {
    let _lock = lock_for_create(dir)?;
    let flash_path = dir.join(FLASH_FILE);
    if flash_path.exists() && !opts.force {
        return Err(DeviceError::Exists(dir.to_path_buf()));
    }
    check_keys(&opts.trusted_keys, &opts.revoked_keys)?;
    let size = opts.flash_size as usize;
    crate::flash::validate_capacity(size).map_err(|_| {
        DeviceError::Input(format!(
            "flash size {size:#x} is not supported: a virtual device has 1, 2, 4, 8 or 16 MiB of flash"
        ))
    })?;

    // The table: parsed, validated for this flash size, encoded as idf.py does.
    let csv = opts
        .partitions
        .clone()
        .unwrap_or_else(|| DEFAULT_PARTITIONS_CSV.as_bytes().to_vec());
    let table =
        parse_table(&csv).map_err(|e| DeviceError::Input(format!("partition table: {e}")))?;
    table
        .validate(&ValidateOptions {
            table_offset: opts.table_offset,
            flash_size: Some(u64::from(opts.flash_size)),
            ..ValidateOptions::default()
        })
        .map_err(|e| DeviceError::Input(format!("partition table: {e}")))?;
    let table_bin = table
        .to_binary(true)
        .map_err(|e| DeviceError::Input(format!("partition table: {e}")))?;

    // The first app slot, as idf.py flashes it: factory, else ota_0, else test.
    let apps: Vec<_> = table
        .entries
        .iter()
        .map(|e| e.partition)
        .filter(|p| p.ty == PartitionType::APP)
        .collect();
    let pick = |sub: u8| apps.iter().find(|p| p.subtype.0 == sub).copied();
    let (app_slot, app) = if let Some(p) = pick(0x00) {
        (SlotId::Factory, p)
    } else if let Some(p) = pick(0x10) {
        (SlotId::Ota(0), p)
    } else if let Some(p) = pick(0x20) {
        (SlotId::Test, p)
    } else {
        return Err(DeviceError::Input(
            "partition table: no app partition (factory, ota_0 or test) to put the firmware in"
                .into(),
        ));
    };

    let firmware = match &opts.firmware {
        Some(f) => f.clone(),
        // At the device's anti-rollback counter, so it boots.
        None => build_firmware(
            opts.chip,
            DEFAULT_PROJECT,
            DEFAULT_FIRMWARE_VERSION,
            opts.anti_rollback.unwrap_or(0),
        )?,
    };
    let mut vopts = VerifyOptions::new();
    vopts.chip = Some(opts.chip);
    vopts.slot_size = Some(app.size);
    vopts.require_app = true;
    vopts.min_secure_version = opts.anti_rollback;
    let info = verify(&firmware, &vopts).map_err(|e| {
        DeviceError::Input(format!(
            "firmware: {e} (the first app slot is {app_slot} at {:#x}, {} bytes)",
            app.offset, app.size
        ))
    })?;

    let bootloader = match &opts.bootloader {
        Some(b) => {
            let bi = inspect(b).map_err(|e| DeviceError::Input(format!("bootloader: {e}")))?;
            if bi.kind != ImageKind::Bootloader {
                return Err(DeviceError::Input(format!(
                    "bootloader: the file is {} image, not a bootloader",
                    bi.kind.name()
                )));
            }
            if bi.chip != opts.chip {
                return Err(DeviceError::Input(format!(
                    "bootloader: it is for {}, the device is {}",
                    bi.chip, opts.chip
                )));
            }
            b.clone()
        }
        None => placeholder_bootloader(opts.chip)?,
    };
    let boot_off = opts.chip.bootloader_offset();
    if u64::from(boot_off) + bootloader.len() as u64 > u64::from(opts.table_offset) {
        return Err(DeviceError::Input(format!(
            "bootloader: {} bytes at {boot_off:#x} run into the partition table at {:#x}",
            bootloader.len(),
            opts.table_offset
        )));
    }

    if !(1..=LFS_NAME_MAX_LIMIT).contains(&opts.lfs_name_max) {
        return Err(DeviceError::Input(format!(
            "littlefs name limit {} is out of range: littlefs accepts 1 to {LFS_NAME_MAX_LIMIT} (esp_littlefs's default is 64)",
            opts.lfs_name_max
        )));
    }
    let www = initial_www(&table, opts)?;

    fs::create_dir_all(dir).map_err(io(dir))?;
    fresh_wear(dir)?;
    let mut flash = SimFlash::create_file(&flash_path, size)?;
    flash.load(boot_off, &bootloader)?;
    flash.load(opts.table_offset, &table_bin)?;
    flash.load(app.offset, &firmware)?;
    for (off, bytes, _) in &www {
        flash.load(*off, bytes)?;
    }
    flash.sync()?;

    let config = DeviceConfigFile {
        format: CONFIG_FORMAT,
        chip: opts.chip.name().into(),
        flash_size: opts.flash_size,
        table_offset: opts.table_offset,
        rollback: opts.rollback,
        anti_rollback: opts.anti_rollback,
        token: opts.token.clone(),
        otadata_rule: default_rule(),
        lfs_name_max: opts.lfs_name_max,
        trusted_keys: opts.trusted_keys.iter().map(hex32).collect(),
        revoked_keys: opts.revoked_keys.iter().map(hex32).collect(),
    };
    write_config(dir, &config)?;

    let mut regions = vec![
        (boot_off, bootloader.len() as u32, "bootloader".to_string()),
        (
            opts.table_offset,
            table_bin.len() as u32,
            "partition table".to_string(),
        ),
    ];
    if let Some(od) = table
        .entries
        .iter()
        .map(|e| e.partition)
        .find(|p| p.ty == PartitionType::DATA && p.subtype.0 == 0x00)
    {
        regions.push((
            od.offset,
            od.size,
            "otadata (erased: no OTA yet)".to_string(),
        ));
    }
    regions.push((
        app.offset,
        firmware.len() as u32,
        format!("firmware in {app_slot}"),
    ));
    for (off, bytes, what) in www {
        regions.push((off, bytes.len() as u32, what));
    }
    regions.sort_by_key(|r| r.0);
    Ok(Created {
        dir: dir.to_path_buf(),
        regions,
        app_slot,
        firmware: info,
    })
}

/// The web UI in `www_0` and the NVS pointer selecting it, when the table
/// has web-UI slots: (offset, bytes, what) to load.
fn initial_www(
    table: &OwnedTable,
    opts: &CreateOptions,
) -> Result<Vec<(u32, Vec<u8>, String)>, DeviceError> {
    let Some(layout) =
        www::WwwLayout::from_table(table).map(|l| l.with_name_max(opts.lfs_name_max))
    else {
        if opts.www.is_some() {
            return Err(DeviceError::Input(
                "web UI: the partition table has no web-UI slots (data partitions labelled www_0 and www_1) to put it in".into(),
            ));
        }
        return Ok(Vec::new());
    };
    let slot = &layout.slots[0];
    let (image, what) = match &opts.www {
        Some(img) => {
            if img.len() != slot.size as usize {
                return Err(DeviceError::Input(format!(
                    "web UI: the image is {} bytes but www_0 is {} bytes ({:#x}); build it with the slot's size",
                    img.len(),
                    slot.size,
                    slot.size
                )));
            }
            www::inspect_ui_with(img, &layout.limits(img.len()))
                .map_err(|e| DeviceError::Input(format!("web UI: the image is not usable: {e}")))?;
            (img.clone(), "web UI in www_0")
        }
        None => (
            www::default_ui(slot.size).map_err(DeviceError::Input)?,
            "web UI in www_0 (built-in default)",
        ),
    };
    let mut out = vec![(slot.offset, image, what.to_string())];
    if let Some(nvs) = &layout.nvs {
        let part = www::initial_nvs(nvs.size, 0)
            .map_err(|e| DeviceError::Input(format!("NVS partition {}: {e}", nvs.name)))?;
        out.push((
            nvs.offset,
            part,
            format!("NVS: {}/{} = 0", www::NVS_NAMESPACE, www::NVS_KEY),
        ));
    }
    Ok(out)
}

/// What [`create_from_flash`] builds.
#[derive(Debug, Clone, Default)]
pub struct FromFlashOptions {
    /// The chip; `None` reads it from the bootloader's header.
    pub chip: Option<Chip>,
    /// Flash size; `None` reads it from the bootloader's header (the size
    /// `esptool` wrote there), else rounds the image up to 1, 2, 4, 8 or
    /// 16 MiB.
    pub flash_size: Option<u32>,
    /// Flash offset of the partition table.
    pub table_offset: Option<u32>,
    /// App rollback.
    pub rollback: bool,
    /// Anti-rollback with this initial eFuse counter.
    pub anti_rollback: Option<u32>,
    /// Bearer token for the HTTP API.
    pub token: Option<String>,
    /// Replace an existing device in the directory.
    pub force: bool,
    /// Secure Boot v2 key digests every update must be signed with.
    pub trusted_keys: Vec<[u8; 32]>,
    /// Revoked key digests.
    pub revoked_keys: Vec<[u8; 32]>,
}

/// What [`create_from_flash`] found.
#[derive(Debug, Clone)]
pub struct FromFlash {
    /// The chip.
    pub chip: Chip,
    /// Where the chip came from: `bootloader header` or `--chip`.
    pub chip_source: &'static str,
    /// Flash size in bytes.
    pub flash_size: u32,
    /// Where the size came from.
    pub size_source: &'static str,
    /// The bootloader's offset, when one was found for the chip.
    pub bootloader_offset: Option<u32>,
    /// The slot the first power-on would boot, `None` when nothing boots.
    pub boots: Option<SlotId>,
}

/// Finds the second-stage bootloader at the offset its chip boots it from.
fn find_bootloader(image: &[u8], chip: Option<Chip>) -> Option<(u32, ImageInfo)> {
    let mut offsets: Vec<u32> = Chip::all().map(Chip::bootloader_offset).collect();
    offsets.sort_unstable();
    offsets.dedup();
    offsets.into_iter().find_map(|off| {
        // Only the bootloader region: the rest of a full-flash image (table,
        // apps) would make it a merged image rather than a bootloader.
        let end = image.len().min(DEFAULT_TABLE_OFFSET as usize);
        let info = inspect(image.get(off as usize..end)?).ok()?;
        let ok = info.kind == ImageKind::Bootloader
            && info.chip.bootloader_offset() == off
            && chip.is_none_or(|c| c == info.chip);
        ok.then_some((off, info))
    })
}

/// Creates a virtual device whose flash is a real full-flash image (as
/// `esptool merge-bin` or `esptool read-flash` make): the bootloader model
/// reads its partition table and otadata and verifies its apps exactly as for
/// any other device.
pub fn create_from_flash(
    dir: &Path,
    image: &[u8],
    opts: &FromFlashOptions,
) -> Result<FromFlash, DeviceError> {
    check_keys(&opts.trusted_keys, &opts.revoked_keys)?;
    let _lock = lock_for_create(dir)?;
    let flash_path = dir.join(FLASH_FILE);
    if flash_path.exists() && !opts.force {
        return Err(DeviceError::Exists(dir.to_path_buf()));
    }
    let found = find_bootloader(image, opts.chip);
    let (chip, chip_source) = match (opts.chip, &found) {
        (Some(c), _) => (c, "--chip"),
        (None, Some((_, info))) => (info.chip, "bootloader header"),
        (None, None) => {
            return Err(DeviceError::Input(
                "no second-stage bootloader at 0x0, 0x1000 or 0x2000 to tell the chip from; pass --chip".into(),
            ))
        }
    };
    let header_size = found
        .as_ref()
        .and_then(|(_, info)| info.header.flash_size());
    let (flash_size, size_source) = match (opts.flash_size, header_size) {
        (Some(s), _) => (s, "--flash-size"),
        (None, Some(s)) if s as usize >= image.len() => (s, "bootloader header"),
        _ => {
            let s = [1u32 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20]
                .into_iter()
                .find(|&s| s as usize >= image.len())
                .ok_or_else(|| {
                    DeviceError::Input(format!(
                        "the image is {} bytes, more than the 16 MiB a virtual device has",
                        image.len()
                    ))
                })?;
            (s, "image length")
        }
    };
    crate::flash::validate_capacity(flash_size as usize).map_err(|_| {
        DeviceError::Input(format!(
            "flash size {flash_size:#x} is not supported: a virtual device has 1, 2, 4, 8 or 16 MiB of flash"
        ))
    })?;
    if image.len() > flash_size as usize {
        return Err(DeviceError::Input(format!(
            "the image is {} bytes but the flash is {flash_size} bytes; pass a larger --flash-size",
            image.len()
        )));
    }
    let table_offset = opts.table_offset.unwrap_or(DEFAULT_TABLE_OFFSET);
    // The table must read as the bootloader reads it.
    let mut probe = SimFlash::new(flash_size as usize)?;
    probe.load(0, image)?;
    SlotMap::read(&mut probe, table_offset).map_err(|e| {
        DeviceError::Input(format!(
            "the image has no usable partition table at {table_offset:#x}: {e}; is it a full-flash image (esptool merge-bin / read-flash)?"
        ))
    })?;

    fs::create_dir_all(dir).map_err(io(dir))?;
    fresh_wear(dir)?;
    let mut flash = SimFlash::create_file(&flash_path, flash_size as usize)?;
    flash.load(0, image)?;
    flash.sync()?;
    let config = DeviceConfigFile {
        format: CONFIG_FORMAT,
        chip: chip.name().into(),
        flash_size,
        table_offset,
        rollback: opts.rollback,
        anti_rollback: opts.anti_rollback,
        token: opts.token.clone(),
        otadata_rule: default_rule(),
        lfs_name_max: default_lfs_name_max(),
        trusted_keys: opts.trusted_keys.iter().map(hex32).collect(),
        revoked_keys: opts.revoked_keys.iter().map(hex32).collect(),
    };
    write_config(dir, &config)?;
    let dev = VirtualDevice::open(dir)?;
    let boots = dev.predict_boot()?;
    Ok(FromFlash {
        chip,
        chip_source,
        flash_size,
        size_source,
        bootloader_offset: found.map(|(o, _)| o),
        boots,
    })
}

/// Writes the device's whole flash to `out`, ready for `esptool write-flash 0x0`.
pub fn export(dir: &Path, out: &Path) -> Result<u64, DeviceError> {
    read_config(dir)?;
    let data = fs::read(dir.join(FLASH_FILE)).map_err(io(&dir.join(FLASH_FILE)))?;
    let tmp = out.with_extension("tmp-export");
    fs::write(&tmp, &data).map_err(io(&tmp))?;
    fs::rename(&tmp, out).map_err(io(out))?;
    Ok(data.len() as u64)
}

/// Writes `device.json` atomically (temporary file + rename), private to the
/// owner since it holds the token.
pub fn write_config(dir: &Path, config: &DeviceConfigFile) -> Result<(), DeviceError> {
    let path = dir.join(CONFIG_FILE);
    let tmp = dir.join(format!("{CONFIG_FILE}.tmp"));
    let text = serde_json::to_string_pretty(config).map_err(|e| DeviceError::Config {
        path: path.clone(),
        message: e.to_string(),
    })?;
    {
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(io(&tmp))?;
        }
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.write_all(b"\n").map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io(&path))
}

/// Reads and checks `device.json`.
pub fn read_config(dir: &Path) -> Result<DeviceConfigFile, DeviceError> {
    let path = dir.join(CONFIG_FILE);
    let text = fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DeviceError::Config {
                path: path.clone(),
                message: "not a virtual device (no device.json); create one with `otter device create DIR`".into(),
            }
        } else {
            DeviceError::Io {
                path: path.clone(),
                source: e,
            }
        }
    })?;
    let cfg: DeviceConfigFile = serde_json::from_str(&text).map_err(|e| DeviceError::Config {
        path: path.clone(),
        message: format!("damaged device config: {e}"),
    })?;
    if cfg.format != CONFIG_FORMAT {
        return Err(DeviceError::Config {
            path,
            message: format!(
                "device config format {} is not supported (this otter reads format {CONFIG_FORMAT})",
                cfg.format
            ),
        });
    }
    cfg.device_config()
        .map_err(|message| DeviceError::Config { path, message })?;
    Ok(cfg)
}

/// What happened at a power-on.
#[derive(Debug, Clone)]
pub struct PowerOn {
    /// The bootloader model's outcome (of the last boot, when start-up
    /// recovery needed a second one).
    pub boot: BootOutcome,
    /// The slot that runs, `None` when nothing bootable was found.
    pub running: Option<SlotId>,
    /// The running image, when one boots.
    pub image: Option<ImageInfo>,
    /// The running image's rollback state after start-up.
    pub state: Option<OtaState>,
    /// What the firmware's start-up recovery did.
    pub recovery: Recovery,
    /// `(before, after)` when this boot raised the eFuse counter.
    pub efuse_raised: Option<(u32, u32)>,
    /// Flash erases and programs this power-on made (bootloader + recovery).
    pub flash_writes: u64,
    /// The web UI mounted, `None` when the device has no web-UI slots.
    pub www: Option<www::WwwBoot>,
}

/// An opened virtual device: its flash and config.
pub struct VirtualDevice {
    dir: PathBuf,
    config: DeviceConfigFile,
    cfg: DeviceConfig,
    flash: SimFlash,
    /// What the last power-on mounted.
    www_boot: Option<www::WwwBoot>,
    /// The slots' status, read once and kept until a power-on or a write
    /// through [`VirtualDevice::www_flash`].
    www_slots: Option<Vec<www::WwwSlotStatus>>,
}

impl std::fmt::Debug for VirtualDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualDevice")
            .field("dir", &self.dir)
            .field("chip", &self.cfg.chip)
            .finish_non_exhaustive()
    }
}

/// A new flash chip has no wear: drop the erase counts of a device this one
/// replaces.
fn fresh_wear(dir: &Path) -> Result<(), DeviceError> {
    let wear = dir.join(WEAR_FILE);
    match fs::remove_file(&wear) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&wear)(e)),
        _ => Ok(()),
    }
}

impl VirtualDevice {
    /// Opens the device in `dir`.
    pub fn open(dir: &Path) -> Result<Self, DeviceError> {
        let config = read_config(dir)?;
        let cfg = config
            .device_config()
            .map_err(|message| DeviceError::Config {
                path: dir.join(CONFIG_FILE),
                message,
            })?;
        let path = dir.join(FLASH_FILE);
        if !path.is_file() {
            return Err(DeviceError::Config {
                path,
                message: "the device's flash image is missing".into(),
            });
        }
        // A device runs for as long as it is left running: keep the operation
        // log bounded (the counters and modelled time still cover everything).
        let mut flash =
            SimFlash::open_file(&path)?.with_log_policy(crate::LogPolicy::Last(LOG_RECORDS));
        // Erase counts per sector, kept beside the flash across runs.
        flash.track_wear(Some(&dir.join(WEAR_FILE)))?;
        if flash.capacity() != config.flash_size as usize {
            return Err(DeviceError::Config {
                path,
                message: format!(
                    "the flash image is {} bytes but device.json says {}",
                    flash.capacity(),
                    config.flash_size
                ),
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            cfg,
            flash,
            www_boot: None,
            www_slots: None,
        })
    }

    /// The device directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The engine configuration (with the current eFuse counter).
    pub fn config(&self) -> &DeviceConfig {
        &self.cfg
    }

    /// The stored config.
    pub fn config_file(&self) -> &DeviceConfigFile {
        &self.config
    }

    /// The flash.
    pub fn flash(&mut self) -> &mut SimFlash {
        &mut self.flash
    }

    /// The flash and the engine configuration together, for engine calls.
    pub fn parts(&mut self) -> (&mut SimFlash, &DeviceConfig) {
        (&mut self.flash, &self.cfg)
    }

    /// The slots, read from the on-flash partition table.
    pub fn slot_map(&mut self) -> Result<SlotMap, DeviceError> {
        Ok(SlotMap::read(&mut self.flash, self.cfg.table_offset)?)
    }

    /// Powers the device on: the bootloader model picks, verifies and boots
    /// an image (writing otadata as ESP-IDF's bootloader does), then the
    /// firmware's start-up recovery completes any otadata write a power cut
    /// interrupted (rebooting once if that changes which slot runs).
    pub fn power_on(&mut self) -> Result<PowerOn, DeviceError> {
        let before = self.flash.mutating_ops();
        let counter_before = self.cfg.anti_rollback;
        let mut out = boot(&mut self.flash, &self.cfg)?;
        self.note_efuse(out.anti_rollback)?;
        let mut recovery = Recovery::Clean;
        if out.booted.is_some() {
            recovery = recover(&mut self.flash, &self.cfg)?;
            if let Recovery::ConfirmCompleted { slot } = recovery {
                if out.booted.as_ref().map(|b| b.slot) != Some(slot) {
                    out = boot(&mut self.flash, &self.cfg)?;
                    self.note_efuse(out.anti_rollback)?;
                }
            }
        }
        let running = out.booted.as_ref().map(|b| b.slot);
        let state = match running {
            Some(slot) => running_state(&mut self.flash, &self.cfg, slot)?,
            None => None,
        };
        let efuse_raised = match (counter_before, self.cfg.anti_rollback) {
            (Some(a), Some(b)) if b > a => Some((a, b)),
            _ => None,
        };
        let www = self
            .www_layout()
            .map(|layout| www::mount(&mut self.flash, &layout));
        self.www_boot.clone_from(&www);
        self.www_slots = None;
        Ok(PowerOn {
            www,
            image: out.booted.as_ref().map(|b| b.image.clone()),
            boot: out,
            running,
            state,
            recovery,
            efuse_raised,
            flash_writes: self.flash.mutating_ops() - before,
        })
    }

    /// Burns the anti-rollback eFuse counter up to `secure_version` (as
    /// `esp_efuse_update_secure_version` does when the firmware confirms
    /// itself); a lower value or a device without anti-rollback is a no-op.
    pub fn raise_anti_rollback(&mut self, secure_version: u32) -> Result<(), DeviceError> {
        match self.cfg.anti_rollback {
            Some(c) if secure_version > c => self.note_efuse(Some(secure_version)),
            _ => Ok(()),
        }
    }

    fn note_efuse(&mut self, counter: Option<u32>) -> Result<(), DeviceError> {
        if counter != self.cfg.anti_rollback {
            self.cfg.anti_rollback = counter;
            self.config.anti_rollback = counter;
            write_config(&self.dir, &self.config)?;
        }
        Ok(())
    }

    /// The slot that would run if the device were powered on now, computed
    /// on a copy of the flash (nothing is written).
    pub fn predict_boot(&self) -> Result<Option<SlotId>, DeviceError> {
        let mut copy = self.flash.fork();
        let out = boot(&mut copy, &self.cfg)?;
        Ok(out.booted.map(|b| b.slot))
    }

    /// The web-UI slots, `None` when the table has none.
    pub fn www_layout(&mut self) -> Option<www::WwwLayout> {
        www::WwwLayout::read(&mut self.flash, self.cfg.table_offset)
            .map(|l| l.with_name_max(self.config.lfs_name_max))
    }

    /// The flash, for writing the web-UI slots or NVS: the cached slot
    /// status is dropped, so the next status reads them again. (Writes
    /// through [`flash`](Self::flash) do not refresh it: firmware updates
    /// never touch those partitions.)
    pub fn www_flash(&mut self) -> &mut SimFlash {
        self.www_slots = None;
        &mut self.flash
    }

    /// What the last power-on mounted (`None` before one, or without
    /// web-UI slots).
    pub fn www_boot(&self) -> Option<&www::WwwBoot> {
        self.www_boot.as_ref()
    }

    /// The `www` status: the last power-on's mount when `booted`, else what
    /// a power-on would mount now; the slots are read from flash once, and
    /// again after a power-on or a write through
    /// [`www_flash`](Self::www_flash).
    pub fn www_status(&mut self, booted: bool) -> Result<Option<www::WwwStatus>, DeviceError> {
        let Some(layout) = self.www_layout() else {
            return Ok(None);
        };
        let boot = match (&self.www_boot, booted) {
            (Some(b), true) => b.clone(),
            _ => www::mount(&mut self.flash, &layout),
        };
        let slots = match &self.www_slots {
            Some(s) => s.clone(),
            None => {
                let s = www::slot_statuses(&mut self.flash, &layout)?;
                self.www_slots = Some(s.clone());
                s
            }
        };
        Ok(Some(www::WwwStatus::new(&boot, slots)))
    }

    /// The diagnostics snapshot for a device running from `running`
    /// (`None`: not running; the slot the next power-on would boot is shown).
    pub fn status(&mut self, running: Option<SlotId>) -> Result<Status, DeviceError> {
        status::status(self, running)
    }
}
