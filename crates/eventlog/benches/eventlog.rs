//! Benchmarks of the event log: durable appends of ~500-byte events from 1, 8 and 64
//! concurrent writers, and replay (read all, checksums verified) of 1,000,000 events.
//!
//! `cargo bench -p dvk-eventlog` runs everything; `-- append` or `-- replay` runs one
//! part; `DVK_BENCH_RUNS` sets the number of runs (default 5). Each figure printed is
//! the median of the runs. The method is described in BENCHMARKS.md.

use std::time::{Duration, Instant};

use dvk_eventlog::{AppendRequest, EventLog, ExpectedVersion, LogConfig};
use dvk_proto::common::v1::{Date, Field, Money, UnitCode};
use dvk_proto::events::v1::Envelope;
use dvk_proto::events::v1::{ModelDetails, ModelRegistered, Resources, Timeline, envelope::Payload};
use prost::Message;

/// A realistic registration event: Vietnamese texts, about 500 bytes once stored.
fn event(i: u64) -> Envelope {
    let details = ModelDetails {
        name: format!("Mô hình \"Dân vận khéo\" xây dựng nông thôn mới số {i}"),
        field: Field::Economy as i32,
        runner_kind: 1,
        runner_name: "Chi hội Phụ nữ tổ dân phố 3".into(),
        sponsor: 5,
        sponsor_name: "Hội LHPN phường Phúc Xá".into(),
        rationale: "Đường ngõ xóm xuống cấp".into(),
        objectives: "Bê tông hoá 2 km đường ngõ xóm".into(),
        method: "Vận động hội viên".into(),
        area: "Tổ dân phố 3".into(),
        target_group: "Hộ gia đình".into(),
        implementing_forces: "Hội viên phụ nữ".into(),
        resources: Some(Resources { funds: Some(Money { vnd: 1_200_000_000 }), workdays: 850 }),
        timeline: Some(Timeline { start: Some(Date { year: 2024, month: 3, day: 1 }), end: None }),
        expected_outputs: "2 km đường".into(),
    };
    Envelope {
        event_type: "dvk.events.v1.ModelRegistered".into(),
        schema_version: 1,
        correlation_id: format!("{i:016x}"),
        payload: Some(Payload::ModelRegistered(ModelRegistered {
            model_id: format!("0193a1b2-0000-7000-8000-{i:012x}"),
            unit: Some(UnitCode { code: "00001".into() }),
            tree: 1,
            registered_on: Some(Date { year: 2024, month: 2, day: 15 }),
            details: Some(details),
        })),
        ..Default::default()
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct AppendRun {
    events_per_s: f64,
    p50: Duration,
    p99: Duration,
}

fn append_run(rt: &tokio::runtime::Runtime, writers: u64, per_writer: u64) -> AppendRun {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = EventLog::open(LogConfig::new(dir.path(), "registration")).expect("open");
    let started = Instant::now();
    let mut latencies: Vec<Duration> = rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..writers {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_writer as usize);
                for i in 0..per_writer {
                    let e = event(w * 1_000_000 + i);
                    let req = AppendRequest::new(format!("model-{w}-{i}"), ExpectedVersion::NoStream, vec![e])
                        .with_request_id(format!("req-{w}-{i}"), vec![0; 32]);
                    let t = Instant::now();
                    log.append(req).await.expect("append");
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("writer"));
        }
        all
    });
    let elapsed = started.elapsed();
    let total = writers * per_writer;
    assert_eq!(log.head(), total);
    latencies.sort_unstable();
    AppendRun {
        events_per_s: total as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
    }
}

fn bench_append(runs: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let size = {
        let mut e = event(1);
        e.event_id = "0193a1b2-0000-7000-8000-000000000001".into();
        e.source = "registration".into();
        e.stream_id = "model-0193a1b2-0000-7000-8000-000000000001".into();
        e.recorded_at = Some(prost_types::Timestamp { seconds: 1_732_000_000, nanos: 1 });
        e.encoded_len()
    };
    println!("append: durable (flushed before acknowledged), one {size}-byte event per append, request id on each");
    for (writers, per_writer) in [(1u64, 2_000u64), (8, 1_500), (64, 500)] {
        let results: Vec<AppendRun> = (0..runs).map(|_| append_run(&rt, writers, per_writer)).collect();
        let eps = median(results.iter().map(|r| r.events_per_s).collect());
        let p50 = median(results.iter().map(|r| r.p50.as_secs_f64() * 1e3).collect());
        let p99 = median(results.iter().map(|r| r.p99.as_secs_f64() * 1e3).collect());
        let each: Vec<String> = results.iter().map(|r| format!("{:.0}", r.events_per_s)).collect();
        println!(
            "append writers={writers:>2} events={:>6}: median {eps:>9.0} events/s, p50 {p50:.2} ms, p99 {p99:.2} ms  (runs: {})",
            writers * per_writer,
            each.join(", ")
        );
    }
}

fn bench_replay(runs: usize) {
    const N: u64 = 1_000_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig::new(dir.path(), "registration");
    {
        let log = EventLog::open(config.clone()).expect("open");
        let fill = Instant::now();
        let mut next = 0u64;
        while next < N {
            let events: Vec<Envelope> = (next..(next + 1000).min(N)).map(event).collect();
            next += events.len() as u64;
            log.append_blocking(AppendRequest::new(format!("bulk-{next}"), ExpectedVersion::Any, events))
                .expect("append");
        }
        println!("replay: {N} events written in {:.1} s (appends of 1,000 events)", fill.elapsed().as_secs_f64());
        log.close().expect("close");
    }
    // Each run reopens the log, as a restarting service does: sled's cache starts
    // empty (the operating system's file cache is warm after the first run).
    let mut raw = Vec::new();
    let mut decoded = Vec::new();
    for _ in 0..runs {
        let log = EventLog::open(config.clone()).expect("reopen");
        let t = Instant::now();
        let mut bytes = 0usize;
        let mut count = 0u64;
        for r in log.read_all(1) {
            let r = r.expect("record");
            bytes += r.payload().len();
            count += 1;
        }
        assert_eq!(count, N);
        std::hint::black_box(bytes);
        raw.push(N as f64 / t.elapsed().as_secs_f64());
        log.close().expect("close");
        drop(log);

        let log = EventLog::open(config.clone()).expect("reopen");
        let t = Instant::now();
        let mut sum = 0u64;
        for r in log.read_all(1) {
            sum += r.expect("record").envelope().expect("envelope").source_position;
        }
        assert_eq!(sum, N * (N + 1) / 2);
        decoded.push(N as f64 / t.elapsed().as_secs_f64());
        log.close().expect("close");
    }
    let fmt = |xs: &[f64]| xs.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
    println!(
        "replay read_all after reopen (checksums verified): median {:>9.0} events/s  (runs: {})",
        median(raw.clone()),
        fmt(&raw)
    );
    println!(
        "replay read_all after reopen + Envelope decode:    median {:>9.0} events/s  (runs: {})",
        median(decoded.clone()),
        fmt(&decoded)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let runs = std::env::var("DVK_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let want = |name: &str| args.is_empty() || args.iter().any(|a| name.contains(a.as_str()));
    println!("cores: {}", std::thread::available_parallelism().map_or(0, |n| n.get()));
    if want("append") {
        bench_append(runs);
    }
    if want("replay") {
        bench_replay(runs);
    }
}
