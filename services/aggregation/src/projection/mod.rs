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
//!
//! The cells and where a fact lands among them are in `cells`, the facts and how an
//! event changes them in `facts`, the positions folded in (read-your-writes) in
//! `seen`; this module holds the state and folds the log into it.

mod cells;
mod facts;
mod seen;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use dvk_codec::{Recorded, StreamId, Unreadable};
use dvk_domain::report::ReportId;
use dvk_domain::unit::{CrossTree, Trees};
use dvk_domain::{DomainEvent, UnitCode};

use cells::Target;
pub use cells::{
    CELL_VALUES, Cell, CellKey, ModelCounts, NATION, Rollup, TREES, UnassignedCells, UnitId, field_index, half_of,
    halves, level_index,
};
pub use facts::{Flow, ModelFact, ReportFact};
pub use seen::Seen;

/// The maps the fold looks up for every event: keyed by the projection's own
/// numbers and the codes of the loaded trees, so a fast hash (foldhash, seeded per
/// process) in place of SipHash.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The projection's state: trees, facts, cells, and what has been folded in.
#[derive(Debug, Default)]
pub struct State {
    pub trees: Trees,
    /// The tree events folded in (snapshots carry them).
    pub tree_events: Vec<DomainEvent>,
    cross: CrossTree,
    /// Facts by model id and by report stream (hashed: looked up once per event).
    pub models: FastMap<String, ModelFact>,
    pub reports: FastMap<ReportId, ReportFact>,
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

impl State {
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
            (StreamId::Report(id), DomainEvent::Report(e)) => self.report_event(id, e),
            // The codec puts every model or report event on its own stream.
            _ => {}
        }
    }

    fn skip(&mut self, u: &Unreadable) {
        self.saw(u.position, &u.source_name, u.source_position, u.recorded_at);
    }
}
