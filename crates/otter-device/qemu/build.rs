//! Generates the scenario's inputs on the host: the partition table binary,
//! the running image (built with otter-format's builder) and the corpus
//! ESP32-C3 image to upload with its SHA-256. Nothing is copied into the
//! repository; the corpus is read from `$OTTER_CORPUS` or `../shared/corpus`.
use std::{env, fs, path::PathBuf};

use otter_format::chip::Chip;
use otter_format::image::AppImageBuilder;
use otter_format::partition::{CsvOptions, OwnedTable};
use sha2::{Digest, Sha256};

const CSV: &str = "nvs, data, nvs, 0x9000, 0x5000\notadata, data, ota, 0xe000, 0x2000\nota_0, app, ota_0, 0x10000, 0x180000\nota_1, app, ota_1, 0x190000, 0x180000\n";

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let corpus = env::var("OTTER_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| manifest.join("../../../../shared/corpus"));
    let image_path = corpus.join("app-images/esp-serial-flasher/hello_world-esp32c3.bin");
    println!("cargo:rerun-if-changed={}", image_path.display());
    println!("cargo:rerun-if-env-changed=OTTER_CORPUS");
    println!("cargo:rerun-if-changed=link.x");
    println!("cargo:rustc-link-search={}", manifest.display());
    let image = fs::read(&image_path)
        .unwrap_or_else(|e| panic!("the corpus image {} is needed: {e}", image_path.display()));
    let table = OwnedTable::from_csv(CSV, &CsvOptions::default())
        .unwrap()
        .to_binary(true)
        .unwrap();
    let running = AppImageBuilder::new(Chip::Esp32c3)
        .version("1.0.0")
        .size(72_000)
        .build()
        .unwrap();
    fs::write(out.join("table.bin"), table).unwrap();
    fs::write(out.join("running.bin"), &running).unwrap();
    fs::write(out.join("upload.bin"), &image).unwrap();
    let hex: String = Sha256::digest(&image)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    fs::write(out.join("upload.sha256"), hex).unwrap();
}
