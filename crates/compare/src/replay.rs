//! Replay beside the transport's limit, on the 1,000,000-event aggregation log:
//!
//! - ours: the aggregation's projection rebuilt from position 1 (what
//!   `RebuildProjections` and a start without a snapshot do): every record read and
//!   checksummed, every envelope decoded, every event folded into the roll-ups;
//! - raw sled: the same directory opened with sled and its event entries iterated,
//!   nothing decoded (the storage's own limit);
//! - raw Kafka: the same event payloads published once to a 6-partition topic on the
//!   test broker (Tansu, memory storage, loopback), then read by a bare rdkafka
//!   consumer, nothing decoded (the transport's limit).
//!
//! Ours and raw sled run alternately, each on a freshly opened directory (sled's cache
//! empty, the kernel's page cache warm for both).

use std::path::Path;
use std::time::{Duration, Instant};

use dvk_eventlog::{EventLog, LogConfig};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::{joined, median, thousands};

/// sled's directory lock trails a closed handle by a few milliseconds.
fn open_sled(dir: &Path) -> anyhow::Result<sled::Db> {
    let started = Instant::now();
    loop {
        match sled::Config::new().path(dir).cache_capacity(1 << 30).open() {
            Ok(db) => return Ok(db),
            Err(e) if started.elapsed() < Duration::from_secs(10) && e.to_string().contains("lock") => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Iterates every event entry (`E` keys of the `log` tree) of the directory; returns
/// the entries, their bytes and the seconds taken.
fn raw_sled(dir: &Path) -> anyhow::Result<(u64, u64, f64)> {
    let db = open_sled(dir)?;
    let tree = db.open_tree("log")?;
    let t = Instant::now();
    let (mut entries, mut bytes) = (0u64, 0u64);
    for kv in tree.range(&b"E"[..]..&b"F"[..]) {
        let (_, v) = kv?;
        entries += 1;
        bytes += v.len() as u64;
    }
    let secs = t.elapsed().as_secs_f64();
    drop(tree);
    drop(db);
    Ok((entries, bytes, secs))
}

fn ours(dir: &Path) -> anyhow::Result<(u64, f64)> {
    let log = EventLog::open(LogConfig::new(dir, "aggregation"))?;
    let t = Instant::now();
    let (state, last) = dvk_runtime::host::replay::<dvk_aggregation::State>(&log)?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(last == log.head(), "replayed to {last}, head {}", log.head());
    std::hint::black_box(state.cells.len());
    drop(state);
    log.close()?;
    Ok((last, secs))
}

/// Publishes `payloads` (keyed by position) to `topic`; returns messages/s.
async fn publish(bootstrap: &str, topic: &str, payloads: &[Vec<u8>]) -> anyhow::Result<f64> {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "100000")
        .create()?;
    let started = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    for (i, payload) in payloads.iter().enumerate() {
        let key = (i as u64).to_be_bytes();
        loop {
            match producer.send_result(FutureRecord::to(topic).key(&key[..]).payload(payload)) {
                Ok(f) => {
                    in_flight.push_back(f);
                    break;
                }
                Err(_) => {
                    let f: rdkafka::producer::DeliveryFuture = in_flight.pop_front().expect("a send in flight");
                    f.await?.map_err(|(e, _)| e)?;
                }
            }
        }
        if in_flight.len() >= 50_000 {
            in_flight.pop_front().expect("a send").await?.map_err(|(e, _)| e)?;
        }
    }
    for f in in_flight {
        f.await?.map_err(|(e, _)| e)?;
    }
    Ok(payloads.len() as f64 / started.elapsed().as_secs_f64())
}

/// A bare consumer reading `n` messages of `topic` from the beginning; messages/s.
async fn consume(bootstrap: &str, topic: &str, n: u64, run: usize) -> anyhow::Result<f64> {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("compare-{run}"))
        .set("fetch.wait.max.ms", "10")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..6 {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let (mut got, mut bytes) = (0u64, 0u64);
    while got < n {
        let m = consumer.recv().await?;
        bytes += m.payload().map_or(0, |p| p.len()) as u64;
        got += 1;
    }
    std::hint::black_box(bytes);
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Part 3, as Markdown.
pub fn compare(dir: &Path, runs: usize, rt: &tokio::runtime::Runtime) -> anyhow::Result<String> {
    println!("replay: {runs} runs");
    // sled consolidates pages written in fragments on their first read: once, before any
    // timed run.
    let (entries, bytes, _) = raw_sled(dir)?;
    let mut ours_rates = Vec::new();
    let mut sled_rates = Vec::new();
    let mut events = 0;
    for run in 0..runs {
        let (n, secs) = ours(dir)?;
        events = n;
        ours_rates.push(n as f64 / secs);
        let (_, _, raw_secs) = raw_sled(dir)?;
        sled_rates.push(n as f64 / raw_secs);
        println!(
            "  run {run}: ours rebuild {} events/s, raw sled {} events/s ({entries} entries)",
            thousands(n as f64 / secs),
            thousands(n as f64 / raw_secs)
        );
    }

    // The same events' payloads through the transport.
    let log = EventLog::open(LogConfig::new(dir, "aggregation"))?;
    let payloads: Vec<Vec<u8>> = log.read_all(1).map(|r| r.map(|r| r.payload().to_vec())).collect::<Result<_, _>>()?;
    log.close()?;
    drop(log);
    let payload_bytes: usize = payloads.iter().map(Vec::len).sum();
    let broker = crate::support::Broker::memory();
    let bootstrap = broker.bootstrap();
    let topic = "compare-replay";
    let (produce_rate, kafka_rates) = rt.block_on(async {
        dvk_bus::kafka::ensure_topic(&broker.kafka(), topic, 6, 1).await?;
        let produce_rate = publish(&bootstrap, topic, &payloads).await?;
        println!("  published {} events to Tansu at {} msgs/s", payloads.len(), thousands(produce_rate));
        let mut rates = Vec::new();
        for run in 0..runs {
            let r = consume(&bootstrap, topic, payloads.len() as u64, run).await?;
            println!("  run {run}: raw Kafka consume {} msgs/s", thousands(r));
            rates.push(r);
        }
        anyhow::Ok((produce_rate, rates))
    })?;
    drop(broker);

    let (o, s, k) = (median(ours_rates.clone()), median(sled_rates.clone()), median(kafka_rates.clone()));
    let mut md = String::from("### 3. Replay beside the transport's limit\n\n");
    md.push_str(&format!(
        "The {} events of the aggregation log ({} sled entries, {:.0} MiB of records; {:.0} MiB of event payloads \
         published to Kafka at {} msgs/s). Part: `replay`.\n\n",
        thousands(events as f64),
        thousands(entries as f64),
        bytes as f64 / (1 << 20) as f64,
        payload_bytes as f64 / (1 << 20) as f64,
        thousands(produce_rate),
    ));
    md.push_str("| what | events/s (median) | runs | ours as a share of it |\n|---|---:|---|---:|\n");
    let f = |x: f64| thousands(x);
    md.push_str(&format!(
        "| ours: projection rebuild (read, checksum, decode, fold) | **{}** | {} | |\n",
        f(o),
        joined(&ours_rates, f)
    ));
    md.push_str(&format!(
        "| raw sled iteration of the same directory (no decoding) | {} | {} | {:.0} % ({:.2}×) |\n",
        f(s),
        joined(&sled_rates, f),
        100.0 * o / s,
        o / s
    ));
    md.push_str(&format!(
        "| raw rdkafka consumer, same events from Tansu (no decoding) | {} | {} | {:.0} % ({:.2}×) |\n\n",
        f(k),
        joined(&kafka_rates, f),
        100.0 * o / k,
        o / k
    ));
    Ok(md)
}
