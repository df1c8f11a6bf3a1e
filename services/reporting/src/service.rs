//! The gRPC adapter: parses requests into domain commands, names the report's unit
//! for the policy's scope check (`crate::POLICY`; the guard in front has authenticated
//! the caller and checked its role), checks the schedule, decides against the read
//! models, appends to the log and answers once the read models include the write.

use dvk_codec::{StreamId, convert};
use dvk_domain::report::{Figures, Report, ReportCommand, ReportContext, ReportId, ReportStatus};
use dvk_domain::schedule::Schedule;
use dvk_domain::unit::Level;
use dvk_domain::{Aggregate, DomainError, DomainEvent, Period, Tree, UnitCode};
use dvk_eventlog::ExpectedVersion;
use dvk_proto::reporting::v1::{self as pr, reporting_service_server::ReportingService};
use dvk_runtime::host::{ChangeRequest, Core, Decision, page_size, today};
use dvk_runtime::{Access, Target, status};
use tonic::{Request, Response, Status};

use crate::state::{ReportEntry, State};

pub struct Reporting {
    core: Core<State>,
    schedule: Schedule,
}

impl std::fmt::Debug for Reporting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporting").field("core", &self.core).field("schedule", &self.schedule).finish()
    }
}

fn invalid(field: &str, why: impl Into<String>) -> Status {
    status::domain(DomainError::invalid(field, why))
}

/// The report `id`, if it exists and the caller may read it, with its id in canonical
/// form: an id reads in every form a write accepts (`report-001-2024-h1` is
/// `report-001-2024-H1`).
fn readable<'s>(state: &'s State, access: &Access, id: &str) -> Result<(String, &'s ReportEntry), Status> {
    let parsed = ReportId::parse("report_id", id).map_err(status::domain)?;
    let id = parsed.as_string();
    let entry = state.reports.get(&id).ok_or_else(|| Status::not_found(format!("report {id} not found")))?;
    let tree = entry.report.state().map_or(parsed.period.reporting_tree(), |r| r.tree);
    access.check(&state.trees, &Target::unit(tree, parsed.unit))?;
    Ok((id, entry))
}

/// The report `stream` that a change names.
fn changed<'s>(state: &'s State, stream: &str) -> Result<&'s ReportEntry, Status> {
    state.reports.get(stream).ok_or_else(|| Status::not_found(format!("report {stream} not found")))
}

/// The units expected to report on `tree`: `root` (unless it is the nation) and every
/// unit below it, at every level but the nation.
fn expected_units<'s>(state: &'s State, tree: Tree, root: Option<&UnitCode>) -> Vec<&'s UnitCode> {
    let t = state.trees.get(tree);
    let mut units: Vec<&UnitCode> =
        root.and_then(|r| t.get(r)).filter(|u| u.level != Level::Nation).map(|u| &u.code).into_iter().collect();
    for level in [Level::Province, Level::District, Level::Commune] {
        if tree.has_level(level) {
            units.extend(t.descendants_at(root, level).into_iter().map(|u| &u.code).filter(|c| Some(*c) != root));
        }
    }
    units
}

fn status_out(s: ReportStatus) -> pr::ReportStatus {
    match s {
        ReportStatus::Submitted => pr::ReportStatus::Submitted,
        ReportStatus::Returned => pr::ReportStatus::Returned,
        ReportStatus::Approved => pr::ReportStatus::Approved,
        ReportStatus::Reopened => pr::ReportStatus::Reopened,
    }
}

impl Reporting {
    pub fn new(core: Core<State>, schedule: Schedule) -> Self {
        Self { core, schedule }
    }

    fn report_out(id: &str, entry: &ReportEntry, revision: Option<u32>) -> Result<pr::Report, Status> {
        let r = entry.report.state().expect("stored reports are submitted");
        let shown = match revision {
            None => r.latest(),
            Some(n) => r.revision(n).ok_or_else(|| {
                Status::not_found(format!("report {id} has no revision {n}; the latest is {}", r.latest().number))
            })?,
        };
        let author = entry.authors.get(shown.number as usize - 1).cloned().unwrap_or_default();
        Ok(pr::Report {
            report_id: id.to_owned(),
            unit: Some(convert::unit_out(&r.id.unit)),
            period: Some(convert::period_out(r.id.period)),
            tree: convert::tree_out(r.tree) as i32,
            status: status_out(r.status) as i32,
            revision: Some(pr::Revision {
                revision: shown.number,
                figures: Some(convert::figures_out(&shown.figures)),
                summary: shown.summary.clone(),
                reason: shown.reason.clone(),
                on_time: shown.on_time,
                submitted_by: author.actor,
                submit_time: author.at,
            }),
            latest_revision: r.latest().number,
            approved_revision: r.approved_revision.unwrap_or(0),
            return_reason: r.return_reason.clone().unwrap_or_default(),
            reopen_reason: r.reopen_reason.clone().unwrap_or_default(),
            version: entry.version,
            update_time: entry.updated,
        })
    }

    /// An expected report not submitted yet, as `ListReports` shows it.
    fn missing_out(id: &ReportId, tree: Tree) -> pr::Report {
        pr::Report {
            report_id: id.as_string(),
            unit: Some(convert::unit_out(&id.unit)),
            period: Some(convert::period_out(id.period)),
            tree: convert::tree_out(tree) as i32,
            status: pr::ReportStatus::Missing as i32,
            ..pr::Report::default()
        }
    }

    fn answer(&self, receipt: &dvk_eventlog::Receipt, id: &str, state_revision: u32) -> pr::WriteReportResponse {
        pr::WriteReportResponse {
            report_id: id.to_owned(),
            version: receipt.last_version,
            revision: state_revision,
            position: Some(self.core.position(receipt.last_source_position)),
        }
    }

    /// The revision a write left the report at, read from its last event, so that a
    /// retried request is answered exactly as the first time.
    fn revision_of(&self, receipt: &dvk_eventlog::Receipt) -> Result<u32, Status> {
        use dvk_proto::events::v1::envelope::Payload as P;
        let record =
            self.core.log.get(receipt.last_position).map_err(status::log)?.ok_or_else(|| {
                status::internal(format!("acknowledged position {} is missing", receipt.last_position))
            })?;
        Ok(match record.envelope().map_err(status::log)?.payload {
            Some(P::ReportSubmitted(e)) => e.revision,
            Some(P::ReportAmended(e)) => e.revision,
            Some(P::ReportReturned(e)) => e.revision,
            Some(P::ReportApproved(e)) => e.revision,
            Some(P::ReportReopened(e)) => e.revision,
            _ => 0,
        })
    }

    /// One RPC that changes a report: the policy's scope over the report's unit
    /// (before a retry may be answered), the version, then `command` turns the request
    /// into a domain command.
    async fn change<R: ChangeRequest>(
        &self,
        request: Request<R>,
        command: impl FnOnce(&R, &ReportEntry, &Schedule) -> Result<ReportCommand, Status> + Send,
    ) -> Result<Response<pr::WriteReportResponse>, Status> {
        let access = Access::of(&request)?;
        let req = request.into_inner();
        let (request_id, report_id, expected) = req.target();
        let body = req.body();
        let id = ReportId::parse("report_id", report_id).map_err(status::domain)?;
        let stream = id.as_string();
        if expected == 0 {
            return Err(invalid("expected_version", "is required: the report's current version"));
        }
        let target = |state: &State| -> Result<Target, Status> {
            let r = changed(state, &stream)?.report.state().expect("stored reports are submitted");
            Ok(Target::unit(r.tree, r.id.unit.clone()))
        };
        let receipt = self
            .core
            .write(&access, request_id, &body, target, |state| {
                let entry = changed(state, &stream)?;
                if entry.version != expected {
                    return Err(Status::aborted(format!(
                        "report {stream} is at version {}, not {expected}: read it again and retry",
                        entry.version
                    )));
                }
                let command = command(&req, entry, &self.schedule)?;
                let ctx = ReportContext { units: &state.trees, today: today() };
                let events = entry.report.handle(command, ctx).map_err(status::domain)?;
                Ok(Decision {
                    stream: StreamId::Report(id.clone()),
                    expected: ExpectedVersion::Exact(expected),
                    events: events.into_iter().map(DomainEvent::Report).collect(),
                })
            })
            .await?;
        Ok(Response::new(self.answer(&receipt, &stream, self.revision_of(&receipt)?)))
    }
}

#[tonic::async_trait]
impl ReportingService for Reporting {
    async fn submit_report(
        &self,
        request: Request<pr::SubmitReportRequest>,
    ) -> Result<Response<pr::WriteReportResponse>, Status> {
        let access = Access::of(&request)?;
        let req = request.into_inner();
        let mut v = dvk_domain::error::Violations::new();
        let unit = v.check(convert::unit_in("unit", req.unit.as_ref()));
        let period = v.check(convert::period_in("period", req.period.as_ref()));
        let figures = convert::figures_in(req.figures.as_ref());
        v.check(figures.validate("figures"));
        let (unit, period) = v.finish(|| (unit.expect("checked"), period.expect("checked"))).map_err(status::domain)?;
        let id = ReportId { unit, period };
        let stream = id.as_string();
        let body = pr::SubmitReportRequest { request_id: String::new(), ..req.clone() };
        let tree = period.reporting_tree();
        let target = |state: &State| -> Result<Target, Status> {
            let Some(u) = state.trees.get(tree).get(&id.unit) else {
                return Err(invalid(
                    "unit",
                    format!("{} is not a unit of the {} tree, in force when {period} closes", id.unit, tree.name()),
                ));
            };
            if u.level == Level::Nation {
                return Err(invalid("unit", "the nation does not report; its figures are the roll-up"));
            }
            Ok(Target::unit(tree, id.unit.clone()))
        };
        let receipt = self
            .core
            .write(&access, &req.request_id, &body, target, |state| {
                if state.reports.contains_key(&stream) {
                    return Err(Status::already_exists(format!("{stream} is already submitted; amend it instead")));
                }
                let timing = self.schedule.check(period, today(), false).map_err(status::domain)?;
                let command = ReportCommand::Submit {
                    id: id.clone(),
                    figures,
                    summary: req.summary.clone(),
                    on_time: timing.on_time,
                };
                let ctx = ReportContext { units: &state.trees, today: today() };
                let events = Report::default().handle(command, ctx).map_err(status::domain)?;
                Ok(Decision {
                    stream: StreamId::Report(id.clone()),
                    expected: ExpectedVersion::NoStream,
                    events: events.into_iter().map(DomainEvent::Report).collect(),
                })
            })
            .await?;
        Ok(Response::new(self.answer(&receipt, &stream, 1)))
    }

    async fn amend_report(
        &self,
        request: Request<pr::AmendReportRequest>,
    ) -> Result<Response<pr::WriteReportResponse>, Status> {
        self.change(request, |req, entry, schedule| {
            let figures: Figures = convert::figures_in(req.figures.as_ref());
            figures.validate("figures").map_err(status::domain)?;
            let r = entry.report.state().expect("stored reports are submitted");
            // An approved report is refused by the domain (reopen first), whatever the date.
            let on_time = if r.status == ReportStatus::Approved {
                false
            } else {
                schedule.check(r.id.period, today(), entry.unlocked).map_err(status::domain)?.on_time
            };
            Ok(ReportCommand::Amend { figures, summary: req.summary.clone(), reason: req.reason.clone(), on_time })
        })
        .await
    }

    async fn return_report(
        &self,
        request: Request<pr::ReturnReportRequest>,
    ) -> Result<Response<pr::WriteReportResponse>, Status> {
        self.change(request, |req, _, _| Ok(ReportCommand::Return { reason: req.reason.clone() })).await
    }

    async fn approve_report(
        &self,
        request: Request<pr::ApproveReportRequest>,
    ) -> Result<Response<pr::WriteReportResponse>, Status> {
        self.change(request, |_, _, _| Ok(ReportCommand::Approve)).await
    }

    async fn reopen_report(
        &self,
        request: Request<pr::ReopenReportRequest>,
    ) -> Result<Response<pr::WriteReportResponse>, Status> {
        self.change(request, |req, _, _| Ok(ReportCommand::Reopen { reason: req.reason.clone() })).await
    }

    async fn get_report(&self, request: Request<pr::GetReportRequest>) -> Result<Response<pr::Report>, Status> {
        let access = Access::of(&request)?;
        let req = request.into_inner();
        let state = self.core.state.read().await;
        let (id, entry) = readable(&state, &access, &req.report_id)?;
        let revision = (req.revision != 0).then_some(req.revision);
        Ok(Response::new(Self::report_out(&id, entry, revision)?))
    }

    async fn list_reports(
        &self,
        request: Request<pr::ListReportsRequest>,
    ) -> Result<Response<pr::ListReportsResponse>, Status> {
        let access = Access::of(&request)?;
        let req = request.into_inner();
        let size = page_size(req.page_size)?;
        let unit = match req.unit.as_ref() {
            Some(u) if !u.code.is_empty() => Some(UnitCode::parse("unit", &u.code).map_err(status::domain)?),
            _ => access.caller.unit.clone(),
        };
        let period = match req.period.as_ref() {
            Some(p) if !p.code.is_empty() => Some(Period::parse("period", &p.code).map_err(status::domain)?),
            _ => None,
        };
        let mut tree =
            if req.tree == 0 { None } else { Some(convert::tree_in("tree", req.tree).map_err(status::domain)?) };
        if let Some(p) = period {
            let in_force = p.reporting_tree();
            if tree.is_some_and(|t| t != in_force) {
                return Err(invalid(
                    "tree",
                    format!("{p} is reported on the {} tree, in force when it closes", in_force.name()),
                ));
            }
            tree = Some(in_force);
        }
        let status_filter = match pr::ReportStatus::try_from(req.status) {
            Ok(pr::ReportStatus::Unspecified) => None,
            Ok(s) => Some(s),
            Err(_) => return Err(invalid("status", "is not a report status")),
        };
        let after = match req.page_token.as_str() {
            "" => String::new(),
            t => ReportId::parse("page_token", t).map_err(status::domain)?.as_string(),
        };
        let after = after.as_str();
        let state = self.core.state.read().await;
        if let Some(u) = &unit {
            let known = match tree {
                Some(t) => state.trees.get(t).get(u).is_some(),
                None => [Tree::Pre2025, Tree::Y2025].iter().any(|t| state.trees.get(*t).get(u).is_some()),
            };
            if !known {
                let which = tree.map_or("any".to_owned(), |t| format!("the {}", t.name()));
                return Err(Status::not_found(format!("{u} is not a unit of {which} tree")));
            }
            let t =
                tree.unwrap_or(if state.trees.get(Tree::Y2025).get(u).is_some() { Tree::Y2025 } else { Tree::Pre2025 });
            access.check(&state.trees, &Target::unit(t, u.clone()))?;
        }
        let in_subtree = |t: Tree, code: &UnitCode| {
            unit.as_ref().is_none_or(|u| state.trees.get(t).is_within(u, code)) && access.sees(&state.trees, t, code)
        };

        // Expected reports: every unit below the nation in the subtree.
        let completeness = match (period, tree) {
            (Some(p), Some(t)) => {
                let mut c = pr::Completeness::default();
                for u in expected_units(&state, t, unit.as_ref()) {
                    if !access.sees(&state.trees, t, u) {
                        continue;
                    }
                    c.expected += 1;
                    let id = ReportId { unit: u.clone(), period: p }.as_string();
                    if let Some(r) = state.reports.get(&id).and_then(|e| e.report.state()) {
                        c.submitted += 1;
                        c.on_time += u32::from(r.revisions[0].on_time);
                        c.approved += u32::from(r.status == ReportStatus::Approved);
                    }
                }
                Some(c)
            }
            _ => None,
        };

        let mut reports = Vec::new();
        let mut total = 0usize;
        let mut more = false;
        let mut last = String::new();
        let mut take = |id: &str, make: &dyn Fn() -> Result<pr::Report, Status>| -> Result<(), Status> {
            total += 1;
            if !after.is_empty() && id <= after {
                return Ok(());
            }
            if reports.len() == size {
                more = true;
            } else {
                reports.push(make()?);
                last = id.to_owned();
            }
            Ok(())
        };
        if status_filter == Some(pr::ReportStatus::Missing) {
            let (Some(p), Some(t)) = (period, tree) else {
                return Err(invalid("period", "is required to list missing reports"));
            };
            let mut ids: Vec<ReportId> = expected_units(&state, t, unit.as_ref())
                .into_iter()
                .filter(|u| access.sees(&state.trees, t, u))
                .map(|u| ReportId { unit: u.clone(), period: p })
                .filter(|id| !state.reports.contains_key(&id.as_string()))
                .collect();
            ids.sort_by_key(ReportId::as_string);
            for id in &ids {
                take(&id.as_string(), &|| Ok(Self::missing_out(id, t)))?;
            }
        } else {
            for (id, entry) in &state.reports {
                let Some(r) = entry.report.state() else { continue };
                let matches = tree.is_none_or(|t| r.tree == t)
                    && period.is_none_or(|p| r.id.period == p)
                    && status_filter.is_none_or(|s| status_out(r.status) == s)
                    && in_subtree(r.tree, &r.id.unit);
                if matches {
                    take(id, &|| Self::report_out(id, entry, None))?;
                }
            }
        }
        Ok(Response::new(pr::ListReportsResponse {
            reports,
            next_page_token: if more { last } else { String::new() },
            total_size: total as u32,
            completeness,
        }))
    }

    async fn get_report_history(
        &self,
        request: Request<pr::GetReportHistoryRequest>,
    ) -> Result<Response<pr::GetReportHistoryResponse>, Status> {
        let access = Access::of(&request)?;
        let req = request.into_inner();
        let size = page_size(req.page_size)?;
        let id = {
            let state = self.core.state.read().await;
            readable(&state, &access, &req.report_id)?.0
        };
        let (events, next) = self.core.history(&id, size, &req.page_token)?;
        Ok(Response::new(pr::GetReportHistoryResponse { events, next_page_token: next }))
    }
}
