//! Broker outage: registration and aggregation run as separate processes over the broker
//! (SQLite storage, so the topic survives); writers register models without pause; the
//! broker is stopped for 30 s and started again. Every write is acknowledged while the
//! broker is away (from the registration's own log), and after its return the
//! aggregation counts every acknowledged write, once, within a measured bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dvk_client::import;
use dvk_eventlog::{EventLog, LogConfig};
use dvk_gso as gso;
use dvk_proto::aggregation::v1 as pa;
use dvk_proto::common::v1::{Period, Tree};
use dvk_proto::registration::v1 as pr;
use dvk_tests::{Broker, SECRET, admin_units, token};

use crate::processes::{Process, channel, free_addr, model, req, until_ok};

const OUTAGE: Duration = Duration::from_secs(30);
/// Time allowed from the broker's return until the aggregation counts every write
/// acknowledged so far.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(60);
const WRITERS: usize = 4;

/// The aggregation's projected registration position.
async fn projected(agg: std::net::SocketAddr) -> u64 {
    let s = until_ok!(
        agg,
        ch,
        pa::aggregation_service_client::AggregationServiceClient::new(ch)
            .get_projection_status(req(pa::GetProjectionStatusRequest {}, &token("admin", "")))
    );
    s.sources.iter().find(|s| s.source == "registration").map_or(0, |s| s.projected)
}

/// Waits until the aggregation has projected `target`; the time it took.
async fn until_projected(agg: std::net::SocketAddr, target: u64, since: Instant) -> Duration {
    let deadline = since + Duration::from_secs(180);
    while projected(agg).await < target {
        assert!(Instant::now() < deadline, "the aggregation did not reach registration position {target}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_second_broker_outage_under_load_loses_nothing_and_converges() {
    let broker_dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::sqlite(broker_dir.path());
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let mut procs: Vec<Process> = ["registration", "aggregation"]
        .into_iter()
        .map(|name| {
            let addr = free_addr();
            let env = vec![
                ("DVK_DATA_DIR".to_owned(), dir.path().join(name).display().to_string()),
                ("DVK_JWT_HS256_SECRET_FILE".to_owned(), secret.display().to_string()),
                ("DVK_KAFKA_BOOTSTRAP_SERVERS".to_owned(), broker.bootstrap()),
                (format!("DVK_{}_LISTEN", name.to_uppercase()), addr.to_string()),
            ];
            Process { name, addr, env, child: None }
        })
        .collect();
    for p in &mut procs {
        p.start();
    }
    let (reg, agg) = (procs[0].addr, procs[1].addr);

    // The pre-2025 tree: the aggregation has it before the load starts.
    let file = gso::read(std::fs::File::open(admin_units("gso-communes-2025-01-04.csv")).unwrap()).unwrap();
    let imported = loop {
        if let Some(ch) = channel(reg).await {
            let mut c =
                pr::registration_service_client::RegistrationServiceClient::new(ch).max_encoding_message_size(16 << 20);
            if let Ok(outcome) = import::import(&mut c, &token("admin", ""), &file, "gso", |_| {}).await {
                break outcome.units.position.unwrap().position;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    until_projected(agg, imported, Instant::now()).await;
    let communes: Vec<String> = file
        .units
        .iter()
        .filter_map(|(_, u)| u.code.as_ref().map(|c| c.code.clone()))
        .filter(|c| c.len() == 5)
        .collect();

    // Writers: every call must be answered at once, broker or no broker.
    let stop = Arc::new(AtomicBool::new(false));
    let outage = Arc::new(AtomicBool::new(false));
    // (acknowledged, acknowledged during the outage, slowest answer during the outage,
    // last position acknowledged)
    let acked = Arc::new(Mutex::new((0u64, 0u64, Duration::ZERO, 0u64)));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (stop, outage, acked, communes) = (stop.clone(), outage.clone(), acked.clone(), communes.clone());
        let ch = channel(reg).await.expect("registration answers");
        writers.push(tokio::spawn(async move {
            let mut client = pr::registration_service_client::RegistrationServiceClient::new(ch);
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let request = model(format!("outage-{w}-{i}"), &communes[(i * WRITERS + w) % communes.len()]);
                let during = outage.load(Ordering::SeqCst);
                let started = Instant::now();
                let answer = client
                    .register_model(req(request, &token("reporter", "")))
                    .await
                    .unwrap_or_else(|e| panic!("write {i} of writer {w} refused (outage: {during}): {e:?}"))
                    .into_inner();
                let took = started.elapsed();
                {
                    let mut a = acked.lock().unwrap();
                    a.0 += 1;
                    a.3 = a.3.max(answer.position.unwrap().position);
                    if during {
                        a.1 += 1;
                        a.2 = a.2.max(took);
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.stop();
    outage.store(true, Ordering::SeqCst);
    tokio::time::sleep(OUTAGE).await;
    outage.store(false, Ordering::SeqCst);
    let before_return = acked.lock().unwrap().3;
    broker.start();
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let (total, during, slowest, last) = *acked.lock().unwrap();
    assert!(during > 0, "no write was made while the broker was away");

    // Convergence: the backlog of the outage, then everything.
    let backlog = until_projected(agg, before_return, back).await;
    let converged = until_projected(agg, last, back).await;
    let nation = until_ok!(
        agg,
        ch,
        pa::aggregation_service_client::AggregationServiceClient::new(ch).get_rollup(req(
            pa::GetRollupRequest {
                period: Some(Period { code: "2024".into() }),
                tree: Tree::Pre2025 as i32,
                ..Default::default()
            },
            &token("analyst", "")
        ))
    );
    for p in &mut procs {
        p.terminate();
    }

    // Each source position is in the aggregation's log once, and all of them are there.
    let log = EventLog::open(LogConfig::new(dir.path().join("aggregation"), "aggregation")).unwrap();
    let mut positions: Vec<u64> = log
        .read_all(1)
        .map(|r| r.unwrap().envelope().unwrap())
        .filter(|e| e.source == "registration")
        .map(|e| e.source_position)
        .collect();
    let received = positions.len();
    positions.sort_unstable();
    positions.dedup();
    let duplicated = received - positions.len();
    let lost = (1..=last).filter(|p| positions.binary_search(p).is_err()).count();
    eprintln!(
        "outage: {}s without the broker; {total} writes acknowledged ({during} during the outage, slowest answer then {} ms); \
         after the broker's return the aggregation had the outage's backlog in {} ms and every write in {} ms; lost {lost}, duplicated {duplicated}",
        OUTAGE.as_secs(),
        slowest.as_millis(),
        backlog.as_millis(),
        converged.as_millis()
    );
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(nation.models.unwrap().registered, total as i64, "the nation's roll-up counts every acknowledged model");
    assert!(converged <= CONVERGENCE_LIMIT, "converged in {converged:?}, limit {CONVERGENCE_LIMIT:?}");
}
