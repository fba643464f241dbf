//! A partition layout for a given app size and flash size: two equal OTA slots
//! (and a factory app of the same size if asked), with room for the app to
//! grow, the usual nvs/otadata/phy_init data partitions, and the rest of the
//! flash as a `storage` partition.
//!
//! `storage` is data/spiffs: that subtype is what both SPIFFS and the common
//! LittleFS component (`esp_littlefs`) look for by default, and every
//! `gen_esp32part.py` version knows the keyword (`littlefs` needs ESP-IDF 5.x).
//!
//! The layout, for table offset `T` (0x8000 by default):
//!
//! | Name     | Type | SubType | Offset                    | Size         |
//! |----------|------|---------|---------------------------|--------------|
//! | nvs      | data | nvs     | T + 0x1000                | 0x4000       |
//! | otadata  | data | ota     | T + 0x5000                | 0x2000       |
//! | phy_init | data | phy     | T + 0x7000                | 0x1000       |
//! | factory  | app  | factory | next 64 KiB boundary      | slot         |
//! | ota_0    | app  | ota_0   | after the previous app    | slot         |
//! | ota_1    | app  | ota_1   | after ota_0               | slot         |
//! | storage  | data | spiffs  | after ota_1               | rest (4 KiB) |
//!
//! The slot size is the smallest multiple of 64 KiB that holds the app with
//! `margin_percent` to spare and fills at most `max_percent` of the slot, so
//! the result passes both validation and every lint.

use alloc::string::String;
use core::fmt::Write as _;

use super::{APP_ALIGN, DATA_ALIGN, DEFAULT_TABLE_OFFSET};

/// Inputs of [`suggest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuggestOptions {
    /// Size of the app image in bytes.
    pub app_size: u64,
    /// Flash size in bytes.
    pub flash_size: u64,
    /// Add a factory app slot of the same size.
    pub factory: bool,
    /// Spare room in each slot, in percent of the app size (default 20).
    pub margin_percent: u32,
    /// The lint threshold the slots must satisfy (default 90).
    pub max_percent: u8,
    /// Flash offset of the partition table (default 0x8000).
    pub table_offset: u32,
}

impl SuggestOptions {
    /// Defaults for an app and flash size.
    pub fn new(app_size: u64, flash_size: u64) -> Self {
        Self {
            app_size,
            flash_size,
            factory: false,
            margin_percent: 20,
            max_percent: 90,
            table_offset: DEFAULT_TABLE_OFFSET,
        }
    }
}

/// Why no layout could be suggested.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SuggestError {
    /// The slots do not fit the flash.
    #[error(
        "{slots} app slots of {slot_size:#x} bytes (for a {app_size}-byte app with margin) need \
         flash up to {needed:#x}, but the flash has {flash_size:#x} bytes; use a larger flash, \
         a smaller margin, or no factory slot"
    )]
    DoesNotFit {
        /// Number of app slots.
        slots: u32,
        /// Size of each.
        slot_size: u64,
        /// The app size.
        app_size: u64,
        /// End of the last slot.
        needed: u64,
        /// The flash size.
        flash_size: u64,
    },
    /// `max_percent` is 0 or the table offset is not sector-aligned.
    #[error(
        "invalid options: max_percent must be 1..=100 and the table offset a multiple of 0x1000"
    )]
    InvalidOptions,
}

/// The slot size [`suggest`] would use for `opts`.
pub fn slot_size(opts: &SuggestOptions) -> Result<u64, SuggestError> {
    if opts.max_percent == 0 || opts.max_percent > 100 {
        return Err(SuggestError::InvalidOptions);
    }
    let app = u128::from(opts.app_size);
    let with_margin = (app * (100 + u128::from(opts.margin_percent))).div_ceil(100);
    let for_limit = (app * 100).div_ceil(u128::from(opts.max_percent));
    let need = with_margin.max(for_limit).max(1);
    let slot = need.div_ceil(u128::from(APP_ALIGN)) * u128::from(APP_ALIGN);
    u64::try_from(slot).map_err(|_| SuggestError::DoesNotFit {
        slots: 0,
        slot_size: u64::MAX,
        app_size: opts.app_size,
        needed: u64::MAX,
        flash_size: opts.flash_size,
    })
}

/// A CSV partition table for `opts` (see the module docs for the layout).
pub fn suggest(opts: &SuggestOptions) -> Result<String, SuggestError> {
    if !opts.table_offset.is_multiple_of(DATA_ALIGN) {
        return Err(SuggestError::InvalidOptions);
    }
    let slot = slot_size(opts)?;
    let t = u64::from(opts.table_offset);
    let data_end = t + 0x8000;
    let first_app = data_end.div_ceil(u64::from(APP_ALIGN)) * u64::from(APP_ALIGN);
    let slots: u32 = if opts.factory { 3 } else { 2 };
    let apps_end = u128::from(first_app) + u128::from(slot) * u128::from(slots);
    if apps_end > u128::from(opts.flash_size) || apps_end > u128::from(u32::MAX) {
        return Err(SuggestError::DoesNotFit {
            slots,
            slot_size: slot,
            app_size: opts.app_size,
            needed: u64::try_from(apps_end).unwrap_or(u64::MAX),
            flash_size: opts.flash_size,
        });
    }
    let apps_end = first_app + slot * u64::from(slots);
    let storage = (opts.flash_size.min(u64::from(u32::MAX)) - apps_end) / u64::from(DATA_ALIGN)
        * u64::from(DATA_ALIGN);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Suggested by otter for a {}-byte app on {:#x} bytes of flash ({}% margin)",
        opts.app_size, opts.flash_size, opts.margin_percent
    );
    out.push_str("# Name, Type, SubType, Offset, Size, Flags\n");
    let mut row = |name: &str, ty: &str, sub: &str, off: u64, size: u64| {
        let _ = writeln!(out, "{name}, {ty}, {sub}, {off:#x}, {size:#x},");
    };
    row("nvs", "data", "nvs", t + 0x1000, 0x4000);
    row("otadata", "data", "ota", t + 0x5000, 0x2000);
    row("phy_init", "data", "phy", t + 0x7000, 0x1000);
    let mut off = first_app;
    if opts.factory {
        row("factory", "app", "factory", off, slot);
        off += slot;
    }
    row("ota_0", "app", "ota_0", off, slot);
    off += slot;
    row("ota_1", "app", "ota_1", off, slot);
    off += slot;
    if storage > 0 {
        row("storage", "data", "spiffs", off, storage);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_sizes_round_up_to_64k_with_margin() {
        // 1 MiB app, 20% margin: 1.2 MiB -> 0x140000.
        assert_eq!(
            slot_size(&SuggestOptions::new(0x100000, 4 << 20)),
            Ok(0x140000)
        );
        // 5% margin is not enough for the 90% lint: 0x100000/0.9 -> 0x120000.
        let mut o = SuggestOptions::new(0x100000, 4 << 20);
        o.margin_percent = 5;
        assert_eq!(slot_size(&o), Ok(0x120000));
    }

    #[test]
    fn too_big_is_an_error() {
        let mut o = SuggestOptions::new(0x180000, 4 << 20);
        o.factory = true;
        assert!(matches!(
            suggest(&o),
            Err(SuggestError::DoesNotFit { slots: 3, .. })
        ));
    }
}
