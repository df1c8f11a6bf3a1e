//! The stored form of events. Consecutive events are stored together in a *chunk*,
//! one sled value under the position of its first event, so that a replay pays sled's
//! per-entry cost once per chunk rather than once per event:
//!
//! ```text
//! chunk  = format:u8 (=2) record*
//! record = len:u32 LE  crc:u32 LE  payload[len]      (payload: an encoded Envelope)
//! ```
//!
//! The CRC-32 of each record covers its position and its payload, so a flipped byte, a
//! truncated record and a record that moved to another position are all detected and
//! reported with the position at fault.

use crate::LogError;

const FORMAT_CHUNK: u8 = 2;
const RECORD_HEADER: usize = 8;

/// A chunk is closed once it holds this many bytes (it may hold one larger event).
/// sled splits a leaf above 16 entries and writes a leaf larger than 128 KiB to a
/// separate blob file on every rewrite, which costs far more than the entries it
/// saves: at 8 KiB a leaf of chunks stays inline, and a chunk still holds about a
/// dozen typical events.
pub(crate) const CHUNK_TARGET_BYTES: usize = 8 * 1024;

pub(crate) fn checksum(position: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&position.to_be_bytes());
    h.update(payload);
    h.finalize()
}

/// Builds chunks: records are appended at consecutive positions.
#[derive(Debug)]
pub(crate) struct ChunkBuilder {
    pub(crate) first: u64,
    pub(crate) count: u64,
    pub(crate) bytes: Vec<u8>,
}

impl ChunkBuilder {
    pub(crate) fn new(first: u64) -> Self {
        let mut bytes = Vec::with_capacity(1024);
        bytes.push(FORMAT_CHUNK);
        Self { first, count: 0, bytes }
    }

    #[cfg(test)]
    pub(crate) fn push(&mut self, payload: &[u8]) {
        self.push_encoded(|buf| buf.extend_from_slice(payload));
    }

    /// Appends the record that `encode` writes (straight into the chunk, no copy).
    pub(crate) fn push_encoded(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        let position = self.first + self.count;
        let header = self.bytes.len();
        self.bytes.extend_from_slice(&[0; RECORD_HEADER]);
        encode(&mut self.bytes);
        let payload = &self.bytes[header + RECORD_HEADER..];
        let len = (payload.len() as u32).to_le_bytes();
        let crc = checksum(position, payload).to_le_bytes();
        self.bytes[header..header + 4].copy_from_slice(&len);
        self.bytes[header + 4..header + 8].copy_from_slice(&crc);
        self.count += 1;
    }

    pub(crate) fn is_full(&self) -> bool {
        self.bytes.len() >= CHUNK_TARGET_BYTES
    }
}

/// Checks a stored chunk's format byte; returns the offset of its first record.
pub(crate) fn chunk_start(first: u64, value: &[u8]) -> Result<usize, LogError> {
    match value.first() {
        Some(&FORMAT_CHUNK) => Ok(1),
        Some(other) => Err(LogError::Corrupt { position: first, reason: format!("unknown chunk format {other}") }),
        None => Err(LogError::Corrupt { position: first, reason: "empty chunk".into() }),
    }
}

/// Verifies the record at byte `at` of a chunk, expected to hold `position`; returns
/// the offset and length of its payload.
pub(crate) fn parse_record(value: &[u8], at: usize, position: u64) -> Result<(usize, usize), LogError> {
    let corrupt = |reason: String| LogError::Corrupt { position, reason };
    let rest = &value[at..];
    if rest.len() < RECORD_HEADER {
        return Err(corrupt(format!("truncated record header ({} bytes)", rest.len())));
    }
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    let stored = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    let Some(payload) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
        return Err(corrupt(format!("record of {len} bytes overruns its chunk")));
    };
    let actual = checksum(position, payload);
    if actual != stored {
        return Err(corrupt(format!("checksum {actual:08x} does not match the stored {stored:08x}")));
    }
    Ok((at + RECORD_HEADER, len))
}

/// The last position held by a stored chunk, every record verified.
pub(crate) fn last_position(first: u64, value: &[u8]) -> Result<u64, LogError> {
    let mut at = chunk_start(first, value)?;
    let mut position = first;
    while at < value.len() {
        let (offset, len) = parse_record(value, at, position)?;
        at = offset + len;
        position += 1;
    }
    Ok(position - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8)
    }

    fn read(first: u64, value: &[u8]) -> Vec<Result<(u64, Vec<u8>), u64>> {
        let mut at = match chunk_start(first, value) {
            Ok(at) => at,
            Err(LogError::Corrupt { position, .. }) => return vec![Err(position)],
            Err(e) => panic!("{e}"),
        };
        let mut out = Vec::new();
        let mut position = first;
        while at < value.len() {
            match parse_record(value, at, position) {
                Ok((offset, len)) => out.push(Ok((position, value[offset..offset + len].to_vec()))),
                Err(LogError::Corrupt { position, .. }) => {
                    out.push(Err(position));
                    break;
                }
                Err(e) => panic!("{e}"),
            }
            let (offset, len) = parse_record(value, at, position).unwrap();
            at = offset + len;
            position += 1;
        }
        out
    }

    proptest! {
        #[test]
        fn chunks_read_back_what_was_written(first in 1u64..1_000_000, ps in payloads()) {
            let mut b = ChunkBuilder::new(first);
            for p in &ps { b.push(p); }
            let got = read(first, &b.bytes);
            let want: Vec<_> = ps.iter().enumerate().map(|(i, p)| Ok((first + i as u64, p.clone()))).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn every_bit_flip_is_detected_at_a_position_of_the_chunk(ps in payloads(), at in any::<usize>(), bit in 0u8..8) {
            let mut b = ChunkBuilder::new(10);
            for p in &ps { b.push(p); }
            let mut bytes = b.bytes.clone();
            let i = at % bytes.len();
            bytes[i] ^= 1 << bit;
            let got = read(10, &bytes);
            let last = 10 + ps.len() as u64 - 1;
            // Either an error at a position of this chunk, or (a length flipped so the
            // record ends early and the rest fails) never a clean, complete read.
            let clean = got.iter().all(Result::is_ok) && got.len() == ps.len();
            prop_assert!(!clean, "flip at {} went unnoticed", i);
            if let Some(Err(p)) = got.iter().find(|r| r.is_err()) {
                prop_assert!((10..=last).contains(p));
            }
        }

        #[test]
        fn a_chunk_read_under_another_position_fails(ps in payloads(), first in 2u64..1000) {
            let mut b = ChunkBuilder::new(first);
            for p in &ps { b.push(p); }
            prop_assert_eq!(read(first - 1, &b.bytes)[0].clone(), Err(first - 1));
        }
    }
}
