//! The aggregation's queries, apart from the wire: each takes the caller's access and a
//! checked query, waits for the positions the caller must see (read-your-writes),
//! answers from the live projection or, for `as_of`, from one rebuilt up to that point
//! beside it, checks the caller's subtree (`crate::POLICY`; the guard in front has
//! authenticated the caller and checked its role) and returns what it read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use dvk_domain::report::{Figure, Figures};
use dvk_domain::unit::Level;
use dvk_domain::{Period, Tree, UnitCode};
use dvk_runtime::host::{Core, SourceHeads};
use dvk_runtime::{Access, Target};

use crate::asof::{self, Point};
use crate::error::Error;
use crate::projection::{Cell, ModelCounts, Rollup, State};

/// The sources the aggregation follows.
pub const SOURCES: [&str; 2] = ["registration", "reporting"];

/// Where the roll-ups stand, per source of `SOURCES`: every position up to each is
/// folded in.
pub type Positions = [(&'static str, u64); SOURCES.len()];

/// Progress of rebuilds.
#[derive(Debug, Default)]
pub struct RebuildStatus {
    pub running: AtomicBool,
    pub done: AtomicU64,
    pub total: AtomicU64,
    pub completed: AtomicU64,
    pub last_time: std::sync::Mutex<Option<SystemTime>>,
}

/// What a caller must see before it is answered: every position up to each of `min`
/// folded in, waited for at most `within`.
#[derive(Debug, Clone)]
pub struct Fresh {
    pub min: Vec<(&'static str, u64)>,
    pub within: Duration,
}

/// One page of the units a roll-up's unassigned figures came from.
#[derive(Debug, Clone)]
pub struct UnassignedPage {
    pub size: usize,
    /// The last unit of the previous page.
    pub after: Option<UnitCode>,
}

/// One roll-up: `unit` (None: the nation) of `tree` for `period`.
#[derive(Debug, Clone)]
pub struct RollupQuery {
    pub tree: Tree,
    pub unit: Option<UnitCode>,
    pub period: Period,
    pub include_unapproved: bool,
    pub fresh: Fresh,
    pub as_of: Option<Point>,
    pub unassigned: UnassignedPage,
}

/// What a ranking of roll-ups sorts by (ties, and `Code`, go by unit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    Code,
    Registered,
    Recognized,
    Exemplary,
    Figure(Figure),
}

/// A page of the roll-ups of the children of `parent` (None: the nation), or of its
/// descendants at `level`.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub tree: Tree,
    pub parent: Option<UnitCode>,
    pub level: Option<Level>,
    pub period: Period,
    pub include_unapproved: bool,
    pub sort: SortBy,
    pub descending: bool,
    pub size: usize,
    /// How many of the ranking the previous pages held.
    pub start: usize,
    pub fresh: Fresh,
    pub as_of: Option<Point>,
}

/// The roll-ups of `unit` of `tree` over consecutive periods of one kind.
#[derive(Debug, Clone)]
pub struct SeriesQuery {
    pub tree: Tree,
    pub unit: Option<UnitCode>,
    pub periods: Vec<Period>,
    pub include_unapproved: bool,
}

/// How many of the reports due at `unit` of `tree` for `period` have come.
#[derive(Debug, Clone)]
pub struct CompletenessQuery {
    pub tree: Tree,
    pub unit: Option<UnitCode>,
    pub period: Period,
    pub include_children: bool,
}

/// A roll-up as answered, with the figures the query asked for (approved only, or
/// every latest revision).
#[derive(Debug, Clone)]
pub struct RollupView {
    pub tree: Tree,
    pub unit: Option<UnitCode>,
    pub unit_name: String,
    pub level: Level,
    pub period: Period,
    pub include_unapproved: bool,
    pub models: ModelCounts,
    pub figures: Figures,
    pub reports_counted: i64,
    /// Model flows and reports placed here by the allocation rule.
    pub allocated: i64,
    pub positions: Positions,
    /// What is unassigned there (only a single roll-up says).
    pub unassigned: Option<Unassigned>,
}

/// What is unassigned at a roll-up's unit: the totals, and one page of the units
/// (of tree `from`) it came from.
#[derive(Debug, Clone)]
pub struct Unassigned {
    pub from: Tree,
    pub models: ModelCounts,
    pub figures: Figures,
    pub reports_counted: i64,
    pub units: Vec<UnassignedUnit>,
    /// The last unit of this page, when more follow.
    pub next: Option<UnitCode>,
    pub total_units: usize,
}

#[derive(Debug, Clone)]
pub struct UnassignedUnit {
    pub unit: UnitCode,
    pub name: String,
    pub models: ModelCounts,
    pub figures: Figures,
    pub reports_counted: i64,
}

#[derive(Debug, Clone)]
pub struct RollupPage {
    pub rollups: Vec<RollupView>,
    /// Where the next page starts, when there is one.
    pub next: Option<usize>,
    pub total: usize,
    pub positions: Positions,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub points: Vec<SeriesPoint>,
    pub positions: Positions,
}

#[derive(Debug, Clone)]
pub struct SeriesPoint {
    pub period: Period,
    pub models: ModelCounts,
    pub figures: Figures,
    pub reports_counted: i64,
}

#[derive(Debug, Clone)]
pub struct Completeness {
    pub tree: Tree,
    pub unit: Option<UnitCode>,
    pub unit_name: String,
    pub period: Period,
    pub counts: CompletenessCounts,
    pub children: Vec<UnitCompleteness>,
}

#[derive(Debug, Clone)]
pub struct UnitCompleteness {
    pub unit: UnitCode,
    pub name: String,
    pub counts: CompletenessCounts,
}

/// Reports expected at a place (its own and every unit's below it) and how many came.
#[derive(Debug, Clone, Copy)]
pub struct CompletenessCounts {
    pub expected: i64,
    pub submitted: i64,
    pub on_time: i64,
    pub approved: i64,
}

impl CompletenessCounts {
    /// `n` of the reports expected; 0 where none is.
    pub fn rate(&self, n: i64) -> f64 {
        if self.expected == 0 { 0.0 } else { n as f64 / self.expected as f64 }
    }
}

#[derive(Debug, Clone)]
pub struct ProjectionStatus {
    pub sources: Vec<SourceStatus>,
    pub rebuilding: bool,
    pub rebuild_done: u64,
    pub rebuild_total: u64,
    pub rebuilds_completed: u64,
    pub last_rebuild: Option<SystemTime>,
}

/// How far a source has arrived in the aggregation's log and been projected.
#[derive(Debug, Clone)]
pub struct SourceStatus {
    pub source: &'static str,
    pub received: u64,
    pub projected: u64,
    /// The newest position the source has written, when the transport tells.
    pub head: Option<u64>,
}

impl SourceStatus {
    /// Events the source has written that the roll-ups do not count yet: behind its
    /// head when known, else behind what has been received.
    pub fn lag(&self) -> u64 {
        self.head.unwrap_or(self.received).max(self.received).saturating_sub(self.projected)
    }
}

/// Answers from the live projection, or from one rebuilt up to `as_of`.
enum View<'a> {
    Live(tokio::sync::RwLockReadGuard<'a, State>),
    Past(Box<State>),
}

impl std::ops::Deref for View<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        match self {
            View::Live(g) => g,
            View::Past(s) => s,
        }
    }
}

/// The roll-ups' queries over the live projection (and its log, for `as_of`), and the
/// rebuilds' progress.
#[derive(Debug)]
pub struct App {
    core: Core<State>,
    heads: SourceHeads,
    rebuild: Arc<RebuildStatus>,
}

fn positions(state: &State) -> Positions {
    SOURCES.map(|s| (s, state.seen.get(s).map_or(0, |x| x.watermark)))
}

/// Requires the caller to read `unit` (None: the nation) of `tree`: a unit the tree
/// lacks is NOT_FOUND, then the policy's scope decides.
fn require_read(state: &State, access: &Access, tree: Tree, unit: Option<&UnitCode>) -> Result<(), Error> {
    if let Some(u) = unit
        && state.trees.get(tree).get(u).is_none()
    {
        return Err(Error::UnitNotFound { unit: u.clone(), tree });
    }
    Ok(access.check(&state.trees, &Target::place(tree, unit.cloned()))?)
}

/// The figures of a cell a query counts, the reports behind them and how many of
/// those the allocation rule placed.
fn counted(c: &Cell, include_unapproved: bool) -> (Figures, i64, i64) {
    if include_unapproved {
        (c.all, c.all_reports, c.all_allocated)
    } else {
        (c.approved, c.approved_reports, c.approved_allocated)
    }
}

fn rollup_view(
    state: &State,
    tree: Tree,
    unit: Option<&UnitCode>,
    period: Period,
    include_unapproved: bool,
    r: &Rollup,
) -> RollupView {
    let (unit_name, level) = name_and_level(state, tree, unit);
    let (figures, reports_counted, allocated) = counted(&r.cell, include_unapproved);
    RollupView {
        tree,
        unit: unit.cloned(),
        unit_name,
        level,
        period,
        include_unapproved,
        models: r.models,
        figures,
        reports_counted,
        allocated: r.models_allocated + allocated,
        positions: positions(state),
        unassigned: None,
    }
}

/// What is unassigned at `unit` of `tree` for `period`: the totals, and one page of
/// the units it came from (units of the other tree, in code order).
fn unassigned(
    state: &State,
    tree: Tree,
    unit: Option<&UnitCode>,
    period: Period,
    include_unapproved: bool,
    page: &UnassignedPage,
) -> Option<Unassigned> {
    let from = tree.other();
    let per_unit = state.unassigned_rollups(tree, unit, period);
    if per_unit.is_empty() {
        return None;
    }
    let pick = |r: &Rollup| {
        let (figures, reports, _) = counted(&r.cell, include_unapproved);
        (figures, reports)
    };
    let mut models = ModelCounts::default();
    let mut figures = Figures::default();
    let mut reports = 0;
    for (_, r) in &per_unit {
        models.add(&r.models);
        let (f, n) = pick(r);
        figures.add(&f, 1);
        reports += n;
    }
    let start = page.after.as_ref().map_or(0, |a| per_unit.partition_point(|(c, _)| c <= a));
    let units: Vec<UnassignedUnit> = per_unit[start..]
        .iter()
        .take(page.size)
        .map(|(code, r)| {
            let (figures, reports_counted) = pick(r);
            UnassignedUnit {
                unit: code.clone(),
                name: state.trees.get(from).get(code).map(|u| u.name.clone()).unwrap_or_default(),
                models: r.models,
                figures,
                reports_counted,
            }
        })
        .collect();
    let end = start + units.len();
    let next = if end < per_unit.len() { Some(per_unit[end - 1].0.clone()) } else { None };
    Some(Unassigned { from, models, figures, reports_counted: reports, units, next, total_units: per_unit.len() })
}

/// The value a ranking sorts by: a model count of the registry, or a reported figure.
fn sort_value(r: &RollupView, by: SortBy) -> i64 {
    match by {
        SortBy::Code => 0,
        SortBy::Registered => r.models.registered,
        SortBy::Recognized => r.models.recognized(),
        SortBy::Exemplary => r.models.exemplary,
        SortBy::Figure(figure) => r.figures[figure],
    }
}

/// A unit's name and level in `tree` (None: the nation, "Việt Nam").
fn name_and_level(state: &State, tree: Tree, unit: Option<&UnitCode>) -> (String, Level) {
    match unit {
        None => ("Việt Nam".to_owned(), Level::Nation),
        Some(u) => state.trees.get(tree).get(u).map_or((String::new(), Level::Nation), |x| (x.name.clone(), x.level)),
    }
}

fn completeness_counts(state: &State, tree: Tree, unit: Option<&UnitCode>, period: Period) -> CompletenessCounts {
    let t = state.trees.get(tree);
    let mut expected = i64::from(unit.is_some());
    for level in [Level::Province, Level::District, Level::Commune] {
        if tree.has_level(level) {
            expected += t.descendants_at(unit, level).iter().filter(|u| Some(&u.code) != unit).count() as i64;
        }
    }
    let cell = state.cell(tree, unit, period).cloned().unwrap_or_default();
    CompletenessCounts { expected, submitted: cell.all_reports, on_time: cell.on_time, approved: cell.approved_reports }
}

impl App {
    pub fn new(core: Core<State>, heads: SourceHeads) -> Self {
        Self { core, heads, rebuild: Arc::default() }
    }

    /// One roll-up, with what is unassigned there.
    pub async fn rollup(&self, access: &Access, q: RollupQuery) -> Result<RollupView, Error> {
        self.wait_for(&q.fresh).await?;
        let state = self.view(q.as_of).await?;
        let unit = q.unit.as_ref();
        require_read(&state, access, q.tree, unit)?;
        let r = state.rollup(q.tree, unit, q.period);
        let mut view = rollup_view(&state, q.tree, unit, q.period, q.include_unapproved, &r);
        view.unassigned = unassigned(&state, q.tree, unit, q.period, q.include_unapproved, &q.unassigned);
        Ok(view)
    }

    /// A page of a ranking of roll-ups.
    pub async fn list_rollups(&self, access: &Access, q: ListQuery) -> Result<RollupPage, Error> {
        self.wait_for(&q.fresh).await?;
        let state = self.view(q.as_of).await?;
        require_read(&state, access, q.tree, q.parent.as_ref())?;
        let t = state.trees.get(q.tree);
        let units: Vec<UnitCode> = match q.level {
            None => t.children(q.parent.as_ref()).to_vec(),
            Some(level) => t.descendants_at(q.parent.as_ref(), level).into_iter().map(|u| u.code.clone()).collect(),
        };
        let mut rollups: Vec<RollupView> = units
            .iter()
            .map(|u| {
                let r = state.rollup(q.tree, Some(u), q.period);
                rollup_view(&state, q.tree, Some(u), q.period, q.include_unapproved, &r)
            })
            .collect();
        rollups.sort_by(|a, b| {
            let by = sort_value(a, q.sort).cmp(&sort_value(b, q.sort));
            let by = if q.descending { by.reverse() } else { by };
            by.then_with(|| a.unit.cmp(&b.unit))
        });
        let total = rollups.len();
        let page: Vec<RollupView> = rollups.into_iter().skip(q.start).take(q.size).collect();
        let end = q.start + page.len();
        Ok(RollupPage { rollups: page, next: (end < total).then_some(end), total, positions: positions(&state) })
    }

    /// A unit's roll-ups over consecutive periods (from the live projection).
    pub async fn time_series(&self, access: &Access, q: SeriesQuery) -> Result<Series, Error> {
        let state = self.core.state.read().await;
        require_read(&state, access, q.tree, q.unit.as_ref())?;
        let points = q
            .periods
            .into_iter()
            .map(|period| {
                let r = state.rollup(q.tree, q.unit.as_ref(), period);
                let (figures, reports_counted, _) = counted(&r.cell, q.include_unapproved);
                SeriesPoint { period, models: r.models, figures, reports_counted }
            })
            .collect();
        Ok(Series { points, positions: positions(&state) })
    }

    /// How complete a period's reports are at a unit, and at each of its children.
    pub async fn completeness(&self, access: &Access, q: CompletenessQuery) -> Result<Completeness, Error> {
        let state = self.core.state.read().await;
        let unit = q.unit.as_ref();
        require_read(&state, access, q.tree, unit)?;
        let children = if q.include_children {
            let t = state.trees.get(q.tree);
            t.children(unit)
                .iter()
                .map(|c| UnitCompleteness {
                    unit: c.clone(),
                    name: t.get(c).map(|u| u.name.clone()).unwrap_or_default(),
                    counts: completeness_counts(&state, q.tree, Some(c), q.period),
                })
                .collect()
        } else {
            Vec::new()
        };
        let counts = completeness_counts(&state, q.tree, unit, q.period);
        let (unit_name, _) = name_and_level(&state, q.tree, unit);
        Ok(Completeness { tree: q.tree, unit: q.unit, unit_name, period: q.period, counts, children })
    }

    /// How far each source has arrived and been projected, and the rebuilds' progress.
    pub async fn status(&self) -> ProjectionStatus {
        let state = self.core.state.read().await;
        self.status_of(&state)
    }

    /// Starts a rebuild of the projection unless one runs (asking again while one runs
    /// reports on it), and reports on it.
    pub async fn rebuild(&self, access: &Access) -> ProjectionStatus {
        if !self.rebuild.running.swap(true, Ordering::SeqCst) {
            tracing::info!(subject = %access.caller.subject, "rebuild of the projections requested");
            let core = self.core.clone();
            let progress = self.rebuild.clone();
            tokio::spawn(async move {
                match asof::rebuild(&core, &progress).await {
                    Ok(same) => {
                        progress.completed.fetch_add(1, Ordering::SeqCst);
                        *progress.last_time.lock().expect("lock") = Some(SystemTime::now());
                        if same {
                            tracing::info!("rebuild done: the rebuilt projection equals the live one");
                        } else {
                            tracing::error!(
                                "rebuild done: the rebuilt projection differed from the live one and replaced it"
                            );
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "rebuild failed; the live projection stays"),
                }
                progress.running.store(false, Ordering::SeqCst);
            });
        }
        self.status().await
    }

    /// Waits until every position up to each of `fresh.min` is projected, within
    /// `fresh.within`.
    async fn wait_for(&self, fresh: &Fresh) -> Result<(), Error> {
        let reached =
            |s: &State| fresh.min.iter().all(|(source, p)| s.seen.get(*source).map_or(*p == 0, |x| x.reached(*p)));
        let mut projected = self.core.projected.clone();
        let wait_all = async {
            loop {
                if reached(&*self.core.state.read().await) {
                    return Ok(());
                }
                if projected.changed().await.is_err() {
                    return Err(Error::ShuttingDown);
                }
            }
        };
        match tokio::time::timeout(fresh.within, wait_all).await {
            Ok(r) => r,
            Err(_) => Err(Error::NotReached { at: positions(&*self.core.state.read().await) }),
        }
    }

    /// The projection to answer from.
    async fn view(&self, as_of: Option<Point>) -> Result<View<'_>, Error> {
        let Some(point) = as_of else {
            return Ok(View::Live(self.core.state.read().await));
        };
        let log = self.core.log.clone();
        let state = tokio::task::spawn_blocking(move || asof::state_at(&log, &point)).await??;
        Ok(View::Past(Box::new(state)))
    }

    fn status_of(&self, state: &State) -> ProjectionStatus {
        let sources = SOURCES
            .iter()
            .map(|s| {
                let received = self
                    .core
                    .log
                    .meta(format!("received/{s}").as_bytes())
                    .ok()
                    .flatten()
                    .and_then(|v| dvk_bus::received::Received::decode(&v))
                    .map_or(0, |(w, _)| w);
                let projected = state.seen.get(*s).map_or(0, |x| x.watermark);
                let head = self.heads.head(s, received);
                SourceStatus { source: s, received, projected, head }
            })
            .collect();
        let r = &self.rebuild;
        ProjectionStatus {
            sources,
            rebuilding: r.running.load(Ordering::SeqCst),
            rebuild_done: r.done.load(Ordering::SeqCst),
            rebuild_total: r.total.load(Ordering::SeqCst),
            rebuilds_completed: r.completed.load(Ordering::SeqCst),
            last_rebuild: *r.last_time.lock().expect("lock"),
        }
    }
}
