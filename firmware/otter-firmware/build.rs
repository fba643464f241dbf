//! Rebuilds when the build-time settings (Wi-Fi credentials, health) change.
fn main() {
    println!("cargo:rerun-if-env-changed=OTTER_FIRMWARE_HEALTHY");
    println!("cargo:rerun-if-env-changed=OTTER_WIFI_SSID");
    println!("cargo:rerun-if-env-changed=OTTER_WIFI_PASSWORD");
}
