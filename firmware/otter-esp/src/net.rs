//! The server loops: embassy-net sockets feeding the `otter-device`
//! machines. On the OTA port a TCP connection is HTTP
//! (`otter_device::service::Connection`) or, told by its first byte
//! (`otter_device::esphome::sniff`), ESPHome's native OTA
//! (`otter_device::esphome::EsphomeConnection`); UDP on the same port takes
//! ArduinoOTA's espota invitations (`otter_device::espota::Espota`), and an
//! accepted one connects back to the uploader (`espota::Transfer`).
//!
//! Input is handed to the connection in pieces of at most [`PIECE`] bytes
//! and the loop yields to the executor after each one, so an upload's erase
//! and program calls (which block while they run) come in sector-sized
//! steps between which Wi-Fi, TCP and the other tasks run.

use core::cell::RefCell;

use embassy_net::tcp::TcpSocket;
#[cfg(feature = "uploaders")]
use embassy_net::udp::{PacketMetadata, UdpSocket};
#[cfg(feature = "uploaders")]
use embassy_net::IpEndpoint;
use embassy_net::Stack;
use embassy_time::{Duration, Instant};
use embedded_io_async::Write;
#[cfg(feature = "uploaders")]
use otter_device::esphome::{sniff, EsphomeConnection, Sniff};
#[cfg(feature = "uploaders")]
use otter_device::espota::{Espota, Transfer, MAX_DATAGRAM};
#[cfg(feature = "uploaders")]
use otter_device::service::Output;
use otter_device::service::{Action, Connection, Device};
use otter_device::uploaders::Uploaders;

use crate::{EspPlatform, Flash};

/// Bytes fed to the device per call: one flash sector.
pub const PIECE: usize = 4096;
/// The head buffer of one connection.
pub const HEAD_BUF: usize = 2048;
/// The response buffer of one connection.
pub const TX_BUF: usize = 2048;

/// The device's state, shared by the server loops of one executor.
pub struct Shared {
    /// The service.
    pub device: Device,
    /// The flash.
    pub flash: Flash,
    /// The platform.
    pub platform: EspPlatform,
    /// The uploaders served beside HTTP.
    pub uploaders: Uploaders,
}

#[cfg(feature = "uploaders")]
/// How long a new connection may stay silent before it is left to the HTTP
/// machine (whose own head timeout then applies).
const SNIFF_WAIT: Duration = Duration::from_secs(10);
#[cfg(feature = "uploaders")]
/// How long the device tries to reach an espota uploader's port.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Fed while the loop works (the task watchdog on a chip).
pub trait Watchdog {
    /// Restarts the watchdog's countdown.
    fn feed(&mut self);
}

impl Watchdog for () {
    fn feed(&mut self) {}
}

/// Milliseconds since boot.
pub fn now_ms() -> u64 {
    Instant::now().as_millis()
}

/// 32 bytes of the chip's RNG (true random while the radio runs): the
/// nonces of the challenge protocols.
pub fn entropy() -> [u8; 32] {
    let mut e = [0u8; 32];
    esp_hal::rng::Rng::new().read(&mut e);
    e
}

async fn send(sock: &mut TcpSocket<'_>, a: &[u8], b: &[u8]) -> bool {
    sock.write_all(a).await.is_ok() && sock.write_all(b).await.is_ok()
}

/// Serves the device API on `port` forever, one connection at a time;
/// with `esphome`, a connection that opens with ESPHome's magic is served
/// ESPHome's OTA instead (when [`Shared::uploaders`] turns it on).
/// `progress` is called with each firmware upload's received byte count.
pub async fn serve<W: Watchdog>(
    stack: Stack<'static>,
    port: u16,
    esphome: bool,
    shared: &RefCell<Shared>,
    wdt: &RefCell<W>,
    progress: fn(&Device),
) -> ! {
    let mut rx = [0u8; 4096];
    let mut txb = [0u8; 2048];
    let mut head = [0u8; HEAD_BUF];
    let mut out = [0u8; TX_BUF];
    let mut input = [0u8; PIECE];
    loop {
        let mut sock = TcpSocket::new(stack, &mut rx, &mut txb);
        sock.set_timeout(Some(Duration::from_secs(30)));
        if sock.accept(port).await.is_err() {
            continue;
        }
        #[cfg(feature = "uploaders")]
        let action = {
            let esphome = esphome.then(|| shared.borrow().uploaders.esphome).flatten();
            // The first bytes tell ESPHome's OTA from HTTP.
            let first = match esphome {
                None => 0,
                Some(_) => {
                    match embassy_time::with_timeout(SNIFF_WAIT, sock.read(&mut input)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => {
                            sock.close();
                            continue;
                        }
                        Ok(Ok(n)) => n,
                        Err(_) => 0,
                    }
                }
            };
            let action = match esphome {
                Some(opts) if sniff(input.get(..first).unwrap_or_default()) == Sniff::Esphome => {
                    let conn = EsphomeConnection::new(&opts, &entropy(), now_ms());
                    run_esphome(
                        &mut sock, conn, shared, wdt, progress, &mut input, first, &mut out,
                    )
                    .await
                }
                _ => {
                    let conn = {
                        let s = shared.borrow();
                        Connection::new(&s.device, &mut head, now_ms())
                    };
                    run(
                        &mut sock, conn, shared, wdt, progress, &mut input, first, &mut out,
                    )
                    .await
                }
            };
            action
        };
        #[cfg(not(feature = "uploaders"))]
        let action = {
            let _ = esphome;
            let conn = {
                let s = shared.borrow();
                Connection::new(&s.device, &mut head, now_ms())
            };
            run(
                &mut sock, conn, shared, wdt, progress, &mut input, 0, &mut out,
            )
            .await
        };
        sock.close();
        let _ = sock.flush().await;
        if let Some(Action::Reboot(reason)) = action {
            log::info!("rebooting: {reason:?}");
            embassy_time::Timer::after(Duration::from_millis(200)).await;
            crate::reboot();
        }
    }
}

/// Reads the next piece of input: the `pending` bytes already in `input`
/// first. `Err(())`: idle for a second.
async fn next(
    sock: &mut TcpSocket<'_>,
    input: &mut [u8; PIECE],
    pending: &mut usize,
) -> Result<Option<usize>, ()> {
    if *pending > 0 {
        return Ok(Some(core::mem::take(pending)));
    }
    match embassy_time::with_timeout(Duration::from_secs(1), sock.read(input)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Ok(None),
        Ok(Ok(n)) => Ok(Some(n)),
        Err(_) => Err(()),
    }
}

/// Runs one machine step with the device, flash and platform borrowed,
/// then reports progress and feeds the watchdog.
fn step<W: Watchdog, R>(
    shared: &RefCell<Shared>,
    wdt: &RefCell<W>,
    progress: fn(&Device),
    f: impl FnOnce(&mut Device, &mut Flash, &mut EspPlatform) -> R,
) -> R {
    let r = {
        let mut s = shared.borrow_mut();
        let Shared {
            device,
            flash,
            platform,
            ..
        } = &mut *s;
        let r = f(device, flash, platform);
        progress(device);
        r
    };
    wdt.borrow_mut().feed();
    r
}

#[allow(clippy::too_many_arguments)]
async fn run<W: Watchdog>(
    sock: &mut TcpSocket<'_>,
    mut conn: Connection<'_>,
    shared: &RefCell<Shared>,
    wdt: &RefCell<W>,
    progress: fn(&Device),
    input: &mut [u8; PIECE],
    mut pending: usize,
    out: &mut [u8; TX_BUF],
) -> Option<Action> {
    loop {
        let n = match next(sock, input, &mut pending).await {
            Ok(None) => {
                conn.peer_closed(&mut shared.borrow_mut().device, now_ms());
                return None;
            }
            Ok(Some(n)) => n,
            Err(()) => {
                // Idle: let timeouts fire.
                let o = conn.poll(&mut shared.borrow_mut().device, now_ms(), out);
                if !send(sock, &out[..o.written], o.tail).await {
                    return None;
                }
                if o.action == Action::Close || conn.is_closed() {
                    return None;
                }
                continue;
            }
        };
        let mut at = 0;
        while at < n {
            let o = step(shared, wdt, progress, |device, flash, platform| {
                conn.handle(device, flash, platform, &input[at..n], now_ms(), out)
            });
            at += o.consumed;
            if !send(sock, &out[..o.written], o.tail).await {
                return None;
            }
            match o.action {
                Action::Close => return None,
                Action::Reboot(r) => {
                    let _ = sock.flush().await;
                    return Some(Action::Reboot(r));
                }
                Action::Continue => {}
                Action::Read | Action::CheckRelease if o.consumed == 0 => break,
                Action::Read | Action::CheckRelease => {}
            }
            embassy_futures::yield_now().await;
        }
    }
}

#[cfg(feature = "uploaders")]
/// One ESPHome OTA connection; see [`serve`].
#[allow(clippy::too_many_arguments)]
async fn run_esphome<W: Watchdog>(
    sock: &mut TcpSocket<'_>,
    mut conn: EsphomeConnection,
    shared: &RefCell<Shared>,
    wdt: &RefCell<W>,
    progress: fn(&Device),
    input: &mut [u8; PIECE],
    mut pending: usize,
    out: &mut [u8; TX_BUF],
) -> Option<Action> {
    let end = |conn: &EsphomeConnection| {
        if let Some(e) = conn.error() {
            log::warn!(
                "ESPHome OTA: {e} ({}, answered {:#04x})",
                e.code(),
                e.wire().byte()
            );
        }
    };
    loop {
        let n = match next(sock, input, &mut pending).await {
            Ok(None) => {
                conn.peer_closed(&mut shared.borrow_mut().device, now_ms());
                end(&conn);
                return None;
            }
            Ok(Some(n)) => n,
            Err(()) => {
                let o = conn.poll(&mut shared.borrow_mut().device, now_ms());
                if o.action == Action::Close {
                    end(&conn);
                    return None;
                }
                continue;
            }
        };
        let mut at = 0;
        while at < n {
            let o: Output = step(shared, wdt, progress, |device, flash, platform| {
                conn.handle(device, flash, platform, &input[at..n], now_ms(), out)
            });
            at += o.consumed;
            if !send(sock, &out[..o.written], o.tail).await {
                conn.peer_closed(&mut shared.borrow_mut().device, now_ms());
                return None;
            }
            match o.action {
                Action::Close => {
                    end(&conn);
                    return None;
                }
                Action::Reboot(r) => {
                    log::info!("ESPHome OTA: update written and verified");
                    // Give the uploader time to send its final 00.
                    let _ = sock.flush().await;
                    embassy_time::Timer::after(Duration::from_millis(300)).await;
                    return Some(Action::Reboot(r));
                }
                _ if o.consumed == 0 && o.written == 0 => break,
                _ => {}
            }
            embassy_futures::yield_now().await;
        }
    }
}

#[cfg(feature = "uploaders")]
/// A stable identifier of a datagram's sender (FNV-1a of its address).
fn peer_id(e: &IpEndpoint) -> u64 {
    struct Fnv(u64);
    impl core::hash::Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    core::hash::Hash::hash(e, &mut h);
    core::hash::Hasher::finish(&h)
}

#[cfg(feature = "uploaders")]
/// Answers ArduinoOTA's espota invitations on UDP `port` forever (when
/// [`Shared::uploaders`] turns espota on; otherwise waits forever). An
/// accepted invitation is served before the next datagram is read: the
/// device connects back to the uploader and streams the image into the
/// update session. The device log says why an invitation or a transfer
/// was refused.
pub async fn espota<W: Watchdog>(
    stack: Stack<'static>,
    port: u16,
    shared: &RefCell<Shared>,
    wdt: &RefCell<W>,
    progress: fn(&Device),
) {
    let Some(opts) = shared.borrow().uploaders.espota else {
        return core::future::pending().await;
    };
    let mut rx_meta = [PacketMetadata::EMPTY; 2];
    let mut rx = [0u8; 2 * (MAX_DATAGRAM + 1)];
    let mut tx_meta = [PacketMetadata::EMPTY; 2];
    let mut tx = [0u8; 512];
    let mut udp = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
    if let Err(e) = udp.bind(port) {
        log::error!("espota: cannot bind UDP {port}: {e:?}");
        return core::future::pending().await;
    }
    let mut machine = Espota::new(&opts);
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    let mut reply = [0u8; 256];
    loop {
        let (n, meta) = match udp.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                log::debug!("espota: {e:?}");
                continue;
            }
        };
        let from = meta.endpoint;
        let r = step(shared, wdt, progress, |device, flash, platform| {
            machine.datagram(
                device,
                flash,
                platform,
                peer_id(&from),
                buf.get(..n).unwrap_or_default(),
                &entropy(),
                now_ms(),
                &mut reply,
            )
        });
        if r.written > 0 {
            if let Err(e) = udp.send_to(&reply[..r.written], from).await {
                log::debug!("espota: answering {from}: {e:?}");
            }
        }
        if let Some(e) = &r.error {
            log::warn!("espota invitation from {from}: {e} ({})", e.code());
        }
        if let Some(t) = r.transfer {
            let to = IpEndpoint::new(from.addr, t.port());
            if let Some(Action::Reboot(reason)) =
                transfer(stack, t, to, shared, wdt, progress).await
            {
                log::info!("rebooting: {reason:?}");
                embassy_time::Timer::after(Duration::from_millis(200)).await;
                crate::reboot();
            }
        }
    }
}

#[cfg(feature = "uploaders")]
/// Connects to the uploader at `to` and streams the image into `t`.
async fn transfer<W: Watchdog>(
    stack: Stack<'static>,
    mut t: Transfer,
    to: IpEndpoint,
    shared: &RefCell<Shared>,
    wdt: &RefCell<W>,
    progress: fn(&Device),
) -> Option<Action> {
    let mut rx = [0u8; 4096];
    let mut txb = [0u8; 256];
    let mut input = [0u8; 1460];
    let mut out = [0u8; 256];
    let mut sock = TcpSocket::new(stack, &mut rx, &mut txb);
    sock.set_timeout(Some(Duration::from_secs(30)));
    let gone = |t: &mut Transfer| {
        t.peer_closed(&mut shared.borrow_mut().device, now_ms());
        if let Some(e) = t.error() {
            log::warn!("espota from {to}: {e} ({})", e.code());
        }
    };
    match embassy_time::with_timeout(CONNECT_TIMEOUT, sock.connect(to)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            log::warn!("espota: cannot connect back to the uploader at {to}: {e:?}; the update was abandoned");
            gone(&mut t);
            return None;
        }
        Err(_) => {
            log::warn!(
                "espota: the uploader at {to} did not accept in 10 s; the update was abandoned"
            );
            gone(&mut t);
            return None;
        }
    }
    loop {
        let o = match embassy_time::with_timeout(Duration::from_millis(250), sock.read(&mut input))
            .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => {
                gone(&mut t);
                return None;
            }
            Ok(Ok(n)) => step(shared, wdt, progress, |device, flash, platform| {
                t.handle(device, flash, platform, &input[..n], now_ms(), &mut out)
            }),
            Err(_) => t.poll(&mut shared.borrow_mut().device, now_ms(), &mut out),
        };
        if o.written > 0 && sock.write_all(&out[..o.written]).await.is_err() {
            gone(&mut t);
            return None;
        }
        match o.action {
            Action::Reboot(r) => {
                log::info!("espota from {to}: update written and verified");
                let _ = sock.flush().await;
                sock.close();
                embassy_time::Timer::after(Duration::from_millis(300)).await;
                return Some(Action::Reboot(r));
            }
            Action::Close => {
                if let Some(e) = t.error() {
                    log::warn!("espota from {to}: {e} ({})", e.code());
                }
                let _ = sock.flush().await;
                sock.close();
                return None;
            }
            _ => {}
        }
        embassy_futures::yield_now().await;
    }
}
