//! Restoring a writer's log from its own topic: the recovery of a registration or
//! reporting log that was lost or damaged (see `deploy/README.md`).
//!
//! The topic holds every event the relay published, each with its source position.
//! The restore reads the whole topic, puts the log's own events back in source-position
//! order after what the log already holds (an empty directory, or a backup), one append
//! per original request so that a retry of an old request is still answered as the
//! first time, and sets the relay's cursor past them so that nothing is published
//! twice. Events received from other services are not on this topic: the service
//! consumes them again from their topics when it starts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use dvk_eventlog::{AppendRequest, EventLog, ExpectedVersion};
use dvk_proto::events::v1::Envelope;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{KafkaConfig, topic_of};
use crate::{BusError, Item};

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    pub topic: String,
    /// The log's own sequence before and after the restore.
    pub from: u64,
    pub to: u64,
    /// Messages read from the topic, and of them: own events already in the log or read
    /// twice (the relay may publish an event again after a restart), events of other
    /// sources, and messages that are not valid envelopes.
    pub read: u64,
    pub duplicates: u64,
    pub foreign: u64,
    pub malformed: u64,
    /// The highest source position on the topic.
    pub topic_head: u64,
}

impl Restored {
    /// The first position the topic lacks, when it holds later ones: the log could only
    /// be restored up to the position before it.
    pub fn gap(&self) -> Option<u64> {
        (self.topic_head > self.to).then_some(self.to + 1)
    }
}

/// Restores `log` from its topic (`dvk.<source>.v1`). Blocking: run it off the async
/// workers. Memory holds the events read ahead of the next position to append (the
/// partitions are read together, so this stays a small part of the topic).
pub fn restore_from_topic(kafka: &KafkaConfig, log: &EventLog) -> Result<Restored, BusError> {
    let source = log.source().to_owned();
    let topic = topic_of(&source);
    let consumer: BaseConsumer = kafka
        .client(&[
            ("group.id", &format!("dvk-restore-{source}")),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "true"),
        ])
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(30))?;
    let partitions = metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len()) as i32;
    if partitions == 0 {
        return Err(BusError::Config(format!("topic {topic} does not exist on the broker")));
    }
    // Each partition is read until the broker says it is at its end.
    let mut tpl = TopicPartitionList::new();
    let mut remaining = BTreeSet::new();
    for p in 0..partitions {
        remaining.insert(p);
        tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;

    let from = log.own_sequence()?;
    let mut report = Restored { topic: topic.clone(), from, to: from, ..Restored::default() };
    let mut ahead: BTreeMap<u64, Envelope> = BTreeMap::new();
    let mut group: Vec<Envelope> = Vec::new();
    let mut quiet_since = Instant::now();
    while !remaining.is_empty() {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            if quiet_since.elapsed() > Duration::from_secs(60) {
                return Err(BusError::Config(format!(
                    "no message from {topic} for 60 s while partitions {remaining:?} were not read to their end"
                )));
            }
            continue;
        };
        quiet_since = Instant::now();
        let message = match message {
            Ok(m) => m,
            Err(KafkaError::PartitionEOF(p)) => {
                remaining.remove(&p);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        report.read += 1;
        let env = match crate::kafka::to_item(&message) {
            Item::Event(env) => env,
            Item::Malformed { origin, reason } => {
                tracing::warn!(origin, reason, "not restored: not a valid event");
                report.malformed += 1;
                continue;
            }
        };
        if env.source != source {
            report.foreign += 1;
            continue;
        }
        report.topic_head = report.topic_head.max(env.source_position);
        if env.source_position <= report.to || ahead.contains_key(&env.source_position) {
            report.duplicates += 1;
            continue;
        }
        ahead.insert(env.source_position, env);
        while let Some(next) = ahead.remove(&(report.to + 1)) {
            report.to += 1;
            push(log, &mut group, next)?;
        }
    }
    // Everything restored is on the topic already: the relay goes on after it (its
    // cursor is written with the last events).
    let cursor = (!group.is_empty()).then(|| {
        let after = log.head() + group.len() as u64;
        (crate::kafka::cursor_key(&topic), Some(after.to_be_bytes().to_vec()))
    });
    flush(log, &mut group, cursor)?;
    tracing::info!(topic, from = report.from, to = report.to, "log restored from its topic");
    Ok(report)
}

/// Adds `env` to the pending append, which holds the events of one original request
/// (an append is all-or-nothing, and a request id answers for all its events).
fn push(log: &EventLog, group: &mut Vec<Envelope>, env: Envelope) -> Result<(), BusError> {
    let same = group.last().is_some_and(|last| {
        !last.request_id.is_empty() && last.request_id == env.request_id && last.stream_id == env.stream_id
    });
    if !same {
        flush(log, group, None)?;
    }
    group.push(env);
    Ok(())
}

fn flush(log: &EventLog, group: &mut Vec<Envelope>, meta: Option<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), BusError> {
    let Some(first) = group.first() else { return Ok(()) };
    let (stream, version) = (first.stream_id.clone(), first.stream_version);
    let idempotency =
        (!first.request_id.is_empty()).then(|| (first.request_id.clone(), first.request_fingerprint.clone()));
    let mut request =
        AppendRequest::new(stream, ExpectedVersion::Exact(version.saturating_sub(1)), std::mem::take(group));
    if let Some((id, fingerprint)) = idempotency {
        request = request.with_request_id(id, fingerprint);
    }
    request.meta.extend(meta);
    log.append_blocking(request)?;
    Ok(())
}
