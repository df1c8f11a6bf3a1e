//! The gRPC adapter: parses requests into domain commands, names what each acts on
//! for the policy's scope check (`crate::POLICY`; the guard in front has authenticated
//! the caller and checked its role), decides against the read models, appends to the
//! log and answers once the read models include the write (so the caller's next read
//! sees it).

use dvk_codec::convert;
use dvk_domain::model::{
    Commendation, Model, ModelCommand, ModelContext, ModelId, ModelStatus, Recognition, Replication,
};
use dvk_domain::unit::{AdminTree, Expressed, Inserted, Level, LinkBasis, Unit};
use dvk_domain::{Aggregate, Date, DomainError, DomainEvent, Period, Tree, UnitCode};
use dvk_eventlog::ExpectedVersion;
use dvk_proto::common::v1 as pc;
use dvk_proto::events::v1 as pe;
use dvk_proto::registration::v1::{self as pr, registration_service_server::RegistrationService};
use dvk_runtime::host::{ChangeRequest, Core, Decision, page_size};
use dvk_runtime::{Access, Target, status};
use tonic::{Request, Response, Status, Streaming};

use crate::state::{ModelEntry, SOURCE, State};
use dvk_codec::StreamId;

/// Units per `UnitsImported` event: a full import is several events in one append.
const UNITS_PER_EVENT: usize = 1000;
/// Largest import accepted, in unit records.
const MAX_IMPORT: usize = 50_000;

use dvk_runtime::host::today;

pub struct Registration {
    pub(crate) core: Core<State>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("core", &self.core).finish()
    }
}

fn position(p: u64) -> pc::Position {
    pc::Position { source: SOURCE.into(), position: p }
}

fn invalid(field: &str, why: &str) -> Status {
    status::domain(DomainError::invalid(field, why))
}

/// The model `id`, if it exists.
fn model<'s>(state: &'s State, id: &ModelId) -> Result<&'s ModelEntry, Status> {
    state.models.get(id.as_str()).ok_or_else(|| Status::not_found(format!("model {} not found", id.as_str())))
}

/// Where a model lies: its unit, in its tree.
fn model_unit(entry: &ModelEntry) -> Target {
    let m = entry.model.state().expect("stored models are registered");
    Target::unit(m.tree, m.unit.clone())
}

/// The model `id`, if it exists and the caller may read it.
fn readable_model<'s>(state: &'s State, access: &Access, id: &ModelId) -> Result<&'s ModelEntry, Status> {
    let entry = model(state, id)?;
    access.check(&state.trees, &model_unit(entry))?;
    Ok(entry)
}

/// A date field that defaults to today.
fn optional_date(field: &str, d: Option<&pc::Date>) -> Result<Date, Status> {
    Ok(convert::date_in(field, d).map_err(status::domain)?.unwrap_or_else(today))
}

/// The unit a change request names that the caller acts for, with its field (the
/// recognising or awarding unit): the policy's scope holds for it as for the model.
type ActingUnit<R> = fn(&R) -> Option<(&'static str, Option<&pc::UnitCode>)>;

/// A change request that names no unit besides its model.
fn no_acting_unit<R>(_: &R) -> Option<(&'static str, Option<&pc::UnitCode>)> {
    None
}

impl Registration {
    /// One RPC that changes a model: before a retry may be answered, the caller's
    /// scope over the model and over the unit it acts for (`acting`); then the version,
    /// and `command` turns the request into a domain command.
    async fn model_rpc<R: ChangeRequest>(
        &self,
        acting: ActingUnit<R>,
        request: Request<R>,
        command: impl FnOnce(&R) -> Result<ModelCommand, Status> + Send,
    ) -> Result<Response<pr::WriteModelResponse>, Status> {
        let access = Access::of(&request)?;
        let req = request.into_inner();
        let acting = acting(&req).map(|(field, u)| convert::unit_in(field, u)).transpose().map_err(status::domain)?;
        let (request_id, model_id, expected_version) = req.target();
        let body = req.body();
        let id = ModelId::parse("model_id", model_id).map_err(status::domain)?;
        if expected_version == 0 {
            return Err(invalid("expected_version", "is required: the model's current version"));
        }
        // The model's unit, and the unit the caller acts for, in the model's tree.
        let target = |state: &State| -> Result<Target, Status> {
            let entry = model(state, &id)?;
            let tree = entry.model.state().expect("stored models are registered").tree;
            Ok(match acting {
                Some(unit) => model_unit(entry).and(tree, unit),
                None => model_unit(entry),
            })
        };
        let receipt = self
            .core
            .write(&access, request_id, &body, target, |state| {
                let entry = model(state, &id)?;
                if entry.version != expected_version {
                    return Err(Status::aborted(format!(
                        "model {model_id} is at version {}, not {expected_version}: read it again and retry",
                        entry.version
                    )));
                }
                let command = command(&req)?;
                let ctx = ModelContext { units: &state.trees, today: today() };
                let events = entry.model.handle(command, ctx).map_err(status::domain)?;
                Ok(Decision {
                    stream: StreamId::Model(id.clone()),
                    expected: ExpectedVersion::Exact(expected_version),
                    events: events.into_iter().map(DomainEvent::Model).collect(),
                })
            })
            .await?;
        Ok(Response::new(pr::WriteModelResponse {
            model_id: id.as_str().to_owned(),
            version: receipt.last_version,
            position: Some(position(receipt.last_source_position)),
        }))
    }

    fn model_out(id: &str, entry: &ModelEntry) -> pr::Model {
        let m = entry.model.state().expect("stored models are registered");
        let status = match m.status {
            ModelStatus::Registered => pr::ModelStatus::Registered,
            ModelStatus::Implementing => pr::ModelStatus::Implementing,
            ModelStatus::Recognized => pr::ModelStatus::Recognized,
            ModelStatus::Retired => pr::ModelStatus::Retired,
        };
        let decision = convert::decision_out;
        pr::Model {
            model_id: id.to_owned(),
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

    fn unit_out(state: &State, tree: Tree, code: &UnitCode) -> Option<pr::Unit> {
        let t = state.trees.get(tree);
        let unit = t.get(code)?;
        let (successors, predecessors) = match tree {
            Tree::Pre2025 => {
                (state.successors(code).iter().map(|(l, rank)| convert::reorg_link_out(l, *rank)).collect(), Vec::new())
            }
            Tree::Y2025 => {
                let links = state
                    .trees
                    .reorganization
                    .predecessors(code)
                    .iter()
                    .flat_map(|old| state.successors(old).into_iter().filter(|(l, _)| &l.new == code))
                    .map(|(l, rank)| convert::reorg_link_out(&l, rank))
                    .collect();
                (Vec::new(), links)
            }
        };
        let (mapping_status, counterpart) = match state.cross().mapping(&state.trees, tree, code) {
            Some((status, Expressed::Exact(c) | Expressed::Allocated(c))) => {
                (convert::mapping_status_out(status), Some(c))
            }
            Some((status, Expressed::Unassigned { province })) => (convert::mapping_status_out(status), province),
            None => (pr::MappingStatus::Unspecified, None),
        };
        Some(pr::Unit {
            tree: convert::tree_out(tree) as i32,
            record: Some(convert::unit_record_out(unit)),
            child_count: t.children(Some(code)).len() as u32,
            successors,
            predecessors,
            mapping_status: mapping_status as i32,
            counterpart: counterpart.as_ref().map(convert::unit_out),
        })
    }
}

/// Checks and orders an import: parents before children, every record valid.
fn plan_import(tree: Tree, current: &AdminTree, records: &[pe::UnitRecord]) -> Result<(Vec<Unit>, u64), Status> {
    let mut units = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let unit = convert::unit_record_in(&format!("units[{i}]"), tree, r).map_err(status::domain)?;
        units.push((i, unit));
    }
    units.sort_by(|a, b| (a.1.level, &a.1.code).cmp(&(b.1.level, &b.1.code)));
    let mut scratch = current.clone();
    let mut added = Vec::new();
    let mut unchanged = 0u64;
    for (i, unit) in units {
        match scratch.insert(unit.clone()) {
            Ok(Inserted::Added) => added.push(unit),
            Ok(Inserted::Unchanged) => unchanged += 1,
            Err(DomainError::Invalid(v)) => {
                let v: Vec<_> = v
                    .into_iter()
                    .map(|mut v| {
                        v.field = format!("units[{i}].{}", v.field);
                        v
                    })
                    .collect();
                return Err(status::invalid(&v));
            }
            Err(e) => return Err(status::domain(e)),
        }
    }
    Ok((added, unchanged))
}

#[tonic::async_trait]
impl RegistrationService for Registration {
    async fn import_units(
        &self,
        request: Request<Streaming<pr::ImportUnitsRequest>>,
    ) -> Result<Response<pr::ImportUnitsResponse>, Status> {
        let access = Access::of(&request)?;
        let mut stream = request.into_inner();
        let mut first: Option<pr::ImportUnitsRequest> = None;
        let mut records = Vec::new();
        while let Some(msg) = stream.message().await? {
            records.extend(msg.units.iter().cloned());
            if records.len() > MAX_IMPORT {
                return Err(invalid("units", &format!("an import holds at most {MAX_IMPORT} units")));
            }
            if first.is_none() {
                first = Some(pr::ImportUnitsRequest { units: Vec::new(), ..msg });
            }
        }
        let head = first.ok_or_else(|| invalid("request_id", "the stream sent no message"))?;
        let tree = convert::tree_in("tree", head.tree).map_err(status::domain)?;
        let received = records.len() as u64;
        let body = pr::ImportUnitsRequest {
            request_id: String::new(),
            tree: head.tree,
            origin: head.origin.clone(),
            units: records.clone(),
        };
        // A no-op (everything already there) answers without writing.
        {
            let state = self.core.state.read().await;
            let (added, unchanged) = plan_import(tree, state.trees.get(tree), &records)?;
            if added.is_empty() {
                return Ok(Response::new(pr::ImportUnitsResponse {
                    units_received: received,
                    units_added: 0,
                    units_unchanged: unchanged,
                    position: Some(position(state.position)),
                }));
            }
        }
        let mut counts = (0u64, 0u64);
        let receipt = self
            .core
            // The trees are managed whole: the rule names no unit to check.
            .write(
                &access,
                &head.request_id,
                &body,
                |_| Ok::<_, Status>(Target::none()),
                |state| {
                    let (added, unchanged) = plan_import(tree, state.trees.get(tree), &records)?;
                    counts = (added.len() as u64, unchanged);
                    let stream = StreamId::Units(tree);
                    let events = added
                        .chunks(UNITS_PER_EVENT)
                        .map(|c| DomainEvent::UnitsImported { tree, units: c.to_vec(), origin: head.origin.clone() })
                        .collect();
                    let expected = ExpectedVersion::Exact(state.version(&stream));
                    Ok(Decision { stream, expected, events })
                },
            )
            .await?;
        let (added, unchanged) = if receipt.deduplicated { (received, 0) } else { counts };
        Ok(Response::new(pr::ImportUnitsResponse {
            units_received: received,
            units_added: added,
            units_unchanged: unchanged,
            position: Some(position(receipt.last_source_position)),
        }))
    }

    async fn reorganize_units(
        &self,
        request: Request<pr::ReorganizeUnitsRequest>,
    ) -> Result<Response<pr::ReorganizeUnitsResponse>, Status> {
        let access = Access::of(&request)?;
        let req = request.into_inner();
        if convert::tree_in("from_tree", req.from_tree).map_err(status::domain)? != Tree::Pre2025 {
            return Err(invalid("from_tree", "the reorganisation maps the pre-2025 tree"));
        }
        if convert::tree_in("to_tree", req.to_tree).map_err(status::domain)? != Tree::Y2025 {
            return Err(invalid("to_tree", "the reorganisation maps onto the 2025 tree"));
        }
        let effective =
            convert::date_required("effective_date", req.effective_date.as_ref()).map_err(status::domain)?;
        let mut links = Vec::with_capacity(req.links.len());
        for (i, l) in req.links.iter().enumerate() {
            links.push(convert::reorg_link_in(&format!("links[{i}]"), l).map_err(status::domain)?);
        }
        let received = links.len() as u64;
        // A mapping already recorded in full answers without writing (a re-import).
        {
            let state = self.core.state.read().await;
            let mut scratch = state.trees.reorganization.clone();
            if links.iter().all(|l| scratch.add(l.clone()) == Inserted::Unchanged) {
                return Ok(Response::new(pr::ReorganizeUnitsResponse {
                    links_received: received,
                    links_added: 0,
                    position: Some(position(state.position)),
                }));
            }
        }
        let body = pr::ReorganizeUnitsRequest { request_id: String::new(), ..req.clone() };
        let mut added_count = 0u64;
        let receipt = self
            .core
            // The trees are managed whole: the rule names no unit to check.
            .write(
                &access,
                &req.request_id,
                &body,
                |_| Ok::<_, Status>(Target::none()),
                |state| {
                    let mut scratch = state.trees.reorganization.clone();
                    let mut added = Vec::new();
                    for (i, link) in links.into_iter().enumerate() {
                        if state.trees.y2025.get(&link.new).is_none() {
                            return Err(invalid(
                                &format!("links[{i}].new_code"),
                                &format!("{} is not a unit of the 2025 tree", link.new),
                            ));
                        }
                        // Old codes missing from the pre-2025 list are kept: the GSO
                        // mapping names units created between the list and the merger.
                        // An operator's own link, though, must name a unit there, or it
                        // would re-express nothing.
                        if link.basis != LinkBasis::Official && state.trees.pre2025.get(&link.old).is_none() {
                            return Err(invalid(
                                &format!("links[{i}].old_code"),
                                &format!("{} is not a unit of the pre-2025 tree", link.old),
                            ));
                        }
                        if scratch.add(link.clone()) == Inserted::Added {
                            let rank = scratch.successors(&link.old).len() as u32 - 1;
                            added.push((link, rank));
                        }
                    }
                    added_count = added.len() as u64;
                    if added.is_empty() {
                        return Err(Status::already_exists("every link of this mapping is already recorded"));
                    }
                    let events = added
                        .chunks(UNITS_PER_EVENT)
                        .map(|c| DomainEvent::UnitsReorganized {
                            effective: Some(effective),
                            links: c.to_vec(),
                            origin: req.origin.clone(),
                        })
                        .collect();
                    Ok(Decision {
                        stream: StreamId::Reorganization,
                        expected: ExpectedVersion::Exact(state.version(&StreamId::Reorganization)),
                        events,
                    })
                },
            )
            .await?;
        Ok(Response::new(pr::ReorganizeUnitsResponse {
            links_received: received,
            links_added: if receipt.deduplicated { received } else { added_count },
            position: Some(position(receipt.last_source_position)),
        }))
    }

    async fn get_unit(&self, request: Request<pr::GetUnitRequest>) -> Result<Response<pr::Unit>, Status> {
        let req = request.into_inner();
        let tree = convert::tree_in("tree", req.tree).map_err(status::domain)?;
        let code = convert::unit_in("code", req.code.as_ref()).map_err(status::domain)?;
        let state = self.core.state.read().await;
        Self::unit_out(&state, tree, &code)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("{code} is not a unit of the {} tree", tree.name())))
    }

    async fn list_units(
        &self,
        request: Request<pr::ListUnitsRequest>,
    ) -> Result<Response<pr::ListUnitsResponse>, Status> {
        let req = request.into_inner();
        let tree = convert::tree_in("tree", req.tree).map_err(status::domain)?;
        let size = page_size(req.page_size)?;
        let parent = match req.parent.as_ref() {
            Some(p) if !p.code.is_empty() => Some(UnitCode::parse("parent", &p.code).map_err(status::domain)?),
            _ => None,
        };
        let state = self.core.state.read().await;
        let t = state.trees.get(tree);
        if let Some(p) = &parent
            && t.get(p).is_none()
        {
            return Err(Status::not_found(format!("{p} is not a unit of the {} tree", tree.name())));
        }
        let codes: Vec<UnitCode> = if req.level == 0 {
            t.children(parent.as_ref()).to_vec()
        } else {
            let level = convert::level_in("level", req.level).map_err(status::domain)?;
            if !tree.has_level(level) || level == Level::Nation {
                return Err(invalid("level", &format!("the {} tree has no {level:?} level", tree.name())));
            }
            t.descendants_at(parent.as_ref(), level).into_iter().map(|u| u.code.clone()).collect::<Vec<_>>()
        };
        let mut codes = codes;
        codes.sort();
        let start = if req.page_token.is_empty() {
            0
        } else {
            let after = UnitCode::parse("page_token", &req.page_token).map_err(status::domain)?;
            codes.partition_point(|c| *c <= after)
        };
        let page: Vec<pr::Unit> =
            codes[start..].iter().take(size).filter_map(|c| Self::unit_out(&state, tree, c)).collect();
        let end = start + page.len();
        let next_page_token = if end < codes.len() { codes[end - 1].as_str().to_owned() } else { String::new() };
        Ok(Response::new(pr::ListUnitsResponse { units: page, next_page_token, total_size: codes.len() as u32 }))
    }

    async fn register_model(
        &self,
        request: Request<pr::RegisterModelRequest>,
    ) -> Result<Response<pr::WriteModelResponse>, Status> {
        let access = Access::of(&request)?;
        let req = request.into_inner();
        let unit = convert::unit_in("unit", req.unit.as_ref());
        let registered_on = convert::date_in("registered_on", req.registered_on.as_ref());
        let details = convert::details_in(req.details.as_ref());
        let mut v = dvk_domain::error::Violations::new();
        let unit = v.check(unit);
        let registered_on = v.check(registered_on).flatten().unwrap_or_else(today);
        let details = v.check(details);
        let (unit, details) =
            v.finish(|| (unit.expect("checked"), details.expect("checked"))).map_err(status::domain)?;
        let id = ModelId::parse("model_id", &uuid::Uuid::now_v7().to_string()).expect("a UUID is a model id");
        let body = pr::RegisterModelRequest { request_id: String::new(), ..req.clone() };
        let tree = Tree::in_force_on(registered_on);
        let target = |state: &State| -> Result<Target, Status> {
            // A unit the tree lacks is refused below, naming the field.
            Ok(match state.trees.get(tree).get(&unit) {
                Some(_) => Target::unit(tree, unit.clone()),
                None => Target::none(),
            })
        };
        let receipt = self
            .core
            .write(&access, &req.request_id, &body, target, |state| {
                let ctx = ModelContext { units: &state.trees, today: today() };
                let command = ModelCommand::Register { id: id.clone(), unit: unit.clone(), registered_on, details };
                let events = Model::default().handle(command, ctx).map_err(status::domain)?;
                Ok(Decision {
                    stream: StreamId::Model(id.clone()),
                    expected: ExpectedVersion::NoStream,
                    events: events.into_iter().map(DomainEvent::Model).collect(),
                })
            })
            .await?;
        let model_id = match StreamId::parse(&receipt.stream_id) {
            Some(StreamId::Model(id)) => id.as_str().to_owned(),
            _ => return Err(Status::internal("a registration was stored outside a model's stream")),
        };
        Ok(Response::new(pr::WriteModelResponse {
            model_id,
            version: receipt.last_version,
            position: Some(position(receipt.last_source_position)),
        }))
    }

    async fn amend_model(
        &self,
        request: Request<pr::AmendModelRequest>,
    ) -> Result<Response<pr::WriteModelResponse>, Status> {
        self.model_rpc(no_acting_unit, request, |req| {
            let details = convert::details_in(req.details.as_ref()).map_err(status::domain)?;
            Ok(ModelCommand::Amend { details, reason: req.reason.clone() })
        })
        .await
    }

    async fn start_model(
        &self,
        request: Request<pr::StartModelRequest>,
    ) -> Result<Response<pr::WriteModelResponse>, Status> {
        self.model_rpc(no_acting_unit, request, |req| {
            let started_on = optional_date("started_on", req.started_on.as_ref())?;
            Ok(ModelCommand::Start { started_on })
        })
        .await
    }

    async fn recognize_model(
        &self,
        request: Request<pr::RecognizeModelRequest>,
    ) -> Result<Response<pr::WriteModelResponse>, Status> {
        let acting: ActingUnit<pr::RecognizeModelRequest> =
            |req| Some(("recognizing_unit", req.recognizing_unit.as_ref()));
        self.model_rpc(acting, request, |req| {
            let level = convert::level_in("level", req.level).map_err(status::domain)?;
            let unit = convert::unit_in("recognizing_unit", req.recognizing_unit.as_ref()).map_err(status::domain)?;
            let decision = convert::decision_in("decision", req.decision.as_ref()).map_err(status::domain)?;
            Ok(ModelCommand::Recognize(Recognition {
                level,
                recognizing_unit: unit,
                decision,
                exemplary: req.exemplary,
            }))
        })
        .await
    }

    async fn commend_model(
        &self,
        request: Request<pr::CommendModelRequest>,
    ) -> Result<Response<pr::WriteModelResponse>, Status> {
        let acting: ActingUnit<pr::CommendModelRequest> = |req| Some(("awarding_unit", req.awarding_unit.as_ref()));
        self.model_rpc(acting, request, |req| {
            let form = convert::award_in("form", req.form).map_err(status::domain)?;
            let level = convert::level_in("level", req.level).map_err(status::domain)?;
            let unit = convert::unit_in("awarding_unit", req.awarding_unit.as_ref()).map_err(status::domain)?;
            let decision = convert::decision_in("decision", req.decision.as_ref()).map_err(status::domain)?;
            Ok(ModelCommand::Commend(Commendation { form, level, awarding_unit: unit, decision }))
        })
        .await
    }

    async fn replicate_model(
        &self,
        request: Request<pr::ReplicateModelRequest>,
    ) -> Result<Response<pr::WriteModelResponse>, Status> {
        self.model_rpc(no_acting_unit, request, |req| {
            let target_unit = convert::unit_in("target_unit", req.target_unit.as_ref()).map_err(status::domain)?;
            let replicated_on = optional_date("replicated_on", req.replicated_on.as_ref())?;
            Ok(ModelCommand::Replicate(Replication { target_unit, replicated_on, note: req.note.clone() }))
        })
        .await
    }

    async fn retire_model(
        &self,
        request: Request<pr::RetireModelRequest>,
    ) -> Result<Response<pr::WriteModelResponse>, Status> {
        self.model_rpc(no_acting_unit, request, |req| {
            let retired_on = optional_date("retired_on", req.retired_on.as_ref())?;
            Ok(ModelCommand::Retire { reason: req.reason.clone(), retired_on })
        })
        .await
    }

    async fn get_model(&self, request: Request<pr::GetModelRequest>) -> Result<Response<pr::Model>, Status> {
        let access = Access::of(&request)?;
        let req = request.into_inner();
        let id = ModelId::parse("model_id", &req.model_id).map_err(status::domain)?;
        let state = self.core.state.read().await;
        let entry = readable_model(&state, &access, &id)?;
        Ok(Response::new(Self::model_out(id.as_str(), entry)))
    }

    async fn list_models(
        &self,
        request: Request<pr::ListModelsRequest>,
    ) -> Result<Response<pr::ListModelsResponse>, Status> {
        let access = Access::of(&request)?;
        let req = request.into_inner();
        let size = page_size(req.page_size)?;
        let unit = match req.unit.as_ref() {
            Some(u) if !u.code.is_empty() => Some(UnitCode::parse("unit", &u.code).map_err(status::domain)?),
            _ => None,
        };
        let tree = if req.tree == 0 { None } else { Some(convert::tree_in("tree", req.tree).map_err(status::domain)?) };
        let field = if req.field == 0 {
            None
        } else {
            Some(convert::field_in(req.field).ok_or_else(|| invalid("field", "is not one of the four fields"))?)
        };
        let status_filter = match pr::ModelStatus::try_from(req.status) {
            Ok(pr::ModelStatus::Unspecified) => None,
            Ok(pr::ModelStatus::Registered) => Some(ModelStatus::Registered),
            Ok(pr::ModelStatus::Implementing) => Some(ModelStatus::Implementing),
            Ok(pr::ModelStatus::Recognized) => Some(ModelStatus::Recognized),
            Ok(pr::ModelStatus::Retired) => Some(ModelStatus::Retired),
            Err(_) => return Err(invalid("status", "is not a model status")),
        };
        let period = match req.period.as_ref() {
            Some(p) if !p.code.is_empty() => Some(Period::parse("period", &p.code).map_err(status::domain)?),
            _ => None,
        };
        let state = self.core.state.read().await;
        if let Some(u) = &unit {
            let t = tree.unwrap_or(Tree::Y2025);
            let in_some_tree = state.trees.get(t).get(u).is_some() || state.trees.get(Tree::Pre2025).get(u).is_some();
            if !in_some_tree {
                return Err(Status::not_found(format!("{u} is not a unit")));
            }
        }
        let matches = |m: &dvk_domain::model::ModelState| {
            tree.is_none_or(|t| m.tree == t)
                && field.is_none_or(|f| m.details.field == f)
                && status_filter.is_none_or(|s| m.status == s)
                && period.is_none_or(|p| p.contains_date(m.registered_on))
                && unit.as_ref().is_none_or(|u| state.trees.get(m.tree).is_within(u, &m.unit))
                && access.sees(&state.trees, m.tree, &m.unit)
        };
        // One pass: count every match (total_size) and keep the page after the token.
        let after = req.page_token.as_str();
        let mut models = Vec::new();
        let mut last = None;
        let mut more = false;
        let mut total = 0usize;
        for (id, entry) in &state.models {
            let Some(m) = entry.model.state() else { continue };
            if !matches(m) {
                continue;
            }
            total += 1;
            if !after.is_empty() && id.as_str() <= after {
                continue;
            }
            if models.len() == size {
                more = true;
            } else {
                models.push(Self::model_out(id, entry));
                last = Some(id.clone());
            }
        }
        Ok(Response::new(pr::ListModelsResponse {
            models,
            next_page_token: if more { last.unwrap_or_default() } else { String::new() },
            total_size: total as u32,
        }))
    }

    async fn get_model_history(
        &self,
        request: Request<pr::GetModelHistoryRequest>,
    ) -> Result<Response<pr::GetModelHistoryResponse>, Status> {
        let access = Access::of(&request)?;
        let req = request.into_inner();
        let id = ModelId::parse("model_id", &req.model_id).map_err(status::domain)?;
        let size = page_size(req.page_size)?;
        {
            let state = self.core.state.read().await;
            readable_model(&state, &access, &id)?;
        }
        let (events, next) = self.core.history(&StreamId::Model(id).to_string(), size, &req.page_token)?;
        Ok(Response::new(pr::GetModelHistoryResponse { events, next_page_token: next }))
    }
}
