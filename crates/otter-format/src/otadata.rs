//! otadata: the boot-slot selection that ESP-IDF's bootloader reads.
//!
//! The `data/ota` partition is exactly [`OTADATA_SIZE`] bytes: two flash sectors,
//! each starting with one 32-byte `esp_ota_select_entry_t`. Everything after
//! the first 32 bytes of a sector is ignored by ESP-IDF.
//!
//! | Offset | Len | Field       | Notes                                                |
//! |--------|-----|-------------|------------------------------------------------------|
//! | 0      | 4   | `ota_seq`   | `0xFFFFFFFF` = empty                                 |
//! | 4      | 20  | `seq_label` | unused; preserved from the sector's old contents     |
//! | 24     | 4   | `ota_state` | [`OtaState`]                                         |
//! | 28     | 4   | `crc`       | [`seq_crc`] of the 4 bytes of `ota_seq` only         |
//!
//! The entry at sector 0 lives at otadata + 0, the one at sector 1 at
//! otadata + 0x1000. The active entry is the valid one with the larger sequence
//! number (sector 0 on a tie), and it selects OTA slot `(seq - 1) % n`, where n
//! is the number of OTA app partitions (see [`Otadata::active`]).
//!
//! [`plan_set_boot`] computes what `esp_ota_set_boot_partition` writes: which
//! sector, which sequence number, which state. The caller erases that one
//! sector and programs the 32 returned bytes.

use crc::{Algorithm, Crc};

/// Size of the otadata partition: two sectors.
pub const OTADATA_SIZE: usize = 0x2000;
/// Offset of the second entry inside the otadata partition (one sector).
pub const SECTOR1_OFFSET: usize = 0x1000;
/// Size of one `esp_ota_select_entry_t`.
pub const ENTRY_SIZE: usize = 32;
/// `ota_seq` of an erased (empty) entry.
pub const SEQ_EMPTY: u32 = 0xFFFF_FFFF;
/// Most OTA app slots ESP-IDF supports (`ota_0` .. `ota_15`).
pub const MAX_OTA_SLOTS: u8 = 16;

/// CRC-32 as ESP-IDF computes it for otadata: `esp_rom_crc32_le(0xFFFFFFFF, ..)`.
///
/// This is the reflected CRC-32 polynomial with register init 0 and
/// xorout 0xFFFFFFFF, i.e. Python's `binascii.crc32(data, 0xFFFFFFFF)`.
/// It is **not** the standard CRC-32 (which starts from 0xFFFFFFFF).
const ESP_ROM_CRC32_LE: Algorithm<u32> = Algorithm {
    width: 32,
    poly: 0x04c1_1db7,
    init: 0x0000_0000,
    refin: true,
    refout: true,
    xorout: 0xffff_ffff,
    check: 0xd202_d277,
    residue: 0x0000_0000,
};

static CRC: Crc<u32> = Crc::<u32>::new(&ESP_ROM_CRC32_LE);

/// The CRC ESP-IDF stores in an otadata entry for `seq`: it covers only the
/// four little-endian bytes of the sequence number.
///
/// ```
/// use otter_format::otadata::seq_crc;
/// assert_eq!(seq_crc(1), 0x4743_989A);
/// assert_eq!(seq_crc(2), 0x55F6_3774);
/// ```
pub fn seq_crc(seq: u32) -> u32 {
    CRC.checksum(&seq.to_le_bytes())
}

/// `esp_rom_crc32_le(0xFFFFFFFF, data)`: the CRC ESP-IDF uses for otadata
/// (and for NVS pages and entries).
pub fn esp_crc32(data: &[u8]) -> u32 {
    CRC.checksum(data)
}

/// The rollback state of an otadata entry (`esp_ota_img_states_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OtaState {
    /// Selected for boot but never booted (`ESP_OTA_IMG_NEW`, 0).
    New,
    /// Booted once and waiting for the app to confirm it (`ESP_OTA_IMG_PENDING_VERIFY`, 1).
    PendingVerify,
    /// Confirmed by the app (`ESP_OTA_IMG_VALID`, 2).
    Valid,
    /// Marked invalid by the app (`ESP_OTA_IMG_INVALID`, 3).
    Invalid,
    /// Rebooted while still pending, so the bootloader gave up on it (`ESP_OTA_IMG_ABORTED`, 4).
    Aborted,
    /// Written without rollback support (`ESP_OTA_IMG_UNDEFINED`, 0xFFFFFFFF).
    Undefined,
    /// Any other value. ESP-IDF treats it like a valid state.
    Unknown(u32),
}

impl OtaState {
    /// The state for a raw `ota_state` word.
    pub const fn from_raw(raw: u32) -> Self {
        match raw {
            0 => Self::New,
            1 => Self::PendingVerify,
            2 => Self::Valid,
            3 => Self::Invalid,
            4 => Self::Aborted,
            0xFFFF_FFFF => Self::Undefined,
            other => Self::Unknown(other),
        }
    }

    /// The raw `ota_state` word.
    pub const fn raw(self) -> u32 {
        match self {
            Self::New => 0,
            Self::PendingVerify => 1,
            Self::Valid => 2,
            Self::Invalid => 3,
            Self::Aborted => 4,
            Self::Undefined => 0xFFFF_FFFF,
            Self::Unknown(other) => other,
        }
    }

    /// ESP-IDF's name for the state (`"ESP_OTA_IMG_VALID"` is reported as `"valid"`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::PendingVerify => "pending_verify",
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Aborted => "aborted",
            Self::Undefined => "undefined",
            Self::Unknown(_) => "unknown",
        }
    }
}

/// One 32-byte `esp_ota_select_entry_t`, exactly as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SelectEntry {
    /// `ota_seq`: 1-based sequence number; [`SEQ_EMPTY`] when erased.
    pub seq: u32,
    /// `seq_label`: unused by ESP-IDF, preserved across rewrites.
    pub seq_label: [u8; 20],
    /// `ota_state`, raw.
    pub state: u32,
    /// `crc`, as stored (see [`seq_crc`]).
    pub crc: u32,
}

impl SelectEntry {
    /// An erased entry: all bytes 0xFF.
    pub const ERASED: Self = Self {
        seq: SEQ_EMPTY,
        seq_label: [0xFF; 20],
        state: 0xFFFF_FFFF,
        crc: 0xFFFF_FFFF,
    };

    /// An entry for `seq` in `state`, with the correct CRC and an erased label.
    pub fn new(seq: u32, state: OtaState) -> Self {
        Self {
            seq,
            seq_label: [0xFF; 20],
            state: state.raw(),
            crc: seq_crc(seq),
        }
    }

    /// Decodes 32 stored bytes.
    pub fn from_bytes(b: &[u8; ENTRY_SIZE]) -> Self {
        let word = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let mut seq_label = [0u8; 20];
        seq_label.copy_from_slice(&b[4..24]);
        Self {
            seq: word(0),
            seq_label,
            state: word(24),
            crc: word(28),
        }
    }

    /// Encodes the entry as the 32 bytes ESP-IDF stores.
    pub fn to_bytes(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[0..4].copy_from_slice(&self.seq.to_le_bytes());
        b[4..24].copy_from_slice(&self.seq_label);
        b[24..28].copy_from_slice(&self.state.to_le_bytes());
        b[28..32].copy_from_slice(&self.crc.to_le_bytes());
        b
    }

    /// The decoded rollback state.
    pub const fn ota_state(&self) -> OtaState {
        OtaState::from_raw(self.state)
    }

    /// Whether the stored CRC matches the sequence number.
    pub fn crc_ok(&self) -> bool {
        self.crc == seq_crc(self.seq)
    }

    /// Whether every byte is 0xFF (an erased sector).
    pub fn is_erased(&self) -> bool {
        *self == Self::ERASED
    }

    /// ESP-IDF's `bootloader_common_ota_select_invalid`: empty, or marked
    /// INVALID or ABORTED. The CRC is not looked at.
    pub fn is_invalid(&self) -> bool {
        self.seq == SEQ_EMPTY || matches!(self.ota_state(), OtaState::Invalid | OtaState::Aborted)
    }

    /// ESP-IDF's `bootloader_common_ota_select_valid`: not invalid and the CRC
    /// matches. NEW, PENDING_VERIFY, VALID, UNDEFINED and unknown states all count.
    pub fn is_valid(&self) -> bool {
        !self.is_invalid() && self.crc_ok()
    }

    /// The OTA slot this entry selects among `slot_count` slots:
    /// `(seq - 1) % slot_count` in u32 arithmetic, as the bootloader computes it.
    /// `None` when `slot_count` is 0.
    pub fn slot(&self, slot_count: u8) -> Option<u8> {
        if slot_count == 0 {
            return None;
        }
        let slot = self.seq.wrapping_sub(1) % u32::from(slot_count);
        // `slot < slot_count <= 255`, so the narrowing cannot lose anything.
        u8::try_from(slot).ok()
    }
}

/// Which sector to rewrite when the slot being selected is already the
/// active one. ESP-IDF changed this between releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSlotRule {
    /// ESP-IDF v6.0 and later: rewrite the active sector in place with the
    /// same sequence number (only the state changes).
    #[default]
    InPlace,
    /// ESP-IDF up to v5.5 and `otatool.py`: write the same sequence number into
    /// the other sector.
    OtherSector,
}

/// Both otadata entries, as read from the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Otadata {
    /// The entries at sector 0 and sector 1.
    pub entries: [SelectEntry; 2],
}

impl Otadata {
    /// Both sectors erased: `ota_data_initial.bin`.
    pub const ERASED: Self = Self {
        entries: [SelectEntry::ERASED; 2],
    };

    /// Reads both entries from a whole otadata partition (exactly
    /// [`OTADATA_SIZE`] bytes).
    pub fn from_partition(data: &[u8]) -> Result<Self, OtadataError> {
        if data.len() != OTADATA_SIZE {
            return Err(OtadataError::WrongSize { len: data.len() });
        }
        let first = data
            .first_chunk::<ENTRY_SIZE>()
            .ok_or(OtadataError::WrongSize { len: data.len() })?;
        let second = data
            .get(SECTOR1_OFFSET..)
            .and_then(|rest| rest.first_chunk::<ENTRY_SIZE>())
            .ok_or(OtadataError::WrongSize { len: data.len() })?;
        Ok(Self::from_entries(first, second))
    }

    /// Builds from the first 32 bytes of each sector.
    pub fn from_entries(sector0: &[u8; ENTRY_SIZE], sector1: &[u8; ENTRY_SIZE]) -> Self {
        Self {
            entries: [
                SelectEntry::from_bytes(sector0),
                SelectEntry::from_bytes(sector1),
            ],
        }
    }

    /// The full partition image: each entry at the start of its sector, the
    /// rest 0xFF.
    pub fn to_partition(&self) -> [u8; OTADATA_SIZE] {
        let mut out = [0xFFu8; OTADATA_SIZE];
        out[..ENTRY_SIZE].copy_from_slice(&self.entries[0].to_bytes());
        out[SECTOR1_OFFSET..SECTOR1_OFFSET + ENTRY_SIZE]
            .copy_from_slice(&self.entries[1].to_bytes());
        out
    }

    /// Whether both entries are erased or fail their CRC: the bootloader's
    /// "initial contents" condition.
    pub fn is_initial(&self) -> bool {
        self.entries
            .iter()
            .all(|e| e.seq == SEQ_EMPTY || !e.crc_ok())
    }

    /// The active sector (`bootloader_common_get_active_otadata`): the valid
    /// entry with the larger sequence number, sector 0 on a tie. `None` when
    /// neither entry is valid.
    pub fn active(&self) -> Option<usize> {
        select(
            [self.entries[0].is_valid(), self.entries[1].is_valid()],
            &self.entries,
            true,
        )
    }

    /// The OTA slot the active entry selects among `slot_count` slots, if any.
    pub fn active_slot(&self, slot_count: u8) -> Option<u8> {
        self.active()
            .and_then(|a| self.entries.get(a))
            .and_then(|e| e.slot(slot_count))
    }
}

/// `bootloader_common_select_otadata`: among the sectors whose flag is set,
/// the one with the larger (`max`) or smaller sequence number; sector 0 on a tie.
pub fn select(flags: [bool; 2], entries: &[SelectEntry; 2], max: bool) -> Option<usize> {
    match flags {
        [true, true] => {
            let (a, b) = (entries[0].seq, entries[1].seq);
            let pick1 = if max { b > a } else { b < a };
            Some(usize::from(pick1))
        }
        [true, false] => Some(0),
        [false, true] => Some(1),
        [false, false] => None,
    }
}

/// One otadata write: erase `sector` (0 or 1) and program `entry` at its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtadataWrite {
    /// The sector to erase and program.
    pub sector: usize,
    /// The entry to program there.
    pub entry: SelectEntry,
}

impl OtadataWrite {
    /// Byte offset of the sector within the otadata partition.
    pub fn offset(&self) -> usize {
        self.sector * SECTOR1_OFFSET
    }

    /// `current` with this write applied (the result after erase + program).
    pub fn apply(&self, current: &Otadata) -> Otadata {
        let mut next = *current;
        if let Some(e) = next.entries.get_mut(self.sector) {
            *e = self.entry;
        }
        next
    }
}

/// What `esp_rewrite_ota_data` writes to select OTA slot `slot` of
/// `slot_count` contiguous slots, with the new entry in `state` (NEW when the
/// bootloader has rollback enabled, else UNDEFINED).
///
/// - No active entry: sector 0, `seq = slot + 1`.
/// - The active entry already selects `slot`: see [`SameSlotRule`].
/// - Otherwise the other sector, with the smallest `seq >= active seq` that
///   maps to `slot` (never 0: see the note on seq 0 in the code).
///
/// The label bytes of the target sector are preserved, as ESP-IDF does.
pub fn plan_set_boot(
    current: &Otadata,
    slot: u8,
    slot_count: u8,
    state: OtaState,
    rule: SameSlotRule,
) -> Result<OtadataWrite, OtadataError> {
    if slot_count == 0 || slot_count > MAX_OTA_SLOTS {
        return Err(OtadataError::BadSlotCount { slot_count });
    }
    if slot >= slot_count {
        return Err(OtadataError::SlotOutOfRange { slot, slot_count });
    }
    let n = u32::from(slot_count);
    let (sector, seq) = match current.active() {
        None => (0, u32::from(slot) + 1),
        Some(a) => {
            let active_seq = current.entries[a].seq;
            if active_seq.wrapping_sub(1) % n == u32::from(slot) {
                match rule {
                    SameSlotRule::InPlace => (a, active_seq),
                    SameSlotRule::OtherSector => (1 - a, active_seq),
                }
            } else {
                // Smallest m >= active_seq with m ≡ slot + 1 (mod n).
                // ESP-IDF can compute m = 0 here when the active entry has
                // seq 0 (valid: its CRC is 0xFFFFFFFF, as in Arduino's
                // boot_app0.bin) and the target is ota_{n-1}; seq 0 would then
                // tie with the active entry and lose, so the switch would not
                // happen. otter takes the next number of the same class, n.
                let base = (u32::from(slot) + 1) % n;
                let steps = active_seq.saturating_sub(base).div_ceil(n);
                let m = steps
                    .checked_mul(n)
                    .and_then(|k| k.checked_add(base))
                    .map(|m| if m == 0 { n } else { m })
                    .filter(|&m| m != SEQ_EMPTY)
                    .ok_or(OtadataError::SequenceExhausted)?;
                (1 - a, m)
            }
        }
    };
    let mut entry = current.entries[sector];
    entry.seq = seq;
    entry.state = state.raw();
    entry.crc = seq_crc(seq);
    Ok(OtadataWrite { sector, entry })
}

/// Errors reading or planning otadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OtadataError {
    /// The input is not an otadata partition: it must be exactly 0x2000 bytes
    /// (two 4 KiB sectors). Bad input.
    #[error(
        "otadata must be exactly 8192 bytes (two 4 KiB sectors), got {len} bytes; \
         if it was made by a text tool or download it may have been re-encoded: \
         regenerate it (an all-0xFF file of 8192 bytes selects the first app)"
    )]
    WrongSize {
        /// Length of the input.
        len: usize,
    },
    /// The table has a number of OTA slots ESP-IDF cannot use. Caller misuse.
    #[error("{slot_count} OTA slots: ESP-IDF supports 1 to 16 (ota_0 .. ota_15)")]
    BadSlotCount {
        /// The slot count given.
        slot_count: u8,
    },
    /// The requested slot does not exist. Caller misuse.
    #[error("ota_{slot} does not exist: the table has {slot_count} contiguous OTA slots (ota_0 .. ota_{last})", last = slot_count.saturating_sub(1))]
    SlotOutOfRange {
        /// The requested slot.
        slot: u8,
        /// Contiguous OTA slots in the table.
        slot_count: u8,
    },
    /// The sequence number would overflow u32. The otadata is corrupt or was
    /// written by something other than ESP-IDF.
    #[error("otadata sequence number is exhausted (near 0xFFFFFFFF): erase otadata and select the slot again")]
    SequenceExhausted,
}

#[cfg(test)]
mod tests;
