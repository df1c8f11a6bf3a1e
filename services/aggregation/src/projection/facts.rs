//! The facts of the projection: every model as its unit, tree and dated flows, every
//! report as its unit, period, tree and figures; how a model or report event changes
//! them, its old contribution to the cells taken out and the new one put in; and the
//! cells derived again from the facts when the trees change.

use dvk_domain::model::{Field, ModelEvent, ModelId};
use dvk_domain::report::{Figures, ReportEvent, ReportId};
use dvk_domain::unit::Level;
use dvk_domain::{Date, Period, Tree, UnitCode};

use super::State;
use super::cells::Cell;

/// What happened to a model, when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Registered(Field),
    Started,
    Recognized { level: Level, exemplary: bool },
    Commended,
    Replicated,
    Retired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFact {
    pub unit: UnitCode,
    pub tree: Tree,
    pub flows: Vec<(Date, Flow)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFact {
    pub unit: UnitCode,
    pub tree: Tree,
    pub period: Period,
    pub latest: Figures,
    pub approved: Option<Figures>,
    /// Whether the first revision came by the due date.
    pub on_time: bool,
}

impl ReportFact {
    fn counted(&self) -> Counted {
        Counted { latest: self.latest, approved: self.approved, on_time: self.on_time }
    }
}

/// What a report adds to the cells it counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counted {
    pub(super) latest: Figures,
    pub(super) approved: Option<Figures>,
    pub(super) on_time: bool,
}

impl State {
    /// Derives every cell again from the facts (after the trees changed).
    pub(super) fn rederive(&mut self) {
        self.renumber();
        self.cells.clear();
        self.unassigned.clear();
        let models = std::mem::take(&mut self.models);
        for m in models.values() {
            let changes: Vec<(Date, Flow, i64)> = m.flows.iter().map(|(d, f)| (*d, *f, 1)).collect();
            self.count_flows(m.tree, &m.unit, &changes);
        }
        self.models = models;
        let reports = std::mem::take(&mut self.reports);
        for r in reports.values() {
            self.count_report(r.tree, &r.unit, r.period, None, r.counted());
        }
        self.reports = reports;
        self.cells.retain(|_, c| *c != Cell::default());
        self.unassigned.retain(|_, by_source| {
            by_source.retain(|_, c| *c != Cell::default());
            !by_source.is_empty()
        });
    }

    pub(super) fn model_event(&mut self, model: &ModelId, event: &ModelEvent) {
        let id = model.as_str();
        let changes = match (self.models.get_mut(id), ModelChange::of(event)) {
            (None, ModelChange::Registered { unit, tree, on, field }) => {
                let flow = Flow::Registered(field);
                self.models.insert(id.to_owned(), ModelFact { unit, tree, flows: vec![(on, flow)] });
                vec![(on, flow, 1)]
            }
            (None, _) | (Some(_), ModelChange::Registered { .. }) => return,
            (Some(fact), ModelChange::Field(field)) => {
                let mut changes = Vec::new();
                for (date, flow) in &mut fact.flows {
                    if let Flow::Registered(old) = *flow
                        && old != field
                    {
                        changes.push((*date, *flow, -1));
                        *flow = Flow::Registered(field);
                        changes.push((*date, *flow, 1));
                    }
                }
                changes
            }
            (Some(fact), ModelChange::Flow(date, flow)) => {
                fact.flows.push((date, flow));
                vec![(date, flow, 1)]
            }
        };
        if changes.is_empty() {
            return;
        }
        let fact = &self.models[id];
        let (tree, unit) = (fact.tree, fact.unit.clone());
        self.count_flows(tree, &unit, &changes);
    }

    pub(super) fn report_event(&mut self, report: &ReportId, event: &ReportEvent) {
        let (fact, old) = match (self.reports.get_mut(report), event) {
            (None, ReportEvent::Submitted { id, tree, revision }) => {
                let fact = ReportFact {
                    unit: id.unit.clone(),
                    tree: *tree,
                    period: id.period,
                    latest: revision.figures,
                    approved: None,
                    on_time: revision.on_time,
                };
                (&*self.reports.entry(report.clone()).or_insert(fact), None)
            }
            (None, _) => return,
            (Some(fact), event) => {
                let old = fact.counted();
                match event {
                    ReportEvent::Submitted { .. } | ReportEvent::Returned { .. } => return,
                    ReportEvent::Amended { revision } => fact.latest = revision.figures,
                    // Only the latest revision can be approved, and an approved report is
                    // not amended until reopened: the approved figures are the latest.
                    ReportEvent::Approved { .. } => fact.approved = Some(fact.latest),
                    ReportEvent::Reopened { .. } => fact.approved = None,
                }
                if fact.counted() == old {
                    return;
                }
                (&*fact, Some(old))
            }
        };
        let (tree, unit, period, new) = (fact.tree, fact.unit.clone(), fact.period, fact.counted());
        self.count_report(tree, &unit, period, old, new);
    }
}

/// What a model event changes in the projection: the roll-ups need the unit, the
/// dates, the levels and the field, nothing else.
#[derive(Debug, Clone)]
enum ModelChange {
    Registered { unit: UnitCode, tree: Tree, on: Date, field: Field },
    Field(Field),
    Flow(Date, Flow),
}

impl ModelChange {
    fn of(event: &ModelEvent) -> ModelChange {
        match event {
            ModelEvent::Registered { unit, tree, registered_on, details, .. } => {
                ModelChange::Registered { unit: unit.clone(), tree: *tree, on: *registered_on, field: details.field }
            }
            ModelEvent::Amended { details, .. } => ModelChange::Field(details.field),
            ModelEvent::Started { started_on } => ModelChange::Flow(*started_on, Flow::Started),
            ModelEvent::Recognized(r) => {
                ModelChange::Flow(r.decision.date, Flow::Recognized { level: r.level, exemplary: r.exemplary })
            }
            ModelEvent::Commended(c) => ModelChange::Flow(c.decision.date, Flow::Commended),
            ModelEvent::Replicated(r) => ModelChange::Flow(r.replicated_on, Flow::Replicated),
            ModelEvent::Retired { retired_on, .. } => ModelChange::Flow(*retired_on, Flow::Retired),
        }
    }
}
