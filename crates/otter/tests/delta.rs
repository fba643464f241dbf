//! Compressed and delta updates against tools nobody here wrote: detools'
//! own `apply_patch` and `create_patch` (PyPI 0.53.0), Python's `gzip` and
//! `zlib`, esptool's validation hash; and every bad input refused on the
//! NOR-flash simulator with nothing switched.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use embedded_storage::nor_flash::ReadNorFlash;
use otter_delta::inflate::{Container, InflateError, Inflater};
use otter_delta::patch::{PatchApplier, PatchError, PatchIo};
use otter_format::chip::Chip;
use otter_format::image::{inspect, AppImageBuilder};
use otter_format::partition::{CsvOptions, OwnedTable};
use otter_ota::boot::boot;
use otter_ota::session::{UpdateRequest, UpdateSession};
use otter_ota::{DeviceConfig, OtaError, SlotId};
use otter_sim::powercut::layouts;
use otter_sim::{SimFlash, SimFlashError};
use util::{corpus_file, python, run_otter, stderr};

const OLD: &str = "delta-pairs/obnizos/obniz-2.1.0.bin";
const NEW: &str = "delta-pairs/obnizos/obniz-2.1.1.bin";
const FACTORY: u32 = 0x10000;

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn py(code: &str, args: &[&Path]) {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// detools' `apply_patch` on the bare detools part (after the 64-byte
/// esp_delta_ota header), as esp_delta_ota's host tooling strips it.
fn detools_apply(old: &Path, patch: &Path, out: &Path) {
    py(
        "import sys, io, detools\n\
         old, patch, out = sys.argv[1:4]\n\
         p = open(patch, 'rb').read()\n\
         assert p[:4] == bytes.fromhex('10decdfc'), p[:4]\n\
         with open(old, 'rb') as f, open(out, 'wb') as o:\n\
         \x20   detools.apply_patch(f, io.BytesIO(p[64:]), o)\n",
        &[old, patch, out],
    );
}

/// detools' `create_patch` (sequential), framed as esp_delta_ota's
/// `esp_delta_ota_patch_gen.py` frames it: magic, the base's validation hash
/// from esptool, 28 zero bytes.
fn detools_create(old: &Path, new: &Path, out: &Path, compression: &str) {
    let code = format!(
        "import sys, io, struct, detools, subprocess, re\n\
         old, new, out = sys.argv[1:4]\n\
         info = subprocess.run([sys.executable, '-m', 'esptool', 'image-info', old], capture_output=True, text=True, check=True).stdout\n\
         h = bytes.fromhex(re.search(r'Validation hash: ([0-9a-f]{{64}})', info).group(1))\n\
         p = io.BytesIO()\n\
         with open(old, 'rb') as f, open(new, 'rb') as t:\n\
         \x20   detools.create_patch(f, t, p, compression='{compression}', patch_type='sequential')\n\
         open(out, 'wb').write(struct.pack('<I', 0xfccdde10) + h + bytes(28) + p.getvalue())\n"
    );
    py(&code, &[old, new, out]);
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("writing temp file");
    p
}

fn builder_pair() -> (Vec<u8>, Vec<u8>) {
    let old = AppImageBuilder::new(Chip::Esp32c3)
        .version("1.0.0")
        .size(300_000)
        .build()
        .expect("builder image");
    let new = AppImageBuilder::new(Chip::Esp32c3)
        .version("1.0.1")
        .size(310_000)
        .build()
        .expect("builder image");
    (old, new)
}

#[test]
fn otter_patches_are_applied_by_detools_byte_for_byte() {
    let d = tmp();
    let (bo, bn) = builder_pair();
    let pairs = [
        (corpus_file(OLD), corpus_file(NEW)),
        (
            write(d.path(), "b-old.bin", &bo),
            write(d.path(), "b-new.bin", &bn),
        ),
    ];
    for (old, new) in &pairs {
        for compression in ["heatshrink", "none"] {
            let patch = d.path().join("p.patch");
            let o = run_otter([
                "delta".as_ref(),
                old.as_os_str(),
                new.as_os_str(),
                "-o".as_ref(),
                patch.as_os_str(),
                "--compression".as_ref(),
                compression.as_ref(),
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            let made = d.path().join("made.bin");
            detools_apply(old, &patch, &made);
            assert!(
                read(&made) == read(new),
                "{compression}: detools made another image"
            );
            // The header names esptool's validation hash of OLD.
            let sha = inspect(&read(old)).unwrap().sha256.unwrap().stored;
            assert_eq!(&read(&patch)[4..36], &sha);
        }
    }
}

/// The device side, on the simulator: the running image in `factory`, the
/// patch applied from it into ota_0 through otter-ota's update session,
/// which opens (and erases) only on the first write.
struct Device {
    flash: SimFlash,
    cfg: DeviceConfig,
    base_len: u64,
    session: Option<UpdateSession>,
    failed: Option<OtaError<SimFlashError>>,
}

impl Device {
    fn new(chip: Chip, running: &[u8]) -> Device {
        let bin = OwnedTable::from_csv(layouts::FACTORY_2OTA_4MB.csv, &CsvOptions::default())
            .unwrap()
            .to_binary(true)
            .unwrap();
        let mut flash = SimFlash::new(4 << 20).unwrap();
        flash.load(0x8000, &bin).unwrap();
        flash.load(FACTORY, running).unwrap();
        Device {
            flash,
            cfg: DeviceConfig::new(chip),
            base_len: running.len() as u64,
            session: None,
            failed: None,
        }
    }

    fn running_sha(&self) -> [u8; 32] {
        let c = self.flash.contents();
        let img = &c[FACTORY as usize..FACTORY as usize + self.base_len as usize];
        inspect(img).unwrap().sha256.unwrap().stored
    }

    fn booted(&mut self) -> (SlotId, Vec<u8>) {
        let b = boot(&mut self.flash, &self.cfg).unwrap().booted.unwrap();
        let r = b.slot;
        let len = b.image.image_len as usize;
        let off = match r {
            SlotId::Factory => FACTORY as usize,
            _ => FACTORY as usize + (1 << 20),
        };
        (r, self.flash.contents()[off..off + len].to_vec())
    }

    /// Apply `patch` in `piece`-byte pieces; `Ok` once activated.
    fn apply(&mut self, patch: &[u8], piece: usize) -> Result<SlotId, String> {
        let mut a = PatchApplier::new(self.running_sha(), 1 << 20);
        for c in patch.chunks(piece) {
            a.feed(c, self).map_err(|e| self.code_of(&e))?;
        }
        a.finish::<()>().map_err(|e| e.code().to_string())?;
        let s = self.session.take().ok_or("nothing written")?;
        let done = s.finish(&mut self.flash).map_err(|e| format!("{e:?}"))?;
        done.activate(&mut self.flash).map_err(|e| format!("{e:?}"))
    }

    fn code_of(&mut self, e: &PatchError<()>) -> String {
        match (e, self.failed.take()) {
            (PatchError::Io(()), Some(OtaError::Image(i))) => format!("image:{i:?}"),
            (PatchError::Io(()), Some(other)) => format!("ota:{other:?}"),
            _ => e.code().to_string(),
        }
    }
}

impl PatchIo for Device {
    type Error = ();
    fn base_len(&self) -> u64 {
        self.base_len
    }
    /// NOR flash reads 4-byte units at 4-byte offsets (esp-storage, and the
    /// simulator in strict mode); the applier asks for any range, so read
    /// the aligned cover into a bounce buffer.
    fn read_base(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ()> {
        let start = FACTORY as u64 + offset;
        let lo = start & !3;
        let hi = (start + buf.len() as u64 + 3) & !3;
        let mut bounce = [0u8; 264];
        let cover = &mut bounce[..(hi - lo) as usize];
        self.flash.read(lo as u32, cover).map_err(|_| ())?;
        let skip = (start - lo) as usize;
        buf.copy_from_slice(&cover[skip..skip + buf.len()]);
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> Result<(), ()> {
        if self.session.is_none() {
            let req = UpdateRequest::new(None, None);
            match UpdateSession::begin(&mut self.flash, &self.cfg, SlotId::Factory, req) {
                Ok(s) => self.session = Some(s),
                Err(e) => {
                    self.failed = Some(e);
                    return Err(());
                }
            }
        }
        let s = self.session.as_mut().ok_or(())?;
        s.write(&mut self.flash, data).map_err(|e| {
            self.failed = Some(e);
        })
    }
}

#[test]
fn detools_patches_are_applied_by_otter_on_the_simulator() {
    let d = tmp();
    let (bo, bn) = builder_pair();
    let pairs = [
        (Chip::Esp32, corpus_file(OLD), corpus_file(NEW)),
        (
            Chip::Esp32c3,
            write(d.path(), "b-old.bin", &bo),
            write(d.path(), "b-new.bin", &bn),
        ),
    ];
    for (chip, old, new) in &pairs {
        for compression in ["heatshrink", "none"] {
            let patch = d.path().join("d.patch");
            detools_create(old, new, &patch, compression);
            let mut dev = Device::new(*chip, &read(old));
            for piece in [4096, 777] {
                let mut dev2 = Device::new(*chip, &read(old));
                assert_eq!(dev2.apply(&read(&patch), piece), Ok(SlotId::Ota(0)));
                assert!(dev2.booted().1 == read(new), "{compression}/{piece}");
            }
            assert_eq!(dev.apply(&read(&patch), 1500), Ok(SlotId::Ota(0)));
            let (slot, img) = dev.booted();
            assert_eq!(slot, SlotId::Ota(0));
            assert!(img == read(new), "{}: {compression}", new.display());
        }
    }
}

/// Refusals: each with its code, the device still boots the old image and
/// (for header faults) the target slot was never erased.
#[test]
fn bad_patches_are_refused_with_a_code_and_nothing_switched() {
    let d = tmp();
    let (bo, bn) = builder_pair();
    let old = write(d.path(), "old.bin", &bo);
    let new = write(d.path(), "new.bin", &bn);
    let patch_path = d.path().join("p.patch");
    let o = run_otter([
        "delta".as_ref(),
        old.as_os_str(),
        new.as_os_str(),
        "-o".as_ref(),
        patch_path.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let patch = read(&patch_path);

    let check = |running: &[u8], chip: Chip, p: &[u8], want: &str, erased: bool| {
        let mut dev = Device::new(chip, running);
        let got = dev.apply(p, 1000).unwrap_err();
        assert!(got.starts_with(want), "want {want}, got {got}");
        assert_eq!(dev.booted(), (SlotId::Factory, running.to_vec()), "{want}");
        if erased {
            let c = dev.flash.contents();
            let slot = &c[(FACTORY as usize + (1 << 20))..(FACTORY as usize + (2 << 20))];
            assert!(slot.iter().all(|&b| b == 0xff), "{want}: ota_0 was touched");
        }
    };

    // Wrong base: another image runs.
    let other = AppImageBuilder::new(Chip::Esp32c3)
        .version("0.9.0")
        .size(300_000)
        .build()
        .unwrap();
    check(&other, Chip::Esp32c3, &patch, "wrong_base", true);
    // Truncated.
    check(
        &bo,
        Chip::Esp32c3,
        &patch[..patch.len() / 2],
        "truncated",
        false,
    );
    check(&bo, Chip::Esp32c3, &patch[..40], "truncated", true);
    // Not a patch.
    check(&bo, Chip::Esp32c3, &bn, "bad_patch_magic", true);
    // Corrupt: the declared size is one byte off, so the runs do not add up.
    let mut bad = patch.clone();
    bad[65] ^= 0x01;
    let mut dev = Device::new(Chip::Esp32c3, &bo);
    let got = dev.apply(&bad, 1000).unwrap_err();
    assert!(
        ["corrupt_patch", "truncated", "trailing_data"].contains(&got.as_str())
            || got.starts_with("image:")
            || got.starts_with("ota:"),
        "{got}"
    );
    assert_eq!(dev.booted().0, SlotId::Factory);
    // Corrupt body bytes: refused by the applier or by the image checks.
    for at in [patch.len() / 3, patch.len() / 2, patch.len() - 5] {
        let mut bad = patch.clone();
        bad[at] ^= 0x5a;
        let mut dev = Device::new(Chip::Esp32c3, &bo);
        let got = dev.apply(&bad, 1000).unwrap_err();
        assert!(!got.is_empty());
        assert_eq!(
            dev.booted(),
            (SlotId::Factory, bo.clone()),
            "corrupt at {at}: {got}"
        );
    }
    // Oversize: the patch declares more than the 1 MiB slot.
    let mut big = patch[..65].to_vec();
    otter_delta::encode::pack_size(&mut big, (1 << 20) + 1);
    big.extend_from_slice(&patch[68..]);
    check(&bo, Chip::Esp32c3, &big, "too_large", true);
    // Wrong chip: a valid patch from an esp32c3 image to an esp32s3 image;
    // the session refuses the new image's header.
    let s3 = AppImageBuilder::new(Chip::Esp32s3)
        .version("1.0.1")
        .size(300_000)
        .build()
        .unwrap();
    let sha = inspect(&bo).unwrap().sha256.unwrap().stored;
    let p = otter_delta::encode::esp_delta_patch(&sha, &bo, &s3, Default::default()).unwrap();
    check(&bo, Chip::Esp32c3, &p, "image:", false);
    // And the CLI refuses to make it in the first place.
    let s3p = write(d.path(), "s3.bin", &s3);
    let o = run_otter([
        "delta".as_ref(),
        old.as_os_str(),
        s3p.as_os_str(),
        "-o".as_ref(),
        patch_path.as_os_str(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("one chip"), "{}", stderr(&o));
}

#[test]
fn python_gzip_and_zlib_streams_are_inflated() {
    let d = tmp();
    let img = corpus_file("app-images/esp-serial-flasher/hello_world-esp32c3.bin");
    let gz = d.path().join("a.gz");
    let zl = d.path().join("a.zlib");
    py(
        "import sys, gzip, zlib\n\
         src, gz, zl = sys.argv[1:4]\n\
         data = open(src, 'rb').read()\n\
         open(gz, 'wb').write(gzip.compress(data, 9))\n\
         open(zl, 'wb').write(zlib.compress(data, 9))\n",
        &[&img, &gz, &zl],
    );
    let want = read(&img);
    for (path, c) in [(&gz, Container::Gzip), (&zl, Container::Zlib)] {
        let mut inf = Inflater::new(c, want.len() as u64);
        let mut out = Vec::new();
        for piece in read(path).chunks(1460) {
            inf.feed(piece, &mut out).unwrap();
        }
        assert_eq!(inf.finish::<()>(), Ok(want.len() as u64));
        assert!(out == want);
        // One byte less of room: the bomb limit trips.
        let mut inf = Inflater::new(c, want.len() as u64 - 1);
        let e = read(path)
            .chunks(1460)
            .try_for_each(|p| inf.feed(p, &mut Vec::new()));
        assert_eq!(
            e,
            Err(InflateError::TooLarge {
                limit: want.len() as u64 - 1
            })
        );
    }
}

#[test]
fn the_patch_is_small_on_consecutive_releases() {
    let d = tmp();
    let patch = d.path().join("p.patch");
    let (old, new) = (corpus_file(OLD), corpus_file(NEW));
    let o = run_otter([
        "delta".as_ref(),
        old.as_os_str(),
        new.as_os_str(),
        "-o".as_ref(),
        patch.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ratio = read(&patch).len() as f64 / read(&new).len() as f64;
    assert!(ratio <= 0.08, "patch is {:.2}% of the image", ratio * 100.0);
}

#[test]
fn release_compress_and_delta_from_write_artifacts_that_decode_to_the_firmware() {
    let d = tmp();
    let p = |rel: &str| d.path().join(rel);
    let o = run_otter(["keygen".as_ref(), "-o".as_ref(), p("rel").as_os_str()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (bo, bn) = builder_pair();
    let old = write(d.path(), "old.bin", &bo);
    let new = write(d.path(), "new.bin", &bn);
    let key = p("rel.key");
    let rel = |fw: &Path, out: &Path, extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "release".as_ref(),
            "--firmware".as_ref(),
            fw.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
            "-o".as_ref(),
            out.as_os_str(),
        ];
        args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
        let o = run_otter(args);
        assert!(o.status.success(), "{}", stderr(&o));
        util::stdout(&o)
    };
    rel(&old, &p("releases/1.0.0"), &[]);
    let from = p("releases");
    let text = rel(
        &new,
        &p("out"),
        &["--compress", "--delta-from", from.to_str().unwrap()],
    );
    assert!(text.contains("firmware.bin.gz"), "{text}");
    assert!(text.contains("delta-from-1.0.0.patch"), "{text}");

    // Both are listed in the signed manifest (otter-release/2), with their
    // own sizes and SHA-256, the delta with its base's validation hash (the
    // SHA-256 appended to the old image, its last 32 bytes).
    let m: serde_json::Value = serde_json::from_slice(&read(&p("out/manifest.json"))).unwrap();
    assert_eq!(m["format"], "otter-release/2");
    let alts = m["firmware"]["alternatives"].as_array().unwrap();
    assert_eq!(alts.len(), 2, "{m}");
    assert_eq!(alts[0]["encoding"], "gzip");
    assert_eq!(alts[0]["url"], "firmware.bin.gz");
    assert_eq!(alts[0]["size"], read(&p("out/firmware.bin.gz")).len());
    assert_eq!(alts[1]["encoding"], "delta");
    assert_eq!(alts[1]["url"], "delta-from-1.0.0.patch");
    let patch_bytes = read(&p("out/delta-from-1.0.0.patch"));
    assert_eq!(alts[1]["size"], patch_bytes.len());
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(
        alts[1]["sha256"],
        hex(&<sha2::Sha256 as sha2::Digest>::digest(&patch_bytes))
    );
    assert_eq!(alts[1]["base_sha256"], hex(&bo[bo.len() - 32..]));
    assert!(alts[1].get("base_sha256").is_some() && alts[0].get("base_sha256").is_none());
    // The previous release, made without alternatives, is still /1.
    let m1: serde_json::Value =
        serde_json::from_slice(&read(&p("releases/1.0.0/manifest.json"))).unwrap();
    assert_eq!(m1["format"], "otter-release/1");
    // A folder of plain image files works as well as release folders.
    std::fs::create_dir(p("images")).unwrap();
    std::fs::copy(&old, p("images/app-1.0.0.bin")).unwrap();
    rel(
        &new,
        &p("out2"),
        &["--deltas-from", p("images").to_str().unwrap()],
    );
    assert!(read(&p("out2/delta-from-1.0.0.patch")) == patch_bytes);

    // The gzip artifact is what Python's gzip reads back as the firmware.
    let gz = p("out/firmware.bin.gz");
    let back = p("back.bin");
    py(
        "import sys, gzip\nopen(sys.argv[2], 'wb').write(gzip.open(sys.argv[1]).read())\n",
        &[&gz, &back],
    );
    assert!(read(&back) == bn);
    // The delta is what detools turns the previous release into the new one with.
    detools_apply(&old, &p("out/delta-from-1.0.0.patch"), &back);
    assert!(read(&back) == bn);
}
