//! Benchmarks of the bus through the test broker (Tansu) on loopback:
//! - end to end: a log of N ~500-byte events relayed to the topic and consumed into
//!   another log (exactly once), events/s from relay start to the last ingest;
//! - added latency at 5,000 events/s: from the append to the upstream log to the
//!   append to the consumer's log, p50 / p99;
//! - the transport's own ceiling on the same broker: a bare rdkafka producer (many
//!   sends in flight) and a bare consumer over N messages of the same size.
//!
//! `DVK_BENCH_RUNS` (default 5) and `DVK_BUS_EVENTS` (default 1,000,000) set the
//! size. Needs the broker: `cargo xtask broker --install-only` (cargo xtask bench bus
//! does it).

#[path = "../tests/support.rs"]
mod support;

use std::time::{Duration, Instant, SystemTime};

use dvk_bus::kafka::{KafkaSource, RelayConfig, relay, topic_of};
use dvk_bus::{EventSource, Ingestor};
use dvk_eventlog::{AppendRequest, EventLog, ExpectedVersion};
use dvk_proto::events::v1::Envelope;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::{Broker, open};
use tokio::sync::watch;

const SOURCE: &str = "registration";

fn event(i: u64) -> Envelope {
    Envelope {
        event_type: "dvk.events.v1.ModelRegistered".into(),
        schema_version: 1,
        correlation_id: format!("{i:016x}"),
        // About 500 bytes once the log stamps ids and positions.
        causation_id: "Mô hình Dân vận khéo: xây dựng nông thôn mới, bê tông hoá đường ngõ xóm, lắp đèn chiếu sáng, vận động hội viên góp công góp của; ".repeat(3),
        occurred_at: Some(prost_types::Timestamp::from(SystemTime::now())),
        ..Envelope::default()
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

async fn fill(log: &EventLog, n: u64) {
    let mut i = 0;
    while i < n {
        let count = 1000.min(n - i);
        let events = (i..i + count).map(event).collect();
        log.append(AppendRequest::new(format!("model-{}", (i / 1000) % 101), ExpectedVersion::Any, events))
            .await
            .unwrap();
        i += count;
    }
}

async fn end_to_end(n: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::memory();
    let kafka = broker.kafka();
    let upstream = open(&dir.path().join("up"), SOURCE);
    fill(&upstream, n).await;
    let consumer = open(&dir.path().join("down"), "aggregation");
    let started = Instant::now();
    let (cursor_tx, _) = watch::channel(0);
    let (stop_tx, stop) = watch::channel(false);
    let relay_task =
        tokio::spawn(relay(upstream.clone(), RelayConfig::new(kafka.clone(), topic_of(SOURCE)), cursor_tx, stop));
    let mut source = KafkaSource::new(&kafka, &topic_of(SOURCE), "bench", &consumer).await.unwrap();
    let mut ingestor = Ingestor::new(consumer.clone(), &[SOURCE]).unwrap();
    support::ingest_until(&mut ingestor, &mut source, SOURCE, n).await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    stop_tx.send(true).unwrap();
    relay_task.await.unwrap().unwrap();
    rate
}

/// Appends at `rate`/s for `secs`; returns p50 and p99 of append → consumer-log append.
async fn latency(rate: u64, secs: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::memory();
    let kafka = broker.kafka();
    let upstream = open(&dir.path().join("up"), SOURCE);
    let consumer = open(&dir.path().join("down"), "aggregation");
    let (cursor_tx, _) = watch::channel(0);
    let (stop_tx, stop) = watch::channel(false);
    let relay_task =
        tokio::spawn(relay(upstream.clone(), RelayConfig::new(kafka.clone(), topic_of(SOURCE)), cursor_tx, stop));
    dvk_bus::kafka::ensure_topic(&kafka, &topic_of(SOURCE), 6, 1).await.unwrap();
    let mut source = KafkaSource::new(&kafka, &topic_of(SOURCE), "latency", &consumer).await.unwrap();
    let mut ingestor = Ingestor::new(consumer.clone(), &[SOURCE]).unwrap();
    // Warm up (connections, metadata, first fetches) before measuring.
    const WARM: u64 = 200;
    for i in 0..WARM {
        upstream
            .append(AppendRequest::new(format!("warm-{}", i % 7), ExpectedVersion::Any, vec![event(i)]))
            .await
            .unwrap();
    }
    support::ingest_until(&mut ingestor, &mut source, SOURCE, WARM).await;
    let n = rate * secs;
    let writer = {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let tick = Duration::from_millis(10);
            let per_tick = rate / 100;
            let mut interval = tokio::time::interval(tick);
            let mut i = 0;
            while i < n {
                interval.tick().await;
                for _ in 0..per_tick {
                    let mut e = event(i);
                    e.occurred_at = Some(prost_types::Timestamp::from(SystemTime::now()));
                    let up = upstream.clone();
                    // Appends of one event each, many at once: as many clients would.
                    tokio::spawn(async move {
                        up.append(AppendRequest::new(format!("model-{}", i % 101), ExpectedVersion::Any, vec![e]))
                            .await
                            .unwrap();
                    });
                    i += 1;
                }
            }
        })
    };
    let mut latencies = Vec::with_capacity(n as usize);
    while latencies.len() < n as usize {
        let batch = source.next_batch().await.unwrap();
        let sent: Vec<SystemTime> = batch
            .items
            .iter()
            .filter_map(|i| match i {
                dvk_bus::Item::Event(e) => e.occurred_at.and_then(|t| SystemTime::try_from(t).ok()),
                dvk_bus::Item::Malformed { .. } => None,
            })
            .collect();
        ingestor.ingest(batch).await.unwrap();
        let now = SystemTime::now();
        latencies.extend(sent.iter().map(|t| now.duration_since(*t).unwrap_or_default().as_secs_f64() * 1e3));
    }
    writer.await.unwrap();
    stop_tx.send(true).unwrap();
    relay_task.await.unwrap().unwrap();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    (p(0.5), p(0.99))
}

/// The broker's ceiling: bare produce (many in flight) then bare consume of n messages.
async fn ceiling(n: u64) -> (f64, f64) {
    let broker = Broker::memory();
    let kafka = broker.kafka();
    let topic = "ceiling";
    dvk_bus::kafka::ensure_topic(&kafka, topic, 6, 1).await.unwrap();
    let payload = vec![b'x'; 500];
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "100000")
        .create()
        .unwrap();
    let started = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    for i in 0..n {
        let key = format!("k{}", i % 101);
        loop {
            match producer.send_result(FutureRecord::to(topic).key(&key).payload(&payload)) {
                Ok(f) => {
                    in_flight.push_back(f);
                    break;
                }
                Err((_, _)) => {
                    in_flight.pop_front().unwrap().await.unwrap().unwrap();
                }
            }
        }
        if in_flight.len() >= 50_000 {
            in_flight.pop_front().unwrap().await.unwrap().unwrap();
        }
    }
    for f in in_flight {
        f.await.unwrap().unwrap();
    }
    let produce = n as f64 / started.elapsed().as_secs_f64();
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "ceiling")
        .set("fetch.wait.max.ms", "10")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..6 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let started = Instant::now();
    let mut got = 0u64;
    while got < n {
        let m = consumer.recv().await.unwrap();
        std::hint::black_box(m.payload());
        got += 1;
    }
    (produce, n as f64 / started.elapsed().as_secs_f64())
}

fn main() {
    let runs: usize = std::env::var("DVK_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let n: u64 = std::env::var("DVK_BUS_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("cores: {}", std::thread::available_parallelism().map_or(0, |c| c.get()));
    let fmt = |xs: &[f64]| xs.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
    let e2e: Vec<f64> = (0..runs).map(|_| rt.block_on(end_to_end(n))).collect();
    println!(
        "end to end, {n} events (relay + consume into a log): median {:.0} events/s  (runs: {})",
        median(e2e.clone()),
        fmt(&e2e)
    );
    let lat: Vec<(f64, f64)> = (0..runs).map(|_| rt.block_on(latency(5_000, 10))).collect();
    let p50: Vec<f64> = lat.iter().map(|l| l.0).collect();
    let p99: Vec<f64> = lat.iter().map(|l| l.1).collect();
    println!(
        "added latency at 5,000 events/s (append → consumer-log append): median p50 {:.1} ms, p99 {:.1} ms  (p99 runs: {})",
        median(p50),
        median(p99.clone()),
        p99.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(", ")
    );
    let ceil: Vec<(f64, f64)> = (0..runs).map(|_| rt.block_on(ceiling(n))).collect();
    let prod: Vec<f64> = ceil.iter().map(|c| c.0).collect();
    let cons: Vec<f64> = ceil.iter().map(|c| c.1).collect();
    println!(
        "broker ceiling, bare rdkafka producer: median {:.0} msgs/s  (runs: {})",
        median(prod.clone()),
        fmt(&prod)
    );
    println!(
        "broker ceiling, bare rdkafka consumer: median {:.0} msgs/s  (runs: {})",
        median(cons.clone()),
        fmt(&cons)
    );
}
