//! ESP-IDF app images: header, segments, checksum, appended SHA-256, app
//! descriptor, a streaming verifier that needs no heap, classification of
//! non-app images and (with `alloc`) an image builder.
//!
//! The format is ESP-IDF's `esp_image_format` as written by esptool's
//! `elf2image`; see the types' docs for the on-flash layouts:
//! [`ImageHeader`] (24 bytes), [`SegmentHeader`] (8 bytes), the checksum block
//! ([`segment`]), [`AppDesc`] (256 bytes at 0x20) and [`BootloaderDesc`].
//!
//! - [`verify`] / [`inspect`]: whole-file verification and description.
//! - [`StreamingVerifier`]: the same verdict from arbitrary chunks, deciding as
//!   early as possible (header after 24 bytes, descriptor after 0x120).
//! - [`ImageKind`]: app, bootloader, merged flash image, RAM-only.
//! - [`build`] (`alloc`): [`AppImageBuilder`] and [`build_image`].

#[cfg(feature = "alloc")]
pub mod build;
pub mod classify;
pub mod desc;
#[cfg(feature = "alloc")]
pub mod elf;
pub mod error;
pub mod header;
pub mod segment;
pub mod stream;
pub mod verify;

#[cfg(feature = "alloc")]
pub use build::{build_image, AppImageBuilder, BuildError, ImageParams};
pub use classify::{ImageKind, SignatureInfo, SignatureScheme};
pub use desc::{AppDesc, BootloaderDesc, FixedStr, APP_DESC_MAGIC};
#[cfg(feature = "alloc")]
pub use elf::{elf_to_image, Elf, ElfError, ElfSection};
pub use error::{ImageError, ImagePart};
pub use header::{FlashMode, ImageHeader, SegmentHeader, IMAGE_MAGIC};
pub use segment::{Segment, SegmentKind};
pub use stream::{Progress, StreamingVerifier, STATE_SIZE_LIMIT};
pub use verify::{inspect, verify, ImageInfo, ShaCheck, VerifyOptions};
