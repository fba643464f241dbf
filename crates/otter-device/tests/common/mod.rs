//! A device on the strict NOR-flash simulator, driven through
//! `Connection::handle` with no socket.
#![allow(dead_code)]

use otter_device::service::{
    Action, CheckResult, Connection, Device, DeviceOptions, FileRef, FileSource, Platform,
    SelfTestVerdict,
};
use otter_device::www::{InspectError, PointerError, UiInspector, UiSummary, WwwPointer};
use otter_format::chip::Chip;
use otter_format::image::AppImageBuilder;
use otter_format::partition::{CsvOptions, OwnedTable};
use otter_ota::{DeviceConfig, Region, SlotId};
use otter_sim::SimFlash;
use sha2::{Digest, Sha256};

/// nvs + otadata + two 1 MiB app slots + two 256 KiB web-UI slots.
pub const CSV: &str = "\
nvs,      data, nvs,      0x9000,   0x5000
otadata,  data, ota,      0xe000,   0x2000
ota_0,    app,  ota_0,    0x10000,  0x100000
ota_1,    app,  ota_1,    0x110000, 0x100000
www_0,    data, littlefs, 0x210000, 0x40000
www_1,    data, littlefs, 0x250000, 0x40000
";
/// ota_0 + ota_1 only: no web-UI slots.
pub const CSV_NO_WWW: &str = "\
nvs,      data, nvs,      0x9000,   0x5000
otadata,  data, ota,      0xe000,   0x2000
ota_0,    app,  ota_0,    0x10000,  0x100000
ota_1,    app,  ota_1,    0x110000, 0x100000
";
/// A factory app only: no OTA slot.
pub const CSV_NO_OTA: &str = "\
nvs,      data, nvs,      0x9000,   0x5000
factory,  app,  factory,  0x10000,  0x100000
";
pub const WWW_SIZE: u32 = 0x40000;
pub const WWW0: u32 = 0x210000;
pub const WWW1: u32 = 0x250000;
pub const TOKEN: &str = "s3cret-token";
pub const PAGE: &[u8] = b"<!doctype html><title>Update</title>";

pub fn app(chip: Chip, version: &str, secure_version: u32, size: u32) -> Vec<u8> {
    AppImageBuilder::new(chip)
        .version(version)
        .project_name("app")
        .secure_version(secure_version)
        .size(size)
        .build()
        .expect("test image builds")
}

pub fn c3(version: &str) -> Vec<u8> {
    app(Chip::Esp32c3, version, 0, 72_000)
}

pub fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn corpus_c3() -> Vec<u8> {
    let dir = std::env::var("OTTER_CORPUS").unwrap_or_else(|_| "../../../shared/corpus".into());
    let p =
        std::path::Path::new(&dir).join("app-images/esp-serial-flasher/hello_world-esp32c3.bin");
    std::fs::read(&p).unwrap_or_else(|e| panic!("the corpus image {} is needed: {e}", p.display()))
}

pub fn ui_image() -> Vec<u8> {
    otter_sim::device::www::default_ui(WWW_SIZE).expect("the default UI builds")
}

/// The platform of the tests: the pointer in memory, files in memory.
#[derive(Debug, Default)]
pub struct TestPlatform {
    pub pointer: Option<u8>,
    pub nvs_full: bool,
    pub files: Vec<(String, Vec<u8>)>,
    pub burned: Vec<u32>,
    pub verdict: Option<SelfTestVerdict>,
    pub reject_ui: bool,
    /// Decoder RAM lent (both parts unless a test takes them away).
    pub inflate: Option<Box<otter_device::decode::Inflater>>,
    pub patch: Option<Box<otter_device::decode::PatchApplier>>,
}

/// Where the NVS partition of [`CSV`] is.
pub const NVS_AT: u32 = 0x9000;
pub const NVS_SIZE: u32 = 0x5000;

fn read_nvs(f: &mut SimFlash) -> Result<Vec<u8>, PointerError> {
    use otter_sim::embedded_storage::nor_flash::ReadNorFlash;
    let mut buf = vec![0u8; NVS_SIZE as usize];
    f.read(NVS_AT, &mut buf).map_err(|_| {
        PointerError::Flash(otter_sim::embedded_storage::nor_flash::NorFlashErrorKind::Other)
    })?;
    Ok(buf)
}

/// The pointer kept in a real NVS partition (otter-format's `nvs_set_u8`
/// plan), as the virtual device keeps it; `nvs_full` makes it refuse.
impl WwwPointer<SimFlash> for TestPlatform {
    fn read(&mut self, f: &mut SimFlash) -> Result<Option<u8>, PointerError> {
        let part = read_nvs(f)?;
        let nvs = otter_format::nvs::Nvs::parse(&part).map_err(|_| PointerError::Nvs)?;
        Ok(nvs.get_u8("otter", "www_slot"))
    }
    fn can_select(&mut self, f: &mut SimFlash, slot: u8) -> Result<(), PointerError> {
        if self.nvs_full {
            return Err(PointerError::Nvs);
        }
        let part = read_nvs(f)?;
        otter_format::nvs::plan_set_u8(&part, "otter", "www_slot", slot)
            .map_err(|_| PointerError::Nvs)?;
        Ok(())
    }
    fn select(&mut self, f: &mut SimFlash, slot: u8) -> Result<(), PointerError> {
        self.can_select(f, slot)?;
        let part = read_nvs(f)?;
        let ops = otter_format::nvs::plan_set_u8(&part, "otter", "www_slot", slot)
            .map_err(|_| PointerError::Nvs)?;
        otter_sim::nvs::apply(f, NVS_AT, &ops).map_err(|_| {
            PointerError::Flash(otter_sim::embedded_storage::nor_flash::NorFlashErrorKind::Other)
        })?;
        match self.read(f)? {
            Some(v) if v == slot => {
                self.pointer = Some(slot);
                Ok(())
            }
            _ => Err(PointerError::Nvs),
        }
    }
}

impl UiInspector<SimFlash> for TestPlatform {
    fn inspect(&mut self, _f: &mut SimFlash, _slot: &Region) -> Result<UiSummary, InspectError> {
        if self.reject_ui {
            Err(InspectError::Problem(
                otter_device::www::UiProblem::NoIndexHtml,
            ))
        } else {
            Ok(UiSummary { files: Some(1) })
        }
    }
}

impl FileSource for TestPlatform {
    fn mounted(&self) -> bool {
        !self.files.is_empty()
    }
    fn lookup(&mut self, path: &str) -> Option<FileRef> {
        let i = self.files.iter().position(|(p, _)| p == path)?;
        Some(FileRef {
            id: i as u32,
            len: self.files[i].1.len() as u32,
        })
    }
    fn read_file(&mut self, id: u32, offset: u32, buf: &mut [u8]) -> usize {
        let data = &self.files[id as usize].1;
        let rest = &data[offset as usize..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        n
    }
}

impl Platform<SimFlash> for TestPlatform {
    fn raise_secure_version(&mut self, v: u32) -> bool {
        self.burned.push(v);
        true
    }
    fn decoder_ram(&mut self) -> otter_device::decode::DecoderRam<'_> {
        otter_device::decode::DecoderRam {
            inflate: self.inflate.as_deref_mut(),
            patch: self.patch.as_deref_mut(),
        }
    }
    fn self_test(&mut self) -> SelfTestVerdict {
        self.verdict.unwrap_or(SelfTestVerdict::Passed)
    }
}

/// A device under test.
pub struct Rig {
    pub flash: SimFlash,
    pub dev: Device,
    pub plat: TestPlatform,
    pub now: u64,
    /// What the pull client decides when a connection asks for a release
    /// check (`Action::CheckRelease`); `None`: it never decides.
    pub check: Option<(CheckResult, String)>,
}

/// One answer, parsed.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
    pub action: Action,
    pub continue_sent: bool,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn code(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_string()
    }
}

pub fn opts(rollback: bool, anti: Option<u32>, token: bool) -> DeviceOptions {
    let mut o = DeviceOptions::new(
        DeviceConfig::new(Chip::Esp32c3)
            .with_rollback(rollback)
            .with_anti_rollback(anti),
    );
    o.update_page = PAGE;
    if token {
        o.token_sha256 = Some(Sha256::digest(TOKEN.as_bytes()).into());
    }
    o
}

impl Rig {
    pub fn with(csv: &str, image: &[u8], o: DeviceOptions) -> Self {
        let ui = csv.contains("www_0").then(ui_image);
        Self::with_ui(csv, image, o, ui.as_deref())
    }

    /// [`Rig::with`], with `ui` (if any) in `www_0` at [`WWW0`].
    pub fn with_ui(csv: &str, image: &[u8], o: DeviceOptions, ui: Option<&[u8]>) -> Self {
        let bin = OwnedTable::from_csv(csv, &CsvOptions::default())
            .expect("test table parses")
            .to_binary(true)
            .expect("test table encodes");
        let mut flash = SimFlash::new(4 << 20).expect("4 MiB flash");
        flash.load(0x8000, &bin).expect("table fits");
        flash.load(0x10000, image).expect("image fits");
        let nvs = otter_sim::device::www::initial_nvs(NVS_SIZE, 0).expect("NVS image");
        flash.load(NVS_AT, &nvs).expect("NVS fits");
        if let Some(ui) = ui {
            flash.load(WWW0, ui).expect("UI fits");
        }
        let mut rig = Self {
            flash,
            dev: Device::new(o),
            plat: TestPlatform::default(),
            now: 1000,
            check: None,
        };
        rig.boot();
        rig
    }

    pub fn new() -> Self {
        Self::with(CSV, &c3("1.0.0"), opts(false, None, false))
    }

    /// Power-on: the bootloader model picks the slot.
    pub fn boot(&mut self) {
        let running = otter_ota::boot::boot(&mut self.flash, self.dev.config())
            .ok()
            .and_then(|o| o.booted.map(|b| b.slot));
        self.dev
            .boot(&mut self.flash, &mut self.plat, running, self.now)
            .expect("boot reads flash");
    }

    pub fn running(&self) -> Option<SlotId> {
        self.dev.running()
    }

    /// The slot the bootloader would boot now (without writing).
    pub fn boot_choice(&mut self) -> Option<SlotId> {
        let mut f = self.flash.fork();
        otter_ota::boot::boot(&mut f, self.dev.config())
            .ok()
            .and_then(|o| o.booted.map(|b| b.slot))
    }

    /// Sends `req` split into pieces of `split` bytes (0: all at once) over
    /// one connection and collects the answers.
    pub fn exchange(&mut self, req: &[u8], split: usize) -> Vec<Answer> {
        let mut head = [0u8; 2048];
        let mut conn = Connection::new(&self.dev, &mut head, self.now);
        let mut out_bytes: Vec<u8> = Vec::new();
        let mut tx = vec![0u8; 8192];
        let mut actions = Vec::new();
        let pieces: Vec<&[u8]> = if split == 0 {
            vec![req]
        } else {
            req.chunks(split).collect()
        };
        'outer: for piece in pieces {
            let mut input = piece;
            loop {
                let o = conn.handle(
                    &mut self.dev,
                    &mut self.flash,
                    &mut self.plat,
                    input,
                    self.now,
                    &mut tx,
                );
                out_bytes.extend_from_slice(&tx[..o.written]);
                out_bytes.extend_from_slice(o.tail);
                input = &input[o.consumed..];
                if o.written > 0 || o.action != Action::Read {
                    actions.push(o.action);
                }
                if o.action == Action::CheckRelease {
                    if let Some((result, body)) = self.check.clone() {
                        let d = conn.check_decided(result, &body, self.now, &mut tx);
                        out_bytes.extend_from_slice(&tx[..d.written]);
                        // The answer's action says the check was asked for.
                        actions.pop();
                        actions.push(match d.action {
                            Action::Read => Action::CheckRelease,
                            other => other,
                        });
                        if d.action == Action::Close {
                            break 'outer;
                        }
                        continue;
                    }
                }
                match o.action {
                    Action::Close | Action::Reboot(_) => break 'outer,
                    Action::Continue => continue,
                    Action::Read | Action::CheckRelease if input.is_empty() => break,
                    Action::Read | Action::CheckRelease => {}
                }
            }
        }
        if !conn.is_closed() {
            conn.peer_closed(&mut self.dev, self.now);
        }
        parse_answers(&out_bytes, &actions)
    }

    pub fn one(&mut self, req: &[u8]) -> Answer {
        let mut a = self.exchange(req, 0);
        assert!(
            !a.is_empty(),
            "no answer to {:?}",
            String::from_utf8_lossy(&req[..req.len().min(200)])
        );
        a.remove(0)
    }

    pub fn www_slot_bytes(&self, at: u32) -> &[u8] {
        &self.flash.contents()[at as usize..(at + WWW_SIZE) as usize]
    }
}

fn parse_answers(mut b: &[u8], actions: &[Action]) -> Vec<Answer> {
    let mut out = Vec::new();
    let mut continue_sent = false;
    let mut ai = 0;
    while !b.is_empty() {
        let end = b
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head")
            + 4;
        let head = String::from_utf8_lossy(&b[..end]).to_string();
        let status: u16 = head[9..12].parse().expect("status");
        b = &b[end..];
        if status == 100 {
            continue_sent = true;
            ai += 1;
            continue;
        }
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let n = len.min(b.len());
        let body = b[..n].to_vec();
        b = &b[n..];
        let action = actions.get(ai).copied().unwrap_or(Action::Read);
        ai += 1;
        out.push(Answer {
            status,
            head,
            body,
            action,
            continue_sent,
        });
        continue_sent = false;
    }
    out
}

/// A request with a raw body.
pub fn post(path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: d\r\nContent-Length: {}\r\n",
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

pub fn get(path: &str, headers: &[&str]) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: d\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// A chunked request.
pub fn post_chunked(path: &str, body: &[u8], chunk: usize) -> Vec<u8> {
    let mut v = format!("POST {path} HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n")
        .into_bytes();
    for c in body.chunks(chunk) {
        v.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        v.extend_from_slice(c);
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"0\r\n\r\n");
    v
}

/// A multipart form as Python requests' `files={'file': ...}` sends it.
pub fn multipart_body(
    boundary: &str,
    field: &str,
    filename: Option<&str>,
    data: &[u8],
    extra_field_first: bool,
) -> Vec<u8> {
    let mut v = Vec::new();
    if extra_field_first {
        v.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
            )
            .as_bytes(),
        );
    }
    let fname = filename
        .map(|f| format!("; filename=\"{f}\""))
        .unwrap_or_default();
    v.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"{fname}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
    );
    v.extend_from_slice(data);
    v.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    v
}

pub fn post_multipart(path: &str, boundary: &str, body: &[u8], headers: &[&str]) -> Vec<u8> {
    let ct = format!("Content-Type: multipart/form-data; boundary={boundary}");
    let mut h: Vec<&str> = headers.to_vec();
    h.push(&ct);
    post(path, &h, body)
}
