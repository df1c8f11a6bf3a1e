//! Domain errors: invalid input (with the fields at fault) and refused commands.

use std::fmt;

/// One invalid field: a dotted path as the client named it (`details.name`,
/// `figures.petitions_resolved`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Every way a domain operation can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The input breaks a validation rule; nothing was decided.
    #[error("invalid input: {}", join(.0))]
    Invalid(Vec<FieldViolation>),
    /// The input is well formed but the aggregate's state refuses the command
    /// (e.g. amending an approved report).
    #[error("refused: {0}")]
    Refused(String),
    /// The aggregate the command needs does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The aggregate already exists (e.g. a second report for the same unit and period).
    #[error("already exists: {0}")]
    AlreadyExists(String),
}

fn join(violations: &[FieldViolation]) -> String {
    violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }

    pub fn refused(reason: impl Into<String>) -> Self {
        Self::Refused(reason.into())
    }

    /// The violations, if this is a validation error.
    pub fn violations(&self) -> &[FieldViolation] {
        match self {
            Self::Invalid(v) => v,
            _ => &[],
        }
    }
}

/// Collects violations across many fields so that one answer names all of them.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Records the error of `result` (if any) and returns its value.
    pub fn check<T>(&mut self, result: Result<T, DomainError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(DomainError::Invalid(v)) => {
                self.0.extend(v);
                None
            }
            Err(other) => {
                self.0.push(FieldViolation::new("", other.to_string()));
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` if nothing was recorded, the collected error otherwise.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, DomainError> {
        if self.0.is_empty() { Ok(value()) } else { Err(DomainError::Invalid(self.0)) }
    }
}
