//! The roll-up projection: what registration and reporting recorded, folded into
//! cells per (tree, unit or nation, period).
//!
//! - **Facts.** Every model is kept as its unit, tree and dated flows (registered,
//!   started, recognised at a level, exemplary, commended, replicated, retired); every
//!   report as its unit, period, tree, latest figures and approved figures.
//! - **Cells.** A fact contributes to its unit's cell and every ancestor's, and the
//!   nation's, in both trees: in its own tree directly, in the other through the
//!   reorganisation mapping (`express`). When a fact changes, its old contribution is
//!   taken out and the new one put in: an event at a commune updates the commune, its
//!   ancestors and the nation, nothing else.
//! - **Model counts** are flows: what happened in the period, by the date the event
//!   names (registration date, start date, decision date, replication date, retirement
//!   date); they are kept per half-year and summed over a year or stage when asked.
//!   **Report figures** are kept per period reported (a year report is not the sum of
//!   its halves).
//! - **Unassigned.** A fact at a unit that has no counterpart in the other tree (a
//!   commune the conversion table never names, a new commune none of whose
//!   predecessors is in the old list) is kept there as *unassigned*, per source unit,
//!   at the counterpart of its province and at the nation: never in the other tree's
//!   cells, never dropped. So nation(A) = nation(B) + unassigned(B).
//! - **Trees arriving late.** A fact whose unit is not yet known contributes nothing;
//!   whenever the trees or the mapping change, every cell is derived again from the
//!   facts. So the cells are always the same function of (facts, trees), whatever
//!   order the two sources' events arrived in, and a replay gives the same cells.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use dvk_codec::{Recorded, StreamId, Unreadable};
use dvk_domain::model::{Field, ModelEvent, ModelId};
use dvk_domain::period::Half;
use dvk_domain::report::{Figure, Figures, ReportEvent};
use dvk_domain::unit::{CrossTree, Expressed, Level, Trees};
use dvk_domain::{Date, DomainEvent, Period, Tree, UnitCode};

pub const TREES: [Tree; 2] = [Tree::Pre2025, Tree::Y2025];

/// A unit's number in the projection (codes are interned: cells are keyed by numbers).
pub type UnitId = u32;
/// The nation's number.
pub const NATION: UnitId = u32::MAX;

/// A roll-up's place: a unit of a tree (or the nation) and a period.
pub type CellKey = (Tree, UnitId, Period);

/// Where a contribution at one unit lands in one tree: the unit expressed in that tree,
/// its ancestors and the nation; and whether the allocation rule placed it there. For
/// a unit without a counterpart in that tree, `unassigned_from` is the unit's own
/// number and `units` are where it is reported as unassigned (the counterpart of its
/// province, if any, and the nation).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    tree: Tree,
    units: Vec<UnitId>,
    allocated: bool,
    unassigned_from: Option<UnitId>,
}

/// Contributions without a counterpart, at one (tree, unit or nation, period): per
/// source unit (a unit of the other tree).
pub type UnassignedCells = BTreeMap<UnitId, Cell>;

/// The cell a target's contribution goes to.
fn cell_at<'a>(
    cells: &'a mut FastMap<CellKey, Cell>,
    unassigned: &'a mut FastMap<CellKey, UnassignedCells>,
    t: &Target,
    unit: UnitId,
    period: Period,
) -> &'a mut Cell {
    match t.unassigned_from {
        None => cells.entry((t.tree, unit, period)).or_default(),
        Some(source) => unassigned.entry((t.tree, unit, period)).or_default().entry(source).or_default(),
    }
}

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
struct Counted {
    latest: Figures,
    approved: Option<Figures>,
    on_time: bool,
}

/// Model counts of a roll-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelCounts {
    pub registered: i64,
    pub implementing: i64,
    /// Recognitions by level: commune, district, province, nation.
    pub recognized_by_level: [i64; 4],
    pub exemplary: i64,
    pub commended: i64,
    pub replicated: i64,
    pub retired: i64,
    /// Registrations by field, in `Field` order.
    pub by_field: [i64; 4],
}

impl ModelCounts {
    pub fn recognized(&self) -> i64 {
        self.recognized_by_level.iter().sum()
    }

    pub fn add(&mut self, o: &ModelCounts) {
        self.registered += o.registered;
        self.implementing += o.implementing;
        for i in 0..4 {
            self.recognized_by_level[i] += o.recognized_by_level[i];
            self.by_field[i] += o.by_field[i];
        }
        self.exemplary += o.exemplary;
        self.commended += o.commended;
        self.replicated += o.replicated;
        self.retired += o.retired;
    }

    fn count(&mut self, flow: Flow, sign: i64) {
        match flow {
            Flow::Registered(field) => {
                self.registered += sign;
                self.by_field[field_index(field)] += sign;
            }
            Flow::Started => self.implementing += sign,
            Flow::Recognized { level, exemplary } => {
                self.recognized_by_level[level_index(level)] += sign;
                if exemplary {
                    self.exemplary += sign;
                }
            }
            Flow::Commended => self.commended += sign,
            Flow::Replicated => self.replicated += sign,
            Flow::Retired => self.retired += sign,
        }
    }
}

pub fn field_index(f: Field) -> usize {
    match f {
        Field::Economy => 0,
        Field::CultureSociety => 1,
        Field::DefenceSecurity => 2,
        Field::PoliticalSystem => 3,
    }
}

pub fn level_index(l: Level) -> usize {
    match l {
        Level::Commune => 0,
        Level::District => 1,
        Level::Province => 2,
        Level::Nation => 3,
    }
}

/// One roll-up cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cell {
    /// Model flows (kept on half-year cells only).
    pub models: ModelCounts,
    /// Model flows placed here by the allocation rule.
    pub models_allocated: i64,
    /// Sums of the latest revision of every report (submitted, returned, approved...).
    pub all: Figures,
    pub all_reports: i64,
    pub all_allocated: i64,
    /// Sums of approved revisions.
    pub approved: Figures,
    pub approved_reports: i64,
    pub approved_allocated: i64,
    /// Reports submitted by the due date (first revision).
    pub on_time: i64,
}

/// Where the latest revisions' figures stand among a cell's stored values, and the
/// approved ones (each followed by their report counts).
const ALL_FIGURES: std::ops::Range<usize> = 15..15 + Figure::COUNT;
const APPROVED_FIGURES: std::ops::Range<usize> = ALL_FIGURES.end + 2..ALL_FIGURES.end + 2 + Figure::COUNT;

/// The number of values a cell is stored as (42 with eleven figures).
pub const CELL_VALUES: usize = APPROVED_FIGURES.end + 3;

impl Cell {
    /// The cell as a fixed sequence of numbers (its snapshot form).
    pub fn to_values(&self) -> Vec<i64> {
        let m = &self.models;
        let mut v = Vec::with_capacity(CELL_VALUES);
        v.extend([m.registered, m.implementing]);
        v.extend(m.recognized_by_level);
        v.extend([m.exemplary, m.commended, m.replicated, m.retired]);
        v.extend(m.by_field);
        v.push(self.models_allocated);
        v.extend(self.all.values());
        v.extend([self.all_reports, self.all_allocated]);
        v.extend(self.approved.values());
        v.extend([self.approved_reports, self.approved_allocated, self.on_time]);
        v
    }

    pub fn from_values(v: &[i64]) -> Option<Cell> {
        if v.len() != CELL_VALUES {
            return None;
        }
        Some(Cell {
            models: ModelCounts {
                registered: v[0],
                implementing: v[1],
                recognized_by_level: [v[2], v[3], v[4], v[5]],
                exemplary: v[6],
                commended: v[7],
                replicated: v[8],
                retired: v[9],
                by_field: [v[10], v[11], v[12], v[13]],
            },
            models_allocated: v[14],
            all: Figures::from_slice(&v[ALL_FIGURES])?,
            all_reports: v[ALL_FIGURES.end],
            all_allocated: v[ALL_FIGURES.end + 1],
            approved: Figures::from_slice(&v[APPROVED_FIGURES])?,
            approved_reports: v[APPROVED_FIGURES.end],
            approved_allocated: v[APPROVED_FIGURES.end + 1],
            on_time: v[APPROVED_FIGURES.end + 2],
        })
    }
}

/// Which positions of a source the projection has folded in: every position ≤
/// `watermark`, and the early ones above it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub watermark: u64,
    pub above: BTreeSet<u64>,
}

impl Seen {
    pub fn insert(&mut self, position: u64) {
        if position <= self.watermark {
            return;
        }
        if position == self.watermark + 1 && self.above.is_empty() {
            // In order, as a partition delivers: nothing to join up.
            self.watermark = position;
            return;
        }
        self.above.insert(position);
        while self.above.remove(&(self.watermark + 1)) {
            self.watermark += 1;
        }
    }

    /// Whether every position up to `position` has been seen: what a read-your-writes
    /// token asks for (a caller's earlier writes may travel in other partitions and
    /// arrive after its last one).
    pub fn reached(&self, position: u64) -> bool {
        position <= self.watermark
    }
}

/// The maps the fold looks up for every event: keyed by the projection's own
/// numbers and the codes of the loaded trees, so a fast hash (foldhash, seeded per
/// process) in place of SipHash.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

fn tree_slot(tree: Tree) -> usize {
    match tree {
        Tree::Pre2025 => 0,
        Tree::Y2025 => 1,
    }
}

/// The projection's state: trees, facts, cells, and what has been folded in.
#[derive(Debug, Default)]
pub struct State {
    pub trees: Trees,
    /// The tree events folded in (snapshots carry them).
    pub tree_events: Vec<DomainEvent>,
    cross: CrossTree,
    /// Facts by model id and by report stream (hashed: looked up once per event).
    pub models: FastMap<String, ModelFact>,
    pub reports: FastMap<String, ReportFact>,
    pub cells: FastMap<CellKey, Cell>,
    /// Contributions of units without a counterpart in the cell's tree.
    pub unassigned: FastMap<CellKey, UnassignedCells>,
    /// Unit codes of both trees and their numbers, assigned in code order whenever
    /// the trees change (so two projections of the same trees number alike).
    ids: FastMap<UnitCode, UnitId>,
    /// The codes by number.
    codes: Vec<UnitCode>,
    /// Where a contribution at a unit lands, per tree it is recorded in (see
    /// `tree_slot`); emptied when the trees change.
    targets: [FastMap<UnitCode, Arc<Vec<Target>>>; 2],
    /// Per source, the source positions folded in (read-your-writes).
    pub seen: BTreeMap<String, Seen>,
    /// Per source, the highest `recorded_at` (seconds) folded in.
    pub latest_time: BTreeMap<String, i64>,
    /// The last log position folded in.
    pub position: u64,
    /// Events folded in (for progress reports).
    pub events: u64,
}

impl PartialEq for State {
    /// Two projections are equal when they encode to the same snapshot bytes: the same
    /// trees, facts, cells, unassigned cells, positions seen and position.
    fn eq(&self, o: &Self) -> bool {
        crate::snapshot::encode(self).data == crate::snapshot::encode(o).data
    }
}

/// The half-years a period spans (model flows are kept per half-year).
pub fn halves(period: Period) -> Vec<Period> {
    let years = match period {
        Period::Half { .. } => return vec![period],
        Period::Year(year) => year..=year,
        Period::Stage { first, last } => first..=last,
    };
    years.flat_map(|year| [Half::H1, Half::H2].map(|half| Period::Half { year, half })).collect()
}

/// The half-year a date falls in.
pub fn half_of(d: Date) -> Period {
    let half = if d.month() <= 6 { Half::H1 } else { Half::H2 };
    Period::Half { year: d.year() as u16, half }
}

impl State {
    /// Where `unit` of `from` stands in `to` (see `CrossTree::express` and
    /// docs/trees.md for the rules).
    pub fn express(&self, from: Tree, unit: &UnitCode, to: Tree) -> Option<Expressed> {
        self.cross.express(&self.trees, from, unit, to)
    }

    /// The code of a unit number.
    pub fn code_of(&self, id: UnitId) -> Option<&UnitCode> {
        self.codes.get(id as usize)
    }

    /// The number of a unit code, if it is a unit of either tree.
    pub fn unit_id(&self, code: &UnitCode) -> Option<UnitId> {
        self.ids.get(code).copied()
    }

    /// Where a contribution at `unit` of `from` lands, in both trees (cached).
    fn targets(&mut self, from: Tree, unit: &UnitCode) -> Arc<Vec<Target>> {
        if let Some(t) = self.targets[tree_slot(from)].get(unit) {
            return t.clone();
        }
        let mut out = Vec::new();
        for tree in TREES {
            let Some(expressed) = self.express(from, unit, tree) else { continue };
            let t = self.trees.get(tree);
            let mut units: Vec<UnitId> = Vec::with_capacity(4);
            let allocated = matches!(expressed, Expressed::Allocated(_));
            let target = match expressed {
                Expressed::Exact(code) | Expressed::Allocated(code) => {
                    units.extend(self.ids.get(&code).copied());
                    units.extend(t.ancestors(&code).filter_map(|u| self.ids.get(&u.code).copied()));
                    units.push(NATION);
                    Target { tree, units, allocated, unassigned_from: None }
                }
                Expressed::Unassigned { province } => {
                    let Some(source) = self.ids.get(unit).copied() else { continue };
                    units.extend(province.and_then(|p| self.ids.get(&p).copied()));
                    units.push(NATION);
                    Target { tree, units, allocated: false, unassigned_from: Some(source) }
                }
            };
            out.push(target);
        }
        let out = Arc::new(out);
        self.targets[tree_slot(from)].insert(unit.clone(), out.clone());
        out
    }

    /// Counts `changes` (date, flow, ±1) of a model at `unit` of `tree`.
    fn count_flows(&mut self, tree: Tree, unit: &UnitCode, changes: &[(Date, Flow, i64)]) {
        let targets = self.targets(tree, unit);
        for t in targets.iter() {
            for (date, flow, sign) in changes {
                let half = half_of(*date);
                for u in &t.units {
                    let cell = cell_at(&mut self.cells, &mut self.unassigned, t, *u, half);
                    cell.models.count(*flow, *sign);
                    if t.allocated {
                        cell.models_allocated += sign;
                    }
                }
            }
        }
    }

    /// Replaces a report's contribution `old` by `new` at `unit` of `tree` for `period`.
    fn count_report(&mut self, tree: Tree, unit: &UnitCode, period: Period, old: Option<Counted>, new: Counted) {
        let targets = self.targets(tree, unit);
        for t in targets.iter() {
            for u in &t.units {
                let cell = cell_at(&mut self.cells, &mut self.unassigned, t, *u, period);
                for (fact, sign) in old.map(|o| (o, -1)).into_iter().chain([(new, 1)]) {
                    cell.all.add(&fact.latest, sign);
                    cell.all_reports += sign;
                    cell.on_time += sign * i64::from(fact.on_time);
                    if t.allocated {
                        cell.all_allocated += sign;
                    }
                    if let Some(a) = &fact.approved {
                        cell.approved.add(a, sign);
                        cell.approved_reports += sign;
                        if t.allocated {
                            cell.approved_allocated += sign;
                        }
                    }
                }
            }
        }
    }

    /// Folds a tree event into the trees; false if the event is not one.
    fn fold_tree_event(&mut self, position: u64, event: &DomainEvent) -> bool {
        let mut problems = Vec::new();
        let changed = self.trees.apply(event, &mut problems).is_some();
        for problem in problems {
            tracing::error!(position, "{problem}");
        }
        changed
    }

    /// Folds a stored tree event back in (loading a snapshot); cells are left alone.
    pub fn replay_tree_event(&mut self, event: DomainEvent) {
        if self.fold_tree_event(0, &event) {
            self.tree_events.push(event);
        }
    }

    /// The cell at `unit` (None: the nation) of `tree` for `period`.
    pub fn cell(&self, tree: Tree, unit: Option<&UnitCode>, period: Period) -> Option<&Cell> {
        let id = match unit {
            None => NATION,
            Some(u) => self.unit_id(u)?,
        };
        self.cells.get(&(tree, id, period))
    }

    /// Every cell with its unit's code (None: the nation).
    pub fn cells_with_codes(&self) -> Vec<(Tree, Option<&UnitCode>, Period, &Cell)> {
        let mut codes: Vec<Option<&UnitCode>> = vec![None; self.ids.len()];
        for (c, i) in &self.ids {
            codes[*i as usize] = Some(c);
        }
        self.cells
            .iter()
            .filter_map(|((t, u, p), c)| {
                let code = if *u == NATION { None } else { Some(codes.get(*u as usize).copied().flatten()?) };
                Some((*t, code, *p, c))
            })
            .collect()
    }

    /// Puts a stored cell back (loading a snapshot, after `renumber`); false if its
    /// unit is not in the trees.
    pub fn restore_cell(&mut self, tree: Tree, unit: Option<&UnitCode>, period: Period, cell: Cell) -> bool {
        let id = match unit {
            None => NATION,
            Some(u) => match self.unit_id(u) {
                Some(id) => id,
                None => return false,
            },
        };
        self.cells.insert((tree, id, period), cell);
        true
    }

    /// Numbers the units of the trees and derives the province mapping (after the
    /// trees changed); the cells are left alone.
    pub fn renumber(&mut self) {
        self.cross = CrossTree::build(&self.trees);
        self.ids.clear();
        self.codes.clear();
        self.targets.iter_mut().for_each(FastMap::clear);
        for tree in TREES {
            for level in [Level::Province, Level::District, Level::Commune] {
                for u in self.trees.get(tree).descendants_at(None, level) {
                    let next = self.ids.len() as UnitId;
                    if let std::collections::hash_map::Entry::Vacant(e) = self.ids.entry(u.code.clone()) {
                        e.insert(next);
                        self.codes.push(u.code.clone());
                    }
                }
            }
        }
    }

    /// Puts a stored unassigned cell back (loading a snapshot, after `renumber`);
    /// false if a unit is not in the trees.
    pub fn restore_unassigned(
        &mut self,
        tree: Tree,
        unit: Option<&UnitCode>,
        period: Period,
        source: &UnitCode,
        cell: Cell,
    ) -> bool {
        let id = match unit {
            None => NATION,
            Some(u) => match self.unit_id(u) {
                Some(id) => id,
                None => return false,
            },
        };
        let Some(source) = self.unit_id(source) else { return false };
        self.unassigned.entry((tree, id, period)).or_default().insert(source, cell);
        true
    }

    /// Every unassigned cell: (tree, unit or nation, period, source unit, cell).
    pub fn unassigned_with_codes(&self) -> Vec<(Tree, Option<&UnitCode>, Period, &UnitCode, &Cell)> {
        let mut out = Vec::new();
        for ((t, u, p), by_source) in &self.unassigned {
            let unit = if *u == NATION { None } else { Some(self.code_of(*u)) };
            if unit == Some(None) {
                continue;
            }
            for (source, cell) in by_source {
                if let Some(source) = self.code_of(*source) {
                    out.push((*t, unit.flatten(), *p, source, cell));
                }
            }
        }
        out
    }

    /// The figures reported as unassigned at `unit` (None: the nation) of `tree` for
    /// `period`, per source unit in code order: model flows over the period's
    /// half-years and the report figures of the period itself, as `rollup` counts.
    pub fn unassigned_rollups(&self, tree: Tree, unit: Option<&UnitCode>, period: Period) -> Vec<(UnitCode, Rollup)> {
        let id = match unit {
            None => NATION,
            Some(u) => match self.unit_id(u) {
                Some(id) => id,
                None => return Vec::new(),
            },
        };
        let mut out: BTreeMap<UnitCode, Rollup> = BTreeMap::new();
        for half in halves(period) {
            for (source, c) in self.unassigned.get(&(tree, id, half)).into_iter().flatten() {
                let Some(code) = self.code_of(*source) else { continue };
                let r = out.entry(code.clone()).or_default();
                r.models.add(&c.models);
            }
        }
        for (source, c) in self.unassigned.get(&(tree, id, period)).into_iter().flatten() {
            let Some(code) = self.code_of(*source) else { continue };
            let r = out.entry(code.clone()).or_default();
            r.cell = c.clone();
        }
        out.retain(|_, r| *r != Rollup::default());
        out.into_iter().collect()
    }

    /// Derives every cell again from the facts (after the trees changed).
    fn rederive(&mut self) {
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

    fn model_event(&mut self, model: &ModelId, event: &ModelEvent) {
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

    fn report_event(&mut self, stream: &StreamId, event: &ReportEvent) {
        let stream = stream.to_string();
        let (fact, old) = match (self.reports.get_mut(&stream), event) {
            (None, ReportEvent::Submitted { id, tree, revision }) => {
                let fact = ReportFact {
                    unit: id.unit.clone(),
                    tree: *tree,
                    period: id.period,
                    latest: revision.figures,
                    approved: None,
                    on_time: revision.on_time,
                };
                (&*self.reports.entry(stream).or_insert(fact), None)
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

    /// The roll-up at `unit` (None: the nation) of `tree` for `period`.
    pub fn rollup(&self, tree: Tree, unit: Option<&UnitCode>, period: Period) -> Rollup {
        let mut r = Rollup::default();
        let id = match unit {
            None => NATION,
            Some(u) => match self.unit_id(u) {
                Some(id) => id,
                None => return r,
            },
        };
        for half in halves(period) {
            if let Some(c) = self.cells.get(&(tree, id, half)) {
                r.models.add(&c.models);
                r.models_allocated += c.models_allocated;
            }
        }
        if let Some(c) = self.cells.get(&(tree, id, period)) {
            r.cell = c.clone();
        }
        r
    }

    /// The unassigned cells by unit code, for comparing two projections.
    #[cfg(test)]
    fn unassigned_by_code(&self) -> BTreeMap<(u8, Option<&UnitCode>, String, &UnitCode), &Cell> {
        self.unassigned_with_codes().into_iter().map(|(t, u, p, s, c)| ((t as u8, u, p.to_string(), s), c)).collect()
    }

    /// The cells by unit code, for comparing two projections whatever their numbering.
    #[cfg(test)]
    fn cells_by_code(&self) -> BTreeMap<(u8, Option<&UnitCode>, String), &Cell> {
        let codes: HashMap<UnitId, &UnitCode> = self.ids.iter().map(|(c, i)| (*i, c)).collect();
        self.cells.iter().map(|((t, u, p), c)| ((*t as u8, codes.get(u).copied(), p.to_string()), c)).collect()
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

/// A roll-up as queries see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollup {
    /// Model flows over the period's half-years.
    pub models: ModelCounts,
    pub models_allocated: i64,
    /// Report figures of the period itself.
    pub cell: Cell,
}

impl dvk_runtime::host::ReadModel for State {
    /// The latest snapshot and the log after it; the whole log if there is no snapshot
    /// or it cannot be read (which is logged).
    fn restore(log: &dvk_eventlog::EventLog) -> Result<(Self, u64), dvk_eventlog::LogError> {
        let (mut state, from) = match crate::snapshot::newest(log, |_| true) {
            Ok(Some((state, position))) => {
                tracing::info!(position, "roll-ups loaded from their snapshot");
                (state, position + 1)
            }
            Ok(None) => (State::default(), 1),
            Err(e) => {
                tracing::warn!(error = %e, "the snapshots cannot be read; replaying the whole log");
                (State::default(), 1)
            }
        };
        let last = dvk_runtime::host::replay_onto(log, &mut state, from, |_| true)?;
        Ok((state, last))
    }

    fn apply(&mut self, r: &Recorded) {
        self.saw(r.position, &r.source, r.source_position, r.recorded_at);
        if self.fold_tree_event(r.position, &r.event) {
            self.tree_events.push(r.event.clone());
            self.rederive();
            return;
        }
        match (&r.stream, &r.event) {
            (StreamId::Model(id), DomainEvent::Model(e)) => self.model_event(id, e),
            (stream, DomainEvent::Report(e)) => self.report_event(stream, e),
            (stream, _) => tracing::error!(position = r.position, %stream, "an event on a stream not its own"),
        }
    }

    fn skip(&mut self, u: &Unreadable) {
        self.saw(u.position, &u.source_name, u.source_position, u.recorded_at);
    }
}

impl State {
    /// Notes an event at `position` of this log, from `source` at `source_position`
    /// (read-your-writes and time travel count it even if it does not decode).
    fn saw(&mut self, position: u64, source: &str, source_position: u64, recorded_at: Option<prost_types::Timestamp>) {
        self.position = position;
        self.events += 1;
        if source.is_empty() {
            return;
        }
        // Looked up before inserting: the source's name is copied only the first time.
        match self.seen.get_mut(source) {
            Some(seen) => seen.insert(source_position),
            None => self.seen.entry(source.to_owned()).or_default().insert(source_position),
        }
        if let Some(t) = recorded_at {
            match self.latest_time.get_mut(source) {
                Some(latest) => *latest = (*latest).max(t.seconds),
                None => {
                    self.latest_time.insert(source.to_owned(), t.seconds);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvk_codec::convert;
    use dvk_codec::event::encode;
    use dvk_domain::model::{ModelEvent, ModelId};
    use dvk_domain::report::{ReportId, Revision};
    use dvk_domain::unit::{LinkBasis, MergeKind, ReorgLink, Unit, UnitKind};
    use dvk_proto::events::v1::{self as pe, Envelope, envelope::Payload};
    use proptest::prelude::*;

    fn code(s: &str) -> UnitCode {
        UnitCode::parse("c", s).unwrap()
    }

    fn units(tree: Tree, list: &[(&str, UnitKind, Option<&str>)]) -> Envelope {
        let units = list
            .iter()
            .map(|(c, k, p)| convert::unit_record_out(&Unit::new(tree, code(c), c, "", *k, p.map(code)).unwrap()))
            .collect();
        Envelope {
            source: "registration".into(),
            stream_id: StreamId::Units(tree).to_string(),
            payload: Some(Payload::UnitsImported(pe::UnitsImported {
                tree: convert::tree_out(tree) as i32,
                units,
                origin: String::new(),
            })),
            ..Envelope::default()
        }
    }

    /// Pre-2025: province 01 with districts 001 (communes 00001, 00002) and 002 (00003,
    /// 00004); 2025: province 01 with communes 00001 (00001 and 00002 merged whole) and
    /// 00003, 00005 (old 00003 split between them), and 00007. Two units have no
    /// counterpart: old 00004 is named by no link, and new 00007's only predecessor
    /// (00099) is not in the old list.
    fn tree_events() -> Vec<Envelope> {
        use UnitKind::*;
        let pre = units(
            Tree::Pre2025,
            &[
                ("01", CentralCity, None),
                ("001", UrbanDistrict, Some("01")),
                ("002", RuralDistrict, Some("01")),
                ("00001", Ward, Some("001")),
                ("00002", Ward, Some("001")),
                ("00003", Commune, Some("002")),
                ("00004", Commune, Some("002")),
            ],
        );
        let new = units(
            Tree::Y2025,
            &[
                ("01", CentralCity, None),
                ("00001", Ward, Some("01")),
                ("00003", Commune, Some("01")),
                ("00005", Commune, Some("01")),
                ("00007", Commune, Some("01")),
            ],
        );
        let link = |o: &str, n: &str, kind, rank| {
            let basis = LinkBasis::Official;
            convert::reorg_link_out(&ReorgLink { old: code(o), new: code(n), kind, note: String::new(), basis }, rank)
        };
        let reorg = Envelope {
            source: "registration".into(),
            stream_id: StreamId::Reorganization.to_string(),
            payload: Some(Payload::UnitsReorganized(pe::UnitsReorganized {
                links: vec![
                    link("00001", "00001", MergeKind::Whole, 0),
                    link("00002", "00001", MergeKind::Whole, 0),
                    link("00003", "00003", MergeKind::Part, 0),
                    link("00003", "00005", MergeKind::Part, 1),
                    link("00099", "00007", MergeKind::Whole, 0),
                ],
                ..Default::default()
            })),
            ..Envelope::default()
        };
        vec![pre, new, reorg]
    }

    const PRE: [&str; 4] = ["00001", "00002", "00003", "00004"];
    const NEW: [&str; 4] = ["00001", "00003", "00005", "00007"];

    /// A generated event: a model or a report at a commune of one tree.
    #[derive(Debug, Clone)]
    enum Gen {
        Model { y2025: bool, unit: usize, month: u32, started: bool },
        Report { y2025: bool, unit: usize, registered: i64, approve: bool },
    }

    fn generated() -> impl Strategy<Value = Gen> {
        prop_oneof![
            (any::<bool>(), 0..4usize, 1..12u32, any::<bool>()).prop_map(|(y2025, unit, month, started)| Gen::Model {
                y2025,
                unit,
                month,
                started
            }),
            (any::<bool>(), 0..4usize, 0..50i64, any::<bool>())
                .prop_map(|(y2025, unit, registered, approve)| Gen::Report { y2025, unit, registered, approve }),
        ]
    }

    /// The envelopes of the generated events, numbered as their sources would.
    fn data_events(gens: &[Gen]) -> Vec<Envelope> {
        let mut out = Vec::new();
        let (mut reg, mut rep) = (100u64, 0u64);
        for (n, g) in gens.iter().enumerate() {
            let mut push = |source: &str, position: &mut u64, stream: String, p: Payload| {
                *position += 1;
                out.push(Envelope {
                    source: source.into(),
                    source_position: *position,
                    stream_id: stream,
                    payload: Some(p),
                    ..Envelope::default()
                });
            };
            match g {
                Gen::Model { y2025, unit, month, started } => {
                    let (tree, unit, year) =
                        if *y2025 { (Tree::Y2025, NEW[*unit], 2026) } else { (Tree::Pre2025, PRE[*unit], 2024) };
                    let id = ModelId::parse("id", &format!("00000000-0000-7000-8000-{n:012}")).unwrap();
                    let on = Date::new("d", year, *month, 1).unwrap();
                    let registered = ModelEvent::Registered {
                        id: id.clone(),
                        unit: code(unit),
                        tree,
                        registered_on: on,
                        details: dvk_domain::model::ModelDetails::new(
                            dvk_domain::model::ModelDetailsDraft {
                                name: "Mô hình".into(),
                                field: Some(Field::ALL[n % 4]),
                                runner_kind: Some(dvk_domain::model::RunnerKind::Collective),
                                runner_name: "Chi hội".into(),
                                sponsor: Some(dvk_domain::model::Sponsor::YouthUnion),
                                sponsor_name: "Đoàn xã".into(),
                                objectives: "Đường".into(),
                                timeline_start: Some(on),
                                ..Default::default()
                            },
                            "details",
                        )
                        .unwrap(),
                    };
                    push(
                        "registration",
                        &mut reg,
                        StreamId::Model(id.clone()).to_string(),
                        encode(&DomainEvent::Model(registered)),
                    );
                    if *started {
                        let e = ModelEvent::Started { started_on: on.add_days(200).unwrap() };
                        push(
                            "registration",
                            &mut reg,
                            StreamId::Model(id.clone()).to_string(),
                            encode(&DomainEvent::Model(e)),
                        );
                    }
                }
                Gen::Report { y2025, unit, registered, approve } => {
                    let (tree, unit, period) = if *y2025 {
                        (Tree::Y2025, NEW[*unit], "2026-H1")
                    } else {
                        (Tree::Pre2025, PRE[*unit], "2024-H1")
                    };
                    let id = ReportId { unit: code(unit), period: Period::parse("p", period).unwrap() };
                    let stream = id.as_string();
                    let figures =
                        Figures::default().with(Figure::ModelsRegistered, *registered).with(Figure::Workdays, 3);
                    let revision =
                        Revision { number: 1, figures, summary: String::new(), reason: String::new(), on_time: true };
                    let e = ReportEvent::Submitted { id, tree, revision };
                    push("reporting", &mut rep, stream.clone(), encode(&DomainEvent::Report(e)));
                    if *approve {
                        let e = ReportEvent::Approved { revision: 1 };
                        push("reporting", &mut rep, stream, encode(&DomainEvent::Report(e)));
                    }
                }
            }
        }
        out
    }

    fn fold(events: &[Envelope]) -> State {
        let mut s = State::default();
        for (i, e) in events.iter().enumerate() {
            dvk_runtime::host::fold(&mut s, i as u64 + 1, e.clone());
        }
        s
    }

    /// The generated events, with one report per unit and period as the reporting
    /// service allows (a later one at the same place is dropped).
    fn once(gens: Vec<Gen>) -> Vec<Gen> {
        let mut reported = BTreeSet::new();
        gens.into_iter()
            .filter(|g| match g {
                Gen::Report { y2025, unit, .. } => reported.insert((*y2025, *unit)),
                Gen::Model { .. } => true,
            })
            .collect()
    }

    fn sum_of(cells: &[Option<&Cell>]) -> Cell {
        let mut total = Cell::default();
        for c in cells.iter().flatten() {
            total.models.add(&c.models);
            total.all.add(&c.all, 1);
            total.approved.add(&c.approved, 1);
            total.all_reports += c.all_reports;
            total.approved_reports += c.approved_reports;
        }
        total
    }

    fn core(c: Option<&Cell>) -> Cell {
        let c = c.cloned().unwrap_or_default();
        Cell {
            models: c.models,
            all: c.all,
            approved: c.approved,
            all_reports: c.all_reports,
            approved_reports: c.approved_reports,
            ..Cell::default()
        }
    }

    proptest! {
        #[test]
        fn parents_equal_the_sum_of_their_children_in_both_trees(gens in proptest::collection::vec(generated(), 0..40).prop_map(once)) {
            let mut events = tree_events();
            events.extend(data_events(&gens));
            let s = fold(&events);
            for period in ["2024-H1", "2024-H2", "2026-H1", "2026-H2"].map(|p| Period::parse("p", p).unwrap()) {
                let c = |t: Tree, u: Option<&str>| s.cell(t, u.map(code).as_ref(), period);
                // pre-2025: nation = province; province = districts; districts = communes
                prop_assert_eq!(core(c(Tree::Pre2025, None)), core(c(Tree::Pre2025, Some("01"))));
                prop_assert_eq!(core(c(Tree::Pre2025, Some("01"))), sum_of(&[c(Tree::Pre2025, Some("001")), c(Tree::Pre2025, Some("002"))]));
                prop_assert_eq!(core(c(Tree::Pre2025, Some("001"))), sum_of(&[c(Tree::Pre2025, Some("00001")), c(Tree::Pre2025, Some("00002"))]));
                prop_assert_eq!(core(c(Tree::Pre2025, Some("002"))), sum_of(&[c(Tree::Pre2025, Some("00003")), c(Tree::Pre2025, Some("00004"))]));
                // 2025: province = communes
                prop_assert_eq!(core(c(Tree::Y2025, Some("01"))), sum_of(&NEW.map(|u| c(Tree::Y2025, Some(u)))));
            }
        }

        /// Nothing vanishes between the trees: for every period and either tree B,
        /// nation(B) + unassigned(B) is everything recorded (counted here from the
        /// generated events alone), so nation(A) = nation(B) + unassigned(B) whenever
        /// the period's figures were all recorded in A; and the unassigned figures
        /// are exactly those of the units without a counterpart.
        #[test]
        fn a_nation_equals_the_other_nation_plus_what_is_unassigned_there(
            gens in proptest::collection::vec(generated(), 0..40).prop_map(once)
        ) {
            let mut events = tree_events();
            events.extend(data_events(&gens));
            let s = fold(&events);
            for period in ["2024-H1", "2024-H2", "2024", "2026-H1", "2026", "2021-2025", "2026-2030"] {
                let period = Period::parse("p", period).unwrap();
                // (registered, started, reports, approved reports, reported models registered)
                let mut recorded = [0i64; 5];
                let mut lonely = [[0i64; 5]; 2];
                for g in &gens {
                    let (y2025, unit, row) = match g {
                        Gen::Model { y2025, unit, month, started } => {
                            let on = Date::new("d", if *y2025 { 2026 } else { 2024 }, *month, 1).unwrap();
                            let started = *started && period.contains_date(on.add_days(200).unwrap());
                            let registered = period.contains_date(on);
                            (*y2025, *unit, [i64::from(registered), i64::from(started), 0, 0, 0])
                        }
                        Gen::Report { y2025, unit, registered, approve } => {
                            let p = if *y2025 { "2026-H1" } else { "2024-H1" };
                            if period != Period::parse("p", p).unwrap() {
                                continue;
                            }
                            (*y2025, *unit, [0, 0, 1, i64::from(*approve), *registered])
                        }
                    };
                    for i in 0..5 {
                        recorded[i] += row[i];
                        // 00004 (pre-2025) and 00007 (2025) have no counterpart.
                        if unit == 3 {
                            lonely[usize::from(y2025)][i] += row[i];
                        }
                    }
                }
                let seen = |r: &Rollup| {
                    [r.models.registered, r.models.implementing, r.cell.all_reports, r.cell.approved_reports,
                     r.cell.all[Figure::ModelsRegistered]]
                };
                for (b, lonely_in_other) in [(Tree::Pre2025, lonely[1]), (Tree::Y2025, lonely[0])] {
                    let mut total = seen(&s.rollup(b, None, period));
                    let mut unassigned = [0i64; 5];
                    for (_, r) in s.unassigned_rollups(b, None, period) {
                        for (i, v) in seen(&r).into_iter().enumerate() {
                            total[i] += v;
                            unassigned[i] += v;
                        }
                    }
                    prop_assert_eq!(total, recorded, "{} {:?}", period, b);
                    prop_assert_eq!(unassigned, lonely_in_other, "{} {:?}", period, b);
                    let units: Vec<String> =
                        s.unassigned_rollups(b, None, period).into_iter().map(|(u, _)| u.to_string()).collect();
                    let expected: &[&str] = if lonely_in_other == [0; 5] {
                        &[]
                    } else if b == Tree::Y2025 {
                        &["00004"]
                    } else {
                        &["00007"]
                    };
                    prop_assert_eq!(units, expected);
                }
            }
        }

        #[test]
        fn trees_arriving_after_the_data_give_the_same_roll_ups(gens in proptest::collection::vec(generated(), 0..30).prop_map(once)) {
            let mut early = tree_events();
            early.extend(data_events(&gens));
            let mut late = data_events(&gens);
            late.extend(tree_events());
            let (a, b) = (fold(&early), fold(&late));
            prop_assert!(a.cells_by_code() == b.cells_by_code());
            prop_assert!(a.unassigned_by_code() == b.unassigned_by_code());
            prop_assert!(a.models == b.models && a.reports == b.reports);
        }

        #[test]
        fn a_snapshot_holds_the_whole_projection(gens in proptest::collection::vec(generated(), 0..30).prop_map(once)) {
            let mut events = tree_events();
            events.extend(data_events(&gens));
            let s = fold(&events);
            let back = crate::snapshot::decode(&crate::snapshot::encode(&s).data).unwrap();
            prop_assert!(back == s);
            prop_assert_eq!(back.cells.len(), s.cells.len());
            prop_assert_eq!(back.unassigned.len(), s.unassigned.len());
        }
    }

    #[test]
    fn a_split_commune_counts_wholly_in_its_first_named_successor_and_says_so() {
        let mut events = tree_events();
        events.extend(data_events(&[Gen::Report { y2025: false, unit: 2, registered: 7, approve: true }]));
        let s = fold(&events);
        let h1 = Period::parse("p", "2024-H1").unwrap();
        let first = s.rollup(Tree::Y2025, Some(&code("00003")), h1);
        assert_eq!((first.cell.approved[Figure::ModelsRegistered], first.cell.approved_allocated), (7, 1));
        assert_eq!(s.rollup(Tree::Y2025, Some(&code("00005")), h1).cell.approved_reports, 0);
        // A whole merge moves exactly.
        let mut events = tree_events();
        events.extend(data_events(&[Gen::Report { y2025: false, unit: 1, registered: 4, approve: false }]));
        let s = fold(&events);
        let merged = s.rollup(Tree::Y2025, Some(&code("00001")), h1);
        assert_eq!(
            (merged.cell.all[Figure::ModelsRegistered], merged.cell.all_allocated, merged.cell.approved_reports),
            (4, 0, 0)
        );
    }

    proptest! {
        /// A read-your-writes token is reached only once every position up to it has
        /// arrived, in whatever order the partitions deliver them.
        #[test]
        fn a_token_is_reached_once_every_position_up_to_it_has_arrived(
            order in Just((1..=40u64).collect::<Vec<_>>()).prop_shuffle()
        ) {
            let mut seen = Seen::default();
            let mut arrived = BTreeSet::new();
            for p in order {
                seen.insert(p);
                seen.insert(p);
                arrived.insert(p);
                for token in 1..=40u64 {
                    prop_assert_eq!(seen.reached(token), (1..=token).all(|q| arrived.contains(&q)), "token {}", token);
                }
            }
            prop_assert_eq!(seen.watermark, 40);
            prop_assert!(seen.above.is_empty());
        }
    }
}
