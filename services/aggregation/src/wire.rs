//! The aggregation's wire: requests read into checked queries (a refusal names the
//! request's field), and what the queries read written back as the proto answers.

use std::collections::BTreeMap;
use std::time::Duration;

use dvk_codec::convert;
use dvk_domain::unit::Level;
use dvk_domain::{DomainError, Tree, UnitCode};
use dvk_proto::aggregation::v1 as pa;
use dvk_proto::common::v1 as pc;
use dvk_runtime::host::page_size;
use tonic::Request;

use crate::app::{
    Completeness, CompletenessCounts, CompletenessQuery, Fresh, ListQuery, Positions, ProjectionStatus, RollupPage,
    RollupQuery, RollupView, SOURCES, Series, SeriesQuery, SortBy, Unassigned, UnassignedPage,
};
use crate::asof::Point;
use crate::error::Error;
use crate::projection::ModelCounts;

/// How long a read-your-writes wait lasts when the caller sets no deadline.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// Most points of a time series.
const MAX_POINTS: usize = 400;
/// Most unassigned units in one page of a roll-up, and the default.
const MAX_UNASSIGNED_PAGE: usize = 1000;
const DEFAULT_UNASSIGNED_PAGE: usize = 100;

fn invalid(field: &str, why: impl Into<String>) -> Error {
    DomainError::invalid(field, why).into()
}

fn tree_in(t: i32) -> Result<Tree, Error> {
    if t == 0 {
        return Err(invalid("tree", "is required: TREE_2025 (province → commune) or TREE_PRE2025"));
    }
    Ok(convert::tree_in("tree", t)?)
}

fn unit_opt(field: &str, u: Option<&pc::UnitCode>) -> Result<Option<UnitCode>, Error> {
    match u {
        Some(u) if !u.code.trim().is_empty() => Ok(Some(UnitCode::parse(field, &u.code)?)),
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

fn source(name: &str) -> Option<&'static str> {
    SOURCES.iter().find(|s| **s == name).copied()
}

/// The read-your-writes positions of a request, waited for until its deadline.
fn fresh(min: &[pc::Position], within: Duration) -> Result<Fresh, Error> {
    let min = min
        .iter()
        .map(|p| match source(&p.source) {
            Some(s) => Ok((s, p.position)),
            None => Err(invalid("min_positions", format!("{:?} is not a source (registration, reporting)", p.source))),
        })
        .collect::<Result<_, _>>()?;
    Ok(Fresh { min, within })
}

/// The point in the past a request asks about; None: now.
fn as_of(a: Option<&pa::AsOf>) -> Result<Option<Point>, Error> {
    let Some(point) = a.and_then(|a| a.point.as_ref()) else { return Ok(None) };
    Ok(Some(match point {
        pa::as_of::Point::Time(t) => Point::Time(t.seconds),
        pa::as_of::Point::Positions(set) => {
            let mut bounds = BTreeMap::new();
            for p in &set.positions {
                if source(&p.source).is_none() {
                    return Err(invalid("as_of.positions", format!("{:?} is not a source", p.source)));
                }
                bounds.insert(p.source.clone(), p.position);
            }
            Point::Positions(bounds)
        }
    }))
}

fn unassigned_page(size: i32, token: &str) -> Result<UnassignedPage, Error> {
    let size = match size {
        0 => DEFAULT_UNASSIGNED_PAGE,
        n if n < 0 => return Err(invalid("unassigned_page_size", "must not be negative")),
        n => (n as usize).min(MAX_UNASSIGNED_PAGE),
    };
    let after = if token.is_empty() { None } else { Some(UnitCode::parse("unassigned_page_token", token)?) };
    Ok(UnassignedPage { size, after })
}

pub fn get_rollup(request: Request<pa::GetRollupRequest>) -> Result<RollupQuery, Error> {
    let within = deadline(&request);
    let req = request.into_inner();
    Ok(RollupQuery {
        tree: tree_in(req.tree)?,
        period: convert::period_in("period", req.period.as_ref())?,
        unit: unit_opt("unit", req.unit.as_ref())?,
        include_unapproved: req.include_unapproved,
        fresh: fresh(&req.min_positions, within)?,
        as_of: as_of(req.as_of.as_ref())?,
        unassigned: unassigned_page(req.unassigned_page_size, &req.unassigned_page_token)?,
    })
}

fn sort_by(s: i32) -> Result<SortBy, Error> {
    use pa::SortField as S;
    Ok(match S::try_from(s).map_err(|_| invalid("sort_by", "is not a sort field"))? {
        S::Unspecified | S::UnitCode => SortBy::Code,
        S::ModelsRegistered => SortBy::Registered,
        S::ModelsRecognized => SortBy::Recognized,
        S::ModelsExemplary => SortBy::Exemplary,
        figure => convert::sorted_figure(figure).map_or(SortBy::Code, SortBy::Figure),
    })
}

pub fn list_rollups(request: Request<pa::ListRollupsRequest>) -> Result<ListQuery, Error> {
    let within = deadline(&request);
    let req = request.into_inner();
    let tree = tree_in(req.tree)?;
    let period = convert::period_in("period", req.period.as_ref())?;
    let parent = unit_opt("parent", req.parent.as_ref())?;
    let size = page_size(req.page_size)?;
    let sort = sort_by(req.sort_by)?;
    let start: usize = if req.page_token.is_empty() {
        0
    } else {
        req.page_token.parse().map_err(|_| invalid("page_token", "is not a token from a previous page"))?
    };
    let fresh = fresh(&req.min_positions, within)?;
    let as_of = as_of(req.as_of.as_ref())?;
    let level = match req.level {
        0 => None,
        l => {
            let level = convert::level_in("level", l)?;
            if !tree.has_level(level) || level == Level::Nation {
                return Err(invalid("level", format!("the {} tree has no {level:?} level", tree.name())));
            }
            Some(level)
        }
    };
    Ok(ListQuery {
        tree,
        parent,
        level,
        period,
        include_unapproved: req.include_unapproved,
        sort,
        descending: req.descending,
        size,
        start,
        fresh,
        as_of,
    })
}

pub fn get_time_series(req: pa::GetTimeSeriesRequest) -> Result<SeriesQuery, Error> {
    let tree = tree_in(req.tree)?;
    let unit = unit_opt("unit", req.unit.as_ref())?;
    let from = convert::period_in("from", req.from.as_ref())?;
    let to = convert::period_in("to", req.to.as_ref())?;
    if from.kind() != to.kind() {
        return Err(invalid("to", format!("{to} is not the same kind of period as {from}")));
    }
    if to.start() < from.start() {
        return Err(invalid("to", format!("{to} comes before {from}")));
    }
    let mut periods = Vec::new();
    let mut p = Some(from);
    while let Some(period) = p {
        if periods.len() == MAX_POINTS {
            return Err(invalid("to", format!("a series has at most {MAX_POINTS} points")));
        }
        periods.push(period);
        if period == to {
            break;
        }
        p = period.next();
    }
    Ok(SeriesQuery { tree, unit, periods, include_unapproved: req.include_unapproved })
}

pub fn get_completeness(req: pa::GetCompletenessRequest) -> Result<CompletenessQuery, Error> {
    let period = convert::period_in("period", req.period.as_ref())?;
    let in_force = period.reporting_tree();
    let tree = if req.tree == 0 { in_force } else { tree_in(req.tree)? };
    if tree != in_force {
        return Err(invalid(
            "tree",
            format!("{period} is reported on the {} tree, in force when it closes", in_force.name()),
        ));
    }
    let unit = unit_opt("unit", req.unit.as_ref())?;
    Ok(CompletenessQuery { tree, unit, period, include_children: req.include_children })
}

fn counts(c: &ModelCounts) -> pa::ModelCounts {
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

fn positions(p: &Positions) -> pc::PositionSet {
    pc::PositionSet {
        positions: p
            .iter()
            .map(|(source, position)| pc::Position { source: (*source).to_owned(), position: *position })
            .collect(),
    }
}

fn unassigned(u: Unassigned) -> pa::Unassigned {
    let tree = convert::tree_out(u.from) as i32;
    pa::Unassigned {
        models: Some(counts(&u.models)),
        figures: Some(convert::figures_out(&u.figures)),
        reports_counted: u.reports_counted,
        units: u
            .units
            .into_iter()
            .map(|x| pa::UnassignedUnit {
                unit: Some(convert::unit_out(&x.unit)),
                unit_name: x.name,
                tree,
                models: Some(counts(&x.models)),
                figures: Some(convert::figures_out(&x.figures)),
                reports_counted: x.reports_counted,
            })
            .collect(),
        next_page_token: u.next.map(|c| c.as_str().to_owned()).unwrap_or_default(),
        total_units: u.total_units as u32,
    }
}

pub fn rollup(r: RollupView) -> pa::Rollup {
    pa::Rollup {
        unit: r.unit.as_ref().map(convert::unit_out),
        unit_name: r.unit_name,
        level: convert::level_out(r.level) as i32,
        tree: convert::tree_out(r.tree) as i32,
        period: Some(convert::period_out(r.period)),
        models: Some(counts(&r.models)),
        figures: Some(convert::figures_out(&r.figures)),
        reports_counted: r.reports_counted,
        include_unapproved: r.include_unapproved,
        allocated_figures: r.allocated,
        positions: Some(positions(&r.positions)),
        unassigned: r.unassigned.map(unassigned),
    }
}

pub fn rollups(page: RollupPage) -> pa::ListRollupsResponse {
    pa::ListRollupsResponse {
        rollups: page.rollups.into_iter().map(rollup).collect(),
        next_page_token: page.next.map(|n| n.to_string()).unwrap_or_default(),
        total_size: page.total as u32,
        positions: Some(positions(&page.positions)),
    }
}

pub fn time_series(s: Series) -> pa::GetTimeSeriesResponse {
    pa::GetTimeSeriesResponse {
        points: s
            .points
            .into_iter()
            .map(|p| pa::TimeSeriesPoint {
                period: Some(convert::period_out(p.period)),
                models: Some(counts(&p.models)),
                figures: Some(convert::figures_out(&p.figures)),
                reports_counted: p.reports_counted,
            })
            .collect(),
        positions: Some(positions(&s.positions)),
    }
}

fn completeness_counts(c: CompletenessCounts) -> pa::CompletenessFigures {
    pa::CompletenessFigures {
        expected: c.expected,
        submitted: c.submitted,
        on_time: c.on_time,
        approved: c.approved,
        submitted_rate: c.rate(c.submitted),
        on_time_rate: c.rate(c.on_time),
        approved_rate: c.rate(c.approved),
    }
}

pub fn completeness(c: Completeness) -> pa::Completeness {
    pa::Completeness {
        unit: c.unit.as_ref().map(convert::unit_out),
        unit_name: c.unit_name,
        period: Some(convert::period_out(c.period)),
        tree: convert::tree_out(c.tree) as i32,
        figures: Some(completeness_counts(c.counts)),
        children: c
            .children
            .into_iter()
            .map(|u| pa::UnitCompleteness {
                unit: Some(convert::unit_out(&u.unit)),
                unit_name: u.name,
                figures: Some(completeness_counts(u.counts)),
            })
            .collect(),
    }
}

pub fn projection_status(s: ProjectionStatus) -> pa::ProjectionStatus {
    pa::ProjectionStatus {
        sources: s
            .sources
            .into_iter()
            .map(|x| pa::SourceStatus {
                source: x.source.to_owned(),
                lag: x.lag(),
                received: x.received,
                projected: x.projected,
                source_head: x.head.unwrap_or(0),
            })
            .collect(),
        rebuilding: s.rebuilding,
        rebuild_done: s.rebuild_done,
        rebuild_total: s.rebuild_total,
        rebuilds_completed: s.rebuilds_completed,
        last_rebuild_time: s.last_rebuild.map(prost_types::Timestamp::from),
    }
}

pub fn rebuild(s: ProjectionStatus) -> pa::RebuildProjectionsResponse {
    pa::RebuildProjectionsResponse { status: Some(projection_status(s)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    /// The status a refused request gets: its code, message and the fields its
    /// violations name.
    fn refusal<T: std::fmt::Debug>(r: Result<T, Error>) -> (Code, String) {
        let s = Status::from(r.expect_err("refused"));
        (s.code(), s.message().to_owned())
    }

    fn invalid_as(message: &str) -> (Code, String) {
        (Code::InvalidArgument, message.to_owned())
    }

    fn period(code: &str) -> Option<pc::Period> {
        Some(pc::Period { code: code.into() })
    }

    fn rollup_request() -> pa::GetRollupRequest {
        pa::GetRollupRequest { tree: pc::Tree::Pre2025 as i32, period: period("2024-H1"), ..Default::default() }
    }

    #[test]
    fn a_roll_up_request_names_the_field_it_is_refused_for() {
        let req = |f: fn(&mut pa::GetRollupRequest)| {
            let mut r = rollup_request();
            f(&mut r);
            get_rollup(Request::new(r))
        };
        assert_eq!(
            refusal(req(|r| r.tree = 0)),
            invalid_as("tree: is required: TREE_2025 (province → commune) or TREE_PRE2025")
        );
        assert_eq!(
            refusal(req(|r| r.min_positions = vec![pc::Position { source: "kafka".into(), position: 1 }])),
            invalid_as("min_positions: \"kafka\" is not a source (registration, reporting)")
        );
        assert_eq!(
            refusal(req(|r| {
                let set = pc::PositionSet { positions: vec![pc::Position { source: "x".into(), position: 1 }] };
                r.as_of = Some(pa::AsOf { point: Some(pa::as_of::Point::Positions(set)) });
            })),
            invalid_as("as_of.positions: \"x\" is not a source")
        );
        assert_eq!(
            refusal(req(|r| r.unassigned_page_size = -1)),
            invalid_as("unassigned_page_size: must not be negative")
        );
        let q = req(|r| r.unassigned_page_size = 5000).unwrap();
        assert_eq!((q.unassigned.size, q.unassigned.after), (MAX_UNASSIGNED_PAGE, None));
        let q = get_rollup(Request::new(rollup_request())).unwrap();
        assert_eq!((q.unassigned.size, q.as_of.is_none(), q.unit), (DEFAULT_UNASSIGNED_PAGE, true, None));
    }

    #[test]
    fn a_ranking_request_names_the_field_it_is_refused_for() {
        let req = |f: fn(&mut pa::ListRollupsRequest)| {
            let mut r = pa::ListRollupsRequest {
                tree: pc::Tree::Tree2025 as i32,
                period: period("2026-H1"),
                ..Default::default()
            };
            f(&mut r);
            list_rollups(Request::new(r))
        };
        assert_eq!(refusal(req(|r| r.sort_by = 99)), invalid_as("sort_by: is not a sort field"));
        assert_eq!(
            refusal(req(|r| r.page_token = "x".into())),
            invalid_as("page_token: is not a token from a previous page")
        );
        assert_eq!(refusal(req(|r| r.page_size = -1)), invalid_as("page_size: must not be negative"));
        assert_eq!(
            refusal(req(|r| r.level = pc::Level::District as i32)),
            invalid_as("level: the 2025 tree has no District level")
        );
        let q = req(|r| r.sort_by = pa::SortField::Workdays as i32).unwrap();
        assert_eq!(q.sort, SortBy::Figure(dvk_domain::report::Figure::Workdays));
        let q = req(|r| r.sort_by = pa::SortField::UnitCode as i32).unwrap();
        assert_eq!((q.sort, q.level, q.size, q.start), (SortBy::Code, None, 100, 0));
    }

    #[test]
    fn a_series_is_of_one_kind_of_period_in_order_and_bounded() {
        let req = |from: &str, to: &str| {
            get_time_series(pa::GetTimeSeriesRequest {
                tree: pc::Tree::Pre2025 as i32,
                from: period(from),
                to: period(to),
                ..Default::default()
            })
        };
        assert_eq!(refusal(req("2024", "2024-H1")), invalid_as("to: 2024-H1 is not the same kind of period as 2024"));
        assert_eq!(refusal(req("2024-H2", "2024-H1")), invalid_as("to: 2024-H1 comes before 2024-H2"));
        assert_eq!(req("2023-H1", "2024-H2").unwrap().periods.len(), 4);
    }

    #[test]
    fn completeness_is_asked_on_the_tree_in_force() {
        let req = |tree: pc::Tree| {
            get_completeness(pa::GetCompletenessRequest {
                tree: tree as i32,
                period: period("2024-H1"),
                ..Default::default()
            })
        };
        assert_eq!(
            refusal(req(pc::Tree::Tree2025)),
            invalid_as("tree: 2024-H1 is reported on the pre2025 tree, in force when it closes")
        );
        assert_eq!(req(pc::Tree::Unspecified).unwrap().tree, Tree::Pre2025);
    }

    #[test]
    fn the_wait_ends_before_the_callers_deadline() {
        let wait = |timeout: Option<&str>| {
            let mut r = Request::new(());
            if let Some(t) = timeout {
                r.metadata_mut().insert("grpc-timeout", t.parse().unwrap());
            }
            deadline(&r)
        };
        assert_eq!(wait(None), DEFAULT_WAIT);
        assert_eq!(wait(Some("5S")), Duration::from_millis(4500));
        assert_eq!(wait(Some("10m")), Duration::from_millis(8));
        assert_eq!(wait(Some("x")), DEFAULT_WAIT);
    }

    /// A district's recognition stays a district-level recognition on the 2025 tree
    /// (the level is a fact of the decision), so the breakdown sums to `recognized`
    /// whatever the tree.
    #[test]
    fn recognitions_keep_their_level_in_every_tree() {
        let c = ModelCounts { recognized_by_level: [2, 3, 1, 0], ..ModelCounts::default() };
        let out = counts(&c);
        let by_level: Vec<(pc::Level, i64)> = out.recognized_by_level.iter().map(|l| (l.level(), l.count)).collect();
        assert_eq!(by_level, [(pc::Level::Commune, 2), (pc::Level::District, 3), (pc::Level::Province, 1)]);
        assert_eq!(by_level.iter().map(|(_, n)| n).sum::<i64>(), out.recognized);
    }
}
