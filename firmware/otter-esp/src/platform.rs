//! The `otter-device` platform over esp-storage's `FlashStorage`.

use alloc::vec;
use alloc::vec::Vec;

use embedded_storage::nor_flash::{NorFlash, NorFlashError, ReadNorFlash};
use otter_device::service::{FileRef, FileSource, Platform, SelfTestVerdict};
use otter_device::www::{InspectError, PointerError, UiInspector, UiSummary, WwwPointer};
use otter_format::nvs::{plan_set_u8, FlashOp, Nvs};
use otter_format::partition::{PartitionTable, MAX_TABLE_LEN};
use otter_ota::{Region, SlotId};

use crate::Flash;

/// The NVS namespace and key of the web-UI pointer (as ESP-IDF's
/// `nvs_set_u8("otter", "www_slot")` keeps it).
const NS: &str = "otter";
const KEY: &str = "www_slot";

/// The application's health check, asked at the end of the self-test window.
pub type Health = fn() -> bool;

/// What `otter-device` needs from the chip.
pub struct EspPlatform {
    nvs: Option<Region>,
    health: Health,
    /// The mounted web UI: the active `www` slot read into RAM.
    ui: Option<Vec<u8>>,
    /// Largest web-UI slot that is mounted (bytes of heap it takes).
    ui_budget: u32,
    /// The file last looked up, copied out of the image.
    cache: Option<Vec<u8>>,
    /// The decoder RAM lent to compressed and delta updates, allocated once
    /// ([`EspPlatform::with_decoders`]); `None`: such updates are refused
    /// (415 `decoder_unavailable`) before anything is erased.
    decoders: Option<Decoders>,
}

/// The inflater and the patch applier, on the heap for the firmware's life
/// (`otter_device::decode::INFLATER_RAM` + `APPLIER_RAM`, about 48 KB).
struct Decoders {
    inflate: alloc::boxed::Box<otter_device::decode::Inflater>,
    patch: alloc::boxed::Box<otter_device::decode::PatchApplier>,
}

fn flash_err<E: embedded_storage::nor_flash::NorFlashError>(e: E) -> PointerError {
    PointerError::Flash(e.kind())
}

impl EspPlatform {
    /// Reads the partition table at `table_offset` for the `nvs` partition.
    /// `ui_budget` bounds the web-UI slot mounted into RAM.
    pub fn new(flash: &mut Flash, table_offset: u32, health: Health, ui_budget: u32) -> Self {
        let mut raw = [0u8; MAX_TABLE_LEN];
        let nvs = ReadNorFlash::read(flash, table_offset, &mut raw)
            .ok()
            .and_then(|_| PartitionTable::from_binary(&raw).ok())
            .and_then(|t| {
                t.find_by_label("nvs").map(|p| Region {
                    offset: p.offset,
                    size: p.size,
                    label: p.label,
                })
            });
        Self {
            nvs,
            health,
            ui: None,
            ui_budget,
            cache: None,
            decoders: None,
        }
    }

    /// Lends decoder RAM to updates: gzip/zlib/deflate streams and
    /// `esp_delta_ota` patches (on `POST /update` with `Content-Encoding`,
    /// ESPHome's gzip, and pulls of a release's gzip or delta artifacts).
    /// Allocates about 48 KB of heap once; call it at boot, before the heap
    /// is shared, so the allocation cannot fail later.
    pub fn with_decoders(mut self) -> Self {
        self.decoders = Some(Decoders {
            inflate: alloc::boxed::Box::new(otter_device::decode::new_inflater()),
            patch: alloc::boxed::Box::new(otter_device::decode::new_applier()),
        });
        self
    }

    fn nvs_bytes(&self, flash: &mut Flash) -> Result<(Region, Vec<u8>), PointerError> {
        let r = self.nvs.ok_or(PointerError::Nvs)?;
        let mut buf = vec![0u8; r.size as usize];
        ReadNorFlash::read(flash, r.offset, &mut buf).map_err(flash_err)?;
        Ok((r, buf))
    }

    fn plan(&self, flash: &mut Flash, slot: u8) -> Result<(Region, Vec<FlashOp>), PointerError> {
        let (r, part) = self.nvs_bytes(flash)?;
        let ops = plan_set_u8(&part, NS, KEY, slot).map_err(|_| PointerError::Nvs)?;
        Ok((r, ops))
    }

    /// The device's settings (`otter_device::settings`, written by `otter
    /// firmware-config`) from the NVS partition, read once at boot and kept
    /// for the life of the firmware. `Ok(None)`: no NVS partition or
    /// nothing set in the settings namespace.
    pub fn settings(
        &self,
        flash: &mut Flash,
    ) -> Result<
        Option<otter_device::settings::Settings<'static>>,
        otter_device::settings::SettingsError,
    > {
        use otter_device::settings::{Settings, NAMESPACE};
        let Ok((_, part)) = self.nvs_bytes(flash) else {
            return Ok(None);
        };
        let Ok(nvs) = Nvs::parse(&part) else {
            log::warn!("settings: the nvs partition does not parse; using the build-time ones");
            return Ok(None);
        };
        drop(part);
        if !nvs.namespaces().any(|(_, n)| n == NAMESPACE) {
            return Ok(None);
        }
        let nvs: &'static Nvs = alloc::boxed::Box::leak(alloc::boxed::Box::new(nvs));
        Settings::read(|k| nvs.get_str(NAMESPACE, k), |k| nvs.get_u8(NAMESPACE, k)).map(Some)
    }

    /// Mounts `slot` (the device's active web-UI slot) read-only: reads it
    /// into RAM when it fits the budget and lists its files with
    /// otter-www's LittleFS reader.
    pub fn mount(&mut self, flash: &mut Flash, slot: Option<Region>) {
        self.ui = None;
        self.cache = None;
        let Some(r) = slot else { return };
        if r.size > self.ui_budget {
            log::warn!("www slot of {} bytes exceeds the UI budget", r.size);
            return;
        }
        let mut img = vec![0u8; r.size as usize];
        if ReadNorFlash::read(flash, r.offset, &mut img).is_err() {
            return;
        }
        if otter_www::read::Fs::mount(&img).is_err() {
            log::warn!("www slot at {:#x} does not mount", r.offset);
            return;
        }
        self.ui = Some(img);
    }
}

impl WwwPointer<Flash> for EspPlatform {
    fn read(&mut self, flash: &mut Flash) -> Result<Option<u8>, PointerError> {
        let (_, part) = self.nvs_bytes(flash)?;
        let nvs = Nvs::parse(&part).map_err(|_| PointerError::Nvs)?;
        Ok(nvs.get_u8(NS, KEY))
    }

    fn can_select(&mut self, flash: &mut Flash, slot: u8) -> Result<(), PointerError> {
        self.plan(flash, slot).map(|_| ())
    }

    fn select(&mut self, flash: &mut Flash, slot: u8) -> Result<(), PointerError> {
        let (r, ops) = self.plan(flash, slot)?;
        for op in &ops {
            let at = u32::try_from(op.offset())
                .ok()
                .and_then(|o| r.offset.checked_add(o))
                .ok_or(PointerError::Nvs)?;
            match op {
                FlashOp::Program { bytes, .. } => program(flash, at, bytes)?,
                FlashOp::Erase { .. } => {
                    let len = u32::try_from(op.len()).map_err(|_| PointerError::Nvs)?;
                    NorFlash::erase(flash, at, at + len).map_err(flash_err)?;
                }
            }
        }
        match WwwPointer::read(self, flash)? {
            Some(v) if v == slot => Ok(()),
            _ => Err(PointerError::Nvs),
        }
    }
}

/// Programs `bytes` at `at` through the driver's 4-byte write unit: the
/// bytes around an unaligned edge are written as 0xFF (which leaves flash
/// unchanged).
fn program(flash: &mut Flash, at: u32, bytes: &[u8]) -> Result<(), PointerError> {
    let start = at & !3;
    let end = (at + bytes.len() as u32 + 3) & !3;
    let mut buf = vec![0xFFu8; (end - start) as usize];
    let lead = (at - start) as usize;
    if let Some(d) = buf.get_mut(lead..lead + bytes.len()) {
        d.copy_from_slice(bytes);
    }
    NorFlash::write(flash, start, &buf).map_err(flash_err)
}

impl UiInspector<Flash> for EspPlatform {
    fn inspect(&mut self, flash: &mut Flash, slot: &Region) -> Result<UiSummary, InspectError> {
        // The superblock check is the device core's; the files are counted
        // when the slot fits the RAM budget.
        if slot.size > self.ui_budget {
            return Ok(UiSummary::default());
        }
        let mut img = vec![0u8; slot.size as usize];
        ReadNorFlash::read(flash, slot.offset, &mut img)
            .map_err(|e| InspectError::Flash(e.kind()))?;
        match otter_www::read::Fs::mount(&img) {
            Ok(fs) => Ok(UiSummary {
                files: fs.read_dir("/").ok().map(|d| d.len() as u32),
            }),
            Err(_) => Err(InspectError::Problem(
                otter_device::www::UiProblem::NotMountable,
            )),
        }
    }
}

impl FileSource for EspPlatform {
    fn mounted(&self) -> bool {
        self.ui.is_some()
    }

    fn lookup(&mut self, path: &str) -> Option<FileRef> {
        let img = self.ui.as_ref()?;
        let fs = otter_www::read::Fs::mount(img).ok()?;
        let data = fs.read_file(path).ok()?;
        // Small files are inline in LittleFS metadata: copy the file out
        // once per lookup and stream it from there.
        let len = data.len() as u32;
        self.cache = Some(data);
        Some(FileRef { id: 0, len })
    }

    fn read_file(&mut self, _id: u32, offset: u32, buf: &mut [u8]) -> usize {
        let Some(data) = self.cache.as_ref() else {
            return 0;
        };
        let rest = data.get(offset as usize..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        if let (Some(d), Some(s)) = (buf.get_mut(..n), rest.get(..n)) {
            d.copy_from_slice(s);
        }
        n
    }
}

impl Platform<Flash> for EspPlatform {
    fn raise_secure_version(&mut self, secure_version: u32) -> bool {
        // esp-hal reads eFuses but cannot burn them: report the raise as
        // failed unless the counter already covers the image.
        efuse_secure_version().is_some_and(|v| v >= secure_version)
    }

    fn self_test(&mut self) -> SelfTestVerdict {
        if (self.health)() {
            SelfTestVerdict::Passed
        } else {
            SelfTestVerdict::Failed
        }
    }

    fn decoder_ram(&mut self) -> otter_device::decode::DecoderRam<'_> {
        match self.decoders.as_mut() {
            Some(d) => otter_device::decode::DecoderRam {
                inflate: Some(&mut *d.inflate),
                patch: Some(&mut *d.patch),
            },
            None => otter_device::decode::DecoderRam::NONE,
        }
    }
}

/// The anti-rollback counter burned in eFuse (`SECURE_VERSION`, 16 bits on
/// the C3 and C6; ESP-IDF counts the bits set).
pub fn efuse_secure_version() -> Option<u32> {
    let raw: u16 = esp_hal::efuse::read_field_le(esp_hal::efuse::SECURE_VERSION);
    Some(raw.count_ones())
}

/// The slot the bootloader booted (the partition the MMU maps the running
/// code from), `None` when the table cannot be read.
pub fn running_slot(flash: &mut Flash) -> Option<SlotId> {
    let mut buf = [0u8; esp_bootloader_esp_idf::partitions::PARTITION_TABLE_MAX_LEN];
    let table = esp_bootloader_esp_idf::partitions::read_partition_table(flash, &mut buf).ok()?;
    let booted = table.booted_partition().ok()??;
    let mut raw = [0u8; MAX_TABLE_LEN];
    ReadNorFlash::read(flash, 0x8000, &mut raw).ok()?;
    let t = PartitionTable::from_binary(&raw).ok()?;
    let p = t.iter().find(|p| p.offset == booted.offset())?;
    if let Some(i) = p.ota_index() {
        Some(SlotId::Ota(i))
    } else if p.is_factory() {
        Some(SlotId::Factory)
    } else if p.is_test() {
        Some(SlotId::Test)
    } else {
        None
    }
}
