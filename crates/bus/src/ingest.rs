//! The ingestor: appends what a source yields to the consuming service's log,
//! effectively once.
//!
//! - A stream's events travel in order (one Kafka partition per key; a log in order),
//!   so an event is a duplicate exactly when its source position is not above the last
//!   one received for its stream. The last position of every stream touched, the
//!   source's progress (offsets) and the watermark are written in the **same atomic
//!   batch** as the events: a crash at any point neither loses nor repeats an event.
//! - The watermark per source (every position ≤ it received) serves read-your-writes.

use std::collections::{HashMap, HashSet};

use dvk_eventlog::{AppendRequest, EventLog, ExpectedVersion};
use tokio::sync::watch;

use crate::received::Received;
use crate::{BusError, EventSource, Item, SourceBatch};

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
    /// Last source position received per (source, stream); filled from the log on demand.
    last: HashMap<(String, String), u64>,
    watermarks: watch::Sender<Watermarks>,
    totals: IngestReport,
}

fn received_key(source: &str) -> Vec<u8> {
    format!("received/{source}").into_bytes()
}

fn last_key(source: &str, stream: &str) -> Vec<u8> {
    format!("last/{source}/{stream}").into_bytes()
}

impl Ingestor {
    /// An ingestor for `log`, knowing what `sources` already delivered.
    pub fn new(log: EventLog, sources: &[&str]) -> Result<Self, BusError> {
        let mut received = HashMap::new();
        for s in sources {
            let r = match log.meta(&received_key(s))? {
                None => Received::default(),
                Some(v) => {
                    let (watermark, rescan) = Received::decode(&v)
                        .ok_or_else(|| BusError::Config(format!("stored watermark of {s} is malformed")))?;
                    let mut r = Received::with_watermark(watermark);
                    if rescan > 0 {
                        // Early arrivals above the watermark are re-read from the log.
                        for record in log.read_all(rescan) {
                            let record = record?;
                            let env = record.envelope()?;
                            if env.source == *s {
                                r.insert(env.source_position, record.position());
                            }
                        }
                    }
                    r
                }
            };
            received.insert((*s).to_owned(), r);
        }
        let marks = received.iter().map(|(k, v)| (k.clone(), v.watermark())).collect();
        let (watermarks, _) = watch::channel(marks);
        Ok(Self { log, received, last: HashMap::new(), watermarks, totals: IngestReport::default() })
    }

    /// Watches the per-source watermarks (for read-your-writes).
    pub fn watermarks(&self) -> watch::Receiver<Watermarks> {
        self.watermarks.subscribe()
    }

    pub fn totals(&self) -> IngestReport {
        self.totals
    }

    fn last_received(&mut self, source: &str, stream: &str) -> Result<u64, BusError> {
        let key = (source.to_owned(), stream.to_owned());
        if let Some(v) = self.last.get(&key) {
            return Ok(*v);
        }
        let v = self.log.meta(&last_key(source, stream))?.and_then(|v| v.try_into().ok()).map_or(0, u64::from_be_bytes);
        self.last.insert(key, v);
        Ok(v)
    }

    /// Appends one batch; returns what it did.
    pub async fn ingest(&mut self, batch: SourceBatch) -> Result<IngestReport, BusError> {
        let mut report = IngestReport::default();
        let mut touched: HashMap<(String, String), u64> = HashMap::new();
        let mut events = Vec::new();
        for item in batch.items {
            match item {
                Item::Malformed { origin, reason } => {
                    tracing::warn!(%origin, %reason, "malformed message skipped");
                    report.malformed += 1;
                }
                Item::Event(env) => {
                    if env.source.is_empty() || env.source_position == 0 || env.stream_id.is_empty() {
                        tracing::warn!(stream = %env.stream_id, "event without a source position skipped");
                        report.malformed += 1;
                        continue;
                    }
                    let key = (env.source.clone(), env.stream_id.clone());
                    let last = match touched.get(&key) {
                        Some(v) => *v,
                        None => self.last_received(&env.source, &env.stream_id)?,
                    };
                    if env.source_position > last {
                        touched.insert(key, env.source_position);
                        events.push(env);
                    } else {
                        report.duplicates += 1;
                    }
                }
            }
        }
        // The watermarks move now, before the append: an append here fails only when
        // the log can no longer write at all (it then refuses every later write), so a
        // view ahead of the log is never acted on. The log positions recorded for a
        // rescan are a lower bound (other writers may append first), and a rescan from
        // an earlier position still finds every event.
        let first_position = self.log.head() + 1;
        let mut moved: HashSet<&str> = HashSet::new();
        for (i, env) in events.iter().enumerate() {
            self.received.entry(env.source.clone()).or_default().insert(env.source_position, first_position + i as u64);
            moved.insert(&env.source);
        }
        let mut meta: Vec<(Vec<u8>, Option<Vec<u8>>)> = batch.progress.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for ((source, stream), position) in &touched {
            meta.push((last_key(source, stream), Some(position.to_be_bytes().to_vec())));
        }
        for source in moved {
            meta.push((received_key(source), Some(self.received[source].encode())));
        }
        report.appended = events.len() as u64;
        if !events.is_empty() {
            let request = AppendRequest { meta, ..AppendRequest::new(INBOX_STREAM, ExpectedVersion::Any, events) };
            self.log.append(request).await?;
        } else if !meta.is_empty() {
            self.log.put_meta(meta).await?;
        }
        self.last.extend(touched);
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
