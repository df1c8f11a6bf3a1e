//! Errors become `tonic::Status` here, in one place: validation → INVALID_ARGUMENT with
//! field violations, version conflict → ABORTED, missing → NOT_FOUND, refused by state
//! → FAILED_PRECONDITION, request id reuse → ALREADY_EXISTS, everything else →
//! INTERNAL with the cause logged and not sent.

use dvk_domain::DomainError;
use dvk_eventlog::LogError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub fn invalid(violations: &[dvk_domain::FieldViolation]) -> Status {
    let mut details = ErrorDetails::new();
    for v in violations {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    let message = violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    Status::with_error_details(Code::InvalidArgument, message, details)
}

pub fn domain(e: DomainError) -> Status {
    match e {
        DomainError::Invalid(v) => invalid(&v),
        DomainError::Refused(m) => Status::failed_precondition(m),
        DomainError::NotFound(m) => Status::not_found(m),
        DomainError::AlreadyExists(m) => Status::already_exists(m),
    }
}

pub fn log(e: LogError) -> Status {
    match e {
        LogError::WrongExpectedVersion { stream, expected, actual } => {
            Status::aborted(format!("{stream} is at version {actual}, not {expected}: read it again and retry"))
        }
        LogError::RequestIdReused { request_id } => {
            Status::already_exists(format!("request_id {request_id:?} was already used for a different request"))
        }
        LogError::InvalidAppend(m) => Status::invalid_argument(m),
        LogError::Closed => Status::unavailable("the service is shutting down"),
        other => internal(other),
    }
}

/// INTERNAL, with the cause logged here and not sent to the client.
pub fn internal(cause: impl std::fmt::Display) -> Status {
    tracing::error!(error = %cause, "internal error");
    Status::internal("internal error; the cause is in the service's log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_travel_as_bad_request_details() {
        let s = domain(DomainError::invalid("details.name", "is required"));
        assert_eq!(s.code(), Code::InvalidArgument);
        let details = s.get_error_details();
        let br = details.bad_request().expect("bad request details");
        assert_eq!(br.field_violations[0].field, "details.name");
        assert!(s.message().contains("details.name: is required"));
    }

    #[test]
    fn internal_causes_are_not_sent() {
        let s = log(LogError::Corrupt { position: 7, reason: "secret detail".into() });
        assert_eq!(s.code(), Code::Internal);
        assert!(!s.message().contains("secret"));
    }
}
