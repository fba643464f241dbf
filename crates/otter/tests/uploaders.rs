//! docs/uploaders.md, tested: its PlatformIO `upload_command` (read from the
//! page, so the page cannot drift) really pushes to a virtual device, and the
//! two uploaders it says fail do fail the way it says.

mod devproc;
mod util;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use devproc::{image, Device};
use util::workspace_root;

/// The value of `key = ...` in the page's ```ini block.
fn ini_value(doc: &str, key: &str) -> String {
    let block = doc
        .split_once("```ini\n")
        .and_then(|(_, b)| b.split_once("```"))
        .expect("docs/uploaders.md has an ini block")
        .0;
    block
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("docs/uploaders.md's ini block has no {key}"))
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
    assert_eq!(ini_value(&doc, "upload_protocol"), "custom");
    assert!(
        ini_value(&doc, "upload_port").ends_with(":3232"),
        "the documented port is the device's"
    );
    let command = ini_value(&doc, "upload_command");
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
fn espota_and_esphome_uploads_fail_as_documented() {
    let dev = Device::create(&[]).run(&[]);
    let addr = dev.url.trim_start_matches("http://").to_string();

    // espota's invitation: "COMMAND PORT SIZE MD5\n" over UDP to the device
    // port. Nothing answers (Linux reports the ICMP port-unreachable as a
    // refused connection; elsewhere the read times out).
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    udp.connect(&addr).expect("udp connect");
    udp.send(b"0 48266 69712 0123456789abcdef0123456789abcdef\n")
        .expect("send the invitation");
    let mut buf = [0u8; 64];
    match udp.recv(&mut buf) {
        Ok(n) => panic!("the invitation was answered: {:?}", &buf[..n]),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }

    // ESPHome's uploader opens TCP, sends its five magic bytes and waits for
    // the device's answer.
    let mut tcp = TcpStream::connect(&addr).expect("tcp connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    tcp.write_all(&[0x6C, 0x26, 0xF7, 0x5C, 0x45])
        .expect("magic");
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    // The device is unharmed.
    assert_eq!(dev.status()["running"]["version"], "1.0.0");
}
