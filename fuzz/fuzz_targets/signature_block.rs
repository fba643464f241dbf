//! Secure Boot signature blocks: any bytes parse or fail cleanly; the
//! slice and streaming verifiers agree on any input split anywhere; a block
//! the parser accepts reports a key digest over its own key bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_format::secure_boot::{
    block_crc, parse_sector, parse_v1, verify_v2, SignatureBlock, Slot, StreamVerifier,
    TrustedKeys, BLOCK_CRC_OFFSET, BLOCK_LEN,
};

fuzz_target!(|data: &[u8]| {
    let Some((ctl, rest)) = data.split_first_chunk::<4>() else { return };
    // The image length: small, so the sector lands inside the input.
    let image_len = u32::from(u16::from_le_bytes([ctl[0], ctl[1]])) % 0x3000;
    let split = usize::from(u16::from_le_bytes([ctl[2], ctl[3] & 0x7F])) % (rest.len() + 1);
    // With the top control bit, give the first block a valid magic and CRC,
    // so the fuzzer reaches the key and signature code at once.
    let mut owned = rest.to_vec();
    if ctl[3] & 0x80 != 0 {
        let at = usize::try_from(otter_format::secure_boot::signed_len(image_len)).unwrap_or(0);
        if let Some(b) = owned.get_mut(at..at + BLOCK_LEN) {
            b[0] = otter_format::secure_boot::BLOCK_MAGIC;
            let crc = block_crc(&b[..BLOCK_CRC_OFFSET]);
            b[BLOCK_CRC_OFFSET..BLOCK_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let rest = owned.as_slice();

    let _ = parse_v1(rest, image_len);
    if let Ok(slots) = parse_sector(rest, 0) {
        for s in slots {
            if let Slot::Block(b) = s {
                assert_eq!(b.as_bytes().len(), BLOCK_LEN);
                let _ = (b.key(), b.signature(), b.image_digest(), b.key_digest());
            }
        }
    }
    let _ = SignatureBlock::parse(rest, 0, 0);

    // Trust whatever key the first block carries, so the crypto runs too.
    let at = usize::try_from(otter_format::secure_boot::signed_len(image_len)).unwrap_or(0);
    let digest = rest
        .get(at..)
        .and_then(|s| SignatureBlock::parse(s, 0, at as u64).ok())
        .map_or([0u8; 32], |b| b.key_digest());
    let d = [digest];
    let trust = TrustedKeys::new(&d);
    let whole = verify_v2(rest, image_len, &trust);
    let mut v = StreamVerifier::new(image_len);
    v.update(&rest[..split]);
    v.update(&rest[split..]);
    let streamed = v.finish(&trust);
    match (&whole, &streamed) {
        // The slice verifier looks further for a misplaced block.
        (Err(otter_format::secure_boot::SignatureError::MisplacedBlock { .. }), Err(_)) => {}
        _ => assert_eq!(whole, streamed),
    }
});
