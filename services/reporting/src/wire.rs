//! The reporting service's wire forms: requests parsed into checked domain values
//! (errors name the request's fields as the client sent them), and what the
//! application answers mapped to the responses.

use dvk_codec::convert;
use dvk_domain::report::{ReportId, ReportStatus};
use dvk_domain::{DomainError, Period, UnitCode};
use dvk_proto::reporting::v1 as pr;
use dvk_runtime::host::page_size;

use crate::app::{
    Change, Completeness, Edit, History, HistoryPage, Listed, Listing, ReportAt, ReportQuery, ReportView, StatusFilter,
    Submit, Write, Written,
};
use crate::error::Error;

// ---- requests ----

/// Every field is checked, so that one answer names all that are wrong.
pub fn submit_report(req: pr::SubmitReportRequest) -> Result<Write<Submit, pr::SubmitReportRequest>, Error> {
    let mut v = dvk_domain::error::Violations::new();
    let unit = v.check(convert::unit_in("unit", req.unit.as_ref()));
    let period = v.check(convert::period_in("period", req.period.as_ref()));
    let figures = convert::figures_in(req.figures.as_ref());
    v.check(figures.validate("figures"));
    let (unit, period) = v.finish(|| (unit.expect("checked"), period.expect("checked")))?;
    let mut body = req;
    let request_id = std::mem::take(&mut body.request_id);
    Ok(Write {
        request_id,
        command: Submit { id: ReportId { unit, period }, figures, summary: body.summary.clone() },
        body,
    })
}

pub fn amend_report(req: pr::AmendReportRequest) -> Result<Write<Change, pr::AmendReportRequest>, Error> {
    let edit = Edit::Amend {
        figures: convert::figures_in(req.figures.as_ref()),
        summary: req.summary.clone(),
        reason: req.reason.clone(),
    };
    change(req, edit)
}

pub fn return_report(req: pr::ReturnReportRequest) -> Result<Write<Change, pr::ReturnReportRequest>, Error> {
    let edit = Edit::Return { reason: req.reason.clone() };
    change(req, edit)
}

pub fn approve_report(req: pr::ApproveReportRequest) -> Result<Write<Change, pr::ApproveReportRequest>, Error> {
    change(req, Edit::Approve)
}

pub fn reopen_report(req: pr::ReopenReportRequest) -> Result<Write<Change, pr::ReopenReportRequest>, Error> {
    let edit = Edit::Reopen { reason: req.reason.clone() };
    change(req, edit)
}

/// A request that changes an existing report: it names its request id, the report
/// and the expected version; a retry must repeat its body exactly.
trait ChangeRequest: prost::Message + Clone {
    /// The request id, the report id and the expected version.
    fn target(&self) -> (&str, &str, u64);
    /// The request without its request id: what a retry must repeat exactly.
    fn body(&self) -> Self;
}

macro_rules! change_request {
    ($($t:ty),* $(,)?) => {$(
        impl ChangeRequest for $t {
            fn target(&self) -> (&str, &str, u64) {
                (&self.request_id, &self.report_id, self.expected_version)
            }
            fn body(&self) -> Self {
                Self { request_id: String::new(), ..self.clone() }
            }
        }
    )*};
}

change_request!(pr::AmendReportRequest, pr::ReturnReportRequest, pr::ApproveReportRequest, pr::ReopenReportRequest);

/// What every change names: the report and the version the client read.
fn change<R: ChangeRequest>(req: R, edit: Edit) -> Result<Write<Change, R>, Error> {
    let (request_id, report_id, expected) = req.target();
    let id = ReportId::parse("report_id", report_id)?;
    if expected == 0 {
        return Err(DomainError::invalid("expected_version", "is required: the report's current version").into());
    }
    Ok(Write { request_id: request_id.to_owned(), body: req.body(), command: Change { id, expected, edit } })
}

/// A report id reads in every form a write accepts (`report-001-2024-h1` is
/// `report-001-2024-H1`).
pub fn get_report(req: pr::GetReportRequest) -> Result<ReportAt, Error> {
    let id = ReportId::parse("report_id", &req.report_id)?;
    Ok(ReportAt { id, revision: (req.revision != 0).then_some(req.revision) })
}

pub fn list_reports(req: pr::ListReportsRequest) -> Result<ReportQuery, Error> {
    let page_size = page_size(req.page_size)?;
    let unit = match req.unit.as_ref() {
        Some(u) if !u.code.is_empty() => Some(UnitCode::parse("unit", &u.code)?),
        _ => None,
    };
    let period = match req.period.as_ref() {
        Some(p) if !p.code.is_empty() => Some(Period::parse("period", &p.code)?),
        _ => None,
    };
    let mut tree = if req.tree == 0 { None } else { Some(convert::tree_in("tree", req.tree)?) };
    if let Some(p) = period {
        let in_force = p.reporting_tree();
        if tree.is_some_and(|t| t != in_force) {
            return Err(DomainError::invalid(
                "tree",
                format!("{p} is reported on the {} tree, in force when it closes", in_force.name()),
            )
            .into());
        }
        tree = Some(in_force);
    }
    let status = match pr::ReportStatus::try_from(req.status) {
        Ok(pr::ReportStatus::Unspecified) => None,
        Ok(pr::ReportStatus::Submitted) => Some(StatusFilter::Is(ReportStatus::Submitted)),
        Ok(pr::ReportStatus::Returned) => Some(StatusFilter::Is(ReportStatus::Returned)),
        Ok(pr::ReportStatus::Approved) => Some(StatusFilter::Is(ReportStatus::Approved)),
        Ok(pr::ReportStatus::Reopened) => Some(StatusFilter::Is(ReportStatus::Reopened)),
        Ok(pr::ReportStatus::Missing) => Some(StatusFilter::Missing),
        Err(_) => return Err(DomainError::invalid("status", "is not a report status").into()),
    };
    let after = match req.page_token.as_str() {
        "" => String::new(),
        t => ReportId::parse("page_token", t)?.as_string(),
    };
    Ok(ReportQuery { page_size, unit, period, tree, status, after })
}

pub fn get_report_history(req: pr::GetReportHistoryRequest) -> Result<HistoryPage, Error> {
    let page_size = page_size(req.page_size)?;
    let id = ReportId::parse("report_id", &req.report_id)?;
    Ok(HistoryPage { id, page_size, page_token: req.page_token })
}

// ---- responses ----

pub fn written(w: Written) -> pr::WriteReportResponse {
    pr::WriteReportResponse {
        report_id: w.report_id,
        version: w.version,
        revision: w.revision,
        position: Some(w.position),
    }
}

fn status_out(s: ReportStatus) -> pr::ReportStatus {
    match s {
        ReportStatus::Submitted => pr::ReportStatus::Submitted,
        ReportStatus::Returned => pr::ReportStatus::Returned,
        ReportStatus::Approved => pr::ReportStatus::Approved,
        ReportStatus::Reopened => pr::ReportStatus::Reopened,
    }
}

pub fn report(v: ReportView) -> pr::Report {
    let shown = v.revision;
    pr::Report {
        report_id: v.report_id,
        unit: Some(convert::unit_out(&v.id.unit)),
        period: Some(convert::period_out(v.id.period)),
        tree: convert::tree_out(v.tree) as i32,
        status: status_out(v.status) as i32,
        revision: Some(pr::Revision {
            revision: shown.number,
            figures: Some(convert::figures_out(&shown.figures)),
            summary: shown.summary,
            reason: shown.reason,
            on_time: shown.on_time,
            submitted_by: v.author.actor,
            submit_time: v.author.at,
        }),
        latest_revision: v.latest_revision,
        approved_revision: v.approved_revision.unwrap_or(0),
        return_reason: v.return_reason.unwrap_or_default(),
        reopen_reason: v.reopen_reason.unwrap_or_default(),
        version: v.version,
        update_time: v.updated,
    }
}

/// The listed reports; one expected and not submitted yet has only its id and status.
fn listed(l: Listed) -> Vec<pr::Report> {
    match l {
        Listed::Submitted(views) => views.into_iter().map(report).collect(),
        Listed::Missing { tree, ids } => ids
            .into_iter()
            .map(|id| pr::Report {
                report_id: id.as_string(),
                unit: Some(convert::unit_out(&id.unit)),
                period: Some(convert::period_out(id.period)),
                tree: convert::tree_out(tree) as i32,
                status: pr::ReportStatus::Missing as i32,
                ..pr::Report::default()
            })
            .collect(),
    }
}

fn completeness(c: Completeness) -> pr::Completeness {
    pr::Completeness { expected: c.expected, submitted: c.submitted, on_time: c.on_time, approved: c.approved }
}

pub fn listing(l: Listing) -> pr::ListReportsResponse {
    pr::ListReportsResponse {
        reports: listed(l.reports),
        next_page_token: l.next_page_token,
        total_size: l.total as u32,
        completeness: l.completeness.map(completeness),
    }
}

pub fn history(h: History) -> pr::GetReportHistoryResponse {
    pr::GetReportHistoryResponse { events: h.events, next_page_token: h.next_page_token }
}
