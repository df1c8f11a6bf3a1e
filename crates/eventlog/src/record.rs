//! The stored form of one event: a format byte, a CRC-32 over the position and the
//! payload, then the encoded `Envelope`. Binding the position into the checksum means
//! a record copied to the wrong key is detected as well as a flipped byte.

use crate::LogError;

const FORMAT_V1: u8 = 1;
const HEADER: usize = 5;

pub(crate) fn checksum(position: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&position.to_be_bytes());
    h.update(payload);
    h.finalize()
}

pub(crate) fn encode(position: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + payload.len());
    v.push(FORMAT_V1);
    v.extend_from_slice(&checksum(position, payload).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// Checks a stored value and returns the offset of its payload.
pub(crate) fn verify(position: u64, value: &[u8]) -> Result<usize, LogError> {
    let corrupt = |reason: String| LogError::Corrupt { position, reason };
    if value.len() < HEADER {
        return Err(corrupt(format!(
            "record of {} bytes is shorter than its header",
            value.len()
        )));
    }
    if value[0] != FORMAT_V1 {
        return Err(corrupt(format!("unknown record format {}", value[0])));
    }
    let stored = u32::from_le_bytes(value[1..HEADER].try_into().expect("4 bytes"));
    let actual = checksum(position, &value[HEADER..]);
    if stored != actual {
        return Err(corrupt(format!(
            "checksum {actual:08x} does not match the stored {stored:08x}"
        )));
    }
    Ok(HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_single_byte_flip_is_detected(payload in proptest::collection::vec(any::<u8>(), 0..600), at in any::<usize>(), bit in 0u8..8) {
            let mut rec = encode(42, &payload);
            prop_assert_eq!(verify(42, &rec).unwrap(), HEADER);
            let i = at % rec.len();
            rec[i] ^= 1 << bit;
            prop_assert!(verify(42, &rec).is_err());
        }

        #[test]
        fn a_record_under_another_position_is_detected(payload in proptest::collection::vec(any::<u8>(), 0..64), p in 1u64..u64::MAX) {
            let rec = encode(p, &payload);
            prop_assert!(verify(p - 1, &rec).is_err());
        }
    }
}
