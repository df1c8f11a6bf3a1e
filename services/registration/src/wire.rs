//! The registration API's wire forms: requests parsed into checked domain values
//! (errors name the request's fields), and what the application answers mapped into
//! responses.

use dvk_codec::convert;
use dvk_domain::model::{Commendation, ModelCommand, ModelDetails, ModelId, ModelStatus, Recognition, Replication};
use dvk_domain::unit::{Expressed, Level, ReorgLink, Unit};
use dvk_domain::{Date, Period, Tree, UnitCode};
use dvk_proto::common::v1 as pc;
use dvk_proto::events::v1 as pe;
use dvk_proto::registration::v1 as pr;
use dvk_runtime::host::{page_size, today};
use tonic::Streaming;

use crate::app::{ImportOutcome, ModelView, Page, Reorganized, UnitView, Written};
use crate::error::{Error, invalid};
use crate::state::SOURCE;

/// Largest import accepted, in unit records.
const MAX_IMPORT: usize = 50_000;

fn position(p: u64) -> pc::Position {
    pc::Position { source: SOURCE.into(), position: p }
}

/// A date field that defaults to today.
fn optional_date(field: &str, d: Option<&pc::Date>) -> Result<Date, Error> {
    Ok(convert::date_in(field, d)?.unwrap_or_else(today))
}

// ---- requests ----

/// An import of units into a tree, as one client stream sent it.
#[derive(Debug)]
pub struct Import {
    pub request_id: String,
    pub tree: Tree,
    pub origin: String,
    /// The records with their place in the stream (errors name `units[i]`).
    pub units: Vec<(usize, Unit)>,
    /// What a retry must repeat: the whole stream without its request id.
    pub body: pr::ImportUnitsRequest,
}

/// Reads an import's client stream: the first message names the request id, the tree
/// and the origin; every message may carry units.
pub async fn import_units(mut stream: Streaming<pr::ImportUnitsRequest>) -> Result<Import, Error> {
    let mut first: Option<pr::ImportUnitsRequest> = None;
    let mut records = Vec::new();
    while let Some(msg) = stream.message().await? {
        records.extend(msg.units.iter().cloned());
        if records.len() > MAX_IMPORT {
            return Err(invalid("units", format!("an import holds at most {MAX_IMPORT} units")));
        }
        if first.is_none() {
            first = Some(pr::ImportUnitsRequest { units: Vec::new(), ..msg });
        }
    }
    let head = first.ok_or_else(|| invalid("request_id", "the stream sent no message"))?;
    let tree = convert::tree_in("tree", head.tree)?;
    let mut units = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        units.push((i, convert::unit_record_in(&format!("units[{i}]"), tree, r)?));
    }
    let body = pr::ImportUnitsRequest {
        request_id: String::new(),
        tree: head.tree,
        origin: head.origin.clone(),
        units: records,
    };
    Ok(Import { request_id: head.request_id, tree, origin: head.origin, units, body })
}

/// Links to add to the 2025 reorganisation mapping.
#[derive(Debug)]
pub struct Reorganize {
    pub request_id: String,
    pub effective: Date,
    pub links: Vec<ReorgLink>,
    pub origin: String,
    pub body: pr::ReorganizeUnitsRequest,
}

pub fn reorganize_units(req: pr::ReorganizeUnitsRequest) -> Result<Reorganize, Error> {
    if convert::tree_in("from_tree", req.from_tree)? != Tree::Pre2025 {
        return Err(invalid("from_tree", "the reorganisation maps the pre-2025 tree"));
    }
    if convert::tree_in("to_tree", req.to_tree)? != Tree::Y2025 {
        return Err(invalid("to_tree", "the reorganisation maps onto the 2025 tree"));
    }
    let effective = convert::date_required("effective_date", req.effective_date.as_ref())?;
    let links = req
        .links
        .iter()
        .enumerate()
        .map(|(i, l)| convert::reorg_link_in(&format!("links[{i}]"), l))
        .collect::<Result<_, _>>()?;
    let body = pr::ReorganizeUnitsRequest { request_id: String::new(), ..req.clone() };
    Ok(Reorganize { request_id: req.request_id, effective, links, origin: req.origin, body })
}

pub fn get_unit(req: &pr::GetUnitRequest) -> Result<(Tree, UnitCode), Error> {
    Ok((convert::tree_in("tree", req.tree)?, convert::unit_in("code", req.code.as_ref())?))
}

/// A page of units: the children of `parent` (None: the provinces), or every unit at
/// `level` below it.
#[derive(Debug)]
pub struct UnitsQuery {
    pub tree: Tree,
    pub size: usize,
    pub parent: Option<UnitCode>,
    /// The level and the page token, or why they are refused: answered once the parent
    /// is known to exist, as the listing has always been judged.
    pub level: Result<Option<Level>, Error>,
    /// The last code of the previous page.
    pub after: Result<Option<UnitCode>, Error>,
}

pub fn list_units(req: &pr::ListUnitsRequest) -> Result<UnitsQuery, Error> {
    let tree = convert::tree_in("tree", req.tree)?;
    let size = page_size(req.page_size)?;
    let parent = match req.parent.as_ref() {
        Some(p) if !p.code.is_empty() => Some(UnitCode::parse("parent", &p.code)?),
        _ => None,
    };
    let level = match req.level {
        0 => Ok(None),
        level => convert::level_in("level", level).map_err(Error::from).and_then(|level| {
            if !tree.has_level(level) || level == Level::Nation {
                return Err(invalid("level", format!("the {} tree has no {level:?} level", tree.name())));
            }
            Ok(Some(level))
        }),
    };
    let after = match req.page_token.as_str() {
        "" => Ok(None),
        token => UnitCode::parse("page_token", token).map(Some).map_err(Error::from),
    };
    Ok(UnitsQuery { tree, size, parent, level, after })
}

/// A new model's registration.
#[derive(Debug)]
pub struct Register {
    pub request_id: String,
    pub unit: UnitCode,
    pub registered_on: Date,
    pub details: ModelDetails,
    pub body: pr::RegisterModelRequest,
}

pub fn register_model(req: pr::RegisterModelRequest) -> Result<Register, Error> {
    let mut v = dvk_domain::error::Violations::new();
    let unit = v.check(convert::unit_in("unit", req.unit.as_ref()));
    let registered_on = v.check(convert::date_in("registered_on", req.registered_on.as_ref())).flatten();
    let details = v.check(convert::details_in(req.details.as_ref()));
    let (unit, details) = v.finish(|| (unit.expect("checked"), details.expect("checked")))?;
    let body = pr::RegisterModelRequest { request_id: String::new(), ..req.clone() };
    Ok(Register { request_id: req.request_id, unit, registered_on: registered_on.unwrap_or_else(today), details, body })
}

/// A change to an existing model: what it is, on which version, and the unit the
/// caller acts for (the recognising or awarding unit) besides the model's.
#[derive(Debug)]
pub struct ModelChange<B> {
    pub request_id: String,
    pub id: ModelId,
    pub expected_version: u64,
    pub acting: Option<UnitCode>,
    /// The change asked for, or why it cannot be (answered after the checks above).
    pub command: Result<ModelCommand, Error>,
    /// What a retry must repeat: the request without its request id.
    pub body: B,
}

/// The parts every model change request shares.
macro_rules! model_change {
    ($req:ident, $acting:expr, $command:expr) => {{
        let acting: Option<UnitCode> = $acting;
        let id = ModelId::parse("model_id", &$req.model_id)?;
        if $req.expected_version == 0 {
            return Err(invalid("expected_version", "is required: the model's current version"));
        }
        // Checked once the model is found, in scope and at the version expected, as a
        // change has always been judged.
        let command = (|| -> Result<ModelCommand, Error> { Ok($command) })();
        let body = Self_ { request_id: String::new(), ..$req.clone() };
        Ok(ModelChange {
            request_id: $req.request_id,
            id,
            expected_version: $req.expected_version,
            acting,
            command,
            body,
        })
    }};
}

pub fn amend_model(req: pr::AmendModelRequest) -> Result<ModelChange<pr::AmendModelRequest>, Error> {
    type Self_ = pr::AmendModelRequest;
    model_change!(req, None, {
        let details = convert::details_in(req.details.as_ref())?;
        ModelCommand::Amend { details, reason: req.reason.clone() }
    })
}

pub fn start_model(req: pr::StartModelRequest) -> Result<ModelChange<pr::StartModelRequest>, Error> {
    type Self_ = pr::StartModelRequest;
    model_change!(req, None, ModelCommand::Start { started_on: optional_date("started_on", req.started_on.as_ref())? })
}

pub fn recognize_model(req: pr::RecognizeModelRequest) -> Result<ModelChange<pr::RecognizeModelRequest>, Error> {
    type Self_ = pr::RecognizeModelRequest;
    let unit = convert::unit_in("recognizing_unit", req.recognizing_unit.as_ref())?;
    model_change!(req, Some(unit.clone()), {
        let level = convert::level_in("level", req.level)?;
        let decision = convert::decision_in("decision", req.decision.as_ref())?;
        ModelCommand::Recognize(Recognition { level, recognizing_unit: unit, decision, exemplary: req.exemplary })
    })
}

pub fn commend_model(req: pr::CommendModelRequest) -> Result<ModelChange<pr::CommendModelRequest>, Error> {
    type Self_ = pr::CommendModelRequest;
    let unit = convert::unit_in("awarding_unit", req.awarding_unit.as_ref())?;
    model_change!(req, Some(unit.clone()), {
        let form = convert::award_in("form", req.form)?;
        let level = convert::level_in("level", req.level)?;
        let decision = convert::decision_in("decision", req.decision.as_ref())?;
        ModelCommand::Commend(Commendation { form, level, awarding_unit: unit, decision })
    })
}

pub fn replicate_model(req: pr::ReplicateModelRequest) -> Result<ModelChange<pr::ReplicateModelRequest>, Error> {
    type Self_ = pr::ReplicateModelRequest;
    model_change!(req, None, {
        let target_unit = convert::unit_in("target_unit", req.target_unit.as_ref())?;
        let replicated_on = optional_date("replicated_on", req.replicated_on.as_ref())?;
        ModelCommand::Replicate(Replication { target_unit, replicated_on, note: req.note.clone() })
    })
}

pub fn retire_model(req: pr::RetireModelRequest) -> Result<ModelChange<pr::RetireModelRequest>, Error> {
    type Self_ = pr::RetireModelRequest;
    model_change!(req, None, {
        let retired_on = optional_date("retired_on", req.retired_on.as_ref())?;
        ModelCommand::Retire { reason: req.reason.clone(), retired_on }
    })
}

pub fn model_id(id: &str) -> Result<ModelId, Error> {
    Ok(ModelId::parse("model_id", id)?)
}

/// A page of a model's history: the model, the page size and the page token.
pub fn model_history(req: pr::GetModelHistoryRequest) -> Result<(ModelId, usize, String), Error> {
    Ok((model_id(&req.model_id)?, page_size(req.page_size)?, req.page_token))
}

/// A page of models, filtered.
#[derive(Debug)]
pub struct ModelsQuery {
    pub size: usize,
    pub unit: Option<UnitCode>,
    pub tree: Option<Tree>,
    pub field: Option<dvk_domain::model::Field>,
    pub status: Option<ModelStatus>,
    pub period: Option<Period>,
    /// The last model id of the previous page.
    pub after: String,
}

pub fn list_models(req: pr::ListModelsRequest) -> Result<ModelsQuery, Error> {
    let size = page_size(req.page_size)?;
    let unit = match req.unit.as_ref() {
        Some(u) if !u.code.is_empty() => Some(UnitCode::parse("unit", &u.code)?),
        _ => None,
    };
    let tree = if req.tree == 0 { None } else { Some(convert::tree_in("tree", req.tree)?) };
    let field = if req.field == 0 {
        None
    } else {
        Some(convert::field_in(req.field).ok_or_else(|| invalid("field", "is not one of the four fields"))?)
    };
    let status = match pr::ModelStatus::try_from(req.status) {
        Ok(pr::ModelStatus::Unspecified) => None,
        Ok(pr::ModelStatus::Registered) => Some(ModelStatus::Registered),
        Ok(pr::ModelStatus::Implementing) => Some(ModelStatus::Implementing),
        Ok(pr::ModelStatus::Recognized) => Some(ModelStatus::Recognized),
        Ok(pr::ModelStatus::Retired) => Some(ModelStatus::Retired),
        Err(_) => return Err(invalid("status", "is not a model status")),
    };
    let period = match req.period.as_ref() {
        Some(p) if !p.code.is_empty() => Some(Period::parse("period", &p.code)?),
        _ => None,
    };
    Ok(ModelsQuery { size, unit, tree, field, status, period, after: req.page_token })
}

// ---- responses ----

pub fn imported(o: ImportOutcome) -> pr::ImportUnitsResponse {
    pr::ImportUnitsResponse {
        units_received: o.received,
        units_added: o.added,
        units_unchanged: o.unchanged,
        position: Some(position(o.position)),
    }
}

pub fn reorganized(r: Reorganized) -> pr::ReorganizeUnitsResponse {
    pr::ReorganizeUnitsResponse {
        links_received: r.received,
        links_added: r.added,
        position: Some(position(r.position)),
    }
}

pub fn written(w: Written) -> pr::WriteModelResponse {
    pr::WriteModelResponse {
        model_id: w.id.as_str().to_owned(),
        version: w.version,
        position: Some(position(w.position)),
    }
}

pub fn unit(v: UnitView) -> pr::Unit {
    let links =
        |links: Vec<(ReorgLink, u32)>| links.iter().map(|(l, rank)| convert::reorg_link_out(l, *rank)).collect();
    let (mapping_status, counterpart) = match v.mapping {
        Some((status, Expressed::Exact(c) | Expressed::Allocated(c))) => (convert::mapping_status_out(status), Some(c)),
        Some((status, Expressed::Unassigned { province })) => (convert::mapping_status_out(status), province),
        None => (pr::MappingStatus::Unspecified, None),
    };
    pr::Unit {
        tree: convert::tree_out(v.tree) as i32,
        record: Some(convert::unit_record_out(&v.unit)),
        child_count: v.child_count,
        successors: links(v.successors),
        predecessors: links(v.predecessors),
        mapping_status: mapping_status as i32,
        counterpart: counterpart.as_ref().map(convert::unit_out),
    }
}

pub fn units(page: Page<UnitView, UnitCode>) -> pr::ListUnitsResponse {
    pr::ListUnitsResponse {
        units: page.items.into_iter().map(unit).collect(),
        next_page_token: page.next.map(|c| c.as_str().to_owned()).unwrap_or_default(),
        total_size: page.total as u32,
    }
}

pub fn model(v: ModelView) -> pr::Model {
    let (id, entry) = (v.id, v.entry);
    let m = entry.model.state().expect("listed models are registered");
    let status = match m.status {
        ModelStatus::Registered => pr::ModelStatus::Registered,
        ModelStatus::Implementing => pr::ModelStatus::Implementing,
        ModelStatus::Recognized => pr::ModelStatus::Recognized,
        ModelStatus::Retired => pr::ModelStatus::Retired,
    };
    let decision = convert::decision_out;
    pr::Model {
        model_id: id,
        unit: Some(convert::unit_out(&m.unit)),
        tree: convert::tree_out(m.tree) as i32,
        registered_on: Some(convert::date_out(m.registered_on)),
        details: Some(convert::details_out(&m.details)),
        status: status as i32,
        recognized_level: m.recognized_level().map_or(0, |l| convert::level_out(l) as i32),
        exemplary: m.exemplary(),
        recognitions: m
            .recognitions
            .iter()
            .map(|r| pr::Recognition {
                level: convert::level_out(r.level) as i32,
                recognizing_unit: Some(convert::unit_out(&r.recognizing_unit)),
                decision: Some(decision(&r.decision)),
                exemplary: r.exemplary,
            })
            .collect(),
        commendations: m
            .commendations
            .iter()
            .map(|c| pr::Commendation {
                form: convert::award_out(c.form) as i32,
                level: convert::level_out(c.level) as i32,
                awarding_unit: Some(convert::unit_out(&c.awarding_unit)),
                decision: Some(decision(&c.decision)),
            })
            .collect(),
        replications: m
            .replications
            .iter()
            .map(|r| pr::Replication {
                target_unit: Some(convert::unit_out(&r.target_unit)),
                replicated_on: Some(convert::date_out(r.replicated_on)),
                note: r.note.clone(),
            })
            .collect(),
        started_on: m.started_on.map(convert::date_out),
        retired_on: m.retired.as_ref().map(|(d, _)| convert::date_out(*d)),
        retire_reason: m.retired.as_ref().map(|(_, r)| r.clone()).unwrap_or_default(),
        version: entry.version,
        update_time: entry.updated,
    }
}

pub fn models(page: Page<ModelView, String>) -> pr::ListModelsResponse {
    pr::ListModelsResponse {
        models: page.items.into_iter().map(model).collect(),
        next_page_token: page.next.unwrap_or_default(),
        total_size: page.total as u32,
    }
}

pub fn history((events, next_page_token): (Vec<pe::Envelope>, String)) -> pr::GetModelHistoryResponse {
    pr::GetModelHistoryResponse { events, next_page_token }
}
