//! Property: whatever bytes arrive at `POST /update`, the agent answers with
//! a JSON status, never panics, and the boot selection changes only for an
//! image that verifies in full. Mutations of a valid image (bit flips,
//! truncations, inserted and overwritten runs, random prefixes) are uploaded
//! to an in-process virtual device over real HTTP on 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use otter_agent::{RunOptions, Running};
use otter_format::chip::Chip;
use otter_format::image::{verify, AppImageBuilder, VerifyOptions};
use otter_sim::device::{create, CreateOptions, FLASH_FILE};
use proptest::prelude::*;

fn post(addr: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /update HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // The device may answer early and close; a failed write is fine.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    let code: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or_else(|| panic!("no JSON body in {text:?}"));
    (code, json)
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Overwrite(usize, Vec<u8>),
    Insert(usize, Vec<u8>),
    Prefix(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(i, v)| Mutation::Overwrite(i, v)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        proptest::collection::vec(any::<u8>(), 1..300).prop_map(Mutation::Prefix),
    ]
}

fn apply(base: &[u8], muts: &[Mutation]) -> Vec<u8> {
    let mut v = base.to_vec();
    for m in muts {
        let n = v.len().max(1);
        match m {
            Mutation::Flip(i, b) => {
                if let Some(x) = v.get_mut(i % n) {
                    *x ^= 1 << b;
                }
            }
            Mutation::Truncate(i) => v.truncate(i % n),
            Mutation::Overwrite(i, d) => {
                for (k, b) in d.iter().enumerate() {
                    if let Some(x) = v.get_mut((i % n) + k) {
                        *x = *b;
                    }
                }
            }
            Mutation::Insert(i, d) => {
                let at = (i % n).min(v.len());
                v.splice(at..at, d.iter().copied());
            }
            Mutation::Prefix(d) => v = d.clone(),
        }
    }
    v
}

#[test]
fn mutated_uploads_never_switch_to_an_unverified_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = CreateOptions::new();
    opts.flash_size = 4 << 20;
    opts.partitions = Some(
        b"nvs, data, nvs, 0x9000, 0x4000,\notadata, data, ota, 0xd000, 0x2000,\nphy_init, data, phy, 0xf000, 0x1000,\nfactory, app, factory, 0x10000, 1M,\nota_0, app, ota_0, , 1M,\nota_1, app, ota_1, , 1M,\n"
            .to_vec(),
    );
    create(dir.path(), &opts).unwrap();
    let base = AppImageBuilder::new(Chip::Esp32s3)
        .version("2.0.0")
        .size(90_000)
        .build()
        .unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut run = RunOptions::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    run.reboot_time = Duration::from_millis(20);
    let running: Running = rt.block_on(otter_agent::start(run)).unwrap();
    let addr = running.addr.to_string();
    let flash = || std::fs::read(dir.path().join(FLASH_FILE)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // This table's otadata partition.
    let otadata = |f: &[u8]| f[0xD000..0xF000].to_vec();

    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    let strat = proptest::collection::vec(mutation(), 1..4);
    runner
        .run(&strat, |muts| {
            let body = apply(&base, &muts);
            let before = otadata(&flash());
            let valid = {
                let mut o = VerifyOptions::new();
                o.chip = Some(Chip::Esp32s3);
                o.require_app = true;
                o.slot_size = Some(1 << 20);
                verify(&body, &o).is_ok()
            };
            let (code, json) = post(&addr, &body);
            prop_assert!(json.is_object(), "answer {code} {json}");
            if code == 200 {
                prop_assert!(valid, "an image otter-format rejects was accepted: {json}");
                // Wait for the reboot into it, then carry on from there.
                std::thread::sleep(Duration::from_millis(300));
            } else {
                prop_assert!(json["error"].is_string(), "{json}");
                prop_assert_eq!(
                    otadata(&flash()),
                    before,
                    "a refused upload changed otadata"
                );
                // A body that verifies may still be refused only when it does
                // not fit or is empty; anything else is a wrongful refusal.
                if valid {
                    prop_assert!(
                        matches!(code, 400 | 413 | 409),
                        "a valid image was refused: {} {}",
                        code,
                        json
                    );
                }
            }
            Ok(())
        })
        .unwrap();

    // The device still works after all that: the unmutated image installs.
    let (code, json) = post(&addr, &base);
    assert_eq!(code, 200, "{json}");
    let mut running = running;
    running.stop();
    let end = rt.block_on(running.wait()).unwrap();
    assert_eq!(end, otter_agent::RunEnd::Stopped);
}
