//! The CSV grammar of `gen_esp32part.py` (`PartitionTable.from_csv`,
//! `PartitionDefinition.from_csv`, `parse_int`) and its `to_csv`, on an owned
//! table that keeps each partition's full name and CSV line.
//!
//! What the grammar is, exactly:
//! - bytes are decoded by BOM: UTF-8 (BOM stripped), UTF-16 (`FF FE` or
//!   `FE FF`; note that `FF FE 00 00` is read as UTF-16 too, as Python does),
//!   UTF-32 big-endian (`00 00 FE FF`), else UTF-8;
//! - lines come from Python's `splitlines()`; line numbers are physical, 1-based;
//! - each line has `$VAR`/`${VAR}` expanded from an [`Env`]; a line that then
//!   *starts* with `$NAME` is an error ("unknown variable");
//! - the line is stripped; empty lines and lines starting with `#` are skipped;
//!   there are no inline comments and no quoting;
//! - fields are split on `,` and stripped: Name, Type, SubType, Offset, Size,
//!   Flags; missing fields are empty, extra fields are ignored;
//! - numbers are `parse_int`: a `k`/`m` suffix (any case) multiplies the rest,
//!   parsed recursively, by 1024 / 1048576; else Python `int(v, 0)`; else a
//!   case-insensitive keyword (type and subtype only);
//! - an empty data (or custom-type) subtype is 0x06, an empty app subtype an
//!   error; bootloader and partition_table rows get forced offsets and sizes;
//! - flags split on `:` and are *not* stripped;
//! - offsets left empty are placed after the previous partition (apps aligned to
//!   0x10000, others to 0x1000), starting at `table_offset + 0x1000`; primary
//!   bootloader and partition-table rows do not take part; a negative size is
//!   an end address.
//!
//! Values that do not fit their binary field (type or subtype above 0xFF,
//! offsets or sizes outside `u32`) are rejected here with their line, where
//! `gen_esp32part.py` fails later with a Python traceback.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write as _;

use super::int::{is_py_space, py_int, py_splitlines, py_strip, IntError};
#[cfg(feature = "std")]
pub use super::text::StdEnv;
pub use super::text::{decode_text, Env, NoEnv};
use super::text::{expand_vars, leading_variable};
use super::validate::{validate_collect, TableRow, ValidateOptions, Warning};
use super::{
    subtype_keywords, BinaryError, CsvError, CsvErrorKind, Field, Flags, Label, Partition,
    PartitionTable, PartitionType, SubType, ValidationError, DEFAULT_TABLE_OFFSET, ENTRY_SIZE,
    MAX_TABLE_LEN, TABLE_SECTOR_SIZE, TYPE_KEYWORDS,
};

/// Most partition rows a CSV may have. Any table over 95 fails to encode
/// anyway; the limit keeps validation (quadratic, without allocation) cheap.
pub const MAX_CSV_ROWS: usize = 1024;

/// A subtype keyword added with `--extra-partition-subtypes TYPE,NAME,HEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraSubtype {
    /// Type it belongs to (app, data, bootloader or partition_table).
    pub ty: PartitionType,
    /// Keyword.
    pub name: String,
    /// Subtype value.
    pub value: u8,
}

/// A malformed `--extra-partition-subtypes` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtraSubtypeError {
    /// Not `TYPE,NAME,HEX`.
    #[error("extra subtype '{0}' is not of the form TYPE,NAME,HEX (for example app,my_app,0x40)")]
    Format(String),
    /// TYPE is not a built-in type keyword.
    #[error("invalid partition type '{0}' in extra subtype: use app, data, bootloader or partition_table")]
    InvalidType(String),
    /// HEX is not a hexadecimal byte.
    #[error("invalid subtype value '{0}' in extra subtype: use a hexadecimal number from 0 to ff")]
    InvalidValue(String),
    /// The value is already a subtype of that type.
    #[error(
        "found duplicate value in partition subtype: {value:#x} is already a subtype of type {ty}"
    )]
    DuplicateValue {
        /// The type.
        ty: PartitionType,
        /// The value.
        value: u8,
    },
}

impl ExtraSubtype {
    /// Parses `TYPE,NAME,HEX` (fields stripped; HEX as Python `int(v, 16)`).
    pub fn parse(s: &str) -> Result<Self, ExtraSubtypeError> {
        let fields: Vec<&str> = s.split(',').map(py_strip).collect();
        let (Some(ty), Some(name), Some(hex)) = (fields.first(), fields.get(1), fields.get(2))
        else {
            return Err(ExtraSubtypeError::Format(s.to_string()));
        };
        let ty = TYPE_KEYWORDS
            .iter()
            .find(|(k, _)| k == ty)
            .map(|(_, v)| PartitionType(*v))
            .ok_or_else(|| ExtraSubtypeError::InvalidType(ty.to_string()))?;
        let value = parse_hex(hex)
            .and_then(|v| u8::try_from(v).ok())
            .ok_or_else(|| ExtraSubtypeError::InvalidValue(hex.to_string()))?;
        Ok(Self {
            ty,
            name: name.to_string(),
            value,
        })
    }
}

/// Python `int(v, 16)`.
fn parse_hex(v: &str) -> Option<i128> {
    let v = py_strip(v);
    let (neg, body) = match v.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let (prefixed, digits) = match body.get(..2) {
        Some("0x" | "0X") => (true, body.get(2..).unwrap_or("")),
        _ => (false, body),
    };
    if !prefixed && digits.starts_with('_') {
        return None;
    }
    let mut lit = String::from("0x");
    lit.push_str(digits);
    let n = py_int(&lit).ok()?;
    // py_int strips whitespace; int(v, 16) would not accept it after a sign.
    if digits.starts_with(is_py_space) || body.starts_with(is_py_space) {
        return None;
    }
    Some(if neg { -n } else { n })
}

/// Options of the CSV parser (the `gen_esp32part.py` flags that affect parsing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Flash offset of the table (`--offset`); placement starts 0x1000 after
    /// it. Default 0x8000 (the tool's module-level default, used by its own
    /// unit tests, is 0).
    pub table_offset: u32,
    /// `--primary-bootloader-offset`, needed by any bootloader row.
    pub primary_bootloader_offset: Option<u32>,
    /// `--recovery-bootloader-offset`, needed by a bootloader/recovery row.
    pub recovery_bootloader_offset: Option<u32>,
    /// `--extra-partition-subtypes`, in order; add them with
    /// [`CsvOptions::add_extra_subtype`] to get the duplicate check.
    pub extra_subtypes: Vec<ExtraSubtype>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            table_offset: DEFAULT_TABLE_OFFSET,
            primary_bootloader_offset: None,
            recovery_bootloader_offset: None,
            extra_subtypes: Vec::new(),
        }
    }
}

impl CsvOptions {
    /// Adds an extra subtype keyword, refusing a value the type already has.
    pub fn add_extra_subtype(&mut self, extra: ExtraSubtype) -> Result<(), ExtraSubtypeError> {
        let taken = Keywords::subtypes(extra.ty, &self.extra_subtypes)
            .iter()
            .any(|(_, v)| *v == i128::from(extra.value));
        if taken {
            return Err(ExtraSubtypeError::DuplicateValue {
                ty: extra.ty,
                value: extra.value,
            });
        }
        self.extra_subtypes.push(extra);
        Ok(())
    }
}

/// A keyword dictionary with Python dict semantics (insertion order; an extra
/// with an existing name replaces the value in place).
struct Keywords {
    entries: Vec<(String, i128)>,
}

impl Keywords {
    fn types() -> Self {
        Self {
            entries: TYPE_KEYWORDS
                .iter()
                .map(|(k, v)| (k.to_string(), i128::from(*v)))
                .collect(),
        }
    }

    fn subtypes(ty: PartitionType, extras: &[ExtraSubtype]) -> Self {
        let mut entries: Vec<(String, i128)> = subtype_keywords(ty)
            .iter()
            .map(|(k, v)| (k.to_string(), i128::from(*v)))
            .collect();
        for e in extras.iter().filter(|e| e.ty == ty) {
            match entries.iter_mut().find(|(k, _)| *k == e.name) {
                Some(slot) => slot.1 = i128::from(e.value),
                None => entries.push((e.name.clone(), i128::from(e.value))),
            }
        }
        Self { entries }
    }

    fn none() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &(String, i128)> {
        self.entries.iter()
    }

    fn get(&self, key: &str) -> Option<i128> {
        self.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    fn name_of(&self, value: i128) -> Option<&str> {
        self.iter()
            .find(|(_, v)| *v == value)
            .map(|(k, _)| k.as_str())
    }

    fn known(&self) -> String {
        let mut s = String::new();
        for (i, (k, _)) in self.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(k);
        }
        s
    }
}

/// `gen_esp32part.py`'s `parse_int(v, keywords)`.
fn parse_int(v: &str, keywords: &Keywords, field: Field) -> Result<i128, CsvErrorKind> {
    let mut chars = v.chars();
    let multiplier = match chars.next_back() {
        Some('k' | 'K' | '\u{212A}') => Some(1024),
        Some('m' | 'M') => Some(1024 * 1024),
        _ => None,
    };
    if let Some(m) = multiplier {
        let inner = parse_int(chars.as_str(), keywords, field)?;
        return inner.checked_mul(m).ok_or(CsvErrorKind::OutOfRange {
            field,
            value: inner,
            max: u64::from(u32::MAX),
        });
    }
    match py_int(v) {
        Ok(n) => Ok(n),
        Err(IntError::Overflow) => Err(CsvErrorKind::OutOfRange {
            field,
            value: i128::MAX,
            max: u64::from(u32::MAX),
        }),
        Err(IntError::Invalid) if keywords.entries.is_empty() => Err(CsvErrorKind::InvalidNumber {
            field,
            value: v.to_string(),
        }),
        Err(IntError::Invalid) => {
            keywords
                .get(&v.to_lowercase())
                .ok_or_else(|| CsvErrorKind::UnknownKeyword {
                    field,
                    value: v.to_string(),
                    known: keywords.known(),
                })
        }
    }
}

/// One partition of an [`OwnedTable`]: the entry plus its full name and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The binary entry (its label is the name truncated to 16 bytes).
    pub partition: Partition,
    /// The full name, as written in the CSV (or the label, from a binary).
    pub name: String,
    /// The 1-based CSV line, for tables parsed from a CSV.
    pub line: Option<usize>,
}

impl TableRow for Entry {
    fn partition(&self) -> &Partition {
        &self.partition
    }
    fn name(&self) -> &[u8] {
        self.name.as_bytes()
    }
    fn line(&self) -> Option<usize> {
        self.line
    }
}

/// A partition table with full names and CSV lines: what the CSV parser
/// produces, what validation reports against, and what `to_csv` writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnedTable {
    /// The partitions in CSV (stored) order.
    pub entries: Vec<Entry>,
}

/// A row while parsing: Python's unbounded ints become `i128`.
struct Row {
    line: usize,
    name: String,
    ty: i128,
    subtype: i128,
    offset: Option<i128>,
    size: i128,
    flags: u32,
}

impl OwnedTable {
    /// Parses CSV text, expanding variables from the process environment (with
    /// `std`) or from nothing (without).
    pub fn from_csv(text: &str, opts: &CsvOptions) -> Result<Self, CsvError> {
        #[cfg(feature = "std")]
        return Self::from_csv_with_env(text, opts, &StdEnv);
        #[cfg(not(feature = "std"))]
        return Self::from_csv_with_env(text, opts, &NoEnv);
    }

    /// Decodes CSV bytes by their BOM and parses them (see [`OwnedTable::from_csv`]).
    pub fn from_csv_bytes(bytes: &[u8], opts: &CsvOptions) -> Result<Self, CsvError> {
        let text = decode_text(bytes)?;
        Self::from_csv(&text, opts)
    }

    /// Decodes CSV bytes by their BOM and parses them with variables from `env`.
    pub fn from_csv_bytes_with_env(
        bytes: &[u8],
        opts: &CsvOptions,
        env: &dyn Env,
    ) -> Result<Self, CsvError> {
        let text = decode_text(bytes)?;
        Self::from_csv_with_env(&text, opts, env)
    }

    /// Parses CSV text with variables from `env`.
    pub fn from_csv_with_env(
        text: &str,
        opts: &CsvOptions,
        env: &dyn Env,
    ) -> Result<Self, CsvError> {
        let mut rows: Vec<Row> = Vec::new();
        for (i, raw) in py_splitlines(text).enumerate() {
            let line_no = i.saturating_add(1);
            let expanded = expand_vars(raw, env);
            if let Some(name) = leading_variable(&expanded) {
                return Err(CsvError {
                    line: line_no,
                    name: None,
                    kind: CsvErrorKind::UnknownVariable {
                        name: name.to_string(),
                    },
                });
            }
            let line = py_strip(&expanded);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if rows.len() >= MAX_CSV_ROWS {
                return Err(CsvError {
                    line: line_no,
                    name: None,
                    kind: CsvErrorKind::TooManyRows { max: MAX_CSV_ROWS },
                });
            }
            let mut fields = line.split(',').map(py_strip);
            let name = fields.next().unwrap_or("").to_string();
            let row = parse_row(line_no, &name, &mut fields, opts).map_err(|kind| CsvError {
                line: line_no,
                name: Some(name.clone()),
                kind,
            })?;
            rows.push(row);
        }
        place(&mut rows, opts)?;
        let mut entries = Vec::with_capacity(rows.len());
        for r in rows {
            let err = |kind| CsvError {
                line: r.line,
                name: Some(r.name.clone()),
                kind,
            };
            let offset = r.offset.unwrap_or(0);
            let offset = u32::try_from(offset).map_err(|_| {
                err(CsvErrorKind::OutOfRange {
                    field: Field::Offset,
                    value: offset,
                    max: u64::from(u32::MAX),
                })
            })?;
            let size = u32::try_from(r.size).map_err(|_| {
                err(CsvErrorKind::OutOfRange {
                    field: Field::Size,
                    value: r.size,
                    max: u64::from(u32::MAX),
                })
            })?;
            // Range-checked in parse_row.
            let ty = PartitionType(u8::try_from(r.ty).unwrap_or(0xFF));
            let subtype = SubType(u8::try_from(r.subtype).unwrap_or(0xFF));
            entries.push(Entry {
                partition: Partition {
                    ty,
                    subtype,
                    offset,
                    size,
                    label: Label::new(&r.name),
                    flags: Flags(r.flags),
                },
                name: r.name,
                line: Some(r.line),
            });
        }
        Ok(Self { entries })
    }

    /// The table of a decoded binary (names are the labels, invalid UTF-8
    /// replaced by U+FFFD).
    pub fn from_table(table: &PartitionTable) -> Self {
        Self {
            entries: table
                .iter()
                .map(|p| Entry {
                    partition: *p,
                    name: String::from_utf8_lossy(p.label.as_bytes()).into_owned(),
                    line: None,
                })
                .collect(),
        }
    }

    /// The entries as a fixed-capacity binary table.
    pub fn to_table(&self) -> Result<PartitionTable, BinaryError> {
        let mut t = PartitionTable::new();
        for e in &self.entries {
            t.push(e.partition)?;
        }
        Ok(t)
    }

    /// Encodes like `gen_esp32part.py`: 0xC00 bytes, MD5 row if `md5`.
    pub fn to_binary(&self, md5: bool) -> Result<[u8; MAX_TABLE_LEN], BinaryError> {
        let len = self
            .entries
            .len()
            .saturating_add(usize::from(md5))
            .saturating_mul(ENTRY_SIZE);
        if len >= MAX_TABLE_LEN {
            return Err(BinaryError::TableTooLong {
                entries: self.entries.len(),
                md5,
                len,
            });
        }
        self.to_table()?.to_binary(md5)
    }

    /// Validates like `gen_esp32part.py` (see [`super::validate`]); returns the
    /// warnings.
    pub fn validate(&self, opts: &ValidateOptions) -> Result<Vec<Warning>, ValidationError> {
        validate_collect(&self.entries, opts)
    }

    /// CSV text as `gen_esp32part.py`'s `to_csv` writes it.
    pub fn to_csv(&self) -> String {
        self.to_csv_with(&CsvOptions::default())
    }

    /// [`OwnedTable::to_csv`], also knowing the extra subtype keywords in `opts`.
    pub fn to_csv_with(&self, opts: &CsvOptions) -> String {
        let types = Keywords::types();
        let mut out =
            String::from("# ESP-IDF Partition Table\n# Name, Type, SubType, Offset, Size, Flags\n");
        for e in &self.entries {
            let p = &e.partition;
            let subs = Keywords::subtypes(p.ty, &opts.extra_subtypes);
            out.push_str(&e.name);
            out.push(',');
            match types.name_of(i128::from(p.ty.0)) {
                Some(k) => out.push_str(k),
                None => {
                    let _ = write!(out, "{}", p.ty.0);
                }
            }
            out.push(',');
            match subs.name_of(i128::from(p.subtype.0)) {
                Some(k) => out.push_str(k),
                None => {
                    let _ = write!(out, "{}", p.subtype.0);
                }
            }
            let _ = write!(out, ",{:#x},", p.offset);
            if p.size % 0x100000 == 0 {
                let _ = write!(out, "{}M", p.size / 0x100000);
            } else if p.size % 0x400 == 0 {
                let _ = write!(out, "{}K", p.size / 0x400);
            } else {
                let _ = write!(out, "{:#x}", p.size);
            }
            out.push(',');
            let mut flags = Vec::new();
            if p.flags.encrypted() {
                flags.push("encrypted");
            }
            if p.flags.readonly() {
                flags.push("readonly");
            }
            out.push_str(&flags.join(":"));
            out.push('\n');
        }
        out
    }
}

fn parse_row<'a>(
    line: usize,
    name: &str,
    fields: &mut impl Iterator<Item = &'a str>,
    opts: &CsvOptions,
) -> Result<Row, CsvErrorKind> {
    let ty_s = fields.next().unwrap_or("");
    let sub_s = fields.next().unwrap_or("");
    let off_s = fields.next().unwrap_or("");
    let size_s = fields.next().unwrap_or("");
    let flags_s = fields.next().unwrap_or("");

    if ty_s.is_empty() {
        return Err(CsvErrorKind::EmptyType);
    }
    let ty = parse_int(ty_s, &Keywords::types(), Field::Type)?;
    let known_ty = u8::try_from(ty).ok().map(PartitionType);
    let subtype = if sub_s.is_empty() {
        if known_ty == Some(PartitionType::APP) {
            return Err(CsvErrorKind::EmptyAppSubtype);
        }
        i128::from(SubType::UNDEFINED.0)
    } else {
        let kw = match known_ty {
            Some(t) => Keywords::subtypes(t, &opts.extra_subtypes),
            None => Keywords::none(),
        };
        parse_int(sub_s, &kw, Field::SubType)?
    };
    let is = |t: PartitionType, s: SubType| known_ty == Some(t) && subtype == i128::from(s.0);
    let primary = || {
        opts.primary_bootloader_offset
            .map(i128::from)
            .ok_or(CsvErrorKind::PrimaryBootloaderOffsetMissing)
    };
    let offset = if is(PartitionType::BOOTLOADER, SubType::BOOTLOADER_PRIMARY) {
        Some(primary()?)
    } else if is(PartitionType::BOOTLOADER, SubType::BOOTLOADER_RECOVERY) {
        Some(
            opts.recovery_bootloader_offset
                .map(i128::from)
                .ok_or(CsvErrorKind::RecoveryBootloaderOffsetMissing)?,
        )
    } else if is(
        PartitionType::PARTITION_TABLE,
        SubType::PARTITION_TABLE_PRIMARY,
    ) {
        Some(i128::from(opts.table_offset))
    } else if off_s.is_empty() {
        None
    } else {
        Some(parse_int(off_s, &Keywords::none(), Field::Offset)?)
    };
    let size = if known_ty == Some(PartitionType::BOOTLOADER) {
        i128::from(opts.table_offset) - primary()?
    } else if known_ty == Some(PartitionType::PARTITION_TABLE) {
        i128::from(TABLE_SECTOR_SIZE)
    } else if size_s.is_empty() {
        return Err(CsvErrorKind::EmptySize);
    } else {
        parse_int(size_s, &Keywords::none(), Field::Size)?
    };
    let mut flags = 0;
    for flag in flags_s.split(':') {
        match flag {
            "encrypted" => flags |= Flags::ENCRYPTED,
            "readonly" => flags |= Flags::READONLY,
            "" => {}
            other => {
                return Err(CsvErrorKind::UnknownFlag {
                    flag: other.to_string(),
                })
            }
        }
    }
    for (field, v) in [(Field::Type, ty), (Field::SubType, subtype)] {
        if !(0..=0xFF).contains(&v) {
            return Err(CsvErrorKind::OutOfRange {
                field,
                value: v,
                max: 0xFF,
            });
        }
    }
    Ok(Row {
        line,
        name: name.to_string(),
        ty,
        subtype,
        offset,
        size,
        flags,
    })
}

/// Auto-placement and end-address sizes (the end of `from_csv`).
fn place(rows: &mut [Row], opts: &CsvOptions) -> Result<(), CsvError> {
    let mut last_end = i128::from(opts.table_offset) + i128::from(TABLE_SECTOR_SIZE);
    for i in 0..rows.len() {
        // Python compares with `e == res[0]` (name, type, subtype, offset, size).
        let first_now = rows
            .first()
            .map(|r| (r.name.clone(), r.ty, r.subtype, r.offset, r.size));
        let Some(r) = rows.get_mut(i) else { break };
        let primary = (r.ty == 2 || r.ty == 3) && r.subtype == 0;
        if primary {
            continue;
        }
        if let Some(off) = r.offset {
            if off < last_end {
                let is_first =
                    first_now == Some((r.name.clone(), r.ty, r.subtype, r.offset, r.size));
                return Err(CsvError {
                    line: r.line,
                    name: Some(r.name.clone()),
                    kind: CsvErrorKind::Overlap {
                        offset: off,
                        previous_end: last_end,
                        first: is_first,
                        table_offset: opts.table_offset,
                    },
                });
            }
        }
        let offset = match r.offset {
            Some(o) => o,
            None => {
                let pad = if r.ty == 0 { 0x10000 } else { 0x1000 };
                let rem = last_end.rem_euclid(pad);
                if rem != 0 {
                    last_end = last_end.saturating_add(pad - rem);
                }
                r.offset = Some(last_end);
                last_end
            }
        };
        if r.size < 0 {
            r.size = r.size.saturating_neg().saturating_sub(offset);
        }
        last_end = offset.saturating_add(r.size);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn opts0() -> CsvOptions {
        CsvOptions {
            table_offset: 0,
            ..CsvOptions::default()
        }
    }

    fn parse(s: &str) -> Result<OwnedTable, CsvError> {
        OwnedTable::from_csv_with_env(s, &opts0(), &NoEnv)
    }

    #[test]
    fn unknown_leading_variable_is_an_error_but_not_inline() {
        let e = parse("\n$NOPE, data, nvs, , 0x4000\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(matches!(e.kind, CsvErrorKind::UnknownVariable { ref name } if name == "NOPE"));
        let t = parse("a$NOPE, data, nvs, , 0x4000\n").unwrap();
        assert_eq!(t.entries[0].name, "a$NOPE");
    }

    #[test]
    fn suffixes_recurse_and_keywords_fold_case() {
        let t = parse("a, APP, OTA_0, , 0x10K\nb, data, , , 1_0k\n").unwrap();
        assert_eq!(t.entries[0].partition.size, 0x4000);
        assert_eq!(t.entries[0].partition.subtype, SubType::OTA_0);
        assert_eq!(t.entries[1].partition.size, 10 * 1024);
        assert_eq!(t.entries[1].partition.subtype, SubType::UNDEFINED);
    }

    #[test]
    fn flags_are_not_stripped() {
        let e = parse("a, data, nvs, , 0x4000, encrypted: readonly\n").unwrap_err();
        assert!(matches!(e.kind, CsvErrorKind::UnknownFlag { ref flag } if flag == " readonly"));
    }

    #[test]
    fn utf16_bom_decodes() {
        let text = "a, data, nvs, , 0x4000\n";
        let mut bytes = vec![0xFF, 0xFE];
        for u in text.encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        let t = OwnedTable::from_csv_bytes_with_env(&bytes, &opts0(), &NoEnv).unwrap();
        assert_eq!(t.entries[0].name, "a");
    }

    #[test]
    fn extra_subtypes_parse_and_refuse_duplicates() {
        let mut o = opts0();
        o.add_extra_subtype(ExtraSubtype::parse("app, my_app, 0x40").unwrap())
            .unwrap();
        assert!(o
            .add_extra_subtype(ExtraSubtype::parse("app,x,10").unwrap())
            .is_err());
        let t = OwnedTable::from_csv_with_env("a, app, MY_APP, , 64K\n", &o, &NoEnv).unwrap();
        assert_eq!(t.entries[0].partition.subtype, SubType(0x40));
        assert!(t.to_csv_with(&o).contains("a,app,my_app,0x10000,64K,"));
    }
}
