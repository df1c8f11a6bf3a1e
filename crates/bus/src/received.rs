//! What a consumer has received from one source: every position up to a watermark,
//! plus the positions above it that arrived early (partitions interleave). A position
//! already in the set is a duplicate.

use std::collections::BTreeSet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// Every position ≤ watermark has been received.
    watermark: u64,
    above: BTreeSet<u64>,
}

impl Received {
    pub fn watermark(&self) -> u64 {
        self.watermark
    }

    pub fn contains(&self, position: u64) -> bool {
        position <= self.watermark || self.above.contains(&position)
    }

    /// Records `position`; false if it was already received.
    pub fn insert(&mut self, position: u64) -> bool {
        if self.contains(position) {
            return false;
        }
        self.above.insert(position);
        while self.above.remove(&(self.watermark + 1)) {
            self.watermark += 1;
        }
        true
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + 8 * self.above.len());
        v.extend_from_slice(&self.watermark.to_be_bytes());
        for p in &self.above {
            v.extend_from_slice(&p.to_be_bytes());
        }
        v
    }

    pub fn decode(v: &[u8]) -> Option<Self> {
        if v.len() % 8 != 0 || v.is_empty() {
            return None;
        }
        let mut it = v.chunks_exact(8).map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")));
        let watermark = it.next()?;
        Some(Self { watermark, above: it.collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_moves_over_contiguous_positions_only() {
        let mut r = Received::default();
        assert!(r.insert(2));
        assert_eq!(r.watermark(), 0);
        assert!(r.insert(1));
        assert_eq!(r.watermark(), 2);
        assert!(!r.insert(1) && !r.insert(2));
        assert!(r.insert(5));
        assert!(!r.insert(5));
        assert_eq!(r.watermark(), 2);
        assert_eq!(Received::decode(&r.encode()), Some(r));
    }
}
