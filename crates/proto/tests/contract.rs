//! The public API's names are a contract: every service and RPC named in the design is
//! in the descriptor set that reflection serves, and stored events stay decodable.

use dvk_proto::events::v1::{Envelope, envelope::Payload};
use prost::Message;
use prost_types::FileDescriptorSet;

fn services() -> Vec<(String, Vec<String>)> {
    let fds = FileDescriptorSet::decode(dvk_proto::FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
    fds.file
        .iter()
        .flat_map(|f| {
            let package = f.package().to_owned();
            f.service.iter().map(move |s| {
                (format!("{package}.{}", s.name()), s.method.iter().map(|m| m.name().to_owned()).collect())
            })
        })
        .collect()
}

#[test]
fn every_rpc_of_the_design_is_served() {
    let expected: &[(&str, &[&str])] = &[
        (
            "dvk.registration.v1.RegistrationService",
            &[
                "ImportUnits",
                "ReorganizeUnits",
                "GetUnit",
                "ListUnits",
                "RegisterModel",
                "AmendModel",
                "StartModel",
                "RecognizeModel",
                "CommendModel",
                "ReplicateModel",
                "RetireModel",
                "GetModel",
                "ListModels",
                "GetModelHistory",
            ],
        ),
        (
            "dvk.reporting.v1.ReportingService",
            &[
                "SubmitReport",
                "AmendReport",
                "ReturnReport",
                "ApproveReport",
                "ReopenReport",
                "GetReport",
                "ListReports",
                "GetReportHistory",
            ],
        ),
        (
            "dvk.aggregation.v1.AggregationService",
            &[
                "GetRollup",
                "ListRollups",
                "GetTimeSeries",
                "GetCompleteness",
                "GetProjectionStatus",
                "RebuildProjections",
            ],
        ),
    ];
    let actual = services();
    for (service, methods) in expected {
        let (_, got) = actual.iter().find(|(s, _)| s == service).unwrap_or_else(|| panic!("{service} missing"));
        let want: Vec<String> = methods.iter().map(|m| (*m).to_owned()).collect();
        assert_eq!(got, &want, "{service}");
    }
}

#[test]
fn every_write_request_carries_a_request_id() {
    let fds = FileDescriptorSet::decode(dvk_proto::FILE_DESCRIPTOR_SET).unwrap();
    let reads = ["Get", "List"];
    for file in &fds.file {
        for service in &file.service {
            for method in &service.method {
                if reads.iter().any(|r| method.name().starts_with(r)) {
                    continue;
                }
                let input = method.input_type().rsplit('.').next().unwrap();
                let message = file.message_type.iter().find(|m| m.name() == input).expect("request in the same file");
                assert!(
                    message.field.iter().any(|f| f.name() == "request_id"),
                    "{}.{} has no request_id",
                    service.name(),
                    method.name()
                );
            }
        }
    }
}

/// Envelopes as format version 1 wrote them. Regenerate only when adding a new
/// fixture for a new format: `DVK_WRITE_FIXTURES=1 cargo test -p dvk-proto`.
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/envelopes-v1.bin");

fn fixture_events() -> Vec<Envelope> {
    use dvk_proto::common::v1::{Actor, Date, Figures, Money, Period, Role, UnitCode};
    use dvk_proto::events::v1::{ModelDetails, ModelRegistered, ReportApproved, ReportSubmitted};
    let actor = Actor {
        subject: "ubnd-phuc-xa".into(),
        role: Role::Reporter as i32,
        unit: Some(UnitCode { code: "00001".into() }),
    };
    vec![
        Envelope {
            event_id: "0193a1b2-0000-7000-8000-000000000001".into(),
            stream_id: "model-0193a1b2-0000-7000-8000-0000000000aa".into(),
            stream_version: 1,
            source: "registration".into(),
            source_position: 1,
            event_type: "dvk.events.v1.ModelRegistered".into(),
            schema_version: 1,
            occurred_at: Some(prost_types::Timestamp { seconds: 1_708_000_000, nanos: 0 }),
            recorded_at: Some(prost_types::Timestamp { seconds: 1_708_000_001, nanos: 5 }),
            actor: Some(actor.clone()),
            correlation_id: "corr-1".into(),
            causation_id: String::new(),
            request_id: "req-1".into(),
            // Written before events carried it: old logs decode with none.
            request_fingerprint: Vec::new(),
            payload: Some(Payload::ModelRegistered(ModelRegistered {
                model_id: "0193a1b2-0000-7000-8000-0000000000aa".into(),
                unit: Some(UnitCode { code: "00001".into() }),
                tree: 1,
                registered_on: Some(Date { year: 2024, month: 2, day: 15 }),
                details: Some(ModelDetails {
                    name: "Dân vận khéo: đường làng".into(), field: 1, ..Default::default()
                }),
            })),
        },
        Envelope {
            event_id: "0193a1b2-0000-7000-8000-000000000002".into(),
            stream_id: "report-001-2024-H1".into(),
            stream_version: 1,
            source: "reporting".into(),
            source_position: 1,
            event_type: "dvk.events.v1.ReportSubmitted".into(),
            schema_version: 1,
            actor: Some(actor),
            payload: Some(Payload::ReportSubmitted(ReportSubmitted {
                unit: Some(UnitCode { code: "001".into() }),
                period: Some(Period { code: "2024-H1".into() }),
                tree: 1,
                revision: 1,
                figures: Some(Figures {
                    models_registered: 191,
                    models_recognized: 54,
                    funds_mobilized: Some(Money { vnd: 81_000_000_000 }),
                    commendations_collective: 12,
                    commendations_individual: 11,
                    ..Default::default()
                }),
                summary: "Sơ kết 6 tháng đầu năm".into(),
                on_time: true,
            })),
            ..Default::default()
        },
        Envelope {
            stream_id: "report-001-2024-H1".into(),
            stream_version: 2,
            source: "reporting".into(),
            source_position: 2,
            event_type: "dvk.events.v1.ReportApproved".into(),
            schema_version: 1,
            payload: Some(Payload::ReportApproved(ReportApproved { revision: 1 })),
            ..Default::default()
        },
    ]
}

#[test]
fn envelopes_of_format_v1_still_decode() {
    let events = fixture_events();
    if std::env::var_os("DVK_WRITE_FIXTURES").is_some() {
        let mut out = Vec::new();
        for e in &events {
            e.encode_length_delimited(&mut out).unwrap();
        }
        std::fs::write(FIXTURE, out).unwrap();
    }
    let bytes = std::fs::read(FIXTURE).expect("the frozen fixture is committed");
    let mut buf = bytes.as_slice();
    let mut decoded = Vec::new();
    while !buf.is_empty() {
        decoded.push(Envelope::decode_length_delimited(&mut buf).expect("a v1 envelope decodes"));
    }
    assert_eq!(decoded, events);
}
