//! `otter image`: describe, verify and build ESP-IDF app images.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use otter_format::chip::Chip;
use otter_format::image::{
    inspect, verify, AppImageBuilder, FlashMode, ImageError, ImageInfo, ImageKind, SegmentKind,
    VerifyOptions,
};
use serde_json::{json, Value};
use sha2::Digest as _;

use super::signature::{self, TrustArgs};
use crate::output::{check_exit, hex, human_size, print_json};

/// `otter image` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Describe an image: header, segments, checksum, SHA-256, app descriptor.
    /// Works on bootloaders, merged flash images and RAM-only images too.
    Info {
        /// Image file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that a file is a valid, flashable app image (exit 1 if not),
    /// and with --key or --key-digest its Secure Boot signature.
    Verify {
        /// Image file.
        file: PathBuf,
        /// The chip the device is (esp32, esp32c3, ESP32-S3, ...).
        #[arg(long)]
        chip: Option<String>,
        /// Size of the OTA slot, in bytes (0x... or decimal, K/M suffixes).
        #[arg(long)]
        slot_size: Option<String>,
        /// Anti-rollback minimum for the app's secure_version.
        #[arg(long)]
        min_secure_version: Option<u32>,
        /// Expected SHA-256 of the whole file (64 hex digits).
        #[arg(long)]
        sha256: Option<String>,
        #[command(flatten)]
        trust: TrustArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build a valid test app image (pseudo-random content, real layout).
    #[command(disable_version_flag = true)]
    Build {
        /// Target chip.
        #[arg(long)]
        chip: String,
        /// App version string (esp_app_desc_t.version).
        #[arg(long)]
        version: String,
        /// Project name [default: the virtual device's firmware project, so a
        /// built image is an update for `otter device create`'s device].
        #[arg(long, default_value = otter_sim::device::DEFAULT_PROJECT)]
        project: String,
        /// Anti-rollback secure_version.
        #[arg(long, default_value_t = 0)]
        secure_version: u32,
        /// Total file size in bytes (rounded down to a multiple of 16).
        #[arg(long)]
        size: Option<String>,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// Print JSON: `{ok, output, size, chip, version, project, secure_version, sha256}`.
        #[arg(long)]
        json: bool,
    },
    /// Convert a firmware ELF into an app image, byte for byte as esptool's
    /// `elf2image` does with its defaults (ESP32-C3 and ESP32-C6).
    FromElf {
        /// The firmware ELF.
        elf: PathBuf,
        /// Target chip (esp32c3 or esp32c6).
        #[arg(long)]
        chip: String,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// Runs an `otter image` subcommand.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Info { file, json } => info(&file, json),
        Command::FromElf { elf, chip, output } => {
            let chip = parse_chip(&chip)?;
            let data = std::fs::read(&elf).with_context(|| format!("reading {}", elf.display()))?;
            let img = otter_format::image::elf_to_image(&data, chip)
                .with_context(|| format!("converting {}", elf.display()))?;
            std::fs::write(&output, &img)
                .with_context(|| format!("writing {}", output.display()))?;
            println!("{}: {} bytes", output.display(), img.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            file,
            chip,
            slot_size,
            min_secure_version,
            sha256,
            trust,
            json,
        } => {
            let mut opts = VerifyOptions::new();
            if let Some(c) = chip {
                opts = opts.chip(parse_chip(&c)?);
            }
            if let Some(s) = slot_size {
                opts = opts.slot_size(parse_size(&s).context("--slot-size")?);
            }
            if let Some(m) = min_secure_version {
                opts = opts.min_secure_version(m);
            }
            if let Some(h) = sha256 {
                opts = opts.expected_sha256(parse_sha256(&h)?);
            }
            verify_cmd(&file, &opts, &trust, json)
        }
        Command::Build {
            chip,
            version,
            project,
            secure_version,
            size,
            output,
            json,
        } => {
            let mut b = AppImageBuilder::new(parse_chip(&chip)?)
                .version(&version)
                .project_name(&project)
                .secure_version(secure_version);
            if let Some(s) = size {
                b = b.size(parse_size(&s).context("--size")?);
            }
            let img = b.build().context("building the image")?;
            std::fs::write(&output, &img)
                .with_context(|| format!("writing {}", output.display()))?;
            if json {
                let sha: [u8; 32] = sha2::Sha256::digest(&img).into();
                print_json(&json!({
                    "ok": true,
                    "output": output.display().to_string(),
                    "size": img.len(),
                    "chip": parse_chip(&chip)?.name(),
                    "version": version,
                    "project": project,
                    "secure_version": secure_version,
                    "sha256": hex(&sha),
                }))?;
            } else {
                println!(
                    "wrote {} ({} bytes, {} v{version})",
                    output.display(),
                    img.len(),
                    chip
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}

fn parse_chip(s: &str) -> anyhow::Result<Chip> {
    Chip::from_name(s).with_context(|| {
        let names: Vec<&str> = Chip::all().map(Chip::name).collect();
        format!("unknown chip {s:?}; expected one of {}", names.join(", "))
    })
}

fn parse_size(s: &str) -> anyhow::Result<u32> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1024u64),
        Some('M' | 'm') => (&t[..t.len() - 1], 1024 * 1024),
        _ => (t, 1),
    };
    let v = if let Some(h) = num.strip_prefix("0x").or_else(|| num.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        num.parse::<u64>()
    }
    .with_context(|| format!("{s:?} is not a size (decimal or 0x hex, optional K/M)"))?;
    u32::try_from(v * mult).with_context(|| format!("{s:?} is larger than 4 GiB"))
}

fn parse_sha256(s: &str) -> anyhow::Result<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--sha256 must be 64 hex digits, got {s:?}");
    }
    let mut d = [0u8; 32];
    for (i, b) in d.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).context("hex digit")?;
    }
    Ok(d)
}

fn info(file: &PathBuf, as_json: bool) -> anyhow::Result<ExitCode> {
    let bytes = read(file)?;
    let info =
        inspect(&bytes).with_context(|| format!("{} is not a readable image", file.display()))?;
    if as_json {
        let mut v = info_json(&info);
        v["signature"] = signature::describe(&bytes, &info).0;
        print_json(&v)?;
    } else {
        print_info(&info, &signature::describe(&bytes, &info).1);
    }
    Ok(ExitCode::SUCCESS)
}

/// What does not fit the slot, in the file's own numbers: the file size,
/// the image size and the slot size, and the advice that fits (a bigger
/// slot or a smaller app; trailing data only when there is some).
fn slot_fit_message(bytes: &[u8], e: &ImageError) -> Option<(&'static str, String)> {
    let slot = match e {
        ImageError::ImageTooLarge { slot_size, .. } | ImageError::FileTooLarge { slot_size } => {
            u64::from(*slot_size)
        }
        _ => return None,
    };
    let file = bytes.len() as u64;
    let image = inspect(bytes).ok().map(|i| u64::from(i.image_len))?;
    let sizes = format!(
        "the file is {file} bytes ({}), the image in it {image} bytes ({}), the slot {slot} bytes ({})",
        human_size(file),
        human_size(image),
        human_size(slot)
    );
    Some(if image > slot {
        (
            "image_too_large",
            format!("{sizes}: the image does not fit the slot; use a bigger slot or build a smaller app"),
        )
    } else {
        (
            "file_too_large",
            format!(
                "{sizes}: the image fits, but the {} bytes of trailing data after it do not; strip the trailing data or use a bigger slot",
                file - image
            ),
        )
    })
}

fn verify_cmd(
    file: &PathBuf,
    opts: &VerifyOptions,
    trust: &TrustArgs,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let bytes = read(file)?;
    let trust = trust.any().then(|| signature::load(trust)).transpose()?;
    let verdict = verify(&bytes, opts);
    let fit = verdict
        .as_ref()
        .err()
        .and_then(|e| slot_fit_message(&bytes, e));
    let sig = match (&verdict, &trust) {
        (Ok(i), Some(t)) => Some(signature::check(&bytes, i, t)),
        _ => None,
    };
    let sig_ok = sig.as_ref().is_none_or(signature::Outcome::ok);
    if as_json {
        let mut v = match (&verdict, &fit) {
            (Ok(i), _) => json!({ "valid": sig_ok, "error": null, "image": info_json(i) }),
            (Err(_), Some((code, message))) => {
                json!({ "valid": false, "error": code, "message": message })
            }
            (Err(e), None) => {
                json!({ "valid": false, "error": error_code(e), "message": e.to_string() })
            }
        };
        if let Some(s) = &sig {
            if let signature::Outcome::Failed { code, message } = s {
                v["error"] = json!(code);
                v["message"] = json!(message);
            }
            v["signature"] = s.to_json();
        }
        print_json(&v)?;
    } else {
        match &verdict {
            Ok(i) => {
                let d = i.app_desc.as_ref();
                println!(
                    "{}: valid {} app{}, {} ({})",
                    file.display(),
                    i.chip,
                    d.map(|d| format!(" {} {}", d.project_name(), d.version()))
                        .unwrap_or_default(),
                    human_size(i.file_len),
                    i.file_len
                );
            }
            Err(e) => match &fit {
                Some((_, m)) => eprintln!("{}: {m}", file.display()),
                None => eprintln!("{}: {e}", file.display()),
            },
        }
        match &sig {
            Some(s) if s.ok() => println!("{}: {}", file.display(), s.to_text()),
            Some(s) => eprintln!("{}: {}", file.display(), s.to_text()),
            None => {}
        }
    }
    Ok(check_exit(verdict.is_ok() && sig_ok))
}

/// A stable machine-readable name for an error variant.
fn error_code(e: &ImageError) -> &'static str {
    match e {
        ImageError::BadMagic { .. } => "bad_magic",
        ImageError::Esp8266 { .. } => "esp8266",
        ImageError::UnknownChip { .. } => "unknown_chip",
        ImageError::WrongChip { .. } => "wrong_chip",
        ImageError::TooManySegments { .. } => "too_many_segments",
        ImageError::SegmentLenUnaligned { .. } => "segment_len_unaligned",
        ImageError::SegmentTooLong { .. } => "segment_too_long",
        ImageError::SegmentMisaligned { .. } => "segment_misaligned",
        ImageError::InvalidMmuPageSize { .. } => "invalid_mmu_page_size",
        ImageError::Truncated { .. } => "truncated",
        ImageError::ChecksumMismatch { .. } => "checksum_mismatch",
        ImageError::ShaMismatch { .. } => "sha256_mismatch",
        ImageError::ImageTooLarge { .. } => "image_too_large",
        ImageError::FileTooLarge { .. } => "file_too_large",
        ImageError::SecureVersionTooLow { .. } => "secure_version_too_low",
        ImageError::MissingAppDesc => "missing_app_desc",
        ImageError::FileShaMismatch { .. } => "file_sha256_mismatch",
        ImageError::IsBootloader => "bootloader",
        ImageError::IsMergedFlash => "merged_flash",
        ImageError::IsRamOnly => "ram_only",
        // Header fields, the entry point, the SHA-256 policy: the
        // verifier's own stable codes.
        e => e.code(),
    }
}

fn info_json(i: &ImageInfo) -> Value {
    let h = &i.header;
    let segments: Vec<Value> = i
        .segments()
        .iter()
        .map(|s| {
            json!({
                "load_addr": s.load_addr,
                "len": s.len,
                "file_offset": s.data_offset,
                "header_offset": s.header_offset(),
                "kind": s.kind.name(),
            })
        })
        .collect();
    let app_desc = i.app_desc.as_ref().map(|d| {
        json!({
            "version": d.version().to_string(),
            "project_name": d.project_name().to_string(),
            "idf_ver": d.idf_ver().to_string(),
            "secure_version": d.secure_version(),
            "date": d.date().to_string(),
            "time": d.time().to_string(),
            "elf_sha256": hex(&d.app_elf_sha256()),
            "min_efuse_blk_rev_full": d.min_efuse_blk_rev_full(),
            "max_efuse_blk_rev_full": d.max_efuse_blk_rev_full(),
            "mmu_page_size": d.mmu_page_size(),
        })
    });
    let bootloader_desc = i.bootloader_desc.as_ref().map(|d| {
        json!({
            "version": d.version(),
            "idf_ver": d.idf_ver().to_string(),
            "date_time": d.date_time().to_string(),
            "secure_version": d.secure_version(),
        })
    });
    json!({
        "chip": i.chip.name(),
        "chip_id": h.chip_id,
        "kind": i.kind.name(),
        "entry": h.entry_addr,
        "flash_mode": h.flash_mode().map(FlashMode::name),
        "flash_size": h.flash_size(),
        "flash_freq": i.chip.flash_freq_name(h.flash_freq_code()),
        "min_chip_rev_full": h.min_chip_rev_full,
        "max_chip_rev_full": h.max_chip_rev_full,
        "min_chip_rev_legacy": h.min_chip_rev,
        "segments": segments,
        "checksum": i.checksum_stored,
        "checksum_computed": i.checksum_computed,
        "checksum_valid": i.checksum_valid(),
        "sha256_appended": h.has_hash(),
        "sha256": i.sha256.map(|s| hex(&s.stored)),
        "sha256_valid": i.sha256_valid(),
        "image_len": i.image_len,
        "size": i.file_len,
        "mmu_page_size": i.mmu_page_size,
        "signature": i.signature.map(|s| json!({
            "scheme": s.scheme.name(), "offset": s.offset, "len": s.len,
        })),
        "app_desc": app_desc,
        "bootloader_desc": bootloader_desc,
    })
}

fn print_info(i: &ImageInfo, signature_lines: &[String]) {
    let h = &i.header;
    let what = match i.kind {
        ImageKind::App => "app image",
        ImageKind::Bootloader => "bootloader image (not an app)",
        ImageKind::MergedFlash => {
            "merged full-flash image (bootloader + partition table + app; not an app, extract the app at 0x10000)"
        }
        ImageKind::RamOnly => "RAM-only image (not bootable from an OTA slot)",
        _ => "image",
    };
    println!("{} {what}", i.chip);
    println!(
        "  Chip ID:        {} ({})",
        h.chip_id,
        i.chip.display_name()
    );
    println!("  Entry point:    {:#010x}", h.entry_addr);
    println!("  Segments:       {}", i.segments().len());
    println!(
        "  Flash:          {} {} {}",
        h.flash_mode().map_or("?", FlashMode::name),
        h.flash_size()
            .map_or_else(|| "?".to_string(), |s| human_size(s.into())),
        i.chip.flash_freq_name(h.flash_freq_code()).unwrap_or("?")
    );
    println!(
        "  Chip revision:  min v{}.{} (legacy {}), max {}",
        h.min_chip_rev_full / 100,
        h.min_chip_rev_full % 100,
        h.min_chip_rev,
        h.max_chip_rev().map_or_else(
            || "not set".to_string(),
            |m| format!("v{}.{}", m / 100, m % 100)
        )
    );
    println!(
        "  Size:           {} (image {} bytes, file {} bytes)",
        human_size(i.file_len),
        i.image_len,
        i.file_len
    );
    println!();
    println!("  Segment  Length    Load addr   File offs   Kind");
    for (n, s) in i.segments().iter().enumerate() {
        let kind = match s.kind {
            SegmentKind::Flash => "flash",
            SegmentKind::Ram => "ram",
            SegmentKind::Padding => "padding",
        };
        println!(
            "  {n:>7}  {:#08x}  {:#010x}  {:#010x}  {kind}",
            s.len,
            s.load_addr,
            s.header_offset()
        );
    }
    println!();
    if i.checksum_valid() {
        println!("  Checksum:       {:#04x} (valid)", i.checksum_stored);
    } else {
        println!(
            "  Checksum:       {:#04x} (invalid - calculated {:#04x})",
            i.checksum_stored, i.checksum_computed
        );
    }
    match &i.sha256 {
        Some(s) => println!(
            "  Validation hash: {} ({})",
            hex(&s.computed),
            if s.is_valid() { "valid" } else { "invalid" }
        ),
        None => println!("  Validation hash: not appended"),
    }
    for line in signature_lines {
        println!("  {line}");
    }
    if let Some(d) = &i.app_desc {
        println!();
        let (project, version) = (d.project_name().to_string(), d.version().to_string());
        let shown = |t: &str, none| otter_sim::device::or_placeholder(t, none).to_string();
        println!(
            "  Project name:   {}",
            shown(&project, otter_sim::device::NO_PROJECT)
        );
        println!(
            "  App version:    {}",
            shown(&version, otter_sim::device::NO_VERSION)
        );
        println!("  Compile time:   {} {}", d.date(), d.time());
        println!("  ELF SHA256:     {}", hex(&d.app_elf_sha256()));
        println!("  ESP-IDF:        {}", d.idf_ver());
        println!("  Secure version: {}", d.secure_version());
    } else if let Some(d) = &i.bootloader_desc {
        println!();
        println!("  Bootloader version: {}", d.version());
        println!("  ESP-IDF:        {}", d.idf_ver());
        println!("  Compile time:   {}", d.date_time());
    }
}
