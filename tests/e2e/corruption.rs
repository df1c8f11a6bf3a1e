//! Damaged logs: a flipped byte in a stored record is caught by its checksum. A service
//! whose replay meets it refuses to start and names the position, and a writer's log is
//! restored from its topic (`restore-from-topic`: same models, retries answered as the
//! first time, new writes continue the positions); the aggregation
//! never serves totals built from it (a rebuild that meets it fails and the live
//! roll-ups stay); and the documented recovery — delete the aggregation's directory
//! and let it consume the topics again from zero — gives back identical roll-ups.

use std::time::Duration;

use dvk_client::import;
use dvk_eventlog::{EventLog, LogConfig};
use dvk_gso as gso;
use dvk_proto::aggregation::v1 as pa;
use dvk_proto::common::v1::{Date, Figures, Money, Period, Position, Tree, UnitCode};
use dvk_proto::registration::v1 as pr;
use dvk_proto::reporting::v1 as pp;
use dvk_runtime::host::Upstream;
use dvk_tests::{Broker, Service, admin_units, service_binary, settings, token};

use crate::processes::model;

fn req<T>(m: T, token: &str) -> tonic::Request<T> {
    import::authorized(m, token).unwrap()
}

async fn load_tree(registration: &Service) {
    let mut client = registration.client().await;
    let name = "gso-communes-2025-01-04.csv";
    let file = gso::read(std::fs::File::open(admin_units(name)).unwrap()).unwrap();
    import::import(&mut client, &token("admin", ""), &file, name, |_| {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_writer_log_is_refused_naming_the_position_and_restored_from_its_topic() {
    let broker = Broker::memory();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("registration");
    let registration = Service::registration_with(&data, None, Some(broker.kafka())).await;
    load_tree(&registration).await;
    // Models, one of them with a second event, each write with its request id.
    let mut client = registration.client().await;
    let mut models = Vec::new();
    for i in 0..40 {
        let answer =
            client.register_model(req(model(format!("restore-{i}"), "00004"), &token("reporter", ""))).await.unwrap();
        models.push(answer.into_inner());
    }
    let first = &models[0];
    let started = client
        .start_model(req(
            pr::StartModelRequest {
                request_id: "restore-start".into(),
                model_id: first.model_id.clone(),
                expected_version: 1,
                started_on: Some(Date { year: 2024, month: 5, day: 1 }),
            },
            &token("reporter", ""),
        ))
        .await
        .unwrap()
        .into_inner();
    let mut before = Vec::new();
    for m in &models {
        before.push(
            client
                .get_model(req(pr::GetModelRequest { model_id: m.model_id.clone() }, &token("analyst", "")))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    // Everything is on the topic once the relay's cursor reaches the head.
    let head = registration.log.head();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while dvk_bus::kafka::relay_cursor(&registration.log, "dvk.registration.v1").unwrap() < head {
        assert!(std::time::Instant::now() < deadline, "the relay did not publish the log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    registration.stop().await;

    // A flipped byte: the service refuses to start and names the position.
    let log = EventLog::open(LogConfig::new(&data, "registration")).unwrap();
    dvk_eventlog::faults::flip_last_byte_of(&log, 3);
    log.close().unwrap();
    drop(log);
    let s = settings(&data, None);
    let log = dvk_registration::open_log(&s).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused =
        tokio::time::timeout(Duration::from_secs(30), dvk_registration::serve(listener, s, log, None, async {}, || {}))
            .await
            .expect("the service gives up at once");
    let err = refused.expect_err("a damaged log is refused");
    assert!(err.to_string().contains("position 3"), "{err}");

    // The documented recovery: the damaged directory moved aside, the log restored
    // from the topic by `dvk-registration restore-from-topic`, the service started.
    std::fs::rename(&data, dir.path().join("registration.damaged")).unwrap();
    let out = std::process::Command::new(service_binary("registration"))
        .arg("restore-from-topic")
        .env("DVK_DATA_DIR", &data)
        .env("DVK_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap())
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said} {}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains(&format!("restored {head} events")), "{said}");
    let registration = Service::registration_with(&data, None, Some(broker.kafka())).await;
    let mut client = registration.client().await;
    for (m, was) in models.iter().zip(&before) {
        let now = client
            .get_model(req(pr::GetModelRequest { model_id: m.model_id.clone() }, &token("analyst", "")))
            .await
            .unwrap();
        assert_eq!(&now.into_inner(), was);
    }
    // A retry of a write made before the damage is answered as the first time; another
    // body under its id is refused; a new write continues the positions.
    let retry = client
        .register_model(req(model("restore-0".into(), "00004"), &token("reporter", "")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, *first);
    let other =
        client.register_model(req(model("restore-0".into(), "00007"), &token("reporter", ""))).await.unwrap_err();
    assert_eq!(other.code(), tonic::Code::AlreadyExists);
    let next = client
        .register_model(req(model("restore-new".into(), "00004"), &token("reporter", "")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.position.unwrap().position, started.position.unwrap().position + 1);
    // The restored events are not published again.
    assert_eq!(
        dvk_bus::kafka::relay_cursor(&registration.log, "dvk.registration.v1").unwrap() + 1,
        registration.log.head()
    );
    registration.stop().await;
}

/// The nation's roll-ups the test compares, with unapproved reports.
async fn nation(
    client: &mut pa::aggregation_service_client::AggregationServiceClient<tonic::transport::Channel>,
    min: Vec<Position>,
) -> pa::Rollup {
    let mut r = req(
        pa::GetRollupRequest {
            period: Some(Period { code: "2024-H1".into() }),
            tree: Tree::Pre2025 as i32,
            include_unapproved: true,
            min_positions: min,
            ..Default::default()
        },
        &token("analyst", ""),
    );
    r.set_timeout(Duration::from_secs(60));
    let mut rollup = client.get_rollup(r).await.unwrap().into_inner();
    rollup.positions = None;
    rollup
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregation_never_counts_a_damaged_record_and_is_recovered_from_the_topics() {
    let broker = Broker::memory();
    let kafka = broker.kafka();
    let dir = tempfile::tempdir().unwrap();
    let registration = Service::registration_with(&dir.path().join("registration"), None, Some(kafka.clone())).await;
    load_tree(&registration).await;
    let end = dvk_domain::Period::parse("p", "2024-H1").unwrap().end();
    let days = (dvk_runtime::host::today().to_unix_days() - end.to_unix_days()) as u32 + 365;
    let open = dvk_domain::schedule::Deadline { opens_before_end: 15, due_after_end: days, locks_after_end: days };
    let schedule = dvk_domain::schedule::Schedule { half_year: open, ..Default::default() };
    let links = dvk_reporting::Links { relay: Some(kafka.clone()), registration: Some(Upstream::Kafka(kafka.clone())) };
    let reporting = Service::reporting(&dir.path().join("reporting"), schedule, links).await;
    let agg_links = || dvk_aggregation::Links {
        registration: Some(Upstream::Kafka(kafka.clone())),
        reporting: Some(Upstream::Kafka(kafka.clone())),
    };
    let agg_dir = dir.path().join("aggregation");
    let aggregation = Service::aggregation(&agg_dir, agg_links()).await;

    // Reports from communes of Cô Tô and Hạ Long.
    let mut rep = reporting.reporting_client().await;
    let mut last = 0;
    for (i, unit) in ["07192", "07195", "07198", "06661", "06664"].iter().enumerate() {
        let request = pp::SubmitReportRequest {
            request_id: format!("r{i}"),
            unit: Some(UnitCode { code: (*unit).into() }),
            period: Some(Period { code: "2024-H1".into() }),
            figures: Some(Figures {
                models_registered: 3 + i as i64,
                funds_mobilized: Some(Money { vnd: 1_000_000 * (i as i64 + 1) }),
                ..Default::default()
            }),
            summary: String::new(),
        };
        let mut attempt = 0;
        let w = loop {
            // The reporting service receives the tree over Kafka: retry until it has it.
            match rep.submit_report(req(request.clone(), &token("reporter", ""))).await {
                Ok(w) => break w.into_inner(),
                Err(e) if attempt < 600 && e.code() == tonic::Code::InvalidArgument => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{e:?}"),
            }
        };
        last = w.position.unwrap().position;
    }
    // The roll-ups need the trees (from registration) as well as the reports.
    let tokens = vec![
        Position { source: "registration".into(), position: registration.log.head() },
        Position { source: "reporting".into(), position: last },
    ];
    let mut client = aggregation.aggregation_client().await;
    let before = nation(&mut client, tokens.clone()).await;
    assert_eq!(before.reports_counted, 5);
    let head = aggregation.log.head();
    drop(client);
    aggregation.stop().await;

    // A byte flips early in the aggregation's log (the trees it received).
    let log = EventLog::open(LogConfig::new(&agg_dir, "aggregation")).unwrap();
    dvk_eventlog::faults::flip_last_byte_of(&log, 2);
    log.close().unwrap();
    drop(log);

    // It starts from its snapshot (taken before the damage) and answers as before; a
    // rebuild meets the damaged record, fails, and leaves the live roll-ups alone.
    let aggregation = Service::aggregation(&agg_dir, agg_links()).await;
    let mut client = aggregation.aggregation_client().await;
    assert_eq!(nation(&mut client, Vec::new()).await, before);
    client
        .rebuild_projections(req(pa::RebuildProjectionsRequest { request_id: "rebuild".into() }, &token("admin", "")))
        .await
        .unwrap();
    let mut status = pa::ProjectionStatus::default();
    for _ in 0..200 {
        status = client
            .get_projection_status(req(pa::GetProjectionStatusRequest {}, &token("admin", "")))
            .await
            .unwrap()
            .into_inner();
        if !status.rebuilding {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!status.rebuilding);
    assert_eq!(status.rebuilds_completed, 0, "a rebuild over a damaged record does not complete");
    assert_eq!(nation(&mut client, Vec::new()).await, before);
    drop(client);
    aggregation.stop().await;

    // A byte flips in the newest records: the log is refused when opened, naming the
    // position, so the service does not start.
    let log = EventLog::open(LogConfig::new(&agg_dir, "aggregation")).unwrap();
    dvk_eventlog::faults::flip_last_byte_of(&log, head);
    log.close().unwrap();
    drop(log);
    let err = dvk_aggregation::open_log(&settings(&agg_dir, None)).expect_err("a damaged tail is refused");
    assert!(err.to_string().contains(&format!("position {head}")), "{err}");

    // Recovery: remove the aggregation's directory; it consumes both topics from zero.
    std::fs::remove_dir_all(&agg_dir).unwrap();
    let aggregation = Service::aggregation(&agg_dir, agg_links()).await;
    let mut client = aggregation.aggregation_client().await;
    assert_eq!(nation(&mut client, tokens).await, before);
    aggregation.stop().await;
    reporting.stop().await;
    registration.stop().await;
}
