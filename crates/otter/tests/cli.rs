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
    // From a file: the script is larger than one argument may be (128 KiB).
    let script = stdout(&run_otter(["completions", "bash"]));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("otter.bash");
    std::fs::write(&file, &script).unwrap();
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg("source \"$0\"; complete -p otter")
        .arg(&file)
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
