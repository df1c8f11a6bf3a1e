//! The codec of DVK Ledger: the one place where wire types (`dvk-proto`, generated
//! code only) and domain types (`dvk-domain`, no I/O) meet. Requests are parsed into
//! checked domain values whose errors name the request's fields; a stored envelope
//! becomes one typed [`Recorded<DomainEvent>`](Recorded) (upcast in `upcast`, read by
//! structure in `event`), and a decided event becomes its envelope.

#![forbid(unsafe_code)]

pub mod convert;
pub mod event;
pub mod recorded;
pub mod stream;
pub mod upcast;

#[cfg(test)]
mod testing;

pub use recorded::{Recorded, Unreadable};
pub use stream::StreamId;
