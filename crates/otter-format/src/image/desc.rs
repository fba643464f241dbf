//! The app descriptor (`esp_app_desc_t`) and the bootloader descriptor
//! (`esp_bootloader_desc_t`), both found at file offset 0x20, at the start of
//! segment 0's data.
//!
//! Strings are fixed-size, NUL-terminated fields. The accessors return a
//! [`FixedStr`]: the bytes up to the first NUL, with [`FixedStr::as_str`]
//! giving `Some(&str)` only when they are valid UTF-8, so nothing here can
//! panic on a corrupt descriptor.

/// Magic word of `esp_app_desc_t`.
pub const APP_DESC_MAGIC: u32 = 0xABCD_5432;
/// Length of `esp_app_desc_t`.
pub const APP_DESC_LEN: usize = 256;
/// File offset of the descriptor (24-byte header + 8-byte segment header).
pub const DESC_OFFSET: usize = 0x20;
/// Magic byte of `esp_bootloader_desc_t`.
pub const BOOTLOADER_DESC_MAGIC: u8 = 0x50;
/// Length of `esp_bootloader_desc_t`.
pub const BOOTLOADER_DESC_LEN: usize = 80;
/// Descriptor offset of `app_elf_sha256` (file offset 0xB0).
pub const APP_ELF_SHA256_OFFSET: usize = 0x90;

/// A NUL-terminated string from a fixed-size descriptor field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedStr<'a>(&'a [u8]);

impl<'a> FixedStr<'a> {
    /// Takes the bytes of `field` up to (not including) the first NUL.
    pub fn new(field: &'a [u8]) -> FixedStr<'a> {
        let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
        FixedStr(field.get(..end).unwrap_or_default())
    }

    /// The raw bytes, without the terminator.
    pub fn bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The text, when it is valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        core::str::from_utf8(self.0).ok()
    }

    /// Whether the field is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl core::fmt::Display for FixedStr<'_> {
    /// Valid UTF-8 is printed as is; other bytes as `\xNN`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// Lowercase hex formatting of a byte slice, for messages.
#[derive(Debug, Clone, Copy)]
pub struct Hex<'a>(pub &'a [u8]);

impl core::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

fn le16(b: &[u8], off: usize) -> u16 {
    match b.get(off..off + 2) {
        Some(&[x, y]) => u16::from_le_bytes([x, y]),
        _ => 0,
    }
}

fn le32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off + 4) {
        Some(&[a, b2, c, d]) => u32::from_le_bytes([a, b2, c, d]),
        _ => 0,
    }
}

fn field(b: &[u8], off: usize, len: usize) -> &[u8] {
    b.get(off..off + len).unwrap_or_default()
}

/// The app descriptor, `esp_app_desc_t` (256 bytes at file offset 0x20).
///
/// | Desc off | File off | Len | Field |
/// |---|---|---|---|
/// | 0x00 | 0x20 | 4 | `magic_word` ([`APP_DESC_MAGIC`]) |
/// | 0x04 | 0x24 | 4 | `secure_version` (anti-rollback) |
/// | 0x08 | 0x28 | 8 | reserved |
/// | 0x10 | 0x30 | 32 | `version` |
/// | 0x30 | 0x50 | 32 | `project_name` |
/// | 0x50 | 0x70 | 16 | `time` |
/// | 0x60 | 0x80 | 16 | `date` |
/// | 0x70 | 0x90 | 32 | `idf_ver` |
/// | 0x90 | 0xB0 | 32 | `app_elf_sha256` |
/// | 0xB0 | 0xD0 | 2 | `min_efuse_blk_rev_full` |
/// | 0xB2 | 0xD2 | 2 | `max_efuse_blk_rev_full` |
/// | 0xB4 | 0xD4 | 1 | `mmu_page_size` (log2; 0 = legacy) |
/// | 0xB5 | 0xD5 | 1 | `spi_flash_mode` (0 = legacy) |
/// | 0xB6 | 0xD6 | 74 | reserved |
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AppDesc {
    raw: [u8; APP_DESC_LEN],
}

impl core::fmt::Debug for AppDesc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AppDesc")
            .field("secure_version", &self.secure_version())
            .field("version", &self.version())
            .field("project_name", &self.project_name())
            .field("idf_ver", &self.idf_ver())
            .finish_non_exhaustive()
    }
}

impl AppDesc {
    /// Reads a descriptor from its 256 bytes; `None` without the magic word.
    pub fn parse(raw: &[u8; APP_DESC_LEN]) -> Option<AppDesc> {
        (le32(raw, 0) == APP_DESC_MAGIC).then_some(AppDesc { raw: *raw })
    }

    /// The 256 raw bytes.
    pub fn raw(&self) -> &[u8; APP_DESC_LEN] {
        &self.raw
    }

    /// `secure_version`, compared with the eFuse counter for anti-rollback.
    pub fn secure_version(&self) -> u32 {
        le32(&self.raw, 0x04)
    }

    /// `version` (`PROJECT_VER`).
    pub fn version(&self) -> FixedStr<'_> {
        FixedStr::new(field(&self.raw, 0x10, 32))
    }

    /// `project_name`.
    pub fn project_name(&self) -> FixedStr<'_> {
        FixedStr::new(field(&self.raw, 0x30, 32))
    }

    /// Compile `time` (`__TIME__`).
    pub fn time(&self) -> FixedStr<'_> {
        FixedStr::new(field(&self.raw, 0x50, 16))
    }

    /// Compile `date` (`__DATE__`).
    pub fn date(&self) -> FixedStr<'_> {
        FixedStr::new(field(&self.raw, 0x60, 16))
    }

    /// `idf_ver`.
    pub fn idf_ver(&self) -> FixedStr<'_> {
        FixedStr::new(field(&self.raw, 0x70, 32))
    }

    /// `app_elf_sha256`: SHA-256 of the ELF the image was made from.
    pub fn app_elf_sha256(&self) -> [u8; 32] {
        let mut d = [0u8; 32];
        d.copy_from_slice(field(&self.raw, APP_ELF_SHA256_OFFSET, 32));
        d
    }

    /// `min_efuse_blk_rev_full` (major * 100 + minor).
    pub fn min_efuse_blk_rev_full(&self) -> u16 {
        le16(&self.raw, 0xB0)
    }

    /// `max_efuse_blk_rev_full` (major * 100 + minor).
    pub fn max_efuse_blk_rev_full(&self) -> u16 {
        le16(&self.raw, 0xB2)
    }

    /// `mmu_page_size` as stored: log2 of the page size, 0 when not set.
    pub fn mmu_page_size_log2(&self) -> u8 {
        self.raw[0xB4]
    }

    /// The MMU page size in bytes, when set and plausible (8 KiB..=256 KiB).
    pub fn mmu_page_size(&self) -> Option<u32> {
        match self.mmu_page_size_log2() {
            l @ 13..=18 => Some(1u32 << l),
            _ => None,
        }
    }

    /// `spi_flash_mode` (0 for images that predate the field).
    pub fn spi_flash_mode(&self) -> u8 {
        self.raw[0xB5]
    }
}

/// The bootloader descriptor, `esp_bootloader_desc_t` (80 bytes at file
/// offset 0x20 of a bootloader image, ESP-IDF 5.x and later).
///
/// | Desc off | File off | Len | Field |
/// |---|---|---|---|
/// | 0x00 | 0x20 | 1 | `magic_byte` ([`BOOTLOADER_DESC_MAGIC`]) |
/// | 0x01 | 0x21 | 2 | reserved |
/// | 0x03 | 0x23 | 1 | `secure_version` |
/// | 0x04 | 0x24 | 4 | `version` |
/// | 0x08 | 0x28 | 32 | `idf_ver` |
/// | 0x28 | 0x48 | 24 | `date_time` |
/// | 0x40 | 0x60 | 16 | reserved |
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BootloaderDesc {
    raw: [u8; BOOTLOADER_DESC_LEN],
}

impl core::fmt::Debug for BootloaderDesc {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BootloaderDesc")
            .field("version", &self.version())
            .field("idf_ver", &self.idf_ver())
            .finish_non_exhaustive()
    }
}

impl BootloaderDesc {
    /// Reads a descriptor from its first 80 bytes; `None` without the magic.
    pub fn parse(raw: &[u8]) -> Option<BootloaderDesc> {
        let mut d = [0u8; BOOTLOADER_DESC_LEN];
        d.copy_from_slice(raw.get(..BOOTLOADER_DESC_LEN)?);
        (d[0] == BOOTLOADER_DESC_MAGIC).then_some(BootloaderDesc { raw: d })
    }

    /// `secure_version` of the bootloader.
    pub fn secure_version(&self) -> u8 {
        self.raw[3]
    }

    /// `version` (CONFIG_BOOTLOADER_PROJECT_VER).
    pub fn version(&self) -> u32 {
        le32(&self.raw, 4)
    }

    /// `idf_ver`.
    pub fn idf_ver(&self) -> FixedStr<'_> {
        FixedStr::new(field(&self.raw, 8, 32))
    }

    /// `date_time`.
    pub fn date_time(&self) -> FixedStr<'_> {
        FixedStr::new(field(&self.raw, 40, 24))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_str_stops_at_nul_and_survives_bad_utf8() {
        let s = FixedStr::new(b"abc\0def");
        assert_eq!(s.bytes(), b"abc");
        assert_eq!(s.as_str(), Some("abc"));
        let bad = FixedStr::new(&[0xff, b'a']);
        assert_eq!(bad.as_str(), None);
        extern crate alloc;
        assert_eq!(alloc::format!("{bad}"), "\\xffa");
        assert!(FixedStr::new(&[]).is_empty());
    }
}
