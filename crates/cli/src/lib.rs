//! dvkctl's library: what analysts read, shaped for output (tables, JSON, CSV, SVG
//! charts), and any RPC from JSON. The calls themselves, the GSO import and report
//! sheets are the client library's (`dvk-client`, `dvk-gso`).

#![forbid(unsafe_code)]

pub mod analyst;
pub mod call;
pub mod chart;
pub mod output;
