//! The TCP server loop: embassy-net sockets feeding
//! `otter_device::service::Connection`.
//!
//! Input is handed to the connection in pieces of at most [`PIECE`] bytes
//! and the loop yields to the executor after each one, so an upload's erase
//! and program calls (which block while they run) come in sector-sized
//! steps between which Wi-Fi, TCP and the other tasks run.

use core::cell::RefCell;

use embassy_net::tcp::TcpSocket;
use embassy_net::Stack;
use embassy_time::{Duration, Instant};
use embedded_io_async::Write;
use otter_device::service::{Action, Connection, Device};

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
}

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

async fn send(sock: &mut TcpSocket<'_>, a: &[u8], b: &[u8]) -> bool {
    sock.write_all(a).await.is_ok() && sock.write_all(b).await.is_ok()
}

/// Serves the device API on `port` forever, one connection at a time.
/// `progress` is called with each firmware upload's received byte count.
pub async fn serve<W: Watchdog>(
    stack: Stack<'static>,
    port: u16,
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
        let action = {
            let conn = {
                let s = shared.borrow();
                Connection::new(&s.device, &mut head, now_ms())
            };
            run(&mut sock, conn, shared, wdt, progress, &mut input, &mut out).await
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

async fn run<W: Watchdog>(
    sock: &mut TcpSocket<'_>,
    mut conn: Connection<'_>,
    shared: &RefCell<Shared>,
    wdt: &RefCell<W>,
    progress: fn(&Device),
    input: &mut [u8; PIECE],
    out: &mut [u8; TX_BUF],
) -> Option<Action> {
    loop {
        let n = match embassy_time::with_timeout(Duration::from_secs(1), sock.read(input)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                conn.peer_closed(&mut shared.borrow_mut().device, now_ms());
                return None;
            }
            Ok(Ok(n)) => n,
            Err(_) => {
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
            let o = {
                let mut s = shared.borrow_mut();
                let Shared {
                    device,
                    flash,
                    platform,
                } = &mut *s;
                let o = conn.handle(device, flash, platform, &input[at..n], now_ms(), out);
                progress(device);
                o
            };
            wdt.borrow_mut().feed();
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
