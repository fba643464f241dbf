//! docs/uploaders.md, tested: its PlatformIO `upload_command` (read from the
//! page, so the page cannot drift) really pushes to a virtual device, and
//! the uploaders people already use work against it, run as they are
//! published: ESPHome's `esphome.espota2` (the current release and one
//! from 2024), the `espota` PyPI package (an ESPHome protocol-1 client),
//! and an ArduinoOTA client speaking both authentication generations
//! (tests/clients/arduino_ota.py). Each uploads a good image (which then
//! runs), a wrong-chip, a corrupted and a too-large image, with and without
//! a password, and with a wrong one; every refusal leaves the boot
//! selection (the otadata bytes) as it was.

mod devproc;
mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use devproc::{image, Device, OTADATA};
use util::{python, workspace_root};

/// The value of `key = ...` in the page's ```ini block for `protocol`.
fn ini_value(doc: &str, protocol: &str, key: &str) -> String {
    let block = doc
        .split("```ini\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(b, _)| b))
        .find(|b| b.contains(&format!("upload_protocol = {protocol}")))
        .unwrap_or_else(|| panic!("docs/uploaders.md has no ini block for {protocol}"));
    block
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("docs/uploaders.md's {protocol} block has no {key}"))
}

fn sha256_hex(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(std::fs::read(p).expect("reading the image"));
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_documented_platformio_upload_command_pushes_to_a_virtual_device() {
    let doc = std::fs::read_to_string(workspace_root().join("docs/uploaders.md"))
        .expect("reading docs/uploaders.md");
    assert_eq!(ini_value(&doc, "custom", "upload_protocol"), "custom");
    assert!(
        ini_value(&doc, "custom", "upload_port").ends_with(":3232"),
        "the documented port is the device's"
    );
    let command = ini_value(&doc, "custom", "upload_command");
    assert!(command.contains("$SOURCE"), "{command}");
    let dev = Device::create(&[]).run(&[]);
    let firmware = image(dev.path(), "esp32s3", "2.0.0", &[]);
    // PlatformIO substitutes its build variables before running the line.
    let line = command
        .replace("$SOURCE", firmware.to_str().expect("utf-8 path"))
        .replace("$UPLOAD_PORT", dev.url.trim_start_matches("http://"));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_otter"))
        .parent()
        .expect("the binary's folder");
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    let out = Command::new("sh")
        .arg("-c")
        .arg(&line)
        .env("PATH", path)
        .output()
        .expect("running sh");
    assert!(
        out.status.success(),
        "{line}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let st = dev.status();
    assert_eq!(st["running"]["version"], "2.0.0", "{st:#}");
    assert_eq!(st["running"]["sha256"], sha256_hex(&firmware).as_str());
}

#[test]
fn the_documented_platformio_espota_settings_upload_to_a_virtual_device() {
    let doc = std::fs::read_to_string(workspace_root().join("docs/uploaders.md"))
        .expect("reading docs/uploaders.md");
    let block = doc
        .split("```ini\n")
        .skip(1)
        .find(|b| b.contains("upload_protocol = espota"))
        .and_then(|b| b.split_once("```"))
        .expect("an espota ini block")
        .0;
    // upload_flags continues on the indented lines after it.
    let flags: Vec<String> = block
        .lines()
        .skip_while(|l| !l.starts_with("upload_flags"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .map(|l| l.trim().to_string())
        .collect();
    assert!(flags.contains(&"--port=3232".to_string()), "{flags:?}");
    let password = flags
        .iter()
        .find_map(|f| f.strip_prefix("--auth="))
        .expect("an --auth flag")
        .to_string();
    let dev = Device::create(&[]).run(&["--espota-password", &password]);
    let port = dev.url.rsplit_once(':').expect("port").1.to_string();
    let firmware = image(dev.path(), "esp32s3", "2.0.0", &[]);
    // PlatformIO: espota.py --debug --progress -i IP -f BIN, then upload_flags.
    let out = Command::new(python())
        .arg(workspace_root().join("tests/clients/arduino_ota.py"))
        .args([
            "--debug",
            "--progress",
            "-i",
            "127.0.0.1",
            "-I",
            "127.0.0.1",
        ])
        .args(["-f", firmware.to_str().expect("utf-8")])
        .args(flags.iter().map(|f| f.replace("3232", &port)))
        .output()
        .expect("running the client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = dev.wait_until(|st| st["running"]["version"] == "2.0.0", "2.0.0 running");
    assert_eq!(st["last_update"]["protocol"], "espota");
}

/// Where setup-oracles.sh installed an uploader (`esphome-2026.10.0`, ...).
fn uploader(pin: &str) -> PathBuf {
    let dir = workspace_root().join(".venv/uploaders").join(pin);
    assert!(
        dir.is_dir(),
        "the uploader {pin} is not installed at {}: run scripts/setup-oracles.sh",
        dir.display()
    );
    dir
}

/// One uploader as a user runs it.
#[derive(Clone, Copy, Debug)]
enum Client {
    /// `esphome.espota2.run_ota` of this ESPHome release.
    Esphome(&'static str),
    /// The `espota` PyPI package (with ESPHome 2024.12.4's helpers).
    EspotaPypi,
    /// tests/clients/arduino_ota.py, `current` or `legacy` generation.
    Arduino(&'static str),
}

impl Client {
    /// Uploads `file` to `dev` with `password`; returns (success, output).
    fn upload(self, dev: &Device, file: &Path, password: Option<&str>) -> (bool, String) {
        let addr = dev.url.trim_start_matches("http://");
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        let f = file.to_str().expect("utf-8 path");
        let mut cmd = Command::new(python());
        match self {
            Client::Esphome(version) => {
                let code = "import sys, logging\nfrom pathlib import Path\nlogging.basicConfig(level=logging.INFO)\nimport esphome.espota2 as e\npw = sys.argv[3] or None\nr = e.run_ota(sys.argv[1], int(sys.argv[2]), pw, Path(sys.argv[4]))\nrc = r[0] if isinstance(r, tuple) else r\nprint('rc', rc)\nsys.exit(rc)";
                cmd.env("PYTHONPATH", uploader(&format!("esphome-{version}")));
                cmd.args(["-c", code, host, port, password.unwrap_or(""), f]);
            }
            Client::EspotaPypi => {
                // Its __main__ drops run_ota's result; call it directly.
                let code = "import sys, logging\nlogging.basicConfig(level=logging.INFO)\nimport espota\nsys.exit(espota.run_ota(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))";
                let path =
                    std::env::join_paths([uploader("espota-0.5.0"), uploader("esphome-2024.12.4")])
                        .expect("PYTHONPATH");
                cmd.env("PYTHONPATH", path);
                cmd.args(["-c", code, host, port, password.unwrap_or(""), f]);
            }
            Client::Arduino(generation) => {
                cmd.arg(workspace_root().join("tests/clients/arduino_ota.py"));
                cmd.args(["-i", host, "-p", port, "-I", "127.0.0.1", "-f", f]);
                cmd.args(["--generation", generation, "-t", "5"]);
                if let Some(pw) = password {
                    cmd.args(["-a", pw]);
                }
            }
        }
        let out = cmd.output().expect("running the uploader");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `otter device run` options that configure the device for this
    /// client with `password`.
    fn run_args(self, password: Option<&str>) -> Vec<String> {
        let mut a = Vec::new();
        let (flag, extra): (&str, &[&str]) = match self {
            Client::Esphome(_) => ("--esphome-password", &[]),
            // The espota package speaks ESPHome's protocol version 1 only.
            Client::EspotaPypi => ("--esphome-password", &["--esphome-version", "1"]),
            Client::Arduino("legacy") => ("--espota-password", &["--espota-auth", "md5"]),
            Client::Arduino(_) => ("--espota-password", &[]),
        };
        a.extend(extra.iter().map(|s| s.to_string()));
        if let Some(pw) = password {
            a.push(flag.to_string());
            a.push(pw.to_string());
        }
        a
    }

    /// What the uploader prints for a refusal with the device's `code`
    /// ("" for a wrong password).
    fn says(self, code: &str) -> String {
        match (self, code) {
            (Client::Arduino(_), "") => "Authentication Failed".into(),
            (Client::Arduino(_), c) => format!("ERR {c}: "),
            (_, "") => "Authentication invalid".into(),
            (_, "too_large") => String::new(),
            // ESPHome's 0x84, its "update end" error.
            _ => "Finishing update failed".into(),
        }
    }

    fn protocol(self) -> &'static str {
        match self {
            Client::Esphome(_) | Client::EspotaPypi => "esphome",
            Client::Arduino(_) => "espota",
        }
    }
}

fn otadata(dev: &Device) -> Vec<u8> {
    dev.flash()[OTADATA].to_vec()
}

/// The whole matrix for one client: with and without a password.
fn matrix(client: Client) {
    for password in [None, Some("ota-s3cret")] {
        let mut dev = Device::create(&[]);
        let args = client.run_args(password);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dev = dev.run(&args);
        let dir = dev.path().to_path_buf();
        let good = image(&dir, "esp32s3", "2.0.0", &[]);
        let wrong_chip = image(&dir, "esp32c3", "2.0.1", &[]);
        let too_large = image(&dir, "esp32s3", "2.0.2", &["--size", "2200000"]);
        let corrupted = dir.join("corrupted.bin");
        let mut bytes = std::fs::read(&good).expect("image");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        std::fs::write(&corrupted, &bytes).expect("write");

        let what = format!("{client:?} password {password:?}");
        let refusals: Vec<(&str, &Path, Option<&str>, &str)> = {
            let mut r: Vec<(&str, &Path, Option<&str>, &str)> = vec![
                ("wrong chip", &wrong_chip, password, "wrong_chip"),
                ("corrupted", &corrupted, password, "integrity"),
                ("too large", &too_large, password, "too_large"),
            ];
            if password.is_some() {
                r.push(("wrong password", &good, Some("not-it"), ""));
            }
            r
        };
        for (case, file, pw, code) in refusals {
            let before = otadata(&dev);
            let record = dev.status()["last_update"].clone();
            let (ok, out) = client.upload(&dev, file, pw);
            assert!(!ok, "{what}, {case}: the uploader reported success:\n{out}");
            assert!(out.contains(&client.says(code)), "{what}, {case}: {out}");
            assert_eq!(
                otadata(&dev),
                before,
                "{what}, {case}: the boot selection changed"
            );
            let st = dev.status();
            assert_eq!(st["running"]["version"], "1.0.0", "{what}, {case}");
            if code.is_empty() {
                // Refused before any update began: nothing new is recorded.
                assert_eq!(st["last_update"], record, "{what}, {case}");
            } else {
                let u = &st["last_update"];
                assert_eq!(u["protocol"], client.protocol(), "{what}, {case}: {u:#}");
                assert_eq!(u["error"]["error"], code, "{what}, {case}: {u:#}\n{out}");
            }
        }
        let (ok, out) = client.upload(&dev, &good, password);
        assert!(ok, "{what}, good image:\n{out}");
        if let Client::Esphome(_) = client {
            // The virtual device lends an inflater, so it advertises gzip
            // and both releases send the image gzip-compressed.
            assert!(
                out.contains("Compressed to") && !out.contains("(deflate)"),
                "{what}: not gzip-compressed:\n{out}"
            );
        }
        let st = dev.wait_until(|st| st["running"]["version"] == "2.0.0", "2.0.0 running");
        assert_eq!(st["last_update"]["protocol"], client.protocol(), "{what}");
        assert_eq!(st["last_update"]["result"], "ok", "{what}");
    }
}

#[test]
fn esphome_current_release() {
    matrix(Client::Esphome("2026.10.0"));
}

#[test]
fn esphome_2024_release() {
    matrix(Client::Esphome("2024.12.4"));
}

#[test]
fn espota_pypi_package() {
    matrix(Client::EspotaPypi);
}

#[test]
fn arduino_ota_sha256_generation() {
    matrix(Client::Arduino("current"));
}

#[test]
fn arduino_ota_md5_generation() {
    matrix(Client::Arduino("legacy"));
}

#[test]
fn espota_filesystem_uploads_replace_the_web_ui_in_the_inactive_slot() {
    let dev = Device::create(&[]).run(&[]);
    let dir = dev.path().join("site");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("index.html"), "<h1>from espota</h1>").expect("write");
    let ui = dev.path().join("ui.bin");
    let out = util::run_otter([
        "www",
        "build",
        dir.to_str().expect("utf-8"),
        "--size",
        "0x100000",
        "-o",
        ui.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", util::stderr(&out));
    let small = dev.path().join("small.bin");
    std::fs::write(&small, vec![0xffu8; 4096]).expect("write");
    let addr = dev.url.trim_start_matches("http://");
    let (_, port) = addr.rsplit_once(':').expect("port");
    let run = |file: &Path| {
        Command::new(python())
            .arg(workspace_root().join("tests/clients/arduino_ota.py"))
            .args([
                "-i",
                "127.0.0.1",
                "-I",
                "127.0.0.1",
                "-p",
                port,
                "-s",
                "-t",
                "5",
            ])
            .args(["-f", file.to_str().expect("utf-8")])
            .output()
            .expect("running the client")
    };
    // A filesystem image that is not the slot's size is refused at once.
    let before = otadata(&dev);
    let out = run(&small);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Bad Answer: ERR wrong_size: "), "{text}");
    assert_eq!(otadata(&dev), before);

    let out = run(&ui);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = dev.wait_until(
        |st| st["last_update"]["kind"] == "www" && st["boot_count"].as_u64() > Some(1),
        "the web UI written and the device rebooted",
    );
    assert_eq!(st["last_update"]["protocol"], "espota");
    assert_eq!(st["last_update"]["slot"], "www_1", "{st:#}");
    let page = Command::new("curl")
        .args(["-s", &format!("{}/", dev.url)])
        .output()
        .expect("curl");
    assert!(String::from_utf8_lossy(&page.stdout).contains("from espota"));
    assert_eq!(
        otadata(&dev),
        before,
        "a web UI never touches the boot selection"
    );
}

#[test]
fn a_device_with_a_token_serves_the_challenge_protocols_only_with_their_own_password() {
    let token = "http-token";
    let dev = Device::create(&["--token", token]).run(&[]);
    let fw = image(dev.path(), "esp32s3", "2.0.0", &[]);
    let before = otadata(&dev);
    // No password of their own: neither protocol is served, so neither
    // bypasses the token, and the token itself is no password.
    for pw in [None, Some(token)] {
        let (ok, out) = Client::Esphome("2026.10.0").upload(&dev, &fw, pw);
        assert!(!ok, "{pw:?}: {out}");
    }
    // An espota invitation gets no answer (the client would retry 10 times).
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .expect("timeout");
    udp.connect(dev.url.trim_start_matches("http://"))
        .expect("udp connect");
    udp.send(b"0 48266 69712 0123456789abcdef0123456789abcdef\n")
        .expect("send the invitation");
    let mut buf = [0u8; 64];
    assert!(udp.recv(&mut buf).is_err(), "the invitation was answered");
    assert_eq!(otadata(&dev), before);
    drop(dev);

    let dev = Device::create(&["--token", token]).run(&["--esphome-password", "esp-pw"]);
    let fw = image(dev.path(), "esp32s3", "2.0.0", &[]);
    let (ok, out) = Client::Esphome("2026.10.0").upload(&dev, &fw, Some(token));
    assert!(!ok && out.contains("Authentication invalid"), "{out}");
    let (ok, out) = Client::Esphome("2026.10.0").upload(&dev, &fw, Some("esp-pw"));
    assert!(ok, "{out}");
    dev.wait_until(|st| st["running"]["version"] == "2.0.0", "2.0.0 running");
}
