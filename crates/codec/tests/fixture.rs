//! The frozen envelopes of format version 1 (`crates/proto/tests/fixtures`) replay
//! through the codec into the typed events they recorded.

use dvk_codec::{StreamId, recorded};
use dvk_domain::DomainEvent;
use dvk_domain::model::{Field, ModelEvent};
use dvk_domain::report::{Figure, ReportEvent};
use dvk_proto::events::v1::Envelope;
use prost::Message;

#[test]
fn the_frozen_v1_envelopes_decode_into_the_events_they_recorded() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/tests/fixtures/envelopes-v1.bin"))
        .expect("the frozen fixture is committed");
    let mut buf = bytes.as_slice();
    let mut events = Vec::new();
    while !buf.is_empty() {
        let env = Envelope::decode_length_delimited(&mut buf).expect("a v1 envelope");
        events.push(recorded::decode(events.len() as u64 + 1, env).expect("a v1 event decodes"));
    }
    assert_eq!(events.len(), 3);
    // Its registration carries a name and a field only: the runner, sponsor and start
    // that today's form requires are absent, and read as unknown, never invented.
    let registered = &events[0];
    assert_eq!(registered.stream.to_string(), "model-0193a1b2-0000-7000-8000-0000000000aa");
    assert_eq!((registered.source.as_str(), registered.source_position, registered.version), ("registration", 1, 1));
    assert_eq!(registered.actor.as_ref().map(|a| a.subject.as_str()), Some("ubnd-phuc-xa"));
    let DomainEvent::Model(ModelEvent::Registered { unit, registered_on, details, .. }) = &registered.event else {
        panic!("a registration: {:?}", registered.event)
    };
    assert_eq!((unit.as_str(), registered_on.to_string().as_str()), ("00001", "2024-02-15"));
    assert_eq!((details.name.as_str(), details.field), ("Dân vận khéo: đường làng", Field::Economy));
    assert_eq!((details.runner_kind, details.sponsor, details.timeline_start), (None, None, None));
    let events = &events[1..];
    let submitted = &events[0];
    assert!(matches!(submitted.stream, StreamId::Report(_)));
    let DomainEvent::Report(ReportEvent::Submitted { id, revision, .. }) = &submitted.event else {
        panic!("a submission: {:?}", submitted.event)
    };
    assert_eq!(id.as_string(), "report-001-2024-H1");
    let f = revision.figures;
    assert_eq!(
        (f[Figure::ModelsRegistered], f[Figure::ModelsRecognized], f[Figure::FundsMobilized]),
        (191, 54, 81_000_000_000)
    );
    assert_eq!((f[Figure::CommendationsCollective], f[Figure::CommendationsIndividual]), (12, 11));
    assert_eq!(events[1].event, DomainEvent::Report(ReportEvent::Approved { revision: 1 }));
    assert_eq!((events[1].position, events[1].version), (3, 2));
}

/// Every event type as this release writes it, frozen: a later release must decode
/// these bytes into the same events. Regenerate only for a new format, with
/// `DVK_WRITE_FIXTURES=1 cargo test -p dvk-codec --test fixture`.
#[test]
fn every_event_type_as_written_by_format_v1_replays() {
    use dvk_domain::model::{
        AwardForm, Commendation, Decision, Field, ModelDetails, ModelDetailsDraft, ModelEvent, ModelId, Recognition,
        Replication, RunnerKind, Sponsor,
    };
    use dvk_domain::report::{Figures, ReportId, Revision};
    use dvk_domain::unit::{LinkBasis, MergeKind, ReorgLink, Unit, UnitKind};
    use dvk_domain::{Date, Level, Period, Tree, UnitCode};
    use dvk_proto::common::v1::{Actor, Role};

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/events-v1.bin");
    let u = |s: &str| UnitCode::parse("u", s).unwrap();
    let d = |s: &str| Date::parse("d", s).unwrap();
    let model = ModelId::parse("id", "0193a1b2-0000-7000-8000-0000000000aa").unwrap();
    let report = ReportId { unit: u("00001"), period: Period::parse("p", "2024-H1").unwrap() };
    let details = ModelDetails::new(
        ModelDetailsDraft {
            name: "Dân vận khéo: đường làng".into(),
            field: Some(Field::Economy),
            runner_kind: Some(RunnerKind::Collective),
            runner_name: "Chi hội Phụ nữ thôn 3".into(),
            sponsor: Some(Sponsor::WomensUnion),
            sponsor_name: "Hội LHPN xã".into(),
            objectives: "Bê tông hoá 2 km đường".into(),
            funds_vnd: 1_200_000_000,
            workdays: 640,
            timeline_start: Some(d("2024-02-15")),
            timeline_end: Some(d("2024-12-31")),
            ..Default::default()
        },
        "details",
    )
    .unwrap();
    let decision = Decision::new("decision", "12/QĐ-UBND", Some(d("2024-06-01")), "UBND huyện").unwrap();
    let figures = Figures::default().with(Figure::ModelsRegistered, 191).with(Figure::FundsMobilized, 81_000_000_000);
    let revision = |number, reason: &str| Revision {
        number,
        figures,
        summary: "Sơ kết".into(),
        reason: reason.into(),
        on_time: true,
    };
    let link = ReorgLink {
        old: u("00001"),
        new: u("00004"),
        kind: MergeKind::Whole,
        note: "Sáp nhập toàn bộ".into(),
        basis: LinkBasis::Official,
    };
    let events: Vec<(StreamId, DomainEvent)> = vec![
        (
            StreamId::Units(Tree::Pre2025),
            DomainEvent::UnitsImported {
                tree: Tree::Pre2025,
                units: vec![
                    Unit::new(Tree::Pre2025, u("01"), "Thành phố Hà Nội", "Ha Noi", UnitKind::CentralCity, None)
                        .unwrap(),
                ],
                origin: "GSO".into(),
            },
        ),
        (
            StreamId::Reorganization,
            DomainEvent::UnitsReorganized {
                effective: Some(d("2025-07-01")),
                links: vec![(link, 0)],
                origin: "GSO".into(),
            },
        ),
        (
            StreamId::Model(model.clone()),
            DomainEvent::Model(ModelEvent::Registered {
                id: model.clone(),
                unit: u("00001"),
                tree: Tree::Pre2025,
                registered_on: d("2024-02-15"),
                details: details.clone(),
            }),
        ),
        (StreamId::Model(model.clone()), DomainEvent::Model(ModelEvent::Amended { details, reason: "bổ sung".into() })),
        (StreamId::Model(model.clone()), DomainEvent::Model(ModelEvent::Started { started_on: d("2024-03-01") })),
        (
            StreamId::Model(model.clone()),
            DomainEvent::Model(ModelEvent::Recognized(Recognition {
                level: Level::District,
                recognizing_unit: u("001"),
                decision: decision.clone(),
                exemplary: true,
            })),
        ),
        (
            StreamId::Model(model.clone()),
            DomainEvent::Model(ModelEvent::Commended(Commendation {
                form: AwardForm::CertificateOfMerit,
                level: Level::Province,
                awarding_unit: u("01"),
                decision,
            })),
        ),
        (
            StreamId::Model(model.clone()),
            DomainEvent::Model(ModelEvent::Replicated(Replication {
                target_unit: u("00004"),
                replicated_on: d("2024-09-09"),
                note: "nhân rộng".into(),
            })),
        ),
        (
            StreamId::Model(model),
            DomainEvent::Model(ModelEvent::Retired { reason: "hoàn thành".into(), retired_on: d("2024-12-31") }),
        ),
        (
            StreamId::Report(report.clone()),
            DomainEvent::Report(ReportEvent::Submitted {
                id: report.clone(),
                tree: Tree::Pre2025,
                revision: revision(1, ""),
            }),
        ),
        (
            StreamId::Report(report.clone()),
            DomainEvent::Report(ReportEvent::Returned { revision: 1, reason: "thiếu số liệu".into() }),
        ),
        (
            StreamId::Report(report.clone()),
            DomainEvent::Report(ReportEvent::Amended { revision: revision(2, "bổ sung") }),
        ),
        (StreamId::Report(report.clone()), DomainEvent::Report(ReportEvent::Approved { revision: 2 })),
        (StreamId::Report(report), DomainEvent::Report(ReportEvent::Reopened { revision: 2, reason: "sai số".into() })),
    ];
    let actor = Actor { subject: "ubnd-phuc-xa".into(), role: Role::Reporter as i32, unit: None };
    let at = prost_types::Timestamp { seconds: 1_708_000_000, nanos: 0 };
    if std::env::var_os("DVK_WRITE_FIXTURES").is_some() {
        let mut out = Vec::new();
        for (i, (stream, event)) in events.iter().enumerate() {
            let mut env = recorded::envelope(event, actor.clone(), at, "corr");
            env.stream_id = stream.to_string();
            env.source = "registration".into();
            env.source_position = i as u64 + 1;
            env.encode_length_delimited(&mut out).unwrap();
        }
        std::fs::write(FIXTURE, out).unwrap();
    }
    let bytes = std::fs::read(FIXTURE).expect("the frozen fixture is committed");
    let mut buf = bytes.as_slice();
    let mut decoded = Vec::new();
    while !buf.is_empty() {
        let env = Envelope::decode_length_delimited(&mut buf).unwrap();
        let r = recorded::decode(decoded.len() as u64 + 1, env).expect("a v1 event decodes");
        decoded.push((r.stream, r.event));
    }
    assert_eq!(decoded.len(), 14, "one event of every type");
    for (_, event) in &decoded {
        let stored = dvk_codec::event::event_type(&dvk_codec::event::encode(event));
        assert_eq!(dvk_codec::event::is_model_event(stored), matches!(event, DomainEvent::Model(_)), "{stored}");
    }
    assert_eq!(decoded, events);
}
