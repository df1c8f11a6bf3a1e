//! Crash anywhere: registration, reporting and aggregation run as separate processes
//! linked through the real broker; writers register models and submit reports without
//! pause (retrying each with its own request id until it is acknowledged) while a
//! random service is killed with SIGKILL twenty times and restarted. Afterwards every
//! acknowledged write is in its service's log exactly once, every event is in the
//! aggregation's log exactly once, and the roll-ups equal both a count over the source
//! logs and a rebuild from zero.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dvk_client::import;
use dvk_eventlog::{EventLog, LogConfig};
use dvk_gso as gso;
use dvk_proto::aggregation::v1 as pa;
use dvk_proto::common::v1::{Figures, Period, Position, Tree, UnitCode};
use dvk_proto::events::v1::envelope::Payload;
use dvk_proto::registration::v1 as pr;
use dvk_proto::reporting::v1 as pp;
use dvk_tests::{Broker, SECRET, admin_units, token};

use crate::processes::{Process, channel, free_addr, model, req, until_ok};

const KILLS: usize = 20;
const SERVICES: [&str; 3] = ["registration", "reporting", "aggregation"];

/// How many events of each (stream, kind) a log holds, and every event's (source,
/// source position).
type LogCounts = (BTreeMap<(String, String), usize>, Vec<(String, u64)>);

/// Every event of a log, by (stream, kind): how many.
fn count_events(dir: &Path, source: &str) -> LogCounts {
    let log = EventLog::open(LogConfig::new(dir, source)).unwrap();
    let mut counts = BTreeMap::new();
    let mut positions = Vec::new();
    for r in log.read_all(1) {
        let e = r.unwrap().envelope().unwrap();
        let kind = match &e.payload {
            Some(Payload::ModelRegistered(_)) => "registered",
            Some(Payload::ReportSubmitted(_)) => "submitted",
            _ => "other",
        };
        *counts.entry((e.stream_id.clone(), kind.to_owned())).or_insert(0) += 1;
        positions.push((e.source.clone(), e.source_position));
    }
    log.close().unwrap();
    (counts, positions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_twenty_kills_of_random_services() {
    let broker = Broker::memory();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let schedule = dir.path().join("schedule.toml");
    std::fs::write(&schedule, "[half_year]\ndue_after_end = 36500\nlocks_after_end = 36500\n").unwrap();
    let mut procs: Vec<Process> = SERVICES
        .iter()
        .map(|name| {
            let addr = free_addr();
            let mut env = vec![
                ("DVK_DATA_DIR".to_owned(), dir.path().join(name).display().to_string()),
                ("DVK_JWT_HS256_SECRET_FILE".to_owned(), secret.display().to_string()),
                ("DVK_KAFKA_BOOTSTRAP_SERVERS".to_owned(), broker.bootstrap()),
                (format!("DVK_{}_LISTEN", name.to_uppercase()), addr.to_string()),
                ("DVK_SHUTDOWN_TIMEOUT".to_owned(), "2s".to_owned()),
            ];
            if *name == "reporting" {
                env.push(("DVK_REPORTING_SCHEDULE_FILE".to_owned(), schedule.display().to_string()));
            }
            Process { name, addr, env, child: None }
        })
        .collect();
    for p in &mut procs {
        p.start();
    }
    let (reg, rep, agg) = (procs[0].addr, procs[1].addr, procs[2].addr);

    // The pre-2025 tree, and the communes the writers use.
    let file = gso::read(std::fs::File::open(admin_units("gso-communes-2025-01-04.csv")).unwrap()).unwrap();
    loop {
        if let Some(ch) = channel(reg).await {
            let mut c =
                pr::registration_service_client::RegistrationServiceClient::new(ch).max_encoding_message_size(16 << 20);
            if import::import(&mut c, &token("admin", ""), &file, "gso", |_| {}).await.is_ok() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let communes: Vec<String> = file
        .units
        .iter()
        .filter_map(|(_, u)| u.code.as_ref().map(|c| c.code.clone()))
        .filter(|c| c.len() == 5)
        .collect();
    // Reporting must have the tree before reports are accepted.
    loop {
        if let Some(ch) = channel(rep).await {
            let r = pp::reporting_service_client::ReportingServiceClient::new(ch)
                .list_reports(req(
                    pp::ListReportsRequest {
                        unit: Some(UnitCode { code: "01".into() }),
                        period: Some(Period { code: "2024-H1".into() }),
                        ..Default::default()
                    },
                    &token("analyst", ""),
                ))
                .await;
            if r.is_ok_and(|r| r.into_inner().completeness.is_some_and(|c| c.expected > 100)) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Writers: two register models, two submit reports, each until the kills are done.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked_models: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let acked_reports: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let last: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4usize {
        let (done, models, reports, last, communes) =
            (done.clone(), acked_models.clone(), acked_reports.clone(), last.clone(), communes.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0usize;
            // Each report writer submits one report per commune (a report is one per
            // unit and period): at most as many as there are communes.
            while (!done.load(std::sync::atomic::Ordering::SeqCst) || i < 20) && i < communes.len() {
                let unit = &communes[i];
                if w < 2 {
                    let request = model(format!("chaos-model-{w}-{i}"), unit);
                    let answer = until_ok!(
                        reg,
                        ch,
                        pr::registration_service_client::RegistrationServiceClient::new(ch)
                            .register_model(req(request.clone(), &token("reporter", "")))
                    );
                    models.lock().unwrap().insert(format!("model-{}", answer.model_id));
                    let p = answer.position.unwrap();
                    let mut l = last.lock().unwrap();
                    let e = l.entry(p.source).or_insert(0);
                    *e = (*e).max(p.position);
                } else {
                    let request = pp::SubmitReportRequest {
                        request_id: format!("chaos-report-{w}-{i}"),
                        unit: Some(UnitCode { code: unit.clone() }),
                        period: Some(Period { code: if w == 2 { "2024-H1" } else { "2024-H2" }.into() }),
                        figures: Some(Figures { models_registered: 2, workdays: 10, ..Default::default() }),
                        summary: String::new(),
                    };
                    let answer = until_ok!(
                        rep,
                        ch,
                        pp::reporting_service_client::ReportingServiceClient::new(ch)
                            .submit_report(req(request.clone(), &token("reporter", "")))
                    );
                    reports.lock().unwrap().insert(answer.report_id.clone());
                    let p = answer.position.unwrap();
                    let mut l = last.lock().unwrap();
                    let e = l.entry(p.source).or_insert(0);
                    *e = (*e).max(p.position);
                }
                i += 1;
            }
        }));
    }

    // Twenty kills of a random service, each restarted.
    let mut seed = 0x9e37_79b9_u64;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut killed = BTreeMap::new();
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(300 + rand(900))).await;
        let i = rand(3) as usize;
        procs[i].kill9();
        *killed.entry(procs[i].name).or_insert(0) += 1;
        tokio::time::sleep(Duration::from_millis(100 + rand(400))).await;
        procs[i].start();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        tokio::time::timeout(Duration::from_secs(120), w).await.expect("writers finish").unwrap();
    }

    // What the source logs hold (acknowledged or not: a write can be durable although
    // its answer was lost in a kill): read with the writers stopped, then restarted so
    // that their relays publish the rest.
    procs[0].terminate();
    procs[1].terminate();
    let (reg_counts, reg_positions) = count_events(&dir.path().join("registration"), "registration");
    let (rep_counts, rep_positions) = count_events(&dir.path().join("reporting"), "reporting");
    procs[0].start();
    procs[1].start();
    let head = |positions: &[(String, u64)], source: &str| {
        positions.iter().filter(|(s, _)| s == source).map(|(_, p)| *p).max().unwrap_or(0)
    };
    let acked_last = last.lock().unwrap().clone();
    assert!(acked_last.get("registration").is_some_and(|p| *p <= head(&reg_positions, "registration")));
    // The aggregation catches up with everything the source logs hold.
    let tokens = vec![
        Position { source: "registration".into(), position: head(&reg_positions, "registration") },
        Position { source: "reporting".into(), position: head(&rep_positions, "reporting") },
    ];
    let rollup = |include_unapproved: bool, period: &str, min: Vec<Position>| pa::GetRollupRequest {
        period: Some(Period { code: period.into() }),
        tree: Tree::Pre2025 as i32,
        include_unapproved,
        min_positions: min,
        ..Default::default()
    };
    let year = until_ok!(
        agg,
        ch,
        pa::aggregation_service_client::AggregationServiceClient::new(ch).get_rollup({
            let mut r = import::authorized(rollup(true, "2024", tokens.clone()), &token("analyst", "")).unwrap();
            r.set_timeout(Duration::from_secs(60));
            r
        })
    );
    let h1 = until_ok!(
        agg,
        ch,
        pa::aggregation_service_client::AggregationServiceClient::new(ch)
            .get_rollup(req(rollup(true, "2024-H1", tokens.clone()), &token("analyst", "")))
    );
    let h2 = until_ok!(
        agg,
        ch,
        pa::aggregation_service_client::AggregationServiceClient::new(ch)
            .get_rollup(req(rollup(true, "2024-H2", tokens.clone()), &token("analyst", "")))
    );
    // A rebuild from zero answers the same.
    until_ok!(
        agg,
        ch,
        pa::aggregation_service_client::AggregationServiceClient::new(ch).rebuild_projections(req(
            pa::RebuildProjectionsRequest { request_id: "chaos".into() },
            &token("admin", "")
        ))
    );
    loop {
        let s = until_ok!(
            agg,
            ch,
            pa::aggregation_service_client::AggregationServiceClient::new(ch)
                .get_projection_status(req(pa::GetProjectionStatusRequest {}, &token("admin", "")))
        );
        if s.rebuilds_completed >= 1 && !s.rebuilding {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = until_ok!(
        agg,
        ch,
        pa::aggregation_service_client::AggregationServiceClient::new(ch)
            .get_rollup(req(rollup(true, "2024", Vec::new()), &token("analyst", "")))
    );
    let strip = |mut r: pa::Rollup| {
        r.positions = None;
        r
    };
    assert_eq!(strip(again), strip(year.clone()), "a rebuild answers as the live roll-ups");

    for p in &mut procs {
        p.terminate();
    }

    // Every acknowledged write is in its log exactly once; nothing is there twice.
    let (_, agg_positions) = count_events(&dir.path().join("aggregation"), "aggregation");
    let acked_models = acked_models.lock().unwrap().clone();
    let acked_reports = acked_reports.lock().unwrap().clone();
    let registered: BTreeSet<String> =
        reg_counts.iter().filter(|((_, k), _)| k == "registered").map(|((s, _), _)| s.clone()).collect();
    let submitted: BTreeSet<String> =
        rep_counts.iter().filter(|((_, k), _)| k == "submitted").map(|((s, _), _)| s.clone()).collect();
    let lost = acked_models.difference(&registered).count() + acked_reports.difference(&submitted).count();
    let duplicated = reg_counts.iter().chain(&rep_counts).filter(|((_, k), n)| k != "other" && **n > 1).count();
    let mut seen = BTreeSet::new();
    let agg_duplicated = agg_positions.iter().filter(|p| !seen.insert((*p).clone())).count();
    eprintln!(
        "chaos: acknowledged {} models and {} reports; kills {killed:?}; lost {lost}; duplicated {duplicated} in the source logs, {agg_duplicated} in the aggregation's",
        acked_models.len(),
        acked_reports.len()
    );
    assert_eq!(killed.values().sum::<usize>(), KILLS);
    assert_eq!((lost, duplicated, agg_duplicated), (0, 0, 0));
    // The roll-ups count exactly what the source logs hold (acknowledged or not: a
    // write can be durable although its answer was lost in a kill).
    assert_eq!(year.models.unwrap().registered, registered.len() as i64);
    assert_eq!(h1.reports_counted + h2.reports_counted, submitted.len() as i64);
    assert!(registered.len() >= acked_models.len() && submitted.len() >= acked_reports.len());
}
