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

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn answer(e: Error) -> (Code, String) {
        let s = Status::from(e);
        (s.code(), s.message().to_owned())
    }

    /// Clients read these messages: they are the ones the service has always sent.
    #[test]
    fn every_refusal_keeps_its_code_and_message() {
        let id = ModelId::parse("model_id", "0193a1b2-0000-7000-8000-0000000000aa").unwrap();
        let code = UnitCode::parse("code", "99999").unwrap();
        assert_eq!(
            answer(Error::ModelNotFound(id.clone())),
            (Code::NotFound, "model 0193a1b2-0000-7000-8000-0000000000aa not found".into())
        );
        assert_eq!(
            answer(Error::UnitNotFound { tree: Tree::Y2025, code: code.clone() }),
            (Code::NotFound, "99999 is not a unit of the 2025 tree".into())
        );
        assert_eq!(answer(Error::NotAUnit(code)), (Code::NotFound, "99999 is not a unit".into()));
        assert_eq!(
            answer(Error::StaleModel { id, actual: 3, expected: 2 }),
            (
                Code::Aborted,
                "model 0193a1b2-0000-7000-8000-0000000000aa is at version 3, not 2: read it again and retry".into()
            )
        );
        assert_eq!(
            answer(Error::NothingNew),
            (Code::AlreadyExists, "every link of this mapping is already recorded".into())
        );
        // The cause of an internal error stays in the service's log.
        assert_eq!(answer(Error::Misplaced).0, Code::Internal);
        assert!(!answer(Error::Misplaced).1.contains("stream"));
        assert_eq!(
            answer(Error::Frame(Status::permission_denied("not yours"))),
            (Code::PermissionDenied, "not yours".into())
        );
    }

    #[test]
    fn invalid_input_names_the_field_in_its_violations() {
        let s = Status::from(invalid("links[3].new_code", "99999 is not a unit of the 2025 tree"));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "links[3].new_code: 99999 is not a unit of the 2025 tree");
        assert!(!s.details().is_empty());
    }
}
