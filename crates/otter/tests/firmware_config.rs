//! `otter firmware-config` against ESP-IDF's NVS generator
//! (`esp-idf-nvs-partition-gen`, in the project venv): the image otter
//! writes equals the generator's for the same CSV rows, and the firmware's
//! reader (`otter_device::settings` over otter-format's NVS reader) gets
//! every setting back, hashes where the device keeps hashes.

mod util;

use std::process::Command;

use otter_device::espota::EspotaAuth;
use otter_device::settings::{self, Settings};
use otter_format::nvs::Nvs;
use sha2::{Digest, Sha256};
use util::{python, run_otter, stderr, stdout};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn the_settings_image_is_the_generators_and_reads_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ours = dir.path().join("nvs.bin");
    let o = run_otter([
        "firmware-config".as_ref(),
        "--wifi-ssid".as_ref(),
        "lab-net".as_ref(),
        "--wifi-password".as_ref(),
        "correct horse".as_ref(),
        "--token".as_ref(),
        "s3cret".as_ref(),
        "--esphome-password".as_ref(),
        "esph".as_ref(),
        "--espota".as_ref(),
        "on".as_ref(),
        "--espota-password".as_ref(),
        "ardu".as_ref(),
        "-o".as_ref(),
        ours.as_os_str(),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let token_hex = hex(&Sha256::digest(b"s3cret"));
    let espota_hex = hex(&Sha256::digest(b"ardu"));
    let csv = format!(
        "key,type,encoding,value\n\
         otter_cfg,namespace,,\n\
         wifi_ssid,data,string,lab-net\n\
         wifi_pass,data,string,correct horse\n\
         token_sha256,data,string,{token_hex}\n\
         esphome_pw,data,string,esph\n\
         espota,data,u8,1\n\
         espota_sha256,data,string,{espota_hex}\n"
    );
    let input = dir.path().join("in.csv");
    let theirs = dir.path().join("gen.bin");
    std::fs::write(&input, csv).expect("writing the CSV");
    let g = Command::new(python())
        .args(["-m", "esp_idf_nvs_partition_gen", "generate"])
        .arg(&input)
        .arg(&theirs)
        .arg("0x5000")
        .output()
        .expect("running esp_idf_nvs_partition_gen (scripts/setup-oracles.sh installs it)");
    assert!(g.status.success(), "{}{}", stdout(&g), stderr(&g));
    let ours = std::fs::read(&ours).expect("otter's image");
    let theirs = std::fs::read(&theirs).expect("the generator's image");
    assert_eq!(ours.len(), 0x5000);
    assert!(
        ours == theirs,
        "otter firmware-config differs from esp_idf_nvs_partition_gen"
    );

    let nvs = Nvs::parse(&ours).expect("the image parses");
    let s = Settings::read(
        |k| nvs.get_str(settings::NAMESPACE, k),
        |k| nvs.get_u8(settings::NAMESPACE, k),
    )
    .expect("the settings decode");
    assert_eq!(s.wifi_ssid, Some("lab-net"));
    assert_eq!(s.wifi_password, Some("correct horse"));
    assert_eq!(s.token_sha256, Some(Sha256::digest(b"s3cret").into()));
    assert_eq!(s.esphome, None);
    assert_eq!(s.esphome_password, Some("esph"));
    assert_eq!(s.espota, Some(true));
    assert_eq!(s.espota_auth, Some(EspotaAuth::sha256_of(b"ardu")));
}

#[test]
fn bad_settings_are_refused_with_the_option_to_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("nvs.bin");
    for (args, says) in [
        (
            vec!["--wifi-password", "short"],
            "--wifi-password must be 8 to 64",
        ),
        (
            vec!["--espota-password", ""],
            "--espota-password must not be empty",
        ),
        (vec![], "nothing to write"),
    ] {
        let mut a = vec!["firmware-config"];
        a.extend(args.iter().copied());
        let o = run_otter(
            a.iter()
                .map(std::ffi::OsStr::new)
                .chain(["-o".as_ref(), out.as_os_str()]),
        );
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
        assert!(!out.exists(), "{args:?} wrote an image");
    }
}
