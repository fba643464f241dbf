//! Interop with littlefs-python 0.19 (the C littlefs), both ways: otter's
//! images mount in littlefs configured as esp_littlefs configures it and
//! read back byte for byte; littlefs-python's images (its default 2.1, the
//! esp_littlefs build rule's `--name-max=64 --block-size=4096`, and 2.0)
//! list and read back in otter.

use std::path::{Path, PathBuf};
use std::process::Command;

use otter_www::limits::{check, MountLimits, MountRefusal};
use otter_www::read::{superblock, Fs};

/// The project's Python with littlefs-python, or a loud panic.
fn python() -> PathBuf {
    let py = match std::env::var_os("OTTER_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    };
    assert!(
        py.is_file(),
        "the Python oracles are not installed at {}: run scripts/setup-oracles.sh",
        py.display()
    );
    py
}

fn oracle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oracle/littlefs_esp.py")
}

/// A web UI with what exercises littlefs: inline and CTZ files (one of many
/// blocks), an empty file, nested directories, a 64-byte name, and enough
/// entries in one directory to split its metadata pair.
fn folder() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    std::fs::write(p.join("index.html"), b"<!doctype html><h1>otter</h1>").unwrap();
    std::fs::create_dir_all(p.join("assets/js")).unwrap();
    let big: Vec<u8> = (0..70_000u32).map(|i| (i * 31 + i / 4096) as u8).collect();
    std::fs::write(p.join("assets/js/app.js"), big).unwrap();
    std::fs::write(p.join("assets/style.css"), vec![b'a'; 3000]).unwrap();
    std::fs::write(p.join("empty.txt"), b"").unwrap();
    std::fs::write(p.join("n".repeat(64)), b"long name").unwrap();
    std::fs::create_dir_all(p.join("many")).unwrap();
    for i in 0..120 {
        std::fs::write(
            p.join(format!("many/file-{i:03}.txt")),
            format!("file {i}\n"),
        )
        .unwrap();
    }
    d
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("running the oracle");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file of `dir`, as (path in the image, bytes), sorted.
fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let path = format!("{prefix}/{}", e.file_name().to_str().unwrap());
            if e.file_type().unwrap().is_dir() {
                pending.push((e.path(), path));
            } else {
                out.push((path, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn otter_images_mount_in_littlefs_configured_as_esp_littlefs() {
    let d = folder();
    for size in [256 * 1024u32, 1024 * 1024] {
        let img = otter_www::build_image(d.path(), size).expect("build");
        let out_dir = tempfile::tempdir().unwrap();
        let path = out_dir.path().join("www.bin");
        std::fs::write(&path, &img).unwrap();
        let out = run(Command::new(python())
            .arg(oracle())
            .arg("check")
            .arg(&path)
            .arg(d.path()));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(summary["problems"], serde_json::json!([]), "{summary}");
        assert_eq!(summary["disk_version"], 0x0002_0001, "{summary}");
        assert_eq!(summary["name_max"], 64, "{summary}");
        assert_eq!(summary["block_size"], 4096, "{summary}");
        assert_eq!(summary["block_count"], size / 4096, "{summary}");
        assert_eq!(summary["files"], 125, "{summary}");
        assert_eq!(summary["dirs"], 3, "{summary}");
        // And the device-side check agrees.
        let sb = superblock(&img).expect("superblock");
        assert_eq!(check(&sb, &MountLimits::esp_littlefs(size)), Ok(()));
    }
}

/// Images littlefs-python writes, how, and what the superblock says.
enum Maker {
    /// `littlefs-python create` with its defaults (name_max 255).
    CliDefault,
    /// esp_littlefs's `littlefs_create_partition_image` rule.
    CliEsp,
    /// The Python API at disk version 2.0, name_max 64.
    Api20,
}

fn make(maker: Maker, src: &Path, size: u32) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("img.bin");
    let cli = python().with_file_name("littlefs-python");
    match maker {
        Maker::CliDefault => run(Command::new(&cli)
            .arg("create")
            .arg(src)
            .arg(&img)
            .arg(format!("--fs-size={size}"))
            .arg("--block-size=4096")),
        Maker::CliEsp => run(Command::new(&cli)
            .arg("create")
            .arg(src)
            .arg(&img)
            .arg("-v")
            .arg(format!("--fs-size={size}"))
            .arg("--name-max=64")
            .arg("--block-size=4096")),
        Maker::Api20 => run(Command::new(python())
            .arg(oracle())
            .arg("create")
            .arg(src)
            .arg(&img)
            .arg(size.to_string())
            .arg("2.0")
            .arg("64")),
    };
    std::fs::read(&img).unwrap()
}

fn assert_reads_back(img: &[u8], src: &Path) {
    let want = files_of(src);
    let listed = otter_www::list(img).expect("list");
    let files: Vec<_> = listed.iter().filter(|e| !e.is_dir).collect();
    assert_eq!(
        files.iter().map(|e| e.path.clone()).collect::<Vec<_>>(),
        want.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>()
    );
    for (path, bytes) in &want {
        let got = otter_www::read_file(img, path).expect(path);
        assert!(
            &got == bytes,
            "{path}: {} bytes, want {}",
            got.len(),
            bytes.len()
        );
    }
    let fs = Fs::mount(img).expect("mount");
    assert_eq!(fs.read_dir("/many").expect("many").len(), 120);
}

#[test]
fn littlefs_python_default_images_read_in_otter() {
    let d = folder();
    let img = make(Maker::CliDefault, d.path(), 512 * 1024);
    let sb = superblock(&img).expect("superblock");
    assert_eq!(
        (sb.disk_version, sb.name_max, sb.block_count),
        (0x0002_0001, 255, 128)
    );
    assert_reads_back(&img, d.path());
    // esp_littlefs's default LFS_NAME_MAX is 64: a real device refuses it.
    assert_eq!(
        check(&sb, &MountLimits::esp_littlefs(512 * 1024)),
        Err(MountRefusal::NameMax {
            found: 255,
            max: 64
        })
    );
}

#[test]
fn esp_littlefs_build_rule_images_read_in_otter_and_pass_the_device_check() {
    let d = folder();
    let img = make(Maker::CliEsp, d.path(), 512 * 1024);
    let sb = superblock(&img).expect("superblock");
    assert_eq!(
        (sb.disk_version, sb.name_max, sb.block_size),
        (0x0002_0001, 64, 4096)
    );
    assert_reads_back(&img, d.path());
    assert_eq!(check(&sb, &MountLimits::esp_littlefs(512 * 1024)), Ok(()));
    // The same image in a bigger slot: the block count is named.
    assert_eq!(
        check(&sb, &MountLimits::esp_littlefs(1024 * 1024)),
        Err(MountRefusal::BlockCount {
            found: 128,
            expected: 256,
            block_size: 4096
        })
    );
}

#[test]
fn disk_version_2_0_images_read_in_otter() {
    let d = folder();
    let img = make(Maker::Api20, d.path(), 512 * 1024);
    let sb = superblock(&img).expect("superblock");
    assert_eq!((sb.disk_version, sb.name_max), (0x0002_0000, 64));
    assert_reads_back(&img, d.path());
    assert_eq!(check(&sb, &MountLimits::esp_littlefs(512 * 1024)), Ok(()));
}
