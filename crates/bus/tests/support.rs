//! Test support: logs in temporary directories, upstream appends, exactly-once checks,
//! and a real Kafka-protocol broker (Tansu) started on a loopback port.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dvk_bus::{EventSource, Ingestor};
use dvk_eventlog::{AppendRequest, EventLog, ExpectedVersion, LogConfig};
use dvk_proto::events::v1::Envelope;

pub fn open(dir: &Path, source: &str) -> EventLog {
    EventLog::open(LogConfig::new(dir, source)).unwrap()
}

/// Appends `n` events to `log`, spread over `streams` streams, one append each.
pub async fn append(log: &EventLog, n: u64, streams: u64) {
    for i in 0..n {
        let stream = format!("model-{}", i % streams);
        let v = log.stream_version(&stream).unwrap();
        let e = Envelope { correlation_id: format!("c{i}"), event_type: "test".into(), ..Envelope::default() };
        log.append(AppendRequest::new(stream, ExpectedVersion::Exact(v), vec![e])).await.unwrap();
    }
}

/// Ingests from `source` until the watermark of `name` reaches `target`.
pub async fn ingest_until(ingestor: &mut Ingestor, source: &mut impl EventSource, name: &str, target: u64) {
    let watermarks = ingestor.watermarks();
    tokio::time::timeout(Duration::from_secs(120), async {
        while watermarks.borrow().get(name).copied().unwrap_or(0) < target {
            let batch = source.next_batch().await.unwrap();
            ingestor.ingest(batch).await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name} did not reach {target}: {:?}", watermarks.borrow()));
}

/// Checks that `consumer` holds positions 1..=n of `source` exactly once, and every
/// stream's events in their order.
pub fn assert_exactly_once(consumer: &EventLog, source: &str, n: u64) {
    let mut seen: HashMap<u64, u32> = HashMap::new();
    let mut last_version: HashMap<String, u64> = HashMap::new();
    for r in consumer.read_all(1) {
        let e = r.unwrap().envelope().unwrap();
        assert_eq!(e.source, source);
        *seen.entry(e.source_position).or_default() += 1;
        let last = last_version.entry(e.stream_id.clone()).or_default();
        assert!(e.stream_version > *last, "{} out of order: {} after {}", e.stream_id, e.stream_version, last);
        *last = e.stream_version;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).map(|(p, _)| *p).collect();
    assert!(duplicated.is_empty(), "duplicated positions: {duplicated:?}");
    let missing: Vec<_> = (1..=n).filter(|p| !seen.contains_key(p)).take(10).collect();
    assert!(missing.is_empty(), "missing positions (first 10): {missing:?}");
    assert_eq!(seen.len() as u64, n);
}

/// The Tansu binary: `DVK_TANSU`, or where `cargo xtask broker --install-only` puts it.
pub fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("DVK_TANSU") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let p = home.join(".cache/dvk-ledger/tools/tansu-0.6.0/bin/tansu");
    assert!(
        p.exists(),
        "the test broker is not installed: run `cargo xtask broker --install-only` (cargo xtask test does it)"
    );
    p
}

/// A Tansu broker on a loopback port, killed on drop.
#[derive(Debug)]
pub struct Broker {
    pub port: u16,
    storage: String,
    dir: Option<PathBuf>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Broker {
    /// In-memory storage.
    pub fn memory() -> Broker {
        Self::start_with(free_port(), "memory://tansu/".into())
    }

    /// SQLite storage in `dir`: survives a broker restart.
    pub fn sqlite(dir: &Path) -> Broker {
        // Tansu resolves the database path against its working directory.
        let mut b =
            Broker { port: free_port(), storage: "sqlite://tansu.db".into(), dir: Some(dir.to_owned()), child: None };
        b.start();
        b
    }

    fn start_with(port: u16, storage: String) -> Broker {
        let mut b = Broker { port, storage, dir: None, child: None };
        b.start();
        b
    }

    /// Client settings for this broker.
    pub fn kafka(&self) -> dvk_bus::kafka::KafkaConfig {
        dvk_bus::kafka::KafkaConfig::new(&self.bootstrap())
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = if std::env::var_os("TEST_LOG").is_some() { Stdio::inherit() } else { Stdio::null() };
        let mut command = Command::new(tansu());
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        let child = command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                &self.storage,
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
