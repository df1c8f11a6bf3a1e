//! The ingestor: appends what a source yields to the consuming service's log,
//! effectively once. Duplicates (by source and source position) are dropped; the
//! source's progress and the received sets are written in the same atomic batch as
//! the events, so a crash at any point neither loses nor repeats an event.

use std::collections::HashMap;

use dvk_eventlog::{AppendRequest, EventLog, ExpectedVersion};
use tokio::sync::watch;

use crate::received::Received;
use crate::{BusError, EventSource, Item, SourceBatch};

const RECEIVED_PREFIX: &[u8] = b"received/";
/// The stream of the consuming log that holds received events.
pub const INBOX_STREAM: &str = "inbox";

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestReport {
    pub appended: u64,
    pub duplicates: u64,
    pub malformed: u64,
}

/// Per source: the highest position P such that every position ≤ P is in the log.
pub type Watermarks = HashMap<String, u64>;

#[derive(Debug)]
pub struct Ingestor {
    log: EventLog,
    received: HashMap<String, Received>,
    watermarks: watch::Sender<Watermarks>,
    totals: IngestReport,
}

fn received_key(source: &str) -> Vec<u8> {
    [RECEIVED_PREFIX, source.as_bytes()].concat()
}

impl Ingestor {
    /// An ingestor for `log`, knowing what `sources` already delivered.
    pub fn new(log: EventLog, sources: &[&str]) -> Result<Self, BusError> {
        let mut received = HashMap::new();
        for s in sources {
            let r = match log.meta(&received_key(s))? {
                Some(v) => Received::decode(&v)
                    .ok_or_else(|| BusError::Config(format!("stored received set of {s} is malformed")))?,
                None => Received::default(),
            };
            received.insert((*s).to_owned(), r);
        }
        let marks = received.iter().map(|(k, v)| (k.clone(), v.watermark())).collect();
        let (watermarks, _) = watch::channel(marks);
        Ok(Self { log, received, watermarks, totals: IngestReport::default() })
    }

    /// Watches the per-source watermarks (for read-your-writes).
    pub fn watermarks(&self) -> watch::Receiver<Watermarks> {
        self.watermarks.subscribe()
    }

    pub fn totals(&self) -> IngestReport {
        self.totals
    }

    /// Appends one batch; returns what it did.
    pub async fn ingest(&mut self, batch: SourceBatch) -> Result<IngestReport, BusError> {
        let mut report = IngestReport::default();
        let mut touched: HashMap<String, Received> = HashMap::new();
        let mut events = Vec::new();
        for item in batch.items {
            match item {
                Item::Malformed { origin, reason } => {
                    tracing::warn!(%origin, %reason, "malformed message skipped");
                    report.malformed += 1;
                }
                Item::Event(env) => {
                    if env.source.is_empty() || env.source_position == 0 {
                        tracing::warn!(stream = %env.stream_id, "event without a source position skipped");
                        report.malformed += 1;
                        continue;
                    }
                    let set = touched
                        .entry(env.source.clone())
                        .or_insert_with(|| self.received.get(&env.source).cloned().unwrap_or_default());
                    if set.insert(env.source_position) {
                        events.push(env);
                    } else {
                        report.duplicates += 1;
                    }
                }
            }
        }
        let mut meta: Vec<(Vec<u8>, Option<Vec<u8>>)> = batch.progress.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for (source, set) in &touched {
            meta.push((received_key(source), Some(set.encode())));
        }
        report.appended = events.len() as u64;
        if !events.is_empty() {
            let request = AppendRequest { meta, ..AppendRequest::new(INBOX_STREAM, ExpectedVersion::Any, events) };
            self.log.append(request).await?;
        } else if !meta.is_empty() {
            self.log.put_meta(meta).await?;
        }
        // Durable: now the in-memory view may move.
        for (source, set) in touched {
            self.received.insert(source, set);
        }
        let marks: Watermarks = self.received.iter().map(|(k, v)| (k.clone(), v.watermark())).collect();
        self.watermarks.send_if_modified(|w| {
            let changed = *w != marks;
            *w = marks;
            changed
        });
        self.totals.appended += report.appended;
        self.totals.duplicates += report.duplicates;
        self.totals.malformed += report.malformed;
        Ok(report)
    }

    /// Ingests from `source` until `stop` turns true or the source fails.
    pub async fn run(
        mut self,
        mut source: impl EventSource,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Self, BusError> {
        loop {
            let batch = tokio::select! {
                b = source.next_batch() => b?,
                () = crate::stopped(&mut stop) => return Ok(self),
            };
            self.ingest(batch).await?;
        }
    }
}
