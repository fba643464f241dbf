//! The decoder stage in front of the update session: compressed
//! (gzip, zlib, raw deflate) and `esp_delta_ota` patch uploads are decoded
//! on their way into [`UpdateSession`], so every check the session makes
//! (chip, size, `secure_version`, appended SHA-256, `X-Otter-Sha256`,
//! Secure Boot signature policy) applies to the *decoded* image, exactly as
//! for a plain upload.
//!
//! # RAM is lent, and optional
//!
//! The decoders' state is large next to the rest of the service (the
//! inflater carries deflate's 32 KiB window), so it is not part of
//! [`crate::service::Device`]. The platform lends it through
//! [`crate::service::Platform::decoder_ram`], as one [`DecoderRam`] of two
//! optional parts, each kept once (in a `static`) and reset in place per
//! update:
//!
//! | part | type | bytes (asserted) | decodes |
//! |---|---|---|---|
//! | `inflate` | [`Inflater`] | [`INFLATER_RAM`] ≤ 48 KiB | gzip, zlib, raw deflate |
//! | `patch` | [`PatchApplier`] | [`APPLIER_RAM`] ≤ 16 KiB + the 4 KiB heatshrink window | `esp_delta_ota` patches |
//!
//! A device that lends neither (the trait's default) still takes plain
//! images and answers a compressed or delta upload with 415
//! `decoder_unavailable`, before anything is erased.
//!
//! # Deltas
//!
//! A patch is applied from the running slot (read through the same
//! `NorFlash`) into the update slot. Its 64-byte header names the base
//! image's validation hash (the SHA-256 appended to the image, as
//! `esptool image-info` prints it); the running image is verified and its
//! hash compared before the patch's first output byte, so a patch for
//! another base is refused with 422 `wrong_base` and nothing is erased
//! (the session erases only once the first 0x120 image bytes exist).
//!
//! # Bombs
//!
//! Every decoder is limited to the update slot's size: output past it is
//! refused with 413 `too_large` at that point, without being written.
//!
//! # For other update paths
//!
//! A pull client (or any other writer of an [`UpdateSession`]) uses the
//! same stage: [`Decoder::begin`] with the artifact's [`Encoding`], the
//! running slot's region and the platform's [`DecoderRam`], then
//! [`Decoder::write`] for every received piece and [`Decoder::finish`]
//! before [`UpdateSession::finish`].

use embedded_storage::nor_flash::NorFlash;
use otter_delta::inflate::{Container, InflateError};
use otter_delta::patch::{PatchError, PatchIo};
use otter_format::chip::Chip;
use otter_format::image::VerifyOptions;
use otter_ota::session::UpdateSession;
use otter_ota::{verify_slot, Region};

use crate::error::DeviceError;

pub use otter_delta::inflate::{Inflater, INFLATER_RAM};
pub use otter_delta::patch::{PatchApplier, APPLIER_RAM};

/// A fresh inflater to lend (reset per update). On a device, build it once
/// in place (a `static`, `static_cell`): it is [`INFLATER_RAM`] bytes.
pub fn new_inflater() -> Inflater {
    Inflater::new(Container::Gzip, 0)
}

/// A fresh patch applier to lend (reset per update), [`APPLIER_RAM`] bytes.
pub fn new_applier() -> PatchApplier {
    PatchApplier::bare(0)
}

/// First byte of a gzip stream.
const GZIP_MAGIC: u8 = 0x1f;
/// First byte of an `esp_delta_ota` patch (magic `0xfccdde10`, LE).
const ESP_DELTA_FIRST: u8 = 0x10;

/// How the bytes of an update are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// A plain app image.
    Identity,
    /// Decided by the first byte: `1f` gzip, `10` an `esp_delta_ota`
    /// patch, anything else a plain image (an app image starts with `e9`).
    /// What an upload without a declared encoding gets (a browser form, a
    /// `curl --data-binary @app.bin.gz`).
    Sniff,
    /// RFC 1952 gzip (`Content-Encoding: gzip`, `gzip -9`, ESPHome).
    Gzip,
    /// RFC 1950 zlib.
    Zlib,
    /// Bare RFC 1951 deflate.
    RawDeflate,
    /// HTTP's `Content-Encoding: deflate`: zlib, or bare deflate when the
    /// first byte is not a zlib header (as some clients send it).
    HttpDeflate,
    /// An `esp_delta_ota` patch against the running image.
    EspDelta,
}

impl Encoding {
    /// The name used in errors and the status document.
    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Sniff => "auto",
            Self::Gzip => "gzip",
            Self::Zlib => "zlib",
            Self::RawDeflate => "deflate-raw",
            Self::HttpDeflate => "deflate",
            Self::EspDelta => "esp-delta-ota",
        }
    }
}

impl Encoding {
    /// The name in the status document's `last_update.encoding`: `identity`,
    /// `gzip`, `zlib`, `deflate` or `delta`; `None` before a sniffed
    /// upload's first byte.
    pub fn status_name(self) -> Option<&'static str> {
        Some(match self {
            Self::Identity => "identity",
            Self::Sniff => return None,
            Self::Gzip => "gzip",
            Self::Zlib => "zlib",
            Self::RawDeflate | Self::HttpDeflate => "deflate",
            Self::EspDelta => "delta",
        })
    }
}

/// The decoder RAM a platform lends (see the module docs). Either part
/// may be missing; the encodings that need it are then refused with 415
/// `decoder_unavailable`.
#[derive(Debug, Default)]
pub struct DecoderRam<'a> {
    /// The inflater (gzip, zlib, deflate).
    pub inflate: Option<&'a mut Inflater>,
    /// The patch applier (`esp_delta_ota`).
    pub patch: Option<&'a mut PatchApplier>,
}

impl DecoderRam<'_> {
    /// No decoder RAM: plain images only.
    pub const NONE: DecoderRam<'static> = DecoderRam {
        inflate: None,
        patch: None,
    };
}

/// Which decoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Nothing decoded yet; the first byte decides.
    Sniff,
    /// HTTP deflate: the first byte decides zlib or raw.
    HttpDeflate,
    /// Bytes go to the session as they are.
    Identity,
    /// Through the lent inflater.
    Inflate,
    /// Through the lent applier, against `base_len` bytes of the running
    /// slot.
    Patch { base_len: u32 },
}

/// One update's decoder stage. Small (the big state is in the lent
/// [`DecoderRam`]); it lives beside the [`UpdateSession`] it feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    stage: Stage,
    /// The encoding that was declared (or [`Encoding::Sniff`]).
    declared: Encoding,
    /// The encoding found (after sniffing).
    used: Encoding,
    /// The running slot (a patch's base).
    base: Option<Region>,
    chip: Chip,
    /// Most decoded bytes accepted (the update slot's size).
    limit: u64,
    /// Encoded bytes taken.
    consumed: u64,
    /// The session's size is the decoded image's (a pull knows it from its
    /// manifest), not the transfer's: keep it.
    image_size: bool,
}

impl Decoder {
    /// A decoder stage for `encoding`, into a slot of `limit` bytes, with
    /// `running` as a patch's base (`None` refuses patches). An explicit
    /// encoding whose RAM is not lent is refused here, before anything is
    /// erased; a sniffed one when its first byte arrives.
    pub fn begin(
        encoding: Encoding,
        ram: &mut DecoderRam<'_>,
        running: Option<Region>,
        chip: Chip,
        limit: u64,
    ) -> Result<Self, DeviceError> {
        let mut d = Decoder {
            stage: Stage::Sniff,
            declared: encoding,
            used: encoding,
            base: running,
            chip,
            limit,
            consumed: 0,
            image_size: false,
        };
        match encoding {
            Encoding::Identity => d.stage = Stage::Identity,
            Encoding::Sniff => {}
            Encoding::HttpDeflate => {
                if ram.inflate.is_none() {
                    return Err(DeviceError::DecoderUnavailable(encoding));
                }
                d.stage = Stage::HttpDeflate;
            }
            Encoding::Gzip | Encoding::Zlib | Encoding::RawDeflate => {
                d.start_inflate(ram, encoding)?;
            }
            Encoding::EspDelta => {
                if ram.patch.is_none() {
                    return Err(DeviceError::DecoderUnavailable(encoding));
                }
                // The base is checked when the first byte arrives (it needs
                // the flash); nothing is erased before the header is read.
            }
        }
        Ok(d)
    }

    /// A stage for a plain image (no RAM needed).
    pub const fn identity() -> Self {
        Decoder {
            stage: Stage::Identity,
            declared: Encoding::Identity,
            used: Encoding::Identity,
            base: None,
            chip: Chip::Esp32,
            limit: u64::MAX,
            consumed: 0,
            image_size: false,
        }
    }

    /// The same stage for a session whose size is the decoded image's (a
    /// pull: the manifest names the image's size and SHA-256), which it
    /// keeps instead of forgetting it at the first encoded byte.
    pub const fn with_image_size(mut self) -> Self {
        self.image_size = true;
        self
    }

    /// The encoding found: the declared one, or what sniffing decided
    /// ([`Encoding::Sniff`] until the first byte).
    pub fn encoding(&self) -> Encoding {
        self.used
    }

    /// Encoded bytes taken so far (the transfer's size).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    fn start_inflate(
        &mut self,
        ram: &mut DecoderRam<'_>,
        encoding: Encoding,
    ) -> Result<(), DeviceError> {
        let container = match encoding {
            Encoding::Gzip => Container::Gzip,
            Encoding::Zlib => Container::Zlib,
            _ => Container::Raw,
        };
        let inflater = ram
            .inflate
            .as_deref_mut()
            .ok_or(DeviceError::DecoderUnavailable(encoding))?;
        inflater.reset(container, self.limit);
        self.stage = Stage::Inflate;
        self.used = encoding;
        Ok(())
    }

    fn start_patch<F: NorFlash>(
        &mut self,
        ram: &mut DecoderRam<'_>,
        flash: &mut F,
    ) -> Result<(), DeviceError> {
        let applier = ram
            .patch
            .as_deref_mut()
            .ok_or(DeviceError::DecoderUnavailable(Encoding::EspDelta))?;
        let base = self.base.ok_or(DeviceError::BaseUnavailable)?;
        let (sha, base_len) = running_base(flash, &base, self.chip)?;
        applier.reset(sha, self.limit);
        self.stage = Stage::Patch { base_len };
        self.used = Encoding::EspDelta;
        Ok(())
    }

    /// Decodes `data` into `session`. Errors are final: abandon the
    /// session (nothing has been selected).
    pub fn write<F: NorFlash>(
        &mut self,
        ram: &mut DecoderRam<'_>,
        flash: &mut F,
        session: &mut UpdateSession,
        data: &[u8],
    ) -> Result<(), DeviceError> {
        let Some(&first) = data.first() else {
            return Ok(());
        };
        if self.stage == Stage::Sniff && self.declared == Encoding::EspDelta {
            self.start_patch(ram, flash)?;
        }
        match self.stage {
            // A plain image starts with `e9`; anything else that is neither
            // gzip nor a patch is written as it is and refused by the
            // session (`not_an_app`).
            Stage::Sniff => match first {
                GZIP_MAGIC => self.start_inflate(ram, Encoding::Gzip)?,
                ESP_DELTA_FIRST => self.start_patch(ram, flash)?,
                _ => {
                    self.stage = Stage::Identity;
                    self.used = Encoding::Identity;
                }
            },
            Stage::HttpDeflate => {
                let zlib = first & 0x0f == 8 && first >> 4 <= 7;
                let e = if zlib {
                    Encoding::Zlib
                } else {
                    Encoding::RawDeflate
                };
                self.start_inflate(ram, e)?;
                self.used = Encoding::HttpDeflate;
            }
            Stage::Identity | Stage::Inflate | Stage::Patch { .. } => {}
        }
        if self.consumed == 0
            && !self.image_size
            && matches!(self.stage, Stage::Inflate | Stage::Patch { .. })
        {
            // A size announced for the transfer is not the image's.
            session
                .forget_size::<F::Error>()
                .map_err(|e| DeviceError::from_ota(&e))?;
        }
        self.consumed = self.consumed.saturating_add(data.len() as u64);
        match self.stage {
            Stage::Identity => session
                .write(flash, data)
                .map_err(|e| DeviceError::from_ota(&e)),
            Stage::Inflate => {
                let inflater = ram
                    .inflate
                    .as_deref_mut()
                    .ok_or(DeviceError::DecoderUnavailable(self.used))?;
                let mut sink = SessionSink { flash, session };
                inflater
                    .feed(data, &mut sink)
                    .map_err(|e| inflate_error(e, self.limit))
            }
            Stage::Patch { base_len } => {
                let applier = ram
                    .patch
                    .as_deref_mut()
                    .ok_or(DeviceError::DecoderUnavailable(Encoding::EspDelta))?;
                let Some(base) = self.base else {
                    return Err(DeviceError::BaseUnavailable);
                };
                let mut io = BaseIo {
                    flash,
                    session,
                    base: base.offset,
                    base_len,
                };
                applier
                    .feed(data, &mut io)
                    .map_err(|e| patch_error(e, self.limit))
            }
            // Decided above.
            Stage::Sniff | Stage::HttpDeflate => Ok(()),
        }
    }

    /// The encoded input has ended: `Ok` when the stream was complete
    /// (gzip trailer and CRC-32, zlib Adler-32, every byte a patch
    /// declares). Call before [`UpdateSession::finish`].
    pub fn finish(&self, ram: &DecoderRam<'_>) -> Result<(), DeviceError> {
        match self.stage {
            Stage::Sniff | Stage::HttpDeflate | Stage::Identity => Ok(()),
            Stage::Inflate => {
                let inflater = ram
                    .inflate
                    .as_deref()
                    .ok_or(DeviceError::DecoderUnavailable(self.used))?;
                inflater
                    .finish::<DeviceError>()
                    .map(|_| ())
                    .map_err(|e| inflate_error(e, self.limit))
            }
            Stage::Patch { .. } => {
                let applier = ram
                    .patch
                    .as_deref()
                    .ok_or(DeviceError::DecoderUnavailable(Encoding::EspDelta))?;
                applier
                    .finish::<DeviceError>()
                    .map(|_| ())
                    .map_err(|e| patch_error(e, self.limit))
            }
        }
    }
}

/// The running image's validation hash (the appended SHA-256, checked
/// against the image) and its length in the slot (with a Secure Boot
/// signature, when one follows): what a patch must name and may read.
fn running_base<F: NorFlash>(
    flash: &mut F,
    region: &Region,
    chip: Chip,
) -> Result<([u8; 32], u32), DeviceError> {
    let mut opts = VerifyOptions::new();
    opts.chip = Some(chip);
    let info = verify_slot(flash, region, opts)
        .map_err(|e| DeviceError::from_ota(&e))?
        .map_err(|_| DeviceError::BaseUnavailable)?;
    let sha = match info.sha256 {
        Some(s) if s.stored == s.computed => s.stored,
        _ => return Err(DeviceError::BaseUnavailable),
    };
    let mut len = info.image_len;
    if let Some(sig) = info.signature {
        len = len.max(sig.offset.saturating_add(sig.len));
    }
    Ok((sha, len.min(region.size)))
}

/// Bytes of the bounce buffer for reads the flash's `READ_SIZE` does not
/// align (a patch reads its base at any offset).
const BOUNCE: usize = 64;

/// Reads `buf` from `at` in units of 4 bytes at 4-byte offsets (or
/// `F::READ_SIZE`, when larger, up to [`BOUNCE`]): directly when aligned,
/// else through a small aligned bounce buffer. ESP32 flash drivers
/// (`esp-storage` without `bytewise-read`) read only 4-byte-aligned words,
/// whatever `READ_SIZE` says.
fn read_unaligned<F: NorFlash>(flash: &mut F, at: u32, buf: &mut [u8]) -> Result<(), DeviceError> {
    let align = F::READ_SIZE.max(4);
    if (at as usize).is_multiple_of(align) && buf.len().is_multiple_of(align) {
        return flash.read(at, buf).map_err(DeviceError::flash);
    }
    if align > BOUNCE || !BOUNCE.is_multiple_of(align) {
        return Err(DeviceError::Flash(crate::FlashFault(
            embedded_storage::nor_flash::NorFlashErrorKind::NotAligned,
        )));
    }
    let mut bounce = [0u8; BOUNCE];
    let mut done = 0usize;
    while done < buf.len() {
        let pos = at as usize + done;
        let start = pos - pos % align;
        let skip = pos - start;
        let want = (buf.len() - done + skip).div_ceil(align) * align;
        let n = want.min(BOUNCE);
        let start32 = u32::try_from(start).map_err(|_| DeviceError::BaseUnavailable)?;
        let chunk = bounce.get_mut(..n).unwrap_or_default();
        flash.read(start32, chunk).map_err(DeviceError::flash)?;
        let take = (n - skip).min(buf.len() - done);
        let (Some(dst), Some(src)) = (buf.get_mut(done..done + take), chunk.get(skip..skip + take))
        else {
            return Err(DeviceError::BaseUnavailable);
        };
        dst.copy_from_slice(src);
        done += take;
    }
    Ok(())
}

fn inflate_error(e: InflateError<DeviceError>, limit: u64) -> DeviceError {
    match e {
        InflateError::Sink(d) => d,
        InflateError::TooLarge { .. } => DeviceError::TooLarge {
            needed: limit.saturating_add(1),
            capacity: u32::try_from(limit).unwrap_or(u32::MAX),
        },
        other => DeviceError::Compressed(other.map_sink(|_| ())),
    }
}

fn patch_error(e: PatchError<DeviceError>, limit: u64) -> DeviceError {
    match e {
        PatchError::Io(d) => d,
        PatchError::TooLarge { to_size, .. } => DeviceError::TooLarge {
            needed: to_size,
            capacity: u32::try_from(limit).unwrap_or(u32::MAX),
        },
        other => DeviceError::Patch(other.map_io(|_| ())),
    }
}

struct SessionSink<'x, F> {
    flash: &'x mut F,
    session: &'x mut UpdateSession,
}

impl<F: NorFlash> otter_delta::Sink for SessionSink<'_, F> {
    type Error = DeviceError;
    fn write(&mut self, data: &[u8]) -> Result<(), DeviceError> {
        self.session
            .write(self.flash, data)
            .map_err(|e| DeviceError::from_ota(&e))
    }
}

struct BaseIo<'x, F> {
    flash: &'x mut F,
    session: &'x mut UpdateSession,
    base: u32,
    base_len: u32,
}

impl<F: NorFlash> PatchIo for BaseIo<'_, F> {
    type Error = DeviceError;
    fn base_len(&self) -> u64 {
        u64::from(self.base_len)
    }
    fn read_base(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        // The applier checks `offset + buf.len() <= base_len` first.
        let at = u32::try_from(offset)
            .ok()
            .and_then(|o| self.base.checked_add(o))
            .ok_or(DeviceError::BaseUnavailable)?;
        read_unaligned(self.flash, at, buf)
    }
    fn write(&mut self, data: &[u8]) -> Result<(), DeviceError> {
        self.session
            .write(self.flash, data)
            .map_err(|e| DeviceError::from_ota(&e))
    }
}
