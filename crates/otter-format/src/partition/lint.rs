//! otter's lints for OTA layouts: problems `gen_esp32part.py` accepts but that
//! break (or will one day break) over-the-air updates, and the per-slot fit
//! report for an app of a given size. Needs no allocator.
//!
//! These are separate from [`super::validate`]: a table can be perfectly valid
//! for ESP-IDF and still be useless for OTA (no slot to update into) or
//! dangerous (slots of different sizes, so an update that fits one slot does
//! not fit the other).

use core::fmt;

use super::validate::TableRow;
use super::{Label, Partition, SubType, MAX_OTA_SLOTS};

/// How serious a lint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Works today, but is fragile or surprising.
    Warning,
    /// OTA updates will fail or cannot happen.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Lint {
    /// OTA slots exist but there is no otadata (data/ota) partition, so the
    /// boot slot can never be switched.
    MissingOtadata {
        /// Number of OTA slot entries.
        slots: usize,
    },
    /// `present` exists but `ota_{missing}` does not. ESP-IDF's app side counts
    /// only slots contiguous from ota_0, and the bootloader indexes slots by
    /// their number, so both disagree about such a table.
    OtaSlotGap {
        /// The first missing slot number.
        missing: u8,
        /// A slot after the gap.
        present: Label,
    },
    /// OTA slots of different sizes: an image that fits one may not fit the
    /// other, so an update succeeds or fails depending on the running slot.
    OtaSlotSizesDiffer {
        /// The slot whose size differs.
        slot: Label,
        /// Its size.
        size: u32,
        /// The first slot.
        reference: Label,
        /// The first slot's size.
        reference_size: u32,
    },
    /// No OTA slot: nothing can be updated over the air. ESP-IDF never writes
    /// the factory app through OTA, so a factory app alone is not an update
    /// target.
    NoUpdateSlot {
        /// The factory app, if there is one.
        factory: Option<Label>,
    },
    /// One OTA slot and no factory app: once the device runs from that slot
    /// there is no other slot to write an update into.
    SingleOtaSlot {
        /// The only slot.
        slot: Label,
    },
    /// The partitions end past the flash size.
    TableExceedsFlash {
        /// End of the partition with the highest offset.
        end: u64,
        /// Flash size.
        flash_size: u64,
    },
    /// The app is bigger than a slot.
    AppDoesNotFit {
        /// The slot.
        slot: Label,
        /// Its size.
        slot_size: u32,
        /// The app's size.
        app_size: u64,
    },
    /// The app fills more than the allowed share of a slot, leaving no room
    /// for the next release to grow.
    AppNearlyFull {
        /// The slot.
        slot: Label,
        /// Its size.
        slot_size: u32,
        /// The app's size.
        app_size: u64,
        /// Share of the slot used, in percent.
        percent: f64,
        /// The allowed share.
        max_percent: u8,
    },
}

impl Lint {
    /// How serious this finding is.
    pub fn severity(&self) -> Severity {
        match self {
            Lint::OtaSlotSizesDiffer { .. }
            | Lint::SingleOtaSlot { .. }
            | Lint::AppNearlyFull { .. } => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// A stable identifier (for JSON output and filtering).
    pub fn code(&self) -> &'static str {
        match self {
            Lint::MissingOtadata { .. } => "missing-otadata",
            Lint::OtaSlotGap { .. } => "ota-slot-gap",
            Lint::OtaSlotSizesDiffer { .. } => "ota-slot-sizes-differ",
            Lint::NoUpdateSlot { .. } => "no-update-slot",
            Lint::SingleOtaSlot { .. } => "single-ota-slot",
            Lint::TableExceedsFlash { .. } => "table-exceeds-flash",
            Lint::AppDoesNotFit { .. } => "app-does-not-fit",
            Lint::AppNearlyFull { .. } => "app-nearly-full",
        }
    }
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lint::MissingOtadata { slots } => write!(
                f,
                "the table has {slots} OTA slot(s) but no otadata partition, so the boot slot can \
                 never be switched; add `otadata, data, ota, , 0x2000`"
            ),
            Lint::OtaSlotGap { missing, present } => write!(
                f,
                "partition `{present}`: OTA slots must be contiguous from ota_0, but ota_{missing} \
                 is missing; ESP-IDF only uses slots up to the first gap: renumber the slots"
            ),
            Lint::OtaSlotSizesDiffer {
                slot,
                size,
                reference,
                reference_size,
            } => write!(
                f,
                "partition `{slot}` is {size:#x} bytes but `{reference}` is {reference_size:#x}: an \
                 update that fits one slot may not fit the other; give all OTA slots the same size"
            ),
            Lint::NoUpdateSlot { factory: Some(fac) } => write!(
                f,
                "partition `{fac}` is a factory app and there is no OTA slot: ESP-IDF never writes \
                 the factory partition over the air, so this device cannot be updated; add otadata \
                 and ota_0/ota_1 slots"
            ),
            Lint::NoUpdateSlot { factory: None } => write!(
                f,
                "the table has no OTA slot, so this device cannot be updated over the air; add \
                 otadata and ota_0/ota_1 slots"
            ),
            Lint::SingleOtaSlot { slot } => write!(
                f,
                "partition `{slot}` is the only OTA slot and there is no factory app: while running \
                 from it there is no other slot to update into; add ota_1"
            ),
            Lint::TableExceedsFlash { end, flash_size } => write!(
                f,
                "the partitions end at {end:#x} but the flash has {flash_size:#x} bytes; shrink \
                 partitions or choose a larger flash"
            ),
            Lint::AppDoesNotFit {
                slot,
                slot_size,
                app_size,
            } => write!(
                f,
                "partition `{slot}`: the app ({app_size} bytes) does not fit the slot ({slot_size} \
                 bytes); make the slot at least {:#x} bytes or the app smaller",
                round_up_64k(*app_size)
            ),
            Lint::AppNearlyFull {
                slot,
                slot_size,
                app_size,
                percent,
                max_percent,
            } => write!(
                f,
                "partition `{slot}`: the app ({app_size} bytes) fills {percent:.1}% of the slot \
                 ({slot_size} bytes), more than {max_percent}%; the next release may not fit: \
                 enlarge the slot"
            ),
        }
    }
}

fn round_up_64k(n: u64) -> u64 {
    n.div_ceil(0x10000).saturating_mul(0x10000)
}

/// What to lint for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LintOptions {
    /// Flash size in bytes, if known.
    pub flash_size: Option<u64>,
    /// Size of the app image that must fit every update slot.
    pub app_size: Option<u64>,
    /// Largest share of a slot the app may fill, in percent (default 90).
    pub max_percent: u8,
    /// Whether the table is meant for OTA (default true): if so, a table
    /// without OTA slots is an error.
    pub expect_ota: bool,
}

impl Default for LintOptions {
    fn default() -> Self {
        Self {
            flash_size: None,
            app_size: None,
            max_percent: 90,
            expect_ota: true,
        }
    }
}

/// How an app of a given size fits one slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotFit {
    /// The slot's label.
    pub label: Label,
    /// The slot's subtype (factory or ota_N).
    pub subtype: SubType,
    /// The slot's size.
    pub slot_size: u32,
    /// The app's size.
    pub app_size: u64,
    /// Share of the slot the app fills, in percent (may exceed 100).
    pub percent_used: f64,
    /// Whether the app fits at all.
    pub fits: bool,
    /// Whether it fits within the allowed share.
    pub within_limit: bool,
}

/// The fit of an app of `app_size` bytes in every factory and OTA slot, in
/// stored order.
pub fn fit_report<R: TableRow>(
    rows: &[R],
    app_size: u64,
    max_percent: u8,
) -> impl Iterator<Item = SlotFit> + '_ {
    rows.iter()
        .map(TableRow::partition)
        .filter(|p| p.is_factory() || p.is_ota_slot())
        .map(move |p| {
            let slot = u64::from(p.size);
            let percent_used = if slot == 0 {
                f64::INFINITY
            } else {
                app_size as f64 * 100.0 / slot as f64
            };
            SlotFit {
                label: p.label,
                subtype: p.subtype,
                slot_size: p.size,
                app_size,
                percent_used,
                fits: app_size <= slot,
                within_limit: u128::from(app_size) * 100
                    <= u128::from(slot) * u128::from(max_percent),
            }
        })
}

/// Runs every lint over `rows`, reporting findings to `report`.
pub fn lint<R: TableRow>(rows: &[R], opts: &LintOptions, report: &mut dyn FnMut(Lint)) {
    let parts = || rows.iter().map(TableRow::partition);
    let ota_count = parts().filter(|p| p.is_ota_slot()).count();
    let has_otadata = parts().any(Partition::is_otadata);
    let factory = parts().find(|p| p.is_factory());

    if ota_count > 0 && !has_otadata {
        report(Lint::MissingOtadata { slots: ota_count });
    }
    // Gaps: the first missing index below a present slot.
    let present = |i: u8| parts().any(|p| p.ota_index() == Some(i));
    if let Some(missing) = (0..MAX_OTA_SLOTS).find(|i| !present(*i)) {
        if let Some(after) = parts().find(|p| p.ota_index().is_some_and(|i| i > missing)) {
            report(Lint::OtaSlotGap {
                missing,
                present: after.label,
            });
        }
    }
    let mut slots = parts().filter(|p| p.is_ota_slot());
    if let Some(first) = slots.next() {
        for s in slots.filter(|s| s.size != first.size) {
            report(Lint::OtaSlotSizesDiffer {
                slot: s.label,
                size: s.size,
                reference: first.label,
                reference_size: first.size,
            });
        }
    }
    if opts.expect_ota {
        if ota_count == 0 {
            report(Lint::NoUpdateSlot {
                factory: factory.map(|f| f.label),
            });
        } else if ota_count == 1 && factory.is_none() {
            if let Some(s) = parts().find(|p| p.is_ota_slot()) {
                report(Lint::SingleOtaSlot { slot: s.label });
            }
        }
    }
    if let Some(flash_size) = opts.flash_size {
        let end = parts().map(Partition::end_u64).max().unwrap_or(0);
        if end > flash_size {
            report(Lint::TableExceedsFlash { end, flash_size });
        }
    }
    if let Some(app_size) = opts.app_size {
        for fit in fit_report(rows, app_size, opts.max_percent) {
            if !fit.fits {
                report(Lint::AppDoesNotFit {
                    slot: fit.label,
                    slot_size: fit.slot_size,
                    app_size,
                });
            } else if !fit.within_limit {
                report(Lint::AppNearlyFull {
                    slot: fit.label,
                    slot_size: fit.slot_size,
                    app_size,
                    percent: fit.percent_used,
                    max_percent: opts.max_percent,
                });
            }
        }
    }
}

/// [`lint`], collecting the findings.
#[cfg(feature = "alloc")]
pub fn lint_collect<R: TableRow>(rows: &[R], opts: &LintOptions) -> alloc::vec::Vec<Lint> {
    let mut v = alloc::vec::Vec::new();
    lint(rows, opts, &mut |l| v.push(l));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::PartitionType as T;

    fn p(ty: T, sub: u8, off: u32, size: u32, name: &str) -> Partition {
        Partition::new(ty, SubType(sub), off, size, name)
    }

    fn count(rows: &[Partition], opts: &LintOptions) -> usize {
        let mut n = 0;
        lint(rows, opts, &mut |_| n += 1);
        n
    }

    #[test]
    fn good_two_ota_layout_is_clean() {
        let rows = [
            p(T::DATA, 0, 0xd000, 0x2000, "otadata"),
            p(T::APP, 0x10, 0x10000, 0x100000, "ota_0"),
            p(T::APP, 0x11, 0x110000, 0x100000, "ota_1"),
        ];
        assert_eq!(count(&rows, &LintOptions::default()), 0);
    }

    #[test]
    fn factory_only_cannot_be_updated() {
        let rows = [p(T::APP, 0, 0x10000, 0x100000, "factory")];
        let mut found = None;
        lint(&rows, &LintOptions::default(), &mut |l| found = Some(l));
        assert!(matches!(
            found,
            Some(Lint::NoUpdateSlot { factory: Some(_) })
        ));
    }

    #[test]
    fn gap_and_missing_otadata() {
        let rows = [
            p(T::APP, 0x10, 0x10000, 0x100000, "ota_0"),
            p(T::APP, 0x12, 0x110000, 0x100000, "ota_2"),
        ];
        let mut codes = [""; 4];
        let mut i = 0;
        lint(&rows, &LintOptions::default(), &mut |l| {
            if let Some(c) = codes.get_mut(i) {
                *c = l.code();
            }
            i += 1;
        });
        assert_eq!(&codes[..i], &["missing-otadata", "ota-slot-gap"]);
    }

    #[test]
    fn fit_report_percentages() {
        let rows = [p(T::APP, 0x10, 0x10000, 0x100000, "ota_0")];
        let fit = fit_report(&rows, 0x100000 + 0x10000, 90).next().unwrap();
        assert!(!fit.fits);
        let fit = fit_report(&rows, 0xF0000, 90).next().unwrap();
        assert!(fit.fits && !fit.within_limit);
        assert!((fit.percent_used - 93.75).abs() < 1e-9);
    }
}
