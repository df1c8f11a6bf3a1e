//! The in-process source of the embedded default: follows another service's log
//! directly, with the same semantics as the Kafka consumer (only the log's own events,
//! as its relay would publish them).

use dvk_eventlog::{EventLog, Subscription};
use prost::Message;

use crate::{BusError, EventSource, Item, SourceBatch};

/// Most records per batch.
const BATCH: usize = 1024;

#[derive(Debug)]
pub struct LocalSource {
    cursor_key: Vec<u8>,
    source: String,
    sub: Subscription,
}

impl LocalSource {
    /// Follows `upstream`, resuming after the position stored in `consumer`'s log.
    pub fn new(upstream: &EventLog, consumer: &EventLog) -> Result<Self, BusError> {
        let cursor = Self::received(upstream, consumer)?;
        Ok(Self {
            cursor_key: cursor_key(upstream),
            source: upstream.source().to_owned(),
            sub: upstream.subscribe(cursor + 1),
        })
    }

    /// The last position of `upstream`'s log that `consumer` has received (0 for none):
    /// `consumer` holds every event `upstream` originated up to there.
    pub fn received(upstream: &EventLog, consumer: &EventLog) -> Result<u64, BusError> {
        Ok(consumer.meta(&cursor_key(upstream))?.and_then(|v| v.try_into().ok()).map_or(0, u64::from_be_bytes))
    }
}

fn cursor_key(upstream: &EventLog) -> Vec<u8> {
    format!("local/{}/cursor", upstream.source()).into_bytes()
}

impl EventSource for LocalSource {
    async fn next_batch(&mut self) -> Result<SourceBatch, BusError> {
        let first = self.sub.next().await?;
        let mut records = vec![first];
        while records.len() < BATCH {
            match self.sub.try_next()? {
                Some(r) => records.push(r),
                None => break,
            }
        }
        let last = records.last().map_or(0, |r| r.position());
        // Like the relay, which publishes only a log's own events: what the upstream
        // itself received from elsewhere is not passed on (the consumer gets it from
        // its origin).
        let items = records
            .iter()
            .filter_map(|r| match dvk_proto::events::v1::Envelope::decode(r.payload()) {
                Ok(env) if env.source == self.source => Some(Item::Event(env)),
                Ok(_) => None,
                Err(e) => Some(Item::Malformed { origin: format!("position {}", r.position()), reason: e.to_string() }),
            })
            .collect();
        Ok(SourceBatch { items, progress: vec![(self.cursor_key.clone(), last.to_be_bytes().to_vec())] })
    }
}
