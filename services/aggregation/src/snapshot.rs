//! Snapshots of the projection: the tree events, the facts and the positions seen, as
//! protobuf bytes (prost), stored in the aggregation's log with a checksum. The cells
//! are not stored: loading derives them from the facts, exactly as the projection does.
//!
//! The latest snapshot (`rollups`) starts the service; a ring of the last few
//! (`rollups-ring-N`) serves `as_of` questions about the past.

use dvk_domain::{DomainError, Period};
use dvk_eventlog::{EventLog, LogError, Snapshot};
use dvk_proto::common::v1 as pc;
use dvk_proto::convert;
use dvk_proto::events::v1::Envelope;
use prost::Message;

use crate::projection::{Flow, ModelFact, ReportFact, Seen, State};

/// The name of the latest snapshot.
pub const LATEST: &str = "rollups";
/// How many past snapshots are kept for `as_of`.
pub const RING: u64 = 4;

pub fn ring_name(slot: u64) -> String {
    format!("rollups-ring-{}", slot % RING)
}

#[derive(Clone, PartialEq, Message)]
pub struct SnapshotPb {
    #[prost(uint64, tag = "1")]
    pub position: u64,
    #[prost(uint64, tag = "2")]
    pub events: u64,
    /// The tree events folded in, in order (only their payloads matter).
    #[prost(message, repeated, tag = "3")]
    pub tree_events: Vec<Envelope>,
    #[prost(message, repeated, tag = "4")]
    pub models: Vec<ModelPb>,
    #[prost(message, repeated, tag = "5")]
    pub reports: Vec<ReportPb>,
    #[prost(message, repeated, tag = "6")]
    pub seen: Vec<SeenPb>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ModelPb {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub unit: String,
    #[prost(enumeration = "pc::Tree", tag = "3")]
    pub tree: i32,
    #[prost(message, repeated, tag = "4")]
    pub flows: Vec<FlowPb>,
}

#[derive(Clone, PartialEq, Message)]
pub struct FlowPb {
    #[prost(message, optional, tag = "1")]
    pub date: Option<pc::Date>,
    /// 0 registered, 1 started, 2 recognised, 3 commended, 4 replicated, 5 retired.
    #[prost(uint32, tag = "2")]
    pub kind: u32,
    #[prost(enumeration = "pc::Field", tag = "3")]
    pub field: i32,
    #[prost(enumeration = "pc::Level", tag = "4")]
    pub level: i32,
    #[prost(bool, tag = "5")]
    pub exemplary: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct ReportPb {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub unit: String,
    #[prost(enumeration = "pc::Tree", tag = "3")]
    pub tree: i32,
    #[prost(string, tag = "4")]
    pub period: String,
    #[prost(message, optional, tag = "5")]
    pub latest: Option<pc::Figures>,
    #[prost(message, optional, tag = "6")]
    pub approved: Option<pc::Figures>,
    #[prost(bool, tag = "7")]
    pub on_time: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct SeenPb {
    #[prost(string, tag = "1")]
    pub source: String,
    #[prost(uint64, tag = "2")]
    pub watermark: u64,
    #[prost(uint64, repeated, tag = "3")]
    pub above: Vec<u64>,
    #[prost(int64, tag = "4")]
    pub latest_time: i64,
}

fn flow_out(date: dvk_domain::Date, flow: Flow) -> FlowPb {
    let mut f = FlowPb { date: Some(convert::date_out(date)), ..FlowPb::default() };
    match flow {
        Flow::Registered(field) => f.field = convert::field_out(field) as i32,
        Flow::Started => f.kind = 1,
        Flow::Recognized { level, exemplary } => {
            f.kind = 2;
            f.level = convert::level_out(level) as i32;
            f.exemplary = exemplary;
        }
        Flow::Commended => f.kind = 3,
        Flow::Replicated => f.kind = 4,
        Flow::Retired => f.kind = 5,
    }
    f
}

fn flow_in(f: &FlowPb) -> Result<(dvk_domain::Date, Flow), DomainError> {
    let date = convert::date_required("flows.date", f.date.as_ref())?;
    let flow = match f.kind {
        0 => {
            Flow::Registered(convert::field_in(f.field).ok_or_else(|| DomainError::invalid("flows.field", "unknown"))?)
        }
        1 => Flow::Started,
        2 => Flow::Recognized { level: convert::level_in("flows.level", f.level)?, exemplary: f.exemplary },
        3 => Flow::Commended,
        4 => Flow::Replicated,
        5 => Flow::Retired,
        k => return Err(DomainError::invalid("flows.kind", format!("unknown kind {k}"))),
    };
    Ok((date, flow))
}

/// The snapshot of a state.
pub fn encode(state: &State) -> Vec<u8> {
    SnapshotPb {
        position: state.position,
        events: state.events,
        tree_events: state.tree_events.clone(),
        models: state
            .models
            .iter()
            .map(|(id, m)| ModelPb {
                id: id.clone(),
                unit: m.unit.as_str().to_owned(),
                tree: convert::tree_out(m.tree) as i32,
                flows: m.flows.iter().map(|(d, f)| flow_out(*d, *f)).collect(),
            })
            .collect(),
        reports: state
            .reports
            .iter()
            .map(|(id, r)| ReportPb {
                id: id.clone(),
                unit: r.unit.as_str().to_owned(),
                tree: convert::tree_out(r.tree) as i32,
                period: r.period.to_string(),
                latest: Some(convert::figures_out(&r.latest)),
                approved: r.approved.as_ref().map(convert::figures_out),
                on_time: r.on_time,
            })
            .collect(),
        seen: state
            .seen
            .iter()
            .map(|(source, s)| SeenPb {
                source: source.clone(),
                watermark: s.watermark,
                above: s.above.iter().copied().collect(),
                latest_time: state.latest_time.get(source).copied().unwrap_or(0),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Decodes only what says which events a snapshot holds (for `as_of`).
pub fn decode_seen(bytes: &[u8]) -> Result<Vec<SeenPb>, prost::DecodeError> {
    SnapshotPb::decode(bytes).map(|s| s.seen)
}

/// The state a snapshot holds, its cells derived again from its facts.
pub fn decode(bytes: &[u8]) -> Result<State, String> {
    let pb = SnapshotPb::decode(bytes).map_err(|e| e.to_string())?;
    let d = |e: DomainError| e.to_string();
    let mut state = State::default();
    state.position = pb.position;
    state.events = pb.events;
    for env in pb.tree_events {
        state.replay_tree_event(env);
    }
    for m in pb.models {
        let fact = ModelFact {
            unit: dvk_domain::UnitCode::parse("unit", &m.unit).map_err(d)?,
            tree: convert::tree_in("tree", m.tree).map_err(d)?,
            flows: m.flows.iter().map(flow_in).collect::<Result<_, _>>().map_err(d)?,
        };
        state.models.insert(m.id, fact);
    }
    for r in pb.reports {
        let fact = ReportFact {
            unit: dvk_domain::UnitCode::parse("unit", &r.unit).map_err(d)?,
            tree: convert::tree_in("tree", r.tree).map_err(d)?,
            period: Period::parse("period", &r.period).map_err(d)?,
            latest: convert::figures_in(r.latest.as_ref()),
            approved: r.approved.as_ref().map(|f| convert::figures_in(Some(f))),
            on_time: r.on_time,
        };
        state.reports.insert(r.id, fact);
    }
    for s in pb.seen {
        state.seen.insert(s.source.clone(), Seen { watermark: s.watermark, above: s.above.into_iter().collect() });
        state.latest_time.insert(s.source, s.latest_time);
    }
    state.rederive_all();
    Ok(state)
}

/// Saves `bytes` (a state at `position`) as the latest snapshot and in the ring.
pub fn save(log: &EventLog, position: u64, bytes: Vec<u8>, slot: u64) -> Result<(), LogError> {
    let snapshot = Snapshot { position, data: bytes };
    log.save_snapshot(&ring_name(slot), &snapshot)?;
    log.save_snapshot(LATEST, &snapshot)
}
