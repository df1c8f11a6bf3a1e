//! The registration service's read models, rebuilt by folding its log in order: both
//! administrative trees, the reorganisation mapping, and every model with its version.

use std::collections::{BTreeMap, HashMap};

use dvk_codec::{StreamId, convert};
use dvk_domain::Aggregate;
use dvk_domain::model::Model;
use dvk_domain::unit::{CrossTree, ReorgLink, Trees};
use dvk_proto::events::v1::Envelope;

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
    fn apply(&mut self, position: u64, env: &Envelope) {
        self.position = position;
        let Some(payload) = &env.payload else { return };
        let mut problems = Vec::new();
        let change = convert::apply_tree_event(&mut self.trees, payload, &mut problems);
        for problem in problems {
            tracing::error!(position, "{problem}");
        }
        if change.is_some() {
            self.cross = std::sync::OnceLock::new();
        }
        match change {
            Some(convert::TreeChange::Units(tree)) => {
                self.versions.insert(StreamId::Units(tree), env.stream_version);
                return;
            }
            Some(convert::TreeChange::Reorganization) => {
                self.versions.insert(StreamId::Reorganization, env.stream_version);
                return;
            }
            None => {}
        }
        match convert::model_event_in(payload) {
            Ok(Some(event)) => {
                let Some(StreamId::Model(id)) = StreamId::parse(&env.stream_id) else {
                    tracing::error!(position, stream = %env.stream_id, "a model event outside a model's stream");
                    return;
                };
                let id = id.as_str().to_owned();
                let entry = self.models.entry(id).or_insert_with(|| ModelEntry {
                    model: Model::default(),
                    version: 0,
                    updated: None,
                });
                entry.model.apply(&event);
                entry.version = env.stream_version;
                entry.updated = env.recorded_at;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(position, error = %e, "stored model event does not decode"),
        }
    }
}
