//! The codec of DVK Ledger: the one place where wire types (`dvk-proto`, generated
//! code only) and domain types (`dvk-domain`, no I/O) meet. Requests are parsed into
//! checked domain values whose errors name the request's fields; domain events are
//! encoded as event payloads and decoded back for replay.

#![forbid(unsafe_code)]

pub mod convert;
pub mod stream;

pub use stream::StreamId;
