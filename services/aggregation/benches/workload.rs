//! The 1,000,000-event aggregation log of the benchmarks: what an aggregation would
//! have received. The real trees as a registration service records them (both GSO
//! lists and the 2025 mapping, imported through a real registration service), then
//! generated model and report events at communes of both trees in the field's
//! proportions over 2021–2025 (a unit reports once a period; a report met again is
//! amended, reopened first if it was approved).
//!
//! Used by `benches/aggregation.rs` and by the side-by-side comparison
//! (`crates/compare`, through `#[path]`), so that both measure the same log.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use dvk_client::import;
use dvk_domain::model::{Decision, Field, ModelDetails, ModelDetailsDraft, ModelEvent, ModelId, Recognition};
use dvk_domain::report::{Figure, Figures, ReportEvent, ReportId, Revision};
use dvk_domain::unit::Level;
use dvk_domain::{Date, Period, Tree, UnitCode};
use dvk_eventlog::{AppendRequest, EventLog, ExpectedVersion, LogConfig};
use dvk_gso as gso;
use dvk_proto::common::v1 as pc;
use dvk_proto::events::v1::Envelope;
use dvk_runtime::auth::{Claims, mint_hs256, now_secs};
use dvk_runtime::settings::{AuthSettings, ServerSettings};
use tonic::transport::Channel;

/// Events in the generated log.
pub const EVENTS: u64 = 1_000_000;

const TREES_SECRET: &[u8] = b"dvk-workload-secret-0123456789abcdef";

/// A GSO list of `crates/gso/data/admin-units`.
pub fn gso_file(name: &str) -> gso::GsoFile {
    let path: PathBuf = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../../crates/gso/data/admin-units")
        .join(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    gso::read(file).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The pre-2025 list and the 2025 conversion table.
pub const TREE_FILES: [&str; 2] = ["gso-communes-2025-01-04.csv", "gso-reorganization-2025-07-01.csv"];

/// Model details of generated model `n`.
pub fn details(n: u64, field: Field) -> ModelDetails {
    ModelDetails::new(
        ModelDetailsDraft {
            name: format!("Mô hình dân vận khéo số {n}"),
            field: Some(field),
            runner_kind: Some(dvk_domain::model::RunnerKind::Collective),
            runner_name: "Chi hội Phụ nữ".into(),
            sponsor: Some(dvk_domain::model::Sponsor::WomensUnion),
            sponsor_name: "Hội LHPN xã".into(),
            objectives: "Bê tông hoá đường ngõ xóm".into(),
            timeline_start: Some(Date::new("d", 2021, 1, 1).unwrap()),
            ..ModelDetailsDraft::default()
        },
        "details",
    )
    .unwrap()
}

/// The tree events as a registration service records them: both lists imported
/// through a real service over gRPC in `dir`.
fn record_trees(dir: &Path, rt: &tokio::runtime::Runtime) -> Vec<Envelope> {
    let secret = dir.join("secret");
    std::fs::write(&secret, TREES_SECRET).unwrap();
    let settings = ServerSettings {
        data_dir: dir.join("registration"),
        metrics_listen: None,
        shutdown_timeout: Duration::from_secs(5),
        max_message_bytes: 16 << 20,
        tls: Default::default(),
        health_listen: None,
        max_calls_per_caller: 256,
        auth: AuthSettings { jwt_hs256_secret_file: Some(secret), jwt_public_key_file: None },
    };
    let log = dvk_registration::open_log(&settings).unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let server = tokio::spawn(dvk_registration::serve(listener, settings, log.clone(), None, shutdown, || {}));
        let mut channel = None;
        for _ in 0..200 {
            if let Ok(ch) = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await {
                channel = Some(ch);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut client = dvk_proto::registration::v1::registration_service_client::RegistrationServiceClient::new(
            channel.expect("the registration service starts"),
        )
        .max_encoding_message_size(16 << 20);
        let claims = Claims { sub: "bench".into(), role: "admin".into(), unit: String::new(), exp: now_secs() + 3600 };
        let token = mint_hs256(TREES_SECRET, &claims).unwrap();
        for name in TREE_FILES {
            import::import(&mut client, &token, &gso_file(name), name, |_| {}).await.unwrap();
        }
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    });
    let events = log.read_all(1).map(|r| r.unwrap().envelope().unwrap()).collect();
    log.close().unwrap();
    events
}

/// The 1,000,000-event log the aggregation would hold, at `dir/aggregation`: the trees
/// as the registration service records them, then models (registered, started,
/// recognised) and reports (submitted, approved) at communes of both trees over
/// 2021–2025.
pub fn prepare_log(dir: &Path, rt: &tokio::runtime::Runtime) -> EventLog {
    let trees_dir = dir.join("trees");
    std::fs::create_dir_all(&trees_dir).unwrap();
    let mut batch = record_trees(&trees_dir, rt);
    let log = EventLog::open(LogConfig::new(dir.join("aggregation"), "aggregation")).unwrap();
    let tree_events = batch.len() as u64;
    let communes: Vec<(Tree, UnitCode)> = {
        let pre = gso_file(TREE_FILES[0]);
        let new = gso_file(TREE_FILES[1]);
        pre.units
            .iter()
            .map(|(_, u)| (Tree::Pre2025, u))
            .chain(new.units.iter().map(|(_, u)| (Tree::Y2025, u)))
            .filter(|(_, u)| u.level == pc::Level::Commune as i32)
            .map(|(t, u)| (t, UnitCode::parse("u", &u.code.as_ref().unwrap().code).unwrap()))
            .collect()
    };
    let append = |log: &EventLog, events: Vec<Envelope>| {
        rt.block_on(log.append(AppendRequest::new("inbox", ExpectedVersion::Any, events))).unwrap();
    };
    append(&log, std::mem::take(&mut batch));
    let mut reg_position = tree_events;
    let mut rep_position = 0u64;
    let now = prost_types::Timestamp::from(SystemTime::now());
    let envelope = |source: &str, position: u64, stream: String, payload| Envelope {
        stream_id: stream,
        stream_version: 1,
        source: source.into(),
        source_position: position,
        event_type: dvk_codec::event::event_type(&payload).into(),
        schema_version: dvk_codec::upcast::SCHEMA_VERSION,
        recorded_at: Some(now),
        occurred_at: Some(now),
        payload: Some(payload),
        ..Envelope::default()
    };
    let mut n = 0u64;
    let mut count = tree_events;
    // Per report stream: its latest revision and whether it is approved.
    let mut reports: std::collections::HashMap<String, (u32, bool)> = std::collections::HashMap::new();
    let periods: Vec<Period> = ["2021-H1", "2021-H2", "2022-H1", "2022-H2", "2023-H1", "2023-H2", "2024-H1", "2024-H2"]
        .iter()
        .map(|p| Period::parse("p", p).unwrap())
        .collect();
    while count < EVENTS {
        n += 1;
        let (tree, unit) = &communes[(n as usize * 7919) % communes.len()];
        if n % 5 < 3 {
            // A model: registered, mostly started, some recognised (3 events at most).
            let year = if *tree == Tree::Pre2025 { 2021 + (n % 4) as i32 } else { 2025 };
            let month = if *tree == Tree::Pre2025 { 1 + (n % 12) as u32 } else { 8 + (n % 4) as u32 };
            let d0 = Date::new("d", year, month, 1 + (n % 27) as u32).unwrap();
            let id = ModelId::parse("id", &format!("00000000-0000-7000-8000-{n:012}")).unwrap();
            let stream = dvk_codec::StreamId::Model(id.clone()).to_string();
            let field = Field::ALL[(n % 4) as usize];
            let mut events = vec![ModelEvent::Registered {
                id,
                unit: unit.clone(),
                tree: *tree,
                registered_on: d0,
                details: details(n, field),
            }];
            if !n.is_multiple_of(3) {
                events.push(ModelEvent::Started { started_on: d0.add_days(10).unwrap() });
            }
            if n % 3 == 1 {
                events.push(ModelEvent::Recognized(Recognition {
                    level: Level::Commune,
                    recognizing_unit: unit.clone(),
                    decision: Decision {
                        number: format!("{n}/QĐ"),
                        date: d0.add_days(40).unwrap(),
                        issuer: "UBND".into(),
                    },
                    exemplary: n.is_multiple_of(7),
                }));
            }
            for e in events {
                reg_position += 1;
                count += 1;
                batch.push(envelope(
                    "registration",
                    reg_position,
                    stream.clone(),
                    dvk_codec::event::encode(&dvk_domain::DomainEvent::Model(e)),
                ));
            }
        } else {
            // A report: submitted, and mostly approved.
            let period = if *tree == Tree::Pre2025 {
                periods[(n / 5) as usize % periods.len()]
            } else {
                Period::parse("p", "2025-H2").unwrap()
            };
            let id = ReportId { unit: unit.clone(), period };
            let stream = id.as_string();
            let registered = (n % 40) as i64;
            let figures: Figures = [
                (Figure::ModelsRegistered, registered),
                (Figure::ModelsRecognized, registered / 2),
                (Figure::FundsMobilized, 81_000_000 * registered),
                (Figure::Workdays, 120),
                (Figure::Participants, 300),
                (Figure::DialoguesHeld, 4),
                (Figure::PetitionsReceived, 12),
                (Figure::PetitionsResolved, 11),
                (Figure::DanVanDays, 1),
                (Figure::CommendationsCollective, 12),
                (Figure::CommendationsIndividual, 11),
            ]
            .into_iter()
            .collect();
            // A unit reports once a period: a report already there is amended (reopened
            // first if it was approved), as its unit would correct it.
            let (revision, approved) = reports.entry(stream.clone()).or_insert((0, false));
            let mut events = Vec::with_capacity(3);
            if *revision == 0 {
                let first =
                    Revision { number: 1, figures, summary: String::new(), reason: String::new(), on_time: true };
                events.push(ReportEvent::Submitted { id, tree: *tree, revision: first });
            } else {
                if *approved {
                    events.push(ReportEvent::Reopened { revision: *revision, reason: "bổ sung".into() });
                }
                let next = Revision {
                    number: *revision + 1,
                    figures,
                    summary: String::new(),
                    reason: "bổ sung".into(),
                    on_time: false,
                };
                events.push(ReportEvent::Amended { revision: next });
            }
            *revision += 1;
            *approved = !n.is_multiple_of(4);
            if *approved {
                events.push(ReportEvent::Approved { revision: *revision });
            }
            for e in events {
                rep_position += 1;
                count += 1;
                batch.push(envelope(
                    "reporting",
                    rep_position,
                    stream.clone(),
                    dvk_codec::event::encode(&dvk_domain::DomainEvent::Report(e)),
                ));
            }
        }
        if batch.len() >= 2000 {
            append(&log, std::mem::take(&mut batch));
        }
    }
    append(&log, batch);
    log
}
