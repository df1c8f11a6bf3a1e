//! The reporting service's read models, rebuilt by folding its log in order: the
//! administrative trees (received from the registration service) and every report
//! with its revisions, their authors and its version.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use dvk_codec::{Recorded, Unreadable};
use dvk_domain::report::{Report, ReportEvent};
use dvk_domain::unit::Trees;
use dvk_domain::{Aggregate, DomainEvent};
use dvk_proto::common::v1::Actor;

pub const SOURCE: &str = "reporting";

/// Who made a revision, and when.
#[derive(Debug, Clone, Default)]
pub struct Authorship {
    pub actor: Option<Actor>,
    pub at: Option<prost_types::Timestamp>,
}

#[derive(Debug, Clone, Default)]
pub struct ReportEntry {
    pub report: Report,
    pub version: u64,
    pub updated: Option<prost_types::Timestamp>,
    /// The author of each revision, in revision order.
    pub authors: Vec<Authorship>,
    /// An approver returned or reopened the report since it was last approved: the
    /// unit may change it after the lock date.
    pub unlocked: bool,
}

#[derive(Debug, Default)]
pub struct State {
    pub trees: Trees,
    /// Reports by id (`report-<unit>-<period>`), so in unit then period order.
    pub reports: BTreeMap<String, ReportEntry>,
    /// The last log position folded in.
    pub position: u64,
}

impl dvk_runtime::policy::KnowsUnits for State {
    fn units(&self) -> &dyn dvk_domain::unit::UnitLookup {
        &self.trees
    }
}

impl dvk_runtime::host::ReadModel for State {
    fn apply(&mut self, r: &Recorded) {
        self.position = r.position;
        let mut problems = Vec::new();
        let tree_event = self.trees.apply(&r.event, &mut problems).is_some();
        for problem in problems {
            tracing::error!(position = r.position, "{problem}");
        }
        if tree_event {
            return;
        }
        // A model event stored without its type was decoded all the same (see `reads`).
        let DomainEvent::Report(event) = &r.event else { return };
        let entry = match self.reports.entry(r.stream.to_string()) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) if matches!(event, ReportEvent::Submitted { .. }) => e.insert(ReportEntry::default()),
            // Its submission did not decode (and was reported): without it there is no
            // report to change, and none is made up.
            Entry::Vacant(_) => {
                tracing::error!(position = r.position, stream = %r.stream, "a report's event without its submission; passed over");
                return;
            }
        };
        let at = r.recorded_at.or(r.occurred_at);
        match event {
            ReportEvent::Submitted { .. } | ReportEvent::Amended { .. } => {
                entry.authors.push(Authorship { actor: r.actor.clone(), at });
            }
            ReportEvent::Returned { .. } | ReportEvent::Reopened { .. } => entry.unlocked = true,
            ReportEvent::Approved { .. } => entry.unlocked = false,
        }
        entry.report.apply(event);
        entry.version = r.version;
        entry.updated = at;
    }

    /// Registration's model events arrive with its trees; reports need only the trees,
    /// so those are not decoded.
    fn reads(event_type: &str) -> bool {
        !dvk_codec::event::is_model_event(event_type)
    }

    fn pass(&mut self, position: u64) {
        self.position = position;
    }

    fn skip(&mut self, unreadable: &Unreadable) {
        self.position = unreadable.position;
        // The report's version still moves on, or its next change would expect the
        // version before this event and be refused for good.
        if let Some(entry) = self.reports.get_mut(&unreadable.stream) {
            entry.version = unreadable.version;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvk_codec::StreamId;
    use dvk_codec::convert::DecodeError;
    use dvk_domain::report::ReportId;
    use dvk_runtime::host::ReadModel;

    /// A report whose submission no longer decodes is not made up from its later
    /// events: it is absent (GetReport answers NOT_FOUND), never a report without a
    /// submission that a reader would trip over.
    #[test]
    fn a_reports_later_events_without_its_submission_make_no_report() {
        let id = ReportId::parse("report_id", "report-001-2024-H1").unwrap();
        let mut state = State::default();
        let stream = StreamId::Report(id);
        let error = DecodeError { what: "report event", why: "period".into() };
        state.skip(&Unreadable::new(1, &stream, 1, SOURCE, error));
        let approved = DomainEvent::Report(ReportEvent::Approved { revision: 1 });
        state.apply(&Recorded::new(2, stream, 2, SOURCE, approved));
        assert!(state.reports.is_empty());
        assert_eq!(state.position, 2);
    }
}
