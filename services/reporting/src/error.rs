//! What the reporting service refuses, as one error type, and the single table that
//! turns it into the `tonic::Status` its clients see: invalid input → INVALID_ARGUMENT
//! with field violations, a command the report or the schedule refuses →
//! FAILED_PRECONDITION, a missing report, revision or unit → NOT_FOUND, a stale
//! version → ABORTED, a second submission → ALREADY_EXISTS, a broken log → INTERNAL
//! (logged, not sent). The messages are part of the API: clients and tests match on
//! them. (`crate::Error` is another type: why the service could not start.)

use dvk_domain::{DomainError, Tree, UnitCode};
use dvk_eventlog::LogError;
use dvk_runtime::status;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid input (with the fields at fault), or a command the report's state or
    /// the schedule refuses.
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("report {0} not found")]
    ReportNotFound(String),
    #[error("report {id} has no revision {revision}; the latest is {latest}")]
    NoSuchRevision { id: String, revision: u32, latest: u32 },
    #[error("{unit} is not a unit of {} tree", which(*.tree))]
    UnknownUnit { unit: UnitCode, tree: Option<Tree> },
    /// The client decided on a version of the report that is no longer current.
    #[error("report {id} is at version {actual}, not {expected}: read it again and retry")]
    StaleVersion { id: String, actual: u64, expected: u64 },
    #[error("{0} is already submitted; amend it instead")]
    AlreadySubmitted(String),
    #[error(transparent)]
    Log(#[from] LogError),
    /// The log acknowledged a write it cannot return: the log is broken, not the
    /// request.
    #[error("acknowledged position {0} is missing")]
    Unacknowledged(u64),
    /// What the shared runtime already refused (authentication, scope, a reused
    /// request id, paging), passed on as it answered.
    #[error("{}", .0.message())]
    Frame(Status),
}

/// The tree a unit was looked for in, as `Error::UnknownUnit` names it.
fn which(tree: Option<Tree>) -> String {
    tree.map_or("any".to_owned(), |t| format!("the {}", t.name()))
}

impl From<Status> for Error {
    fn from(s: Status) -> Self {
        Self::Frame(s)
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Domain(e) => status::domain(e),
            Error::ReportNotFound(_) | Error::NoSuchRevision { .. } | Error::UnknownUnit { .. } => {
                Status::not_found(e.to_string())
            }
            Error::StaleVersion { .. } => Status::aborted(e.to_string()),
            Error::AlreadySubmitted(_) => Status::already_exists(e.to_string()),
            Error::Log(e) => status::log(e),
            Error::Unacknowledged(_) => status::internal(e),
            Error::Frame(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn each_refusal_keeps_its_code_and_message() {
        let unit = UnitCode::parse("unit", "07195").unwrap();
        let cases = [
            (
                Error::ReportNotFound("report-07195-2024-H1".into()),
                Code::NotFound,
                "report report-07195-2024-H1 not found",
            ),
            (
                Error::NoSuchRevision { id: "report-07195-2024-H1".into(), revision: 3, latest: 2 },
                Code::NotFound,
                "report report-07195-2024-H1 has no revision 3; the latest is 2",
            ),
            (Error::UnknownUnit { unit: unit.clone(), tree: None }, Code::NotFound, "07195 is not a unit of any tree"),
            (
                Error::UnknownUnit { unit, tree: Some(Tree::Y2025) },
                Code::NotFound,
                &format!("07195 is not a unit of the {} tree", Tree::Y2025.name()),
            ),
            (
                Error::StaleVersion { id: "report-07195-2024-H1".into(), actual: 3, expected: 2 },
                Code::Aborted,
                "report report-07195-2024-H1 is at version 3, not 2: read it again and retry",
            ),
            (
                Error::AlreadySubmitted("report-07195-2024-H1".into()),
                Code::AlreadyExists,
                "report-07195-2024-H1 is already submitted; amend it instead",
            ),
            (Error::Frame(Status::permission_denied("no")), Code::PermissionDenied, "no"),
        ];
        for (error, code, message) in cases {
            let s = Status::from(error);
            assert_eq!((s.code(), s.message()), (code, message));
        }
    }

    #[test]
    fn domain_errors_keep_their_field_violations_and_internal_causes_stay_here() {
        let s = Status::from(Error::from(DomainError::invalid("expected_version", "is required")));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "expected_version: is required");
        let s = Status::from(Error::Unacknowledged(7));
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains('7'), "{s:?}");
    }
}
