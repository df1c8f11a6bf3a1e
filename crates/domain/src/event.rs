//! Every event the services record, in one typed form: what registration and
//! reporting decide, what the read models fold. The wire form and the codec between
//! the two live in `dvk-codec`.

use crate::Date;
use crate::model::ModelEvent;
use crate::report::ReportEvent;
use crate::unit::{Inserted, ReorgLink, Tree, Trees, Unit};

/// An event of any aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    /// Units added to a tree (an import is written in chunks of such events).
    UnitsImported { tree: Tree, units: Vec<Unit>, origin: String },
    /// Links added to the 2025 reorganisation mapping, each with its rank among the
    /// old unit's successors (0: the first the mapping names).
    UnitsReorganized { effective: Option<Date>, links: Vec<(ReorgLink, u32)>, origin: String },
    /// A step in a model's life (the model is the event's stream).
    Model(ModelEvent),
    /// A step in a report's life (the report is the event's stream).
    Report(ReportEvent),
}

/// What folding a tree event changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeChange {
    Units(Tree),
    Reorganization,
}

impl Trees {
    /// Folds a tree event in; `None` for any other event. A stored unit that no longer
    /// fits (its parent missing) is left out and described in `problems`; the others
    /// are folded.
    pub fn apply(&mut self, event: &DomainEvent, problems: &mut Vec<String>) -> Option<TreeChange> {
        match event {
            DomainEvent::UnitsImported { tree, units, .. } => {
                for unit in units {
                    if let Err(e) = self.get_mut(*tree).insert(unit.clone()) {
                        problems.push(format!("stored unit {} does not fit the tree: {e}", unit.code));
                    }
                }
                Some(TreeChange::Units(*tree))
            }
            DomainEvent::UnitsReorganized { links, .. } => {
                for (link, _) in links {
                    let _: Inserted = self.reorganization.add(link.clone());
                }
                Some(TreeChange::Reorganization)
            }
            DomainEvent::Model(_) | DomainEvent::Report(_) => None,
        }
    }
}
