//! The device core that ships, on the harness's flash: otter-device's
//! [`Device`] and [`Connection`] answering HTTP requests that are fed to them
//! in TCP-segment-sized pieces, as the adapters on a chip and on the virtual
//! device feed them. Uploads (`POST /update`, `POST /api/ota/frontend`),
//! `POST /api/ota/confirm` and `POST /api/ota/rollback` in the scenario table
//! go through here, so a power cut falls inside the code that ships.
//!
//! The [`Platform`] is the harness's: the web-UI pointer in the device's NVS
//! partition (otter-format's `plan_set_u8`, garbage collection included,
//! carried out one flash operation at a time), the LittleFS check of
//! otter-www's reader, no files served, an eFuse counter in memory and a
//! self-test verdict. How the pointer is written is a [`PointerWrite`], so a
//! test can plug in a broken one and prove the table catches it.

use embedded_storage::nor_flash::{NorFlashErrorKind, ReadNorFlash};
use otter_device::service::{
    Action, Connection, Device, DeviceOptions, FileRef, FileSource, Platform, SelfTestVerdict,
};
use otter_device::www::{
    InspectError, PointerError, UiInspector, UiProblem, UiSummary, WwwPointer,
};
use otter_format::nvs::{plan_set_u8, FlashOp, Nvs};
use otter_ota::{DeviceConfig, OtaError, Region, SlotId};

use crate::device::www::{inspect_ui, UiProblem as SimUiProblem, NVS_KEY, NVS_NAMESPACE};
use crate::{SimFlash, SimFlashError};

use super::device::CHUNK;

/// How the platform carries out a planned NVS change (`ops`, offsets in the
/// partition at `base`). [`apply_in_order`] is the real one.
pub type PointerApply = fn(&mut SimFlash, u32, &[FlashOp]) -> Result<(), SimFlashError>;

/// How the platform writes the web-UI pointer.
#[derive(Debug, Clone, Copy)]
pub struct PointerWrite {
    /// Carries out the plan.
    pub apply: PointerApply,
    /// Writes the pointer already when the upload begins (in `can_select`),
    /// before a byte of the slot is written. Only broken variants set this.
    pub at_begin: bool,
    /// Name in reports ("nvs" for the real one).
    pub name: &'static str,
}

impl PointerWrite {
    /// The platform's real pointer write: the plan as planned, after the
    /// slot is written and checked.
    pub const REAL: Self = Self {
        apply: apply_in_order,
        at_begin: false,
        name: "nvs",
    };
}

/// The real [`PointerApply`]: every operation of the plan, in order.
pub fn apply_in_order(
    flash: &mut SimFlash,
    base: u32,
    ops: &[FlashOp],
) -> Result<(), SimFlashError> {
    crate::nvs::apply(flash, base, ops)
}

fn flash_kind<E>(_: E) -> NorFlashErrorKind {
    NorFlashErrorKind::Other
}

/// The harness's platform (module docs).
#[derive(Debug)]
pub struct HarnessPlatform {
    /// The NVS partition (offset, size), when the table has one.
    pub nvs: Option<(u32, u32)>,
    /// The eFuse counter the core asked to burn.
    pub burned: Option<u32>,
    /// What the self-test says.
    pub verdict: SelfTestVerdict,
    /// How the pointer is written.
    pub pointer: PointerWrite,
    /// The decoder RAM lent to compressed and delta uploads.
    pub inflate: Box<otter_device::decode::Inflater>,
    /// The `esp_delta_ota` applier.
    pub patch: Box<otter_device::decode::PatchApplier>,
}

impl Clone for HarnessPlatform {
    /// The same platform with fresh decoder RAM (it holds no state between
    /// updates).
    fn clone(&self) -> Self {
        Self {
            nvs: self.nvs,
            burned: self.burned,
            verdict: self.verdict,
            pointer: self.pointer,
            inflate: Box::new(otter_device::decode::new_inflater()),
            patch: Box::new(otter_device::decode::new_applier()),
        }
    }
}

impl HarnessPlatform {
    /// The platform of a device with its NVS partition at `nvs`.
    pub fn new(nvs: Option<(u32, u32)>, pointer: PointerWrite) -> Self {
        Self {
            nvs,
            burned: None,
            verdict: SelfTestVerdict::Passed,
            pointer,
            inflate: Box::new(otter_device::decode::new_inflater()),
            patch: Box::new(otter_device::decode::new_applier()),
        }
    }

    fn partition(&self, flash: &mut SimFlash) -> Result<(u32, Vec<u8>), PointerError> {
        let (at, size) = self.nvs.ok_or(PointerError::Nvs)?;
        let mut buf = vec![0u8; size as usize];
        flash
            .read(at, &mut buf)
            .map_err(|e| PointerError::Flash(flash_kind(e)))?;
        Ok((at, buf))
    }

    fn write_pointer(&mut self, flash: &mut SimFlash, slot: u8) -> Result<(), PointerError> {
        let (at, part) = self.partition(flash)?;
        let ops =
            plan_set_u8(&part, NVS_NAMESPACE, NVS_KEY, slot).map_err(|_| PointerError::Nvs)?;
        (self.pointer.apply)(flash, at, &ops).map_err(|e| PointerError::Flash(flash_kind(e)))?;
        match self.read(flash)? {
            Some(v) if v == slot => Ok(()),
            _ => Err(PointerError::Nvs),
        }
    }
}

impl WwwPointer<SimFlash> for HarnessPlatform {
    fn read(&mut self, flash: &mut SimFlash) -> Result<Option<u8>, PointerError> {
        if self.nvs.is_none() {
            return Ok(None);
        }
        let (_, part) = self.partition(flash)?;
        let nvs = Nvs::load(&part).map_err(|_| PointerError::Nvs)?;
        Ok(nvs.get_u8(NVS_NAMESPACE, NVS_KEY))
    }

    fn can_select(&mut self, flash: &mut SimFlash, slot: u8) -> Result<(), PointerError> {
        if self.pointer.at_begin {
            return self.write_pointer(flash, slot);
        }
        let (_, part) = self.partition(flash)?;
        plan_set_u8(&part, NVS_NAMESPACE, NVS_KEY, slot).map_err(|_| PointerError::Nvs)?;
        Ok(())
    }

    fn select(&mut self, flash: &mut SimFlash, slot: u8) -> Result<(), PointerError> {
        self.write_pointer(flash, slot)
    }
}

impl UiInspector<SimFlash> for HarnessPlatform {
    fn inspect(&mut self, flash: &mut SimFlash, slot: &Region) -> Result<UiSummary, InspectError> {
        let mut img = vec![0u8; slot.size as usize];
        flash
            .read(slot.offset, &mut img)
            .map_err(|e| InspectError::Flash(flash_kind(e)))?;
        match inspect_ui(&img) {
            Ok(s) => Ok(UiSummary {
                files: u32::try_from(s.files).ok(),
            }),
            Err(SimUiProblem::NoIndexHtml) => Err(InspectError::Problem(UiProblem::NoIndexHtml)),
            Err(SimUiProblem::NoSuperblock) => Err(InspectError::Problem(UiProblem::NoSuperblock)),
            Err(_) => Err(InspectError::Problem(UiProblem::NotMountable)),
        }
    }
}

impl FileSource for HarnessPlatform {
    fn mounted(&self) -> bool {
        false
    }

    fn lookup(&mut self, _path: &str) -> Option<FileRef> {
        None
    }

    fn read_file(&mut self, _id: u32, _offset: u32, _buf: &mut [u8]) -> usize {
        0
    }
}

impl Platform<SimFlash> for HarnessPlatform {
    fn raise_secure_version(&mut self, secure_version: u32) -> bool {
        self.burned = Some(
            self.burned
                .map_or(secure_version, |b| b.max(secure_version)),
        );
        true
    }

    fn self_test(&mut self) -> SelfTestVerdict {
        self.verdict
    }

    fn decoder_ram(&mut self) -> otter_device::decode::DecoderRam<'_> {
        otter_device::decode::DecoderRam {
            inflate: Some(&mut self.inflate),
            patch: Some(&mut self.patch),
        }
    }
}

/// One answer of the device core.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The error code of a JSON error answer (`"error"`), if any.
    pub code: Option<String>,
    /// What the connection asked the caller to do last.
    pub action: Action,
}

/// The device core booted on `flash`, running `running`.
pub struct Core {
    /// The service's device state.
    pub dev: Device,
    /// The platform.
    pub plat: HarnessPlatform,
}

impl Core {
    /// Powers the core on: `Device::boot` with the slot the bootloader booted.
    pub fn boot(
        flash: &mut SimFlash,
        cfg: &DeviceConfig,
        running: SlotId,
        pointer: PointerWrite,
    ) -> Result<Self, OtaError<SimFlashError>> {
        let nvs = super::pull::nvs_region(flash, cfg).map(|r| (r.offset, r.size));
        let mut plat = HarnessPlatform::new(nvs, pointer);
        let mut dev = Device::new(DeviceOptions::new(*cfg));
        dev.boot(flash, &mut plat, Some(running), 0)
            .map_err(|e| core_err(flash, e.code()))?;
        Ok(Self { dev, plat })
    }

    /// Sends one request over a fresh connection, `CHUNK` bytes at a time,
    /// and returns the first answer.
    pub fn request(&mut self, flash: &mut SimFlash, req: &[u8]) -> Answer {
        let mut head = [0u8; 2048];
        let mut tx = vec![0u8; 8192];
        let mut conn = Connection::new(&self.dev, &mut head, 0);
        let mut out: Vec<u8> = Vec::new();
        let mut last = Action::Read;
        'feed: for piece in req.chunks(CHUNK) {
            let mut input = piece;
            loop {
                let o = conn.handle(&mut self.dev, flash, &mut self.plat, input, 0, &mut tx);
                out.extend_from_slice(tx.get(..o.written).unwrap_or_default());
                out.extend_from_slice(o.tail);
                input = input.get(o.consumed..).unwrap_or_default();
                last = o.action;
                match o.action {
                    Action::Close | Action::Reboot(_) => break 'feed,
                    Action::Continue => {}
                    Action::Read | Action::CheckRelease if input.is_empty() => break,
                    Action::Read | Action::CheckRelease => {}
                }
                // A whole answer is out: the rest of the request is not read.
                if answer_complete(&out) {
                    break 'feed;
                }
            }
        }
        if !conn.is_closed() {
            conn.peer_closed(&mut self.dev, 0);
        }
        parse_answer(&out, last)
    }
}

fn answer_complete(out: &[u8]) -> bool {
    let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(out.get(..end).unwrap_or_default());
    if head.get(9..12) == Some("100") {
        return answer_complete(out.get(end + 4..).unwrap_or_default());
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    out.len() >= end + 4 + len
}

fn parse_answer(mut out: &[u8], action: Action) -> Answer {
    loop {
        let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Answer {
                status: 0,
                code: None,
                action,
            };
        };
        let head = String::from_utf8_lossy(out.get(..end).unwrap_or_default()).to_string();
        let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        out = out.get(end + 4..).unwrap_or_default();
        if status == 100 {
            continue;
        }
        let code = serde_json::from_slice::<serde_json::Value>(out)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned));
        return Answer {
            status,
            code,
            action,
        };
    }
}

/// `POST path` with `headers` and `body` as the raw body.
pub fn post_with(path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: otter\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    let mut v = r.into_bytes();
    v.extend_from_slice(body);
    v
}

/// `POST path` with `body` as the raw body.
pub fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: otter\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The error a refused request becomes: the cut when the flash lost power,
/// else the device's code.
fn core_err(flash: &SimFlash, code: &'static str) -> OtaError<SimFlashError> {
    if !flash.is_powered() {
        OtaError::Flash(SimFlashError::PowerLoss)
    } else {
        OtaError::Misuse(code)
    }
}

fn leak_code(code: Option<String>) -> &'static str {
    // The device's codes are a small fixed set; keep the message honest
    // without allocating per call.
    match code.as_deref() {
        Some("flash_error") => "flash_error",
        Some("nvs_error") => "nvs_error",
        Some("bad_image") => "bad_image",
        Some("busy") => "busy",
        Some("rollback_impossible") => "rollback_impossible",
        Some(_) => "refused by the device core",
        None => "no answer from the device core",
    }
}

fn expect(flash: &SimFlash, a: &Answer, status: u16) -> Result<(), OtaError<SimFlashError>> {
    if a.status == status {
        Ok(())
    } else {
        Err(core_err(flash, leak_code(a.code.clone())))
    }
}

/// A firmware update as a client sends it: `POST /update` with the image as
/// the raw body, through the device core. Returns the slot it selected.
pub fn http_update(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    image: &[u8],
) -> Result<SlotId, OtaError<SimFlashError>> {
    let mut core = Core::boot(flash, cfg, running, PointerWrite::REAL)?;
    let a = core.request(flash, &post("/update", image));
    expect(flash, &a, 200)?;
    core.dev
        .last_update()
        .and_then(|u| u.slot)
        .ok_or(OtaError::Misuse("the device core recorded no slot"))
}

/// A pulled firmware as the device core writes it
/// ([`Device::begin_pull_firmware`]: the first-sector comparison with the
/// slot, the resume point, a fresh start otherwise), then the body from
/// where it continues in `CHUNK`-byte pieces, verified and selected.
/// Returns the slot it selected.
pub fn core_pull(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    image: &[u8],
) -> Result<SlotId, OtaError<SimFlashError>> {
    use sha2::{Digest, Sha256};
    let mut core = Core::boot(flash, cfg, running, PointerWrite::REAL)?;
    let size = u32::try_from(image.len()).map_err(|_| OtaError::Misuse("image too large"))?;
    let sha: [u8; 32] = Sha256::digest(image).into();
    let head = image
        .get(..image.len().min(otter_device::service::SECTOR as usize))
        .unwrap_or_default();
    let from = core
        .dev
        .begin_pull_firmware(flash, size, sha, head, 0)
        .map_err(|e| core_err(flash, e.code()))?;
    let Core { dev, plat } = &mut core;
    for c in image.get(from as usize..).unwrap_or_default().chunks(CHUNK) {
        dev.write_pull(flash, plat, c)
            .map_err(|e| core_err(flash, e.code()))?;
    }
    let done = dev
        .finish_pull(flash, plat, 0)
        .map_err(|e| core_err(flash, e.code()))?;
    done.slot
        .ok_or(OtaError::Misuse("the device core selected no slot"))
}

/// A pulled firmware fetched as an encoded artifact (`artifact`, gzip or
/// an `esp_delta_ota` patch from the running image), as the device core
/// writes it ([`Device::begin_pull_encoded`]: the image's range erased, the
/// decoder stage with the platform's RAM, always from byte 0), then
/// verified and selected.
fn core_pull_encoded(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    image: &[u8],
    encoding: otter_device::decode::Encoding,
    artifact: &[u8],
) -> Result<SlotId, OtaError<SimFlashError>> {
    use sha2::{Digest, Sha256};
    let mut core = Core::boot(flash, cfg, running, PointerWrite::REAL)?;
    let size = u32::try_from(image.len()).map_err(|_| OtaError::Misuse("image too large"))?;
    let sha: [u8; 32] = Sha256::digest(image).into();
    let Core { dev, plat } = &mut core;
    dev.begin_pull_encoded(flash, plat, size, sha, encoding, artifact.len() as u64, 0)
        .map_err(|e| core_err(flash, e.code()))?;
    for c in artifact.chunks(CHUNK) {
        dev.write_pull(flash, plat, c)
            .map_err(|e| core_err(flash, e.code()))?;
    }
    let done = dev
        .finish_pull(flash, plat, 0)
        .map_err(|e| core_err(flash, e.code()))?;
    done.slot
        .ok_or(OtaError::Misuse("the device core selected no slot"))
}

/// A pull of the release's gzip artifact through the device core.
pub fn core_pull_gzip(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    image: &[u8],
) -> Result<SlotId, OtaError<SimFlashError>> {
    let gz = encoded::gzip(image);
    core_pull_encoded(
        flash,
        cfg,
        running,
        image,
        otter_device::decode::Encoding::Gzip,
        &gz,
    )
}

/// A pull of the release's delta artifact (an `esp_delta_ota` patch from
/// the image in the running slot) through the device core: the running
/// slot read, the other written.
pub fn core_pull_delta(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    image: &[u8],
) -> Result<SlotId, OtaError<SimFlashError>> {
    let old = encoded::running_image(flash, cfg, running)?;
    let patch = encoded::patch(&old, image).map_err(OtaError::Misuse)?;
    core_pull_encoded(
        flash,
        cfg,
        running,
        image,
        otter_device::decode::Encoding::EspDelta,
        &patch,
    )
}

/// The same update sent gzip-compressed (`Content-Encoding: gzip`, level
/// 9): the core inflates it into the slot as it arrives.
pub fn http_gzip_update(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    image: &[u8],
) -> Result<SlotId, OtaError<SimFlashError>> {
    let body = encoded::gzip(image);
    let mut core = Core::boot(flash, cfg, running, PointerWrite::REAL)?;
    let a = core.request(
        flash,
        &post_with("/update", &["Content-Encoding: gzip"], &body),
    );
    expect(flash, &a, 200)?;
    core.dev
        .last_update()
        .and_then(|u| u.slot)
        .ok_or(OtaError::Misuse("the device core recorded no slot"))
}

/// The same update sent as an `esp_delta_ota` patch from the image in the
/// running slot (`Content-Type: application/x-esp-delta-ota`): the core
/// reads the running slot and writes the other.
pub fn http_delta_update(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    image: &[u8],
) -> Result<SlotId, OtaError<SimFlashError>> {
    let old = encoded::running_image(flash, cfg, running)?;
    let body = encoded::patch(&old, image).map_err(OtaError::Misuse)?;
    let mut core = Core::boot(flash, cfg, running, PointerWrite::REAL)?;
    let a = core.request(
        flash,
        &post_with(
            "/update",
            &["Content-Type: application/x-esp-delta-ota"],
            &body,
        ),
    );
    expect(flash, &a, 200)?;
    core.dev
        .last_update()
        .and_then(|u| u.slot)
        .ok_or(OtaError::Misuse("the device core recorded no slot"))
}

/// Encoded bodies, made once per image (every cut of a row sends the same).
mod encoded {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    use embedded_storage::nor_flash::ReadNorFlash;
    use otter_delta::encode::{esp_delta_patch, PatchCompression};
    use otter_format::image::inspect;
    use otter_ota::{DeviceConfig, OtaError, SlotId, SlotMap};
    use sha2::{Digest, Sha256};

    use crate::{SimFlash, SimFlashError};

    type Cache = Mutex<HashMap<[u8; 32], Vec<u8>>>;

    fn cached(
        key: [u8; 32],
        make: impl FnOnce() -> Result<Vec<u8>, &'static str>,
    ) -> Result<Vec<u8>, &'static str> {
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let cache = CACHE.get_or_init(Cache::default);
        if let Some(v) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(v);
        }
        let v = make()?;
        if let Ok(mut c) = cache.lock() {
            c.insert(key, v.clone());
        }
        Ok(v)
    }

    /// gzip (RFC 1952) of `image` at level 9.
    pub fn gzip(image: &[u8]) -> Vec<u8> {
        let key: [u8; 32] = Sha256::new()
            .chain_update(b"gzip")
            .chain_update(image)
            .finalize()
            .into();
        cached(key, || {
            let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 0xff];
            v.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(image, 9));
            let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(image);
            v.extend_from_slice(&crc.to_le_bytes());
            v.extend_from_slice(&(image.len() as u32).to_le_bytes());
            Ok(v)
        })
        .unwrap_or_default()
    }

    /// An esp_delta_ota patch (heatshrink) from `old` to `new`.
    pub fn patch(old: &[u8], new: &[u8]) -> Result<Vec<u8>, &'static str> {
        let key: [u8; 32] = Sha256::new()
            .chain_update(b"patch")
            .chain_update(old)
            .chain_update(new)
            .finalize()
            .into();
        cached(key, || {
            let sha = inspect(old)
                .ok()
                .and_then(|i| i.sha256)
                .ok_or("the running image has no appended SHA-256")?;
            esp_delta_patch(&sha.stored, old, new, PatchCompression::default())
                .map_err(|_| "the patch could not be made")
        })
    }

    /// The app image in the running slot (up to its appended SHA-256).
    pub fn running_image(
        flash: &mut SimFlash,
        cfg: &DeviceConfig,
        running: SlotId,
    ) -> Result<Vec<u8>, OtaError<SimFlashError>> {
        let map = SlotMap::read(flash, cfg.table_offset)?;
        let region = *map
            .region(running)
            .ok_or(OtaError::Misuse("no running slot"))?;
        let mut slot = vec![0u8; region.size as usize];
        flash
            .read(region.offset, &mut slot)
            .map_err(OtaError::Flash)?;
        let len = inspect(&slot)
            .map_err(|_| OtaError::Misuse("the running slot holds no app image"))?
            .image_len as usize;
        slot.truncate(len);
        Ok(slot)
    }
}

/// `POST /api/ota/confirm` through the device core on `running`; returns the
/// eFuse counter the core burned, if any.
pub fn http_confirm(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
) -> Result<Option<u32>, OtaError<SimFlashError>> {
    let mut core = Core::boot(flash, cfg, running, PointerWrite::REAL)?;
    let a = core.request(flash, &post("/api/ota/confirm", b""));
    expect(flash, &a, 200)?;
    Ok(core.plat.burned)
}

/// `POST /api/ota/rollback` through the device core on `running`.
pub fn http_rollback(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
) -> Result<(), OtaError<SimFlashError>> {
    let mut core = Core::boot(flash, cfg, running, PointerWrite::REAL)?;
    let a = core.request(flash, &post("/api/ota/rollback", b""));
    expect(flash, &a, 200)
}

/// A web-UI update: `POST /api/ota/frontend` with the LittleFS image as the
/// raw body, through the device core, with the pointer written by `pointer`.
/// Returns the slot index it selected.
pub fn http_www_update(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
    image: &[u8],
    pointer: PointerWrite,
) -> Result<u8, OtaError<SimFlashError>> {
    let mut core = Core::boot(flash, cfg, running, pointer)?;
    let a = core.request(flash, &post("/api/ota/frontend", image));
    expect(flash, &a, 200)?;
    core.dev
        .last_update()
        .and_then(|u| u.www_slot)
        .ok_or(OtaError::Misuse("the device core recorded no web-UI slot"))
}

/// The self-test of a pending image fails: the core boots `running`, its
/// self-test window ends with [`SelfTestVerdict::Failed`], and
/// `Device::tick` marks the image invalid and asks for the reboot.
pub fn core_selftest_fail(
    flash: &mut SimFlash,
    cfg: &DeviceConfig,
    running: SlotId,
) -> Result<(), OtaError<SimFlashError>> {
    let mut core = Core::boot(flash, cfg, running, PointerWrite::REAL)?;
    core.plat.verdict = SelfTestVerdict::Failed;
    let end = core.dev.options_mut().selftest_window_ms;
    match core.dev.tick(flash, &mut core.plat, end) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(OtaError::Misuse(
            "the self-test did not run: the image is not pending",
        )),
        Err(e) => Err(core_err(flash, e.code())),
    }
}
