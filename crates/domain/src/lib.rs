//! The DVK Ledger domain: administrative units and trees, periods, mobilisation
//! models and periodic reports, with every rule they obey. Pure: no I/O, no proto
//! types; adapters parse requests into these types and map these errors to statuses.

#![forbid(unsafe_code)]

pub mod aggregate;
pub mod date;
pub mod error;
pub mod event;
pub mod figures;
pub mod model;
pub mod period;
pub mod reconcile;
pub mod report;
pub mod schedule;
pub mod text;
pub mod unit;

pub use aggregate::Aggregate;
pub use date::Date;
pub use error::{DomainError, FieldViolation};
pub use event::DomainEvent;
pub use period::Period;
pub use unit::{Level, Tree, UnitCode, UnitKind};
