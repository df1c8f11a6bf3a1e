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
//! - **Trees arriving late.** A fact whose unit is not yet known contributes nothing;
//!   whenever the trees or the mapping change, every cell is derived again from the
//!   facts. So the cells are always the same function of (facts, trees), whatever
//!   order the two sources' events arrived in, and a replay gives the same cells.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use dvk_domain::model::{Field, ModelEvent};
use dvk_domain::period::Half;
use dvk_domain::report::{Figures, ReportEvent};
use dvk_domain::unit::{Level, Trees};
use dvk_domain::{Date, Period, Tree, UnitCode};
use dvk_proto::convert;
use dvk_proto::events::v1::Envelope;

pub const TREES: [Tree; 2] = [Tree::Pre2025, Tree::Y2025];

/// A roll-up's place: a unit of a tree (or the nation, `None`) and a period.
pub type CellKey = (Tree, Option<UnitCode>, Period);

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

/// Adds `sign` × `b` to `a`, figure by figure.
pub fn add_figures(a: &mut Figures, b: &Figures, sign: i64) {
    a.models_registered += sign * b.models_registered;
    a.models_recognized += sign * b.models_recognized;
    a.funds_mobilized_vnd += sign * b.funds_mobilized_vnd;
    a.workdays += sign * b.workdays;
    a.participants += sign * b.participants;
    a.dialogues_held += sign * b.dialogues_held;
    a.petitions_received += sign * b.petitions_received;
    a.petitions_resolved += sign * b.petitions_resolved;
    a.dan_van_days += sign * b.dan_van_days;
    a.commendations_collective += sign * b.commendations_collective;
    a.commendations_individual += sign * b.commendations_individual;
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
        self.above.insert(position);
        while self.above.remove(&(self.watermark + 1)) {
            self.watermark += 1;
        }
    }

    pub fn contains(&self, position: u64) -> bool {
        position <= self.watermark || self.above.contains(&position)
    }
}

/// The old provinces behind each 2025 province and the new province of each old one,
/// derived from the mapping (provinces merged whole).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ProvinceMap {
    new_of_old: BTreeMap<UnitCode, UnitCode>,
    olds_of_new: BTreeMap<UnitCode, BTreeSet<UnitCode>>,
}

impl ProvinceMap {
    fn build(trees: &Trees) -> Self {
        let mut m = Self::default();
        let old = trees.get(Tree::Pre2025);
        let new = trees.get(Tree::Y2025);
        for province in old.children(None) {
            for commune in old.descendants_at(Some(province), Level::Commune) {
                let Some((succ, _)) = trees.reorganization.allocate(&commune.code) else { continue };
                let Some(np) = new.ancestors(succ).find(|u| u.level == Level::Province).map(|u| u.code.clone()) else {
                    continue;
                };
                m.new_of_old.entry(province.clone()).or_insert_with(|| np.clone());
                m.olds_of_new.entry(np).or_default().insert(province.clone());
            }
        }
        m
    }
}

/// The projection's state: trees, facts, cells, and what has been folded in.
#[derive(Debug, Default)]
pub struct State {
    pub trees: Trees,
    /// The tree events folded in, payloads only (snapshots carry them).
    pub tree_events: Vec<Envelope>,
    provinces: ProvinceMap,
    pub models: BTreeMap<String, ModelFact>,
    pub reports: BTreeMap<String, ReportFact>,
    pub cells: HashMap<CellKey, Cell>,
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
    /// Two projections are equal when they hold the same facts, cells and positions
    /// (the trees are derived from the same events).
    fn eq(&self, o: &Self) -> bool {
        self.models == o.models
            && self.reports == o.reports
            && self.cells == o.cells
            && self.seen == o.seen
            && self.position == o.position
            && self.trees.pre2025.len() == o.trees.pre2025.len()
            && self.trees.y2025.len() == o.trees.y2025.len()
            && self.trees.reorganization.len() == o.trees.reorganization.len()
    }
}

/// The half-year a date falls in.
pub fn half_of(d: Date) -> Period {
    let half = if d.month() <= 6 { Half::H1 } else { Half::H2 };
    Period::Half { year: d.year() as u16, half }
}

impl State {
    /// Where `unit` of `from` stands in `to`, and whether the allocation rule put it
    /// there (rather than an exact move). See the README for the rule.
    pub fn express(&self, from: Tree, unit: &UnitCode, to: Tree) -> Option<(UnitCode, bool)> {
        let src = self.trees.get(from).get(unit)?;
        let target = self.trees.get(to);
        if from == to {
            return Some((src.code.clone(), false));
        }
        let found = match (from, src.level) {
            (Tree::Pre2025, Level::Commune) => {
                let (new, allocated) = self.trees.reorganization.allocate(unit)?;
                (new.clone(), allocated)
            }
            (Tree::Pre2025, Level::District) => {
                let province = src.parent.as_ref()?;
                (self.provinces.new_of_old.get(province)?.clone(), false)
            }
            (Tree::Pre2025, Level::Province) => (self.provinces.new_of_old.get(unit)?.clone(), false),
            (Tree::Y2025, Level::Commune) => {
                let preds = self.trees.reorganization.predecessors(unit);
                let first = preds.first()?;
                let exact = preds.len() == 1 && self.trees.reorganization.allocate(first).is_some_and(|(_, a)| !a);
                (first.clone(), !exact)
            }
            (Tree::Y2025, Level::Province) => {
                let olds = self.provinces.olds_of_new.get(unit)?;
                let old = if olds.contains(unit) { unit.clone() } else { olds.first()?.clone() };
                (old, olds.len() > 1)
            }
            _ => return None,
        };
        target.get(&found.0).map(|_| found)
    }

    /// The cells a contribution at `unit` of `from` lands in, for `tree`: the unit
    /// (expressed in `tree`), its ancestors and the nation; and whether allocated.
    fn targets(&self, from: Tree, unit: &UnitCode, tree: Tree) -> Option<(Vec<Option<UnitCode>>, bool)> {
        let (code, allocated) = self.express(from, unit, tree)?;
        let t = self.trees.get(tree);
        let mut units: Vec<Option<UnitCode>> = vec![Some(code.clone())];
        units.extend(t.ancestors(&code).map(|u| Some(u.code.clone())));
        units.push(None);
        Some((units, allocated))
    }

    fn contribute_model(&mut self, fact: &ModelFact, sign: i64) {
        for tree in TREES {
            let Some((units, allocated)) = self.targets(fact.tree, &fact.unit, tree) else { continue };
            for (date, flow) in &fact.flows {
                let half = half_of(*date);
                for u in &units {
                    let cell = self.cells.entry((tree, u.clone(), half)).or_default();
                    cell.models.count(*flow, sign);
                    if allocated {
                        cell.models_allocated += sign;
                    }
                }
            }
        }
    }

    fn contribute_report(&mut self, fact: &ReportFact, sign: i64) {
        for tree in TREES {
            let Some((units, allocated)) = self.targets(fact.tree, &fact.unit, tree) else { continue };
            for u in units {
                let cell = self.cells.entry((tree, u, fact.period)).or_default();
                add_figures(&mut cell.all, &fact.latest, sign);
                cell.all_reports += sign;
                cell.on_time += sign * i64::from(fact.on_time);
                if allocated {
                    cell.all_allocated += sign;
                }
                if let Some(a) = &fact.approved {
                    add_figures(&mut cell.approved, a, sign);
                    cell.approved_reports += sign;
                    if allocated {
                        cell.approved_allocated += sign;
                    }
                }
            }
        }
    }

    /// Folds a tree event into the trees; false if the payload is not one.
    fn fold_tree_event(&mut self, position: u64, payload: &dvk_proto::events::v1::envelope::Payload) -> bool {
        let mut problems = Vec::new();
        let changed = convert::apply_tree_event(&mut self.trees, payload, &mut problems).is_some();
        for problem in problems {
            tracing::error!(position, "{problem}");
        }
        changed
    }

    /// Folds a stored tree event back in (loading a snapshot); cells are left alone.
    pub fn replay_tree_event(&mut self, env: Envelope) {
        if let Some(payload) = &env.payload
            && self.fold_tree_event(0, payload)
        {
            self.tree_events.push(env);
        }
    }

    /// Derives every cell from the facts and trees (loading a snapshot).
    pub fn rederive_all(&mut self) {
        self.rederive();
    }

    /// Derives every cell again from the facts (after the trees changed).
    fn rederive(&mut self) {
        self.provinces = ProvinceMap::build(&self.trees);
        self.cells.clear();
        let models: Vec<ModelFact> = self.models.values().cloned().collect();
        for m in &models {
            self.contribute_model(m, 1);
        }
        let reports: Vec<ReportFact> = self.reports.values().cloned().collect();
        for r in &reports {
            self.contribute_report(r, 1);
        }
        self.cells.retain(|_, c| *c != Cell::default());
    }

    fn model_event(&mut self, stream: &str, event: ModelEvent) {
        let id = stream.strip_prefix("model-").unwrap_or(stream).to_owned();
        let old = self.models.get(&id).cloned();
        let mut fact = match (&old, &event) {
            (None, ModelEvent::Registered { unit, tree, registered_on, details, .. }) => ModelFact {
                unit: unit.clone(),
                tree: *tree,
                flows: vec![(*registered_on, Flow::Registered(details.field))],
            },
            (None, _) => return,
            (Some(f), _) => f.clone(),
        };
        match event {
            ModelEvent::Registered { .. } => {}
            ModelEvent::Amended { details, .. } => {
                for (_, flow) in &mut fact.flows {
                    if let Flow::Registered(field) = flow {
                        *field = details.field;
                    }
                }
            }
            ModelEvent::Started { started_on } => fact.flows.push((started_on, Flow::Started)),
            ModelEvent::Recognized(r) => {
                fact.flows.push((r.decision.date, Flow::Recognized { level: r.level, exemplary: r.exemplary }))
            }
            ModelEvent::Commended(c) => fact.flows.push((c.decision.date, Flow::Commended)),
            ModelEvent::Replicated(r) => fact.flows.push((r.replicated_on, Flow::Replicated)),
            ModelEvent::Retired { retired_on, .. } => fact.flows.push((retired_on, Flow::Retired)),
        }
        if old.as_ref() == Some(&fact) {
            return;
        }
        if let Some(old) = &old {
            self.contribute_model(old, -1);
        }
        self.contribute_model(&fact, 1);
        self.models.insert(id, fact);
    }

    fn report_event(&mut self, stream: &str, event: ReportEvent) {
        let old = self.reports.get(stream).cloned();
        let mut fact = match (&old, &event) {
            (None, ReportEvent::Submitted { id, tree, revision }) => ReportFact {
                unit: id.unit.clone(),
                tree: *tree,
                period: id.period,
                latest: revision.figures,
                approved: None,
                on_time: revision.on_time,
            },
            (None, _) => return,
            (Some(f), _) => f.clone(),
        };
        match event {
            ReportEvent::Submitted { .. } | ReportEvent::Returned { .. } => {}
            ReportEvent::Amended { revision } => fact.latest = revision.figures,
            // Only the latest revision can be approved, and an approved report is not
            // amended until reopened: the approved figures are the latest.
            ReportEvent::Approved { .. } => fact.approved = Some(fact.latest),
            ReportEvent::Reopened { .. } => fact.approved = None,
        }
        if old.as_ref() == Some(&fact) {
            return;
        }
        if let Some(old) = &old {
            self.contribute_report(old, -1);
        }
        self.contribute_report(&fact, 1);
        self.reports.insert(stream.to_owned(), fact);
    }

    /// The roll-up at `unit` (None: the nation) of `tree` for `period`.
    pub fn rollup(&self, tree: Tree, unit: Option<&UnitCode>, period: Period) -> Rollup {
        let mut r = Rollup::default();
        for half in period.contained_periods().into_iter().filter(|p| matches!(p, Period::Half { .. })) {
            if let Some(c) = self.cells.get(&(tree, unit.cloned(), half)) {
                r.models.add(&c.models);
                r.models_allocated += c.models_allocated;
            }
        }
        if let Some(c) = self.cells.get(&(tree, unit.cloned(), period)) {
            r.cell = c.clone();
        }
        r
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
        let (mut state, from) = match log.load_snapshot(crate::snapshot::LATEST) {
            Ok(Some(s)) => match crate::snapshot::decode(&s.data) {
                Ok(state) => {
                    tracing::info!(position = s.position, "roll-ups loaded from their snapshot");
                    (state, s.position + 1)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the snapshot does not decode; replaying the whole log");
                    (State::default(), 1)
                }
            },
            Ok(None) => (State::default(), 1),
            Err(e) => {
                tracing::warn!(error = %e, "the snapshot cannot be read; replaying the whole log");
                (State::default(), 1)
            }
        };
        let last = dvk_runtime::host::replay_onto(log, &mut state, from, |_| true)?;
        Ok((state, last))
    }

    fn apply(&mut self, position: u64, env: &Envelope) {
        self.position = position;
        self.events += 1;
        if !env.source.is_empty() {
            self.seen.entry(env.source.clone()).or_default().insert(env.source_position);
            if let Some(t) = env.recorded_at {
                let latest = self.latest_time.entry(env.source.clone()).or_insert(t.seconds);
                *latest = (*latest).max(t.seconds);
            }
        }
        let Some(payload) = &env.payload else { return };
        if self.fold_tree_event(position, payload) {
            self.tree_events.push(Envelope { payload: Some(payload.clone()), ..Envelope::default() });
            self.rederive();
            return;
        }
        match convert::model_event_in(payload) {
            Ok(Some(e)) => return self.model_event(&env.stream_id, e),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(position, error = %e, "stored model event does not decode");
                return;
            }
        }
        match convert::report_event_in(payload) {
            Ok(Some(e)) => self.report_event(&env.stream_id, e),
            Ok(None) => {}
            Err(e) => tracing::error!(position, error = %e, "stored report event does not decode"),
        }
    }
}
