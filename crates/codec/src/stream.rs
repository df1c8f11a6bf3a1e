//! The streams of the logs, as a type: each event belongs to the stream of what it is
//! about. The spelling is the log's (`model-<id>`, `report-<unit>-<period>`,
//! `tree-pre2025`, `tree-2025`, `reorg-2025`) and never changes, so that any log
//! replays; it is written and read here alone.

use std::fmt;

use dvk_domain::Tree;
use dvk_domain::model::ModelId;
use dvk_domain::report::ReportId;

/// The stream an event belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamId {
    /// One model's life.
    Model(ModelId),
    /// One report (a unit and a period) and its revisions.
    Report(ReportId),
    /// The units imported into one tree.
    Units(Tree),
    /// The 2025 reorganisation mapping.
    Reorganization,
}

impl StreamId {
    /// Reads a stored stream id; `None` for one this release does not know.
    pub fn parse(s: &str) -> Option<StreamId> {
        match s {
            "tree-pre2025" => return Some(StreamId::Units(Tree::Pre2025)),
            "tree-2025" => return Some(StreamId::Units(Tree::Y2025)),
            "reorg-2025" => return Some(StreamId::Reorganization),
            _ => {}
        }
        if let Some(id) = s.strip_prefix("model-") {
            return ModelId::parse("stream_id", id).ok().map(StreamId::Model);
        }
        if s.starts_with("report-") {
            return ReportId::parse("stream_id", s).ok().map(StreamId::Report);
        }
        None
    }

    /// The model, if this is a model's stream.
    pub fn model(&self) -> Option<&ModelId> {
        match self {
            StreamId::Model(id) => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamId::Model(id) => write!(f, "model-{}", id.as_str()),
            StreamId::Report(id) => f.write_str(&id.as_string()),
            StreamId::Units(Tree::Pre2025) => f.write_str("tree-pre2025"),
            StreamId::Units(Tree::Y2025) => f.write_str("tree-2025"),
            StreamId::Reorganization => f.write_str("reorg-2025"),
        }
    }
}

impl From<StreamId> for String {
    fn from(s: StreamId) -> String {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_keep_the_logs_spelling_and_read_back() {
        let model = ModelId::parse("m", "0190f5c2-7a1b-7000-8000-000000000001").unwrap();
        let report = ReportId::parse("r", "report-00001-2024-H1").unwrap();
        let cases = [
            (StreamId::Model(model), "model-0190f5c2-7a1b-7000-8000-000000000001"),
            (StreamId::Report(report), "report-00001-2024-H1"),
            (StreamId::Units(Tree::Pre2025), "tree-pre2025"),
            (StreamId::Units(Tree::Y2025), "tree-2025"),
            (StreamId::Reorganization, "reorg-2025"),
        ];
        for (id, spelled) in cases {
            assert_eq!(id.to_string(), spelled);
            assert_eq!(StreamId::parse(spelled), Some(id));
        }
        for unknown in ["", "model-", "model-a b", "report-x", "tree-1999", "other"] {
            assert_eq!(StreamId::parse(unknown), None, "{unknown:?}");
        }
    }
}
