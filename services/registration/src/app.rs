//! The registration service's application: the trees and the models, decided and read
//! against the read models. Every write names what it acts on for the policy's scope
//! check (`crate::POLICY`; the guard in front has authenticated the caller and checked
//! its role), decides, appends to the log and answers once the read models include
//! the write, so the caller's next read sees it.

use dvk_codec::StreamId;
use dvk_domain::model::{Model, ModelCommand, ModelContext, ModelId};
use dvk_domain::unit::{AdminTree, Expressed, Inserted, LinkBasis, MappingStatus, ReorgLink, Unit};
use dvk_domain::{Aggregate, DomainError, DomainEvent, Tree, UnitCode};
use dvk_eventlog::ExpectedVersion;
use dvk_proto::events::v1::Envelope;
use dvk_runtime::host::{Core, Decision, today};
use dvk_runtime::{Access, Target};
use prost::Message;

use crate::error::{Error, invalid};
use crate::state::{ModelEntry, State};
use crate::wire::{Import, ModelChange, ModelsQuery, Register, Reorganize, UnitsQuery};

/// Units (or links) per event: a full import is several events in one append.
const UNITS_PER_EVENT: usize = 1000;

/// A model written: its id, new version and the write's position.
#[derive(Debug)]
pub struct Written {
    pub id: ModelId,
    pub version: u64,
    pub position: u64,
}

#[derive(Debug)]
pub struct ImportOutcome {
    pub received: u64,
    pub added: u64,
    pub unchanged: u64,
    pub position: u64,
}

#[derive(Debug)]
pub struct Reorganized {
    pub received: u64,
    pub added: u64,
    pub position: u64,
}

/// A unit with its place in the reorganisation.
#[derive(Debug)]
pub struct UnitView {
    pub tree: Tree,
    pub unit: Unit,
    pub child_count: u32,
    /// Pre-2025 units: the new units it went into, with their ranks.
    pub successors: Vec<(ReorgLink, u32)>,
    /// 2025 units: the links from the old units that went into it.
    pub predecessors: Vec<(ReorgLink, u32)>,
    pub mapping: Option<(MappingStatus, Expressed)>,
}

/// One page of a list: its items, the key of its last item if more follow (the next
/// page's token), and how many items the whole list holds.
#[derive(Debug)]
pub struct Page<T, K> {
    pub items: Vec<T>,
    pub next: Option<K>,
    pub total: usize,
}

#[derive(Debug)]
pub struct ModelView {
    pub id: String,
    pub entry: ModelEntry,
}

#[derive(Clone)]
pub struct Registration {
    pub(crate) core: Core<State>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("core", &self.core).finish()
    }
}

/// The model `id`, if it exists.
fn model<'s>(state: &'s State, id: &ModelId) -> Result<&'s ModelEntry, Error> {
    state.models.get(id.as_str()).ok_or_else(|| Error::ModelNotFound(id.clone()))
}

/// Where a model lies: its unit, in its tree.
fn model_unit(entry: &ModelEntry) -> Target {
    let m = entry.model.state().expect("stored models are registered");
    Target::unit(m.tree, m.unit.clone())
}

/// The model `id`, if it exists and the caller may read it.
fn readable_model<'s>(state: &'s State, access: &Access, id: &ModelId) -> Result<&'s ModelEntry, Error> {
    let entry = model(state, id)?;
    access.check(&state.trees, &model_unit(entry))?;
    Ok(entry)
}

/// Checks and orders an import: parents before children, every record valid.
fn plan_import(current: &AdminTree, units: &[(usize, Unit)]) -> Result<(Vec<Unit>, u64), Error> {
    let mut units = units.to_vec();
    units.sort_by(|a, b| (a.1.level, &a.1.code).cmp(&(b.1.level, &b.1.code)));
    let mut scratch = current.clone();
    let mut added = Vec::new();
    let mut unchanged = 0u64;
    for (i, unit) in units {
        match scratch.insert(unit.clone()) {
            Ok(Inserted::Added) => added.push(unit),
            Ok(Inserted::Unchanged) => unchanged += 1,
            Err(DomainError::Invalid(v)) => {
                let v = v
                    .into_iter()
                    .map(|mut v| {
                        v.field = format!("units[{i}].{}", v.field);
                        v
                    })
                    .collect();
                return Err(DomainError::Invalid(v).into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((added, unchanged))
}

impl Registration {
    pub async fn import(&self, access: &Access, import: Import) -> Result<ImportOutcome, Error> {
        let Import { request_id, tree, origin, units, body } = import;
        let received = units.len() as u64;
        // A no-op (everything already there) answers without writing.
        // (Every unit already there as sent: nothing to plan, so the tree is not copied.)
        {
            let state = self.core.state.read().await;
            let current = state.trees.get(tree);
            if units.iter().all(|(_, u)| current.get(&u.code) == Some(u)) {
                return Ok(ImportOutcome { received, added: 0, unchanged: received, position: state.position });
            }
        }
        let mut counts = (0u64, 0u64);
        let receipt = self
            .core
            // The trees are managed whole: the rule names no unit to check.
            .write(
                access,
                &request_id,
                &body,
                |_| Ok(Target::none()),
                |state| -> Result<Decision, Error> {
                    let (added, unchanged) = plan_import(state.trees.get(tree), &units)?;
                    counts = (added.len() as u64, unchanged);
                    let stream = StreamId::Units(tree);
                    let events = added
                        .chunks(UNITS_PER_EVENT)
                        .map(|c| DomainEvent::UnitsImported { tree, units: c.to_vec(), origin: origin.clone() })
                        .collect();
                    let expected = ExpectedVersion::Exact(state.version(&stream));
                    Ok(Decision { stream, expected, events })
                },
            )
            .await?;
        let (added, unchanged) = if receipt.deduplicated { (received, 0) } else { counts };
        Ok(ImportOutcome { received, added, unchanged, position: receipt.last_source_position })
    }

    pub async fn reorganize(&self, access: &Access, r: Reorganize) -> Result<Reorganized, Error> {
        let Reorganize { request_id, effective, links, origin, body } = r;
        let received = links.len() as u64;
        // A mapping already recorded in full answers without writing (a re-import).
        {
            let state = self.core.state.read().await;
            let mapping = &state.trees.reorganization;
            if links.iter().all(|l| mapping.link(&l.old, &l.new).is_some()) {
                return Ok(Reorganized { received, added: 0, position: state.position });
            }
        }
        let mut added_count = 0u64;
        let receipt = self
            .core
            // The trees are managed whole: the rule names no unit to check.
            .write(
                access,
                &request_id,
                &body,
                |_| Ok(Target::none()),
                |state| -> Result<Decision, Error> {
                    let mut scratch = state.trees.reorganization.clone();
                    let mut added = Vec::new();
                    for (i, link) in links.into_iter().enumerate() {
                        if state.trees.y2025.get(&link.new).is_none() {
                            return Err(invalid(
                                &format!("links[{i}].new_code"),
                                format!("{} is not a unit of the 2025 tree", link.new),
                            ));
                        }
                        // Old codes missing from the pre-2025 list are kept: the GSO
                        // mapping names units created between the list and the merger.
                        // An operator's own link, though, must name a unit there, or it
                        // would re-express nothing.
                        if link.basis != LinkBasis::Official && state.trees.pre2025.get(&link.old).is_none() {
                            return Err(invalid(
                                &format!("links[{i}].old_code"),
                                format!("{} is not a unit of the pre-2025 tree", link.old),
                            ));
                        }
                        if scratch.add(link.clone()) == Inserted::Added {
                            let rank = scratch.successors(&link.old).len() as u32 - 1;
                            added.push((link, rank));
                        }
                    }
                    added_count = added.len() as u64;
                    if added.is_empty() {
                        return Err(Error::NothingNew);
                    }
                    let events = added
                        .chunks(UNITS_PER_EVENT)
                        .map(|c| DomainEvent::UnitsReorganized {
                            effective: Some(effective),
                            links: c.to_vec(),
                            origin: origin.clone(),
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
        let added = if receipt.deduplicated { received } else { added_count };
        Ok(Reorganized { received, added, position: receipt.last_source_position })
    }

    fn unit_view(state: &State, tree: Tree, code: &UnitCode) -> Option<UnitView> {
        let t = state.trees.get(tree);
        let unit = t.get(code)?.clone();
        let (successors, predecessors) = match tree {
            Tree::Pre2025 => (state.successors(code), Vec::new()),
            Tree::Y2025 => {
                let links = state
                    .trees
                    .reorganization
                    .predecessors(code)
                    .iter()
                    .flat_map(|old| state.successors(old).into_iter().filter(|(l, _)| &l.new == code))
                    .collect();
                (Vec::new(), links)
            }
        };
        Some(UnitView {
            tree,
            unit,
            child_count: t.children(Some(code)).len() as u32,
            successors,
            predecessors,
            mapping: state.cross().mapping(&state.trees, tree, code),
        })
    }

    pub async fn unit(&self, tree: Tree, code: UnitCode) -> Result<UnitView, Error> {
        let state = self.core.state.read().await;
        Self::unit_view(&state, tree, &code).ok_or(Error::UnitNotFound { tree, code })
    }

    pub async fn units(&self, q: UnitsQuery) -> Result<Page<UnitView, UnitCode>, Error> {
        let UnitsQuery { tree, size, parent, level, after } = q;
        let state = self.core.state.read().await;
        let t = state.trees.get(tree);
        if let Some(p) = &parent
            && t.get(p).is_none()
        {
            return Err(Error::UnitNotFound { tree, code: p.clone() });
        }
        let mut codes: Vec<UnitCode> = match level? {
            None => t.children(parent.as_ref()).to_vec(),
            Some(level) => t.descendants_at(parent.as_ref(), level).into_iter().map(|u| u.code.clone()).collect(),
        };
        codes.sort();
        let start = after?.map_or(0, |after| codes.partition_point(|c| *c <= after));
        let units: Vec<UnitView> =
            codes[start..].iter().take(size).filter_map(|c| Self::unit_view(&state, tree, c)).collect();
        let end = start + units.len();
        let next = if end < codes.len() { Some(codes[end - 1].clone()) } else { None };
        Ok(Page { items: units, next, total: codes.len() })
    }

    pub async fn register(&self, access: &Access, r: Register) -> Result<Written, Error> {
        let Register { request_id, unit, registered_on, details, body } = r;
        let id = ModelId::parse("model_id", &uuid::Uuid::now_v7().to_string()).expect("a UUID is a model id");
        let tree = Tree::in_force_on(registered_on);
        let target = |state: &State| -> Result<Target, Error> {
            // A unit the tree lacks is refused below, naming the field.
            Ok(match state.trees.get(tree).get(&unit) {
                Some(_) => Target::unit(tree, unit.clone()),
                None => Target::none(),
            })
        };
        let receipt = self
            .core
            .write(access, &request_id, &body, target, |state| -> Result<Decision, Error> {
                let ctx = ModelContext { units: &state.trees, today: today() };
                let command = ModelCommand::Register { id: id.clone(), unit: unit.clone(), registered_on, details };
                let events = Model::default().handle(command, ctx)?;
                Ok(Decision {
                    stream: StreamId::Model(id.clone()),
                    expected: ExpectedVersion::NoStream,
                    events: events.into_iter().map(DomainEvent::Model).collect(),
                })
            })
            .await?;
        // A retry is answered with the first attempt's model, not the id drawn now.
        let Some(StreamId::Model(id)) = StreamId::parse(&receipt.stream_id) else {
            return Err(Error::Misplaced);
        };
        Ok(Written { id, version: receipt.last_version, position: receipt.last_source_position })
    }

    /// Changes a model: before a retry may be answered, the caller's scope over the
    /// model and over the unit it acts for; then the version; then the model decides.
    pub async fn change_model<B: Message>(&self, access: &Access, change: ModelChange<B>) -> Result<Written, Error> {
        let ModelChange { request_id, id, expected_version, acting, command, body } = change;
        // The model's unit, and the unit the caller acts for, in the model's tree.
        let target = |state: &State| -> Result<Target, Error> {
            let entry = model(state, &id)?;
            let tree = entry.model.state().expect("stored models are registered").tree;
            Ok(match acting {
                Some(unit) => model_unit(entry).and(tree, unit),
                None => model_unit(entry),
            })
        };
        let receipt = self
            .core
            .write(access, &request_id, &body, target, |state| -> Result<Decision, Error> {
                let entry = model(state, &id)?;
                if entry.version != expected_version {
                    return Err(Error::StaleModel {
                        id: id.clone(),
                        actual: entry.version,
                        expected: expected_version,
                    });
                }
                let ctx = ModelContext { units: &state.trees, today: today() };
                let events = entry.model.handle(command?, ctx)?;
                Ok(Decision {
                    stream: StreamId::Model(id.clone()),
                    expected: ExpectedVersion::Exact(expected_version),
                    events: events.into_iter().map(DomainEvent::Model).collect(),
                })
            })
            .await?;
        Ok(Written { id, version: receipt.last_version, position: receipt.last_source_position })
    }

    pub async fn model(&self, access: &Access, id: ModelId) -> Result<ModelView, Error> {
        let state = self.core.state.read().await;
        let entry = readable_model(&state, access, &id)?.clone();
        Ok(ModelView { id: id.as_str().to_owned(), entry })
    }

    pub async fn models(&self, access: &Access, q: ModelsQuery) -> Result<Page<ModelView, String>, Error> {
        let ModelsQuery { size, unit, tree, field, status, period, after } = q;
        let state = self.core.state.read().await;
        if let Some(u) = &unit {
            let t = tree.unwrap_or(Tree::Y2025);
            let in_some_tree = state.trees.get(t).get(u).is_some() || state.trees.get(Tree::Pre2025).get(u).is_some();
            if !in_some_tree {
                return Err(Error::NotAUnit(u.clone()));
            }
        }
        let matches = |m: &dvk_domain::model::ModelState| {
            tree.is_none_or(|t| m.tree == t)
                && field.is_none_or(|f| m.details.field == f)
                && status.is_none_or(|s| m.status == s)
                && period.is_none_or(|p| p.contains_date(m.registered_on))
                && unit.as_ref().is_none_or(|u| state.trees.get(m.tree).is_within(u, &m.unit))
                && access.sees(&state.trees, m.tree, &m.unit)
        };
        // One pass: count every match (total) and keep the page after the token.
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
            if !after.is_empty() && id.as_str() <= after.as_str() {
                continue;
            }
            if models.len() == size {
                more = true;
            } else {
                models.push(ModelView { id: id.clone(), entry: entry.clone() });
                last = Some(id.clone());
            }
        }
        Ok(Page { items: models, next: if more { last } else { None }, total })
    }

    pub async fn model_history(
        &self,
        access: &Access,
        id: ModelId,
        size: usize,
        page_token: &str,
    ) -> Result<(Vec<Envelope>, String), Error> {
        {
            let state = self.core.state.read().await;
            readable_model(&state, access, &id)?;
        }
        Ok(self.core.history(&StreamId::Model(id).to_string(), size, page_token)?)
    }
}
