//! otter on an ESP32-C3 or ESP32-C6: joins Wi-Fi as a station (DHCP) and
//! serves otter's device API (`docs/device-api.md`) on port 3232 and 80
//! through `otter-device`, with the web UI of the active `www` slot at `/`
//! and the Update page at `/update`.
//!
//! Settings come from the NVS partition (namespace `otter_cfg`, written by
//! `otter firmware-config`: Wi-Fi, the API token's hash, the uploaders'
//! passwords); what it does not set comes from the build environment:
//! `OTTER_WIFI_SSID` and `OTTER_WIFI_PASSWORD` (empty: an open network).
//! `OTTER_FIRMWARE_HEALTHY=0` builds an image whose self-test fails.
//!
//! Beside HTTP, port 3232 speaks ESPHome's native OTA (TCP, told by its
//! first byte) and ArduinoOTA's espota (UDP invitations). Their passwords:
//! `OTTER_ESPHOME_PASSWORD`, `OTTER_ESPOTA_PASSWORD` (with
//! `OTTER_ESPOTA_AUTH=md5` for uploaders older than arduino-esp32 3.3.1);
//! `OTTER_ESPHOME=off` / `OTTER_ESPOTA=off` turn a protocol off.
#![no_std]
#![no_main]

extern crate alloc;

use core::cell::RefCell;
use core::sync::atomic::{AtomicU8, Ordering};

use embassy_executor::Spawner;
use embassy_net::{Runner, StackResources};
use embassy_time::{Duration, Timer};
use esp_hal::clock::CpuClock;
use esp_hal::rng::Rng;
use esp_hal::timer::timg::{MwdtStage, TimerGroup, Wdt};
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{AuthenticationMethodConfig, Config, Interface, WifiController};
use otter_device::service::{Device, DeviceOptions, RollbackMode, UpdateKind};
use otter_device::settings::Settings;
use otter_device::uploaders::{EspotaScheme, UploaderSettings, Uploaders};
use otter_esp::{net::now_ms, EspPlatform, Shared, Watchdog};
use otter_format::chip::Chip;
use otter_ota::DeviceConfig;
use static_cell::StaticCell;

use esp_backtrace as _;

esp_bootloader_esp_idf::esp_app_desc!();

#[cfg(feature = "esp32c3")]
const CHIP: Chip = Chip::Esp32c3;
#[cfg(feature = "esp32c6")]
const CHIP: Chip = Chip::Esp32c6;

const SSID: &str = match option_env!("OTTER_WIFI_SSID") {
    Some(s) => s,
    None => "",
};
const PASSWORD: &str = match option_env!("OTTER_WIFI_PASSWORD") {
    Some(s) => s,
    None => "",
};
/// A build-time setting, `None` when unset or empty.
const fn env(v: Option<&'static str>) -> Option<&'static str> {
    match v {
        Some(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

fn is_off(v: Option<&'static str>) -> bool {
    matches!(v, Some("off"))
}

/// The uploaders' settings from the build environment.
fn uploader_settings() -> UploaderSettings<'static> {
    UploaderSettings {
        esphome: !is_off(option_env!("OTTER_ESPHOME")),
        esphome_password: env(option_env!("OTTER_ESPHOME_PASSWORD")).map(str::as_bytes),
        esphome_version: 2,
        espota: !is_off(option_env!("OTTER_ESPOTA")),
        espota_password: env(option_env!("OTTER_ESPOTA_PASSWORD")).map(str::as_bytes),
        espota_scheme: match option_env!("OTTER_ESPOTA_AUTH") {
            Some("md5") => EspotaScheme::Md5,
            _ => EspotaScheme::Sha256,
        },
        espota_hashed: None,
    }
}

/// The largest web-UI slot mounted into RAM.
const UI_BUDGET: u32 = 64 * 1024;
/// The Update page served at `/update`.
const UPDATE_PAGE: &[u8] = include_bytes!("update.html");

/// The application's health check at the end of the self-test window: the
/// image got this far with Wi-Fi up and the server running. A build with
/// `OTTER_FIRMWARE_HEALTHY=0` fails it (the rollback test of
/// `scripts/hil.sh`).
fn healthy() -> bool {
    !matches!(option_env!("OTTER_FIRMWARE_HEALTHY"), Some("0"))
}

/// Boots a new image gets to pass its self-test when the bootloader has no
/// app rollback (`otter_ota::trial`).
const TRIAL_ATTEMPTS: u8 = 3;
/// When the self-test window ends, in ms after boot.
const SELFTEST_WINDOW_MS: u64 = 10_000;

struct TaskWdt(Wdt<esp_hal::peripherals::TIMG1<'static>>);

impl Watchdog for TaskWdt {
    fn feed(&mut self) {
        self.0.feed();
    }
}

static LAST_PERCENT: AtomicU8 = AtomicU8::new(u8::MAX);

/// Logs an update's progress every 5 % (of the announced length).
fn progress(dev: &Device) {
    let (Some(received), Some(u)) = (dev.upload_received(), dev.last_update()) else {
        // (riscv32imc has no atomic swap; one task calls this.)
        if LAST_PERCENT.load(Ordering::Relaxed) != u8::MAX {
            LAST_PERCENT.store(u8::MAX, Ordering::Relaxed);
            // An update just ended.
            log::info!(
                "stack high-water: {} of {} bytes",
                otter_esp::stack::high_water(),
                otter_esp::stack::size()
            );
        }
        return;
    };
    let Some(total) = u.total.filter(|t| *t > 0) else {
        return;
    };
    let step = ((received.saturating_mul(100) / total).min(100) as u8) / 5 * 5;
    let last = LAST_PERCENT.load(Ordering::Relaxed);
    if last == u8::MAX || step > last {
        LAST_PERCENT.store(step, Ordering::Relaxed);
        let what = match u.kind {
            UpdateKind::Firmware => "firmware",
            UpdateKind::Www => "www",
        };
        log::info!("{what} update: {step}% ({received} of {total} bytes)");
    }
}

#[esp_rtos::main]
async fn main(spawner: Spawner) -> ! {
    otter_esp::stack::paint();
    esp_println::logger::init_logger_from_env();
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    esp_alloc::heap_allocator!(#[esp_hal::ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 100 * 1024);

    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);

    let timg1 = TimerGroup::new(peripherals.TIMG1);
    let mut wdt = timg1.wdt;
    wdt.set_timeout(MwdtStage::Stage0, esp_hal::time::Duration::from_secs(10));
    wdt.enable();
    static WDT: StaticCell<RefCell<TaskWdt>> = StaticCell::new();
    let wdt = WDT.init(RefCell::new(TaskWdt(wdt)));

    let desc = &ESP_APP_DESC;
    log::info!("otter-firmware {} on {:?}", desc.version(), CHIP);
    log::info!(
        "stack: {} bytes, {} used at boot",
        otter_esp::stack::size(),
        otter_esp::stack::high_water()
    );

    // The device core on the flash.
    let mut flash = esp_storage::FlashStorage::new(peripherals.FLASH);
    let running = otter_esp::running_slot(&mut flash);
    let cfg = DeviceConfig::new(CHIP).with_rollback(true);
    // Before anything that can hang: a new image under a bootloader without
    // rollback gets TRIAL_ATTEMPTS boots to pass its self-test.
    let trial = otter_esp::power_on(&mut flash, &cfg, running, TRIAL_ATTEMPTS);
    log::info!("boot: {trial:?}");
    // Decoder RAM for compressed and delta updates, from the heap while it
    // is still empty.
    let mut platform =
        EspPlatform::new(&mut flash, cfg.table_offset, healthy, UI_BUDGET).with_decoders();
    let stored = match platform.settings(&mut flash) {
        Ok(Some(s)) => {
            log::info!("settings: from the nvs partition (otter_cfg)");
            s
        }
        Ok(None) => Settings::default(),
        Err(e) => {
            log::error!("settings: {e} ({}); using the build-time ones", e.code());
            Settings::default()
        }
    };
    let mut opts = DeviceOptions::new(cfg);
    opts.update_page = UPDATE_PAGE;
    opts.selftest_window_ms = SELFTEST_WINDOW_MS;
    opts.token_sha256 = stored.token_sha256;
    // Which bootloader runs shows only while a new image is on trial.
    opts.rollback_mode = Some(match trial {
        otter_esp::Trial::BootloaderDecides => RollbackMode::Bootloader,
        otter_esp::Trial::Attempt { .. } | otter_esp::Trial::NoFallback => RollbackMode::AppTrial,
        _ => RollbackMode::Undetermined,
    });
    let token = opts.token_sha256.is_some();
    let mut device = Device::new(opts);
    if let Err(e) = device.boot(&mut flash, &mut platform, running, now_ms()) {
        log::error!("device boot: {}", e.code());
    }
    let active = device
        .www()
        .and_then(|w| w.active.and_then(|i| w.slots.get(usize::from(i)).copied()));
    platform.mount(&mut flash, active);
    log::info!(
        "running {:?}, anti-rollback counter {:?}",
        running,
        otter_esp::efuse_secure_version()
    );
    #[cfg(feature = "uploaders")]
    let uploaders =
        match Uploaders::from_settings(&stored.uploaders_over(uploader_settings()), token) {
            Ok((u, off)) => {
                for o in off.into_iter().flatten() {
                    log::warn!("uploader {o:?}: set its own password to serve it");
                }
                u
            }
            Err(e) => {
                log::error!(
                    "uploaders: {e} ({}); ESPHome OTA and espota are off",
                    e.code()
                );
                Uploaders::default()
            }
        };
    #[cfg(not(feature = "uploaders"))]
    let uploaders = {
        let _ = (uploader_settings, token);
        Uploaders::default()
    };
    log::info!(
        "uploaders: ESPHome OTA {}, espota {}",
        if uploaders.esphome.is_some() {
            "on"
        } else {
            "off"
        },
        if uploaders.espota.is_some() {
            "on"
        } else {
            "off"
        }
    );
    static SHARED: StaticCell<RefCell<Shared>> = StaticCell::new();
    let shared = SHARED.init(RefCell::new(Shared {
        device,
        flash,
        platform,
        uploaders,
    }));

    // Wi-Fi station and the network stack.
    let mut controller = match WifiController::new(peripherals.WIFI, Default::default()) {
        Ok(c) => c,
        Err(e) => panic!("Wi-Fi init: {e:?}"),
    };
    let iface = Interface::station();
    let ssid_str = stored.wifi_ssid.unwrap_or(SSID);
    let password = stored.wifi_password.unwrap_or(PASSWORD);
    let auth = if password.is_empty() {
        AuthenticationMethodConfig::Open
    } else {
        match password.try_into() {
            Ok(p) => AuthenticationMethodConfig::Wpa2Personal(p),
            Err(_) => panic!("the Wi-Fi password is too long"),
        }
    };
    let ssid = match ssid_str.try_into() {
        Ok(s) => s,
        Err(_) => panic!("the Wi-Fi SSID is too long"),
    };
    let sta = StationConfig::default()
        .with_ssid(ssid)
        .with_authentication(auth);
    if let Err(e) = controller.set_config(&Config::Station(sta)) {
        log::error!("Wi-Fi config: {e:?}");
    }
    let rng = Rng::new();
    let seed = (u64::from(rng.random()) << 32) | u64::from(rng.random());
    static RESOURCES: StaticCell<StackResources<8>> = StaticCell::new();
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
    match wifi_task(controller, ssid_str) {
        Ok(t) => spawner.spawn(t),
        Err(_) => panic!("Wi-Fi task"),
    }

    stack.wait_config_up().await;
    if let Some(c) = stack.config_v4() {
        log::info!("listening on {}:3232 and :80", c.address.address());
    }

    let mut on_trial = matches!(trial, otter_esp::Trial::Attempt { .. });
    let ticker = async {
        loop {
            Timer::after(Duration::from_millis(250)).await;
            wdt.borrow_mut().feed();
            let mut s = shared.borrow_mut();
            let Shared {
                device,
                flash,
                platform,
                ..
            } = &mut *s;
            if on_trial && now_ms() >= SELFTEST_WINDOW_MS {
                on_trial = false;
                if !healthy() {
                    log::warn!("trial boot: self-test failed, rebooting (one attempt used)");
                    otter_esp::reboot();
                }
                if let Some(slot) = running {
                    match otter_ota::trial::end_trial(flash, &cfg.with_rollback(false), slot) {
                        Ok(_) => log::info!("trial boot: self-test passed, image confirmed"),
                        Err(e) => log::error!("trial boot: confirm: {e:?}"),
                    }
                }
            }
            match device.tick(flash, platform, now_ms()) {
                Ok(Some(reason)) => {
                    log::warn!("self-test: {reason:?}, rebooting");
                    otter_esp::reboot();
                }
                Ok(None) => {}
                Err(e) => log::error!("self-test: {}", e.code()),
            }
        }
    };
    // Building without a feature measures what it costs (BENCHMARKS.md).
    let espota = async {
        #[cfg(feature = "uploaders")]
        otter_esp::espota(stack, 3232, shared, wdt, progress).await;
        #[cfg(not(feature = "uploaders"))]
        core::future::pending::<()>().await;
    };
    let mdns = async {
        #[cfg(feature = "mdns")]
        {
            let name = otter_esp::mdns::instance_name();
            let advert = {
                let u = &shared.borrow().uploaders;
                otter_device::mdns::Advert {
                    instance: name.as_str(),
                    hostname: name.as_str(),
                    ipv4: core::net::Ipv4Addr::UNSPECIFIED,
                    port: 3232,
                    http_port: Some(80),
                    chip: CHIP.name(),
                    version: desc.version(),
                    project: desc.project_name(),
                    auth: token,
                    arduino: u.espota.map(|o| o.auth.required()),
                    esphome: u.esphome.is_some(),
                }
            };
            otter_esp::mdns::responder(stack, advert).await;
        }
        #[cfg(not(feature = "mdns"))]
        core::future::pending::<()>().await;
    };
    embassy_futures::join::join5(
        otter_esp::serve(
            stack,
            3232,
            cfg!(feature = "uploaders"),
            shared,
            wdt,
            progress,
        ),
        otter_esp::serve(stack, 80, false, shared, wdt, progress),
        espota,
        mdns,
        ticker,
    )
    .await;
    otter_esp::reboot()
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Interface>) {
    runner.run().await
}

#[embassy_executor::task]
async fn wifi_task(mut controller: WifiController<'static>, ssid: &'static str) {
    loop {
        match controller.connect_async().await {
            Ok(_) => {
                log::info!("Wi-Fi connected to {ssid}");
                let _ = controller.wait_for_disconnect_async().await;
                log::warn!("Wi-Fi disconnected");
            }
            Err(e) => log::warn!("Wi-Fi connect: {e:?}"),
        }
        Timer::after(Duration::from_secs(5)).await;
    }
}
