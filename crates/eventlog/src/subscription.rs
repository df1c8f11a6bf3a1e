//! Following a log: catch up from a position, then wait for live appends.

use std::collections::VecDeque;

use tokio::sync::watch;

use crate::{EventLog, LogError, Record};

/// Records read from sled per refill; bounds the time a `next()` spends off the await.
const CHUNK: u64 = 512;

/// A cursor over the log that yields every durable event from its start position,
/// then waits for new ones. Corruption ends it with the error naming the position.
#[derive(Debug)]
pub struct Subscription {
    log: EventLog,
    next: u64,
    head: watch::Receiver<u64>,
    buffer: VecDeque<Record>,
}

impl Subscription {
    pub(crate) fn new(log: EventLog, from: u64) -> Self {
        let head = log.watch_head();
        Self { log, next: from.max(1), head, buffer: VecDeque::new() }
    }

    /// The next event, waiting for it if the subscription has caught up.
    pub async fn next(&mut self) -> Result<Record, LogError> {
        loop {
            if let Some(r) = self.try_next()? {
                return Ok(r);
            }
            self.head.changed().await.map_err(|_| LogError::Closed)?;
        }
    }

    /// The next event if one is durable now, without waiting.
    pub fn try_next(&mut self) -> Result<Option<Record>, LogError> {
        if self.buffer.is_empty() {
            let head = *self.head.borrow_and_update();
            if head >= self.next {
                let to = head.min(self.next + CHUNK - 1);
                for r in self.log.read_range(self.next, to) {
                    match r {
                        Ok(r) => {
                            self.next = r.position() + 1;
                            self.buffer.push_back(r);
                        }
                        // Deliver what came before the bad record first; the next
                        // call reads from the bad record again and returns the error.
                        Err(e) if self.buffer.is_empty() => return Err(e),
                        Err(_) => break,
                    }
                }
            }
        }
        Ok(self.buffer.pop_front())
    }
}
