//! The README's hand flows, run as written: every line of the shell block
//! that starts `otter device create dev --rollback --token s3cret`, then the
//! web-UI and release block up to `otter release verify`, each through
//! `sh -c` in one temporary directory with the built `otter` first on PATH.
//! A line's trailing comment `# exit N…` is its expected exit code (0 when it
//! names none); a line ending in `&` runs in the background until the end;
//! comment lines are skipped. So the README cannot drift from what otter does.
//!
//! The one substitution: the README's device address 127.0.0.1:3232 becomes a
//! free loopback port (and `otter device run` gets `--http` for it), so the
//! test cannot clash with anything else listening on 3232.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::workspace_root;

const HAND_FLOW: &str = "otter device create dev --rollback --token s3cret";
const WEB_FLOW: &str = "mkdir -p ui && echo";
const WEB_FLOW_END: &str = "otter release verify";
const README_ADDR: &str = "127.0.0.1:3232";
/// Longest any one line may take (a push waits for the self-test window).
const LINE_DEADLINE: Duration = Duration::from_secs(90);

/// The lines of the first ```sh block of `readme` whose first line starts
/// with `first`, with `\`-continued lines joined.
fn block(readme: &str, first: &str) -> Vec<String> {
    let mut lines = readme.lines();
    loop {
        let l = lines
            .next()
            .unwrap_or_else(|| panic!("README.md has no ```sh block starting {first:?}"));
        if l.trim() == "```sh" {
            let body: Vec<&str> = lines.clone().take_while(|l| l.trim() != "```").collect();
            if body.first().is_some_and(|b| b.starts_with(first)) {
                let mut out: Vec<String> = Vec::new();
                let mut cont = false;
                for b in body {
                    if cont {
                        if let Some(last) = out.last_mut() {
                            last.push(' ');
                            last.push_str(b.trim_start());
                        }
                    } else {
                        out.push(b.to_string());
                    }
                    cont = b.trim_end().ends_with('\\');
                    if cont {
                        if let Some(last) = out.last_mut() {
                            let t = last.trim_end().trim_end_matches('\\').to_string();
                            *last = t;
                        }
                    }
                }
                return out;
            }
        }
    }
}

/// One line to run: the shell code (comment cut off), whether it runs in
/// the background, and its expected exit code.
#[derive(Debug)]
struct Step {
    code: String,
    background: bool,
    exit: i32,
}

fn step(line: &str, port: u16) -> Option<Step> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let (code, comment) = match t.find(" #") {
        Some(i) => (&t[..i], &t[i + 2..]),
        None => (t, ""),
    };
    let exit = match comment.trim().strip_prefix("exit ") {
        Some(rest) => {
            rest.chars()
                .next()
                .and_then(|c| c.to_digit(10))
                .unwrap_or_else(|| panic!("unreadable exit comment in {line:?}")) as i32
        }
        None => 0,
    };
    let code = code.trim();
    let (code, background) = match code.strip_suffix('&') {
        Some(c) => (c.trim(), true),
        None => (code, false),
    };
    let addr = format!("127.0.0.1:{port}");
    let mut code = code.replace(README_ADDR, &addr);
    if code.starts_with("otter device run ") {
        code.push_str(&format!(" --http {addr}"));
    }
    Some(Step {
        code,
        background,
        exit,
    })
}

/// Background processes, killed when the test ends however it ends.
struct Background(Vec<Child>);

impl Drop for Background {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn shell(code: &str, dir: &Path, path_env: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(code)
        .current_dir(dir)
        .env("PATH", path_env)
        .stdin(Stdio::null());
    c
}

fn run_steps(steps: &[Step], dir: &Path, path_env: &str, bg: &mut Background) {
    for (n, s) in steps.iter().enumerate() {
        if s.background {
            let log = std::fs::File::create(dir.join(format!("bg-{n}.log"))).expect("log");
            let child = shell(&format!("exec {}", s.code), dir, path_env)
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("spawn background line");
            bg.0.push(child);
            continue;
        }
        let out_path = dir.join(format!("line-{n}.out"));
        let out = std::fs::File::create(&out_path).expect("out");
        let mut child = shell(&s.code, dir, path_env)
            .stdout(out.try_clone().expect("out"))
            .stderr(out)
            .spawn()
            .expect("spawn line");
        let start = Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait") {
                break st;
            }
            if start.elapsed() > LINE_DEADLINE {
                let _ = child.kill();
                panic!("README line {:?} still ran after {LINE_DEADLINE:?}", s.code);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let said = std::fs::read_to_string(&out_path).unwrap_or_default();
        assert_eq!(
            status.code(),
            Some(s.exit),
            "README line {:?} exited {:?}, the README says {}; it said:\n{said}",
            s.code,
            status.code(),
            s.exit
        );
    }
}

#[test]
fn the_readme_hand_flows_run_as_written() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let port = free_port();
    let hand: Vec<Step> = block(&readme, HAND_FLOW)
        .iter()
        .filter_map(|l| step(l, port))
        .collect();
    let web_lines = block(&readme, WEB_FLOW);
    let end = web_lines
        .iter()
        .position(|l| l.starts_with(WEB_FLOW_END))
        .expect("the web-UI block has an `otter release verify` line");
    let web: Vec<Step> = web_lines[..=end]
        .iter()
        .filter_map(|l| step(l, port))
        .collect();
    // What the README promises, so a rewrite that drops it fails here.
    assert!(
        hand.iter().any(|s| s.background),
        "the device runs in the background"
    );
    assert!(
        hand.iter().any(|s| s.exit == 1),
        "a push that rolls back exits 1"
    );
    assert!(web.len() >= 6, "{web:?}");

    let otter_bin = PathBuf::from(env!("CARGO_BIN_EXE_otter"));
    let bin_dir = otter_bin.parent().expect("bin dir");
    let path_env = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bg = Background(Vec::new());
    run_steps(&hand, dir.path(), &path_env, &mut bg);
    run_steps(&web, dir.path(), &path_env, &mut bg);

    // The flows did what their comments say.
    for f in [
        "dev/flash.bin",
        "dev/device.json",
        "v2.bin",
        "v3.bin",
        "www.bin",
        "release.key",
        "release.pub",
    ] {
        assert!(dir.path().join(f).is_file(), "{f} was not made");
    }
    assert!(dir.path().join("rel/manifest.json").is_file());
    for c in &mut bg.0 {
        assert!(
            c.try_wait().expect("wait").is_none(),
            "the device must still run"
        );
    }
}
