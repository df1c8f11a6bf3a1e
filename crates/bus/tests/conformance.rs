//! One conformance suite for every `EventSource`: the local source (following a log in
//! the same process) and the Kafka source (through a real broker, fed by the relay).
//! Each must deliver every upstream event exactly once, in order per stream, and
//! resume after a restart from the progress stored in the consuming log.

mod support;

use std::future::Future;
use std::path::Path;

use dvk_bus::kafka::{KafkaSource, RelayConfig, relay, topic_of};
use dvk_bus::local::LocalSource;
use dvk_bus::{EventSource, Ingestor};
use dvk_eventlog::EventLog;
use support::{append, assert_exactly_once, ingest_until, open};

const SOURCE: &str = "registration";

/// `max_redelivered`: how many events a resumed source may deliver again (they must be
/// dropped as duplicates, never appended twice).
async fn scenario<S, F, Fut>(dir: &Path, upstream: &EventLog, max_redelivered: u64, make: F)
where
    S: EventSource,
    F: Fn(EventLog) -> Fut,
    Fut: Future<Output = S>,
{
    let consumer_dir = dir.join("consumer");
    append(upstream, 1_000, 10).await;
    {
        let consumer = open(&consumer_dir, "aggregation");
        let mut source = make(consumer.clone()).await;
        let mut ingestor = Ingestor::new(consumer.clone(), &[SOURCE]).unwrap();
        ingest_until(&mut ingestor, &mut source, SOURCE, 1_000).await;
        assert_exactly_once(&consumer, SOURCE, 1_000);
        assert_eq!(ingestor.totals().malformed, 0);
        drop(source);
        consumer.close().unwrap();
    }
    // Restart: a reopened consumer resumes from its stored progress.
    append(upstream, 500, 7).await;
    let consumer = open(&consumer_dir, "aggregation");
    let mut source = make(consumer.clone()).await;
    let mut ingestor = Ingestor::new(consumer.clone(), &[SOURCE]).unwrap();
    assert_eq!(ingestor.watermarks().borrow()[SOURCE], 1_000, "the watermark survives the restart");
    ingest_until(&mut ingestor, &mut source, SOURCE, 1_500).await;
    assert_exactly_once(&consumer, SOURCE, 1_500);
    assert!(ingestor.totals().duplicates <= max_redelivered, "{:?}", ingestor.totals());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_source_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = open(&dir.path().join("upstream"), SOURCE);
    let up = upstream.clone();
    scenario(dir.path(), &upstream, 0, move |consumer| {
        let up = up.clone();
        async move { LocalSource::new(&up, &consumer).unwrap() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_source_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::Broker::memory();
    let kafka = broker.kafka();
    let upstream = open(&dir.path().join("upstream"), SOURCE);
    let topic = topic_of(SOURCE);
    let (cursor_tx, _cursor) = tokio::sync::watch::channel(0);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let relay_task = tokio::spawn(relay(upstream.clone(), RelayConfig::new(kafka.clone(), &topic), cursor_tx, stop));
    let k = kafka.clone();
    // The Kafka source rewinds by up to one record batch per partition when it resumes.
    let max_redelivered = 6 * dvk_bus::kafka::BATCH_MESSAGES as u64;
    scenario(dir.path(), &upstream, max_redelivered, move |consumer| {
        let k = k.clone();
        let topic = topic.clone();
        async move { KafkaSource::new(&k, &topic, "conformance", &consumer).await.unwrap() }
    })
    .await;
    stop_tx.send(true).unwrap();
    relay_task.await.unwrap().unwrap();
}
