//! [`DeviceError`]: everything a client of the device can be told, with its
//! HTTP status and the stable code of `docs/device-api.md`.

use embedded_storage::nor_flash::{NorFlashError, NorFlashErrorKind};
use otter_format::image::ImageError;
use otter_format::secure_boot::SignatureError;
use otter_ota::{OtaError, SlotId};

use crate::www::UiProblem;

/// Why a request is malformed (400 `bad_request`). The client is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadRequest {
    /// The request line or a header does not parse as HTTP/1.1.
    #[error("the request is not valid HTTP/1.1 ({0})")]
    Syntax(httparse::Error),
    /// `Content-Length` is not a decimal number, or two differ.
    #[error("the Content-Length header is not one decimal number")]
    ContentLength,
    /// Both `Content-Length` and `Transfer-Encoding`, or an encoding other
    /// than `chunked`.
    #[error(
        "unsupported framing: send either Content-Length or Transfer-Encoding: chunked, not both"
    )]
    Framing,
    /// A chunk-size line of a chunked body is not hex, too long, or not
    /// followed by CRLF; or a chunk's data is not followed by CRLF.
    #[error("the chunked body is broken at byte {at} of the body")]
    Chunked {
        /// Offset in the (encoded) body.
        at: u64,
    },
    /// The multipart form is broken: no boundary, a bad part header, or the
    /// body ends before the closing boundary.
    #[error("the multipart form is broken ({0})")]
    Multipart(&'static str),
    /// `X-Otter-Sha256` is not 64 hex digits.
    #[error("the X-Otter-Sha256 header must be 64 hex digits (the SHA-256 of the file)")]
    Sha256Header,
    /// The request target is not an origin-form path.
    #[error("the request target must be a path starting with /")]
    Target,
}

/// A flash failure, reduced to the driver-independent kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlashFault(pub NorFlashErrorKind);

impl core::fmt::Display for FlashFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let what = match self.0 {
            NorFlashErrorKind::NotAligned => "an unaligned access",
            NorFlashErrorKind::OutOfBounds => "an access out of bounds",
            _ => "a driver or hardware error",
        };
        f.write_str(what)
    }
}

/// Everything the device can answer with an error. Variants say who is at
/// fault: the client's request or upload (4xx), the device's configuration
/// or flash (5xx).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// 400 `bad_request`: the request is malformed.
    #[error("malformed request: {0}")]
    BadRequest(BadRequest),
    /// 431 `headers_too_large`: the head is longer than the device accepts,
    /// or has too many header lines.
    #[error(
        "the request head is larger than {limit} bytes or has more than {headers} header lines"
    )]
    HeadersTooLarge {
        /// Byte limit.
        limit: usize,
        /// Header-line limit.
        headers: usize,
    },
    /// 405 `method_not_allowed`: the path exists, the method does not.
    #[error("this path answers only {allow}")]
    MethodNotAllowed {
        /// The methods it answers (the `Allow` header).
        allow: &'static str,
    },
    /// 408 `timeout`: the head did not arrive in time, or the body stalled.
    #[error("the request was too slow: {0}")]
    Timeout(Timeout),
    /// 400 `empty`: no body, or a form without a file.
    #[error("the request has no body (or the form no file): send the image as the body (curl --data-binary @FILE) or as a form file (curl -F file=@FILE)")]
    Empty,
    /// 400 `aborted`: the body ended before its announced end.
    #[error("the upload was cut off after {received} bytes; the update was abandoned")]
    Aborted {
        /// Bytes of the body received.
        received: u64,
    },
    /// 401 `unauthorized`: no `Authorization: Bearer` header.
    #[error("this device requires a token: send `Authorization: Bearer TOKEN`")]
    Unauthorized,
    /// 403 `forbidden`: the token is wrong.
    #[error("the token is wrong")]
    Forbidden,
    /// 400 `bad_path`: a web-UI path that leaves the web root or has a bad
    /// %-escape.
    #[error(
        "the path is malformed or leaves the web root (`..`, `.`, `\\`, NUL or a bad %-escape)"
    )]
    BadPath,
    /// 404 `not_found`: no endpoint and no web-UI file.
    #[error("no such endpoint or web-UI file; the API is GET /update, POST /update, GET /api/ota/status, POST /api/ota/frontend, POST /api/ota/confirm, POST /api/ota/rollback, POST /api/ota/reboot, POST /api/ota/check")]
    NotFound,
    /// 404 `pull_not_configured`: `POST /api/ota/check` on a device that does
    /// not pull releases.
    #[error("this device does not pull releases")]
    PullNotConfigured,
    /// 503 `no_decision`: a release check did not decide in time.
    #[error("the release check did not decide within {ms} ms (the manifest server may be slow, or the device is rebooting); GET /api/ota/status shows the pull's step")]
    NoDecision {
        /// How long the request waited.
        ms: u64,
    },
    /// 409 `busy`: another update is in progress.
    #[error("an update is already in progress; wait for it to finish (GET /api/ota/status shows it) and try again")]
    Busy,
    /// 409 `pending_verify`: the running image has not confirmed itself.
    #[error("the running image has not been confirmed yet: confirm it (POST /api/ota/confirm) or roll it back before starting another update")]
    PendingVerify,
    /// 409 `rollback_impossible`: no other valid image to roll back to.
    #[error("rollback is not possible: no other valid image would boot (or it is below the anti-rollback counter)")]
    RollbackImpossible,
    /// 413 `too_large`: the image cannot fit the target slot.
    #[error("the image needs {needed} bytes but the target slot holds {capacity}")]
    TooLarge {
        /// Bytes announced or received.
        needed: u64,
        /// Slot size.
        capacity: u32,
    },
    /// 413 `too_large`: a body whose length was not announced (chunked, or
    /// a form) went past the target slot; `received` is how far it got.
    #[error("the upload is larger than the target slot's {capacity} bytes: {received} bytes had arrived when it was refused (its length was not announced, so its full size is unknown)")]
    TooLargeStream {
        /// Bytes received when the slot was full.
        received: u64,
        /// Slot size.
        capacity: u32,
    },
    /// 422: the image is not a valid app for this device; the code comes
    /// from the [`ImageError`] (`not_an_app`, `wrong_chip`,
    /// `secure_version_too_low`, `integrity`, `sha256_required`, `truncated`,
    /// `bad_image`).
    #[error("update image rejected: {0}")]
    Image(ImageError),
    /// 422 `sha256_mismatch`: the file's SHA-256 differs from `X-Otter-Sha256`.
    #[error("the image's SHA-256 does not match the X-Otter-Sha256 header: this is not the file you meant to send, or it was damaged on the way; nothing was switched")]
    Sha256Mismatch,
    /// 422 `artifact_sha256_mismatch`: a pulled alternative artifact (gzip,
    /// delta) does not have the SHA-256 its manifest entry names: it was
    /// changed or damaged on the server or the way. Nothing was switched;
    /// the pull falls back to the full image.
    #[error("the fetched artifact's SHA-256 does not match its manifest entry: it was changed or damaged after signing; nothing was switched")]
    ArtifactSha256Mismatch,
    /// 422 `md5_mismatch`: the bytes received do not have the MD5 the
    /// uploader announced (ESPHome's and espota's checksum): they were
    /// damaged on the way, or the uploader sent another file. Nothing was
    /// switched; upload again.
    #[error("the upload's MD5 does not match the MD5 the uploader announced: the image was damaged on the way; nothing was switched")]
    Md5Mismatch,
    /// 422 `trailing_data`: bytes follow the end of the app image that are
    /// not its Secure Boot v2 signature sector. They would be written to the
    /// slot but never checked, and the stored image's SHA-256 would not be
    /// the file's, so they are refused.
    #[error("{extra} bytes follow the end of the {image_len}-byte app image and are not a Secure Boot signature sector: send the image alone (esptool image-info shows its length), or as espsecure or otter sign wrote it")]
    TrailingData {
        /// The image's length.
        image_len: u32,
        /// Bytes after it (at least).
        extra: u64,
    },
    /// 422 `bad_signature`: the device requires Secure Boot v2 signatures and
    /// the image's is missing, malformed, from a key the device does not
    /// trust (or has revoked), or does not verify; or a signature sector
    /// after an image is malformed.
    #[error("{0}; nothing was switched (sign the image with a key this device trusts: otter sign or espsecure sign-data --version 2)")]
    BadSignature(SignatureError),
    /// 422 `wrong_size`: a web-UI image that is not exactly the slot's size.
    #[error("the image is {len} bytes but the web-UI slot is {size}: a LittleFS image mounts only on a partition of the size it was built for")]
    WrongSize {
        /// Bytes announced or received.
        len: u64,
        /// Slot size.
        size: u32,
    },
    /// 422 `bad_web_ui`: the web-UI image was written but is not usable.
    #[error("the web-UI image is not usable: {0}; the active UI is unchanged")]
    BadWebUi(UiProblem),
    /// 415 `unsupported_encoding`: a `Content-Encoding` other than `gzip`,
    /// `deflate` or `identity`, a compressed or delta web-UI upload, or a
    /// gzip-compressed patch. Send the firmware plain, gzip/deflate
    /// compressed, or as an `esp_delta_ota` patch.
    #[error("unsupported encoding: firmware uploads may be plain, Content-Encoding gzip or deflate, or an esp_delta_ota patch (Content-Type application/x-esp-delta-ota); web-UI uploads must be plain")]
    UnsupportedEncoding,
    /// 415 `decoder_unavailable`: the upload is compressed or a patch, and
    /// this device's firmware lends no RAM for that decoder. Nothing was
    /// erased; send the plain image.
    #[error("this device cannot decode {} uploads (its firmware lends no RAM for that decoder); nothing was changed, send the plain image", .0.name())]
    DecoderUnavailable(crate::decode::Encoding),
    /// 422: the compressed stream is corrupt (code `corrupt_deflate`,
    /// `bad_gzip_header`, `unsupported_compression`, `compressed_checksum`,
    /// `compressed_size`, `compressed_truncated`,
    /// `compressed_trailing_data`). Nothing was switched.
    #[error("the compressed upload is broken: {0}; nothing was switched")]
    Compressed(otter_delta::inflate::InflateError<()>),
    /// 422: the `esp_delta_ota` patch is refused (code `wrong_base`,
    /// `bad_patch_magic`, `unsupported_patch`, `corrupt_patch`,
    /// `patch_truncated`, `patch_trailing_data`). A patch for another base
    /// is refused before anything is erased; nothing was switched.
    #[error("the delta patch is refused: {0}; nothing was switched (a patch applies only to the image it was made from: send the full image, or a patch made from the running image)")]
    Patch(otter_delta::patch::PatchError<()>),
    /// 409 `base_unavailable`: a patch arrived but the running image cannot
    /// serve as its base (it does not verify, or has no appended SHA-256).
    /// Nothing was erased; send the full image.
    #[error("the running image cannot be used as a patch base (it does not verify or has no appended SHA-256); send the full image")]
    BaseUnavailable,
    /// 503 `no_ota_slot`: no OTA slot or no otadata.
    #[error("this device cannot be updated over the air: the partition table has no OTA slot (ota_0, ota_1, ...) or no otadata")]
    NoOtaSlot,
    /// 503 `not_running`: no image runs (the device was not booted).
    #[error("no image runs: the device has not booted an app")]
    NotRunning,
    /// 503 `no_www_slot`: no `www_0`/`www_1`, or nowhere to keep the pointer.
    #[error("this device has no web-UI slots (data partitions www_0 and www_1) or no NVS partition for the pointer")]
    NoWwwSlot,
    /// 503 `no_web_ui`: `GET /` while no web UI is mounted.
    #[error("no web UI is mounted; upload one on the Update page at /update")]
    NoWebUi,
    /// 500 `nvs_error`: the web-UI pointer cannot be written.
    #[error("the web-UI pointer otter/www_slot cannot be written (NVS damaged or full); erase the NVS partition to reinitialise it")]
    Nvs,
    /// 500 `flash_error`: the flash failed.
    #[error("the flash failed: {0}")]
    Flash(FlashFault),
    /// 500 `internal`: the caller lent a response buffer smaller than the
    /// answer (caller misuse: lend at least [`crate::service::MIN_TX_BUF`]).
    #[error("the response does not fit the device's response buffer")]
    ResponseTooLarge,
}

/// Which deadline passed (408).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Timeout {
    /// The whole head did not arrive within the head deadline.
    #[error("the request head did not arrive within {ms} ms")]
    Head {
        /// The deadline.
        ms: u64,
    },
    /// Fewer than `bytes` body bytes arrived in a window of `ms`.
    #[error("fewer than {bytes} body bytes arrived in {ms} ms")]
    Body {
        /// Minimum bytes per window.
        bytes: u32,
        /// Window length.
        ms: u64,
    },
    /// No bytes at all arrived for `ms` (the ESPHome and espota protocols'
    /// inactivity limits).
    #[error("no bytes arrived for {ms} ms")]
    Stalled {
        /// The limit.
        ms: u64,
    },
}

impl DeviceError {
    /// The stable code (`docs/device-api.md`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::HeadersTooLarge { .. } => "headers_too_large",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Timeout(_) => "timeout",
            Self::Empty => "empty",
            Self::Aborted { .. } => "aborted",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::BadPath => "bad_path",
            Self::NotFound => "not_found",
            Self::PullNotConfigured => "pull_not_configured",
            Self::NoDecision { .. } => "no_decision",
            Self::Busy => "busy",
            Self::PendingVerify => "pending_verify",
            Self::RollbackImpossible => "rollback_impossible",
            Self::TooLarge { .. } | Self::TooLargeStream { .. } => "too_large",
            Self::Image(e) => image_code(e),
            Self::Sha256Mismatch => "sha256_mismatch",
            Self::ArtifactSha256Mismatch => "artifact_sha256_mismatch",
            Self::Md5Mismatch => "md5_mismatch",
            Self::TrailingData { .. } => "trailing_data",
            Self::BadSignature(_) => "bad_signature",
            Self::WrongSize { .. } => "wrong_size",
            Self::BadWebUi(_) => "bad_web_ui",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::DecoderUnavailable(_) => "decoder_unavailable",
            Self::Compressed(e) => compressed_code(e),
            Self::Patch(e) => patch_code(e),
            Self::BaseUnavailable => "base_unavailable",
            Self::NoOtaSlot => "no_ota_slot",
            Self::NotRunning => "not_running",
            Self::NoWwwSlot => "no_www_slot",
            Self::NoWebUi => "no_web_ui",
            Self::Nvs => "nvs_error",
            Self::Flash(_) => "flash_error",
            Self::ResponseTooLarge => "internal",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::Empty | Self::Aborted { .. } | Self::BadPath => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound | Self::PullNotConfigured => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::Timeout(_) => 408,
            Self::Busy | Self::PendingVerify | Self::RollbackImpossible | Self::BaseUnavailable => {
                409
            }
            Self::UnsupportedEncoding | Self::DecoderUnavailable(_) => 415,
            Self::TooLarge { .. } | Self::TooLargeStream { .. } => 413,
            Self::Image(ImageError::ImageTooLarge { .. } | ImageError::FileTooLarge { .. }) => 413,
            Self::Image(_)
            | Self::Sha256Mismatch
            | Self::ArtifactSha256Mismatch
            | Self::Md5Mismatch
            | Self::TrailingData { .. }
            | Self::BadSignature(_)
            | Self::WrongSize { .. }
            | Self::BadWebUi(_)
            | Self::Compressed(_)
            | Self::Patch(_) => 422,
            Self::HeadersTooLarge { .. } => 431,
            Self::NoOtaSlot
            | Self::NotRunning
            | Self::NoWwwSlot
            | Self::NoWebUi
            | Self::NoDecision { .. } => 503,
            Self::Nvs | Self::Flash(_) | Self::ResponseTooLarge => 500,
        }
    }

    /// Maps an engine error, whatever the flash driver.
    pub fn from_ota<E: NorFlashError>(e: &OtaError<E>) -> Self {
        match e {
            OtaError::NoOtaSlots | OtaError::NoOtadata => Self::NoOtaSlot,
            OtaError::TooLarge {
                needed, capacity, ..
            } => Self::TooLarge {
                needed: *needed,
                capacity: *capacity,
            },
            OtaError::Sha256Mismatch => Self::Sha256Mismatch,
            OtaError::RunningImagePending => Self::PendingVerify,
            OtaError::RollbackImpossible => Self::RollbackImpossible,
            OtaError::Image(ie) => Self::Image(ie.clone()),
            OtaError::TrailingData {
                image_len, extra, ..
            } => Self::TrailingData {
                image_len: *image_len,
                extra: *extra,
            },
            OtaError::Signature(se) => Self::BadSignature(se.clone()),
            OtaError::Flash(f) => Self::Flash(FlashFault(f.kind())),
            OtaError::RunningSlot(SlotId::Ota(_)) | OtaError::NoSuchSlot(_) => Self::NoOtaSlot,
            // Damaged table or otadata, misuse: the device's fault.
            _ => Self::Flash(FlashFault(NorFlashErrorKind::Other)),
        }
    }

    /// A flash driver error.
    pub fn flash<E: NorFlashError>(e: E) -> Self {
        Self::Flash(FlashFault(e.kind()))
    }
}

fn compressed_code(e: &otter_delta::inflate::InflateError<()>) -> &'static str {
    use otter_delta::inflate::InflateError as E;
    match e {
        E::GzipHeader(_) => "bad_gzip_header",
        E::UnsupportedMethod(_) => "unsupported_compression",
        E::Adler32Mismatch | E::Crc32Mismatch { .. } => "compressed_checksum",
        E::SizeMismatch { .. } => "compressed_size",
        E::TooLarge { .. } => "too_large",
        E::Truncated { .. } => "compressed_truncated",
        E::TrailingData(_) => "compressed_trailing_data",
        _ => "corrupt_deflate",
    }
}

fn patch_code(e: &otter_delta::patch::PatchError<()>) -> &'static str {
    use otter_delta::patch::PatchError as E;
    match e {
        E::BadMagic { .. } => "bad_patch_magic",
        E::WrongBase { .. } => "wrong_base",
        E::UnsupportedPatchType(_) | E::UnsupportedCompression(_) | E::Heatshrink(_) => {
            "unsupported_patch"
        }
        E::TooLarge { .. } => "too_large",
        E::Truncated { .. } => "patch_truncated",
        E::TrailingData => "patch_trailing_data",
        _ => "corrupt_patch",
    }
}

fn image_code(e: &ImageError) -> &'static str {
    match e {
        ImageError::WrongChip { .. } | ImageError::UnknownChip { .. } => "wrong_chip",
        ImageError::SecureVersionTooLow { .. } => "secure_version_too_low",
        ImageError::ImageTooLarge { .. } | ImageError::FileTooLarge { .. } => "too_large",
        ImageError::ChecksumMismatch { .. } | ImageError::ShaMismatch { .. } => "integrity",
        ImageError::FileShaMismatch { .. } => "sha256_mismatch",
        ImageError::Sha256Required => "sha256_required",
        ImageError::Truncated { .. } => "truncated",
        ImageError::BadMagic { .. }
        | ImageError::Esp8266 { .. }
        | ImageError::IsBootloader
        | ImageError::IsMergedFlash
        | ImageError::IsRamOnly
        | ImageError::MissingAppDesc => "not_an_app",
        _ => "bad_image",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_policy_and_header_errors_are_422_with_their_codes() {
        let e = DeviceError::from_ota::<NorFlashErrorKind>(&OtaError::Image(
            ImageError::Sha256Required,
        ));
        assert_eq!((e.status(), e.code()), (422, "sha256_required"));
        let e = DeviceError::Image(ImageError::EntryOutsideSegments { entry: 0xdead_beef });
        assert_eq!((e.status(), e.code()), (422, "bad_image"));
    }
}
