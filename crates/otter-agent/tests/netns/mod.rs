//! Running a test inside a fresh network namespace whose only interface is
//! `lo`, up, with multicast on: real multicast that never leaves the
//! namespace and leaves the host's network configuration alone. Shared by
//! otter-agent's mDNS tests and the `otter discover` tests (included there
//! by path). Needs `unshare` (util-linux), `ip` (iproute2) and the right to
//! create a network namespace (root, or CAP_SYS_ADMIN); without them the
//! tests fail and say so.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the child that runs inside the namespace.
pub const IN_NETNS: &str = "OTTER_TEST_IN_NETNS";
/// Brings `lo` up with multicast on, then runs the test binary.
pub const SETUP_LO: &str = r#"ip link set lo up && ip link set lo multicast on && exec "$0" "$@""#;
/// The longest a test may run inside its namespace.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the test `name` of this binary inside a fresh network namespace set
/// up by `setup` (a `sh -c` script that ends with `exec "$0" "$@"`).
/// Returns `true` in the child, where the test body runs; in the parent it
/// waits for the child, fails the test if the child failed, and returns
/// `false`.
pub fn in_netns(name: &str, setup: &str) -> bool {
    if std::env::var_os(IN_NETNS).is_some() {
        assert_only_loopback();
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let spawned = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", setup])
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => panic!(
            "this test runs in its own network namespace and needs `unshare` (util-linux): \
             spawning it failed: {err}"
        ),
    };
    let started = Instant::now();
    while child.try_wait().expect("waiting for the child").is_none() {
        if started.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not finish within {CHILD_TIMEOUT:?} in its network namespace");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("the child's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- {name} in its network namespace: stdout\n{stdout}\n--- stderr\n{stderr}");
    if !out.status.success() && !stdout.contains("running 1 test") {
        panic!(
            "could not run {name} in a fresh network namespace ({}). It needs `unshare --net` \
             (util-linux; root or CAP_SYS_ADMIN) and `ip` (iproute2):\n{stderr}",
            out.status
        );
    }
    assert!(
        out.status.success(),
        "{name} failed in its network namespace"
    );
    assert!(
        stdout.contains("1 passed"),
        "{name} did not run in its network namespace (is the name right?)"
    );
    false
}

/// Guards the child: it must sit in a namespace whose only interface is `lo`.
/// (`/proc/self/net` follows the network namespace; `/sys/class/net` follows
/// the mount namespace, so it would still show the host's.)
pub fn assert_only_loopback() {
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("reading /proc/self/net/dev");
    let names: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(
        names,
        ["lo"],
        "{IN_NETNS} is set, but this is not a private network namespace with only lo"
    );
}
