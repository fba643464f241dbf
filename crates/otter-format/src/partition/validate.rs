//! `gen_esp32part.py`'s validation (`PartitionDefinition.verify` for each row,
//! then `PartitionTable.verify`, then the optional flash-size check), with the
//! same checks in the same order, so the first failure reported is the one the
//! tool reports. Needs no allocator.
//!
//! Order:
//! 1. per row, in stored order: offset alignment (0x10000 for apps, 0x1000
//!    otherwise), app size alignment (0x1000, 0x10000 with secure boot v1),
//!    keyword-name warnings, readonly on data/ota or data/coredump, read/write
//!    NVS smaller than 0x3000;
//! 2. unique names (exact, full names);
//! 3. in offset order (stable): below `table_offset + 0x1000` (primary
//!    bootloader/partition-table rows exempt), overlap with the previous one;
//! 4. at most one otadata, of size 0x2000; the same for TEE otadata;
//! 5. with a flash size: the end of the partition with the highest offset fits.
//!
//! `no_verify` skips 1–4, like `--no-verify`; step 5 still runs.

use super::{
    is_any_subtype_keyword, Partition, PartitionType, RowRef, SubType, ValidationError,
    DEFAULT_TABLE_OFFSET, NVS_RW_MIN_SIZE, OTADATA_SIZE, TABLE_SECTOR_SIZE, TYPE_KEYWORDS,
};

/// A row validation can look at: the entry and its full name (for tables from
/// a CSV, the name before truncation to the 16-byte label).
pub trait TableRow {
    /// The entry.
    fn partition(&self) -> &Partition;
    /// The full name.
    fn name(&self) -> &[u8];
    /// The 1-based CSV line, when known.
    fn line(&self) -> Option<usize> {
        None
    }
}

impl TableRow for Partition {
    fn partition(&self) -> &Partition {
        self
    }
    fn name(&self) -> &[u8] {
        self.label.as_bytes()
    }
}

/// Secure boot mode, which changes the required app size alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecureBoot {
    /// No secure boot: app sizes are multiples of 0x1000.
    #[default]
    Off,
    /// Secure boot v1: app sizes are multiples of 0x10000.
    V1,
    /// Secure boot v2: app sizes are multiples of 0x1000.
    V2,
}

/// Validation options (the `gen_esp32part.py` flags that affect `verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidateOptions {
    /// Flash offset of the table (`--offset`); partitions must start at or after
    /// `table_offset + 0x1000`. Default 0x8000.
    pub table_offset: u32,
    /// Flash size in bytes (`--flash-size`), if the table must fit.
    pub flash_size: Option<u64>,
    /// Secure boot mode (`--secure`).
    pub secure: SecureBoot,
    /// Skip every check except the flash size (`--no-verify`).
    pub no_verify: bool,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        Self {
            table_offset: DEFAULT_TABLE_OFFSET,
            flash_size: None,
            secure: SecureBoot::Off,
            no_verify: false,
        }
    }
}

/// Something suspicious that `gen_esp32part.py` only warns about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// The name is a type keyword that does not match the row's type.
    NameIsTypeKeyword {
        /// The partition.
        row: RowRef,
        /// Its actual type.
        ty: u8,
    },
    /// The name is a subtype keyword that does not match the row's subtype.
    NameIsSubtypeKeyword {
        /// The partition.
        row: RowRef,
        /// Its type.
        ty: u8,
        /// Its subtype.
        subtype: u8,
    },
    /// Flag bits ESP-IDF does not define (a newer binary format?).
    UnknownFlags {
        /// The partition.
        row: RowRef,
        /// The unknown bits.
        bits: u32,
    },
}

impl core::fmt::Display for Warning {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Warning::NameIsTypeKeyword { row, ty } => write!(
                f,
                "{row}: the name is a partition type, but does not match this partition's type \
                 ({ty:#x}); mistake in partition table?"
            ),
            Warning::NameIsSubtypeKeyword { row, ty, subtype } => write!(
                f,
                "{row}: the name is a partition subtype, but this partition has non-matching \
                 type {ty:#x} and subtype {subtype:#x}; mistake in partition table?"
            ),
            Warning::UnknownFlags { row, bits } => write!(
                f,
                "{row}: unknown flag bits {bits:#010x} (newer binary format?); they are kept in \
                 binary output but cannot be written in a CSV"
            ),
        }
    }
}

fn row_ref<R: TableRow>(rows: &[R], i: usize) -> RowRef {
    match rows.get(i) {
        Some(r) => RowRef::new(i, r.line(), r.name()),
        None => RowRef::new(i, None, b""),
    }
}

/// Validates `rows` like `gen_esp32part.py`; warnings go to `warn`, the first
/// error is returned.
pub fn validate<R: TableRow>(
    rows: &[R],
    opts: &ValidateOptions,
    warn: &mut dyn FnMut(Warning),
) -> Result<(), ValidationError> {
    for (i, r) in rows.iter().enumerate() {
        let bits = r.partition().flags.unknown();
        if bits != 0 {
            warn(Warning::UnknownFlags {
                row: row_ref(rows, i),
                bits,
            });
        }
    }
    if !opts.no_verify {
        for i in 0..rows.len() {
            verify_row(rows, i, opts, warn)?;
        }
        check_unique_names(rows)?;
        check_order(rows, opts)?;
        check_otadata(rows, SubType::OTADATA, false)?;
        check_otadata(rows, SubType::TEE_OTA, true)?;
    }
    if let Some(flash_size) = opts.flash_size {
        let mut best: Option<&Partition> = None;
        for p in rows.iter().map(TableRow::partition) {
            if best.is_none_or(|b| p.offset > b.offset) {
                best = Some(p);
            }
        }
        let end = best.map_or(0, Partition::end_u64);
        if flash_size < end {
            return Err(ValidationError::DoesNotFitFlash { end, flash_size });
        }
    }
    Ok(())
}

/// [`validate`], collecting the warnings.
#[cfg(feature = "alloc")]
pub fn validate_collect<R: TableRow>(
    rows: &[R],
    opts: &ValidateOptions,
) -> Result<alloc::vec::Vec<Warning>, ValidationError> {
    let mut warnings = alloc::vec::Vec::new();
    validate(rows, opts, &mut |w| warnings.push(w))?;
    Ok(warnings)
}

fn verify_row<R: TableRow>(
    rows: &[R],
    i: usize,
    opts: &ValidateOptions,
    warn: &mut dyn FnMut(Warning),
) -> Result<(), ValidationError> {
    let Some(r) = rows.get(i) else { return Ok(()) };
    let p = r.partition();
    let align = p.ty.offset_alignment();
    if p.offset % align != 0 {
        return Err(ValidationError::OffsetMisaligned {
            row: row_ref(rows, i),
            offset: p.offset,
            align,
        });
    }
    if p.is_app() {
        let align = if opts.secure == SecureBoot::V1 {
            super::APP_ALIGN
        } else {
            super::DATA_ALIGN
        };
        if p.size % align != 0 {
            return Err(ValidationError::SizeMisaligned {
                row: row_ref(rows, i),
                size: p.size,
                align,
            });
        }
    }
    let name = r.name();
    if let Some((_, ty)) = TYPE_KEYWORDS.iter().find(|(k, _)| k.as_bytes() == name) {
        if *ty != p.ty.0 {
            warn(Warning::NameIsTypeKeyword {
                row: row_ref(rows, i),
                ty: p.ty.0,
            });
        }
    }
    if is_any_subtype_keyword(name) {
        let own = super::subtype_keywords(p.ty)
            .iter()
            .find(|(k, _)| k.as_bytes() == name);
        if own.is_none_or(|(_, v)| *v != p.subtype.0) {
            warn(Warning::NameIsSubtypeKeyword {
                row: row_ref(rows, i),
                ty: p.ty.0,
                subtype: p.subtype.0,
            });
        }
    }
    let data = p.ty == PartitionType::DATA;
    if data
        && (p.subtype == SubType::OTADATA || p.subtype == SubType::COREDUMP)
        && p.flags.readonly()
    {
        return Err(ValidationError::AlwaysReadWrite {
            row: row_ref(rows, i),
            ty: p.ty.0,
            subtype: p.subtype.0,
        });
    }
    if data && p.subtype == SubType::NVS && p.size < NVS_RW_MIN_SIZE && !p.flags.readonly() {
        return Err(ValidationError::NvsTooSmall {
            row: row_ref(rows, i),
            size: p.size,
        });
    }
    Ok(())
}

fn check_unique_names<R: TableRow>(rows: &[R]) -> Result<(), ValidationError> {
    for (i, r) in rows.iter().enumerate() {
        if let Some(j) = rows
            .get(..i)
            .unwrap_or(&[])
            .iter()
            .position(|o| o.name() == r.name())
        {
            return Err(ValidationError::DuplicateName {
                row: row_ref(rows, i),
                first: row_ref(rows, j),
            });
        }
    }
    Ok(())
}

/// Visits the rows in the order of a stable sort by offset, without a buffer:
/// the next row is the smallest `(offset, index)` greater than the current one.
fn next_in_offset_order<R: TableRow>(rows: &[R], after: Option<(u32, usize)>) -> Option<usize> {
    let mut best: Option<(u32, usize)> = None;
    for (i, r) in rows.iter().enumerate() {
        let key = (r.partition().offset, i);
        if after.is_some_and(|a| key <= a) {
            continue;
        }
        if best.is_none_or(|b| key < b) {
            best = Some(key);
        }
    }
    best.map(|(_, i)| i)
}

fn check_order<R: TableRow>(rows: &[R], opts: &ValidateOptions) -> Result<(), ValidationError> {
    let min = u64::from(opts.table_offset) + u64::from(TABLE_SECTOR_SIZE);
    let mut last: Option<usize> = None;
    let mut cursor = None;
    while let Some(i) = next_in_offset_order(rows, cursor) {
        let Some(p) = rows.get(i).map(TableRow::partition) else {
            break;
        };
        cursor = Some((p.offset, i));
        if u64::from(p.offset) < min && !p.is_primary_boot_row() {
            return Err(ValidationError::BelowTable {
                row: row_ref(rows, i),
                offset: p.offset,
                min,
            });
        }
        if let Some(l) = last.and_then(|l| rows.get(l).map(|r| (l, r.partition()))) {
            if u64::from(p.offset) < l.1.end_u64() {
                return Err(ValidationError::Overlap {
                    row: row_ref(rows, i),
                    offset: p.offset,
                    other: row_ref(rows, l.0),
                    start: l.1.offset,
                    last: l.1.end_u64().saturating_sub(1),
                });
            }
        }
        last = Some(i);
    }
    Ok(())
}

fn check_otadata<R: TableRow>(rows: &[R], sub: SubType, tee: bool) -> Result<(), ValidationError> {
    let is = |r: &R| r.partition().ty == PartitionType::DATA && r.partition().subtype == sub;
    let mut found = rows.iter().enumerate().filter(|(_, r)| is(r));
    let first = found.next();
    if let (Some((a, _)), Some((b, _))) = (first, found.next()) {
        return Err(ValidationError::MultipleOtadata {
            first: row_ref(rows, a),
            second: row_ref(rows, b),
            tee,
        });
    }
    if let Some((i, r)) = first {
        if r.partition().size != OTADATA_SIZE {
            return Err(ValidationError::OtadataSize {
                row: row_ref(rows, i),
                size: r.partition().size,
                tee,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::{Flags, PartitionType as T};

    fn p(ty: T, sub: u8, off: u32, size: u32, name: &str) -> Partition {
        Partition::new(ty, SubType(sub), off, size, name)
    }

    fn run(rows: &[Partition]) -> Result<(), ValidationError> {
        validate(rows, &ValidateOptions::default(), &mut |_| {})
    }

    #[test]
    fn offset_order_overlap_is_reported_in_sorted_order() {
        let rows = [
            p(T::DATA, 2, 0x20000, 0x4000, "b"),
            p(T::DATA, 2, 0x9000, 0x18000, "a"),
        ];
        match run(&rows) {
            Err(ValidationError::Overlap {
                offset: 0x20000,
                start: 0x9000,
                last: 0x20fff,
                ..
            }) => {}
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn nvs_and_readonly_rules() {
        let mut small = p(T::DATA, 2, 0x9000, 0x2000, "nvs");
        assert!(matches!(
            run(&[small]),
            Err(ValidationError::NvsTooSmall { .. })
        ));
        small.flags = Flags(Flags::READONLY);
        assert!(run(&[small]).is_ok());
        let mut ota = p(T::DATA, 0, 0x9000, 0x2000, "otadata");
        ota.flags = Flags(Flags::READONLY);
        assert!(matches!(
            run(&[ota]),
            Err(ValidationError::AlwaysReadWrite { .. })
        ));
    }

    #[test]
    fn flash_size_runs_even_with_no_verify() {
        let rows = [p(T::APP, 0, 0x10001, 0x400000, "factory")];
        let opts = ValidateOptions {
            flash_size: Some(4 << 20),
            no_verify: true,
            ..ValidateOptions::default()
        };
        assert!(matches!(
            validate(&rows, &opts, &mut |_| {}),
            Err(ValidationError::DoesNotFitFlash { end: 0x410001, .. })
        ));
    }

    #[test]
    fn keyword_names_only_warn() {
        let rows = [
            p(T::DATA, 2, 0x9000, 0x4000, "app"),
            p(T::DATA, 1, 0xd000, 0x1000, "nvs"),
        ];
        let mut n = 0;
        validate(&rows, &ValidateOptions::default(), &mut |_| n += 1).unwrap();
        assert_eq!(n, 2);
    }
}
