//! The command line as a newcomer meets it: one test per rough edge of
//! issue 12, each running the real `otter` binary in a temporary directory.

mod devproc;
mod util;

use std::path::Path;

use serde_json::Value;
use util::{corpus_file, run_otter, stderr, stdout};

const TASMOTA: &str = "app-images/tasmota-sml/tasmota32_ottelo_tas-15.5.0.bin";
const BOOT_ESP32: &str = "bootloaders/esp-serial-flasher/bootloader-esp32.bin";
const TWO_OTA: &str = "partition-tables/csv-with-reference-bin/idf-partitions_two_ota.csv";

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(o), stderr(o)))
}

// ---- 1: `size --explain` covers the factory slot too, so flash-plan accepts its table.

#[test]
fn size_explain_resizes_every_app_slot_the_app_is_planned_into() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = corpus_file(TASMOTA);
    let table = corpus_file(TWO_OTA);
    let o = run_otter([
        "size",
        s(&app),
        "--partitions",
        s(&table),
        "--explain",
        "--flash-size",
        "8MB",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json_of(&o);
    let changed: Vec<&str> = v["explain"]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["old_size"] != c["new_size"])
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(changed, ["factory", "ota_0", "ota_1"], "{v:#}");
    let csv = dir.path().join("resized.csv");
    std::fs::write(&csv, v["explain"]["csv"].as_str().expect("csv")).expect("write");
    // The plan the explanation leads to: no loop back to `size --explain`.
    let o = run_otter([
        "flash-plan",
        "--chip",
        "esp32",
        "--partitions",
        s(&csv),
        "--bootloader",
        s(&corpus_file(BOOT_ESP32)),
        "--app",
        s(&app),
        "--flash-size",
        "8MB",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let o = run_otter([
        "size",
        s(&app),
        "--partitions",
        s(&csv),
        "--max-percent",
        "90",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

// ---- 3: a reader that closes the pipe (`otter ... | head`) is success, silently.

/// Runs `otter ARGS` with standard output a pipe whose reader is gone
/// before otter writes (the shell waits 0.3 s, then execs otter).
fn run_into_closed_pipe(args: &[&str]) -> std::process::Output {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("sleep 0.3; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_otter"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning sh");
    drop(child.stdout.take());
    child.wait_with_output().expect("waiting for otter")
}

#[test]
fn a_closed_pipe_is_success_for_every_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = corpus_file(TASMOTA);
    let table = corpus_file(TWO_OTA);
    let otadata = corpus_file("otadata/arduino-boot_app0.bin");
    let dev = dir.path().join("dev");
    let o = run_otter(["device", "create", s(&dev)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cases: Vec<Vec<&str>> = vec![
        vec!["image", "info", s(&app)],
        vec!["image", "info", s(&app), "--json"],
        vec!["image", "verify", s(&app), "--json"],
        vec!["partitions", "convert", s(&table), "-"],
        vec!["partitions", "check", s(&table), "--json"],
        vec!["otadata", "info", s(&otadata)],
        vec!["otadata", "info", s(&otadata), "--json"],
        vec!["size", s(&app), "--partitions", s(&table), "--explain"],
        vec!["device", "status", s(&dev)],
        vec!["device", "status", s(&dev), "--json"],
        vec!["--help"],
        vec!["completions", "bash"],
        vec!["man"],
        vec!["partitions", "show", s(&table)],
    ];
    for args in cases {
        let o = run_into_closed_pipe(&args);
        let err = stderr(&o);
        assert!(
            !err.contains("Broken pipe") && !err.contains("panicked"),
            "otter {args:?} complained about the closed pipe: {err}"
        );
        // As in ripgrep, the closed pipe ends the command with success,
        // even `size`, whose check failed before the explanation was cut.
        assert_eq!(o.status.code(), Some(0), "otter {args:?}: {err}");
    }
}

// ---- 9: `image verify --slot-size` states the sizes and the advice that fits.

#[test]
fn verify_slot_size_states_file_image_and_slot_sizes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = devproc::image(dir.path(), "esp32s3", "1.0.0", &["--size", "0x40000"]);
    let o = run_otter(["image", "verify", s(&big), "--slot-size", "0x20000"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    for needle in [
        "the file is 262144 bytes",
        "the image in it 262144 bytes",
        "the slot 131072 bytes",
        "use a bigger slot or build a smaller app",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    assert!(!err.contains("trailing"), "no trailing data here: {err}");
    let o = run_otter([
        "image",
        "verify",
        s(&big),
        "--slot-size",
        "0x20000",
        "--json",
    ]);
    assert_eq!(json_of(&o)["error"], "image_too_large");

    // An image that fits, followed by data that does not.
    let small = devproc::image(dir.path(), "esp32s3", "1.0.1", &["--size", "0x18000"]);
    let mut bytes = std::fs::read(&small).expect("read");
    bytes.extend(std::iter::repeat_n(0xA5, 0x9000));
    std::fs::write(&small, &bytes).expect("write");
    let o = run_otter(["image", "verify", s(&small), "--slot-size", "0x20000"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    for needle in [
        "the file is 135168 bytes",
        "the image in it 98304 bytes",
        "the slot 131072 bytes",
        "36864 bytes of trailing data",
        "strip the trailing data",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    let o = run_otter([
        "image",
        "verify",
        s(&small),
        "--slot-size",
        "0x20000",
        "--json",
    ]);
    assert_eq!(json_of(&o)["error"], "file_too_large");
}

// ---- 7: names, a readable partition table, headers, help texts, one unit convention.

#[test]
fn partitions_show_lists_a_csv_and_its_binary_alike() {
    let csv = corpus_file(TWO_OTA);
    let bin = corpus_file("partition-tables/csv-with-reference-bin/idf-partitions_two_ota.ref.bin");
    let o = run_otter(["partitions", "show", s(&csv)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "TYPE", "SUBTYPE", "OFFSET", "SIZE", "(BINARY)", "FLAGS"]
    );
    let row = |name: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row {name} in {text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        row("ota_1"),
        ["ota_1", "app", "ota_1", "0x210000", "0x100000", "1.00", "MiB"]
    );
    assert_eq!(
        row("nvs"),
        ["nvs", "data", "nvs", "0x9000", "0x4000", "16.00", "KiB"]
    );
    // The binary gen_esp32part.py made from this CSV shows the same rows.
    let o = run_otter(["partitions", "show", s(&bin)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let strip_footer = |t: &str| {
        t.lines()
            .filter(|l| !l.contains("partitions ("))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip_footer(&stdout(&o)), strip_footer(&text));
    let a = json_of(&run_otter(["partitions", "show", s(&csv), "--json"]));
    let b = json_of(&run_otter(["partitions", "show", s(&bin), "--json"]));
    assert_eq!(a["format"], "csv");
    assert_eq!(b["format"], "binary");
    let names = |v: &Value| -> Vec<(String, u64, u64)> {
        v["partitions"]
            .as_array()
            .expect("partitions")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().expect("name").to_string(),
                    p["offset"].as_u64().expect("offset"),
                    p["size"].as_u64().expect("size"),
                )
            })
            .collect()
    };
    assert_eq!(names(&a), names(&b));
    assert_eq!(names(&a).len(), 6);
}

#[test]
fn www_info_is_the_canonical_name_and_ls_its_alias() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ui = dir.path().join("ui");
    std::fs::create_dir(&ui).expect("mkdir");
    std::fs::write(ui.join("index.html"), "<h1>hi</h1>").expect("write");
    let img = dir.path().join("www.bin");
    let o = run_otter(["www", "build", s(&ui), "--size", "64K", "-o", s(&img)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info = run_otter(["www", "info", s(&img), "--json"]);
    assert_eq!(info.status.code(), Some(0), "{}", stderr(&info));
    let ls = run_otter(["www", "ls", s(&img), "--json"]);
    assert_eq!(json_of(&info), json_of(&ls));
    let help = stdout(&run_otter(["www", "--help"]));
    assert!(
        help.contains("info") && help.contains("[alias: ls]"),
        "{help}"
    );
}

#[test]
fn device_status_slot_table_has_a_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    assert!(run_otter(["device", "create", s(&dev)]).status.success());
    let o = run_otter(["device", "status", s(&dev)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    let after: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "slots:")
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        after,
        ["SLOT", "OFFSET", "SIZE", "VERDICT", "VERSION", "STATE", "ERROR"],
        "{text}"
    );
}

#[test]
fn otadata_help_says_it_writes() {
    let top = stdout(&run_otter(["--help"]));
    let line = top
        .lines()
        .find(|l| l.trim_start().starts_with("otadata"))
        .unwrap_or_else(|| panic!("no otadata in {top}"));
    assert!(line.contains("write"), "{line}");
    let help = stdout(&run_otter(["otadata", "--help"]));
    let first = help.lines().next().unwrap_or("");
    assert!(!first.starts_with("Read otadata"), "{first}");
    assert!(first.contains("write"), "{first}");
}

/// `N MB` / `N KB` (a decimal-looking unit) anywhere in `text`.
fn decimal_units(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| {
            w[0].chars().last().is_some_and(|c| c.is_ascii_digit())
                && ["MB", "KB", "MB,", "KB,", "MB)", "KB)", "MB;", "KB;"].contains(&w[1])
        })
        .map(|w| w.join(" "))
        .collect()
}

#[test]
fn sizes_are_printed_in_kib_and_mib_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = corpus_file(TASMOTA);
    let table = corpus_file(TWO_OTA);
    let dev = dir.path().join("dev");
    let boot = corpus_file(BOOT_ESP32);
    let hello = corpus_file("app-images/esp-serial-flasher/hello_world-esp32.bin");
    let runs: Vec<Vec<&str>> = vec![
        vec!["size", s(&app), "--partitions", s(&table), "--explain"],
        vec![
            "flash-plan",
            "--chip",
            "esp32",
            "--partitions",
            s(&table),
            "--bootloader",
            s(&boot),
            "--app",
            s(&app),
            "--flash-size",
            "4MB",
        ],
        vec![
            "flash-plan",
            "--chip",
            "esp32",
            "--partitions",
            s(&table),
            "--bootloader",
            s(&boot),
            "--app",
            s(&hello),
            "--flash-size",
            "4MB",
        ],
        vec!["partitions", "check", s(&table), "--app", s(&app)],
        vec!["image", "info", s(&app)],
        vec!["image", "verify", s(&app)],
        vec!["device", "create", s(&dev)],
        vec!["device", "status", s(&dev)],
    ];
    for args in runs {
        let o = run_otter(&args);
        let all = format!("{}{}", stdout(&o), stderr(&o));
        let bad = decimal_units(&all);
        assert!(bad.is_empty(), "otter {args:?} printed {bad:?}:\n{all}");
        assert!(all.contains("iB"), "otter {args:?} printed no size:\n{all}");
    }
}

// ---- 8: `push --to` takes an address as people type it, and waits out a reboot.

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn push_to_host_port_without_scheme() {
    let dev = devproc::Device::create(&[]).run(&[]);
    let v2 = devproc::image(dev.path(), "esp32s3", "2.0.0", &[]);
    let host_port = dev.url.trim_start_matches("http://").to_string();
    let o = run_otter(["push", s(&v2), "--to", &host_port, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(json_of(&o)["result"], "running");
    assert_eq!(dev.status()["running"]["version"], "2.0.0");
    // A bad address says what it takes, before any network traffic.
    let o = run_otter(["push", s(&v2), "--to", "127.0.0.1:port"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("HOST:PORT"), "{}", stderr(&o));
}

#[test]
fn push_to_an_ipv6_address_in_brackets() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    assert!(run_otter(["device", "create", s(&dev)]).status.success());
    let v2 = devproc::image(dir.path(), "esp32s3", "2.0.0", &[]);
    let mut child = util::otter()
        .args([
            "device",
            "run",
            s(&dev),
            "--http",
            "[::1]:0",
            "--mdns",
            "off",
            "--json",
        ])
        .args(["--reboot-time", "0.1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn device");
    let mut line = String::new();
    let _ = std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    let started: Value = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("device run on [::1] ({e}): {line:?}"));
    // `[::1]:PORT`, as a person types it: no scheme.
    let to = started["url"]
        .as_str()
        .expect("url")
        .trim_start_matches("http://")
        .to_string();
    assert!(to.starts_with("[::1]:"), "{to}");
    let o = run_otter(["push", s(&v2), "--to", &to, "--json"]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(json_of(&o)["result"], "running");
}

#[test]
fn push_retries_while_the_device_reboots_then_explains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    assert!(run_otter(["device", "create", s(&dev)]).status.success());
    let v2 = devproc::image(dir.path(), "esp32s3", "2.0.0", &[]);
    let port = free_port();
    // Nothing listens yet: push starts, is refused, and retries.
    let push = util::otter()
        .args([
            "push",
            s(&v2),
            "--to",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            "20",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn push");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let mut device = util::otter()
        .args([
            "device",
            "run",
            s(&dev),
            "--http",
            &format!("127.0.0.1:{port}"),
            "--mdns",
            "off",
        ])
        .args(["--reboot-time", "0.1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn device");
    let o = push.wait_with_output().expect("push");
    let _ = device.kill();
    let _ = device.wait();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{}{err}", stdout(&o));
    assert!(err.contains("retrying for up to 10 s"), "{err}");

    // Nobody ever answers: after the bounded retry, the URL tried and a question.
    let port = free_port();
    let started = std::time::Instant::now();
    let o = run_otter(["push", s(&v2), "--to", &format!("127.0.0.1:{port}")]);
    let took = started.elapsed().as_secs_f64();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("http://127.0.0.1:{port}")), "{err}");
    assert!(err.contains("is it running"), "{err}");
    assert!((8.0..20.0).contains(&took), "retried for {took} s");
}

// ---- 10: push refuses, before uploading, what the pull client refuses; --force overrides.

#[test]
fn push_refuses_downgrade_same_version_other_project_and_the_rolled_back_image() {
    let dev = devproc::Device::create(&["--rollback"]).run(&["--behavior", "3.0.0=crash-on-boot"]);
    let d = dev.path();
    let v2 = devproc::image(d, "esp32s3", "2.0.0", &[]);
    let push = |img: &Path, extra: &[&str]| {
        let mut a = vec!["push", s(img), "--to", &dev.url, "--json"];
        a.extend_from_slice(extra);
        let o = run_otter(&a);
        (o.status.code(), json_of(&o))
    };
    let (code, v) = push(&v2, &[]);
    assert_eq!(code, Some(0), "{v:#}");
    let boots = dev.status()["boot_count"].clone();

    let v1 = devproc::image(d, "esp32s3", "1.5.0", &[]);
    let other = devproc::image(d, "esp32s3", "9.0.0", &["--project", "thermostat"]);
    let v3 = devproc::image(d, "esp32s3", "3.0.0", &[]);
    for (img, error) in [
        (&v1, "downgrade"),
        (&v2, "same_version"),
        (&other, "other_project"),
    ] {
        let (code, v) = push(img, &[]);
        assert_eq!(code, Some(1), "{v:#}");
        assert_eq!(v["result"], "refused");
        assert_eq!(v["error"], error, "{v:#}");
        assert_eq!(v["bytes"], 0, "nothing may be uploaded: {v:#}");
        assert!(
            v["message"].as_str().unwrap_or("").contains("--force"),
            "{v:#}"
        );
    }
    // Nothing was sent: no reboot, no update recorded.
    let st = dev.status();
    assert_eq!(st["boot_count"], boots);
    assert_eq!(st["running"]["version"], "2.0.0");

    // 3.0.0 crashes and rolls back; pushing the same file again is refused.
    let (code, v) = push(&v3, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(v["result"], "rolled_back", "{v:#}");
    let (code, v) = push(&v3, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(v["error"], "rolled_back", "{v:#}");
    assert_eq!(v["bytes"], 0);

    // --force sends the downgrade, with the reason as a warning.
    let (code, v) = push(&v1, &["--force"]);
    assert_eq!(code, Some(0), "{v:#}");
    assert!(
        v["warnings"][0].as_str().unwrap_or("").contains("older"),
        "{v:#}"
    );
    assert_eq!(dev.status()["running"]["version"], "1.5.0");
}

// ---- 11: rollback off: warn before uploading; a crash loop is named, not "unreachable".

#[test]
fn push_warns_when_rollback_is_off_and_names_the_boot_loop() {
    let dev = devproc::Device::create(&[]).run(&["--behavior", "2.0.0=crash-on-boot"]);
    let v2 = devproc::image(dev.path(), "esp32s3", "2.0.0", &[]);
    let o = run_otter(["push", s(&v2), "--to", &dev.url, "--timeout", "6"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let warn = err
        .find("warning: rollback is off")
        .unwrap_or_else(|| panic!("{err}"));
    let upload = err.find("uploading").unwrap_or_else(|| panic!("{err}"));
    assert!(
        warn < upload,
        "the warning must come before the upload: {err}"
    );
    assert!(err.contains("boot loop"), "{err}");
    assert!(!err.contains("last seen: unreachable"), "{err}");
}

// ---- 2: one exit-code rule for every command (0 ok, 1 a check failed, 2 no input).

#[test]
fn exit_codes_follow_one_rule_across_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let dev = devproc::Device::create(&[]).run(&[]);
    let c3 = devproc::image(d, "esp32c3", "2.0.0", &[]);
    let boot = corpus_file(BOOT_ESP32);
    let app = corpus_file(TASMOTA);
    let hello = corpus_file("app-images/esp-serial-flasher/hello_world-esp32.bin");
    let garbage = d.join("garbage.bin");
    std::fs::write(&garbage, b"not a table, not an image").expect("write");
    let missing = d.join("missing.bin");
    // Two OTA slots of different sizes: a warning, not an error.
    let uneven = d.join("uneven.csv");
    std::fs::write(
        &uneven,
        "nvs,data,nvs,0x9000,0x4000,\notadata,data,ota,0xd000,0x2000,\n\
         ota_0,app,ota_0,0x10000,0x100000,\nota_1,app,ota_1,0x110000,0x80000,\n",
    )
    .expect("write");
    let single =
        corpus_file("partition-tables/csv-with-reference-bin/idf-partitions_singleapp.csv");
    let table = corpus_file(TWO_OTA);
    let url = dev.url.clone();
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["partitions", "check", s(&table)], 0),
        (vec!["partitions", "check", s(&uneven)], 0),
        (vec!["partitions", "check", s(&uneven), "--strict"], 1),
        (vec!["partitions", "check", s(&single)], 1),
        (vec!["partitions", "check", s(&garbage)], 2),
        (vec!["partitions", "check", s(&missing)], 2),
        (vec!["partitions", "show", s(&garbage)], 2),
        (vec!["image", "info", s(&app)], 0),
        (vec!["image", "info", s(&garbage)], 2),
        (vec!["image", "info", s(&missing)], 2),
        (vec!["image", "verify", s(&app), "--chip", "esp32"], 0),
        (vec!["image", "verify", s(&app), "--chip", "esp32s3"], 1),
        (vec!["image", "verify", s(&boot)], 1),
        (vec!["image", "verify", s(&missing)], 2),
        (vec!["size", s(&hello), "--partitions", s(&table)], 0),
        (vec!["size", s(&app), "--partitions", s(&table)], 1),
        (vec!["size", s(&missing), "--partitions", s(&table)], 2),
        (vec!["push", s(&c3), "--to", &url], 1),
        (vec!["push", s(&boot), "--to", &url], 1),
        (vec!["push", s(&garbage), "--to", &url], 1),
        (vec!["push", s(&missing), "--to", &url], 2),
        (vec!["push", s(&c3), "--to", "127.0.0.1:port"], 2),
        (vec!["www", "info", s(&garbage)], 1),
        (vec!["www", "info", s(&missing)], 2),
        (vec!["device", "status", s(&missing)], 2),
        (vec!["no-such-command"], 2),
    ];
    for (args, want) in cases {
        let o = run_otter(&args);
        assert_eq!(
            o.status.code(),
            Some(want),
            "otter {args:?}:\n{}{}",
            stdout(&o),
            stderr(&o)
        );
        // A refusal as JSON is the same verdict, with a stable code.
        if args[0] == "push" && want == 1 {
            let mut j = args.clone();
            j.push("--json");
            let o = run_otter(&j);
            assert_eq!(o.status.code(), Some(1));
            let v = json_of(&o);
            assert!(v["error"].is_string(), "otter {j:?}: {v:#}");
        }
    }
}

// ---- 4: --json where it was missing: image build, device run, device export, www extract.

#[test]
fn image_build_device_export_and_www_extract_print_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let img = d.join("v2.bin");
    let o = run_otter([
        "image",
        "build",
        "--chip",
        "esp32c3",
        "--version",
        "2.1.0",
        "-o",
        s(&img),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json_of(&o);
    let bytes = std::fs::read(&img).expect("read");
    assert_eq!(v["size"], bytes.len());
    assert_eq!(v["chip"], "esp32c3");
    assert_eq!(v["version"], "2.1.0");
    let sum = std::process::Command::new("sha256sum")
        .arg(&img)
        .output()
        .expect("sha256sum");
    let sum = String::from_utf8_lossy(&sum.stdout);
    assert_eq!(v["sha256"].as_str(), sum.split_whitespace().next());
    let info = json_of(&run_otter(["image", "info", s(&img), "--json"]));
    assert_eq!(info["app_desc"]["project_name"], v["project"]);

    let dev = d.join("dev");
    assert!(run_otter(["device", "create", s(&dev)]).status.success());
    let flash = d.join("flash.bin");
    let o = run_otter(["device", "export", s(&dev), "-o", s(&flash), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(v["size"], std::fs::metadata(&flash).expect("flash").len());
    assert_eq!(v["output"], s(&flash));

    let ui = d.join("ui");
    std::fs::create_dir_all(ui.join("css")).expect("mkdir");
    std::fs::write(ui.join("index.html"), "<h1>hi</h1>").expect("write");
    std::fs::write(ui.join("css/site.css"), "body{}").expect("write");
    let www = d.join("www.bin");
    assert!(
        run_otter(["www", "build", s(&ui), "--size", "64K", "-o", s(&www)])
            .status
            .success()
    );
    let out = d.join("out");
    let o = run_otter(["www", "extract", s(&www), "-o", s(&out), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json_of(&o);
    let listed = json_of(&run_otter(["www", "info", s(&www), "--json"]));
    assert_eq!(v["entries"], listed["entries"]);
    for e in v["entries"].as_array().expect("entries") {
        let rel = e["path"].as_str().expect("path").trim_start_matches('/');
        let p = out.join(rel);
        if e["dir"] == true {
            assert!(p.is_dir(), "{rel}");
        } else {
            assert_eq!(
                std::fs::metadata(&p).expect("file").len(),
                e["size"].as_u64().unwrap_or(0)
            );
        }
    }
}

#[test]
fn device_run_json_startup_line() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("dev");
    assert!(run_otter(["device", "create", s(&dev)]).status.success());
    let mut child = util::otter()
        .args([
            "device",
            "run",
            s(&dev),
            "--http",
            "127.0.0.1:0",
            "--mdns",
            "off",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .unwrap_or_default();
    let pid = child.id();
    let _ = child.kill();
    let _ = child.wait();
    let v: Value = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("not one JSON line ({e}): {line:?}"));
    assert_eq!(v["pid"], pid);
    assert_eq!(v["slot"], "factory");
    assert_eq!(v["version"], "1.0.0");
    let url = v["url"].as_str().expect("url");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_ne!(url, "http://127.0.0.1:0");
    assert!(line.ends_with('\n') && !line.trim().contains('\n'));
}

// ---- 5: shell completions and man pages.

#[test]
fn completions_for_bash_zsh_and_fish_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let o = run_otter(["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", stderr(&o));
        let text = stdout(&o);
        for sub in ["partitions", "push", "device", "flash-plan", "completions"] {
            assert!(text.contains(sub), "{shell} completions lack {sub}");
        }
        let marker = match shell {
            "bash" => "complete -F _otter",
            "zsh" => "#compdef otter",
            _ => "complete -c otter",
        };
        assert!(text.contains(marker), "{shell}: no {marker:?}");
    }
    // bash itself loads the script and registers the completion.
    let script = stdout(&run_otter(["completions", "bash"]));
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg("eval \"$0\"; complete -p otter")
        .arg(&script)
        .output()
        .expect("bash must be installed");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("-F _otter"), "{}", stdout(&o));
    let o = run_otter(["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn man_page_renders_with_the_commands() {
    let o = run_otter(["man"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let roff = stdout(&o);
    assert!(roff.contains(".TH otter 1"), "{roff}");
    // groff renders it (an oracle for the roff), with every command listed.
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("otter.1");
    std::fs::write(&page, &roff).expect("write");
    let render = |p: &Path| {
        let o = std::process::Command::new("groff")
            .args(["-man", "-Tascii", "-P", "-cbou"])
            .arg(p)
            .output()
            .expect("groff must be installed");
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(o.stderr.is_empty(), "groff warnings: {}", stderr(&o));
        stdout(&o)
    };
    let text = render(&page);
    assert!(text.contains("SUBCOMMANDS"), "{text}");
    for sub in [
        "otter-partitions(1)",
        "otter-push(1)",
        "otter-device(1)",
        "otter-completions(1)",
        "otter-man(1)",
    ] {
        assert!(text.contains(sub), "the man page lacks {sub}:\n{text}");
    }
    // Every page the top page points to exists.
    let pages = dir.path().join("pages");
    let o = run_otter(["man", "--dir", s(&pages)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for name in [
        "otter.1",
        "otter-push.1",
        "otter-device.1",
        "otter-device-run.1",
        "otter-partitions-show.1",
    ] {
        let p = pages.join(name);
        assert!(p.is_file(), "{name} missing");
        assert!(render(&p).contains("NAME"), "{name}");
    }
    let push = render(&pages.join("otter-push.1"));
    assert!(push.contains("--force"), "{push}");
}

// ---- 6: a remote device from the command line: status, confirm, rollback, reboot, check.

#[test]
fn device_commands_drive_a_running_device_over_its_api() {
    let dev = devproc::Device::create(&["--rollback", "--token", "s3cret"])
        .run(&["--selftest-window", "30"]);
    let url = dev.url.clone();
    let remote = |args: &[&str]| {
        let mut a: Vec<&str> = vec!["device"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--to", &url, "--token", "s3cret"]);
        run_otter(&a)
    };
    // Status: the same document curl sees, and a readable view with a header.
    let o = remote(&["status", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json_of(&o);
    assert_eq!(v["running"]["version"], "1.0.0");
    assert_eq!(v["chip"], dev.status()["chip"]);
    let o = remote(&["status"]);
    let text = stdout(&o);
    assert!(text.contains("running: factory"), "{text}");
    assert!(text.contains("SLOT") && text.contains("VERDICT"), "{text}");
    // Without the token: exit 2 and what to do.
    let o = run_otter(["device", "status", "--to", &url]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--token"), "{}", stderr(&o));

    // Nothing to roll back to yet: the device refuses, exit 1.
    let o = remote(&["rollback"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("rollback_impossible"), "{}", stderr(&o));

    // 2.0.0 boots pending its 30 s self-test: confirm it from here.
    let v2 = devproc::image(dev.path(), "esp32s3", "2.0.0", &[]);
    let o = run_otter([
        "push",
        s(&v2),
        "--to",
        &url,
        "--token",
        "s3cret",
        "--no-wait",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    dev.wait_until(
        |st| st["running"]["state"] == "pending_verify",
        "2.0.0 pending",
    );
    let o = remote(&["confirm", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json_of(&o)["answer"]["confirmed"], true);
    assert_eq!(dev.status()["running"]["state"], "valid");

    // Roll back to 1.0.0 on request, then reboot.
    let o = remote(&["rollback"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let st = dev.wait_until(|st| st["running"]["version"] == "1.0.0", "the rollback");
    let boots = st["boot_count"].as_u64().unwrap_or(0);
    let o = remote(&["reboot"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    dev.wait_until(
        |st| st["boot_count"].as_u64().unwrap_or(0) > boots,
        "the reboot",
    );
    // A device that does not pull says so: exit 1, the device's code.
    let o = remote(&["check", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json_of(&o)["answer"]["error"], "pull_not_configured");
    // Offline status of a directory stays.
    let o = run_otter(["device", "status", s(dev.path()), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
