//! The aggregation's one error type, and the one place it becomes a gRPC status: what
//! the service refuses itself, and what the shared runtime refused before it (already a
//! `Status`, passed through).

use dvk_domain::{DomainError, Tree, UnitCode};
use dvk_eventlog::LogError;
use dvk_runtime::status;
use tonic::Status;

use crate::app::Positions;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request the service cannot take as sent; the violations name its fields.
    #[error("{0}")]
    Domain(#[from] DomainError),
    /// A unit the tree asked about does not have.
    #[error("{unit} is not a unit of the {} tree", .tree.name())]
    UnitNotFound { unit: UnitCode, tree: Tree },
    /// The positions a caller asked to read (read-your-writes) were not projected
    /// within its deadline; `at` is where the roll-ups stand.
    #[error("the roll-ups have not yet reached the positions asked for (they are at {})", listed(.at))]
    NotReached { at: Positions },
    /// The service stopped while a caller waited.
    #[error("the service is shutting down")]
    ShuttingDown,
    /// The log could not be read back (an `as_of` replay).
    #[error("event log: {0}")]
    Log(#[from] LogError),
    /// An `as_of` replay did not finish (it panicked or was cancelled).
    #[error("as_of replay: {0}")]
    Replay(#[from] tokio::task::JoinError),
    /// What the shared runtime refused (the guard's access, the caller's scope, a page
    /// size): already the status it answers.
    #[error(transparent)]
    Frame(#[from] Status),
}

/// Positions as the deadline message lists them: `registration 12, reporting 7`.
fn listed(at: &Positions) -> String {
    at.iter().map(|(source, position)| format!("{source} {position}")).collect::<Vec<_>>().join(", ")
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::Domain(e) => status::domain(e),
            e @ Error::UnitNotFound { .. } => Status::not_found(e.to_string()),
            e @ Error::NotReached { .. } => Status::deadline_exceeded(e.to_string()),
            e @ Error::ShuttingDown => Status::unavailable(e.to_string()),
            Error::Log(e) => status::log(e),
            Error::Replay(e) => status::internal(e),
            Error::Frame(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn answer(e: impl Into<Error>) -> (Code, String) {
        let s = Status::from(e.into());
        (s.code(), s.message().to_owned())
    }

    /// Clients (and the tests against the service) read these messages: they are the
    /// ones the service has always sent.
    #[test]
    fn every_refusal_keeps_its_code_and_message() {
        let unit = UnitCode::parse("unit", "99999").unwrap();
        assert_eq!(
            answer(Error::UnitNotFound { unit, tree: Tree::Pre2025 }),
            (Code::NotFound, "99999 is not a unit of the pre2025 tree".to_owned())
        );
        assert_eq!(
            answer(Error::NotReached { at: [("registration", 12), ("reporting", 7)] }),
            (
                Code::DeadlineExceeded,
                "the roll-ups have not yet reached the positions asked for (they are at registration 12, reporting 7)"
                    .to_owned()
            )
        );
        assert_eq!(answer(Error::ShuttingDown), (Code::Unavailable, "the service is shutting down".to_owned()));
        assert_eq!(answer(Status::permission_denied("not yours")), (Code::PermissionDenied, "not yours".to_owned()));
        assert_eq!(answer(LogError::Closed), (Code::Unavailable, "the service is shutting down".to_owned()));
    }

    #[test]
    fn invalid_input_keeps_its_field_violations() {
        let s = Status::from(Error::from(DomainError::invalid("sort_by", "is not a sort field")));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "sort_by: is not a sort field");
        let shared = status::domain(DomainError::invalid("sort_by", "is not a sort field"));
        assert!(!s.details().is_empty());
        assert_eq!(s.details(), shared.details());
    }
}
