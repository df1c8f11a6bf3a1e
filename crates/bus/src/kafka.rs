//! Kafka: settings passed through to librdkafka, topic creation, the relay (log →
//! topic) and the consumer source (topic → `EventSource`).
//!
//! Every message carries the envelope's bytes as payload, the stream id as key (so a
//! stream's events keep their order within a partition) and a `dvk-crc32` header over
//! the payload, which the consumer checks.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dvk_eventlog::EventLog;
use dvk_proto::events::v1::Envelope;
use futures_util::FutureExt;
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::{BusError, EventSource, Item, SourceBatch};

/// Most messages the relay puts in one record batch, and how far a consumer rewinds
/// when it resumes. A broker may answer a fetch from an offset inside a stored record
/// batch with the *next* batch (Tansu 0.6 does), which would silently skip the rest of
/// the batch asked for. Resuming this many offsets earlier always starts at or before
/// a batch boundary; what is read twice is dropped as a duplicate.
pub const BATCH_MESSAGES: i64 = 1000;

/// The header holding the CRC-32 of the payload.
pub const CRC_HEADER: &str = "dvk-crc32";

/// The topic of a producing service.
pub fn topic_of(source: &str) -> String {
    format!("dvk.{source}.v1")
}

/// librdkafka settings. `from_env` maps every `DVK_KAFKA_*` variable to a librdkafka
/// key (`DVK_KAFKA_BOOTSTRAP_SERVERS` → `bootstrap.servers`, `DVK_KAFKA_SASL_MECHANISM`
/// → `sasl.mechanism`, ...), so SASL and TLS settings pass through unchanged.
#[derive(Debug, Clone, Default)]
pub struct KafkaConfig {
    pub settings: BTreeMap<String, String>,
}

impl KafkaConfig {
    pub fn new(bootstrap_servers: &str) -> Self {
        let mut c = Self::default();
        c.settings.insert("bootstrap.servers".into(), bootstrap_servers.into());
        c
    }

    pub fn from_env() -> Self {
        Self::from_vars(std::env::vars())
    }

    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let settings = vars
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("DVK_KAFKA_").map(|k| (k.to_lowercase().replace('_', "."), v)))
            .collect();
        Self { settings }
    }

    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.settings.insert(key.into(), value.into());
        self
    }

    /// The client configuration: `defaults` first, then everything set here.
    pub(crate) fn client(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        // After an outage, reconnect within a second of the broker's return (the
        // default backoff grows to 10 s, which is how late the backlog would start).
        c.set("reconnect.backoff.max.ms", "1000");
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.settings {
            c.set(k, v);
        }
        c
    }
}

/// Creates `topic` with `partitions` if it does not exist.
pub async fn ensure_topic(
    config: &KafkaConfig,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> = config.client(&[]).create()?;
    // A topic that exists is left alone: asking to create it again is a needless
    // write on the broker after every reconnection (and one that Tansu 0.6 with SQLite
    // storage fails on after a restart).
    let metadata = {
        let (admin, topic) = (&admin, topic.to_owned());
        tokio::task::block_in_place(|| admin.inner().fetch_metadata(Some(&topic), Duration::from_secs(10)))?
    };
    if metadata.topics().iter().any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()) {
        return Ok(());
    }
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&new], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => return Err(BusError::Config(format!("cannot create topic {t}: {code}"))),
        }
    }
    Ok(())
}

/// What the relay holds in memory now, for the metrics: the window it handed to the
/// producer and what librdkafka reports in its queues (from its statistics).
#[derive(Debug, Default)]
pub struct RelayMemory {
    /// Messages handed to the producer and not yet acknowledged.
    pub in_flight_messages: AtomicU64,
    /// Their payload bytes.
    pub in_flight_bytes: AtomicU64,
    /// librdkafka's `msg_cnt`: messages in the producer's queues.
    pub producer_queue_messages: AtomicU64,
    /// librdkafka's `msg_size`: bytes of the messages in the producer's queues.
    pub producer_queue_bytes: AtomicU64,
}

/// The producer's context: keeps librdkafka's queue figures from its statistics.
struct QueueContext(Arc<RelayMemory>);

impl rdkafka::ClientContext for QueueContext {
    fn stats_raw(&self, statistics: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<serde_json::Value>(statistics) else { return };
        if let (Some(count), Some(size)) = (stats["msg_cnt"].as_u64(), stats["msg_size"].as_u64()) {
            self.0.producer_queue_messages.store(count, Ordering::Relaxed);
            self.0.producer_queue_bytes.store(size, Ordering::Relaxed);
        }
    }
}

impl rdkafka::producer::ProducerContext for QueueContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub kafka: KafkaConfig,
    pub topic: String,
    pub partitions: i32,
    pub replication: i32,
    /// Most messages handed to the producer and not yet acknowledged.
    pub max_in_flight: usize,
    /// Most payload bytes handed to the producer and not yet acknowledged: with the
    /// broker away, this is what the relay holds in memory (the rest stays in the log).
    pub max_in_flight_bytes: usize,
    /// Where the relay reports what it holds in memory.
    pub memory: Arc<RelayMemory>,
}

impl RelayConfig {
    pub fn new(kafka: KafkaConfig, topic: impl Into<String>) -> Self {
        Self {
            kafka,
            topic: topic.into(),
            partitions: 6,
            replication: 1,
            max_in_flight: 10_000,
            max_in_flight_bytes: 8 << 20,
            memory: Arc::default(),
        }
    }
}

pub(crate) fn cursor_key(topic: &str) -> Vec<u8> {
    format!("relay/{topic}/cursor").into_bytes()
}

/// The relay's stored cursor: every position ≤ it is on the topic.
pub fn relay_cursor(log: &EventLog, topic: &str) -> Result<u64, BusError> {
    Ok(log.meta(&cursor_key(topic))?.and_then(|v| v.try_into().ok()).map_or(0, u64::from_be_bytes))
}

/// Publishes `log` to the topic from the stored cursor, forever (until `stop`).
/// Delivery failures (the broker is down) restart from the cursor after a backoff;
/// writes to the log are never held up. `cursor` reports progress (for the lag metric).
pub async fn relay(
    log: EventLog,
    config: RelayConfig,
    cursor: watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BusError> {
    let mut backoff = Duration::from_millis(100);
    loop {
        // `relay_once` watches `stop` itself, so that it stores its cursor on the way out.
        match relay_once(&log, &config, &cursor, stop.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(topic = %config.topic, error = %e, ?backoff, "relay interrupted; resuming from the cursor");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = crate::stopped(&mut stop) => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn relay_once(
    log: &EventLog,
    config: &RelayConfig,
    cursor_tx: &watch::Sender<u64>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BusError> {
    tokio::select! {
        r = ensure_topic(&config.kafka, &config.topic, config.partitions, config.replication) => r?,
        () = crate::stopped(&mut stop) => return Ok(()),
    }
    let memory = &config.memory;
    // A new producer: nothing of an earlier attempt is held any more.
    for figure in [
        &memory.in_flight_messages,
        &memory.in_flight_bytes,
        &memory.producer_queue_messages,
        &memory.producer_queue_bytes,
    ] {
        figure.store(0, Ordering::Relaxed);
    }
    let producer: FutureProducer<QueueContext> = config
        .kafka
        .client(&[
            // librdkafka's statistics carry its queue sizes (the memory metrics).
            ("statistics.interval.ms", "1000"),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
            ("socket.nagle.disable", "true"),
            ("batch.num.messages", &BATCH_MESSAGES.to_string()),
            // Never give a message up: the relay cannot pass it anyway (the topic keeps
            // the log's order), and a timed-out message makes librdkafka bump the
            // idempotent producer's epoch on its own, which brokers that only assign
            // epochs themselves (Tansu 0.6) refuse. An outage is waited out instead.
            ("message.timeout.ms", "0"),
            ("queue.buffering.max.messages", "100000"),
        ])
        .create_with_context(QueueContext(memory.clone()))?;
    let key = cursor_key(&config.topic);
    let mut cursor = relay_cursor(log, &config.topic)?;
    cursor_tx.send_replace(cursor);
    let mut sub = log.subscribe(cursor + 1);
    // (position, payload bytes, delivery) of each message handed to the producer.
    let mut in_flight: VecDeque<(u64, usize, rdkafka::producer::DeliveryFuture)> = VecDeque::new();
    let mut in_flight_bytes = 0usize;
    // Positions of foreign events passed over while earlier sends were in flight.
    let mut skipped: VecDeque<u64> = VecDeque::new();
    let mut stored = cursor;
    let mut save = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            biased;
            () = crate::stopped(&mut stop) => break,
            done = async { (&mut in_flight.front_mut().expect("guarded").2).await }, if !in_flight.is_empty() => {
                let (position, bytes, _) = in_flight.pop_front().expect("guarded");
                in_flight_bytes -= bytes;
                memory.in_flight_messages.store(in_flight.len() as u64, Ordering::Relaxed);
                memory.in_flight_bytes.store(in_flight_bytes as u64, Ordering::Relaxed);
                match done {
                    Ok(Ok(_)) => {
                        cursor = position;
                        // Foreign events between this one and the next in flight.
                        let next = in_flight.front().map_or(u64::MAX, |(p, _, _)| *p);
                        while skipped.front().is_some_and(|p| *p < next) {
                            cursor = skipped.pop_front().expect("checked");
                        }
                        cursor_tx.send_replace(cursor);
                    }
                    Ok(Err((e, _))) => return Err(e.into()),
                    Err(_) => return Err(BusError::Closed),
                }
            }
            record = sub.next(), if in_flight.len() < config.max_in_flight && in_flight_bytes < config.max_in_flight_bytes => {
                let record = record?;
                let env = record.envelope()?;
                // Events this log received from other services are theirs to publish.
                if env.source != log.source() {
                    if in_flight.is_empty() {
                        cursor = record.position();
                        cursor_tx.send_replace(cursor);
                    } else {
                        skipped.push_back(record.position());
                    }
                    continue;
                }
                let crc = crc32fast::hash(record.payload()).to_be_bytes();
                let headers = OwnedHeaders::new().insert(Header { key: CRC_HEADER, value: Some(&crc[..]) });
                let message = FutureRecord::to(&config.topic).key(&env.stream_id).payload(record.payload()).headers(headers);
                match producer.send_result(message) {
                    Ok(delivery) => {
                        in_flight_bytes += record.payload().len();
                        in_flight.push_back((record.position(), record.payload().len(), delivery));
                        memory.in_flight_messages.store(in_flight.len() as u64, Ordering::Relaxed);
                        memory.in_flight_bytes.store(in_flight_bytes as u64, Ordering::Relaxed);
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
            _ = save.tick() => {
                if cursor != stored {
                    log.put_meta(vec![(key.clone(), Some(cursor.to_be_bytes().to_vec()))]).await?;
                    stored = cursor;
                }
            }
        }
    }
    if cursor != stored {
        log.put_meta(vec![(key, Some(cursor.to_be_bytes().to_vec()))]).await?;
    }
    Ok(())
}

/// Consumer lag per partition, shared with whoever exports it as a metric.
pub type PartitionLag = std::sync::Arc<std::sync::Mutex<BTreeMap<i32, i64>>>;

/// Reads each partition's lag from librdkafka's statistics. (The statistics are read
/// as plain JSON: brokers other than Kafka leave out fields a typed parse requires.)
#[derive(Debug, Clone)]
pub struct LagContext {
    topic: String,
    lag: PartitionLag,
}

impl rdkafka::ClientContext for LagContext {
    fn stats_raw(&self, statistics: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<serde_json::Value>(statistics) else { return };
        let Some(partitions) = stats["topics"][&self.topic]["partitions"].as_object() else { return };
        let mut lag = self.lag.lock().expect("lag lock");
        for (p, part) in partitions {
            let (Ok(p), Some(high), Some(app)) =
                (p.parse::<i32>(), part["hi_offset"].as_i64(), part["app_offset"].as_i64())
            else {
                continue;
            };
            // Offsets live in the consuming log, not in the broker: the lag is the high
            // watermark minus the position handed to the application.
            if p >= 0 && high >= 0 && app >= 0 {
                lag.insert(p, (high - app).max(0));
            }
        }
    }
}

impl rdkafka::consumer::ConsumerContext for LagContext {}

/// Consumes one topic from the offsets stored in the consuming log.
pub struct KafkaSource {
    consumer: StreamConsumer<LagContext>,
    lag: PartitionLag,
    topic: String,
    max_batch: usize,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource").field("topic", &self.topic).finish_non_exhaustive()
    }
}

fn offset_key(topic: &str, partition: i32) -> Vec<u8> {
    format!("kafka/{topic}/{partition}").into_bytes()
}

impl KafkaSource {
    /// A consumer of `topic` for the service whose log is `consumer_log`. Partitions are
    /// assigned explicitly, each from the offset stored in that log (no group commits:
    /// the log is the only place progress lives).
    pub async fn new(kafka: &KafkaConfig, topic: &str, group: &str, consumer_log: &EventLog) -> Result<Self, BusError> {
        let lag = PartitionLag::default();
        let context = LagContext { topic: topic.to_owned(), lag: lag.clone() };
        let consumer: StreamConsumer<LagContext> = kafka
            .client(&[
                ("statistics.interval.ms", "1000"),
                ("group.id", group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                // Fresh roll-ups need fresh events: do not let the broker sit on a fetch.
                ("fetch.wait.max.ms", "10"),
                ("socket.nagle.disable", "true"),
            ])
            .create_with_context(context)?;
        let partitions = loop {
            let metadata = {
                let topic = topic.to_owned();
                let c = &consumer;
                tokio::task::block_in_place(|| c.fetch_metadata(Some(&topic), Duration::from_secs(10)))?
            };
            let n = metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len());
            if n > 0 {
                break n as i32;
            }
            tracing::info!(topic, "waiting for the topic to exist");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            let next =
                consumer_log.meta(&offset_key(topic, p))?.and_then(|v| v.try_into().ok()).map(i64::from_be_bytes);
            let resume = next.map_or(Offset::Beginning, |n| Offset::Offset((n - BATCH_MESSAGES).max(0)));
            tpl.add_partition_offset(topic, p, resume)?;
        }
        consumer.assign(&tpl)?;
        Ok(Self { consumer, lag, topic: topic.to_owned(), max_batch: 2048 })
    }

    /// Messages not yet consumed, per partition (high watermark − position), as
    /// librdkafka last reported them (its statistics, every second). Share it with a
    /// metrics exporter: it stays current while the source is consumed.
    pub fn lag(&self) -> PartitionLag {
        self.lag.clone()
    }
}

pub(crate) fn to_item(m: &rdkafka::message::BorrowedMessage<'_>) -> Item {
    let origin = format!("{}/{}@{}", m.topic(), m.partition(), m.offset());
    let Some(payload) = m.payload() else {
        return Item::Malformed { origin, reason: "no payload".into() };
    };
    let crc =
        m.headers().and_then(|h| h.iter().find(|h| h.key == CRC_HEADER).and_then(|h| h.value.map(<[u8]>::to_vec)));
    match crc {
        None => return Item::Malformed { origin, reason: format!("no {CRC_HEADER} header") },
        Some(c) if c != crc32fast::hash(payload).to_be_bytes() => {
            return Item::Malformed { origin, reason: "checksum mismatch".into() };
        }
        Some(_) => {}
    }
    match Envelope::decode(payload) {
        Ok(env) => Item::Event(env),
        Err(e) => Item::Malformed { origin, reason: format!("not an envelope: {e}") },
    }
}

impl EventSource for KafkaSource {
    async fn next_batch(&mut self) -> Result<SourceBatch, BusError> {
        let mut items = Vec::new();
        let mut next_offsets: BTreeMap<i32, i64> = BTreeMap::new();
        // Transport errors (the broker is away, a partition moved) are reported by
        // librdkafka while it keeps retrying by itself: log them and go on, never stop.
        // They queue up during an outage, so they are passed over quickly (a pause per
        // error would hold the backlog back long after the broker's return); the short
        // pause only keeps an error that repeats at once from spinning.
        loop {
            match self.consumer.recv().await {
                Ok(first) => {
                    items.push(to_item(&first));
                    next_offsets.insert(first.partition(), first.offset() + 1);
                    break;
                }
                Err(e) => {
                    tracing::warn!(topic = %self.topic, error = %e, "consumer error; retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        while items.len() < self.max_batch {
            match self.consumer.recv().now_or_never() {
                Some(Ok(m)) => {
                    items.push(to_item(&m));
                    next_offsets.insert(m.partition(), m.offset() + 1);
                }
                Some(Err(e)) => {
                    tracing::warn!(topic = %self.topic, error = %e, "consumer error; retrying");
                    break;
                }
                None => break,
            }
        }
        let progress =
            next_offsets.into_iter().map(|(p, o)| (offset_key(&self.topic, p), o.to_be_bytes().to_vec())).collect();
        Ok(SourceBatch { items, progress })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dvk_kafka_variables_become_librdkafka_settings() {
        let vars = [
            ("DVK_KAFKA_BOOTSTRAP_SERVERS", "k1:9093,k2:9093"),
            ("DVK_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("DVK_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("DVK_KAFKA_SSL_CA_LOCATION", "/etc/kafka/ca.pem"),
            ("DVK_DATA_DIR", "/data"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let c = KafkaConfig::from_vars(vars);
        let got: Vec<(&str, &str)> = c.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("bootstrap.servers", "k1:9093,k2:9093"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("security.protocol", "SASL_SSL"),
                ("ssl.ca.location", "/etc/kafka/ca.pem"),
            ]
        );
    }
}
