//! The firmware's alternative artifacts: `firmware.bin.gz` (`--compress`)
//! and `delta-from-<version>.patch` (`--deltas-from`), listed in the signed
//! manifest (`otter-release/2`, docs/release-manifest.md).
//!
//! Each is made in memory and decoded back before anything is signed: the
//! gzip stream with flate2, a patch with otter's own applier against its
//! base. What it decodes to must be the firmware byte for byte (its SHA-256
//! compared), so a release never lists an artifact a device would install
//! as something else or fail on.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use flate2::write::GzEncoder;
use otter_delta::encode::{esp_delta_patch, PatchCompression};
use otter_delta::patch::{PatchApplier, PatchIo};
use otter_format::image::inspect;
use otter_release::{Encoding, Sha256Digest, FIRMWARE_FILE};

/// The compressed firmware's file name.
pub const GZ_FILE: &str = "firmware.bin.gz";

/// One alternative artifact, made and checked, not yet written.
#[derive(Debug)]
pub struct Extra {
    /// gzip or delta.
    pub encoding: Encoding,
    /// Its file name in the release folder.
    pub file: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// For a delta: the base image's validation hash.
    pub base_sha256: Option<Sha256Digest>,
    /// For a delta: the base version.
    pub base_version: Option<String>,
    /// For a delta: where the base came from.
    pub base_path: Option<PathBuf>,
}

impl Extra {
    /// `gzip` or `delta`.
    pub fn kind(&self) -> &'static str {
        self.encoding.name()
    }
}

/// gzip level 9, as `gzip -9` and ESPHome's uploader compress.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// `firmware.bin.gz`, checked to inflate to `firmware`.
pub fn make_gzip(firmware: &[u8]) -> anyhow::Result<Extra> {
    let gz = gzip(firmware);
    let mut back = Vec::with_capacity(firmware.len());
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut back)
        .context("the gzip artifact does not inflate")?;
    same_image("the gzip artifact", &back, firmware)?;
    Ok(Extra {
        encoding: Encoding::Gzip,
        file: GZ_FILE.to_owned(),
        bytes: gz,
        base_sha256: None,
        base_version: None,
        base_path: None,
    })
}

fn same_image(what: &str, decoded: &[u8], firmware: &[u8]) -> anyhow::Result<()> {
    let got = Sha256Digest::of(decoded);
    let want = Sha256Digest::of(firmware);
    if got != want {
        bail!(
            "artifact_does_not_decode: {what} decodes to {} bytes with SHA-256 {got}, not the firmware ({} bytes, {want}); nothing was written",
            decoded.len(),
            firmware.len()
        );
    }
    Ok(())
}

/// The earlier images in `from`: app-image files, and release folders
/// holding `firmware.bin`, sorted by path.
fn bases(from: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(from)
        .with_context(|| format!("reading {}", from.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            if p.is_dir() {
                let fw = p.join(FIRMWARE_FILE);
                fw.is_file().then_some(fw)
            } else if p.is_file() {
                Some(p)
            } else {
                None
            }
        })
        .collect();
    out.sort();
    Ok(out)
}

/// One patch per earlier image in `from` (module docs) for the same chip,
/// each checked to rebuild `firmware` from its base; others are skipped and
/// named in the returned notes.
pub fn make_deltas(from: &Path, firmware: &[u8]) -> anyhow::Result<(Vec<Extra>, Vec<String>)> {
    let new = inspect(firmware).context("the firmware is not a readable app image")?;
    let mut extras: Vec<Extra> = Vec::new();
    let mut notes = Vec::new();
    for fw in bases(from)? {
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
        let base = Sha256Digest(sha.stored);
        if extras.iter().any(|e| e.base_sha256 == Some(base)) {
            notes.push(format!(
                "{}: the same base image as another, skipped",
                fw.display()
            ));
            continue;
        }
        if extras.len() + 1 >= otter_release::MAX_ALTERNATIVES {
            notes.push(format!(
                "{}: a release lists at most {} alternatives, skipped",
                fw.display(),
                otter_release::MAX_ALTERNATIVES
            ));
            continue;
        }
        let version = info
            .app_desc
            .as_ref()
            .and_then(|d| d.version().as_str().map(str::to_owned))
            .unwrap_or_else(|| hex8(&sha.stored));
        let patch = esp_delta_patch(&sha.stored, &old, firmware, PatchCompression::default())
            .with_context(|| format!("making the patch from {}", fw.display()))?;
        let back = apply(&sha.stored, &old, &patch, firmware.len() as u64)
            .with_context(|| format!("the patch from {} does not apply", fw.display()))?;
        same_image(&format!("the patch from {}", fw.display()), &back, firmware)?;
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
        let mut file = format!("delta-from-{name}.patch");
        if extras.iter().any(|e| e.file == file) {
            file = format!("delta-from-{name}-{}.patch", hex8(&sha.stored));
        }
        extras.push(Extra {
            encoding: Encoding::Delta,
            file,
            bytes: patch,
            base_sha256: Some(base),
            base_version: Some(version),
            base_path: Some(fw),
        });
    }
    Ok((extras, notes))
}

/// `patch` applied to `old` (whose validation hash is `base`), at most
/// `limit` bytes, by otter's own applier (the device's).
pub fn apply(base: &[u8; 32], old: &[u8], patch: &[u8], limit: u64) -> anyhow::Result<Vec<u8>> {
    struct Mem<'a> {
        old: &'a [u8],
        out: Vec<u8>,
    }
    impl PatchIo for Mem<'_> {
        type Error = ();
        fn base_len(&self) -> u64 {
            self.old.len() as u64
        }
        fn read_base(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ()> {
            let at = usize::try_from(offset).map_err(|_| ())?;
            let src = self.old.get(at..at + buf.len()).ok_or(())?;
            buf.copy_from_slice(src);
            Ok(())
        }
        fn write(&mut self, data: &[u8]) -> Result<(), ()> {
            self.out.extend_from_slice(data);
            Ok(())
        }
    }
    let mut io = Mem {
        old,
        out: Vec::new(),
    };
    let mut applier = Box::new(PatchApplier::new(*base, limit));
    applier
        .feed(patch, &mut io)
        .map_err(|e| anyhow::anyhow!("{}", e.code()))?;
    applier
        .finish::<()>()
        .map_err(|e| anyhow::anyhow!("{}", e.code()))?;
    Ok(io.out)
}

fn hex8(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}
