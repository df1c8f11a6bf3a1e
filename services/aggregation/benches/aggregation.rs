//! Benchmarks of the aggregation:
//! - (a) freshness over the real broker: registration, reporting and aggregation as
//!   three servers linked through Tansu; writes (RegisterModel and SubmitReport) at
//!   1,000/s; for each, the time from sending the write until the nation's roll-up,
//!   asked with the write's token, answers;
//! - (b) rebuild: the read models replayed from zero over a 1,000,000-event log;
//! - (c) `GetRollup` from 64 clients over that log (units of every level, both trees);
//! - (d) `as_of` on that log: positions at 30 %, 60 % and 90 % of the reporting events.
//!
//! The 1,000,000-event log holds what the aggregation would have received: the real
//! trees (imported through a registration service) and generated model and report
//! events in the proportions of the field. `DVK_BENCH_RUNS` (default 5) sets the runs;
//! every figure printed is the median. `DVK_BENCH_PARTS` (default `abcd`) picks the
//! parts measured, `DVK_BENCH_THREADS` (default `2:2,1:1`) the splits of the cores
//! between the service's and the clients' worker threads in part (c). Needs the
//! broker (`cargo xtask bench aggregation` installs it). Method in BENCHMARKS.md.

mod lean;
#[path = "../../../crates/bus/tests/support.rs"]
#[allow(unreachable_pub)]
mod support;
mod workload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use dvk_aggregation::snapshot;
use dvk_client::import;
use dvk_codec::convert;
use dvk_domain::model::Field;
use dvk_domain::schedule::{Deadline, Schedule};
use dvk_domain::{Period, Tree};
use dvk_proto::aggregation::v1::{self as pa, aggregation_service_client::AggregationServiceClient};
use dvk_proto::common::v1 as pc;
use dvk_runtime::host::Upstream;
use dvk_testkit::{median, percentile_ms};
use tonic::transport::Channel;
use workload::{details, gso_file, prepare_log};

/// As the service binaries (see `dvk_runtime::Allocator`).
#[global_allocator]
static ALLOCATOR: dvk_runtime::Allocator = dvk_runtime::Allocator;

const CLIENTS: usize = 64;
/// The connections the `GetRollup` clients share.
const CONNECTIONS: usize = 8;
const QUERIES_PER_RUN: usize = 50_000;
/// The rate of the scheduled `GetRollup` runs: the target throughput.
const PACED_RATE: f64 = 20_000.0;

fn token(role: &str) -> String {
    dvk_testkit::token(role, "")
}

fn req<T>(m: T, token: &str) -> tonic::Request<T> {
    import::authorized(m, token).unwrap()
}

/// `runs` runs of `rollups`: the queries/s, p50 and p99 (ms) of each.
fn rollup_runs(
    rt: &tokio::runtime::Runtime,
    runs: usize,
    addr: SocketAddr,
    token: &str,
    targets: &[(Tree, Option<String>)],
    rate: Option<f64>,
    client: Client,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut rates, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (r, p50, p99) = rt.block_on(rollups(addr, token, targets, rate, client));
        rates.push(r);
        p50s.push(p50);
        p99s.push(p99);
    }
    (rates, p50s, p99s)
}

/// The client the `GetRollup` runs use.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Client {
    /// tonic's generated client over a `Channel`, as an application would call.
    Tonic,
    /// Calls straight over `h2` (see `lean.rs`), as a load generator does.
    Lean,
}

/// `GetRollup` from `CLIENTS` clients over `CONNECTIONS` connections, `QUERIES_PER_RUN` in all, over
/// units of every level in both trees: as fast as answers come (`rate` None) or on a
/// schedule of `rate` queries/s in all, each timed from when it was due. Returns the
/// queries/s achieved, p50 and p99 (ms).
async fn rollups(
    addr: SocketAddr,
    token: &str,
    targets: &[(Tree, Option<String>)],
    rate: Option<f64>,
    kind: Client,
) -> (f64, f64, f64) {
    const PATH: &str = "/dvk.aggregation.v1.AggregationService/GetRollup";
    let mut clients = Vec::new();
    let mut leans = Vec::new();
    for _ in 0..CONNECTIONS {
        match kind {
            Client::Tonic => clients.push(AggregationServiceClient::new(channel(addr).await)),
            Client::Lean => leans.push(lean::Client::connect(addr, PATH, token).await),
        }
    }
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut client = clients.get(c % CONNECTIONS).cloned();
        let lean = leans.get(c % CONNECTIONS).cloned();
        let token = token.to_owned();
        let targets = targets.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while i < QUERIES_PER_RUN {
                let (tree, unit) = &targets[(i * 104_729) % targets.len()];
                let period = if *tree == Tree::Pre2025 { ["2022", "2023-H2", "2024-H1"][i % 3] } else { "2025-H2" };
                let r = pa::GetRollupRequest {
                    unit: unit.as_ref().map(|c| pc::UnitCode { code: c.clone() }),
                    period: Some(pc::Period { code: period.into() }),
                    tree: convert::tree_out(*tree) as i32,
                    include_unapproved: i % 2 == 0,
                    ..Default::default()
                };
                // Query i is due at i / rate seconds.
                let due = match rate {
                    Some(rate) => {
                        let due = started + Duration::from_secs_f64(i as f64 / rate);
                        tokio::time::sleep_until(due).await;
                        due
                    }
                    None => tokio::time::Instant::now(),
                };
                let answer = match (&mut client, &lean) {
                    (Some(client), _) => client.get_rollup(req(r, &token)).await.unwrap().into_inner(),
                    (None, Some(lean)) => lean.unary::<pa::Rollup>(&r).await,
                    (None, None) => unreachable!("a client per task"),
                };
                assert_eq!(answer.period.map(|p| p.code).as_deref(), Some(period), "the period asked");
                lat.push(due.elapsed());
                i += CLIENTS;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    (lat.len() as f64 / secs, percentile_ms(&lat, 0.5), percentile_ms(&lat, 0.99))
}

/// Part (c) with the aggregation's runtime on `server_threads` worker threads and the
/// clients' on `client_threads`: `GetRollup` from 64 clients over the prepared log in
/// `dir`, closed loop and on schedule, with each client.
fn rollup_part(
    dir: &Path,
    server_threads: usize,
    client_threads: usize,
    runs: usize,
    analyst: &str,
    pre: &dvk_gso::GsoFile,
    new: &dvk_gso::GsoFile,
) {
    let servers = start(dir, None, true, server_threads);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(client_threads).enable_all().build().unwrap();
    let mut targets: Vec<(Tree, Option<String>)> = vec![(Tree::Pre2025, None), (Tree::Y2025, None)];
    for (tree, file) in [(Tree::Pre2025, pre), (Tree::Y2025, new)] {
        targets.extend(file.units.iter().map(|(_, u)| (tree, Some(u.code.as_ref().unwrap().code.clone()))));
    }
    // The service answers once it has loaded its snapshot: wait for that first.
    rt.block_on(async {
        let mut client = AggregationServiceClient::new(channel(servers.addrs[0]).await);
        let r = pa::GetRollupRequest {
            period: Some(pc::Period { code: "2024".into() }),
            tree: pc::Tree::Pre2025 as i32,
            ..Default::default()
        };
        client.get_rollup(req(r, analyst)).await.unwrap();
    });
    let addr = servers.addrs[0];
    // Closed loop: each client sends its next query when the last one answers, so
    // the rate is the most the service gives and the latencies include the queue of
    // 64 calls in flight. At the target rate: the clients send on a fixed schedule
    // (20,000/s in all), each query timed from when it was due, so a late answer also
    // delays the queries behind it and counts (no coordinated omission). Each with
    // the lean client (the headline: less of the 2 cores spent on load generation)
    // and with tonic's.
    for kind in [Client::Lean, Client::Tonic] {
        for rate in [None, Some(PACED_RATE)] {
            let (rates, p50, p99) = rollup_runs(&rt, runs, addr, analyst, &targets, rate, kind);
            let each: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
            let how = rate.map_or("closed loop".to_owned(), |r| format!("scheduled at {r:.0}/s"));
            println!(
                "(c) GetRollup, server {server_threads} / clients {client_threads} worker threads, {CLIENTS} {kind:?} clients over {CONNECTIONS} connections, {how}: median {:.0}/s, p50 {:.2} ms, p99 {:.2} ms  (runs: {}; p99 runs: {})",
                median(&rates),
                median(&p50),
                median(&p99),
                each.join(", "),
                p99.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", "),
            );
        }
    }
    drop(servers);
}

/// The splits of the 2 cores that part (c) runs with, as `server:clients` worker
/// threads: `DVK_BENCH_THREADS` (default `2:2,1:1`: both runtimes on both cores, as
/// the other parts run; and a core's worth of threads each, as when the clients are
/// other machines).
fn thread_splits() -> Vec<(usize, usize)> {
    let spec = std::env::var("DVK_BENCH_THREADS").unwrap_or_else(|_| "2:2,1:1".into());
    spec.split(',')
        .map(|s| {
            let parse = |t: &str| t.trim().parse::<usize>().ok().filter(|n| *n > 0);
            match s.split_once(':').map(|(a, b)| (parse(a), parse(b))) {
                Some((Some(a), Some(b))) => (a, b),
                _ => panic!("DVK_BENCH_THREADS: {s:?} is not server:clients worker threads (for example 2:2)"),
            }
        })
        .collect()
}

async fn channel(addr: SocketAddr) -> Channel {
    for _ in 0..200 {
        if let Ok(ch) = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await {
            return ch;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start");
}

/// Servers on their own 2-thread runtime; stopped on drop.
struct Servers {
    addrs: Vec<SocketAddr>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(true);
        let _ = self.thread.take().unwrap().join();
    }
}

/// Registration, reporting and aggregation linked through Kafka (or, for the
/// aggregation alone over a prepared log, `kafka` = None and no registration).
fn start(dir: &Path, kafka: Option<dvk_bus::kafka::KafkaConfig>, only_aggregation: bool, threads: usize) -> Servers {
    let dir = dir.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap();
        rt.block_on(async move {
            let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            let mut tasks = tokio::task::JoinSet::new();
            let mut addrs = Vec::new();
            if !only_aggregation {
                let s = dvk_testkit::settings(&dir.join("registration"), None);
                let log = dvk_registration::open_log(&s).unwrap();
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addrs.push(l.local_addr().unwrap());
                tasks.spawn(dvk_registration::serve(l, s, log, kafka.clone(), until(stopped.clone()), || {}));
                let s = dvk_testkit::settings(&dir.join("reporting"), None);
                let log = dvk_reporting::open_log(&s).unwrap();
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addrs.push(l.local_addr().unwrap());
                let end = Period::parse("p", "2021-H1").unwrap().end();
                let days = (dvk_runtime::host::today().to_unix_days() - end.to_unix_days()) as u32 + 365;
                let open = Deadline { opens_before_end: 15, due_after_end: days, locks_after_end: days };
                let schedule = Schedule { half_year: open, year: open, ..Schedule::default() };
                let links =
                    dvk_reporting::Links { relay: kafka.clone(), registration: kafka.clone().map(Upstream::Kafka) };
                tasks.spawn(dvk_reporting::serve(l, s, schedule, log, links, until(stopped.clone()), || {}));
            }
            let s = dvk_testkit::settings(&dir.join("aggregation"), None);
            let log = dvk_aggregation::open_log(&s).unwrap();
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push(l.local_addr().unwrap());
            let links = dvk_aggregation::Links {
                registration: kafka.clone().map(Upstream::Kafka),
                reporting: kafka.clone().map(Upstream::Kafka),
            };
            tasks.spawn(dvk_aggregation::serve(l, s, 125_000, log, links, until(stopped), || {}));
            tx.send(addrs).unwrap();
            while let Some(r) = tasks.join_next().await {
                r.unwrap().unwrap();
            }
        });
    });
    let addrs = rx.recv().unwrap();
    Servers { addrs, stop: Some(stop), thread: Some(thread) }
}

fn main() {
    let runs: usize = std::env::var("DVK_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let parts = std::env::var("DVK_BENCH_PARTS").unwrap_or_else(|_| "abcd".into());
    let part = |p: char| parts.contains(p);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("cores: {}", std::thread::available_parallelism().map_or(0, |n| n.get()));
    let dir = tempfile::tempdir().unwrap();

    // (b) Rebuild from zero.
    let t = Instant::now();
    let log = prepare_log(dir.path(), &rt);
    let head = log.head();
    println!("prepared a log of {head} events in {:.1} s", t.elapsed().as_secs_f64());
    if part('b') {
        let mut rates = Vec::new();
        let mut state = dvk_aggregation::State::default();
        for _ in 0..runs {
            let t = Instant::now();
            let (s, last) = dvk_runtime::host::replay::<dvk_aggregation::State>(&log).unwrap();
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(last, head);
            rates.push(head as f64 / secs);
            state = s;
        }
        let each: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        println!("(b) rebuild of {head} events: median {:.0} events/s  (runs: {})", median(&rates), each.join(", "));
        let reports = state.reports.len();
        let models = state.models.len();
        println!("    {models} models, {reports} reports, {} cells", state.cells.len());
        // Every generated model and report is in the rebuilt projection: a rebuild that
        // passed events over would be measuring nothing.
        let (mut registered, mut streams) = (0usize, std::collections::HashSet::new());
        for r in log.read_all(1) {
            let env = r.unwrap().envelope().unwrap();
            registered += usize::from(env.event_type == "dvk.events.v1.ModelRegistered");
            if env.stream_id.starts_with("report-") {
                streams.insert(env.stream_id);
            }
        }
        assert_eq!((models, reports), (registered, streams.len()), "models and reports rebuilt");
    }

    // (d) as_of: the service's snapshot ring over the log (one every 125,000 events),
    // then points at 30 %, 60 % and 90 % of the reporting events.
    let mut s = dvk_aggregation::State::default();
    let mut from = 1;
    while from <= head {
        let to = (from + 124_999).min(head);
        for r in log.read_range(from, to) {
            let r = r.unwrap();
            dvk_runtime::host::fold(&mut s, r.position(), r.envelope().unwrap());
        }
        snapshot::save(&log, snapshot::encode(&s)).unwrap();
        from = to + 1;
    }
    let reporting_head = s.seen.get("reporting").map_or(0, |x| x.watermark);
    drop(s);
    {
        let t = Instant::now();
        let (state, position) = snapshot::newest(&log, |_| true).unwrap().unwrap();
        println!("    the newest snapshot (position {position}) loads in {:.2} s", t.elapsed().as_secs_f64());
        drop(state);
    }
    let shares: &[u64] = if part('d') { &[30, 60, 90] } else { &[] };
    for share in shares {
        let bound = reporting_head * share / 100;
        let point = dvk_aggregation::asof::Point::Positions(BTreeMap::from([("reporting".to_owned(), bound)]));
        let mut secs = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let past = dvk_aggregation::asof::state_at(&log, &point).unwrap();
            secs.push(t.elapsed().as_secs_f64());
            assert_eq!(past.seen.get("reporting").map_or(0, |x| x.watermark), bound);
        }
        let each: Vec<String> = secs.iter().map(|s| format!("{s:.2}")).collect();
        println!(
            "(d) as_of reporting position {bound} ({share} %): median {:.2} s  (runs: {})",
            median(&secs),
            each.join(", ")
        );
    }
    log.close().unwrap();
    drop(log);

    let pre = gso_file("gso-communes-2025-01-04.csv");
    let new = gso_file("gso-reorganization-2025-07-01.csv");
    let analyst = token("analyst");
    if part('c') {
        // (c) GetRollup from 64 clients, the aggregation serving that log.
        for (server_threads, client_threads) in thread_splits() {
            rollup_part(dir.path(), server_threads, client_threads, runs, &analyst, &pre, &new);
        }
    }

    if part('a') {
        // (a) Freshness over the broker at 1,000 writes/s.
        let broker = support::Broker::memory();
        let fresh_dir = tempfile::tempdir().unwrap();
        let servers = start(fresh_dir.path(), Some(broker.kafka()), false, 2);
        let communes: Vec<String> = pre
            .units
            .iter()
            .filter(|(_, u)| u.level == pc::Level::Commune as i32)
            .map(|(_, u)| u.code.as_ref().unwrap().code.clone())
            .collect();
        let (reg_addr, rep_addr, agg_addr) = (servers.addrs[0], servers.addrs[1], servers.addrs[2]);
        let reporter = token("reporter");
        rt.block_on(async {
            let mut client = dvk_proto::registration::v1::registration_service_client::RegistrationServiceClient::new(
                channel(reg_addr).await,
            )
            .max_encoding_message_size(16 << 20);
            import::import(&mut client, &token("admin"), &pre, "pre", |_| {}).await.unwrap();
            // Wait until reporting has the tree.
            let mut rep = dvk_proto::reporting::v1::reporting_service_client::ReportingServiceClient::new(
                channel(rep_addr).await,
            );
            loop {
                let r = rep
                    .list_reports(req(
                        dvk_proto::reporting::v1::ListReportsRequest {
                            period: Some(pc::Period { code: "2024".into() }),
                            ..Default::default()
                        },
                        &analyst,
                    ))
                    .await;
                if r.is_ok_and(|r| r.into_inner().completeness.is_some_and(|c| c.expected > 10_000)) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let mut p50s = Vec::new();
        let mut p99s = Vec::new();
        const WRITES: usize = 5_000;
        for run in 0..runs {
            let lat = rt.block_on(async {
                let reg = dvk_proto::registration::v1::registration_service_client::RegistrationServiceClient::new(
                    channel(reg_addr).await,
                );
                let rep = dvk_proto::reporting::v1::reporting_service_client::ReportingServiceClient::new(
                    channel(rep_addr).await,
                );
                let agg = AggregationServiceClient::new(channel(agg_addr).await);
                let mut tasks = Vec::new();
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                for i in 0..WRITES {
                    tick.tick().await;
                    let (mut reg, mut rep, mut agg) = (reg.clone(), rep.clone(), agg.clone());
                    let (reporter, analyst) = (reporter.clone(), analyst.clone());
                    let unit = communes[(run * WRITES + i) * 31 % communes.len()].clone();
                    tasks.push(tokio::spawn(async move {
                        let t = Instant::now();
                        let position = if i % 2 == 0 {
                            let r = dvk_proto::registration::v1::RegisterModelRequest {
                                request_id: format!("fresh-{run}-{i}"),
                                unit: Some(pc::UnitCode { code: unit }),
                                registered_on: Some(pc::Date { year: 2024, month: 5, day: 2 }),
                                details: Some(convert::details_out(&details(i as u64, Field::Economy))),
                            };
                            reg.register_model(req(r, &reporter)).await.unwrap().into_inner().position.unwrap()
                        } else {
                            let r = dvk_proto::reporting::v1::SubmitReportRequest {
                                request_id: format!("fresh-{run}-{i}"),
                                unit: Some(pc::UnitCode { code: unit }),
                                period: Some(pc::Period {
                                    code: ["2021-H1", "2021-H2", "2022-H1", "2022-H2", "2023-H1"][run].into(),
                                }),
                                figures: Some(pc::Figures { models_registered: 3, ..Default::default() }),
                                summary: String::new(),
                            };
                            rep.submit_report(req(r, &reporter)).await.unwrap().into_inner().position.unwrap()
                        };
                        let mut q = req(
                            pa::GetRollupRequest {
                                period: Some(pc::Period { code: "2024".into() }),
                                tree: pc::Tree::Pre2025 as i32,
                                min_positions: vec![position],
                                ..Default::default()
                            },
                            &analyst,
                        );
                        q.set_timeout(Duration::from_secs(30));
                        agg.get_rollup(q).await.unwrap();
                        t.elapsed()
                    }));
                }
                let mut lat = Vec::new();
                for t in tasks {
                    lat.push(t.await.unwrap());
                }
                lat.sort_unstable();
                lat
            });
            p50s.push(percentile_ms(&lat, 0.5));
            p99s.push(percentile_ms(&lat, 0.99));
        }
        let each: Vec<String> = p99s.iter().map(|p| format!("{p:.1}")).collect();
        println!(
            "(a) freshness at 1,000 writes/s over the broker, write sent → visible in the nation's roll-up: median p50 {:.1} ms, p99 {:.1} ms  (p99 runs: {})",
            median(&p50s),
            median(&p99s),
            each.join(", ")
        );
        drop(servers);
    }
}
