//! The scenario table: one line per scenario, each naming what it cuts, on
//! which layouts and images, and through which code. [`super::run`] runs all
//! rows or one (`otter sim powercut --scenario NAME`); `--list` prints this
//! table.
//!
//! | row | what is cut | through |
//! |---|---|---|
//! | `update` | a firmware update, small images on eight layouts (the seeds' tables among them), a ~1.45 MB image, real ESP-IDF and Tasmota images | otter-ota's `UpdateSession` |
//! | `http-upload` | `POST /update` streamed in 1460-byte segments | otter-device's `service::Connection` |
//! | `gzip-upload` | `POST /update` with `Content-Encoding: gzip`: inflated into the slot as it arrives | otter-device's decoder stage, `service::Connection` |
//! | `delta-upload` | `POST /update` with an `esp_delta_ota` patch from the running image: reads the running slot, writes the other | otter-device's decoder stage, otter-delta's applier |
//! | `pull-resume` | the resumable pull, its resume after a cut included | the shipped first-sector comparison ([`super::pull`]) |
//! | `pull-gzip` | a pull of the release's gzip artifact: the image's range erased, inflated into the slot; the retry starts over from byte 0 | `Device::begin_pull_encoded`, otter-device's decoder stage |
//! | `pull-delta` | a pull of the release's delta artifact: the running slot read, the other written; the retry starts over from byte 0 | `Device::begin_pull_encoded`, otter-delta's applier |
//! | `first-boot` | the bootloader's NEW → PENDING_VERIFY write; a second cut in every operation of the recovery | the bootloader model, `lifecycle::recover` |
//! | `confirm` | the confirm; a second cut in every operation of the recovery | `POST /api/ota/confirm`, `lifecycle::confirm` |
//! | `self-test-fail` | the failed self-test's mark-invalid | `Device::tick`, `mark_invalid_and_rollback` |
//! | `api-rollback` | `POST /api/ota/rollback` of a confirmed image | `service::Connection` |
//! | `crash-rollback` | a reboot while PENDING_VERIFY: the bootloader's abort; a second cut in every operation of the recovery | the bootloader model |
//! | `anti-rollback` | the confirm that raises the eFuse counter | `POST /api/ota/confirm` with anti-rollback |
//! | `www-update` | `POST /api/ota/frontend`: the slot, its check, the NVS flip; both directions | `service::Connection`, otter-format's NVS |
//! | `nvs-gc` | a web-UI update whose NVS flip collects a page (20 KB NVS) | otter-format's NVS garbage collection |
//! | `bundle` | a firmware upload, then a web-UI upload, before the reboot | `service::Connection` |
//!
//! Every row cuts every mutating operation before, after and torn (program
//! and erase, with and without scramble), except where a row says it
//! samples the programs of a megabyte-sized image (every erase and every
//! otadata/NVS operation is still cut).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use otter_format::chip::Chip;

use super::core::{
    core_pull_delta, core_pull_gzip, http_delta_update, http_gzip_update, http_update,
};
use super::layouts::*;
use super::pull::pull_update;
use super::{Case, Sampling, Scenario, SecondCut, WwwSpec};

/// One line of the table.
pub struct Row {
    /// `--scenario NAME`.
    pub name: &'static str,
    /// The scenario its cases cut.
    pub scenario: Scenario,
    /// One line: what is cut, through which code.
    pub what: &'static str,
    /// Builds its cases.
    pub cases: fn(&Env) -> Result<Vec<Case>, String>,
}

/// The table (module docs).
pub const TABLE: &[Row] = &[
    Row {
        name: "update",
        scenario: Scenario::Update,
        what: "firmware update through otter-ota's UpdateSession: small images on 8 layouts, a 1.45 MB image, real ESP-IDF and Tasmota images",
        cases: update_rows,
    },
    Row {
        name: "http-upload",
        scenario: Scenario::Update,
        what: "POST /update through otter-device's service::Connection, 1460-byte segments",
        cases: http_rows,
    },
    Row {
        name: "gzip-upload",
        scenario: Scenario::Update,
        what: "POST /update with Content-Encoding: gzip, inflated into the slot by otter-device's decoder stage",
        cases: gzip_rows,
    },
    Row {
        name: "delta-upload",
        scenario: Scenario::Update,
        what: "POST /update with an esp_delta_ota patch from the running image: the running slot read, the other written",
        cases: delta_rows,
    },
    Row {
        name: "pull-resume",
        scenario: Scenario::Update,
        what: "resumable pull (first-sector comparison, resume_point) and its resume after every cut",
        cases: pull_rows,
    },
    Row {
        name: "pull-gzip",
        scenario: Scenario::Update,
        what: "pull of the gzip artifact through the device core (range erased, inflated into the slot); the retry starts over",
        cases: pull_gzip_rows,
    },
    Row {
        name: "pull-delta",
        scenario: Scenario::Update,
        what: "pull of the delta artifact through the device core (running slot read, the other written); the retry starts over",
        cases: pull_delta_rows,
    },
    Row {
        name: "first-boot",
        scenario: Scenario::FirstBoot,
        what: "bootloader NEW -> PENDING_VERIFY; second cut at every operation of the recovery",
        cases: first_boot_rows,
    },
    Row {
        name: "confirm",
        scenario: Scenario::Confirm,
        what: "confirm (POST /api/ota/confirm and lifecycle::confirm); second cut at every operation of the recovery",
        cases: confirm_rows,
    },
    Row {
        name: "self-test-fail",
        scenario: Scenario::SelfTestFail,
        what: "failed self-test: Device::tick / mark_invalid_and_rollback",
        cases: selftest_rows,
    },
    Row {
        name: "api-rollback",
        scenario: Scenario::ApiRollback,
        what: "POST /api/ota/rollback of a confirmed image",
        cases: api_rollback_rows,
    },
    Row {
        name: "crash-rollback",
        scenario: Scenario::CrashRollback,
        what: "reboot while PENDING_VERIFY: the bootloader aborts and rolls back; second cut at every operation of the recovery",
        cases: crash_rows,
    },
    Row {
        name: "anti-rollback",
        scenario: Scenario::AntiRollback,
        what: "confirm through the device core raising the anti-rollback eFuse counter",
        cases: anti_rollback_rows,
    },
    Row {
        name: "www-update",
        scenario: Scenario::WwwUpdate,
        what: "POST /api/ota/frontend: slot written and checked, then the NVS pointer flipped; both directions",
        cases: www_rows,
    },
    Row {
        name: "nvs-gc",
        scenario: Scenario::NvsGc,
        what: "web-UI update whose NVS pointer flip garbage-collects a page of a 20 KB NVS",
        cases: gc_rows,
    },
    Row {
        name: "bundle",
        scenario: Scenario::Bundle,
        what: "firmware upload then web-UI upload through the device core, before the reboot",
        cases: bundle_rows,
    },
];

/// The row called `name`.
pub fn row(name: &str) -> Option<&'static Row> {
    TABLE.iter().find(|r| r.name == name)
}

/// The real images the rows update to, relative to the corpus.
pub const REAL_S3: &str = "app-images/esp-serial-flasher/hello_world-esp32s3.bin";
/// ESP-IDF hello_world for the ESP32-C3.
pub const REAL_C3: &str = "app-images/esp-serial-flasher/hello_world-esp32c3.bin";
/// Tasmota for the ESP32-S3 (1.2 MB).
pub const REAL_TASMOTA_S3: &str = "app-images/tasmota-sml/tasmota32s3_ottelo_tas-15.5.0.bin";

/// Web-UI images by (size, tag).
type UiCache = HashMap<(u32, String), Arc<Vec<u8>>>;

/// What the rows build their cases from: the corpus and a cache of images.
pub struct Env {
    corpus: PathBuf,
    built: Mutex<HashMap<(Chip, String, u32, u32), Image>>,
    uis: Mutex<UiCache>,
    used: Mutex<Vec<String>>,
}

impl Env {
    /// An environment reading real images from `corpus`.
    pub fn new(corpus: &Path) -> Self {
        Self {
            corpus: corpus.to_path_buf(),
            built: Mutex::new(HashMap::new()),
            uis: Mutex::new(HashMap::new()),
            used: Mutex::new(Vec::new()),
        }
    }

    /// A builder image (cached).
    pub fn built(&self, chip: Chip, version: &str, size: u32) -> Result<Image, String> {
        self.built_sv(chip, version, size, 0)
    }

    fn built_sv(&self, chip: Chip, version: &str, size: u32, sv: u32) -> Result<Image, String> {
        let key = (chip, version.to_string(), size, sv);
        let mut cache = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = cache.get(&key) {
            return Ok(i.clone());
        }
        let img = if sv > 0 {
            built_sv(chip, version, sv)?
        } else {
            built(chip, version, size)?
        };
        cache.insert(key, img.clone());
        Ok(img)
    }

    /// A real image from the corpus (an error, never a skip, when missing).
    pub fn real(&self, rel: &str, chip: Chip) -> Result<Image, String> {
        let img = corpus_image(&self.corpus, rel, chip)?;
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if !used.iter().any(|u| u == rel) {
            used.push(rel.to_string());
        }
        Ok(img)
    }

    /// A web-UI image of `size` bytes naming `tag` (cached).
    pub fn ui(&self, size: u32, tag: &str) -> Result<Arc<Vec<u8>>, String> {
        let key = (size, tag.to_string());
        let mut cache = self.uis.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(u) = cache.get(&key) {
            return Ok(u.clone());
        }
        let u = ui_image(size, tag)?;
        cache.insert(key, u.clone());
        Ok(u)
    }

    /// The corpus images the rows read.
    pub fn used(&self) -> Vec<String> {
        self.used.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn pair(&self) -> Result<(Image, Image), String> {
        Ok((
            self.built(Chip::Esp32s3, "1.0.0", SMALL)?,
            self.built(Chip::Esp32s3, "2.0.0", SMALL)?,
        ))
    }

    fn www(&self, size: u32, from: usize, gc: bool) -> Result<WwwSpec, String> {
        Ok(WwwSpec {
            from,
            old_ui: self.ui(size, if from == 0 { "ui-old-0" } else { "ui-old-1" })?,
            new_ui: self.ui(size, "ui-new")?,
            older_ui: self.ui(size, "ui-older")?,
            gc,
        })
    }
}

/// The eight firmware layouts, each with the history (earlier updates) it
/// starts from, so every layout begins at a different otadata state.
fn layouts() -> [(Layout, u8); 8] {
    [
        (FACTORY_2OTA_4MB, 0),
        (SEED003_2OTA_4MB, 1),
        (FOUR_OTA_4MB, 2),
        (SEED000_OTA_SAFE_16MB, 0),
        (SEED000_OTA_SAFE_4MB, 1),
        (SEED001_FACTORY_2OTA_8MB, 1),
        (SEED003_FACTORY_2OTA_8MB, 0),
        (FACTORY_4OTA_16MB, 3),
    ]
}

/// Every operation of the recovery after every first cut.
const SECOND_EXHAUSTIVE: SecondCut = SecondCut {
    first_stride: 1,
    sampling: Sampling {
        image_stride: 1,
        otadata_tears: 1,
    },
    metadata_only: false,
};

/// Every operation of the recovery after every first cut at an otadata or
/// NVS operation (the slot's data operations are many and recovered alike).
const SECOND_AFTER_METADATA: SecondCut = SecondCut {
    metadata_only: true,
    ..SECOND_EXHAUSTIVE
};

fn update_rows(env: &Env) -> Result<Vec<Case>, String> {
    let (old, new) = env.pair()?;
    let mut cases = Vec::new();
    for (layout, history) in layouts() {
        for rollback in [true, false] {
            cases.push(Case::new(
                Scenario::Update,
                layout.clone(),
                rollback,
                history,
                &old,
                &new,
            ));
        }
    }
    // Real images: ESP-IDF's hello_world (S3 and C3), exhaustively.
    let real = env.real(REAL_S3, Chip::Esp32s3)?;
    cases.push(Case::new(
        Scenario::Update,
        SEED000_OTA_SAFE_16MB,
        true,
        0,
        &old,
        &real,
    ));
    let c3_old = env.built(Chip::Esp32c3, "1.0.0", SMALL)?;
    let c3 = env.real(REAL_C3, Chip::Esp32c3)?;
    let mut c = Case::new(Scenario::Update, SEED003_2OTA_4MB, false, 1, &c3_old, &c3);
    c.chip = Chip::Esp32c3;
    cases.push(c);
    // Megabyte-sized images: every erase and otadata operation, every 64th
    // program.
    let big = env.built(Chip::Esp32s3, "2.1.0-big", BIG)?;
    let mut c = Case::new(Scenario::Update, SEED000_OTA_SAFE_16MB, true, 1, &old, &big);
    c.sampling = Sampling::strided(64);
    cases.push(c);
    let tasmota = env.real(REAL_TASMOTA_S3, Chip::Esp32s3)?;
    let mut c = Case::new(Scenario::Update, SEED003_2OTA_4MB, true, 0, &old, &tasmota);
    c.sampling = Sampling::strided(64);
    cases.push(c);
    Ok(cases)
}

fn http_rows(env: &Env) -> Result<Vec<Case>, String> {
    let (old, new) = env.pair()?;
    let mut cases = Vec::new();
    for (layout, history, rollback) in [
        (FACTORY_2OTA_4MB, 0, true),
        (SEED003_2OTA_4MB, 1, false),
        (SEED001_FACTORY_2OTA_8MB, 2, true),
        (FOUR_OTA_4MB, 1, true),
    ] {
        let mut c = Case::new(Scenario::Update, layout, rollback, history, &old, &new);
        c.update = http_update;
        c.update_name = "POST /update";
        c.via_core = true;
        cases.push(c);
    }
    let real = env.real(REAL_S3, Chip::Esp32s3)?;
    let mut c = Case::new(Scenario::Update, SEED003_2OTA_4MB, true, 0, &old, &real);
    c.update = http_update;
    c.update_name = "POST /update";
    c.via_core = true;
    cases.push(c);
    Ok(cases)
}

fn encoded_rows(
    env: &Env,
    update: super::UpdateFn,
    name: &'static str,
) -> Result<Vec<Case>, String> {
    let (old, new) = env.pair()?;
    let mut cases = Vec::new();
    for (layout, history, rollback) in [(FACTORY_2OTA_4MB, 0, true), (SEED003_2OTA_4MB, 1, false)] {
        let mut c = Case::new(Scenario::Update, layout, rollback, history, &old, &new);
        c.update = update;
        c.update_name = name;
        c.via_core = true;
        cases.push(c);
    }
    Ok(cases)
}

fn gzip_rows(env: &Env) -> Result<Vec<Case>, String> {
    encoded_rows(env, http_gzip_update, "POST /update (gzip)")
}

fn delta_rows(env: &Env) -> Result<Vec<Case>, String> {
    encoded_rows(env, http_delta_update, "POST /update (esp_delta_ota patch)")
}

fn pull_gzip_rows(env: &Env) -> Result<Vec<Case>, String> {
    encoded_rows(env, core_pull_gzip, "pull (gzip artifact)")
}

fn pull_delta_rows(env: &Env) -> Result<Vec<Case>, String> {
    encoded_rows(env, core_pull_delta, "pull (delta artifact)")
}

fn pull_rows(env: &Env) -> Result<Vec<Case>, String> {
    let (old, new) = env.pair()?;
    let mut cases = Vec::new();
    for (layout, history, rollback) in [
        (FACTORY_2OTA_4MB, 0, true),
        (SEED003_2OTA_4MB, 1, false),
        (SEED000_OTA_SAFE_4MB, 2, true),
    ] {
        let mut c = Case::new(Scenario::Update, layout, rollback, history, &old, &new);
        c.update = pull_update;
        c.update_name = "pull";
        cases.push(c);
    }
    let real = env.real(REAL_S3, Chip::Esp32s3)?;
    let mut c = Case::new(
        Scenario::Update,
        SEED001_FACTORY_2OTA_8MB,
        true,
        1,
        &old,
        &real,
    );
    c.update = pull_update;
    c.update_name = "pull";
    cases.push(c);
    Ok(cases)
}

fn first_boot_rows(env: &Env) -> Result<Vec<Case>, String> {
    let (old, new) = env.pair()?;
    let mut cases = Vec::new();
    for (layout, history) in layouts() {
        cases.push(Case::new(
            Scenario::FirstBoot,
            layout,
            true,
            history,
            &old,
            &new,
        ));
    }
    let mut c = Case::new(Scenario::FirstBoot, FACTORY_2OTA_4MB, true, 0, &old, &new);
    c.second_cut = Some(SECOND_EXHAUSTIVE);
    cases.push(c);
    Ok(cases)
}

fn confirm_rows(env: &Env) -> Result<Vec<Case>, String> {
    let (old, new) = env.pair()?;
    let mut cases = Vec::new();
    for (layout, history) in layouts() {
        cases.push(Case::new(
            Scenario::Confirm,
            layout,
            true,
            history,
            &old,
            &new,
        ));
    }
    for (layout, history) in [(SEED003_2OTA_4MB, 1), (FACTORY_2OTA_4MB, 0)] {
        let mut c = Case::new(Scenario::Confirm, layout, true, history, &old, &new);
        c.via_core = true;
        c.update_name = "POST /api/ota/confirm";
        c.second_cut = Some(SECOND_EXHAUSTIVE);
        cases.push(c);
    }
    let real = env.real(REAL_S3, Chip::Esp32s3)?;
    cases.push(Case::new(
        Scenario::Confirm,
        SEED003_2OTA_4MB,
        true,
        0,
        &old,
        &real,
    ));
    Ok(cases)
}

fn selftest_rows(env: &Env) -> Result<Vec<Case>, String> {
    let (old, new) = env.pair()?;
    let mut cases = Vec::new();
    for (layout, history) in layouts() {
        for rollback in [true, false] {
            cases.push(Case::new(
                Scenario::SelfTestFail,
                layout.clone(),
                rollback,
                history,
                &old,
                &new,
            ));
        }
    }
    for (layout, history) in [(FACTORY_2OTA_4MB, 0), (SEED003_2OTA_4MB, 1)] {
        let mut c = Case::new(Scenario::SelfTestFail, layout, true, history, &old, &new);
        c.via_core = true;
        c.update_name = "Device::tick";
        cases.push(c);
    }
    Ok(cases)
}

fn api_rollback_rows(env: &Env) -> Result<Vec<Case>, String> {
    let (old, new) = env.pair()?;
    let mut cases = Vec::new();
    for (layout, history, rollback) in [
        (FACTORY_2OTA_4MB, 0, true),
        (SEED003_2OTA_4MB, 1, true),
        (FOUR_OTA_4MB, 2, false),
        (SEED001_FACTORY_2OTA_8MB, 1, false),
    ] {
        let mut c = Case::new(Scenario::ApiRollback, layout, rollback, history, &old, &new);
        c.via_core = true;
        c.update_name = "POST /api/ota/rollback";
        cases.push(c);
    }
    Ok(cases)
}

fn crash_rows(env: &Env) -> Result<Vec<Case>, String> {
    let (old, new) = env.pair()?;
    let mut cases = Vec::new();
    for (layout, history) in layouts() {
        cases.push(Case::new(
            Scenario::CrashRollback,
            layout,
            true,
            history,
            &old,
            &new,
        ));
    }
    let mut c = Case::new(
        Scenario::CrashRollback,
        SEED003_2OTA_4MB,
        true,
        1,
        &old,
        &new,
    );
    c.second_cut = Some(SECOND_EXHAUSTIVE);
    cases.push(c);
    Ok(cases)
}

fn anti_rollback_rows(env: &Env) -> Result<Vec<Case>, String> {
    let old = env.built_sv(Chip::Esp32s3, "1.0.0-sv1", SMALL, 1)?;
    let new = env.built_sv(Chip::Esp32s3, "2.0.0-sv2", SMALL, 2)?;
    let mut cases = Vec::new();
    for (layout, second) in [(FACTORY_2OTA_4MB, true), (SEED003_2OTA_4MB, false)] {
        let mut c = Case::new(Scenario::AntiRollback, layout, true, 0, &old, &new);
        c.anti_rollback = Some(1);
        c.via_core = true;
        c.update_name = "POST /api/ota/confirm";
        if second {
            c.second_cut = Some(SECOND_EXHAUSTIVE);
        }
        cases.push(c);
    }
    Ok(cases)
}

fn www_case(
    env: &Env,
    scenario: Scenario,
    layout: Layout,
    from: usize,
    gc: bool,
) -> Result<Case, String> {
    let (old, _) = env.pair()?;
    let size = layout_www_size(&layout)?;
    let mut c = Case::new(scenario, layout, true, 0, &old, &old);
    c.www = Some(env.www(size, from, gc)?);
    c.via_core = true;
    c.update_name = "POST /api/ota/frontend";
    Ok(c)
}

fn layout_www_size(layout: &Layout) -> Result<u32, String> {
    let table = otter_format::partition::OwnedTable::from_csv(
        layout.csv,
        &otter_format::partition::CsvOptions::default(),
    )
    .map_err(|e| format!("layout {}: {e}", layout.name))?;
    crate::device::www::WwwLayout::from_table(&table)
        .map(|w| w.slots[1].size)
        .ok_or_else(|| format!("layout {} has no web-UI slots", layout.name))
}

fn www_rows(env: &Env) -> Result<Vec<Case>, String> {
    let mut cases = vec![
        www_case(env, Scenario::WwwUpdate, WWW_SMALL_4MB, 0, false)?,
        www_case(env, Scenario::WwwUpdate, WWW_SMALL_4MB, 1, false)?,
    ];
    let mut c = www_case(env, Scenario::WwwUpdate, WWW_SMALL_4MB, 0, false)?;
    c.second_cut = Some(SECOND_AFTER_METADATA);
    cases.push(c);
    // The virtual device's 1 MiB slots: every 16th operation of the slot,
    // every NVS operation.
    let mut c = www_case(env, Scenario::WwwUpdate, VIRTUAL_DEVICE_16MB, 0, false)?;
    c.sampling = Sampling::strided(16);
    cases.push(c);
    Ok(cases)
}

fn gc_rows(env: &Env) -> Result<Vec<Case>, String> {
    let mut c = www_case(env, Scenario::NvsGc, WWW_SMALL_4MB, 1, true)?;
    c.second_cut = Some(SECOND_AFTER_METADATA);
    Ok(vec![
        www_case(env, Scenario::NvsGc, WWW_SMALL_4MB, 0, true)?,
        c,
    ])
}

fn bundle_rows(env: &Env) -> Result<Vec<Case>, String> {
    let (old, new) = env.pair()?;
    let mut cases = Vec::new();
    for (from, rollback) in [(0, true), (1, false)] {
        let size = layout_www_size(&WWW_SMALL_4MB)?;
        let mut c = Case::new(Scenario::Bundle, WWW_SMALL_4MB, rollback, 0, &old, &new);
        c.www = Some(env.www(size, from, false)?);
        c.update = http_update;
        c.update_name = "POST /update + POST /api/ota/frontend";
        c.via_core = true;
        cases.push(c);
    }
    Ok(cases)
}
