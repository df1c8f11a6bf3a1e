//! Backpressure: a burst of writes (about 60 MiB of events) while the relay cannot
//! publish at all (the broker is down) is acknowledged from the log; the registration
//! process's peak RSS stays under a fixed limit and no higher than when the same burst
//! is published as it goes (the relay keeps a bounded window in flight and reads the
//! rest from the log later); once the broker is back every event reaches the topic:
//! nothing is dropped.

use std::process::{Command, Stdio};
use std::time::Duration;

use dvk_bus::Ingestor;
use dvk_bus::kafka::KafkaSource;
use dvk_cli::{gso, import};
use dvk_proto::common::v1::{Date, Field, UnitCode};
use dvk_proto::events::v1::{ModelDetails, RunnerKind, Sponsor, Timeline};
use dvk_proto::registration::v1 as pr;
use dvk_tests::{Broker, SECRET, admin_units, bus_support, service_binary, token};
use tonic::transport::Channel;

const BURST: usize = 30_000;
/// Peak resident memory allowed to the registration process through the burst.
const PEAK_RSS_LIMIT_KB: u64 = 450 * 1024;
/// How much more memory the burst may take with the broker down than with it up (the
/// burst's events are 60 MiB).
const BACKLOG_MARGIN_KB: u64 = 24 * 1024;

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
) -> (std::process::Child, pr::registration_service_client::RegistrationServiceClient<Channel>) {
    let secret = dir.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let child = Command::new(service_binary("registration"))
        .env("DVK_DATA_DIR", dir.join("registration"))
        .env("DVK_JWT_HS256_SECRET_FILE", &secret)
        .env("DVK_REGISTRATION_LISTEN", addr.to_string())
        .env("DVK_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_the_relay_cannot_publish_stays_in_bounded_memory_and_all_of_it_arrives() {
    // For comparison: the same burst while the relay publishes as it goes.
    let baseline_kb = {
        let broker = Broker::memory();
        let dir = tempfile::tempdir().unwrap();
        let (mut child, client) = registration(dir.path(), &broker).await;
        burst(&client).await;
        let peak = peak_rss_kb(child.id());
        let _ = child.kill();
        let _ = child.wait();
        peak
    };

    // The broker goes away; the burst follows.
    let broker_dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::sqlite(broker_dir.path());
    let dir = tempfile::tempdir().unwrap();
    let (mut child, client) = registration(dir.path(), &broker).await;
    broker.stop();
    let last = burst(&client).await;
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
        "backpressure: {BURST} writes (about 60 MiB of events) acknowledged with the broker down; peak RSS {} MiB \
         (the same burst with the broker up: {} MiB); {last} events delivered once",
        peak_kb / 1024,
        baseline_kb / 1024
    );
    assert!(peak_kb < PEAK_RSS_LIMIT_KB, "peak RSS {peak_kb} KiB");
    // What the relay could not publish is read from the log when it can, not kept in
    // memory: the outage costs no more memory than publishing as it goes.
    assert!(
        peak_kb < baseline_kb + BACKLOG_MARGIN_KB,
        "peak RSS {peak_kb} KiB with the broker down, {baseline_kb} KiB with it up"
    );
}
