//! ESPHome's native OTA on the OTA port: a connection whose first byte is
//! the protocol's magic is driven through
//! [`otter_device::esphome::EsphomeConnection`] instead of the HTTP
//! machine.

use std::sync::Mutex;
use std::time::Duration;

use otter_device::esphome::{sniff, EsphomeConnection, Sniff};
use otter_device::service::Action;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{linger, lock, Core, Hooks, Host, POLL};

/// How long a new connection may stay silent before it is left to the HTTP
/// machine (whose own head timeout then applies).
const SNIFF_WAIT: Duration = Duration::from_secs(10);

/// Whether `sock` speaks ESPHome's OTA (and the core serves it): peeks at
/// the first byte without consuming it.
pub(super) async fn is_esphome(sock: &TcpStream, core: &Mutex<Core>) -> bool {
    if lock(core).uploaders.esphome.is_none() {
        return false;
    }
    let mut first = [0u8; 1];
    match tokio::time::timeout(SNIFF_WAIT, sock.peek(&mut first)).await {
        Ok(Ok(1)) => sniff(&first) == Sniff::Esphome,
        _ => false,
    }
}

/// Serves one ESPHome OTA connection.
pub(super) async fn connection<H: Host>(
    host: &H,
    core: &Mutex<Core>,
    mut sock: TcpStream,
    hooks: &Hooks,
) -> std::io::Result<()> {
    let _ = sock.set_nodelay(true);
    let peer = sock.peer_addr()?;
    let mut entropy = [0u8; 32];
    getrandom::fill(&mut entropy).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut conn = {
        let c = lock(core);
        let Some(opts) = c.uploaders.esphome else {
            return Ok(());
        };
        EsphomeConnection::new(&opts, &entropy, c.now())
    };
    let mut rx = vec![0u8; 16 * 1024];
    let mut tx = [0u8; 256];
    loop {
        tokio::select! {
            n = sock.read(&mut rx) => {
                let n = match n {
                    Ok(n) => n,
                    Err(e) => {
                        peer_gone(core, &mut conn, &mut host.device());
                        return Err(e);
                    }
                };
                if n == 0 {
                    peer_gone(core, &mut conn, &mut host.device());
                    report(&conn, peer);
                    return Ok(());
                }
                let mut at = 0;
                loop {
                    let out = lock(core).with_device(&mut host.device(), |dev, flash, plat, now| {
                        conn.handle(dev, flash, plat, &rx[at..n], now, &mut tx)
                    });
                    at += out.consumed;
                    if out.written > 0 {
                        if let Err(e) = sock.write_all(&tx[..out.written]).await {
                            peer_gone(core, &mut conn, &mut host.device());
                            return Err(e);
                        }
                    }
                    match out.action {
                        Action::Close => {
                            report(&conn, peer);
                            linger(&mut sock).await;
                            return Ok(());
                        }
                        Action::Reboot(r) => {
                            tracing::info!("ESPHome OTA from {peer}: update written and verified; rebooting into it");
                            // The uploader's final 00 is read (or missed) while lingering.
                            linger(&mut sock).await;
                            let _ = hooks.reboot.send(r);
                            return Ok(());
                        }
                        _ if at >= n || (out.consumed == 0 && out.written == 0) => break,
                        _ => {}
                    }
                }
            }
            _ = tokio::time::sleep(POLL) => {
                let out = {
                    let mut c = lock(core);
                    let now = c.now();
                    conn.poll(&mut c.dev, now)
                };
                if out.action == Action::Close {
                    report(&conn, peer);
                    let _ = sock.shutdown().await;
                    return Ok(());
                }
            }
        }
    }
}

fn peer_gone(
    core: &Mutex<Core>,
    conn: &mut EsphomeConnection,
    vd: &mut otter_sim::device::VirtualDevice,
) {
    lock(core).with_device(vd, |dev, _, _, now| conn.peer_closed(dev, now));
}

/// The device log's line for a connection that ended without an update.
fn report(conn: &EsphomeConnection, peer: std::net::SocketAddr) {
    if let Some(e) = conn.error() {
        tracing::warn!(
            "ESPHome OTA from {peer}: {e} ({}, answered {:#04x})",
            e.code(),
            e.wire().byte()
        );
    }
}
