//! ArduinoOTA's espota on the OTA port's UDP twin: invitations are
//! answered by [`otter_device::espota::Espota`]; an accepted one opens a
//! TCP connection back to the uploader, driven by
//! [`otter_device::espota::Transfer`].

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use otter_device::espota::{Espota, Transfer, MAX_DATAGRAM};
use otter_device::service::Action;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinSet;

use super::{linger, lock, Core, Hooks, Host, POLL};

/// How long the device tries to reach the uploader's port.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds UDP on `addr` (the API's address and port) and answers espota
/// there until the task is aborted, if the core serves espota.
pub(super) fn spawn<H: Host>(
    tasks: &mut JoinSet<()>,
    addr: SocketAddr,
    host: Arc<H>,
    core: Arc<Mutex<Core>>,
    hooks: Hooks,
) {
    let Some(opts) = lock(&core).uploaders.espota else {
        return;
    };
    let udp = match std::net::UdpSocket::bind(addr)
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(UdpSocket::from_std)
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("espota: cannot listen on UDP {addr}: {e}");
            return;
        }
    };
    tasks.spawn(async move {
        let mut machine = Espota::new(&opts);
        let mut transfers = JoinSet::new();
        let mut buf = [0u8; MAX_DATAGRAM + 1];
        let mut tx = [0u8; 256];
        loop {
            let (n, from) = tokio::select! {
                r = udp.recv_from(&mut buf) => match r {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!("espota: {e}");
                        continue;
                    }
                },
                Some(_) = transfers.join_next(), if !transfers.is_empty() => continue,
            };
            let mut entropy = [0u8; 32];
            if getrandom::fill(&mut entropy).is_err() {
                continue;
            }
            let reply = lock(&core).with_device(&mut host.device(), |dev, flash, plat, now| {
                machine.datagram(
                    dev,
                    flash,
                    plat,
                    peer_id(from),
                    &buf[..n],
                    &entropy,
                    now,
                    &mut tx,
                )
            });
            if reply.written > 0 {
                if let Err(e) = udp.send_to(&tx[..reply.written], from).await {
                    tracing::debug!("espota: answering {from}: {e}");
                }
            }
            if let Some(e) = &reply.error {
                tracing::warn!("espota invitation from {from}: {e} ({})", e.code());
            }
            if let Some(t) = reply.transfer {
                let to = SocketAddr::new(from.ip(), t.port());
                let (host, core, hooks) = (host.clone(), core.clone(), hooks.clone());
                transfers.spawn(async move {
                    transfer(&*host, &core, t, to, &hooks).await;
                });
            }
        }
    });
}

fn peer_id(a: SocketAddr) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    a.hash(&mut h);
    h.finish()
}

/// Connects to the uploader and streams the image into the transfer.
async fn transfer<H: Host>(
    host: &H,
    core: &Mutex<Core>,
    mut t: Transfer,
    to: SocketAddr,
    hooks: &Hooks,
) {
    let gone = |t: &mut Transfer| {
        lock(core).with_device(&mut host.device(), |dev, _, _, now| t.peer_closed(dev, now));
    };
    let mut sock = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(to)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!("espota: cannot connect back to the uploader at {to}: {e}; the update was abandoned");
            return gone(&mut t);
        }
        Err(_) => {
            tracing::warn!("espota: the uploader at {to} did not accept within {CONNECT_TIMEOUT:?}; the update was abandoned");
            return gone(&mut t);
        }
    };
    let _ = sock.set_nodelay(true);
    let mut rx = vec![0u8; 1460];
    let mut tx = [0u8; 256];
    loop {
        let out = tokio::select! {
            n = sock.read(&mut rx) => match n {
                Ok(0) | Err(_) => {
                    gone(&mut t);
                    if let Some(e) = t.error() {
                        tracing::warn!("espota from {to}: {e}");
                    }
                    return;
                }
                Ok(n) => lock(core).with_device(&mut host.device(), |dev, flash, plat, now| {
                    t.handle(dev, flash, plat, &rx[..n], now, &mut tx)
                }),
            },
            _ = tokio::time::sleep(POLL) => {
                let mut c = lock(core);
                let now = c.now();
                t.poll(&mut c.dev, now, &mut tx)
            }
        };
        if out.written > 0 && sock.write_all(&tx[..out.written]).await.is_err() {
            gone(&mut t);
            return;
        }
        match out.action {
            Action::Reboot(r) => {
                tracing::info!("espota from {to}: update written and verified; rebooting into it");
                linger(&mut sock).await;
                let _ = hooks.reboot.send(r);
                return;
            }
            Action::Close => {
                if let Some(e) = t.error() {
                    tracing::warn!("espota from {to}: {e} ({})", e.code());
                }
                linger(&mut sock).await;
                return;
            }
            _ => {}
        }
    }
}
