//! Uploads: beginning, feeding and finishing a firmware or web-UI upload,
//! and the record of a failed one.

use super::*;
use crate::decode::{Decoder, DecoderRam, Encoding};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::service) enum Sink {
    Firmware,
    Www,
}

pub(in crate::service) enum Done {
    Firmware {
        slot: SlotId,
        version: Option<Text32>,
        project: Option<Text32>,
        bytes: u64,
        encoding: Encoding,
    },
    Www(crate::www::WwwDone),
}

pub(in crate::service) fn kind_of(sink: Sink) -> UpdateKind {
    match sink {
        Sink::Firmware => UpdateKind::Firmware,
        Sink::Www => UpdateKind::Www,
    }
}

pub(in crate::service) fn dev_fail(
    dev: &mut Device,
    sink: Sink,
    protocol: Protocol,
    e: &DeviceError,
    received: u64,
    total: Option<u64>,
    now: u64,
) {
    let encoding = match &dev.upload {
        Upload::Firmware { decoder, .. } => Some(decoder.encoding()),
        _ => dev
            .last_update
            .as_ref()
            .filter(|r| r.result == UpdateResult::InProgress)
            .and_then(|r| r.encoding),
    };
    dev.upload = Upload::Idle;
    let result = match e {
        // A malformed body (a broken form, a bad chunk) is the client's
        // request refused, not a connection lost.
        DeviceError::Aborted { .. } | DeviceError::Timeout(_) => UpdateResult::Aborted,
        DeviceError::Flash(_) | DeviceError::Nvs => UpdateResult::Failed,
        _ => UpdateResult::Rejected,
    };
    let (slot, www_slot) = match dev.last_update.as_ref() {
        Some(r) if r.result == UpdateResult::InProgress => (r.slot, r.www_slot),
        _ => (None, None),
    };
    dev.record(LastUpdate {
        result,
        error: Some(e.clone()),
        kind: kind_of(sink),
        protocol,
        slot,
        www_slot,
        version: None,
        received,
        total,
        encoding,
        boot: dev.boot_count,
        at: now,
    });
}

#[allow(clippy::too_many_arguments)]
pub(in crate::service) fn begin_firmware<F: NorFlash>(
    dev: &mut Device,
    flash: &mut F,
    running: SlotId,
    size: Option<u64>,
    announced: Option<u64>,
    expected: Option<[u8; 32]>,
    encoding: Encoding,
    ram: &mut DecoderRam<'_>,
) -> Result<Upload, DeviceError> {
    // An encoded transfer's length is not the image's: the session learns
    // the image's size from its header as the decoder produces it.
    let plain = matches!(encoding, Encoding::Identity | Encoding::Sniff);
    let size = if plain { size } else { None };
    let size32 = match size {
        Some(n) => Some(u32::try_from(n).map_err(|_| DeviceError::TooLarge {
            needed: n,
            capacity: 0,
        })?),
        None => None,
    };
    let session = UpdateSession::begin(
        flash,
        &dev.opts.cfg,
        running,
        UpdateRequest::new(size32, expected),
    )
    .map_err(|e| DeviceError::from_ota(&e))?;
    let capacity = session.region().size;
    if let (false, Some(n)) = (plain, announced) {
        // A compressed image or a patch larger than the slot cannot
        // decode to an image that fits (nor is it worth sending).
        if n > u64::from(capacity) {
            return Err(DeviceError::TooLarge {
                needed: n,
                capacity,
            });
        }
    }
    let decoder = if encoding == Encoding::Identity {
        Decoder::identity()
    } else {
        let base = otter_ota::SlotMap::read(flash, dev.opts.cfg.table_offset)
            .map_err(|e| DeviceError::from_ota(&e))?
            .region(running)
            .copied();
        Decoder::begin(encoding, ram, base, dev.opts.cfg.chip, u64::from(capacity))?
    };
    Ok(Upload::Firmware { session, decoder })
}

pub(crate) fn begin_www<F: NorFlash, P: Platform<F>>(
    dev: &mut Device,
    flash: &mut F,
    platform: &mut P,
    size: Option<u64>,
    _announced: Option<u64>,
    expected: Option<[u8; 32]>,
) -> Result<Upload, DeviceError> {
    let www = dev.www.ok_or(DeviceError::NoWwwSlot)?;
    let target = match www.active {
        Some(a) => 1 - a.min(1),
        None => 1 - www.selected.min(1),
    };
    let region = *www
        .slots
        .get(usize::from(target))
        .ok_or(DeviceError::NoWwwSlot)?;
    let upload = WwwUpload::begin(flash, platform, target, region, size, expected)?;
    Ok(Upload::Www { upload })
}

#[allow(clippy::too_many_arguments)]
pub(super) fn feed_upload<F: NorFlash>(
    dev: &mut Device,
    flash: &mut F,
    ram: &mut DecoderRam<'_>,
    _sink: Sink,
    body: &mut BodyReader,
    multipart: Option<&mut Multipart>,
    input: &[u8],
    now: u64,
) -> Result<usize, (usize, DeviceError)> {
    let upload = &mut dev.upload;
    let mut write = |data: &[u8]| write_upload(upload, flash, ram, data);
    let r = match multipart {
        Some(m) => {
            let mut to_mp = |data: &[u8]| m.feed(data, &mut write);
            body.feed(input, &mut to_mp)
        }
        None => body.feed(input, &mut write),
    };
    let _ = now;
    r
}

/// Writes the next bytes of `upload`: the one write path of every
/// protocol (the session refuses a bad header, trailing data and the rest
/// as the bytes arrive).
pub(in crate::service) fn write_upload<F: NorFlash>(
    upload: &mut Upload,
    flash: &mut F,
    ram: &mut DecoderRam<'_>,
    data: &[u8],
) -> Result<(), DeviceError> {
    match upload {
        Upload::Firmware { session, decoder } => decoder.write(ram, flash, session, data),
        Upload::Www { upload, .. } => upload.write(flash, data),
        Upload::Idle | Upload::External { .. } => Err(DeviceError::Busy),
    }
}

/// Finishes a firmware upload: the decoder's end checks (gzip trailer,
/// every byte a patch declares), then the session's verification, then
/// the boot-slot switch.
pub(in crate::service) fn finish_firmware<F: NorFlash>(
    flash: &mut F,
    session: UpdateSession,
    decoder: &Decoder,
    ram: &DecoderRam<'_>,
) -> Result<Done, DeviceError> {
    decoder.finish(ram)?;
    let encoding = decoder.encoding();
    let received = session.received();
    let verified = session
        .finish(flash)
        .map_err(|e| DeviceError::from_ota(&e))?;
    let desc = verified.image().app_desc.as_ref();
    let version = desc.map(|d| Text32::of(d.version()));
    let project = desc.map(|d| Text32::of(d.project_name()));
    let slot = verified
        .activate(flash)
        .map_err(|e| DeviceError::from_ota(&e))?;
    Ok(Done::Firmware {
        slot,
        version,
        project,
        bytes: u64::from(received),
        encoding,
    })
}
