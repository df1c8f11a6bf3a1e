//! The key layout of the log tree. Everything an append writes lives in one sled tree
//! so that one atomic batch covers the events, the stream index, the request id and
//! any metadata (cursors, consumed offsets) written with them.
//!
//! - `E` position(u64 BE)                          → record (see `record.rs`)
//! - `V` len(u16 BE) stream version(u64 BE)        → position (u64 BE)
//! - `R` request id                                → receipt (see `Receipt::encode`)
//! - `M` key                                       → caller-defined metadata

pub(crate) const EVENT: u8 = b'E';
pub(crate) const VERSION: u8 = b'V';
pub(crate) const REQUEST: u8 = b'R';
pub(crate) const META: u8 = b'M';

/// Metadata key of the count of events this log originated (its own sequence).
pub(crate) const OWN_SEQUENCE: &[u8] = b"eventlog/own-sequence";

pub(crate) fn event(position: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = EVENT;
    k[1..].copy_from_slice(&position.to_be_bytes());
    k
}

pub(crate) fn position_of_event_key(key: &[u8]) -> Option<u64> {
    (key.len() == 9 && key[0] == EVENT).then(|| u64::from_be_bytes(key[1..9].try_into().expect("8 bytes")))
}

/// The prefix of every version key of `stream`.
pub(crate) fn version_prefix(stream: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + stream.len() + 8);
    k.push(VERSION);
    k.extend_from_slice(&(stream.len() as u16).to_be_bytes());
    k.extend_from_slice(stream.as_bytes());
    k
}

pub(crate) fn version(stream: &str, version: u64) -> Vec<u8> {
    let mut k = version_prefix(stream);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

pub(crate) fn request(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(REQUEST);
    k.extend_from_slice(id.as_bytes());
    k
}

pub(crate) fn meta(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(META);
    k.extend_from_slice(key);
    k
}

pub(crate) fn u64_value(v: &[u8]) -> Option<u64> {
    v.try_into().ok().map(u64::from_be_bytes)
}

/// A stream's version: the version of its last indexed event (0 if none). The index
/// keys sort by version, so the last key under the stream's prefix is the head.
pub(crate) fn stream_version(log: &sled::Tree, stream: &str) -> Result<u64, crate::LogError> {
    let prefix = version_prefix(stream);
    match log.scan_prefix(&prefix).next_back() {
        None => Ok(0),
        Some(entry) => {
            let (k, _) = entry?;
            k.get(prefix.len()..).and_then(u64_value).ok_or_else(|| crate::LogError::Corrupt {
                position: 0,
                reason: format!("stream index of {stream} holds a malformed key"),
            })
        }
    }
}
