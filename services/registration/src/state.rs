//! The registration service's read models, rebuilt by folding its log in order: both
//! administrative trees, the reorganisation mapping, and every model with its version.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};

use dvk_codec::{Recorded, StreamId, Unreadable};
use dvk_domain::event::TreeChange;
use dvk_domain::model::{Model, ModelEvent};
use dvk_domain::unit::{CrossTree, ReorgLink, Trees};
use dvk_domain::{Aggregate, DomainEvent};

pub const SOURCE: &str = "registration";

#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub model: Model,
    pub version: u64,
    pub updated: Option<prost_types::Timestamp>,
}

#[derive(Debug, Default)]
pub struct State {
    pub trees: Trees,
    /// Models by id; ids are UUIDv7, so this is also registration order.
    pub models: BTreeMap<String, ModelEntry>,
    /// Stream versions of the tree and mapping streams.
    pub versions: HashMap<StreamId, u64>,
    /// The last log position folded in.
    pub position: u64,
    /// The provinces matched across the trees, derived when first asked for after the
    /// trees changed.
    cross: std::sync::OnceLock<CrossTree>,
}

impl State {
    /// The version of a tree or mapping stream (0: no event yet).
    pub fn version(&self, stream: &StreamId) -> u64 {
        self.versions.get(stream).copied().unwrap_or(0)
    }

    /// The provinces matched across the trees (for mapping statuses).
    pub fn cross(&self) -> &CrossTree {
        self.cross.get_or_init(|| CrossTree::build(&self.trees))
    }

    /// The successors of an old unit with their ranks.
    pub fn successors(&self, old: &dvk_domain::UnitCode) -> Vec<(ReorgLink, u32)> {
        self.trees.reorganization.successors(old).iter().cloned().zip(0..).collect()
    }
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
        let change = self.trees.apply(&r.event, &mut problems);
        for problem in problems {
            tracing::error!(position = r.position, "{problem}");
        }
        match change {
            Some(TreeChange::Units(tree)) => {
                self.cross = std::sync::OnceLock::new();
                self.versions.insert(StreamId::Units(tree), r.version);
            }
            Some(TreeChange::Reorganization) => {
                self.cross = std::sync::OnceLock::new();
                self.versions.insert(StreamId::Reorganization, r.version);
            }
            None => {
                let (DomainEvent::Model(event), StreamId::Model(id)) = (&r.event, &r.stream) else {
                    tracing::error!(position = r.position, stream = %r.stream, "not an event of the registration service");
                    return;
                };
                let entry = match self.models.entry(id.as_str().to_owned()) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) if matches!(event, ModelEvent::Registered { .. }) => {
                        e.insert(ModelEntry { model: Model::default(), version: 0, updated: None })
                    }
                    // Its registration did not decode (and was reported): without it
                    // there is no model to change, and none is made up.
                    Entry::Vacant(_) => {
                        tracing::error!(position = r.position, stream = %r.stream, "a model's event without its registration; passed over");
                        return;
                    }
                };
                entry.model.apply(event);
                entry.version = r.version;
                entry.updated = r.recorded_at;
            }
        }
    }

    fn skip(&mut self, unreadable: &Unreadable) {
        self.position = unreadable.position;
        // The stream's version still moves on, or its next write would expect the
        // version before this event and be refused for good.
        match StreamId::parse(&unreadable.stream) {
            Some(stream @ (StreamId::Units(_) | StreamId::Reorganization)) => {
                self.versions.insert(stream, unreadable.version);
            }
            Some(StreamId::Model(id)) => {
                if let Some(entry) = self.models.get_mut(id.as_str()) {
                    entry.version = unreadable.version;
                }
            }
            Some(StreamId::Report(_)) | None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dvk_codec::convert::DecodeError;
    use dvk_domain::Date;
    use dvk_domain::model::ModelId;
    use dvk_runtime::host::ReadModel;

    /// A model whose registration no longer decodes is not made up from its later
    /// events: it is absent (GetModel answers NOT_FOUND), never a model without a
    /// registration that a reader would trip over.
    #[test]
    fn a_models_later_events_without_its_registration_make_no_model() {
        let id = ModelId::parse("id", "0193a1b2-0000-7000-8000-0000000000aa").unwrap();
        let mut state = State::default();
        let stream = StreamId::Model(id.clone());
        let error = DecodeError { what: "details.field", why: "99".into() };
        state.skip(&Unreadable::new(1, &stream, 1, SOURCE, error));
        let started = ModelEvent::Started { started_on: Date::parse("d", "2024-03-01").unwrap() };
        state.apply(&Recorded::new(2, stream, 2, SOURCE, DomainEvent::Model(started)));
        assert!(state.models.is_empty());
        assert_eq!(state.position, 2);
    }
}

#[cfg(test)]
mod skip_tests {
    use super::*;
    use dvk_codec::convert::DecodeError;
    use dvk_runtime::host::ReadModel;

    /// A tree event that does not decode still counts in its stream's version: the
    /// next import expects the version after it, as the log does.
    #[test]
    fn an_unreadable_tree_event_still_moves_its_streams_version() {
        let mut state = State::default();
        let stream = StreamId::Units(dvk_domain::Tree::Pre2025);
        let error = DecodeError { what: "units imported", why: "tree 9".into() };
        state.skip(&Unreadable::new(1, &stream, 1, SOURCE, error));
        assert_eq!(state.version(&stream), 1);
        assert_eq!(state.position, 1);
    }
}
