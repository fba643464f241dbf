//! The virtual device's [`Platform`] for `otter-device`: the web-UI pointer
//! in the simulator's NVS partition (written with `otter_sim::nvs::apply`),
//! the full LittleFS check of otter-www's reader (mount limits, file list,
//! `/index.html`), the mounted UI's files, the anti-rollback eFuse and the
//! behaviour profile's self-test verdict.

use std::sync::Arc;

use otter_device::service::{FileRef, FileSource, Platform, SelfTestVerdict, StatusField};
use otter_device::www::{
    InspectError, PointerError, UiInspector, UiProblem, UiSummary, WwwPointer,
};
use otter_device::JsonOut;
use otter_format::nvs::{plan_set_u8, Nvs};
use otter_ota::Region;
use otter_sim::device::www::{self as image, NVS_KEY, NVS_NAMESPACE};
use otter_sim::embedded_storage::nor_flash::{NorFlashErrorKind, ReadNorFlash};
use otter_sim::SimFlash;

use crate::behavior::Behavior;

fn flash_err<E>(_: E) -> NorFlashErrorKind {
    NorFlashErrorKind::Other
}

fn read_region(flash: &mut SimFlash, at: u32, len: u32) -> Result<Vec<u8>, NorFlashErrorKind> {
    let mut buf = vec![0u8; len as usize];
    flash.read(at, &mut buf).map_err(flash_err)?;
    Ok(buf)
}

/// What the virtual device's firmware provides to the core.
#[derive(Debug, Default)]
pub struct SimPlatform {
    /// The NVS partition (offset, size), when the table has one.
    pub nvs: Option<(u32, u32)>,
    /// The mounted web UI's files, path and contents.
    pub files: Option<Vec<(String, Vec<u8>)>>,
    /// The running firmware's behaviour (its self-test verdict).
    pub behavior: Behavior,
    /// A counter the core asked to burn, for the caller to persist.
    pub burned: Option<u32>,
    /// What the last power-on mounted, and where the slots are.
    pub www: Option<(image::WwwBoot, image::WwwLayout)>,
    /// What the host keeps of the status document (boot-loop rollbacks, the
    /// pull client).
    pub status: Option<StatusSource>,
    /// The decoder RAM the virtual device lends to compressed and delta
    /// updates (both parts by default, as a firmware built with them).
    pub decoders: SimDecoders,
}

/// The decoder RAM of a virtual device ([`otter_device::decode`]): each
/// part boxed once and reset in place per update; `None` plays a firmware
/// that does not lend it (uploads that need it get 415
/// `decoder_unavailable`).
#[derive(Debug)]
pub struct SimDecoders {
    /// The inflater (gzip, zlib, deflate).
    pub inflate: Option<Box<otter_device::decode::Inflater>>,
    /// The `esp_delta_ota` patch applier.
    pub patch: Option<Box<otter_device::decode::PatchApplier>>,
}

impl Default for SimDecoders {
    fn default() -> Self {
        Self {
            inflate: Some(Box::new(otter_device::decode::new_inflater())),
            patch: Some(Box::new(otter_device::decode::new_applier())),
        }
    }
}

impl SimDecoders {
    /// No decoder RAM: plain images only.
    pub fn none() -> Self {
        Self {
            inflate: None,
            patch: None,
        }
    }
}

/// Status fields the host supplies: a field's JSON value, or `None` for the
/// core's own. The flash is lent for what only it can say (the digest of a
/// rolled-back image); the device itself is locked by the caller.
#[derive(Clone)]
#[allow(clippy::type_complexity)]
pub struct StatusSource(
    pub Arc<dyn Fn(StatusField, &mut SimFlash) -> Option<String> + Send + Sync>,
);

/// The SHA-256 (hex) of the app image in the slot named `slot` (`ota_1`,
/// `factory`), as uploaded: its verified length, hashed in fixed chunks.
pub fn slot_image_sha256(flash: &mut SimFlash, table_offset: u32, slot: &str) -> Option<String> {
    let map = otter_ota::SlotMap::read(flash, table_offset).ok()?;
    let region = *map.slots().find(|(id, _)| id.to_string() == slot)?.1;
    let info = otter_ota::verify_slot(flash, &region, otter_format::image::VerifyOptions::new())
        .ok()?
        .ok()?;
    let h = otter_device::www::hash_region(flash, &region, info.image_len).ok()?;
    Some(h.iter().map(|b| format!("{b:02x}")).collect())
}

impl std::fmt::Debug for StatusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatusSource")
    }
}

impl SimPlatform {
    /// Mounts the UI in `slot` (the slot the core found mountable at boot):
    /// reads its files, or none when they do not read.
    pub fn mount(&mut self, flash: &mut SimFlash, slot: Option<&Region>) -> Result<(), String> {
        self.files = None;
        let Some(r) = slot else { return Ok(()) };
        let img = read_region(flash, r.offset, r.size).map_err(|e| format!("{e:?}"))?;
        let files = image::read_ui_files(&img).map_err(|e| e.to_string())?;
        self.files = Some(files);
        Ok(())
    }

    fn nvs(&self) -> Result<(u32, u32), PointerError> {
        self.nvs.ok_or(PointerError::Nvs)
    }
}

impl WwwPointer<SimFlash> for SimPlatform {
    fn read(&mut self, flash: &mut SimFlash) -> Result<Option<u8>, PointerError> {
        let Some((at, size)) = self.nvs else {
            return Ok(None);
        };
        let part = read_region(flash, at, size).map_err(PointerError::Flash)?;
        let nvs = Nvs::load(&part).map_err(|_| PointerError::Nvs)?;
        Ok(nvs.get_u8(NVS_NAMESPACE, NVS_KEY))
    }

    fn can_select(&mut self, flash: &mut SimFlash, slot: u8) -> Result<(), PointerError> {
        let (at, size) = self.nvs()?;
        let part = read_region(flash, at, size).map_err(PointerError::Flash)?;
        plan_set_u8(&part, NVS_NAMESPACE, NVS_KEY, slot).map_err(|_| PointerError::Nvs)?;
        Ok(())
    }

    fn select(&mut self, flash: &mut SimFlash, slot: u8) -> Result<(), PointerError> {
        let (at, size) = self.nvs()?;
        let part = read_region(flash, at, size).map_err(PointerError::Flash)?;
        let ops =
            plan_set_u8(&part, NVS_NAMESPACE, NVS_KEY, slot).map_err(|_| PointerError::Nvs)?;
        otter_sim::nvs::apply(flash, at, &ops).map_err(|e| PointerError::Flash(flash_err(e)))?;
        match self.read(flash)? {
            Some(v) if v == slot => Ok(()),
            _ => Err(PointerError::Nvs),
        }
    }
}

impl UiInspector<SimFlash> for SimPlatform {
    fn inspect(&mut self, flash: &mut SimFlash, slot: &Region) -> Result<UiSummary, InspectError> {
        use otter_www::limits::MountRefusal as R;
        let img = read_region(flash, slot.offset, slot.size).map_err(InspectError::Flash)?;
        let limits = match &self.www {
            Some((_, layout)) => layout.limits(img.len()),
            None => otter_www::limits::MountLimits::esp_littlefs(slot.size),
        };
        let problem = match image::inspect_ui_with(&img, &limits) {
            Ok(s) => {
                return Ok(UiSummary {
                    files: u32::try_from(s.files).ok(),
                })
            }
            Err(image::UiProblem::NoIndexHtml) => UiProblem::NoIndexHtml,
            Err(image::UiProblem::NoSuperblock) => UiProblem::NoSuperblock,
            Err(image::UiProblem::TooManyFiles(n)) => UiProblem::TooManyFiles {
                found: u32::try_from(n).unwrap_or(u32::MAX),
                max: image::MAX_UI_FILES as u32,
            },
            Err(image::UiProblem::Refused(R::NameMax { found, max })) => {
                UiProblem::NameMax { found, max }
            }
            Err(image::UiProblem::Refused(R::DiskVersion { found, max })) => {
                UiProblem::DiskVersion { found, max }
            }
            Err(image::UiProblem::Refused(R::BlockCount {
                found,
                expected,
                block_size,
            })) => UiProblem::Geometry {
                image_blocks: found,
                block_size,
                slot_blocks: expected,
            },
            Err(image::UiProblem::Refused(R::BlockSize { found, expected })) => {
                UiProblem::Geometry {
                    image_blocks: 0,
                    block_size: found,
                    slot_blocks: slot.size / expected.max(1),
                }
            }
            Err(_) => UiProblem::NotMountable,
        };
        Err(InspectError::Problem(problem))
    }
}

impl FileSource for SimPlatform {
    fn mounted(&self) -> bool {
        self.files.is_some()
    }

    fn lookup(&mut self, path: &str) -> Option<FileRef> {
        let files = self.files.as_ref()?;
        let i = files.iter().position(|(p, _)| p == path)?;
        Some(FileRef {
            id: u32::try_from(i).ok()?,
            len: u32::try_from(files.get(i)?.1.len()).ok()?,
        })
    }

    fn read_file(&mut self, id: u32, offset: u32, buf: &mut [u8]) -> usize {
        let Some((_, data)) = self.files.as_ref().and_then(|f| f.get(id as usize)) else {
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

impl Platform<SimFlash> for SimPlatform {
    fn status_field(
        &mut self,
        flash: &mut SimFlash,
        field: StatusField,
        out: &mut JsonOut<'_>,
    ) -> bool {
        let text = match field {
            StatusField::Www => self.www.as_ref().and_then(|(boot, layout)| {
                let slots = image::slot_statuses(flash, layout).ok()?;
                serde_json::to_string(&image::WwwStatus::new(boot, slots)).ok()
            }),
            _ => self.status.as_ref().and_then(|s| (s.0)(field, flash)),
        };
        match text {
            Some(v) => {
                out.raw(&v);
                true
            }
            None => false,
        }
    }

    fn raise_secure_version(&mut self, secure_version: u32) -> bool {
        self.burned = Some(
            self.burned
                .map_or(secure_version, |b| b.max(secure_version)),
        );
        true
    }

    fn self_test(&mut self) -> SelfTestVerdict {
        match self.behavior {
            Behavior::FailSelftest => SelfTestVerdict::Failed,
            _ => SelfTestVerdict::Passed,
        }
    }

    fn decoder_ram(&mut self) -> otter_device::decode::DecoderRam<'_> {
        otter_device::decode::DecoderRam {
            inflate: self.decoders.inflate.as_deref_mut(),
            patch: self.decoders.patch.as_deref_mut(),
        }
    }
}
