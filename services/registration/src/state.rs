//! The registration service's read models, rebuilt by folding its log in order: both
//! administrative trees, the reorganisation mapping, and every model with its version.

use std::collections::BTreeMap;

use dvk_domain::Aggregate;
use dvk_domain::Tree;
use dvk_domain::model::Model;
use dvk_domain::unit::{ReorgLink, Trees};
use dvk_proto::convert;
use dvk_proto::events::v1::{Envelope, envelope::Payload};

pub const SOURCE: &str = "registration";

/// The stream of the units of a tree.
pub fn tree_stream(tree: Tree) -> &'static str {
    match tree {
        Tree::Pre2025 => "tree-pre2025",
        Tree::Y2025 => "tree-2025",
    }
}

/// The stream of the 2025 reorganisation mapping.
pub const REORG_STREAM: &str = "reorg-2025";

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
    pub versions: BTreeMap<&'static str, u64>,
    /// The last log position folded in.
    pub position: u64,
}

impl State {
    pub fn version(&self, stream: &'static str) -> u64 {
        self.versions.get(stream).copied().unwrap_or(0)
    }

    /// Folds one event in. Events were checked when written; one that no longer
    /// decodes is reported and skipped, never half-applied.
    pub fn apply(&mut self, position: u64, env: &Envelope) {
        self.position = position;
        let Some(payload) = &env.payload else { return };
        match payload {
            Payload::UnitsImported(imported) => {
                let Ok(tree) = convert::tree_in("tree", imported.tree) else {
                    tracing::error!(position, "units imported into an unknown tree");
                    return;
                };
                for (i, record) in imported.units.iter().enumerate() {
                    match convert::unit_record_in(&format!("units[{i}]"), tree, record) {
                        Ok(unit) => {
                            if let Err(e) = self.trees.get_mut(tree).insert(unit) {
                                tracing::error!(position, error = %e, "stored unit does not fit the tree");
                            }
                        }
                        Err(e) => {
                            tracing::error!(position, error = %e, "stored unit does not decode")
                        }
                    }
                }
                self.versions.insert(tree_stream(tree), env.stream_version);
            }
            Payload::UnitsReorganized(r) => {
                for (i, link) in r.links.iter().enumerate() {
                    match convert::reorg_link_in(&format!("links[{i}]"), link) {
                        Ok(link) => {
                            self.trees.reorganization.add(link);
                        }
                        Err(e) => {
                            tracing::error!(position, error = %e, "stored link does not decode")
                        }
                    }
                }
                self.versions.insert(REORG_STREAM, env.stream_version);
            }
            other => match convert::model_event_in(other) {
                Ok(Some(event)) => {
                    let id = env.stream_id.strip_prefix("model-").unwrap_or(&env.stream_id).to_owned();
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
                Err(e) => {
                    tracing::error!(position, error = %e, "stored model event does not decode")
                }
            },
        }
    }

    /// The successors of an old unit with their ranks.
    pub fn successors(&self, old: &dvk_domain::UnitCode) -> Vec<(ReorgLink, u32)> {
        self.trees.reorganization.successors(old).iter().cloned().zip(0..).collect()
    }
}
