//! The reporting service's application: what each RPC decides or reads, on checked
//! domain values, for a caller the guard admitted. The report's unit is named for the
//! policy's scope check (`crate::POLICY`; the guard has authenticated the caller and
//! checked its role), the schedule is checked, commands are decided against the read
//! models and appended to the log, and a write is answered once the read models
//! include it. No request type comes in, apart from the request bodies the runtime
//! fingerprints; what goes out keeps the forms the read models and the log hold
//! (a write's position, an author as recorded, history envelopes).

use dvk_codec::StreamId;
use dvk_domain::report::{
    Figures, Report, ReportCommand, ReportContext, ReportEvent, ReportId, ReportStatus, Revision,
};
use dvk_domain::schedule::Schedule;
use dvk_domain::unit::Level;
use dvk_domain::{Aggregate, DomainError, DomainEvent, Period, Tree, UnitCode};
use dvk_eventlog::{ExpectedVersion, Receipt};
use dvk_proto::common::v1::Position;
use dvk_proto::events::v1::Envelope;
use dvk_runtime::host::{Core, Decision, today};
use dvk_runtime::{Access, Target};
use prost::Message;

use crate::error::Error;
use crate::state::{Authorship, ReportEntry, State};

/// A write as the runtime's idempotency needs it: the client's request id, the body of
/// the request without it (a retry must repeat it exactly; the log keeps its
/// fingerprint, so it is the wire message as sent) and the command it asks for.
#[derive(Debug)]
pub struct Write<C, B> {
    pub request_id: String,
    pub body: B,
    pub command: C,
}

/// A first report for a unit and period.
#[derive(Debug)]
pub struct Submit {
    pub id: ReportId,
    /// Validated.
    pub figures: Figures,
    pub summary: String,
}

/// A change to an existing report, decided on the version the client read.
#[derive(Debug)]
pub struct Change {
    pub id: ReportId,
    pub expected: u64,
    pub edit: Edit,
}

#[derive(Debug)]
pub enum Edit {
    /// The figures are validated only once the version is known to be current, as
    /// every other check of a change.
    Amend {
        figures: Figures,
        summary: String,
        reason: String,
    },
    Return {
        reason: String,
    },
    Approve,
    Reopen {
        reason: String,
    },
}

/// What a write left: the report, its version and revision, and the position token of
/// the write (for reading one's own writes elsewhere).
#[derive(Debug)]
pub struct Written {
    pub report_id: String,
    pub version: u64,
    pub revision: u32,
    pub position: Position,
}

/// One revision of a report, as a read shows it.
#[derive(Debug)]
pub struct ReportView {
    pub report_id: String,
    pub id: ReportId,
    pub tree: Tree,
    pub status: ReportStatus,
    pub revision: Revision,
    pub author: Authorship,
    pub latest_revision: u32,
    pub approved_revision: Option<u32>,
    pub return_reason: Option<String>,
    pub reopen_reason: Option<String>,
    pub version: u64,
    pub updated: Option<prost_types::Timestamp>,
}

/// One report at one of its revisions.
#[derive(Debug)]
pub struct ReportAt {
    pub id: ReportId,
    /// `None`: the latest.
    pub revision: Option<u32>,
}

/// One page of a report's events.
#[derive(Debug)]
pub struct HistoryPage {
    pub id: ReportId,
    pub page_size: usize,
    /// Empty for the first page.
    pub page_token: String,
}

/// Which reports `ListReports` shows. The period, if any, has already fixed the tree.
#[derive(Debug)]
pub struct ReportQuery {
    pub page_size: usize,
    /// `None`: the caller's own unit (or all, for a national caller).
    pub unit: Option<UnitCode>,
    pub period: Option<Period>,
    pub tree: Option<Tree>,
    pub status: Option<StatusFilter>,
    /// The canonical id of the last report of the previous page; empty for the first.
    pub after: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Is(ReportStatus),
    /// Expected and not submitted yet.
    Missing,
}

/// A page of a listing: the reports submitted, or those expected and not yet
/// submitted (a listing is one or the other).
#[derive(Debug)]
pub enum Listed {
    Submitted(Vec<ReportView>),
    Missing { tree: Tree, ids: Vec<ReportId> },
}

/// How many of the expected reports of a period have come in.
#[derive(Debug, Default)]
pub struct Completeness {
    pub expected: u32,
    pub submitted: u32,
    pub on_time: u32,
    pub approved: u32,
}

#[derive(Debug)]
pub struct Listing {
    pub reports: Listed,
    pub next_page_token: String,
    pub total: usize,
    pub completeness: Option<Completeness>,
}

#[derive(Debug)]
pub struct History {
    pub events: Vec<Envelope>,
    pub next_page_token: String,
}

#[derive(Debug)]
pub struct App {
    core: Core<State>,
    schedule: Schedule,
}

impl App {
    pub fn new(core: Core<State>, schedule: Schedule) -> Self {
        Self { core, schedule }
    }

    pub async fn submit<B: Message + Send + Sync>(
        &self,
        access: &Access,
        write: Write<Submit, B>,
    ) -> Result<Written, Error> {
        let Write { request_id, body, command: Submit { id, figures, summary } } = write;
        let stream = id.as_string();
        let period = id.period;
        let tree = period.reporting_tree();
        let target = |state: &State| -> Result<Target, Error> {
            let Some(u) = state.trees.get(tree).get(&id.unit) else {
                return Err(DomainError::invalid(
                    "unit",
                    format!("{} is not a unit of the {} tree, in force when {period} closes", id.unit, tree.name()),
                )
                .into());
            };
            if u.level == Level::Nation {
                return Err(
                    DomainError::invalid("unit", "the nation does not report; its figures are the roll-up").into()
                );
            }
            Ok(Target::unit(tree, id.unit.clone()))
        };
        let receipt = self
            .core
            .write(access, &request_id, &body, target, |state| {
                if state.reports.contains_key(&stream) {
                    return Err(Error::AlreadySubmitted(stream.clone()));
                }
                let timing = self.schedule.check(period, today(), false)?;
                let command = ReportCommand::Submit { id: id.clone(), figures, summary, on_time: timing.on_time };
                let ctx = ReportContext { units: &state.trees, today: today() };
                let events = Report::default().handle(command, ctx)?;
                Ok(Decision {
                    stream: StreamId::Report(id.clone()),
                    expected: ExpectedVersion::NoStream,
                    events: events.into_iter().map(DomainEvent::Report).collect(),
                })
            })
            .await?;
        // A submission is always revision 1, a retry's stored answer included.
        Ok(self.written(&receipt, stream, 1))
    }

    /// A change to a report: the policy's scope over the report's unit (before a retry
    /// may be answered), then the version, then the command.
    pub async fn change<B: Message + Send + Sync>(
        &self,
        access: &Access,
        write: Write<Change, B>,
    ) -> Result<Written, Error> {
        let Write { request_id, body, command: Change { id, expected, edit } } = write;
        let stream = id.as_string();
        let target = |state: &State| -> Result<Target, Error> {
            let r = stored(state, &stream)?.report.state().expect("stored reports are submitted");
            Ok(Target::unit(r.tree, r.id.unit.clone()))
        };
        let receipt = self
            .core
            .write(access, &request_id, &body, target, |state| {
                let entry = stored(state, &stream)?;
                if entry.version != expected {
                    return Err(Error::StaleVersion { id: stream.clone(), actual: entry.version, expected });
                }
                let command = self.command(edit, entry)?;
                let ctx = ReportContext { units: &state.trees, today: today() };
                let events = entry.report.handle(command, ctx)?;
                Ok(Decision {
                    stream: StreamId::Report(id.clone()),
                    expected: ExpectedVersion::Exact(expected),
                    events: events.into_iter().map(DomainEvent::Report).collect(),
                })
            })
            .await?;
        let revision = self.revision_of(&receipt)?;
        Ok(self.written(&receipt, stream, revision))
    }

    fn command(&self, edit: Edit, entry: &ReportEntry) -> Result<ReportCommand, Error> {
        Ok(match edit {
            Edit::Amend { figures, summary, reason } => {
                figures.validate("figures")?;
                let r = entry.report.state().expect("stored reports are submitted");
                // An approved report is refused by the domain (reopen first), whatever the date.
                let on_time = if r.status == ReportStatus::Approved {
                    false
                } else {
                    self.schedule.check(r.id.period, today(), entry.unlocked)?.on_time
                };
                ReportCommand::Amend { figures, summary, reason, on_time }
            }
            Edit::Return { reason } => ReportCommand::Return { reason },
            Edit::Approve => ReportCommand::Approve,
            Edit::Reopen { reason } => ReportCommand::Reopen { reason },
        })
    }

    fn written(&self, receipt: &Receipt, report_id: String, revision: u32) -> Written {
        Written {
            report_id,
            version: receipt.last_version,
            revision,
            position: self.core.position(receipt.last_source_position),
        }
    }

    /// The revision a write left the report at, read from its last event, so that a
    /// retried request is answered exactly as the first time.
    fn revision_of(&self, receipt: &Receipt) -> Result<u32, Error> {
        let record = self.core.log.get(receipt.last_position)?.ok_or(Error::Unacknowledged(receipt.last_position))?;
        let last = dvk_codec::recorded::decode(receipt.last_position, record.envelope()?);
        Ok(match last.map(|r| r.event) {
            Ok(DomainEvent::Report(
                ReportEvent::Submitted { revision: Revision { number, .. }, .. }
                | ReportEvent::Amended { revision: Revision { number, .. } }
                | ReportEvent::Returned { revision: number, .. }
                | ReportEvent::Approved { revision: number }
                | ReportEvent::Reopened { revision: number, .. },
            )) => number,
            _ => 0,
        })
    }

    pub async fn report(&self, access: &Access, query: ReportAt) -> Result<ReportView, Error> {
        let ReportAt { id, revision } = query;
        let state = self.core.state.read().await;
        let (id, entry) = readable(&state, access, &id)?;
        let r = entry.report.state().expect("stored reports are submitted");
        let shown = match revision {
            None => r.latest(),
            Some(n) => r.revision(n).ok_or_else(|| Error::NoSuchRevision {
                id: id.to_owned(),
                revision: n,
                latest: r.latest().number,
            })?,
        };
        Ok(view(id, entry, shown))
    }

    /// One page of the reports `query` selects in the caller's scope, and, for one
    /// period, how complete its reporting is.
    pub async fn list(&self, access: &Access, query: ReportQuery) -> Result<Listing, Error> {
        let ReportQuery { page_size, unit, period, tree, status, after } = query;
        let unit = unit.or_else(|| access.caller.unit.clone());
        let state = self.core.state.read().await;
        if let Some(u) = &unit {
            let known = match tree {
                Some(t) => state.trees.get(t).get(u).is_some(),
                None => [Tree::Pre2025, Tree::Y2025].iter().any(|t| state.trees.get(*t).get(u).is_some()),
            };
            if !known {
                return Err(Error::UnknownUnit { unit: u.clone(), tree });
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
                let mut c = Completeness::default();
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

        if status == Some(StatusFilter::Missing) {
            let (Some(p), Some(t)) = (period, tree) else {
                return Err(DomainError::invalid("period", "is required to list missing reports").into());
            };
            let mut ids: Vec<ReportId> = expected_units(&state, t, unit.as_ref())
                .into_iter()
                .filter(|u| access.sees(&state.trees, t, u))
                .map(|u| ReportId { unit: u.clone(), period: p })
                .filter(|id| !state.reports.contains_key(&id.as_string()))
                .collect();
            ids.sort_by_key(ReportId::as_string);
            let mut page = Page::new(&after, page_size);
            for id in ids {
                page.offer(&id.as_string(), || id);
            }
            Ok(page.finish(|ids| Listed::Missing { tree: t, ids }, completeness))
        } else {
            let mut page = Page::new(&after, page_size);
            for (id, entry) in &state.reports {
                let Some(r) = entry.report.state() else { continue };
                let matches = tree.is_none_or(|t| r.tree == t)
                    && period.is_none_or(|p| r.id.period == p)
                    && status.is_none_or(|s| s == StatusFilter::Is(r.status))
                    && in_subtree(r.tree, &r.id.unit);
                if matches {
                    page.offer(id, || view(id, entry, r.latest()));
                }
            }
            Ok(page.finish(Listed::Submitted, completeness))
        }
    }

    /// Events oldest first.
    pub async fn history(&self, access: &Access, query: HistoryPage) -> Result<History, Error> {
        let HistoryPage { id, page_size, page_token } = query;
        let stream = {
            let state = self.core.state.read().await;
            readable(&state, access, &id)?.0.to_owned()
        };
        let (events, next_page_token) = self.core.history(&stream, page_size, &page_token)?;
        Ok(History { events, next_page_token })
    }
}

/// The report `id`, if it exists and the caller may read it, with its canonical id.
fn readable<'s>(state: &'s State, access: &Access, id: &ReportId) -> Result<(&'s str, &'s ReportEntry), Error> {
    let key = id.as_string();
    let (key, entry) = state.reports.get_key_value(&key).ok_or(Error::ReportNotFound(key))?;
    let tree = entry.report.state().map_or(id.period.reporting_tree(), |r| r.tree);
    access.check(&state.trees, &Target::unit(tree, id.unit.clone()))?;
    Ok((key, entry))
}

/// The report `stream` that a change names.
fn stored<'s>(state: &'s State, stream: &str) -> Result<&'s ReportEntry, Error> {
    state.reports.get(stream).ok_or_else(|| Error::ReportNotFound(stream.to_owned()))
}

/// A stored report, showing its revision `shown`.
fn view(id: &str, entry: &ReportEntry, shown: &Revision) -> ReportView {
    let r = entry.report.state().expect("stored reports are submitted");
    ReportView {
        report_id: id.to_owned(),
        id: r.id.clone(),
        tree: r.tree,
        status: r.status,
        revision: shown.clone(),
        // Revisions count from 1; a stored 0 has no author.
        author: (shown.number as usize).checked_sub(1).and_then(|i| entry.authors.get(i)).cloned().unwrap_or_default(),
        latest_revision: r.latest().number,
        approved_revision: r.approved_revision,
        return_reason: r.return_reason.clone(),
        reopen_reason: r.reopen_reason.clone(),
        version: entry.version,
        updated: entry.updated,
    }
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

/// A page of a listing in id order: every match is counted, those up to `after` are
/// skipped, and only the page's own are built.
struct Page<'a, T> {
    after: &'a str,
    size: usize,
    reports: Vec<T>,
    total: usize,
    more: bool,
    last: String,
}

impl<'a, T> Page<'a, T> {
    fn new(after: &'a str, size: usize) -> Self {
        Self { after, size, reports: Vec::new(), total: 0, more: false, last: String::new() }
    }

    fn offer(&mut self, id: &str, make: impl FnOnce() -> T) {
        self.total += 1;
        if !self.after.is_empty() && id <= self.after {
            return;
        }
        if self.reports.len() == self.size {
            self.more = true;
        } else {
            self.reports.push(make());
            self.last = id.to_owned();
        }
    }

    fn finish(self, listed: impl FnOnce(Vec<T>) -> Listed, completeness: Option<Completeness>) -> Listing {
        Listing {
            reports: listed(self.reports),
            next_page_token: if self.more { self.last } else { String::new() },
            total: self.total,
            completeness,
        }
    }
}
