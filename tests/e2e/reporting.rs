//! The reporting service over gRPC on real ports and real sled directories, learning
//! the real GSO trees from the registration service: in the same process through its
//! log, and through a real Kafka-protocol broker. A district's communes report, one
//! report is returned, amended and approved; every refusal names its field or rule
//! and writes nothing.

use std::time::Duration;

use dvk_client::import;
use dvk_codec::convert;
use dvk_domain::Period;
use dvk_domain::report::Figure;
use dvk_domain::schedule::{Deadline, Schedule};
use dvk_gso as gso;
use dvk_proto::common::v1::{Figures, Money, Period as PPeriod, UnitCode};
use dvk_proto::events::v1::envelope::Payload;
use dvk_proto::reporting::v1::{self as pr, reporting_service_client::ReportingServiceClient};
use dvk_runtime::host::{Upstream, today};
use dvk_tests::{Broker, Service, admin_units, token};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

type Client = ReportingServiceClient<Channel>;

/// Huyện Cô Tô (Quảng Ninh) and its three communes, in the pre-2025 tree.
const PROVINCE: &str = "22";
const DISTRICT: &str = "207";
const COMMUNES: [&str; 3] = ["07192", "07195", "07198"];

fn unit(code: &str) -> Option<UnitCode> {
    Some(UnitCode { code: code.into() })
}

fn period(code: &str) -> Option<PPeriod> {
    Some(PPeriod { code: code.into() })
}

fn req<T>(message: T, token: &str) -> tonic::Request<T> {
    import::authorized(message, token).unwrap()
}

fn days_since_end(p: &str) -> u32 {
    let end = Period::parse("p", p).unwrap().end();
    (today().to_unix_days() - end.to_unix_days()).max(0) as u32
}

/// H1 2025 reports are open and on time today; the 2021–2025 stage is open but past
/// due; year reports keep the defaults (2024 locked long ago).
fn schedule() -> Schedule {
    let h1 = days_since_end("2025-H1");
    let stage = days_since_end("2021-2025");
    Schedule {
        half_year: Deadline { opens_before_end: 15, due_after_end: h1 + 30, locks_after_end: h1 + 60 },
        stage: Deadline { opens_before_end: 60, due_after_end: 0, locks_after_end: stage + 60 },
        ..Schedule::default()
    }
}

/// Figures of one commune for a half year.
fn figures(registered: i64) -> Figures {
    convert::figures_out(&dvk_domain::report::Figures::from_iter([
        (Figure::ModelsRegistered, registered),
        (Figure::ModelsRecognized, registered / 2),
        (Figure::FundsMobilized, 81_000_000 * registered),
        (Figure::Workdays, 120),
        (Figure::Participants, 300),
        (Figure::DialoguesHeld, 4),
        (Figure::PetitionsReceived, 12),
        (Figure::PetitionsResolved, 11),
        (Figure::DanVanDays, 1),
        (Figure::CommendationsCollective, 2),
        (Figure::CommendationsIndividual, 3),
    ]))
}

fn submit(request_id: &str, unit_code: &str, period_code: &str, f: Figures) -> pr::SubmitReportRequest {
    pr::SubmitReportRequest {
        request_id: request_id.into(),
        unit: unit(unit_code),
        period: period(period_code),
        figures: Some(f),
        summary: "Sơ kết 6 tháng đầu năm".into(),
    }
}

fn violations(s: &Status) -> Vec<String> {
    s.get_details_bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Loads both real trees and the mapping into the registration service.
async fn load_trees(registration: &Service) {
    let mut client = registration.client().await;
    for name in ["gso-communes-2025-01-04.csv", "gso-reorganization-2025-07-01.csv"] {
        let file = gso::read(std::fs::File::open(admin_units(name)).unwrap()).unwrap();
        import::import(&mut client, &token("admin", ""), &file, name, |_| {}).await.unwrap();
    }
}

/// Waits until the reporting service expects `expected` reports of `unit`'s subtree
/// for `period`: it has received that tree from the registration service.
async fn wait_for_tree(client: &mut Client, unit_code: &str, period_code: &str, expected: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = client
            .list_reports(req(
                pr::ListReportsRequest { unit: unit(unit_code), period: period(period_code), ..Default::default() },
                &token("analyst", ""),
            ))
            .await;
        let last = match r {
            Ok(r) if r.get_ref().completeness.is_some_and(|c| c.expected == expected) => return,
            other => format!("{other:?}"),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reporting service never received the tree of {unit_code}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(client: &mut Client, id: &str, revision: u32) -> pr::Report {
    client
        .get_report(req(pr::GetReportRequest { report_id: id.into(), revision }, &token("analyst", "")))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_districts_communes_report_and_one_is_returned_amended_and_approved() {
    let dir = tempfile::tempdir().unwrap();
    let registration = Service::registration(&dir.path().join("registration")).await;
    load_trees(&registration).await;
    let links = || dvk_reporting::Links { relay: None, registration: Some(Upstream::Local(registration.log.clone())) };
    let reporting = Service::reporting(&dir.path().join("reporting"), schedule(), links()).await;
    let mut client = reporting.reporting_client().await;
    wait_for_tree(&mut client, DISTRICT, "2025-H1", 4).await;

    // Each commune's reporter submits its H1 report.
    let mut answers = Vec::new();
    for (i, c) in COMMUNES.iter().enumerate() {
        let r = client
            .submit_report(req(submit(&format!("h1-{c}"), c, "2025-H1", figures(10 + i as i64)), &token("reporter", c)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.report_id.as_str(), r.version, r.revision), (format!("report-{c}-2025-H1").as_str(), 1, 1));
        assert_eq!(r.position.as_ref().unwrap().source, "reporting");
        answers.push(r);
    }
    // A retry answers as the first time; the same id with another body is refused.
    let retry = client
        .submit_report(req(submit("h1-07192", "07192", "2025-H1", figures(10)), &token("reporter", "07192")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retry, answers[0]);
    let reused = client
        .submit_report(req(submit("h1-07192", "07192", "2025-H1", figures(99)), &token("reporter", "07192")))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists);

    let first = get(&mut client, "report-07192-2025-H1", 0).await;
    assert_eq!(first.status, pr::ReportStatus::Submitted as i32);
    assert_eq!(first.tree, dvk_proto::common::v1::Tree::Pre2025 as i32);
    let rev1 = first.revision.clone().unwrap();
    assert!(rev1.on_time, "submitted before the due date");
    assert_eq!(rev1.figures, Some(figures(10)));
    assert_eq!(rev1.submitted_by.as_ref().unwrap().subject, "test-reporter-07192");

    // The district returns it with a reason; the commune amends it; the district approves.
    let approver = token("approver", DISTRICT);
    let returned = client
        .return_report(req(
            pr::ReturnReportRequest {
                request_id: "return-1".into(),
                report_id: "report-07192-2025-H1".into(),
                expected_version: 1,
                reason: "Thiếu số liệu ngày công".into(),
            },
            &approver,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(returned.version, 2);
    let mut corrected = figures(10);
    corrected.workdays = 480;
    let amended = client
        .amend_report(req(
            pr::AmendReportRequest {
                request_id: "amend-1".into(),
                report_id: "report-07192-2025-H1".into(),
                expected_version: 2,
                figures: Some(corrected),
                summary: "Sơ kết 6 tháng đầu năm (bổ sung)".into(),
                reason: "Bổ sung ngày công".into(),
            },
            &token("reporter", "07192"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((amended.version, amended.revision), (3, 2));
    let approved = client
        .approve_report(req(
            pr::ApproveReportRequest {
                request_id: "approve-1".into(),
                report_id: "report-07192-2025-H1".into(),
                expected_version: 3,
            },
            &approver,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.version, 4);

    // A retry of the amendment, after the approval, is answered as the first time.
    let again = client
        .amend_report(req(
            pr::AmendReportRequest {
                request_id: "amend-1".into(),
                report_id: "report-07192-2025-H1".into(),
                expected_version: 2,
                figures: Some(corrected),
                summary: "Sơ kết 6 tháng đầu năm (bổ sung)".into(),
                reason: "Bổ sung ngày công".into(),
            },
            &token("reporter", "07192"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, amended);

    let latest = get(&mut client, "report-07192-2025-H1", 0).await;
    assert_eq!(latest.status, pr::ReportStatus::Approved as i32);
    assert_eq!((latest.latest_revision, latest.approved_revision), (2, 2));
    assert_eq!(latest.revision.as_ref().unwrap().figures.as_ref().unwrap().workdays, 480);
    assert_eq!(latest.revision.as_ref().unwrap().reason, "Bổ sung ngày công");
    assert_eq!(latest.return_reason, "Thiếu số liệu ngày công");
    // The first revision stays readable.
    let old = get(&mut client, "report-07192-2025-H1", 1).await;
    assert_eq!(old.revision.unwrap(), rev1);
    let missing = client
        .get_report(req(
            pr::GetReportRequest { report_id: "report-07192-2025-H1".into(), revision: 3 },
            &token("analyst", ""),
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // The history shows every step with its actor and reason.
    let history = client
        .get_report_history(req(
            pr::GetReportHistoryRequest { report_id: "report-07192-2025-H1".into(), ..Default::default() },
            &token("reporter", "07192"),
        ))
        .await
        .unwrap()
        .into_inner();
    let steps: Vec<(String, String, String)> = history
        .events
        .iter()
        .map(|e| {
            let reason = match e.payload.as_ref().unwrap() {
                Payload::ReportReturned(r) => r.reason.clone(),
                Payload::ReportAmended(a) => a.reason.clone(),
                _ => String::new(),
            };
            (e.event_type.clone(), e.actor.as_ref().unwrap().subject.clone(), reason)
        })
        .collect();
    let s = |t: &str, a: &str, r: &str| (t.to_owned(), a.to_owned(), r.to_owned());
    assert_eq!(
        steps,
        vec![
            s("dvk.events.v1.ReportSubmitted", "test-reporter-07192", ""),
            s("dvk.events.v1.ReportReturned", "test-approver-207", "Thiếu số liệu ngày công"),
            s("dvk.events.v1.ReportAmended", "test-reporter-07192", "Bổ sung ngày công"),
            s("dvk.events.v1.ReportApproved", "test-approver-207", ""),
        ]
    );

    // The district's completeness: it and its three communes are expected; the
    // communes reported on time; one is approved; the district itself is missing.
    let list = client
        .list_reports(req(
            pr::ListReportsRequest { unit: unit(DISTRICT), period: period("2025-H1"), ..Default::default() },
            &token("analyst", PROVINCE),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.completeness, Some(pr::Completeness { expected: 4, submitted: 3, on_time: 3, approved: 1 }));
    assert_eq!(list.total_size, 3);
    let missing = client
        .list_reports(req(
            pr::ListReportsRequest {
                unit: unit(DISTRICT),
                period: period("2025-H1"),
                status: pr::ReportStatus::Missing as i32,
                ..Default::default()
            },
            &token("analyst", PROVINCE),
        ))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = missing.reports.iter().map(|r| r.report_id.as_str()).collect();
    assert_eq!(ids, ["report-207-2025-H1"]);
    // Pages follow one another without gaps.
    let mut seen = Vec::new();
    let mut token_ = String::new();
    loop {
        let page = client
            .list_reports(req(
                pr::ListReportsRequest {
                    unit: unit(DISTRICT),
                    period: period("2025-H1"),
                    page_size: 2,
                    page_token: token_.clone(),
                    ..Default::default()
                },
                &token("analyst", DISTRICT),
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.reports.into_iter().map(|r| r.report_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token_ = page.next_page_token;
    }
    assert_eq!(seen, COMMUNES.map(|c| format!("report-{c}-2025-H1")));

    // An id reads in every form a write accepts (the period in lower case, as a client
    // may build it): the same report, its history, and the page after it.
    let typed = "report-07192-2025-h1";
    let read = get(&mut client, typed, 0).await;
    assert_eq!(read, latest);
    assert_eq!(read.report_id, "report-07192-2025-H1");
    let typed_history = client
        .get_report_history(req(
            pr::GetReportHistoryRequest { report_id: typed.into(), ..Default::default() },
            &token("reporter", "07192"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(typed_history, history);
    let after = client
        .list_reports(req(
            pr::ListReportsRequest {
                unit: unit(DISTRICT),
                period: period("2025-H1"),
                page_token: typed.into(),
                ..Default::default()
            },
            &token("analyst", DISTRICT),
        ))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = after.reports.iter().map(|r| r.report_id.as_str()).collect();
    assert_eq!(ids, ["report-07195-2025-H1", "report-07198-2025-H1"]);

    // Reopened by the district, the report can change again.
    client
        .reopen_report(req(
            pr::ReopenReportRequest {
                request_id: "reopen-1".into(),
                report_id: "report-07192-2025-h1".into(),
                expected_version: 4,
                reason: "Rà soát lại quỹ".into(),
            },
            &approver,
        ))
        .await
        .unwrap();
    let reopened = get(&mut client, "report-07192-2025-H1", 0).await;
    assert_eq!((reopened.status, reopened.approved_revision), (pr::ReportStatus::Reopened as i32, 0));

    // A report submitted past its due date is recorded as late.
    let late = client
        .submit_report(req(submit("stage-22", PROVINCE, "2021-2025", figures(500)), &token("reporter", PROVINCE)))
        .await
        .unwrap()
        .into_inner();
    let stage = get(&mut client, &late.report_id, 0).await;
    assert_eq!(stage.tree, dvk_proto::common::v1::Tree::Tree2025 as i32);
    assert!(!stage.revision.unwrap().on_time);

    // A restart replays the log to the same answers.
    let before = get(&mut client, "report-07192-2025-H1", 0).await;
    drop(client);
    reporting.stop().await;
    let reporting = Service::reporting(&dir.path().join("reporting"), schedule(), links()).await;
    let mut client = reporting.reporting_client().await;
    assert_eq!(get(&mut client, "report-07192-2025-H1", 0).await, before);
    reporting.stop().await;
    registration.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_names_its_field_or_rule_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let registration = Service::registration(&dir.path().join("registration")).await;
    load_trees(&registration).await;
    let links = dvk_reporting::Links { relay: None, registration: Some(Upstream::Local(registration.log.clone())) };
    let reporting = Service::reporting(&dir.path().join("reporting"), schedule(), links).await;
    let mut client = reporting.reporting_client().await;
    wait_for_tree(&mut client, DISTRICT, "2025-H1", 4).await;
    let reporter = token("reporter", "07192");
    client.submit_report(req(submit("ok", "07192", "2025-H1", figures(10)), &reporter)).await.unwrap();
    client
        .approve_report(req(
            pr::ApproveReportRequest {
                request_id: "approve".into(),
                report_id: "report-07192-2025-H1".into(),
                expected_version: 1,
            },
            &token("approver", PROVINCE),
        ))
        .await
        .unwrap();
    let head = reporting.log.head();

    let invalid = |f: fn(&mut Figures)| {
        let mut x = figures(10);
        f(&mut x);
        submit("bad", "07195", "2025-H1", x)
    };
    let cases: Vec<(&str, pr::SubmitReportRequest, &str)> = vec![
        ("recognised > registered", invalid(|f| f.models_recognized = 11), "figures.models_recognized"),
        ("resolved > received", invalid(|f| f.petitions_resolved = 13), "figures.petitions_resolved"),
        ("negative", invalid(|f| f.workdays = -1), "figures.workdays"),
        ("overflowing", invalid(|f| f.funds_mobilized = Some(Money { vnd: i64::MAX })), "figures.funds_mobilized.vnd"),
        ("unknown period", submit("bad", "07195", "2025-H3", figures(10)), "period"),
        // A stage is a five-year term (2021-2025): others would overlap it.
        ("a stage of four years", submit("bad", "07195", "2021-2024", figures(10)), "period"),
        ("a stage across two terms", submit("bad", "07195", "2020-2024", figures(10)), "period"),
        ("no unit", submit("bad", "", "2025-H1", figures(10)), "unit"),
        ("unit not in the period's tree", submit("bad", "99999", "2025-H1", figures(10)), "unit"),
    ];
    for (what, request, field) in cases {
        let e = client.submit_report(req(request, &token("reporter", "07195"))).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        assert!(violations(&e).contains(&field.to_owned()), "{what}: {:?}", violations(&e));
    }

    let e = client
        .submit_report(req(submit("bad", "07195", "2020-2024", figures(1)), &token("reporter", "07195")))
        .await
        .unwrap_err();
    assert!(e.message().contains("a stage is a five-year term of the movement"), "{e:?}");
    assert!(e.message().contains("2020 is in 2016-2020"), "{e:?}");

    // A report for a unit outside the caller's scope.
    let e = client.submit_report(req(submit("x", "07195", "2025-H1", figures(1)), &reporter)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("07195"), "{e:?}");

    // A submission after the lock date (the 2024 year report locked on 2025-03-01).
    let e = client.submit_report(req(submit("x", "07192", "2024", figures(1)), &reporter)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("locked on 2025-03-01"), "{e:?}");

    // Amendment after approval.
    let amend = pr::AmendReportRequest {
        request_id: "amend".into(),
        report_id: "report-07192-2025-H1".into(),
        expected_version: 2,
        figures: Some(figures(12)),
        summary: String::new(),
        reason: "Sửa".into(),
    };
    let e = client.amend_report(req(amend, &reporter)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("reopened"), "{e:?}");

    // Approval or return by a unit that is not above: the commune itself, a sibling,
    // and a reporter of the district (an approver's role is needed).
    client
        .submit_report(req(submit("ok2", "07195", "2025-H1", figures(5)), &token("reporter", "07195")))
        .await
        .unwrap();
    for (who, code) in [
        (token("approver", "07195"), Code::PermissionDenied),
        (token("approver", "07192"), Code::PermissionDenied),
        (token("reporter", DISTRICT), Code::PermissionDenied),
        (token("approver", "23"), Code::PermissionDenied),
    ] {
        let e = client
            .approve_report(req(
                pr::ApproveReportRequest {
                    request_id: "approve-x".into(),
                    report_id: "report-07195-2025-H1".into(),
                    expected_version: 1,
                },
                &who,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
    }
    let e = client
        .return_report(req(
            pr::ReturnReportRequest {
                request_id: "return-x".into(),
                report_id: "report-07195-2025-H1".into(),
                expected_version: 1,
                reason: String::new(),
            },
            &token("approver", DISTRICT),
        ))
        .await
        .unwrap_err();
    assert_eq!(violations(&e), ["reason"], "{e:?}");

    // A stale version, an unknown report, a missing token.
    let e = client
        .approve_report(req(
            pr::ApproveReportRequest {
                request_id: "approve-y".into(),
                report_id: "report-07195-2025-H1".into(),
                expected_version: 7,
            },
            &token("approver", DISTRICT),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    let e = client
        .get_report(req(
            pr::GetReportRequest { report_id: "report-07198-2025-H1".into(), revision: 0 },
            &token("analyst", ""),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = client
        .get_report(pr::GetReportRequest { report_id: "report-07192-2025-H1".into(), revision: 0 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // An analyst of another province cannot read it.
    let e = client
        .get_report(req(
            pr::GetReportRequest { report_id: "report-07192-2025-H1".into(), revision: 0 },
            &token("analyst", "01"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Only the one good submission after `head` was written.
    assert_eq!(reporting.log.head(), head + 1);
    reporting.stop().await;
    registration.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tree_arrives_over_kafka_and_reports_leave_over_kafka() {
    let broker = Broker::memory();
    let dir = tempfile::tempdir().unwrap();
    let kafka = broker.kafka();
    let registration = Service::registration_with(&dir.path().join("registration"), None, Some(kafka.clone())).await;
    load_trees(&registration).await;
    let links = dvk_reporting::Links { relay: Some(kafka.clone()), registration: Some(Upstream::Kafka(kafka.clone())) };
    let reporting = Service::reporting(&dir.path().join("reporting"), schedule(), links).await;
    let mut client = reporting.reporting_client().await;
    wait_for_tree(&mut client, DISTRICT, "2025-H1", 4).await;
    let r = client
        .submit_report(req(submit("h1", "07198", "2025-H1", figures(3)), &token("reporter", "07198")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.position.as_ref().unwrap().position, 1, "the first of reporting's own events");

    // A consumer of dvk.reporting.v1 receives the submission.
    let consumer_dir = tempfile::tempdir().unwrap();
    let consumer = dvk_tests::bus_support::open(consumer_dir.path(), "aggregation");
    let mut ingestor = dvk_bus::Ingestor::new(consumer.clone(), &["reporting"]).unwrap();
    let mut source =
        dvk_bus::kafka::KafkaSource::new(&kafka, "dvk.reporting.v1", "reporting-test", &consumer).await.unwrap();
    dvk_tests::bus_support::ingest_until(&mut ingestor, &mut source, "reporting", 1).await;
    let received: Vec<_> = consumer.read_all(1).map(|r| r.unwrap().envelope().unwrap()).collect();
    assert_eq!(received.len(), 1, "only reporting's own events are published");
    assert_eq!(received[0].stream_id, "report-07198-2025-H1");
    assert!(matches!(received[0].payload, Some(Payload::ReportSubmitted(_))));
    drop(source);
    consumer.close().unwrap();
    reporting.stop().await;
    registration.stop().await;
}
