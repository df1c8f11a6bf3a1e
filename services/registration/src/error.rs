//! The registration service's one error type, and its one conversion into a gRPC
//! status: invalid input → INVALID_ARGUMENT with field violations, a missing model or
//! unit → NOT_FOUND, a stale version → ABORTED, a mapping with nothing new →
//! ALREADY_EXISTS, a broken log → INTERNAL (logged, not sent).

use dvk_domain::model::ModelId;
use dvk_domain::{DomainError, Tree, UnitCode};
use dvk_runtime::status;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field (named) that is invalid, or a change the model's rules refuse.
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("model {} not found", .0.as_str())]
    ModelNotFound(ModelId),
    #[error("{code} is not a unit of the {} tree", .tree.name())]
    UnitNotFound { tree: Tree, code: UnitCode },
    /// A unit of neither tree.
    #[error("{0} is not a unit")]
    NotAUnit(UnitCode),
    #[error("model {} is at version {actual}, not {expected}: read it again and retry", .id.as_str())]
    StaleModel { id: ModelId, actual: u64, expected: u64 },
    #[error("every link of this mapping is already recorded")]
    NothingNew,
    /// A registration the log stored outside a model's stream.
    #[error("a registration was stored outside a model's stream")]
    Misplaced,
    /// What the shared frame refused (authentication, scope, a reused request id),
    /// already a status.
    #[error("{}", .0.message())]
    Frame(Status),
}

/// An invalid request field.
pub fn invalid(field: &str, why: impl Into<String>) -> Error {
    Error::Domain(DomainError::invalid(field, why.into()))
}

impl From<Status> for Error {
    fn from(s: Status) -> Self {
        Error::Frame(s)
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::Domain(d) => status::domain(d),
            Error::ModelNotFound(_) | Error::UnitNotFound { .. } | Error::NotAUnit(_) => {
                Status::not_found(e.to_string())
            }
            Error::StaleModel { .. } => Status::aborted(e.to_string()),
            Error::NothingNew => Status::already_exists(e.to_string()),
            Error::Misplaced => status::internal(e),
            Error::Frame(s) => s,
        }
    }
}
