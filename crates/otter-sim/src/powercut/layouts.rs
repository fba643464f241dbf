//! The device layouts every scenario runs on, and the images it updates
//! between.

use std::path::Path;
use std::sync::Arc;

use otter_format::chip::Chip;
use otter_format::image::{AppImageBuilder, StreamingVerifier, VerifyOptions};
use otter_format::partition::{CsvOptions, OwnedTable};

/// Flash offset of the partition table (ESP-IDF's default).
pub const TABLE_OFFSET: u32 = 0x8000;

/// A partition table on a flash chip of a given size.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Short name used in reports.
    pub name: &'static str,
    /// Flash size in bytes.
    pub flash_size: usize,
    /// The table, in ESP-IDF's CSV grammar.
    pub csv: &'static str,
}

impl Layout {
    /// The table's binary form (with the MD5 row), as `idf.py` flashes it.
    pub fn table_bin(&self) -> Result<Vec<u8>, String> {
        let table = OwnedTable::from_csv(self.csv, &CsvOptions::default())
            .map_err(|e| format!("layout {}: {e}", self.name))?;
        table
            .to_binary(true)
            .map(|bin| bin.to_vec())
            .map_err(|e| format!("layout {}: {e}", self.name))
    }
}

/// Factory + 2 OTA slots of 1 MiB on a 4 MiB flash (the lifecycle tests' table).
pub const FACTORY_2OTA_4MB: Layout = Layout {
    name: "factory+2ota/4MB",
    flash_size: 4 << 20,
    csv: "\
nvs,      data, nvs,     0x9000,  0x4000,
otadata,  data, ota,     0xd000,  0x2000,
phy_init, data, phy,     0xf000,  0x1000,
factory,  app,  factory, 0x10000, 1M,
ota_0,    app,  ota_0,   ,        1M,
ota_1,    app,  ota_1,   ,        1M,
",
};

/// 2 OTA slots, no factory, 4 MiB (seeds/003, "Minimal 2-OTA Layout").
pub const SEED003_2OTA_4MB: Layout = Layout {
    name: "seed003-2ota/4MB",
    flash_size: 4 << 20,
    csv: "\
nvs,      data, nvs,     0x9000,   0x6000,
otadata,  data, ota,     0xf000,   0x2000,
phy_init, data, phy,     0x11000,  0x1000,
ota_0,    app,  ota_0,   0x20000,  0x180000,
ota_1,    app,  ota_1,   0x1a0000, 0x180000,
",
};

/// Factory + 2 OTA slots (seeds/003, "Factory + 2-OTA"). The seed's table
/// ends at 0x420000, so it needs an 8 MiB flash, not the 4 MiB of the
/// minimal layout above it.
pub const SEED003_FACTORY_2OTA_8MB: Layout = Layout {
    name: "seed003-factory+2ota/8MB",
    flash_size: 8 << 20,
    csv: "\
nvs,      data, nvs,     0x9000,   0x6000,
otadata,  data, ota,     0xf000,   0x2000,
phy_init, data, phy,     0x11000,  0x1000,
factory,  app,  factory, 0x20000,  0x100000,
ota_0,    app,  ota_0,   0x120000, 0x180000,
ota_1,    app,  ota_1,   0x2a0000, 0x180000,
",
};

/// seeds/000 `partitions_ota_safe.csv` as written, on the 16 MiB flash it
/// fills (spiffs runs to the end).
pub const SEED000_OTA_SAFE_16MB: Layout = Layout {
    name: "seed000-ota_safe/16MB",
    flash_size: 16 << 20,
    csv: "\
nvs,      data, nvs,      0x9000,   0x5000,
otadata,  data, ota,      0xe000,   0x2000,
app0,     app,  ota_0,    0x10000,  0x180000,
app1,     app,  ota_1,    0x190000, 0x180000,
spiffs,   data, spiffs,   0x310000, 0xCF0000,
",
};

/// seeds/000 `partitions_ota_safe.csv` on a 4 MiB flash: spiffs shrunk to fit.
pub const SEED000_OTA_SAFE_4MB: Layout = Layout {
    name: "seed000-ota_safe/4MB",
    flash_size: 4 << 20,
    csv: "\
nvs,      data, nvs,      0x9000,   0x5000,
otadata,  data, ota,      0xe000,   0x2000,
app0,     app,  ota_0,    0x10000,  0x180000,
app1,     app,  ota_1,    0x190000, 0x180000,
spiffs,   data, spiffs,   0x310000, 0xF0000,
",
};

/// The rows of seeds/001 `partitions.csv`, as a literal other tables can
/// extend with `concat!` (the virtual device's default table does).
macro_rules! seed001_rows {
    () => {
        "\
nvs,      data, nvs,      0x9000,  0x5000,
otadata,  data, ota,      0xe000,  0x2000,
phy_init, data, phy,      0x10000, 0x1000,
factory,  app,  factory,  0x20000, 0x200000,
ota_0,    app,  ota_0,    0x220000,0x200000,
ota_1,    app,  ota_1,    0x420000,0x200000,
"
    };
}
pub(crate) use seed001_rows;

/// seeds/001 `partitions.csv`: factory + 2 OTA slots of 2 MiB (needs 8 MiB).
pub const SEED001_FACTORY_2OTA_8MB: Layout = Layout {
    name: "seed001-factory+2ota/8MB",
    flash_size: 8 << 20,
    csv: seed001_rows!(),
};

/// 4 OTA slots of 960 KiB, no factory, 4 MiB.
pub const FOUR_OTA_4MB: Layout = Layout {
    name: "4ota/4MB",
    flash_size: 4 << 20,
    csv: "\
nvs,      data, nvs,     0x9000,  0x4000,
otadata,  data, ota,     0xd000,  0x2000,
phy_init, data, phy,     0xf000,  0x1000,
ota_0,    app,  ota_0,   0x10000, 0xF0000,
ota_1,    app,  ota_1,   ,        0xF0000,
ota_2,    app,  ota_2,   ,        0xF0000,
ota_3,    app,  ota_3,   ,        0xF0000,
",
};

/// Factory + 4 OTA slots of 1.5 MiB on a 16 MiB flash.
pub const FACTORY_4OTA_16MB: Layout = Layout {
    name: "factory+4ota/16MB",
    flash_size: 16 << 20,
    csv: "\
nvs,      data, nvs,     0x9000,  0x4000,
otadata,  data, ota,     0xd000,  0x2000,
phy_init, data, phy,     0xf000,  0x1000,
factory,  app,  factory, 0x10000, 0x180000,
ota_0,    app,  ota_0,   ,        0x180000,
ota_1,    app,  ota_1,   ,        0x180000,
ota_2,    app,  ota_2,   ,        0x180000,
ota_3,    app,  ota_3,   ,        0x180000,
",
};

/// An app image the scenarios flash or stream.
#[derive(Debug, Clone)]
pub struct Image {
    /// Where it came from ("built" or a corpus path).
    pub origin: String,
    /// Its app descriptor's version.
    pub version: String,
    /// The file.
    pub bytes: Arc<Vec<u8>>,
}

impl Image {
    /// "v (N B, origin)" for reports.
    pub fn describe(&self) -> String {
        format!("{} ({} B, {})", self.version, self.bytes.len(), self.origin)
    }
}

/// The smallest image [`AppImageBuilder`] makes (~68 KiB).
pub const SMALL: u32 = 0;
/// A big image: ~1.45 MB, about what fits a 1.5 MiB slot with margin.
pub const BIG: u32 = 1_450_000;

/// A builder image for `chip` with `version`; `size` 0 means the builder's
/// minimum.
pub fn built(chip: Chip, version: &str, size: u32) -> Result<Image, String> {
    let mut b = AppImageBuilder::new(chip)
        .version(version)
        .project_name("otter-powercut");
    if size > 0 {
        b = b.size(size);
    }
    let bytes = b
        .build()
        .map_err(|e| format!("the image builder refused {version}/{size}: {e}"))?;
    Ok(Image {
        origin: "built".into(),
        version: version.into(),
        bytes: Arc::new(bytes),
    })
}

/// A real image from the corpus folder `corpus` (`rel` inside it), with its
/// version read from its app descriptor after a full verify for `chip`. A
/// missing or bad file is an error, never a skip: a run that silently left
/// out the real image would claim more than it proved.
pub fn corpus_image(corpus: &Path, rel: &str, chip: Chip) -> Result<Image, String> {
    let path = corpus.join(rel);
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("cannot read corpus image {}: {e}", path.display()))?;
    let mut opts = VerifyOptions::new();
    opts.chip = Some(chip);
    let mut v = StreamingVerifier::new(opts);
    let info = v
        .feed(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|_| v.finish().map_err(|e| e.to_string()))
        .map_err(|e| format!("corpus image {} does not verify: {e}", path.display()))?;
    let version = info
        .app_desc
        .as_ref()
        .and_then(|d| d.version().as_str().map(str::to_owned))
        .ok_or_else(|| format!("corpus image {} has no app descriptor", path.display()))?;
    Ok(Image {
        origin: rel.into(),
        version,
        bytes: Arc::new(bytes),
    })
}

/// Two 1 MiB OTA slots, two 64 KiB web-UI slots and a 20 KB NVS partition
/// (five pages, the size that used to fill up) on a 4 MiB flash.
pub const WWW_SMALL_4MB: Layout = Layout {
    name: "www64k+nvs20k/4MB",
    flash_size: 4 << 20,
    csv: "\
nvs,      data, nvs,      0x9000,   0x5000,
otadata,  data, ota,      0xe000,   0x2000,
ota_0,    app,  ota_0,    0x10000,  0x100000,
ota_1,    app,  ota_1,    0x110000, 0x100000,
www_0,    data, littlefs, 0x210000, 0x10000,
www_1,    data, littlefs, 0x220000, 0x10000,
",
};

/// The virtual device's default table (seeds/001 plus two 1 MiB web-UI
/// slots) on its 16 MiB flash.
pub const VIRTUAL_DEVICE_16MB: Layout = Layout {
    name: "virtual-device/16MB",
    flash_size: 16 << 20,
    csv: crate::device::DEFAULT_PARTITIONS_CSV,
};

/// A web-UI image of exactly `size` bytes whose `/index.html` names `tag`,
/// with a 20 KB script and a stylesheet so it spans several blocks.
pub fn ui_image(size: u32, tag: &str) -> Result<Arc<Vec<u8>>, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "otter-powercut-ui-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let build = || -> Result<Vec<u8>, String> {
        let io = |e: std::io::Error| format!("writing the UI {tag} to {}: {e}", dir.display());
        std::fs::create_dir_all(dir.join("assets")).map_err(io)?;
        let index = format!("<!doctype html><title>{tag}</title><h1>{tag}</h1>\n");
        std::fs::write(dir.join("index.html"), index).map_err(io)?;
        let js: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(dir.join("assets/app.js"), js).map_err(io)?;
        std::fs::write(dir.join("style.css"), format!("h1{{color:red}}/*{tag}*/")).map_err(io)?;
        otter_www::build_image(&dir, size).map_err(|e| format!("building the UI {tag}: {e}"))
    };
    let res = build();
    let _ = std::fs::remove_dir_all(&dir);
    res.map(Arc::new)
}

/// A builder image for `chip` with `version` and anti-rollback
/// `secure_version`.
pub fn built_sv(chip: Chip, version: &str, secure_version: u32) -> Result<Image, String> {
    let bytes = AppImageBuilder::new(chip)
        .version(version)
        .project_name("otter-powercut")
        .secure_version(secure_version)
        .build()
        .map_err(|e| format!("the image builder refused {version}/sv{secure_version}: {e}"))?;
    Ok(Image {
        origin: format!("built, secure_version {secure_version}"),
        version: version.into(),
        bytes: Arc::new(bytes),
    })
}
