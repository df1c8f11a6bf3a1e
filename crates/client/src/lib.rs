//! A small client library of DVK Ledger's services, for `dvkctl`, the all-in-one's
//! first start, the benchmarks and the tests: tokens and the bearer interceptor, the
//! import of the GSO lists (reconciled, with supplementary links), and report sheets
//! (the template, reading one, submitting its rows). It links neither librdkafka nor
//! sled.

#![forbid(unsafe_code)]

pub mod import;
pub mod reports;
pub mod token;

pub use import::{authorized, content_id};
