//! The newest chunks, kept in memory after their flush so that the readers that follow
//! the head (projections, the relay) take them from here instead of from sled. Once a
//! log has applied a batch, every sled read takes sled's global lock, which a writer
//! holds while it applies the next batch: a reader at the head would otherwise wait
//! for the writer on every chunk. Older positions are read from sled as before.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many chunks, and how many bytes of them, the tail keeps at most.
const MAX_CHUNKS: usize = 1024;
const MAX_BYTES: usize = 16 << 20;

/// A flushed chunk: its first and last positions and its bytes (as stored).
pub(crate) type Chunk = (u64, u64, sled::IVec);

#[derive(Debug, Default)]
pub(crate) struct Tail {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Consecutive chunks, oldest first.
    chunks: VecDeque<Chunk>,
    bytes: usize,
}

impl Tail {
    /// Adds chunks flushed after every chunk held (called before the durable head
    /// moves past them).
    pub(crate) fn extend(&self, chunks: impl IntoIterator<Item = Chunk>) {
        let mut t = self.inner.lock().expect("lock");
        for c in chunks {
            if t.chunks.back().is_some_and(|(_, last, _)| c.0 != last + 1) {
                // Not consecutive (cannot happen with one writer): start again.
                t.chunks.clear();
                t.bytes = 0;
            }
            t.bytes += c.2.len();
            t.chunks.push_back(c);
        }
        while t.chunks.len() > MAX_CHUNKS || t.bytes > MAX_BYTES {
            let Some((_, _, old)) = t.chunks.pop_front() else { break };
            t.bytes -= old.len();
        }
    }

    /// The chunk holding `position`, if the tail still has it: (first position, bytes).
    pub(crate) fn find(&self, position: u64) -> Option<(u64, sled::IVec)> {
        let t = self.inner.lock().expect("lock");
        let i = t.chunks.partition_point(|(first, _, _)| *first <= position);
        let (first, last, bytes) = t.chunks.get(i.checked_sub(1)?)?;
        (position <= *last).then(|| (*first, bytes.clone()))
    }

    /// Forgets every chunk (so that reads go to sled).
    #[cfg(any(test, feature = "fault-injection"))]
    pub(crate) fn clear(&self) {
        let mut t = self.inner.lock().expect("lock");
        t.chunks.clear();
        t.bytes = 0;
    }
}
