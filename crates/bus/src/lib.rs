//! The event bus of DVK Ledger. The log is the source of truth and Kafka the
//! transport:
//!
//! - the **relay** publishes a service's log to its topic from a cursor stored in the
//!   log (a transactional outbox without a second store);
//! - an **`EventSource`** yields what another service recorded: from Kafka
//!   (`KafkaSource`), or, in the embedded default, by following its log in the same
//!   process (`LocalSource`);
//! - the **ingestor** appends what a source yields to the consuming service's own log,
//!   dropping events already received (by source and source position), and stores the
//!   source's progress (offsets) in the same atomic batch: effectively-once.

#![forbid(unsafe_code)]

pub mod ingest;
pub mod kafka;
pub mod local;
pub mod received;
pub mod restore;

use std::future::Future;

use dvk_proto::events::v1::Envelope;

pub use ingest::{IngestReport, Ingestor};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("event log: {0}")]
    Log(#[from] dvk_eventlog::LogError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{0}")]
    Config(String),
    #[error("the source is closed")]
    Closed,
}

/// One thing a source received.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant, reason = "almost every item is an event; boxing each would cost more")]
pub enum Item {
    Event(Envelope),
    /// Something that is not a valid envelope; counted, logged and skipped.
    Malformed {
        origin: String,
        reason: String,
    },
}

/// What a source yields at once: items in the order received, and the progress to
/// store with them (so that a restart resumes after exactly these items).
#[derive(Debug, Clone, Default)]
pub struct SourceBatch {
    pub items: Vec<Item>,
    /// Metadata entries (key, value) recording the source's position.
    pub progress: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A stream of another service's events. Implementations resume from the progress
/// they stored in the consuming log.
pub trait EventSource: Send {
    /// The next batch; waits until at least one item is available.
    fn next_batch(&mut self) -> impl Future<Output = Result<SourceBatch, BusError>> + Send;
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
