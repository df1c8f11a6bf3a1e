//! What the projection has folded in, per source: the positions (read-your-writes
//! tokens are answered from them) and the latest time recorded (`as_of` by time).

use std::collections::BTreeSet;

use super::State;

/// Which positions of a source the projection has folded in: every position ≤
/// `watermark`, and the early ones above it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub watermark: u64,
    pub above: BTreeSet<u64>,
}

impl Seen {
    pub fn insert(&mut self, position: u64) {
        if position <= self.watermark {
            return;
        }
        if position == self.watermark + 1 && self.above.is_empty() {
            // In order, as a partition delivers: nothing to join up.
            self.watermark = position;
            return;
        }
        self.above.insert(position);
        while self.above.remove(&(self.watermark + 1)) {
            self.watermark += 1;
        }
    }

    /// Whether every position up to `position` has been seen: what a read-your-writes
    /// token asks for (a caller's earlier writes may travel in other partitions and
    /// arrive after its last one).
    pub fn reached(&self, position: u64) -> bool {
        position <= self.watermark
    }
}

impl State {
    /// Notes an event at `position` of this log, from `source` at `source_position`
    /// (read-your-writes and time travel count it even if it does not decode).
    pub(super) fn saw(
        &mut self,
        position: u64,
        source: &str,
        source_position: u64,
        recorded_at: Option<prost_types::Timestamp>,
    ) {
        self.position = position;
        self.events += 1;
        if source.is_empty() {
            return;
        }
        // Looked up before inserting: the source's name is copied only the first time.
        match self.seen.get_mut(source) {
            Some(seen) => seen.insert(source_position),
            None => self.seen.entry(source.to_owned()).or_default().insert(source_position),
        }
        if let Some(t) = recorded_at {
            match self.latest_time.get_mut(source) {
                Some(latest) => *latest = (*latest).max(t.seconds),
                None => {
                    self.latest_time.insert(source.to_owned(), t.seconds);
                }
            }
        }
    }
}
