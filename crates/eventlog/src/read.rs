//! Reading a range of positions: walks the chunks that hold them, verifying every
//! record, and ends with an error at the first position that is corrupt or missing.

use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use dvk_proto::events::v1::Envelope;

use crate::tail::Tail;
use crate::{EventLog, LogError, Record, keys, record};

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

/// Records decoded per message between the reading thread and the caller.
const DECODED_BATCH: usize = 256;

/// One decoded event: its position and envelope, or the error that ends the range.
pub type Decoded = Result<(u64, Envelope), LogError>;

/// The events of a position range, read and decoded on a thread of their own so that
/// reading and decoding overlap with what the caller folds them into (a replay uses
/// both cores). In order; a missing or corrupt record ends it with its error. Dropping
/// it early stops the thread.
pub struct Replay {
    rx: Option<mpsc::Receiver<Vec<Decoded>>>,
    batch: std::vec::IntoIter<Decoded>,
    thread: Option<JoinHandle<()>>,
    /// Decoding here when no thread could be started.
    inline: Option<Records>,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay").field("threaded", &self.thread.is_some()).finish_non_exhaustive()
    }
}

fn decode(r: Result<Record, LogError>) -> Decoded {
    let r = r?;
    Ok((r.position(), r.envelope()?))
}

impl Replay {
    pub(crate) fn new(log: &EventLog, from: u64, to: u64) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Vec<Decoded>>(4);
        let records = log.read_range(from, to);
        let spawned = std::thread::Builder::new().name(format!("eventlog-replay-{}", log.source())).spawn(move || {
            let mut batch = Vec::with_capacity(DECODED_BATCH);
            for r in records {
                let d = decode(r);
                let end = d.is_err();
                batch.push(d);
                if (batch.len() == DECODED_BATCH || end)
                    && tx.send(std::mem::replace(&mut batch, Vec::with_capacity(DECODED_BATCH))).is_err()
                {
                    return;
                }
                if end {
                    return;
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
        });
        let (rx, thread, inline) = match spawned {
            Ok(thread) => (Some(rx), Some(thread), None),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a replay thread; decoding inline");
                (None, None, Some(log.read_range(from, to)))
            }
        };
        Self { rx, batch: Vec::new().into_iter(), thread, inline }
    }
}

impl Iterator for Replay {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        if let Some(records) = &mut self.inline {
            return records.next().map(decode);
        }
        loop {
            if let Some(d) = self.batch.next() {
                return Some(d);
            }
            self.batch = self.rx.as_ref()?.recv().ok()?.into_iter();
        }
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        // The thread's next send fails once the receiver is gone; then it ends.
        self.rx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
