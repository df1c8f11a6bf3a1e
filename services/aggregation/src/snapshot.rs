//! Snapshots of the projection: the tree events, the facts, the cells and the positions
//! seen, as protobuf bytes (prost), stored in the aggregation's log with a checksum.
//! The cells are stored so that loading need not derive them again from the facts.
//!
//! Snapshots are kept in a ring of the last few (`rollups-ring-N`, each with a small
//! head saying which positions it includes): the newest starts the service, and
//! `as_of` questions about the past start from the newest one before their point.

use dvk_codec::{convert, recorded};
use dvk_domain::report::ReportId;
use dvk_domain::{DomainError, Period};
use dvk_eventlog::{EventLog, LogError, Snapshot};
use dvk_proto::common::v1 as pc;
use dvk_proto::events::v1::Envelope;
use prost::Message;

use crate::projection::{Flow, ModelFact, ReportFact, Seen, State};

/// How many past snapshots are kept for `as_of`.
pub const RING: u64 = 8;

pub fn ring_name(slot: u64) -> String {
    format!("rollups-ring-{}", slot % RING)
}

#[derive(Clone, PartialEq, Message)]
pub struct SnapshotPb {
    #[prost(uint64, tag = "1")]
    pub position: u64,
    #[prost(uint64, tag = "2")]
    pub events: u64,
    /// The tree events folded in, in order, as envelopes of their type and schema version.
    #[prost(message, repeated, tag = "3")]
    pub tree_events: Vec<Envelope>,
    #[prost(message, repeated, tag = "4")]
    pub models: Vec<ModelPb>,
    #[prost(message, repeated, tag = "5")]
    pub reports: Vec<ReportPb>,
    #[prost(message, repeated, tag = "6")]
    pub seen: Vec<SeenPb>,
    /// The cells, so that loading need not derive them again.
    #[prost(message, repeated, tag = "7")]
    pub cells: Vec<CellPb>,
    /// The unassigned cells (`CellPb::source` set).
    #[prost(message, repeated, tag = "8")]
    pub unassigned: Vec<CellPb>,
    /// `FORMAT`: a snapshot of an older format is not loaded (the log is replayed).
    #[prost(uint32, tag = "9")]
    pub format: u32,
}

/// The snapshot format written: 2 added the unassigned cells.
pub const FORMAT: u32 = 2;

#[derive(Clone, PartialEq, Message)]
pub struct CellPb {
    #[prost(enumeration = "pc::Tree", tag = "1")]
    pub tree: i32,
    /// Empty for the nation.
    #[prost(string, tag = "2")]
    pub unit: String,
    #[prost(string, tag = "3")]
    pub period: String,
    /// `Cell::to_values`.
    #[prost(int64, repeated, tag = "4")]
    pub values: Vec<i64>,
    /// For an unassigned cell: the unit (of the other tree) it came from.
    #[prost(string, tag = "5")]
    pub source: String,
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

/// A state encoded for saving: the snapshot and its head (what it includes).
#[derive(Debug)]
pub struct Encoded {
    pub position: u64,
    pub data: Vec<u8>,
    pub head: Vec<u8>,
}

/// The snapshot of a state, with its head.
pub fn encode(state: &State) -> Encoded {
    let seen: Vec<SeenPb> = state
        .seen
        .iter()
        .map(|(source, s)| SeenPb {
            source: source.clone(),
            watermark: s.watermark,
            above: s.above.iter().copied().collect(),
            latest_time: state.latest_time.get(source).copied().unwrap_or(0),
        })
        .collect();
    let head = SnapshotPb { position: state.position, seen: seen.clone(), ..SnapshotPb::default() }.encode_to_vec();
    let mut pb = SnapshotPb {
        position: state.position,
        events: state.events,
        tree_events: state.tree_events.iter().map(recorded::tree_envelope).collect(),
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
                id: id.as_string(),
                unit: r.unit.as_str().to_owned(),
                tree: convert::tree_out(r.tree) as i32,
                period: r.period.to_string(),
                latest: Some(convert::figures_out(&r.latest)),
                approved: r.approved.as_ref().map(convert::figures_out),
                on_time: r.on_time,
            })
            .collect(),
        seen,
        cells: state
            .cells_with_codes()
            .into_iter()
            .map(|(t, u, p, c)| CellPb {
                tree: convert::tree_out(t) as i32,
                unit: u.map(|u| u.as_str().to_owned()).unwrap_or_default(),
                period: p.to_string(),
                values: c.to_values(),
                source: String::new(),
            })
            .collect(),
        unassigned: state
            .unassigned_with_codes()
            .into_iter()
            .map(|(t, u, p, source, c)| CellPb {
                tree: convert::tree_out(t) as i32,
                unit: u.map(|u| u.as_str().to_owned()).unwrap_or_default(),
                period: p.to_string(),
                values: c.to_values(),
                source: source.as_str().to_owned(),
            })
            .collect(),
        format: FORMAT,
    };
    // The maps behind these lists are hashed: sorted, the same state always encodes to
    // the same bytes, which is what two projections are compared by.
    pb.models.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    pb.reports.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    let cell_key = |c: &CellPb| (c.tree, c.unit.clone(), c.period.clone(), c.source.clone());
    pb.cells.sort_unstable_by_key(cell_key);
    pb.unassigned.sort_unstable_by_key(cell_key);
    let data = pb.encode_to_vec();
    Encoded { position: state.position, data, head }
}

/// Decodes only what says which events a snapshot holds (for `as_of`).
pub fn decode_seen(bytes: &[u8]) -> Result<Vec<SeenPb>, prost::DecodeError> {
    SnapshotPb::decode(bytes).map(|s| s.seen)
}

/// The state a snapshot holds.
pub fn decode(bytes: &[u8]) -> Result<State, String> {
    let pb = SnapshotPb::decode(bytes).map_err(|e| e.to_string())?;
    if pb.format != FORMAT {
        return Err(format!("the snapshot is of format {}, not {FORMAT}", pb.format));
    }
    let d = |e: DomainError| e.to_string();
    let mut state = State::default();
    state.position = pb.position;
    state.events = pb.events;
    for env in pb.tree_events {
        let event = recorded::tree_event(env).map_err(|e| format!("a tree event of the snapshot: {e}"))?;
        state.replay_tree_event(event);
    }
    state.models.reserve(pb.models.len());
    state.reports.reserve(pb.reports.len());
    state.cells.reserve(pb.cells.len());
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
            period: Period::parse_recorded("period", &r.period).map_err(d)?,
            latest: convert::figures_in(r.latest.as_ref()),
            approved: r.approved.as_ref().map(|f| convert::figures_in(Some(f))),
            on_time: r.on_time,
        };
        state.reports.insert(ReportId { unit: fact.unit.clone(), period: fact.period }, fact);
    }
    for s in pb.seen {
        state.seen.insert(s.source.clone(), Seen { watermark: s.watermark, above: s.above.into_iter().collect() });
        state.latest_time.insert(s.source, s.latest_time);
    }
    state.renumber();
    for c in pb.cells {
        let unit =
            if c.unit.is_empty() { None } else { Some(dvk_domain::UnitCode::parse("unit", &c.unit).map_err(d)?) };
        let cell = crate::projection::Cell::from_values(&c.values).ok_or("a stored cell has the wrong length")?;
        let tree = convert::tree_in("tree", c.tree).map_err(d)?;
        let period = Period::parse_recorded("period", &c.period).map_err(d)?;
        if !state.restore_cell(tree, unit.as_ref(), period, cell) {
            return Err(format!("a stored cell names {}, which is not in the trees", c.unit));
        }
    }
    for c in pb.unassigned {
        let unit =
            if c.unit.is_empty() { None } else { Some(dvk_domain::UnitCode::parse("unit", &c.unit).map_err(d)?) };
        let source = dvk_domain::UnitCode::parse("source", &c.source).map_err(d)?;
        let cell = crate::projection::Cell::from_values(&c.values).ok_or("a stored cell has the wrong length")?;
        let tree = convert::tree_in("tree", c.tree).map_err(d)?;
        let period = Period::parse_recorded("period", &c.period).map_err(d)?;
        if !state.restore_unassigned(tree, unit.as_ref(), period, &source, cell) {
            return Err(format!("a stored unassigned cell names {} or {source}, not in the trees", c.unit));
        }
    }
    Ok(state)
}

/// The name of what a ring snapshot includes (its positions seen).
pub fn ring_head_name(slot: u64) -> String {
    format!("{}-head", ring_name(slot))
}

/// Saves a snapshot in the ring slot after the newest, then its head (the positions it
/// includes): a crash between the two leaves the slot's old head, which no longer
/// matches and is ignored.
pub fn save(log: &EventLog, snapshot: Encoded) -> Result<(), LogError> {
    let slot = heads(log)?.iter().max_by_key(|(_, p)| *p).map_or(0, |(slot, _)| slot + 1) % RING;
    let Encoded { position, data, head } = snapshot;
    log.save_snapshot(&ring_name(slot), &Snapshot { position, data })?;
    log.save_snapshot(&ring_head_name(slot), &Snapshot { position, data: head })
}

/// The ring slots holding a snapshot, with the position each includes.
pub fn heads(log: &EventLog) -> Result<Vec<(u64, u64)>, LogError> {
    let mut out = Vec::new();
    for slot in 0..RING {
        if let Some(h) = log.load_snapshot(&ring_head_name(slot))? {
            out.push((slot, h.position));
        }
    }
    Ok(out)
}

/// The newest snapshot that `accept` takes (by what its head says it includes) and
/// that matches its head, decoded, with its position.
pub fn newest(log: &EventLog, accept: impl Fn(&[SeenPb]) -> bool) -> Result<Option<(State, u64)>, LogError> {
    let mut candidates = Vec::new();
    for slot in 0..RING {
        let Some(head) = log.load_snapshot(&ring_head_name(slot))? else { continue };
        let Ok(seen) = decode_seen(&head.data) else { continue };
        if accept(&seen) {
            candidates.push((head.position, slot));
        }
    }
    candidates.sort_unstable_by(|a, b| b.cmp(a));
    for (position, slot) in candidates {
        let Some(s) = log.load_snapshot(&ring_name(slot))? else { continue };
        if s.position != position {
            continue;
        }
        match decode(&s.data) {
            Ok(state) => return Ok(Some((state, position))),
            Err(e) => tracing::warn!(slot, error = %e, "a snapshot does not decode; trying an older one"),
        }
    }
    Ok(None)
}
