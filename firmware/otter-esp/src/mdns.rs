//! The mDNS responder: `otter_device::mdns`'s answers on an embassy-net
//! UDP socket joined to 224.0.0.251:5353.

use core::net::Ipv4Addr;

use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{IpAddress, IpEndpoint, Stack};
use embassy_time::{Duration, Timer};
use otter_device::mdns::{Advert, GROUP, MAX_REPLY, PORT};

/// The instance and host name of this chip: `otter-` and the last two
/// bytes of its base MAC address in hex (`otter-3f2a`), as the virtual
/// device names itself after its serial.
pub fn instance_name() -> heapless_name::Name {
    let mac = esp_hal::efuse::base_mac_address();
    let b = mac.as_bytes();
    let (x, y) = (
        b.get(4).copied().unwrap_or(0),
        b.get(5).copied().unwrap_or(0),
    );
    heapless_name::Name::new(x, y)
}

/// A fixed `otter-xxxx` name without a heap.
pub mod heapless_name {
    /// `otter-` and four hex digits.
    #[derive(Clone, Copy)]
    pub struct Name([u8; 10]);

    impl Name {
        pub(crate) fn new(x: u8, y: u8) -> Self {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let h = |n: u8| HEX[usize::from(n & 0xF)];
            Self([
                b'o',
                b't',
                b't',
                b'e',
                b'r',
                b'-',
                h(x >> 4),
                h(x),
                h(y >> 4),
                h(y),
            ])
        }

        /// The name.
        pub fn as_str(&self) -> &str {
            core::str::from_utf8(&self.0).unwrap_or("otter")
        }
    }
}

/// Answers mDNS for `advert` forever (its `ipv4` is replaced by the
/// stack's address once DHCP gave one): announces twice when the link is
/// up, then answers every query that asks for one of its services.
pub async fn responder(stack: Stack<'static>, advert: Advert<'_>) -> ! {
    stack.wait_config_up().await;
    let ipv4 = stack
        .config_v4()
        .map(|c| c.address.address())
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    let advert = Advert { ipv4, ..advert };
    if let Err(e) = stack.join_multicast_group(IpAddress::Ipv4(GROUP)) {
        log::error!("mDNS: cannot join the group: {e:?}");
    }
    let mut rx_meta = [PacketMetadata::EMPTY; 2];
    let mut rx = [0u8; 1024];
    let mut tx_meta = [PacketMetadata::EMPTY; 2];
    let mut tx = [0u8; MAX_REPLY];
    let mut sock = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
    if let Err(e) = sock.bind(PORT) {
        log::error!("mDNS: cannot bind UDP {PORT}: {e:?}");
        loop {
            core::future::pending::<()>().await;
        }
    }
    let group = IpEndpoint::new(IpAddress::Ipv4(GROUP), PORT);
    let mut out = [0u8; MAX_REPLY];
    for _ in 0..2 {
        match advert.announce(&mut out) {
            Ok(n) => {
                let _ = sock.send_to(out.get(..n).unwrap_or_default(), group).await;
            }
            Err(e) => log::error!("mDNS: {e} ({})", e.code()),
        }
        Timer::after(Duration::from_secs(1)).await;
    }
    log::info!("mDNS: {}.local announced", advert.hostname);
    let mut buf = [0u8; 512];
    loop {
        let (n, meta) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(_) => continue,
        };
        let legacy = meta.endpoint.port != PORT;
        match advert.answer(buf.get(..n).unwrap_or_default(), legacy, &mut out) {
            Ok(Some(len)) => {
                let to = if legacy { meta.endpoint } else { group };
                let _ = sock.send_to(out.get(..len).unwrap_or_default(), to).await;
            }
            Ok(None) => {}
            Err(e) => log::debug!("mDNS from {}: {e}", meta.endpoint),
        }
    }
}
