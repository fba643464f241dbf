//! The size baseline of `otter-firmware`: the same chip set-up, heap, Wi-Fi
//! station and network stack, with a TCP answer on port 3232 in place of
//! otter (no otter-device, otter-ota, otter-format or otter-www). Built only
//! to measure what otter costs (BENCHMARKS.md):
//! `cargo build --release --bin otter-baseline --features esp32c3 ...`.
#![no_std]
#![no_main]

extern crate alloc;

use embassy_executor::Spawner;
use embassy_net::tcp::TcpSocket;
use embassy_net::{Runner, StackResources};
use embassy_time::{Duration, Timer};
use embedded_io_async::Write;
use esp_hal::clock::CpuClock;
use esp_hal::rng::Rng;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{AuthenticationMethodConfig, Config, Interface, WifiController};
use static_cell::StaticCell;

use esp_backtrace as _;

esp_bootloader_esp_idf::esp_app_desc!();

const SSID: &str = match option_env!("OTTER_WIFI_SSID") {
    Some(s) => s,
    None => "",
};
const PASSWORD: &str = match option_env!("OTTER_WIFI_PASSWORD") {
    Some(s) => s,
    None => "",
};

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    esp_println::logger::init_logger_from_env();
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 100 * 1024);
    let timg0 = esp_hal::timer::timg::TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

    let mut controller = match WifiController::new(peripherals.WIFI, Default::default()) {
        Ok(c) => c,
        Err(e) => panic!("Wi-Fi init: {e:?}"),
    };
    let iface = Interface::station();
    let auth = match PASSWORD.try_into() {
        Ok(p) if !PASSWORD.is_empty() => AuthenticationMethodConfig::Wpa2Personal(p),
        _ => AuthenticationMethodConfig::Open,
    };
    let ssid = match SSID.try_into() {
        Ok(s) => s,
        Err(_) => panic!("OTTER_WIFI_SSID is too long"),
    };
    let sta = StationConfig::default()
        .with_ssid(ssid)
        .with_authentication(auth);
    if let Err(e) = controller.set_config(&Config::Station(sta)) {
        log::error!("Wi-Fi config: {e:?}");
    }
    let rng = Rng::new();
    let seed = (u64::from(rng.random()) << 32) | u64::from(rng.random());
    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        iface,
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        seed,
    );
    match net_task(runner) {
        Ok(t) => spawner.spawn(t),
        Err(_) => panic!("net task"),
    }
    match wifi_task(controller) {
        Ok(t) => spawner.spawn(t),
        Err(_) => panic!("Wi-Fi task"),
    }
    stack.wait_config_up().await;
    let mut rx = [0u8; 4096];
    let mut tx = [0u8; 2048];
    loop {
        let mut sock = TcpSocket::new(stack, &mut rx, &mut tx);
        if sock.accept(3232).await.is_ok() {
            let _ = sock.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
            sock.close();
            let _ = sock.flush().await;
        }
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Interface>) {
    runner.run().await
}

#[embassy_executor::task]
async fn wifi_task(mut controller: WifiController<'static>) {
    loop {
        match controller.connect_async().await {
            Ok(_) => {
                log::info!("Wi-Fi connected");
                let _ = controller.wait_for_disconnect_async().await;
                log::warn!("Wi-Fi disconnected");
            }
            Err(e) => log::warn!("Wi-Fi connect: {e:?}"),
        }
        Timer::after(Duration::from_secs(5)).await;
    }
}
