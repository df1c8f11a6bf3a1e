//! Backpressure: a burst of writes (about 60 MiB of events) while the relay cannot
//! publish at all (the broker is down) is acknowledged from the log. What the relay
//! holds in memory stays within its window (8 MiB of payload: its own count and
//! librdkafka's queue statistics, read from `/metrics` throughout the burst) while the
//! backlog waits in the log (the relay lag); the process's peak RSS stays under a fixed
//! limit, and is reported beside the same burst with the broker up. Once the broker is
//! back every event reaches the topic, once: nothing is dropped.

use std::process::{Command, Stdio};
use std::time::Duration;

use dvk_bus::Ingestor;
use dvk_bus::kafka::KafkaSource;
use dvk_client::import;
use dvk_gso as gso;
use dvk_proto::common::v1::{Date, Field, UnitCode};
use dvk_proto::events::v1::{ModelDetails, RunnerKind, Sponsor, Timeline};
use dvk_proto::registration::v1 as pr;
use dvk_tests::{Broker, SECRET, admin_units, bus_support, service_binary, token};
use tonic::transport::Channel;

const BURST: usize = 30_000;
/// Peak resident memory allowed to the registration process through the burst: a
/// coarse guard. The same burst with the broker up has measured 270–476 MiB from run
/// to run (sled's cache and the read models grow with the 60 MiB written), so the
/// sharp checks are the relay's window and librdkafka's queues below.
const PEAK_RSS_LIMIT_KB: u64 = 640 * 1024;
/// The relay's window: payload bytes handed to the producer and not yet delivered
/// (`RelayConfig::max_in_flight_bytes`).
const WINDOW_BYTES: i64 = 8 << 20;
/// One event of the burst is about 2 KiB: the window may be passed by one message, and
/// librdkafka's queue counts keys and headers beside the payloads.
const QUEUE_SLACK_BYTES: i64 = 1 << 20;

/// A figure of the service's `/metrics` (0 when absent).
async fn metric(addr: std::net::SocketAddr, name: &str) -> i64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut http) = tokio::net::TcpStream::connect(addr).await else { return 0 };
    if http.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.is_err() {
        return 0;
    }
    let mut text = String::new();
    let _ = http.read_to_string(&mut text).await;
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .map_or(0, |v| v as i64)
}

/// The peak resident set size of a process, in KiB (`VmHWM`).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// The registration service as a process publishing to `broker`, with the pre-2025
/// tree imported.
async fn registration(
    dir: &std::path::Path,
    broker: &Broker,
    metrics: std::net::SocketAddr,
) -> (std::process::Child, pr::registration_service_client::RegistrationServiceClient<Channel>) {
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let child = Command::new(service_binary("registration"))
        .env("DVK_DATA_DIR", dir.join("registration"))
        .env("DVK_JWT_HS256_SECRET_FILE", &secret)
        .env("DVK_REGISTRATION_LISTEN", addr.to_string())
        .env("DVK_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap())
        .env("DVK_METRICS_LISTEN", metrics.to_string())
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let channel = loop {
        if let Ok(ch) = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await {
            break ch;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut client =
        pr::registration_service_client::RegistrationServiceClient::new(channel).max_encoding_message_size(16 << 20);
    let file = gso::read(std::fs::File::open(admin_units("gso-communes-2025-01-04.csv")).unwrap()).unwrap();
    import::import(&mut client, &token("admin", ""), &file, "gso", |_| {}).await.unwrap();
    (child, client)
}

/// `BURST` writes from 32 clients; the last position acknowledged.
async fn burst(client: &pr::registration_service_client::RegistrationServiceClient<Channel>) -> u64 {
    let on = Some(Date { year: 2024, month: 4, day: 2 });
    let details = ModelDetails {
        name: "Mô hình dân vận khéo".into(),
        field: Field::Economy as i32,
        runner_kind: RunnerKind::Collective as i32,
        runner_name: "Chi hội".into(),
        sponsor: Sponsor::WomensUnion as i32,
        sponsor_name: "Hội LHPN".into(),
        // About 2 KiB per event: 60 MiB of events in the burst, so that holding them
        // in memory would show.
        objectives: "Bê tông hóa đường làng, ngõ xóm. ".repeat(56),
        timeline: Some(Timeline { start: on, end: None }),
        ..Default::default()
    };
    let mut tasks = Vec::new();
    for c in 0..32 {
        let (mut client, details) = (client.clone(), details.clone());
        tasks.push(tokio::spawn(async move {
            let mut last = 0;
            let mut i = c;
            while i < BURST {
                let r = pr::RegisterModelRequest {
                    request_id: format!("burst-{i}"),
                    unit: Some(UnitCode { code: "00001".into() }),
                    registered_on: on,
                    details: Some(details.clone()),
                };
                let w = client.register_model(import::authorized(r, &token("reporter", "")).unwrap()).await.unwrap();
                last = last.max(w.into_inner().position.unwrap().position);
                i += 32;
            }
            last
        }));
    }
    let mut last = 0;
    for t in tasks {
        last = last.max(t.await.unwrap());
    }
    last
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_the_relay_cannot_publish_stays_in_bounded_memory_and_all_of_it_arrives() {
    // For comparison: the same burst while the relay publishes as it goes.
    let baseline_kb = {
        let broker = Broker::memory();
        let dir = tempfile::tempdir().unwrap();
        let (mut child, client) = registration(dir.path(), &broker, free_addr()).await;
        burst(&client).await;
        let peak = peak_rss_kb(child.id());
        let _ = child.kill();
        let _ = child.wait();
        peak
    };

    // The broker goes away; the burst follows, with the relay's memory read throughout.
    let broker_dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::sqlite(broker_dir.path());
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_addr();
    let (mut child, client) = registration(dir.path(), &broker, metrics).await;
    broker.stop();
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let (mut window, mut queue) = (0i64, 0i64);
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                window = window.max(metric(metrics, "dvk_relay_in_flight_bytes").await);
                queue = queue.max(metric(metrics, "dvk_relay_producer_queue_bytes").await);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (window, queue)
        })
    };
    let last = burst(&client).await;
    // The statistics come every second: let one more arrive before the last sample.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let (window, queue) = sampler.await.unwrap();
    let backlog = metric(metrics, "dvk_relay_lag_events").await;
    let peak_kb = peak_rss_kb(child.id());

    // The broker is back: every event reaches the topic, once.
    broker.start();
    let consumer_dir = tempfile::tempdir().unwrap();
    let consumer = bus_support::open(consumer_dir.path(), "aggregation");
    let mut ingestor = Ingestor::new(consumer.clone(), &["registration"]).unwrap();
    let mut source = KafkaSource::new(&broker.kafka(), "dvk.registration.v1", "backpressure", &consumer).await.unwrap();
    bus_support::ingest_until(&mut ingestor, &mut source, "registration", last).await;
    bus_support::assert_exactly_once(&consumer, "registration", last);
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "backpressure: {BURST} writes (about 60 MiB of events) acknowledged with the broker down; the relay held at most \
         {} KiB in flight, librdkafka's queues at most {} KiB, {backlog} events waited in the log; peak RSS {} MiB \
         (the same burst with the broker up: {} MiB); {last} events delivered once",
        window / 1024,
        queue / 1024,
        peak_kb / 1024,
        baseline_kb / 1024
    );
    // What the relay could not publish waits in the log, not in memory: the relay's
    // window and librdkafka's queues filled up to the window and no further.
    assert!(window <= WINDOW_BYTES + QUEUE_SLACK_BYTES, "the relay held {window} bytes in flight");
    assert!(queue <= WINDOW_BYTES + QUEUE_SLACK_BYTES, "librdkafka's queues held {queue} bytes");
    assert!(
        queue >= WINDOW_BYTES / 2,
        "librdkafka's queues held only {queue} bytes: the relay did not fill its window"
    );
    assert!(backlog as usize >= BURST * 3 / 4, "only {backlog} events waited in the log");
    assert!(peak_kb < PEAK_RSS_LIMIT_KB, "peak RSS {peak_kb} KiB");
}
