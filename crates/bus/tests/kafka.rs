//! The Kafka path against a real broker (Tansu on a loopback port): 100,000 events
//! relayed and consumed exactly once while the consumer is killed 20 times, a broker
//! restart under load, and malformed messages on the topic.

mod support;

use std::time::Duration;

use dvk_bus::kafka::{CRC_HEADER, KafkaConfig, KafkaSource, RelayConfig, relay, relay_cursor, topic_of};
use dvk_bus::{EventSource, Ingestor};
use dvk_eventlog::{AppendRequest, EventLog, ExpectedVersion};
use dvk_proto::events::v1::Envelope;
use prost::Message;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::{Broker, assert_exactly_once, ingest_until, open};
use tokio::sync::watch;

const SOURCE: &str = "registration";

struct Relay {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), dvk_bus::BusError>>,
}

fn start_relay(log: &EventLog, kafka: &KafkaConfig) -> Relay {
    let (cursor_tx, _) = watch::channel(0);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(relay(log.clone(), RelayConfig::new(kafka.clone(), topic_of(SOURCE)), cursor_tx, stop_rx));
    Relay { stop, task }
}

impl Relay {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn jitter(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    u64::from(nanos) % max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_events_arrive_exactly_once_though_the_consumer_is_killed_twenty_times() {
    const N: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::memory();
    let kafka = broker.kafka();
    let upstream = open(&dir.path().join("upstream"), SOURCE);
    let relay = start_relay(&upstream, &kafka);
    // The stream goes on until the twenty kills are done, and to at least N events.
    let (kills_done, mut kills_done_rx) = watch::channel(false);
    let producer = {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while i < N || !*kills_done_rx.borrow_and_update() {
                let events =
                    (i..i + 50).map(|j| Envelope { correlation_id: format!("c{j}"), ..Envelope::default() }).collect();
                let stream = format!("model-{}", (i / 50) % 97);
                upstream.append(AppendRequest::new(stream, ExpectedVersion::Any, events)).await.unwrap();
                i += 50;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let consumer_dir = dir.path().join("consumer");
    let topic = topic_of(SOURCE);
    let mut kills = 0;
    while kills < 20 {
        let consumer = open(&consumer_dir, "aggregation");
        let source = KafkaSource::new(&kafka, &topic, "kill-test", &consumer).await.unwrap();
        let ingestor = Ingestor::new(consumer.clone(), &[SOURCE]).unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(ingestor.run(source, stop));
        // Kill it at a random moment: abort the task, then drop every handle.
        tokio::time::sleep(Duration::from_millis(50 + jitter(250))).await;
        task.abort();
        let _ = task.await;
        consumer.close().unwrap();
        drop(consumer);
        kills += 1;
    }
    kills_done.send(true).unwrap();
    producer.await.unwrap();
    let total = upstream.head();
    assert!(total >= N);
    // A last consumer finishes the stream.
    let consumer = open(&consumer_dir, "aggregation");
    let mut source = KafkaSource::new(&kafka, &topic, "kill-test", &consumer).await.unwrap();
    let mut ingestor = Ingestor::new(consumer.clone(), &[SOURCE]).unwrap();
    let lag = source.lag();
    let mut peak = 0;
    let watermarks = ingestor.watermarks();
    tokio::time::timeout(Duration::from_secs(120), async {
        while watermarks.borrow().get(SOURCE).copied().unwrap_or(0) < total {
            let batch = source.next_batch().await.unwrap();
            ingestor.ingest(batch).await.unwrap();
            peak = peak.max(lag.lock().unwrap().values().sum::<i64>());
        }
    })
    .await
    .expect("the last consumer finishes the stream");
    assert_eq!(kills, 20, "the stream outlasted twenty kills");
    // The lag per partition showed the backlog, then drains to zero once it is consumed.
    assert!(peak > 0, "the lag never showed the backlog");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        // Statistics are gathered while the consumer is polled.
        let _ = tokio::time::timeout(Duration::from_millis(200), source.next_batch()).await;
        let l = lag.lock().unwrap().clone();
        if l.len() == 6 && l.values().all(|v| *v == 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "lag did not drain to zero: {l:?}");
    }
    assert_exactly_once(&consumer, SOURCE, total);
    relay.stop().await;
    assert_eq!(relay_cursor(&upstream, &topic).unwrap(), total, "the relay's stored cursor covers everything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_under_load_loses_nothing_and_repeats_nothing() {
    const N: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::sqlite(dir.path());
    let kafka = broker.kafka();
    let upstream = open(&dir.path().join("upstream"), SOURCE);
    let relay = start_relay(&upstream, &kafka);
    let consumer = open(&dir.path().join("consumer"), "aggregation");
    let (stop_tx, stop) = watch::channel(false);
    let source = KafkaSource::new(&kafka, &topic_of(SOURCE), "restart-test", &consumer).await;
    let source = match source {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let ingestor = Ingestor::new(consumer.clone(), &[SOURCE]).unwrap();
    let watermarks = ingestor.watermarks();
    let ingest = tokio::spawn(ingestor.run(source, stop));
    // Writes go on while the broker is down: the log acknowledges them regardless.
    let writer = {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            for i in 0..N {
                let e = Envelope { correlation_id: format!("c{i}"), ..Envelope::default() };
                upstream
                    .append(AppendRequest::new(format!("model-{}", i % 13), ExpectedVersion::Any, vec![e]))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    broker.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.start();
    writer.await.unwrap();
    assert_eq!(upstream.head(), N, "every write was acknowledged while the broker was away");
    let mut w = watermarks.clone();
    tokio::time::timeout(Duration::from_secs(120), w.wait_for(|m| m.get(SOURCE).copied().unwrap_or(0) >= N))
        .await
        .expect("the consumer caught up after the broker came back")
        .unwrap();
    stop_tx.send(true).unwrap();
    ingest.await.unwrap().unwrap();
    assert_exactly_once(&consumer, SOURCE, N);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::memory();
    let kafka = broker.kafka();
    let topic = topic_of(SOURCE);
    dvk_bus::kafka::ensure_topic(&kafka, &topic, 1, 1).await.unwrap();
    let raw: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", broker.bootstrap()).create().unwrap();
    let good = Envelope {
        source: SOURCE.into(),
        source_position: 1,
        stream_id: "model-x".into(),
        stream_version: 1,
        ..Envelope::default()
    }
    .encode_to_vec();
    let crc = |b: &[u8]| crc32fast::hash(b).to_be_bytes();
    let garbage = b"\xff\xff\xff not an envelope".to_vec();
    let sends: Vec<(Vec<u8>, Option<[u8; 4]>)> = vec![
        (garbage.clone(), Some(crc(&garbage))), // not an envelope
        (good.clone(), Some([0, 0, 0, 0])),     // wrong checksum
        (good.clone(), None),                   // no checksum header
        (good.clone(), Some(crc(&good))),       // the one valid event
    ];
    for (payload, crc) in &sends {
        let mut record = FutureRecord::to(&topic).key("model-x").payload(payload);
        if let Some(c) = crc {
            record = record.headers(OwnedHeaders::new().insert(Header { key: CRC_HEADER, value: Some(&c[..]) }));
        }
        raw.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }
    let consumer = open(&dir.path().join("consumer"), "aggregation");
    let mut source = KafkaSource::new(&kafka, &topic, "malformed-test", &consumer).await.unwrap();
    let mut ingestor = Ingestor::new(consumer.clone(), &[SOURCE]).unwrap();
    ingest_until(&mut ingestor, &mut source, SOURCE, 1).await;
    // Whatever is left arrives too; then nothing more.
    while ingestor.totals().malformed < 3 {
        let b = tokio::time::timeout(Duration::from_secs(10), source.next_batch()).await.unwrap().unwrap();
        ingestor.ingest(b).await.unwrap();
    }
    assert_eq!(ingestor.totals().malformed, 3);
    assert_eq!(ingestor.totals().appended, 1);
    assert_exactly_once(&consumer, SOURCE, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_only_the_events_its_service_originated() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::memory();
    let kafka = broker.kafka();
    let upstream = open(&dir.path().join("upstream"), SOURCE);
    for i in 0..30u64 {
        let mut e = Envelope { correlation_id: format!("c{i}"), ..Envelope::default() };
        if i % 3 == 0 {
            // Received from another service: keeps its origin.
            e.source = "other".into();
            e.source_position = i + 1;
            e.stream_id = format!("tree-{i}");
            e.stream_version = 1;
        }
        upstream.append(AppendRequest::new(format!("s-{i}"), ExpectedVersion::Any, vec![e])).await.unwrap();
    }
    let relay = start_relay(&upstream, &kafka);
    let consumer = open(&dir.path().join("consumer"), "aggregation");
    let mut source = KafkaSource::new(&kafka, &topic_of(SOURCE), "origin-test", &consumer).await.unwrap();
    let mut ingestor = Ingestor::new(consumer.clone(), &[SOURCE, "other"]).unwrap();
    // Own events carry their own sequence, 1..=20, without gaps where foreign ones sit.
    ingest_until(&mut ingestor, &mut source, SOURCE, 20).await;
    assert_eq!(ingestor.totals().appended, 20, "only the service's own events travel on its topic");
    assert_eq!(ingestor.watermarks().borrow().get("other").copied(), Some(0));
    relay.stop().await;
    assert_eq!(relay_cursor(&upstream, &topic_of(SOURCE)).unwrap(), 30, "the cursor passes over foreign events");
}

/// The own events of `log`, in order, without what the log stamps locally.
fn own_events(log: &EventLog) -> Vec<Envelope> {
    log.read_all(1).map(|r| r.unwrap().envelope().unwrap()).filter(|e| e.source == SOURCE).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_log_is_restored_from_its_topic_after_a_backup_and_up_to_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::memory();
    let kafka = broker.kafka();
    // A writer's log: own events (some of two events under one request id) between
    // events received from another service.
    let writer = open(&dir.path().join("writer"), SOURCE);
    for i in 0..60u64 {
        if i % 5 == 0 {
            let e = Envelope {
                source: "other".into(),
                source_position: i + 1,
                stream_id: format!("tree-{i}"),
                stream_version: 1,
                ..Envelope::default()
            };
            writer.append(AppendRequest::new(format!("tree-{i}"), ExpectedVersion::Any, vec![e])).await.unwrap();
            continue;
        }
        let events = vec![Envelope { correlation_id: format!("c{i}"), ..Envelope::default() }; 1 + (i % 2) as usize];
        let stream = format!("model-{}", i % 7);
        let v = writer.stream_version(&stream).unwrap();
        let request = AppendRequest::new(stream, ExpectedVersion::Exact(v), events)
            .with_request_id(format!("r{i}"), format!("body-{i}").into_bytes());
        writer.append(request).await.unwrap();
    }
    let own = own_events(&writer);
    let last = own.last().unwrap().source_position;
    // Published twice over (the relay starts again from zero): the restore drops the
    // second copies.
    for _ in 0..2 {
        writer.put_meta(vec![(format!("relay/{}/cursor", topic_of(SOURCE)).into_bytes(), None)]).await.unwrap();
        let relay = start_relay(&writer, &kafka);
        while relay_cursor(&writer, &topic_of(SOURCE)).unwrap() < writer.head() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        relay.stop().await;
    }

    // A backup holding the first ten own events, restored from the topic.
    let restored = open(&dir.path().join("restored"), SOURCE);
    for e in own.iter().take_while(|e| e.source_position <= 10) {
        let request = AppendRequest::new(&e.stream_id, ExpectedVersion::Exact(e.stream_version - 1), vec![e.clone()]);
        restored.append(request).await.unwrap();
    }
    let backup_head = restored.own_sequence().unwrap();
    let report = {
        let (kafka, restored) = (kafka.clone(), restored.clone());
        tokio::task::spawn_blocking(move || dvk_bus::restore::restore_from_topic(&kafka, &restored)).await.unwrap()
    }
    .unwrap();
    assert_eq!((report.from, report.to, report.topic_head, report.gap()), (backup_head, last, last, None));
    assert!(report.duplicates >= last, "{report:?}");
    assert_eq!(own_events(&restored), own);
    // A retried request is answered from the restored log: nothing is written again.
    let again = restored
        .append(
            AppendRequest::new(&own[20].stream_id, ExpectedVersion::Any, vec![Envelope::default()])
                .with_request_id(&own[20].request_id, own[20].request_fingerprint.clone()),
        )
        .await
        .unwrap();
    assert!(again.deduplicated);
    assert_eq!(relay_cursor(&restored, &topic_of(SOURCE)).unwrap(), restored.head(), "nothing is published again");

    // A topic that lacks an event: the log is restored up to it, and the gap is told.
    let topic = topic_of("gappy");
    dvk_bus::kafka::ensure_topic(&kafka, &topic, 1, 1).await.unwrap();
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", broker.bootstrap()).create().unwrap();
    for p in [1u64, 2, 4] {
        let e = Envelope {
            source: "gappy".into(),
            source_position: p,
            stream_id: format!("s-{p}"),
            stream_version: 1,
            ..Envelope::default()
        };
        let payload = e.encode_to_vec();
        let crc = crc32fast::hash(&payload).to_be_bytes();
        let headers = OwnedHeaders::new().insert(Header { key: CRC_HEADER, value: Some(&crc[..]) });
        let record = FutureRecord::to(&topic).key("k").payload(&payload).headers(headers);
        producer.send(record, Duration::from_secs(10)).await.unwrap();
    }
    let gappy = open(&dir.path().join("gappy"), "gappy");
    let report = {
        let gappy = gappy.clone();
        tokio::task::spawn_blocking(move || dvk_bus::restore::restore_from_topic(&kafka, &gappy)).await.unwrap()
    }
    .unwrap();
    assert_eq!((report.to, report.topic_head, report.gap()), (2, 4, Some(3)));
    assert_eq!(gappy.head(), 2);
}
