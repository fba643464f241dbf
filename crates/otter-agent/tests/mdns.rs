//! mDNS over real multicast, kept off the host's network.
//!
//! Each test re-runs itself inside a fresh network namespace (`unshare
//! --net`) where the only interface is `lo`, brought up with multicast on, so
//! the packets are real but never leave the namespace and the host's network
//! configuration is not touched. That needs `unshare` (util-linux), `ip`
//! (iproute2) and the right to create a network namespace (root, or
//! CAP_SYS_ADMIN); without them the tests fail and say so.

use std::net::IpAddr;

use std::time::{Duration, Instant};

mod netns;

use netns::{in_netns, SETUP_LO};
use otter_agent::mdns::{self, Advertiser, DeviceAdvert, FoundDevice, MdnsOptions};

/// How long each browse listens.
const BROWSE: Duration = Duration::from_secs(3);

fn advert(instance: &str, port: u16) -> DeviceAdvert {
    DeviceAdvert {
        instance: instance.to_owned(),
        hostname: format!("{instance}.local."),
        addrs: vec![IpAddr::from([127, 0, 0, 1])],
        port,
        chip: "esp32s3".to_owned(),
        version: "1.0.0".to_owned(),
        project: "otter-test".to_owned(),
        api_path: "/api/ota/status".to_owned(),
        update_path: "/update".to_owned(),
        auth: true,
    }
}

fn find<'a>(found: &'a [FoundDevice], instance: &str) -> Option<&'a FoundDevice> {
    found.iter().find(|d| d.instance == instance)
}

fn browse() -> Vec<FoundDevice> {
    let started = Instant::now();
    let found = mdns::browse(BROWSE, &MdnsOptions::loopback()).expect("browsing");
    assert!(
        started.elapsed() < BROWSE + Duration::from_secs(3),
        "browse overran its timeout: {:?}",
        started.elapsed()
    );
    found
}

#[test]
fn advertised_devices_are_found_updated_and_withdrawn() {
    if !in_netns(
        "advertised_devices_are_found_updated_and_withdrawn",
        SETUP_LO,
    ) {
        return;
    }
    let opts = MdnsOptions::loopback();
    let mut a = Advertiser::start(&advert("otter-aaaa", 8081), &opts).expect("advertising a");
    // b publishes no address of its own: mdns-sd fills in loopback's.
    let b_advert = DeviceAdvert {
        addrs: vec![],
        auth: false,
        version: "0.9.0".to_owned(),
        ..advert("otter-bbbb", 8082)
    };
    let b = Advertiser::start(&b_advert, &opts).expect("advertising b");

    // Both are found, once each, with their TXT records and ports.
    let found = browse();
    assert_eq!(found.len(), 2, "{found:#?}");
    let fa = find(&found, "otter-aaaa").expect("a is found");
    assert_eq!(fa.hostname, "otter-aaaa.local.");
    assert_eq!(fa.port, 8081);
    assert_eq!(fa.addresses, [IpAddr::from([127, 0, 0, 1])]);
    assert_eq!(fa.url, "http://127.0.0.1:8081");
    assert_eq!(fa.chip.as_deref(), Some("esp32s3"));
    assert_eq!(fa.version.as_deref(), Some("1.0.0"));
    assert_eq!(fa.project.as_deref(), Some("otter-test"));
    assert_eq!(fa.api.as_deref(), Some("/api/ota/status"));
    assert_eq!(fa.update.as_deref(), Some("/update"));
    assert_eq!(fa.auth.as_deref(), Some("token"));
    assert_eq!(fa.protocol.as_deref(), Some("1"));
    let fb = find(&found, "otter-bbbb").expect("b is found");
    assert_eq!(fb.url, "http://127.0.0.1:8082");
    assert_eq!(fb.version.as_deref(), Some("0.9.0"));
    assert_eq!(fb.auth.as_deref(), Some("none"));

    // The device rebooted into a new version: a new browse sees it.
    a.update(&DeviceAdvert {
        version: "2.0.0".to_owned(),
        ..advert("otter-aaaa", 8081)
    })
    .expect("updating a");
    let found = browse();
    let fa = find(&found, "otter-aaaa").expect("a is still found");
    assert_eq!(fa.version.as_deref(), Some("2.0.0"), "{found:#?}");
    assert_eq!(fa.port, 8081);

    // A browse that resolved a sees its goodbye when it is dropped, and drops
    // it from the list (without the goodbye it would stay cached for minutes).
    let listener = std::thread::spawn(|| {
        mdns::browse(Duration::from_secs(5), &MdnsOptions::loopback()).expect("browsing")
    });
    std::thread::sleep(Duration::from_secs(2));
    let dropping = Instant::now();
    drop(a);
    assert!(
        dropping.elapsed() < Duration::from_secs(2),
        "withdrawing took {:?}",
        dropping.elapsed()
    );
    let found = listener.join().expect("the browsing thread");
    assert!(find(&found, "otter-bbbb").is_some(), "{found:#?}");
    assert!(find(&found, "otter-aaaa").is_none(), "{found:#?}");

    // And a fresh browse finds b alone.
    let found = browse();
    assert_eq!(
        found
            .iter()
            .map(|d| d.instance.as_str())
            .collect::<Vec<_>>(),
        ["otter-bbbb"]
    );
    b.shutdown().expect("shutting b down");
    assert!(browse().is_empty());
}

#[test]
fn renaming_a_device_withdraws_the_old_name() {
    if !in_netns("renaming_a_device_withdraws_the_old_name", SETUP_LO) {
        return;
    }
    let opts = MdnsOptions::loopback();
    let mut a = Advertiser::start(&advert("otter-old", 9000), &opts).expect("advertising");
    assert!(find(&browse(), "otter-old").is_some());
    a.update(&advert("otter-new", 9001)).expect("renaming");
    let found = browse();
    assert_eq!(
        found
            .iter()
            .map(|d| (d.instance.as_str(), d.port))
            .collect::<Vec<_>>(),
        [("otter-new", 9001)]
    );
    a.shutdown().expect("shutting down");
}

#[test]
fn nothing_found_is_an_empty_list() {
    if !in_netns("nothing_found_is_an_empty_list", SETUP_LO) {
        return;
    }
    let started = Instant::now();
    let found = mdns::browse(Duration::from_secs(1), &MdnsOptions::loopback()).expect("browsing");
    assert!(found.is_empty(), "{found:#?}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// Browses `ty` on IPv4 loopback for `secs`; returns the resolved services.
fn browse_type(ty: &str, secs: u64) -> Vec<mdns_sd::ResolvedService> {
    browse_until(ty, secs, |_| false)
}

/// Browses `ty` for up to `secs`, stopping early once a resolved service
/// satisfies `done` (a loaded machine may answer late: wait long, but only
/// as long as needed).
fn browse_until(
    ty: &str,
    secs: u64,
    done: impl Fn(&mdns_sd::ResolvedService) -> bool,
) -> Vec<mdns_sd::ResolvedService> {
    let d = mdns_sd::ServiceDaemon::new().expect("daemon");
    d.disable_interface(mdns_sd::IfKind::All).expect("disable");
    d.enable_interface(mdns_sd::IfKind::LoopbackV4)
        .expect("enable");
    let rx = d.browse(ty).expect("browse");
    let until = Instant::now() + Duration::from_secs(secs);
    let mut found = Vec::new();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(mdns_sd::ServiceEvent::ServiceResolved(s)) => {
                let stop = done(&s);
                found.push(*s);
                if stop {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = d.shutdown();
    found
}

#[test]
fn the_uploader_services_are_published_and_withdrawn() {
    if !in_netns(
        "the_uploader_services_are_published_and_withdrawn",
        SETUP_LO,
    ) {
        return;
    }
    let up = mdns::UploaderAdverts {
        arduino: Some(true),
        esphome: true,
    };
    let a = Advertiser::start_with(&advert("otter-cccc", 3232), &up, &MdnsOptions::loopback())
        .expect("advertising");
    let otter = browse_until(mdns::SERVICE_TYPE, 15, |_| true);
    assert!(!otter.is_empty(), "not even _otter._tcp");
    let arduino = browse_until(mdns::ARDUINO_SERVICE_TYPE, 15, |s| {
        s.fullname == "otter-cccc._arduino._tcp.local."
    });
    let s = arduino
        .iter()
        .find(|s| s.fullname == "otter-cccc._arduino._tcp.local.")
        .unwrap_or_else(|| panic!("_arduino._tcp not found: {arduino:#?}"));
    assert_eq!(s.port, 3232);
    assert_eq!(s.get_property_val_str("board"), Some("esp32s3"));
    assert_eq!(s.get_property_val_str("tcp_check"), Some("no"));
    assert_eq!(s.get_property_val_str("ssh_upload"), Some("no"));
    assert_eq!(s.get_property_val_str("auth_upload"), Some("yes"));
    let esphome = browse_until(mdns::ESPHOME_SERVICE_TYPE, 15, |s| {
        s.fullname == "otter-cccc._esphomelib._tcp.local."
    });
    let s = esphome
        .iter()
        .find(|s| s.fullname == "otter-cccc._esphomelib._tcp.local.")
        .unwrap_or_else(|| panic!("_esphomelib._tcp not found: {esphome:#?}"));
    assert_eq!(s.get_property_val_str("version"), Some("1.0.0"));
    a.shutdown().expect("withdrawing");
    assert!(browse_type(mdns::ARDUINO_SERVICE_TYPE, 2).is_empty());
}

/// The firmware's responder (`otter_device::mdns`, edge-mdns records) on a
/// real multicast socket, answering the browser `otter discover` runs.
#[test]
fn the_firmwares_mdns_answers_are_what_otter_discover_reads() {
    if !in_netns(
        "the_firmwares_mdns_answers_are_what_otter_discover_reads",
        SETUP_LO,
    ) {
        return;
    }
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
    sock.set_reuse_address(true).expect("SO_REUSEADDR");
    sock.set_reuse_port(true).expect("SO_REUSEPORT");
    sock.bind(&SockAddr::from(SocketAddrV4::new(
        Ipv4Addr::UNSPECIFIED,
        5353,
    )))
    .expect("binding 5353");
    let lo = Ipv4Addr::LOCALHOST;
    sock.join_multicast_v4(&otter_device::mdns::GROUP, &lo)
        .expect("joining the mDNS group on lo");
    sock.set_multicast_if_v4(&lo).expect("IP_MULTICAST_IF");
    sock.set_multicast_loop_v4(true).expect("IP_MULTICAST_LOOP");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let sock: std::net::UdpSocket = sock.into();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let responder = {
        let (stop, answered) = (stop.clone(), answered.clone());
        std::thread::spawn(move || {
            let advert = otter_device::mdns::Advert {
                instance: "otter-c3c3",
                hostname: "otter-c3c3",
                ipv4: lo,
                port: 3232,
                http_port: Some(80),
                chip: "esp32c3",
                version: "0.1.0",
                project: "otter-firmware",
                auth: false,
                arduino: Some(false),
                esphome: true,
            };
            let group = SocketAddrV4::new(otter_device::mdns::GROUP, otter_device::mdns::PORT);
            let mut out = [0u8; otter_device::mdns::MAX_REPLY];
            let n = advert.announce(&mut out).expect("announcing");
            sock.send_to(&out[..n], group).expect("announcing");
            let mut buf = [0u8; 1500];
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(20) {
                let Ok((len, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let legacy = from.port() != otter_device::mdns::PORT;
                if let Ok(Some(n)) = advert.answer(&buf[..len], legacy, &mut out) {
                    let to = if legacy { from } else { group.into() };
                    sock.send_to(&out[..n], to).expect("answering");
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let found = browse();
    stop.store(true, Ordering::Relaxed);
    responder.join().expect("the responder thread");
    let d = find(&found, "otter-c3c3").expect("otter discover finds the firmware");
    assert_eq!(d.hostname, "otter-c3c3.local.");
    assert_eq!(d.port, 3232);
    assert_eq!(d.addresses, [IpAddr::from([127, 0, 0, 1])]);
    assert_eq!(d.url, "http://127.0.0.1:3232");
    assert_eq!(d.chip.as_deref(), Some("esp32c3"));
    assert_eq!(d.version.as_deref(), Some("0.1.0"));
    assert_eq!(d.project.as_deref(), Some("otter-firmware"));
    assert_eq!(d.api.as_deref(), Some("/api/ota/status"));
    assert_eq!(d.update.as_deref(), Some("/update"));
    assert_eq!(d.auth.as_deref(), Some("none"));
    assert_eq!(d.protocol.as_deref(), Some("1"));
    assert!(
        answered.load(Ordering::Relaxed) > 0,
        "the browser's queries were answered"
    );
}
