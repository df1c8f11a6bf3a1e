//! The gRPC adapter of the aggregation: checks the caller's subtree (`crate::POLICY`;
//! the guard in front has authenticated the caller and checked its role),
//! waits for read-your-writes tokens, answers from the live projection or, for
//! `as_of`, from a projection rebuilt up to that point beside it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use dvk_codec::convert;
use dvk_domain::unit::Level;
use dvk_domain::{DomainError, Period, Tree, UnitCode};
use dvk_proto::aggregation::v1::{self as pa, aggregation_service_server::AggregationService};
use dvk_proto::common::v1 as pc;
use dvk_runtime::host::{Core, page_size};
use dvk_runtime::{Access, Target, status};
use tonic::{Request, Response, Status};

use crate::asof::{self, Point};
use crate::projection::{ModelCounts, Rollup, State};

/// The sources the aggregation follows.
pub const SOURCES: [&str; 2] = ["registration", "reporting"];
/// How long a read-your-writes wait lasts when the caller sets no deadline.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// Most points of a time series.
const MAX_POINTS: usize = 400;

/// Progress of rebuilds.
#[derive(Debug, Default)]
pub struct RebuildStatus {
    pub running: AtomicBool,
    pub done: AtomicU64,
    pub total: AtomicU64,
    pub completed: AtomicU64,
    pub last_time: std::sync::Mutex<Option<prost_types::Timestamp>>,
}

pub struct Aggregation {
    pub(crate) core: Core<State>,
    pub(crate) rebuild: Arc<RebuildStatus>,
}

impl std::fmt::Debug for Aggregation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregation").field("core", &self.core).finish_non_exhaustive()
    }
}

fn invalid(field: &str, why: impl Into<String>) -> Status {
    status::domain(DomainError::invalid(field, why))
}

fn tree_in(t: i32) -> Result<Tree, Status> {
    if t == 0 {
        return Err(invalid("tree", "is required: TREE_2025 (province → commune) or TREE_PRE2025"));
    }
    convert::tree_in("tree", t).map_err(status::domain)
}

fn unit_opt(field: &str, u: Option<&pc::UnitCode>) -> Result<Option<UnitCode>, Status> {
    match u {
        Some(u) if !u.code.trim().is_empty() => Ok(Some(UnitCode::parse(field, &u.code).map_err(status::domain)?)),
        _ => Ok(None),
    }
}

/// The caller's deadline (`grpc-timeout`), less a margin so that the answer is ours.
fn deadline<T>(request: &Request<T>) -> Duration {
    let Some(v) = request.metadata().get("grpc-timeout").and_then(|v| v.to_str().ok()) else {
        return DEFAULT_WAIT;
    };
    let (n, unit) = v.split_at(v.len().saturating_sub(1));
    let Ok(n) = n.parse::<u64>() else { return DEFAULT_WAIT };
    let d = match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => DEFAULT_WAIT,
    };
    d.saturating_sub((d / 10).max(Duration::from_millis(2)))
}

/// Requires the caller to read `unit` (None: the nation) of `tree`: a unit the tree
/// lacks is NOT_FOUND, then the policy's scope decides.
fn require_read(state: &State, access: &Access, tree: Tree, unit: Option<&UnitCode>) -> Result<(), Status> {
    if let Some(u) = unit
        && state.trees.get(tree).get(u).is_none()
    {
        return Err(Status::not_found(format!("{u} is not a unit of the {} tree", tree.name())));
    }
    access.check(&state.trees, &Target::place(tree, unit.cloned()))
}

fn counts_out(c: &ModelCounts) -> pa::ModelCounts {
    let levels = [Level::Commune, Level::District, Level::Province, Level::Nation];
    pa::ModelCounts {
        registered: c.registered,
        implementing: c.implementing,
        recognized: c.recognized(),
        recognized_by_level: levels
            .iter()
            .enumerate()
            // A recognition keeps the level of its decision in every tree (a district's
            // decision is still a district-level recognition on the 2025 tree), so the
            // breakdown always sums to `recognized`.
            .filter(|(i, l)| **l != Level::Nation || c.recognized_by_level[*i] != 0)
            .map(|(i, l)| pa::LevelCount { level: convert::level_out(*l) as i32, count: c.recognized_by_level[i] })
            .collect(),
        exemplary: c.exemplary,
        commended: c.commended,
        replicated: c.replicated,
        retired: c.retired,
        by_field: dvk_domain::model::Field::ALL
            .iter()
            .enumerate()
            .map(|(i, f)| pa::FieldCount { field: convert::field_out(*f) as i32, count: c.by_field[i] })
            .collect(),
    }
}

fn positions(state: &State) -> pc::PositionSet {
    pc::PositionSet {
        positions: SOURCES
            .iter()
            .map(|s| pc::Position { source: (*s).to_owned(), position: state.seen.get(*s).map_or(0, |x| x.watermark) })
            .collect(),
    }
}

fn rollup_out(
    state: &State,
    tree: Tree,
    unit: Option<&UnitCode>,
    period: Period,
    include_unapproved: bool,
    r: &Rollup,
) -> pa::Rollup {
    let (name, level) = match unit {
        None => ("Việt Nam".to_owned(), Level::Nation),
        Some(u) => state.trees.get(tree).get(u).map_or((String::new(), Level::Nation), |x| (x.name.clone(), x.level)),
    };
    let c = &r.cell;
    let (figures, counted, allocated) = if include_unapproved {
        (&c.all, c.all_reports, c.all_allocated)
    } else {
        (&c.approved, c.approved_reports, c.approved_allocated)
    };
    pa::Rollup {
        unit: unit.map(convert::unit_out),
        unit_name: name,
        level: convert::level_out(level) as i32,
        tree: convert::tree_out(tree) as i32,
        period: Some(convert::period_out(period)),
        models: Some(counts_out(&r.models)),
        figures: Some(convert::figures_out(figures)),
        reports_counted: counted,
        include_unapproved,
        allocated_figures: r.models_allocated + allocated,
        positions: Some(positions(state)),
        unassigned: None,
    }
}

/// Most unassigned units in one page of a roll-up, and the default.
const MAX_UNASSIGNED_PAGE: usize = 1000;
const DEFAULT_UNASSIGNED_PAGE: usize = 100;

/// What is unassigned at `unit` of `tree` for `period`: the totals, and one page of
/// the units it came from (units of the other tree, in code order).
fn unassigned_out(
    state: &State,
    tree: Tree,
    unit: Option<&UnitCode>,
    period: Period,
    include_unapproved: bool,
    page_size: i32,
    page_token: &str,
) -> Result<Option<pa::Unassigned>, Status> {
    let size = match page_size {
        0 => DEFAULT_UNASSIGNED_PAGE,
        n if n < 0 => return Err(invalid("unassigned_page_size", "must not be negative")),
        n => (n as usize).min(MAX_UNASSIGNED_PAGE),
    };
    let after = if page_token.is_empty() {
        None
    } else {
        Some(UnitCode::parse("unassigned_page_token", page_token).map_err(status::domain)?)
    };
    let from = tree.other();
    let per_unit = state.unassigned_rollups(tree, unit, period);
    if per_unit.is_empty() {
        return Ok(None);
    }
    let pick = |r: &Rollup| {
        let c = &r.cell;
        if include_unapproved { (c.all, c.all_reports) } else { (c.approved, c.approved_reports) }
    };
    let mut models = ModelCounts::default();
    let mut figures = dvk_domain::report::Figures::default();
    let mut reports = 0;
    for (_, r) in &per_unit {
        models.add(&r.models);
        let (f, n) = pick(r);
        figures.add(&f, 1);
        reports += n;
    }
    let start = after.as_ref().map_or(0, |a| per_unit.partition_point(|(c, _)| c <= a));
    let units: Vec<pa::UnassignedUnit> = per_unit[start..]
        .iter()
        .take(size)
        .map(|(code, r)| {
            let (f, n) = pick(r);
            pa::UnassignedUnit {
                unit: Some(convert::unit_out(code)),
                unit_name: state.trees.get(from).get(code).map(|u| u.name.clone()).unwrap_or_default(),
                tree: convert::tree_out(from) as i32,
                models: Some(counts_out(&r.models)),
                figures: Some(convert::figures_out(&f)),
                reports_counted: n,
            }
        })
        .collect();
    let end = start + units.len();
    let next_page_token = if end < per_unit.len() { per_unit[end - 1].0.as_str().to_owned() } else { String::new() };
    Ok(Some(pa::Unassigned {
        models: Some(counts_out(&models)),
        figures: Some(convert::figures_out(&figures)),
        reports_counted: reports,
        units,
        next_page_token,
        total_units: per_unit.len() as u32,
    }))
}

/// The value a ranking sorts by: a model count of the registry, or a reported figure.
fn sort_value(r: &pa::Rollup, by: pa::SortField) -> i64 {
    let m = r.models.as_ref();
    use pa::SortField as S;
    match by {
        S::Unspecified | S::UnitCode => 0,
        S::ModelsRegistered => m.map_or(0, |m| m.registered),
        S::ModelsRecognized => m.map_or(0, |m| m.recognized),
        S::ModelsExemplary => m.map_or(0, |m| m.exemplary),
        figure => match (convert::sorted_figure(figure), &r.figures) {
            (Some(figure), Some(f)) => convert::figure_of(f, figure),
            _ => 0,
        },
    }
}

fn completeness_figures(state: &State, tree: Tree, unit: Option<&UnitCode>, period: Period) -> pa::CompletenessFigures {
    let t = state.trees.get(tree);
    let mut expected = i64::from(unit.is_some());
    for level in [Level::Province, Level::District, Level::Commune] {
        if tree.has_level(level) {
            expected += t.descendants_at(unit, level).iter().filter(|u| Some(&u.code) != unit).count() as i64;
        }
    }
    let cell = state.cell(tree, unit, period).cloned().unwrap_or_default();
    let rate = |n: i64| if expected == 0 { 0.0 } else { n as f64 / expected as f64 };
    pa::CompletenessFigures {
        expected,
        submitted: cell.all_reports,
        on_time: cell.on_time,
        approved: cell.approved_reports,
        submitted_rate: rate(cell.all_reports),
        on_time_rate: rate(cell.on_time),
        approved_rate: rate(cell.approved_reports),
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

impl Aggregation {
    /// Waits until every position up to each of `min` is projected, within `wait`.
    async fn wait_for(&self, min: &[pc::Position], wait: Duration) -> Result<(), Status> {
        for p in min {
            if !SOURCES.contains(&p.source.as_str()) {
                return Err(invalid(
                    "min_positions",
                    format!("{:?} is not a source (registration, reporting)", p.source),
                ));
            }
        }
        let reached =
            |s: &State| min.iter().all(|p| s.seen.get(&p.source).map_or(p.position == 0, |x| x.reached(p.position)));
        let mut projected = self.core.projected.clone();
        let wait_all = async {
            loop {
                if reached(&*self.core.state.read().await) {
                    return Ok(());
                }
                if projected.changed().await.is_err() {
                    return Err(Status::unavailable("the service is shutting down"));
                }
            }
        };
        match tokio::time::timeout(wait, wait_all).await {
            Ok(r) => r,
            Err(_) => {
                let at = positions(&*self.core.state.read().await);
                let at: Vec<String> = at.positions.iter().map(|p| format!("{} {}", p.source, p.position)).collect();
                Err(Status::deadline_exceeded(format!(
                    "the roll-ups have not yet reached the positions asked for (they are at {})",
                    at.join(", ")
                )))
            }
        }
    }

    /// The projection to answer from.
    async fn view(&self, as_of: Option<&pa::AsOf>) -> Result<View<'_>, Status> {
        let Some(point) = as_of.and_then(|a| a.point.as_ref()) else {
            return Ok(View::Live(self.core.state.read().await));
        };
        let point = match point {
            pa::as_of::Point::Time(t) => Point::Time(t.seconds),
            pa::as_of::Point::Positions(set) => {
                let mut bounds = std::collections::BTreeMap::new();
                for p in &set.positions {
                    if !SOURCES.contains(&p.source.as_str()) {
                        return Err(invalid("as_of.positions", format!("{:?} is not a source", p.source)));
                    }
                    bounds.insert(p.source.clone(), p.position);
                }
                Point::Positions(bounds)
            }
        };
        let log = self.core.log.clone();
        let state = tokio::task::spawn_blocking(move || asof::state_at(&log, &point))
            .await
            .map_err(status::internal)?
            .map_err(status::log)?;
        Ok(View::Past(Box::new(state)))
    }

    fn status(&self, state: &State) -> pa::ProjectionStatus {
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
                pa::SourceStatus {
                    source: (*s).to_owned(),
                    received,
                    projected,
                    source_head: 0,
                    lag: received.saturating_sub(projected),
                }
            })
            .collect();
        let r = &self.rebuild;
        pa::ProjectionStatus {
            sources,
            rebuilding: r.running.load(Ordering::SeqCst),
            rebuild_done: r.done.load(Ordering::SeqCst),
            rebuild_total: r.total.load(Ordering::SeqCst),
            rebuilds_completed: r.completed.load(Ordering::SeqCst),
            last_rebuild_time: *r.last_time.lock().expect("lock"),
        }
    }
}

#[tonic::async_trait]
impl AggregationService for Aggregation {
    async fn get_rollup(&self, request: Request<pa::GetRollupRequest>) -> Result<Response<pa::Rollup>, Status> {
        let access = Access::of(&request)?;
        let wait = deadline(&request);
        let req = request.into_inner();
        let tree = tree_in(req.tree)?;
        let period = convert::period_in("period", req.period.as_ref()).map_err(status::domain)?;
        let unit = unit_opt("unit", req.unit.as_ref())?;
        self.wait_for(&req.min_positions, wait).await?;
        let state = self.view(req.as_of.as_ref()).await?;
        require_read(&state, &access, tree, unit.as_ref())?;
        let r = state.rollup(tree, unit.as_ref(), period);
        let mut out = rollup_out(&state, tree, unit.as_ref(), period, req.include_unapproved, &r);
        out.unassigned = unassigned_out(
            &state,
            tree,
            unit.as_ref(),
            period,
            req.include_unapproved,
            req.unassigned_page_size,
            &req.unassigned_page_token,
        )?;
        Ok(Response::new(out))
    }

    async fn list_rollups(
        &self,
        request: Request<pa::ListRollupsRequest>,
    ) -> Result<Response<pa::ListRollupsResponse>, Status> {
        let access = Access::of(&request)?;
        let wait = deadline(&request);
        let req = request.into_inner();
        let tree = tree_in(req.tree)?;
        let period = convert::period_in("period", req.period.as_ref()).map_err(status::domain)?;
        let parent = unit_opt("parent", req.parent.as_ref())?;
        let size = page_size(req.page_size)?;
        let sort = pa::SortField::try_from(req.sort_by).map_err(|_| invalid("sort_by", "is not a sort field"))?;
        let start: usize = if req.page_token.is_empty() {
            0
        } else {
            req.page_token.parse().map_err(|_| invalid("page_token", "is not a token from a previous page"))?
        };
        self.wait_for(&req.min_positions, wait).await?;
        let state = self.view(req.as_of.as_ref()).await?;
        require_read(&state, &access, tree, parent.as_ref())?;
        let t = state.trees.get(tree);
        let units: Vec<UnitCode> = if req.level == 0 {
            t.children(parent.as_ref()).to_vec()
        } else {
            let level = convert::level_in("level", req.level).map_err(status::domain)?;
            if !tree.has_level(level) || level == Level::Nation {
                return Err(invalid("level", format!("the {} tree has no {level:?} level", tree.name())));
            }
            t.descendants_at(parent.as_ref(), level).into_iter().map(|u| u.code.clone()).collect()
        };
        let mut rollups: Vec<pa::Rollup> = units
            .iter()
            .map(|u| {
                let r = state.rollup(tree, Some(u), period);
                rollup_out(&state, tree, Some(u), period, req.include_unapproved, &r)
            })
            .collect();
        let code = |r: &pa::Rollup| r.unit.as_ref().map(|u| u.code.clone()).unwrap_or_default();
        rollups.sort_by(|a, b| {
            let by = sort_value(a, sort).cmp(&sort_value(b, sort));
            let by = if req.descending { by.reverse() } else { by };
            by.then_with(|| code(a).cmp(&code(b)))
        });
        let total = rollups.len();
        let page: Vec<pa::Rollup> = rollups.into_iter().skip(start).take(size).collect();
        let end = start + page.len();
        Ok(Response::new(pa::ListRollupsResponse {
            rollups: page,
            next_page_token: if end < total { end.to_string() } else { String::new() },
            total_size: total as u32,
            positions: Some(positions(&state)),
        }))
    }

    async fn get_time_series(
        &self,
        request: Request<pa::GetTimeSeriesRequest>,
    ) -> Result<Response<pa::GetTimeSeriesResponse>, Status> {
        let access = Access::of(&request)?;
        let req = request.into_inner();
        let tree = tree_in(req.tree)?;
        let unit = unit_opt("unit", req.unit.as_ref())?;
        let from = convert::period_in("from", req.from.as_ref()).map_err(status::domain)?;
        let to = convert::period_in("to", req.to.as_ref()).map_err(status::domain)?;
        if from.kind() != to.kind() {
            return Err(invalid("to", format!("{to} is not the same kind of period as {from}")));
        }
        if to.start() < from.start() {
            return Err(invalid("to", format!("{to} comes before {from}")));
        }
        let state = self.core.state.read().await;
        require_read(&state, &access, tree, unit.as_ref())?;
        let mut points = Vec::new();
        let mut p = Some(from);
        while let Some(period) = p {
            if points.len() == MAX_POINTS {
                return Err(invalid("to", format!("a series has at most {MAX_POINTS} points")));
            }
            let r = state.rollup(tree, unit.as_ref(), period);
            let (figures, counted) = if req.include_unapproved {
                (&r.cell.all, r.cell.all_reports)
            } else {
                (&r.cell.approved, r.cell.approved_reports)
            };
            points.push(pa::TimeSeriesPoint {
                period: Some(convert::period_out(period)),
                models: Some(counts_out(&r.models)),
                figures: Some(convert::figures_out(figures)),
                reports_counted: counted,
            });
            if period == to {
                break;
            }
            p = period.next();
        }
        Ok(Response::new(pa::GetTimeSeriesResponse { points, positions: Some(positions(&state)) }))
    }

    async fn get_completeness(
        &self,
        request: Request<pa::GetCompletenessRequest>,
    ) -> Result<Response<pa::Completeness>, Status> {
        let access = Access::of(&request)?;
        let req = request.into_inner();
        let period = convert::period_in("period", req.period.as_ref()).map_err(status::domain)?;
        let in_force = period.reporting_tree();
        let tree = if req.tree == 0 { in_force } else { tree_in(req.tree)? };
        if tree != in_force {
            return Err(invalid(
                "tree",
                format!("{period} is reported on the {} tree, in force when it closes", in_force.name()),
            ));
        }
        let unit = unit_opt("unit", req.unit.as_ref())?;
        let state = self.core.state.read().await;
        require_read(&state, &access, tree, unit.as_ref())?;
        let children = if req.include_children {
            let t = state.trees.get(tree);
            t.children(unit.as_ref())
                .iter()
                .map(|c| pa::UnitCompleteness {
                    unit: Some(convert::unit_out(c)),
                    unit_name: t.get(c).map(|u| u.name.clone()).unwrap_or_default(),
                    figures: Some(completeness_figures(&state, tree, Some(c), period)),
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Response::new(pa::Completeness {
            unit: unit.as_ref().map(convert::unit_out),
            period: Some(convert::period_out(period)),
            tree: convert::tree_out(tree) as i32,
            figures: Some(completeness_figures(&state, tree, unit.as_ref(), period)),
            children,
        }))
    }

    async fn get_projection_status(
        &self,
        _: Request<pa::GetProjectionStatusRequest>,
    ) -> Result<Response<pa::ProjectionStatus>, Status> {
        let state = self.core.state.read().await;
        Ok(Response::new(self.status(&state)))
    }

    async fn rebuild_projections(
        &self,
        request: Request<pa::RebuildProjectionsRequest>,
    ) -> Result<Response<pa::RebuildProjectionsResponse>, Status> {
        let access = Access::of(&request)?;
        // One rebuild at a time; asking again while one runs reports on it.
        if !self.rebuild.running.swap(true, Ordering::SeqCst) {
            tracing::info!(subject = %access.caller.subject, "rebuild of the projections requested");
            let core = self.core.clone();
            let progress = self.rebuild.clone();
            tokio::spawn(async move {
                match asof::rebuild(&core, &progress).await {
                    Ok(same) => {
                        progress.completed.fetch_add(1, Ordering::SeqCst);
                        *progress.last_time.lock().expect("lock") =
                            Some(prost_types::Timestamp::from(SystemTime::now()));
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
        let state = self.core.state.read().await;
        Ok(Response::new(pa::RebuildProjectionsResponse { status: Some(self.status(&state)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A district's recognition stays a district-level recognition on the 2025 tree
    /// (the level is a fact of the decision), so the breakdown sums to `recognized`
    /// whatever the tree.
    #[test]
    fn recognitions_keep_their_level_in_every_tree() {
        let counts = ModelCounts { recognized_by_level: [2, 3, 1, 0], ..ModelCounts::default() };
        let out = counts_out(&counts);
        let by_level: Vec<(pc::Level, i64)> = out.recognized_by_level.iter().map(|l| (l.level(), l.count)).collect();
        assert_eq!(by_level, [(pc::Level::Commune, 2), (pc::Level::District, 3), (pc::Level::Province, 1)]);
        assert_eq!(by_level.iter().map(|(_, n)| n).sum::<i64>(), out.recognized);
    }
}
