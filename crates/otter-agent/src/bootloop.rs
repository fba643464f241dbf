//! A firmware that crashes or hangs on every boot, with nothing to roll it
//! back (app rollback off, or the image already confirmed): a boot loop.
//!
//! A real ESP32 in a boot loop answers nothing, so a client that just pushed
//! the image can only say "unreachable". The virtual device knows better (the
//! behaviour profile says what the firmware does), and says so: while the
//! looping firmware is between its boot and its crash, the device's port
//! answers every request with `503 {"error": "boot_loop", "message", "boot_loop":
//! {...}}`, the [`BootLoop`] of the running attempt. Nothing else is served:
//! the firmware is not up, so nothing can be uploaded, confirmed or rolled
//! back. The normal status document carries the same `boot_loop` (null
//! unless the last boots of the running slot crashed or hung).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::state::Shared;

/// How long a client may take to send its request head.
const HEAD_WAIT: Duration = Duration::from_secs(2);
/// The most of a request head read before answering.
const HEAD_MAX: usize = 8 * 1024;

/// The error code of a request answered during a boot loop.
pub const BOOT_LOOP_CODE: &str = "boot_loop";

/// The running attempt's crashes: the same slot crashed or hung on this many
/// boots in a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootLoop {
    /// The slot that keeps crashing.
    pub slot: String,
    /// Its firmware version.
    pub version: String,
    /// Its behaviour (`crash-on-boot` or `hang`).
    pub behavior: String,
    /// Boots in a row that crashed or hung, this one included once it has.
    pub crashes: u32,
    /// After this many the virtual device stops (`otter device run` exits 1).
    pub limit: u32,
    /// Whether app rollback is on (it is off, or the image was already
    /// confirmed, when nothing rolls it back).
    pub rollback: bool,
    /// What happens, for people.
    pub message: String,
}

impl BootLoop {
    /// The record for `crashes` crashed boots of `slot`.
    pub fn new(
        slot: &str,
        version: &str,
        behavior: &str,
        crashes: u32,
        limit: u32,
        rollback: bool,
    ) -> Self {
        let shown = otter_sim::device::or_placeholder(version, otter_sim::device::NO_VERSION);
        let message = format!(
            "{shown} in {slot} {} on {crashes} boot{} in a row (behaviour {behavior}) and nothing rolls it back{}; the virtual device stops after {limit}",
            if behavior == "hang" { "hung" } else { "crashed" },
            if crashes == 1 { "" } else { "s" },
            if rollback {
                " (it was confirmed before)"
            } else {
                " (app rollback is off)"
            },
        );
        Self {
            slot: slot.to_string(),
            version: version.to_string(),
            behavior: behavior.to_string(),
            crashes,
            limit,
            rollback,
            message,
        }
    }

    /// The answer to any request while the firmware loops: a whole HTTP/1.1
    /// response, `503 {"error": "boot_loop", "message", "boot_loop"}`.
    pub fn response(&self) -> Vec<u8> {
        let body = json!({
            "error": BOOT_LOOP_CODE,
            "message": self.message,
            "boot_loop": self,
        })
        .to_string();
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// Serves a looping boot until `stop`: every request gets the
/// [`BootLoop`] in `shared` (a bare 503 when there is none), and the
/// connection closes.
pub fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stop => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = listener.accept() => {
                    let Ok((sock, _)) = accepted else { continue };
                    let answer = shared.boot_loop().map_or_else(
                        || b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                        |b| b.response(),
                    );
                    tasks.spawn(answer_one(sock, answer));
                }
            }
        }
        tasks.abort_all();
    })
}

/// Reads the request head (bounded in size and time), answers, closes.
async fn answer_one(mut sock: TcpStream, answer: Vec<u8>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(HEAD_WAIT, async {
        while head.len() < HEAD_MAX && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
            }
        }
    })
    .await;
    let _ = sock.write_all(&answer).await;
    let _ = sock.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_slot_version_count_and_why() {
        let b = BootLoop::new("ota_0", "3.0.0", "crash-on-boot", 2, 5, false);
        assert_eq!(
            b.message,
            "3.0.0 in ota_0 crashed on 2 boots in a row (behaviour crash-on-boot) and nothing rolls it back (app rollback is off); the virtual device stops after 5"
        );
        let b = BootLoop::new("ota_1", "", "hang", 1, 5, true);
        assert_eq!(
            b.message,
            "(no version) in ota_1 hung on 1 boot in a row (behaviour hang) and nothing rolls it back (it was confirmed before); the virtual device stops after 5"
        );
    }
}
