//! Errors of the event log.

/// Every way an event log operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The stream is not at the version the writer expected (optimistic concurrency).
    #[error("stream {stream} is at version {actual}, not the expected {expected}")]
    WrongExpectedVersion { stream: String, expected: String, actual: u64 },
    /// A request id was reused with a different body.
    #[error("request id {request_id:?} was already used for a different request")]
    RequestIdReused { request_id: String },
    /// A stored record does not match its checksum, or cannot be decoded.
    #[error("corrupt record at position {position}: {reason}")]
    Corrupt { position: u64, reason: String },
    /// A stored snapshot does not match its checksum.
    #[error("corrupt snapshot {name:?}: {reason}")]
    CorruptSnapshot { name: String, reason: String },
    /// The append request itself is malformed.
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// A previous flush failed: nothing more is written until the log is reopened.
    #[error("the log stopped accepting writes after a storage failure: {0}")]
    Failed(String),
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
}
