//! ArduinoOTA's espota protocol, device side, as two sans-IO machines over
//! the same [`Device`] and update session as the HTTP API: [`Espota`]
//! answers the UDP invitations on port 3232, and [`Transfer`] takes the
//! image over the TCP connection the device opens back to the uploader.
//!
//! | step | uploader → device | device → uploader |
//! |---|---|---|
//! | 1 | UDP `<cmd> <host_port> <size> <md5>\n` (cmd `0` app, `100` filesystem) | no password: `OK`; else `AUTH <nonce>` |
//! | 2 | UDP `200 <cnonce> <response>\n` | `OK` or `Authentication Failed` |
//! | 3 | | the device begins the update, then connects to the uploader's `host_port` over TCP |
//! | 4 | data, 1024-byte chunks, each followed by a read | after every read, the count of bytes written, in ASCII decimal |
//! | 5 | | after the last byte: `OK` (verified and selected; the device reboots) or an error text, then close |
//!
//! Authentication is chosen by how the device's password is configured
//! ([`EspotaAuth`]); the device stores only a hash of it:
//!
//! * legacy (esp8266, arduino-esp32 before 3.3.1): a 32-hex nonce; the
//!   response is `md5hex(md5hex(password) ":" nonce ":" cnonce)`;
//! * arduino-esp32 3.3.1 and later: a 64-hex nonce; with
//!   `P = sha256hex(password)`, `K = hex(PBKDF2-HMAC-SHA256(P, nonce ":"
//!   cnonce, 10 000 iterations, 32 bytes))` and the response is
//!   `sha256hex(K ":" nonce ":" cnonce)`.
//!
//! Unlike ArduinoOTA, the device answers an invitation it cannot take (an
//! update already running, an image too large for the slot, a filesystem
//! image that is not the `www` slot's size) with an `ERR <code>: <message>`
//! datagram instead of silence, so the uploader stops at once with the
//! reason. Command `100` writes the inactive `www_0`/`www_1` slot through
//! the same checks as `POST /api/ota/frontend`.

use embedded_storage::nor_flash::NorFlash;
use md5::{Digest, Md5};
use sha2::Sha256;

use crate::challenge::{ct_eq_hex, hex, unhex};
use crate::error::{DeviceError, Timeout};
use crate::service::{Action, Device, Output, Platform, Protocol, UpdateKind};

/// The uploader's command for an app image.
pub const CMD_APP: u32 = 0;
/// The uploader's command for a filesystem image (the web UI here).
pub const CMD_FILESYSTEM: u32 = 100;
/// The uploader's authentication answer.
pub const CMD_AUTH: u32 = 200;
/// PBKDF2 iterations of the SHA-256 scheme (arduino-esp32 3.3.1).
pub const PBKDF2_ROUNDS: u32 = 10_000;
/// The smallest reply buffer [`Espota::datagram`] and [`Transfer`] accept.
pub const MIN_TX: usize = 128;
/// The longest datagram taken (longer ones are ignored).
pub const MAX_DATAGRAM: usize = 256;

/// The device's espota password, as stored: a hash only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum EspotaAuth {
    /// No password: anyone who reaches the device can upload.
    None,
    /// The legacy MD5 challenge; `md5hex(password)` (lowercase hex).
    Md5 {
        /// `md5hex(password)`.
        md5_hex: [u8; 32],
    },
    /// The SHA-256 + PBKDF2 challenge of arduino-esp32 3.3.1 and later;
    /// `sha256hex(password)` (lowercase hex).
    Sha256 {
        /// `sha256hex(password)`.
        sha256_hex: [u8; 64],
    },
}

impl EspotaAuth {
    /// The legacy scheme for `password` (hashes it; keep only the result).
    pub fn md5_of(password: &[u8]) -> Self {
        let mut md5_hex = [0u8; 32];
        hex(&Md5::digest(password), &mut md5_hex);
        Self::Md5 { md5_hex }
    }

    /// The SHA-256 scheme for `password` (hashes it; keep only the result).
    pub fn sha256_of(password: &[u8]) -> Self {
        let mut sha256_hex = [0u8; 64];
        hex(&Sha256::digest(password), &mut sha256_hex);
        Self::Sha256 { sha256_hex }
    }

    /// Whether uploads need a password.
    pub fn required(&self) -> bool {
        !matches!(self, Self::None)
    }
}

impl core::fmt::Debug for EspotaAuth {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::Md5 { .. } => "Md5(..)",
            Self::Sha256 { .. } => "Sha256(..)",
        })
    }
}

/// How espota is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspotaOptions {
    /// The password's scheme and hash.
    pub auth: EspotaAuth,
    /// How long a challenge stays open for its answer.
    pub auth_window_ms: u64,
    /// A silence of this long in the transfer re-sends the last count
    /// (ArduinoOTA's 1 s)...
    pub stall_ms: u64,
    /// ...this many times, after which the update is abandoned.
    pub stall_retries: u8,
}

impl EspotaOptions {
    /// No password, ArduinoOTA's timings.
    pub const fn new() -> Self {
        Self {
            auth: EspotaAuth::None,
            auth_window_ms: 10_000,
            stall_ms: 1000,
            stall_retries: 3,
        }
    }
}

impl Default for EspotaOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// A parsed invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invitation {
    /// What is uploaded.
    pub kind: UpdateKind,
    /// The uploader's TCP port to connect to.
    pub port: u16,
    /// The image's size.
    pub size: u32,
    /// The image's MD5.
    pub md5: [u8; 16],
}

/// Why espota refused or ended without an update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EspotaError {
    /// The answer to the challenge is wrong: wrong password.
    #[error("espota authentication failed: the uploader's password is wrong")]
    AuthFailed,
    /// The update session refused or failed (its record is in
    /// `last_update`).
    #[error("{0}")]
    Update(DeviceError),
}

impl EspotaError {
    /// A stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::AuthFailed => "espota_auth_failed",
            Self::Update(e) => e.code(),
        }
    }
}

/// What a datagram produced.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Bytes of the reply buffer to send back to the datagram's sender
    /// (0: no reply).
    pub written: usize,
    /// The update was begun: connect to the sender's address on
    /// `Transfer::port` and drive the transfer over that connection
    /// (if the connection fails, call [`Transfer::peer_closed`]).
    pub transfer: Option<Transfer>,
    /// Why the invitation was refused, if it was.
    pub error: Option<EspotaError>,
}

impl Reply {
    fn none() -> Self {
        Self {
            written: 0,
            transfer: None,
            error: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Idle,
    Challenged {
        inv: Invitation,
        peer: u64,
        until: u64,
    },
}

/// The UDP side: invitations and challenges. One per device.
#[derive(Debug, Clone)]
pub struct Espota {
    opts: EspotaOptions,
    state: State,
    nonce: [u8; 64],
}

impl Espota {
    /// The listener, configured with `opts`.
    pub fn new(opts: &EspotaOptions) -> Self {
        Self {
            opts: *opts,
            state: State::Idle,
            nonce: [0; 64],
        }
    }

    fn nonce_len(&self) -> usize {
        match self.opts.auth {
            EspotaAuth::Sha256 { .. } => 64,
            _ => 32,
        }
    }

    /// Takes one datagram from `peer` (any stable identifier of the
    /// sender's address) at `now`; writes the reply into `tx` (at least
    /// [`MIN_TX`] bytes). `entropy` (32 unpredictable bytes from the
    /// platform's RNG) makes a challenge's nonce.
    #[allow(clippy::too_many_arguments)]
    pub fn datagram<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        peer: u64,
        data: &[u8],
        entropy: &[u8; 32],
        now: u64,
        tx: &mut [u8],
    ) -> Reply {
        if tx.len() < MIN_TX || data.len() > MAX_DATAGRAM {
            return Reply::none();
        }
        let mut fields = [&[][..]; 4];
        let Some(n) = split(data, &mut fields) else {
            return Reply::none();
        };
        let Some(cmd) = decimal(fields[0]) else {
            return Reply::none();
        };
        match cmd {
            CMD_APP | CMD_FILESYSTEM if n == 4 => {
                let kind = if cmd == CMD_APP {
                    UpdateKind::Firmware
                } else {
                    UpdateKind::Www
                };
                let (Some(port), Some(size)) = (decimal(fields[1]), decimal(fields[2])) else {
                    return Reply::none();
                };
                let Ok(port) = u16::try_from(port) else {
                    return Reply::none();
                };
                let mut md5 = [0u8; 16];
                if port == 0 || !unhex(fields[3], &mut md5) {
                    return Reply::none();
                }
                let inv = Invitation {
                    kind,
                    port,
                    size,
                    md5,
                };
                if dev.update_in_progress() {
                    return refuse(EspotaError::Update(DeviceError::Busy), tx);
                }
                if self.opts.auth.required() {
                    let len = self.nonce_len();
                    hex(entropy, &mut self.nonce);
                    self.state = State::Challenged {
                        inv,
                        peer,
                        until: now.saturating_add(self.opts.auth_window_ms),
                    };
                    let mut w = put(tx, b"AUTH ");
                    w += put(
                        tx.get_mut(w..).unwrap_or_default(),
                        self.nonce.get(..len).unwrap_or_default(),
                    );
                    return Reply {
                        written: w,
                        transfer: None,
                        error: None,
                    };
                }
                self.accept(dev, flash, platform, inv, now, tx)
            }
            CMD_AUTH if n == 3 => {
                let State::Challenged {
                    inv,
                    peer: from,
                    until,
                } = self.state
                else {
                    return Reply::none();
                };
                if from != peer {
                    return Reply::none();
                }
                self.state = State::Idle;
                if now > until {
                    return Reply::none();
                }
                if !self.check(fields[1], fields[2]) {
                    let w = put(tx, b"Authentication Failed");
                    return Reply {
                        written: w,
                        transfer: None,
                        error: Some(EspotaError::AuthFailed),
                    };
                }
                self.accept(dev, flash, platform, inv, now, tx)
            }
            _ => Reply::none(),
        }
    }

    fn accept<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        inv: Invitation,
        now: u64,
        tx: &mut [u8],
    ) -> Reply {
        self.state = State::Idle;
        if let Err(e) = dev.begin_update(
            flash,
            platform,
            inv.kind,
            Protocol::Espota,
            inv.size,
            crate::decode::Encoding::Sniff,
            now,
        ) {
            return refuse(EspotaError::Update(e), tx);
        }
        Reply {
            written: put(tx, b"OK"),
            transfer: Some(Transfer::new(&self.opts, inv, now)),
            error: None,
        }
    }

    fn check(&self, cnonce: &[u8], response: &[u8]) -> bool {
        let len = self.nonce_len();
        let nonce = self.nonce.get(..len).unwrap_or_default();
        if cnonce.len() != len || response.len() != len {
            return false;
        }
        let mut want = [0u8; 64];
        let want: &[u8] = match &self.opts.auth {
            EspotaAuth::None => return true,
            EspotaAuth::Md5 { md5_hex } => {
                let d = Md5::new()
                    .chain_update(md5_hex)
                    .chain_update(b":")
                    .chain_update(nonce)
                    .chain_update(b":")
                    .chain_update(cnonce)
                    .finalize();
                hex(&d, &mut want)
            }
            EspotaAuth::Sha256 { sha256_hex } => {
                let mut salt = [0u8; 129];
                let s = {
                    let mut w = put(&mut salt, nonce);
                    w += put(salt.get_mut(w..).unwrap_or_default(), b":");
                    w += put(salt.get_mut(w..).unwrap_or_default(), cnonce);
                    salt.get(..w).unwrap_or_default()
                };
                let mut key = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(sha256_hex, s, PBKDF2_ROUNDS, &mut key);
                let mut key_hex = [0u8; 64];
                let key_hex = hex(&key, &mut key_hex);
                let d = Sha256::new()
                    .chain_update(key_hex)
                    .chain_update(b":")
                    .chain_update(nonce)
                    .chain_update(b":")
                    .chain_update(cnonce)
                    .finalize();
                hex(&d, &mut want)
            }
        };
        ct_eq_hex(want, response)
    }
}

fn refuse(e: EspotaError, tx: &mut [u8]) -> Reply {
    let written = error_text(&e, tx);
    Reply {
        written,
        transfer: None,
        error: Some(e),
    }
}

/// `ERR <code>: <message>` into `tx` (cut to fit).
fn error_text(e: &EspotaError, tx: &mut [u8]) -> usize {
    use core::fmt::Write;
    let mut w = Cursor { buf: tx, at: 0 };
    let _ = write!(w, "ERR {}: {}", e.code(), e);
    w.at
}

struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl core::fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.at += put(
            self.buf.get_mut(self.at..).unwrap_or_default(),
            s.as_bytes(),
        );
        Ok(())
    }
}

/// The TCP side: the image, over the connection the device opened to the
/// uploader. Feed it what arrives; it answers each read with the count of
/// bytes written, and after the last byte with `OK` (and
/// [`Action::Reboot`]) or an error text (and [`Action::Close`]).
#[derive(Debug, Clone)]
pub struct Transfer {
    inv: Invitation,
    stall_ms: u64,
    stall_retries: u8,
    received: u32,
    md5: Md5,
    last_count: u32,
    last_rx: u64,
    resends: u8,
    open: bool,
    error: Option<EspotaError>,
}

impl Transfer {
    fn new(opts: &EspotaOptions, inv: Invitation, now: u64) -> Self {
        Self {
            inv,
            stall_ms: opts.stall_ms,
            stall_retries: opts.stall_retries,
            received: 0,
            md5: Md5::new(),
            last_count: 0,
            last_rx: now,
            resends: 0,
            open: true,
            error: None,
        }
    }

    /// The uploader's port to connect to.
    pub fn port(&self) -> u16 {
        self.inv.port
    }

    /// The invitation.
    pub fn invitation(&self) -> &Invitation {
        &self.inv
    }

    /// Why the transfer ended without an update, if it did.
    pub fn error(&self) -> Option<&EspotaError> {
        self.error.as_ref()
    }

    /// Whether the transfer is over.
    pub fn is_closed(&self) -> bool {
        !self.open
    }

    /// Feeds the bytes of one read at `now`; writes the reply into `tx`
    /// (at least [`MIN_TX`] bytes). Consumes all of `input`.
    pub fn handle<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        input: &[u8],
        now: u64,
        tx: &mut [u8],
    ) -> Output {
        if !self.open {
            return out(input.len(), 0, Action::Close);
        }
        if input.is_empty() || tx.len() < MIN_TX {
            return out(0, 0, Action::Read);
        }
        self.last_rx = now;
        self.resends = 0;
        let left = self.inv.size - self.received;
        let take = (input.len() as u64).min(u64::from(left)) as usize;
        let data = input.get(..take).unwrap_or_default();
        if let Err(e) = dev.write_update(flash, platform, data) {
            return self.fail(dev, e, now, tx, input.len());
        }
        self.md5.update(data);
        self.received += take as u32;
        self.last_count = take as u32;
        let mut w = count(take as u32, tx);
        if self.received < self.inv.size {
            return out(input.len(), w, Action::Read);
        }
        let got: [u8; 16] = self.md5.clone().finalize().into();
        if got != self.inv.md5 {
            return self.fail(dev, DeviceError::Md5Mismatch, now, tx, input.len());
        }
        self.open = false;
        match dev.finish_update(flash, platform, Protocol::Espota, now) {
            Ok(done) => {
                w += put(tx.get_mut(w..).unwrap_or_default(), b"OK");
                out(input.len(), w, Action::Reboot(done.reboot))
            }
            Err(e) => {
                let err = EspotaError::Update(e);
                w = error_text(&err, tx);
                self.error = Some(err);
                out(input.len(), w, Action::Close)
            }
        }
    }

    /// Checks the stall timer at `now` while no input arrives: re-sends
    /// the last count every `stall_ms`, and after `stall_retries` re-sends
    /// abandons the update.
    pub fn poll(&mut self, dev: &mut Device, now: u64, tx: &mut [u8]) -> Output {
        if !self.open || tx.len() < MIN_TX {
            return out(0, 0, Action::Read);
        }
        if now.saturating_sub(self.last_rx) < self.stall_ms {
            return out(0, 0, Action::Read);
        }
        if self.resends >= self.stall_retries {
            let ms = self
                .stall_ms
                .saturating_mul(u64::from(self.stall_retries) + 1);
            return self.fail(
                dev,
                DeviceError::Timeout(Timeout::Stalled { ms }),
                now,
                tx,
                0,
            );
        }
        self.resends += 1;
        self.last_rx = now;
        out(0, count(self.last_count, tx), Action::Read)
    }

    /// The connection broke, or could not be opened, at `now`: the update
    /// is recorded as `aborted` and abandoned.
    pub fn peer_closed(&mut self, dev: &mut Device, now: u64) {
        if self.open {
            let e = DeviceError::Aborted {
                received: u64::from(self.received),
            };
            dev.abort_update(Protocol::Espota, &e, now);
            self.error = Some(EspotaError::Update(e));
            self.open = false;
        }
    }

    fn fail(
        &mut self,
        dev: &mut Device,
        e: DeviceError,
        now: u64,
        tx: &mut [u8],
        consumed: usize,
    ) -> Output {
        dev.abort_update(Protocol::Espota, &e, now);
        self.open = false;
        let err = EspotaError::Update(e);
        let w = error_text(&err, tx);
        self.error = Some(err);
        out(consumed, w, Action::Close)
    }
}

fn out(consumed: usize, written: usize, action: Action) -> Output {
    Output {
        consumed,
        written,
        tail: &[],
        action,
    }
}

/// `n` in ASCII decimal into `tx`.
fn count(n: u32, tx: &mut [u8]) -> usize {
    use core::fmt::Write;
    let mut w = Cursor { buf: tx, at: 0 };
    let _ = write!(w, "{n}");
    w.at
}

/// Splits an ASCII line at spaces into at most `out.len()` fields (the
/// line may end in `\n` or `\r\n`); `None` for more fields or none.
fn split<'a>(data: &'a [u8], out: &mut [&'a [u8]; 4]) -> Option<usize> {
    let line = data.strip_suffix(b"\n").unwrap_or(data);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut n = 0;
    for f in line.split(|&b| b == b' ').filter(|f| !f.is_empty()) {
        *out.get_mut(n)? = f;
        n += 1;
    }
    (n > 0).then_some(n)
}

/// A decimal `u32` of at most 10 digits.
fn decimal(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    u32::try_from(v).ok()
}

/// Copies `b` into the front of `tx`; returns how many bytes fit.
fn put(tx: &mut [u8], b: &[u8]) -> usize {
    let n = b.len().min(tx.len());
    if let (Some(d), Some(s)) = (tx.get_mut(..n), b.get(..n)) {
        d.copy_from_slice(s);
    }
    n
}
