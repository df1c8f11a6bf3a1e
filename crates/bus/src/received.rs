//! What a consumer has received from one source, for the read-your-writes watermark:
//! every position up to `watermark`, plus the positions above it that arrived early
//! (partitions interleave), each with where it landed in the consuming log.
//!
//! Only the watermark and the log position from which the early arrivals can be found
//! again are stored (16 bytes); on start the early arrivals are re-read from the log.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// Every position ≤ watermark has been received.
    watermark: u64,
    /// Early arrivals: source position → position in the consuming log.
    above: BTreeMap<u64, u64>,
}

impl Received {
    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    /// Records `position` (stored at `log_position` of the consuming log).
    pub fn insert(&mut self, position: u64, log_position: u64) {
        if position <= self.watermark {
            return;
        }
        self.above.insert(position, log_position);
        while self.above.remove(&(self.watermark + 1)).is_some() {
            self.watermark += 1;
        }
    }

    /// The consuming-log position from which every early arrival can be re-read.
    pub fn rescan_from(&self) -> Option<u64> {
        self.above.values().min().copied()
    }

    /// The stored form: watermark, and where to rescan from (0: nothing to rescan).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.watermark.to_be_bytes().to_vec();
        v.extend_from_slice(&self.rescan_from().unwrap_or(0).to_be_bytes());
        v
    }

    /// The watermark and the rescan position from the stored form.
    pub fn decode(v: &[u8]) -> Option<(u64, u64)> {
        let w = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
        let q = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
        Some((w, q))
    }

    pub fn with_watermark(watermark: u64) -> Self {
        Self { watermark, above: BTreeMap::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_moves_over_contiguous_positions_only() {
        let mut r = Received::default();
        r.insert(2, 10);
        assert_eq!((r.watermark(), r.rescan_from()), (0, Some(10)));
        r.insert(1, 11);
        assert_eq!((r.watermark(), r.rescan_from()), (2, None));
        r.insert(5, 12);
        r.insert(4, 13);
        assert_eq!((r.watermark(), r.rescan_from()), (2, Some(12)));
        assert_eq!(Received::decode(&r.encode()), Some((2, 12)));
    }
}
