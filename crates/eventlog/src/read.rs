//! Reading a range of positions: walks the chunks that hold them, verifying every
//! record, and ends with an error at the first position that is corrupt or missing.

use std::sync::Arc;

use crate::tail::Tail;
use crate::{LogError, Record, keys, record};

/// The records of a position range, in order (see `EventLog::read_range`).
pub struct Records {
    log: sled::Tree,
    tail: Arc<Tail>,
    chunks: Option<sled::Iter>,
    /// The next position to yield.
    expect: u64,
    to: u64,
    /// The chunk being read: its bytes, the position and byte offset of its next record.
    chunk: Option<(sled::IVec, u64, usize)>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records").field("next", &self.expect).field("to", &self.to).finish_non_exhaustive()
    }
}

impl Records {
    pub(crate) fn new(log: sled::Tree, tail: Arc<Tail>, from: u64, to: u64) -> Self {
        Self { log, tail, chunks: None, expect: from, to, chunk: None }
    }

    /// Ends the iteration with `e`.
    fn fail(&mut self, e: LogError) -> Option<Result<Record, LogError>> {
        self.expect = u64::MAX;
        self.to = 0;
        Some(Err(e))
    }

    fn missing(&mut self) -> Option<Result<Record, LogError>> {
        let position = self.expect;
        self.fail(LogError::Corrupt { position, reason: "missing below the durable head".into() })
    }
}

impl Iterator for Records {
    type Item = Result<Record, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.expect > self.to {
                return None;
            }
            if let Some((chunk, position, at)) = &mut self.chunk {
                if *at < chunk.len() {
                    let p = *position;
                    match record::parse_record(chunk, *at, p) {
                        Ok((offset, len)) => {
                            *at = offset + len;
                            *position += 1;
                            if p < self.expect {
                                continue;
                            }
                            self.expect += 1;
                            return Some(Ok(Record { position: p, chunk: chunk.clone(), offset, len }));
                        }
                        Err(e) => return self.fail(e),
                    }
                }
                self.chunk = None;
            }
            // The newest chunks are in memory; the sled iterator, if any, is then
            // behind and is started again where it is needed.
            if let Some((first, bytes)) = self.tail.find(self.expect) {
                match record::chunk_start(first, &bytes) {
                    Ok(at) => self.chunk = Some((bytes, first, at)),
                    Err(e) => return self.fail(e),
                }
                self.chunks = None;
                continue;
            }
            let (log, expect, to) = (&self.log, self.expect, self.to);
            let chunks = self.chunks.get_or_insert_with(|| {
                // The chunk holding `expect` is the last one starting at or before it.
                let start = match log.range(..=keys::event(expect)).next_back() {
                    Some(Ok((k, _))) if keys::position_of_event_key(&k).is_some() => k,
                    _ => keys::event(expect).as_slice().into(),
                };
                log.range(start..=keys::event(to).as_slice().into())
            });
            match chunks.next() {
                None => return self.missing(),
                Some(Err(e)) => return self.fail(e.into()),
                Some(Ok((k, v))) => {
                    let Some(first) = keys::position_of_event_key(&k) else {
                        return self.missing();
                    };
                    if first > self.expect {
                        return self.missing();
                    }
                    match record::chunk_start(first, &v) {
                        Ok(at) => self.chunk = Some((v, first, at)),
                        Err(e) => return self.fail(e),
                    }
                }
            }
        }
    }
}
