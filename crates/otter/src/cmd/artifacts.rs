//! Extra release artifacts: `firmware.bin.gz` (`--compress`) and
//! `delta-from-<version>.patch` (`--delta-from`).
//!
//! They sit beside `firmware.bin` in the release folder and are not listed
//! in the signed manifest yet: whichever a device downloads, what it
//! inflates or patches into its slot is checked against the manifest's
//! firmware size and SHA-256, so an extra artifact cannot change what gets
//! installed, only how many bytes travel.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use flate2::write::GzEncoder;
use otter_delta::encode::{esp_delta_patch, PatchCompression};
use otter_format::image::inspect;

/// The compressed firmware's file name.
pub const GZ_FILE: &str = "firmware.bin.gz";

/// One extra file written into the release folder.
#[derive(Debug)]
pub struct Extra {
    /// What it is: `gzip` or `delta`.
    pub kind: &'static str,
    /// Where it was written.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// For a delta: the base version.
    pub base_version: Option<String>,
}

/// gzip level 9, as `gzip -9` and ESPHome's uploader compress.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// Writes `firmware.bin.gz` into `dir`.
pub fn write_gzip(dir: &Path, firmware: &[u8]) -> anyhow::Result<Extra> {
    let gz = gzip(firmware);
    let path = dir.join(GZ_FILE);
    std::fs::write(&path, &gz).with_context(|| format!("writing {}", path.display()))?;
    Ok(Extra {
        kind: "gzip",
        path,
        size: gz.len() as u64,
        base_version: None,
    })
}

/// Writes one patch per earlier release in `from` (each a folder holding
/// `firmware.bin`) for the same chip; others are skipped and named in the
/// returned notes.
pub fn write_deltas(
    dir: &Path,
    from: &Path,
    firmware: &[u8],
) -> anyhow::Result<(Vec<Extra>, Vec<String>)> {
    let new = inspect(firmware).context("the firmware is not a readable app image")?;
    let mut extras = Vec::new();
    let mut notes = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(from)
        .with_context(|| format!("reading {}", from.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("firmware.bin").is_file())
        .collect();
    entries.sort();
    for prev in entries {
        let fw = prev.join("firmware.bin");
        let old = std::fs::read(&fw).with_context(|| format!("reading {}", fw.display()))?;
        let Ok(info) = inspect(&old) else {
            notes.push(format!(
                "{}: not a readable app image, skipped",
                fw.display()
            ));
            continue;
        };
        let Some(sha) = info.sha256 else {
            notes.push(format!("{}: no appended SHA-256, skipped", fw.display()));
            continue;
        };
        if info.chip != new.chip {
            notes.push(format!("{}: another chip, skipped", fw.display()));
            continue;
        }
        if old == firmware {
            notes.push(format!("{}: the same image, skipped", fw.display()));
            continue;
        }
        let version = info
            .app_desc
            .as_ref()
            .and_then(|d| d.version().as_str().map(str::to_owned))
            .unwrap_or_else(|| hex8(&sha.stored));
        let patch = esp_delta_patch(&sha.stored, &old, firmware, PatchCompression::default())
            .with_context(|| format!("making the patch from {}", fw.display()))?;
        let name: String = version
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("delta-from-{name}.patch"));
        std::fs::write(&path, &patch).with_context(|| format!("writing {}", path.display()))?;
        extras.push(Extra {
            kind: "delta",
            path,
            size: patch.len() as u64,
            base_version: Some(version),
        });
    }
    Ok((extras, notes))
}

fn hex8(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}
