//! dvkctl's library: reading the GSO lists of administrative units, and the client
//! calls behind each command (shared with the end-to-end tests), and reports kept in
//! spreadsheets.

#![forbid(unsafe_code)]

pub mod analyst;
pub mod call;
pub mod chart;
pub mod gso;
pub mod import;
pub mod output;
pub mod reconciliation;
pub mod reports;
