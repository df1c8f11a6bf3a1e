//! Benchmark of the reporting service over gRPC on loopback: `SubmitReport` from 64
//! concurrent clients, each request a new report (a unit of the real pre-2025 tree and
//! a period it reports on), durable before it is answered. Throughput and p50 / p99.
//!
//! Registration and reporting run in one process on their own 2-thread runtime, the
//! reporting service following registration's log (the embedded default); the clients
//! run on another runtime on the same 2-core machine. `DVK_BENCH_RUNS` sets the runs
//! (default 5); every figure printed is the median of the runs. Method in BENCHMARKS.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dvk_client::import;
use dvk_codec::convert;
use dvk_domain::report::{Figure, Figures};
use dvk_domain::schedule::{Deadline, Schedule};
use dvk_gso as gso;
use dvk_proto::common::v1::{Period, UnitCode};
use dvk_proto::reporting::v1::{
    ListReportsRequest, SubmitReportRequest, reporting_service_client::ReportingServiceClient,
};
use dvk_testkit::median;
use tonic::transport::Channel;

/// As the service binaries (see `dvk_runtime::Allocator`).
#[global_allocator]
static ALLOCATOR: dvk_runtime::Allocator = dvk_runtime::Allocator;

const CLIENTS: usize = 64;
const CONNECTIONS: usize = 8;
const REQUESTS_PER_RUN: usize = 20_000;
/// Periods reported on the pre-2025 tree: every half year and year from 2021.
const PERIODS: [&str; 13] = [
    "2021-H1", "2021-H2", "2021", "2022-H1", "2022-H2", "2022", "2023-H1", "2023-H2", "2023", "2024-H1", "2024-H2",
    "2024", "2025-H1",
];

fn token(role: &str) -> String {
    dvk_testkit::token(role, "")
}

/// Every period above is open and on time.
fn schedule() -> Schedule {
    let end = dvk_domain::Period::parse("p", "2021-H1").unwrap().end();
    let days = (dvk_runtime::host::today().to_unix_days() - end.to_unix_days()) as u32 + 365;
    let open = Deadline { opens_before_end: 15, due_after_end: days, locks_after_end: days };
    Schedule { half_year: open, year: open, ..Schedule::default() }
}

struct Stack {
    registration: SocketAddr,
    reporting: SocketAddr,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Stack {
    fn start() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let settings = |name: &str| dvk_testkit::settings(&dir.path().join(name), None);
        let (registration_settings, reporting_settings) = (settings("registration"), settings("reporting"));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                let registration_log = dvk_registration::open_log(&registration_settings).unwrap();
                let reporting_log = dvk_reporting::open_log(&reporting_settings).unwrap();
                let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send((l1.local_addr().unwrap(), l2.local_addr().unwrap())).unwrap();
                let links = dvk_reporting::Links {
                    relay: None,
                    registration: Some(dvk_runtime::host::Upstream::Local(registration_log.clone())),
                };
                let registration = dvk_registration::serve(
                    l1,
                    registration_settings,
                    registration_log,
                    None,
                    until(stopped.clone()),
                    || {},
                );
                let reporting = dvk_reporting::serve(
                    l2,
                    reporting_settings,
                    schedule(),
                    reporting_log,
                    links,
                    until(stopped),
                    || {},
                );
                let (a, b) = tokio::join!(registration, reporting);
                a.unwrap();
                b.unwrap();
            });
        });
        let (registration, reporting) = addr_rx.recv().unwrap();
        Stack { registration, reporting, stop: Some(stop), thread: Some(thread), _dir: dir }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(true);
        let _ = self.thread.take().unwrap().join();
    }
}

async fn channel(addr: SocketAddr) -> Channel {
    for _ in 0..100 {
        if let Ok(ch) = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await {
            return ch;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not start");
}

fn request(run: usize, i: usize, units: &[String]) -> SubmitReportRequest {
    // Request i of a run is (unit, period) number run * REQUESTS_PER_RUN + i: no two
    // requests of the benchmark name the same report.
    let n = run * REQUESTS_PER_RUN + i;
    let registered = (n % 40) as i64 + 1;
    SubmitReportRequest {
        request_id: format!("bench-{run}-{i}"),
        unit: Some(UnitCode { code: units[n % units.len()].clone() }),
        period: Some(Period { code: PERIODS[(n / units.len()) % PERIODS.len()].into() }),
        figures: Some(convert::figures_out(&Figures::from_iter([
            (Figure::ModelsRegistered, registered),
            (Figure::ModelsRecognized, registered / 3),
            (Figure::FundsMobilized, 81_000_000 * registered),
            (Figure::Workdays, 120 * registered),
            (Figure::Participants, 300),
            (Figure::DialoguesHeld, 4),
            (Figure::PetitionsReceived, 12),
            (Figure::PetitionsResolved, 11),
            (Figure::DanVanDays, 1),
            (Figure::CommendationsCollective, 12),
            (Figure::CommendationsIndividual, 11),
        ]))),
        summary: "6 tháng đầu năm, có 54 mô hình dân vận khéo cấp huyện và 137 mô hình mới cấp xã".into(),
    }
}

fn main() {
    let runs: usize = std::env::var("DVK_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    assert!(runs * REQUESTS_PER_RUN <= 10_000 * PERIODS.len(), "more runs than distinct reports");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("cores: {}", std::thread::available_parallelism().map_or(0, |n| n.get()));
    let path: PathBuf = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../../crates/gso/data/admin-units/gso-communes-2025-01-04.csv");
    let file = gso::read(std::fs::File::open(path).unwrap()).unwrap();
    let units: Vec<String> = file.units.iter().filter_map(|(_, u)| u.code.as_ref().map(|c| c.code.clone())).collect();
    let admin = token("admin");
    let reporter = token("reporter");

    let stack = Stack::start();
    rt.block_on(async {
        let mut registration =
            dvk_proto::registration::v1::registration_service_client::RegistrationServiceClient::new(
                channel(stack.registration).await,
            )
            .max_encoding_message_size(16 << 20);
        import::import(&mut registration, &admin, &file, "bench", |_| {}).await.unwrap();
        // Wait until the reporting service has received the whole tree.
        let mut client = ReportingServiceClient::new(channel(stack.reporting).await);
        loop {
            let r = client
                .list_reports(
                    import::authorized(
                        ListReportsRequest { period: Some(Period { code: "2024".into() }), ..Default::default() },
                        &token("analyst"),
                    )
                    .unwrap(),
                )
                .await;
            if r.is_ok_and(|r| r.into_inner().completeness.is_some_and(|c| c.expected as usize == units.len())) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let mut rates = Vec::new();
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for run in 0..runs {
        let (rate, p50, p99) = rt.block_on(async {
            let mut clients = Vec::new();
            for _ in 0..CONNECTIONS {
                clients.push(ReportingServiceClient::new(channel(stack.reporting).await));
            }
            let started = Instant::now();
            let mut tasks = Vec::new();
            for c in 0..CLIENTS {
                let mut client = clients[c % CONNECTIONS].clone();
                let token = reporter.clone();
                let units = units.clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut i = c;
                    while i < REQUESTS_PER_RUN {
                        let r = request(run, i, &units);
                        let t = Instant::now();
                        client.submit_report(import::authorized(r, &token).unwrap()).await.unwrap();
                        lat.push(t.elapsed());
                        i += CLIENTS;
                    }
                    lat
                }));
            }
            let mut lat = Vec::new();
            for t in tasks {
                lat.extend(t.await.unwrap());
            }
            let elapsed = started.elapsed().as_secs_f64();
            lat.sort_unstable();
            let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
            (lat.len() as f64 / elapsed, p(0.5), p(0.99))
        });
        rates.push(rate);
        p50s.push(p50);
        p99s.push(p99);
    }
    let each: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "SubmitReport, {CLIENTS} clients over {CONNECTIONS} connections, {REQUESTS_PER_RUN} per run: median {:.0}/s, p50 {:.2} ms, p99 {:.2} ms  (runs: {})",
        median(&rates),
        median(&p50s),
        median(&p99s),
        each.join(", ")
    );
}
