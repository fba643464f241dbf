//! `otter discover` end to end, over real multicast kept off the host's network.
//!
//! Each test re-runs itself inside a fresh network namespace (`unshare
//! --net`) where the only interface is `lo`, brought up with multicast on;
//! there the test process advertises a device with otter-agent's
//! `Advertiser` and runs the real `otter discover`. That needs `unshare`
//! (util-linux), `ip` (iproute2) and the right to create a network namespace
//! (root, or CAP_SYS_ADMIN); without them the tests fail and say so.

mod devproc;
#[path = "../../otter-agent/tests/netns/mod.rs"]
mod netns;
mod util;

use std::net::IpAddr;

use std::time::{Duration, Instant};

use netns::{in_netns, SETUP_LO};
use otter_agent::mdns::{Advertiser, DeviceAdvert, MdnsOptions};
use util::{run_otter, stderr, stdout};

fn advertise(instance: &str, port: u16, version: &str) -> Advertiser {
    let advert = DeviceAdvert {
        instance: instance.to_owned(),
        hostname: format!("{instance}.local."),
        addrs: vec![IpAddr::from([127, 0, 0, 1])],
        port,
        chip: "esp32s3".to_owned(),
        version: version.to_owned(),
        project: "otter-test".to_owned(),
        api_path: "/api/ota/status".to_owned(),
        update_path: "/update".to_owned(),
        auth: false,
    };
    Advertiser::start(&advert, &MdnsOptions::loopback()).expect("advertising")
}

#[test]
fn discover_json_loopback_lists_the_device() {
    if !in_netns("discover_json_loopback_lists_the_device", SETUP_LO) {
        return;
    }
    let device = advertise("otter-cli1", 18080, "1.4.2");
    let out = run_otter(["discover", "--json", "--loopback", "--timeout", "2"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON on stdout");
    let list = v.as_array().expect("a JSON array");
    assert_eq!(list.len(), 1, "{text}");
    let d = &list[0];
    assert_eq!(d["instance"], "otter-cli1");
    assert_eq!(d["hostname"], "otter-cli1.local.");
    assert_eq!(d["addresses"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(d["port"], 18080);
    assert_eq!(d["url"], "http://127.0.0.1:18080");
    assert_eq!(d["chip"], "esp32s3");
    assert_eq!(d["version"], "1.4.2");
    assert_eq!(d["project"], "otter-test");
    assert_eq!(d["api"], "/api/ota/status");
    assert_eq!(d["update"], "/update");
    assert_eq!(d["auth"], "none");
    assert_eq!(d["protocol"], "1");
    device.shutdown().expect("withdrawing");
}

#[test]
fn discover_table_on_all_interfaces_lists_every_device() {
    if !in_netns(
        "discover_table_on_all_interfaces_lists_every_device",
        SETUP_LO,
    ) {
        return;
    }
    let a = advertise("otter-cli-a", 18081, "2.0.0");
    let b = advertise("otter-cli-b", 18082, "2.1.0-rc1");
    // No --loopback: the default, every interface, includes loopback.
    let out = run_otter(["discover", "--timeout", "2"]);
    let text = stdout(&out);
    println!("{text}");
    assert!(out.status.success(), "{}\n{text}", stderr(&out));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["INSTANCE", "URL", "CHIP", "VERSION", "PROJECT", "AUTH"]
    );
    let row_a: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row_a,
        [
            "otter-cli-a",
            "http://127.0.0.1:18081",
            "esp32s3",
            "2.0.0",
            "otter-test",
            "none"
        ]
    );
    let row_b: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(row_b[0], "otter-cli-b");
    assert_eq!(row_b[3], "2.1.0-rc1");
    // Columns line up: every URL starts at the same place.
    let url_at = |line: &str| line.find("http://").or_else(|| line.find("URL"));
    assert_eq!(url_at(lines[0]), url_at(lines[1]), "{text}");
    assert_eq!(url_at(lines[1]), url_at(lines[2]), "{text}");
    drop(a);
    drop(b);
}

#[test]
fn discover_finding_nothing_exits_zero_and_says_so() {
    if !in_netns("discover_finding_nothing_exits_zero_and_says_so", SETUP_LO) {
        return;
    }
    let out = run_otter(["discover", "--loopback", "--timeout", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("no otter devices found in 1s"),
        "{}",
        stderr(&out)
    );

    let out = run_otter(["discover", "--json", "--loopback", "--timeout", "0.5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
    assert_eq!(v, serde_json::json!([]));
}

#[test]
fn discover_refuses_a_bad_timeout() {
    for bad in ["0", "-2", "soon"] {
        let out = run_otter(["discover", "--timeout", bad]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "--timeout {bad}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("--timeout"), "{}", stderr(&out));
    }
}

#[test]
fn a_running_virtual_device_advertises_itself_and_its_new_version() {
    if !in_netns(
        "a_running_virtual_device_advertises_itself_and_its_new_version",
        SETUP_LO,
    ) {
        return;
    }
    // `otter device run` on 127.0.0.1 advertises on loopback by default.
    let dev = devproc::Device::create(&["--token", "t0k"]).run(&["--mdns", "auto"]);
    let port: u16 = dev.url.rsplit(':').next().unwrap().parse().unwrap();
    let find = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = run_otter(["discover", "--json", "--loopback", "--timeout", "1.5"]);
            assert!(out.status.success(), "{}", stderr(&out));
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
            if let Some(d) = v
                .as_array()
                .and_then(|l| l.iter().find(|d| d["version"] == want))
            {
                return d.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no device with version {want} in {v:#}"
            );
        }
    };
    let d = find("1.0.0");
    assert_eq!(d["port"], port);
    assert_eq!(d["url"], dev.url.as_str());
    assert_eq!(d["chip"], "esp32s3");
    assert_eq!(d["project"], "otter-virtual");
    assert_eq!(d["auth"], "token");
    assert_eq!(d["api"], "/api/ota/status");
    assert!(d["instance"].as_str().unwrap().starts_with("otter-"), "{d}");

    // After an update the device reboots and advertises the new version.
    let img = devproc::image(dev.path(), "esp32s3", "2.0.0", &[]);
    let out = run_otter([
        "push",
        img.to_str().unwrap(),
        "--to",
        &dev.url,
        "--token",
        "t0k",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let d2 = find("2.0.0");
    assert_eq!(
        d2["instance"], d["instance"],
        "the same device, renamed: {d2}"
    );
}
