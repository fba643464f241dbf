//! Rebuilds when the Wi-Fi credentials change.
fn main() {
    println!("cargo:rerun-if-env-changed=OTTER_WIFI_SSID");
    println!("cargo:rerun-if-env-changed=OTTER_WIFI_PASSWORD");
}
