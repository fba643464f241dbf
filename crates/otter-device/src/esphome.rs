//! ESPHome's native OTA protocol, device side, as a sans-IO machine
//! ([`EsphomeConnection`]) over the same [`Device`] and update session as
//! the HTTP API.
//!
//! The uploader (`esphome upload`, `esphome.espota2`) connects to TCP port
//! 3232 and the two sides exchange, big-endian and hex in lowercase ASCII:
//!
//! | step | uploader → device | device → uploader |
//! |---|---|---|
//! | 1 | magic `6C 26 F7 5C 45` | `00`, protocol version (1 or 2) |
//! | 2 | client feature byte (`01` gzip, `02` SHA-256 auth, `04` extended) | `40` (legacy; `46` = gzip accepted), or `48` + server flags (`01` gzip) when the client set `04` |
//! | 3 | | no password: `41`; else `02` + 64-hex nonce if the client set `02`, otherwise `01` + 32-hex nonce |
//! | 3' | cnonce (hex, nonce's length), then hex(H(password ‖ nonce ‖ cnonce)) | `41`, or `82` |
//! | 4 | extended only: OTA type (`00` app) | |
//! | 5 | 4-byte size | `42` after the session began (unsupported type: `8E`) |
//! | 6 | 32-hex MD5 of the bytes to come | `43` |
//! | 7 | data in 8 KiB blocks | version 2: `47` per 8 KiB received and for the last partial block |
//! | 8 | | `44`; then after MD5 and image verification and the boot switch `45` |
//! | 9 | `00` (tolerated missing) | the caller closes and reboots |
//!
//! Any answer may instead be one error byte ([`ErrorCode`]), after which
//! the device closes. When the platform lends an inflater
//! ([`crate::service::Platform::decoder_ram`]) the device advertises gzip
//! to a client that offered it (`01`): `46` to a legacy client, server flag
//! `01` in the extended answer (never `08`, raw deflate). The image is then
//! inflated as it arrives ([`crate::decode`]), the size and MD5 are the
//! gzip stream's, and every check applies to the inflated image. Partition
//! access is never advertised: only app images are taken, through the same
//! early refusals as `POST /update` (wrong chip, too large, not an app,
//! `secure_version` below the counter). The MD5 the uploader sent is
//! checked over every byte received, and the image's own checksum and
//! SHA-256 are verified before anything is selected.
//!
//! The caller owns the socket and the clock; it hands
//! [`EsphomeConnection::handle`] the bytes read, sends what it answers and
//! acts on its [`Action`], exactly as for [`crate::service::Connection`].
//! Which protocol a TCP connection speaks is told by its first byte
//! ([`sniff`]).

use embedded_storage::nor_flash::NorFlash;
use md5::{Digest, Md5};
use otter_format::image::ImageError;
use sha2::Sha256;

use crate::challenge::{ct_eq_hex, hex, unhex, Secret};
use crate::decode::Encoding;
use crate::error::{DeviceError, Timeout};
use crate::service::{Action, Device, Output, Platform, Protocol, UpdateKind};

/// The five bytes an ESPHome uploader opens with.
pub const MAGIC: [u8; 5] = [0x6C, 0x26, 0xF7, 0x5C, 0x45];
/// ESPHome's data block: version 2 acknowledges each.
pub const BLOCK: u32 = 8192;
/// The smallest output buffer [`EsphomeConnection::handle`] accepts: the
/// longest handshake answer (`48 00 02` + 64-hex nonce) and the acks of
/// one call's data.
pub const MIN_TX: usize = 80;

const OK: u8 = 0x00;
const REQUEST_AUTH_MD5: u8 = 0x01;
const REQUEST_AUTH_SHA256: u8 = 0x02;
const HEADER_OK: u8 = 0x40;
const AUTH_OK: u8 = 0x41;
const UPDATE_PREPARE_OK: u8 = 0x42;
const BIN_MD5_OK: u8 = 0x43;
const RECEIVE_OK: u8 = 0x44;
const UPDATE_END_OK: u8 = 0x45;
const CHUNK_OK: u8 = 0x47;
const FEATURE_FLAGS: u8 = 0x48;

/// Legacy answer to a client that offered gzip: the device takes it.
const SUPPORTS_COMPRESSION: u8 = 0x46;

const CLIENT_COMPRESSION: u8 = 0x01;
const CLIENT_SHA256_AUTH: u8 = 0x02;
const CLIENT_EXTENDED: u8 = 0x04;
/// Server feature flag (extended protocol): gzip-compressed images. Its
/// sibling `08` (raw deflate, with the inflated image's size sent after
/// the transfer's and an MD5 over the inflated image) is not offered: it
/// saves gzip's 18 framing bytes and nothing else.
const SERVER_COMPRESSION: u8 = 0x01;
const OTA_TYPE_APP: u8 = 0x00;

/// Which protocol a TCP connection on the OTA port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniff {
    /// ESPHome's OTA (its first byte is the magic's `6C`, which no HTTP
    /// method starts with).
    Esphome,
    /// Anything else is HTTP.
    Http,
    /// Nothing arrived yet.
    NeedMore,
}

/// Tells ESPHome's OTA from HTTP by the first byte a client sent.
pub fn sniff(prefix: &[u8]) -> Sniff {
    match prefix.first() {
        None => Sniff::NeedMore,
        Some(&b) if b == MAGIC[0] => Sniff::Esphome,
        Some(_) => Sniff::Http,
    }
}

/// The protocol version the device announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Version 1: no per-block acks (the `espota` PyPI client speaks only
    /// this one).
    V1 = 1,
    /// Version 2 (ESPHome's default): one ack per 8 KiB block.
    V2 = 2,
}

/// How the ESPHome protocol is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EsphomeOptions {
    /// The version announced.
    pub version: Version,
    /// The OTA password (`ota: password:` in an ESPHome YAML); the
    /// challenge needs it in clear. `None`: no authentication.
    pub password: Option<Secret>,
    /// From accept to the end of the handshake (ESPHome's 20 s).
    pub handshake_ms: u64,
    /// Longest silence in the data phase (ESPHome's 90 s).
    pub data_ms: u64,
}

impl EsphomeOptions {
    /// Version 2, no password, ESPHome's timeouts.
    pub const fn new() -> Self {
        Self {
            version: Version::V2,
            password: None,
            handshake_ms: 20_000,
            data_ms: 90_000,
        }
    }
}

impl Default for EsphomeOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// ESPHome's error bytes (`ota_backend.h`), as the device sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `80`: the opening bytes are not the magic, or the image does not
    /// start like an app (ESPHome's own answer to an image
    /// `esp_ota_write` refuses).
    Magic = 0x80,
    /// `81`: the update could not be begun (another update runs, the
    /// running image is not confirmed yet, no image runs).
    UpdatePrepare = 0x81,
    /// `82`: the password's challenge failed.
    AuthInvalid = 0x82,
    /// `83`: the flash failed while writing.
    WritingFlash = 0x83,
    /// `84`: the image was refused (wrong chip, damaged, truncated,
    /// trailing data) or could not be selected.
    UpdateEnd = 0x84,
    /// `89`: the image does not fit the OTA slot.
    NotEnoughSpace = 0x89,
    /// `8A`: the partition table has no OTA slot.
    NoUpdatePartition = 0x8A,
    /// `8B`: the bytes received do not have the announced MD5.
    Md5Mismatch = 0x8B,
    /// `8D`: the image's Secure Boot signature is missing or not trusted
    /// (a device that requires signatures), or an expected hash differs.
    SignatureInvalid = 0x8D,
    /// `8E`: an OTA type other than app (partition table, bootloader).
    UnsupportedOtaType = 0x8E,
    /// `93`: the image's `secure_version` is below the anti-rollback
    /// counter (current clients call it downgrade protection).
    VersionDowngrade = 0x93,
    /// `FF`: anything else.
    Unknown = 0xFF,
}

impl ErrorCode {
    /// The byte on the wire.
    pub fn byte(self) -> u8 {
        self as u8
    }

    /// The nearest ESPHome code for a refusal of the update session.
    pub fn of(e: &DeviceError) -> Self {
        match e {
            DeviceError::Busy | DeviceError::PendingVerify | DeviceError::NotRunning => {
                Self::UpdatePrepare
            }
            DeviceError::TooLarge { .. }
            | DeviceError::TooLargeStream { .. }
            | DeviceError::Image(
                ImageError::ImageTooLarge { .. } | ImageError::FileTooLarge { .. },
            ) => Self::NotEnoughSpace,
            DeviceError::NoOtaSlot => Self::NoUpdatePartition,
            DeviceError::Md5Mismatch => Self::Md5Mismatch,
            DeviceError::Sha256Mismatch | DeviceError::BadSignature(_) => Self::SignatureInvalid,
            DeviceError::Flash(_) | DeviceError::Nvs => Self::WritingFlash,
            DeviceError::Image(ImageError::SecureVersionTooLow { .. }) => Self::VersionDowngrade,
            DeviceError::Image(
                ImageError::BadMagic { .. }
                | ImageError::Esp8266 { .. }
                | ImageError::IsBootloader
                | ImageError::IsMergedFlash
                | ImageError::IsRamOnly,
            ) => Self::Magic,
            DeviceError::Image(_)
            | DeviceError::TrailingData { .. }
            | DeviceError::Empty
            | DeviceError::Compressed(_)
            | DeviceError::Patch(_) => Self::UpdateEnd,
            _ => Self::Unknown,
        }
    }
}

/// Why an ESPHome connection ended without an update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EsphomeError {
    /// The uploader's opening bytes are not ESPHome's magic.
    #[error("the connection did not open with ESPHome's OTA magic")]
    BadMagic,
    /// The uploader answered the challenge wrongly: wrong password.
    #[error("ESPHome OTA authentication failed: the uploader's password is wrong")]
    AuthFailed,
    /// The uploader asked for an OTA type other than app.
    #[error("OTA type {0:#04x} is not supported: this device takes app images only")]
    UnsupportedOtaType(u8),
    /// The uploader's MD5 field is not 32 hex digits.
    #[error("the uploader's MD5 is not 32 hex digits")]
    BadMd5Field,
    /// The update session refused or failed (its record is in
    /// `last_update`).
    #[error("{0}")]
    Update(DeviceError),
}

impl EsphomeError {
    /// A stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadMagic => "esphome_bad_magic",
            Self::AuthFailed => "esphome_auth_failed",
            Self::UnsupportedOtaType(_) => "esphome_unsupported_ota_type",
            Self::BadMd5Field => "esphome_bad_md5",
            Self::Update(e) => e.code(),
        }
    }

    /// The byte sent for it.
    pub fn wire(&self) -> ErrorCode {
        match self {
            Self::BadMagic => ErrorCode::Magic,
            Self::AuthFailed => ErrorCode::AuthInvalid,
            Self::UnsupportedOtaType(_) => ErrorCode::UnsupportedOtaType,
            Self::BadMd5Field => ErrorCode::Md5Mismatch,
            Self::Update(e) => ErrorCode::of(e),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Md5,
    Sha256,
}

impl Hash {
    fn hex_len(self) -> usize {
        match self {
            Self::Md5 => 32,
            Self::Sha256 => 64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Magic,
    Features,
    Cnonce,
    Response,
    OtaType,
    Size { ota_type: u8 },
    Md5,
    Data,
    Done,
    Closed,
}

/// One ESPHome OTA connection; see the module docs.
#[derive(Debug, Clone)]
pub struct EsphomeConnection {
    opts: EsphomeOptions,
    state: State,
    /// A fixed-length field being collected.
    field: [u8; 64],
    field_len: u8,
    nonce: [u8; 64],
    cnonce: [u8; 64],
    hash: Hash,
    extended: bool,
    /// What the uploader will send, as negotiated.
    encoding: Encoding,
    size: u32,
    received: u32,
    acked: u32,
    md5: Md5,
    expected_md5: [u8; 16],
    /// Whether this connection holds the device's update.
    owns_update: bool,
    deadline: u64,
    last_rx: u64,
    error: Option<EsphomeError>,
}

impl EsphomeConnection {
    /// A connection accepted at `now`. `entropy` makes the challenge's
    /// nonce: 32 unpredictable bytes from the platform's RNG.
    pub fn new(opts: &EsphomeOptions, entropy: &[u8; 32], now: u64) -> Self {
        let mut nonce = [0u8; 64];
        hex(entropy, &mut nonce);
        Self {
            opts: *opts,
            state: State::Magic,
            field: [0; 64],
            field_len: 0,
            nonce,
            cnonce: [0; 64],
            hash: Hash::Md5,
            extended: false,
            encoding: Encoding::Identity,
            size: 0,
            received: 0,
            acked: 0,
            md5: Md5::new(),
            expected_md5: [0; 16],
            owns_update: false,
            deadline: now.saturating_add(opts.handshake_ms),
            last_rx: now,
            error: None,
        }
    }

    /// Whether the connection is finished.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed | State::Done)
    }

    /// Why the connection ended without an update, if it did.
    pub fn error(&self) -> Option<&EsphomeError> {
        self.error.as_ref()
    }

    /// Feeds `input` (possibly empty) at `now`; writes the answer into
    /// `tx` (at least [`MIN_TX`] bytes). Feed what was not consumed in the
    /// next call.
    pub fn handle<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        input: &[u8],
        now: u64,
        tx: &mut [u8],
    ) -> Output {
        if tx.len() < MIN_TX {
            return self.out(0, 0, Action::Close);
        }
        if !input.is_empty() {
            self.last_rx = now;
        }
        let mut consumed = 0usize;
        let mut written = 0usize;
        loop {
            let rest = input.get(consumed..).unwrap_or_default();
            match self.state {
                State::Closed => {
                    return self.out(input.len(), written, Action::Close);
                }
                State::Done => {
                    return self.out(input.len(), written, Action::Read);
                }
                _ if rest.is_empty() => return self.out(consumed, written, Action::Read),
                _ => {}
            }
            let room = tx.len().saturating_sub(written);
            if room < MIN_TX {
                return self.out(consumed, written, Action::Read);
            }
            let w = tx.get_mut(written..).unwrap_or_default();
            match self.step(dev, flash, platform, rest, now, w) {
                Ok((c, n, action)) => {
                    consumed += c;
                    written += n;
                    if action != Action::Read {
                        return self.out(consumed, written, action);
                    }
                }
                Err(e) => {
                    let w = tx.get_mut(written..).unwrap_or_default();
                    let n = self.fail(dev, e, now, w);
                    return self.out(input.len(), written + n, Action::Close);
                }
            }
        }
    }

    /// Checks the deadlines at `now` while no input arrives: the handshake
    /// limit, then the data phase's silence limit. A timeout abandons the
    /// update and closes without an answer (ESPHome's device does the same).
    pub fn poll(&mut self, dev: &mut Device, now: u64) -> Output {
        let limit = match self.state {
            State::Data => Some((
                self.last_rx.saturating_add(self.opts.data_ms),
                self.opts.data_ms,
            )),
            State::Done | State::Closed => None,
            _ => Some((self.deadline, self.opts.handshake_ms)),
        };
        match limit {
            Some((at, ms)) if now >= at => {
                let e = DeviceError::Timeout(Timeout::Stalled { ms });
                if self.owns_update {
                    dev.abort_update(Protocol::Esphome, &e, now);
                    self.owns_update = false;
                }
                self.error = Some(EsphomeError::Update(e));
                self.state = State::Closed;
                self.out(0, 0, Action::Close)
            }
            _ => self.out(0, 0, Action::Read),
        }
    }

    /// The peer went away (or the socket broke) at `now`: an update this
    /// connection was writing is recorded as `aborted` and abandoned.
    pub fn peer_closed(&mut self, dev: &mut Device, now: u64) {
        if self.owns_update {
            let e = DeviceError::Aborted {
                received: u64::from(self.received),
            };
            dev.abort_update(Protocol::Esphome, &e, now);
            self.owns_update = false;
            self.error = Some(EsphomeError::Update(e));
        }
        self.state = State::Closed;
    }

    fn out(&self, consumed: usize, written: usize, action: Action) -> Output {
        Output {
            consumed,
            written,
            tail: &[],
            action,
        }
    }

    fn fail(&mut self, dev: &mut Device, e: EsphomeError, now: u64, tx: &mut [u8]) -> usize {
        if self.owns_update {
            // Every failure after the size was taken abandons the update it
            // began, a protocol error (a malformed MD5 field) as much as a
            // refusal of the session: the lock is released either way.
            let aborted = DeviceError::Aborted {
                received: u64::from(self.received),
            };
            let de = match &e {
                EsphomeError::Update(de) => de,
                _ => &aborted,
            };
            dev.abort_update(Protocol::Esphome, de, now);
            self.owns_update = false;
        }
        let n = put(tx, &[e.wire().byte()]);
        self.error = Some(e);
        self.state = State::Closed;
        n
    }

    /// Collects a fixed-length field; `Some` once it is complete.
    fn collect(&mut self, input: &[u8], want: usize) -> (usize, Option<[u8; 64]>) {
        let have = usize::from(self.field_len);
        let take = want.saturating_sub(have).min(input.len());
        if let (Some(d), Some(s)) = (self.field.get_mut(have..have + take), input.get(..take)) {
            d.copy_from_slice(s);
        }
        self.field_len = (have + take) as u8;
        if have + take == want {
            self.field_len = 0;
            (take, Some(self.field))
        } else {
            (take, None)
        }
    }

    #[allow(clippy::type_complexity)]
    fn step<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        input: &[u8],
        now: u64,
        tx: &mut [u8],
    ) -> Result<(usize, usize, Action), EsphomeError> {
        match self.state {
            State::Magic => {
                let (c, field) = self.collect(input, MAGIC.len());
                // A wrong byte is refused at once, not after five.
                let have = if field.is_some() {
                    MAGIC.len()
                } else {
                    usize::from(self.field_len)
                };
                let got = field.as_ref().map_or(&self.field[..], |f| &f[..]);
                if got.get(..have) != MAGIC.get(..have) {
                    return Err(EsphomeError::BadMagic);
                }
                if field.is_none() {
                    return Ok((c, 0, Action::Read));
                }
                self.state = State::Features;
                let n = put(tx, &[OK, self.opts.version as u8]);
                Ok((c, n, Action::Read))
            }
            State::Features => {
                let flags = input.first().copied().unwrap_or(0);
                self.extended = flags & CLIENT_EXTENDED != 0;
                // Compression is offered only when the platform lends the
                // inflater: the image is then inflated as it arrives.
                let inflate = platform.decoder_ram().inflate.is_some();
                let gzip = inflate && flags & CLIENT_COMPRESSION != 0;
                // Sniffed: an uploader that offered gzip may still send the
                // plain image. The size and MD5 are the gzip stream's.
                self.encoding = if gzip {
                    Encoding::Sniff
                } else {
                    Encoding::Identity
                };
                let mut n = if self.extended {
                    let server = if gzip { SERVER_COMPRESSION } else { 0 };
                    put(tx, &[FEATURE_FLAGS, server])
                } else if gzip {
                    put(tx, &[SUPPORTS_COMPRESSION])
                } else {
                    put(tx, &[HEADER_OK])
                };
                match self.opts.password {
                    None => {
                        n += put(tx.get_mut(n..).unwrap_or_default(), &[AUTH_OK]);
                        self.state = self.after_auth();
                    }
                    Some(_) => {
                        self.hash = if flags & CLIENT_SHA256_AUTH != 0 {
                            Hash::Sha256
                        } else {
                            Hash::Md5
                        };
                        let kind = match self.hash {
                            Hash::Md5 => REQUEST_AUTH_MD5,
                            Hash::Sha256 => REQUEST_AUTH_SHA256,
                        };
                        n += put(tx.get_mut(n..).unwrap_or_default(), &[kind]);
                        let len = self.hash.hex_len();
                        let nonce = self.nonce;
                        n += put(
                            tx.get_mut(n..).unwrap_or_default(),
                            nonce.get(..len).unwrap_or_default(),
                        );
                        self.state = State::Cnonce;
                    }
                }
                Ok((1, n, Action::Read))
            }
            State::Cnonce => {
                let len = self.hash.hex_len();
                let (c, field) = self.collect(input, len);
                if let Some(f) = field {
                    self.cnonce = f;
                    self.state = State::Response;
                }
                Ok((c, 0, Action::Read))
            }
            State::Response => {
                let len = self.hash.hex_len();
                let (c, field) = self.collect(input, len);
                let Some(f) = field else {
                    return Ok((c, 0, Action::Read));
                };
                let mut want = [0u8; 64];
                let want = self.expected_response(&mut want);
                if !ct_eq_hex(want, f.get(..len).unwrap_or_default()) {
                    return Err(EsphomeError::AuthFailed);
                }
                self.state = self.after_auth();
                Ok((c, put(tx, &[AUTH_OK]), Action::Read))
            }
            State::OtaType => {
                let t = input.first().copied().unwrap_or(0);
                self.state = State::Size { ota_type: t };
                Ok((1, 0, Action::Read))
            }
            State::Size { ota_type } => {
                let (c, field) = self.collect(input, 4);
                let Some(f) = field else {
                    return Ok((c, 0, Action::Read));
                };
                if ota_type != OTA_TYPE_APP {
                    return Err(EsphomeError::UnsupportedOtaType(ota_type));
                }
                let size = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
                dev.begin_update(
                    flash,
                    platform,
                    UpdateKind::Firmware,
                    Protocol::Esphome,
                    size,
                    self.encoding,
                    now,
                )
                .map_err(EsphomeError::Update)?;
                self.owns_update = true;
                self.size = size;
                self.state = State::Md5;
                Ok((c, put(tx, &[UPDATE_PREPARE_OK]), Action::Read))
            }
            State::Md5 => {
                let (c, field) = self.collect(input, 32);
                let Some(f) = field else {
                    return Ok((c, 0, Action::Read));
                };
                if !unhex(f.get(..32).unwrap_or_default(), &mut self.expected_md5) {
                    return Err(EsphomeError::BadMd5Field);
                }
                self.state = State::Data;
                Ok((c, put(tx, &[BIN_MD5_OK]), Action::Read))
            }
            State::Data => self.data(dev, flash, platform, input, now, tx),
            State::Done | State::Closed => Ok((input.len(), 0, Action::Read)),
        }
    }

    fn after_auth(&self) -> State {
        if self.extended {
            State::OtaType
        } else {
            State::Size {
                ota_type: OTA_TYPE_APP,
            }
        }
    }

    fn expected_response<'o>(&self, out: &'o mut [u8; 64]) -> &'o [u8] {
        let len = self.hash.hex_len();
        let pw = self
            .opts
            .password
            .as_ref()
            .map(Secret::as_bytes)
            .unwrap_or_default();
        let nonce = self.nonce.get(..len).unwrap_or_default();
        let cnonce = self.cnonce.get(..len).unwrap_or_default();
        match self.hash {
            Hash::Md5 => {
                let d = Md5::new()
                    .chain_update(pw)
                    .chain_update(nonce)
                    .chain_update(cnonce)
                    .finalize();
                hex(&d, out)
            }
            Hash::Sha256 => {
                let d = Sha256::new()
                    .chain_update(pw)
                    .chain_update(nonce)
                    .chain_update(cnonce)
                    .finalize();
                hex(&d, out)
            }
        }
    }

    fn data<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        input: &[u8],
        now: u64,
        tx: &mut [u8],
    ) -> Result<(usize, usize, Action), EsphomeError> {
        // Up to the next block boundary, so the acks of one step fit.
        let to_block = BLOCK - (self.received % BLOCK);
        let left = self.size - self.received;
        let take = (input.len() as u64).min(u64::from(to_block.min(left))) as usize;
        let data = input.get(..take).unwrap_or_default();
        dev.write_update(flash, platform, data)
            .map_err(EsphomeError::Update)?;
        self.md5.update(data);
        self.received += take as u32;
        let mut n = 0;
        if self.opts.version == Version::V2 {
            while self.acked.saturating_add(BLOCK) <= self.received
                || (self.received == self.size && self.acked < self.size)
            {
                n += put(tx.get_mut(n..).unwrap_or_default(), &[CHUNK_OK]);
                self.acked = self.acked.saturating_add(BLOCK);
            }
        }
        if self.received < self.size {
            return Ok((take, n, Action::Read));
        }
        n += put(tx.get_mut(n..).unwrap_or_default(), &[RECEIVE_OK]);
        let got: [u8; 16] = self.md5.clone().finalize().into();
        if got != self.expected_md5 {
            // Written before the error byte: ESPHome's own order.
            let e = DeviceError::Md5Mismatch;
            dev.abort_update(Protocol::Esphome, &e, now);
            self.owns_update = false;
            n += put(
                tx.get_mut(n..).unwrap_or_default(),
                &[ErrorCode::Md5Mismatch.byte()],
            );
            self.error = Some(EsphomeError::Update(e));
            self.state = State::Closed;
            return Ok((take, n, Action::Close));
        }
        self.owns_update = false;
        match dev.finish_update(flash, platform, Protocol::Esphome, now) {
            Ok(done) => {
                n += put(tx.get_mut(n..).unwrap_or_default(), &[UPDATE_END_OK]);
                self.state = State::Done;
                Ok((take, n, Action::Reboot(done.reboot)))
            }
            Err(e) => {
                n += put(
                    tx.get_mut(n..).unwrap_or_default(),
                    &[ErrorCode::of(&e).byte()],
                );
                self.error = Some(EsphomeError::Update(e));
                self.state = State::Closed;
                Ok((take, n, Action::Close))
            }
        }
    }
}

/// Copies `b` into the front of `tx`; returns how many bytes fit.
fn put(tx: &mut [u8], b: &[u8]) -> usize {
    let n = b.len().min(tx.len());
    if let (Some(d), Some(s)) = (tx.get_mut(..n), b.get(..n)) {
        d.copy_from_slice(s);
    }
    n
}
