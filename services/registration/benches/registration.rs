//! Benchmarks of the registration service over gRPC on loopback:
//! - import of the full pre-2025 GSO list (10,810 units) with `dvkctl`'s import path;
//! - `RegisterModel` from 64 concurrent clients: throughput and p50 / p99 latency.
//!
//! The server runs on its own 2-thread runtime, the clients on another, in one process
//! on the same 2-core machine. `DVK_BENCH_RUNS` sets the runs (default 5); every figure
//! printed is the median of the runs. Method in BENCHMARKS.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dvk_client::import;
use dvk_client::token::now_secs;
use dvk_gso as gso;
use dvk_proto::common::v1::{Date, Field, Money, UnitCode};
use dvk_proto::events::v1::{ModelDetails, Resources, RunnerKind, Sponsor, Timeline};
use dvk_proto::registration::v1::{RegisterModelRequest, registration_service_client::RegistrationServiceClient};
use dvk_testkit::median;
use tonic::transport::Channel;

/// As the service binaries (see `dvk_runtime::Allocator`).
#[global_allocator]
static ALLOCATOR: dvk_runtime::Allocator = dvk_runtime::Allocator;

const CLIENTS: usize = 64;
const CONNECTIONS: usize = 8;
const REQUESTS_PER_RUN: usize = 20_000;

fn gso_file(name: &str) -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../../crates/gso/data/admin-units")
        .join(name)
}

fn token() -> String {
    dvk_testkit::token("admin", "")
}

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let settings = dvk_testkit::settings(&dir.path().join("registration"), None);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let settings = dvk_registration::Settings {
                    listen: addr_of(&listener),
                    server: settings,
                    kafka: Default::default(),
                };
                dvk_registration::run(listener, settings, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        Server { addr, stop: Some(stop), thread: Some(thread), _dir: dir }
    }

    async fn client(&self) -> RegistrationServiceClient<Channel> {
        for _ in 0..100 {
            if let Ok(ch) = Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await {
                return RegistrationServiceClient::new(ch).max_encoding_message_size(16 << 20);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not start");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
    }
}

fn request(i: usize, communes: &[String]) -> RegisterModelRequest {
    RegisterModelRequest {
        request_id: format!("bench-{i}-{}", now_secs()),
        unit: Some(UnitCode { code: communes[i % communes.len()].clone() }),
        registered_on: Some(Date { year: 2024, month: 2, day: 15 }),
        details: Some(ModelDetails {
            name: format!("Mô hình \"Dân vận khéo\" số {i}"),
            field: Field::Economy as i32,
            runner_kind: RunnerKind::Collective as i32,
            runner_name: "Chi hội Phụ nữ tổ dân phố 3".into(),
            sponsor: Sponsor::WomensUnion as i32,
            sponsor_name: "Hội LHPN phường".into(),
            objectives: "Bê tông hoá 2 km đường ngõ xóm".into(),
            resources: Some(Resources { funds: Some(Money { vnd: 1_200_000_000 }), workdays: 850 }),
            timeline: Some(Timeline { start: Some(Date { year: 2024, month: 3, day: 1 }), end: None }),
            ..Default::default()
        }),
    }
}

fn main() {
    let runs: usize = std::env::var("DVK_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("cores: {}", std::thread::available_parallelism().map_or(0, |n| n.get()));
    let file = gso::read(std::fs::File::open(gso_file("gso-communes-2025-01-04.csv")).unwrap()).unwrap();
    let communes: Vec<String> = file
        .units
        .iter()
        .filter_map(|(_, u)| u.code.as_ref().map(|c| c.code.clone()))
        .filter(|c| c.len() == 5)
        .collect();
    let token = token();

    // Import of the full pre-2025 list, into a fresh service each run.
    let mut import_secs = Vec::new();
    for _ in 0..runs {
        let server = Server::start();
        let secs = rt.block_on(async {
            let mut client = server.client().await;
            let t = Instant::now();
            let out = import::import(&mut client, &token, &file, "bench", |_| {}).await.unwrap();
            assert_eq!(out.units.units_added, 10_810);
            t.elapsed().as_secs_f64()
        });
        import_secs.push(secs);
    }
    let each: Vec<String> = import_secs.iter().map(|s| format!("{s:.2}")).collect();
    println!("import pre-2025 list (10,810 units): median {:.2} s  (runs: {})", median(&import_secs), each.join(", "));

    // RegisterModel from 64 concurrent clients.
    let server = Server::start();
    rt.block_on(async {
        let mut client = server.client().await;
        import::import(&mut client, &token, &file, "bench", |_| {}).await.unwrap();
    });
    let mut rates = Vec::new();
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for run in 0..runs {
        let (rate, p50, p99) = rt.block_on(async {
            let mut clients = Vec::new();
            for _ in 0..CONNECTIONS {
                clients.push(server.client().await);
            }
            let started = Instant::now();
            let mut tasks = Vec::new();
            for c in 0..CLIENTS {
                let mut client = clients[c % CONNECTIONS].clone();
                let token = token.clone();
                let communes = communes.clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let mut i = c;
                    while i < REQUESTS_PER_RUN {
                        let mut r = request(run * REQUESTS_PER_RUN + i, &communes);
                        r.request_id = format!("bench-{run}-{i}");
                        let t = Instant::now();
                        client.register_model(import::authorized(r, &token).unwrap()).await.unwrap();
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
        "RegisterModel, {CLIENTS} clients over {CONNECTIONS} connections, {REQUESTS_PER_RUN} per run: median {:.0}/s, p50 {:.2} ms, p99 {:.2} ms  (runs: {})",
        median(&rates),
        median(&p50s),
        median(&p99s),
        each.join(", ")
    );
}

/// The address a listener is bound to.
fn addr_of(listener: &tokio::net::TcpListener) -> std::net::SocketAddr {
    listener.local_addr().expect("a bound listener")
}
