//! Periodic reports (báo cáo sơ kết / tổng kết): one stream per (unit, period),
//! revisions that never overwrite, and the approval cycle submitted → returned /
//! approved → reopened.

use crate::DomainError;
use crate::aggregate::Aggregate;
use crate::date::Date;
use crate::error::Violations;
use crate::period::Period;
use crate::text::{self, MAX_REASON, MAX_SUMMARY};
use crate::unit::{Tree, UnitCode, UnitLookup};

pub use crate::figures::{Figure, Figures, Measure};

/// A report's identifier: the unit and the period (one stream per pair).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReportId {
    pub unit: UnitCode,
    pub period: Period,
}

impl ReportId {
    /// `report-<unit>-<period>`, e.g. `report-00001-2024-H1`; also the stream id.
    pub fn as_string(&self) -> String {
        format!("report-{}-{}", self.unit, self.period)
    }

    /// Parses the id of an existing report. Its period may be a stage written before
    /// stages were fixed to five-year terms: a new report's period is checked where it
    /// is submitted.
    pub fn parse(field: &str, s: &str) -> Result<Self, DomainError> {
        let bad = || DomainError::invalid(field, format!("{s:?} is not a report id like report-00001-2024-H1"));
        let rest = s.strip_prefix("report-").ok_or_else(bad)?;
        let (unit, period) = rest.split_once('-').ok_or_else(bad)?;
        Ok(Self { unit: UnitCode::parse(field, unit)?, period: Period::parse_recorded(field, period)? })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportStatus {
    Submitted,
    Returned,
    Approved,
    Reopened,
}

/// One revision of a report's content. Revision 1 is the submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub number: u32,
    pub figures: Figures,
    pub summary: String,
    /// Why the revision was made; empty for the first.
    pub reason: String,
    pub on_time: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportCommand {
    Submit { id: ReportId, figures: Figures, summary: String, on_time: bool },
    Amend { figures: Figures, summary: String, reason: String, on_time: bool },
    Return { reason: String },
    Approve,
    Reopen { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportEvent {
    Submitted { id: ReportId, tree: Tree, revision: Revision },
    Amended { revision: Revision },
    Returned { revision: u32, reason: String },
    Approved { revision: u32 },
    Reopened { revision: u32, reason: String },
}

/// What a report decision consults: the trees and today's date.
#[derive(Clone, Copy)]
pub struct ReportContext<'a> {
    pub units: &'a dyn UnitLookup,
    pub today: Date,
}

impl std::fmt::Debug for ReportContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportContext").field("today", &self.today).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportState {
    pub id: ReportId,
    pub tree: Tree,
    pub status: ReportStatus,
    /// Every revision, oldest first; none is ever overwritten.
    pub revisions: Vec<Revision>,
    /// The approved revision while the report stands approved.
    pub approved_revision: Option<u32>,
    pub return_reason: Option<String>,
    pub reopen_reason: Option<String>,
}

impl ReportState {
    pub fn latest(&self) -> &Revision {
        self.revisions.last().expect("a report has at least its first revision")
    }

    pub fn revision(&self, number: u32) -> Option<&Revision> {
        self.revisions.iter().find(|r| r.number == number)
    }

    /// The figures roll-ups count by default: those of the approved revision.
    pub fn approved_figures(&self) -> Option<&Figures> {
        self.approved_revision.and_then(|n| self.revision(n)).map(|r| &r.figures)
    }
}

/// The report aggregate; `Default` is a report not yet submitted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report(Option<ReportState>);

impl Report {
    pub fn state(&self) -> Option<&ReportState> {
        self.0.as_ref()
    }
}

impl Aggregate for Report {
    type Command = ReportCommand;
    type Event = ReportEvent;
    type Context<'a> = ReportContext<'a>;

    fn handle(&self, command: ReportCommand, ctx: ReportContext<'_>) -> Result<Vec<ReportEvent>, DomainError> {
        let r = match (&self.0, command) {
            (Some(r), ReportCommand::Submit { .. }) => {
                return Err(DomainError::AlreadyExists(format!(
                    "{} is already submitted; amend it instead",
                    r.id.as_string()
                )));
            }
            (None, ReportCommand::Submit { id, figures, summary, on_time }) => {
                let mut v = Violations::new();
                v.check(figures.validate("figures"));
                let summary = v.check(text::clean("summary", &summary, MAX_SUMMARY, false));
                let tree = id.period.reporting_tree();
                if ctx.units.unit(tree, &id.unit).is_none() {
                    v.push(
                        "unit",
                        format!(
                            "{} is not a unit of the {} tree, in force when {} closes",
                            id.unit,
                            tree.name(),
                            id.period
                        ),
                    );
                }
                if ctx.today < id.period.start() {
                    v.push("period", format!("{} has not begun (today is {})", id.period, ctx.today));
                }
                let summary = v.finish(|| summary.unwrap_or_default())?;
                let revision = Revision { number: 1, figures, summary, reason: String::new(), on_time };
                return Ok(vec![ReportEvent::Submitted { id, tree, revision }]);
            }
            (None, _) => {
                return Err(DomainError::NotFound("the report has not been submitted".into()));
            }
            (Some(r), command) => (r, command),
        };
        let (r, command) = r;
        let latest = r.latest().number;
        let event = match command {
            ReportCommand::Submit { .. } => unreachable!("handled above"),
            ReportCommand::Amend { figures, summary, reason, on_time } => {
                if r.status == ReportStatus::Approved {
                    return Err(DomainError::refused("an approved report cannot be amended until it is reopened"));
                }
                let mut v = Violations::new();
                v.check(figures.validate("figures"));
                let summary = v.check(text::clean("summary", &summary, MAX_SUMMARY, false));
                let reason = v.check(text::clean("reason", &reason, MAX_REASON, true));
                let (summary, reason) = v.finish(|| (summary.unwrap_or_default(), reason.unwrap_or_default()))?;
                if figures == r.latest().figures && summary == r.latest().summary {
                    return Err(DomainError::refused("the amendment changes nothing"));
                }
                ReportEvent::Amended { revision: Revision { number: latest + 1, figures, summary, reason, on_time } }
            }
            ReportCommand::Return { reason } => {
                if r.status != ReportStatus::Submitted {
                    return Err(DomainError::refused(format!(
                        "only a submitted report can be returned; this one is {:?}",
                        r.status
                    )));
                }
                let reason = text::clean("reason", &reason, MAX_REASON, true)?;
                ReportEvent::Returned { revision: latest, reason }
            }
            ReportCommand::Approve => {
                if !matches!(r.status, ReportStatus::Submitted | ReportStatus::Reopened) {
                    return Err(DomainError::refused(format!(
                        "only a submitted or reopened report can be approved; this one is {:?}",
                        r.status
                    )));
                }
                ReportEvent::Approved { revision: latest }
            }
            ReportCommand::Reopen { reason } => {
                if r.status != ReportStatus::Approved {
                    return Err(DomainError::refused(format!(
                        "only an approved report can be reopened; this one is {:?}",
                        r.status
                    )));
                }
                let reason = text::clean("reason", &reason, MAX_REASON, true)?;
                ReportEvent::Reopened { revision: latest, reason }
            }
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: &ReportEvent) {
        if let ReportEvent::Submitted { id, tree, revision } = event {
            self.0 = Some(ReportState {
                id: id.clone(),
                tree: *tree,
                status: ReportStatus::Submitted,
                revisions: vec![revision.clone()],
                approved_revision: None,
                return_reason: None,
                reopen_reason: None,
            });
            return;
        }
        let Some(r) = self.0.as_mut() else { return };
        match event {
            ReportEvent::Submitted { .. } => {}
            ReportEvent::Amended { revision } => {
                r.revisions.push(revision.clone());
                r.status = ReportStatus::Submitted;
            }
            ReportEvent::Returned { reason, .. } => {
                r.status = ReportStatus::Returned;
                r.return_reason = Some(reason.clone());
            }
            ReportEvent::Approved { revision } => {
                r.status = ReportStatus::Approved;
                r.approved_revision = Some(*revision);
            }
            ReportEvent::Reopened { reason, .. } => {
                r.status = ReportStatus::Reopened;
                r.approved_revision = None;
                r.reopen_reason = Some(reason.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::tests::figures;
    use crate::unit::Trees;
    use crate::unit::tests::{code, sample_trees};

    fn d(s: &str) -> Date {
        Date::parse("d", s).unwrap()
    }

    fn id() -> ReportId {
        ReportId { unit: code("001"), period: Period::parse("p", "2024-H1").unwrap() }
    }

    struct Given {
        trees: Trees,
        today: Date,
        events: Vec<ReportEvent>,
    }

    fn given(events: Vec<ReportEvent>) -> Given {
        Given { trees: sample_trees(), today: d("2024-07-10"), events }
    }

    impl Given {
        fn when(&self, cmd: ReportCommand) -> Result<Vec<ReportEvent>, DomainError> {
            Report::replay(&self.events).handle(cmd, ReportContext { units: &self.trees, today: self.today })
        }
        fn then_state(&self, new: &[ReportEvent]) -> ReportState {
            let mut r = Report::replay(&self.events);
            for e in new {
                r.apply(e);
            }
            r.state().unwrap().clone()
        }
    }

    fn submitted() -> ReportEvent {
        ReportEvent::Submitted {
            id: id(),
            tree: Tree::Pre2025,
            revision: Revision {
                number: 1,
                figures: figures(),
                summary: String::new(),
                reason: String::new(),
                on_time: true,
            },
        }
    }
    fn returned() -> ReportEvent {
        ReportEvent::Returned { revision: 1, reason: "Thiếu số liệu kiến nghị".into() }
    }
    fn approved(revision: u32) -> ReportEvent {
        ReportEvent::Approved { revision }
    }
    fn reopened() -> ReportEvent {
        ReportEvent::Reopened { revision: 1, reason: "Sai số liệu quỹ".into() }
    }
    fn amend(models_registered: i64) -> ReportCommand {
        ReportCommand::Amend {
            figures: figures().with(Figure::ModelsRegistered, models_registered),
            summary: String::new(),
            reason: "Cập nhật".into(),
            on_time: false,
        }
    }
    fn submit() -> ReportCommand {
        ReportCommand::Submit { id: id(), figures: figures(), summary: " Sơ kết 6 tháng ".into(), on_time: true }
    }
    fn assert_refused(r: Result<Vec<ReportEvent>, DomainError>, needle: &str) {
        match r {
            Err(DomainError::Refused(msg)) => {
                assert!(msg.contains(needle), "{msg:?} lacks {needle:?}")
            }
            other => panic!("expected a refusal containing {needle:?}, got {other:?}"),
        }
    }
    fn fields(r: Result<Vec<ReportEvent>, DomainError>) -> Vec<String> {
        r.unwrap_err().violations().iter().map(|v| v.field.clone()).collect()
    }

    #[test]
    fn report_ids_round_trip() {
        assert_eq!(id().as_string(), "report-001-2024-H1");
        assert_eq!(ReportId::parse("report_id", "report-001-2024-H1").unwrap(), id());
        let stage = ReportId::parse("report_id", "report-01-2021-2025").unwrap();
        assert_eq!(stage.as_string(), "report-01-2021-2025");
        assert!(ReportId::parse("report_id", "report-1-2024").is_err());
        // A stage report of an old log keeps an id that reads.
        assert_eq!(ReportId::parse("report_id", "report-01-2020-2024").unwrap().as_string(), "report-01-2020-2024");
    }

    // ---- submit ----

    #[test]
    fn submit_creates_revision_one_on_the_tree_of_the_period() {
        let g = given(vec![]);
        let ev = g.when(submit()).unwrap();
        let s = g.then_state(&ev);
        assert_eq!(s.status, ReportStatus::Submitted);
        assert_eq!(s.tree, Tree::Pre2025);
        assert_eq!(s.latest().number, 1);
        assert_eq!(s.latest().summary, "Sơ kết 6 tháng");
        assert_eq!(s.approved_figures(), None, "not approved yet");
    }

    #[test]
    fn submit_refuses_bad_figures_unknown_units_and_unopened_periods_naming_each_field() {
        let g = given(vec![]);
        let bad = ReportCommand::Submit {
            id: ReportId { unit: code("00008"), period: Period::parse("p", "2025-H1").unwrap() },
            figures: figures().with(Figure::PetitionsResolved, 500),
            summary: String::new(),
            on_time: true,
        };
        let f = fields(g.when(bad));
        // 00008 exists only in the 2025 tree; 2025-H1 is reported on the pre-2025 tree.
        assert_eq!(f, ["figures.petitions_resolved", "unit", "period"]);
    }

    #[test]
    fn a_second_submission_for_the_same_unit_and_period_is_refused() {
        let g = given(vec![submitted()]);
        assert!(matches!(g.when(submit()), Err(DomainError::AlreadyExists(_))));
    }

    #[test]
    fn commands_on_an_unsubmitted_report_are_not_found() {
        let g = given(vec![]);
        assert!(matches!(g.when(ReportCommand::Approve), Err(DomainError::NotFound(_))));
    }

    // ---- amend ----

    #[test]
    fn amend_adds_a_revision_and_keeps_the_old_one() {
        let g = given(vec![submitted(), returned()]);
        let ev = g.when(amend(195)).unwrap();
        let s = g.then_state(&ev);
        assert_eq!(s.revisions.len(), 2);
        assert_eq!(s.revision(1).unwrap().figures[Figure::ModelsRegistered], 191);
        assert_eq!(s.latest().figures[Figure::ModelsRegistered], 195);
        assert_eq!(s.latest().reason, "Cập nhật");
        assert_eq!(s.status, ReportStatus::Submitted);
    }

    #[test]
    fn amend_is_refused_while_approved_and_allowed_after_reopen() {
        let g = given(vec![submitted(), approved(1)]);
        assert_refused(g.when(amend(195)), "until it is reopened");
        let g = given(vec![submitted(), approved(1), reopened()]);
        assert!(g.when(amend(195)).is_ok());
    }

    #[test]
    fn amend_needs_a_reason_valid_figures_and_a_change() {
        let g = given(vec![submitted()]);
        let no_reason =
            ReportCommand::Amend { figures: figures(), summary: "x".into(), reason: "".into(), on_time: true };
        assert_eq!(fields(g.when(no_reason)), ["reason"]);
        let bad = ReportCommand::Amend {
            figures: figures().with(Figure::ModelsRecognized, 999),
            summary: String::new(),
            reason: "r".into(),
            on_time: true,
        };
        assert_eq!(fields(g.when(bad)), ["figures.models_recognized"]);
        assert_refused(g.when(amend(191)), "changes nothing");
    }

    // ---- return ----

    #[test]
    fn return_a_submitted_report_with_a_reason() {
        let g = given(vec![submitted()]);
        let ev = g.when(ReportCommand::Return { reason: "Thiếu số liệu".into() }).unwrap();
        let s = g.then_state(&ev);
        assert_eq!(s.status, ReportStatus::Returned);
        assert_eq!(s.return_reason.as_deref(), Some("Thiếu số liệu"));
    }

    #[test]
    fn return_is_refused_without_reason_twice_or_once_approved() {
        let g = given(vec![submitted()]);
        assert_eq!(fields(g.when(ReportCommand::Return { reason: "".into() })), ["reason"]);
        let g = given(vec![submitted(), returned()]);
        assert_refused(g.when(ReportCommand::Return { reason: "again".into() }), "Returned");
        let g = given(vec![submitted(), approved(1)]);
        assert_refused(g.when(ReportCommand::Return { reason: "late".into() }), "Approved");
    }

    // ---- approve ----

    #[test]
    fn approve_counts_the_latest_revision() {
        let g = given(vec![
            submitted(),
            returned(),
            ReportEvent::Amended {
                revision: Revision {
                    number: 2,
                    figures: figures().with(Figure::ModelsRegistered, 200),
                    summary: String::new(),
                    reason: "r".into(),
                    on_time: false,
                },
            },
        ]);
        let ev = g.when(ReportCommand::Approve).unwrap();
        assert_eq!(ev, [ReportEvent::Approved { revision: 2 }]);
        let s = g.then_state(&ev);
        assert_eq!(s.approved_figures().unwrap()[Figure::ModelsRegistered], 200);
    }

    #[test]
    fn approve_is_refused_when_returned_or_already_approved() {
        let g = given(vec![submitted(), returned()]);
        assert_refused(g.when(ReportCommand::Approve), "Returned");
        let g = given(vec![submitted(), approved(1)]);
        assert_refused(g.when(ReportCommand::Approve), "Approved");
    }

    // ---- reopen ----

    #[test]
    fn reopen_withdraws_the_approval_until_approved_again() {
        let g = given(vec![submitted(), approved(1)]);
        let ev = g.when(ReportCommand::Reopen { reason: "Sai số liệu".into() }).unwrap();
        let s = g.then_state(&ev);
        assert_eq!(s.status, ReportStatus::Reopened);
        assert_eq!(s.approved_figures(), None);
        let g = given(vec![submitted(), approved(1), reopened()]);
        assert_eq!(g.when(ReportCommand::Approve).unwrap(), [ReportEvent::Approved { revision: 1 }]);
    }

    #[test]
    fn reopen_is_refused_unless_approved_and_needs_a_reason() {
        let g = given(vec![submitted()]);
        assert_refused(g.when(ReportCommand::Reopen { reason: "x".into() }), "Submitted");
        let g = given(vec![submitted(), approved(1)]);
        assert_eq!(fields(g.when(ReportCommand::Reopen { reason: "  ".into() })), ["reason"]);
    }
}
